/**
 * `airlock usage [--by agent|team|model] [--since 1d] [--json]`: requests (every protocol's, by
 * agent or team, with a column per protocol; LLM calls, by model), and LLM tokens and cost.
 * From the running gateway's admin API; with no gateway running, from the store the config names
 * (with store.postgres, every gateway's records there).
 */
import { usageReport, usageReportOf, type UsageReport } from '../admin/usage.js';
import { parseSince } from '../config/units.js';
import { PgAuditStore } from '../store/postgres/audit.js';
import { describePostgres, errorText } from '../store/postgres/schema.js';
import { SqliteStore } from '../store/sqlite.js';
import type { UsageBy } from '../store/types.js';
import { byProtocolOrder } from '../store/usage.js';
import { adminBase, adminCall, AdminUnreachable, apiError, args, configPath, EXIT_FAILED, EXIT_OK, loadRuntime, printJson, table, UsageError } from './common.js';

export const usage = 'airlock usage [--by agent|team|model] [--since 1d|ISO] [-c FILE] [--admin URL] [--json]';

const fmtUsd = (v: number) => `$${v.toFixed(v !== 0 && v < 0.01 ? 6 : 4)}`;

export async function usageVerb(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { by: { type: 'string' }, since: { type: 'string' } });
  if (positionals.length > 0) throw new UsageError('usage takes no positional arguments');
  const by = (values.by ?? 'agent') as UsageBy;
  if (!['agent', 'team', 'model'].includes(by)) throw new UsageError('--by takes agent, team or model');
  const since = parseSince(values.since);
  if (since instanceof Error) throw new UsageError('--since takes a duration (1d, 12h) or an ISO time');
  let report: UsageReport;
  try {
    const q = new URLSearchParams({ by, ...(since ? { since } : {}) });
    const r = await adminCall(adminBase(values.admin, values.config), 'GET', `/api/usage?${q}`);
    if (r.status !== 200) {
      process.stderr.write(`airlock: ${apiError(r.json)}\n`);
      return EXIT_FAILED;
    }
    report = r.json as unknown as UsageReport;
  } catch (e) {
    if (!(e instanceof AdminUnreachable) || values.admin) throw e;
    const c = loadRuntime(configPath(values.config));
    if (c.store.postgres) {
      // Every gateway's records, as a running gateway would answer.
      const pg = new PgAuditStore(c.store.postgres, { max: 1, applicationName: 'airlock cli' });
      try {
        report = usageReportOf(await pg.usage(by, since), by, since);
      } catch (e2) {
        process.stderr.write(`airlock: PostgreSQL ${describePostgres(c.store.postgres.url)}: ${errorText(e2, c.store.postgres.url)}\n`);
        return EXIT_FAILED;
      } finally {
        await pg.close();
      }
    } else {
      const store = new SqliteStore(c.dataDir);
      try {
        report = usageReport(store, by, since);
      } finally {
        store.close();
      }
    }
  }
  if (values.json) {
    printJson(report);
    return EXIT_OK;
  }
  // A column per protocol with calls in the period (none by model: those are all LLM calls). A
  // gateway of an earlier version answers without the breakdown: then there are no such columns.
  const protocols = by === 'model' ? [] : Object.keys(report.total.protocols ?? {}).sort(byProtocolOrder);
  const rows = [[by, 'requests', 'refused', ...protocols, 'input', 'cached', 'output', 'cost', 'estimated']];
  const line = (name: string, g: UsageReport['total']) => [
    name,
    String(g.requests),
    String(g.refused),
    ...protocols.map((p) => String(g.protocols?.[p] ?? 0)),
    String(g.inputTokens),
    String(g.cachedInputTokens),
    String(g.outputTokens),
    fmtUsd(g.costUsd),
    g.estimated ? String(g.estimated) : '',
  ];
  for (const g of report.groups) rows.push(line(String(g[by] ?? '-'), g as unknown as UsageReport['total']));
  rows.push(line('total', report.total));
  const period = report.since ? ` since ${report.since}` : '';
  const title = by === 'model' ? `LLM usage by model${period}` : `Usage by ${by}${period}: requests of every protocol (each protocol's under its name), tokens and cost of LLM calls`;
  process.stdout.write(`${title}\n${table(rows)}`);
  return EXIT_OK;
}
