/**
 * Limits (SPEC section 4), end to end: per-agent rates with Retry-After, team limits shared by the
 * team's agents, target limits counted per agent, concurrency slots that are released whatever the
 * outcome, and rule denials that use no allowance.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { call, startGateway, type Reply, type TestGateway } from './support/gateway.js';
import { echo, startUpstream, type Upstream } from './support/upstream.js';

/** A well-formed agent key for a test agent (letters only, padded to 40 characters). */
const key = (name: string) => `alk_${name}${'Z'.repeat(40 - name.length)}`;
const AGENTS = ['fast', 'alice', 'bob', 'carol', 'erin', 'frank', 'dave', 'gina'] as const;

async function waitFor<T>(what: string, fn: () => T | undefined, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function assertLimited(r: Reply, code: string): number {
  assert.equal(r.status, 429, `expected 429 ${code}, got ${r.status} ${r.text}`);
  assert.equal(r.json.error.code, code);
  const ra = String(r.headers['retry-after']);
  assert.match(ra, /^\d+$/, 'Retry-After is whole seconds');
  const s = Number(ra);
  assert.ok(s >= 1, 'Retry-After is at least 1 second');
  return s;
}

describe('limits', () => {
  let up: Upstream;
  let t: TestGateway;
  /** Responses of `/slow/*` calls the upstream is holding. */
  const held: ServerResponse[] = [];
  const releaseHeld = () => {
    for (const res of held.splice(0)) res.end('done');
  };

  before(async () => {
    up = await startUpstream((req, res, body) => {
      if (req.url?.startsWith('/slow/')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        held.push(res);
        return;
      }
      if (req.url?.startsWith('/reset/')) {
        req.socket.destroy();
        return;
      }
      if (req.url?.startsWith('/fail/')) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('boom');
        return;
      }
      echo(req, res, body);
    });
    t = await startGateway(`
agents:
  fast: { keys: ["${key('fast')}"], limits: { requests: 3/s } }
  alice: { team: red, keys: ["${key('alice')}"] }
  bob: { team: red, keys: ["${key('bob')}"] }
  carol: { team: blue, keys: ["${key('carol')}"] }
  erin: { keys: ["${key('erin')}"] }
  frank: { keys: ["${key('frank')}"] }
  dave: { keys: ["${key('dave')}"], limits: { concurrency: 2 } }
  gina: { keys: ["${key('gina')}"], limits: { requests: 2/min } }
teams:
  red: { limits: { requests: 3/min } }
limits:
  - target: "http: POST api/**"
    requests: 2/min
rules:
  - name: everything
    allow: ["http: * api/**", "http: * other/**"]
  - name: forbidden
    deny: ["http: * api/forbidden/**"]
http:
  services:
    api: { url: "${up.url}" }
    other: { url: "${up.url}" }
`);
    assert.equal(AGENTS.length, 8);
  });
  after(async () => {
    releaseHeld();
    await t.stop();
    await up.close();
  });

  const get = (who: string, path: string, method = 'GET') =>
    call(`${t.agentUrl}/http/${path}`, { key: key(who), method, ...(method === 'POST' ? { body: '{}', headers: { 'content-type': 'application/json' } } : {}) });

  it('agent requests: 3/s → the 4th call is 429 rate_limited with Retry-After, and calls pass again after it', async () => {
    const n = up.received.length;
    for (let i = 0; i < 3; i++) assert.equal((await get('fast', `api/r/${i}`)).status, 200, `call ${i + 1}`);
    const r = await get('fast', 'api/r/3');
    const s = assertLimited(r, 'rate_limited');
    assert.ok(s <= 2, `a 1-second window never asks to wait ${s}s`);
    assert.match(r.json.error.message, /agent "fast".*3\/s/);
    assert.equal(up.received.length, n + 3, 'the limited call was not forwarded');
    await new Promise((res) => setTimeout(res, s * 1000 + 50));
    assert.equal((await get('fast', 'api/r/after')).status, 200, 'allowed again after Retry-After');
  });

  it('a team limit is shared by the team’s agents and does not touch other teams', async () => {
    assert.equal((await get('alice', 'api/t/1')).status, 200);
    assert.equal((await get('alice', 'api/t/2')).status, 200);
    assert.equal((await get('bob', 'api/t/3')).status, 200);
    const a = await get('alice', 'api/t/4');
    assertLimited(a, 'rate_limited');
    assert.match(a.json.error.message, /team "red"/);
    assertLimited(await get('bob', 'api/t/5'), 'rate_limited');
    assert.equal((await get('carol', 'api/t/6')).status, 200, 'team blue is unaffected');
  });

  it('a target limit counts per agent and only for the targets it names', async () => {
    assert.equal((await get('erin', 'api/x/1', 'POST')).status, 200);
    assert.equal((await get('erin', 'api/x/2', 'POST')).status, 200);
    const r = await get('erin', 'api/x/3', 'POST');
    assertLimited(r, 'rate_limited');
    assert.match(r.json.error.message, /http: POST api\/\*\*/);
    assert.equal((await get('frank', 'api/x/4', 'POST')).status, 200, 'another agent has its own allowance');
    assert.equal((await get('erin', 'api/x/5', 'GET')).status, 200, 'GET is not covered by the POST limit');
    assert.equal((await get('erin', 'other/x/6', 'POST')).status, 200, 'another service is not covered');
  });

  it('a call denied by the rules uses no rate allowance', async () => {
    for (let i = 0; i < 5; i++) {
      const d = await get('gina', `api/forbidden/${i}`);
      assert.equal(d.status, 403);
      assert.equal(d.json.error.code, 'denied');
    }
    assert.equal((await get('gina', 'api/ok/1')).status, 200);
    assert.equal((await get('gina', 'api/ok/2')).status, 200);
    assertLimited(await get('gina', 'api/ok/3'), 'rate_limited');
    // And once over the limit, a denied call is still reported as denied, not limited.
    assert.equal((await get('gina', 'api/forbidden/x')).json.error.code, 'denied');
  });

  it('concurrency: 2 → a 3rd concurrent call is 429 concurrency_limited; slots come back when calls end, also after upstream errors', async () => {
    const first = [get('dave', 'api/slow/1'), get('dave', 'api/slow/2')];
    await waitFor('two calls held upstream', () => (held.length === 2 ? true : undefined));
    const third = await get('dave', 'api/r/3');
    assertLimited(third, 'concurrency_limited');
    assert.match(third.json.error.message, /agent "dave"/);
    releaseHeld();
    for (const r of await Promise.all(first)) assert.equal(r.status, 200);
    assert.equal((await get('dave', 'api/r/4')).status, 200, 'a slot is free again');

    // Upstream failures (a reset, a 500) must hand their slots back too.
    const resets = await Promise.all([get('dave', 'api/reset/1'), get('dave', 'api/reset/2')]);
    for (const r of resets) {
      assert.equal(r.status, 502);
      assert.equal(r.json.error.code, 'upstream_error');
    }
    const fails = await Promise.all([get('dave', 'api/fail/1'), get('dave', 'api/fail/2')]);
    for (const r of fails) assert.equal(r.status, 500);

    // Exactly two slots are free: two calls are held, the third is refused.
    const again = [get('dave', 'api/slow/3'), get('dave', 'api/slow/4')];
    await waitFor('two calls held upstream again', () => (held.length === 2 ? true : undefined));
    assertLimited(await get('dave', 'api/r/5'), 'concurrency_limited');
    releaseHeld();
    for (const r of await Promise.all(again)) assert.equal(r.status, 200);
  });

  it('concurrency: an agent that hangs up mid-call hands its slot back', async () => {
    const ac = new AbortController();
    const gone = request(`${t.agentUrl}/http/api/slow/hangup`, { headers: { authorization: `Bearer ${key('dave')}` }, signal: ac.signal }).catch((e: unknown) => e);
    await waitFor('the call held upstream', () => (held.length === 1 ? true : undefined));
    ac.abort();
    await gone;
    held.splice(0);
    // Both slots must be free again: two concurrent calls are held at the upstream, neither is refused.
    await waitFor('the slot to be released', () => (t.gw.pipeline.inFlight.size === 0 ? true : undefined));
    const two = [get('dave', 'api/slow/5'), get('dave', 'api/slow/6')];
    await waitFor('two calls held upstream', () => (held.length === 2 ? true : undefined));
    releaseHeld();
    for (const r of await Promise.all(two)) assert.equal(r.status, 200);
  });

  it('limited calls are audited as `limited` with their code', async () => {
    await new Promise((r) => setTimeout(r, 20));
    const a = await call(`${t.adminUrl}/api/audit?decision=limited&limit=100`);
    const codes = new Set((a.json.records as { code: string; phase: string }[]).map((r) => `${r.phase}:${r.code}`));
    assert.ok(codes.has('final:rate_limited'));
    assert.ok(codes.has('final:concurrency_limited'));
  });
});

describe('limits across a config reload', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream(echo);
    t = await startGateway(`
agents:
  hank: { keys: ["${key('hank')}"] }
limits:
  - target: "http: POST api/**"
    requests: 2/min
rules:
  - name: everything
    allow: ["http: * api/**"]
http:
  services:
    api: { url: "${up.url}" }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('a limit added before an existing one leaves that one’s count as it was', async () => {
    const post = () => call(`${t.agentUrl}/http/api/x`, { key: key('hank'), method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal((await post()).status, 200);
    assert.equal((await post()).status, 200);
    assertLimited(await post(), 'rate_limited');
    const text = readFileSync(t.configFile, 'utf8');
    writeFileSync(t.configFile, text.replace('limits:\n', 'limits:\n  - target: "http: GET api/**"\n    requests: 100/min\n'));
    assert.deepEqual(t.gw.reload('test'), { ok: true });
    assert.equal(t.gw.config().targetLimits.length, 2, 'the new limit is in force');
    assertLimited(await post(), 'rate_limited');
  });
});
