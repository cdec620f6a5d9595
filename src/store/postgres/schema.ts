/**
 * PostgreSQL as the scale-out audit store (SPEC section 1, `store.postgres`): its table, how the
 * gateway and the CLI connect, and how a server is named in logs without its password.
 *
 * One table, `<schema>.audit`, holds every gateway's chain: one row per link, keyed by the node
 * that wrote it (its `<data>/node-id`) and the link's seq in that node's chain, with the same
 * columns as the local SQLite store, so each node's chain verifies in PostgreSQL alone.
 * Two columns are PostgreSQL's own, outside the hashed record:
 * - `chain_ts`: the latest `ts` along the node's chain up to this link. A record's `ts` is when its
 *   exchange started, so a final record comes after records with a later `ts`; `chain_ts` never
 *   decreases along a chain, so ordering by it (then node, then seq) keeps each node's own order
 *   (the local store's) and interleaves nodes by time.
 * - `received_at`: when the row reached PostgreSQL (the transaction's time): shipping delay.
 */
import type pg from 'pg';

export interface PostgresConfig {
  url: string;
  schema: string;
}

/** A schema name as an SQL identifier (config allows only [a-z0-9_], quoted all the same). */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `host:port/database` of a PostgreSQL URL: how logs and messages name it (never with its password). */
export function describePostgres(url: string): string {
  try {
    const u = new URL(url);
    const db = decodeURIComponent(u.pathname.replace(/^\//, '')) || '(default database)';
    const host = u.hostname || (u.searchParams.get('host') ?? 'localhost');
    return `${host}${u.port ? `:${u.port}` : ''}/${db}`;
  } catch {
    return 'PostgreSQL (unparseable URL)';
  }
}

/** `message` without the URL or its password in it (some errors quote the connection string). */
export function scrub(message: string, url: string): string {
  let out = message.replaceAll(url, describePostgres(url));
  try {
    const pw = new URL(url).password;
    if (pw) {
      out = out.replaceAll(pw, '[redacted]');
      const decoded = decodeURIComponent(pw);
      if (decoded !== pw) out = out.replaceAll(decoded, '[redacted]');
    }
  } catch {
    // not a URL: nothing more to take out
  }
  return out;
}

/** An error's message, scrubbed of the URL's password. */
export function errorText(e: unknown, url: string): string {
  const code = (e as { code?: unknown } | null)?.code;
  const m = e instanceof Error ? e.message || e.name : String(e);
  return scrub(typeof code === 'string' && !m.includes(code) ? `${m} (${code})` : m, url);
}

/** Connection settings: bounded waits everywhere, so a PostgreSQL that hangs never holds anything forever. */
export function connectionConfig(url: string, applicationName: string): pg.ClientConfig {
  return {
    connectionString: url,
    application_name: applicationName,
    connectionTimeoutMillis: 5000,
    // Client-side bound as well as server-side: a server that stops answering mid-query (network gone) is given up on.
    query_timeout: 30_000,
    statement_timeout: 30_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
}

/** The table's DDL, idempotent. */
function ddl(schema: string): string {
  const s = ident(schema);
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.audit (
  node text NOT NULL, seq bigint NOT NULL,
  id text NOT NULL, ts text COLLATE "C" NOT NULL, phase text NOT NULL, agent text, protocol text NOT NULL, decision text NOT NULL,
  record text NOT NULL, prev_hash text NOT NULL, hash text NOT NULL,
  chain_ts text COLLATE "C" NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node, seq));
COMMENT ON TABLE ${s}.audit IS 'airlock audit records of every gateway (node): one hash chain per node, verified by airlock audit verify';
CREATE INDEX IF NOT EXISTS audit_order ON ${s}.audit (chain_ts, node, seq);
CREATE INDEX IF NOT EXISTS audit_agent ON ${s}.audit (agent, chain_ts, node, seq);
CREATE INDEX IF NOT EXISTS audit_ts ON ${s}.audit (ts);
CREATE INDEX IF NOT EXISTS audit_llm_final ON ${s}.audit (ts) WHERE phase = 'final' AND protocol = 'llm';
`;
}

/**
 * Creates the schema, table and indexes unless they are there. Gateways starting together take
 * turns (an advisory lock: concurrent `CREATE … IF NOT EXISTS` can fail on PostgreSQL); once the
 * last index exists nothing is created, so a role with only SELECT and INSERT on the table works.
 */
export async function ensureSchema(client: pg.ClientBase, schema: string): Promise<void> {
  const done = async () => (await client.query<{ r: string | null }>('SELECT to_regclass($1) AS r', [`${ident(schema)}.audit_llm_final`])).rows[0]?.r != null;
  if (await done()) return;
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`airlock schema ${schema}`]);
    if (!(await done())) await client.query(ddl(schema));
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

/** Errors that mean the schema or table is not there (no gateway has shipped to it yet). */
export function isMissingTable(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === '42P01' || code === '3F000';
}
