/**
 * `audit.bodies: true` (SPEC 8): the final audit record of an exchange carries its request and
 * response bodies, redacted (`[redacted]` for values under secret-looking keys, credential-shaped
 * values and the credentials airlock injects) and cut at 64 KiB, with `redactions` counted; on all
 * four front doors, through real sockets, with the official SDKs as agents. Streamed bodies are
 * kept up to the cap as they pass, and the agent gets every byte. Off (the default), no body text
 * reaches the audit store or audit.jsonl. The chain still verifies.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import * as z from 'zod/v4';
import { runCli } from './support/cli.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { sdkClient, startA2AUpstream, userMessage, type A2AUpstream } from './support/a2a.js';
import { eventually, openaiAgent } from './support/llm.js';
import { startFakeOpenAI, type FakeLlm } from './support/llm-upstream.js';
import { agentClient } from './support/mcp.js';
import { startUpstream, type Handler, type Upstream } from './support/upstream.js';

const SVC_TOKEN = 'svc-token-0123456789abcdef';
const PROVIDER_KEY = 'prov-key-0123456789abcdef';
const MCP_TOKEN = 'mcp-token-0123456789abcdef';
const A2A_TOKEN = 'a2a-token-0123456789abcdef';
const SK = `sk-proj${'Z9y8'.repeat(6)}`;
const CAP = 64 * 1024;
const BASIC_PASSWORD = 'basic-pw-0123456789';
const BASIC_CREDS = `svc-user:${BASIC_PASSWORD}`;

type Rec = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- records are checked field by field

/** An MCP server (official SDK, Streamable HTTP) with a tool, a resource and a prompt; it demands MCP_TOKEN. */
async function startMcpUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const factory = () => {
    const s = new McpServer({ name: 'tools', version: '1.0.0' });
    s.registerTool('echo', { description: 'Echoes its text', inputSchema: z.object({ text: z.string() }) }, async ({ text }) => ({ content: [{ type: 'text', text: `tool-reply: ${text}` }] }));
    // A careless server that puts its own credential in what it returns.
    s.registerResource('notes', 'memo://notes', { mimeType: 'text/plain' }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: `resource-reply: the token is ${MCP_TOKEN}` }] }));
    s.registerPrompt('greet', { description: 'Greets someone', argsSchema: z.object({ name: z.string() }) }, ({ name }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `prompt-reply: hello ${name}` } }] }));
    return s;
  };
  const handler = toNodeHandler(createMcpHandler(factory));
  const srv: Server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${MCP_TOKEN}`) return void res.writeHead(401).end();
    void handler(req as Parameters<typeof handler>[0], res);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/mcp`, close: () => new Promise((r) => (srv.closeAllConnections(), srv.close(() => r()))) };
}

/**
 * /http: `/echo` answers JSON with the body it got and the Authorization header airlock injected
 * (as a careless upstream might), `/stream` sends the body back as text, `/image` answers PNG bytes.
 */
const httpHandler: Handler = (req, res, body) => {
  if (req.url === '/whoami') {
    // A careless upstream that names the Basic credentials it was given, decoded.
    const creds = Buffer.from(String(req.headers.authorization).replace(/^Basic /, ''), 'base64').toString();
    res.writeHead(401, { 'content-type': 'text/plain' });
    return void res.end(`invalid login ${creds}`);
  }
  if (req.url === '/stream') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    return void res.end(body);
  }
  if (req.url === '/image') {
    const png = Buffer.alloc(1000, 0);
    png.write('\x89PNG', 0, 'latin1');
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length });
    return void res.end(png);
  }
  const out = JSON.stringify({ got: body.length > 0 ? JSON.parse(body.toString()) : null, seen: req.headers.authorization, reply: 'http-reply' });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(out);
};

function config(u: { http: string; llm: string; mcp: string; a2a: string }, bodies: boolean | undefined): string {
  return `${bodies === undefined ? '' : `audit: { bodies: ${bodies} }\n`}agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    agents: [alice]
    allow: ["http: * api/**", "http: * basic/**", "llm: gpt-4o-mini", "mcp: tools/*", "mcp-resource: tools/**", "mcp-prompt: tools/*", "a2a: travel"]
http:
  services:
    api: { url: "${u.http}", headers: { Authorization: "Bearer ${SVC_TOKEN}" } }
    basic: { url: "${u.http}", headers: { Authorization: "Basic ${Buffer.from(BASIC_CREDS).toString('base64')}" } }
llm:
  providers:
    openai: { type: openai, url: "${u.llm}/v1", key: "${PROVIDER_KEY}" }
  models:
    gpt-4o-mini: { provider: openai }
mcp:
  servers:
    tools: { url: "${u.mcp}", token: "${MCP_TOKEN}" }
a2a:
  agents:
    travel: { url: "${u.a2a}", token: "${A2A_TOKEN}" }
`;
}

/** Every final audit record since `since`, newest first, from the admin API. */
async function finals(t: TestGateway, since: string, protocol: string): Promise<Rec[]> {
  const r = await call(`${t.adminUrl}/api/audit?protocol=${protocol}&limit=500&since=${encodeURIComponent(since)}`);
  return (r.json.records as Rec[]).filter((x) => x['phase'] === 'final');
}

async function finalOf(t: TestGateway, id: string, protocol: string): Promise<Rec> {
  return eventually(`the final record of ${id}`, async () => (await finals(t, '1970-01-01T00:00:00.000Z', protocol)).find((x) => x['id'] === id));
}

async function finalWhere(t: TestGateway, since: string, protocol: string, action: string): Promise<Rec> {
  return eventually(`a final record of ${action}`, async () => (await finals(t, since, protocol)).find((x) => x['action'] === action));
}

/** The audit.jsonl line of a record (it is written just after the store commits). */
async function mirrored(t: TestGateway, id: string): Promise<Rec> {
  return eventually(`the audit.jsonl line of ${id}`, () => {
    for (const l of readFileSync(join(t.dir, 'data', 'audit.jsonl'), 'utf8').split('\n')) {
      if (l === '') continue;
      const r = JSON.parse(l) as Rec;
      if (r['id'] === id && r['phase'] === 'final') return r;
    }
    return undefined;
  });
}

/** Everything the audit store and its mirror hold, as text. */
function auditText(t: TestGateway): string {
  const db = new Database(join(t.dir, 'data', 'airlock.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT record FROM audit').all() as { record: string }[];
    return rows.map((r) => r.record).join('\n') + readFileSync(join(t.dir, 'data', 'audit.jsonl'), 'utf8');
  } finally {
    db.close();
  }
}

function assertNoSecrets(text: string): void {
  for (const s of ['hunter2', 'letmein-42', SK, SVC_TOKEN, BASIC_PASSWORD, PROVIDER_KEY, MCP_TOKEN, A2A_TOKEN, KEYS.alice]) assert.ok(!text.includes(s), `${s} is in the audit log`);
}

async function verifyChain(t: TestGateway): Promise<void> {
  const v = await runCli(['audit', 'verify', '-c', t.configFile]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
}

describe('audit.bodies', { timeout: 120_000 }, () => {
  let httpUp: Upstream;
  let llmUp: FakeLlm;
  let mcpUp: { url: string; close(): Promise<void> };
  let a2aUp: A2AUpstream;
  let urls: { http: string; llm: string; mcp: string; a2a: string };
  before(async () => {
    httpUp = await startUpstream(httpHandler);
    llmUp = await startFakeOpenAI();
    mcpUp = await startMcpUpstream();
    a2aUp = await startA2AUpstream({ token: A2A_TOKEN });
    urls = { http: httpUp.url, llm: llmUp.url, mcp: mcpUp.url, a2a: a2aUp.url };
  });
  after(async () => {
    await httpUp?.close();
    await llmUp?.close();
    await mcpUp?.close();
    await a2aUp?.close();
  });

  describe('on', () => {
    let t: TestGateway;
    before(async () => {
      t = await startGateway(config(urls, true));
    });
    after(async () => {
      await t?.stop();
    });

    it('/http: the final record has both bodies, secrets [redacted] (the injected credential too) and counted; the decision record has none; the agent got them as sent', async () => {
      const sent = JSON.stringify({ user: 'ann', password: 'hunter2', api_key: 'letmein-42', note: `use ${SK} please`, max_tokens: 100 });
      const r = await call(`${t.agentUrl}/http/api/echo`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json' }, body: sent });
      assert.equal(r.status, 200);
      assert.equal(r.json.got.password, 'hunter2', 'the agent sees the upstream answer unchanged');
      assert.equal(r.json.seen, `Bearer ${SVC_TOKEN}`);
      const id = String(r.headers['x-airlock-request-id']);
      const rec = await finalOf(t, id, 'http');
      assert.equal(rec['bodies'].request, JSON.stringify({ user: 'ann', password: '[redacted]', api_key: '[redacted]', note: 'use [redacted] please', max_tokens: 100 }));
      assert.equal(rec['bodies'].response, JSON.stringify({ got: { user: 'ann', password: '[redacted]', api_key: '[redacted]', note: 'use [redacted] please', max_tokens: 100 }, seen: '[redacted]', reply: 'http-reply' }));
      assert.equal(rec['bodies'].requestTruncated, undefined);
      assert.equal(rec['redactions'], 7, '3 in the request, 3 echoed back, and the injected Authorization value');
      const all = (await call(`${t.adminUrl}/api/audit?protocol=http&limit=500`)).json.records as Rec[];
      const decision = all.find((x) => x['id'] === id && x['phase'] === 'decision');
      assert.ok(decision);
      assert.equal(decision['bodies'], undefined);
      assert.equal(decision['redactions'], undefined);
      assert.deepEqual((await mirrored(t, id))['bodies'], rec['bodies']);
      assertNoSecrets(auditText(t));
    });

    it('/http: a streamed request body and its streamed answer are kept up to 64 KiB each, marked truncated; upstream and agent get every byte', async () => {
      const line = 'password=hunter2&data=' + 'x'.repeat(1000) + '\n';
      const total = line.length * 200; // ~200 KB, sent chunked: the door streams it without buffering
      const chunks = Array.from({ length: 200 }, () => Buffer.from(line));
      const res = await request(`${t.agentUrl}/http/api/stream`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.alice}`, 'content-type': 'text/plain' }, body: Readable.from(chunks) });
      const back = await res.body.text();
      assert.equal(res.statusCode, 200);
      assert.equal(back.length, total);
      assert.equal(back, line.repeat(200));
      assert.equal(httpUp.received.at(-1)!.body.length, total);
      const rec = await finalOf(t, String(res.headers['x-airlock-request-id']), 'http');
      const b = rec['bodies'];
      assert.equal(b.requestTruncated, true);
      assert.equal(b.responseTruncated, true);
      for (const k of ['request', 'response']) {
        assert.ok(Buffer.byteLength(b[k]) <= CAP, `${k} is cut at the cap`);
        assert.ok(Buffer.byteLength(b[k]) > CAP - 2000, `${k} is kept up to the cap`);
        assert.ok(b[k].startsWith('password=[redacted]&data=xxx'), b[k].slice(0, 50));
        assert.ok(!b[k].includes('hunter2'));
      }
      assert.equal(rec['bytesIn'], total);
      assert.equal(rec['bytesOut'], total);
      assertNoSecrets(auditText(t));
    });

    it('/http: a string longer than the cap (a file with .env lines) is redacted up to the cut like a whole one; keys such as accessTokens are secret, usage counts are not', async () => {
      const file = `# settings\nDB_PASSWORD=hunter2-db\n${SK}\nnote: the password: hunter2-note\n` + 'x'.repeat(100_000);
      const sent = JSON.stringify({ accessTokens: ['tok-abc-0123456789'], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }, file });
      const r = await call(`${t.agentUrl}/http/api/echo`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json' }, body: sent });
      assert.equal(r.status, 200);
      assert.equal(r.json.got.file, file, 'the agent gets the answer unchanged');
      const rec = await finalOf(t, String(r.headers['x-airlock-request-id']), 'http');
      for (const k of ['request', 'response']) {
        const b = rec['bodies'][k] as string;
        assert.equal(rec['bodies'][`${k}Truncated`], true);
        assert.ok(b.includes('DB_PASSWORD=[redacted]') && b.includes('the password: [redacted]'), b.slice(0, 300));
        assert.ok(!b.includes('hunter2') && !b.includes(SK) && !b.includes('tok-abc-0123456789'), b.slice(0, 300));
        assert.ok(b.includes('"prompt_tokens":3,"completion_tokens":4,"total_tokens":7'), b.slice(0, 300));
      }
      assertNoSecrets(auditText(t));
    });

    it('/http: Basic credentials an upstream quotes back decoded are [redacted]', async () => {
      const r = await call(`${t.agentUrl}/http/basic/whoami`, { key: KEYS.alice });
      assert.equal(r.status, 401);
      const rec = await finalOf(t, String(r.headers['x-airlock-request-id']), 'http');
      assert.equal(rec['bodies'].response, 'invalid login [redacted]');
      assertNoSecrets(auditText(t));
    });

    it('/http: a 64 KiB run of word characters beside a secret word is redacted in milliseconds, not seconds (the event loop is not held)', async () => {
      const body = 'w'.repeat(CAP) + ' password: hunter2';
      const started = Date.now();
      const r = await call(`${t.agentUrl}/http/api/stream`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'text/plain' }, body });
      assert.equal(r.status, 200);
      const rec = await finalOf(t, String(r.headers['x-airlock-request-id']), 'http');
      // Another exchange is served meanwhile, promptly.
      const other = await call(`${t.agentUrl}/http/api/image`, { key: KEYS.alice });
      assert.equal(other.status, 200);
      assert.ok(Date.now() - started < 2000, `the exchange, its record and the next exchange took ${Date.now() - started} ms`);
      assert.ok((rec['bodies'].request as string).startsWith('www'));
    });

    it('/http: a binary answer is a placeholder, not stored; a call with no body has no request body', async () => {
      const r = await call(`${t.agentUrl}/http/api/image`, { key: KEYS.alice });
      assert.equal(r.status, 200);
      const rec = await finalOf(t, String(r.headers['x-airlock-request-id']), 'http');
      assert.deepEqual(rec['bodies'], { response: '<1000 bytes of image/png>' });
      assert.equal(rec['redactions'], 0);
    });

    it('LLM (openai SDK): prompt and answer are kept, secrets [redacted], usage numbers left alone; a provider error quoting the key is redacted', async () => {
      const alice = openaiAgent(t.agentUrl, KEYS.alice);
      const { data, response } = await alice.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `my key is ${SK}` }], metadata: { password: 'hunter2' }, max_tokens: 20 }).withResponse();
      assert.equal(data.choices[0]!.message.content, `echo: my key is ${SK}`);
      const rec = await finalOf(t, response.headers.get('x-airlock-request-id')!, 'llm');
      const req = JSON.parse(rec['bodies'].request);
      assert.equal(req.messages[0].content, 'my key is [redacted]');
      assert.deepEqual(req.metadata, { password: '[redacted]' });
      assert.equal(req.max_tokens, 20);
      const res = JSON.parse(rec['bodies'].response);
      assert.equal(res.choices[0].message.content, 'echo: my key is [redacted]');
      assert.equal(res.usage.prompt_tokens, 11);
      assert.equal(rec['redactions'], 3);

      llmUp.next({ status: 400, body: JSON.stringify({ error: { message: `Incorrect API key provided: ${PROVIDER_KEY}`, type: 'invalid_request_error' } }) });
      const failed = await alice.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).withResponse().catch((e: unknown) => e as { status: number; headers: Headers });
      assert.equal((failed as { status: number }).status, 400);
      const frec = await finalOf(t, (failed as { headers: Headers }).headers.get('x-airlock-request-id')!, 'llm');
      assert.equal(JSON.parse(frec['bodies'].response).error.message, 'Incorrect API key provided: [redacted]');
      assert.equal(frec['redactions'], 1);
      assertNoSecrets(auditText(t));
    });

    it('LLM (openai SDK): a streamed answer is kept as the SSE the agent got, up to the cap, while every delta reaches the agent', async () => {
      const alice = openaiAgent(t.agentUrl, KEYS.alice);
      // ~100 KB of prompt in words of 4 KB: the fake provider echoes it one word per event.
      const words = Array.from({ length: 25 }, (_, i) => `${String.fromCharCode(97 + i)}`.repeat(4000));
      const prompt = `${SK} ${words.join(' ')}`;
      const { data: stream, response } = await alice.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }], stream: true }).withResponse();
      let got = '';
      for await (const c of stream) got += c.choices[0]?.delta?.content ?? '';
      assert.equal(got, `echo: ${prompt}`);
      const rec = await finalOf(t, response.headers.get('x-airlock-request-id')!, 'llm');
      const b = rec['bodies'];
      assert.equal(b.requestTruncated, true);
      assert.equal(b.responseTruncated, true);
      assert.ok(Buffer.byteLength(b.request) <= CAP && Buffer.byteLength(b.response) <= CAP);
      assert.ok(Buffer.byteLength(b.response) > CAP - 5000, 'kept up to the cap');
      assert.match(b.response, /^data: \{"id":"chatcmpl-1",/);
      assert.ok(b.response.includes('"content":" [redacted]"') || b.response.includes('"content":"[redacted]"'), b.response.slice(0, 600));
      assert.ok(b.request.startsWith('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"[redacted] aaaa'), b.request.slice(0, 100));
      assertNoSecrets(auditText(t));
    });

    it('MCP (MCP SDK client): tools/call, resources/read and prompts/get keep the JSON-RPC request and the result, redacted', async () => {
      const since = new Date().toISOString();
      const c = await agentClient(`${t.agentUrl}/mcp/tools`, KEYS.alice, 'legacy');
      try {
        const r = await c.callTool({ name: 'echo', arguments: { text: `use ${SK}`, password: 'hunter2' } });
        assert.equal((r.content as { text: string }[])[0]!.text, `tool-reply: use ${SK}`);
        const read = await c.readResource({ uri: 'memo://notes' });
        assert.equal((read.contents[0] as { text: string }).text, `resource-reply: the token is ${MCP_TOKEN}`);
        const p = await c.getPrompt({ name: 'greet', arguments: { name: `ann ${SK}` } });
        assert.equal((p.messages[0]!.content as { text: string }).text, `prompt-reply: hello ann ${SK}`);
      } finally {
        await c.close();
      }
      const tool = await finalWhere(t, since, 'mcp', 'mcp: tools/echo');
      const treq = JSON.parse(tool['bodies'].request);
      assert.equal(treq.method, 'tools/call');
      assert.deepEqual(treq.params.arguments, { text: 'use [redacted]', password: '[redacted]' });
      assert.deepEqual(JSON.parse(tool['bodies'].response).content, [{ type: 'text', text: 'tool-reply: use [redacted]' }]);
      assert.equal(tool['redactions'], 3);
      const res = await finalWhere(t, since, 'mcp', 'mcp-resource: tools/memo://notes');
      assert.equal(JSON.parse(res['bodies'].request).params.uri, 'memo://notes');
      assert.equal(JSON.parse(res['bodies'].response).contents[0].text, 'resource-reply: the token is [redacted]', 'the credential airlock injects for this server');
      assert.equal(res['redactions'], 1);
      const pr = await finalWhere(t, since, 'mcp', 'mcp-prompt: tools/greet');
      assert.equal(JSON.parse(pr['bodies'].request).params.arguments.name, 'ann [redacted]');
      assert.equal(JSON.parse(pr['bodies'].response).messages[0].content.text, 'prompt-reply: hello ann [redacted]');
      assert.equal(pr['redactions'], 2);
      assertNoSecrets(auditText(t));
    });

    it('A2A (A2A SDK client): a message and its answer are kept, redacted; a streamed answer is kept as its SSE', async () => {
      const since = new Date().toISOString();
      const client = await sdkClient(t.agentUrl, 'travel', KEYS.alice, 'JSONRPC');
      const r = await client.sendMessage({ tenant: '', message: { ...userMessage(`quick use ${SK} to book`), metadata: { password: 'hunter2' } }, configuration: undefined, metadata: undefined });
      assert.match(JSON.stringify(r), new RegExp(`quick answer to: quick use ${SK} to book`));
      const rec = await finalWhere(t, since, 'a2a', 'a2a: travel SendMessage');
      const b = rec['bodies'];
      assert.match(b.request, /"password":"\[redacted\]"/);
      assert.match(b.request, /quick use \[redacted\] to book/);
      assert.match(b.response, /quick answer to: quick use \[redacted\] to book/);
      assert.ok(rec['redactions'] >= 3, String(rec['redactions']));

      const s2 = new Date().toISOString();
      let events = 0;
      for await (const _e of client.sendMessageStream({ tenant: '', message: userMessage(`plan a trip with ${SK}`), configuration: undefined, metadata: undefined })) events++;
      assert.ok(events >= 4);
      const srec = await finalWhere(t, s2, 'a2a', 'a2a: travel SendStreamingMessage');
      assert.match(srec['bodies'].request, /plan a trip with \[redacted\]/);
      assert.match(srec['bodies'].response, /^data: \{/);
      assert.match(srec['bodies'].response, /answer to: plan a trip with \[redacted\]/);
      assert.equal(srec['bodies'].response.match(/^data: /gm).length, events, 'every event the agent got');
      assertNoSecrets(auditText(t));
      await verifyChain(t);
    });
  });

  describe('off (the default)', () => {
    let t: TestGateway;
    before(async () => {
      t = await startGateway(config(urls, undefined));
    });
    after(async () => {
      await t?.stop();
    });

    it('no record has bodies or redactions, and no body text is in the store or audit.jsonl; after a reload with audit.bodies: true new exchanges have them', async () => {
      const since = new Date().toISOString();
      const r = await call(`${t.agentUrl}/http/api/echo`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ password: 'hunter2', note: 'BODY-MARK-http' }) });
      assert.equal(r.status, 200);
      const alice = openaiAgent(t.agentUrl, KEYS.alice);
      const chat = await alice.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'BODY-MARK-llm' }] });
      assert.equal(chat.choices[0]!.message.content, 'echo: BODY-MARK-llm');
      const c = await agentClient(`${t.agentUrl}/mcp/tools`, KEYS.alice, 'legacy');
      await c.callTool({ name: 'echo', arguments: { text: 'x' } });
      await c.readResource({ uri: 'memo://notes' });
      await c.close();
      const client = await sdkClient(t.agentUrl, 'travel', KEYS.alice, 'JSONRPC');
      await client.sendMessage({ tenant: '', message: userMessage('quick trip'), configuration: undefined, metadata: undefined });

      const records: Rec[] = [];
      for (const [p, n] of [['http', 1], ['llm', 1], ['mcp', 2], ['a2a', 1]] as const) {
        records.push(...(await eventually(`${n} final ${p} records`, async () => {
          const f = await finals(t, since, p);
          return f.length >= n ? f : undefined;
        })));
      }
      for (const rec of records) {
        assert.equal(rec['bodies'], undefined);
        assert.equal(rec['redactions'], undefined);
        await mirrored(t, rec['id']);
      }
      const text = auditText(t);
      // Text that only ever was in a request or response body.
      for (const s of ['BODY-MARK-http', 'http-reply', 'BODY-MARK-llm', 'echo: ', 'tool-reply', 'resource-reply', 'quick answer to', 'hunter2']) assert.ok(!text.includes(s), `"${s}" is in the audit log`);
      await verifyChain(t);

      // A reload turns it on for the exchanges that start after it.
      writeFileSync(t.configFile, `data: ${join(t.dir, 'data')}\n${config(urls, true)}`);
      assert.deepEqual(t.gw.reload('test'), { ok: true });
      const r2 = await call(`${t.agentUrl}/http/api/echo`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ password: 'hunter2', note: 'after reload' }) });
      const rec2 = await finalOf(t, String(r2.headers['x-airlock-request-id']), 'http');
      assert.equal(JSON.parse(rec2['bodies'].request).note, 'after reload');
      assert.equal(rec2['redactions'], 3);
      await verifyChain(t);
    });
  });
});
