/**
 * Reading every gateway's audit records from PostgreSQL: the admin API's and the CLI's queries,
 * usage sums, `audit tail -f`, and the walk `audit verify` makes over each node's chain. The
 * filters mean what they mean on the local SQLite store (`SqliteStore.queryAudit`,
 * `usageSummary`): the same records, in the same order, for the same query on one node's records.
 * (Rows get here from the shipper, `audit/shipper.ts`.)
 */
import type pg from 'pg';
import type { AuditFilter, AuditRow, UsageBy, UsageGroup } from '../types.js';
import { groupUsage, type UsageRow } from '../usage.js';
import { connectionConfig, ident, isMissingTable, type PostgresConfig } from './schema.js';

/** An audit row as PostgreSQL holds it: which gateway (node) wrote it, and where it sorts. */
export interface NodeAuditRow extends AuditRow {
  node: string;
  /** The latest ts along the node's chain up to this row (schema.ts): the cross-node order. */
  chainTs: string;
}

interface PgAuditDbRow {
  node: string;
  seq: string;
  id: string;
  ts: string;
  phase: string;
  agent: string | null;
  protocol: string;
  decision: string;
  record: string;
  prev_hash: string;
  hash: string;
  chain_ts: string;
}

const COLUMNS = 'node, seq, id, ts, phase, agent, protocol, decision, record, prev_hash, hash, chain_ts';

function toRow(r: PgAuditDbRow): NodeAuditRow {
  return {
    node: r.node,
    seq: Number(r.seq),
    id: r.id,
    ts: r.ts,
    phase: r.phase as AuditRow['phase'],
    agent: r.agent,
    protocol: r.protocol,
    decision: r.decision,
    record: r.record,
    prevHash: r.prev_hash,
    hash: r.hash,
    chainTs: r.chain_ts,
  };
}

/** Newest first across nodes (each node's own rows newest seq first): the order of `query`. */
export function newestFirst(a: NodeAuditRow, b: NodeAuditRow): number {
  if (a.chainTs !== b.chainTs) return a.chainTs < b.chainTs ? 1 : -1;
  if (a.node !== b.node) return a.node < b.node ? 1 : -1;
  return b.seq - a.seq;
}

export class PgAuditStore {
  private pool: Promise<pg.Pool> | undefined;
  private readonly table: string;

  /** `max`: connections at most (reads only; the shipper has its own). Nothing is loaded or connected until the first read. */
  constructor(
    readonly config: PostgresConfig,
    private readonly opts: { max?: number; applicationName?: string; onIdleError?: (e: Error) => void } = {},
  ) {
    this.table = `${ident(config.schema)}.audit`;
  }

  /** The pool, made at the first read: pg takes ~45 ms to load, which a gateway or CLI run without PostgreSQL should not pay. */
  private connections(): Promise<pg.Pool> {
    this.pool ??= import('pg').then(({ default: pgm }) => {
      const pool = new pgm.Pool({ ...connectionConfig(this.config.url, this.opts.applicationName ?? 'airlock'), max: this.opts.max ?? 3, idleTimeoutMillis: 30_000 });
      // An idle connection that breaks (PostgreSQL restarted) is dropped by the pool; without a
      // listener its error would end the process.
      pool.on('error', (e) => this.opts.onIdleError?.(e));
      return pool;
    });
    return this.pool;
  }

  private async rows(sql: string, args: unknown[]): Promise<NodeAuditRow[]> {
    try {
      return (await (await this.connections()).query<PgAuditDbRow>(sql, args)).rows.map(toRow);
    } catch (e) {
      if (isMissingTable(e)) return []; // no gateway has shipped here yet
      throw e;
    }
  }

  /** The newest records matching `f` (agent, protocol, decision, since, limit — as SqliteStore.queryAudit), newest first. */
  query(f: AuditFilter): Promise<NodeAuditRow[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const eq = (col: string, v: string | undefined) => {
      if (v === undefined) return;
      args.push(v);
      where.push(`${col} = $${args.length}`);
    };
    eq('agent', f.agent);
    eq('protocol', f.protocol);
    eq('decision', f.decision);
    if (f.since !== undefined) {
      args.push(f.since);
      where.push(`ts >= $${args.length}`);
    }
    if (f.afterSeq !== undefined) throw new Error('afterSeq is per node in PostgreSQL: use chain()');
    args.push(Math.min(Math.max(f.limit ?? 100, 1), 10_000));
    return this.rows(`SELECT ${COLUMNS} FROM ${this.table} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY chain_ts DESC, node DESC, seq DESC LIMIT $${args.length}`, args);
  }

  /** One node's records after `afterSeq`, oldest first. */
  chain(node: string, afterSeq: number, limit: number): Promise<NodeAuditRow[]> {
    return this.rows(`SELECT ${COLUMNS} FROM ${this.table} WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT $3`, [node, afterSeq, limit]);
  }

  /** Every node's last seq (a loose index scan: one index probe per node, however many rows). */
  async heads(): Promise<Map<string, number>> {
    const t = this.table;
    try {
      const r = await (await this.connections()).query<{ node: string; seq: string }>(
        `WITH RECURSIVE n(node) AS (SELECT min(node) FROM ${t} UNION ALL SELECT (SELECT min(node) FROM ${t} WHERE node > n.node) FROM n WHERE n.node IS NOT NULL)
         SELECT node, (SELECT max(seq) FROM ${t} a WHERE a.node = n.node) AS seq FROM n WHERE node IS NOT NULL`,
      );
      return new Map(r.rows.map((x) => [x.node, Number(x.seq)]));
    } catch (e) {
      if (isMissingTable(e)) return new Map();
      throw e;
    }
  }

  /** Every row of every chain, in node then seq order, a page at a time (for verification). */
  async *iterate(page = 2000): AsyncIterableIterator<NodeAuditRow> {
    let node = '';
    let seq = -1;
    for (;;) {
      const rows = await this.rows(`SELECT ${COLUMNS} FROM ${this.table} WHERE (node, seq) > ($1, $2) ORDER BY node, seq LIMIT $3`, [node, seq, page]);
      yield* rows;
      if (rows.length < page) return;
      ({ node, seq } = rows.at(-1)!);
    }
  }

  /** Usage of final records since `since`, grouped; as SqliteStore.usageSummary (see store/usage.ts). */
  async usage(by: UsageBy, since: string | undefined): Promise<UsageGroup[]> {
    const key = by === 'agent' ? 'agent' : by === 'team' ? "r->>'team'" : "COALESCE(r->'details'->>'model', r->'target'->>'model')";
    const args: string[] = [];
    // By model, LLM calls only (the audit_llm_final index): no other protocol's calls have a model.
    let where = by === 'model' ? "phase = 'final' AND protocol = 'llm'" : "phase = 'final'";
    if (since !== undefined) {
      args.push(since);
      where += ' AND ts >= $1';
    }
    // A member present and not JSON null: json_extract's IS NOT NULL in the SQLite version.
    const present = (member: string) => `COALESCE(jsonb_typeof(r->'${member}'), 'null') <> 'null'`;
    const sql = `SELECT ${key} AS key, protocol, count(*)::float8 AS requests,
        COALESCE(sum(CASE WHEN decision IN ('allowed', 'approved') THEN 0
          WHEN decision = 'killed' AND (${present('usage')} OR (protocol <> 'llm' AND ${present('bytesIn')})) THEN 0
          ELSE 1 END), 0)::float8 AS refused,
        COALESCE(sum((r->'usage'->>'inputTokens')::float8), 0) AS "inputTokens",
        COALESCE(sum((r->'usage'->>'outputTokens')::float8), 0) AS "outputTokens",
        COALESCE(sum((r->'usage'->>'cachedInputTokens')::float8), 0) AS "cachedInputTokens",
        COALESCE(sum((r->>'costUsd')::float8), 0) AS "costUsd",
        COALESCE(sum(CASE WHEN r->'usage'->>'estimated' = 'true' THEN 1 ELSE 0 END), 0)::float8 AS estimated
      FROM (SELECT agent, protocol, decision, record::jsonb AS r FROM ${this.table} WHERE ${where}) x
      GROUP BY 1, 2`;
    try {
      return groupUsage((await (await this.connections()).query<UsageRow>(sql, args)).rows);
    } catch (e) {
      if (isMissingTable(e)) return [];
      throw e;
    }
  }

  async close(): Promise<void> {
    if (this.pool) await (await this.pool).end();
  }
}
