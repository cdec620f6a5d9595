/**
 * Agent cards through airlock: the rewriting rules (signatures kept only on an unchanged card,
 * untrusted interfaces left out, both card generations), the TTL cache (stale served while a fresh
 * card is fetched, at most one more TTL when the remote agent is gone), and the `a2a:` config.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseCard, rewriteCard, AIRLOCK_CARD_EXTENSION } from '../src/protocols/a2a/card.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { startA2AUpstream, type A2AUpstream } from './support/a2a.js';

const CARD_URL = new URL('https://travel.example.com/.well-known/agent-card.json');
const TRUSTED = new Set(['https://travel.example.com']);
const BASE = 'http://127.0.0.1:8844/a2a/travel';

function parsed(card: unknown) {
  const p = parseCard(JSON.stringify(card), CARD_URL, TRUSTED);
  assert.ok(p.ok, p.ok ? '' : p.problem);
  return p.card;
}

describe('a2a: card rewriting', () => {
  it('a changed card loses its signatures and says so in an extension; the note is not duplicated', () => {
    const card = {
      name: 'T',
      supportedInterfaces: [
        { url: 'https://travel.example.com/rpc', protocolBinding: 'JSONRPC', protocolVersion: '1.0' },
        { url: 'https://evil.example.net/rpc', protocolBinding: 'JSONRPC', protocolVersion: '1.0' },
        { url: 'grpc.travel.example.com:443', protocolBinding: 'GRPC', protocolVersion: '1.0' },
      ],
      capabilities: { streaming: true, extensions: [{ uri: AIRLOCK_CARD_EXTENSION, description: 'stale note from another airlock' }] },
      securitySchemes: { oauth: { oauth2SecurityScheme: { flows: {} } } },
      securityRequirements: [{ schemes: { oauth: { list: ['book'] } } }],
      signatures: [{ protected: 'p', signature: 's' }],
    };
    const p = parsed(card);
    assert.equal(p.endpoints.length, 1, 'only the trusted JSON-RPC interface is an endpoint');
    assert.equal(p.dropped.length, 2);
    const out = rewriteCard(p, BASE, 'travel', CARD_URL, TRUSTED) as Record<string, any>;
    assert.deepEqual(out['supportedInterfaces'], [{ url: BASE, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }]);
    assert.equal(out['signatures'], undefined);
    assert.deepEqual(Object.keys(out['securitySchemes']), ['airlock']);
    const notes = out['capabilities'].extensions.filter((e: { uri: string }) => e.uri === AIRLOCK_CARD_EXTENSION);
    assert.equal(notes.length, 1);
    assert.equal(notes[0].params.signatures, 'dropped');
    assert.equal(notes[0].params.droppedInterfaces, 2);
    assert.equal(notes[0].required, false);
    assert.equal(out['capabilities'].streaming, true);
  });

  it('a card that needs no change (already airlock\'s URLs and scheme) keeps its signatures and gets no note', () => {
    const once = rewriteCard(parsed({ name: 'T', supportedInterfaces: [{ url: 'https://travel.example.com/rpc', protocolBinding: 'JSONRPC', protocolVersion: '1.0' }] }), BASE, 'travel', CARD_URL, TRUSTED) as Record<string, any>;
    // A card already in the shape airlock serves (as an airlock behind another airlock sees it).
    const already = { name: 'T', supportedInterfaces: once['supportedInterfaces'], securitySchemes: once['securitySchemes'], securityRequirements: once['securityRequirements'], signatures: [{ protected: 'p', signature: 's' }] };
    const trusted = new Set([...TRUSTED, 'http://127.0.0.1:8844']);
    const out = rewriteCard(parseCardOk(already, trusted), BASE, 'travel', CARD_URL, trusted) as Record<string, any>;
    assert.deepEqual(out['signatures'], [{ protected: 'p', signature: 's' }]);
    assert.equal(out['capabilities'], undefined);
  });

  it('0.3 cards: url, additionalInterfaces and OpenAPI-style security are rewritten', () => {
    const p = parsed({
      name: 'L',
      protocolVersion: '0.3.0',
      url: 'https://travel.example.com/rpc',
      preferredTransport: 'JSONRPC',
      additionalInterfaces: [
        { url: 'https://travel.example.com/rest', transport: 'HTTP+JSON' },
        { url: 'https://travel.example.com:443', transport: 'GRPC' },
      ],
      securitySchemes: { key: { type: 'apiKey', in: 'header', name: 'X-Key' } },
      security: [{ key: [] }],
      skills: [{ id: 's', security: [{ key: [] }] }],
    });
    assert.deepEqual(
      p.endpoints.map((e) => [e.binding, e.version, e.url.href]),
      [
        ['JSONRPC', '0.3', 'https://travel.example.com/rpc'],
        ['HTTP+JSON', '0.3', 'https://travel.example.com/rest'],
      ],
    );
    const out = rewriteCard(p, BASE, 'travel', CARD_URL, TRUSTED) as Record<string, any>;
    assert.equal(out['url'], BASE);
    assert.deepEqual(out['additionalInterfaces'], [{ url: BASE, transport: 'HTTP+JSON' }]);
    assert.deepEqual(out['security'], [{ airlock: [] }]);
    assert.equal(out['securitySchemes'].airlock.type, 'http');
    assert.deepEqual(out['skills'], [{ id: 's' }]);
  });
});

function parseCardOk(card: unknown, trusted: Set<string>) {
  const p = parseCard(JSON.stringify(card), CARD_URL, trusted);
  assert.ok(p.ok);
  return p.card;
}

describe('a2a: the card cache', () => {
  let up: A2AUpstream;
  let t: TestGateway;
  const fetches = () => up.seen.filter((s) => s.url === '/.well-known/agent-card.json').length;
  const card = () => call(`${t.agentUrl}/a2a/travel/.well-known/agent-card.json`, { key: KEYS.alice, headers: { 'a2a-version': '1.0' } });
  before(async () => {
    up = await startA2AUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: r
    allow: ["a2a: travel"]
a2a:
  publicUrl: https://airlock.internal.example
  agents:
    travel: { url: "${up.url}", cardTtl: 300ms }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('serves from cache within the TTL, then a stale card while the fresh one is fetched', async () => {
    const first = await card();
    assert.equal(first.status, 200);
    assert.equal(first.json.supportedInterfaces[0].url, 'https://airlock.internal.example/a2a/travel', 'a2a.publicUrl is the base of rewritten URLs');
    const n = fetches();
    await card();
    await card();
    assert.equal(fetches(), n, 'within the TTL: no fetch');
    up.setCardText(JSON.stringify({ name: 'Travel v2', supportedInterfaces: [{ url: `${up.url}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }] }));
    await new Promise((r) => setTimeout(r, 350));
    const stale = await card();
    assert.equal(stale.json.name, 'Travel agent', 'the stale card is served at once');
    for (let i = 0; i < 50 && fetches() === n; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fetches(), n + 1, 'one background fetch');
    await new Promise((r) => setTimeout(r, 20));
    assert.equal((await card()).json.name, 'Travel v2');
    up.setCardText(undefined);
  });

  it('a remote agent that went away: the last good card for one more TTL, then upstream_error', async () => {
    await new Promise((r) => setTimeout(r, 350));
    await card(); // starts a refresh of the expired entry
    await new Promise((r) => setTimeout(r, 50));
    await up.close();
    await new Promise((r) => setTimeout(r, 300));
    const stale = await card();
    assert.equal(stale.status, 200, 'stale-if-error within one more TTL');
    await new Promise((r) => setTimeout(r, 400));
    const gone = await card();
    assert.equal(gone.status, 502);
    assert.equal(gone.json.error.code, 'upstream_error');
  });
});

describe('a2a: config', () => {
  it('refuses a bad a2a section, naming the key', async () => {
    const base = `agents:\n  alice: { keys: ["${KEYS.alice}"] }\n`;
    await assert.rejects(startGateway(`${base}a2a:\n  agents:\n    travel: { url: "ftp://x" }\n`), /a2a\.agents\.travel\.url/);
    await assert.rejects(startGateway(`${base}a2a:\n  agents:\n    travel: { url: "https://x.example", token: "t", headers: { Authorization: "Bearer u" } }\n`), /a2a\.agents\.travel\.token: set either token or an Authorization header/);
    await assert.rejects(startGateway(`${base}a2a:\n  agents:\n    travel: { url: "https://x.example", cardTTL: 5m }\n`), /a2a\.agents\.travel\.cardTTL: unknown key/);
    await assert.rejects(startGateway(`${base}a2a:\n  agents:\n    travel: { url: "https://x.example?q=1" }\n`), /must not have a query/);
    await assert.rejects(startGateway(`${base}rules:\n  - name: r\n    allow: ["a2a: travel Send Message"]\n`), /A2A pattern is "<agent> \[method\]"/);
  });
});
