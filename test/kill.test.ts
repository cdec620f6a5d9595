/**
 * Kill switches (SPEC section 7) through the admin API: by agent, team, target and all; lifted by
 * unkill; in-flight streams of the killed scope cut within a second; persisted across restarts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { call, KEYS, startGateway, type Reply, type TestGateway } from './support/gateway.js';
import { echo, startUpstream, type Upstream } from './support/upstream.js';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- audit records are checked field by field
type Rec = Record<string, any>;

const json = (v: unknown) => ({ body: JSON.stringify(v), headers: { 'content-type': 'application/json' } });

function assertKilled(r: Reply, why?: RegExp): void {
  assert.equal(r.status, 403, `expected 403 killed, got ${r.status} ${r.text}`);
  assert.equal(r.json.error.code, 'killed');
  if (why) assert.match(r.json.error.message, why);
}

/** An upstream `/stream/*` that sends a chunk every 100 ms for 10 s, and `/hang/*` that never answers. */
function streaming(req: Parameters<typeof echo>[0], res: ServerResponse, body: Buffer): void {
  if (req.url?.startsWith('/hang/')) return; // never answers; the gateway must cut it
  if (!req.url?.startsWith('/stream/')) return echo(req, res, body);
  res.writeHead(200, { 'content-type': 'text/plain' });
  let n = 0;
  const timer = setInterval(() => {
    res.write(`chunk ${n++}\n`);
    if (n >= 100) {
      clearInterval(timer);
      res.end();
    }
  }, 100);
  res.on('close', () => clearInterval(timer));
}

const CONFIG = (upUrl: string) => `
agents:
  alice: { team: red, keys: ["${KEYS.alice}"] }
  bob: { team: red, keys: ["${KEYS.bob}"] }
  carol: { team: blue, keys: ["${KEYS.carol}"] }
rules:
  - name: api
    allow: ["http: * api/**"]
http:
  services:
    api: { url: "${upUrl}" }
`;

describe('kill switches', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream(streaming);
    t = await startGateway(CONFIG(up.url));
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  const get = (who: string, path = 'api/x') => call(`${t.agentUrl}/http/${path}`, { key: who });
  const kill = (v: unknown) => call(`${t.adminUrl}/api/kill`, { method: 'POST', ...json(v) });
  const unkill = (v: unknown) => call(`${t.adminUrl}/api/kill`, { method: 'DELETE', ...json(v) });

  it('by agent: the next request is 403 killed with the reason; others pass; listed; unkill restores', async () => {
    assert.equal((await get(KEYS.alice)).status, 200);
    const k = await kill({ agent: 'alice', reason: 'runaway spending' });
    assert.equal(k.status, 200);
    assert.equal(k.json.kill.scope, 'agent');
    assert.equal(k.json.kill.value, 'alice');
    const n = up.received.length;
    const r = await get(KEYS.alice);
    assertKilled(r, /runaway spending/);
    assert.equal(r.json.error.request_id, r.headers['x-airlock-request-id']);
    assert.equal(up.received.length, n, 'a killed call is not forwarded');
    assert.equal((await get(KEYS.bob)).status, 200, 'bob, same team, is not covered');
    assert.equal((await get(KEYS.carol)).status, 200);

    const list = await call(`${t.adminUrl}/api/kill`);
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.json.kills.map((x: { scope: string; value: string; reason: string }) => [x.scope, x.value, x.reason]),
      [['agent', 'alice', 'runaway spending']],
    );

    const u = await unkill({ agent: 'alice' });
    assert.equal(u.status, 200);
    assert.equal((await get(KEYS.alice)).status, 200, 'lifted at once');
    assert.deepEqual((await call(`${t.adminUrl}/api/kill`)).json.kills, []);
    const again = await unkill({ agent: 'alice' });
    assert.equal(again.status, 404, 'unkill of a switch that is not on');
    assert.equal(again.json.error.code, 'not_found');
  });

  it('by team: every agent of the team is killed, other teams pass', async () => {
    assert.equal((await kill({ team: 'red' })).status, 200);
    assertKilled(await get(KEYS.alice), /team "red"/);
    assertKilled(await get(KEYS.bob));
    assert.equal((await get(KEYS.carol)).status, 200);
    assert.equal((await unkill({ team: 'red' })).status, 200);
    assert.equal((await get(KEYS.alice)).status, 200);
    assert.equal((await get(KEYS.bob)).status, 200);
  });

  it('by target: only matching actions are killed, for every agent', async () => {
    assert.equal((await kill({ target: 'http: DELETE api/danger/**', reason: 'incident 42' })).status, 200);
    assertKilled(await call(`${t.agentUrl}/http/api/danger/x`, { key: KEYS.alice, method: 'DELETE' }), /incident 42/);
    assertKilled(await call(`${t.agentUrl}/http/api/danger/x`, { key: KEYS.carol, method: 'DELETE' }));
    assert.equal((await get(KEYS.alice, 'api/danger/x')).status, 200, 'GET is not covered');
    assert.equal((await get(KEYS.alice, 'api/safe')).status, 200);
    assert.equal((await unkill({ target: 'http: DELETE api/danger/**' })).status, 200);
    assert.equal((await call(`${t.agentUrl}/http/api/danger/x`, { key: KEYS.alice, method: 'DELETE' })).status, 200);
  });

  it('all: every agent is killed until lifted', async () => {
    assert.equal((await kill({ all: true, reason: 'lockdown' })).status, 200);
    for (const k of [KEYS.alice, KEYS.bob, KEYS.carol]) assertKilled(await get(k), /all traffic.*lockdown/);
    assert.equal((await unkill({ all: true })).status, 200);
    for (const k of [KEYS.alice, KEYS.bob, KEYS.carol]) assert.equal((await get(k)).status, 200);
  });

  it('refuses bad bodies with 400 bad_request', async () => {
    const bad = async (body: string, why: RegExp, method = 'POST') => {
      const r = await call(`${t.adminUrl}/api/kill`, { method, body, headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 400, `${body} → ${r.status} ${r.text}`);
      assert.equal(r.json.error.code, 'bad_request');
      assert.match(r.json.error.message, why);
    };
    await bad('{}', /exactly one/);
    await bad('{"agent":"alice","team":"red"}', /exactly one/);
    await bad('{"agent":', /not valid JSON/);
    await bad('[1,2]', /JSON object/);
    await bad('{"agent":""}', /non-empty/);
    await bad('{"agent":42}', /non-empty string/);
    await bad('{"all":"yes"}', /all must be true/);
    await bad('{"target":"not a pattern"}', /action pattern/);
    await bad('{"target":"ftp: x/**"}', /unknown protocol/);
    await bad('{}', /exactly one/, 'DELETE');
    await bad('{"agent":', /not valid JSON/, 'DELETE');
    assert.deepEqual((await call(`${t.adminUrl}/api/kill`)).json.kills, [], 'nothing was switched on');
    assert.equal((await get(KEYS.alice)).status, 200);
  });

  it('a request refused by a kill switch is audited once, as `killed`', async () => {
    await kill({ agent: 'carol' });
    const r = await get(KEYS.carol);
    assertKilled(r);
    await unkill({ agent: 'carol' });
    const recs = await waitFor('the audit record', async () => {
      const a = await call(`${t.adminUrl}/api/audit?agent=carol&limit=1000`);
      const mine = (a.json.records as Rec[]).filter((x) => x['id'] === r.json.error.request_id);
      return mine.length ? mine : undefined;
    });
    assert.equal(recs.length, 1, 'no decision record for a call that was never forwarded');
    assert.equal(recs[0]!['phase'], 'final');
    assert.equal(recs[0]!['decision'], 'killed');
    assert.equal(recs[0]!['code'], 'killed');
  });

  it('a call waiting for its upstream when the kill comes is answered 403 killed at once', async () => {
    const pending = get(KEYS.bob, 'api/hang/1');
    await waitFor('the call to reach the upstream', () => (up.received.some((r) => r.url === '/hang/1') ? true : undefined));
    const t0 = Date.now();
    const k = await kill({ team: 'red', reason: 'cut the wait' });
    assert.equal(k.json.aborted, 1);
    const r = await pending;
    assert.ok(Date.now() - t0 < 1000, `answered after ${Date.now() - t0}ms`);
    assertKilled(r);
    await unkill({ team: 'red' });
    const final = await waitFor('the final record', async () => {
      const a = await call(`${t.adminUrl}/api/audit?agent=bob&limit=1000`);
      return (a.json.records as Rec[]).find((x) => x['id'] === r.json.error.request_id && x['phase'] === 'final');
    });
    assert.equal(final['decision'], 'killed');
  });

  it('cuts an in-flight stream of the killed scope within a second, leaves others streaming, and audits it as killed', async () => {
    const open = async (key: string, path: string) => {
      const res = await request(`${t.agentUrl}/http/api/stream/${path}`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(res.statusCode, 200);
      const id = String(res.headers['x-airlock-request-id']);
      let text = '';
      const ended = new Promise<{ at: number; error: unknown }>((resolve) => {
        res.body.setEncoding('utf8');
        res.body.on('data', (c: string) => (text += c));
        res.body.on('end', () => resolve({ at: Date.now(), error: undefined }));
        res.body.on('error', (e) => resolve({ at: Date.now(), error: e }));
      });
      return { id, ended, text: () => text, close: () => res.body.destroy() };
    };
    const alice = await open(KEYS.alice, 'a');
    const carol = await open(KEYS.carol, 'c');
    await waitFor('the first chunks', () => (alice.text().includes('chunk 1') && carol.text().includes('chunk 1') ? true : undefined));

    const t0 = Date.now();
    const k = await kill({ agent: 'alice', reason: 'stop the stream' });
    assert.equal(k.status, 200);
    assert.equal(k.json.aborted, 1, 'one exchange was cut');
    const end = await alice.ended;
    assert.ok(end.at - t0 < 1000, `cut after ${end.at - t0}ms`);
    assert.ok(end.error !== undefined, 'the agent sees the stream break, not a clean end');
    assert.ok(!alice.text().includes('chunk 99'));

    // Carol (another scope) keeps streaming.
    const seen = carol.text().length;
    await waitFor('carol to keep receiving', () => (carol.text().length > seen + 10 ? true : undefined), 1000);
    carol.close();

    const final = await waitFor('the killed stream’s final record', async () => {
      const a = await call(`${t.adminUrl}/api/audit?agent=alice&limit=1000`);
      return (a.json.records as Rec[]).find((x) => x['id'] === alice.id && x['phase'] === 'final');
    });
    assert.equal(final['decision'], 'killed');
    assert.equal(final['code'], 'killed');
    assert.ok(final['bytesOut'] > 0, 'the bytes sent before the cut are counted');
    await unkill({ agent: 'alice' });
  });
});

describe('kill switches survive a restart', () => {
  let up: Upstream;
  let dir: string;
  before(async () => {
    up = await startUpstream();
    dir = mkdtempSync(join(tmpdir(), 'airlock-kill-'));
  });
  after(async () => {
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a kill set before a restart is still on after it, and an unkill stays lifted', async () => {
    const yaml = `data: ${join(dir, 'data')}\n${CONFIG(up.url)}`;
    let t: TestGateway = await startGateway(yaml, { dir });
    try {
      assert.equal((await call(`${t.adminUrl}/api/kill`, { method: 'POST', ...json({ agent: 'alice', reason: 'persist me' }) })).status, 200);
      assertKilled(await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice }));
    } finally {
      await t.stop();
    }

    t = await startGateway(yaml, { dir });
    try {
      assertKilled(await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice }), /persist me/);
      assert.equal((await call(`${t.agentUrl}/http/api/x`, { key: KEYS.bob })).status, 200);
      const list = await call(`${t.adminUrl}/api/kill`);
      assert.equal(list.json.kills.length, 1);
      assert.equal(list.json.kills[0].value, 'alice');
      assert.equal((await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', ...json({ agent: 'alice' }) })).status, 200);
    } finally {
      await t.stop();
    }

    t = await startGateway(yaml, { dir });
    try {
      assert.equal((await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice })).status, 200);
      assert.deepEqual((await call(`${t.adminUrl}/api/kill`)).json.kills, []);
    } finally {
      await t.stop();
    }
  });
});

describe('stop orders while another process holds the store', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(CONFIG(up.url));
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('a kill and an unkill are in force at once, and reach the store once the lock is released', async () => {
    // An operator's sqlite3 shell, say, in the middle of a write transaction: the store's write lock is taken.
    const other = new Database(join(t.dir, 'data', 'airlock.db'));
    const stored = () => (other.prepare("SELECT count(*) AS n FROM kills WHERE scope = 'agent' AND value = 'alice'").get() as { n: number }).n;
    try {
      other.exec('BEGIN IMMEDIATE');
      let t0 = performance.now();
      const k = await call(`${t.adminUrl}/api/kill`, { method: 'POST', ...json({ agent: 'alice', reason: 'store busy' }) });
      assert.equal(k.status, 200, k.text);
      assert.ok(performance.now() - t0 < 1000, `the kill took ${Math.round(performance.now() - t0)} ms: it waited for the lock`);
      assertKilled(await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice }), /store busy/);
      assert.equal((await call(`${t.adminUrl}/api/kill`)).json.kills.length, 1);
      assert.equal(stored(), 0, 'nothing can be written while the lock is held');
      assert.match(t.logs(), /the store did not take a kill switch, key revocation/);
      other.exec('COMMIT');
      await waitFor('the kill in the store', () => (stored() === 1 ? true : undefined));
      assert.equal((await call(`${t.agentUrl}/http/api/x`, { key: KEYS.bob })).status, 200);

      other.exec('BEGIN IMMEDIATE');
      t0 = performance.now();
      assert.equal((await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', ...json({ agent: 'alice' }) })).status, 200);
      assert.ok(performance.now() - t0 < 1000, `the unkill took ${Math.round(performance.now() - t0)} ms`);
      assert.deepEqual((await call(`${t.adminUrl}/api/kill`)).json.kills, []);
      assert.equal(stored(), 1);
      other.exec('COMMIT');
      await waitFor('the kill gone from the store', () => (stored() === 0 ? true : undefined));
      assert.equal((await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice })).status, 200);
    } finally {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
    }
  });

  it('a write the store refuses for good is reported and dropped, and holds up no later one', async () => {
    const other = new Database(join(t.dir, 'data', 'airlock.db'));
    try {
      other.exec("CREATE TRIGGER refuse_poison BEFORE INSERT ON kills WHEN NEW.value = 'http: * poison/**' BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END");
      assert.equal((await call(`${t.adminUrl}/api/kill`, { method: 'POST', ...json({ target: 'http: * poison/**' }) })).status, 200);
      assert.match(t.logs(), /refused a kill switch, key revocation.* for good \(refused by a test trigger\)/);
      assert.equal((await call(`${t.adminUrl}/api/kill`, { method: 'POST', ...json({ agent: 'carol' }) })).status, 200);
      const stored = (other.prepare('SELECT value FROM kills ORDER BY value').all() as { value: string }[]).map((r) => r.value);
      assert.deepEqual(stored, ['carol'], 'the later kill reached the store at once');
      assertKilled(await call(`${t.agentUrl}/http/api/x`, { key: KEYS.carol }));
    } finally {
      other.exec('DROP TRIGGER IF EXISTS refuse_poison');
      other.close();
      await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', ...json({ target: 'http: * poison/**' }) });
      await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', ...json({ agent: 'carol' }) });
    }
  });

  it('a key revocation is in force at once, survives a reload while unsaved, and reaches the store', async () => {
    const created = await call(`${t.adminUrl}/api/agents/bob/keys`, { method: 'POST', ...json({}) });
    assert.equal(created.status, 201, created.text);
    const { id, key } = created.json as { id: string; key: string };
    assert.equal((await call(`${t.agentUrl}/http/api/x`, { key })).status, 200);
    const other = new Database(join(t.dir, 'data', 'airlock.db'));
    const revokedAt = () => (other.prepare('SELECT revoked_at FROM keys WHERE id = ?').get(id) as { revoked_at: string | null }).revoked_at;
    try {
      other.exec('BEGIN IMMEDIATE');
      const t0 = performance.now();
      const r = await call(`${t.adminUrl}/api/keys/${id}`, { method: 'DELETE' });
      assert.equal(r.status, 200, r.text);
      assert.ok(performance.now() - t0 < 1000, `the revocation took ${Math.round(performance.now() - t0)} ms: it waited for the lock`);
      assert.equal(r.json.status, 'revoked');
      assert.equal((await call(`${t.agentUrl}/http/api/x`, { key })).status, 401);
      assert.equal(revokedAt(), null, 'nothing can be written while the lock is held');
      // A reload reads the keys from the store, where this one is not revoked yet.
      assert.deepEqual(t.gw.reload('test'), { ok: true });
      assert.equal((await call(`${t.agentUrl}/http/api/x`, { key })).status, 401, 'the reload brought a revoked key back');
      other.exec('COMMIT');
      await waitFor('the revocation in the store', () => revokedAt() ?? undefined);
      assert.equal((await call(`${t.agentUrl}/http/api/x`, { key })).status, 401);
    } finally {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
    }
  });
});
