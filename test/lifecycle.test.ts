/**
 * Process lifecycle (SPEC 1 and 12) of the real `airlock start`: the listening lines, health,
 * draining on SIGTERM/SIGINT with an exchange in flight, a port already taken, and config reload
 * on file change and on SIGHUP without dropping connections (a bad file is refused, the old config
 * kept).
 */
import assert from 'node:assert/strict';
import { readFileSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { call, KEYS } from './support/gateway.js';
import { logLines, runCli, startCliGateway, startCli, tempDir, waitFor, writeConfig, type CliGateway } from './support/cli.js';
import { startUpstream, type Upstream } from './support/upstream.js';

function baseConfig(upUrl: string, allow: string[], extra = ''): string {
  return `server: { keepAliveTimeout: 60s }
agents:
  bot: { keys: ["${KEYS.alice}"] }
rules:
  - name: base
    allow: [${allow.map((a) => JSON.stringify(a)).join(', ')}]
${extra}http:
  services:
    svc: { url: "${upUrl}" }
`;
}

interface KaReply {
  status: number;
  reused: boolean;
  localPort: number;
  body: string;
}

/** A GET over a keep-alive agent: says whether the request went over an already-open connection. */
function kaGet(agent: HttpAgent, url: string, key: string): Promise<KaReply> {
  return new Promise((res, rej) => {
    const req = httpRequest(url, { agent, headers: { authorization: `Bearer ${key}` } }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => (body += c));
      r.on('end', () => res({ status: r.statusCode!, reused: req.reusedSocket, localPort: req.socket!.localPort!, body }));
    });
    req.on('error', rej);
    req.end();
  });
}

describe('airlock start', { timeout: 180_000 }, () => {
  const tmp = tempDir();
  let up: Upstream;
  before(async () => {
    up = await startUpstream();
  });
  after(async () => {
    await up.close();
    tmp.cleanup();
  });

  it('prints exactly the two listening lines with real ports, answers /healthz and /readyz, exits 0 on SIGINT', async () => {
    const file = writeConfig(tmp.dir, baseConfig(up.url, ['http: GET svc/**']), 'start.yaml');
    const gw = await startCliGateway(file);
    const ports = [gw.agentUrl, gw.adminUrl].map((u) => Number(new URL(u).port));
    assert.ok(ports.every((p) => p > 0), `real ports, not 0: ${ports.join(', ')}`);
    assert.notEqual(ports[0], ports[1]);
    for (const base of [gw.agentUrl, gw.adminUrl]) {
      const h = await call(`${base}/healthz`);
      assert.equal(h.status, 200);
      assert.equal(h.json.status, 'ok');
      const r = await call(`${base}/readyz`);
      assert.equal(r.status, 200);
    }
    const ok = await call(`${gw.agentUrl}/http/svc/x`, { key: KEYS.alice });
    assert.equal(ok.status, 200);
    const exit = await gw.stop('SIGINT');
    assert.deepEqual(exit, { code: 0, signal: null }, gw.stderr());
    // stdout carries only the two human lines; logs go to stderr.
    assert.equal(gw.stdout(), `airlock: agent port listening on ${gw.agentUrl}\nairlock: admin port listening on ${gw.adminUrl}\n`);
    assert.match(gw.stderr(), /gateway stopped/);
  });

  it('drains on SIGTERM: refuses new connections, finishes the slow call in flight with 200, writes its final audit record, exits 0', async () => {
    let answeredAt = 0;
    const slow = await startUpstream((req, res) => {
      setTimeout(() => {
        answeredAt = Date.now();
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`slow answer for ${req.url}`);
      }, 1500);
    });
    try {
      const file = writeConfig(tmp.dir, baseConfig(slow.url, ['http: GET svc/**']), 'drain.yaml');
      const gw = await startCliGateway(file);
      const inFlight = call(`${gw.agentUrl}/http/svc/slow/1`, { key: KEYS.alice });
      await waitFor('the upstream to receive the call', () => slow.received.length === 1);
      const signalledAt = Date.now();
      gw.child.kill('SIGTERM');
      // While it drains: readiness says so on the admin port, and the agent port takes no new connections.
      await waitFor('/readyz to report draining', async () => (await call(`${gw.adminUrl}/readyz`)).status === 503, 1000, 20);
      assert.equal((await call(`${gw.adminUrl}/readyz`)).json.status, 'draining');
      await assert.rejects(call(`${gw.agentUrl}/healthz`), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
      const r = await inFlight;
      assert.equal(r.status, 200);
      assert.equal(r.text, 'slow answer for /slow/1');
      const exit = await gw.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, gw.stderr());
      assert.ok(answeredAt > signalledAt, 'the upstream answered only after the signal: the call was in flight');

      const q = await runCli(['audit', 'query', '-c', file, '--json']);
      assert.equal(q.code, 0, q.stderr);
      const recs = q.stdout.trim().split('\n').map((l) => JSON.parse(l));
      const mine = recs.filter((x) => x.id === r.headers['x-airlock-request-id']);
      assert.deepEqual(mine.map((x) => x.phase).sort(), ['decision', 'final']);
      const fin = mine.find((x) => x.phase === 'final');
      assert.equal(fin.status, 200);
      assert.equal(fin.decision, 'allowed');
      assert.equal(fin.action, 'http: GET svc/slow/1');
      const v = await runCli(['audit', 'verify', '-c', file]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    } finally {
      await slow.close();
    }
  });

  it('bounds the drain by shutdownTimeout: a call still running is cut with a retryable 502, recorded, and the exit is 0', async () => {
    const stuck = await startUpstream((_req, res) => {
      const t = setTimeout(() => res.end('too late'), 10_000);
      res.on('close', () => clearTimeout(t));
    });
    try {
      const file = writeConfig(tmp.dir, `shutdownTimeout: 1s\n${baseConfig(stuck.url, ['http: GET svc/**'])}`, 'bounded.yaml');
      const gw = await startCliGateway(file);
      const inFlight = call(`${gw.agentUrl}/http/svc/stuck`, { key: KEYS.alice });
      await waitFor('the upstream to receive the call', () => stuck.received.length === 1);
      const t0 = Date.now();
      gw.child.kill('SIGTERM');
      const r = await inFlight;
      const exit = await gw.exited;
      const took = Date.now() - t0;
      assert.deepEqual(exit, { code: 0, signal: null }, gw.stderr());
      assert.ok(took >= 900 && took < 5000, `stopped after ${took} ms`);
      assert.equal(r.status, 502);
      assert.equal(r.json.error.code, 'upstream_error');
      assert.match(r.json.error.message, /shutting down/);
      const q = await runCli(['audit', 'query', '-c', file, '--json']);
      const fin = q.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((x) => x.id === r.headers['x-airlock-request-id'] && x.phase === 'final');
      assert.ok(fin, q.stdout);
      assert.equal(fin.code, 'upstream_error');
      assert.match(fin.message, /shutdown/);
    } finally {
      await stuck.close();
    }
  });

  it('a malformed --listen or --admin-listen is a usage error (exit 2) naming the flag', async () => {
    const file = writeConfig(tmp.dir, baseConfig(up.url, ['http: GET svc/**']), 'flags.yaml');
    const [a, b] = await Promise.all([
      runCli(['start', '-c', file, '--listen', 'nonsense', '--admin-listen', '127.0.0.1:0']),
      runCli(['start', '-c', file, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:99999']),
    ]);
    assert.equal(a.code, 2, a.stderr);
    assert.match(a.stderr, /--listen takes HOST:PORT.*"nonsense"/);
    assert.equal(b.code, 2, b.stderr);
    assert.match(b.stderr, /--admin-listen takes HOST:PORT/);
    assert.doesNotMatch(a.stderr + b.stderr, /config error/);
  });

  it('a data directory it cannot create fails with a message naming it (exit 1), not as a listen problem', async () => {
    writeFileSync(join(tmp.dir, 'a-file'), 'not a directory');
    const file = writeConfig(tmp.dir, `data: ${join(tmp.dir, 'a-file', 'data')}\n${baseConfig(up.url, ['http: GET svc/**'])}`, 'baddata.yaml');
    const r = await runCli(['start', '-c', file, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^airlock: cannot start: ENOTDIR.*a-file/m);
    assert.doesNotMatch(r.stderr, /cannot listen/);
    assert.equal(r.stdout, '');
  });

  it('a second gateway on a port in use fails with a clear message and exit 1; the first keeps serving', async () => {
    const a = await startCliGateway(writeConfig(tmp.dir, baseConfig(up.url, ['http: GET svc/**']), 'first.yaml'));
    try {
      const otherDir = tempDir();
      try {
        const file = writeConfig(otherDir.dir, baseConfig(up.url, ['http: GET svc/**']));
        const agentHostPort = new URL(a.agentUrl).host;
        const r = await runCli(['start', '-c', file, '--listen', agentHostPort, '--admin-listen', '127.0.0.1:0']);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^airlock: cannot listen: .*EADDRINUSE/m);
        assert.ok(r.stderr.includes(agentHostPort), r.stderr);
        assert.doesNotMatch(r.stdout, /listening/);
        // The admin port is taken too.
        const r2 = await runCli(['start', '-c', file, '--listen', '127.0.0.1:0', '--admin-listen', new URL(a.adminUrl).host]);
        assert.equal(r2.code, 1);
        assert.match(r2.stderr, /cannot listen: .*EADDRINUSE/);
      } finally {
        otherDir.cleanup();
      }
      assert.equal((await call(`${a.agentUrl}/http/svc/x`, { key: KEYS.alice })).status, 200);
    } finally {
      assert.equal((await a.stop()).code, 0);
    }
  });
});

describe('config reload', { timeout: 180_000 }, () => {
  const tmp = tempDir();
  let up: Upstream;
  let gw: CliGateway;
  let file: string;
  let agent: HttpAgent;
  let firstPort: number;
  before(async () => {
    up = await startUpstream();
    file = writeConfig(tmp.dir, baseConfig(up.url, ['http: GET svc/a/**']));
    gw = await startCliGateway(file);
    agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const r = await kaGet(agent, `${gw.agentUrl}/http/svc/a/1`, KEYS.alice);
    assert.equal(r.status, 200);
    firstPort = r.localPort;
  });
  after(async () => {
    agent.destroy();
    const exit = await gw.stop();
    await up.close();
    tmp.cleanup();
    assert.equal(exit.code, 0, gw.stderr());
  });

  /** Polls over the keep-alive connection until `path` answers `status`; every poll must reuse it. */
  async function until(path: string, status: number, timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    await waitFor(`${path} → ${status}`, async () => {
      const r = await kaGet(agent, `${gw.agentUrl}${path}`, KEYS.alice);
      assert.ok(r.reused, 'the already-open connection is used');
      assert.equal(r.localPort, firstPort, 'the same connection');
      return r.status === status;
    }, timeoutMs, 100);
    return Date.now() - t0;
  }

  const reloads = (why: string) => logLines(gw.stderr()).filter((l) => l['msg'] === 'config reloaded' && l['why'] === why).length;

  it('applies an added allow rule within ~2 s of the file changing, same process, same connection', async () => {
    assert.equal((await kaGet(agent, `${gw.agentUrl}/http/svc/b/1`, KEYS.alice)).status, 403);
    writeFileSync(file, readFileSync(file, 'utf8').replace('allow: ["http: GET svc/a/**"]', 'allow: ["http: GET svc/a/**", "http: GET svc/b/**"]'));
    const took = await until('/http/svc/b/1', 200, 3000);
    assert.ok(took < 2500, `applied after ${took} ms`);
    assert.equal(gw.child.exitCode, null, 'the same process still runs');
    assert.equal((await call(`${gw.agentUrl}/http/svc/a/1`, { key: KEYS.alice })).status, 200);
    await waitFor('the reload to be logged', () => reloads('file change') >= 1, 2000);
  });

  it('reloads on SIGHUP', async () => {
    assert.equal((await kaGet(agent, `${gw.agentUrl}/http/svc/c/1`, KEYS.alice)).status, 403);
    // Replace the file with one of exactly the same mtime, so the file watcher sees no change and only
    // SIGHUP can reload it. The mtime is pinned to a whole second first (sub-millisecond parts would not
    // survive utimes), and the watcher is let to take that in.
    const pinned = Math.floor(Date.now() / 1000) - 60;
    const seen = reloads('file change');
    utimesSync(file, pinned, pinned);
    await waitFor('the watcher to see the pinned mtime', () => reloads('file change') > seen, 3000);
    const next = `${file}.next`;
    writeFileSync(next, readFileSync(file, 'utf8').replace('"http: GET svc/b/**"]', '"http: GET svc/b/**", "http: GET svc/c/**"]'));
    utimesSync(next, pinned, pinned);
    renameSync(next, file);
    assert.equal(statSync(file).mtimeMs, pinned * 1000);
    const before = reloads('SIGHUP');
    gw.child.kill('SIGHUP');
    await until('/http/svc/c/1', 200, 2000);
    await waitFor('the SIGHUP reload to be logged', () => reloads('SIGHUP') === before + 1, 2000);
    assert.equal(gw.child.exitCode, null);
  });

  it('refuses a broken file and keeps serving the old config; a fixed file applies again', async () => {
    const good = readFileSync(file, 'utf8');
    const refusals = () => logLines(gw.stderr()).filter((l) => l['msg'] === 'config reload refused; the running config stays in force');
    writeFileSync(file, good.replace('"http: GET svc/c/**"]', '"http: GET svc/c/**", "http: GET svc/d/**"]').replace('rules:', 'rulez:'));
    const refused = await waitFor('the reload to be refused in the log', () => refusals().at(-1), 3000);
    assert.match(String(refused['error']), /rulez/);
    // The old config still serves (b and c allowed, d not), on the same connection.
    assert.equal((await kaGet(agent, `${gw.agentUrl}/http/svc/b/1`, KEYS.alice)).status, 200);
    assert.equal((await kaGet(agent, `${gw.agentUrl}/http/svc/c/1`, KEYS.alice)).status, 200);
    assert.equal((await kaGet(agent, `${gw.agentUrl}/http/svc/d/1`, KEYS.alice)).status, 403);
    // SIGHUP with the broken file is refused too, and the process keeps running.
    const n = refusals().length;
    gw.child.kill('SIGHUP');
    await waitFor('the SIGHUP reload to be refused', () => refusals().length > n, 2000);
    assert.equal((await kaGet(agent, `${gw.agentUrl}/http/svc/b/1`, KEYS.alice)).status, 200);

    writeFileSync(file, good.replace('"http: GET svc/c/**"]', '"http: GET svc/c/**", "http: GET svc/d/**"]'));
    await until('/http/svc/d/1', 200, 3000);
    assert.equal(gw.child.exitCode, null);
  });
});

describe('start without -c', { timeout: 180_000 }, () => {
  it('uses ./airlock.yaml from the working directory when no -c is given', async () => {
    const tmp = tempDir();
    try {
      writeConfig(tmp.dir, 'agents:\n  bot: { keys: ["' + KEYS.bob + '"] }\nrules:\n  - name: r\n    allow: ["http: GET nowhere/**"]\n');
      const gw = await startCli(['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], { cwd: tmp.dir });
      try {
        // The key from ./airlock.yaml is known; the service is not configured, so 404 (not 401).
        const r = await call(`${gw.agentUrl}/http/svc/x`, { key: KEYS.bob });
        assert.equal(r.status, 404);
        assert.equal(r.json.error.code, 'not_found');
      } finally {
        assert.equal((await gw.stop()).code, 0);
      }
    } finally {
      tmp.cleanup();
    }
  });
});
