/**
 * Human in the loop (SPEC section 6) on the /http front door: held calls wait with the agent's
 * connection open until a person decides through the admin API or the CLI (a separate process).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Agent, request } from 'undici';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { freePort, runCli, spawnCli, startCliGateway, tempDir, waitFor, writeConfig } from './support/cli.js';
import { startUpstream, type Upstream } from './support/upstream.js';

function config(upUrl: string, extra = ''): string {
  return `
agents:
  alice: { team: ops, keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: use-api
    allow: ["http: * api/**"]
  - name: writes-need-a-human
    approve: ["http: POST,DELETE api/**"]
approvals: { timeout: 2s }
http:
  services:
    api: { url: "${upUrl}" }
${extra}`;
}

async function pendingFor(t: { adminUrl: string; token?: string }, action: string): Promise<{ id: string; summary: string; agent: string; user?: string; session?: string; createdAt: string; expiresAt: string }> {
  return waitFor(`a pending approval for ${action}`, async () => {
    const r = await call(`${t.adminUrl}/api/approvals?status=pending`, t.token ? { headers: { authorization: `Bearer ${t.token}` } } : {});
    return (r.json.approvals as { action: string; id: string }[]).find((a) => a.action === action) as never;
  });
}

async function auditOf(t: TestGateway, id: string, token?: string): Promise<Record<string, any>> {
  return waitFor(`the final audit record of ${id}`, async () => {
    const r = await call(`${t.adminUrl}/api/audit?limit=200`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    return (r.json.records as { id: string; phase: string }[]).find((x) => x.id === id && x.phase === 'final') as never;
  });
}

const TOKEN = 'admin-token-0123456789';

describe('approvals: decisions through the admin API', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(config(up.url, `admin: { tokens: [{ name: oncall-alice, token: "${TOKEN}" }] }`));
  });
  after(async () => {
    await t.stop();
    await up.close();
  });
  const admin = (path: string, body?: unknown, method = body === undefined ? 'GET' : 'POST') =>
    call(`${t.adminUrl}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

  it('holds the call (nothing upstream) with a readable summary, and runs it once approved', async () => {
    const before = up.received.length;
    const held = call(`${t.agentUrl}/http/api/tickets?x=1`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', 'x-airlock-user': 'u-42', 'x-airlock-session': 's-1' }, body: '{"title":"printer on fire"}' });
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/tickets');
    assert.equal(up.received.length, before, 'nothing reached the upstream while held');
    assert.equal(a.agent, 'alice');
    assert.equal(a.user, 'u-42');
    assert.equal(a.session, 's-1');
    assert.match(a.summary, /POST http:\/\/127\.0\.0\.1:\d+\/tickets\?x=1/);
    assert.match(a.summary, /printer on fire/);
    assert.ok(Date.parse(a.expiresAt) - Date.parse(a.createdAt) === 2000);
    const d = await admin(`/api/approvals/${a.id}`, { decision: 'approve', reason: 'looks fine' });
    assert.equal(d.status, 200);
    const r = await held;
    assert.equal(r.status, 200);
    assert.equal(up.received.length, before + 1);
    assert.equal(up.received.at(-1)!.body.toString(), '{"title":"printer on fire"}');
    const rec = await auditOf(t, String(r.headers['x-airlock-request-id']), TOKEN);
    assert.equal(rec['decision'], 'approved');
    assert.equal(rec['approval'].id, a.id);
    assert.match(rec['approval'].by, /oncall-alice/);
    assert.equal(typeof rec['approval'].waitedMs, 'number');
    assert.equal(rec['approval'].reason, 'looks fine');
  });

  it('summaries leave secrets out, as MCP and A2A excerpts do: JSON bodies, forms and query strings; the call itself is unchanged', async () => {
    const jsonBody = '{"title":"rotate","password":"hunter2","nested":{"api_key":"k-123"},"note":"uses sk-abcdefghijklmnopqrstuvwx"}';
    const held = call(`${t.agentUrl}/http/api/secrets?token=tok-456&page=2`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json' }, body: jsonBody });
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/secrets');
    for (const secret of ['hunter2', 'k-123', 'sk-abcdefghijklmnopqrstuvwx', 'tok-456']) assert.ok(!a.summary.includes(secret), `${secret} is not in: ${a.summary}`);
    assert.match(a.summary, /\/secrets\?token=\[redacted\]&page=2/);
    assert.match(a.summary, /"title":"rotate"/);
    assert.match(a.summary, /"password":"\[redacted\]"/);
    await admin(`/api/approvals/${a.id}`, { decision: 'approve' });
    assert.equal((await held).status, 200);
    assert.equal(up.received.at(-1)!.body.toString(), jsonBody, 'the upstream gets the body as sent');
    assert.equal(up.received.at(-1)!.url, '/secrets?token=tok-456&page=2');

    const form = call(`${t.agentUrl}/http/api/login`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'user=ann&client_secret=s3cr3t&pass=pw1' });
    const f = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/login');
    assert.match(f.summary, /user=ann&client_secret=\[redacted\]&pass=\[redacted\]/);
    await admin(`/api/approvals/${f.id}`, { decision: 'deny' });
    assert.equal((await form).status, 403);
  });

  it('a denial answers 403 approval_denied with the reason, and the upstream never sees the call', async () => {
    const before = up.received.length;
    const held = call(`${t.agentUrl}/http/api/users/7`, { method: 'DELETE', key: KEYS.alice });
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: DELETE api/users/7');
    await admin(`/api/approvals/${a.id}`, { decision: 'deny', reason: 'not during the freeze' });
    const r = await held;
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'approval_denied');
    assert.match(r.json.error.message, /not during the freeze/);
    assert.equal(up.received.length, before);
    const rec = await auditOf(t, r.json.error.request_id, TOKEN);
    assert.equal(rec['decision'], 'rejected');
    assert.equal(rec['approval'].reason, 'not during the freeze');
  });

  it('nobody answering within approvals.timeout → 403 approval_timeout, approval expired', async () => {
    const t0 = Date.now();
    const r = await call(`${t.agentUrl}/http/api/slow`, { method: 'POST', key: KEYS.bob, body: 'x' });
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'approval_timeout');
    assert.ok(Date.now() - t0 >= 1900, 'waited for the timeout');
    const list = await admin('/api/approvals?status=expired');
    assert.ok(list.json.approvals.some((a: { action: string }) => a.action === 'http: POST api/slow'));
    const rec = await auditOf(t, r.json.error.request_id, TOKEN);
    assert.equal(rec['decision'], 'expired');
  });

  it('deciding an unknown id is 404, deciding twice is 409, and concurrent decisions run the call exactly once', async () => {
    assert.equal((await admin('/api/approvals/apr_nope', { decision: 'approve' })).status, 404);
    const before = up.received.length;
    const held = call(`${t.agentUrl}/http/api/once`, { method: 'POST', key: KEYS.alice, body: 'x' });
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/once');
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => admin(`/api/approvals/${a.id}`, { decision: i % 2 ? 'deny' : 'approve' })));
    assert.equal(results.filter((r) => r.status === 200).length, 1);
    assert.equal(results.filter((r) => r.status === 409).length, 9);
    for (const r of results.filter((x) => x.status === 409)) assert.equal(r.json.error.code, 'conflict');
    const r = await held;
    const winner = results.find((x) => x.status === 200)!.json.status;
    assert.equal(r.status, winner === 'approved' ? 200 : 403);
    assert.equal(up.received.length - before, winner === 'approved' ? 1 : 0);
    assert.equal((await admin(`/api/approvals/${a.id}`, { decision: 'approve' })).status, 409);
  });

  it('bad decisions are 400', async () => {
    assert.equal((await admin('/api/approvals/apr_x', { decision: 'maybe' })).json.error.code, 'bad_request');
    assert.equal((await admin('/api/approvals/apr_x', { decision: 'deny', remember: '10m' })).json.error.code, 'bad_request');
    assert.equal((await admin('/api/approvals/apr_x', { decision: 'approve', remember: 'soon' })).json.error.code, 'bad_request');
    assert.equal((await admin('/api/approvals?status=nope')).status, 400);
    assert.equal((await call(`${t.adminUrl}/api/approvals`)).status, 401, 'the admin token is required');
  });

  it('remember approves the same agent + action + arguments for a while; it is listed and revocable', async () => {
    const first = call(`${t.agentUrl}/http/api/deploy`, { method: 'POST', key: KEYS.alice, body: 'v1' });
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/deploy');
    await admin(`/api/approvals/${a.id}`, { decision: 'approve', remember: '10m' });
    assert.equal((await first).status, 200);
    const again = await call(`${t.agentUrl}/http/api/deploy`, { method: 'POST', key: KEYS.alice, body: 'v1' });
    assert.equal(again.status, 200, 'the same call passes without a new hold');
    const rec = await auditOf(t, String(again.headers['x-airlock-request-id']), TOKEN);
    assert.equal(rec['decision'], 'approved');
    assert.match(rec['approval'].by, /remembered/);
    // Other arguments or another agent are held again.
    const other = call(`${t.agentUrl}/http/api/deploy`, { method: 'POST', key: KEYS.alice, body: 'v2' });
    const a2 = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/deploy');
    assert.notEqual(a2.id, a.id);
    await admin(`/api/approvals/${a2.id}`, { decision: 'deny' });
    assert.equal((await other).status, 403);
    const rem = await admin('/api/approvals/remembered');
    const grant = rem.json.remembered.find((x: { approvalId: string }) => x.approvalId === a.id);
    assert.ok(grant);
    assert.equal((await admin(`/api/approvals/remembered/${grant.id}`, undefined, 'DELETE')).status, 200);
    const afterForget = call(`${t.agentUrl}/http/api/deploy`, { method: 'POST', key: KEYS.alice, body: 'v1' });
    const a3 = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/deploy');
    await admin(`/api/approvals/${a3.id}`, { decision: 'deny' });
    assert.equal((await afterForget).status, 403);
  });

  it('remember is refused for a call whose body was streamed (it could not be compared with later ones)', async () => {
    const before = up.received.length;
    // A chunked body: the door streams it to the service without reading it first.
    const chunked = request(`${t.agentUrl}/http/api/stream-me`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.alice}` }, body: Readable.from([Buffer.from('{"repo":"scratch"}')]) });
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/stream-me');
    assert.match(a.summary, /the body is streamed to the service, so it is not shown here/);
    const refused = await admin(`/api/approvals/${a.id}`, { decision: 'approve', remember: '10m' });
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.json.error.code, 'bad_request');
    assert.match(refused.json.error.message, /streamed.*without remember/);
    assert.equal((await admin(`/api/approvals/${a.id}`)).json.status, 'pending', 'nothing was decided');
    assert.equal((await admin(`/api/approvals/${a.id}`, { decision: 'approve' })).status, 200);
    const r = await chunked;
    assert.equal(r.statusCode, 200);
    await r.body.dump();
    assert.equal(up.received.length, before + 1);
    assert.ok(!(await admin('/api/approvals/remembered')).json.remembered.some((x: { approvalId: string }) => x.approvalId === a.id), 'no grant');
  });

  it('a call held while its key is revoked is not made when approved', async () => {
    const created = await admin('/api/agents/alice/keys', {});
    assert.equal(created.status, 201, created.text);
    const before = up.received.length;
    const held = call(`${t.agentUrl}/http/api/revoke-me`, { method: 'POST', key: created.json.key, body: 'x' });
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/revoke-me');
    assert.equal((await admin(`/api/keys/${created.json.id}`, undefined, 'DELETE')).status, 200);
    assert.equal((await admin(`/api/approvals/${a.id}`, { decision: 'approve' })).status, 200);
    const r = await held;
    assert.equal(r.status, 401, r.text);
    assert.equal(r.json.error.code, 'unauthenticated');
    assert.match(r.json.error.message, /revoked or expired while this call was held/);
    assert.equal(up.received.length, before, 'the call was not made');
    const rec = await auditOf(t, String(r.headers['x-airlock-request-id']), TOKEN);
    assert.equal(rec['code'], 'unauthenticated');
  });

  it('a kill switch covering a held call denies it at once', async () => {
    const held = call(`${t.agentUrl}/http/api/rm`, { method: 'DELETE', key: KEYS.alice });
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: DELETE api/rm');
    const t0 = Date.now();
    assert.equal((await admin('/api/kill', { team: 'ops' })).status, 200);
    const r = await held;
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'killed');
    assert.equal((await admin(`/api/approvals/${a.id}`)).json.status, 'denied');
    assert.equal((await admin('/api/kill', { team: 'ops' }, 'DELETE')).status, 200);
    const rec = await auditOf(t, r.json.error.request_id, TOKEN);
    assert.equal(rec['decision'], 'killed');
  });

  it('an agent that hangs up while held cancels its approval', async () => {
    const ac = new AbortController();
    const held = request(`${t.agentUrl}/http/api/gone`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.bob}` }, body: 'x', signal: ac.signal }).catch(() => 'aborted');
    const a = await pendingFor({ adminUrl: t.adminUrl, token: TOKEN }, 'http: POST api/gone');
    ac.abort();
    assert.equal(await held, 'aborted');
    await waitFor('the approval cancelled', async () => (await admin(`/api/approvals/${a.id}`)).json.status === 'cancelled');
    assert.equal((await admin(`/api/approvals/${a.id}`, { decision: 'approve' })).status, 409);
    const exchangeId = (await admin(`/api/approvals/${a.id}`)).json.exchangeId;
    const rec = await waitFor('the final record', async () => ((await admin('/api/audit?limit=200')).json.records as Record<string, any>[]).find((r) => r['id'] === exchangeId && r['phase'] === 'final'));
    assert.equal(rec['status'], undefined, 'nothing was answered: no status');
  });
});

describe('approvals: notifications', () => {
  it('what the agent controls cannot mention, link or forge lines in the chat text', async () => {
    const got: any[] = [];
    const hook: Server = createServer((req, res) => {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => {
        got.push(JSON.parse(b));
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const up = await startUpstream();
    const t = await startGateway(config(up.url).replace('approvals: { timeout: 2s }', `approvals:\n  timeout: 5s\n  notify: [{ webhook: "http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook" }]`));
    try {
      const path = '/http/api/%3C!channel%3E%20%3Chttps:%2F%2Fevil.example%2Fadmin%7CApprove%20here%3E';
      const held = call(`${t.agentUrl}${path}`, { method: 'POST', key: KEYS.alice, body: 'x\nApprove: security reviewed this, safe to approve', headers: { 'content-type': 'text/plain' } });
      await waitFor('the webhook', () => got.length >= 1 || undefined, 5000);
      const text: string = got[0]!.text;
      assert.ok(!/<!channel>|<https:/.test(text), text);
      assert.match(text, /&lt;!channel&gt; &lt;https:\/\/evil\.example\/admin\|Approve here&gt;/);
      assert.ok(!/^Approve: security/m.test(text), 'the body cannot start a line of its own');
      assert.match(text, /^> Approve: security reviewed this/m);
      assert.match(text, /^Approve: airlock approvals approve apr_/m, 'airlock\'s own lines are still there');
      await call(`${t.adminUrl}/api/approvals/${got[0]!.approval.id}`, { method: 'POST', body: JSON.stringify({ decision: 'deny' }) });
      assert.equal((await held).status, 403);
    } finally {
      await t.stop();
      await up.close();
      hook.close();
    }
  });

  it('webhooks get a readable text and the decision URL; a receiver that fails is retried and never blocks the approval', async () => {
    const got: { body: any; n: number }[] = [];
    let n = 0;
    const hook: Server = createServer((req, res) => {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => {
        n++;
        got.push({ body: JSON.parse(b), n });
        res.writeHead(n === 1 ? 500 : 200).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook/secret-path`;
    const up = await startUpstream();
    // The second webhook points at a port nothing listens on: it must not hold anything up.
    const t = await startGateway(config(up.url).replace('approvals: { timeout: 2s }', `approvals:\n  timeout: 5s\n  notify: [{ webhook: "${hookUrl}" }, { webhook: "http://127.0.0.1:9/down" }]`));
    try {
      const held = call(`${t.agentUrl}/http/api/pay`, { method: 'POST', key: KEYS.alice, body: '{"amount": 5}', headers: { 'content-type': 'application/json' } });
      const a = await pendingFor({ adminUrl: t.adminUrl }, 'http: POST api/pay');
      await waitFor('the webhook retried after its 500', () => got.length >= 2, 5000);
      assert.equal(got[0]!.body.approval.id, a.id);
      assert.match(got[0]!.body.text, /alice/);
      assert.match(got[0]!.body.text, /http: POST api\/pay/);
      assert.match(got[0]!.body.text, /airlock approvals approve apr_/);
      assert.equal(got[0]!.body.approveUrl, `${t.adminUrl}/api/approvals/${a.id}`);
      await call(`${t.adminUrl}/api/approvals/${a.id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) });
      assert.equal((await held).status, 200);
      assert.ok(!t.logs().includes('secret-path'), 'webhook paths (which carry secrets) are not logged');
    } finally {
      await t.stop();
      await up.close();
      hook.close();
    }
  });
});

describe('approvals: the CLI in a separate process', () => {
  it('approvals list, approve and deny from another process decide held calls; watch prints new ones', async () => {
    const up = await startUpstream();
    const t = await startGateway(config(up.url).replace('timeout: 2s', 'timeout: 20s'));
    try {
      const watch = spawnCli(['approvals', 'watch', '--admin', t.adminUrl]);
      let watched = '';
      watch.stdout!.on('data', (c: Buffer) => (watched += c.toString()));
      await new Promise((r) => setTimeout(r, 500));
      const held = call(`${t.agentUrl}/http/api/jobs`, { method: 'POST', key: KEYS.alice, body: 'run' });
      const a = await pendingFor({ adminUrl: t.adminUrl }, 'http: POST api/jobs');
      await waitFor('watch to print the new approval', () => watched.includes(a.id), 5000);
      // -c FILE finds the gateway running on that config's data directory, as --admin would.
      const list = await runCli(['approvals', 'list', '--status', 'pending', '--limit', '5', '-c', t.configFile]);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, new RegExp(a.id));
      // What a human decides on: the method, URL and body excerpt, indented under the approval's row.
      assert.match(list.stdout, new RegExp(`^${a.id} .*\\n {4}POST http://127\\.0\\.0\\.1:\\d+/jobs\\n {4}run$`, 'm'), list.stdout);
      const badStatus = await runCli(['approvals', 'list', '--status', 'open', '--admin', t.adminUrl]);
      assert.equal(badStatus.code, 2, badStatus.stderr);
      assert.match(badStatus.stderr, /--status is one of pending, approved, denied, expired, cancelled/);
      const badLimit = await runCli(['approvals', 'list', '--limit', 'ten', '--admin', t.adminUrl]);
      assert.equal(badLimit.code, 2, badLimit.stderr);
      assert.match(badLimit.stderr, /--limit takes a positive whole number\nusage: airlock approvals list .*\[-c FILE\] \[--admin URL\] \[--json\]/);
      const ok = await runCli(['approvals', 'approve', a.id, '--admin', t.adminUrl]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal((await held).status, 200);
      const rec = await auditOf(t, a.id.length ? (await call(`${t.adminUrl}/api/approvals/${a.id}`)).json.exchangeId : '');
      assert.match(rec['approval'].by, /^cli:/);
      const again = await runCli(['approvals', 'approve', a.id, '--admin', t.adminUrl]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /already approved/);

      const held2 = call(`${t.agentUrl}/http/api/jobs/9`, { method: 'DELETE', key: KEYS.alice });
      const b = await pendingFor({ adminUrl: t.adminUrl }, 'http: DELETE api/jobs/9');
      const no = await runCli(['approvals', 'deny', b.id, '--reason', 'use the archive instead', '--admin', t.adminUrl]);
      assert.equal(no.code, 0, no.stderr);
      const r2 = await held2;
      assert.equal(r2.json.error.code, 'approval_denied');
      assert.match(r2.json.error.message, /use the archive instead/);
      assert.equal((await runCli(['approvals', 'approve', '--admin', t.adminUrl])).code, 2);
      watch.kill();
    } finally {
      await t.stop();
      await up.close();
    }
  });
});

describe('approvals: the CLI with no gateway', () => {
  it('watch, like list, says no gateway answers (exit 1)', async () => {
    const admin = `http://127.0.0.1:${await freePort()}`;
    for (const sub of ['watch', 'list']) {
      const r = await runCli(['approvals', sub, '--admin', admin], { timeoutMs: 10_000 });
      assert.equal(r.code, 1, `${sub}: ${r.stderr}`);
      assert.equal(r.stderr, `airlock: no gateway answers at ${admin} (is it running? pass --admin URL)\n`, sub);
    }
  });
});

describe('approvals: restarts', () => {
  it('a graceful stop answers held agents with approval_timeout and marks the approvals expired', async () => {
    const up = await startUpstream();
    const { dir, cleanup } = tempDir();
    const yaml = `data: ${dir}/data\n${config(up.url).replace('timeout: 2s', 'timeout: 1m')}`;
    let t = await startGateway(yaml, { dir });
    try {
      const held = call(`${t.agentUrl}/http/api/x`, { method: 'POST', key: KEYS.alice, body: 'x' });
      const a = await pendingFor({ adminUrl: t.adminUrl }, 'http: POST api/x');
      const stopped = t.stop();
      const r = await held;
      assert.equal(r.status, 403);
      assert.equal(r.json.error.code, 'approval_timeout');
      await stopped;
      t = await startGateway(yaml, { dir });
      const after = (await call(`${t.adminUrl}/api/approvals/${a.id}`)).json;
      assert.equal(after.status, 'expired');
      assert.equal(up.received.length, 0);
    } finally {
      await t.stop();
      await up.close();
      cleanup();
    }
  });

  it('after kill -9 with calls held, the next start marks those approvals expired: nothing pending is forgotten', async () => {
    const up = await startUpstream();
    const { dir, cleanup } = tempDir();
    const file = writeConfig(dir, `data: ${dir}/data\n${config(up.url).replace('timeout: 2s', 'timeout: 1m')}`);
    const g = await startCliGateway(file);
    try {
      const held = call(`${g.agentUrl}/http/api/y`, { method: 'POST', key: KEYS.alice, body: 'x' }).catch((e: Error) => e);
      const a = await pendingFor(g, 'http: POST api/y');
      await g.stop('SIGKILL');
      assert.ok((await held) instanceof Error, 'the agent sees its connection close');
      const g2 = await startCliGateway(file);
      try {
        const st = (await call(`${g2.adminUrl}/api/approvals/${a.id}`)).json;
        assert.equal(st.status, 'expired');
        assert.match(st.reason, /restarted/);
        assert.equal((await call(`${g2.adminUrl}/api/approvals?status=pending`)).json.approvals.length, 0);
      } finally {
        await g2.stop();
      }
      assert.equal(up.received.length, 0);
    } finally {
      await up.close();
      cleanup();
    }
  });
});

describe('approvals: many at once', () => {
  it('1,000 concurrent held calls keep memory bounded and the gateway responsive; a decision resumes its call within 50 ms', async () => {
    const up = await startUpstream();
    const t = await startGateway(config(up.url).replace('timeout: 2s', 'timeout: 2m'));
    const agent = new Agent({ connections: 1100, pipelining: 1 });
    try {
      const rss0 = process.memoryUsage().rss;
      const N = 1000;
      const held = Array.from({ length: N }, (_, i) =>
        request(`${t.agentUrl}/http/api/bulk/${i}`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.alice}` }, body: 'x', dispatcher: agent }).then(async (r) => ({ i, status: r.statusCode, at: performance.now(), text: await r.body.text() })),
      );
      await waitFor('1000 pending approvals', async () => t.gw.approvals.pending === N, 20_000, 100);
      const rss1 = process.memoryUsage().rss;
      assert.ok(rss1 - rss0 < 200 * 1024 * 1024, `memory grew by ${Math.round((rss1 - rss0) / 1048576)} MB for ${N} held calls`);
      // Still responsive: health and an unrelated allowed call answer quickly.
      const t0 = performance.now();
      assert.equal((await call(`${t.agentUrl}/http/api/ping`, { key: KEYS.bob })).status, 200);
      assert.ok(performance.now() - t0 < 500);
      const list = (await call(`${t.adminUrl}/api/approvals?status=pending&limit=1000`)).json.approvals as { id: string; action: string }[];
      assert.equal(list.length, N);
      // Five decisions, one after another, each timed from the admin request to the agent's answer.
      // The median is what the test holds to 50 ms: the test runner shares two cores with another
      // test file, and one scheduling stall or garbage collection is not the gateway's resume path.
      const picked = [100, 300, 500, 700, 900];
      const waits: number[] = [];
      for (const i of picked) {
        const target = list.find((a) => a.action === `http: POST api/bulk/${i}`)!;
        const decidedAt = performance.now();
        await call(`${t.adminUrl}/api/approvals/${target.id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve' }) });
        const r = await held[i]!;
        assert.equal(r.status, 200);
        waits.push(r.at - decidedAt);
      }
      const median = [...waits].sort((a, b) => a - b)[2]!;
      assert.ok(median < 50, `resumed a median ${Math.round(median)} ms after the decision (${waits.map((w) => Math.round(w)).join(', ')} ms)`);
      // Deny the rest; every agent gets its answer.
      for (const a of list) if (!picked.some((i) => a.action === `http: POST api/bulk/${i}`)) t.gw.approvals.decide(a.id, 'deny', 'test', 'bulk', undefined);
      const all = await Promise.all(held);
      assert.equal(all.filter((x) => x.status === 403).length, N - picked.length);
      assert.equal(t.gw.approvals.pending, 0);
    } finally {
      // The gateway first: stopping it answers whatever is still held, so a failed assertion
      // does not leave the agent's requests waiting out the two-minute approval timeout.
      await t.stop();
      await agent.destroy();
      await up.close();
    }
  });
});

describe('approvals while another process holds the store', () => {
  let up: Upstream;
  let t: TestGateway;
  let other: Database.Database;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(config(up.url).replace('timeout: 2s', 'timeout: 1s'));
    other = new Database(join(t.dir, 'data', 'airlock.db')); // an operator's sqlite3 shell, say
  });
  after(async () => {
    if (other.inTransaction) other.exec('ROLLBACK');
    other.close();
    await t.stop();
    await up.close();
  });
  const statusInStore = (id: string) => (other.prepare('SELECT status FROM approvals WHERE id = ?').get(id) as { status: string }).status;
  const decide = (id: string, decision: string) => call(`${t.adminUrl}/api/approvals/${id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ decision }) });

  it('a held call that times out is answered at once; its approval reads expired, and reaches the store after', async () => {
    const held = call(`${t.agentUrl}/http/api/expire-me`, { method: 'POST', key: KEYS.alice, body: 'x' });
    const a = await pendingFor(t, 'http: POST api/expire-me');
    other.exec('BEGIN IMMEDIATE');
    try {
      const t0 = Date.now();
      const r = await held;
      assert.equal(r.status, 403, r.text);
      assert.equal(r.json.error.code, 'approval_timeout');
      assert.ok(Date.now() - t0 < 1500, `answered ${Date.now() - t0} ms after the lock: it waited for the store`);
      assert.equal(statusInStore(a.id), 'pending', 'nothing can be written while the lock is held');
      assert.equal((await call(`${t.adminUrl}/api/approvals/${a.id}`)).json.status, 'expired');
      assert.ok((await call(`${t.adminUrl}/api/approvals?status=expired`)).json.approvals.some((x: { id: string }) => x.id === a.id));
      assert.ok(!(await call(`${t.adminUrl}/api/approvals?status=pending`)).json.approvals.some((x: { id: string }) => x.id === a.id));
      const late = await decide(a.id, 'approve');
      assert.equal(late.status, 409, 'a decision after the timeout cannot approve the call');
    } finally {
      other.exec('COMMIT');
    }
    await waitFor('the expiry in the store', () => statusInStore(a.id) === 'expired' || undefined);
  });

  it('a decision while the store is locked is refused at once, and taken when sent again', async () => {
    const held = call(`${t.agentUrl}/http/api/decide-me`, { method: 'POST', key: KEYS.alice, body: 'x' });
    const a = await pendingFor(t, 'http: POST api/decide-me');
    other.exec('BEGIN IMMEDIATE');
    let refused;
    const t0 = Date.now();
    try {
      refused = await decide(a.id, 'approve');
    } finally {
      other.exec('COMMIT');
    }
    assert.ok(Date.now() - t0 < 1000, `the refusal took ${Date.now() - t0} ms`);
    assert.equal(refused.status, 500, refused.text);
    assert.match(refused.json.error.message, /could not be stored.*try again/);
    assert.equal((await decide(a.id, 'approve')).status, 200);
    assert.equal((await held).status, 200);
    assert.equal(statusInStore(a.id), 'approved');
  });

  it('a kill switch answers a held call at once while the store is locked', async () => {
    const held = call(`${t.agentUrl}/http/api/kill-me`, { method: 'POST', key: KEYS.bob, body: 'x' });
    const a = await pendingFor(t, 'http: POST api/kill-me');
    other.exec('BEGIN IMMEDIATE');
    try {
      const t0 = Date.now();
      const k = await call(`${t.adminUrl}/api/kill`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'bob' }) });
      assert.equal(k.status, 200, k.text);
      const r = await held;
      assert.equal(r.json.error.code, 'killed');
      assert.ok(Date.now() - t0 < 500, `the kill took ${Date.now() - t0} ms to answer the held call`);
      const seen = (await call(`${t.adminUrl}/api/approvals/${a.id}`)).json;
      assert.equal(seen.status, 'denied');
      assert.equal(seen.decidedBy, 'kill-switch');
    } finally {
      other.exec('COMMIT');
    }
    await waitFor('the denial in the store', () => statusInStore(a.id) === 'denied' || undefined);
    await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'bob' }) });
  });

  it('a call to be held while the store is locked is refused at once, not made', async () => {
    const before = up.received.length;
    other.exec('BEGIN IMMEDIATE');
    let r;
    const t0 = Date.now();
    try {
      r = await call(`${t.agentUrl}/http/api/hold-me`, { method: 'POST', key: KEYS.alice, body: 'x' });
    } finally {
      other.exec('COMMIT');
    }
    assert.ok(Date.now() - t0 < 1000, `the refusal took ${Date.now() - t0} ms`);
    assert.equal(r.status, 500, r.text);
    assert.equal(r.json.error.code, 'internal_error');
    assert.match(r.json.error.message, /could not record the approval request/);
    assert.equal(up.received.length, before, 'the call was not made');
  });

  it('forgetting a remembered approval while the store is locked holds from the very next call, and reaches the store after', async () => {
    const first = call(`${t.agentUrl}/http/api/remember-me`, { method: 'POST', key: KEYS.alice, body: 'v1' });
    const a = await pendingFor(t, 'http: POST api/remember-me');
    assert.equal((await call(`${t.adminUrl}/api/approvals/${a.id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ decision: 'approve', remember: '10m' }) })).status, 200);
    assert.equal((await first).status, 200);
    const grant = (await call(`${t.adminUrl}/api/approvals/remembered`)).json.remembered.find((x: { approvalId: string }) => x.approvalId === a.id);
    assert.ok(grant, 'the grant is listed');
    const revokedInStore = () => (other.prepare('SELECT revoked_at FROM remembered WHERE id = ?').get(grant.id) as { revoked_at: string | null }).revoked_at;
    const before = up.received.length;
    other.exec('BEGIN IMMEDIATE');
    try {
      const t0 = Date.now();
      const f = await call(`${t.adminUrl}/api/approvals/remembered/${grant.id}`, { method: 'DELETE' });
      assert.equal(f.status, 200, f.text);
      assert.ok(Date.now() - t0 < 1000, `forgetting took ${Date.now() - t0} ms: it waited for the store`);
      assert.equal(revokedInStore(), null, 'nothing can be written while the lock is held');
      assert.ok(!(await call(`${t.adminUrl}/api/approvals/remembered`)).json.remembered.some((x: { id: string }) => x.id === grant.id));
      // The same call is no longer let through by the grant: it would be held, which the locked store refuses.
      const again = await call(`${t.agentUrl}/http/api/remember-me`, { method: 'POST', key: KEYS.alice, body: 'v1' });
      assert.equal(again.status, 500, again.text);
      assert.match(again.json.error.message, /could not record the approval request/);
      assert.equal(up.received.length, before, 'the call was not made');
      assert.equal((await call(`${t.adminUrl}/api/approvals/remembered/${grant.id}`, { method: 'DELETE' })).status, 404, 'forgotten once');
    } finally {
      other.exec('COMMIT');
    }
    await waitFor('the revocation in the store', () => revokedInStore() ?? undefined);
  });

  it('a key created while the store is locked is refused at once, and made when asked again', async () => {
    const create = () => call(`${t.adminUrl}/api/agents/alice/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const keysInStore = () => (other.prepare("SELECT count(*) AS n FROM keys WHERE agent = 'alice'").get() as { n: number }).n;
    const stored = keysInStore();
    other.exec('BEGIN IMMEDIATE');
    let refused;
    const t0 = Date.now();
    try {
      refused = await create();
    } finally {
      other.exec('COMMIT');
    }
    assert.ok(Date.now() - t0 < 1000, `the refusal took ${Date.now() - t0} ms`);
    assert.equal(refused.status, 500, refused.text);
    assert.match(refused.json.error.message, /could not be stored.*no key was made, try again/);
    assert.equal(keysInStore(), stored, 'no key was stored');
    const made = await create();
    assert.equal(made.status, 201, made.text);
    assert.equal(keysInStore(), stored + 1);
    assert.equal((await call(`${t.agentUrl}/http/api/ok`, { key: made.json.key })).status, 200, 'the new key works');
  });
});
