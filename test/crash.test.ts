/**
 * Crash safety of the write-ahead audit (SPEC 8: "a kill -9 of the gateway loses no record of an
 * exchange that reached an upstream"): a real gateway process under ~30 concurrent clients is
 * SIGKILLed mid-load; every request the upstream saw must have its decision record in the store,
 * the hash chain must verify, and a restarted gateway must extend the chain cleanly.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Pool } from 'undici';
import { call, KEYS } from './support/gateway.js';
import { runCli, startCliGateway, tempDir, writeConfig } from './support/cli.js';

const CLIENTS = 30;
const LOAD_MS = 2000;

describe('kill -9 mid-load', { timeout: 180_000 }, () => {
  const tmp = tempDir('airlock-crash-');
  after(() => tmp.cleanup());

  it('loses no audit record of a request that reached the upstream, and the chain verifies', { timeout: 90_000 }, async (t) => {
    const dataDir = join(tmp.dir, 'data');
    // Write-ahead, checked as it happens: when a request arrives at the upstream, its decision record
    // must already be committed to the store. A read-only connection of our own reads the records
    // committed so far (incrementally, by seq).
    let reader: Database.Database | undefined;
    let readerSeq = 0;
    let checking = true;
    const checkErrors: unknown[] = [];
    const decidedSoFar = new Set<string>();
    const forwardedBeforeRecorded: string[] = [];
    const catchUp = () => {
      reader ??= new Database(join(dataDir, 'airlock.db'), { readonly: true });
      const rows = reader.prepare('SELECT seq, phase, record FROM audit WHERE seq > ? ORDER BY seq').all(readerSeq) as { seq: number; phase: string; record: string }[];
      for (const r of rows) {
        readerSeq = r.seq;
        const m = r.phase === 'decision' ? /"action":"http: GET svc(\/item\/\d+)"/.exec(r.record) : null;
        if (m) decidedSoFar.add(m[1]!);
      }
    };
    // The upstream notes each path the moment the request arrives, before answering (after a short delay,
    // so that many exchanges are in flight when the gateway dies).
    const received = new Set<string>();
    const upstream = createServer((req, res) => {
      const path = req.url ?? '';
      received.add(path);
      if (checking) {
        // Never throw here: a request left unanswered would hang its client.
        try {
          if (!decidedSoFar.has(path)) catchUp();
          if (!decidedSoFar.has(path)) forwardedBeforeRecorded.push(path);
        } catch (e) {
          checkErrors.push(e);
        }
      }
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
      }, 2 + Math.floor(Math.random() * 15));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const upUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const file = writeConfig(
      tmp.dir,
      `log: { level: warn }
agents:
  bot: { keys: ["${KEYS.alice}"] }
rules:
  - name: items
    allow: ["http: GET svc/item/*"]
http:
  services:
    svc: { url: "${upUrl}", retries: 0 }
`,
    );
    try {
      const gw = await startCliGateway(file);
      const pool = new Pool(gw.agentUrl, { connections: CLIENTS, headersTimeout: 10_000, bodyTimeout: 10_000 });
      let next = 0;
      let stop = false;
      let ok = 0;
      let failed = 0;
      const client = async () => {
        while (!stop) {
          const n = next++;
          try {
            const r = await pool.request({ path: `/http/svc/item/${n}`, method: 'GET', headers: { authorization: `Bearer ${KEYS.alice}` } });
            await r.body.dump();
            if (r.statusCode === 200) ok++;
          } catch {
            failed++;
          }
        }
      };
      const clients = Array.from({ length: CLIENTS }, client);
      await new Promise((r) => setTimeout(r, LOAD_MS));
      gw.child.kill('SIGKILL');
      stop = true;
      await Promise.all(clients);
      const exit = await gw.exited;
      assert.equal(exit.signal, 'SIGKILL');
      await pool.destroy();
      // Let requests that were on their way to the upstream land.
      await new Promise((r) => setTimeout(r, 200));

      checking = false;
      reader?.close();
      assert.deepEqual(checkErrors, []);
      assert.ok(ok >= 100, `enough load to mean something (${ok} answered)`);
      assert.deepEqual(forwardedBeforeRecorded.slice(0, 10), [], `${forwardedBeforeRecorded.length} requests reached the upstream before their decision record was committed`);
      assert.ok(failed > 0, 'some calls were cut by the kill');

      // The chain of the crashed store verifies (this also recovers the WAL).
      const v = await runCli(['audit', 'verify', '-c', file, '--json']);
      assert.equal(v.code, 0, v.stdout + v.stderr);
      const verified = JSON.parse(v.stdout) as { ok: boolean; records: number };
      assert.equal(verified.ok, true);

      const db = new Database(join(dataDir, 'airlock.db'), { readonly: true });
      const rows = db.prepare('SELECT phase, record FROM audit ORDER BY seq').all() as { phase: string; record: string }[];
      db.close();
      assert.equal(rows.length, verified.records);
      const decided = new Set<string>();
      const finished = new Set<string>();
      for (const r of rows) {
        const rec = JSON.parse(r.record) as { action?: string; decision: string };
        const m = /^http: GET svc(\/item\/\d+)$/.exec(rec.action ?? '');
        assert.ok(m, `unexpected record ${r.record}`);
        if (r.phase === 'decision') {
          assert.equal(rec.decision, 'allowed');
          decided.add(m[1]!);
        } else finished.add(m[1]!);
      }
      t.diagnostic(`${ok} answered, ${failed} cut, ${received.size} reached the upstream, ${decided.size} decision records, ${finished.size} final records`);
      const mirror = join(dataDir, 'audit.jsonl');
      t.diagnostic(`audit.jsonl has ${readFileSync(mirror, 'utf8').split('\n').filter(Boolean).length} lines after the crash; the store ${rows.length} records`);
      const missing = [...received].filter((p) => !decided.has(p));
      assert.deepEqual(missing, [], `${missing.length} of ${received.size} requests reached the upstream with no decision record`);
      assert.ok(received.size >= ok, 'the upstream saw every answered call');
      // Killed mid-load: some exchanges had their decision written but never finished.
      assert.ok([...decided].some((p) => !finished.has(p)), 'some exchanges were in flight at the kill');

      // The JSONL mirror is written after the store commits, through a buffer: a kill -9 can leave it
      // behind the store and ending in a torn line. Make sure it does here (cut 5 lines and half of one),
      // so the restart below has to repair it either way.
      const text = readFileSync(mirror, 'utf8');
      let cut = text.length - 1;
      for (let i = 0; i < 5; i++) cut = text.lastIndexOf('\n', cut - 1);
      writeFileSync(mirror, text.slice(0, cut + 1 + Math.floor((text.indexOf('\n', cut + 1) - cut) / 2)));

      // A restarted gateway continues the chain from the crashed store's head.
      const again = await startCliGateway(file);
      const r = await call(`${again.agentUrl}/http/svc/other`, { key: KEYS.alice });
      assert.equal(r.status, 403, 'no rule allows svc/other: denied, and recorded');
      assert.equal((await call(`${again.agentUrl}/http/svc/item/999999`, { key: KEYS.alice })).status, 200);
      assert.equal((await again.stop()).code, 0, again.stderr());
      const v2 = await runCli(['audit', 'verify', '-c', file, '--json']);
      assert.equal(v2.code, 0, v2.stdout);
      assert.equal(JSON.parse(v2.stdout).records, verified.records + 3);
      // And the mirror holds every record of the store again, once each, in order, on lines of their own.
      const lines = readFileSync(mirror, 'utf8').split('\n');
      assert.equal(lines.pop(), '', 'ends with a newline');
      const seqs = lines.map((l, i) => {
        let rec: { seq: number; hash: string; prevHash: string };
        try {
          rec = JSON.parse(l) as typeof rec;
        } catch {
          assert.fail(`audit.jsonl line ${i + 1} is not a whole record: ${l.slice(0, 120)}`);
        }
        assert.match(rec.hash, /^[0-9a-f]{64}$/, `line ${i + 1}`);
        return rec.seq;
      });
      assert.equal(seqs.length, verified.records + 3);
      assert.ok(seqs.every((s, i) => s === i + 1), 'seq 1..N without gaps or repeats');
    } finally {
      upstream.closeAllConnections();
      await new Promise<void>((r) => upstream.close(() => r()));
    }
  });
});
