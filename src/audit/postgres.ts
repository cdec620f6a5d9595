/**
 * `store.postgres` as the running gateway sees it: the shipper thread that copies this gateway's
 * audit chain into PostgreSQL (`shipper.ts`), the lag metrics, and the reads the admin API makes
 * there, so that any gateway answers for every gateway's records.
 *
 * The local SQLite store stays the write-ahead journal: a decision record is committed there
 * before the call is forwarded, exactly as without PostgreSQL, and nothing on a call's path waits
 * for PostgreSQL or sends the shipper anything. PostgreSQL down or slow costs the gateway nothing
 * but the lag: the local store keeps every record until the shipper gets it across.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { PgAuditStore, type NodeAuditRow } from '../store/postgres/audit.js';
import { describePostgres, errorText, type PostgresConfig } from '../store/postgres/schema.js';
import { nodeId } from '../store/node.js';
import type { AuditFilter, UsageBy, UsageGroup } from '../store/types.js';
import { HEAD, SHARED_SLOTS, SHIPPED, WAITING_SINCE, type ShipperIn, type ShipperInit, type ShipperOut } from './shipping.js';

const SHIPPER_URL = new URL('./shipper.js', import.meta.url);
/** How long a read waits for this gateway's newest records to reach PostgreSQL before it reads anyway. */
const READ_YOUR_WRITES_MS = 2000;
/** How long shutdown gives the shipper to get the last records across. */
export const SHIP_AT_STOP_MS = 5000;
const RESPAWN_MIN_MS = 1000;
const RESPAWN_MAX_MS = 30_000;

/** PostgreSQL could not answer a read; the message names the server (never its password) and what went wrong. */
export class PostgresUnavailable extends Error {}

export class PostgresAudit {
  /** This gateway's node id: the key of its chain in PostgreSQL. */
  readonly node: string;
  /** `host:port/db (schema s)`: how logs and errors name the server. */
  readonly target: string;
  private readonly reader: PgAuditStore;
  private readonly shared = new SharedArrayBuffer(SHARED_SLOTS * 8);
  private readonly view = new BigInt64Array(this.shared);
  private worker: Worker | undefined;
  private readonly flushes = new Map<number, (ok: boolean) => void>();
  private nextFlush = 1;
  private closing: Promise<void> | undefined;
  private respawnMs = RESPAWN_MIN_MS;

  constructor(
    private readonly config: PostgresConfig,
    private readonly dataDir: string,
    private readonly log: Logger,
    metrics: Metrics,
    /** The local chain's head as committed now (AuditLog.headSeq): the lag is counted from it. */
    private readonly localHead: () => number,
  ) {
    this.node = nodeId(dataDir);
    this.target = `${describePostgres(config.url)} (schema ${config.schema})`;
    this.reader = new PgAuditStore(config, { applicationName: `airlock ${this.node}`, onIdleError: () => {} });
    metrics.auditShipping(() => this.lag());
    this.spawn();
  }

  /** Records the local store has and PostgreSQL has not (as far as the shipper knows), and how long the oldest has waited. */
  lag(): { records: number; seconds: number } {
    const head = Math.max(this.localHead(), Number(Atomics.load(this.view, HEAD)));
    const records = head - Number(Atomics.load(this.view, SHIPPED));
    const since = Number(Atomics.load(this.view, WAITING_SINCE));
    return { records: Math.max(0, records), seconds: since > 0 ? Math.max(0, (Date.now() - since) / 1000) : 0 };
  }

  /**
   * Resolves (true) once PostgreSQL has every record the local store holds now, or (false) when
   * the shipper cannot get them there, or after `withinMs`: read-your-writes for this gateway's own
   * records. Call after `AuditLog.settled()`.
   */
  shipped(withinMs = READ_YOUR_WRITES_MS): Promise<boolean> {
    const w = this.worker;
    if (!w || this.closing) return Promise.resolve(false);
    const id = this.nextFlush++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), withinMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.flushes.delete(id);
        resolve(ok);
      };
      this.flushes.set(id, done);
      w.postMessage({ type: 'flush', id } satisfies ShipperIn);
    });
  }

  /** Every gateway's records matching `f`, newest first (this gateway's newest included). */
  async query(f: AuditFilter): Promise<NodeAuditRow[]> {
    await this.shipped();
    try {
      return await this.reader.query(f);
    } catch (e) {
      throw this.unavailable(e);
    }
  }

  /** Usage summed over every gateway's records. */
  async usage(by: UsageBy, since: string | undefined): Promise<UsageGroup[]> {
    await this.shipped();
    try {
      return await this.reader.usage(by, since);
    } catch (e) {
      throw this.unavailable(e);
    }
  }

  private unavailable(e: unknown): PostgresUnavailable {
    return new PostgresUnavailable(`PostgreSQL ${this.target} did not answer the audit query: ${errorText(e, this.config.url)}. Every gateway keeps its records in its local store meanwhile, and ships them when PostgreSQL is back`);
  }

  private spawn(): void {
    const init: ShipperInit = { dataDir: this.dataDir, url: this.config.url, schema: this.config.schema, node: this.node, shared: this.shared };
    let w: Worker;
    try {
      w = new Worker(SHIPPER_URL, { workerData: init });
    } catch (e) {
      this.log.error(`the audit shipper thread could not start: ${errorText(e, this.config.url)}; trying again in ${this.respawnMs} ms`);
      return this.respawnLater();
    }
    this.worker = w;
    w.on('message', (m: ShipperOut) => {
      if (m.type === 'log') this.log[m.level](m.message);
      else if (m.type === 'flushed') this.flushes.get(m.id)?.(m.ok);
      else if (m.type === 'closed') {
        this.respawnMs = RESPAWN_MIN_MS;
        const left = m.head - m.shipped;
        if (left > 0) this.log.warn(`${left} audit record(s) are not in PostgreSQL ${this.target} yet; the local store keeps them, and they are shipped when this gateway next starts`);
      }
    });
    w.on('error', (e) => this.log.error(`the audit shipper thread failed: ${errorText(e, this.config.url)}`));
    w.once('exit', (code) => {
      this.worker = undefined;
      for (const done of [...this.flushes.values()]) done(false);
      if (this.closing) return;
      // The local store has everything; a new shipper goes on from PostgreSQL's own last seq.
      this.log.error(`the audit shipper thread stopped (exit code ${code}); starting another in ${this.respawnMs} ms`);
      this.respawnLater();
    });
  }

  private respawnLater(): void {
    setTimeout(() => {
      if (!this.closing) this.spawn();
    }, this.respawnMs).unref();
    this.respawnMs = Math.min(this.respawnMs * 2, RESPAWN_MAX_MS);
  }

  /** Ships what it can within `withinMs` (the local store has committed everything by now), then stops. */
  close(withinMs = SHIP_AT_STOP_MS): Promise<void> {
    this.closing ??= (async () => {
      const w = this.worker;
      if (w) {
        const exited = new Promise<void>((r) => w.once('exit', () => r()));
        w.postMessage({ type: 'close', withinMs } satisfies ShipperIn);
        // A PostgreSQL call in flight is bounded by its own timeouts; this bounds the whole stop.
        let cut = false;
        const hard = setTimeout(() => {
          cut = true;
          void w.terminate();
        }, withinMs + 2000);
        await exited;
        clearTimeout(hard);
        const left = this.lag().records;
        if (cut && left > 0) this.log.warn(`PostgreSQL ${this.target} did not take the last audit records in time: ${left} are not there yet; the local store keeps them, and they are shipped when this gateway next starts`);
      }
      await this.reader.close().catch(() => {});
    })();
    return this.closing;
  }
}
