/** The rules stage: least privilege. Marks exchanges that an `approve` rule gates. */
import { ALLOW, type Exchange, type Policy, type Verdict } from '../../pipeline/types.js';

export function rulesPolicy(): Policy {
  return {
    name: 'rules',
    stage: 'rules',
    before(x: Exchange): Verdict {
      const d = x.config.rules.decide(x.agent.name, x.action);
      if (d.decision === 'deny') return { kind: 'deny', code: 'denied', message: d.message, rule: d.rule };
      x.rule = d.rule;
      if (d.decision === 'hold') x.holdRule = d.rule;
      return ALLOW;
    },
  };
}
