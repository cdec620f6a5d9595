/** The kill stage: first, because a kill switch must win over everything and costs nothing when none is set. */
import { ALLOW, type Exchange, type Policy, type Verdict } from '../../pipeline/types.js';
import { killMessage, type KillSwitches } from './switches.js';

export function killPolicy(kills: KillSwitches): Policy {
  return {
    name: 'kill',
    stage: 'kill',
    before(x: Exchange): Verdict {
      if (!kills.any) return ALLOW;
      const k = kills.covering({ agent: x.agent.name, team: x.agent.team, action: x.action });
      return k ? { kind: 'deny', code: 'killed', message: killMessage(k) } : ALLOW;
    },
  };
}
