/**
 * The approval stage, last so that a held exchange has passed every other check (and used its
 * rate allowance once) before a human is asked. An exchange an `approve` rule gates waits here for
 * a decision; every front door gets this without approval code of its own.
 */
import type { Approvals } from '../../approvals/service.js';
import { ALLOW, type Exchange, type Policy, type Verdict } from '../../pipeline/types.js';

export function approvalPolicy(approvals: Approvals): Policy {
  return {
    name: 'approval',
    stage: 'approval',
    before(x: Exchange): Verdict | Promise<Verdict> {
      if (x.holdRule === undefined) return ALLOW;
      x.rule = x.holdRule;
      return approvals.hold(x, x.holdRule);
    },
  };
}
