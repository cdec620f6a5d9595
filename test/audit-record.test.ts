/**
 * The canonical form of an audit record (SPEC 8: the hash covers it, so anyone must be able to
 * rebuild it): JSON with keys sorted at every level, undefined values left out, no whitespace.
 * Checked against a reference written here from that definition, on records with the awkward
 * parts upstream data can bring: keys that look like numbers (which V8 would put first), unicode,
 * nested arrays and objects with undefined in them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalRecord, type AuditRecord } from '../src/audit/record.js';

/** The definition, naively: sort every object's keys, drop undefined members, JSON for the rest. */
function reference(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((e) => (e === undefined || typeof e === 'function' ? 'null' : reference(e))).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const members = Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${typeof o[k] === 'function' ? 'null' : reference(o[k])}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

const base: AuditRecord = {
  id: '6f1c2a8e-0000-4000-8000-000000000001',
  ts: '2026-11-21T17:00:00.000Z',
  phase: 'final',
  agent: 'alice',
  team: undefined,
  user: 'u-1',
  session: undefined,
  protocol: 'http',
  action: 'http: GET svc/items/42',
  target: { service: 'svc', method: 'GET', path: '/items/42' },
  decision: 'allowed',
  rule: 'reads',
  status: 200,
  durationMs: 1.234,
  bytesIn: 0,
  bytesOut: 100,
};

const cases: [string, AuditRecord][] = [
  ['a plain /http outcome', base],
  ['a decision record (fewer fields)', { id: base.id, ts: base.ts, phase: 'decision', agent: 'alice', protocol: 'http', action: base.action, target: base.target, decision: 'allowed', rule: 'reads' }],
  ['a refusal without an agent', { id: base.id, ts: base.ts, phase: 'final', agent: null, protocol: 'mcp', decision: 'denied', code: 'unauthenticated', message: 'no agent key: send it as "Authorization: Bearer alk_..."', status: 401, durationMs: 0.1 }],
  ['an LLM outcome with usage and approval', { ...base, protocol: 'llm', usage: { outputTokens: 5, inputTokens: 11, estimated: false, cachedInputTokens: undefined }, costUsd: 0.000123, approval: { waitedMs: 1500, id: 'ap_1', by: 'ops@example.com', reason: undefined } }],
  ['details with keys that look like numbers', { ...base, details: { 404: 'not found', 10: 'ten', 9: 'nine', a: 1, '1x': true, '': 'empty' } }],
  ['nested details: arrays, undefined, null, unicode, escapes', { ...base, details: { zeta: [1, undefined, { b: 2, a: [null, 'x'] }], alpha: { nested: { z: undefined, y: 'é\u2028"\\\n' } }, 'ключ': '値', empty: {}, none: null } }],
  ['numbers JSON cannot keep', { ...base, durationMs: Number.NaN, bytesOut: -0, details: { big: 1e21, small: 1e-7, inf: Number.POSITIVE_INFINITY } }],
  ['a target with a digit key', { ...base, target: { server: 'github', tool: 'create_issue', 0: 'zero' } }],
];

describe('canonical audit records', () => {
  for (const [name, rec] of cases) {
    it(name, () => {
      const text = canonicalRecord(rec);
      assert.equal(text, reference(rec));
      assert.deepEqual(Object.keys(JSON.parse(text) as object), Object.keys(JSON.parse(text) as object).sort(), 'top-level keys in sorted order');
    });
  }

  it('gives the same text for the same record built in another key order', () => {
    const shuffled = Object.fromEntries(Object.entries(base).reverse()) as unknown as AuditRecord;
    assert.equal(canonicalRecord(shuffled), canonicalRecord(base));
  });
});
