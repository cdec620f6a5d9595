/**
 * The audit record (SPEC section 8) and its canonical form: JSON with keys sorted at every level
 * and undefined values left out, so a hash over it is reproducible by anyone.
 */
import { hash } from 'node:crypto';
import type { AuditBodies } from './bodies.js';

export type AuditDecision = 'allowed' | 'denied' | 'approved' | 'rejected' | 'expired' | 'killed' | 'limited';

/** Every audit decision (SPEC 8), for checking query filters. */
export const AUDIT_DECISIONS: readonly AuditDecision[] = ['allowed', 'denied', 'approved', 'rejected', 'expired', 'killed', 'limited'];

export interface AuditRecord {
  id: string;
  ts: string;
  /** `decision` is written before forwarding; `final` holds the whole exchange. */
  phase: 'decision' | 'final';
  agent: string | null;
  team?: string | undefined;
  user?: string | undefined;
  session?: string | undefined;
  protocol: string;
  action?: string | undefined;
  target?: Record<string, unknown> | undefined;
  decision: AuditDecision;
  rule?: string | undefined;
  approval?: { id: string; by?: string | undefined; waitedMs: number; reason?: string | undefined } | undefined;
  status?: number | undefined;
  code?: string | undefined;
  message?: string | undefined;
  durationMs?: number | undefined;
  usage?: { inputTokens: number; outputTokens: number; cachedInputTokens?: number | undefined; estimated: boolean } | undefined;
  costUsd?: number | undefined;
  bytesIn?: number | undefined;
  bytesOut?: number | undefined;
  /** Values replaced by `[redacted]` in `bodies`; set with them. */
  redactions?: number | undefined;
  /** With `audit.bodies: true`, final records only: the request and response bodies, redacted and cut (bodies.ts). */
  bodies?: AuditBodies | undefined;
  /** Protocol-specific facts (attempts, upstream model, MCP isError …); never secrets. */
  details?: Record<string, unknown> | undefined;
}

export const GENESIS_HASH = '0'.repeat(64);

/**
 * Object keys already JSON-quoted. Records reuse a few dozen key names; quoting each once rather
 * than per record makes `canonical` about 30% faster, and it runs twice per exchange on the hot
 * path. Bounded, since `details` may carry keys from upstream data.
 */
const QUOTED = new Map<string, string>();

function quoted(key: string): string {
  let q = QUOTED.get(key);
  if (q === undefined) {
    q = JSON.stringify(key);
    if (QUOTED.size < 1000) QUOTED.set(key, q);
  }
  return q;
}

/** Canonical JSON: sorted keys, no whitespace, undefined omitted. */
export function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonical(v))).join(',')}]`;
  const keys = Object.keys(value as object).sort();
  let out = '{';
  for (const k of keys) {
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += quoted(k) + ':' + canonical(v);
  }
  return out + '}';
}

/** Every field of an audit record, in sorted order. */
const RECORD_KEYS = ['action', 'agent', 'approval', 'bodies', 'bytesIn', 'bytesOut', 'code', 'costUsd', 'decision', 'details', 'durationMs', 'id', 'message', 'phase', 'protocol', 'redactions', 'rule', 'session', 'status', 'target', 'team', 'ts', 'usage', 'user'] as const;
// The compiler keeps the list whole: a field added to AuditRecord and missing here is a type error.
const allKeysListed: Exclude<keyof AuditRecord, (typeof RECORD_KEYS)[number]> extends never ? true : never = true;
void allKeysListed;
const QUOTED_RECORD_KEYS = RECORD_KEYS.map((k) => `${JSON.stringify(k)}:`);

/**
 * `canonical(record)` for an audit record, built for the hot path: a copy of the record with its
 * keys (and those of nested objects) in sorted order, undefined left out, serialized by one
 * `JSON.stringify`. That makes one flat string per record where building it piece by piece made
 * ~50 intermediate strings (about 1.6 KB of garbage per record, and a slow flattening later when
 * the batch was written).
 *
 * V8 serializes integer-like keys ("0", "42") before all others, whatever their insertion order,
 * which is not sorted order ("10" < "9" < "a"); a record with such a key anywhere (only possible in
 * `details` or `target`, which can carry upstream data) is built the slow way instead.
 */
export function canonicalRecord(record: AuditRecord): string {
  const sorted: Record<string, unknown> = {};
  digitKey = false;
  for (let i = 0; i < RECORD_KEYS.length; i++) {
    const k = RECORD_KEYS[i]!;
    const v = record[k];
    if (v !== undefined) sorted[k] = typeof v === 'object' && v !== null ? sortedCopy(v) : v;
  }
  return digitKey ? canonicalBySteps(record) : JSON.stringify(sorted);
}

/** Set by `sortedCopy` when it meets a key starting with a digit. */
let digitKey = false;

/** A value as `canonical` sees it, for JSON.stringify: objects rebuilt with sorted keys, undefined left out. */
function sortedCopy(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return typeof v === 'function' || typeof v === 'symbol' ? null : v;
  if (Array.isArray(v)) return v.map(sortedCopy);
  const keys = Object.keys(v);
  if (!inOrder(keys)) keys.sort(); // the doors build their targets in sorted order: no sort, no garbage
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const e = (v as Record<string, unknown>)[k];
    if (e === undefined) continue;
    const c = k.charCodeAt(0);
    if (c >= 48 && c <= 57) digitKey = true;
    out[k] = sortedCopy(e);
  }
  return out;
}

function inOrder(keys: string[]): boolean {
  for (let i = 1; i < keys.length; i++) if (keys[i - 1]! > keys[i]!) return false;
  return true;
}

/** `canonical(record)` the general way, field by field in sorted order. */
function canonicalBySteps(record: AuditRecord): string {
  let out = '{';
  for (let i = 0; i < RECORD_KEYS.length; i++) {
    const v = record[RECORD_KEYS[i]!];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += QUOTED_RECORD_KEYS[i]! + canonical(v);
  }
  return out + '}';
}

/** hash = sha256(prevHash + canonical record). One-shot `hash()`: no Hash object per record. */
export function chainHash(prevHash: string, canonicalRecord: string): string {
  return hash('sha256', prevHash + canonicalRecord, 'hex');
}
