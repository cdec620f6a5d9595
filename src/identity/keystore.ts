/** Creating and revoking stored agent keys; used by the admin API and, with no gateway running, the CLI. */
import type { Store } from '../store/types.js';
import { generateKey, hashKey, keyPrefix, randomBase62, type KeyRecord } from './keys.js';

export interface CreatedKey {
  key: string;
  record: KeyRecord;
}

/** Makes a key for `agent`, keeps its hash, and returns the key itself: the only time it is seen. */
export function createStoredKey(store: Store, agent: string, expiresInMs: number | undefined, now = Date.now()): CreatedKey {
  const key = generateKey();
  const record: KeyRecord = {
    id: `key_${randomBase62(12)}`,
    agent,
    hash: hashKey(key),
    prefix: keyPrefix(key),
    source: 'store',
    createdAt: new Date(now).toISOString(),
    expiresAt: expiresInMs === undefined ? undefined : now + expiresInMs,
    revokedAt: undefined,
  };
  store.insertKey(record);
  return { key, record };
}

/** A key as shown to operators: never the hash. */
export function publicKey(r: KeyRecord, now = Date.now()): Record<string, unknown> {
  const status = r.revokedAt ? 'revoked' : r.expiresAt !== undefined && r.expiresAt <= now ? 'expired' : 'active';
  return {
    id: r.id,
    agent: r.agent,
    prefix: r.prefix,
    source: r.source,
    createdAt: r.createdAt ?? null,
    expiresAt: r.expiresAt === undefined ? null : new Date(r.expiresAt).toISOString(),
    revokedAt: r.revokedAt ?? null,
    status,
  };
}
