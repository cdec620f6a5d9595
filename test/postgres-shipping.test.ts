/**
 * Shipping audit records to PostgreSQL (store.postgres) when things go wrong: a gateway stopped
 * with calls in flight ships their records before it exits; one killed (kill -9) under load ships
 * the rest after its restart, each row once and in order; a PostgreSQL that is not there at start,
 * or goes away under traffic, costs the gateway nothing: it serves, keeps every record in its local
 * store, says once that it is behind and once that it caught up, and ships everything, nothing
 * twice, when PostgreSQL is back. The URL's password never reaches the log.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { SqliteStore } from '../src/store/sqlite.js';
import { readNodeId } from '../src/store/node.js';
import { logLines, runCli, startCliGateway, tempDir, waitFor, writeConfig } from './support/cli.js';
import { call, KEYS, startGateway } from './support/gateway.js';
import { dropSchema, pgChain, PG_URL, randomSchema, startPgProxy, type PgProxy } from './support/postgres.js';
import { startUpstream, type Upstream } from './support/upstream.js';

const config = (up: string, schema: string, url = PG_URL) => `
log: { level: info }
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: svc
    allow: ["http: GET svc/**"]
http:
  services:
    svc: { url: "${up}", retries: 0 }
store:
  postgres: { url: "${url}", schema: ${schema} }
`;

/** The local store's chain (seq, hash) of a data directory. */
function localChain(dataDir: string): { seq: number; hash: string }[] {
  const st = new SqliteStore(dataDir, { readonly: true });
  try {
    return [...st.iterateAudit()].map((r) => ({ seq: r.seq, hash: r.hash }));
  } finally {
    st.close();
  }
}

/** PostgreSQL has exactly the local store's chain of this node: every row once, in order. */
async function sameChain(schema: string, dataDir: string): Promise<{ seq: number; hash: string }[]> {
  const node = readNodeId(dataDir)!;
  const local = localChain(dataDir);
  const remote = (await pgChain(schema, node)).map((r) => ({ seq: r.seq, hash: r.hash }));
  assert.deepEqual(remote, local);
  return local;
}

describe('store.postgres: shipping through stops, crashes and outages', { timeout: 180_000 }, () => {
  let up: Upstream;
  const schemas: string[] = [];
  const proxies: PgProxy[] = [];
  const tmp = tempDir('airlock-pg-ship-');
  before(async () => {
    up = await startUpstream((req, res) => {
      // A few ms per call, so that many calls are in flight under load; /slow/ ones take 400 ms.
      const ms = req.url?.includes('/slow/') ? 400 : 2 + Math.floor(Math.random() * 10);
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
      }, ms);
    });
  });
  after(async () => {
    await up.close();
    for (const p of proxies) await p.stop();
    for (const s of schemas) await dropSchema(s);
    tmp.cleanup();
  });

  it('SIGTERM with calls in flight: their records are in PostgreSQL when the gateway has exited; kill -9 under load: the rest arrive after the restart, once each, in order', { timeout: 120_000 }, async (t) => {
    const schema = randomSchema();
    schemas.push(schema);
    const dir = join(tmp.dir, 'crash');
    mkdirSync(dir);
    const dataDir = join(dir, 'data');
    const proxy = await startPgProxy();
    proxies.push(proxy);
    const file = writeConfig(dir, config(up.url, schema, proxy.url()));

    // Records waiting to be shipped at SIGTERM, from calls made while PostgreSQL was away (the
    // shipper is waiting out its retry delay when it comes back) and from calls still in flight:
    // the stop ships them all before the process exits.
    let gw = await startCliGateway(file);
    for (let i = 0; i < 3; i++) assert.equal((await call(`${gw.agentUrl}/http/svc/a/${i}`, { key: KEYS.alice })).status, 200);
    await proxy.stop();
    for (let i = 0; i < 3; i++) assert.equal((await call(`${gw.agentUrl}/http/svc/b/${i}`, { key: KEYS.alice })).status, 200);
    await waitFor('the warning', () => /audit records are not reaching PostgreSQL/.test(gw.stderr()));
    await new Promise((r) => setTimeout(r, 4000)); // the retry delay grows to seconds
    const inFlight = Array.from({ length: 4 }, (_, i) => call(`${gw.agentUrl}/http/svc/slow/${i}`, { key: KEYS.alice }));
    await new Promise((r) => setTimeout(r, 150));
    await proxy.start();
    const stopped = gw.stop('SIGTERM');
    for (const r of await Promise.all(inFlight)) assert.equal(r.status, 200);
    assert.equal((await stopped).code, 0, gw.stderr());
    const afterStop = await sameChain(schema, dataDir);
    assert.equal(afterStop.length, 20, 'ten exchanges of two records, all shipped at the stop');

    // kill -9 in the middle of load.
    gw = await startCliGateway(file);
    const pool = new Pool(gw.agentUrl, { connections: 20 });
    let stop = false;
    let ok = 0;
    let n = 0;
    const client = async () => {
      while (!stop) {
        try {
          const r = await pool.request({ path: `/http/svc/item/${n++}`, method: 'GET', headers: { authorization: `Bearer ${KEYS.alice}` } });
          await r.body.dump();
          if (r.statusCode === 200) ok++;
        } catch {
          // cut by the kill
        }
      }
    };
    const clients = Array.from({ length: 20 }, client);
    await new Promise((r) => setTimeout(r, 1500));
    gw.child.kill('SIGKILL');
    stop = true;
    await Promise.all(clients);
    assert.equal((await gw.exited).signal, 'SIGKILL');
    await pool.destroy();
    assert.ok(ok >= 100, `enough load (${ok} calls answered)`);

    const local = localChain(dataDir);
    const shippedBefore = await pgChain(schema, readNodeId(dataDir)!);
    t.diagnostic(`after the kill: ${local.length} records in the local store, ${shippedBefore.length} in PostgreSQL`);
    assert.ok(shippedBefore.length >= afterStop.length && shippedBefore.length <= local.length);
    assert.deepEqual(
      shippedBefore.map((r) => r.hash),
      local.slice(0, shippedBefore.length).map((r) => r.hash),
      'what PostgreSQL has is a prefix of the local chain',
    );

    gw = await startCliGateway(file);
    try {
      await waitFor('every record in PostgreSQL after the restart', async () => (await pgChain(schema, readNodeId(dataDir)!)).length >= local.length, 15_000);
      const shipped = await sameChain(schema, dataDir);
      assert.equal(shipped.length, local.length, 'nothing new was written after the restart');
      const v = await runCli(['audit', 'verify', '-c', file, '--json']);
      assert.equal(v.code, 0, v.stdout + v.stderr);
      const vr = JSON.parse(v.stdout);
      assert.equal(vr.postgres.records, local.length);
      assert.deepEqual(vr.postgres.local.inPostgres, local.length);
    } finally {
      await gw.stop();
    }
    assert.equal(logLines(gw.stderr()).filter((l) => l['level'] === 50).length, 0, gw.stderr());
  });

  it('SIGTERM under load with PostgreSQL far away (the shipper busy with a batch at the stop): every record is in PostgreSQL when the gateway has exited', { timeout: 60_000 }, async () => {
    const schema = randomSchema();
    schemas.push(schema);
    const dir = join(tmp.dir, 'far');
    mkdirSync(dir);
    const dataDir = join(dir, 'data');
    const proxy = await startPgProxy(true, 40); // 80 ms more per round trip
    proxies.push(proxy);
    const file = writeConfig(dir, config(up.url, schema, proxy.url()));
    const gw = await startCliGateway(file);
    const pool = new Pool(gw.agentUrl, { connections: 20 });
    let stop = false;
    let n = 0;
    const client = async () => {
      while (!stop) {
        try {
          const r = await pool.request({ path: `/http/svc/item/${n++}`, method: 'GET', headers: { authorization: `Bearer ${KEYS.alice}` } });
          await r.body.dump();
        } catch {
          stop = true; // refused once the drain began
        }
      }
    };
    const clients = Array.from({ length: 20 }, client);
    let lag = 0;
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 200));
      lag = Math.max(lag, Number(/^airlock_audit_shipping_lag_records (\d+)$/m.exec((await call(`${gw.adminUrl}/metrics`)).text)?.[1]));
    }
    const exit = gw.stop('SIGTERM');
    stop = true;
    await Promise.all(clients);
    await pool.destroy();
    assert.equal((await exit).code, 0, gw.stderr());
    assert.ok(lag > 0, `records were waiting to be shipped under load (${lag})`);
    const chain = await sameChain(schema, dataDir);
    assert.ok(chain.length > 200, `${chain.length} records`);
    assert.doesNotMatch(gw.stderr(), /not in PostgreSQL/);
  });

  it('PostgreSQL unreachable, then back, then gone again under traffic: the gateway serves throughout, warns once per outage, ships everything once', { timeout: 90_000 }, async () => {
    const schema = randomSchema();
    schemas.push(schema);
    const password = 'pg-Secret-9f3c';
    const proxy = await startPgProxy(false); // a closed port at first
    proxies.push(proxy);
    const g = await startGateway(config(up.url, schema, proxy.url(password)));
    const dataDir = join(g.dir, 'data');
    const node = readNodeId(dataDir)!;
    const warned = () => logLines(g.logs()).filter((l) => /audit records are not reaching PostgreSQL/.test(String(l['msg'])));
    const caughtUp = () => logLines(g.logs()).filter((l) => /audit shipping to PostgreSQL .* caught up/.test(String(l['msg'])));
    try {
      for (let i = 0; i < 5; i++) assert.equal((await call(`${g.agentUrl}/http/svc/a/${i}`, { key: KEYS.alice })).status, 200, 'the gateway serves without PostgreSQL');
      await g.gw.audit.settled();
      assert.equal(localChain(dataDir).length, 10, 'and audits to its local store');
      await waitFor('the warning', () => warned().length === 1);
      assert.equal(warned()[0]!['level'], 40);
      assert.match(String(warned()[0]!['msg']), new RegExp(`PostgreSQL 127\\.0\\.0\\.1:${proxy.port}/\\w+ \\(schema ${schema}\\): .*ECONNREFUSED`));

      // Reads need PostgreSQL: a clear error, naming the server without its password.
      const r = await call(`${g.adminUrl}/api/audit`);
      assert.equal(r.status, 500);
      assert.equal(r.json.error.code, 'internal_error');
      assert.match(r.json.error.message, new RegExp(`PostgreSQL 127\\.0\\.0\\.1:${proxy.port}/\\w+ \\(schema ${schema}\\) did not answer the audit query`));
      assert.ok(!r.text.includes(password));
      const m = await call(`${g.adminUrl}/metrics`);
      assert.match(m.text, /^airlock_audit_shipping_lag_records 10$/m);
      assert.match(m.text, /^airlock_audit_shipping_lag_seconds (?!0$)[\d.]+$/m);
      assert.equal((await call(`${g.adminUrl}/readyz`)).status, 200, 'ready: the gateway serves and audits without PostgreSQL');

      await proxy.start();
      await waitFor('the records in PostgreSQL', async () => (await pgChain(schema, node)).length === 10, 10_000);
      await waitFor('the caught-up message', () => caughtUp().length === 1);
      assert.match(String(caughtUp()[0]!['msg']), /caught up: 10 records shipped after [\d.]+ s behind/);
      assert.equal((await call(`${g.adminUrl}/api/audit?limit=1000`)).json.records.length, 10);

      // Gone again (connections cut) in the middle of a stream of calls, and back.
      let done = 0;
      const traffic = (async () => {
        for (let i = 0; i < 60; i++) {
          assert.equal((await call(`${g.agentUrl}/http/svc/b/${i}`, { key: KEYS.alice })).status, 200);
          done++;
          await new Promise((res) => setTimeout(res, 10));
        }
      })();
      await waitFor('some calls', () => done >= 15);
      await proxy.stop();
      await waitFor('a second warning', () => warned().length === 2, 10_000);
      await waitFor('more calls', () => done >= 40);
      await proxy.start();
      await traffic;
      await waitFor('everything in PostgreSQL', async () => (await pgChain(schema, node)).length === 130, 15_000);
      const chain = await sameChain(schema, dataDir);
      assert.deepEqual(
        chain.map((c) => c.seq),
        Array.from({ length: 130 }, (_, i) => i + 1),
      );
      await waitFor('the second caught-up message', () => caughtUp().length === 2);
      assert.equal(warned().length, 2, 'one warning per outage, however many retries');
      assert.ok(proxy.connections >= 2);
      const v = await runCli(['audit', 'verify', '-c', g.configFile]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /1 node\(s\), 130 audit records, every chain intact/);
      assert.ok(!v.stdout.includes(password) && !v.stderr.includes(password));
    } finally {
      await g.gw.stop();
      await proxy.stop();
      assert.ok(!g.logs().includes(password), 'the password never reaches the log');
      await g.stop();
    }
  });
});
