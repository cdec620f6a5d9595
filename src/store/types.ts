/**
 * The store's port: what the gateway keeps durably. SQLite implements it (embedded, the default);
 * other backends implement the same interface.
 */
import type { Approval, ApprovalStatus, Remembered } from '../approvals/types.js';
import type { KeyRecord } from '../identity/keys.js';

export type KillScope = 'agent' | 'team' | 'target' | 'all';

export interface KillSwitch {
  scope: KillScope;
  /** Agent name, team name or action pattern; '*' for all. */
  value: string;
  reason: string | undefined;
  createdAt: string;
  by: string | undefined;
}

/** One link of the audit chain, as stored. */
export interface AuditRow {
  seq: number;
  id: string;
  ts: string;
  phase: 'decision' | 'final';
  agent: string | null;
  protocol: string;
  decision: string;
  /** The canonical JSON of the record (without prevHash and hash). */
  record: string;
  prevHash: string;
  hash: string;
}

export interface AuditFilter {
  agent?: string | undefined;
  protocol?: string | undefined;
  decision?: string | undefined;
  /** ISO timestamp. */
  since?: string | undefined;
  afterSeq?: number | undefined;
  limit?: number | undefined;
}

export interface Alert {
  id: string;
  ts: string;
  kind: string;
  severity: 'info' | 'warning' | 'critical';
  message: string;
  agent?: string | undefined;
  data?: Record<string, unknown> | undefined;
}

/**
 * Calls summed over final audit records, for one group (agent, team or model): every protocol's
 * requests, and the tokens and cost that only LLM records carry.
 */
export interface UsageGroup {
  key: string | null;
  /** Final records: calls made plus calls refused. */
  requests: number;
  /** Calls refused before they ran (denied, limited, rejected, expired, killed before forwarding). */
  refused: number;
  /** `requests` per protocol (`http`, `llm`, `mcp`, `a2a`); only protocols with calls appear. */
  protocols: Record<string, number>;
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  costUsd: number;
  /** Records whose usage airlock estimated. */
  estimated: number;
}

export type UsageBy = 'agent' | 'team' | 'model';

/** The records a usage sum is narrowed to: one agent's, one team's, one protocol's. */
export interface UsageMatch {
  agent?: string;
  team?: string;
  protocol?: string;
}

/** A pinned MCP tool definition (rug-pull defence); `pendingFingerprint` is a changed definition awaiting acceptance. */
export interface ToolPin {
  server: string;
  tool: string;
  fingerprint: string;
  firstSeen: string;
  pendingFingerprint?: string | undefined;
  changedAt?: string | undefined;
}

/** Whether an A2A id names a task or a conversation context. */
export type A2AOwnedKind = 'task' | 'context';

/** The agent that started an A2A task or context on a remote agent (as airlock saw in its answer). */
export interface A2AOwned {
  /** The remote agent's name in config (`a2a.agents.<name>`). */
  remote: string;
  kind: A2AOwnedKind;
  id: string;
  /** The calling agent's name. */
  owner: string;
  /** Epoch ms when airlock first saw it. */
  createdAt: number;
}

export type A2AOwnedChange = { op: 'save'; owned: A2AOwned } | { op: 'forget'; owned: A2AOwned };

export interface Store {
  insertApproval(a: Approval): void;
  getApproval(id: string): Approval | undefined;
  listApprovals(status: ApprovalStatus | undefined, limit: number): Approval[];
  /** Moves a pending approval to a final status; false when it was not pending (exactly-once decisions). */
  settleApproval(id: string, status: Exclude<ApprovalStatus, 'pending'>, by: string | undefined, reason: string | undefined, at: string): boolean;
  /** Marks every pending approval expired (after a restart); returns how many. */
  expirePendingApprovals(reason: string, at: string): number;
  insertRemembered(r: Remembered): void;
  listRemembered(): Remembered[];
  revokeRemembered(id: string, at: string): boolean;
  insertAlert(a: Alert): void;
  listAlerts(limit: number, since?: string): Alert[];

  listToolPins(): ToolPin[];
  /** Inserts or replaces the pin of (server, tool). */
  saveToolPin(p: ToolPin): void;

  insertKey(k: KeyRecord): void;
  listKeys(agent?: string): KeyRecord[];
  /** One stored key by id, revoked or not. */
  getKey(id: string): KeyRecord | undefined;
  /** Marks a key revoked; returns it, or undefined when no such key. */
  revokeKey(id: string, at: string): KeyRecord | undefined;

  /** A2A task and context owners first seen at or after `since` (epoch ms): the newest `limit`, oldest first. */
  listA2AOwned(since: number, limit: number): A2AOwned[];
  /**
   * Applies owner changes in order, in one transaction: `save` stores an owner (an id already
   * stored keeps its first owner), `forget` removes one.
   */
  changeA2AOwned(changes: readonly A2AOwnedChange[]): void;
  /** Forgets owners first seen before `before` (epoch ms). */
  forgetA2AOwnedBefore(before: number): void;

  listKills(): KillSwitch[];
  addKill(k: KillSwitch): void;
  /** Returns how many were removed. */
  removeKill(scope: KillScope, value: string): number;

  appendAudit(rows: readonly AuditRow[]): void;
  auditHead(): { seq: number; hash: string } | undefined;
  /** Newest first unless afterSeq is given (then oldest first). */
  queryAudit(f: AuditFilter): AuditRow[];
  /**
   * Usage of final records since `since` (ISO), grouped (see usage.ts); biggest cost first. By
   * model, LLM records only; `match.protocol` narrows the others to one protocol.
   */
  usageSummary(by: UsageBy, since: string | undefined, match?: UsageMatch): UsageGroup[];
  /** Every row in chain order, for verification. */
  iterateAudit(): IterableIterator<AuditRow>;
  /**
   * Runs `write` waiting at most `waitMs` for another connection's write lock (instead of the
   * store's usual busy timeout); it throws, with nothing written, when the lock stays taken.
   */
  withLockWait<T>(waitMs: number, write: () => T): T;
  close(): void;
}
