/**
 * The approval stage, last so that a held exchange has passed every other check (and used its
 * rate allowance once) before a human is asked. An exchange an `approve` rule gates waits here for
 * a decision; every front door gets this without approval code of its own.
 */
import type { Approvals } from '../../approvals/service.js';
import type { KeyRing } from '../../identity/keys.js';
import { ALLOW, type Exchange, type Policy, type Verdict } from '../../pipeline/types.js';

const KEY_GONE: Verdict = {
  kind: 'deny',
  code: 'unauthenticated',
  message: 'the agent key was revoked or expired while this call was held for approval; it was not made',
};

export function approvalPolicy(approvals: Approvals, keys: KeyRing): Policy {
  return {
    name: 'approval',
    stage: 'approval',
    before(x: Exchange): Verdict | Promise<Verdict> {
      if (x.holdRule === undefined) return ALLOW;
      x.rule = x.holdRule;
      // A hold can last minutes: a key revoked meanwhile must not see its call made once approved.
      const keyStillUsable = (v: Verdict): Verdict => (v.kind === 'allow' && !keys.usable(x.keyId, Date.now()) ? KEY_GONE : v);
      const v = approvals.hold(x, x.holdRule);
      // An answer given at once (a remembered approval) comes right after the key was checked.
      return v instanceof Promise ? v.then(keyStillUsable) : v;
    },
  };
}
