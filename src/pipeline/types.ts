/**
 * The protocol-neutral exchange that every front door builds, the verdict the pipeline returns, and
 * the outcome the front door reports back. Policies see only these, never sockets or bytes.
 */
import type { ExchangeAbort } from './abort.js';
import type { ExchangeBodies } from '../audit/bodies.js';
import type { AuditDecision, AuditRecord } from '../audit/record.js';
import type { AgentRuntime, RuntimeConfig } from '../config/compile.js';
import type { ErrorCode } from '../errors.js';

export type Protocol = 'http' | 'llm' | 'mcp' | 'a2a';

/** Every protocol, for checking query filters. */
export const PROTOCOLS: readonly Protocol[] = ['http', 'llm', 'mcp', 'a2a'];

export interface Exchange {
  /** Also the request id the caller sees. */
  id: string;
  protocol: Protocol;
  agent: AgentRuntime;
  keyId: string;
  user: string | undefined;
  session: string | undefined;
  /** `<protocol>: <target>`, what rules match against. */
  action: string;
  /**
   * The action of the target really being called, when a front door serves the exchange elsewhere
   * than it was judged (an LLM fallback model): a kill switch on that target cuts it too.
   */
  servedAction: string | undefined;
  /** Structured target for the audit record: service+method+path, model, server+tool, agent+method. */
  target: Record<string, unknown>;
  /** What makes two calls "the same" for the loop guard (arguments, query, body digest). */
  argsKey: string;
  /**
   * A bounded, secret-free summary for approvals. A function when building it costs something (an
   * excerpt of the body, scrubbed): it is called only if the exchange is held for a person.
   */
  summary: string | (() => string) | undefined;
  /** The config this exchange is judged and served under, even if a reload happens meanwhile. */
  config: RuntimeConfig;
  /** Epoch ms when it began. */
  startedAt: number;
  /** High-resolution start, for durations. */
  startedHr: number;
  /** Fired when a kill switch or shutdown ends the exchange early; `reason` is the code. */
  abort: ExchangeAbort;
  /** Set by the rules stage when an `approve` rule matched. */
  holdRule: string | undefined;
  /** The rule that decided. */
  rule: string | undefined;
  /** How the pipeline let it through: allowed, or approved by a human. */
  decision: AuditDecision;
  approval: AuditRecord['approval'];
  /** Policies that let it through, to be told of the outcome (and to release what they hold). */
  passed: Policy[];
  /** What the call may consume, set by front doors that know (LLM): token limits and budgets reserve it. */
  estimate: Estimate | undefined;
  /** With `audit.bodies: true` in the exchange's config: the bodies the front door captured, for the final record. */
  bodies: ExchangeBodies | undefined;
  /**
   * A connection rather than a call (a forward-proxy CONNECT tunnel, which may carry any number of
   * calls): the loop guard does not count it, as a client opening a new tunnel per request would
   * otherwise read as the same call repeated.
   */
  tunnel: boolean;
}

/** An upper estimate of a call's consumption, reserved before it runs and settled with real usage after. */
export interface Estimate {
  tokens: number;
  costUsd: number;
}

export type Verdict =
  | { kind: 'allow' }
  | { kind: 'deny'; code: ErrorCode; message: string; rule?: string | undefined; retryAfterS?: number | undefined };

export const ALLOW: Verdict = Object.freeze({ kind: 'allow' });

export interface Outcome {
  status: number | undefined;
  /** Set when the exchange failed at or after the gateway (upstream_error, killed …). */
  code?: ErrorCode | undefined;
  message?: string | undefined;
  /**
   * The gateway refused the call after it was allowed (a check made again right before forwarding,
   * such as a tool quarantined while the call was held): it was not made, and the final record's
   * decision says so (`code`'s decision, as for a refusal) rather than the allow it had.
   */
  refused?: true | undefined;
  bytesIn: number;
  bytesOut: number;
  usage?: AuditRecord['usage'];
  costUsd?: number | undefined;
  details?: Record<string, unknown> | undefined;
}

export type Stage = 'kill' | 'rules' | 'limits' | 'guards' | 'approval';

export interface Policy {
  name: string;
  stage: Stage;
  before?(x: Exchange): Verdict | Promise<Verdict>;
  after?(x: Exchange, outcome: Outcome): void;
}
