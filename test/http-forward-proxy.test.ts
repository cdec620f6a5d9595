/**
 * Forward-proxy mode (SPEC 5.1): agents whose HTTP clients use the agent port as their proxy
 * (HTTP_PROXY / HTTPS_PROXY). Driven with real proxy clients — undici's ProxyAgent and curl — and
 * raw sockets where a client would tidy the request up; an https:// upstream with its own
 * certificate is reached through a CONNECT tunnel.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ProxyAgent, request } from 'undici';
import { waitFor } from './support/cli.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { startUpstream, type Upstream } from './support/upstream.js';
import { basic, rawProxyRequest } from './support/proxy.js';


/** Runs curl (asynchronously: the gateway it calls runs in this process) and returns what it printed. */
function curl(args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('curl', ['--max-time', '10', ...args], { env: { ...process.env, ...env } });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', () => resolve(out));
  });
}

/** Sends raw bytes and reads until the peer closes or `until` matches. */
function raw(port: number, text: string, until?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (c) => {
      got += c.toString('latin1');
      if (until?.test(got)) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(got));
    s.write(text);
  });
}

async function records(t: TestGateway, action: string): Promise<Record<string, any>[]> {
  const r = await call(`${t.adminUrl}/api/audit?limit=500`);
  return (r.json.records as Record<string, any>[]).filter((x) => x.action === action);
}

async function finalOf(t: TestGateway, action: string): Promise<Record<string, any>> {
  return waitFor(`the final record of ${action}`, async () => (await records(t, action)).find((x) => x.phase === 'final') as never);
}

describe('forward-proxy mode is off unless configured', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: everything
    allow: ["http: * */**", "http: CONNECT *"]
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('an allow written for services does not open hosts: 404 naming http.forwardProxy, nothing forwarded, refusal audited', async () => {
    const host = new URL(up.url).host;
    const r = await raw(Number(new URL(t.agentUrl).port), `GET ${up.url}/x HTTP/1.1\r\nHost: ${host}\r\nProxy-Authorization: ${basic('alice', KEYS.alice)}\r\nConnection: close\r\n\r\n`);
    assert.match(r, /^HTTP\/1\.1 404 /);
    assert.match(r, /http\.forwardProxy/);
    const tunnel = await rawProxyRequest(Number(new URL(t.agentUrl).port), host, basic('alice', KEYS.alice));
    assert.match(tunnel.head, /^HTTP\/1\.1 404 /);
    tunnel.socket.destroy();
    assert.equal(up.received.length, 0);
    const audit = (await call(`${t.adminUrl}/api/audit?agent=alice`)).json.records as { code: string }[];
    assert.equal(audit.filter((x) => x.code === 'not_found').length, 2);
  });
});

describe('forward-proxy mode', () => {
  let up: Upstream;
  let tls: HttpsServer;
  let tlsPort = 0;
  let t: TestGateway;
  let upHost = '';
  let proxyPort = 0;
  const certDir = mkdtempSync(join(tmpdir(), 'airlock-tls-'));
  const tlsSeen: { url: string; auth: string | undefined }[] = [];
  before(async () => {
    up = await startUpstream();
    upHost = new URL(up.url).host;
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'), '-days', '1'], { stdio: 'ignore' });
    tls = createHttpsServer({ key: readFileSync(join(certDir, 'key.pem')), cert: readFileSync(join(certDir, 'cert.pem')) }, (req, res) => {
      tlsSeen.push({ url: req.url ?? '', auth: req.headers.authorization });
      res.end('secret inside tls');
    });
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    tlsPort = (tls.address() as AddressInfo).port;
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: internal-api
    allow: ["http: GET,POST,DELETE ${upHost}/api/**", "http: CONNECT 127.0.0.1:${tlsPort}"]
  - name: no-admin-paths
    deny: ["http: * ${upHost}/api/admin/**"]
  - name: deletes-need-a-human
    approve: ["http: DELETE ${upHost}/api/**"]
  - name: self-and-metadata
    agents: [bob]
    allow: ["http: * 127.0.0.1:*/**", "http: CONNECT 127.0.0.1:*", "http: * 169.254.169.254/**", "http: CONNECT 169.254.169.254:*", "http: * 100.100.100.200/**", "http: * [fd00:ec2::254]/**", "http: * [64:ff9b::a9fe:a9fe]/**", "http: CONNECT [64:ff9b::a9fe:a9fe]:*"]
approvals: { timeout: 10s }
guards: { loop: { repeats: 3, window: 60s } }
http:
  forwardProxy: { timeout: 5s }
`);
    proxyPort = Number(new URL(t.agentUrl).port);
  });
  after(async () => {
    await t.stop();
    await up.close();
    tls.close();
    rmSync(certDir, { recursive: true, force: true });
  });

  // proxyTunnel: false — http:// URLs go as absolute-form requests (as curl and most clients send
  // them), not through CONNECT; https:// ones are always tunnelled.
  const alice = () => new ProxyAgent({ uri: t.agentUrl, token: basic('alice', KEYS.alice), proxyTunnel: false, requestTls: { rejectUnauthorized: false } });

  it('a proxy client reaches an allowed host; the host gets the agent\'s own Authorization but never its airlock key', async () => {
    const r = await request(`${up.url}/api/items?x=1`, { dispatcher: alice(), headers: { authorization: 'Bearer token-for-the-host', 'x-airlock-session': 's-9' } });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(await r.body.json(), { method: 'GET', url: '/api/items?x=1', bytes: 0 });
    assert.match(String(r.headers['x-airlock-request-id']), /^[0-9a-f-]{36}$/);
    const seen = up.received.at(-1)!;
    assert.equal(seen.headers.authorization, 'Bearer token-for-the-host');
    assert.equal(seen.headers['proxy-authorization'], undefined);
    assert.equal(seen.headers['x-airlock-session'], undefined);
    assert.ok(!JSON.stringify(seen.headers).includes(KEYS.alice));
    const rec = await finalOf(t, `http: GET ${upHost}/api/items`);
    assert.equal(rec['decision'], 'allowed');
    assert.equal(rec['status'], 200);
    assert.equal(rec['session'], 's-9');
    assert.deepEqual(rec['target'], { host: upHost, method: 'GET', path: '/api/items' });
  });

  it('curl with -x works the same, and an Authorization carrying an airlock key is not passed on', async () => {
    const out = await curl(['-s', '-x', `http://alice:${KEYS.alice}@127.0.0.1:${proxyPort}`, '-H', `Authorization: Bearer ${KEYS.alice}`, `${up.url}/api/from-curl`]);
    assert.deepEqual(JSON.parse(out), { method: 'GET', url: '/api/from-curl', bytes: 0 });
    assert.equal(up.received.at(-1)!.headers.authorization, undefined);
  });

  it('an Authorization: Basic carrying the airlock key (base64) is not passed on either; other Basic credentials are', async () => {
    for (const [auth, passed] of [[basic('alice', KEYS.alice), false], [basic('someone', 'password-for-the-host'), true]] as const) {
      const r = await request(`${up.url}/api/basic`, { dispatcher: alice(), headers: { authorization: auth } });
      assert.equal(r.statusCode, 200);
      await r.body.dump();
      assert.equal(up.received.at(-1)!.headers.authorization, passed ? auth : undefined);
    }
  });

  it('rules judge host and path: a deny wins, an unlisted path is refused, and the host never sees either', async () => {
    const before = up.received.length;
    const denied = await request(`${up.url}/api/admin/keys`, { dispatcher: alice() });
    assert.equal(denied.statusCode, 403);
    const body = (await denied.body.json()) as { error: { code: string; rule: string } };
    assert.equal(body.error.code, 'denied');
    assert.equal(body.error.rule, 'no-admin-paths');
    const unlisted = await request(`${up.url}/other`, { dispatcher: alice() });
    assert.equal(unlisted.statusCode, 403);
    await unlisted.body.dump();
    assert.equal(up.received.length, before);
  });

  it('paths that would slip past a rule are refused as on /http: dot segments (plain or encoded), //, ;, fragments', async () => {
    const before = up.received.length;
    for (const path of ['/api/x/../admin/keys', '/api/%2e%2e/admin/keys', '/api//admin', '/api/admin;x/keys', '/api/ok#frag']) {
      const r = await raw(proxyPort, `GET http://${upHost}${path} HTTP/1.1\r\nHost: ${upHost}\r\nProxy-Authorization: ${basic('alice', KEYS.alice)}\r\nConnection: close\r\n\r\n`);
      assert.match(r, /^HTTP\/1\.1 400 /, path);
      assert.match(r, /"code":"bad_request"/, path);
    }
    assert.equal(up.received.length, before);
  });

  it('no key, a wrong key, or a key under another agent\'s name → 407 with a Basic challenge', async () => {
    for (const auth of [undefined, basic('alice', 'alk_wrongWRONGWRONGWRONGWRONGWRONGWRONGWR'), basic('bob', KEYS.alice)]) {
      const r = await raw(proxyPort, `GET ${up.url}/api/items HTTP/1.1\r\nHost: ${upHost}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}Connection: close\r\n\r\n`);
      assert.match(r, /^HTTP\/1\.1 407 /);
      assert.match(r, /proxy-authenticate: Basic realm="airlock"/i);
      assert.match(r, /"code":"unauthenticated"/);
    }
    const tunnel = await rawProxyRequest(proxyPort, `127.0.0.1:${tlsPort}`, 'Basic bm9ib2R5Om5vdGhpbmc=');
    assert.match(tunnel.head, /^HTTP\/1\.1 407 /);
    tunnel.socket.destroy();
  });

  it('an approve rule holds a proxied call until a person decides', async () => {
    const held = request(`${up.url}/api/items/7`, { method: 'DELETE', dispatcher: alice() });
    const a = await waitFor('the approval', async () => (await call(`${t.adminUrl}/api/approvals?status=pending`)).json.approvals.find((x: { action: string }) => x.action === `http: DELETE ${upHost}/api/items/7`) as { id: string; summary: string } | undefined);
    assert.match(a.summary, new RegExp(`DELETE ${up.url}/api/items/7`));
    await call(`${t.adminUrl}/api/approvals/${a.id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) });
    const r = await held;
    assert.equal(r.statusCode, 200);
    assert.deepEqual(await r.body.json(), { method: 'DELETE', url: '/api/items/7', bytes: 0 });
  });

  it('https:// goes through a CONNECT tunnel judged on host and port; what passes inside stays between agent and host', async () => {
    const dispatcher = alice();
    const r = await request(`https://127.0.0.1:${tlsPort}/private/path`, { dispatcher, headers: { authorization: 'Bearer inside-tls' } });
    assert.equal(r.statusCode, 200);
    assert.equal(await r.body.text(), 'secret inside tls');
    await dispatcher.close(); // ends the tunnel: its final record is written when it closes
    assert.deepEqual(tlsSeen.at(-1), { url: '/private/path', auth: 'Bearer inside-tls' });
    const rec = await finalOf(t, `http: CONNECT 127.0.0.1:${tlsPort}`);
    assert.equal(rec['decision'], 'allowed');
    assert.deepEqual(rec['target'], { host: `127.0.0.1:${tlsPort}`, method: 'CONNECT' });
    assert.ok(rec['bytesIn'] > 100 && rec['bytesOut'] > 100, `bytes both ways: ${rec['bytesIn']} / ${rec['bytesOut']}`);
    assert.ok(!JSON.stringify(rec).includes('secret inside tls'));
  });

  it('the loop guard counts calls, not tunnels: a client opening a tunnel per request is not a loop, the same GET repeated is', async () => {
    for (let i = 0; i < 5; i++) {
      const dispatcher = alice();
      const r = await request(`https://127.0.0.1:${tlsPort}/poll`, { dispatcher });
      assert.equal(r.statusCode, 200, `tunnel ${i + 1}`);
      await r.body.dump();
      await dispatcher.close();
    }
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await request(`${up.url}/api/same-call`, { dispatcher: alice() });
      statuses.push(r.statusCode);
      await r.body.dump();
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
  });

  it('a CONNECT the rules do not allow is refused before any byte reaches the host, and audited', async () => {
    const other = await startUpstream();
    try {
      const port = new URL(other.url).port;
      const tunnel = await rawProxyRequest(proxyPort, `127.0.0.1:${port}`, basic('alice', KEYS.alice));
      assert.match(tunnel.head, /^HTTP\/1\.1 403 /);
      tunnel.socket.destroy();
      const rec = await finalOf(t, `http: CONNECT 127.0.0.1:${port}`);
      assert.equal(rec['decision'], 'denied');
      const bad = await rawProxyRequest(proxyPort, 'no-port-here', basic('alice', KEYS.alice));
      assert.match(bad.head, /^HTTP\/1\.1 400 /);
      bad.socket.destroy();
    } finally {
      await other.close();
    }
  });

  it('an open tunnel is judged again when its key is revoked or the config changes, and cut if no longer allowed', async () => {
    /** A tunnel with a live TLS session in it; resolves when the proxy closes it. */
    const liveTunnel = async (auth: string) => {
      const { socket, head } = await rawProxyRequest(proxyPort, `127.0.0.1:${tlsPort}`, auth);
      assert.match(head, /^HTTP\/1\.1 200 /);
      const session = tlsConnect({ socket, rejectUnauthorized: false });
      await new Promise<void>((r) => session.once('secureConnect', () => r()));
      return { closed: new Promise<number>((r) => socket.once('close', () => r(Date.now()))) };
    };
    // A stored key of alice's, revoked while its tunnel is open; a tunnel on her config key stays up.
    const made = await call(`${t.adminUrl}/api/agents/alice/keys`, { method: 'POST', body: '{}' });
    const revokedClosed = await liveTunnel(basic('alice', made.json.key));
    const survivor = await rawProxyRequest(proxyPort, `127.0.0.1:${tlsPort}`, basic('alice', KEYS.alice));
    let survivorClosed = false;
    survivor.socket.once('close', () => (survivorClosed = true));
    const t0 = Date.now();
    await call(`${t.adminUrl}/api/keys/${made.json.id}`, { method: 'DELETE' });
    assert.ok((await revokedClosed.closed) - t0 < 1000, 'the revoked key\'s tunnel is cut at once');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(survivorClosed, false, 'a tunnel on a key still valid stays open');

    // A reload whose rules no longer allow the host cuts the tunnel still open.
    const original = readFileSync(t.configFile, 'utf8');
    const survivorCut = new Promise<number>((r) => survivor.socket.once('close', () => r(Date.now())));
    try {
      writeFileSync(t.configFile, original.replace(`"http: CONNECT 127.0.0.1:${tlsPort}"`, '"http: CONNECT elsewhere.example:443"'));
      const t1 = Date.now();
      assert.equal((await call(`${t.adminUrl}/api/config?action=reload`, { method: 'POST' })).status, 200);
      assert.ok((await survivorCut) - t1 < 1000, 'cut by the reload');
      const recs = await waitFor('both cut tunnels recorded', async () => {
        const r = (await records(t, `http: CONNECT 127.0.0.1:${tlsPort}`)).filter((x) => x.phase === 'final' && x.code === 'denied' && /no longer/.test(String(x.message)));
        return r.length >= 2 ? r : undefined;
      });
      assert.equal(recs.length, 2);
    } finally {
      writeFileSync(t.configFile, original);
      await call(`${t.adminUrl}/api/config?action=reload`, { method: 'POST' });
    }
  });

  it('a kill switch cuts an open tunnel (a live TLS session inside) within a second; the final record says killed, with the bytes', async () => {
    const { socket, head } = await rawProxyRequest(proxyPort, `127.0.0.1:${tlsPort}`, basic('alice', KEYS.alice));
    assert.match(head, /^HTTP\/1\.1 200 Connection Established/);
    // A real TLS session through the tunnel, left open (keep-alive) after one request.
    const session = tlsConnect({ socket, rejectUnauthorized: false });
    await new Promise<void>((r) => session.once('secureConnect', () => r()));
    session.write('GET /before-the-kill HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((r) => session.once('data', () => r()));
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
    const t0 = Date.now();
    await call(`${t.adminUrl}/api/kill`, { method: 'POST', body: JSON.stringify({ agent: 'alice' }) });
    try {
      assert.ok((await closed) - t0 < 1000, 'cut within a second');
      const rec = await waitFor('the killed tunnel', async () => (await records(t, `http: CONNECT 127.0.0.1:${tlsPort}`)).find((x) => x.phase === 'final' && x.decision === 'killed') as never);
      assert.ok(rec['bytesIn'] > 100 && rec['bytesOut'] > 100, `bytes both ways: ${rec['bytesIn']} / ${rec['bytesOut']}`);
      assert.equal(rec['code'], 'killed');
      const refused = await rawProxyRequest(proxyPort, `127.0.0.1:${tlsPort}`, basic('alice', KEYS.alice));
      assert.match(refused.head, /^HTTP\/1\.1 403 /);
      refused.socket.destroy();
    } finally {
      await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', body: JSON.stringify({ agent: 'alice' }) });
    }
  });

  it("whatever the rules allow, the proxy does not reach the gateway's own ports or link-local addresses", async () => {
    const bob = new ProxyAgent({ uri: t.agentUrl, token: basic('bob', KEYS.bob), proxyTunnel: false });
    const adminHost = new URL(t.adminUrl).host;
    const viaProxy = await request(`${t.adminUrl}/api/kill`, { method: 'POST', dispatcher: bob, body: JSON.stringify({ all: true }) });
    assert.equal(viaProxy.statusCode, 403);
    assert.match(((await viaProxy.body.json()) as { error: { message: string } }).error.message, /own ports/);
    const tunnel = await rawProxyRequest(proxyPort, adminHost, basic('bob', KEYS.bob));
    assert.match(tunnel.head, /^HTTP\/1\.1 403 /);
    tunnel.socket.destroy();
    const loop = await request(`${t.agentUrl}/http/x`, { dispatcher: bob });
    assert.equal(loop.statusCode, 403);
    await loop.body.dump();
    assert.deepEqual((await call(`${t.adminUrl}/api/kill`)).json.kills, [], 'the admin API was never reached');

    // A cloud metadata service hands out credentials to whoever asks from the machine.
    const metadata = await request('http://169.254.169.254/latest/meta-data/iam/security-credentials/', { dispatcher: bob });
    assert.equal(metadata.statusCode, 403);
    assert.match(((await metadata.body.json()) as { error: { message: string } }).error.message, /link-local/);
    const metaTunnel = await rawProxyRequest(proxyPort, '169.254.169.254:80', basic('bob', KEYS.bob));
    assert.match(metaTunnel.head, /^HTTP\/1\.1 403 /);
    metaTunnel.socket.destroy();
    // The metadata addresses outside 169.254/16 (AWS over IPv6, Alibaba Cloud), and 169.254.169.254 written as NAT64.
    for (const url of ['http://100.100.100.200/latest/meta-data/', 'http://[fd00:ec2::254]/latest/meta-data/', 'http://[64:ff9b::169.254.169.254]/latest/meta-data/']) {
      const r = await request(url, { dispatcher: bob });
      assert.equal(r.statusCode, 403, url);
      assert.match(((await r.body.json()) as { error: { message: string } }).error.message, /metadata/, url);
    }
    const nat64 = await rawProxyRequest(proxyPort, '[64:ff9b::a9fe:a9fe]:80', basic('bob', KEYS.bob));
    assert.match(nat64.head, /^HTTP\/1\.1 403 /);
    nat64.socket.destroy();
    const rec = await finalOf(t, `http: POST ${adminHost}/api/kill`);
    assert.equal(rec['decision'], 'denied');
    assert.equal(rec['code'], 'denied');
  });

  it('curl through HTTPS_PROXY (the environment variable) reaches the https host', async () => {
    const out = await curl(['-s', '-k', `https://127.0.0.1:${tlsPort}/via-env`], { HTTPS_PROXY: `http://alice:${KEYS.alice}@127.0.0.1:${proxyPort}`, NO_PROXY: '' });
    assert.equal(out, 'secret inside tls');
    assert.equal(tlsSeen.at(-1)!.url, '/via-env');
  });

  it('the upstream-duration metric does not take hosts as label values (an agent could mint a series per host)', async () => {
    const r = await request(`${up.url}/api/metered`, { dispatcher: alice() });
    assert.equal(r.statusCode, 200);
    await r.body.dump();
    const metrics = (await call(`${t.adminUrl}/metrics`)).text;
    assert.match(metrics, /^airlock_upstream_duration_seconds_count\{protocol="http",target="\(forward-proxy\)"\} [1-9]/m);
    assert.ok(!metrics.includes(upHost), 'no series names the host');
  });
});

describe('forward-proxy mode: one spelling per host', () => {
  let up: Upstream;
  let t: TestGateway;
  let upPort = '';
  let proxyPort = 0;
  before(async () => {
    up = await startUpstream();
    upPort = new URL(up.url).port;
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: anywhere
    allow: ["http: * */**", "http: CONNECT *"]
  - name: not-this-machine
    deny: ["http: * 127.0.0.1:*/**", "http: * localhost:*/**", "http: CONNECT 127.0.0.1:*", "http: CONNECT localhost:*"]
http:
  forwardProxy: true
`);
    proxyPort = Number(new URL(t.agentUrl).port);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('a deny on a host is not passed by a trailing dot, an IPv4-mapped IPv6 address, or IPv4 in decimal, hex, octal or short form', async () => {
    const auth = basic('alice', KEYS.alice);
    for (const host of [`localhost.:${upPort}`, `LOCALHOST.:${upPort}`, `[::ffff:127.0.0.1]:${upPort}`, `[::ffff:7f00:1]:${upPort}`, `2130706433:${upPort}`]) {
      const r = await raw(proxyPort, `GET http://${host}/x HTTP/1.1\r\nHost: ${host}\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`);
      assert.match(r, /^HTTP\/1\.1 403 /, host);
      assert.match(r, /"rule":"not-this-machine"/, host);
    }
    for (const host of [`2130706433:${upPort}`, `0x7f.1:${upPort}`, `0177.0.0.1:${upPort}`, `127.1:${upPort}`, `[::ffff:127.0.0.1]:${upPort}`, `localhost.:${upPort}`]) {
      const tunnel = await rawProxyRequest(proxyPort, host, auth);
      assert.match(tunnel.head, /^HTTP\/1\.1 403 /, host);
      tunnel.socket.destroy();
    }
    assert.equal(up.received.length, 0);
    // Judged, and audited, under the one spelling the rules are written in.
    const audit = (await call(`${t.adminUrl}/api/audit?limit=100`)).json.records as { action: string; rule: string }[];
    assert.equal(audit.filter((x) => x.action === `http: CONNECT 127.0.0.1:${upPort}` && x.rule === 'not-this-machine').length, 5);
    assert.equal(audit.filter((x) => x.action === `http: GET 127.0.0.1:${upPort}/x`).length, 3);
  });
});

describe('forward-proxy mode: refused CONNECT sockets', () => {
  it('are closed by the gateway even when the client keeps its side open: a drain does not wait on them', async () => {
    const t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: one-host
    allow: ["http: CONNECT example.com:443"]
http:
  forwardProxy: true
`);
    const port = Number(new URL(t.agentUrl).port);
    // Clients that never close their side (allowHalfOpen: a FIN from the gateway does not end them).
    const opened: Socket[] = [];
    const refusedWith = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
        opened.push(s);
        let got = '';
        s.on('data', (c) => {
          got += c.toString('latin1');
          if (got.includes('"request_id"')) resolve(got);
        });
        s.on('error', reject);
        s.write(request);
      });
    try {
      assert.match(await refusedWith('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'), /^HTTP\/1\.1 407 /);
      assert.match(await refusedWith(`CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nProxy-Authorization: ${basic('alice', KEYS.alice)}\r\n\r\n`), /^HTTP\/1\.1 403 /);
      assert.match(await refusedWith(`CONNECT nonsense HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('alice', KEYS.alice)}\r\n\r\n`), /^HTTP\/1\.1 400 /);
      const t0 = Date.now();
      const stopped = await Promise.race([t.stop().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 5000))]);
      assert.ok(stopped, 'the gateway stopped (its drain was held by the refused sockets)');
      assert.ok(Date.now() - t0 < 3000);
    } finally {
      for (const s of opened) s.destroy();
      await t.stop();
    }
  });
});

describe('forward-proxy mode: a CONNECT held for approval', () => {
  let t: TestGateway;
  let echo: ReturnType<typeof createTcpServer>;
  let echoPort = 0;
  let proxyPort = 0;
  before(async () => {
    echo = createTcpServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as AddressInfo).port;
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"], limits: { concurrency: 1 } }
rules:
  - name: tunnels
    allow: ["http: CONNECT *"]
  - name: by-name-needs-a-human
    approve: ["http: CONNECT localhost:*"]
approvals: { timeout: 5m }
http:
  forwardProxy: true
`);
    proxyPort = Number(new URL(t.agentUrl).port);
  });
  after(async () => {
    await t.stop();
    echo.close();
  });

  const pending = async () => (await call(`${t.adminUrl}/api/approvals?status=pending`)).json.approvals as { id: string; action: string }[];

  it('ends when the agent hangs up: the approval is withdrawn and the concurrency slot comes back at once', async () => {
    const s = connect(proxyPort, '127.0.0.1');
    s.on('error', () => {});
    s.write(`CONNECT localhost:${echoPort} HTTP/1.1\r\nHost: localhost:${echoPort}\r\nProxy-Authorization: ${basic('alice', KEYS.alice)}\r\n\r\n`);
    await waitFor('the approval', async () => (await pending()).length === 1);
    s.end(); // the agent gives up: a FIN, as any client that closes its socket sends
    await waitFor('the approval to be withdrawn', async () => (await pending()).length === 0, 2000);
    const rec = await finalOf(t, `http: CONNECT localhost:${echoPort}`);
    assert.notEqual(rec['decision'], 'allowed');
    const next = await rawProxyRequest(proxyPort, `127.0.0.1:${echoPort}`, basic('alice', KEYS.alice));
    assert.match(next.head, /^HTTP\/1\.1 200 /, 'the slot came back');
    next.socket.destroy();
    await finalOf(t, `http: CONNECT 127.0.0.1:${echoPort}`);
  });

  it('bytes the agent sends while its CONNECT is held reach the host once approved', async () => {
    const s = connect(proxyPort, '127.0.0.1');
    let got = '';
    s.on('data', (c) => (got += c.toString('latin1')));
    s.write(`CONNECT localhost:${echoPort} HTTP/1.1\r\nHost: localhost:${echoPort}\r\nProxy-Authorization: ${basic('alice', KEYS.alice)}\r\n\r\n`);
    const [a] = await waitFor('the approval', async () => {
      const p = await pending();
      return p.length === 1 ? p : undefined;
    });
    s.write('sent-early|');
    await new Promise((r) => setTimeout(r, 100));
    await call(`${t.adminUrl}/api/approvals/${a!.id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) });
    await waitFor('the 200', () => got.includes('\r\n\r\n'));
    s.write('sent-late');
    await waitFor('the echo', () => got.endsWith('sent-early|sent-late'));
    assert.match(got, /^HTTP\/1\.1 200 Connection Established/);
    s.destroy();
  });
});
