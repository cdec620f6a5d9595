/**
 * The admin port (SPEC section 9) and the audit trail as an operator reads it (SPEC section 8):
 * agents and keys, audit queries and the hash chain, metrics, health, the event feed, the admin
 * token, and the separation of the admin and agent ports.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { ConfigError } from '../src/config/load.js';
import { Gateway } from '../src/gateway.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { startUpstream, type Upstream } from './support/upstream.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- records and bodies are checked field by field
type Rec = Record<string, any>;

const LIM_KEY = `alk_lim${'L'.repeat(37)}`;
const json = (v: unknown) => ({ body: JSON.stringify(v), headers: { 'content-type': 'application/json' } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Canonical JSON as SPEC section 8 defines it for the chain: sorted keys, no whitespace. */
function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .filter((k) => o[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

/** Sum of a Prometheus sample's values whose labels include every given pair. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let found: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    found = (found ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return found;
}

interface SseEvent {
  event: string;
  data: Rec;
}

async function subscribe(url: string): Promise<{ next(pred: (e: SseEvent) => boolean, ms?: number): Promise<SseEvent>; close(): void }> {
  const res = await request(url);
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/event-stream/);
  const events: SseEvent[] = [];
  let buf = '';
  res.body.setEncoding('utf8');
  res.body.on('data', (c: string) => {
    buf += c;
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (ev && data) events.push({ event: ev, data: JSON.parse(data) as Rec });
    }
  });
  res.body.on('error', () => {});
  return {
    async next(pred, ms = 2000) {
      return waitFor('an event', () => events.find(pred), ms);
    },
    close: () => res.body.destroy(),
  };
}

describe('admin API', () => {
  let up: Upstream;
  let t: TestGateway;
  const created: string[] = [];
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { team: red, keys: ["${KEYS.alice}"], limits: { requests: 1000/min, concurrency: 5 } }
  bob: { keys: ["${KEYS.bob}"] }
  lim: { keys: ["${LIM_KEY}"], limits: { requests: 1/min } }
rules:
  - name: api
    allow: ["http: * api/**"]
  - name: no-admin
    deny: ["http: * api/admin/**"]
http:
  services:
    api: { url: "${up.url}" }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  const admin = (path: string, opts: Parameters<typeof call>[1] = {}) => call(`${t.adminUrl}${path}`, opts);
  const agent = (path: string, key: string, opts: Parameters<typeof call>[1] = {}) => call(`${t.agentUrl}${path}`, { key, ...opts });

  describe('agents and keys', () => {
    it('GET /api/agents lists the declared agents with team, limits and key count', async () => {
      const r = await admin('/api/agents');
      assert.equal(r.status, 200);
      const byName = new Map((r.json.agents as Rec[]).map((a) => [a['name'], a]));
      assert.deepEqual([...byName.keys()].sort(), ['alice', 'bob', 'lim']);
      assert.equal(byName.get('alice')!['team'], 'red');
      assert.equal(byName.get('alice')!['limits'].requests, '1000/min');
      assert.equal(byName.get('alice')!['limits'].concurrency, 5);
      assert.equal(byName.get('alice')!['keys'], 1);
      assert.equal(byName.get('bob')!['team'], null);
      assert.ok(!r.text.includes(KEYS.alice), 'never the key itself');
    });

    it('POST /api/agents/<name>/keys returns a key once that works at once; DELETE /api/keys/<id> revokes it for the very next request', async () => {
      const c = await admin('/api/agents/bob/keys', { method: 'POST', ...json({}) });
      assert.equal(c.status, 201);
      const key: string = c.json.key;
      created.push(key);
      assert.match(key, /^alk_[0-9A-Za-z]{32,}$/);
      assert.equal(c.json.agent, 'bob');
      assert.equal(c.json.prefix, key.slice(0, 8));
      assert.equal(c.json.status, 'active');
      assert.equal(c.json.hash, undefined);

      const ok = await agent('/http/api/with-new-key', key);
      assert.equal(ok.status, 200);

      const list = await admin('/api/keys');
      assert.equal(list.status, 200);
      const mine = (list.json.keys as Rec[]).find((k) => k['id'] === c.json.id);
      assert.ok(mine, 'the new key is listed');
      assert.equal(mine['status'], 'active');
      assert.equal(mine['key'], undefined, 'the key is shown only once');
      assert.ok(!list.text.includes(key));
      assert.ok(!list.text.includes(createHash('sha256').update(key).digest('hex')), 'hashes are never exposed');
      assert.ok(!list.text.includes(createHash('sha256').update(KEYS.alice).digest('hex')));
      for (const k of list.json.keys as Rec[]) assert.equal(k['hash'], undefined);
      assert.equal((await admin('/api/agents')).json.agents.find((a: Rec) => a['name'] === 'bob').keys, 2);

      const d = await admin(`/api/keys/${c.json.id}`, { method: 'DELETE' });
      assert.equal(d.status, 200);
      assert.equal(d.json.status, 'revoked');
      const refused = await agent('/http/api/with-new-key', key);
      assert.equal(refused.status, 401);
      assert.equal(refused.json.error.code, 'unauthenticated');
      assert.equal(((await admin('/api/keys?agent=bob')).json.keys as Rec[]).find((k) => k['id'] === c.json.id)!['status'], 'revoked');
      assert.equal((await agent('/http/api/x', KEYS.bob)).status, 200, 'the config key of the same agent still works');
      assert.ok(!t.logs().includes(key), 'the key is never logged');
    });

    it('DELETE of an unknown key is 404; a config key cannot be revoked over the API', async () => {
      const r = await admin('/api/keys/key_doesnotexist', { method: 'DELETE' });
      assert.equal(r.status, 404);
      assert.equal(r.json.error.code, 'not_found');
      const cfg = await admin('/api/keys/config:alice:0', { method: 'DELETE' });
      assert.equal(cfg.status, 400);
      assert.equal((await agent('/http/api/x', KEYS.alice)).status, 200);
    });

    it('a key for an unknown agent is 404 not_found', async () => {
      const r = await admin('/api/agents/nobody/keys', { method: 'POST', ...json({}) });
      assert.equal(r.status, 404);
      assert.equal(r.json.error.code, 'not_found');
      assert.match(r.json.error.message, /nobody/);
    });

    it('a key with {expires: "1s"} works until it expires, then is refused', async () => {
      const c = await admin('/api/agents/bob/keys', { method: 'POST', ...json({ expires: '1s' }) });
      assert.equal(c.status, 201);
      created.push(c.json.key);
      const expiresAt = Date.parse(c.json.expiresAt);
      assert.ok(expiresAt > Date.now() && expiresAt <= Date.now() + 1100, 'expires in about a second');
      assert.equal((await agent('/http/api/x', c.json.key)).status, 200);
      await sleep(Math.max(0, expiresAt - Date.now()) + 50);
      const r = await agent('/http/api/x', c.json.key);
      assert.equal(r.status, 401);
      assert.equal(r.json.error.code, 'unauthenticated');
      assert.equal(((await admin('/api/keys')).json.keys as Rec[]).find((k) => k['id'] === c.json.id)!['status'], 'expired');
    });

    it('bad bodies are 400 bad_request and create nothing', async () => {
      const before = (await admin('/api/keys')).json.keys.length;
      for (const [body, why] of [
        ['{"expires":', /not valid JSON/],
        ['"just a string"', /JSON object/],
        ['{"expires":"soon"}', /duration/],
        ['{"expires":30}', /duration/],
      ] as const) {
        const r = await admin('/api/agents/bob/keys', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        assert.equal(r.status, 400, body);
        assert.equal(r.json.error.code, 'bad_request');
        assert.match(r.json.error.message, why);
      }
      assert.equal((await admin('/api/keys')).json.keys.length, before);
    });

    it('an expiry too far out is refused, and key listings keep working', async () => {
      const r = await admin('/api/agents/bob/keys', { method: 'POST', ...json({ expires: '99999999999d' }) });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.code, 'bad_request');
      assert.equal(r.json.key, undefined);
      assert.equal((await admin('/api/keys')).status, 200);
      assert.equal((await admin('/api/agents')).status, 200);
    });

    it('malformed HTTP on the admin port gets the SPEC error (JSON body, request id in body and header), like the agent port', async () => {
      const port = Number(new URL(t.adminUrl).port);
      for (const data of ['GARBAGE\r\n\r\n', 'GET /api/agents HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n']) {
        const text = await new Promise<string>((resolve) => {
          const s = net.connect(port, '127.0.0.1');
          let got = '';
          s.on('data', (d: Buffer) => (got += d.toString('latin1')));
          s.on('error', () => {});
          s.on('close', () => resolve(got));
          s.write(data);
        });
        const [head, body] = text.split('\r\n\r\n') as [string, string];
        assert.match(head, /^HTTP\/1\.1 400 /, text);
        const id = /^x-airlock-request-id: (\S+)$/im.exec(head)?.[1];
        assert.match(id ?? '', /^[0-9a-f-]{36}$/, head);
        const j = JSON.parse(body);
        assert.equal(j.error.type, 'airlock_error');
        assert.equal(j.error.code, 'bad_request');
        assert.equal(j.error.request_id, id);
      }
      assert.equal((await admin('/api/agents')).status, 200, 'the port still serves');
    });

    it('malformed percent-encoding in a path is 400 bad_request, not a server error', async () => {
      for (const [method, path] of [
        ['POST', '/api/agents/%zz/keys'],
        ['GET', '/api/agents/%E0%A4%A/keys'],
        ['DELETE', '/api/keys/%zz'],
      ] as const) {
        const r = await admin(path, { method, ...(method === 'POST' ? json({}) : {}) });
        assert.equal(r.status, 400, `${method} ${path}: ${r.text}`);
        assert.equal(r.json.error.code, 'bad_request');
      }
    });
  });

  describe('audit', () => {
    const records = async (q = 'limit=10000'): Promise<Rec[]> => {
      const r = await admin(`/api/audit?${q}`);
      assert.equal(r.status, 200, r.text);
      return r.json.records as Rec[];
    };
    const recordsOf = (id: string, n: number) =>
      waitFor(`${n} record(s) of ${id}`, async () => {
        const mine = (await records()).filter((r) => r['id'] === id);
        return mine.length >= n ? mine.sort((a, b) => a['seq'] - b['seq']) : undefined;
      });

    it('an allowed exchange has a decision record, then a final one with the same id, status, duration and byte counts', async () => {
      const body = 'hello, upstream';
      const r = await agent('/http/api/echo', KEYS.alice, { method: 'POST', body, headers: { 'x-airlock-session': 'audit-1' } });
      assert.equal(r.status, 200);
      const id = String(r.headers['x-airlock-request-id']);
      const [decision, final, extra] = await recordsOf(id, 2);
      assert.equal(extra, undefined, 'exactly two records');
      assert.equal(decision!['phase'], 'decision');
      assert.equal(decision!['decision'], 'allowed');
      assert.equal(decision!['rule'], 'api');
      assert.equal(decision!['status'], undefined);
      assert.equal(final!['phase'], 'final');
      assert.equal(final!['decision'], 'allowed');
      assert.ok(final!['seq'] > decision!['seq']);
      assert.equal(final!['agent'], 'alice');
      assert.equal(final!['team'], 'red');
      assert.equal(final!['session'], 'audit-1');
      assert.equal(final!['protocol'], 'http');
      assert.equal(final!['action'], 'http: POST api/echo');
      assert.equal(final!['status'], 200);
      assert.equal(typeof final!['durationMs'], 'number');
      assert.ok(final!['durationMs'] >= 0);
      assert.equal(final!['bytesIn'], Buffer.byteLength(body));
      assert.equal(final!['bytesOut'], Buffer.byteLength(r.text));
    });

    it('denied, limited and killed exchanges have one final record with that decision', async () => {
      const denied = await agent('/http/api/admin/x', KEYS.alice);
      assert.equal(denied.json.error.code, 'denied');
      assert.equal((await agent('/http/api/l/1', LIM_KEY)).status, 200);
      const limited = await agent('/http/api/l/2', LIM_KEY);
      assert.equal(limited.json.error.code, 'rate_limited');
      assert.equal((await admin('/api/kill', { method: 'POST', ...json({ agent: 'bob' }) })).status, 200);
      const killed = await agent('/http/api/x', KEYS.bob);
      assert.equal(killed.json.error.code, 'killed');
      assert.equal((await admin('/api/kill', { method: 'DELETE', ...json({ agent: 'bob' }) })).status, 200);
      for (const [r, decision, code] of [
        [denied, 'denied', 'denied'],
        [limited, 'limited', 'rate_limited'],
        [killed, 'killed', 'killed'],
      ] as const) {
        const recs = await recordsOf(r.json.error.request_id, 1);
        await sleep(20);
        const again = (await records()).filter((x) => x['id'] === r.json.error.request_id);
        assert.equal(again.length, 1, `${decision}: exactly one record`);
        assert.equal(recs[0]!['phase'], 'final');
        assert.equal(recs[0]!['decision'], decision);
        assert.equal(recs[0]!['code'], code);
        assert.equal(recs[0]!['status'], r.status, `${decision}: the status the agent got`);
        if (decision === 'denied') assert.equal(recs[0]!['rule'], 'no-admin');
      }
    });

    it('the chain: seq increases by one and each prevHash is the previous hash = sha256(prevHash + canonical record)', async () => {
      await agent('/http/api/chain', KEYS.alice);
      await sleep(20);
      const all = (await records()).sort((a, b) => a['seq'] - b['seq']);
      assert.ok(all.length >= 10);
      assert.equal(all[0]!['seq'], 1);
      assert.equal(all[0]!['prevHash'], '0'.repeat(64));
      for (let i = 0; i < all.length; i++) {
        const r = all[i]!;
        if (i > 0) {
          assert.equal(r['seq'], all[i - 1]!['seq'] + 1, 'no gaps');
          assert.equal(r['prevHash'], all[i - 1]!['hash'], `link ${r['seq']}`);
        }
        const { seq: _s, prevHash, hash, ...rec } = r;
        assert.equal(createHash('sha256').update(String(prevHash)).update(canonical(rec)).digest('hex'), hash, `hash of ${r['seq']}`);
      }
    });

    it('GET /api/audit filters by agent, protocol, decision, since and limit', async () => {
      const mark = new Date().toISOString();
      await sleep(5);
      const fresh = await agent('/http/api/fresh', KEYS.bob);
      await recordsOf(String(fresh.headers['x-airlock-request-id']), 2);

      const byAgent = await records('agent=alice&limit=10000');
      assert.ok(byAgent.length > 0);
      assert.ok(byAgent.every((r) => r['agent'] === 'alice'));
      const http = await records('protocol=http&limit=10000');
      assert.equal(http.length, (await records()).length, 'all traffic so far is http');
      assert.deepEqual(await records('protocol=llm'), []);
      const denied = await records('decision=denied&limit=10000');
      assert.ok(denied.length > 0);
      assert.ok(denied.every((r) => r['decision'] === 'denied'));
      const aliceDenied = await records('agent=alice&decision=denied');
      assert.ok(aliceDenied.length > 0 && aliceDenied.every((r) => r['agent'] === 'alice' && r['decision'] === 'denied'));
      assert.deepEqual(await records('agent=nobody'), []);

      const since = await records(`since=${encodeURIComponent(mark)}`);
      assert.deepEqual(
        since.map((r) => r['id']),
        [fresh.headers['x-airlock-request-id'], fresh.headers['x-airlock-request-id']],
        'only the exchange after the mark',
      );
      assert.deepEqual(await records(`since=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`), []);
      assert.ok((await records('since=1h')).length > since.length, 'a relative since');

      const two = await records('limit=2');
      assert.equal(two.length, 2);
      assert.ok(two[0]!['seq'] > two[1]!['seq'], 'newest first');

      // A misspelt protocol or decision (SPEC 8 lists them) is refused, not answered with "no records".
      for (const q of ['since=yesterday-ish', 'limit=abc', 'limit=-1', 'decision=deny', 'decision=DENIED', 'protocol=https']) {
        const r = await admin(`/api/audit?${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(r.json.error.code, 'bad_request');
      }
      assert.match((await admin('/api/audit?decision=deny')).json.error.message, /allowed, denied, approved, rejected, expired, killed, limited/);
      for (const d of ['allowed', 'denied', 'approved', 'rejected', 'expired', 'killed', 'limited']) assert.equal((await admin(`/api/audit?decision=${d}&limit=1`)).status, 200, d);
    });

    it('agent keys never appear in a record, in <data>/audit.jsonl or in the logs', async () => {
      const bogus = `alk_bogus${'B'.repeat(40)}`;
      const r = await agent('/http/api/x', bogus, { headers: { 'x-api-key': KEYS.alice } });
      assert.equal(r.status, 401);
      await agent('/http/api/x', KEYS.alice, { headers: { 'x-api-key': KEYS.alice, 'proxy-authorization': `Basic ${Buffer.from(`alice:${KEYS.alice}`).toString('base64')}` } });
      const all = await records();
      const file = join(t.dir, 'data', 'audit.jsonl');
      const lines = await waitFor('the JSONL mirror to catch up', () => {
        const l = readFileSync(file, 'utf8').split('\n').filter(Boolean);
        return l.length >= all.length ? l : undefined;
      });
      const text = readFileSync(file, 'utf8');
      const api = JSON.stringify(all);
      for (const secret of [KEYS.alice, KEYS.bob, LIM_KEY, bogus, ...created]) {
        assert.ok(!api.includes(secret), 'not in the audit API');
        assert.ok(!text.includes(secret), 'not in audit.jsonl');
        assert.ok(!t.logs().includes(secret), 'not in the logs');
      }
      // The mirror is the same chain.
      const bySeq = new Map(all.map((x) => [x['seq'], x]));
      for (const line of lines) {
        const rec = JSON.parse(line) as Rec;
        const stored = bySeq.get(rec['seq']);
        if (!stored) continue;
        assert.equal(rec['hash'], stored['hash']);
        assert.equal(rec['id'], stored['id']);
      }
    });
  });

  describe('metrics, health, events and routing', () => {
    it('/metrics exposes the SPEC metrics, and they move with traffic', async () => {
      const m0 = await admin('/metrics');
      assert.equal(m0.status, 200);
      assert.match(String(m0.headers['content-type']), /^text\/plain/);
      const allowed = { protocol: 'http', agent: 'alice', decision: 'allowed' };
      const denied = { protocol: 'http', agent: 'alice', decision: 'denied' };
      const before = {
        allowed: sample(m0.text, 'airlock_exchanges_total', allowed) ?? 0,
        denied: sample(m0.text, 'airlock_exchanges_total', denied) ?? 0,
        duration: sample(m0.text, 'airlock_exchange_duration_seconds_count', { protocol: 'http' }) ?? 0,
        upstream: sample(m0.text, 'airlock_upstream_duration_seconds_count', { protocol: 'http', target: 'api' }) ?? 0,
      };
      assert.equal((await agent('/http/api/m/1', KEYS.alice)).status, 200);
      assert.equal((await agent('/http/api/m/2', KEYS.alice)).status, 200);
      assert.equal((await agent('/http/api/admin/m', KEYS.alice)).status, 403);
      await sleep(20);
      const m1 = (await admin('/metrics')).text;
      assert.equal(sample(m1, 'airlock_exchanges_total', allowed), before.allowed + 2);
      assert.equal(sample(m1, 'airlock_exchanges_total', denied), before.denied + 1);
      assert.ok((sample(m1, 'airlock_exchange_duration_seconds_count', { protocol: 'http' }) ?? 0) >= before.duration + 2);
      assert.ok((sample(m1, 'airlock_exchange_duration_seconds_sum', { protocol: 'http' }) ?? 0) > 0);
      assert.equal(sample(m1, 'airlock_upstream_duration_seconds_count', { protocol: 'http', target: 'api' }), before.upstream + 2);
      assert.match(m1, /^# TYPE airlock_exchange_duration_seconds histogram$/m);
      assert.match(m1, /^# TYPE airlock_upstream_duration_seconds histogram$/m);
      assert.equal(sample(m1, 'airlock_approvals_pending'), 0, 'nothing is held');
      const lag = sample(m1, 'airlock_audit_lag_seconds');
      assert.ok(lag !== undefined && lag >= 0 && lag < 5, `audit lag ${lag}`);
      // The process metrics carry one prefix, not two.
      assert.match(m1, /^airlock_process_cpu_user_seconds_total /m);
      assert.doesNotMatch(m1, /airlock_process_process_/);
    });

    it('/healthz and /readyz answer on both ports, without credentials', async () => {
      for (const base of [t.agentUrl, t.adminUrl]) {
        const h = await call(`${base}/healthz`);
        assert.equal(h.status, 200, base);
        assert.equal(h.json.status, 'ok');
        const r = await call(`${base}/readyz`);
        assert.equal(r.status, 200, base);
        assert.equal(r.json.status, 'ready');
      }
    });

    it('/api/events delivers an `exchange` event for each new exchange', async () => {
      const feed = await subscribe(`${t.adminUrl}/api/events`);
      try {
        const ok = await agent('/http/api/events/1', KEYS.alice);
        const no = await agent('/http/api/admin/events', KEYS.alice);
        const e1 = await feed.next((e) => e.event === 'exchange' && e.data['id'] === ok.headers['x-airlock-request-id']);
        assert.equal(e1.data['decision'], 'allowed');
        assert.equal(e1.data['status'], 200);
        assert.equal(e1.data['action'], 'http: GET api/events/1');
        const e2 = await feed.next((e) => e.event === 'exchange' && e.data['id'] === no.json.error.request_id);
        assert.equal(e2.data['decision'], 'denied');
        assert.equal(e2.data['rule'], 'no-admin');
      } finally {
        feed.close();
      }
    });

    it('an unknown admin path or method is 404 not_found', async () => {
      for (const [method, path] of [
        ['GET', '/api/nope'],
        ['POST', '/api/agents'],
        ['PUT', '/api/kill'],
        ['GET', '/nope'],
        ['POST', '/'],
        ['GET', '/console/nope.js'],
        ['GET', '/console/index.html'],
      ] as const) {
        const r = await admin(path, { method });
        assert.equal(r.status, 404, `${method} ${path}`);
        assert.equal(r.json.error.code, 'not_found');
      }
    });

    it('a web page cannot drive the admin port: a request with an Origin header, or a non-loopback Host (DNS rebinding), is refused and changes nothing', async () => {
      const port = new URL(t.adminUrl).port;
      // A page on another site posting text/plain (no CORS preflight), and a page whose own name was rebound to 127.0.0.1.
      const csrf = await admin('/api/kill', { method: 'POST', headers: { origin: 'http://evil.example', 'content-type': 'text/plain' }, body: JSON.stringify({ all: true }) });
      assert.equal(csrf.status, 403, csrf.text);
      assert.equal(csrf.json.error.code, 'denied');
      assert.match(csrf.json.error.message, /Origin/);
      for (const [method, path, body] of [['POST', '/api/kill', { all: true }], ['GET', '/api/approvals', undefined], ['POST', '/api/agents/alice/keys', {}]] as const) {
        const r = await admin(path, { method, headers: { host: `evil.example:${port}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
        assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
        assert.equal(r.json.error.code, 'denied');
        assert.equal(r.json.key, undefined);
      }
      assert.deepEqual((await admin('/api/kill')).json.kills, [], 'no kill switch was set');
      for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'LOCALHOST']) {
        assert.equal((await admin('/api/kill', { headers: { host } })).status, 200, host);
      }
      // The console's own origin is the one page allowed: this port's, over http, or https through a
      // reverse proxy that ends TLS and passes Host on. Any other scheme, host or port is not.
      for (const origin of [`http://127.0.0.1:${port}`, `https://127.0.0.1:${port}`]) {
        assert.equal((await admin('/api/kill', { headers: { origin, host: `127.0.0.1:${port}` } })).status, 200, origin);
      }
      for (const origin of ['null', `http://127.0.0.1:${Number(port) + 1}`, `ftp://127.0.0.1:${port}`, `http://localhost:${port}`, `https://evil.example`]) {
        assert.equal((await admin('/api/kill', { headers: { origin, host: `127.0.0.1:${port}` } })).status, 403, origin);
      }
    });

    it('the admin API is not served on the agent port', async () => {
      for (const path of ['/api/agents', '/api/keys', '/api/audit', '/metrics', '/api/kill']) {
        const anon = await call(`${t.agentUrl}${path}`);
        assert.equal(anon.status, 401, path);
        const withKey = await agent(path, KEYS.alice);
        assert.equal(withKey.status, 404, path);
        for (const r of [anon, withKey]) {
          assert.ok(r.json.error, 'an error, never data');
          assert.equal(r.json.agents, undefined);
          assert.equal(r.json.records, undefined);
          assert.ok(!r.text.includes('airlock_exchanges_total'));
        }
      }
      const post = await agent('/api/kill', KEYS.alice, { method: 'POST', ...json({ all: true }) });
      assert.equal(post.status, 404);
      assert.deepEqual((await admin('/api/kill')).json.kills, [], 'no kill switch was set through the agent port');
    });
  });
});

describe('admin token', () => {
  const TOKEN = 'admin-token-0123456789abcdef';

  it('a non-loopback admin.listen without admin.token refuses to start with a ConfigError naming admin.token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-admin-'));
    try {
      const configFile = join(dir, 'airlock.yaml');
      writeFileSync(configFile, `data: ${join(dir, 'data')}\nadmin:\n  listen: "0.0.0.0:0"\nagents:\n  alice: { keys: ["${KEYS.alice}"] }\n`);
      const sink = new Writable({ write: (_c, _e, cb) => cb() });
      await assert.rejects(Gateway.start({ configFile, listen: '127.0.0.1:0', logDestination: sink, watch: false }), (e: unknown) => {
        assert.ok(e instanceof ConfigError, `a ConfigError, got ${String(e)}`);
        assert.equal(e.key, 'admin.token');
        assert.match(e.message, /admin\.token/);
        assert.match(e.message, /airlock\.yaml:3/, 'names the file and the line');
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a reload cannot drop the token while the admin port stays on a non-loopback address', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-admin-'));
    const configFile = join(dir, 'airlock.yaml');
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    writeFileSync(configFile, `data: ${join(dir, 'data')}\nadmin:\n  listen: "0.0.0.0:0"\n  token: "${TOKEN}"\nagents:\n  alice: { keys: ["${KEYS.alice}"] }\n`);
    const gw = await Gateway.start({ configFile, listen: '127.0.0.1:0', logDestination: sink, watch: false });
    try {
      const url = `http://127.0.0.1:${new URL(gw.adminUrl).port}`;
      // Valid on its own: loopback needs no token. But the port keeps its address until a restart.
      writeFileSync(configFile, `data: ${join(dir, 'data')}\nadmin:\n  listen: "127.0.0.1:0"\nagents:\n  alice: { keys: ["${KEYS.alice}"] }\n`);
      const r = gw.reload('test');
      assert.equal(r.ok, false);
      assert.match(!r.ok ? r.error : '', /admin token/);
      const k = await call(`${url}/api/kill`, { method: 'POST', ...json({ all: true }) });
      assert.equal(k.status, 401, 'the token is still required');
      assert.deepEqual((await call(`${url}/api/kill`, { headers: { authorization: `Bearer ${TOKEN}` } })).json.kills, []);
    } finally {
      await gw.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('with a token (enforced on loopback too)', () => {
    let t: TestGateway;
    before(async () => {
      t = await startGateway(`
admin:
  listen: "127.0.0.1:0"
  token: "${TOKEN}"
agents:
  alice: { keys: ["${KEYS.alice}"] }
`);
    });
    after(() => t.stop());

    it('no or a wrong Authorization is 401; the right bearer token is 200', async () => {
      for (const path of ['/api/agents', '/api/audit', '/api/kill', '/api/keys', '/api/alerts', '/metrics', '/api/events']) {
        for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }, { authorization: TOKEN }]) {
          const r = await call(`${t.adminUrl}${path}`, { headers });
          assert.equal(r.status, 401, `${path} ${JSON.stringify(headers)}`);
          assert.equal(r.json.error.code, 'unauthenticated');
        }
      }
      for (const path of ['/api/agents', '/api/audit', '/api/kill', '/api/keys', '/api/alerts', '/metrics']) {
        const r = await call(`${t.adminUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
        assert.equal(r.status, 200, path);
      }
    });

    it('an open /api/events feed ends when a reload removes the token it was opened with, and not when the token stays', async () => {
      const NEW = 'new-admin-token-0123456789abcdef';
      const open = async (token: string) => {
        const res = await request(`${t.adminUrl}/api/events`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.statusCode, 200);
        let text = '';
        res.body.setEncoding('utf8');
        res.body.on('data', (c: string) => (text += c));
        const ended = new Promise<boolean>((r) => {
          res.body.on('end', () => r(true));
          res.body.on('error', () => r(true));
        });
        return { ended, text: () => text, close: () => res.body.destroy() };
      };
      const old = await open(TOKEN);
      const original = readFileSync(t.configFile, 'utf8');
      try {
        // Both tokens: the feed stays.
        writeFileSync(t.configFile, original.replace(`token: "${TOKEN}"`, `tokens: [{ name: a, token: "${TOKEN}" }, { name: b, token: "${NEW}" }]`));
        assert.equal((await call(`${t.adminUrl}/api/config?action=reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
        await waitFor('the config event', () => old.text().includes('event: config'));
        assert.equal(await Promise.race([old.ended, new Promise((r) => setTimeout(() => r(false), 200))]), false, 'still open');
        // The old token removed: the feed it opened ends, and nothing later reaches it.
        writeFileSync(t.configFile, original.replace(`token: "${TOKEN}"`, `token: "${NEW}"`));
        assert.equal((await call(`${t.adminUrl}/api/config?action=reload`, { method: 'POST', headers: { authorization: `Bearer ${NEW}` } })).status, 200);
        assert.equal(await Promise.race([old.ended, new Promise((r) => setTimeout(() => r(false), 2000))]), true, 'the feed of the removed token ended');
        await call(`${t.adminUrl}/api/kill`, { method: 'POST', headers: { authorization: `Bearer ${NEW}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'alice', reason: 'after the revocation' }) });
        assert.ok(!old.text().includes('after the revocation'));
        await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', headers: { authorization: `Bearer ${NEW}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'alice' }) });
      } finally {
        old.close();
        writeFileSync(t.configFile, original);
        await call(`${t.adminUrl}/api/config?action=reload`, { method: 'POST', headers: { authorization: `Bearer ${NEW}` } });
      }
      assert.equal((await call(`${t.adminUrl}/api/kill`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, 'the original config is back');
    });

    it('unauthenticated writes change nothing', async () => {
      const k = await call(`${t.adminUrl}/api/kill`, { method: 'POST', ...json({ all: true }) });
      assert.equal(k.status, 401);
      const key = await call(`${t.adminUrl}/api/agents/alice/keys`, { method: 'POST', ...json({}) });
      assert.equal(key.status, 401);
      assert.equal(key.json.key, undefined);
      const auth = { authorization: `Bearer ${TOKEN}` };
      assert.deepEqual((await call(`${t.adminUrl}/api/kill`, { headers: auth })).json.kills, []);
      assert.equal((await call(`${t.adminUrl}/api/keys`, { headers: auth })).json.keys.length, 1, 'only the config key');
      assert.ok(!t.logs().includes(TOKEN), 'the admin token is never logged');
    });
  });
});
