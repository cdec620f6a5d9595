/**
 * The audit writer runs beside the event loop: a store that cannot take writes holds back only the
 * calls waiting for their write-ahead record (which are then refused, fail closed, and recorded
 * once the store recovers), never the rest of the gateway; outcome records the store refused are
 * kept and stored later; and what the admin API reads includes every exchange already answered.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { runCli } from './support/cli.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { echo, startUpstream, type Upstream } from './support/upstream.js';

const yaml = (upstream: string) => `
agents:
  alice:
    keys: ["${KEYS.alice}"]
rules:
  - name: reads
    agents: [alice]
    allow: ["http: GET svc/**"]
http:
  services:
    svc: { url: "${upstream}" }
`;

describe('audit writer', { timeout: 60_000 }, () => {
  let up: Upstream;
  let g: TestGateway;
  const dir = mkdtempSync(join(tmpdir(), 'airlock-writer-'));
  before(async () => {
    up = await startUpstream();
    g = await startGateway(yaml(up.url), { dir });
  });
  after(async () => {
    await g?.stop();
    await up?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers the admin API with the records of every exchange already answered', async () => {
    for (let i = 0; i < 20; i++) {
      const r = await call(`${g.agentUrl}/http/svc/item/${i}`, { key: KEYS.alice });
      assert.equal(r.status, 200);
      const id = r.headers['x-airlock-request-id'];
      const a = await call(`${g.adminUrl}/api/audit?limit=1`);
      const [last] = a.json.records as { id: string; phase: string; status: number }[];
      assert.deepEqual([last?.id, last?.phase, last?.status], [id, 'final', 200], `call ${i}: the final record is there at once`);
    }
  });

  it('keeps the WAL bounded while calls are committed one at a time (a checkpoint alone never starts it over)', async () => {
    const wal = join(g.dir, 'data', 'airlock.db-wal');
    // One call at a time: every decision record is its own commit on the event loop, about a
    // thousand a second, which is what kept a plain checkpoint from ever finding the WAL copied.
    for (let i = 0; i < 2500; i++) assert.equal((await call(`${g.agentUrl}/http/svc/seq/${i}`, { key: KEYS.alice })).status, 200);
    const mb = statSync(wal).size / 1048576;
    assert.ok(mb < 24, `the WAL is ${mb.toFixed(1)} MB after 2,500 calls`);
    const v = await runCli(['audit', 'verify', '-c', g.configFile, '--json']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });

  it('a writer thread that dies is replaced: calls go on, its audit.jsonl descriptor is released, and the chain and mirror stay whole', async () => {
    const jsonl = join(g.dir, 'data', 'audit.jsonl');
    const mirrorFds = () => readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === jsonl;
      } catch {
        return false; // the descriptor readdir itself used, closed by now
      }
    }).length;
    const load = () => Promise.all(Array.from({ length: 20 }, (_, i) => call(`${g.agentUrl}/http/svc/load/${i}`, { key: KEYS.alice })));
    for (const r of await load()) assert.equal(r.status, 200);
    const fdsBefore = mirrorFds();
    // Fault injection: the thread ends as it would on a fatal error of its own.
    const audit = g.gw.audit as unknown as { worker: Worker; alive: boolean };
    const dead = audit.worker;
    await dead.terminate();
    for (const r of await load()) assert.equal(r.status, 200, 'calls go on while no writer thread runs');
    for (let i = 0; i < 50 && !(audit.alive && audit.worker !== dead); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(audit.alive && audit.worker !== dead, 'a new writer thread took over');
    for (const r of await load()) assert.equal(r.status, 200);
    assert.equal(mirrorFds(), fdsBefore, 'the dead thread\'s descriptor was released (Node closes what a thread opened) and the new one opened its own');
    const stored = (await call(`${g.adminUrl}/api/audit?limit=1`)).json.records[0].seq as number;
    const lines = readFileSync(jsonl, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, stored, 'audit.jsonl has every stored record');
    const v = await runCli(['audit', 'verify', '-c', g.configFile, '--json']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });

  it('fills the audit index tables within a moment of storing the records', async () => {
    for (let i = 0; i < 30; i++) assert.equal((await call(`${g.agentUrl}/http/svc/indexed/${i}`, { key: KEYS.alice })).status, 200);
    // A call's outcome record is stored just after its response, so the last one may still be on its way.
    let s = indexState(g, 'svc/indexed/');
    for (let i = 0; i < 40 && (s.upto < s.head || s.alice < 60); i++) {
      await new Promise((r) => setTimeout(r, 50));
      s = indexState(g, 'svc/indexed/');
    }
    assert.equal(s.upto, s.head, 'the index tables caught up with the store');
    assert.equal(s.alice, 60, 'a decision and a final record per call, indexed under the agent');
  });

  it('refuses calls while the store is locked by another process, keeps serving meanwhile, and records the refusal once it is free', async () => {
    // A call already forwarded when the lock comes: its outcome record must survive the lock too.
    up.handle((req, res, body) => (req.url === '/slow' ? setTimeout(() => echo(req, res, body), 400) : echo(req, res, body)));
    const slow = call(`${g.agentUrl}/http/svc/slow`, { key: KEYS.alice });
    while (up.received.at(-1)?.url !== '/slow') await new Promise((r) => setTimeout(r, 10));
    const before = up.received.length;
    // Another process (here: this test's own connection) takes the store's write lock and keeps it.
    const db = new Database(join(g.dir, 'data', 'airlock.db'));
    db.exec('BEGIN IMMEDIATE');
    let released = false;
    try {
      assert.equal((await slow).status, 200, 'a call in flight when the store locks ends normally');
      const t0 = Date.now();
      const held = call(`${g.agentUrl}/http/svc/locked`, { key: KEYS.alice });
      // The event loop is free: health checks and refusals that need no write-ahead answer at once.
      for (let i = 0; i < 5; i++) {
        const h0 = Date.now();
        const h = await call(`${g.agentUrl}/healthz`);
        assert.equal(h.status, 200);
        assert.ok(Date.now() - h0 < 500, `health check answered in ${Date.now() - h0} ms while the store was locked`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const r = await held;
      assert.equal(r.status, 500);
      assert.equal(r.json.error.code, 'internal_error');
      assert.match(r.json.error.message, /audit store could not record/);
      assert.ok(Date.now() - t0 >= 4000, 'refused only after the store gave up waiting for the lock');
      assert.equal(up.received.length, before, 'nothing reached the upstream without its decision record');
      db.exec('COMMIT');
      released = true;

      const ok = await call(`${g.agentUrl}/http/svc/after`, { key: KEYS.alice });
      assert.equal(ok.status, 200);
      assert.equal(up.received.at(-1)?.url, '/after');
      const a = await call(`${g.adminUrl}/api/audit?limit=10`);
      const records = a.json.records as { id: string; phase: string; code?: string; decision: string; status?: number; action?: string }[];
      const refusal = records.find((x) => x.id === r.headers['x-airlock-request-id']);
      assert.deepEqual([refusal?.phase, refusal?.decision, refusal?.code], ['final', 'denied', 'internal_error']);
      // The outcome of the call that was in flight was refused by the locked store, kept, and stored on a later try.
      const outcome = await (async () => {
        for (let i = 0; i < 40; i++) {
          const q = await call(`${g.adminUrl}/api/audit?limit=20`);
          const f = (q.json.records as typeof records).find((x) => x.phase === 'final' && x.action === 'http: GET svc/slow');
          if (f) return f;
          await new Promise((res) => setTimeout(res, 100));
        }
        return undefined;
      })();
      assert.deepEqual([outcome?.decision, outcome?.status], ['allowed', 200]);
    } finally {
      if (!released) db.exec('ROLLBACK');
      db.close();
    }
    await g.stop();
    const v = await runCli(['audit', 'verify', '-c', g.configFile, '--json']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });

  it('a writer thread that dies after its commit, before it reports it, does not have its records written twice', async () => {
    // The thread is stopped in the one place where this happens: its batch committed, its
    // audit.jsonl write not done, so its answer not sent. audit.jsonl is a FIFO here, which this
    // test fills up, so that the thread's write blocks until the test reads.
    const dir = mkdtempSync(join(tmpdir(), 'airlock-writer-late-'));
    const data = join(dir, 'data');
    mkdirSync(data, { recursive: true, mode: 0o700 });
    const fifo = join(data, 'audit.jsonl');
    assert.equal(spawnSync('mkfifo', ['-m', '600', fifo]).status, 0, 'mkfifo');
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK); // before the gateway opens it to write
    const chunk = Buffer.alloc(1 << 16);
    const drain = () => {
      try {
        while (readSync(reader, chunk) > 0);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      }
    };
    let draining: NodeJS.Timeout | undefined = setInterval(drain, 5);
    let release: (() => void) | undefined;
    up.handle((req, res, body) => (req.url === '/late' ? (release = () => echo(req, res, body)) : echo(req, res, body)));
    const own = await startGateway(yaml(up.url), { dir });
    const db = new Database(join(data, 'airlock.db'));
    try {
      assert.equal((await call(`${own.agentUrl}/http/svc/before`, { key: KEYS.alice })).status, 200);
      const late = call(`${own.agentUrl}/http/svc/late`, { key: KEYS.alice });
      while (!release) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 50)); // its decision record's mirror line written (20 ms)
      // The call's outcome record meets a locked store: it goes to the writer thread, which waits.
      db.exec('BEGIN IMMEDIATE');
      release();
      const r = await late;
      assert.equal(r.status, 200);
      const id = r.headers['x-airlock-request-id'] as string;
      const audit = own.gw.audit as unknown as { worker: Worker; out: unknown };
      while (!audit.out) await new Promise((res) => setTimeout(res, 5));
      // Fill the FIFO: the thread's write after its commit blocks.
      clearInterval(draining);
      drain();
      const writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      try {
        for (const size of [4096, 1]) for (;;) writeSync(writer, Buffer.alloc(size, 0x0a));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      } finally {
        closeSync(writer);
      }
      db.exec('COMMIT');
      const finals = () => (db.prepare("SELECT count(*) AS n FROM audit WHERE id = ? AND phase = 'final'").get(id) as { n: number }).n;
      while (finals() === 0) await new Promise((res) => setTimeout(res, 5));
      const stopped = audit.worker.terminate();
      draining = setInterval(drain, 5);
      await stopped;
      // A refused batch's outcome records are tried again after a second: wait past that.
      await new Promise((res) => setTimeout(res, 1500));
      assert.equal((await call(`${own.agentUrl}/http/svc/after`, { key: KEYS.alice })).status, 200);
      await own.gw.audit.settled();
      assert.equal(finals(), 1, 'the outcome record is stored once');
      const v = await runCli(['audit', 'verify', '-c', own.configFile, '--json']);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    } finally {
      db.close();
      await own.stop();
      clearInterval(draining);
      closeSync(reader);
      up.handle(echo);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('indexes, as it stops, every record not indexed yet', async () => {
    // A gateway of its own, stopped right after its calls: before the writer's next indexing tick.
    const own = await startGateway(yaml(up.url), { dir: mkdtempSync(join(tmpdir(), 'airlock-writer-stop-')) });
    try {
      for (let i = 0; i < 5; i++) assert.equal((await call(`${own.agentUrl}/http/svc/last/${i}`, { key: KEYS.alice })).status, 200);
      await own.stop();
      const s = indexState(own, 'svc/last/');
      assert.equal(s.upto, s.head);
      assert.equal(s.alice, 10);
    } finally {
      await own.stop();
      rmSync(own.dir, { recursive: true, force: true });
    }
  });
});

/** How far the audit index tables reach, the last stored record, and alice's index entries (of calls whose action has `path` in it). */
function indexState(g: TestGateway, path = ''): { upto: number; head: number; alice: number } {
  const db = new Database(join(g.dir, 'data', 'airlock.db'), { readonly: true });
  try {
    const alice = "SELECT count(*) FROM audit_by_agent i JOIN audit a ON a.seq = i.seq WHERE i.agent = 'alice' AND instr(a.record, ?) > 0";
    return db.prepare(`SELECT (SELECT upto FROM audit_indexed) AS upto, (SELECT max(seq) FROM audit) AS head, (${alice}) AS alice`).get(path) as { upto: number; head: number; alice: number };
  } finally {
    db.close();
  }
}
