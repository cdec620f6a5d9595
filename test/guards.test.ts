/**
 * Runaway guards (SPEC section 4): loop detection on identical calls, with an alert an operator
 * sees in `GET /api/alerts` and on the `/api/events` feed, and the per-session call cap.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { request } from 'undici';
import type { Exchange, Verdict } from '../src/pipeline/types.js';
import { guardsPolicy } from '../src/policies/guards/policy.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { startUpstream, type Upstream } from './support/upstream.js';

interface SseEvent {
  event: string;
  data: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test convenience
}

/** Subscribes to an SSE endpoint and collects its events until closed. */
async function subscribe(url: string): Promise<{ events: SseEvent[]; next(pred: (e: SseEvent) => boolean, ms?: number): Promise<SseEvent>; close(): void }> {
  const res = await request(url);
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /text\/event-stream/);
  const events: SseEvent[] = [];
  let buf = '';
  res.body.setEncoding('utf8');
  res.body.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length) events.push({ event, data: JSON.parse(data.join('\n')) });
    }
  });
  res.body.on('error', () => {});
  return {
    events,
    async next(pred, ms = 2000) {
      const end = Date.now() + ms;
      for (;;) {
        const e = events.find(pred);
        if (e) return e;
        if (Date.now() > end) throw new Error(`no matching event within ${ms}ms; got ${JSON.stringify(events.map((x) => x.event))}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close: () => res.body.destroy(),
  };
}

describe('guards: loop detection', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: api
    allow: ["http: * api/**"]
guards:
  loop: { repeats: 3, window: 60s }
http:
  services:
    api: { url: "${up.url}" }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  const hit = (path: string, opts: { key?: string; method?: string; body?: string } = {}) =>
    call(`${t.agentUrl}/http/api/${path}`, { key: opts.key ?? KEYS.alice, method: opts.method ?? 'GET', ...(opts.body !== undefined ? { body: opts.body, headers: { 'content-type': 'application/json' } } : {}) });

  it('the 4th identical call is 429 loop_detected; a different query, body, method or agent still passes', async () => {
    const n = up.received.length;
    for (let i = 0; i < 3; i++) assert.equal((await hit('search?q=same')).status, 200, `call ${i + 1}`);
    const r = await hit('search?q=same');
    assert.equal(r.status, 429);
    assert.equal(r.json.error.code, 'loop_detected');
    assert.match(r.json.error.message, /same arguments/);
    assert.match(String(r.headers['retry-after']), /^\d+$/);
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.equal(up.received.length, n + 3, 'the looping call was not forwarded');

    assert.equal((await hit('search?q=other')).status, 200, 'different query');
    assert.equal((await hit('search?q=same', { key: KEYS.bob })).status, 200, 'different agent');

    for (let i = 0; i < 3; i++) assert.equal((await hit('items', { method: 'POST', body: '{"n":1}' })).status, 200);
    const loop = await hit('items', { method: 'POST', body: '{"n":1}' });
    assert.equal(loop.status, 429);
    assert.equal(loop.json.error.code, 'loop_detected');
    assert.equal((await hit('items', { method: 'POST', body: '{"n":2}' })).status, 200, 'different body');
    assert.equal((await hit('items', { method: 'PUT', body: '{"n":1}' })).status, 200, 'different method');
  });

  it('raises a `loop` alert, listed by GET /api/alerts', async () => {
    const a = await call(`${t.adminUrl}/api/alerts`);
    assert.equal(a.status, 200);
    const loops = (a.json.alerts as { kind: string; agent?: string; message: string; data?: { action?: string } }[]).filter((x) => x.kind === 'loop');
    assert.ok(loops.length >= 1, 'a loop alert exists');
    const first = loops.find((x) => x.data?.action === 'http: GET api/search');
    assert.ok(first, 'the alert names the looping action');
    assert.equal(first.agent, 'alice');
  });

  it('delivers the loop alert and the refused exchange on the /api/events feed', async () => {
    const feed = await subscribe(`${t.adminUrl}/api/events`);
    try {
      for (let i = 0; i < 3; i++) assert.equal((await hit('feed/x', { key: KEYS.bob })).status, 200);
      const r = await hit('feed/x', { key: KEYS.bob });
      assert.equal(r.json.error.code, 'loop_detected');
      const alert = await feed.next((e) => e.event === 'alert' && e.data.kind === 'loop');
      assert.equal(alert.data.agent, 'bob');
      assert.equal(alert.data.data.action, 'http: GET api/feed/x');
      const ex = await feed.next((e) => e.event === 'exchange' && e.data.id === r.json.error.request_id);
      assert.equal(ex.data.decision, 'limited');
      assert.equal(ex.data.code, 'loop_detected');
    } finally {
      feed.close();
    }
  });
  it('an alert raised while another process holds the store is published at once and stored once the lock is free', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await hit('locked?q=1')).status, 200);
    const feed = await subscribe(`${t.adminUrl}/api/events`);
    const other = new Database(join(t.dir, 'data', 'airlock.db'));
    const listed = async () => ((await call(`${t.adminUrl}/api/alerts`)).json.alerts as { kind: string; data?: { action?: string } }[]).some((a) => a.kind === 'loop' && a.data?.action === 'http: GET api/locked');
    try {
      other.exec('BEGIN IMMEDIATE'); // an operator's sqlite3 shell in a write transaction, say
      const t0 = performance.now();
      const r = await hit('locked?q=1');
      assert.equal(r.status, 429, r.text);
      assert.equal(r.json.error.code, 'loop_detected');
      assert.ok(performance.now() - t0 < 1000, `the refusal took ${Math.round(performance.now() - t0)} ms: it waited for the store`);
      await feed.next((e) => e.event === 'alert' && e.data.data?.action === 'http: GET api/locked');
      assert.equal(await listed(), false, 'nothing can be written while the lock is held');
      other.exec('COMMIT');
      const end = Date.now() + 3000;
      while (!(await listed())) {
        assert.ok(Date.now() < end, 'the alert never reached the store');
        await new Promise((res) => setTimeout(res, 50));
      }
    } finally {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
      feed.close();
    }
  });
});

describe('guards: session call cap', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: api
    allow: ["http: * api/**"]
guards:
  session: { maxCalls: 2 }
http:
  services:
    api: { url: "${up.url}" }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  const hit = (path: string, session?: string) => call(`${t.agentUrl}/http/api/${path}`, { key: KEYS.alice, headers: session ? { 'x-airlock-session': session } : {} });

  it('the third call of a session is 429 rate_limited; another session and session-less calls are unaffected', async () => {
    const n = up.received.length;
    assert.equal((await hit('a', 'task-1')).status, 200);
    assert.equal((await hit('b', 'task-1')).status, 200);
    const r = await hit('c', 'task-1');
    assert.equal(r.status, 429);
    assert.equal(r.json.error.code, 'rate_limited');
    assert.match(r.json.error.message, /session "task-1"/);
    assert.equal(up.received.length, n + 2, 'the refused call was not forwarded');
    assert.equal((await hit('d', 'task-1')).status, 429, 'the session stays capped');

    assert.equal((await hit('e', 'task-2')).status, 200, 'a different session');
    for (let i = 0; i < 4; i++) assert.equal((await hit(`f${i}`)).status, 200, 'no session: no cap');
  });
});

describe('guards: loop and session together', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: api
    allow: ["http: * api/**"]
guards:
  loop: { repeats: 3, window: 60s }
  session: { maxCalls: 2 }
http:
  services:
    api: { url: "${up.url}" }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  const hit = (path: string, session: string) => call(`${t.agentUrl}/http/api/${path}`, { key: KEYS.alice, headers: { 'x-airlock-session': session } });

  it('calls refused by the session cap were never made, so they do not count as loop repeats', async () => {
    assert.equal((await hit('a', 's1')).status, 200);
    assert.equal((await hit('b', 's1')).status, 200);
    for (let i = 0; i < 3; i++) {
      const r = await hit('x', 's1');
      assert.equal(r.json.error.code, 'rate_limited', 'session cap');
    }
    // `x` has not been made once; in a fresh session it must go through.
    const r = await hit('x', 's2');
    assert.equal(r.status, 200, r.text);
  });
});

describe('session guard memory', () => {
  it('remembers at most its cap of sessions, forgetting the least recently used first', () => {
    const policy = guardsPolicy(() => {}, () => 1_000, 3);
    const judge = (session: string) => policy.before!({ agent: { name: 'a' }, session, action: 'http: GET s/x', argsKey: '', config: { guards: { loop: undefined, sessionMaxCalls: 1 } } } as unknown as Exchange) as Verdict;
    assert.equal(judge('s1').kind, 'allow');
    assert.equal(judge('s1').kind, 'deny', 'one call per session');
    assert.equal(judge('s2').kind, 'allow');
    assert.equal(judge('s3').kind, 'allow');
    assert.equal(judge('s2').kind, 'deny', 's2 is remembered, and now the most recently used');
    assert.equal(judge('s4').kind, 'allow'); // a 4th session: s1, the least recently used, is forgotten
    assert.equal(judge('s1').kind, 'allow', 's1 was forgotten');
    assert.equal(judge('s2').kind, 'deny', 's2 was kept');
  });
});
