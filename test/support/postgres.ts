/**
 * Test support for store.postgres: the test server (AIRLOCK_TEST_POSTGRES, else the local
 * postgres://postgres@127.0.0.1:5432/test; these tests never skip: without PostgreSQL they fail),
 * a fresh schema per test, one-off queries, and a TCP proxy in front of the server that a test
 * stops and starts: PostgreSQL going away (connections cut, new ones refused) and coming back.
 */
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Transform } from 'node:stream';
import pg from 'pg';

export const PG_URL = process.env['AIRLOCK_TEST_POSTGRES'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A schema name no other test uses. */
export function randomSchema(): string {
  return `airlock_t_${randomBytes(6).toString('hex')}`;
}

/** Runs one statement on a connection of its own. */
export async function pgQuery<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, args: unknown[] = [], url = PG_URL): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql, args)).rows;
  } finally {
    await c.end();
  }
}

export function dropSchema(schema: string): Promise<unknown> {
  return pgQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** One node's rows in PostgreSQL, in seq order. */
export async function pgChain(schema: string, node: string): Promise<{ seq: number; hash: string; prev_hash: string; record: string }[]> {
  const rows = await pgQuery<{ seq: string; hash: string; prev_hash: string; record: string }>(`SELECT seq, hash, prev_hash, record FROM "${schema}".audit WHERE node = $1 ORDER BY seq`, [node]).catch((e: { code?: string }) => {
    if (e.code === '42P01' || e.code === '3F000') return [];
    throw e;
  });
  return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
}

export interface PgProxy {
  port: number;
  /** PG_URL with the proxy's address (and `password`, when given, in it). */
  url(password?: string): string;
  /** Listens (again) on the same port. */
  start(): Promise<void>;
  /** Stops listening and cuts every connection through it. */
  stop(): Promise<void>;
  /** Connections made through it so far. */
  connections: number;
}

/** Passes chunks on `delayMs` later, in order: a PostgreSQL far away (every round trip takes 2 × delayMs more). */
function delayed(delayMs: number): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      setTimeout(() => this.push(chunk), delayMs); // equal delays fire in order
      cb();
    },
    flush(cb) {
      setTimeout(cb, delayMs + 1);
    },
  });
}

/**
 * A TCP proxy to the test server on a fixed loopback port; listening only once `start()`ed unless
 * `listening`; with `delayMs`, each chunk each way waits that long.
 */
export async function startPgProxy(listening = true, delayMs = 0): Promise<PgProxy> {
  const target = new URL(PG_URL);
  const targetPort = Number(target.port || 5432);
  const targetHost = target.hostname || '127.0.0.1';
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  // A port nothing listens on until start(): the gateway meets "connection refused".
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const proxy: PgProxy = {
    port,
    connections: 0,
    url(password) {
      const u = new URL(PG_URL);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      if (password !== undefined) u.password = password;
      return u.toString();
    },
    async start() {
      if (server) return;
      const s = createServer((client) => {
        proxy.connections++;
        const upstream = connect(targetPort, targetHost);
        sockets.add(client);
        sockets.add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
        if (delayMs > 0) {
          client.pipe(delayed(delayMs)).pipe(upstream);
          upstream.pipe(delayed(delayMs)).pipe(client);
        } else {
          client.pipe(upstream);
          upstream.pipe(client);
        }
      });
      await new Promise<void>((r, j) => s.once('error', j).listen(port, '127.0.0.1', () => r()));
      server = s;
    },
    async stop() {
      const s = server;
      server = undefined;
      for (const k of sockets) k.destroy();
      sockets.clear();
      if (s) await new Promise<void>((r) => s.close(() => r()));
    },
  };
  if (listening) await proxy.start();
  return proxy;
}
