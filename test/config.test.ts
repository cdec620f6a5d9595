/**
 * Config (SPEC 12, and SPEC 10's "config errors name the file, the line and the key"), through the
 * real CLI: `airlock check`, `airlock schema`, `airlock init`, interpolation on a running gateway,
 * and `start` refusing a bad file.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { call } from './support/gateway.js';
import { runCli, startCliGateway, tempDir, writeConfig } from './support/cli.js';
import { startUpstream, type Upstream } from './support/upstream.js';

const KEY_FROM_FILE = 'alk_fileKEYfileKEYfileKEYfileKEYfileKEY12';
const KEY_FROM_ENV = 'alk_envKEYenvKEYenvKEYenvKEYenvKEYenvKE12';

// Each check runs its own CLI process on its own file: they can run side by side.
describe('airlock check', { concurrency: true, timeout: 180_000 }, () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  /** Writes `text` as `name` and runs `check -c` on it. */
  async function check(name: string, text: string, extra: string[] = [], env: Record<string, string | undefined> = {}) {
    const file = join(tmp.dir, name);
    writeFileSync(file, text);
    return { file, ...(await runCli(['check', '-c', file, ...extra], { env })) };
  }

  it('accepts a good file: exit 0 and a summary on stdout', async () => {
    const r = await check(
      'good.yaml',
      `listen: 127.0.0.1:9000
agents:
  x: { team: t, limits: { requests: 600/min, concurrency: 5 } }
  y: {}
rules:
  - name: r
    agents: [x, "team:t"]
    allow: ["http: GET svc/**"]
http:
  services:
    svc: { url: "http://127.0.0.1:9/base", timeout: 5s, maxBodySize: 1mb }
`,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ok: .*good\.yaml \(2 agents, 1 rules, 1 HTTP services\)$/m);
    assert.equal(r.stderr, '');
  });

  it('names FILE:LINE and the key path of an unknown key (line 7)', async () => {
    const r = await check(
      'unknown-key.yaml',
      `listen: 127.0.0.1:9000
agents:
  x:
    team: t
rules:
  - name: r
    alow: ["http: GET svc/**"]
`,
    );
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${r.file}:7: rules[0].alow: unknown key`), r.stderr);
    assert.match(r.stderr, /allowed here: .*allow/);
    assert.equal(r.stdout, '');
  });

  it('names FILE:LINE and agents.x.limits.requests for a bad rate', async () => {
    const r = await check(
      'bad-rate.yaml',
      `agents:
  x:
    team: t
    limits:
      requests: lots
`,
    );
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${r.file}:5: agents.x.limits.requests:`), r.stderr);
    assert.match(r.stderr, /rate such as 600\/min/);
  });

  it('names FILE:LINE and rules[0].allow[1] for a bad pattern', async () => {
    const r = await check(
      'bad-pattern.yaml',
      `agents:
  x: {}
rules:
  - name: r
    allow:
      - "http: GET svc/**"
      - "http: GET/POST svc"
`,
    );
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${r.file}:7: rules[0].allow[1]:`), r.stderr);
    assert.match(r.stderr, /GET\/POST svc/);
  });

  it('refuses an MCP server name ending with "_" (a___x would split as server a, tool _x), naming FILE:LINE and the key', async () => {
    const r = await check(
      'mcp-name.yaml',
      `agents:
  x: {}
mcp:
  servers:
    ok_name: { url: "http://127.0.0.1:9/mcp" }
    a_: { url: "http://127.0.0.1:9/mcp" }
`,
    );
    assert.equal(r.code, 1, r.stdout);
    assert.ok(r.stderr.includes(`${r.file}:6: mcp.servers.a_:`), r.stderr);
    assert.match(r.stderr, /not ending with "_"/);
  });

  it('checks the scale-out store section: URLs of the right scheme, a plain schema name', async () => {
    const ok = await check('scale-out.yaml', `agents:\n  x: {}\nstore:\n  postgres: { url: "postgres://127.0.0.1/airlock", schema: airlock_a }\n  redis: redis://127.0.0.1:6379\n`);
    assert.equal(ok.code, 0, ok.stderr);
    const badUrl = await check('scale-out-bad.yaml', `agents:\n  x: {}\nstore:\n  redis: { url: "http://127.0.0.1:6379" }\n`);
    assert.equal(badUrl.code, 1, badUrl.stdout);
    assert.ok(badUrl.stderr.includes(`${badUrl.file}:4: store.redis`), badUrl.stderr);
    assert.match(badUrl.stderr, /redis:\/\//);
    const badSchema = await check('scale-out-schema.yaml', `agents:\n  x: {}\nstore:\n  postgres: { url: "postgres://127.0.0.1/t", schema: "x; drop table y" }\n`);
    assert.equal(badSchema.code, 1, badSchema.stdout);
    assert.match(badSchema.stderr, /schema name/);
  });

  it('names FILE:LINE for invalid YAML', async () => {
    const r = await check('bad-yaml.yaml', 'agents:\n  x: {}\nrules: [\n  - name: r\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${r.file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+: invalid YAML`));
  });

  it('refuses a ${…} that is not exactly ${env:…} or ${file:…}, rather than use it as the literal value', async () => {
    for (const [i, v] of ['${ ENV:AIRLOCK_ADMIN_TOKEN }', '${ENV:X}', '${vault:secret/x}', 'prefix-${env:X'].entries()) {
      const r = await check(`stray-${i}.yaml`, `admin:\n  listen: "0.0.0.0:0"\n  token: "${v}"\n`, [], { X: 'x', AIRLOCK_ADMIN_TOKEN: 't' });
      assert.equal(r.code, 1, `${v}: ${r.stdout}${r.stderr}`);
      assert.ok(r.stderr.includes(`${r.file}:3: admin.token:`), r.stderr);
      assert.match(r.stderr, /is not an interpolation airlock knows/);
    }
  });

  it('refuses a rule naming an agent or team nobody declared (a typo would make the rule apply to nobody)', async () => {
    const base = 'agents:\n  support-bot: { team: support }\nrules:\n  - name: all\n    allow: ["mcp: github/*"]\n  - name: no-contractors\n';
    for (const [sel, what] of [['"suport-bot"', /agent named "suport-bot"/], ['"team: contractors"', /team named "contractors"/]] as const) {
      const r = await check(`typo-${what.source.length}.yaml`, `${base}    agents: [${sel}]\n    deny: ["mcp: github/*"]\n`);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.ok(r.stderr.includes(`${r.file}:7: rules[1].agents[0]:`), r.stderr);
      assert.match(r.stderr, what);
    }
    const ok = await check('typo-ok.yaml', `${base}    agents: ["team: support", "support-*"]\n    deny: ["mcp: github/*"]\n`);
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('names the missing ${env:NOPE} variable, its line and key', async () => {
    const r = await check('missing-env.yaml', 'agents:\n  x:\n    keys: ["${env:NOPE}"]\n', [], { NOPE: undefined });
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${r.file}:3: agents.x.keys[0]:`), r.stderr);
    assert.match(r.stderr, /NOPE is not set/);
  });

  it('names a missing ${file:...} and a malformed key', async () => {
    const f = await check('missing-file.yaml', 'agents:\n  x:\n    keys: ["${file:no-such.key}"]\n');
    assert.equal(f.code, 1);
    assert.ok(f.stderr.includes(`${f.file}:3: agents.x.keys[0]:`), f.stderr);
    assert.match(f.stderr, /no-such\.key/);
    const k = await check('short-key.yaml', 'agents:\n  x:\n    keys: ["alk_short"]\n');
    assert.equal(k.code, 1);
    assert.ok(k.stderr.includes(`${k.file}:3: agents.x.keys[0]:`), k.stderr);
  });

  it('--json reports file, line, key and problem', async () => {
    const r = await check('json.yaml', 'agents:\n  x:\n    limits:\n      requests: lots\n', ['--json']);
    assert.equal(r.code, 1);
    const j = JSON.parse(r.stdout);
    assert.deepEqual({ ok: j.ok, file: j.file, line: j.line, key: j.key }, { ok: false, file: r.file, line: 4, key: 'agents.x.limits.requests' });
    assert.equal(typeof j.problem, 'string');
    const good = await check('json-good.yaml', 'agents:\n  x: {}\n', ['--json']);
    assert.equal(good.code, 0);
    assert.equal(JSON.parse(good.stdout).ok, true);
  });

  it('reports a config file that does not exist', async () => {
    const r = await runCli(['check', '-c', join(tmp.dir, 'nope.yaml')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nope\.yaml/);
  });
});

describe('airlock schema', { timeout: 180_000 }, () => {
  it('prints a JSON Schema with properties.agents', async () => {
    const r = await runCli(['schema']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.type, 'object');
    assert.ok(s.properties.agents, 'properties.agents');
    assert.ok(s.properties.rules, 'properties.rules');
    assert.ok(s.properties.http, 'properties.http');
  });
});

describe('airlock init', { timeout: 180_000 }, () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('writes a commented airlock.yaml that passes check, and refuses to overwrite it without --force', async () => {
    const r = await runCli(['init'], { cwd: tmp.dir });
    assert.equal(r.code, 0, r.stderr);
    const file = join(tmp.dir, 'airlock.yaml');
    const text = readFileSync(file, 'utf8');
    assert.ok(text.split('\n').filter((l) => /^\s*#/.test(l)).length >= 5, 'the file is commented');
    assert.match(text, /\$\{env:EXAMPLE_API_TOKEN\}/);

    // `check` with no -c finds ./airlock.yaml; it needs the env var the template references.
    const withEnv = await runCli(['check'], { cwd: tmp.dir, env: { EXAMPLE_API_TOKEN: 'tok' } });
    assert.equal(withEnv.code, 0, withEnv.stderr);
    assert.ok(withEnv.stdout.includes(file), withEnv.stdout);
    const without = await runCli(['check'], { cwd: tmp.dir, env: { EXAMPLE_API_TOKEN: undefined } });
    assert.equal(without.code, 1);
    assert.match(without.stderr, /EXAMPLE_API_TOKEN/);

    writeFileSync(file, '# mine\nagents: {}\n');
    const again = await runCli(['init'], { cwd: tmp.dir });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists.*--force/);
    assert.equal(readFileSync(file, 'utf8'), '# mine\nagents: {}\n');

    const forced = await runCli(['init', '--force'], { cwd: tmp.dir });
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(readFileSync(file, 'utf8'), text);
  });

  it('writes to a named file', async () => {
    const r = await runCli(['init', 'other.yaml'], { cwd: tmp.dir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(tmp.dir, 'other.yaml')));
    const c = await runCli(['check', '-c', 'other.yaml'], { cwd: tmp.dir, env: { EXAMPLE_API_TOKEN: 'tok' } });
    assert.equal(c.code, 0, c.stderr);
  });
});

describe('interpolation on a running gateway', { timeout: 180_000 }, () => {
  const tmp = tempDir();
  let up: Upstream;
  before(async () => {
    up = await startUpstream();
  });
  after(async () => {
    await up.close();
    tmp.cleanup();
  });

  it('${file:path} supplies an agent key (relative to the config) and ${env:X} an injected header', async () => {
    writeFileSync(join(tmp.dir, 'agent.key'), `${KEY_FROM_FILE}\n`);
    const file = writeConfig(
      tmp.dir,
      `agents:
  bot:
    keys: ["\${file:agent.key}", "\${env:BOT_KEY}"]
rules:
  - name: reads
    allow: ["http: GET svc/**"]
http:
  services:
    svc:
      url: ${up.url}
      headers: { Authorization: "Bearer \${env:UP_TOKEN}" }
`,
    );
    // Started from another directory: ${file:...} resolves against the config file's directory.
    const gw = await startCliGateway(file, { env: { UP_TOKEN: 'secret-from-env', BOT_KEY: KEY_FROM_ENV } });
    try {
      const r = await call(`${gw.agentUrl}/http/svc/things`, { key: KEY_FROM_FILE });
      assert.equal(r.status, 200, r.text);
      assert.equal(up.received.at(-1)!.headers.authorization, 'Bearer secret-from-env');
      const r2 = await call(`${gw.agentUrl}/http/svc/things`, { key: KEY_FROM_ENV });
      assert.equal(r2.status, 200, r2.text);
      const bad = await call(`${gw.agentUrl}/http/svc/things`, { key: 'alk_fileKEYfileKEYfileKEYfileKEYfileKEY99' });
      assert.equal(bad.status, 401);
    } finally {
      const exit = await gw.stop();
      assert.equal(exit.code, 0, gw.stderr());
    }
    assert.ok(!gw.stderr().includes('secret-from-env'), 'the injected credential is never logged');
    assert.ok(!gw.stderr().includes(KEY_FROM_FILE), 'the agent key is never logged');
  });

  it('start refuses a bad config: exit 1, names FILE:LINE and the key, prints no listening line', async () => {
    const file = writeConfig(tmp.dir, 'agents:\n  bot:\n    limits: { concurrency: -1 }\n', 'bad.yaml');
    const r = await runCli(['start', '-c', file, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0']);
    assert.equal(r.code, 1);
    // writeConfig puts `data:` on line 1, so the bad value is on line 4.
    assert.ok(r.stderr.includes(`${file}:4: agents.bot.limits.concurrency`), r.stderr);
    assert.doesNotMatch(r.stdout, /listening/);
  });
});
