/**
 * Approvals in a cluster (`store.redis`): a call held on one gateway can be listed and decided
 * through any gateway's admin API, and a "remember" grant made on one is honoured by all.
 *
 * The gateway holding the call stays the one authority on it (its store's conditional update
 * decides exactly once); the others forward a decision to it and return its answer. Redis keeps
 * `<prefix>approvals:pending` (id → the approval and the member holding it) for listing, and
 * `<prefix>approvals:remembered` (id → grant) so that a gateway started later has the grants too.
 */
import type { Approval, Remembered } from '../../approvals/types.js';
import type { DecideResult } from '../../approvals/service.js';
import { NoReply, parseJson, type RedisLink } from './link.js';

/** What the approvals service tells the cluster. */
export interface ApprovalsHooks {
  held(a: Approval): void;
  ended(id: string): void;
  remembered(r: Remembered): void;
  forgotten(id: string, at: string): void;
}

/** What the cluster asks of this gateway's approvals service. */
export interface ApprovalsTarget {
  decide(id: string, decision: 'approve' | 'deny', by: string, reason: string | undefined, rememberMs: number | undefined): DecideResult;
  /** A grant made on another gateway. */
  adoptRemembered(r: Remembered): void;
  /** A grant revoked on another gateway. */
  revokeRememberedHere(id: string, at: string): void;
  localRemembered(): Remembered[];
  /** The calls this gateway holds now. */
  holding(): Approval[];
}

interface PendingEntry {
  approval: Approval;
  member: string;
}

/** How long a decision forwarded to the holding gateway waits for its answer. */
const DECIDE_TIMEOUT_MS = 3_000;

export class ClusterApprovals implements ApprovalsHooks {
  constructor(
    private readonly link: RedisLink,
    private readonly target: () => ApprovalsTarget,
  ) {
    link.serve('approval.decide', (d) => {
      const q = d as { id: string; decision: 'approve' | 'deny'; by: string; reason?: string; rememberMs?: number };
      return this.target().decide(q.id, q.decision, q.by, q.reason, q.rememberMs);
    });
    link.on('remembered', (d) => {
      if (isRemembered(d)) this.target().adoptRemembered(d);
    });
    link.on('forgotten', (d) => {
      const f = d as { id?: unknown; at?: unknown };
      if (typeof f.id === 'string' && typeof f.at === 'string') this.target().revokeRememberedHere(f.id, f.at);
    });
    link.onReady(() => this.merge());
    link.onReady(() => this.restateHolds());
  }

  private get pendingKey(): string {
    return `${this.link.prefix}approvals:pending`;
  }

  private get rememberedKey(): string {
    return `${this.link.prefix}approvals:remembered`;
  }

  held(a: Approval): void {
    if (!this.link.available) return;
    this.link.cmd.hset(this.pendingKey, a.id, JSON.stringify({ approval: a, member: this.link.member } satisfies PendingEntry)).catch(() => {});
  }

  ended(id: string): void {
    if (!this.link.available) return;
    this.link.cmd.hdel(this.pendingKey, id).catch(() => {});
  }

  remembered(r: Remembered): void {
    if (!this.link.available) return;
    this.link.cmd.hset(this.rememberedKey, r.id, JSON.stringify(r)).catch(() => {});
    this.link.publish('remembered', r);
  }

  forgotten(id: string, at: string): void {
    if (!this.link.available) return;
    this.link.cmd
      .hget(this.rememberedKey, id)
      .then((text) => {
        const r = text === null ? undefined : parseJson(text);
        if (isRemembered(r)) return this.link.cmd.hset(this.rememberedKey, id, JSON.stringify({ ...r, revokedAt: at }));
        return undefined;
      })
      .catch(() => {});
    this.link.publish('forgotten', { id, at });
  }

  /** Calls held on other gateways of the cluster, waiting for a decision (newest first). */
  async pendingElsewhere(): Promise<Approval[]> {
    if (!this.link.available) return [];
    const all = await this.link.cmd.hgetall(this.pendingKey);
    const out: Approval[] = [];
    for (const [id, text] of Object.entries(all)) {
      const e = parseJson(text) as PendingEntry | undefined;
      if (!e?.approval || typeof e.member !== 'string' || e.member === this.link.member) continue;
      // A gateway that died took its held calls with it (their agents' connections are gone).
      if ((await this.link.cmd.exists(this.link.memberKey(e.member))) === 0) {
        await this.link.cmd.hdel(this.pendingKey, id);
        continue;
      }
      out.push(e.approval);
    }
    return out.sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
  }

  /** An approval held on another gateway, if any. */
  async getElsewhere(id: string): Promise<Approval | undefined> {
    return (await this.pendingElsewhere()).find((a) => a.id === id);
  }

  /** Forwards a decision to the gateway holding the call; undefined when no gateway of the cluster holds it. */
  async decideElsewhere(id: string, decision: 'approve' | 'deny', by: string, reason: string | undefined, rememberMs: number | undefined): Promise<DecideResult | undefined> {
    if (!this.link.available) return undefined;
    const text = await this.link.cmd.hget(this.pendingKey, id);
    const e = text === null ? undefined : (parseJson(text) as PendingEntry | undefined);
    if (!e || typeof e.member !== 'string' || e.member === this.link.member) return undefined;
    try {
      const r = (await this.link.request(e.member, 'approval.decide', { id, decision, by, reason, rememberMs }, DECIDE_TIMEOUT_MS)) as DecideResult | { error: string };
      if ('ok' in r) return r;
      return { ok: false, status: 503, message: `the gateway holding approval ${id} could not decide it; nothing was decided, try again` };
    } catch (err) {
      if (err instanceof NoReply) return { ok: false, status: 503, message: `the gateway holding approval ${id} did not answer (${err.message}); nothing was decided` };
      throw err;
    }
  }

  /** After an outage: the cluster's pending list has the calls this gateway holds, and no longer those that ended meanwhile. */
  private async restateHolds(): Promise<void> {
    const listed = await this.link.cmd.hgetall(this.pendingKey);
    const holding = this.target().holding();
    const ids = new Set(holding.map((a) => a.id));
    const ended = Object.entries(listed)
      .filter(([id, text]) => !ids.has(id) && (parseJson(text) as PendingEntry | undefined)?.member === this.link.member)
      .map(([id]) => id);
    const missing = holding.filter((a) => listed[a.id] === undefined);
    if (ended.length === 0 && missing.length === 0) return;
    const m = this.link.cmd.multi();
    if (ended.length > 0) m.hdel(this.pendingKey, ...ended);
    for (const a of missing) m.hset(this.pendingKey, a.id, JSON.stringify({ approval: a, member: this.link.member } satisfies PendingEntry));
    await m.exec();
  }

  /** Grants made while this gateway was cut off (or before it started) come in; its own go out. Revocations win. */
  private async merge(): Promise<void> {
    const remote = await this.link.cmd.hgetall(this.rememberedKey);
    const local = new Map(this.target().localRemembered().map((r) => [r.id, r]));
    const push: [string, string][] = [];
    for (const [id, text] of Object.entries(remote)) {
      const r = parseJson(text);
      if (!isRemembered(r) || r.id !== id) continue;
      const l = local.get(id);
      if (!l) this.target().adoptRemembered(r);
      else if (r.revokedAt && !l.revokedAt) this.target().revokeRememberedHere(id, r.revokedAt);
    }
    for (const [id, l] of local) {
      const r = remote[id] === undefined ? undefined : parseJson(remote[id]);
      if (!isRemembered(r) || (l.revokedAt && !r.revokedAt)) push.push([id, JSON.stringify(l)]);
    }
    if (push.length === 0) return;
    await this.link.cmd.hset(this.rememberedKey, Object.fromEntries(push));
    // Gateways that stayed connected learn of what this one granted or revoked while it was cut
    // off; only of grants not yet expired (after Redis lost its data, every gateway pushes every
    // grant it ever knew).
    const now = Date.now();
    for (const [id, text] of push) {
      const l = local.get(id)!;
      if (Date.parse(l.expiresAt) <= now) continue;
      if (l.revokedAt) this.link.publish('forgotten', { id, at: l.revokedAt });
      else this.link.publish('remembered', JSON.parse(text));
    }
  }
}

function isRemembered(v: unknown): v is Remembered {
  const r = v as Remembered | undefined;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.id === 'string' &&
    typeof r.agent === 'string' &&
    typeof r.action === 'string' &&
    typeof r.argsKey === 'string' &&
    typeof r.approvalId === 'string' &&
    typeof r.expiresAt === 'string' &&
    (r.revokedAt === undefined || typeof r.revokedAt === 'string')
  );
}
