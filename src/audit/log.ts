/**
 * The write-ahead, hash-chained audit log, as the gateway's event loop sees it.
 *
 * Records appended within one event-loop turn form a batch, stored in one SQLite transaction and
 * mirrored to `<data>/audit.jsonl`. `append` returns a promise that settles when the batch is
 * committed, so a caller that must not forward before its decision is durable awaits it, and
 * others don't. Committed final records are published on the event bus.
 *
 * Who commits depends on the batch's size:
 * - a batch of up to INLINE_MAX records (one event-loop turn's worth, up to a few thousand calls a
 *   second) is committed right here, synchronously: ~30 µs plus a few µs a record. Handing it to a
 *   thread and back costs two thread wake-ups instead, which on a VM is the dearer part: ~90 µs
 *   added to a call's latency at one connection, and 100–330 µs of the event loop's own time per
 *   `postMessage` at 50 (measured on a 2-vCPU VM; interleaved A/B at c=50, inline up to 64
 *   records against up to 2: 15% less CPU per request, ~3% more requests per second);
 * - a bigger batch (a burst, or records that gathered while the store was locked) goes to the
 *   audit writer thread (`writer.ts`), so that one long commit does not stall the event loop;
 *   records appended while that batch is out gather into the next one (group commit).
 * The writer thread also does the WAL checkpoints and fills the audit index tables.
 * At most one batch is ever being written, by one side or the other, and the chain head travels
 * with it; so the chain has one order and audit.jsonl the same order.
 *
 * The synchronous commit never waits for a lock: if another process holds the store's write lock
 * it fails at once and the batch goes to the writer thread, which waits (up to its busy timeout)
 * without holding up the gateway.
 */
import { Worker } from 'node:worker_threads';
import type { EventBus } from '../events/bus.js';
import { SqliteStore } from '../store/sqlite.js';
import { ChainWriter, type ChainHead } from './chain.js';
import { canonicalRecord, GENESIS_HASH, type AuditRecord } from './record.js';
import type { WriterIn, WriterInit, WriterOut } from './writer.js';

interface Batch {
  /** The records' canonical texts, in chain order. */
  texts: string[];
  records: AuditRecord[];
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
  /** The delayed send of a batch holding only outcome records. */
  timer: NodeJS.Timeout | undefined;
  /** Holds a decision record: sent at the end of the turn. */
  urgent: boolean;
}

export interface AuditLogOptions {
  jsonlPath?: string | undefined;
  onError?: (e: unknown) => void;
  onWarn?: (message: string) => void;
  /** Hears of every committed batch's records (the cluster's exchange feed). */
  onCommitted?: ((records: readonly AuditRecord[]) => void) | undefined;
}

const WRITER_URL = new URL('./writer.js', import.meta.url);
/** How long to wait before replacing a writer thread that died (doubling up to 30 s while it keeps dying). */
const RESPAWN_DELAY_MS = 200;
const RESPAWN_MAX_MS = 30_000;
/** How long outcome records of a batch the store refused wait before they are tried again. */
const RETRY_DELAY_MS = 1000;
/** At most this many refused outcome records are kept for another try; past it the oldest are dropped (and counted in the log). */
const RETAIN_MAX = 10_000;
/** How long outcome records wait for a decision record to share a commit with. */
const FINAL_DELAY_MS = 5;
/**
 * How long the audit.jsonl lines of inline commits wait, so that one write carries many commits
 * (a write per commit was ~4% of the event loop at c=50). The store has the records already; a
 * crash before the write is caught up from the store at the next start.
 */
const MIRROR_DELAY_MS = 20;
/** Batches up to this many records are committed on the event loop; bigger ones by the writer thread. */
const INLINE_MAX = 64;

export class AuditLog {
  private readonly store: SqliteStore;
  private readonly inline: ChainWriter;
  private head: ChainHead;
  private worker: Worker | undefined;
  private ready!: Promise<void>;
  /** True while a writer thread has opened the store and takes batches; until then, and between its death and its replacement, every batch is written here. */
  private alive = false;
  /** The batch being filled. */
  private batch: Batch | undefined;
  /** The batch the writer thread is committing. */
  private out: Batch | undefined;
  private lastCommitAt = 0;
  private mirrorScheduled = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private respawnDelayMs = RESPAWN_DELAY_MS;

  constructor(
    private readonly dataDir: string,
    private readonly bus: EventBus,
    private readonly opts: AuditLogOptions = {},
  ) {
    const warn = (m: string) => opts.onWarn?.(m);
    this.store = new SqliteStore(dataDir, { busyTimeoutMs: 0, autoCheckpoint: false });
    const h = this.store.auditHead();
    this.head = h ?? { seq: 0, hash: GENESIS_HASH };
    this.inline = new ChainWriter(this.store, opts.jsonlPath, warn);
    this.inline.catchUp(this.head.seq);
    this.spawn();
  }

  /** Resolves once the writer thread has opened the store. */
  opened(): Promise<void> {
    return this.ready;
  }

  /** The seq of the chain's last committed record. */
  get headSeq(): number {
    return this.head.seq;
  }

  /** Seconds since a batch was last committed while records wait; 0 when nothing waits. */
  get lagSeconds(): number {
    return this.batch || this.out ? (Date.now() - this.lastCommitAt) / 1000 : 0;
  }

  /** Appends a record to the chain; the promise settles when it is durable. */
  append(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error('audit log is closed'));
    const b = this.batch ?? this.newBatch();
    b.texts.push(canonicalRecord(record));
    b.records.push(record);
    if (record.phase === 'decision') {
      // A call waits for this record: write the batch at the end of this turn.
      if (!b.urgent) {
        b.urgent = true;
        if (b.timer) clearTimeout(b.timer);
        setImmediate(() => this.flush());
      }
    } else if (!b.urgent && !b.timer) {
      // Nobody waits for an outcome record: it rides with the next decision record, or goes after
      // FINAL_DELAY_MS. One commit per exchange instead of two.
      b.timer = setTimeout(() => this.flush(), FINAL_DELAY_MS);
    }
    return b.promise;
  }

  private newBatch(): Batch {
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => {}); // callers that do not await must not see an unhandled rejection
    if (!this.out) this.lastCommitAt = Date.now();
    return (this.batch = { texts: [], records: [], promise, resolve, reject, timer: undefined, urgent: false });
  }

  /** Writes what waits, now (or as soon as the batch being written is done). */
  flush(): void {
    const b = this.batch;
    if (!b || this.out || this.closed) return;
    this.batch = undefined;
    if (b.timer) clearTimeout(b.timer);
    if (b.texts.length <= INLINE_MAX || !this.alive) {
      try {
        this.head = this.inline.append(b.texts, this.head, b.records, true);
        this.mirrorSoon();
        return this.committed(b);
      } catch (e) {
        // Most often another process holds the write lock: the writer thread can wait for it.
        if (!this.alive) return this.failed(b, e);
      }
    }
    this.inline.writeMirror(); // audit.jsonl keeps chain order: what was committed here goes first
    this.out = b;
    // One string crosses to the thread more cheaply than an array of them (canonical JSON has no raw newline).
    this.worker!.postMessage({ type: 'batch', lines: b.texts.join('\n'), head: this.head, mirrored: this.inline.mirrored } satisfies WriterIn);
  }

  /** The mirror write of inline commits: after the calls they let through, and one for many (MIRROR_DELAY_MS). */
  private mirrorSoon(): void {
    if (this.mirrorScheduled) return;
    this.mirrorScheduled = true;
    setTimeout(() => {
      this.mirrorScheduled = false;
      this.inline.writeMirror();
    }, MIRROR_DELAY_MS).unref();
  }

  /** Resolves when every record appended so far is committed (or has failed): read-your-writes for queries. */
  async settled(): Promise<void> {
    const last = this.batch ?? this.out;
    this.flush();
    if (last) await last.promise.catch(() => {});
    this.inline.writeMirror(); // and what a query can see, audit.jsonl has too
  }

  /** Commits what waits, then stops the writer thread. The same promise for every caller. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // Records can still arrive while earlier ones are written (an outcome after its call ended, a
    // refusal after a failed commit): settle until nothing waits, a few rounds at most when the
    // store keeps refusing.
    for (let round = 0; (this.batch || this.out) && round < 5; round++) await this.settled();
    if (this.batch) this.opts.onError?.(new Error(`${this.batch.texts.length} audit record(s) could not be stored before shutdown`));
    this.closed = true;
    const w = this.worker;
    if (w && this.alive) {
      const exited = new Promise<void>((r) => w.once('exit', () => r()));
      w.postMessage({ type: 'close' } satisfies WriterIn);
      await exited;
    } else if (w) {
      await w.terminate(); // still starting (or already gone): it holds nothing to commit
    }
    this.inline.close(this.head.seq);
    this.store.close();
  }

  private spawn(): void {
    const init: WriterInit = { dataDir: this.dataDir, jsonlPath: this.opts.jsonlPath };
    let worker: Worker;
    try {
      worker = new Worker(WRITER_URL, { workerData: init });
    } catch (e) {
      this.opts.onError?.(e);
      this.ready = Promise.resolve();
      return this.respawnLater();
    }
    this.worker = worker;
    // Batches go to the thread only once it has opened the store; until then they commit here.
    this.ready = new Promise<void>((resolve) => {
      worker.on('message', (m: WriterOut) => {
        if (m.type === 'committed') {
          this.inline.mirrored = m.mirrored; // the file's turn comes back with the batch
          this.outDone(m.head, undefined);
        } else if (m.type === 'failed') this.outDone(undefined, new Error(m.message));
        else if (m.type === 'warn') this.opts.onWarn?.(m.message);
        else if (m.type === 'ready') {
          this.alive = true;
          this.respawnDelayMs = RESPAWN_DELAY_MS;
          resolve();
        }
      });
      worker.once('exit', () => resolve()); // a writer that died during start is replaced below; do not hang
    });
    worker.on('error', (e) => this.opts.onError?.(e));
    worker.once('exit', (code) => {
      this.alive = false;
      if (this.closed) return;
      // The writer died: the batch it held may or may not be stored, and the store says which. If
      // not, its callers are told no (their calls are refused: write-ahead). Either way the chain
      // resumes from what the store holds.
      const err = new Error(`the audit writer thread stopped (exit code ${code})`);
      this.opts.onError?.(err);
      const sent = this.head; // what its batch was chained to: nothing else writes while it holds one
      try {
        this.head = this.store.auditHead() ?? { seq: 0, hash: GENESIS_HASH };
        // It may have died between its commit and its mirror write, or during the write: fill
        // audit.jsonl in from the store. Lines of inline commits still waiting for their write go
        // first (they are the newest: an inline commit never happens while the thread holds a batch).
        this.inline.catchUp(this.head.seq);
      } catch (e) {
        this.opts.onError?.(e); // the next commit fails as well, and is refused; nothing to add here
      }
      if (this.out) {
        const b = this.out;
        this.out = undefined;
        // Died after its commit but before its answer: the batch is stored (and mirrored by the
        // catch-up above), and must not be written again, or its outcome records would count
        // twice in usage sums and budgets.
        if (this.isStored(b, sent)) this.committed(b);
        else this.failed(b, err);
      }
      if (this.batch?.urgent) this.flush();
      this.respawnLater();
    });
  }

  private respawnLater(): void {
    const delay = this.respawnDelayMs;
    this.respawnDelayMs = Math.min(delay * 2, RESPAWN_MAX_MS);
    setTimeout(() => {
      if (!this.closed && !this.alive) this.spawn();
    }, delay).unref();
  }

  private outDone(head: ChainHead | undefined, err: Error | undefined): void {
    const b = this.out;
    if (!b) return;
    this.out = undefined;
    if (head) {
      this.head = head;
      this.committed(b);
      this.flush(); // records that gathered meanwhile
    } else {
      this.failed(b, err);
      // Calls waiting for a decision record are tried at once; outcome records wait for their retry.
      if (this.batch?.urgent) this.flush();
    }
  }

  /** Whether the store's head is `b`'s last record, chained after `sent`: the writer thread committed `b`. */
  private isStored(b: Batch, sent: ChainHead): boolean {
    if (this.head.seq !== sent.seq + b.texts.length) return false;
    try {
      return this.store.queryAudit({ afterSeq: this.head.seq - 1, limit: 1 })[0]?.record === b.texts.at(-1);
    } catch {
      return false; // the store cannot say: refused, as before
    }
  }

  private committed(b: Batch): void {
    this.lastCommitAt = Date.now();
    b.resolve();
    this.opts.onCommitted?.(b.records);
    if (this.bus.size > 0) for (const rec of b.records) if (rec.phase === 'final') this.bus.emit('exchange', rec);
  }

  /**
   * A batch the store refused: calls waiting for a decision record in it are refused (write-ahead);
   * its outcome records (of calls that did happen, or were refused) are kept and tried again, ahead
   * of what was appended since, so that the store's trouble loses no record of what was done.
   */
  private failed(b: Batch, e: unknown): void {
    this.opts.onError?.(e);
    b.reject(e);
    const keptTexts: string[] = [];
    const kept: AuditRecord[] = [];
    b.records.forEach((r, i) => {
      if (r.phase !== 'final') return;
      keptTexts.push(b.texts[i]!);
      kept.push(r);
    });
    if (kept.length === 0) return;
    const next = this.batch ?? this.newBatch();
    next.texts.unshift(...keptTexts);
    next.records.unshift(...kept);
    if (next.texts.length > RETAIN_MAX && !next.urgent) {
      const drop = next.texts.length - RETAIN_MAX;
      next.texts.splice(0, drop);
      next.records.splice(0, drop);
      this.opts.onError?.(new Error(`${drop} audit outcome record(s) dropped: the store has refused writes for too long`));
    }
    if (!next.urgent) {
      if (next.timer) clearTimeout(next.timer);
      next.timer = setTimeout(() => this.flush(), RETRY_DELAY_MS);
    }
  }
}
