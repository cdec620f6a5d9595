/**
 * Rules (SPEC section 3), end to end: a real gateway, a real upstream, agents as HTTP clients.
 * Every refusal is checked for what the agent sees (status, code, rule, message), for what the
 * upstream did not receive, and for what the audit log recorded.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileActionPattern } from '../src/policies/rules/pattern.js';
import { RuleSet } from '../src/policies/rules/ruleset.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { startUpstream, type Upstream } from './support/upstream.js';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 2000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('rules: compiled action patterns (pure)', () => {
  it('`*` stays within a segment, `**` crosses segments, trailing `/**` matches the bare prefix', () => {
    const one = compileActionPattern('http: GET api/items/*');
    assert.equal(one('http: GET api/items/42'), true);
    assert.equal(one('http: GET api/items/42/parts'), false);
    const deep = compileActionPattern('http: GET api/repos/**');
    assert.equal(deep('http: GET api/repos/acme/app/issues'), true);
    assert.equal(deep('http: GET api/repos'), true, 'trailing /** covers the prefix itself');
    assert.equal(deep('http: GET api/reposX'), false, 'but not a longer name sharing the prefix');
    const mcp = compileActionPattern('mcp: github/get_*');
    assert.equal(mcp('mcp: github/get_issue'), true);
    assert.equal(mcp('mcp: github/create_issue'), false);
    assert.equal(mcp('llm: github/get_issue'), false, 'the protocol must match');
  });

  it('`**` spans every character `*` does, line terminators included (a deny must not be side-stepped by U+2028)', () => {
    const deny = compileActionPattern('http: * api/secret/**');
    for (const c of ['\u2028', '\u2029', '\n', '\r']) {
      assert.equal(deny(`http: GET api/secret/x${c}y`), true, JSON.stringify(c));
      assert.equal(compileActionPattern('mcp: *')(`mcp: a${c}`), true, JSON.stringify(c));
      assert.equal(compileActionPattern('mcp-resource: docs/**')(`mcp-resource: docs/a${c}b/c`), true, JSON.stringify(c));
    }
  });

  it('method lists: `GET,HEAD` names methods, `*` is any method; a pattern without methods is any method', () => {
    const ro = compileActionPattern('http: GET,HEAD api/**');
    assert.equal(ro('http: GET api/x'), true);
    assert.equal(ro('http: HEAD api/x'), true);
    assert.equal(ro('http: POST api/x'), false);
    const any = compileActionPattern('http: * api/**');
    for (const m of ['GET', 'POST', 'DELETE', 'PATCH']) assert.equal(any(`http: ${m} api/x`), true, m);
    const bare = compileActionPattern('http: api/**');
    assert.equal(bare('http: PUT api/x'), true);
  });

  it('a2a patterns with and without a method', () => {
    const all = compileActionPattern('a2a: travel');
    assert.equal(all('a2a: travel SendMessage'), true);
    assert.equal(all('a2a: travel'), true);
    assert.equal(all('a2a: travelx SendMessage'), false);
    const one = compileActionPattern('a2a: travel Get*');
    assert.equal(one('a2a: travel GetTask'), true);
    assert.equal(one('a2a: travel SendMessage'), false);
    const anyProto = compileActionPattern('*: travel/**');
    assert.equal(anyProto('a2a: travel/x'), true, 'a protocol wildcard covers a2a too');
    assert.equal(anyProto('mcp-resource: travel/x'), true);
  });

  it('refuses malformed patterns with a reason', () => {
    assert.throws(() => compileActionPattern('no protocol here'), /action pattern/);
    assert.throws(() => compileActionPattern('ftp: x/y'), /unknown protocol/);
    assert.throws(() => compileActionPattern('http: G3T api/**'), /not an HTTP method/);
    assert.throws(() => compileActionPattern('http: '), /action pattern|empty/);
  });

  it('RuleSet: deny beats allow in either order; approve gates but never grants', () => {
    const agents = [{ name: 'a', team: 't' }];
    const allow = { name: 'allow-all', allow: ['http: * api/**'] };
    const deny = { name: 'no-admin', deny: ['http: * api/admin/**'], reason: 'nope' };
    for (const rules of [[allow, deny], [deny, allow]]) {
      const rs = new RuleSet(rules, agents);
      const d = rs.decide('a', 'http: GET api/admin/users');
      assert.equal(d.decision, 'deny');
      assert.equal(d.rule, 'no-admin');
      assert.match(d.message, /nope/);
      assert.equal(rs.decide('a', 'http: GET api/x').decision, 'allow');
    }
    const gateOnly = new RuleSet([{ name: 'gate', approve: ['http: POST api/**'] }], agents);
    assert.equal(gateOnly.decide('a', 'http: POST api/x').decision, 'deny');
    const gated = new RuleSet([{ name: 'gate', approve: ['http: POST api/**'] }, allow], agents);
    const h = gated.decide('a', 'http: POST api/x');
    assert.equal(h.decision, 'hold');
    assert.equal(h.rule, 'gate');
    assert.equal(gated.decide('nobody', 'http: GET api/x').decision, 'deny');
  });

  it('RuleSet: `agents: []` selects no agent (not every one); `team: x` with a space still names the team', () => {
    const agents = [{ name: 'intern-bot', team: 'contractors' }];
    const none = new RuleSet([{ name: 'nobody-yet', agents: [], allow: ['mcp: postgres/*'] }], agents);
    assert.equal(none.decide('intern-bot', 'mcp: postgres/drop_table').decision, 'deny');
    const team = new RuleSet([{ name: 'all', allow: ['mcp: postgres/*'] }, { name: 'no-contractors', agents: ['team: contractors'], deny: ['mcp: postgres/drop_*'] }], agents);
    assert.equal(team.decide('intern-bot', 'mcp: postgres/drop_table').decision, 'deny');
    assert.equal(team.decide('intern-bot', 'mcp: postgres/select').decision, 'allow');
  });
});

describe('rules: end to end over /http', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { team: red, keys: ["${KEYS.alice}"] }
  bob: { team: blue, keys: ["${KEYS.bob}"] }
  carol: { keys: ["${KEYS.carol}"] }
rules:
  - name: early-deny
    deny: ["http: GET api/deep/blocked/**"]
  - name: by-name
    agents: [alice]
    allow: ["http: GET api/named/**"]
  - name: by-glob
    agents: ["b*"]
    allow: ["http: GET api/globbed/**"]
  - name: by-team
    agents: ["team:red"]
    allow: ["http: GET api/team/**"]
  - name: one-segment
    allow: ["http: GET api/items/*"]
  - name: deep
    allow: ["http: GET api/deep/**"]
  - name: read-only
    allow: ["http: GET,HEAD api/ro/**"]
  - name: any-method
    allow: ["http: * api/rw/**"]
  - name: docs
    allow: ["http: GET api/docs/**"]
  - name: late-deny
    deny: ["http: * api/rw/secret/**"]
    reason: secrets are off limits
  - name: payments-need-a-human
    approve: ["http: POST api/rw/payments/**"]
  - name: approve-is-not-a-grant
    approve: ["http: POST api/unlisted/**"]
approvals:
  timeout: 300ms
http:
  services:
    api: { url: "${up.url}" }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  const get = (path: string, key: string, method = 'GET') => call(`${t.agentUrl}/http/api/${path}`, { key, method });

  async function finalRecord(id: string): Promise<Record<string, unknown>> {
    return waitFor(`the audit record of ${id}`, async () => {
      const a = await call(`${t.adminUrl}/api/audit?limit=1000`);
      return (a.json.records as Record<string, unknown>[]).find((r) => r['id'] === id && r['phase'] === 'final');
    });
  }

  it('deny beats allow regardless of rule order, names the rule, gives the reason, and never reaches the upstream', async () => {
    const n = up.received.length;
    // `late-deny` is listed after the allow of `any-method`; `early-deny` before the allow of `deep`.
    const late = await get('rw/secret/token', KEYS.alice, 'DELETE');
    assert.equal(late.status, 403);
    assert.equal(late.json.error.code, 'denied');
    assert.equal(late.json.error.rule, 'late-deny');
    assert.match(late.json.error.message, /secrets are off limits/);
    assert.equal(late.json.error.request_id, late.headers['x-airlock-request-id']);
    const early = await get('deep/blocked/x', KEYS.alice);
    assert.equal(early.status, 403);
    assert.equal(early.json.error.code, 'denied');
    assert.equal(early.json.error.rule, 'early-deny');
    assert.equal(up.received.length, n, 'a denied call is never forwarded');
    // The neighbours the deny rules do not cover still pass.
    assert.equal((await get('rw/public', KEYS.alice, 'DELETE')).status, 200);
    assert.equal((await get('deep/open/x/y', KEYS.alice)).status, 200);

    const rec = await finalRecord(late.json.error.request_id);
    assert.equal(rec['decision'], 'denied');
    assert.equal(rec['rule'], 'late-deny');
    assert.equal(rec['code'], 'denied');
    assert.equal(rec['action'], 'http: DELETE api/rw/secret/token');
  });

  it('no allow → default deny: 403 denied, no rule named, the message says so', async () => {
    const n = up.received.length;
    const r = await get('nothing/here', KEYS.carol);
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'denied');
    assert.equal(r.json.error.rule, undefined);
    assert.match(r.json.error.message, /no rule allows http: GET api\/nothing\/here/);
    assert.match(r.json.error.message, /default deny/);
    assert.equal(up.received.length, n);
    const rec = await finalRecord(r.json.error.request_id);
    assert.equal(rec['decision'], 'denied');
    assert.equal(rec['rule'], undefined);
  });

  // Without an approver the call ends in approval_timeout: at once while human approvals are not
  // wired in, or after approvals.timeout (300ms here) once they are. Either way it is never forwarded.
  it('approve on an allowed action ends in 403 approval_timeout when nobody approves, naming the rule, never reaching the upstream', async () => {
    const n = up.received.length;
    const t0 = Date.now();
    const r = await call(`${t.agentUrl}/http/api/rw/payments/1`, { key: KEYS.alice, method: 'POST', body: '{"amount":100}', headers: { 'content-type': 'application/json' } });
    assert.ok(Date.now() - t0 < 2000, 'answered no later than approvals.timeout (plus slack)');
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'approval_timeout');
    assert.equal(r.json.error.rule, 'payments-need-a-human');
    assert.equal(up.received.length, n, 'a held call is never forwarded');
    // The same path without the approve rule's method is a plain allow.
    assert.equal((await get('rw/payments/1', KEYS.alice)).status, 200);
    const rec = await finalRecord(r.json.error.request_id);
    assert.equal(rec['decision'], 'expired');
    assert.equal(rec['rule'], 'payments-need-a-human');
  });

  it('approve alone (no allow) is denied, not held', async () => {
    const n = up.received.length;
    const r = await call(`${t.agentUrl}/http/api/unlisted/x`, { key: KEYS.alice, method: 'POST', body: 'x' });
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'denied');
    assert.match(r.json.error.message, /default deny/);
    assert.equal(up.received.length, n);
  });

  it('agent selectors: by name, by glob, by team:<name>', async () => {
    assert.equal((await get('named/x', KEYS.alice)).status, 200);
    assert.equal((await get('named/x', KEYS.bob)).status, 403);
    assert.equal((await get('globbed/x', KEYS.bob)).status, 200);
    assert.equal((await get('globbed/x', KEYS.alice)).status, 403);
    assert.equal((await get('team/x', KEYS.alice)).status, 200, 'alice is in team red');
    const blue = await get('team/x', KEYS.bob);
    assert.equal(blue.status, 403, 'bob is in team blue');
    assert.equal(blue.json.error.code, 'denied');
    assert.equal((await get('team/x', KEYS.carol)).status, 403, 'carol has no team');
  });

  it('globs: `*` within one segment, `**` across segments', async () => {
    assert.equal((await get('items/42', KEYS.carol)).status, 200);
    assert.equal((await get('items/42/parts', KEYS.carol)).status, 403);
    assert.equal((await get('deep/a/b/c/d', KEYS.carol)).status, 200);
  });

  it('method lists: `GET,HEAD` allows exactly those; `*` allows any method', async () => {
    assert.equal((await get('ro/x', KEYS.carol, 'GET')).status, 200);
    assert.equal((await get('ro/x', KEYS.carol, 'HEAD')).status, 200);
    const post = await call(`${t.agentUrl}/http/api/ro/x`, { key: KEYS.carol, method: 'POST', body: 'x' });
    assert.equal(post.status, 403);
    assert.equal(post.json.error.code, 'denied');
    for (const m of ['GET', 'PUT', 'DELETE', 'PATCH']) assert.equal((await get('rw/x', KEYS.carol, m)).status, 200, m);
  });

  it('a trailing `/**` matches the bare prefix, but not a longer sibling name', async () => {
    const n = up.received.length;
    assert.equal((await get('docs', KEYS.carol)).status, 200);
    assert.equal(up.received.at(-1)?.url, '/docs');
    assert.equal(up.received.length, n + 1);
    assert.equal((await get('docs/a/b', KEYS.carol)).status, 200);
    assert.equal((await get('docsx', KEYS.carol)).status, 403);
  });
});
