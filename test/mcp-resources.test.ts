/**
 * resources/read and `mcp-resource` rules: a URI that could mean something else to the server than
 * to the rules (dot segments, empty segments, backslashes, percent-encoded `/`, `\` or unreserved
 * characters) is refused before any rule sees it — a JSON-RPC invalid-params error and an audit
 * record, and the server is never asked — while ordinary URIs (query strings, custom schemes,
 * percent-encoded spaces and UTF-8, a trailing slash) are read as before. Agents are the official
 * v2 client SDK; the upstream is a v2 SDK server that reads whatever it is asked for.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { resourceUriProblem } from '../src/protocols/mcp/resource-uri.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { agentClient, startResourceUpstream, type ResourceUpstream, waitFor, refusal } from './support/mcp.js';

const UNSAFE = [
  'file:///handbook/..%2F..%2Fetc%2Fpasswd',
  'file:///handbook/../../etc/passwd',
  'file:///handbook/%2E%2E/%2e%2e/etc/passwd',
  'file:///handbook//private/salaries.md',
  'file:///handbook/./private/salaries.md',
  'file:///handbook/%70rivate/salaries.md',
  'file:///handbook/pub%2Fprivate/salaries.md',
  'file:///handbook/..\\..\\etc\\passwd',
  'file:///handbook/x%5C..%5Cprivate',
  'file:///handbook/intro.md?/../../../etc/passwd',
  'file:///handbook/intro.md#/%2E%2E/private',
  'file:///handbook/100%',
  'file:///handbook/%00x',
  'memory://../notes/1',
];
const ORDINARY = [
  'file:///handbook/intro.md',
  'file:///handbook/my%20notes.md',
  'file:///handbook/caf%C3%A9.md',
  'file:///handbook/100%25.md',
  'file:///handbook/intro.md?lang=en&from=https://example.com/a/b',
  'file:///handbook/search?path=a%2Fb',
  'file:///handbook/guides/',
  'file:///handbook/..notes/v1.2',
  'memory://notes/42',
];

describe('mcp: resource URIs are read only in one spelling', () => {
  let up: ResourceUpstream;
  let t: TestGateway;
  let c: Client;
  before(async () => {
    up = await startResourceUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: handbook
    allow: ["mcp-resource: docs/file:///handbook/**", "mcp-resource: docs/memory://notes/*"]
  - name: not-private
    deny: ["mcp-resource: docs/file:///handbook/private/**", "mcp-resource: docs/file:///handbook/caf%C3%A9/**", "mcp-resource: docs/file:///handbook/my%20drafts/**", "mcp-resource: docs/file:///handbook/h%c3%b4tel/**"]
    reason: private pages are off limits
mcp:
  servers:
    docs: { url: "${up.url}" }
`);
    await waitFor(() => (t.gw.mcpHub.get('docs')?.catalogue.templates.length ?? 0) > 0);
    c = await agentClient(`${t.agentUrl}/mcp/docs`, KEYS.alice, 'modern');
  });
  after(async () => {
    await c?.close();
    await t?.stop();
    await up?.close();
  });

  for (const uri of UNSAFE) {
    it(`refuses ${JSON.stringify(uri)}: invalid params (bad_request), audited, never sent`, async () => {
      const e = await refusal(c.readResource({ uri }));
      assert.equal(e.code, -32602, e.message);
      assert.match(e.message, /^airlock: bad_request: /);
      assert.equal(e.data['airlock_code'], 'bad_request');
      assert.ok(!up.reads.includes(uri), 'the server was not asked');
      const rec = await waitFor(async () => ((await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=100`)).json.records as Record<string, any>[]).find((x) => x['id'] === e.data['request_id']));
      assert.equal(rec['code'], 'bad_request');
      assert.equal(rec['decision'], 'denied');
      assert.equal(rec['target']['uri'], uri);
    });
  }

  it('reads ordinary URIs: query strings, custom schemes, encoded spaces and UTF-8, a trailing slash', async () => {
    for (const uri of ORDINARY) {
      const r = await c.readResource({ uri });
      assert.equal((r.contents[0] as { text: string }).text, `read ${uri}`);
    }
  });

  it('judges every spelling of a character alike: hex case, raw spaces and raw UTF-8 do not slip past a deny', async () => {
    const spellings = [
      'file:///handbook/caf%C3%A9/menu.md',
      'file:///handbook/caf%c3%a9/menu.md',
      'file:///handbook/caf%C3%a9/menu.md',
      'file:///handbook/café/menu.md',
      'file:///handbook/my%20drafts/a.md',
      'file:///handbook/my drafts/a.md',
      // the rule itself written in lower case
      'file:///handbook/h%C3%B4tel/a.md',
      'file:///handbook/hôtel/a.md',
    ];
    for (const uri of spellings) {
      const e = await refusal(c.readResource({ uri }));
      assert.match(e.message, /^airlock: denied: .*private pages are off limits/, uri);
      assert.ok(!up.reads.includes(uri), `${uri}: the server was not asked`);
      const rec = await waitFor(async () => ((await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=100`)).json.records as Record<string, any>[]).find((x) => x['id'] === e.data['request_id']));
      assert.equal(rec['rule'], 'not-private');
      assert.equal(rec['target']['uri'], uri, 'the audit shows the URI as the agent sent it');
    }
    // Other names are still read, and forwarded exactly as sent (a raw UTF-8 URI travels in the
    // modern client's Mcp-Name header as base64, which the gateway decodes to compare).
    assert.equal(((await c.readResource({ uri: 'file:///handbook/naïve.md' })).contents[0] as { text: string }).text, 'read file:///handbook/naïve.md');
    const r = await c.readResource({ uri: 'file:///handbook/caf%c3%a8/menu.md' });
    assert.equal((r.contents[0] as { text: string }).text, 'read file:///handbook/caf%c3%a8/menu.md');
  });

  it('still denies the private pages by rule, and on /mcp the same refusals apply', async () => {
    const e = await refusal(c.readResource({ uri: 'file:///handbook/private/salaries.md' }));
    assert.match(e.message, /^airlock: denied: /);
    const all = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, 'legacy');
    try {
      const bad = await refusal(all.readResource({ uri: 'file:///handbook/%70rivate/salaries.md' }));
      assert.match(bad.message, /^airlock: bad_request: /);
      assert.equal((await all.readResource({ uri: 'file:///handbook/intro.md' })).contents.length, 1);
    } finally {
      await all.close();
    }
  });
});

describe('resourceUriProblem', () => {
  it('names the problem', () => {
    assert.match(resourceUriProblem('file:///a/../b')!, /dot segments/);
    assert.match(resourceUriProblem('file:///a//b')!, /empty path segments/);
    assert.match(resourceUriProblem('file:///a/%41')!, /percent-encoded "A"/);
    assert.match(resourceUriProblem('file:///a/%zz')!, /malformed/);
    assert.equal(resourceUriProblem('urn:isbn:0451450523'), undefined);
    assert.equal(resourceUriProblem('file:///'), undefined);
    assert.equal(resourceUriProblem('https://example.com'), undefined);
  });
});
