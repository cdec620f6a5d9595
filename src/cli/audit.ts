/**
 * `airlock audit verify | tail [-f] [-n N] | query [--agent --protocol --decision --since --limit]`.
 * Reads the store the config names directly, so it works whether or not the gateway runs; verify
 * also checks the store's end against audit.jsonl's.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { auditFilterProblem, auditView } from '../admin/api.js';
import { lastMirrored } from '../audit/chain.js';
import { verifyChain } from '../audit/verify.js';
import { parseSince } from '../config/units.js';
import { SqliteStore } from '../store/sqlite.js';
import type { AuditRow } from '../store/types.js';
import { args, configPath, EXIT_FAILED, EXIT_OK, loadRuntime, printJson, UsageError } from './common.js';

export const usage = 'airlock audit verify (the hash chain, and the store against audit.jsonl) | audit tail [-f] [-n N] | audit query [--agent A] [--protocol P] [--decision D] [--since 1h|ISO] [--limit N]   [-c FILE] [--json]';

export async function audit(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {
    follow: { type: 'boolean', short: 'f' },
    lines: { type: 'string', short: 'n' },
    agent: { type: 'string' },
    protocol: { type: 'string' },
    decision: { type: 'string' },
    since: { type: 'string' },
    limit: { type: 'string' },
  });
  const [sub] = positionals;
  if (positionals.length !== 1) throw new UsageError('audit takes verify, tail or query');
  const filterProblem = auditFilterProblem(values.protocol, values.decision);
  if (filterProblem) throw new UsageError(`--${filterProblem}`);
  const c = loadRuntime(configPath(values.config));
  if (sub === 'verify' && !existsSync(join(c.dataDir, 'airlock.db'))) {
    // Opening would create an empty store and report "ok: 0 records": a wrong `data` path (or a
    // deleted store) must not pass verification.
    process.stderr.write(`airlock: no audit store at ${join(c.dataDir, 'airlock.db')} (see \`data\` in ${c.file})\n`);
    return EXIT_FAILED;
  }
  // audit.jsonl's end is read before the store: it is written after the store commits, so a
  // running gateway cannot have put a record in it that the store, read next, lacks.
  const mirrored = sub === 'verify' && c.audit.jsonl ? lastMirrored(join(c.dataDir, 'audit.jsonl')) : undefined;
  const store = new SqliteStore(c.dataDir);
  try {
    if (sub === 'verify') {
      const r = verifyChain(store, mirrored);
      if (values.json) printJson(r);
      else if (r.ok) process.stdout.write(`ok: ${r.records} audit records, chain intact (head ${r.head})${mirrored ? `, audit.jsonl agrees up to #${mirrored.seq}` : ''}\n`);
      else if (r.broken) process.stdout.write(`BROKEN at record #${r.broken.seq} (exchange ${r.broken.id}): ${r.broken.problem}; ${r.records} records before it verified\n`);
      else process.stdout.write(`BROKEN: ${r.mirror!.problem} (records deleted or rewritten in the store?); the store's own chain of ${r.records} records is intact\n`);
      return r.ok ? EXIT_OK : EXIT_FAILED;
    }
    if (sub === 'query') {
      const since = parseSince(values.since);
      if (since instanceof Error) throw new UsageError('--since takes a duration (1h, 30m) or an ISO time');
      const limit = values.limit === undefined ? 100 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit takes a positive whole number');
      const rows = store.queryAudit({ agent: values.agent, protocol: values.protocol, decision: values.decision, since, limit }).reverse();
      print(rows, values.json === true);
      return EXIT_OK;
    }
    if (sub === 'tail') {
      const n = values.lines === undefined ? 20 : Number(values.lines);
      if (!Number.isInteger(n) || n < 1) throw new UsageError('-n takes a positive whole number');
      const rows = store.queryAudit({ limit: n }).reverse();
      print(rows, values.json === true);
      if (!values.follow) return EXIT_OK;
      let last = rows.at(-1)?.seq ?? store.auditHead()?.seq ?? 0;
      for (;;) {
        await new Promise((r) => setTimeout(r, 300));
        const more = store.queryAudit({ afterSeq: last, limit: 1000 });
        if (more.length > 0) {
          print(more, values.json === true);
          last = more.at(-1)!.seq;
        }
      }
    }
    throw new UsageError('audit takes verify, tail or query');
  } finally {
    store.close();
  }
}

function print(rows: AuditRow[], json: boolean): void {
  let out = '';
  for (const r of rows) {
    const v = auditView(r);
    if (json) {
      out += `${JSON.stringify(v)}\n`;
      continue;
    }
    const outcome = v['code'] ? String(v['code']) : v['status'] !== undefined ? String(v['status']) : r.phase === 'decision' ? '(in flight)' : '';
    out += `${r.ts}  ${r.phase === 'decision' ? 'decision' : 'final   '}  ${(r.agent ?? '-').padEnd(14)}  ${r.decision.padEnd(8)}  ${String(v['action'] ?? '-').padEnd(40)}  ${outcome}${v['durationMs'] !== undefined ? `  ${String(v['durationMs'])}ms` : ''}  ${r.id}\n`;
  }
  process.stdout.write(out);
}
