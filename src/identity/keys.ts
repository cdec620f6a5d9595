/**
 * Agent keys: `alk_` + base62. Only a key's SHA-256 is ever kept; lookups hash what the caller
 * presented and find it in an in-memory index, so a check costs one hash and one map lookup.
 */
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KEY_RE = /^alk_[0-9A-Za-z]{32,128}$/;

/** A new random agent key with 40 base62 characters (~238 bits). */
export function generateKey(): string {
  return `alk_${randomBase62(40)}`;
}

/** Random base62 text without modulo bias. */
export function randomBase62(n: number): string {
  let out = '';
  while (out.length < n) {
    for (const b of randomBytes(n * 2)) {
      if (b < 248) out += BASE62[b % 62];
      if (out.length === n) break;
    }
  }
  return out;
}

export function isWellFormedKey(key: string): boolean {
  return KEY_RE.test(key);
}

/** SHA-256 hex of a key: what the store keeps. (One-shot `hash()`: it runs on every request.) */
export function hashKey(key: string): string {
  return hash('sha256', key, 'hex');
}

/** The part of a key safe to show: `alk_AbCd`. */
export function keyPrefix(key: string): string {
  return key.slice(0, 8);
}

/** Constant-time comparison of two hex digests of equal length. */
export function sameDigest(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

export interface KeyRecord {
  id: string;
  agent: string;
  hash: string;
  prefix: string;
  source: 'config' | 'store';
  createdAt: string | undefined;
  /** Epoch ms; undefined = never. */
  expiresAt: number | undefined;
  revokedAt: string | undefined;
}

/** The in-memory index of usable keys, by hash. */
export class KeyRing {
  private byHash = new Map<string, KeyRecord>();

  /** Replaces the whole index (at start and on reload). */
  reset(records: Iterable<KeyRecord>): void {
    const m = new Map<string, KeyRecord>();
    for (const r of records) if (!r.revokedAt) m.set(r.hash, r);
    this.byHash = m;
  }

  add(r: KeyRecord): void {
    if (!r.revokedAt) this.byHash.set(r.hash, r);
  }

  /** Removes a key by id; its record, if it was present. */
  remove(id: string): KeyRecord | undefined {
    for (const [h, r] of this.byHash) {
      if (r.id === id) {
        this.byHash.delete(h);
        return r;
      }
    }
    return undefined;
  }

  /** True while the key with this id is known, unrevoked and unexpired (a scan: for rare checks, not every request). */
  usable(id: string, now: number): boolean {
    for (const r of this.byHash.values()) if (r.id === id) return r.expiresAt === undefined || r.expiresAt > now;
    return false;
  }

  /** The key record for a presented key, if it is known, unrevoked and unexpired. */
  find(presented: string, now: number): KeyRecord | undefined {
    if (presented.length < 36 || presented.length > 132 || !presented.startsWith('alk_')) return undefined;
    const r = this.byHash.get(hashKey(presented));
    if (!r) return undefined;
    if (r.expiresAt !== undefined && r.expiresAt <= now) return undefined;
    return r;
  }
}
