import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { startUpstream, type Upstream } from './support/upstream.js';

describe('/http egress: credentials and attribution', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { team: red, keys: ["${KEYS.alice}"] }
rules:
  - name: reads
    agents: [alice]
    allow: ["http: GET,POST api/**"]
  - name: no-admin
    deny: ["http: * api/admin/**"]
    reason: admin endpoints are off limits
http:
  services:
    api: { url: "${up.url}/base", headers: { Authorization: "Bearer upstream-secret", X-Org: acme } }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('forwards to base URL + path + query, injects configured headers and strips the agent key and x-airlock-*', async () => {
    const r = await call(`${t.agentUrl}/http/api/items/42?x=1&y=two`, {
      key: KEYS.alice,
      headers: { 'x-airlock-session': 'task-7', 'x-airlock-user': 'u-1', 'x-custom': 'kept', 'x-api-key': KEYS.alice },
    });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['x-airlock-request-id']), /^[0-9a-f-]{36}$/);
    const got = up.received.at(-1)!;
    assert.equal(got.url, '/base/items/42?x=1&y=two');
    assert.equal(got.headers.authorization, 'Bearer upstream-secret');
    assert.equal(got.headers['x-org'], 'acme');
    assert.equal(got.headers['x-custom'], 'kept');
    assert.equal(got.headers['x-api-key'], undefined);
    assert.equal(got.headers['x-airlock-session'], undefined);
    assert.equal(got.headers['x-airlock-user'], undefined);
    assert.ok(!JSON.stringify(got.headers).includes(KEYS.alice));
  });

  it('denies by rule with the rule named, and records session and user in the audit', async () => {
    const r = await call(`${t.agentUrl}/http/api/admin/users`, { key: KEYS.alice, headers: { 'x-airlock-session': 's-9', 'x-airlock-user': 'carol' } });
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'denied');
    assert.equal(r.json.error.rule, 'no-admin');
    assert.equal(r.json.error.request_id, r.headers['x-airlock-request-id']);
    await new Promise((res) => setImmediate(res));
    const a = await call(`${t.adminUrl}/api/audit?agent=alice&decision=denied`);
    const rec = a.json.records.find((x: { id: string }) => x.id === r.json.error.request_id);
    assert.equal(rec.session, 's-9');
    assert.equal(rec.user, 'carol');
    assert.equal(rec.rule, 'no-admin');
    assert.equal(rec.action, 'http: GET api/admin/users');
  });

  it('never logs the agent key or the injected credential', () => {
    assert.ok(!t.logs().includes(KEYS.alice));
    assert.ok(!t.logs().includes('upstream-secret'));
  });
});
