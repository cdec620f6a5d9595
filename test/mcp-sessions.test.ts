/**
 * Sessions of the session-based MCP generation are bounded in all (10,000) and per agent (1,000):
 * an agent that opens sessions in a loop replaces only its own, and when the table is full an agent
 * with nothing of its own to replace is refused (429 concurrency_limited, a JSON-RPC error and an
 * audit record) rather than another agent's session ended. Run against the shipped limits, over
 * real sockets; the table's own bookkeeping is checked directly with small limits.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { MAX_SESSIONS, MAX_SESSIONS_PER_AGENT, SessionTable, type Session } from '../src/protocols/mcp/sessions.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { waitFor } from './support/mcp.js';

const crowd = Array.from({ length: 9 }, (_, i) => ({ name: `c${i + 1}`, key: `alk_crowd${i + 1}${'X'.repeat(34)}` }));

describe('mcp: session limits over the wire', () => {
  let t: TestGateway;
  const pool = new Agent({ connections: 32 });
  const post = async (key: string, body: Record<string, unknown>, sid?: string) => {
    const res = await request(`${t.agentUrl}/mcp`, {
      method: 'POST',
      dispatcher: pool,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', ...(sid ? { 'mcp-session-id': sid } : {}) },
      body: JSON.stringify({ jsonrpc: '2.0', ...body }),
    });
    const text = await res.body.text();
    return { status: res.statusCode, sid: res.headers['mcp-session-id'] as string | undefined, json: JSON.parse(text) };
  };
  const initialize = (key: string) => post(key, { id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'loop', version: '1' } } });
  const ping = (key: string, sid: string) => post(key, { id: 2, method: 'ping' }, sid);
  /** `n` initializes, 32 at a time; the session ids in the order they were asked for. */
  const flood = async (key: string, n: number): Promise<string[]> => {
    const ids: string[] = new Array(n);
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < n) {
          const i = next++;
          const r = await initialize(key);
          assert.equal(r.status, 200, JSON.stringify(r.json));
          ids[i] = r.sid!;
        }
      }),
    );
    return ids;
  };

  before(async () => {
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
  carol: { keys: ["${KEYS.carol}"] }
${crowd.map((c) => `  ${c.name}: { keys: ["${c.key}"] }`).join('\n')}
rules:
  - name: none
    allow: []
mcp:
  servers: {}
`);
  });
  after(async () => {
    await pool.close();
    await t?.stop();
  });

  it(`an agent opening ${MAX_SESSIONS} sessions replaces only its own; once the table is full, a newcomer is refused (429), not served at others' expense`, async () => {
    const bob = await initialize(KEYS.bob);
    assert.equal(bob.status, 200);
    const t0 = Date.now();
    const alice = await flood(KEYS.alice, MAX_SESSIONS);
    const floodMs = Date.now() - t0;
    assert.equal((await ping(KEYS.bob, bob.sid!)).status, 200, "bob's session survived alice's flood");
    assert.equal((await ping(KEYS.alice, alice.at(-1)!)).status, 200, "alice's newest session works");
    assert.equal((await ping(KEYS.alice, alice[0]!)).status, 404, "alice's oldest session was replaced by her own newer ones");

    // Nine more agents take their whole share: the table holds its maximum.
    for (const c of crowd) await flood(c.key, MAX_SESSIONS_PER_AGENT);
    const refused = await initialize(KEYS.carol);
    assert.equal(refused.status, 429, JSON.stringify(refused.json));
    assert.equal(refused.json.error.code, -32600);
    assert.match(refused.json.error.message, /^airlock: concurrency_limited: airlock already holds its 10000 MCP sessions/);
    assert.equal(refused.json.error.data.airlock_code, 'concurrency_limited');
    const rec = await waitFor(async () => ((await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=20`)).json.records as Record<string, any>[]).find((x) => x['id'] === refused.json.error.data.request_id));
    assert.equal(rec['code'], 'concurrency_limited');
    assert.equal(rec['agent'], 'carol');
    assert.equal((await ping(KEYS.bob, bob.sid!)).status, 200, "bob's session is still there");
    // An agent with sessions of its own still gets a new one, in place of its least recently used.
    assert.equal((await initialize(KEYS.alice)).status, 200);
    assert.equal((await ping(KEYS.bob, bob.sid!)).status, 200);
    assert.ok(floodMs < 30_000, `${MAX_SESSIONS} initializes took ${floodMs} ms`);
  });
});

describe('mcp: the session table', () => {
  const session = (id: string, agent: string): Session => ({ id, agent, keyId: `k-${agent}`, scope: undefined, protocolVersion: '2025-11-25', streams: new Set(), lastSeen: 0 });

  it('an agent at its share replaces its own least recently used session, never one with a GET stream', () => {
    const table = new SessionTable(10, 3);
    for (const id of ['a1', 'a2', 'a3']) assert.equal(table.open(session(id, 'a')), undefined);
    table.use('a1', 1); // a2 is now the least recently used
    assert.equal(table.open(session('a4', 'a')), undefined);
    assert.deepEqual(['a1', 'a2', 'a3', 'a4'].map((id) => table.get(id) !== undefined), [true, false, true, true]);
    table.get('a3')!.streams.add({} as never); // a3 holds a stream: a1 goes next, a3 stays
    assert.equal(table.open(session('a5', 'a')), undefined);
    assert.deepEqual(['a1', 'a3', 'a4', 'a5'].map((id) => table.get(id) !== undefined), [false, true, true, true]);
    for (const id of ['a3', 'a4', 'a5']) table.get(id)!.streams.add({} as never);
    assert.equal(table.open(session('a6', 'a')), 'agent_full', 'every session of its share has a stream');
    assert.equal(table.size, 3);
  });

  it('a full table: an agent with sessions of its own replaces one; an agent without is refused, and nobody else loses one', () => {
    const table = new SessionTable(4, 3);
    for (const id of ['a1', 'a2']) table.open(session(id, 'a'));
    for (const id of ['b1', 'b2']) table.open(session(id, 'b'));
    assert.equal(table.open(session('c1', 'c')), 'table_full');
    assert.equal(table.open(session('a3', 'a')), undefined);
    assert.deepEqual(['a1', 'a2', 'a3', 'b1', 'b2'].map((id) => table.get(id) !== undefined), [false, true, true, true, true]);
    table.delete('b1');
    assert.equal(table.open(session('c1', 'c')), undefined, 'room again once a session ends');
  });

  it('forgets idle sessions without a stream', () => {
    const table = new SessionTable();
    table.open(session('a1', 'a'));
    table.open(session('a2', 'a'));
    table.get('a2')!.streams.add({} as never);
    table.sweep(10_000, 5_000);
    assert.equal(table.get('a1'), undefined);
    assert.ok(table.get('a2'));
    assert.equal(table.size, 1);
  });
});
