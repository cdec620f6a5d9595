/**
 * Appending to the hash chain: canonical records (one per line) are chained from a given head,
 * stored in one transaction and mirrored to `audit.jsonl`. The same code runs on the gateway's
 * event loop (small batches, no thread hop) and in the audit writer thread (busy periods); see
 * `log.ts` for which does what, and why only one of them writes at a time.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
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
  /** The seqs of the first and last record whose lines wait in `unmirrored`. */
  private firstWaiting = 0;
  private lastWaiting = 0;
  /**
   * The seq of the last record audit.jsonl holds. Behind the records written here when a write
   * failed: the next write copies the missing ones in from the store first. The event loop's
   * writer and the writer thread's take turns at the file (log.ts), so whoever hands the turn over
   * hands this over too (the batch message and its answer carry it); `catchUp` reads it from the file.
   */
  mirrored = 0;

  constructor(
    private readonly store: Store,
    private readonly jsonlPath: string | undefined,
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
      for (const r of rows) this.keepMirrorLine(mirrorLine(r), r.seq);
      if (!mirrorLater) this.writeMirror();
    }
    return { seq, hash };
  }

  private keepMirrorLine(line: string, seq: number): void {
    const most = line.length * 3; // UTF-8 bytes of a JS string, at most
    if (this.unmirroredBytes + most > this.unmirrored.length) {
      this.writeMirror();
      if (most > this.unmirrored.length) this.unmirrored = Buffer.allocUnsafe(most); // one huge record
    }
    if (this.unmirroredBytes === 0) this.firstWaiting = seq;
    this.lastWaiting = seq;
    this.unmirroredBytes += this.unmirrored.write(line, this.unmirroredBytes);
  }

  /**
   * Writes the mirror lines kept back by `append(…, mirrorLater)`, after the records an earlier
   * failed write left out. Call only while this writer has the turn (see log.ts).
   */
  writeMirror(): void {
    if (this.jsonl === undefined || this.unmirroredBytes === 0) return;
    const bytes = this.unmirrored.subarray(0, this.unmirroredBytes);
    this.unmirroredBytes = 0;
    // Lines that failed are not kept: the store has them, and the copy keeps the file in chain order.
    // (The file has these already only if a catch-up copied them in.)
    if (this.mirrored < this.lastWaiting && this.copyFromStore(this.firstWaiting - 1) && this.write(bytes)) this.mirrored = this.lastWaiting;
    if (this.unmirrored.length > MIRROR_BUFFER_BYTES) this.unmirrored = Buffer.allocUnsafe(MIRROR_BUFFER_BYTES);
  }

  /**
   * Finds where audit.jsonl ends (cutting off a torn last line), then writes what waits and copies
   * in what the store has past it, up to `upto`: at start, and after the writer thread died (it may
   * have died between its commit and its write, or in the middle of the write). Only when the file
   * already holds records: an empty or missing file (first start, or rotated away) starts fresh
   * rather than replaying all history. Call only while this writer has the turn.
   */
  catchUp(upto: number): void {
    if (this.jsonlPath === undefined || this.jsonl === undefined) return;
    let end: number | undefined;
    try {
      end = mirrorEnd(this.jsonlPath);
    } catch (e) {
      this.warn(`audit.jsonl cannot be read to catch it up: ${String(e)}`);
    }
    if (end !== undefined && end > upto) {
      // The store ends before the mirror (restored from a backup, or its newest rows deleted):
      // new records follow the store's chain; `audit verify` reports the difference.
      this.warn(`audit.jsonl has records up to seq ${end} but the store ends at ${upto}; new records are appended after them`);
      end = upto;
    }
    this.mirrored = end ?? (this.unmirroredBytes > 0 ? this.firstWaiting - 1 : upto);
    this.writeMirror();
    this.copyFromStore(upto);
  }

  /** Writes what waits (and what a failed write left out, up to `upto`), and closes the file. */
  close(upto = this.mirrored): void {
    this.writeMirror();
    this.copyFromStore(upto);
    if (this.jsonl !== undefined) closeSync(this.jsonl);
    this.jsonl = undefined;
  }

  /** Copies the records after `mirrored` up to `upto` from the store into the file; false if that failed. */
  private copyFromStore(upto: number): boolean {
    while (this.mirrored < upto && this.jsonl !== undefined) {
      let rows: AuditRow[];
      try {
        rows = this.store.queryAudit({ afterSeq: this.mirrored, limit: Math.min(upto - this.mirrored, 10_000) }).filter((r) => r.seq <= upto);
      } catch (e) {
        this.warn(`audit.jsonl cannot be caught up from the store: ${String(e)}`);
        return false;
      }
      if (rows.length === 0) {
        this.mirrored = upto; // not in the store either: nothing to copy
        break;
      }
      if (!this.write(Buffer.from(rows.map(mirrorLine).join('')))) return false;
      this.mirrored = rows.at(-1)!.seq;
    }
    return true;
  }

  /**
   * Appends `bytes`, whole or not at all. A write can fail part-way (a full disk, a file-size
   * limit): the part that landed is cut off again, or the next line written would run into it
   * and neither would parse. Only one writer writes at a time, so those are the file's last bytes.
   */
  private write(bytes: Buffer): boolean {
    const fd = this.jsonl!;
    let written = 0;
    try {
      while (written < bytes.length) written += writeSync(fd, bytes, written);
      return true;
    } catch (e) {
      this.warn(`audit.jsonl write failed (the store has the records; they are copied in at the next write): ${String(e)}`);
      if (written > 0) {
        try {
          ftruncateSync(fd, fstatSync(fd).size - written);
        } catch (e2) {
          this.warn(`audit.jsonl: a partly written line could not be cut off: ${String(e2)}`);
        }
      }
      return false;
    }
  }
}

/** One record as a line of audit.jsonl: the record plus its place in the chain. */
function mirrorLine(r: AuditRow): string {
  return `${r.record.slice(0, -1)},"seq":${r.seq},"prevHash":"${r.prevHash}","hash":"${r.hash}"}\n`;
}

/**
 * The seq of audit.jsonl's last complete record, or undefined when the file is missing, empty, or
 * ends in something else. The mirror is written after the store commits, so a crash (kill -9)
 * between the two can leave it behind the store, or end it in a torn line: a torn last line was
 * never a complete record (shippers wait for its newline), and is cut off here.
 */
function mirrorEnd(path: string): number | undefined {
  return lastMirrored(path, true)?.seq;
}

/**
 * The place in the chain (seq and hash) of audit.jsonl's last complete record, or undefined when
 * the file is missing, empty, or ends in something else (read from its last megabyte).
 * `cutTorn`: cut off a torn last line (the gateway, before it appends); without it the file is
 * only read (`audit verify`).
 */
export function lastMirrored(path: string, cutTorn = false): ChainHead | undefined {
  let fd: number;
  try {
    fd = openSync(path, cutTorn ? 'r+' : 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return undefined;
    const n = Math.min(size, 1024 * 1024);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    const end = buf.lastIndexOf(0x0a) + 1; // bytes up to and including the last newline
    if (end === 0 && size > n) return undefined; // one line longer than the window: leave it alone
    if (end < n && cutTorn) ftruncateSync(fd, size - (n - end));
    const lines = buf.subarray(0, end).toString('utf8').split('\n');
    for (let i = lines.length - 1; i >= 0; i--) {
      if (!lines[i]!.startsWith('{')) continue; // not a record (a blank line, say): no parse, no throw
      try {
        const { seq, hash } = JSON.parse(lines[i]!) as { seq?: unknown; hash?: unknown };
        if (typeof seq === 'number' && typeof hash === 'string') return { seq, hash };
      } catch {
        // not a complete record; look further back
      }
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}
