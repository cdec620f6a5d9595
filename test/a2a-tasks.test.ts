/**
 * A2A tasks belong to the agent that started them. Every agent reaches a remote agent with the same
 * injected credential, so the remote agent cannot tell them apart: airlock binds each task (and
 * context) to the agent whose message created it, refuses every task call from anyone else on both
 * bindings and generations, cuts ListTasks down to the caller's own tasks, and keeps the owners
 * across a restart without stalling on a locked store.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { TaskState, type StreamResponse, type Task } from '@a2a-js/sdk';
import type { Client } from '@a2a-js/sdk/client';
import { TaskOwners } from '../src/protocols/a2a/owners.js';
import { DeferredWrites } from '../src/store/deferred.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { call, KEYS, startGateway, type Reply, type TestGateway } from './support/gateway.js';
import { sdkClient, startA2AUpstream, startWebhook, userMessage, type A2AUpstream } from './support/a2a.js';

function config(upUrl: string): string {
  return `
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
  carol: { keys: ["${KEYS.carol}"] }
rules:
  # alice and bob may call every method: only task ownership stands between them.
  - name: travellers
    agents: [alice, bob]
    allow: ["a2a: travel"]
  - name: carol-reads
    agents: [carol]
    allow: ["a2a: travel GetTask", "a2a: travel ListTasks", "a2a: travel CancelTask"]
a2a:
  agents:
    travel: { url: "${upUrl}", allowPrivatePushUrls: true }
`;
}

const isTask = (r: unknown): r is Task => typeof r === 'object' && r !== null && 'status' in r && 'artifacts' in r;
const noConfig = { acceptedOutputModes: [], taskPushNotificationConfig: undefined, historyLength: undefined, returnImmediately: true };
const listAll = { tenant: '', contextId: '', status: 0, pageSize: undefined, pageToken: '', historyLength: undefined, statusTimestampAfter: undefined, includeArtifacts: undefined };

function rpc(t: TestGateway, key: string, method: string, params: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return call(`${t.agentUrl}/a2a/travel`, { method: 'POST', key, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
}

function assertRpcDenied(r: Reply, what: string, re = /was not started by agent/): void {
  assert.equal(r.json?.error?.data?.airlock_code, 'denied', `${what}: ${r.text.slice(0, 300)}`);
  assert.equal(r.json.error.code, -31403, what);
  assert.match(r.json.error.message, re, what);
}

function assertRestDenied(r: Reply, what: string): void {
  assert.equal(r.status, 403, `${what}: ${r.text.slice(0, 300)}`);
  assert.equal(r.json.error.code, 'denied', what);
  assert.match(r.json.error.message, /was not started by agent/, what);
}

/** Calls the remote agent received on its A2A endpoints. */
const a2aCalls = (up: A2AUpstream) => up.seen.filter((s) => s.url.startsWith('/a2a/')).length;

describe('a2a: a task belongs to the agent that started it', () => {
  let up: A2AUpstream;
  let t: TestGateway;
  let alice: Client;
  let bob: Client;
  let task: Task;
  before(async () => {
    up = await startA2AUpstream();
    t = await startGateway(config(up.url));
    alice = await sdkClient(t.agentUrl, 'travel', KEYS.alice);
    bob = await sdkClient(t.agentUrl, 'travel', KEYS.bob);
    const r = await alice.sendMessage({ tenant: '', message: userMessage('ask me where'), configuration: undefined, metadata: undefined });
    assert.ok(isTask(r));
    assert.equal(r.status!.state, TaskState.TASK_STATE_INPUT_REQUIRED);
    task = r;
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('another agent cannot get, cancel, subscribe to or configure pushes on it: JSON-RPC 1.0 and 0.3, HTTP+JSON with and without a tenant', async () => {
    const hook = await startWebhook();
    const before = a2aCalls(up);
    try {
      // With the SDK, as an agent would.
      await assert.rejects(bob.getTask({ tenant: '', id: task.id, historyLength: undefined }), (e: Error & { data?: Record<string, unknown> }) => e.data?.['airlock_code'] === 'denied' && /was not started by agent "bob"/.test(e.message));
      await assert.rejects(bob.cancelTask({ tenant: '', id: task.id, metadata: undefined }), (e: Error & { data?: Record<string, unknown> }) => e.data?.['airlock_code'] === 'denied');
      const id = task.id;
      const rpcCalls: [string, unknown][] = [
        ['GetTask', { id }],
        ['tasks/get', { id }],
        ['CancelTask', { id }],
        ['tasks/cancel', { id }],
        ['SubscribeToTask', { id }],
        ['tasks/resubscribe', { id }],
        ['CreateTaskPushNotificationConfig', { taskId: id, url: hook.url }],
        ['tasks/pushNotificationConfig/set', { taskId: id, pushNotificationConfig: { url: hook.url } }],
        ['GetTaskPushNotificationConfig', { taskId: id, id: 'c1' }],
        ['tasks/pushNotificationConfig/get', { id, pushNotificationConfigId: 'c1' }],
        ['ListTaskPushNotificationConfigs', { taskId: id }],
        ['tasks/pushNotificationConfig/list', { id }],
        ['DeleteTaskPushNotificationConfig', { taskId: id, id: 'c1' }],
        ['tasks/pushNotificationConfig/delete', { id, pushNotificationConfigId: 'c1' }],
        // A 1.0 release-candidate resource name.
        ['GetTask', { name: `tasks/${id}` }],
      ];
      for (const [m, p] of rpcCalls) assertRpcDenied(await rpc(t, KEYS.bob, m, p), `${m} ${JSON.stringify(p)}`);
      const v1 = { 'a2a-version': '1.0' };
      const restCalls: [string, string, string?][] = [
        ['GET', `/tasks/${id}`],
        ['GET', `/some-tenant/tasks/${id}`],
        ['POST', `/tasks/${id}:cancel`],
        ['POST', `/some-tenant/tasks/${id}:cancel`],
        ['GET', `/tasks/${id}:subscribe`],
        ['POST', `/tasks/${id}/pushNotificationConfigs`, JSON.stringify({ url: hook.url })],
        // The path names bob's made-up id, the body alice's task: both are checked.
        ['POST', `/tasks/not-mine/pushNotificationConfigs`, JSON.stringify({ taskId: id, url: hook.url })],
        ['GET', `/tasks/${id}/pushNotificationConfigs`],
        ['GET', `/tasks/${id}/pushNotificationConfigs/c1`],
        ['DELETE', `/tasks/${id}/pushNotificationConfigs/c1`],
        ['GET', `/v1/tasks/${id}`],
        ['POST', `/v1/tasks/${id}:cancel`],
      ];
      for (const [method, path, body] of restCalls) {
        const r = await call(`${t.agentUrl}/a2a/travel${path}`, { method, key: KEYS.bob, headers: { ...v1, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body } : {}) });
        assertRestDenied(r, `${method} ${path}`);
      }
      assert.equal(a2aCalls(up), before, 'none of them reached the remote agent');
      assert.equal(hook.received.length, 0);
      // The refusals are audit records naming the task.
      const audit = await call(`${t.adminUrl}/api/audit?agent=bob&protocol=a2a&decision=denied&limit=100`);
      const rec = (audit.json.records as Record<string, any>[]).find((x) => x['action'] === 'a2a: travel GetTask' && x['target']?.taskId === id);
      assert.ok(rec, 'an audit record of the refusal');
      assert.equal(rec['code'], 'denied');
      // The owner still has it.
      const got = await alice.getTask({ tenant: '', id, historyLength: undefined });
      assert.equal(got.id, id);
      assert.equal(got.status!.state, TaskState.TASK_STATE_INPUT_REQUIRED, 'bob\'s cancels never reached it');
    } finally {
      await hook.close();
    }
  });

  it('SendMessage cannot continue, reference or join another agent\'s task or conversation', async () => {
    const before = a2aCalls(up);
    const msg = (extra: Record<string, unknown>) => ({ message: { messageId: `b-${Math.random()}`, role: 'ROLE_USER', parts: [{ text: 'Lisbon instead' }], ...extra } });
    const attempts: [string, string, unknown][] = [
      ['message.taskId', 'SendMessage', msg({ taskId: task.id })],
      ['message.task_id', 'SendMessage', msg({ task_id: task.id })],
      ['a second, own-looking taskId first', 'SendMessage', { taskId: '', ...msg({ taskId: task.id }) }],
      ['message.referenceTaskIds', 'SendMessage', msg({ referenceTaskIds: [task.id] })],
      ['streaming, message.taskId', 'SendStreamingMessage', msg({ taskId: task.id })],
      ['0.3 message/send', 'message/send', { message: { kind: 'message', messageId: 'b03', role: 'user', parts: [{ kind: 'text', text: 'x' }], taskId: task.id } }],
    ];
    for (const [what, m, p] of attempts) assertRpcDenied(await rpc(t, KEYS.bob, m, p), what);
    assertRpcDenied(await rpc(t, KEYS.bob, 'SendMessage', msg({ contextId: task.contextId })), 'message.contextId', /another agent's conversation/);
    for (const odd of [{ taskId: 42 }, { taskId: [task.id] }, { referenceTaskIds: task.id }]) {
      const bad = await rpc(t, KEYS.bob, 'SendMessage', msg(odd));
      assert.equal(bad.json.error?.data?.airlock_code, 'bad_request', `${JSON.stringify(odd)}: an id that is not a string is refused, not guessed at`);
    }
    const rest = await call(`${t.agentUrl}/a2a/travel/message:send`, { method: 'POST', key: KEYS.bob, headers: { 'content-type': 'application/json', 'a2a-version': '1.0' }, body: JSON.stringify(msg({ taskId: task.id })) });
    assertRestDenied(rest, 'REST message:send');
    assert.equal(a2aCalls(up), before, 'none of them reached the remote agent');
    // The owner continues her own task.
    const done = await alice.sendMessage({ tenant: '', message: userMessage('Porto', { taskId: task.id, contextId: task.contextId }), configuration: undefined, metadata: undefined });
    assert.ok(isTask(done));
    assert.equal(done.id, task.id);
    assert.equal(done.status!.state, TaskState.TASK_STATE_COMPLETED);
  });

  it('ListTasks shows each agent only its own tasks, over JSON-RPC and HTTP+JSON', async () => {
    const bobs = await bob.sendMessage({ tenant: '', message: userMessage('bob trip'), configuration: undefined, metadata: undefined });
    assert.ok(isTask(bobs));
    const aliceRest = await sdkClient(t.agentUrl, 'travel', KEYS.alice, 'HTTP+JSON');
    const bobRest = await sdkClient(t.agentUrl, 'travel', KEYS.bob, 'HTTP+JSON');
    for (const [who, client, mine, theirs] of [
      ['alice, JSON-RPC', alice, task.id, bobs.id],
      ['alice, REST', aliceRest, task.id, bobs.id],
      ['bob, JSON-RPC', bob, bobs.id, task.id],
      ['bob, REST', bobRest, bobs.id, task.id],
    ] as const) {
      const list = await client.listTasks(listAll);
      const ids = list.tasks.map((x) => x.id);
      assert.ok(ids.includes(mine), `${who} sees its own task`);
      assert.ok(!ids.includes(theirs), `${who} does not see the other's task`);
      assert.equal(list.totalSize, list.tasks.length, `${who}: the total counts only what it may see`);
    }
    // Carol started nothing: she sees nothing, not even a count.
    const c = await rpc(t, KEYS.carol, 'ListTasks', {}, { 'a2a-version': '1.0' });
    assert.deepEqual(c.json.result.tasks ?? [], []);
    assert.equal(c.json.result.totalSize ?? 0, 0);
    assert.ok(!c.text.includes(task.id) && !c.text.includes(bobs.id));
    const recs = await call(`${t.adminUrl}/api/audit?agent=carol&protocol=a2a&limit=10`);
    const rec = (recs.json.records as Record<string, any>[]).find((x) => x['phase'] === 'final' && x['action'] === 'a2a: travel ListTasks');
    assert.equal(rec?.['details']?.tasksHidden, 2);
  });

  it('a task id airlock never saw is refused, even for the agent naming it (default deny); nothing is forwarded', async () => {
    const before = a2aCalls(up);
    assertRpcDenied(await rpc(t, KEYS.alice, 'GetTask', { id: 'made-before-airlock' }), 'unknown task');
    assertRestDenied(await call(`${t.agentUrl}/a2a/travel/tasks/made-before-airlock`, { key: KEYS.alice }), 'unknown task, REST');
    const none = await rpc(t, KEYS.alice, 'GetTask', {});
    assert.equal(none.json.error?.data?.airlock_code, 'bad_request', 'a task method must name its task');
    assert.equal(a2aCalls(up), before);
  });

  it('a rule\'s refusal still names the rule: carol, whose rules do not allow SubscribeToTask, hears about the rule, not the task', async () => {
    const r = await rpc(t, KEYS.carol, 'SubscribeToTask', { id: task.id });
    assert.equal(r.json.error.data.airlock_code, 'denied');
    assert.match(r.json.error.message, /default deny/);
  });

  it('a task started with a stream is bound as soon as the first event names it', async () => {
    const stream = alice.sendMessageStream({ tenant: '', message: userMessage('slow streamed trip'), configuration: undefined, metadata: undefined });
    let id: string | undefined;
    const events: StreamResponse[] = [];
    for await (const e of stream) {
      events.push(e);
      if (id !== undefined) continue;
      id = e.payload?.$case === 'task' ? e.payload.value.id : undefined;
      assert.ok(id, 'the first event is the task');
      // The stream is still running: the task is already alice's, and not bob's.
      assertRpcDenied(await rpc(t, KEYS.bob, 'GetTask', { id }), 'bob, mid-stream');
      const mine = await rpc(t, KEYS.alice, 'GetTask', { id }, { 'a2a-version': '1.0' });
      assert.equal(mine.json.result?.id, id, mine.text.slice(0, 300));
      await alice.cancelTask({ tenant: '', id, metadata: undefined });
    }
    assert.ok(events.length >= 2);
  });
});

describe('a2a: task owners survive a restart and a locked store', () => {
  let up: A2AUpstream;
  let dir: string;
  let yaml: string;
  before(async () => {
    up = await startA2AUpstream();
    dir = mkdtempSync(join(tmpdir(), 'airlock-a2a-owners-'));
    yaml = `data: ${join(dir, 'data')}\n${config(up.url)}`;
  });
  after(async () => {
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('owners learned before a restart still hold after it', async () => {
    let t = await startGateway(yaml, { dir });
    let started: Task;
    try {
      const r = await (await sdkClient(t.agentUrl, 'travel', KEYS.alice)).sendMessage({ tenant: '', message: userMessage('slow restart trip'), configuration: noConfig, metadata: undefined });
      assert.ok(isTask(r));
      started = r;
    } finally {
      await t.stop();
    }
    t = await startGateway(yaml, { dir });
    try {
      assertRpcDenied(await rpc(t, KEYS.bob, 'GetTask', { id: started.id }), 'bob after the restart');
      const got = await rpc(t, KEYS.alice, 'GetTask', { id: started.id }, { 'a2a-version': '1.0' });
      assert.equal(got.json.result?.id, started.id, got.text.slice(0, 300));
    } finally {
      await t.stop();
    }
  });

  it('an owner learned while another process holds the store\'s lock is in force at once and stored once the lock is released', async () => {
    const t = await startGateway(yaml, { dir });
    const other = new Database(join(dir, 'data', 'airlock.db'));
    const stored = (id: string) => (other.prepare("SELECT owner FROM a2a_owners WHERE remote = 'travel' AND kind = 'task' AND id = ?").get(id) as { owner: string } | undefined)?.owner;
    try {
      // The call is let through (its decision record stored) before the lock is taken; the remote
      // agent answers ~100 ms later, while the lock is held.
      const seen = up.seen.length;
      const t0 = performance.now();
      const pending = request(`${t.agentUrl}/a2a/travel`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEYS.alice}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'lk', role: 'ROLE_USER', parts: [{ text: 'locked store trip' }] } } }),
      });
      while (up.seen.length === seen) await new Promise((r) => setTimeout(r, 2));
      other.exec('BEGIN IMMEDIATE');
      const res = await pending;
      const answer = (await res.body.json()) as { result?: { task?: { id: string } } };
      const id = answer.result?.task?.id;
      assert.ok(id, JSON.stringify(answer));
      assert.ok(performance.now() - t0 < 1500, `the answer took ${Math.round(performance.now() - t0)} ms: it waited for the lock`);
      const admin = performance.now();
      assert.equal((await call(`${t.adminUrl}/healthz`)).status, 200);
      assert.ok(performance.now() - admin < 500, 'the event loop is not stalled');
      assert.equal(stored(id), undefined, 'nothing can be written while the lock is held');
      // Owners are written in batches, every 100 ms: the log says when the batch meets the lock.
      for (let i = 0; i < 100 && !/the store did not take .*A2A task owner/.test(t.logs()); i++) await new Promise((r) => setTimeout(r, 20));
      assert.match(t.logs(), /the store did not take .*A2A task owner/);
      other.exec('COMMIT');
      for (let i = 0; i < 150 && stored(id) === undefined; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(stored(id), 'alice');
      assertRpcDenied(await rpc(t, KEYS.bob, 'GetTask', { id }), 'bob');
      assert.equal((await rpc(t, KEYS.alice, 'GetTask', { id }, { 'a2a-version': '1.0' })).json.result?.id, id);
    } finally {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
      await t.stop();
    }
  });
});

describe('a2a: task owner memory is bounded', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-a2a-owner-memory-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const DAY = 24 * 3600_000;

  it('forgets ids after 30 days, an agent\'s oldest past its cap, the oldest of all past the gateway\'s cap — in memory and in the store', () => {
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const store = new SqliteStore(join(dir, 'a'));
    const owners = new TaskOwners(store, new DeferredWrites(store, () => {}), () => clock, { maxIds: 5, maxPerOwner: 3 });
    const stored = () => {
      owners.flush(); // written in batches: hand over what waits
      return (store.db.prepare('SELECT id FROM a2a_owners ORDER BY created_at, id').all() as { id: string }[]).map((r) => r.id);
    };
    assert.ok(owners.claim('travel', 'task', 'old', 'alice'));
    clock += 29 * DAY;
    assert.equal(owners.owner('travel', 'task', 'old'), 'alice');
    assert.equal(owners.claim('travel', 'task', 'old', 'bob'), false, 'the first owner stays');
    clock += 2 * DAY;
    assert.equal(owners.owner('travel', 'task', 'old'), undefined, 'forgotten after 30 days: unknown, so refused');
    assert.deepEqual(stored(), []);
    // bob's fourth task pushes out bob's oldest, not alice's.
    owners.claim('travel', 'task', 'a1', 'alice');
    for (const id of ['b1', 'b2', 'b3', 'b4']) owners.claim('travel', 'task', id, 'bob');
    assert.equal(owners.owner('travel', 'task', 'b1'), undefined);
    assert.equal(owners.owner('travel', 'task', 'a1'), 'alice');
    assert.deepEqual(stored(), ['a1', 'b2', 'b3', 'b4']);
    // The gateway's cap: the oldest of all goes.
    owners.claim('travel', 'context', 'c1', 'carol');
    owners.claim('travel', 'task', 'c2', 'carol');
    assert.equal(owners.owner('travel', 'task', 'a1'), undefined);
    assert.deepEqual(stored(), ['b2', 'b3', 'b4', 'c1', 'c2']);
    // The same id on another remote agent, or as a context, is another id.
    assert.equal(owners.owner('flights', 'task', 'b2'), undefined);
    assert.equal(owners.owner('travel', 'task', 'c1'), undefined);
    // Loaded again, only what is younger than 30 days comes back.
    clock += 30 * DAY + 1;
    const again = new TaskOwners(store, new DeferredWrites(store, () => {}), () => clock);
    assert.equal(again.owner('travel', 'task', 'b2'), undefined);
    assert.deepEqual(stored(), [], 'expired ids are deleted from the store at start');
    store.close();
  });
});
