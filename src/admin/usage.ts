/**
 * `GET /api/usage?by=agent|team|model&since=`: requests, tokens and cost summed from the final
 * audit records (so it agrees with the audit trail and survives restarts). By agent or team, the
 * requests of every protocol, with each group's count per protocol; by model, LLM calls (the only
 * ones with a model). Tokens and cost are the LLM calls'. `since` is a duration back from now
 * (`1d`, `12h`) or an ISO time; without it, all records. With store.postgres, the sums are over
 * every gateway's records there.
 */
import type { ServerResponse } from 'node:http';
import { parseSince } from '../config/units.js';
import { sendJson } from '../server/respond.js';
import type { Store, UsageBy, UsageGroup } from '../store/types.js';
import { byProtocolOrder } from '../store/usage.js';

export interface UsageReport {
  by: UsageBy;
  since: string | null;
  groups: Record<string, unknown>[];
  total: Omit<UsageGroup, 'key'>;
}

const BY: readonly UsageBy[] = ['agent', 'team', 'model'];


const round = (usd: number) => Math.round(usd * 1e9) / 1e9;

/** The usage report from the store. */
export function usageReport(store: Store, by: UsageBy, since: string | undefined): UsageReport {
  return usageReportOf(store.usageSummary(by, since), by, since);
}

/** The usage report from summed groups (the local store's, or PostgreSQL's). */
export function usageReportOf(rows: readonly UsageGroup[], by: UsageBy, since: string | undefined): UsageReport {
  const total: Omit<UsageGroup, 'key'> = { requests: 0, refused: 0, protocols: {}, inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, costUsd: 0, estimated: 0 };
  const groups = rows.map((g) => {
    total.requests += g.requests;
    total.refused += g.refused;
    for (const [p, n] of Object.entries(g.protocols)) total.protocols[p] = (total.protocols[p] ?? 0) + n;
    total.inputTokens += g.inputTokens;
    total.outputTokens += g.outputTokens;
    total.cachedInputTokens += g.cachedInputTokens;
    total.costUsd += g.costUsd;
    total.estimated += g.estimated;
    const { key, ...rest } = g;
    return { [by]: key, ...rest, costUsd: round(g.costUsd) };
  });
  total.costUsd = round(total.costUsd);
  total.protocols = Object.fromEntries(Object.entries(total.protocols).sort(([a], [b]) => byProtocolOrder(a, b)));
  return { by, since: since ?? null, groups, total };
}

/** Serves the usage endpoint from `summary` (the store's usageSummary, or PostgreSQL's); `fail` renders a bad_request. */
export async function serveUsage(summary: (by: UsageBy, since: string | undefined) => UsageGroup[] | Promise<UsageGroup[]>, url: URL, res: ServerResponse, fail: (message: string) => void): Promise<void> {
  const by = (url.searchParams.get('by') ?? 'agent') as UsageBy;
  if (!BY.includes(by)) return fail('by must be agent, team or model');
  const since = parseSince(url.searchParams.get('since'));
  if (since instanceof Error) return fail(since.message);
  sendJson(res, 200, usageReportOf(await summary(by, since), by, since));
}
