/**
 * The operator CLI (SPEC 2, 3, 7, 8, 11) as a real child process against a real gateway process:
 * `keys`, `explain`, `kill`/`unkill`, `audit verify|query|tail`, and the exit codes.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chainHash } from '../src/audit/record.js';
import { call, KEYS } from './support/gateway.js';
import { freePort, runCli, spawnCli, startCliGateway, tempDir, waitFor, writeConfig, type CliGateway } from './support/cli.js';
import { startUpstream, type Upstream } from './support/upstream.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const jsonLines = (s: string) =>
  s
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, any>); // eslint-disable-line @typescript-eslint/no-explicit-any -- records are checked field by field

// The areas below use their own gateways and directories, so they run side by side; tests within an
// area that build on each other run in order.
describe('airlock CLI', { concurrency: true, timeout: 180_000 }, () => {
describe('exit codes (SPEC 11)', { concurrency: true }, () => {
  it('unknown verb → 2 with the usage', async () => {
    const [r, proto] = await Promise.all([runCli(['frobnicate']), runCli(['constructor'])]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown verb "frobnicate"/);
    assert.match(r.stderr, /usage:/);
    assert.equal(proto.code, 2, 'a name every object has is not a verb either');
    assert.match(proto.stderr, /unknown verb "constructor"/);
  });
  it('no verb → 2 with the usage; VERB --help → 0', async () => {
    const [none, verbHelp, unkillHelp] = await Promise.all([runCli([]), runCli(['keys', '--help']), runCli(['unkill', '--help'])]);
    assert.equal(none.code, 2);
    assert.match(none.stdout, /airlock start/);
    assert.match(none.stdout, /^ {2}airlock unkill <agent> \| --team TEAM \| --target "<pattern>" \| --all /m);
    assert.equal(verbHelp.code, 0);
    assert.match(verbHelp.stdout, /keys create/);
    assert.equal(unkillHelp.code, 0);
    assert.match(unkillHelp.stdout, /^usage: airlock unkill <agent> \| --team TEAM \| --target "<pattern>" \| --all /);
    assert.doesNotMatch(unkillHelp.stdout, /kill --list|airlock kill/, 'unkill has no --list, and is not kill');
  });
  it('each verb\'s usage names the common options it takes (-c FILE, --admin URL, --json)', async () => {
    const all = ['[-c FILE]', '[--admin URL]', '[--json]'];
    const want: Record<string, string[]> = {
      approvals: [...all, '[--limit N]'],
      tools: all,
      keys: all,
      kill: all,
      unkill: all,
      usage: all,
      audit: ['[-c FILE]', '[--json]'],
      check: ['[-c FILE]', '[--json]'],
      explain: ['[-c FILE]', '[--json]'],
      start: ['[-c FILE]'],
    };
    const verbs = Object.keys(want);
    const runs = await Promise.all(verbs.map((v) => runCli([v, '--help'])));
    runs.forEach((r, i) => {
      assert.equal(r.code, 0, r.stderr);
      for (const option of want[verbs[i]!]!) assert.ok(r.stdout.includes(option), `airlock ${verbs[i]} --help leaves out ${option}: ${r.stdout}`);
    });
  });
  it('bad flags and bad arguments → 2', async () => {
    const runs = await Promise.all([
      runCli(['start', '--bogus']),
      runCli(['keys', 'create']),
      runCli(['keys', 'create', 'bot', '--expires', 'soon']),
      runCli(['audit', 'explode']),
      runCli(['explain', 'http: GET x/y']),
      // SPEC 8's decisions and the four protocols: a misspelt filter is not "no records".
      runCli(['audit', 'query', '--decision', 'deny']),
      runCli(['audit', 'query', '--protocol', 'https']),
    ]);
    for (const r of runs) {
      assert.equal(r.code, 2, `${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /usage: airlock/);
    }
  });
});

describe('airlock keys', { concurrency: 1 }, () => {
  const tmp = tempDir();
  let up: Upstream;
  let gw: CliGateway;
  let file: string;
  const yaml = (upUrl: string, adminPort: number) => `admin: { listen: "127.0.0.1:${adminPort}" }
agents:
  bot: { team: red }
  other: {}
rules:
  - name: r
    allow: ["http: GET svc/**"]
http:
  services:
    svc: { url: "${upUrl}" }
`;
  before(async () => {
    up = await startUpstream();
    file = writeConfig(tmp.dir, yaml(up.url, await freePort()));
    gw = await startCliGateway(file);
  });
  after(async () => {
    const exit = await gw.stop();
    await up.close();
    tmp.cleanup();
    assert.equal(exit.code, 0, gw.stderr());
  });
  const get = (key: string) => call(`${gw.agentUrl}/http/svc/x`, { key });
  let revokedId = '';

  it('create prints the key once on stdout; it works; list never shows the key or its hash; revoke → the very next request is 401', async () => {
    const c = await runCli(['keys', 'create', 'bot', '--admin', gw.adminUrl]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /^alk_[0-9A-Za-z]{32,}\n$/);
    const key = c.stdout.trim();
    const id = /created key (key_\w+) for agent bot/.exec(c.stderr)?.[1];
    assert.ok(id, c.stderr);
    assert.match(c.stderr, /shown only now/);
    assert.equal((await get(key)).status, 200);

    const list = await runCli(['keys', 'list', '--admin', gw.adminUrl]);
    assert.equal(list.code, 0, list.stderr);
    const row = list.stdout.split('\n').find((l) => l.startsWith(id));
    assert.ok(row, list.stdout);
    assert.match(row, /\bbot\b/);
    assert.ok(row.includes(`${key.slice(0, 8)}…`), row);
    assert.match(row, /\bactive\b/);
    assert.match(list.stdout.split('\n')[0]!, /ID\s+AGENT\s+PREFIX\s+SOURCE\s+STATUS/);
    assert.ok(!list.stdout.includes(key), 'never the full key');
    assert.ok(!list.stdout.includes(sha256(key)), 'never the hash');

    const lj = await runCli(['keys', 'list', 'bot', '--json', '--admin', gw.adminUrl]);
    assert.equal(lj.code, 0, lj.stderr);
    const entries = JSON.parse(lj.stdout) as Record<string, unknown>[];
    const mine = entries.find((e) => e['id'] === id)!;
    assert.deepEqual({ agent: mine['agent'], prefix: mine['prefix'], status: mine['status'] }, { agent: 'bot', prefix: key.slice(0, 8), status: 'active' });
    assert.ok(entries.every((e) => e['agent'] === 'bot'));
    assert.ok(!lj.stdout.includes(key) && !lj.stdout.includes(sha256(key)));
    assert.ok(!('hash' in mine) && !('key' in mine));

    const rv = await runCli(['keys', 'revoke', id, '--admin', gw.adminUrl]);
    assert.equal(rv.code, 0, rv.stderr);
    assert.match(rv.stdout, new RegExp(`revoked ${id}`));
    const after = await get(key);
    assert.equal(after.status, 401);
    assert.equal(after.json.error.code, 'unauthenticated');
    revokedId = id;
  });

  it('--expires 8s: works at once, stops working after expiry, and lists as expired', async () => {
    // Generous lifetime: starting a CLI process can take seconds on a loaded 2-core machine.
    const before = Date.now();
    const c = await runCli(['keys', 'create', 'other', '--expires', '8s', '--json', '--admin', gw.adminUrl]);
    assert.equal(c.code, 0, c.stderr);
    const k = JSON.parse(c.stdout);
    assert.match(k.key, /^alk_/);
    assert.equal(k.agent, 'other');
    const expiresAt = Date.parse(k.expiresAt);
    assert.ok(expiresAt >= before + 8000 && expiresAt <= Date.now() + 8000, k.expiresAt);
    assert.equal((await get(k.key)).status, 200);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 50));
    assert.equal((await get(k.key)).status, 401);
    const list = JSON.parse((await runCli(['keys', 'list', '--json', '--admin', gw.adminUrl])).stdout) as Record<string, unknown>[];
    assert.equal(list.find((e) => e['id'] === k.id)!['status'], 'expired');
    assert.equal(list.find((e) => e['id'] === revokedId)!['status'], 'revoked', 'the key revoked in the test before');
  });

  it('refuses an unknown agent, an unknown key id, and an admin URL where nothing answers: exit 1', async () => {
    const nobody = `http://127.0.0.1:${await freePort()}`;
    const [unknown, badId, down] = await Promise.all([
      runCli(['keys', 'create', 'unknown-agent', '--admin', gw.adminUrl]),
      runCli(['keys', 'revoke', 'key_doesnotexist', '--admin', gw.adminUrl]),
      runCli(['keys', 'create', 'bot', '--admin', nobody]),
    ]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /not_found.*unknown-agent/);
    assert.equal(unknown.stdout, '');
    assert.equal(badId.code, 1);
    assert.match(badId.stderr, /key_doesnotexist/);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /no gateway answers/);
  });

  it('with admin.listen on port 0 and no gateway running, a verb that needs one says how to reach it instead of calling port 0', async () => {
    const off = tempDir();
    try {
      const file = writeConfig(off.dir, `admin:\n  listen: "127.0.0.1:0"\nagents:\n  bot: {}\n`);
      const r = await runCli(['approvals', 'list', '-c', file]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no running gateway found .*admin\.listen is port 0.*pass --admin URL/);
      assert.doesNotMatch(r.stderr, /127\.0\.0\.1:0/);
    } finally {
      off.cleanup();
    }
  });

  it('with no gateway running, create and revoke write to the store; the gateway honours them when it starts', async () => {
    const off = tempDir();
    try {
      // admin.listen names a port where nothing listens: the CLI falls back to the store.
      const f = writeConfig(off.dir, yaml(up.url, await freePort()));
      const a = await runCli(['keys', 'create', 'bot', '-c', f]);
      assert.equal(a.code, 0, a.stderr);
      const keyA = a.stdout.trim();
      const b = await runCli(['keys', 'create', 'bot', '-c', f, '--json']);
      assert.equal(b.code, 0, b.stderr);
      const keyB = JSON.parse(b.stdout);
      assert.equal((await runCli(['keys', 'revoke', keyB.id, '-c', f])).code, 0);
      const list = await runCli(['keys', 'list', '-c', f, '--json']);
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual((JSON.parse(list.stdout) as Record<string, unknown>[]).map((e) => e['status']).sort(), ['active', 'revoked']);
      assert.ok(!list.stdout.includes(keyA));

      const g = await startCliGateway(f);
      try {
        assert.equal((await call(`${g.agentUrl}/http/svc/x`, { key: keyA })).status, 200);
        assert.equal((await call(`${g.agentUrl}/http/svc/x`, { key: keyB.key })).status, 401);
      } finally {
        assert.equal((await g.stop()).code, 0);
      }
    } finally {
      off.cleanup();
    }
  });
});

describe('airlock explain', { concurrency: true }, () => {
  const tmp = tempDir();
  let file: string;
  before(() => {
    file = writeConfig(
      tmp.dir,
      `agents:
  bot: { team: red }
  other: {}
rules:
  - name: github-reads
    agents: [bot]
    allow: ["http: GET github/**", "http: DELETE github/repos/**"]
  - name: no-prod-deletes
    deny: ["http: DELETE github/repos/prod/**"]
    reason: prod is off limits
  - name: red-writes
    agents: ["team:red"]
    allow: ["http: POST github/**"]
  - name: writes-need-a-human
    approve: ["http: POST,PUT github/**"]
  - name: docs
    allow: ["mcp-resource: docs/file:///handbook/**"]
  - name: no-menu
    deny: ["mcp-resource: docs/file:///handbook/caf%C3%A9/**"]
  - name: other-books-travel
    agents: [other]
    allow: ["a2a: travel SendMessage"]
  - name: tunnels
    agents: [other]
    allow: ["http: CONNECT *.github.com:443"]
http:
  forwardProxy: true
  services:
    github: { url: "http://127.0.0.1:9" }
`,
    );
  });
  after(() => tmp.cleanup());

  const explain = (agent: string, action: string, ...extra: string[]) => runCli(['explain', '-c', file, '--agent', agent, action, ...extra]);

  it('a forward-proxy tunnel is judged on host and port, as the proxy spells it (no path, host in lower case)', async () => {
    const ok = await explain('other', 'http: connect API.GitHub.com:443');
    assert.equal(ok.code, 0);
    assert.match(ok.stdout, /^http: CONNECT api\.github\.com:443\n/);
    assert.match(ok.stdout, /allowed \(rule "tunnels"\)/);
    const other = await explain('other', 'http: CONNECT api.github.com:22');
    assert.match(other.stdout, /denied/);
    // Another spelling of the same address is judged as that address, as the proxy judges it.
    const ip = await explain('other', 'http: CONNECT 2130706433:443');
    assert.match(ip.stdout, /^http: CONNECT 127\.0\.0\.1:443\n/);
  });

  it('reads an mcp-resource action in the spelling the MCP door judges: percent-encoding case and raw UTF-8 do not matter', async () => {
    for (const uri of ['caf%C3%A9', 'caf%c3%a9', 'café']) {
      const r = await explain('bot', `mcp-resource: docs/file:///handbook/${uri}/menu.md`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /decision: denied \(rule "no-menu"\)/, uri);
    }
    assert.match((await explain('bot', 'mcp-resource: docs/file:///handbook/intro.md')).stdout, /decision: allowed \(rule "docs"\)/);
  });

  it('explains A2A actions too, and says when it falls back to the quickstart example', async () => {
    const r = await explain('bot', 'a2a: travel SendMessage');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /decision: denied \(no rule allows it: default deny\)/);
    const empty = tempDir();
    try {
      const q = await runCli(['check'], { cwd: empty.dir });
      assert.match(q.stderr, /no -c FILE and no \.\/airlock\.yaml: using the quickstart example/);
    } finally {
      empty.cleanup();
    }
  });

  it('prints the decision and the deciding rule: allowed, denied by rule, held, default deny', async () => {
    const [allowed, denied, held, dflt, other] = await Promise.all([
      explain('bot', 'http: DELETE github/repos/x'),
      explain('bot', 'http: DELETE github/repos/prod/db'),
      explain('bot', 'http: post github/issues'),
      explain('bot', 'http: PATCH github/repos/x'),
      explain('other', 'http: GET github/repos/x'),
    ]);
    for (const r of [allowed, denied, held, dflt, other]) assert.equal(r.code, 0, r.stderr);
    assert.match(allowed.stdout, /^http: DELETE github\/repos\/x$/m);
    assert.match(allowed.stdout, /decision: allowed \(rule "github-reads"\)/);
    assert.match(denied.stdout, /decision: denied \(rule "no-prod-deletes"\)/);
    assert.match(denied.stdout, /prod is off limits/);
    // Every matching entry is listed: the allow that lost to the deny too.
    assert.match(denied.stdout, /deny\s+no-prod-deletes\s+http: DELETE github\/repos\/prod\/\*\*/);
    assert.match(denied.stdout, /allow\s+github-reads\s+http: DELETE github\/repos\/\*\*/);
    assert.match(held.stdout, /^http: POST github\/issues$/m, 'the method is normalised');
    assert.match(held.stdout, /decision: held for approval \(rule "writes-need-a-human"\)/);
    assert.match(dflt.stdout, /decision: denied \(no rule allows it: default deny\)/);
    assert.match(other.stdout, /decision: denied \(no rule allows it: default deny\)/);
    assert.match(other.stdout, /agent:\s+other/);
  });

  it('--json', async () => {
    const r = await explain('bot', 'http: DELETE github/repos/prod/db', '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.agent, 'bot');
    assert.equal(j.action, 'http: DELETE github/repos/prod/db');
    assert.equal(j.decision, 'deny');
    assert.equal(j.rule, 'no-prod-deletes');
    assert.deepEqual(j.matched.map((m: { rule: string; effect: string }) => `${m.effect}:${m.rule}`).sort(), ['allow:github-reads', 'deny:no-prod-deletes']);
    const d = JSON.parse((await explain('other', 'http: GET github/x', '--json')).stdout);
    assert.equal(d.decision, 'deny');
    assert.equal(d.rule, null);
    assert.match(d.message, /default deny/);
  });

  it('an A2A 0.3 method name is judged under its 1.0 name, as the gateway judges it', async () => {
    const [v03, v10, json] = await Promise.all([explain('other', 'a2a: travel message/send'), explain('other', 'a2a: travel SendMessage'), explain('other', 'a2a: travel tasks/cancel', '--json')]);
    assert.equal(v03.code, 0, v03.stderr);
    assert.match(v03.stdout, /^a2a: travel SendMessage$/m);
    assert.match(v03.stdout, /decision: allowed \(rule "other-books-travel"\)/);
    assert.equal(v03.stdout, v10.stdout);
    assert.equal(JSON.parse(json.stdout).action, 'a2a: travel CancelTask');
    assert.equal(JSON.parse(json.stdout).decision, 'deny');
  });

  it('an unknown agent or a malformed action is a usage error (exit 2)', async () => {
    const [unknown, bad] = await Promise.all([explain('nobody', 'http: GET github/x'), explain('bot', 'not an action')]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /nobody/);
    assert.equal(bad.code, 2);
  });
});

describe('airlock kill / unkill', { concurrency: 1 }, () => {
  const tmp = tempDir();
  let up: Upstream;
  let gw: CliGateway;
  let file: string;
  before(async () => {
    up = await startUpstream();
    file = writeConfig(
      tmp.dir,
      `admin: { listen: "127.0.0.1:${await freePort()}" }
agents:
  alice: { team: red, keys: ["${KEYS.alice}"] }
  bob: { team: blue, keys: ["${KEYS.bob}"] }
  carol: { team: red, keys: ["${KEYS.carol}"] }
rules:
  - name: all
    allow: ["http: * svc/**", "http: * other/**"]
http:
  services:
    svc: { url: "${up.url}" }
    other: { url: "${up.url}" }
`,
    );
    gw = await startCliGateway(file);
  });
  after(async () => {
    const exit = await gw?.stop();
    await up.close();
    tmp.cleanup();
    assert.equal(exit?.code, 0);
  });

  const status = async (key: string, path = 'svc/x') => {
    const r = await call(`${gw.agentUrl}/http/${path}`, { key });
    if (r.status === 403) assert.equal(r.json.error.code, 'killed');
    return r.status;
  };
  const cli = async (...args: string[]) => {
    const r = await runCli([...args, '--admin', gw.adminUrl]);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r;
  };

  it('kill <agent> takes effect on the next request; unkill restores it', async () => {
    assert.equal(await status(KEYS.alice), 200);
    const k = await cli('kill', 'alice', '--reason', 'runaway');
    assert.match(k.stdout, /killed agent alice/);
    assert.equal(await status(KEYS.alice), 403);
    assert.equal(await status(KEYS.bob), 200);
    const u = await cli('unkill', 'alice');
    assert.match(u.stdout, /lifted the kill switch on agent alice/);
    assert.equal(await status(KEYS.alice), 200);
  });

  it("kill --team covers the team's agents only", async () => {
    await cli('kill', '--team', 'red');
    assert.deepEqual([await status(KEYS.alice), await status(KEYS.carol), await status(KEYS.bob)], [403, 403, 200]);
    await cli('unkill', '--team', 'red');
    assert.deepEqual([await status(KEYS.alice), await status(KEYS.carol)], [200, 200]);
  });

  it('kill --target covers matching actions only', async () => {
    await cli('kill', '--target', 'http: * svc/**');
    assert.deepEqual([await status(KEYS.alice, 'svc/x'), await status(KEYS.bob, 'svc/y'), await status(KEYS.alice, 'other/x')], [403, 403, 200]);
    await cli('unkill', '--target', 'http: * svc/**');
    assert.equal(await status(KEYS.alice, 'svc/x'), 200);
  });

  it('kill --all stops everything; kill --list shows it (and --json parses); unkill --all restores', async () => {
    await cli('kill', '--all', '--reason', 'incident 42');
    assert.deepEqual([await status(KEYS.alice), await status(KEYS.bob, 'other/z')], [403, 403]);
    const list = await cli('kill', '--list');
    assert.match(list.stdout, /^all\s+\*\s+\S+\s+cli:\S*\s+incident 42$/m);
    const lj = JSON.parse((await cli('kill', '--list', '--json')).stdout);
    assert.deepEqual(lj.map((k: { scope: string; value: string }) => [k.scope, k.value]), [['all', '*']]);
    await cli('unkill', '--all');
    assert.deepEqual([await status(KEYS.alice), await status(KEYS.bob, 'other/z')], [200, 200]);
  });

  it('a kill switch on an agent or team nobody declared is refused (exit 1): it would stop nothing', async () => {
    for (const args of [['kill', 'alicee'], ['kill', '--team', 'rde']]) {
      const r = await runCli([...args, '--admin', gw.adminUrl]);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /not_found: no (agent|team) named "(alicee|rde)"/);
    }
    assert.deepEqual(JSON.parse((await cli('kill', '--list', '--json')).stdout), []);
  });

  it('usage errors exit 2; lifting a switch that is not on exits 1', async () => {
    const runs = await Promise.all([
      runCli(['kill', '--admin', gw.adminUrl]),
      runCli(['kill', 'alice', '--team', 'red', '--admin', gw.adminUrl]),
      runCli(['kill', '--target', 'not a pattern', '--admin', gw.adminUrl]),
    ]);
    for (const r of runs) assert.equal(r.code, 2, `${r.stdout}${r.stderr}`);
    const none = await runCli(['unkill', 'bob', '--admin', gw.adminUrl]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no kill switch/);
    // None of that turned anything on.
    assert.deepEqual([await status(KEYS.alice), await status(KEYS.bob)], [200, 200]);
  });

  it('a kill survives a restart, and kill/unkill with no gateway running are stored for the next start', async () => {
    await cli('kill', 'bob');
    assert.equal((await gw.stop()).code, 0);
    // Offline: the config's admin.listen has nobody; the CLI writes to the store and says so.
    const off = await runCli(['kill', 'carol', '-c', file]);
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stderr, /no gateway is running/);
    gw = await startCliGateway(file);
    assert.deepEqual([await status(KEYS.bob), await status(KEYS.carol), await status(KEYS.alice)], [403, 403, 200]);
    await cli('unkill', 'bob');
    await cli('unkill', 'carol');
    assert.deepEqual([await status(KEYS.bob), await status(KEYS.carol)], [200, 200]);
  });

  it('without --admin, kill finds the gateway started with --admin-listen elsewhere, and never writes the store under a running gateway', async () => {
    // The config's admin.listen has nobody (the gateway was started with --admin-listen 127.0.0.1:0).
    const on = await runCli(['kill', 'alice', '-c', file]);
    assert.equal(on.code, 0, on.stderr);
    assert.doesNotMatch(on.stderr, /no gateway is running/);
    assert.equal(await status(KEYS.alice), 403, 'in force at once, through the running gateway');
    assert.equal((await runCli(['unkill', 'alice', '-c', file])).code, 0);
    assert.equal(await status(KEYS.alice), 200);
    // A running gateway whose admin API does not answer: the CLI refuses rather than write a change it would not see.
    const record = join(tmp.dir, 'data', 'gateway.json');
    const original = readFileSync(record, 'utf8');
    assert.equal(JSON.parse(original).pid, gw.pid);
    writeFileSync(record, JSON.stringify({ ...JSON.parse(original), admin: `http://127.0.0.1:${await freePort()}` }));
    try {
      for (const args of [['kill', 'bob'], ['keys', 'create', 'bob'], ['keys', 'revoke', 'key_nothing']]) {
        const r = await runCli([...args, '-c', file]);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, new RegExp(`a gateway \\(pid ${gw.pid}\\) runs on .* did not answer; nothing was changed`));
      }
    } finally {
      writeFileSync(record, original);
    }
    assert.deepEqual(JSON.parse((await cli('kill', '--list', '--json')).stdout), [], 'nothing was stored');
    assert.equal(await status(KEYS.bob), 200);
  });
});

describe('airlock audit', { concurrency: 1 }, () => {
  const tmp = tempDir();
  let up: Upstream;
  let gw: CliGateway;
  let file: string;
  const dataDir = join(tmp.dir, 'data');
  before(async () => {
    up = await startUpstream();
    file = writeConfig(
      tmp.dir,
      `agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: reads
    allow: ["http: GET svc/**"]
http:
  services:
    svc: { url: "${up.url}" }
`,
    );
    gw = await startCliGateway(file);
    const expect = async (key: string | undefined, method: string, status: number) => {
      const r = await call(`${gw.agentUrl}/http/svc/item`, { method, ...(key ? { key } : {}) });
      assert.equal(r.status, status);
    };
    // alice: 3 allowed, 2 denied; bob: 2 allowed, 1 denied; one caller without a key.
    for (const [key, method, st] of [
      [KEYS.alice, 'GET', 200], [KEYS.alice, 'DELETE', 403], [KEYS.alice, 'GET', 200], [KEYS.bob, 'GET', 200],
      [KEYS.alice, 'POST', 403], [KEYS.bob, 'PUT', 403], [undefined, 'GET', 401], [KEYS.bob, 'GET', 200], [KEYS.alice, 'GET', 200],
    ] as const) await expect(key, method, st);
  });
  after(async () => {
    if (gw.child.exitCode === null) await gw.stop();
    await up.close();
    tmp.cleanup();
  });

  it('query --agent --decision --json returns only matching records, as JSON lines', async () => {
    const r = await runCli(['audit', 'query', '-c', file, '--agent', 'alice', '--decision', 'denied', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const recs = jsonLines(r.stdout);
    assert.equal(recs.length, 2, `${r.stdout}\n--- all:\n${(await runCli(['audit', 'query', '-c', file, '--json'])).stdout}`);
    for (const x of recs) {
      assert.equal(x['agent'], 'alice');
      assert.equal(x['decision'], 'denied');
      assert.equal(x['code'], 'denied');
      assert.match(String(x['hash']), /^[0-9a-f]{64}$/);
    }
    assert.deepEqual(recs.map((x) => x['action']), ['http: DELETE svc/item', 'http: POST svc/item'], 'oldest first');
    const bob = jsonLines((await runCli(['audit', 'query', '-c', file, '--agent', 'bob', '--json'])).stdout);
    // bob: 2 allowed exchanges (decision + final each) and 1 denied (final only).
    assert.equal(bob.length, 5);
    assert.ok(bob.every((x) => x['agent'] === 'bob'));
    const limited = jsonLines((await runCli(['audit', 'query', '-c', file, '--protocol', 'http', '--since', '1h', '--limit', '3', '--json'])).stdout);
    assert.equal(limited.length, 3);
    const human = await runCli(['audit', 'query', '-c', file, '--agent', 'alice', '--decision', 'denied']);
    assert.equal(human.stdout.trim().split('\n').length, 2);
    assert.match(human.stdout, /alice\s+denied\s+http: DELETE svc\/item/);
  });

  it('tail -n 5 prints 5 lines', async () => {
    const r = await runCli(['audit', 'tail', '-n', '5', '-c', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 5);
    const j = await runCli(['audit', 'tail', '-n', '5', '-c', file, '--json']);
    const recs = jsonLines(j.stdout);
    assert.equal(recs.length, 5);
    assert.deepEqual(recs.map((x) => x['seq']), [...recs.map((x) => x['seq'] as number)].sort((a, b) => a - b), 'oldest first');
  });

  it('tail -f prints a new record within ~1 s of a new request', async () => {
    const child = spawnCli(['audit', 'tail', '-f', '-n', '1', '-c', file]);
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
    try {
      await waitFor('the first tail line', () => out.includes('\n'), 5000);
      const r = await call(`${gw.agentUrl}/http/svc/followed`, { key: KEYS.bob });
      assert.equal(r.status, 200);
      const t0 = Date.now();
      const id = String(r.headers['x-airlock-request-id']);
      await waitFor('the new record in tail -f', () => out.split('\n').some((l) => l.includes(id) && l.includes('final')), 1500, 20);
      assert.ok(Date.now() - t0 <= 1500);
      assert.match(out, /bob\s+allowed\s+http: GET svc\/followed/);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('<data>/audit.jsonl mirrors every record, one JSON line each with seq, prevHash and hash', async () => {
    await new Promise((r) => setTimeout(r, 100));
    const lines = jsonLines(readFileSync(join(dataDir, 'audit.jsonl'), 'utf8'));
    const db = new Database(join(dataDir, 'airlock.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT seq, id, hash, prev_hash FROM audit ORDER BY seq').all() as { seq: number; id: string; hash: string; prev_hash: string }[];
      assert.equal(lines.length, rows.length);
      lines.forEach((l, i) => {
        assert.equal(l['seq'], rows[i]!.seq);
        assert.equal(l['id'], rows[i]!.id);
        assert.equal(l['hash'], rows[i]!.hash);
        assert.equal(l['prevHash'], i === 0 ? '0'.repeat(64) : lines[i - 1]!['hash']);
      });
    } finally {
      db.close();
    }
    const text = readFileSync(join(dataDir, 'audit.jsonl'), 'utf8');
    for (const k of Object.values(KEYS)) assert.ok(!text.includes(k), 'no agent key in the audit log');
  });

  it('verify exits 0 while the gateway runs and after it stops (--json too)', async () => {
    const live = await runCli(['audit', 'verify', '-c', file]);
    assert.equal(live.code, 0, live.stdout + live.stderr);
    assert.match(live.stdout, /^ok: \d+ audit records, chain intact/);
    assert.equal((await gw.stop()).code, 0);
    const stopped = await runCli(['audit', 'verify', '-c', file, '--json']);
    assert.equal(stopped.code, 0, stopped.stdout);
    const j = JSON.parse(stopped.stdout);
    assert.equal(j.ok, true);
    assert.ok(j.records >= 14, String(j.records));
  });

  /** Copies the (stopped) store, tampers with the copy, and runs `audit verify` on it. */
  async function tampered(name: string, sql: (db: Database.Database) => void, json = false) {
    const dir = join(tmp.dir, name);
    cpSync(dataDir, join(dir, 'data'), { recursive: true });
    const db = new Database(join(dir, 'data', 'airlock.db'));
    const rows = db.prepare('SELECT seq, id, phase, record FROM audit ORDER BY seq').all() as { seq: number; id: string; phase: string; record: string }[];
    sql(db);
    db.close();
    // Only the data directory matters to verify.
    const cfg = writeConfig(dir, 'agents: {}\n');
    const human = await runCli(['audit', 'verify', '-c', cfg]);
    const j = json ? await runCli(['audit', 'verify', '-c', cfg, '--json']) : undefined;
    return { rows, human, json: j ? JSON.parse(j.stdout) : undefined, jsonCode: j?.code };
  }

  it('verify exits 1 and names the record whose text was altered', async () => {
    // Make the final record of the first successful call say 500 instead of 200.
    let row = { seq: 0, id: '' };
    const t = await tampered(
      'altered',
      (db) => {
        const r = db.prepare(`SELECT seq, id, record FROM audit WHERE phase = 'final' AND record LIKE '%"status":200%' ORDER BY seq LIMIT 1`).get() as { seq: number; id: string; record: string };
        row = r;
        db.prepare('UPDATE audit SET record = ? WHERE seq = ?').run(r.record.replace('"status":200', '"status":500'), r.seq);
      },
      true,
    );
    assert.ok(row.seq > 1);
    assert.equal(t.human.code, 1);
    assert.ok(t.human.stdout.includes(`#${row.seq} `) && t.human.stdout.includes(row.id), t.human.stdout);
    assert.match(t.human.stdout, /altered/);
    assert.equal(t.jsonCode, 1);
    assert.deepEqual({ seq: t.json.broken.seq, id: t.json.broken.id, records: t.json.records }, { seq: row.seq, id: row.id, records: row.seq - 1 });
  });

  it('verify exits 1 and names the gap where a middle record was deleted', async () => {
    const t = await tampered('deleted', (db) => db.prepare('DELETE FROM audit WHERE seq = 6').run());
    const next = t.rows.find((r) => r.seq === 7)!;
    assert.equal(t.human.code, 1);
    assert.ok(t.human.stdout.includes('#7') && t.human.stdout.includes(next.id), t.human.stdout);
    assert.match(t.human.stdout, /#6.*missing/);
  });

  it('verify exits 1 when the config names no store (and does not create one)', async () => {
    const dir = join(tmp.dir, 'nostore');
    const cfg = writeConfig(tmp.dir, `data: ${dir}\nagents: {}\n`, 'nostore.yaml');
    const r = await runCli(['audit', 'verify', '-c', cfg]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no audit store at .*nostore/);
    assert.equal(existsSync(dir), false);
  });

  it('verify exits 1 when the newest records were deleted from the store, naming where audit.jsonl goes on', async () => {
    const t = await tampered('truncated', (db) => db.prepare('DELETE FROM audit WHERE seq > (SELECT max(seq) - 3 FROM audit)').run(), true);
    const last = t.rows.at(-1)!.seq;
    assert.equal(t.human.code, 1, t.human.stdout);
    assert.ok(t.human.stdout.includes(`the store ends at seq ${last - 3} but audit.jsonl has records up to ${last}`), t.human.stdout);
    assert.equal(t.jsonCode, 1);
    assert.equal(t.json.ok, false);
    assert.deepEqual(t.json.mirror, { seq: last, problem: `the store ends at seq ${last - 3} but audit.jsonl has records up to ${last}` });
  });

  it('verify exits 1 when every record was deleted from the store while audit.jsonl has records', async () => {
    const t = await tampered('emptied', (db) => db.prepare('DELETE FROM audit').run());
    assert.equal(t.human.code, 1, t.human.stdout);
    assert.ok(t.human.stdout.includes(`the store has no records but audit.jsonl has records up to ${t.rows.at(-1)!.seq}`), t.human.stdout);
  });

  it('verify exits 1 when the newest record was rewritten with a hash to match (audit.jsonl has the original)', async () => {
    let seq = 0;
    const t = await tampered('rewritten', (db) => {
      const r = db.prepare('SELECT seq, record, prev_hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; record: string; prev_hash: string };
      seq = r.seq;
      const record = `${r.record.slice(0, -1)},"zz":"added later"}`;
      db.prepare('UPDATE audit SET record = ?, hash = ? WHERE seq = ?').run(record, chainHash(r.prev_hash, record), seq);
    });
    assert.equal(t.human.code, 1, t.human.stdout);
    assert.ok(t.human.stdout.includes(`record ${seq} differs between the store and audit.jsonl`), t.human.stdout);
  });

  it('verify passes a store that audit.jsonl lags behind (it is written after the store), or that has no audit.jsonl', async () => {
    const dir = join(tmp.dir, 'lagging');
    cpSync(dataDir, join(dir, 'data'), { recursive: true });
    const jsonl = join(dir, 'data', 'audit.jsonl');
    const lines = readFileSync(jsonl, 'utf8').split('\n');
    writeFileSync(jsonl, `${lines.slice(0, -4).join('\n')}\n{"torn":`);
    const cfg = writeConfig(dir, 'agents: {}\n');
    const lagging = await runCli(['audit', 'verify', '-c', cfg]);
    assert.equal(lagging.code, 0, lagging.stdout);
    rmSync(jsonl);
    const none = await runCli(['audit', 'verify', '-c', cfg]);
    assert.equal(none.code, 0, none.stdout);
  });

  it('verify exits 1 when only an indexed column was altered', async () => {
    const t = await tampered('column', (db) => db.prepare(`UPDATE audit SET agent = 'mallory' WHERE seq = 4`).run());
    assert.equal(t.human.code, 1);
    assert.match(t.human.stdout, /#4.*agent column/);
  });
});
});
