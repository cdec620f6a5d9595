/**
 * The rules of SPEC section 3, compiled per agent at config load. The decision for one action is
 * independent of rule order: any deny → denied; no allow → denied (default deny); any approve →
 * held; else allowed.
 */
import type { RuleConfig } from '../../config/schema.js';
import { compileActionPattern, compileGlob, type Matcher } from './pattern.js';

export type RuleEffect = 'allow' | 'approve' | 'deny';

interface CompiledEntry {
  rule: string;
  effect: RuleEffect;
  pattern: string;
  reason: string | undefined;
  match: Matcher;
}

export interface RuleDecision {
  decision: 'allow' | 'deny' | 'hold';
  /** The rule that decided; undefined for default deny. */
  rule: string | undefined;
  message: string;
  /** Every rule entry that matched, for `explain`. */
  matched: { rule: string; effect: RuleEffect; pattern: string }[];
}

interface AgentRules {
  deny: CompiledEntry[];
  allow: CompiledEntry[];
  approve: CompiledEntry[];
}

export interface RuleAgent {
  name: string;
  team: string | undefined;
}

/**
 * Does a rule's `agents` list select this agent? Entries are names, globs or `team:<name>`. No
 * list selects every agent; an empty list selects none (`agents: []  # nobody yet` must not grant
 * everyone what the rule allows).
 */
function selects(selectors: readonly string[] | undefined, agent: RuleAgent): boolean {
  if (!selectors) return true;
  for (const s of selectors) {
    if (s.startsWith('team:')) {
      if (agent.team !== undefined && compileGlob(s.slice(5).trim())(agent.team)) return true;
    } else if (compileGlob(s)(agent.name)) return true;
  }
  return false;
}

/** Compiled rules for every agent; immutable. */
export class RuleSet {
  private readonly byAgent = new Map<string, AgentRules>();

  /** Throws PatternError (with the pattern) for a pattern that does not compile. */
  constructor(rules: readonly RuleConfig[], agents: readonly RuleAgent[]) {
    const compiled = rules.map((r) => {
      const entries: CompiledEntry[] = [];
      for (const effect of ['deny', 'allow', 'approve'] as const) {
        for (const pattern of r[effect] ?? []) {
          entries.push({ rule: r.name, effect, pattern, reason: r.reason, match: compileActionPattern(pattern) });
        }
      }
      return { rule: r, entries };
    });
    for (const agent of agents) {
      const ar: AgentRules = { deny: [], allow: [], approve: [] };
      for (const { rule, entries } of compiled) {
        if (!selects(rule.agents, agent)) continue;
        for (const e of entries) ar[e.effect].push(e);
      }
      this.byAgent.set(agent.name, ar);
    }
  }

  /** The decision for `action` by `agent`; `explain` collects every matching entry. */
  decide(agent: string, action: string, explain = false): RuleDecision {
    const ar = this.byAgent.get(agent);
    const matched: RuleDecision['matched'] = [];
    if (!ar) return { decision: 'deny', rule: undefined, message: `agent "${agent}" is not declared in the config`, matched };
    const first = (list: CompiledEntry[]): CompiledEntry | undefined => {
      let hit: CompiledEntry | undefined;
      for (const e of list) {
        if (e.match(action)) {
          hit ??= e;
          if (!explain) break;
          matched.push({ rule: e.rule, effect: e.effect, pattern: e.pattern });
        }
      }
      return hit;
    };
    const deny = first(ar.deny);
    const allow = first(ar.allow);
    const approve = first(ar.approve);
    if (deny) {
      return { decision: 'deny', rule: deny.rule, message: `${action} is denied by rule "${deny.rule}"${deny.reason ? `: ${deny.reason}` : ''}`, matched };
    }
    if (!allow) {
      return { decision: 'deny', rule: undefined, message: `no rule allows ${action} for agent "${agent}" (default deny); add an allow rule to grant it`, matched };
    }
    if (approve) {
      return { decision: 'hold', rule: approve.rule, message: `${action} needs a human's approval (rule "${approve.rule}")`, matched };
    }
    return { decision: 'allow', rule: allow.rule, message: `${action} is allowed by rule "${allow.rule}"`, matched };
  }
}
