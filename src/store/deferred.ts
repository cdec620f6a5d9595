/**
 * Store writes that must not wait for the store's lock: an operator's stop orders (kill switches,
 * key revocations, forgotten remembered approvals), MCP tool pins and A2A task owners, which the
 * gateway puts in force in memory first; alerts, which it publishes first; and the ends of held
 * calls that no person decided (expired, cancelled), which it answers first. Their store writes
 * come here.
 *
 * A write waits for another connection's write lock (an operator's sqlite3 shell in a transaction,
 * a long checkpoint) at most LOCK_WAIT_MS, so an order never stalls the event loop for the store's
 * usual 5 s busy timeout. One that cannot get the lock (or meets a full disk or an I/O error,
 * which may pass too) is retried every RETRY_MS, in order with the writes queued after it, until
 * it lands; `flush()` makes the rest at shutdown, waiting as long as the store does. A write the
 * store refuses for good (a corrupt file, say) is dropped and reported, so it holds up no other.
 */
import type { Store } from './types.js';

/** The longest a write on the event loop waits for a lock another connection holds. */
export const LOCK_WAIT_MS = 20;
/**
 * The longest a write that someone waits to hear about (a held call's approval request, a person's
 * decision, a new agent key) waits for another connection's lock. It outlasts the audit writer's
 * own short holds; past it the write is refused with "try again" rather than stalling the gateway
 * for the store's 5 s busy timeout.
 */
export const ANSWERED_LOCK_WAIT_MS = 200;
const RETRY_MS = 1000;

/** SQLite failures that a later try may not meet. */
function mayPass(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED|FULL|IOERR)/.test(code);
}

export class DeferredWrites {
  /** Writes not yet made, oldest first. */
  private readonly queue: (() => void)[] = [];
  private retry: NodeJS.Timeout | undefined;
  /** A write has had to wait for a retry (and `onProblem` was told). */
  private behind = false;

  constructor(
    private readonly store: Store,
    /** Told (once) when writes have to wait for a retry, and (undefined) when they have all landed; and of each write dropped. */
    private readonly onProblem: (problem: string | undefined) => void,
  ) {}

  /** How many writes still wait for the store's lock. */
  get pending(): number {
    return this.queue.length;
  }

  /** Makes `write` now, or as soon as the store lets it, after every write queued before it. */
  write(write: () => void): void {
    this.queue.push(write);
    if (this.retry === undefined) this.drain();
  }

  /** Makes the writes still waiting, each waiting for the lock as long as the store does; throws if one fails. */
  flush(): void {
    clearTimeout(this.retry);
    this.retry = undefined;
    while (this.queue.length > 0) {
      this.queue[0]!();
      this.queue.shift();
    }
  }

  private drain(): void {
    this.retry = undefined;
    try {
      while (this.queue.length > 0) {
        try {
          this.store.withLockWait(LOCK_WAIT_MS, this.queue[0]!);
        } catch (e) {
          if (mayPass(e)) throw e;
          this.onProblem(`the store refused a kill switch, key revocation, alert, approval end, tool pin or A2A task owner for good (${e instanceof Error ? e.message : String(e)}); it stays in force until this process ends, but is not stored`);
        }
        this.queue.shift();
      }
    } catch (e) {
      if (!this.behind) this.onProblem(`the store did not take a kill switch, key revocation, alert, approval end, tool pin or A2A task owner (${e instanceof Error ? e.message : String(e)}); it is in force now and is written when the store lets it, retried every ${RETRY_MS} ms`);
      this.behind = true;
      this.retry = setTimeout(() => this.drain(), RETRY_MS);
      this.retry.unref();
      return;
    }
    if (this.behind) this.onProblem(undefined);
    this.behind = false;
  }
}
