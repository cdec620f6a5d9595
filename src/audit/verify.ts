/**
 * Recomputes the audit chain of a store and reports the first broken link; and checks the store's
 * end against audit.jsonl's, which is kept apart from the store (and often shipped off the host):
 * records deleted from the store's end, or the last one rewritten with a hash to match, leave a
 * chain that is whole by itself.
 */
import type { AuditRow, Store } from '../store/types.js';
import type { ChainHead } from './chain.js';
import { chainHash, GENESIS_HASH } from './record.js';

export interface VerifyResult {
  ok: boolean;
  records: number;
  /** The first broken link, when not ok. */
  broken?: { seq: number; id: string; problem: string };
  /** The store does not reach, or does not match, audit.jsonl's last record (`seq`). */
  mirror?: { seq: number; problem: string };
  head?: string;
}

/** What is wrong with `row` as the link after (`prevSeq`, `prevHash`), or undefined when it holds. */
export function checkLink(row: AuditRow, prevSeq: number, prevHash: string): string | undefined {
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

/**
 * Walks every record in order. `mirrored`: audit.jsonl's last record, read before the store (the
 * mirror is written after the store commits, so then the store holds everything it has; it may
 * lag the store, which is fine).
 */
export function verifyChain(store: Store, mirrored?: ChainHead): VerifyResult {
  let prevSeq = 0;
  let prevHash = GENESIS_HASH;
  let n = 0;
  let hashAtMirrored: string | undefined;
  for (const row of store.iterateAudit()) {
    const problem = checkLink(row, prevSeq, prevHash);
    if (problem) return { ok: false, records: n, broken: { seq: row.seq, id: row.id, problem } };
    prevSeq = row.seq;
    prevHash = row.hash;
    if (row.seq === mirrored?.seq) hashAtMirrored = row.hash;
    n++;
  }
  if (mirrored && mirrored.seq > prevSeq) {
    const problem = prevSeq === 0 ? `the store has no records but audit.jsonl has records up to ${mirrored.seq}` : `the store ends at seq ${prevSeq} but audit.jsonl has records up to ${mirrored.seq}`;
    return { ok: false, records: n, mirror: { seq: mirrored.seq, problem } };
  }
  if (mirrored && hashAtMirrored !== mirrored.hash) {
    return { ok: false, records: n, mirror: { seq: mirrored.seq, problem: `record ${mirrored.seq} differs between the store and audit.jsonl` } };
  }
  return { ok: true, records: n, head: prevHash };
}
