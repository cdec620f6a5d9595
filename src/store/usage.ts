/**
 * Usage sums as both audit stores compute them (SqliteStore.usageSummary, PgAuditStore.usage):
 * each store sums its final records per group and protocol in SQL, and `groupUsage` folds those
 * rows into one group per key with its protocol breakdown, so the two answer alike.
 *
 * What counts, in both:
 * - `requests`: every final record of the group, whatever its protocol (by model, LLM records
 *   only: only LLM calls have a model);
 * - `refused`: those whose call did not run: any decision but allowed or approved, except a
 *   call killed while in flight. Such a call ran, and its record shows it: an LLM call's carries
 *   its usage (one killed before any provider was asked has none), another protocol's carries
 *   the byte counts only an exchange that was forwarded reports (a refusal's record has none);
 * - tokens, cost and `estimated`: from the records that carry them, which only LLM calls do.
 */
import type { UsageGroup } from './types.js';

/** One group's sums for one protocol, as the stores' queries return them. */
export type UsageRow = Omit<UsageGroup, 'protocols'> & { protocol: string };

/** The protocols in the order reports show them; any other after these, by name. */
export const PROTOCOL_ORDER: readonly string[] = ['http', 'llm', 'mcp', 'a2a'];

/** Sorts protocol names as reports show them. */
export function byProtocolOrder(a: string, b: string): number {
  const ia = PROTOCOL_ORDER.indexOf(a);
  const ib = PROTOCOL_ORDER.indexOf(b);
  if (ia !== ib) return ia === -1 ? 1 : ib === -1 ? -1 : ia - ib;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * One group per key, summing its protocols' rows, with `protocols` the requests of each (in
 * PROTOCOL_ORDER); biggest cost first, then most requests, then by key (no key last).
 */
export function groupUsage(rows: readonly UsageRow[]): UsageGroup[] {
  const groups = new Map<string | null, UsageGroup>();
  const sorted = [...rows].sort((a, b) => byProtocolOrder(a.protocol, b.protocol));
  for (const r of sorted) {
    let g = groups.get(r.key);
    if (!g) {
      g = { key: r.key, requests: 0, refused: 0, protocols: {}, inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, costUsd: 0, estimated: 0 };
      groups.set(r.key, g);
    }
    g.requests += r.requests;
    g.refused += r.refused;
    g.protocols[r.protocol] = (g.protocols[r.protocol] ?? 0) + r.requests;
    g.inputTokens += r.inputTokens;
    g.outputTokens += r.outputTokens;
    g.cachedInputTokens += r.cachedInputTokens;
    g.costUsd += r.costUsd;
    g.estimated += r.estimated;
  }
  return [...groups.values()].sort((a, b) => b.costUsd - a.costUsd || b.requests - a.requests || compareKeys(a.key, b.key));
}

function compareKeys(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : 1;
}
