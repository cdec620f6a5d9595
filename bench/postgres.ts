/**
 * `BENCH_POSTGRES=postgres://…`: the bench's airlock ships its audit records to PostgreSQL
 * (store.postgres, in a schema of its own, dropped afterwards), and the bench reports how many
 * arrived and how long each took: from the end of its exchange (the final record's ts plus its
 * durationMs, which is about when it was committed locally) to the row's received_at in PostgreSQL.
 * (PostgreSQL's own CPU shows in the bench's "background" column.)
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const BENCH_PG_URL = process.env.BENCH_POSTGRES || undefined;
export const BENCH_PG_SCHEMA = `airlock_bench_${randomBytes(4).toString('hex')}`;

/** The `store.postgres` entry of the bench's airlock config, indented ('' without BENCH_POSTGRES). */
export function postgresStoreEntry(): string {
  return BENCH_PG_URL ? `  postgres: { url: ${JSON.stringify(BENCH_PG_URL)}, schema: ${BENCH_PG_SCHEMA} }` : '';
}

/** After airlock stopped: rows in PostgreSQL against the local store's count, and the shipping delay; drops the schema. */
export async function postgresReport(localRecords: number): Promise<void> {
  if (!BENCH_PG_URL) return;
  const c = new pg.Client({ connectionString: BENCH_PG_URL });
  await c.connect();
  try {
    const t = `"${BENCH_PG_SCHEMA}".audit`;
    const n = Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${t}`)).rows[0]!.n);
    const d = (
      await c.query<{ p50: number; p90: number; p99: number; max: number }>(`
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, percentile_cont(0.9) WITHIN GROUP (ORDER BY d) AS p90,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99, max(d) AS max
        FROM (SELECT extract(epoch FROM received_at - (ts::timestamptz + (record::jsonb->>'durationMs')::float8 * interval '1 millisecond'))::float8 * 1000 AS d
              FROM ${t} WHERE phase = 'final') x`)
    ).rows[0]!;
    const ms = (v: number) => `${v.toFixed(0)} ms`;
    console.log(`postgres: ${n} of the local store's ${localRecords} records in ${BENCH_PG_SCHEMA} after the stop; end of exchange to PostgreSQL: p50 ${ms(d.p50)}, p90 ${ms(d.p90)}, p99 ${ms(d.p99)}, max ${ms(d.max)}`);
    await c.query(`DROP SCHEMA "${BENCH_PG_SCHEMA}" CASCADE`);
  } finally {
    await c.end();
  }
}
