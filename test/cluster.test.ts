/**
 * The scale-out cluster (SPEC section 1, `store.redis`), end to end: two gateways on one real Redis
 * share request and concurrency limits, loop and session guards, budgets, kill switches (set on
 * one, in force and cutting streams on the other), agent keys (made on one, usable and revocable
 * on the other) and the exchange feed; an outage of Redis degrades them to counting alone, and
 * what was set meanwhile is shared when it is back, without ever lifting a switch.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { request } from 'undici';
import { call, KEYS, startGateway, type Reply, type TestGateway } from './support/gateway.js';
import { eventually, openaiAgent } from './support/llm.js';
import { startFakeOpenAI, type FakeLlm } from './support/llm-upstream.js';
import { MEMBER_TTL_MS } from '../src/store/redis/link.js';
import { hashKey } from '../src/identity/keys.js';
import { freePort, runCli, startCliGateway, tempDir, writeConfig } from './support/cli.js';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.js';
import { startUpstream, echo, type Upstream } from './support/upstream.js';

const REDIS_PORT = 6379;
const key = (name: string) => `alk_${name}${'Z'.repeat(40 - name.length)}`;

/** Deletes every key under a test's prefix. */
async function dropPrefix(prefix: string): Promise<void> {
  const r = new Redis(REDIS_PORT, '127.0.0.1');
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await r.del(...keys);
  } while (cursor !== '0');
  r.disconnect();
}

/** An upstream that echoes, except `/slow/*`: it sends a first part and holds the response (in `held`, by path). */
function holdingUpstream(held: Map<string, ServerResponse>): Promise<Upstream> {
  return startUpstream((req, res, body) => {
    if (req.url?.startsWith('/slow/')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part\n');
      held.set(req.url, res);
      return;
    }
    echo(req, res, body);
  });
}

function configFor(up: Upstream, llm: FakeLlm, redisUrl: string, prefix: string): string {
  return `
agents:
  alice: { keys: ["${KEYS.alice}"], limits: { requests: 6/min } }
  bob: { keys: ["${KEYS.bob}"], limits: { concurrency: 2 } }
  carol: { keys: ["${KEYS.carol}"] }
  looper: { keys: ["${key('looper')}"] }
  spender: { keys: ["${key('spender')}"], limits: { budget: 0.03/day } }
  frugal: { keys: ["${key('frugal')}"], limits: { budget: 0.03/day } }
  streamer: { keys: ["${key('streamer')}"] }
  minted: {}
  solo: { keys: ["${key('solo')}"], limits: { concurrency: 1 } }
rules:
  - name: everything
    allow: ["http: * api/**", "llm: *"]
  - name: writes-need-a-human
    approve: ["http: POST api/held/**"]
guards:
  loop: { repeats: 5, window: 1m }
  session: { maxCalls: 4 }
http:
  services:
    api: { url: "${up.url}" }
llm:
  providers:
    openai: { type: openai, url: "${llm.url}/v1", key: sk-cluster }
  models:
    metered: { provider: openai, model: gpt-x, price: { input: 1000, output: 1000 } }
store:
  redis: { url: "${redisUrl}", prefix: "${prefix}" }
`;
}

describe('scale-out cluster (store.redis)', () => {
  let up: Upstream;
  let llm: FakeLlm;
  let a: TestGateway;
  let b: TestGateway;
  const prefix = `airlock-test-${randomBytes(4).toString('hex')}:`;
  /** Responses of `/slow/*` calls the upstream is holding, by path. */
  const held = new Map<string, ServerResponse>();

  before(async () => {
    up = await holdingUpstream(held);
    llm = await startFakeOpenAI();
    const yaml = configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix);
    a = await startGateway(yaml);
    b = await startGateway(yaml);
  });
  after(async () => {
    for (const res of held.values()) res.end();
    await a.stop();
    await b.stop();
    await up.close();
    await llm.close();
    await dropPrefix(prefix);
  });

  const via = (t: TestGateway, who: string, path: string, headers: Record<string, string> = {}): Promise<Reply> => call(`${t.agentUrl}/http/api/${path}`, { key: who, headers });

  it('a request limit counts calls on every gateway: 6/min across two gateways, then 429 with Retry-After on either', async () => {
    const n = up.received.length;
    for (let i = 0; i < 6; i++) assert.equal((await via(i % 2 ? b : a, KEYS.alice, `limit/${i}`)).status, 200, `call ${i + 1}`);
    for (const t of [a, b]) {
      const r = await via(t, KEYS.alice, 'limit/over');
      assert.equal(r.status, 429, r.text);
      assert.equal(r.json.error.code, 'rate_limited');
      assert.match(r.json.error.message, /agent "alice".*6\/min/);
      assert.ok(Number(r.headers['retry-after']) >= 1);
    }
    assert.equal(up.received.length, n + 6, 'only six calls reached the upstream');
  });

  it('a concurrency limit counts calls in flight on every gateway, and a finished call frees its slot for the other', async () => {
    const first = request(`${a.agentUrl}/http/api/slow/1`, { headers: { authorization: `Bearer ${KEYS.bob}` } });
    const second = request(`${b.agentUrl}/http/api/slow/2`, { headers: { authorization: `Bearer ${KEYS.bob}` } });
    const [r1, r2] = await Promise.all([first, second]);
    assert.equal(r1.statusCode, 200);
    assert.equal(r2.statusCode, 200);
    for (const t of [a, b]) {
      const r = await via(t, KEYS.bob, 'third');
      assert.equal(r.status, 429, r.text);
      assert.equal(r.json.error.code, 'concurrency_limited');
    }
    held.get('/slow/1')!.end('done');
    await r1.body.text();
    // The slot is released when the exchange ends, asynchronously: the next call gets it soon.
    await eventually('a free slot on gateway B', async () => ((await via(b, KEYS.bob, 'after')).status === 200 ? true : undefined), 3000);
    held.get('/slow/2')!.end('done');
    await r2.body.text();
  });

  it('the loop guard sees the same call repeated across gateways', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await via(i % 2 ? b : a, key('looper'), 'same/call')).status, 200);
    const r = await via(b, key('looper'), 'same/call');
    assert.equal(r.status, 429, r.text);
    assert.equal(r.json.error.code, 'loop_detected');
    // The alert B raised is listed on A too, with the node that raised it.
    const alert = await eventually('the loop alert on gateway A', async () => (await call(`${a.adminUrl}/api/alerts`)).json.alerts.find((x: { kind: string; agent?: string }) => x.kind === 'loop' && x.agent === 'looper'), 2000);
    assert.match(alert.data.node, /^[a-z0-9]{8,32}$/);
  });

  it('a session may make guards.session.maxCalls calls in all, whichever gateway takes them', async () => {
    const session = { 'x-airlock-session': `task-${randomBytes(3).toString('hex')}` };
    for (let i = 0; i < 4; i++) assert.equal((await via(i % 2 ? a : b, KEYS.carol, `session/${i}`, session)).status, 200);
    const r = await via(a, KEYS.carol, 'session/5', session);
    assert.equal(r.status, 429, r.text);
    assert.match(r.json.error.message, /session .* has made its 4 calls/);
  });

  it('a budget is spent across gateways: what one spent, the other refuses with 402', async () => {
    const ask = (t: TestGateway) => openaiAgent(t.agentUrl, key('spender')).chat.completions.create({ model: 'metered', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 });
    await ask(a); // $0.018 of $0.03
    await ask(b); // $0.036: over
    for (const t of [a, b]) {
      await assert.rejects(ask(t), (e: unknown) => {
        assert.ok(e instanceof OpenAI.APIError, String(e));
        assert.equal(e.status, 402);
        assert.match(e.message, /agent "spender" has spent \$0\.036/);
        return true;
      });
    }
  });

  it('a kill switch set on one gateway is in force on the other at once and cuts its streaming response; lifting it on the other frees both', async () => {
    const res = await request(`${b.agentUrl}/http/api/slow/stream`, { headers: { authorization: `Bearer ${key('streamer')}` } });
    assert.equal(res.statusCode, 200);
    const cut = res.body.text().then(
      () => 'ended',
      () => 'cut',
    );
    const k = await call(`${a.adminUrl}/api/kill`, { method: 'POST', body: JSON.stringify({ agent: 'streamer', reason: 'runaway' }), headers: { 'content-type': 'application/json' } });
    assert.equal(k.status, 200, k.text);
    const started = Date.now();
    assert.equal(await cut, 'cut', 'the stream on the other gateway was cut');
    assert.ok(Date.now() - started < 1000, 'within a second');
    const refused = await via(b, key('streamer'), 'after-kill');
    assert.equal(refused.status, 403);
    assert.equal(refused.json.error.code, 'killed');
    assert.match(refused.json.error.message, /runaway/);
    const listed = await call(`${b.adminUrl}/api/kill`);
    assert.ok(listed.json.kills.some((x: { scope: string; value: string }) => x.scope === 'agent' && x.value === 'streamer'), 'gateway B lists it');

    const lift = await call(`${b.adminUrl}/api/kill`, { method: 'DELETE', body: JSON.stringify({ agent: 'streamer' }), headers: { 'content-type': 'application/json' } });
    assert.equal(lift.status, 200, lift.text);
    await eventually('gateway A lifts it too', async () => ((await via(a, key('streamer'), 'after-lift')).status === 200 ? true : undefined), 2000);
  });

  it('a key made on one gateway works on the other; revoked on the other, it is refused on the first from the next request', async () => {
    const made = await call(`${a.adminUrl}/api/agents/minted/keys`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(made.status, 201, made.text);
    const newKey: string = made.json.key;
    const id: string = made.json.id;
    await eventually('the new key works on gateway B', async () => ((await call(`${b.agentUrl}/http/api/k`, { key: newKey })).status === 200 ? true : undefined), 2000);
    const listed = await call(`${b.adminUrl}/api/keys?agent=minted`);
    assert.ok(listed.json.keys.some((k: { id: string }) => k.id === id), 'gateway B lists the key');
    assert.ok(!JSON.stringify(listed.json).includes(newKey), 'never the key itself');
    const revoked = await call(`${b.adminUrl}/api/keys/${id}`, { method: 'DELETE' });
    assert.equal(revoked.status, 200, revoked.text);
    await eventually('gateway A refuses the revoked key', async () => ((await call(`${a.agentUrl}/http/api/k`, { key: newKey })).status === 401 ? true : undefined), 1000);
  });

  it('with no gateway running on its machine, `airlock kill` and `airlock keys revoke` reach the running cluster at once', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const admin = await freePort(); // nothing listens there: the CLI writes the store, and the cluster's copy
      const file = writeConfig(dir, `admin: { listen: "127.0.0.1:${admin}" }\n${configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix)}`);
      const killed = await runCli(['kill', 'carol', '--reason', 'from a laptop', '-c', file]);
      assert.equal(killed.code, 0, killed.stderr);
      assert.match(killed.stderr, /the cluster's running gateways have it now/);
      await eventually('carol refused on both gateways', async () => ((await via(a, KEYS.carol, 'k')).status === 403 && (await via(b, KEYS.carol, 'k')).status === 403 ? true : undefined), 2000);
      const lifted = await runCli(['unkill', 'carol', '-c', file]);
      assert.equal(lifted.code, 0, lifted.stderr);
      await eventually('carol served again', async () => ((await via(a, KEYS.carol, 'k')).status === 200 && (await via(b, KEYS.carol, 'k')).status === 200 ? true : undefined), 2000);

      // A key made through gateway A's admin port, revoked from a machine that never saw it.
      const made = await call(`${a.adminUrl}/api/agents/minted/keys`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
      assert.equal(made.status, 201);
      await eventually('the key works on B', async () => ((await call(`${b.agentUrl}/http/api/k`, { key: made.json.key })).status === 200 ? true : undefined), 2000);
      const revoked = await runCli(['keys', 'revoke', made.json.id, '-c', file]);
      assert.equal(revoked.code, 0, revoked.stderr);
      for (const t of [a, b]) await eventually('the key refused', async () => ((await call(`${t.agentUrl}/http/api/k`, { key: made.json.key })).status === 401 ? true : undefined), 2000);
    } finally {
      cleanup();
    }
  });

  it('a gateway killed with SIGKILL stops holding its concurrency slots once its membership expires', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const doomed = await startCliGateway(writeConfig(dir, configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix)));
      const calls = [1, 2].map((i) => request(`${doomed.agentUrl}/http/api/slow/doomed-${i}`, { headers: { authorization: `Bearer ${KEYS.bob}` } }));
      for (const c of calls) assert.equal((await c).statusCode, 200);
      assert.equal((await via(b, KEYS.bob, 'while-held')).json?.error?.code, 'concurrency_limited');
      await doomed.stop('SIGKILL');
      const t0 = Date.now();
      await eventually('the slots freed', async () => ((await via(b, KEYS.bob, 'after-death')).status === 200 ? true : undefined), 15_000);
      const waited = Date.now() - t0;
      assert.ok(waited <= MEMBER_TTL_MS + 2000, `freed after ${waited} ms`);
      for (const c of calls) await (await c).body.text().catch(() => {});
    } finally {
      cleanup();
    }
  });

  it('a reload that changes the store section is refused, and the gateway keeps its cluster', async () => {
    const before = readFileSync(a.configFile, 'utf8');
    writeFileSync(a.configFile, before.replace(`prefix: "${prefix}"`, 'prefix: "elsewhere:"'));
    try {
      const r = a.gw.reload('test');
      assert.equal(r.ok, false);
      assert.match((r as { error: string }).error, /store section .* changes only on restart/);
      assert.equal(a.gw.config().store.redis?.prefix, prefix);
    } finally {
      writeFileSync(a.configFile, before);
    }
  });

  it('a call held on one gateway is listed and approved through the other; a remembered grant made there is honoured by both until it is revoked', async () => {
    // Four identical calls in all: under the loop guard's 5 a minute.
    const post = (t: TestGateway, path: string) => call(`${t.agentUrl}/http/api/held/${path}`, { key: KEYS.carol, method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json' } });
    const heldCall = post(a, 'one');
    const pending = await eventually('the held call listed on gateway B', async () => {
      const r = await call(`${b.adminUrl}/api/approvals?status=pending`);
      return r.json.approvals.find((x: { action: string }) => x.action === 'http: POST api/held/one');
    });
    const one = await call(`${b.adminUrl}/api/approvals/${pending.id}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.status, 'pending');
    const decided = await call(`${b.adminUrl}/api/approvals/${pending.id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve', remember: '10m' }), headers: { 'content-type': 'application/json' } });
    assert.equal(decided.status, 200, decided.text);
    assert.equal(decided.json.status, 'approved');
    assert.equal((await heldCall).status, 200, 'the call held on gateway A went through');
    const again = await call(`${b.adminUrl}/api/approvals/${pending.id}`, { method: 'POST', body: JSON.stringify({ decision: 'deny' }), headers: { 'content-type': 'application/json' } });
    assert.equal(again.status, 404, 'decided once: no gateway holds it any more');

    // The grant is honoured on both gateways: the same call with the same body is not held.
    for (const t of [a, b]) await eventually('the remembered grant honoured', async () => ((await post(t, 'one')).status === 200 ? true : undefined), 2000);
    const grants = await call(`${a.adminUrl}/api/approvals/remembered`);
    const grant = grants.json.remembered.find((g: { approvalId: string }) => g.approvalId === pending.id);
    assert.ok(grant, 'gateway A lists the grant made through B');
    assert.equal((await call(`${a.adminUrl}/api/approvals/remembered/${grant.id}`, { method: 'DELETE' })).status, 200);

    // Revoked on A: B hears of it (a pub/sub message, milliseconds) and holds the call again.
    await eventually('B drops the grant', async () => ((await call(`${b.adminUrl}/api/approvals/remembered`)).json.remembered.some((g: { id: string }) => g.id === grant.id) ? undefined : true), 2000);
    const heldAgain = post(b, 'one');
    const p2 = await eventually('held again on B', async () => {
      const r = await call(`${a.adminUrl}/api/approvals?status=pending`);
      return r.json.approvals.find((x: { action: string }) => x.action === 'http: POST api/held/one');
    });
    const denied = await call(`${a.adminUrl}/api/approvals/${p2.id}`, { method: 'POST', body: JSON.stringify({ decision: 'deny', reason: 'not now' }), headers: { 'content-type': 'application/json' } });
    assert.equal(denied.status, 200, denied.text);
    const r = await heldAgain;
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'approval_denied');
  });

  it('a kill switch set while a gateway\'s subscription to the cluster was down (Redis dropped it) is in force there once it is back', async () => {
    const r = new Redis(REDIS_PORT, '127.0.0.1');
    try {
      const member = a.gw.cluster!.link.member;
      const clients = (await r.client('LIST')) as string;
      const id = /^id=(\d+) .*name=airlock-events:(\S+)/gm;
      let subId: string | undefined;
      for (const m of clients.matchAll(id)) if (m[2] === member) subId = m[1];
      assert.ok(subId, 'gateway A\'s subscriber connection');
      // Redis drops the subscriber (as it does one over its output buffer limit); the kill is
      // announced before gateway A has subscribed again.
      await r.client('KILL', 'ID', subId);
      b.gw.kill('agent', 'streamer', 'set while A was not listening', 'test');
      await eventually('the kill switch in force on gateway A', async () => ((await via(a, key('streamer'), 'sub-gap')).status === 403 ? true : undefined), 3000);
    } finally {
      b.gw.unkill('agent', 'streamer', 'test');
      r.disconnect();
    }
  });

  it("/api/events on one gateway shows the other gateway's exchanges, with the node that made them", async () => {
    const res = await request(`${b.adminUrl}/api/events`);
    let buf = '';
    res.body.setEncoding('utf8');
    res.body.on('data', (c: string) => (buf += c));
    res.body.on('error', () => {});
    const marker = `feed-${randomBytes(3).toString('hex')}`;
    const exchanges = () =>
      buf
        .split('\n\n')
        .filter((block) => block.startsWith('event: exchange\n'))
        .map((block) => JSON.parse(block.slice(block.indexOf('data: ') + 6)) as { agent: string; action: string; node?: string });
    // Watching starts within about a second: keep calling (a new path each time) until one shows up.
    let n = 0;
    const rec = await eventually(
      "gateway A's exchange on gateway B's feed",
      async () => {
        await via(a, KEYS.carol, `${marker}/${n++}`);
        return exchanges().find((e) => e.action.includes(marker));
      },
      5000,
    );
    assert.equal(rec.agent, 'carol');
    assert.match(rec.node!, /^[a-z0-9]{8,32}$/);
    res.body.destroy();
  });
});

describe('scale-out cluster: Redis outages', () => {
  let up: Upstream;
  let llm: FakeLlm;
  let proxy: TcpProxy;
  let a: TestGateway;
  let b: TestGateway;
  const bDir = mkdtempSync(join(tmpdir(), 'airlock-cluster-'));
  const prefix = `airlock-test-${randomBytes(4).toString('hex')}:`;
  /** Responses of `/slow/*` calls the upstream is holding, by path. */
  const held = new Map<string, ServerResponse>();

  before(async () => {
    up = await holdingUpstream(held);
    llm = await startFakeOpenAI();
    proxy = await startTcpProxy(REDIS_PORT);
    a = await startGateway(configFor(up, llm, `redis://127.0.0.1:${proxy.port}`, prefix));
    b = await startGateway(configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix), { dir: bDir });
  });
  after(async () => {
    for (const res of held.values()) res.end();
    await a.stop();
    await b.stop();
    rmSync(bDir, { recursive: true, force: true });
    await proxy.close();
    await up.close();
    await llm.close();
    await dropPrefix(prefix);
  });

  it('cut off from Redis, a gateway keeps serving and counting alone; a kill switch set there meanwhile reaches the cluster when the link is back', async () => {
    proxy.cut();
    await eventually('gateway A to notice', () => (a.logs().includes('lost the link to Redis') ? true : undefined), 5000);
    const linkUp = async () => /^airlock_cluster_link_up (\d)$/m.exec((await call(`${a.adminUrl}/metrics`)).text)?.[1];
    await eventually('the link metric at 0', async () => ((await linkUp()) === '0' ? true : undefined), 3000);
    // Alone, gateway A still enforces alice's 6/min by itself.
    for (let i = 0; i < 6; i++) assert.equal((await call(`${a.agentUrl}/http/api/alone/${i}`, { key: KEYS.alice })).status, 200);
    assert.equal((await call(`${a.agentUrl}/http/api/alone/7`, { key: KEYS.alice })).status, 429);
    const k = await call(`${a.adminUrl}/api/kill`, { method: 'POST', body: JSON.stringify({ agent: 'carol', reason: 'set while cut off' }), headers: { 'content-type': 'application/json' } });
    assert.equal(k.status, 200, k.text);
    assert.equal((await call(`${b.agentUrl}/http/api/x`, { key: KEYS.carol })).status, 200, 'gateway B has not heard of it yet');
    proxy.restore();
    await eventually('the kill switch on gateway B', async () => ((await call(`${b.agentUrl}/http/api/x`, { key: KEYS.carol })).status === 403 ? true : undefined), 8000);
    // Logged once the whole sync is done, which may be just after the switch reached gateway B.
    await eventually('the link back on gateway A', () => (a.logs().includes('the link to Redis is back') ? true : undefined), 2000);
    await eventually('the link metric at 1', async () => ((await linkUp()) === '1' ? true : undefined), 3000);
  });

  it('an admission that Redis ran after the gateway stopped waiting (a slow Redis) does not keep a concurrency slot for ever', async () => {
    const solo = key('solo');
    assert.equal((await call(`${a.agentUrl}/http/api/warm`, { key: solo })).status, 200);
    proxy.stall();
    // Gateway A waits 1 s for Redis, then counts this call alone; the call is made and ends.
    const r = await call(`${a.agentUrl}/http/api/while-stalled`, { key: solo });
    assert.equal(r.status, 200, r.text);
    proxy.resume(); // Redis now runs the admission it was sent: a slot held for gateway A
    // Nothing is in flight anywhere: solo's one slot is free on either gateway.
    for (const t of [b, a]) await eventually('a free slot for solo', async () => ((await call(`${t.agentUrl}/http/api/after`, { key: solo })).status === 200 ? true : undefined), 3000);
  });

  it('a call that ends while its gateway is cut off from Redis frees its concurrency slot when the link is back', async () => {
    const solo = key('solo');
    const res = await request(`${a.agentUrl}/http/api/slow/cut-off`, { headers: { authorization: `Bearer ${solo}` } });
    assert.equal(res.statusCode, 200);
    assert.equal((await call(`${b.agentUrl}/http/api/busy`, { key: solo })).json?.error?.code, 'concurrency_limited');
    proxy.cut();
    await eventually('gateway A to notice', () => (a.gw.cluster!.link.available ? undefined : true), 5000);
    held.get('/slow/cut-off')!.end('done');
    await res.body.text();
    proxy.restore();
    await eventually('the slot free on gateway B', async () => ((await call(`${b.agentUrl}/http/api/freed`, { key: solo })).status === 200 ? true : undefined), 8000);
  });

  it('after an outage, the cluster\'s pending approvals are those its gateways hold: ended ones leave the list, ones held meanwhile join it', async () => {
    const post = (path: string) => call(`${a.agentUrl}/http/api/held/${path}`, { key: key('streamer'), method: 'POST', body: '{"z":3}', headers: { 'content-type': 'application/json' } });
    const pendingOn = async (t: TestGateway, path: string) => (await call(`${t.adminUrl}/api/approvals?status=pending`)).json.approvals.find((x: { action: string }) => x.action === `http: POST api/held/${path}`) as { id: string } | undefined;
    const first = post('before-outage');
    const p1 = await eventually('listed on gateway B', () => pendingOn(b, 'before-outage'), 3000);

    proxy.cut();
    await eventually('gateway A to notice', () => (a.gw.cluster!.link.available ? undefined : true), 5000);
    const denied = await call(`${a.adminUrl}/api/approvals/${p1.id}`, { method: 'POST', body: JSON.stringify({ decision: 'deny' }), headers: { 'content-type': 'application/json' } });
    assert.equal(denied.status, 200, denied.text);
    assert.equal((await first).status, 403);
    const second = post('during-outage');
    await eventually('held on gateway A', () => pendingOn(a, 'during-outage'), 3000);
    proxy.restore();

    await eventually('the denied one gone from gateway B\'s list', async () => ((await pendingOn(b, 'before-outage')) ? undefined : true), 8000);
    const p2 = await eventually('the one held meanwhile listed on gateway B', () => pendingOn(b, 'during-outage'), 3000);
    const d2 = await call(`${b.adminUrl}/api/approvals/${p2.id}`, { method: 'POST', body: JSON.stringify({ decision: 'deny' }), headers: { 'content-type': 'application/json' } });
    assert.equal(d2.status, 200, d2.text);
    assert.equal((await second).status, 403);
  });

  it('a remembered grant revoked on a gateway cut off from Redis is revoked on the others when the link is back', async () => {
    const post = () => call(`${a.agentUrl}/http/api/held/remember`, { key: key('streamer'), method: 'POST', body: '{"y":2}', headers: { 'content-type': 'application/json' } });
    const heldCall = post();
    const pending = await eventually('the held call on gateway A', async () => (await call(`${a.adminUrl}/api/approvals?status=pending`)).json.approvals.find((x: { action: string }) => x.action === 'http: POST api/held/remember'));
    const decided = await call(`${a.adminUrl}/api/approvals/${pending.id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve', remember: '10m' }), headers: { 'content-type': 'application/json' } });
    assert.equal(decided.status, 200, decided.text);
    assert.equal((await heldCall).status, 200);
    const grantOn = async (t: TestGateway) => (await call(`${t.adminUrl}/api/approvals/remembered`)).json.remembered.find((g: { approvalId: string }) => g.approvalId === pending.id) as { id: string } | undefined;
    const grant = await eventually('the grant on gateway B', () => grantOn(b), 2000);

    proxy.cut();
    await eventually('gateway A to notice', () => (a.gw.cluster!.link.available ? undefined : true), 5000);
    assert.equal((await call(`${a.adminUrl}/api/approvals/remembered/${grant.id}`, { method: 'DELETE' })).status, 200);
    proxy.restore();
    await eventually('gateway B drops the revoked grant', async () => ((await grantOn(b)) ? undefined : true), 8000);
  });

  it('what a gateway spends while cut off from Redis is the cluster\'s spend once the link is back', async () => {
    const ask = (t: TestGateway) => openaiAgent(t.agentUrl, key('frugal'), { maxRetries: 0 }).chat.completions.create({ model: 'metered', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 });
    const n = llm.seen.length;
    llm.next({ delayMs: 800 });
    const slow = ask(a); // admitted through the cluster
    await eventually('the slow call at the provider', () => (llm.seen.length > n ? true : undefined), 3000);
    proxy.cut();
    await eventually('gateway A to notice', () => (a.gw.cluster!.link.available ? undefined : true), 5000);
    await slow; // ends while cut off: $0.018
    await ask(a); // admitted by gateway A alone: $0.036 in all, over frugal's $0.03
    proxy.restore();
    // Gateway B has no spend of frugal's in its own store: only the cluster's total can refuse it.
    // Until then, B admits the probes, which the provider fails (so they spend nothing).
    llm.always({ status: 500 });
    try {
      const refused = await eventually(
        'gateway B to refuse frugal',
        async () => {
          const e = await ask(b).then(() => undefined, (err: unknown) => err);
          return e instanceof OpenAI.APIError && e.status === 402 ? e : undefined;
        },
        8000,
      );
      assert.match(refused.message, /agent "frugal" has spent \$0\.036/);
    } finally {
      llm.always(undefined);
    }
  });

  it('Redis losing its data while a call is in flight hands out no budget again: the call\'s spend does not start a fresh total', async () => {
    const ask = (t: TestGateway) => openaiAgent(t.agentUrl, key('spender'), { maxRetries: 0 }).chat.completions.create({ model: 'metered', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 });
    await ask(a); // $0.018 of $0.03
    const n = llm.seen.length;
    llm.next({ delayMs: 500 });
    const slow = ask(a);
    await eventually('the slow call at the provider', () => (llm.seen.length > n ? true : undefined), 3000);
    await dropPrefix(prefix); // Redis restarted empty (or flushed) while the call runs
    await slow; // $0.036 spent in all
    await assert.rejects(ask(a), (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, 402);
      assert.match(e.message, /agent "spender" has spent \$0\.036/);
      return true;
    });
  });

  it('Redis losing its data (restarted empty) lifts no kill switch: a gateway puts its switches back, and a new gateway gets them', async () => {
    await dropPrefix(prefix);
    // Gateway B keeps carol's switch in its own store; restarted, it merges with the empty Redis.
    await b.stop();
    b = await startGateway(configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix), { dir: bDir });
    assert.equal((await call(`${b.agentUrl}/http/api/x`, { key: KEYS.carol })).status, 403, 'still in force on B');
    const c = await startGateway(configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix));
    try {
      const r = await call(`${c.agentUrl}/http/api/x`, { key: KEYS.carol });
      assert.equal(r.status, 403, 'a new gateway, with an empty store, has it from the cluster before its first call');
      assert.equal(r.json.error.code, 'killed');
    } finally {
      await c.stop();
    }
  });
});

describe('scale-out cluster: what comes from Redis', () => {
  it('a gateway joining a cluster with thousands of stored keys takes them at once (not in time quadratic in their number)', async () => {
    const up = await startUpstream();
    const llm = await startFakeOpenAI();
    const prefix = `airlock-test-${randomBytes(4).toString('hex')}:`;
    const r = new Redis(REDIS_PORT, '127.0.0.1');
    const real = key('joiner');
    const records: Record<string, string> = {};
    for (let i = 0; i < 4000; i++) {
      const id = `key_${randomBytes(8).toString('hex')}`;
      const hash = i === 0 ? hashKey(real) : randomBytes(32).toString('hex');
      records[id] = JSON.stringify({ id, agent: 'minted', hash, prefix: 'alk_x', source: 'store', createdAt: new Date().toISOString() });
    }
    await r.hset(`${prefix}keys`, records);
    let gw: TestGateway | undefined;
    try {
      const started = Date.now();
      gw = await startGateway(configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix));
      const took = Date.now() - started;
      assert.ok(took < 6000, `started in ${took} ms`);
      assert.equal((await call(`${gw.agentUrl}/http/api/joined`, { key: real })).status, 200, 'a key the cluster has works at once');
    } finally {
      await gw?.stop();
      r.disconnect();
      await up.close();
      await llm.close();
      await dropPrefix(prefix);
    }
  });

  it('Redis losing its data with thousands of stored keys: the gateways put them back without stalling on each other\'s announcements', async () => {
    const up = await startUpstream();
    const llm = await startFakeOpenAI();
    const prefix = `airlock-test-${randomBytes(4).toString('hex')}:`;
    const r = new Redis(REDIS_PORT, '127.0.0.1');
    const records: Record<string, string> = {};
    for (let i = 0; i < 4000; i++) {
      const id = `key_${randomBytes(8).toString('hex')}`;
      records[id] = JSON.stringify({ id, agent: 'minted', hash: randomBytes(32).toString('hex'), prefix: 'alk_x', source: 'store', createdAt: new Date().toISOString() });
    }
    await r.hset(`${prefix}keys`, records);
    const gws: TestGateway[] = [];
    try {
      for (let i = 0; i < 2; i++) gws.push(await startGateway(configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix)));
      let worst = 0;
      let last = performance.now();
      const probe = setInterval(() => {
        const now = performance.now();
        worst = Math.max(worst, now - last - 20);
        last = now;
      }, 20);
      try {
        await dropPrefix(prefix); // Redis restarted empty: each gateway puts the keys back and announces them
        await eventually('the keys back in Redis', async () => ((await r.hlen(`${prefix}keys`)) === 4000 ? true : undefined), 15_000);
        await new Promise((res) => setTimeout(res, 3500)); // the other gateway's heartbeat finds it out too
      } finally {
        clearInterval(probe);
      }
      assert.ok(worst < 2000, `the event loop stalled for ${Math.round(worst)} ms`);
    } finally {
      for (const g of gws) await g.stop();
      r.disconnect();
      await up.close();
      await llm.close();
      await dropPrefix(prefix);
    }
  });

  it('a malformed message on the cluster channel or the exchange feed (JSON null) is ignored, not a crash', async () => {
    const { dir, cleanup } = tempDir();
    const up = await startUpstream();
    const llm = await startFakeOpenAI();
    const prefix = `airlock-test-${randomBytes(4).toString('hex')}:`;
    const r = new Redis(REDIS_PORT, '127.0.0.1');
    const gw = await startCliGateway(writeConfig(dir, configFor(up, llm, `redis://127.0.0.1:${REDIS_PORT}`, prefix)));
    try {
      // Someone watching /api/events: the gateway then listens to the cluster's exchange feed too.
      const events = await request(`${gw.adminUrl}/api/events`);
      events.body.on('error', () => {});
      await eventually('the feed subscribed', async () => (Number(((await r.pubsub('NUMSUB', `${prefix}feed`)) as [string, number])[1]) > 0 ? true : undefined), 5000);
      for (const text of ['null', '[null]', '7', '"text"']) {
        await r.publish(`${prefix}events`, text);
        await r.publish(`${prefix}feed`, text);
      }
      await r.publish(`${prefix}feed`, JSON.stringify({ from: 'elsewhere', node: 'n', records: [null, 5] }));
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(gw.child.exitCode, null, `the gateway is still running\n${gw.stderr()}`);
      assert.equal((await call(`${gw.agentUrl}/http/api/still-here`, { key: KEYS.carol })).status, 200);
      events.body.destroy();
    } finally {
      await gw.stop();
      r.disconnect();
      await up.close();
      await llm.close();
      await dropPrefix(prefix);
      cleanup();
    }
  });
});

describe('scale-out cluster: the cluster copy of keys', () => {
  it('a key record is never put over a revoked one (a gateway that missed the revocation cannot undo it)', async () => {
    const prefix = `airlock-test-${randomBytes(4).toString('hex')}:`;
    const { RedisLink } = await import('../src/store/redis/link.js');
    const { ClusterSync } = await import('../src/store/redis/sync.js');
    const { createLogger } = await import('../src/telemetry/logger.js');
    const link = new RedisLink(`redis://127.0.0.1:${REDIS_PORT}`, prefix, 'testnode01', createLogger('silent'));
    // This gateway's side: it knows nothing (the revocation it missed is what the test is about).
    const sync = new ClusterSync(link, { localKills: () => [], applyKill: () => {}, applyUnkill: () => {}, localKeys: () => [], applyKey: () => {} });
    const r = new Redis(REDIS_PORT, '127.0.0.1');
    try {
      assert.ok(await link.connected(3000));
      const record = { id: 'key_stale000001', agent: 'carol', hash: hashKey(KEYS.carol), prefix: 'alk_caro', source: 'store' as const, createdAt: new Date().toISOString(), expiresAt: undefined, revokedAt: undefined };
      await r.hset(`${prefix}keys`, record.id, JSON.stringify({ ...record, revokedAt: '2026-01-01T00:00:00.000Z' }));
      sync.keyChanged(record);
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(JSON.parse((await r.hget(`${prefix}keys`, record.id))!).revokedAt, '2026-01-01T00:00:00.000Z', 'still revoked');
      // A revocation over a live record is taken.
      const other = { ...record, id: 'key_live0000001' };
      sync.keyChanged(other);
      sync.keyChanged({ ...other, revokedAt: '2026-01-02T00:00:00.000Z' });
      await eventually('the revocation stored', async () => (JSON.parse((await r.hget(`${prefix}keys`, other.id)) ?? '{}').revokedAt ? true : undefined), 2000);
    } finally {
      await link.close();
      r.disconnect();
      await dropPrefix(prefix);
    }
  });
});

describe('scale-out cluster: a Redis that refuses the limit checks', () => {
  it('the gateway counts alone and says so in its log; the password in the Redis URL is never logged', async () => {
    const prefix = `airlock-test-${randomBytes(4).toString('hex')}:`;
    const user = `airlock-test-${randomBytes(4).toString('hex')}`;
    const password = `pw-${randomBytes(8).toString('hex')}`;
    const r = new Redis(REDIS_PORT, '127.0.0.1');
    await r.call('ACL', 'SETUSER', user, 'on', `>${password}`, '~*', '&*', '+@all', '-evalsha', '-eval');
    const up = await startUpstream();
    const llm = await startFakeOpenAI();
    const t = await startGateway(configFor(up, llm, `redis://${user}:${password}@127.0.0.1:${REDIS_PORT}`, prefix));
    try {
      for (let i = 0; i < 6; i++) assert.equal((await call(`${t.agentUrl}/http/api/refused/${i}`, { key: KEYS.alice })).status, 200);
      assert.equal((await call(`${t.agentUrl}/http/api/refused/7`, { key: KEYS.alice })).status, 429, "alice's 6/min, counted by this gateway alone");
      assert.match(t.logs(), /Redis refused a limit check: this gateway counts alone/);
      assert.equal(t.logs().split('\n').filter((l) => l.includes('Redis refused a limit check')).length, 1, 'logged once, not per call');
      assert.ok(!t.logs().includes(password), 'the password is never logged');
    } finally {
      await t.stop();
      await up.close();
      await llm.close();
      await r.call('ACL', 'DELUSER', user);
      r.disconnect();
      await dropPrefix(prefix);
    }
  });
});
