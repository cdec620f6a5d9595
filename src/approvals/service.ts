/**
 * Human-in-the-loop holds, one mechanism for every front door. A held exchange gets a stored
 * approval and waits — its agent's connection open — until a person approves or denies it, the
 * timeout passes, a kill switch covers it, the agent hangs up, or the gateway stops. Decisions are
 * settled in the store with a conditional update, so concurrent decisions on one id resolve
 * exactly one way and a call can never run twice.
 *
 * Another process holding the store's write lock never stalls the event loop here for long: a new
 * hold or a person's decision waits at most LOCK_WAIT_MS for it and is refused if the lock stays
 * taken (the call is not made; the person is told to try again). That wait is longer than the
 * deferred writes' 20 ms, since nothing retries these: it outlasts the audit writer thread's own
 * longest holds (a RESTART checkpoint waits up to 50 ms, then copies). An end nobody decided
 * (timeout, kill switch, hang-up, shutdown) answers the call at once and reaches the store through
 * `DeferredWrites`; until it does, the approval reads as already settled, so a late decision
 * cannot contradict it.
 */
import type { EventBus } from '../events/bus.js';
import { randomBase62 } from '../identity/keys.js';
import type { Exchange, Verdict } from '../pipeline/types.js';
import { ANSWERED_LOCK_WAIT_MS as LOCK_WAIT_MS, type DeferredWrites } from '../store/deferred.js';
import type { Store } from '../store/types.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ApprovalsHooks } from '../store/redis/approvals.js';
import type { ApprovalNotifier } from './notify.js';
import type { Approval, Remembered } from './types.js';

interface Waiter {
  approval: Approval;
  exchange: Exchange;
  resolve: (v: Verdict) => void;
  timer: NodeJS.Timeout;
  startedHr: number;
  onAbort: () => void;
}

export type DecideResult =
  | { ok: true; approval: Approval }
  | { ok: false; status: 400 | 404 | 409 | 503; message: string };

/**
 * The arguments key the /http door gives a call whose body it streamed without reading (chunked,
 * or over its buffering limit): such calls cannot be told apart by their body, so a grant to
 * remember one would cover any body.
 */
const STREAMED_ARGS = '#stream';


export class Approvals {
  private readonly waiters = new Map<string, Waiter>();
  private remembered: Remembered[];
  /** Approvals settled here (expired, cancelled, denied by a kill switch) whose store row still says pending. */
  private readonly unsaved = new Map<string, { status: Approval['status']; by: string | undefined; at: string; reason: string }>();

  constructor(
    private readonly store: Store,
    private readonly writes: DeferredWrites,
    private readonly bus: EventBus,
    private readonly notifier: ApprovalNotifier,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly adminUrl: () => string,
    /** The cluster (store.redis), told of holds, their ends and remembered grants. */
    private readonly cluster?: ApprovalsHooks,
  ) {
    // Approvals left pending by a gateway that stopped without answering them cannot be resumed:
    // their agents' connections are gone. Mark them, so nothing pending is silently forgotten.
    const n = store.expirePendingApprovals('the gateway restarted while the call was held', new Date().toISOString());
    if (n > 0) log.warn({ expired: n }, 'approvals left pending by the previous run were marked expired');
    this.remembered = store.listRemembered();
  }

  get pending(): number {
    return this.waiters.size;
  }

  /** Holds the exchange until a decision; resolves to allow (approved) or a denial. */
  hold(x: Exchange, rule: string | undefined): Verdict | Promise<Verdict> {
    const now = Date.now();
    const remembered = this.remembered.find((r) => !r.revokedAt && r.agent === x.agent.name && r.action === x.action && r.argsKey === x.argsKey && Date.parse(r.expiresAt) > now);
    if (remembered) {
      x.decision = 'approved';
      x.approval = { id: remembered.approvalId, by: `remembered (${remembered.createdBy})`, waitedMs: 0 };
      return { kind: 'allow' };
    }
    if (x.abort.aborted) return this.abortVerdict(x);
    const timeoutMs = x.config.approvals.timeoutMs;
    const approval: Approval = {
      id: `apr_${randomBase62(16)}`,
      exchangeId: x.id,
      agent: x.agent.name,
      team: x.agent.team,
      user: x.user,
      session: x.session,
      protocol: x.protocol,
      action: x.action,
      summary: (typeof x.summary === 'function' ? x.summary() : x.summary) ?? x.action,
      argsKey: x.argsKey,
      rule,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + timeoutMs).toISOString(),
      status: 'pending',
      decidedBy: undefined,
      decidedAt: undefined,
      reason: undefined,
    };
    try {
      this.store.withLockWait(LOCK_WAIT_MS, () => this.store.insertApproval(approval));
    } catch (e) {
      this.log.error({ err: e, agent: approval.agent, action: approval.action }, 'could not store an approval request; the call is refused');
      return { kind: 'deny', code: 'internal_error', message: 'the store could not record the approval request (it is locked by another process or failing), so the call was not made; retry' };
    }
    return new Promise<Verdict>((resolve) => {
      const w: Waiter = {
        approval,
        exchange: x,
        resolve,
        startedHr: performance.now(),
        timer: setTimeout(() => this.expire(approval.id), timeoutMs),
        onAbort: () => this.cancel(approval.id),
      };
      this.waiters.set(approval.id, w);
      this.cluster?.held(approval);
      x.abort.once('abort', w.onAbort);
      this.metrics.approvalsPending.set(this.waiters.size);
      this.bus.emit('approval', { event: 'created', approval });
      this.notifier.notify(x.config.approvals.notify, approval, this.adminUrl());
      this.log.info({ approval: approval.id, agent: approval.agent, action: approval.action }, 'call held for approval');
    });
  }

  /** A person's decision. 404 for an unknown id, 409 for one already decided or expired. */
  decide(id: string, decision: 'approve' | 'deny', by: string, reason: string | undefined, rememberMs: number | undefined): DecideResult {
    const at = new Date().toISOString();
    const status = decision === 'approve' ? 'approved' : 'denied';
    const ended = this.unsaved.get(id);
    if (ended) return { ok: false, status: 409, message: `approval ${id} is already ${ended.status} (${ended.reason}); it cannot be decided again` };
    if (rememberMs !== undefined && (this.waiters.get(id)?.approval ?? this.store.getApproval(id))?.argsKey.endsWith(STREAMED_ARGS)) {
      return { ok: false, status: 400, message: `approval ${id} is for a call whose body was streamed, not read, so later calls cannot be compared with it: approve it without remember (nothing was decided)` };
    }
    let settled: boolean;
    try {
      settled = this.store.withLockWait(LOCK_WAIT_MS, () => this.store.settleApproval(id, status, by, reason, at));
    } catch (e) {
      this.log.error({ err: e, approval: id }, 'could not store an approval decision');
      return { ok: false, status: 503, message: `the decision on ${id} could not be stored (the store is locked by another process or failing); nothing was decided, try again` };
    }
    if (!settled) {
      const a = this.store.getApproval(id);
      if (!a) return { ok: false, status: 404, message: `no approval with id "${id}"` };
      return { ok: false, status: 409, message: `approval ${id} is already ${a.status}${a.decidedBy ? ` (by ${a.decidedBy})` : ''}; it cannot be decided again` };
    }
    const w = this.waiters.get(id);
    const approval = { ...(w?.approval ?? this.store.getApproval(id)!), status, decidedBy: by, decidedAt: at, reason } as Approval;
    if (decision === 'approve' && rememberMs !== undefined && rememberMs > 0) {
      const r: Remembered = { id: `rem_${randomBase62(12)}`, agent: approval.agent, action: approval.action, argsKey: approval.argsKey, approvalId: id, createdBy: by, createdAt: at, expiresAt: new Date(Date.now() + rememberMs).toISOString(), revokedAt: undefined };
      this.remembered.push(r);
      this.writes.write(() => this.store.insertRemembered(r));
      this.cluster?.remembered(r);
    }
    this.bus.emit('approval', { event: 'decided', approval });
    if (w) {
      const waitedMs = Math.round(performance.now() - w.startedHr);
      w.exchange.approval = { id, by, waitedMs, reason };
      if (decision === 'approve') {
        w.exchange.decision = 'approved';
        this.settle(w, { kind: 'allow' });
      } else {
        this.settle(w, { kind: 'deny', code: 'approval_denied', rule: approval.rule, message: `a human denied ${approval.action}${reason ? `: ${reason}` : ''}` });
      }
    }
    this.log.info({ approval: id, decision: status, by }, 'approval decided');
    return { ok: true, approval };
  }

  list(status: Approval['status'] | undefined, limit = 100): Approval[] {
    const n = Math.min(Math.max(limit, 1), 1000);
    if (this.unsaved.size === 0) return this.store.listApprovals(status, n);
    // Ends not in the store yet: shown as they are, not as the pending rows the store still has.
    const rows = this.store.listApprovals(status === 'pending' ? 'pending' : undefined, status === undefined || status === 'pending' ? n : 1000).map((a) => this.current(a));
    return rows.filter((a) => status === undefined || a.status === status).slice(0, n);
  }

  get(id: string): Approval | undefined {
    const a = this.store.getApproval(id);
    return a && this.current(a);
  }

  /** A stored approval with its end applied, if that end is not in the store yet. */
  private current(a: Approval): Approval {
    const ended = this.unsaved.get(a.id);
    return ended && a.status === 'pending' ? { ...a, status: ended.status, decidedBy: ended.by, decidedAt: ended.at, reason: ended.reason } : a;
  }

  /** Stores how a held call ended without a person's decision; until then the approval reads as ended. */
  private saveEnd(id: string, status: Exclude<Approval['status'], 'pending'>, by: string | undefined, reason: string): void {
    const at = new Date().toISOString();
    this.unsaved.set(id, { status, by, at, reason });
    this.writes.write(() => {
      this.store.settleApproval(id, status, by, reason, at);
      this.unsaved.delete(id);
    });
  }

  listRemembered(): Remembered[] {
    const now = Date.now();
    return this.remembered.filter((r) => !r.revokedAt && Date.parse(r.expiresAt) > now);
  }

  /**
   * Ends a remembered approval: in force for the very next call, whatever the store is doing; the
   * store gets it through the deferred writes (remembered approvals are read from it only at start).
   */
  forget(id: string): boolean {
    const now = Date.now();
    if (!this.remembered.some((r) => r.id === id && !r.revokedAt && Date.parse(r.expiresAt) > now)) return false;
    const at = new Date(now).toISOString();
    this.revokeRememberedHere(id, at);
    this.cluster?.forgotten(id, at);
    return true;
  }

  /** Ends a grant here (one revoked on another gateway of the cluster, or by `forget`); kept, marked, so a merge cannot bring it back. */
  revokeRememberedHere(id: string, at: string): void {
    if (!this.remembered.some((r) => r.id === id && !r.revokedAt)) return;
    this.remembered = this.remembered.map((r) => (r.id === id ? { ...r, revokedAt: at } : r));
    this.writes.write(() => void this.store.revokeRemembered(id, at));
  }

  /** A grant made on another gateway of the cluster. */
  adoptRemembered(r: Remembered): void {
    if (this.remembered.some((l) => l.id === r.id)) return;
    this.remembered.push(r);
    this.writes.write(() => this.store.insertRemembered(r));
  }

  /** Every grant this gateway knows, revoked ones included (for the cluster's merge). */
  localRemembered(): Remembered[] {
    return [...this.remembered];
  }

  /** The approvals of the calls held here now (for the cluster's pending list). */
  holding(): Approval[] {
    return [...this.waiters.values()].map((w) => w.approval);
  }

  /** Answers every held call (gateway stopping): they end as expired. */
  releaseAll(reason: string): void {
    for (const id of [...this.waiters.keys()]) this.expire(id, reason);
  }

  private expire(id: string, reason = 'nobody decided in time'): void {
    const w = this.waiters.get(id);
    if (!w) return;
    this.saveEnd(id, 'expired', undefined, reason);
    w.exchange.approval = { id, waitedMs: Math.round(performance.now() - w.startedHr), reason };
    this.bus.emit('approval', { event: 'expired', approval: { ...w.approval, status: 'expired', reason } });
    this.settle(w, { kind: 'deny', code: 'approval_timeout', rule: w.approval.rule, message: `${w.approval.action} needed a human's approval and ${reason} (approval ${id}); the call was not made` });
  }

  /** The exchange was aborted while held: a kill switch, the agent hanging up, or shutdown. */
  private cancel(id: string): void {
    const w = this.waiters.get(id);
    if (!w) return;
    const reason = w.exchange.abort.reason as string;
    const status = reason === 'killed' ? 'denied' : 'cancelled';
    const why = reason === 'killed' ? 'a kill switch covers this call' : reason === 'client_closed' ? 'the agent disconnected' : 'the gateway is shutting down';
    // Runs inside a kill or shutdown loop: a store that cannot take the write at once must not hold
    // it up, nor leave the held call hanging. (A row still pending at a restart is marked expired.)
    this.saveEnd(id, status, reason === 'killed' ? 'kill-switch' : undefined, why);
    w.exchange.approval = { id, waitedMs: Math.round(performance.now() - w.startedHr), reason: why };
    this.bus.emit('approval', { event: status, approval: { ...w.approval, status, reason: why } });
    this.settle(w, this.abortVerdict(w.exchange));
  }

  private abortVerdict(x: Exchange): Verdict {
    if (x.abort.reason === 'killed') return { kind: 'deny', code: 'killed', message: 'a kill switch covers this call; it was not made' };
    return { kind: 'deny', code: 'approval_timeout', message: 'the held call ended before anyone decided; it was not made' };
  }

  private settle(w: Waiter, v: Verdict): void {
    clearTimeout(w.timer);
    w.exchange.abort.removeListener('abort', w.onAbort);
    this.waiters.delete(w.approval.id);
    this.cluster?.ended(w.approval.id);
    this.metrics.approvalsPending.set(this.waiters.size);
    w.resolve(v);
  }

  /** The held exchanges, for kill switches: an exchange not yet in flight is aborted through its signal. */
  heldExchanges(): Iterable<Exchange> {
    return [...this.waiters.values()].map((w) => w.exchange);
  }

}
