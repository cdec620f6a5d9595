/**
 * The approval stage, last so that a held exchange has passed every other check (and used its
 * rate allowance once) before a human is asked. Until human approvals are wired in, an exchange an
 * `approve` rule gates is refused at once with `approval_timeout`, which is what an agent would see
 * if nobody answered: safe, and never a silent allow.
 */
import { ALLOW, type Exchange, type Policy, type Verdict } from '../../pipeline/types.js';

export function approvalPolicy(): Policy {
  return {
    name: 'approval',
    stage: 'approval',
    before(x: Exchange): Verdict {
      if (x.holdRule === undefined) return ALLOW;
      x.rule = x.holdRule;
      return {
        kind: 'deny',
        code: 'approval_timeout',
        rule: x.holdRule,
        message: `${x.action} needs a human's approval (rule "${x.holdRule}") and no approver is available in this gateway; the call was not made`,
      };
    },
  };
}
