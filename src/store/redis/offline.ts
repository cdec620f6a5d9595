/**
 * The CLI's changes to a cluster's shared state when no gateway is running on this machine: a kill
 * switch set or lifted, a key made or revoked with `airlock kill` / `airlock keys` goes into the
 * cluster's copy in Redis and is announced, so the cluster's running gateways put it in force at
 * once (as if it had been made through one of their admin ports). The same layout as `sync.ts`.
 */
import { Redis } from 'ioredis';
import type { KeyRecord } from '../../identity/keys.js';
import type { KillScope, KillSwitch } from '../types.js';

export type OfflineChange = { type: 'kill'; kill: KillSwitch } | { type: 'unkill'; scope: KillScope; value: string; by: string | undefined } | { type: 'key'; key: KeyRecord };

async function withRedis<T>(url: string, use: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 2_000, commandTimeout: 2_000, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    return await use(r);
  } finally {
    r.disconnect();
  }
}

const killField = (scope: KillScope, value: string) => `${scope}\n${value}`;

/** Writes a change into the cluster's copy and announces it; throws when Redis cannot be reached. Returns whether the cluster had the thing changed (for lifts). */
export function shareChange(redis: { url: string; prefix: string }, change: OfflineChange): Promise<boolean> {
  const p = redis.prefix;
  return withRedis(redis.url, async (r) => {
    const announce = (type: string, data: unknown) => r.publish(`${p}events`, JSON.stringify({ from: 'cli', type, data }));
    if (change.type === 'kill') {
      await r.hset(`${p}kills`, killField(change.kill.scope, change.kill.value), JSON.stringify(change.kill));
      await announce('kill', change.kill);
      return true;
    }
    if (change.type === 'unkill') {
      const f = killField(change.scope, change.value);
      const [[, removed]] = (await r.multi().hdel(`${p}kills`, f).hset(`${p}kills:lifted`, f, new Date().toISOString()).exec()) as [[unknown, number]];
      await announce('unkill', { scope: change.scope, value: change.value, by: change.by });
      return removed > 0;
    }
    await r.hset(`${p}keys`, change.key.id, JSON.stringify(change.key));
    await announce('key', change.key);
    return true;
  });
}

/** A stored key as the cluster knows it (one made on another machine), if any. */
export function clusterKey(redis: { url: string; prefix: string }, id: string): Promise<KeyRecord | undefined> {
  return withRedis(redis.url, async (r) => {
    const text = await r.hget(`${redis.prefix}keys`, id);
    if (text === null) return undefined;
    try {
      const k = JSON.parse(text) as KeyRecord;
      return k.id === id ? k : undefined;
    } catch {
      return undefined;
    }
  });
}
