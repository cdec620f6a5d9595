/**
 * Agent cards: which upstream endpoints a card names (and whether airlock may call them), and the
 * card rewritten for agents — every interface URL pointing at airlock, airlock's security scheme
 * (bearer agent key) in place of the remote agent's, and signatures handled honestly.
 *
 * Both card generations are handled: 1.0 (`supportedInterfaces`, proto-JSON security schemes) and
 * 0.3 (`url` + `preferredTransport` + `additionalInterfaces`, OpenAPI-style schemes), including the
 * hybrid card a 1.0 server in compatibility mode serves to 0.3 clients.
 */
import { canonical } from '../../audit/record.js';
import type { A2AVersion } from './methods.js';
import { MAX_NESTING, nestedDeeperThan } from '../json.js';

export type Binding = 'JSONRPC' | 'HTTP+JSON';

/** An upstream interface airlock can forward to. */
export interface Endpoint {
  binding: Binding;
  version: A2AVersion | string;
  url: URL;
}

export interface ParsedCard {
  raw: Record<string, unknown>;
  endpoints: Endpoint[];
  /** Interfaces left out of the rewritten card, and why (gRPC, untrusted origin …). */
  dropped: string[];
}

type Obj = Record<string, unknown>;

/** The extension URI under which a rewritten card says what airlock changed. */
export const AIRLOCK_CARD_EXTENSION = 'urn:airlock:a2a-gateway:v1';

function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
}

function binding(v: unknown): Binding | undefined {
  if (typeof v !== 'string') return undefined;
  const b = v.toUpperCase();
  if (b === 'JSONRPC' || b === 'JSON-RPC') return 'JSONRPC';
  if (b === 'HTTP+JSON' || b === 'REST' || b === 'HTTP') return 'HTTP+JSON';
  return undefined;
}

/** `1.0.0` → `1.0`, `0.3.0` → `0.3`. */
export function normalizeVersion(v: unknown, fallback: string): string {
  if (typeof v !== 'string' || v.trim() === '') return fallback;
  const m = /^\s*(\d+)\.(\d+)/.exec(v);
  return m ? `${m[1]}.${m[2]}` : v.trim();
}

function interfacesKey(card: Obj): 'supportedInterfaces' | 'supported_interfaces' | undefined {
  if (Array.isArray(card['supportedInterfaces'])) return 'supportedInterfaces';
  if (Array.isArray(card['supported_interfaces'])) return 'supported_interfaces';
  return undefined;
}

/** Is this interface one airlock forwards to? Its URL must be on a trusted origin. */
function usable(b: Binding | undefined, url: unknown, cardUrl: URL, trusted: ReadonlySet<string>): { ok: true; url: URL } | { ok: false; why: string } {
  if (!b) return { ok: false, why: 'a binding airlock does not proxy (only JSONRPC and HTTP+JSON)' };
  if (typeof url !== 'string' || !URL.canParse(url, cardUrl)) return { ok: false, why: 'no valid URL' };
  const u = new URL(url, cardUrl);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return { ok: false, why: `an unsupported scheme (${u.protocol})` };
  if (!trusted.has(u.origin)) return { ok: false, why: `an untrusted origin (${u.origin}; add it to the agent's origins to allow it)` };
  return { ok: true, url: u };
}

/**
 * Parses a fetched card: the endpoints airlock may forward to. A card that is not a JSON object or
 * names no usable interface is refused with the reason.
 */
export function parseCard(text: string, cardUrl: URL, trusted: ReadonlySet<string>): { ok: true; card: ParsedCard } | { ok: false; problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'the remote agent\'s card is not valid JSON' };
  }
  const raw = obj(value);
  if (!raw) return { ok: false, problem: 'the remote agent\'s card is not a JSON object' };
  // Rewriting and serving the card recurse once per level.
  if (nestedDeeperThan(Buffer.from(text), MAX_NESTING)) return { ok: false, problem: `the remote agent's card nests objects and arrays more than ${MAX_NESTING} levels deep` };
  const endpoints: Endpoint[] = [];
  const dropped: string[] = [];
  const ik = interfacesKey(raw);
  for (const i of ik ? (raw[ik] as unknown[]) : []) {
    const iface = obj(i);
    if (!iface) continue;
    const b = binding(iface['protocolBinding'] ?? iface['protocol_binding'] ?? iface['transport']);
    const u = usable(b, iface['url'], cardUrl, trusted);
    const label = `${String(iface['protocolBinding'] ?? iface['protocol_binding'] ?? iface['transport'] ?? '?')} ${String(iface['url'] ?? '')}`;
    if (!u.ok) dropped.push(`${label}: ${u.why}`);
    else endpoints.push({ binding: b!, version: normalizeVersion(iface['protocolVersion'] ?? iface['protocol_version'], '1.0'), url: u.url });
  }
  if (typeof raw['url'] === 'string') {
    // A 0.3 card (or the 0.3 half of a hybrid one): the main interface plus additional ones.
    const version = normalizeVersion(raw['protocolVersion'], '0.3');
    const main = binding(raw['preferredTransport'] ?? 'JSONRPC');
    const u = usable(main, raw['url'], cardUrl, trusted);
    if (!u.ok) dropped.push(`${String(raw['preferredTransport'] ?? 'JSONRPC')} ${raw['url']}: ${u.why}`);
    else endpoints.push({ binding: main!, version, url: u.url });
    for (const i of Array.isArray(raw['additionalInterfaces']) ? raw['additionalInterfaces'] : []) {
      const iface = obj(i);
      if (!iface) continue;
      const b = binding(iface['transport']);
      const au = usable(b, iface['url'], cardUrl, trusted);
      if (!au.ok) dropped.push(`${String(iface['transport'] ?? '?')} ${String(iface['url'] ?? '')}: ${au.why}`);
      else endpoints.push({ binding: b!, version, url: au.url });
    }
  }
  if (endpoints.length === 0) {
    return { ok: false, problem: `the remote agent's card names no interface airlock can forward to${dropped.length ? ` (${dropped.join('; ')})` : ''}` };
  }
  return { ok: true, card: { raw, endpoints, dropped } };
}

/** The endpoint for a binding and protocol generation: same version first, else any of that binding. */
export function pickEndpoint(card: ParsedCard, b: Binding, version: A2AVersion): Endpoint | undefined {
  let any: Endpoint | undefined;
  for (const e of card.endpoints) {
    if (e.binding !== b) continue;
    if (e.version === version) return e;
    any ??= e;
  }
  return any;
}

const SCHEME_NAME = 'airlock';
const SCHEME_DESCRIPTION = 'airlock agent key (alk_...), sent as "Authorization: Bearer <key>"';

/** What the rewritten card says about itself, in its one standard extension point. */
function noteExtension(agent: string, dropped: string[], signatures: number): Obj {
  return {
    uri: AIRLOCK_CARD_EXTENSION,
    description:
      `Served by the airlock egress gateway for remote agent "${agent}": interface URLs and security schemes were rewritten to airlock's` +
      (signatures > 0 ? `; the remote agent's ${signatures} signature(s) were removed because they do not cover the rewritten card` : ''),
    required: false,
    params: {
      gateway: 'airlock',
      agent,
      rewritten: ['interfaces', 'securitySchemes', 'securityRequirements'],
      signatures: signatures > 0 ? 'dropped' : 'none',
      droppedSignatures: signatures,
      droppedInterfaces: dropped.length,
    },
  };
}

function without(o: Obj, keys: readonly string[]): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(o)) if (!keys.includes(k)) out[k] = v;
  return out;
}

/**
 * The card as agents see it through airlock: every proxied interface at `base` (other interfaces
 * left out), airlock's bearer scheme as the only security, per-skill security removed. Signatures
 * are kept only when nothing changed; otherwise they are dropped and the card says so in an
 * extension entry (A2A cards have no free-form metadata field; extensions are their annotation point).
 */
export function rewriteCard(card: ParsedCard, base: string, agent: string, cardUrl: URL, trusted: ReadonlySet<string>): Obj {
  const raw = card.raw;
  const out: Obj = structuredClone(without(raw, ['signatures']));
  const legacy = typeof raw['url'] === 'string';
  const ik = interfacesKey(raw);
  if (ik) {
    out[ik] = (raw[ik] as unknown[]).flatMap((i) => {
      const iface = obj(i);
      if (!iface) return [];
      const b = binding(iface['protocolBinding'] ?? iface['protocol_binding'] ?? iface['transport']);
      return usable(b, iface['url'], cardUrl, trusted).ok ? [{ ...iface, url: base }] : [];
    });
  }
  if (legacy) {
    const additional = (Array.isArray(raw['additionalInterfaces']) ? raw['additionalInterfaces'] : []).flatMap((i) => {
      const iface = obj(i);
      if (!iface) return [];
      return usable(binding(iface['transport']), iface['url'], cardUrl, trusted).ok ? [{ ...iface, url: base }] : [];
    });
    const mainOk = usable(binding(raw['preferredTransport'] ?? 'JSONRPC'), raw['url'], cardUrl, trusted).ok;
    if (!mainOk && additional.length > 0) out['preferredTransport'] = (additional[0] as Obj)['transport'];
    out['url'] = base;
    if (Array.isArray(raw['additionalInterfaces'])) out['additionalInterfaces'] = additional;
  }
  for (const k of ['securitySchemes', 'security_schemes', 'security', 'securityRequirements', 'security_requirements']) delete out[k];
  if (legacy) {
    out['securitySchemes'] = { [SCHEME_NAME]: { type: 'http', scheme: 'bearer', description: SCHEME_DESCRIPTION } };
    out['security'] = [{ [SCHEME_NAME]: [] }];
  } else {
    out['securitySchemes'] = { [SCHEME_NAME]: { httpAuthSecurityScheme: { scheme: 'Bearer', description: SCHEME_DESCRIPTION } } };
    out['securityRequirements'] = [{ schemes: { [SCHEME_NAME]: { list: [] } } }];
  }
  if (Array.isArray(out['skills'])) {
    out['skills'] = (out['skills'] as unknown[]).map((s) => {
      const skill = obj(s);
      return skill ? without(skill, ['security', 'securityRequirements', 'security_requirements']) : s;
    });
  }
  const signatures = Array.isArray(raw['signatures']) ? raw['signatures'].length : 0;
  const changed = canonical(out) !== canonical(without(raw, ['signatures']));
  if (!changed) {
    if (raw['signatures'] !== undefined) out['signatures'] = raw['signatures'];
    return out;
  }
  const caps = obj(out['capabilities']) ?? {};
  const extensions = Array.isArray(caps['extensions']) ? (caps['extensions'] as unknown[]).filter((e) => obj(e)?.['uri'] !== AIRLOCK_CARD_EXTENSION) : [];
  out['capabilities'] = { ...caps, extensions: [...extensions, noteExtension(agent, card.dropped, signatures)] };
  return out;
}
