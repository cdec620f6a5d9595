/**
 * `airlock audit verify | tail [-f] [-n N] | query [--agent --protocol --decision --since --limit]`.
 * Reads the store the config names directly, so it works whether or not the gateway runs; verify
 * also checks the store's end against audit.jsonl's. With store.postgres, query and tail read every
 * gateway's records from PostgreSQL, and verify checks every gateway's chain there as well.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { auditFilterProblem, auditView } from '../admin/api.js';
import { lastMirrored, type ChainHead } from '../audit/chain.js';
import { verifyChain, type VerifyResult } from '../audit/verify.js';
import { verifyPostgres } from '../audit/verify-postgres.js';
import type { RuntimeConfig } from '../config/compile.js';
import { parseSince } from '../config/units.js';
import { readNodeId } from '../store/node.js';
import { newestFirst, PgAuditStore, type NodeAuditRow } from '../store/postgres/audit.js';
import { describePostgres, errorText, type PostgresConfig } from '../store/postgres/schema.js';
import { SqliteStore } from '../store/sqlite.js';
import type { AuditFilter, AuditRow } from '../store/types.js';
import { args, configPath, EXIT_FAILED, EXIT_OK, loadRuntime, printJson, UsageError } from './common.js';

export const usage = 'airlock audit verify (the hash chain, and the store against audit.jsonl; with store.postgres, every node\'s chain there too) | audit tail [-f] [-n N] | audit query [--agent A] [--protocol P] [--decision D] [--since 1h|ISO] [--limit N]   [-c FILE] [--json]';

export async function audit(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  const [sub] = positionals;
  if (positionals.length !== 1) throw new UsageError('audit takes verify, tail or query');
  const filterProblem = auditFilterProblem(values.protocol, values.decision);
  if (filterProblem) throw new UsageError(`--${filterProblem}`);
  const c = loadRuntime(configPath(values.config));
  if (c.store.postgres) return auditPostgres(sub!, values, c, c.store.postgres);
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
      else process.stdout.write(verifyLine(r, mirrored));
      return r.ok ? EXIT_OK : EXIT_FAILED;
    }
    if (sub === 'query') {
      print(store.queryAudit(queryFilter(values)).reverse(), values.json === true);
      return EXIT_OK;
    }
    if (sub === 'tail') {
      const n = tailLines(values);
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

type Values = ReturnType<typeof parse>['values'];

function parse(argv: string[]) {
  return args(argv, {
    follow: { type: 'boolean', short: 'f' },
    lines: { type: 'string', short: 'n' },
    agent: { type: 'string' },
    protocol: { type: 'string' },
    decision: { type: 'string' },
    since: { type: 'string' },
    limit: { type: 'string' },
  });
}

/**
 * With store.postgres: query and tail read every gateway's records there (each with its node);
 * verify checks the local store (when this data directory has one) and then every node's chain
 * in PostgreSQL, this data directory's node against the local store.
 */
async function auditPostgres(sub: string, values: Values, c: RuntimeConfig, pgc: PostgresConfig): Promise<number> {
  const target = `${describePostgres(pgc.url)} (schema ${pgc.schema})`;
  const pg = new PgAuditStore(pgc, { max: 1, applicationName: 'airlock cli' });
  const dbFile = join(c.dataDir, 'airlock.db');
  const store = sub === 'verify' && existsSync(dbFile) ? new SqliteStore(c.dataDir) : undefined;
  try {
    if (sub === 'verify') {
      let ok = true;
      let local: VerifyResult | undefined;
      const say = (line: string) => values.json || process.stdout.write(line);
      if (store) {
        const mirrored = c.audit.jsonl ? lastMirrored(join(c.dataDir, 'audit.jsonl')) : undefined;
        local = verifyChain(store, mirrored);
        ok = local.ok;
        say(verifyLine(local, mirrored));
      } else say(`no local audit store at ${dbFile} (see \`data\` in ${c.file}): only PostgreSQL is checked\n`);
      const node = store ? readNodeId(c.dataDir) : undefined;
      const p = await verifyPostgres(pg, store && node ? { node, store } : undefined);
      ok &&= p.ok;
      if (p.broken) say(`BROKEN in PostgreSQL ${target} at node ${p.broken.node}, record #${p.broken.seq} (exchange ${p.broken.id}): ${p.broken.problem}; ${p.records} records before it verified\n`);
      else {
        let line = `ok: PostgreSQL ${target}: ${p.nodes} node(s), ${p.records} audit records, every chain intact`;
        if (p.local) line += `; this data directory's node ${p.local.node} has its records up to #${p.local.inPostgres} there, and they match the local store (which goes up to #${p.local.inLocalStore})`;
        say(`${line}\n`);
      }
      if (values.json) printJson({ ...(local ?? { records: 0, noLocalStore: dbFile }), ok, postgres: p });
      return ok ? EXIT_OK : EXIT_FAILED;
    }
    if (sub === 'query') {
      print((await pg.query(queryFilter(values))).reverse(), values.json === true);
      return EXIT_OK;
    }
    if (sub === 'tail') {
      const n = tailLines(values);
      // Each node's chain is followed from where it ended when the tail began (or from the last row printed).
      const cursors = values.follow ? await pg.heads() : new Map<string, number>();
      const rows = (await pg.query({ limit: n })).reverse();
      print(rows, values.json === true);
      if (!values.follow) return EXIT_OK;
      for (const r of rows) if (r.seq > (cursors.get(r.node) ?? 0)) cursors.set(r.node, r.seq);
      for (;;) {
        await new Promise((r) => setTimeout(r, 300));
        const more: NodeAuditRow[] = [];
        for (const [node, seq] of await pg.heads()) {
          const from = cursors.get(node) ?? 0;
          if (seq > from) more.push(...(await pg.chain(node, from, 1000)));
        }
        more.sort((a, b) => newestFirst(b, a));
        print(more, values.json === true);
        for (const r of more) if (r.seq > (cursors.get(r.node) ?? 0)) cursors.set(r.node, r.seq);
      }
    }
    throw new UsageError('audit takes verify, tail or query');
  } catch (e) {
    if (e instanceof UsageError) throw e;
    process.stderr.write(`airlock: PostgreSQL ${target}: ${errorText(e, pgc.url)}\n`);
    return EXIT_FAILED;
  } finally {
    store?.close();
    await pg.close();
  }
}

/** `audit query`'s filter, the same for either store. */
function queryFilter(values: Values): AuditFilter {
  const since = parseSince(values.since);
  if (since instanceof Error) throw new UsageError('--since takes a duration (1h, 30m) or an ISO time');
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit takes a positive whole number');
  return { agent: values.agent, protocol: values.protocol, decision: values.decision, since, limit };
}

function tailLines(values: Values): number {
  const n = values.lines === undefined ? 20 : Number(values.lines);
  if (!Number.isInteger(n) || n < 1) throw new UsageError('-n takes a positive whole number');
  return n;
}

function verifyLine(r: VerifyResult, mirrored: ChainHead | undefined): string {
  if (r.ok) return `ok: ${r.records} audit records, chain intact (head ${r.head})${mirrored ? `, audit.jsonl agrees up to #${mirrored.seq}` : ''}\n`;
  if (r.broken) return `BROKEN at record #${r.broken.seq} (exchange ${r.broken.id}): ${r.broken.problem}; ${r.records} records before it verified\n`;
  return `BROKEN: ${r.mirror!.problem} (records deleted or rewritten in the store?); the store's own chain of ${r.records} records is intact\n`;
}

function print(rows: (AuditRow & { node?: string })[], json: boolean): void {
  let out = '';
  for (const r of rows) {
    const v = auditView(r);
    if (json) {
      out += `${JSON.stringify(v)}\n`;
      continue;
    }
    const outcome = v['code'] ? String(v['code']) : v['status'] !== undefined ? String(v['status']) : r.phase === 'decision' ? '(in flight)' : '';
    out += `${r.ts}  ${r.node !== undefined ? `${r.node}  ` : ''}${r.phase === 'decision' ? 'decision' : 'final   '}  ${(r.agent ?? '-').padEnd(14)}  ${r.decision.padEnd(8)}  ${String(v['action'] ?? '-').padEnd(40)}  ${outcome}${v['durationMs'] !== undefined ? `  ${String(v['durationMs'])}ms` : ''}  ${r.id}\n`;
  }
  process.stdout.write(out);
}
