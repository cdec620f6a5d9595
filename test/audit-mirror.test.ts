/**
 * audit.jsonl after a failed write: SIEM shippers read only the mirror, so a write the file system
 * refused (a full disk, a file-size limit) must leave neither a gap nor a torn line behind once
 * writes succeed again, and the records it missed come back in chain order.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli, startCliGateway, tempDir, writeConfig, type CliGateway } from './support/cli.js';
import { call, KEYS } from './support/gateway.js';
import { startUpstream, type Upstream } from './support/upstream.js';

/** The seqs of audit.jsonl's lines, in file order; a line that is not a complete record is `NaN`. */
function mirrorSeqs(file: string): number[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      try {
        return (JSON.parse(l) as { seq: number }).seq;
      } catch {
        return NaN;
      }
    });
}

/** Sets the soft RLIMIT_FSIZE of a running process (`unlimited`, or bytes). */
function fileSizeLimit(pid: number, limit: number | 'unlimited'): void {
  const r = spawnSync('prlimit', ['--pid', String(pid), `--fsize=${limit}:`], { encoding: 'utf8' });
  assert.equal(r.status, 0, `prlimit: ${r.stderr}`);
}

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  for (const t0 = Date.now(); !ok(); ) {
    if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('audit.jsonl after a failed write', { timeout: 60_000 }, () => {
  const tmp = tempDir('airlock-mirror-');
  let up: Upstream;
  before(async () => {
    up = await startUpstream();
  });
  after(async () => {
    await up?.close();
    tmp.cleanup();
  });

  it('a write cut off part-way leaves no torn line and no gap: the missing records are copied in from the store, in order', async () => {
    const data = join(tmp.dir, 'data');
    const jsonl = join(data, 'audit.jsonl');
    const file = writeConfig(tmp.dir, `agents:\n  alice: { keys: ["${KEYS.alice}"] }\nrules:\n  - name: reads\n    allow: ["http: GET svc/**"]\nhttp:\n  services:\n    svc: { url: "${up.url}" }\n`);
    // A real write failure, from the kernel: a file-size limit (RLIMIT_FSIZE) set on the gateway
    // process just past the mirror's end lets the next write through for 40 bytes, then fails it
    // (EFBIG), as a disk filling up does (ENOSPC). The limit applies to every file the process
    // writes, so the mirror starts with 4 MB of blank lines, to be much bigger than the store's.
    mkdirSync(data, { recursive: true, mode: 0o700 });
    writeFileSync(jsonl, '\n'.repeat(4 << 20), { mode: 0o600 });
    let gw: CliGateway | undefined = await startCliGateway(file);
    let all: number[] = [];
    try {
      const get = async (path: string) => assert.equal((await call(`${gw!.agentUrl}/http/svc/${path}`, { key: KEYS.alice })).status, 200);
      await get('one');
      await get('two');
      await until('4 records in audit.jsonl', () => mirrorSeqs(jsonl).length === 4);
      const size = statSync(jsonl).size;
      for (const f of ['airlock.db', 'airlock.db-wal']) assert.ok(statSync(join(data, f)).size < size / 2, `${f} stays well below the limit`);

      fileSizeLimit(gw.pid, size + 40);
      await get('three'); // records 5 and 6: stored, their mirror write fails after 40 bytes
      await until('the failed write', () => /audit\.jsonl write failed/.test(gw!.stdout() + gw!.stderr()));
      await new Promise((r) => setTimeout(r, 100)); // both of its records' writes, whether one or two
      fileSizeLimit(gw.pid, 'unlimited');
      await get('four'); // records 7 and 8, written once the file can grow again
      await until('8 lines in audit.jsonl', () => mirrorSeqs(jsonl).length >= 8, 2000).catch(() => {});
      assert.deepEqual(mirrorSeqs(jsonl), [1, 2, 3, 4, 5, 6, 7, 8], 'while the gateway runs');

      // The same when the writer thread's write fails: a store locked by another process sends
      // the next batch to the thread (the event loop never waits for a lock), whose mirror write
      // fails; the event loop's next write copies the missing records in first.
      fileSizeLimit(gw.pid, statSync(jsonl).size + 40);
      const db = new Database(join(data, 'airlock.db'));
      try {
        db.exec('BEGIN IMMEDIATE');
        const locked = get('locked');
        await new Promise((r) => setTimeout(r, 200));
        db.exec('COMMIT');
        await locked;
      } finally {
        db.close();
      }
      await new Promise((r) => setTimeout(r, 100));
      fileSizeLimit(gw.pid, 'unlimited');
      await get('after');
      all = Array.from({ length: 12 }, (_, i) => i + 1);
      await until('every record in audit.jsonl', () => mirrorSeqs(jsonl).length >= all.length, 2000).catch(() => {});
      assert.deepEqual(mirrorSeqs(jsonl), all, 'after the writer thread\'s failed write');
      await gw.stop();
      // And a restart finds nothing to mend.
      gw = await startCliGateway(file);
      await gw.stop();
      gw = undefined;
      assert.deepEqual(mirrorSeqs(jsonl), all, 'after a restart');
      const v = await runCli(['audit', 'verify', '-c', file]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    } finally {
      await gw?.stop();
    }
  });

  it('a store that ends before audit.jsonl (newest rows deleted, or restored from a backup) does not stop the mirror', async () => {
    const dir = join(tmp.dir, 'ahead');
    mkdirSync(dir);
    const data = join(dir, 'data');
    const jsonl = join(data, 'audit.jsonl');
    const file = writeConfig(dir, `agents:\n  alice: { keys: ["${KEYS.alice}"] }\nrules:\n  - name: reads\n    allow: ["http: GET svc/**"]\nhttp:\n  services:\n    svc: { url: "${up.url}" }\n`);
    let gw: CliGateway | undefined = await startCliGateway(file);
    try {
      for (const p of ['one', 'two']) assert.equal((await call(`${gw.agentUrl}/http/svc/${p}`, { key: KEYS.alice })).status, 200);
      await gw.stop();
      const db = new Database(join(data, 'airlock.db'));
      db.exec('DELETE FROM audit WHERE seq > 2');
      db.close();
      gw = await startCliGateway(file);
      assert.equal((await call(`${gw.agentUrl}/http/svc/three`, { key: KEYS.alice })).status, 200);
      await gw.stop();
      gw = undefined;
      // The mirror keeps its own history (1-4) and goes on with the store's chain (3, 4 again).
      assert.deepEqual(mirrorSeqs(jsonl), [1, 2, 3, 4, 3, 4]);
    } finally {
      await gw?.stop();
    }
  });
});
