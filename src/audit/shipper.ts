/**
 * The audit shipper thread (`store.postgres`): copies this gateway's committed audit chain from
 * the local SQLite store, which stays the write-ahead journal, into PostgreSQL, where every
 * gateway's chain is kept (store/postgres/schema.ts). It runs off the gateway's event loop: the
 * gateway tells it nothing per record (not even "there is more"); the thread looks at the local
 * store's head every POLL_MS and ships what is new.
 *
 * Idempotent and in order: where to go on from is always PostgreSQL's own last seq for this node
 * (read again after any failure), and rows go in with `ON CONFLICT DO NOTHING`, one statement per
 * batch; so a crash or restart at any point neither loses nor doubles a row. Before going on, the
 * next local record must link to PostgreSQL's last one (its prevHash): a local store that no
 * longer agrees with what it shipped (restored from an older backup, say) stops the shipping with
 * an error instead of shipping a second, different chain under the same seqs.
 *
 * In:  { type: 'flush', id } — ship what the local store holds now, and answer;
 *      { type: 'close', withinMs } — ship what can be shipped within withinMs, then exit.
 * Out: { type: 'log', level, message }; { type: 'flushed', id, ok, message? };
 *      { type: 'closed', shipped, head }.
 * Shared (BigInt64Array over `shared`): [SHIPPED] PostgreSQL's last seq of this node (as far as
 * this thread knows), [HEAD] the local store's, [WAITING_SINCE] epoch ms since when records have
 * waited (0: none): the lag metrics read them without a message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import { SqliteStore } from '../store/sqlite.js';
import type { AuditRow } from '../store/types.js';
import { connectionConfig, describePostgres, ensureSchema, errorText, ident } from '../store/postgres/schema.js';
import { GENESIS_HASH } from './record.js';
import { HEAD, SHIPPED, WAITING_SINCE, type ShipperIn, type ShipperInit, type ShipperOut } from './shipping.js';

/** How often the local store's head is looked at while nothing waits. */
export const POLL_MS = 50;
/** Rows per INSERT at most, and bytes of record text (records with bodies run to ~130 KiB each). */
const BATCH_ROWS = 1000;
const BATCH_BYTES = 4 * 1024 * 1024;
/** Retries after a failure: from RETRY_MIN_MS, doubling to RETRY_MAX_MS. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;
/** Records waiting longer than this (PostgreSQL answering, but slowly) count as falling behind too. */
const BEHIND_AFTER_MS = 5000;
/** How often a stopped shipping (the stores disagree) looks again whether an operator has mended it. */
const DIVERGED_RECHECK_MS = 60_000;

interface Cursor {
  seq: number;
  hash: string;
  chainTs: string;
}

/** The local store and PostgreSQL hold different chains for this node: do not ship. */
class Diverged extends Error {}

class Shipper {
  private readonly local: SqliteStore;
  private readonly target: string;
  private readonly table: string;
  private readonly shared: BigInt64Array;
  private client: pg.Client | undefined;
  /** PostgreSQL's last row of this node; undefined until read on the current connection. */
  private cursor: Cursor | undefined;
  private retryMs = 0;
  /** The warning is out and the caught-up message is owed; since when. */
  private behindSince: number | undefined;
  private shippedWhileBehind = 0;
  private diverged: string | undefined;
  private announced = false;
  private readonly flushes: { id: number; upto: number }[] = [];
  /** Local heads as first seen, oldest first, past what is shipped (see localHead). */
  private sightings: { seq: number; at: number }[] = [];
  private wake: (() => void) | undefined;
  private closeBy: number | undefined;

  constructor(
    private readonly init: ShipperInit,
    private readonly post: (m: ShipperOut) => void,
  ) {
    this.local = new SqliteStore(init.dataDir, { readonly: true });
    this.target = `${describePostgres(init.url)} (schema ${init.schema})`;
    this.table = `${ident(init.schema)}.audit`;
    this.shared = new BigInt64Array(init.shared);
  }

  private log(level: 'info' | 'warn' | 'error', message: string): void {
    this.post({ type: 'log', level, message });
  }

  onMessage(m: ShipperIn): void {
    if (m.type === 'close') this.closeBy = Date.now() + m.withinMs;
    else {
      const upto = this.localHead();
      if (this.cursor && this.cursor.seq >= upto) this.post({ type: 'flushed', id: m.id, ok: true });
      else this.flushes.push({ id: m.id, upto });
    }
    this.retryMs = Math.min(this.retryMs, RETRY_MIN_MS); // someone waits: try again soon
    this.wake?.();
  }

  /**
   * The local store's head, noted with when it was first seen: the oldest record not shipped yet
   * has waited since the first sighting of a head at or past it.
   */
  private localHead(): number {
    const head = this.local.auditHead()?.seq ?? 0;
    Atomics.store(this.shared, HEAD, BigInt(head));
    const seen = this.sightings;
    if (head > (seen.at(-1)?.seq ?? this.cursor?.seq ?? 0)) {
      seen.push({ seq: head, at: Date.now() });
      // Bounded through a long outage: thin out the later ones (the first decides the age).
      if (seen.length > 1000) this.sightings = seen.filter((_, i) => i === 0 || i % 2 === 1);
      this.noteWaiting();
    }
    return head;
  }

  /** Drops sightings the shipped records cover, and publishes since when the oldest unshipped one waits. */
  private noteWaiting(): void {
    const shipped = this.cursor?.seq;
    if (shipped !== undefined) while (this.sightings.length > 0 && this.sightings[0]!.seq <= shipped) this.sightings.shift();
    Atomics.store(this.shared, WAITING_SINCE, BigInt(this.sightings[0]?.at ?? 0));
  }

  async run(): Promise<void> {
    for (;;) {
      let more = false;
      let failed = false;
      try {
        more = await this.step();
        this.retryMs = 0;
      } catch (e) {
        this.failed(e);
        failed = true;
      }
      // Stopping: one more try at once, then no waiting out retry delays (PostgreSQL is down: the
      // next start ships the rest). Caught up means with the local store as it is now: the
      // gateway committed its last records while the step above was under way.
      if (this.closeBy !== undefined && (failed || this.diverged || Date.now() >= this.closeBy || (this.cursor !== undefined && this.cursor.seq >= this.localHead()))) break;
      if (more) continue;
      const wait = this.diverged ? DIVERGED_RECHECK_MS : this.retryMs || POLL_MS;
      await new Promise<void>((r) => {
        const t = setTimeout(r, this.closeBy === undefined ? wait : Math.min(wait, Math.max(0, this.closeBy - Date.now())));
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = undefined;
    }
    const shipped = this.cursor?.seq ?? Number(Atomics.load(this.shared, SHIPPED));
    await this.client?.end().catch(() => {});
    this.local.close();
    this.post({ type: 'closed', shipped, head: Number(Atomics.load(this.shared, HEAD)) });
  }

  /** Ships one batch; true when more records wait. Throws on a failure (PostgreSQL's or the local store's). */
  private async step(): Promise<boolean> {
    const head = this.localHead();
    if (!this.client) await this.connect();
    if (this.diverged) {
      await this.checkAgreement(); // throws Diverged while it lasts
      this.log('info', `audit shipping to PostgreSQL ${this.target} resumes: the local store agrees with it again`);
      this.diverged = undefined;
    }
    const cursor = this.cursor!;
    if (cursor.seq >= head) {
      this.caughtUp();
      return false;
    }
    let rows = this.local.queryAudit({ afterSeq: cursor.seq, limit: BATCH_ROWS });
    let bytes = 0;
    const cut = rows.findIndex((r) => (bytes += r.record.length) > BATCH_BYTES);
    if (cut > 0) rows = rows.slice(0, cut);
    else if (cut === 0) rows = rows.slice(0, 1);
    const first = rows[0];
    if (!first) return false;
    if (first.seq !== cursor.seq + 1 || first.prevHash !== cursor.hash) throw new Diverged(`the local store's record #${first.seq} does not link to record #${cursor.seq} in PostgreSQL`);
    await this.insert(rows, cursor);
    const last = rows.at(-1)!;
    this.shippedWhileBehind += rows.length;
    this.noteWaiting();
    this.answerFlushes();
    const since = Number(Atomics.load(this.shared, WAITING_SINCE));
    if (since > 0 && Date.now() - since > BEHIND_AFTER_MS) this.fellBehind(`records have waited more than ${BEHIND_AFTER_MS / 1000} s (PostgreSQL takes them more slowly than the gateway writes them)`);
    return last.seq < head;
  }

  private async insert(rows: AuditRow[], cursor: Cursor): Promise<void> {
    // The batch goes as one JSON parameter: V8's JSON.stringify makes it ~4× faster than the
    // array literals of unnest(…) (pg escapes those character by character in JavaScript).
    const batch: object[] = [];
    let chainTs = cursor.chainTs;
    for (const r of rows) {
      if (r.ts > chainTs) chainTs = r.ts;
      batch.push({ seq: r.seq, id: r.id, ts: r.ts, phase: r.phase, agent: r.agent, protocol: r.protocol, decision: r.decision, record: r.record, prev_hash: r.prevHash, hash: r.hash, chain_ts: chainTs });
    }
    await this.client!.query(
      `INSERT INTO ${this.table} (node, seq, id, ts, phase, agent, protocol, decision, record, prev_hash, hash, chain_ts)
       SELECT $1, * FROM json_to_recordset($2::json) AS x(seq bigint, id text, ts text, phase text, agent text, protocol text, decision text, record text, prev_hash text, hash text, chain_ts text)
       ON CONFLICT (node, seq) DO NOTHING`,
      [this.init.node, JSON.stringify(batch)],
    );
    const last = rows.at(-1)!;
    this.cursor = { seq: last.seq, hash: last.hash, chainTs };
    Atomics.store(this.shared, SHIPPED, BigInt(last.seq));
  }

  /** Connects, creates the table if need be, and reads where this node's chain ends in PostgreSQL. */
  private async connect(): Promise<void> {
    const client = new pg.Client(connectionConfig(this.init.url, `airlock shipper ${this.init.node}`));
    client.on('error', () => {}); // a broken connection also fails the query in flight, which handles it
    try {
      await client.connect();
      await ensureSchema(client, this.init.schema);
      const r = await client.query<{ seq: string; hash: string; chain_ts: string }>(`SELECT seq, hash, chain_ts FROM ${this.table} WHERE node = $1 ORDER BY seq DESC LIMIT 1`, [this.init.node]);
      const row = r.rows[0];
      this.cursor = row ? { seq: Number(row.seq), hash: row.hash, chainTs: row.chain_ts } : { seq: 0, hash: GENESIS_HASH, chainTs: '' };
    } catch (e) {
      await client.end().catch(() => {});
      throw e;
    }
    this.client = client;
    Atomics.store(this.shared, SHIPPED, BigInt(this.cursor.seq));
    this.noteWaiting();
    if (!this.announced) this.log('info', `audit records are shipped to PostgreSQL ${this.target} as node ${this.init.node}; PostgreSQL has this node's records up to #${this.cursor.seq}`);
    this.announced = true;
    await this.checkAgreement();
  }

  /** PostgreSQL's last row of this node must be the local store's row of that seq. */
  private async checkAgreement(): Promise<void> {
    const c = this.cursor!;
    if (c.seq === 0) return;
    const mine = this.local.queryAudit({ afterSeq: c.seq - 1, limit: 1 })[0];
    if (mine?.seq === c.seq && mine.hash === c.hash) return;
    const head = this.local.auditHead()?.seq ?? 0;
    throw new Diverged(mine?.seq === c.seq ? `record #${c.seq} differs between the local store and PostgreSQL` : `PostgreSQL has this node's records up to #${c.seq} but the local store ends at #${head}`);
  }

  private failed(e: unknown): void {
    const client = this.client;
    this.client = undefined;
    this.cursor = undefined; // read again from PostgreSQL: the failed INSERT may or may not have landed
    void client?.end().catch(() => {});
    if (e instanceof Diverged) {
      if (!this.diverged) {
        this.log(
          'error',
          `audit shipping to PostgreSQL ${this.target} stopped: ${e.message} (the local store restored from an older backup, or records deleted from one of them?). New records stay in the local store only; \`airlock audit verify\` shows where the two differ. To ship as a new node, stop the gateway and remove its <data>/node-id`,
        );
      }
      this.diverged = e.message;
      this.rejectFlushes(e.message);
      return;
    }
    const message = errorText(e, this.init.url);
    this.retryMs = Math.min(Math.max(this.retryMs * 2, RETRY_MIN_MS), RETRY_MAX_MS);
    this.fellBehind(message);
    this.rejectFlushes(message);
  }

  private fellBehind(reason: string): void {
    if (this.behindSince !== undefined) return;
    this.behindSince = Date.now();
    this.shippedWhileBehind = 0;
    const waiting = Number(Atomics.load(this.shared, HEAD) - Atomics.load(this.shared, SHIPPED));
    this.log('warn', `audit records are not reaching PostgreSQL ${this.target}: ${reason}. The gateway goes on serving; the local store keeps every record (${waiting} not shipped yet) and they are shipped in order once PostgreSQL takes them (retried every ${RETRY_MAX_MS / 1000} s at most)`);
  }

  private caughtUp(): void {
    this.sightings = [];
    this.noteWaiting();
    this.answerFlushes();
    if (this.behindSince === undefined) return;
    const s = ((Date.now() - this.behindSince) / 1000).toFixed(1);
    this.log('warn', `audit shipping to PostgreSQL ${this.target} caught up: ${this.shippedWhileBehind} records shipped after ${s} s behind`);
    this.behindSince = undefined;
  }

  private answerFlushes(): void {
    const shipped = this.cursor?.seq ?? 0;
    for (let i = this.flushes.length - 1; i >= 0; i--) {
      const f = this.flushes[i]!;
      if (f.upto > shipped) continue;
      this.flushes.splice(i, 1);
      this.post({ type: 'flushed', id: f.id, ok: true });
    }
  }

  private rejectFlushes(message: string): void {
    for (const f of this.flushes.splice(0)) this.post({ type: 'flushed', id: f.id, ok: false, message });
  }
}

if (parentPort && (workerData as ShipperInit | undefined)?.node !== undefined) {
  const port = parentPort;
  const shipper = new Shipper(workerData as ShipperInit, (m) => port.postMessage(m));
  port.on('message', (m: ShipperIn) => shipper.onMessage(m));
  void shipper.run().finally(() => port.close());
}
