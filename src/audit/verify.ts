/** Recomputes the audit chain of a store and reports the first broken link. */
import type { AuditRow, Store } from '../store/types.js';
import { chainHash, GENESIS_HASH } from './record.js';

export interface VerifyResult {
  ok: boolean;
  records: number;
  /** The first broken link, when not ok. */
  broken?: { seq: number; id: string; problem: string };
  head?: string;
}

function check(row: AuditRow, prevSeq: number, prevHash: string): string | undefined {
  if (row.seq !== prevSeq + 1) return `expected record #${prevSeq + 1} next, found #${row.seq}: ${row.seq - prevSeq - 1} record(s) missing`;
  if (row.prevHash !== prevHash) return 'its prevHash does not match the hash of the record before it';
  if (chainHash(row.prevHash, row.record) !== row.hash) return 'its content does not match its hash (the record was altered)';
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(row.record) as Record<string, unknown>;
  } catch {
    return 'its record is not valid JSON';
  }
  for (const [col, val] of [['id', row.id], ['ts', row.ts], ['phase', row.phase], ['agent', row.agent], ['protocol', row.protocol], ['decision', row.decision]] as const) {
    if ((rec[col] ?? null) !== val) return `its ${col} column does not match the hashed record (the column was altered)`;
  }
  return undefined;
}

/** Walks every record in order. */
export function verifyChain(store: Store): VerifyResult {
  let prevSeq = 0;
  let prevHash = GENESIS_HASH;
  let n = 0;
  for (const row of store.iterateAudit()) {
    const problem = check(row, prevSeq, prevHash);
    if (problem) return { ok: false, records: n, broken: { seq: row.seq, id: row.id, problem } };
    prevSeq = row.seq;
    prevHash = row.hash;
    n++;
  }
  return { ok: true, records: n, head: prevHash };
}
