/**
 * The pipeline runner: judges every exchange with the same policies in one fixed order, writes the
 * audit records, keeps the in-flight registry, and fails closed if a policy throws.
 *
 * Stage order, and why:
 *   kill      — an operator's stop must win over everything, and costs nothing when none is set;
 *   rules     — least privilege before any counter moves, so denied calls use no allowance;
 *   limits    — rates and concurrency, counted only for calls the rules allow;
 *   guards    — loop and session caps look at the calls that would really happen;
 *   approval  — last, so a human is asked only about a call that passed everything else, and a
 *               held call has used its rate allowance exactly once.
 */
import { ExchangeAbort } from './abort.js';
import { randomUUID } from 'node:crypto';
import type { AuditLog } from '../audit/log.js';
import type { AuditBodies, ExchangeBodies } from '../audit/bodies.js';
import type { AuditRecord } from '../audit/record.js';
import type { AgentRuntime, RuntimeConfig } from '../config/compile.js';
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { auditDecisionFor } from './decision.js';
import type { Estimate, Exchange, Outcome, Policy, Protocol, Stage, Verdict } from './types.js';

const STAGES: readonly Stage[] = ['kill', 'rules', 'limits', 'guards', 'approval'];

export interface ExchangeInit {
  id?: string;
  protocol: Protocol;
  agent: AgentRuntime;
  keyId: string;
  user: string | undefined;
  session: string | undefined;
  action: string;
  target: Record<string, unknown>;
  argsKey: string;
  summary?: string | (() => string) | undefined;
  config: RuntimeConfig;
  estimate?: Estimate | undefined;
  /** Made by the front door only when `config.audit.bodies` is on. */
  bodies?: ExchangeBodies | undefined;
  /** See Exchange.tunnel. */
  tunnel?: boolean;
}

/** A caller refused before an exchange could be formed (no key, unknown route, malformed request). */
export interface Rejection {
  id: string;
  protocol: Protocol;
  agent: AgentRuntime | undefined;
  user?: string | undefined;
  session?: string | undefined;
  action?: string | undefined;
  target?: Record<string, unknown> | undefined;
  code: ErrorCode;
  message: string;
  /** The rule that refused it, when a rule did. */
  rule?: string | undefined;
  status: number;
  startedHr: number;
  /**
   * A forward-proxy client's first request, sent without credentials as proxy clients (browsers)
   * do until they are challenged: recorded, but not shown to `onFinal` (it is no failed key).
   */
  challenge?: true | undefined;
}

export class Pipeline {
  private readonly policies: Policy[];
  /** Exchanges between decision and outcome, by id. */
  readonly inFlight = new Map<string, Exchange>();
  /** Told of every final record, refused callers' included (the anomaly alerts watch them), but a proxy client's challenge (`Rejection.challenge`). */
  onFinal: ((rec: AuditRecord) => void) | undefined;

  constructor(
    policies: Policy[],
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.policies = [...policies].sort((a, b) => STAGES.indexOf(a.stage) - STAGES.indexOf(b.stage));
  }

  /** A new exchange, not yet judged. */
  begin(init: ExchangeInit): Exchange {
    return {
      id: init.id ?? randomUUID(),
      protocol: init.protocol,
      agent: init.agent,
      keyId: init.keyId,
      user: init.user,
      session: init.session,
      action: init.action,
      servedAction: undefined,
      target: init.target,
      argsKey: init.argsKey,
      summary: init.summary,
      config: init.config,
      startedAt: Date.now(),
      startedHr: performance.now(),
      abort: new ExchangeAbort(),
      holdRule: undefined,
      rule: undefined,
      decision: 'allowed',
      approval: undefined,
      passed: [],
      estimate: init.estimate,
      bodies: init.bodies,
      tunnel: init.tunnel ?? false,
    };
  }

  /**
   * Judges an exchange. On allow, the decision record is durable when the promise resolves and the
   * exchange is in flight until `finish`. On deny, the final record is written and the passed
   * policies are released; the caller only renders the error.
   */
  async decide(x: Exchange): Promise<Verdict> {
    let verdict: Verdict = { kind: 'allow' };
    for (const p of this.policies) {
      if (!p.before) {
        x.passed.push(p);
        continue;
      }
      try {
        const v = p.before(x);
        verdict = v instanceof Promise ? await v : v;
      } catch (e) {
        this.log.error({ err: e, policy: p.name, exchange: x.id }, 'policy failed; refusing the exchange (fail closed)');
        verdict = { kind: 'deny', code: 'internal_error', message: `the gateway could not judge this call (policy ${p.name} failed); it was not made` };
      }
      if (verdict.kind !== 'allow') break;
      x.passed.push(p);
    }
    if (verdict.kind === 'deny') {
      this.release(x, { status: undefined, code: verdict.code, bytesIn: 0, bytesOut: 0 });
      this.record(x, 'final', {
        decision: auditDecisionFor(verdict.code),
        rule: verdict.rule ?? x.rule,
        code: verdict.code,
        message: verdict.message,
        // The code's status, as for callers refused before an exchange existed (`reject`): a
        // denial's record says 403/429/402 like a 404's says 404. An agent that hung up got none.
        status: x.abort.reason === 'client_closed' ? undefined : ERROR_CODES[verdict.code].status,
        durationMs: round(performance.now() - x.startedHr),
      });
      return verdict;
    }
    this.inFlight.set(x.id, x);
    this.metrics.inFlight.inc();
    try {
      await this.record(x, 'decision', { decision: x.decision, rule: x.rule });
    } catch (e) {
      this.inFlight.delete(x.id);
      this.metrics.inFlight.dec();
      this.release(x, { status: undefined, code: 'internal_error', bytesIn: 0, bytesOut: 0 });
      this.log.error({ err: e, exchange: x.id }, 'audit store failed; refusing the exchange (write-ahead)');
      const message = 'the audit store could not record this call, so it was not made';
      // The refusal itself goes on record once the store takes writes again: nothing goes unaudited.
      this.record(x, 'final', { decision: 'denied', rule: x.rule, code: 'internal_error', message, status: ERROR_CODES.internal_error.status, durationMs: round(performance.now() - x.startedHr) }).catch(() => {});
      return { kind: 'deny', code: 'internal_error', message };
    }
    return verdict;
  }

  /** Reports how an allowed exchange ended: releases policies, writes the final record. */
  finish(x: Exchange, outcome: Outcome): void {
    if (!this.inFlight.delete(x.id)) return; // already finished
    this.metrics.inFlight.dec();
    this.release(x, outcome);
    const killed = outcome.code === 'killed';
    const durationMs = round(performance.now() - x.startedHr);
    this.metrics.exchangeDuration.labels(x.protocol).observe(durationMs / 1000);
    this.record(x, 'final', {
      decision: killed ? 'killed' : outcome.refused && outcome.code ? auditDecisionFor(outcome.code) : x.decision,
      rule: x.rule,
      status: outcome.status,
      code: outcome.code,
      message: outcome.message,
      durationMs,
      usage: outcome.usage,
      costUsd: outcome.costUsd,
      bytesIn: outcome.bytesIn,
      bytesOut: outcome.bytesOut,
      details: outcome.details,
    }).catch(() => {});
  }

  /**
   * Ends an exchange whose front door threw after the pipeline allowed it: its upstream call (if
   * any) is cancelled, its final record says internal_error, and its policies release what it held
   * (a concurrency slot, a budget reservation). Nothing to do if it has ended or was never allowed.
   */
  abandon(id: string, message: string): void {
    const x = this.inFlight.get(id);
    if (!x) return;
    if (!x.abort.aborted) x.abort.abort('internal_error');
    this.finish(x, { status: ERROR_CODES.internal_error.status, code: 'internal_error', message, bytesIn: 0, bytesOut: 0 });
  }

  /** Records a caller refused before an exchange existed. */
  reject(r: Rejection): void {
    const rec: AuditRecord = {
      id: r.id,
      ts: new Date().toISOString(),
      phase: 'final',
      agent: r.agent?.name ?? null,
      team: r.agent?.team,
      user: r.user,
      session: r.session,
      protocol: r.protocol,
      action: r.action,
      target: r.target,
      decision: auditDecisionFor(r.code),
      rule: r.rule,
      code: r.code,
      message: r.message,
      status: r.status,
      durationMs: round(performance.now() - r.startedHr),
    };
    this.metrics.exchanges.labels(r.protocol, rec.agent ?? '', rec.decision).inc();
    if (r.challenge !== true) this.observe(rec);
    this.audit.append(rec).catch(() => {});
  }

  /** Aborts every in-flight exchange `which` selects, with `code` as the reason. */
  abortWhere(which: (x: Exchange) => boolean, code: ErrorCode | 'shutdown' | 'revoked'): number {
    let n = 0;
    for (const x of this.inFlight.values()) {
      if (which(x) && !x.abort.aborted) {
        x.abort.abort(code);
        n++;
      }
    }
    return n;
  }

  private release(x: Exchange, outcome: Outcome): void {
    for (const p of x.passed) {
      if (!p.after) continue;
      try {
        p.after(x, outcome);
      } catch (e) {
        this.log.error({ err: e, policy: p.name, exchange: x.id }, 'policy after-hook failed');
      }
    }
    x.passed.length = 0;
  }

  /** The exchange's facts plus what this phase adds. */
  private record(x: Exchange, phase: AuditRecord['phase'], fields: Pick<AuditRecord, 'decision' | 'rule' | 'status' | 'code' | 'message' | 'durationMs' | 'usage' | 'costUsd' | 'bytesIn' | 'bytesOut' | 'details'>): Promise<void> {
    let bodies: AuditBodies | undefined;
    let redactions: number | undefined;
    if (phase === 'final' && x.bodies !== undefined) ({ bodies, redactions } = this.bodiesOf(x));
    // Every field named, in one order, rather than spread: every record then has the same shape,
    // which keeps building and serializing it on V8's fast paths (the spread was ~2% of the event loop).
    const rec: AuditRecord = {
      id: x.id,
      ts: new Date(x.startedAt).toISOString(),
      phase,
      agent: x.agent.name,
      team: x.agent.team,
      user: x.user,
      session: x.session,
      protocol: x.protocol,
      action: x.action,
      target: x.target,
      approval: x.approval,
      decision: fields.decision,
      rule: fields.rule,
      status: fields.status,
      code: fields.code,
      message: fields.message,
      durationMs: fields.durationMs,
      usage: fields.usage,
      costUsd: fields.costUsd,
      bytesIn: fields.bytesIn,
      bytesOut: fields.bytesOut,
      redactions,
      bodies,
      details: fields.details,
    };
    if (phase === 'final') {
      this.metrics.exchanges.labels(x.protocol, x.agent.name, rec.decision).inc();
      this.observe(rec);
    }
    return this.audit.append(rec);
  }

  /** Whatever watches final records must not fail the exchange it watches. */
  private observe(rec: AuditRecord): void {
    if (this.onFinal === undefined) return;
    try {
      this.onFinal(rec);
    } catch (e) {
      this.log.error({ err: e, exchange: rec.id }, 'watching a final record failed');
    }
  }

  /**
   * The final record's bodies, redacted. A failure here leaves the bodies out (never unredacted)
   * and the record is written without them.
   */
  private bodiesOf(x: Exchange): { bodies: AuditBodies | undefined; redactions: number | undefined } {
    try {
      return x.bodies!.render();
    } catch (e) {
      this.log.error({ err: e, exchange: x.id }, 'redacting the bodies of an exchange failed; its final record is written without them');
      return { bodies: undefined, redactions: undefined };
    }
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
