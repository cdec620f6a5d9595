/**
 * The embedded store: one SQLite file in WAL mode under the data directory. WAL with
 * synchronous=NORMAL makes each commit a write to the log without an fsync: it survives a crash
 * of the gateway process (kill -9), which is what write-ahead audit promises, at microsecond cost.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyRecord } from '../identity/keys.js';
import type { Alert, AuditFilter, AuditRow, KillScope, KillSwitch, Store } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY, agent TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
  created_at TEXT NOT NULL, expires_at INTEGER, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS kills (
  scope TEXT NOT NULL, value TEXT NOT NULL, reason TEXT, created_at TEXT NOT NULL, by TEXT,
  PRIMARY KEY (scope, value));
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, id TEXT NOT NULL, ts TEXT NOT NULL, phase TEXT NOT NULL, agent TEXT,
  protocol TEXT NOT NULL, decision TEXT NOT NULL, record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
  id TEXT PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
  agent TEXT, data TEXT);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts(ts);
CREATE INDEX IF NOT EXISTS audit_id ON audit(id);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE INDEX IF NOT EXISTS audit_agent ON audit(agent, seq);
`;

interface KeyRow {
  id: string;
  agent: string;
  hash: string;
  prefix: string;
  created_at: string;
  expires_at: number | null;
  revoked_at: string | null;
}

function toKey(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    agent: r.agent,
    hash: r.hash,
    prefix: r.prefix,
    source: 'store',
    createdAt: r.created_at,
    expiresAt: r.expires_at ?? undefined,
    revokedAt: r.revoked_at ?? undefined,
  };
}

interface AuditDbRow {
  seq: number;
  id: string;
  ts: string;
  phase: string;
  agent: string | null;
  protocol: string;
  decision: string;
  record: string;
  prev_hash: string;
  hash: string;
}

function toAudit(r: AuditDbRow): AuditRow {
  return {
    seq: r.seq,
    id: r.id,
    ts: r.ts,
    phase: r.phase as AuditRow['phase'],
    agent: r.agent,
    protocol: r.protocol,
    decision: r.decision,
    record: r.record,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** Opens (creating if needed) `<dataDir>/airlock.db`. */
export class SqliteStore implements Store {
  readonly db: Database.Database;
  private readonly insertAuditStmt: Database.Statement;
  private readonly appendTx: (rows: readonly AuditRow[]) => void;

  constructor(dataDir: string, opts: { readonly?: boolean } = {}) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.db = new Database(join(dataDir, 'airlock.db'), { readonly: opts.readonly ?? false, timeout: 5000 });
    if (!opts.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.exec(SCHEMA);
    }
    this.insertAuditStmt = opts.readonly
      ? this.db.prepare('SELECT 1')
      : this.db.prepare('INSERT INTO audit (seq, id, ts, phase, agent, protocol, decision, record, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)');
    this.appendTx = this.db.transaction((rows: readonly AuditRow[]) => {
      for (const r of rows) this.insertAuditStmt.run(r.seq, r.id, r.ts, r.phase, r.agent, r.protocol, r.decision, r.record, r.prevHash, r.hash);
    });
  }

  insertAlert(a: Alert): void {
    this.db
      .prepare('INSERT INTO alerts (id, ts, kind, severity, message, agent, data) VALUES (?,?,?,?,?,?,?)')
      .run(a.id, a.ts, a.kind, a.severity, a.message, a.agent ?? null, a.data ? JSON.stringify(a.data) : null);
  }

  listAlerts(limit: number, since?: string): Alert[] {
    const rows = (since === undefined
      ? this.db.prepare('SELECT * FROM alerts ORDER BY ts DESC LIMIT ?').all(limit)
      : this.db.prepare('SELECT * FROM alerts WHERE ts >= ? ORDER BY ts DESC LIMIT ?').all(since, limit)) as { id: string; ts: string; kind: string; severity: Alert['severity']; message: string; agent: string | null; data: string | null }[];
    return rows.map((r) => ({ id: r.id, ts: r.ts, kind: r.kind, severity: r.severity, message: r.message, agent: r.agent ?? undefined, data: r.data ? (JSON.parse(r.data) as Record<string, unknown>) : undefined }));
  }

  insertKey(k: KeyRecord): void {
    this.db
      .prepare('INSERT INTO keys (id, agent, hash, prefix, created_at, expires_at, revoked_at) VALUES (?,?,?,?,?,?,?)')
      .run(k.id, k.agent, k.hash, k.prefix, k.createdAt ?? new Date().toISOString(), k.expiresAt ?? null, k.revokedAt ?? null);
  }

  listKeys(agent?: string): KeyRecord[] {
    const rows = (agent === undefined
      ? this.db.prepare('SELECT * FROM keys ORDER BY created_at').all()
      : this.db.prepare('SELECT * FROM keys WHERE agent = ? ORDER BY created_at').all(agent)) as KeyRow[];
    return rows.map(toKey);
  }

  revokeKey(id: string, at: string): KeyRecord | undefined {
    const row = this.db.prepare('SELECT * FROM keys WHERE id = ?').get(id) as KeyRow | undefined;
    if (!row) return undefined;
    if (!row.revoked_at) this.db.prepare('UPDATE keys SET revoked_at = ? WHERE id = ?').run(at, id);
    return toKey({ ...row, revoked_at: row.revoked_at ?? at });
  }

  listKills(): KillSwitch[] {
    const rows = this.db.prepare('SELECT * FROM kills ORDER BY created_at').all() as { scope: KillScope; value: string; reason: string | null; created_at: string; by: string | null }[];
    return rows.map((r) => ({ scope: r.scope, value: r.value, reason: r.reason ?? undefined, createdAt: r.created_at, by: r.by ?? undefined }));
  }

  addKill(k: KillSwitch): void {
    this.db
      .prepare('INSERT INTO kills (scope, value, reason, created_at, by) VALUES (?,?,?,?,?) ON CONFLICT(scope, value) DO UPDATE SET reason = excluded.reason, by = excluded.by')
      .run(k.scope, k.value, k.reason ?? null, k.createdAt, k.by ?? null);
  }

  removeKill(scope: KillScope, value: string): number {
    return this.db.prepare('DELETE FROM kills WHERE scope = ? AND value = ?').run(scope, value).changes;
  }

  appendAudit(rows: readonly AuditRow[]): void {
    this.appendTx(rows);
  }

  auditHead(): { seq: number; hash: string } | undefined {
    const r = this.db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
    return r;
  }

  queryAudit(f: AuditFilter): AuditRow[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.agent !== undefined) (where.push('agent = ?'), args.push(f.agent));
    if (f.protocol !== undefined) (where.push('protocol = ?'), args.push(f.protocol));
    if (f.decision !== undefined) (where.push('decision = ?'), args.push(f.decision));
    if (f.since !== undefined) (where.push('ts >= ?'), args.push(f.since));
    if (f.afterSeq !== undefined) (where.push('seq > ?'), args.push(f.afterSeq));
    const order = f.afterSeq !== undefined ? 'ASC' : 'DESC';
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq ${order} LIMIT ?`;
    args.push(Math.min(Math.max(f.limit ?? 100, 1), 10_000));
    return (this.db.prepare(sql).all(...args) as AuditDbRow[]).map(toAudit);
  }

  *iterateAudit(): IterableIterator<AuditRow> {
    for (const r of this.db.prepare('SELECT * FROM audit ORDER BY seq ASC').iterate() as IterableIterator<AuditDbRow>) yield toAudit(r);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
