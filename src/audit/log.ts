/**
 * The write-ahead, hash-chained audit log. Records appended within one event-loop turn are written
 * in one SQLite transaction; `append` returns a promise that settles when that transaction has
 * committed, so a caller that must not forward before its decision is durable awaits it, and others
 * don't. Each committed record is mirrored as a JSON line to `<data>/audit.jsonl` and published on
 * the event bus.
 */
import { appendFileSync, closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import type { EventBus } from '../events/bus.js';
import type { AuditRow, Store } from '../store/types.js';
import { canonical, chainHash, GENESIS_HASH, type AuditRecord } from './record.js';

interface Batch {
  rows: AuditRow[];
  records: AuditRecord[];
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export interface AuditLogOptions {
  jsonlPath?: string | undefined;
  onError?: (e: unknown) => void;
}

export class AuditLog {
  private seq: number;
  private hash: string;
  private batch: Batch | undefined;
  /** The JSONL mirror's file descriptor (append mode), when the mirror is on and could be opened. */
  private jsonl: number | undefined;
  private lastWriteAt = 0;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly bus: EventBus,
    private readonly opts: AuditLogOptions = {},
  ) {
    const head = store.auditHead();
    this.seq = head?.seq ?? 0;
    this.hash = head?.hash ?? GENESIS_HASH;
    if (opts.jsonlPath) {
      try {
        catchUpMirror(store, opts.jsonlPath);
      } catch (e) {
        opts.onError?.(e);
      }
    }
    if (opts.jsonlPath) {
      try {
        this.jsonl = openSync(opts.jsonlPath, 'a', 0o600);
      } catch (e) {
        opts.onError?.(e);
      }
    }
  }

  /** Seconds since a record was last committed while records wait; 0 when nothing waits. */
  get lagSeconds(): number {
    return this.batch ? (Date.now() - this.lastWriteAt) / 1000 : 0;
  }

  /** Appends a record to the chain; the promise settles when it is durable. */
  append(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error('audit log is closed'));
    const text = canonical(record);
    const prevHash = this.hash;
    const hash = chainHash(prevHash, text);
    this.seq += 1;
    this.hash = hash;
    const row: AuditRow = {
      seq: this.seq,
      id: record.id,
      ts: record.ts,
      phase: record.phase,
      agent: record.agent,
      protocol: record.protocol,
      decision: record.decision,
      record: text,
      prevHash,
      hash,
    };
    let b = this.batch;
    if (!b) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      promise.catch(() => {}); // callers that do not await must not see an unhandled rejection
      b = this.batch = { rows: [], records: [], promise, resolve, reject };
      if (this.lastWriteAt === 0) this.lastWriteAt = Date.now();
      setImmediate(() => this.flush());
    }
    b.rows.push(row);
    b.records.push(record);
    return b.promise;
  }

  /** Writes what waits, now. */
  flush(): void {
    const b = this.batch;
    if (!b) return;
    this.batch = undefined;
    try {
      this.store.appendAudit(b.rows);
    } catch (e) {
      // The chain in memory ran ahead of the store: re-read the head so later records link to what was stored.
      const head = this.store.auditHead();
      this.seq = head?.seq ?? 0;
      this.hash = head?.hash ?? GENESIS_HASH;
      this.opts.onError?.(e);
      b.reject(e);
      return;
    }
    this.lastWriteAt = Date.now();
    b.resolve();
    if (this.jsonl !== undefined) {
      let lines = '';
      for (const r of b.rows) lines += mirrorLine(r);
      // A synchronous append, right after the commit it mirrors. A WriteStream cost a thread-pool
      // round trip per batch (measured: ~50 µs of CPU per exchange at c=1, two batches each), and
      // this write lands in the page cache as the SQLite commit just before it did.
      try {
        writeAll(this.jsonl, lines);
      } catch (e) {
        this.opts.onError?.(e);
      }
    }
    if (this.bus.size > 0) for (const rec of b.records) if (rec.phase === 'final') this.bus.emit('exchange', rec);
  }

  /** Flushes and closes the JSONL mirror. */
  async close(): Promise<void> {
    this.flush();
    this.closed = true;
    if (this.jsonl !== undefined) closeSync(this.jsonl);
    this.jsonl = undefined;
  }
}

/** Writes all of `text`, however many write calls that takes. */
function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text);
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
function catchUpMirror(store: Store, path: string): void {
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
