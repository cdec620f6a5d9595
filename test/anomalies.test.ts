/**
 * Anomaly alerts (SPEC section 9: "alerts (pinning, poisoning, loops, anomalies)"): bursts of
 * refused calls, of calls refused by limits and of bad keys, and spikes of an agent's calls and
 * LLM spend against its own average, seen in `GET /api/alerts` and on `/api/events`, sent to the
 * `alerts.notify` webhooks, configurable, off when turned off, and changed by a reload.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { eventually, openaiAgent } from './support/llm.js';
import { startUpstream, type Upstream } from './support/upstream.js';
import { basic, rawProxyRequest } from './support/proxy.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test convenience: alerts are checked field by field
type AlertJson = any;

async function anomalies(adminUrl: string): Promise<AlertJson[]> {
  const r = await call(`${adminUrl}/api/alerts`);
  assert.equal(r.status, 200);
  return (r.json.alerts as AlertJson[]).filter((a) => a.kind === 'anomaly');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('anomaly alerts: bursts', () => {
  let up: Upstream;
  let hook: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    hook = await startUpstream((_req, res) => res.end('ok'));
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
  carol: { keys: ["${KEYS.carol}"], limits: { requests: 2/min } }
rules:
  - name: reads
    allow: ["http: GET api/**"]
  - name: no-admin
    deny: ["http: * api/admin/**"]
http:
  services:
    api: { url: "${up.url}" }
alerts:
  notify: [ { webhook: "${hook.url}/hooks/T000/secret", headers: { x-hook-token: "s3cret" } } ]
  anomalies:
    denials: 5/min
    limited: 3/min
    authFailures: 4/min
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
    await hook.close();
  });

  it('an agent refused by the rules again and again raises one denials alert, named after it; fewer refusals raise none', async () => {
    for (let i = 0; i < 4; i++) assert.equal((await call(`${t.agentUrl}/http/api/admin/users`, { key: KEYS.bob })).status, 403);
    for (let i = 0; i < 3; i++) assert.equal((await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice, method: 'DELETE' })).status, 403);
    assert.deepEqual(await anomalies(t.adminUrl), [], 'four refusals of bob and three of alice are under 5/min');
    for (let i = 0; i < 4; i++) assert.equal((await call(`${t.agentUrl}/http/api/admin/users`, { key: KEYS.alice })).status, 403);
    const list = await eventually('a denials alert', async () => {
      const l = await anomalies(t.adminUrl);
      return l.length > 0 ? l : undefined;
    });
    assert.equal(list.length, 1, 'once over the threshold, the repeats within a minute are folded into the first alert');
    const a = list[0];
    assert.equal(a.agent, 'alice');
    assert.equal(a.severity, 'warning');
    assert.equal(a.data.signal, 'denials');
    assert.equal(a.data.count, 5);
    assert.equal(a.data.threshold, '5/min');
    assert.match(a.message, /agent "alice" had 5 calls refused by the rules in the last 1m/);
  });

  it('sends every alert to the alerts.notify webhooks, as JSON with a readable text', async () => {
    const got = await eventually('the webhook call', () => hook.received.find((r) => JSON.parse(r.body.toString()).alert?.data?.signal === 'denials'));
    assert.equal(got.method, 'POST');
    assert.equal(got.url, '/hooks/T000/secret');
    assert.equal(got.headers['x-hook-token'], 's3cret');
    assert.equal(got.headers['content-type'], 'application/json');
    const body = JSON.parse(got.body.toString());
    assert.equal(body.event, 'alert.raised');
    assert.equal(body.alert.agent, 'alice');
    assert.match(body.text, /^airlock alert \(warning, anomaly\): agent "alice" had 5 calls refused/);
    assert.ok(body.text.includes(`${t.adminUrl}/api/alerts`), 'the text says where to look');
    // The log names the webhook's host only: its path is often its secret.
    assert.ok(!t.logs().includes('/hooks/T000/secret'));
  });

  it('an agent refused by its limits again and again raises a limited alert (info)', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await call(`${t.agentUrl}/http/api/items`, { key: KEYS.carol })).status);
    assert.deepEqual(statuses, [200, 200, 429, 429, 429]);
    const a = await eventually('a limited alert', async () => (await anomalies(t.adminUrl)).find((x) => x.data.signal === 'limited'));
    assert.equal(a.agent, 'carol');
    assert.equal(a.severity, 'info');
    assert.equal(a.data.count, 3);
    assert.match(a.message, /agent "carol" had 3 calls refused by its limits in the last 1m/);
  });

  it('calls with bad keys raise an auth_failures alert, whoever sends them, without any key in it', async () => {
    const bad = ['alk_nobodyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX', 'alk_guessYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY', 'not-a-key'];
    assert.equal((await call(`${t.agentUrl}/http/api/items`)).status, 401);
    for (const key of bad) assert.equal((await call(`${t.agentUrl}/http/api/items`, { key })).status, 401);
    const a = await eventually('an auth_failures alert', async () => (await anomalies(t.adminUrl)).find((x) => x.data.signal === 'auth_failures'));
    assert.equal(a.agent, undefined);
    assert.equal(a.data.count, 4);
    assert.match(a.message, /^4 calls with a missing, unknown, revoked or expired agent key in the last 1m/);
    const all = JSON.stringify(await call(`${t.adminUrl}/api/alerts`)) + t.logs();
    for (const key of bad) assert.ok(!all.includes(key), 'a guessed key is never repeated');
  });

  it('the alerts are on the /api/events feed as they are raised', async () => {
    const res = await request(`${t.adminUrl}/api/events`);
    assert.equal(res.statusCode, 200);
    let seen = '';
    res.body.setEncoding('utf8');
    res.body.on('data', (c: string) => (seen += c));
    res.body.on('error', () => {});
    try {
      // A new agent name in the subject: the alert store folds repeats of one subject within a minute.
      for (let i = 0; i < 5; i++) await call(`${t.agentUrl}/http/api/admin/x`, { key: KEYS.bob });
      await eventually('the alert event', () => (/event: alert\ndata: .*"signal":"denials".*"agent":"bob"|event: alert\ndata: .*"agent":"bob".*"signal":"denials"/.test(seen) ? true : undefined));
    } finally {
      res.body.destroy();
    }
  });
});

describe('anomaly alerts: spikes against an agent’s own average', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    // Windows of one second so that a test can learn an average in seconds, not in minutes.
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: reads
    allow: ["http: GET api/**", "llm: demo-*"]
http:
  services:
    api: { url: "${up.url}" }
llm:
  providers:
    demo: { type: mock }
  models:
    demo-pricey: { provider: demo, price: { input: 20000, output: 20000 } }
alerts:
  anomalies:
    callSpike: { factor: 4, min: 10/s, learn: 3s }
    spendSpike: { factor: 4, min: 0.5/s, learn: 3s }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('a steady agent raises nothing; a burst of calls once its average is learned raises a call_spike alert', async () => {
    const end = Date.now() + 4500;
    while (Date.now() < end) {
      assert.equal((await call(`${t.agentUrl}/http/api/items`, { key: KEYS.alice })).status, 200);
      await sleep(330); // ~3 calls a second
    }
    assert.deepEqual(await anomalies(t.adminUrl), [], 'three calls a second, under the 10/s floor');
    await Promise.all(Array.from({ length: 40 }, () => call(`${t.agentUrl}/http/api/items`, { key: KEYS.alice })));
    const a = await eventually('a call_spike alert', async () => (await anomalies(t.adminUrl)).find((x) => x.data.signal === 'call_spike'));
    assert.equal(a.agent, 'alice');
    assert.equal(a.severity, 'warning');
    assert.ok(a.data.recent >= 10, `recent ${a.data.recent}`);
    assert.ok(a.data.average > 1 && a.data.average < 5, `average ${a.data.average}: about three a second`);
    assert.ok(a.data.recent >= 4 * a.data.average);
    assert.match(a.message, /^agent "alice" made [\d.]+ calls in the last 1s, [\d.]+× its average of [\d.]+ per 1s over the [\d.]+s before$/);
  });

  it('a burst before the average is learned raises nothing', async () => {
    await Promise.all(Array.from({ length: 40 }, () => call(`${t.agentUrl}/http/api/items`, { key: KEYS.bob })));
    await sleep(200);
    assert.equal((await anomalies(t.adminUrl)).filter((a) => a.agent === 'bob').length, 0, 'bob has no history yet');
  });

  it('a jump in LLM spend raises a spend_spike alert', async () => {
    const oa = openaiAgent(t.agentUrl, KEYS.bob, { maxRetries: 0 });
    const ask = () => oa.chat.completions.create({ model: 'demo-pricey', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
    // Each call costs a few cents (about ten tokens at $20,000 per million): one call a second is
    // the average, and six at once cross the $0.50-a-second floor and four times that average.
    const first = await ask();
    assert.ok(first.usage!.prompt_tokens > 0);
    const end = Date.now() + 4500;
    while (Date.now() < end) {
      await ask();
      await sleep(1000);
    }
    assert.equal((await anomalies(t.adminUrl)).filter((a) => a.data.signal === 'spend_spike').length, 0);
    await Promise.all(Array.from({ length: 12 }, () => ask()));
    const a = await eventually('a spend_spike alert', async () => (await anomalies(t.adminUrl)).find((x) => x.data.signal === 'spend_spike'));
    assert.equal(a.agent, 'bob');
    assert.ok(a.data.recent >= 0.5);
    assert.match(a.message, /^agent "bob" spent \$[\d.]+ on LLM calls in the last 1s, /);
  });
});

describe('anomaly alerts: configuration', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: reads
    allow: ["http: GET api/**"]
http:
  services:
    api: { url: "${up.url}" }
alerts:
  anomalies: false
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('off: refusals and bad keys raise nothing; a reload that sets a threshold turns it on for the next calls', async () => {
    for (let i = 0; i < 25; i++) assert.equal((await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice, method: 'POST' })).status, 403);
    for (let i = 0; i < 25; i++) assert.equal((await call(`${t.agentUrl}/http/api/x`, { key: 'alk_nobodyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' })).status, 401);
    await sleep(100);
    assert.deepEqual(await anomalies(t.adminUrl), [], 'twenty-five of each are over every default, but anomalies are off');

    writeFileSync(t.configFile, readFileSync(t.configFile, 'utf8').replace('anomalies: false', 'anomalies: { denials: 3/min, authFailures: false }'));
    assert.deepEqual(t.gw.reload('test'), { ok: true });
    for (let i = 0; i < 3; i++) await call(`${t.agentUrl}/http/api/y`, { key: KEYS.alice, method: 'POST' });
    const list = await eventually('a denials alert', async () => {
      const l = await anomalies(t.adminUrl);
      return l.length > 0 ? l : undefined;
    });
    assert.deepEqual(list.map((a: AlertJson) => a.data.signal), ['denials']);
    assert.ok(list[0].data.count >= 3);
  });

  it('a bad anomaly setting is a config error that names its key', async () => {
    const r = await call(`${t.adminUrl}/api/alerts`);
    assert.equal(r.status, 200);
    writeFileSync(t.configFile, readFileSync(t.configFile, 'utf8').replace(/anomalies: .*/, 'anomalies: { callSpike: { factor: 1 } }'));
    const res = t.gw.reload('test');
    assert.equal(res.ok, false);
    assert.match((res as { error: string }).error, /alerts\.anomalies/);
  });

  it('a bad value inside a setting that also takes false names that key and says what it takes', () => {
    const errorOf = (anomalies: string) => {
      writeFileSync(t.configFile, readFileSync(t.configFile, 'utf8').replace(/anomalies: .*/, `anomalies: ${anomalies}`));
      const res = t.gw.reload('test');
      assert.equal(res.ok, false, anomalies);
      return (res as { error: string }).error;
    };
    assert.match(errorOf('{ denials: true }'), /alerts\.anomalies\.denials: expected a rate such as 20\/min, or false/);
    assert.match(errorOf('{ limited: 5 }'), /alerts\.anomalies\.limited: expected a rate/);
    assert.match(errorOf('{ callSpike: { factor: .nan } }'), /alerts\.anomalies\.callSpike\.factor: .*expected number/);
    assert.match(errorOf('{ callSpike: { bogus: 1 } }'), /alerts\.anomalies\.callSpike\.bogus: unknown key \(allowed here: factor, min, learn\)/);
    assert.match(errorOf('{ spendSpike: 5 }'), /alerts\.anomalies\.spendSpike: expected \{ factor, min, learn \}, or false/);
    assert.match(errorOf('{ bogus: 1 }'), /alerts\.anomalies\.bogus: unknown key \(allowed here: denials, limited, authFailures, callSpike, spendSpike\)/);
    assert.match(errorOf('true'), /alerts\.anomalies: expected false \(all off\), or a mapping/);
  });
});

describe('anomaly alerts: what an operator does, and what proxy clients always do, is no anomaly', () => {
  let up: Upstream;
  let tcp: Server;
  let tcpPort: number;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    tcp = createTcpServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    tcpPort = (tcp.address() as AddressInfo).port;
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: reads
    allow: ["http: GET,POST api/**", "http: CONNECT 127.0.0.1:${tcpPort}"]
  - name: writes-need-a-human
    approve: ["http: POST api/**"]
approvals: { timeout: 30s }
http:
  services:
    api: { url: "${up.url}" }
  forwardProxy: { timeout: 10s }
alerts:
  anomalies: { denials: 3/min, authFailures: 3/min }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
    tcp.close();
  });

  /** Three calls of `key` held for approval, with their approval ids, and the calls' replies to come. */
  async function hold(key: string): Promise<{ ids: string[]; replies: Promise<number[]> }> {
    const replies = Promise.all(Array.from({ length: 3 }, (_, i) => call(`${t.agentUrl}/http/api/held/${i}`, { key, method: 'POST' }).then((r) => r.status)));
    const ids = await eventually('three pending approvals', async () => {
      const l = (await call(`${t.adminUrl}/api/approvals?status=pending`)).json.approvals as { id: string }[];
      return l.length === 3 ? l.map((a) => a.id) : undefined;
    });
    return { ids, replies };
  }

  it('a person denying held calls one after another raises no denials alert: whoever denied them has seen them', async () => {
    const { ids, replies } = await hold(KEYS.alice);
    for (const id of ids) assert.equal((await call(`${t.adminUrl}/api/approvals/${id}`, { method: 'POST', body: JSON.stringify({ decision: 'deny', reason: 'no' }) })).status, 200);
    assert.deepEqual(await replies, [403, 403, 403]);
    // Rule denials still count, so the window is known to be watched.
    for (let i = 0; i < 2; i++) assert.equal((await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice, method: 'DELETE' })).status, 403);
    await sleep(100);
    assert.deepEqual(await anomalies(t.adminUrl), [], 'three denied by a person and two by the rules: two refusals count, under 3/min');
  });

  it('calls held while their key is revoked, then approved, raise no auth_failures alert: the key was a real one', async () => {
    const made = await call(`${t.adminUrl}/api/agents/bob/keys`, { method: 'POST', body: '{}' });
    assert.equal(made.status, 201);
    const { ids, replies } = await hold(made.json.key);
    assert.equal((await call(`${t.adminUrl}/api/keys/${made.json.id}`, { method: 'DELETE' })).status, 200);
    for (const id of ids) await call(`${t.adminUrl}/api/approvals/${id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) });
    assert.deepEqual(await replies, [401, 401, 401]);
    await sleep(100);
    assert.deepEqual(await anomalies(t.adminUrl), []);
  });

  it('open tunnels cut by a reload that no longer allows them raise no denials alert: the operator cut them', async () => {
    const port = Number(new URL(t.agentUrl).port);
    const tunnels = await Promise.all(Array.from({ length: 4 }, () => rawProxyRequest(port, `127.0.0.1:${tcpPort}`, basic('bob', KEYS.bob))));
    for (const x of tunnels) assert.match(x.head, /^HTTP\/1\.1 200 /);
    const closed = Promise.all(tunnels.map((x) => new Promise((r) => x.socket.once('close', r))));
    const original = readFileSync(t.configFile, 'utf8');
    try {
      writeFileSync(t.configFile, original.replace(`, "http: CONNECT 127.0.0.1:${tcpPort}"`, ''));
      assert.deepEqual(t.gw.reload('test'), { ok: true });
      await closed;
      await eventually('the cut tunnels recorded', async () => {
        const recs = (await call(`${t.adminUrl}/api/audit?limit=500`)).json.records as { phase: string; code?: string; agent: string; action: string }[];
        return recs.filter((r) => r.phase === 'final' && r.code === 'denied' && r.action === `http: CONNECT 127.0.0.1:${tcpPort}`).length === 4 ? true : undefined;
      });
      await sleep(100);
      assert.deepEqual(await anomalies(t.adminUrl), []);
    } finally {
      writeFileSync(t.configFile, original);
      t.gw.reload('test');
    }
  });

  it('proxy clients asking without credentials first (the 407 challenge) raise no auth_failures alert; wrong credentials do', async () => {
    const port = Number(new URL(t.agentUrl).port);
    for (let i = 0; i < 5; i++) {
      const { socket, head } = await rawProxyRequest(port, `127.0.0.1:${tcpPort}`, undefined);
      socket.destroy();
      assert.match(head, /^HTTP\/1\.1 407 /);
    }
    for (let i = 0; i < 5; i++) {
      const { socket, head } = await rawProxyRequest(port, `127.0.0.1:${tcpPort}`, undefined, `GET http://127.0.0.1:${tcpPort}/x HTTP/1.1`);
      socket.destroy();
      assert.match(head, /^HTTP\/1\.1 407 /);
    }
    await sleep(100);
    assert.deepEqual(await anomalies(t.adminUrl), [], 'ten challenges are no failed keys');
    for (let i = 0; i < 3; i++) {
      const { socket, head } = await rawProxyRequest(port, `127.0.0.1:${tcpPort}`, basic('bob', 'alk_guessYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY'));
      socket.destroy();
      assert.match(head, /^HTTP\/1\.1 407 /);
    }
    const a = await eventually('an auth_failures alert', async () => (await anomalies(t.adminUrl)).find((x) => x.data.signal === 'auth_failures'));
    assert.equal(a.data.count, 3);
  });
});

describe('anomaly alerts: a wall clock stepped back', () => {
  let up: Upstream;
  let t: TestGateway;
  const realNow = Date.now;
  // The wall clock of the whole process, from before the gateway starts: `offset` steps it.
  let offset = 0;
  before(async () => {
    Date.now = () => realNow() - offset;
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: reads
    allow: ["http: GET api/**"]
http:
  services:
    api: { url: "${up.url}" }
alerts:
  anomalies:
    denials: 3/min
    callSpike: { factor: 4, min: 10/s, learn: 3s }
`);
  });
  after(async () => {
    Date.now = realNow;
    await t.stop();
    await up.close();
  });

  it('does not silence spike judging for as long as the step (NTP correcting a clock that ran ahead)', async () => {
    // alice's average is learned; then the wall clock steps back two minutes.
    const end = realNow() + 4500;
    while (realNow() < end) {
      assert.equal((await call(`${t.agentUrl}/http/api/items`, { key: KEYS.alice })).status, 200);
      await sleep(330);
    }
    offset = 120_000;
    await Promise.all(Array.from({ length: 40 }, () => call(`${t.agentUrl}/http/api/items`, { key: KEYS.alice })));
    const spike = await eventually('a call_spike alert', async () => (await anomalies(t.adminUrl)).find((x) => x.data.signal === 'call_spike'));
    assert.equal(spike.agent, 'alice');
    // (The alert store's once-a-minute folding is timed on the same monotonic clock; testing it
    // would cost the suite a minute's wait.)
  });
});
