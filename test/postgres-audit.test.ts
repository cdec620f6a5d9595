/**
 * store.postgres: every gateway's audit records in one PostgreSQL schema. Two real gateways (own
 * data directories, one schema) each see both chains through the admin API and the CLI, each
 * record with the node that wrote it; `audit verify` checks every node's chain there, names the
 * node and seq of a link altered or deleted in PostgreSQL, and catches a chain rewritten whole by
 * comparing it with the gateway's local store; a local store that no longer agrees with
 * PostgreSQL stops the shipping rather than ship a second chain under the same seqs; the audit
 * filters answer the same on PostgreSQL as on the local SQLite store; usage sums both gateways'
 * calls of every protocol.
 * Each test works in a schema of its own, dropped at the end.
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chainHash } from '../src/audit/record.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { runCli, spawnCli, tempDir, waitFor } from './support/cli.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { dropSchema, pgChain, pgQuery, PG_URL, randomSchema } from './support/postgres.js';
import { startUpstream, type Upstream } from './support/upstream.js';

function config(up: string, schema: string | undefined, url = PG_URL): string {
  return `
audit: { bodies: true }
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: svc
    allow: ["http: GET svc/**", "llm: demo-*"]
  - name: no-admin
    deny: ["http: * svc/admin/**"]
http:
  services:
    svc: { url: "${up}" }
llm:
  providers:
    demo: { type: mock }
  models:
    demo-mini: { provider: demo, price: { input: 1000, output: 2000 } }
${schema ? `store:\n  postgres: { url: "${url}", schema: ${schema} }\n` : ''}`;
}

const get = (t: TestGateway, path: string, key: string = KEYS.alice) => call(`${t.agentUrl}/http/svc/${path}`, { key });
const chat = (t: TestGateway, key: string, text: string) =>
  call(`${t.agentUrl}/llm/v1/chat/completions`, { key, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'demo-mini', messages: [{ role: 'user', content: text }] }) });
const nodeOf = (t: TestGateway) => readFileSync(join(t.dir, 'data', 'node-id'), 'utf8').trim();
type Rec = Record<string, unknown> & { node?: string; seq: number; id: string; ts: string; phase: string };
const records = async (t: TestGateway, query = ''): Promise<Rec[]> => {
  const r = await call(`${t.adminUrl}/api/audit?${query}`);
  assert.equal(r.status, 200, r.text);
  return r.json.records as Rec[];
};
const jsonLines = (text: string): Rec[] => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec);
const withoutNode = (rs: Rec[]) => rs.map(({ node: _node, ...rest }) => rest);

describe('store.postgres: every gateway\'s audit records in one PostgreSQL schema', { timeout: 120_000 }, () => {
  let up: Upstream;
  const schemas: string[] = [];
  const schema = () => {
    const s = randomSchema();
    schemas.push(s);
    return s;
  };
  before(async () => {
    up = await startUpstream((req, res) => {
      const ms = req.url?.startsWith('/slow') ? 300 : 0;
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ url: req.url }));
      }, ms);
    });
  });
  after(async () => {
    await up.close();
    for (const s of schemas) await dropSchema(s);
  });

  it('two gateways: either one (API and CLI) returns both chains, each record with its node; verify checks 2 nodes; a reload that changes the store is refused', async () => {
    const s = schema();
    const a = await startGateway(config(up.url, s));
    const b = await startGateway(config(up.url, s));
    try {
      const [na, nb] = [nodeOf(a), nodeOf(b)];
      assert.notEqual(na, nb);
      for (let i = 0; i < 3; i++) assert.equal((await get(a, `items/${i}`)).status, 200);
      for (let i = 0; i < 2; i++) assert.equal((await get(b, `things/${i}`, KEYS.bob)).status, 200);
      assert.equal((await get(b, 'admin/users', KEYS.bob)).status, 403);

      for (const t of [a, b]) {
        // A read waits for the gateway's own records to be shipped; the other's arrive within moments.
        const rs = await waitFor('both gateways\' records: 3 + 2 exchanges of two records, and one denial', async () => {
          const got = await records(t, 'limit=1000');
          return got.length === 11 ? got : undefined;
        });
        assert.deepEqual(new Set(rs.map((r) => r.node)), new Set([na, nb]));
        for (const r of rs) assert.equal(r.node, String(r['action']).includes('items/') ? na : nb, `record ${r.seq} of ${String(r['action'])} names its node`);
        // Each chain is whole and in order in what comes back.
        assert.deepEqual(rs.filter((r) => r.node === na).map((r) => r.seq), [6, 5, 4, 3, 2, 1]);
        assert.deepEqual(rs.filter((r) => r.node === nb).map((r) => r.seq), [5, 4, 3, 2, 1]);
        const denied = await records(t, 'decision=denied');
        assert.deepEqual(denied.map((r) => [r.node, r['action']]), [[nb, 'http: GET svc/admin/users']]);
      }

      const q = await runCli(['audit', 'query', '-c', a.configFile, '--json', '--agent', 'bob']);
      assert.equal(q.code, 0, q.stderr);
      assert.deepEqual(
        jsonLines(q.stdout).map((r) => [r.node, r.seq]),
        [1, 2, 3, 4, 5].map((seq) => [nb, seq]),
        'the CLI reads PostgreSQL too (oldest first), with the node',
      );
      const text = await runCli(['audit', 'query', '-c', b.configFile, '--agent', 'alice', '--limit', '2']);
      assert.equal(text.code, 0, text.stderr);
      assert.equal(text.stdout.trim().split('\n').length, 2);
      for (const line of text.stdout.trim().split('\n')) assert.ok(line.includes(`  ${na}  `), line);

      const v = await runCli(['audit', 'verify', '-c', a.configFile, '--json']);
      assert.equal(v.code, 0, v.stdout + v.stderr);
      const vr = JSON.parse(v.stdout);
      assert.equal(vr.ok, true);
      assert.equal(vr.records, 6, 'the local store of gateway A');
      assert.equal(vr.postgres.nodes, 2);
      assert.equal(vr.postgres.records, 11);
      assert.deepEqual(vr.postgres.local, { node: na, inPostgres: 6, inLocalStore: 6 });
      const vt = await runCli(['audit', 'verify', '-c', b.configFile]);
      assert.equal(vt.code, 0, vt.stdout + vt.stderr);
      assert.match(vt.stdout, /^ok: 5 audit records, chain intact/m);
      assert.match(vt.stdout, /^ok: PostgreSQL 127\.0\.0\.1:\d+\/\w+ \(schema airlock_t_\w+\): 2 node\(s\), 11 audit records, every chain intact/m);

      // tail -f on one gateway's config follows every gateway's chain.
      const tail = spawnCli(['audit', 'tail', '-f', '-n', '1', '-c', a.configFile, '--json']);
      let out = '';
      tail.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
      try {
        await waitFor('the first tail line', () => out.includes('\n'), 5000);
        const ra = await get(a, 'items/followed-a');
        const rb = await get(b, 'things/followed-b', KEYS.bob);
        const followed = (id: unknown) => jsonLines(out).filter((r) => r.id === id);
        await waitFor('both new exchanges in tail -f', () => followed(ra.headers['x-airlock-request-id']).length === 2 && followed(rb.headers['x-airlock-request-id']).length === 2, 5000, 20);
        assert.deepEqual(followed(ra.headers['x-airlock-request-id']).map((r) => [r.node, r.phase]), [[na, 'decision'], [na, 'final']]);
        assert.deepEqual(followed(rb.headers['x-airlock-request-id']).map((r) => [r.node, r.phase]), [[nb, 'decision'], [nb, 'final']]);
        assert.equal(new Set(jsonLines(out).map((r) => `${r.node}:${r.seq}`)).size, jsonLines(out).length, 'no record printed twice');
      } finally {
        tail.kill('SIGTERM');
      }

      const metrics = await call(`${a.adminUrl}/metrics`);
      assert.match(metrics.text, /^airlock_audit_shipping_lag_records 0$/m);
      assert.match(metrics.text, /^airlock_audit_shipping_lag_seconds 0$/m);

      // A reload that changes the store is refused (a restart is needed): nothing half-applied.
      writeFileSync(a.configFile, readFileSync(a.configFile, 'utf8').replace(`schema: ${s}`, 'schema: elsewhere').replace('deny: ["http: * svc/admin/**"]', 'deny: ["http: * svc/items/2"]'));
      const reload = a.gw.reload('test');
      assert.equal(reload.ok, false);
      assert.match(a.logs(), /the store section \(store\.redis, store\.postgres\) changes only on restart/);
      assert.equal(a.gw.config().store.postgres?.schema, s);
      assert.equal((await get(a, 'items/2')).status, 200, 'the running config stays in force');
      const [newest] = await records(a, 'agent=alice&limit=1');
      assert.deepEqual([newest!['action'], newest!.node, newest!.phase], ['http: GET svc/items/2', na, 'final'], 'and records still go to the running schema');
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('filters (agent, protocol, decision, since, limit) return the same records from PostgreSQL as from the local store', async () => {
    const s = schema();
    const tmp = tempDir('airlock-pg-parity-');
    try {
      const g = await startGateway(config(up.url, s), { dir: tmp.dir });
      // A slow call whose final record comes after records of calls that started later: seq order
      // and ts order differ, so the order of the answers is tested too.
      const slow = get(g, 'slow/1');
      await new Promise((r) => setTimeout(r, 30));
      await get(g, 'items/1', KEYS.bob);
      // Text that JSON and SQL must carry exactly (the bodies are in the records): the chains verify only if it does.
      assert.equal((await chat(g, KEYS.alice, 'emoji 😀, quotes " \' \\ backslash, NUL \u0000, control \u0001\u001f, lone \ud800 surrogate, CJK 漢字, RTL \u202e')).status, 200);
      assert.equal((await slow).status, 200);
      await new Promise((r) => setTimeout(r, 20));
      const mid = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 20));
      assert.equal((await get(g, 'admin/x', KEYS.bob)).status, 403);
      assert.equal((await get(g, 'items/2', 'alk_unknownUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU')).status, 401);
      assert.equal((await chat(g, KEYS.bob, 'one two three')).status, 200);
      await get(g, 'items/3');
      const all = await records(g, 'limit=1000');
      assert.equal(all.length, 12);
      assert.ok(all.some((r) => JSON.stringify(r).includes('😀')));
      const bySeq = [...all].sort((x, y) => x.seq - y.seq);
      assert.ok(bySeq.some((r, i) => i > 0 && r.ts < bySeq[i - 1]!.ts), 'some record comes after a record with a later ts');
      await g.stop();

      // The same records in a gateway without PostgreSQL: a copy of the data directory.
      const localDir = join(tmp.dir, 'local');
      cpSync(join(tmp.dir, 'data'), join(localDir, 'data'), { recursive: true });
      rmSync(join(localDir, 'data', 'node-id'));
      const local = await startGateway(config(up.url, undefined), { dir: localDir });
      const pgGw = await startGateway(config(up.url, s), { dir: tmp.dir });
      try {
        const filters = ['', 'limit=1', 'limit=3', 'limit=7', 'agent=alice', 'agent=bob&limit=2', 'protocol=llm', 'protocol=http&decision=denied', 'decision=allowed&limit=4', `since=${mid}`, `since=${mid}&agent=bob&limit=2`, 'since=1h&protocol=http', 'agent=nobody', 'decision=killed'];
        for (const f of filters) {
          const fromLocal = await records(local, f);
          const fromPg = await records(pgGw, f);
          assert.ok(fromPg.every((r) => r.node === nodeOf(pgGw)), f);
          assert.deepEqual(withoutNode(fromPg), fromLocal, `GET /api/audit?${f}`);
        }
        assert.equal((await records(local, `since=${mid}`)).length, 6);
        for (const args of [['--agent', 'alice'], ['--protocol', 'http', '--limit', '3'], ['--since', mid, '--decision', 'allowed']]) {
          const l = await runCli(['audit', 'query', '-c', local.configFile, '--json', ...args]);
          const p = await runCli(['audit', 'query', '-c', pgGw.configFile, '--json', ...args]);
          assert.equal(l.code, 0, l.stderr);
          assert.equal(p.code, 0, p.stderr);
          assert.ok(jsonLines(l.stdout).length > 0);
          assert.deepEqual(withoutNode(jsonLines(p.stdout)), jsonLines(l.stdout), `audit query ${args.join(' ')}`);
        }
        const v = await runCli(['audit', 'verify', '-c', pgGw.configFile]);
        assert.equal(v.code, 0, v.stdout + v.stderr);
        assert.match(v.stdout, /1 node\(s\), 12 audit records, every chain intact/);
        const tl = await runCli(['audit', 'tail', '-n', '5', '-c', local.configFile, '--json']);
        const tp = await runCli(['audit', 'tail', '-n', '5', '-c', pgGw.configFile, '--json']);
        assert.deepEqual(withoutNode(jsonLines(tp.stdout)), jsonLines(tl.stdout), 'audit tail');
      } finally {
        await local.stop();
        await pgGw.stop();
      }
    } finally {
      tmp.cleanup();
    }
  });

  it('usage through either gateway sums both gateways\' calls of every protocol (LLM ones by model); the CLI reads PostgreSQL when no gateway runs', async () => {
    const s = schema();
    const a = await startGateway(config(up.url, s));
    const b = await startGateway(config(up.url, s));
    try {
      for (let i = 0; i < 2; i++) assert.equal((await chat(a, KEYS.alice, `question number ${i}`)).status, 200);
      for (let i = 0; i < 3; i++) assert.equal((await chat(b, KEYS.bob, `another question ${i}`)).status, 200);
      assert.equal((await chat(b, KEYS.alice, 'from the other gateway')).status, 200);
      // HTTP calls too, one of them denied: alice 3 (1 refused) on a, bob 1 on b.
      for (const p of ['items/1', 'items/2']) assert.equal((await get(a, p)).status, 200);
      assert.equal((await get(a, 'admin/users')).status, 403);
      assert.equal((await get(b, 'items/3', KEYS.bob)).status, 200);
      // And on a, one of alice's calls cut in flight by a kill switch (it ran) and one made while it is on (refused).
      const json = { 'content-type': 'application/json' };
      const inFlight = get(a, 'slow/usage');
      await waitFor('the slow call to reach the upstream', () => up.received.some((r) => r.url === '/slow/usage'));
      assert.equal((await call(`${a.adminUrl}/api/kill`, { method: 'POST', headers: json, body: JSON.stringify({ agent: 'alice' }) })).json.aborted, 1);
      assert.equal((await inFlight).json.error.code, 'killed');
      assert.equal((await get(a, 'items/4')).json.error.code, 'killed');
      assert.equal((await call(`${a.adminUrl}/api/kill`, { method: 'DELETE', headers: json, body: JSON.stringify({ agent: 'alice' }) })).status, 200);
      const localSum = (t: TestGateway) => {
        const st = new SqliteStore(join(t.dir, 'data'), { readonly: true });
        try {
          return st.usageSummary('agent', undefined);
        } finally {
          st.close();
        }
      };
      for (const t of [a, b]) {
        await t.gw.audit.settled();
        assert.equal(await t.gw.postgres!.shipped(), true, 'each gateway\'s records are in PostgreSQL');
      }
      const [la, lb] = [localSum(a), localSum(b)];
      const want = (agent: string, key: 'requests' | 'refused' | 'inputTokens' | 'outputTokens' | 'costUsd') => [...la, ...lb].filter((g) => g.key === agent).reduce((n, g) => n + g[key], 0);
      const wantProtocols = (agent: string) => {
        const out: Record<string, number> = {};
        for (const g of [...la, ...lb].filter((x) => x.key === agent)) for (const [p, n] of Object.entries(g.protocols)) out[p] = (out[p] ?? 0) + n;
        return out;
      };
      for (const t of [a, b]) {
        const u = await call(`${t.adminUrl}/api/usage?by=agent`);
        assert.equal(u.status, 200, u.text);
        const alice = u.json.groups.find((g: { agent: string }) => g.agent === 'alice');
        const bob = u.json.groups.find((g: { agent: string }) => g.agent === 'bob');
        assert.deepEqual([alice.requests, alice.refused, alice.protocols], [8, 2, { http: 5, llm: 3 }]);
        assert.deepEqual([bob.requests, bob.refused, bob.protocols], [4, 0, { http: 1, llm: 3 }]);
        // The same answer as both local stores' sums together.
        for (const k of ['requests', 'refused', 'inputTokens', 'outputTokens'] as const) {
          assert.equal(alice[k], want('alice', k), k);
          assert.equal(bob[k], want('bob', k), k);
        }
        assert.deepEqual(alice.protocols, wantProtocols('alice'));
        assert.deepEqual(bob.protocols, wantProtocols('bob'));
        assert.ok(Math.abs(alice.costUsd - want('alice', 'costUsd')) < 1e-9);
        assert.ok(alice.costUsd > 0);
        assert.deepEqual([u.json.total.requests, u.json.total.refused, u.json.total.protocols], [12, 2, { http: 6, llm: 6 }]);
      }
      const byTeam = await call(`${b.adminUrl}/api/usage?by=team&since=1h`);
      assert.deepEqual(byTeam.json.groups.map((g: { team: string | null; requests: number; refused: number; protocols: unknown }) => [g.team, g.requests, g.refused, g.protocols]), [[null, 12, 2, { http: 6, llm: 6 }]], 'neither agent has a team');
      const byModel = await call(`${a.adminUrl}/api/usage?by=model&since=1h`);
      assert.equal(byModel.json.groups.length, 1);
      assert.deepEqual([byModel.json.groups[0].model, byModel.json.groups[0].requests, byModel.json.groups[0].protocols], ['demo-mini', 6, { llm: 6 }], 'LLM calls only');
      const fromApi = (await call(`${a.adminUrl}/api/usage?by=agent`)).json;
      await a.gw.stop();
      await b.gw.stop();
      const u = await runCli(['usage', '-c', a.configFile, '--json']);
      assert.equal(u.code, 0, u.stderr);
      assert.deepEqual(JSON.parse(u.stdout), fromApi, 'the same report from PostgreSQL directly');
      const tbl = await runCli(['usage', '-c', a.configFile]);
      assert.equal(tbl.code, 0, tbl.stderr);
      assert.match(tbl.stdout, /^agent\s+requests\s+refused\s+http\s+llm\s+input/m);
      assert.match(tbl.stdout, /^alice\s+8\s+2\s+5\s+3\s/m);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('verify names the node and seq of a record altered or deleted in PostgreSQL, and of a chain rewritten whole there; the shipper will not go on over it', async () => {
    const s = schema();
    const t = await startGateway(config(up.url, s));
    const other = await startGateway(config(up.url, s));
    try {
      for (let i = 0; i < 4; i++) await get(t, `items/${i}`);
      await get(other, 'items/9', KEYS.bob);
      await records(t);
      await records(other);
      const node = nodeOf(t);
      await t.gw.stop();
      const verify = async () => {
        const r = await runCli(['audit', 'verify', '-c', t.configFile]);
        const j = await runCli(['audit', 'verify', '-c', t.configFile, '--json']);
        assert.equal(r.code, j.code);
        return { code: r.code, out: r.stdout + r.stderr, json: JSON.parse(j.stdout) };
      };
      const ok = await verify();
      assert.equal(ok.code, 0, ok.out);
      assert.equal(ok.json.postgres.nodes, 2);
      const table = `"${s}".audit`;
      const [row3] = await pgQuery<{ record: string }>(`SELECT record FROM ${table} WHERE node = $1 AND seq = 3`, [node]);

      // One record's text altered in PostgreSQL.
      await pgQuery(`UPDATE ${table} SET record = replace(record, 'items/1', 'items/7') WHERE node = $1 AND seq = 3`, [node]);
      let v = await verify();
      assert.equal(v.code, 1, v.out);
      assert.match(v.out, new RegExp(`BROKEN in PostgreSQL .* at node ${node}, record #3 \\(exchange [0-9a-f-]+\\): its content does not match its hash`));
      assert.match(v.out, /^ok: 8 audit records, chain intact/m, 'the local store itself is fine');
      assert.deepEqual([v.json.ok, v.json.postgres.broken.node, v.json.postgres.broken.seq], [false, node, 3]);
      await pgQuery(`UPDATE ${table} SET record = $2 WHERE node = $1 AND seq = 3`, [node, row3!.record]);
      assert.equal((await verify()).code, 0);

      // A record in the middle deleted.
      const [saved] = await pgQuery(`DELETE FROM ${table} WHERE node = $1 AND seq = 5 RETURNING *`, [node]);
      v = await verify();
      assert.equal(v.code, 1, v.out);
      assert.match(v.out, new RegExp(`at node ${node}, record #6 .*expected record #5 next, found #6: 1 record\\(s\\) missing`));
      const cols = Object.keys(saved!);
      await pgQuery(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`, Object.values(saved!));
      assert.equal((await verify()).code, 0);

      // The chain rewritten from #3 on with every hash recomputed: whole by itself, but not the gateway's.
      const chain = await pgChain(s, node);
      let prev = chain[1]!.hash;
      for (const r of chain.slice(2)) {
        const record = r.seq === 3 ? r.record.replace('items/1', 'items/7') : r.record;
        const hash = chainHash(prev, record);
        await pgQuery(`UPDATE ${table} SET record = $3, prev_hash = $4, hash = $5 WHERE node = $1 AND seq = $2`, [node, r.seq, record, prev, hash]);
        prev = hash;
      }
      v = await verify();
      assert.equal(v.code, 1, v.out);
      assert.match(v.out, new RegExp(`at node ${node}, record #3 .*differs from the local store's record`));

      // Restarted on a local store that disagrees with PostgreSQL, the gateway serves and keeps its
      // records locally, but ships nothing over the other chain.
      const again = await startGateway(readFileSync(t.configFile, 'utf8'), { dir: t.dir });
      try {
        assert.equal((await get(again, 'items/5')).status, 200);
        await waitFor('the shipping stopped error', () => /audit shipping to PostgreSQL .* stopped: record #8 differs between the local store and PostgreSQL/.test(again.logs()));
        const r = await call(`${again.adminUrl}/api/audit?agent=alice`);
        assert.equal(r.status, 200, 'queries still answer from what PostgreSQL has');
        assert.equal((await pgChain(s, node)).length, 8, 'nothing shipped over the rewritten chain');
        const st = new SqliteStore(join(t.dir, 'data'), { readonly: true });
        assert.equal(st.auditHead()?.seq, 10, 'the local store has the new records');
        st.close();
      } finally {
        await again.gw.stop();
      }
    } finally {
      await t.stop();
      await other.stop();
    }
  });
});
