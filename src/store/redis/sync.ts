/**
 * Kill switches and stored agent keys shared by the gateways of a cluster (`store.redis`).
 *
 * Redis holds the cluster's copy: `<prefix>kills` (scope + value → switch), `<prefix>kills:lifted`
 * (scope + value → when it was last lifted) and `<prefix>keys` (id → key record: the SHA-256 and
 * prefix, never the key). A change made on one gateway is written there and published; the others
 * put it in force at once (a kill also cuts their in-flight exchanges in its scope) and keep it in
 * their own SQLite store, so it survives their restarts too.
 *
 * When the link comes back (or first comes up) each gateway merges, in the direction that fails
 * safe: a kill switch or a revocation that either side has wins, unless the switch was lifted
 * after it was set. So Redis restarting empty, or a gateway that was cut off while an operator set
 * a switch, never lifts a switch or brings back a revoked key.
 */
import type { Result } from 'ioredis';
import type { KeyRecord } from '../../identity/keys.js';
import type { KillScope, KillSwitch } from '../types.js';
import { parseJson, type RedisLink } from './link.js';

/** What the gateway does when the cluster says so. */
export interface SyncTarget {
  localKills(): readonly KillSwitch[];
  /** Puts a switch set elsewhere in force here (and cuts this gateway's in-flight exchanges in its scope). */
  applyKill(k: KillSwitch): void;
  /** Lifts a switch lifted elsewhere. */
  applyUnkill(scope: KillScope, value: string, by: string | undefined): void;
  /** Stored keys this gateway knows, revoked ones included. */
  localKeys(): KeyRecord[];
  /** A key created or revoked elsewhere; `known`, when the caller has it, is this gateway's record of it (null: none). */
  applyKey(k: KeyRecord, known?: KeyRecord | null): void;
}

const field = (scope: KillScope, value: string) => `${scope}\n${value}`;

/** Sets a key record unless the one stored is revoked and the new one is not: a revocation is never undone. */
const PUT_KEY = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, c = pcall(cjson.decode, cur)
  if ok and type(c) == 'table' and type(c.revokedAt) == 'string' then
    local ok2, n = pcall(cjson.decode, ARGV[2])
    if not ok2 or type(n) ~= 'table' or type(n.revokedAt) ~= 'string' then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    airlockPutKey(hash: string, id: string, record: string): Result<number, Context>;
  }
}

export class ClusterSync {
  constructor(
    private readonly link: RedisLink,
    private readonly target: SyncTarget,
  ) {
    link.cmd.defineCommand('airlockPutKey', { numberOfKeys: 1, lua: PUT_KEY });
    link.on('kill', (d) => {
      if (isKill(d)) this.target.applyKill(d);
    });
    link.on('unkill', (d) => {
      const u = d as { scope: KillScope; value: string; by?: string };
      if (SCOPES.has(u?.scope) && typeof u.value === 'string') this.target.applyUnkill(u.scope, u.value, typeof u.by === 'string' ? u.by : undefined);
    });
    link.on('key', (d) => {
      if (isKey(d)) this.target.applyKey(d);
    });
    link.onReady(() => this.merge());
  }

  private get kills(): string {
    return `${this.link.prefix}kills`;
  }

  private get lifted(): string {
    return `${this.link.prefix}kills:lifted`;
  }

  private get keys(): string {
    return `${this.link.prefix}keys`;
  }

  /** A switch set here. While the link is down it stays local, and is pushed by `merge` when it is back. */
  killed(k: KillSwitch): void {
    if (!this.link.available) return;
    this.link.cmd.hset(this.kills, field(k.scope, k.value), JSON.stringify(k)).catch(() => {});
    this.link.publish('kill', k);
  }

  /** A switch lifted here. */
  unkilled(scope: KillScope, value: string, by: string | undefined, at: string): void {
    if (!this.link.available) return;
    this.link.cmd
      .multi()
      .hdel(this.kills, field(scope, value))
      .hset(this.lifted, field(scope, value), at)
      .exec()
      .catch(() => {});
    this.link.publish('unkill', { scope, value, by });
  }

  /** A key created or revoked here. */
  keyChanged(k: KeyRecord): void {
    if (!this.link.available) return;
    this.link.cmd.airlockPutKey(this.keys, k.id, JSON.stringify(k)).catch(() => {});
    this.link.publish('key', k);
  }

  /** Makes this gateway and the cluster's copy agree (see the module comment for who wins). */
  async merge(): Promise<void> {
    const [remoteKills, lifted, remoteKeys] = await Promise.all([this.link.cmd.hgetall(this.kills), this.link.cmd.hgetall(this.lifted), this.link.cmd.hgetall(this.keys)]);
    const push: [key: string, field: string, value: string][] = [];

    const local = new Map(this.target.localKills().map((k) => [field(k.scope, k.value), k]));
    for (const [f, k] of local) {
      if (remoteKills[f] !== undefined) continue;
      const liftedAt = lifted[f];
      if (liftedAt !== undefined && liftedAt >= k.createdAt) this.target.applyUnkill(k.scope, k.value, undefined);
      else push.push([this.kills, f, JSON.stringify(k)]);
    }
    for (const [f, text] of Object.entries(remoteKills)) {
      if (local.has(f)) continue;
      const k = parseJson(text);
      if (isKill(k)) this.target.applyKill(k);
    }

    const localKeys = new Map(this.target.localKeys().map((k) => [k.id, k]));
    for (const [id, text] of Object.entries(remoteKeys)) {
      const r = parseJson(text);
      if (!isKey(r) || r.id !== id) continue;
      const l = localKeys.get(id);
      if (!l || (r.revokedAt && !l.revokedAt)) this.target.applyKey(r, l ?? null);
    }
    for (const [id, l] of localKeys) {
      const r = remoteKeys[id] === undefined ? undefined : parseJson(remoteKeys[id]);
      if (!isKey(r) || (l.revokedAt && !r.revokedAt)) push.push([this.keys, id, JSON.stringify(l)]);
    }
    if (push.length === 0) return;
    // A key record is never put over a revoked one: another gateway's copy may be older than the
    // revocation this gateway missed.
    const written = await Promise.all(push.map(([k, f, v]) => (k === this.keys ? this.link.cmd.airlockPutKey(k, f, v) : this.link.cmd.hset(k, f, v).then(() => 1))));
    // Gateways that stayed connected learn of what this one set while it was cut off.
    push.forEach(([k, , v], i) => {
      if (written[i] === 1) this.link.publish(k === this.kills ? 'kill' : 'key', JSON.parse(v));
    });
  }
}

const SCOPES = new Set<unknown>(['agent', 'team', 'target', 'all']);

/** A kill switch as this version writes it (anything else from Redis is ignored). */
function isKill(k: unknown): k is KillSwitch {
  const v = k as KillSwitch | undefined;
  return typeof v === 'object' && v !== null && SCOPES.has(v.scope) && typeof v.value === 'string' && typeof v.createdAt === 'string';
}

/** A stored key record as this version writes it: a SHA-256, never a key. */
function isKey(k: unknown): k is KeyRecord {
  const v = k as KeyRecord | undefined;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.id === 'string' &&
    v.id.startsWith('key_') &&
    typeof v.agent === 'string' &&
    v.source === 'store' &&
    typeof v.hash === 'string' &&
    /^[0-9a-f]{64}$/.test(v.hash) &&
    (v.expiresAt === undefined || typeof v.expiresAt === 'number') &&
    (v.revokedAt === undefined || typeof v.revokedAt === 'string')
  );
}
