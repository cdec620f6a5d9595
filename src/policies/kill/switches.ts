/**
 * Kill switches (SPEC section 7): by agent, team, action pattern, or all. Kept in the store so they
 * survive restarts; checked on every exchange from a compiled in-memory copy.
 *
 * A switch is in force the moment it is set, whatever the store is doing: the in-memory copy
 * changes first, and the store write follows through `DeferredWrites` (which never stalls the
 * event loop on a lock another process holds).
 */
import { LOCK_WAIT_MS, type DeferredWrites } from '../../store/deferred.js';
import type { Store, KillScope, KillSwitch } from '../../store/types.js';
import { compileActionPattern, type Matcher } from '../rules/pattern.js';

interface CompiledKill {
  k: KillSwitch;
  match: Matcher | undefined;
}

export interface KillSubject {
  agent: string;
  team: string | undefined;
  action: string;
}

export class KillSwitches {
  private compiled: CompiledKill[] = [];

  constructor(
    private readonly store: Store,
    private readonly writes: DeferredWrites,
  ) {
    this.compiled = store.listKills().map(compile);
  }

  get active(): readonly KillSwitch[] {
    return this.compiled.map((c) => c.k);
  }

  get any(): boolean {
    return this.compiled.length > 0;
  }

  /** Adds (or refreshes) a switch; throws PatternError for a bad target pattern. */
  add(scope: KillScope, value: string, reason: string | undefined, by: string | undefined): KillSwitch {
    const k: KillSwitch = { scope, value: scope === 'all' ? '*' : value, reason, by, createdAt: new Date().toISOString() };
    this.put(k);
    return k;
  }

  /** Puts a switch in force as it is (one set on another gateway of the cluster); throws PatternError for a bad target pattern. */
  put(k: KillSwitch): void {
    const c = compile(k);
    this.compiled = [...this.compiled.filter((x) => !(x.k.scope === k.scope && x.k.value === k.value)), c];
    this.writes.write(() => this.store.addKill(k));
  }

  /** Lifts a switch; returns whether one was active (or stored: another process may have written one). */
  remove(scope: KillScope, value: string): boolean {
    const v = scope === 'all' ? '*' : value;
    const before = this.compiled.length;
    this.compiled = this.compiled.filter((x) => !(x.k.scope === scope && x.k.value === v));
    if (this.compiled.length < before) {
      this.writes.write(() => this.store.removeKill(scope, v));
      return true;
    }
    // Not in force here, but maybe stored by another process (the CLI writes the store when it cannot reach the admin port).
    return this.writes.pending === 0 && this.store.withLockWait(LOCK_WAIT_MS, () => this.store.removeKill(scope, v)) > 0;
  }

  /** The switch covering this subject, if any. */
  covering(s: KillSubject): KillSwitch | undefined {
    for (const { k, match } of this.compiled) {
      switch (k.scope) {
        case 'all':
          return k;
        case 'agent':
          if (k.value === s.agent) return k;
          break;
        case 'team':
          if (s.team !== undefined && k.value === s.team) return k;
          break;
        case 'target':
          if (match!(s.action)) return k;
          break;
      }
    }
    return undefined;
  }
}

function compile(k: KillSwitch): CompiledKill {
  return { k, match: k.scope === 'target' ? compileActionPattern(k.value) : undefined };
}

/** The message a killed caller sees. */
export function killMessage(k: KillSwitch): string {
  const what = k.scope === 'all' ? 'all traffic' : k.scope === 'target' ? `"${k.value}"` : `${k.scope} "${k.value}"`;
  return `a kill switch stops ${what}${k.reason ? `: ${k.reason}` : ''}; an operator must lift it (airlock unkill)`;
}
