/**
 * Appending to the hash chain: canonical records (one per line) are chained from a given head,
 * stored in one transaction and mirrored to `audit.jsonl`. The same code runs on the gateway's
 * event loop (small batches, no thread hop) and in the audit writer thread (busy periods); see
 * `log.ts` for which does what, and why only one of them writes at a time.
 */
import { appendFileSync, closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import type { AuditRow, Store } from '../store/types.js';
import { chainHash, type AuditRecord } from './record.js';

/** The last record of the chain: where the next one links. */
export interface ChainHead {
  seq: number;
  hash: string;
}

/** The mirror buffer's usual size: 20 ms of records at tens of thousands of exchanges a second. */
const MIRROR_BUFFER_BYTES = 1 << 20;

export class ChainWriter {
  private jsonl: number | undefined;
  /**
   * Mirror lines of committed records not yet written (see `append`'s `mirrorLater`), as UTF-8 in
   * a reused buffer, outside the JavaScript heap. Kept as strings for the up to 20 ms they wait
   * (MIRROR_DELAY_MS in log.ts), they were live at young-generation collections and copied by them
   * (interleaved A/B at c=50: ~3% more requests a second with the buffer, and less GC time).
   */
  private unmirrored = Buffer.allocUnsafe(MIRROR_BUFFER_BYTES);
  private unmirroredBytes = 0;

  constructor(
    private readonly store: Store,
    jsonlPath: string | undefined,
    private readonly warn: (message: string) => void,
  ) {
    if (!jsonlPath) return;
    try {
      this.jsonl = openSync(jsonlPath, 'a', 0o600);
    } catch (e) {
      warn(`audit.jsonl cannot be opened; records go to the store only: ${String(e)}`);
    }
  }

  /**
   * Chains `texts` (canonical records) after `head`, stores them in one transaction and mirrors
   * them; returns the new head. Throws (nothing stored, nothing mirrored) when the store refuses.
   * `records`, when the caller has them, are the parsed `texts` (saves parsing them again).
   * `mirrorLater`: keep the mirror lines for `writeMirror()` rather than write them now, so the
   * write is off a waiting call's path (the store already has the records: a crash before the
   * write is caught up from the store at the next start).
   */
  append(texts: readonly string[], head: ChainHead, records?: readonly AuditRecord[], mirrorLater = false): ChainHead {
    const rows: AuditRow[] = [];
    let { seq, hash } = head;
    for (let i = 0; i < texts.length; i++) {
      const record = texts[i]!;
      // The indexed columns come from the record itself.
      const r = records?.[i] ?? (JSON.parse(record) as Pick<AuditRecord, 'id' | 'ts' | 'phase' | 'agent' | 'protocol' | 'decision'>);
      const prevHash = hash;
      hash = chainHash(prevHash, record);
      seq += 1;
      rows.push({ seq, id: r.id, ts: r.ts, phase: r.phase, agent: r.agent, protocol: r.protocol, decision: r.decision, record, prevHash, hash });
    }
    this.store.appendAudit(rows);
    if (this.jsonl !== undefined) {
      for (const r of rows) this.keepMirrorLine(mirrorLine(r));
      if (!mirrorLater) this.writeMirror();
    }
    return { seq, hash };
  }

  private keepMirrorLine(line: string): void {
    const most = line.length * 3; // UTF-8 bytes of a JS string, at most
    if (this.unmirroredBytes + most > this.unmirrored.length) {
      this.writeMirror();
      if (most > this.unmirrored.length) this.unmirrored = Buffer.allocUnsafe(most); // one huge record
    }
    this.unmirroredBytes += this.unmirrored.write(line, this.unmirroredBytes);
  }

  /** Writes the mirror lines kept back by `append(…, mirrorLater)`. */
  writeMirror(): void {
    if (this.jsonl === undefined || this.unmirroredBytes === 0) return;
    const bytes = this.unmirrored.subarray(0, this.unmirroredBytes);
    this.unmirroredBytes = 0;
    try {
      writeAll(this.jsonl, bytes);
    } catch (e) {
      this.warn(`audit.jsonl write failed: ${String(e)}`);
    }
    if (this.unmirrored.length > MIRROR_BUFFER_BYTES) this.unmirrored = Buffer.allocUnsafe(MIRROR_BUFFER_BYTES);
  }

  close(): void {
    this.writeMirror();
    if (this.jsonl !== undefined) closeSync(this.jsonl);
    this.jsonl = undefined;
  }
}

/** Writes all of `buf`, however many write calls that takes. */
function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
}

/** One record as a line of audit.jsonl: the record plus its place in the chain. */
function mirrorLine(r: AuditRow): string {
  return `${r.record.slice(0, -1)},"seq":${r.seq},"prevHash":"${r.prevHash}","hash":"${r.hash}"}\n`;
}

/**
 * The mirror is written after the store commits, so a crash (kill -9) between the two can leave it
 * behind the store, or end it in a torn line. SIEM shippers read only the mirror, so at open
 * a torn last line is cut off and the records the mirror lacks are copied from the store. Only when
 * the file already holds records: an empty or missing file (first start, or rotated away) starts
 * fresh rather than replaying all history.
 */
export function catchUpMirror(store: Store, path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  let lastSeq: number | undefined;
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return;
    const n = Math.min(size, 1024 * 1024);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    const end = buf.lastIndexOf(0x0a) + 1; // bytes up to and including the last newline
    if (end === 0 && size > n) return; // one line longer than the window: leave it alone
    // A torn last line was never a complete record (shippers wait for its newline): drop it.
    if (end < n) ftruncateSync(fd, size - (n - end));
    const lines = buf.subarray(0, end).toString('utf8').split('\n');
    for (let i = lines.length - 1; i >= 0 && lastSeq === undefined; i--) {
      try {
        const seq = (JSON.parse(lines[i]!) as { seq?: unknown }).seq;
        if (typeof seq === 'number') lastSeq = seq;
      } catch {
        // not a complete record; look further back
      }
    }
  } finally {
    closeSync(fd);
  }
  if (lastSeq === undefined) return;
  for (;;) {
    const rows = store.queryAudit({ afterSeq: lastSeq, limit: 10_000 });
    if (rows.length === 0) return;
    appendFileSync(path, rows.map(mirrorLine).join(''));
    lastSeq = rows.at(-1)!.seq;
  }
}
