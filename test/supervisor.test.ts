/**
 * Local service processes (`http.services.<name>.command`): started with the gateway, given a
 * minimal environment plus their configured `env` — never the gateway's own (admin tokens,
 * provider keys, whatever its operator exported); restarted when they die; and stopped, with every
 * process they started, when the gateway stops — also when it is killed with `kill -9`, so that the
 * next start can serve on the same port with its own copy.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { freePort, logLines, portBusy, startCliGateway, tempDir, waitFor, writeConfig, type CliGateway } from './support/cli.js';

// Serves the names of its environment variables and the value of SERVICE_SETTING.
const SERVICE = "require('http').createServer((q, r) => r.end(JSON.stringify({ names: Object.keys(process.env), setting: process.env.SERVICE_SETTING }))).listen(+process.env.PORT, '127.0.0.1')";

// A service that starts a process of its own (as a shell script starting a server would) and
// serves its pid, its parent's, and that grandchild's.
const FAMILY = `
const { spawn } = require('node:child_process');
const grandchild = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60000)'], { stdio: 'ignore' });
require('node:fs').appendFileSync('pids', \`\${process.pid} \${grandchild.pid}\\n\`);
require('node:http')
  .createServer((q, r) => r.end(JSON.stringify({ pid: process.pid, ppid: process.ppid, grandchild: grandchild.pid })))
  .listen(+process.env.PORT, '127.0.0.1');
`;

interface Family {
  pid: number;
  ppid: number;
  grandchild: number;
}

/** Is `pid` gone? A zombie (exited, not yet reaped by whoever inherited it) counts as gone. */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  if (!existsSync('/proc/self/stat')) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/**
 * Kills the test services' processes listed in `dir/pids` that still run (each service writes its
 * pids there): a failing test, or the code before the fix, must not leave them running.
 */
function killLeftovers(dir: string): void {
  let pids: string[];
  try {
    pids = readFileSync(join(dir, 'pids'), 'utf8').split(/\s+/).filter(Boolean);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); // still ours, not a reused pid?
      if (/family\.cjs|60000|^sleep|trap ''/.test(cmdline)) process.kill(+pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** The family answering through the gateway, once it answers (and, with `not`, is not that pid). */
function familyThrough(agentUrl: string, not?: number): Promise<Family> {
  return waitFor('the service to answer through the gateway', async () => {
    const r = await call(`${agentUrl}/http/family/`, { key: KEYS.alice });
    const f = r.status === 200 ? (r.json as Family) : undefined;
    return f && f.pid !== not ? f : undefined;
  }, 10_000, 100);
}

function familyConfig(port: number): string {
  return `
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: GET family/**"]
http:
  services:
    family:
      url: "http://127.0.0.1:${port}"
      command: ${JSON.stringify(process.execPath)}
      args: [family.cjs]
      env: { PORT: "${port}" }
`;
}

describe('local service processes', () => {
  let t: TestGateway;
  before(async () => {
    process.env['AIRLOCK_TEST_GATEWAY_SECRET'] = 'not-for-services';
    const port = await freePort();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: GET envdump/**"]
http:
  services:
    envdump:
      url: "http://127.0.0.1:${port}"
      command: ${JSON.stringify(process.execPath)}
      args: ["-e", ${JSON.stringify(SERVICE)}]
      env: { PORT: "${port}", SERVICE_SETTING: "configured" }
`);
  });
  after(async () => {
    delete process.env['AIRLOCK_TEST_GATEWAY_SECRET'];
    await t?.stop();
  });

  it('get their configured env and a minimal one, not the gateway’s environment', async () => {
    const r = await waitFor('the service to answer', async () => {
      const x = await call(`${t.agentUrl}/http/envdump/`, { key: KEYS.alice });
      return x.status === 200 ? x : undefined;
    }, 10_000);
    const { names, setting } = r.json as { names: string[]; setting: string };
    assert.equal(setting, 'configured');
    assert.ok(names.includes('PATH'), names.join());
    assert.ok(!names.includes('AIRLOCK_TEST_GATEWAY_SECRET'), 'the gateway’s own environment stays with it');
    assert.ok(!names.some((n) => n.startsWith('NODE_CHANNEL')), `nothing of the launcher's channel: ${names.join()}`);
  });
});

describe('a service and the processes it starts', () => {
  const tmp = tempDir('airlock-svc-');
  let t: TestGateway;
  before(async () => {
    const port = await freePort();
    writeFileSync(join(tmp.dir, 'family.cjs'), FAMILY);
    t = await startGateway(`${familyConfig(port)}
    missing:
      url: "http://127.0.0.1:1"
      command: no-such-command-for-airlock-tests
`, { dir: tmp.dir });
  });
  after(async () => {
    await t?.stop();
    killLeftovers(tmp.dir);
    tmp.cleanup();
  });

  it('when the service dies, what it started goes too, and it is restarted', async () => {
    const first = await familyThrough(t.agentUrl);
    process.kill(first.pid, 'SIGKILL');
    await waitFor('the grandchild to go with its service', () => gone(first.grandchild), 5000);
    const second = await familyThrough(t.agentUrl, first.pid);
    assert.ok(!gone(second.grandchild));
    assert.match(t.logs(), /process exited; restarting/);
  });

  it('a command that cannot be started is reported once, not restarted', async () => {
    await waitFor('the failed start in the log', () => /"process":"http:missing".*process could not start/.test(t.logs()), 5000);
    await new Promise((r) => setTimeout(r, 600)); // past the first restart's backoff (250 ms)
    assert.equal(t.logs().match(/"process":"http:missing"[^\n]*process could not start/g)?.length, 1, t.logs());
    assert.doesNotMatch(t.logs(), /"process":"http:missing"[^\n]*restarting/);
  });
});

describe('a service that ignores SIGTERM', () => {
  const tmp = tempDir('airlock-svc-stubborn-');
  after(() => {
    killLeftovers(tmp.dir);
    tmp.cleanup();
  });

  it('is killed, with what it started, when the grace period is over', async () => {
    // The shell ignores TERM, and so does the sleep it starts (ignored signals are inherited).
    const t = await startGateway(`
http:
  services:
    stubborn:
      url: "http://127.0.0.1:1"
      command: sh
      args: ["-c", "trap '' TERM; sleep 300 & echo $$ $! > pids; wait"]
`, { dir: tmp.dir });
    const pids = await waitFor('the service to start', () => {
      try {
        const p = readFileSync(join(tmp.dir, 'pids'), 'utf8').trim().split(' ').map(Number);
        return p.length === 2 ? p : undefined;
      } catch {
        return undefined;
      }
    }, 5000);
    const t0 = Date.now();
    await t.stop();
    const took = Date.now() - t0;
    assert.ok(took >= 2500 && took < 6000, `stopped after ${took} ms; the grace period is 3 s`);
    for (const pid of pids) assert.ok(gone(pid), `${pid} is gone`);
  });
});

describe('kill -9 of the gateway', { timeout: 60_000 }, () => {
  const tmp = tempDir('airlock-svc-kill-');
  let config: string;
  let port: number;
  const gateways: CliGateway[] = [];
  before(async () => {
    port = await freePort();
    writeFileSync(join(tmp.dir, 'family.cjs'), FAMILY);
    config = writeConfig(tmp.dir, familyConfig(port));
  });
  after(async () => {
    for (const g of gateways) await g.stop('SIGTERM');
    killLeftovers(tmp.dir);
    tmp.cleanup();
  });
  const start = async () => {
    const g = await startCliGateway(config);
    gateways.push(g);
    return g;
  };

  it('takes the service and what it started with it, and the next start serves with its own copy', async () => {
    const gw = await start();
    const old = await familyThrough(gw.agentUrl);
    assert.ok(!gone(old.pid) && !gone(old.grandchild));
    gw.child.kill('SIGKILL');
    assert.equal((await gw.exited).signal, 'SIGKILL');
    await waitFor('the service and its grandchild to go', () => gone(old.pid) && gone(old.grandchild), 5000);
    await waitFor('the service port to be free', async () => !(await portBusy(port)), 5000);

    const next = await start();
    const fresh = await familyThrough(next.agentUrl);
    assert.notEqual(fresh.pid, old.pid);
    assert.equal((await next.stop('SIGTERM')).code, 0, next.stderr());
    // And a graceful stop takes the whole family too.
    await waitFor('the new service and its grandchild to go', () => gone(fresh.pid) && gone(fresh.grandchild), 5000);
  });

  it('of the gateway and its launcher together: the next start stops what they left running', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
    const gw = await start();
    const old = await familyThrough(gw.agentUrl);
    // The launcher (the service's parent) is frozen, so that it cannot react, and killed after the gateway.
    process.kill(old.ppid, 'SIGSTOP');
    gw.child.kill('SIGKILL');
    await gw.exited;
    process.kill(old.ppid, 'SIGKILL');
    await waitFor('the launcher to go', () => gone(old.ppid), 5000);
    assert.ok(!gone(old.pid) && !gone(old.grandchild), 'nothing stopped the service: the scenario this backstop is for');

    const next = await start();
    const fresh = await familyThrough(next.agentUrl);
    assert.notEqual(fresh.pid, old.pid);
    assert.ok(gone(old.pid) && gone(old.grandchild), 'the leftovers are gone');
    assert.ok(logLines(next.stderr()).some((l) => l['msg'] === 'stopping a service process left running by a gateway that did not shut down' && l['pid'] === old.pid), next.stderr());
  });
});
