/**
 * The audit table has no secondary index (each would cost every call's commit another page); the
 * lookups by agent and by time go through index tables that the audit writer thread fills in bulk
 * a moment after the records are stored. A query must give the same answer however far that
 * indexing has got: none of it, part of it, all of it. (That a running gateway's writer thread
 * fills them is tested in audit-writer.test.ts.)
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqliteStore } from '../src/store/sqlite.js';
import type { AuditFilter, AuditRow } from '../src/store/types.js';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'airlock-audit-index-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** 4,000 records over three agents (and agentless refusals), both protocols, one a second. */
function records(): AuditRow[] {
  const agents = ['alice', 'bob', 'carol', null];
  return Array.from({ length: 4000 }, (_, i) => {
    const agent = agents[i % 4]!;
    const ts = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
    const protocol = i % 3 === 0 ? 'llm' : 'http';
    const record = JSON.stringify({ agent, costUsd: protocol === 'llm' ? 0.01 : undefined, ts, usage: protocol === 'llm' ? { estimated: false, inputTokens: 10, outputTokens: 20 } : undefined });
    return { seq: i + 1, id: `x${i}`, ts, phase: i % 2 ? 'final' : 'decision', agent, protocol, decision: i % 5 === 0 ? 'denied' : 'allowed', record, prevHash: 'p', hash: 'h' };
  });
}

/** What a query must return, computed from the records themselves. */
function expected(all: AuditRow[], f: AuditFilter): number[] {
  const asc = f.afterSeq !== undefined;
  return all
    .filter((r) => (f.agent === undefined || r.agent === f.agent) && (f.protocol === undefined || r.protocol === f.protocol) && (f.decision === undefined || r.decision === f.decision) && (f.since === undefined || r.ts >= f.since) && (f.afterSeq === undefined || r.seq > f.afterSeq))
    .sort((a, b) => (asc ? a.seq - b.seq : b.seq - a.seq))
    .slice(0, f.limit ?? 100)
    .map((r) => r.seq);
}

const FILTERS: AuditFilter[] = [
  { agent: 'alice', limit: 10 },
  { agent: 'alice', limit: 2000 },
  { agent: 'bob', afterSeq: 2990, limit: 40 },
  { agent: 'bob', afterSeq: 10, limit: 5000 },
  { agent: 'carol', protocol: 'llm', decision: 'denied', limit: 50 },
  { agent: 'alice', since: '2026-01-01T00:49:00.000Z', limit: 100 },
  { agent: 'nobody' },
  { since: '2026-01-01T00:10:00.000Z', limit: 25 },
  { decision: 'denied', limit: 30 },
];

describe('audit index tables', () => {
  it('answer every query the same before, while and after the writer indexes the records', () => {
    const store = new SqliteStore(tempDir());
    try {
      const all = records();
      store.appendAudit(all.slice(0, 1500));
      const check = (when: string) => {
        const stored = all.filter((r) => r.seq <= store.auditHead()!.seq);
        for (const f of FILTERS) assert.deepEqual(store.queryAudit(f).map((r) => r.seq), expected(stored, f), `${when}: ${JSON.stringify(f)}`);
      };
      check('nothing indexed');
      assert.equal(store.indexAudit(1000), 1000, 'indexes at most the number asked for');
      check('part indexed');
      assert.equal(store.indexAudit(), 500);
      store.appendAudit(all.slice(1500));
      check('indexed, with a tail not indexed yet');
      const usage = [store.usageSummary('agent', '2026-01-01T00:20:00.000Z'), store.usageSummary('agent', undefined, { agent: 'bob' }), store.usageSummary('team', '2026-01-01T00:20:00.000Z')];
      assert.equal(store.indexAudit(), 2500);
      assert.equal(store.indexAudit(), 0, 'nothing left to index');
      check('all indexed');
      assert.deepEqual([store.usageSummary('agent', '2026-01-01T00:20:00.000Z'), store.usageSummary('agent', undefined, { agent: 'bob' }), store.usageSummary('team', '2026-01-01T00:20:00.000Z')], usage, 'usage sums do not depend on indexing');
      const bob = usage[1]!.find((g) => g.key === 'bob')!;
      const bobs = (protocol?: string) => all.filter((r) => r.agent === 'bob' && r.phase === 'final' && (protocol === undefined || r.protocol === protocol)).length;
      assert.equal(bob.requests, bobs(), 'every protocol\'s calls');
      assert.deepEqual(bob.protocols, { http: bobs('http'), llm: bobs('llm') });
      const llmOnly = store.usageSummary('agent', undefined, { agent: 'bob', protocol: 'llm' });
      assert.deepEqual(llmOnly.map((g) => [g.key, g.requests, g.protocols, g.costUsd]), [['bob', bobs('llm'), { llm: bobs('llm') }, bob.costUsd]], 'narrowed to one protocol: the same cost');
    } finally {
      store.close();
    }
  });

  it('looks one agent up through its index, not by reading the whole audit table', () => {
    const store = new SqliteStore(tempDir());
    try {
      store.appendAudit(records());
      store.indexAudit();
      // The statements the store itself runs for these queries, as SQLite plans them.
      const ran: string[] = [];
      const prepare = store.db.prepare.bind(store.db);
      store.db.prepare = ((sql: string) => (ran.push(sql), prepare(sql))) as typeof store.db.prepare;
      /** The plans of the statements `run` prepared that read `table`. */
      const plans = (table: string, run: () => unknown) => {
        ran.length = 0;
        run();
        return ran.filter((sql) => sql.includes(table)).map((sql) => (prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...Array.from(sql.matchAll(/\?/g), () => null)) as { detail: string }[]).map((r) => r.detail).join(' | '));
      };
      const byAgent = plans('audit_by_agent', () => store.queryAudit({ agent: 'alice', limit: 10 }));
      assert.equal(byAgent.length, 1, 'the indexed part of the query goes through audit_by_agent');
      assert.match(byAgent[0]!, /SEARCH i USING PRIMARY KEY \(agent=\?/);
      assert.doesNotMatch(byAgent[0]!, /SCAN|TEMP B-TREE/);
      const usage = plans('audit_by_ts', () => store.usageSummary('agent', '2026-01-01T00:20:00.000Z'));
      assert.equal(usage.length, 1, 'usage since a time narrows by audit_by_ts');
      assert.match(usage[0]!, /MULTI-INDEX OR/);
      assert.doesNotMatch(usage[0]!, /SCAN audit/);
    } finally {
      store.close();
    }
  });

  it('takes over a store written with the old indexes on the audit table, and indexes what it holds', () => {
    const dir = tempDir();
    const all = records();
    // A store as earlier versions left it: secondary indexes on audit, no index tables.
    const old = new Database(join(dir, 'airlock.db'));
    old.pragma('journal_mode = WAL');
    old.exec(`CREATE TABLE audit (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, ts TEXT NOT NULL, phase TEXT NOT NULL, agent TEXT,
      protocol TEXT NOT NULL, decision TEXT NOT NULL, record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
      CREATE INDEX audit_ts ON audit(ts); CREATE INDEX audit_agent ON audit(agent, seq);`);
    const ins = old.prepare('INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)');
    old.transaction(() => all.forEach((r) => ins.run(r.seq, r.id, r.ts, r.phase, r.agent, r.protocol, r.decision, r.record, r.prevHash, r.hash)))();
    old.close();

    const store = new SqliteStore(dir);
    try {
      const indexes = (store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit'").all() as { name: string }[]).map((r) => r.name);
      assert.deepEqual(indexes, [], 'the per-commit indexes are gone');
      for (const f of FILTERS) assert.deepEqual(store.queryAudit(f).map((r) => r.seq), expected(all, f), `before indexing: ${JSON.stringify(f)}`);
      assert.equal(store.indexAudit(), 4000);
      for (const f of FILTERS) assert.deepEqual(store.queryAudit(f).map((r) => r.seq), expected(all, f), `after indexing: ${JSON.stringify(f)}`);
    } finally {
      store.close();
    }
  });
});
