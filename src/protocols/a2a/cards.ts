/**
 * Remote agents' cards, fetched with the injected credentials and cached with a TTL. A stale card
 * is served while a fresh one is fetched in the background (so the hot path never waits on it),
 * and for at most one more TTL when the remote agent cannot be reached. Concurrent misses share
 * one fetch.
 */
import type { Dispatcher } from 'undici';
import type { A2ARemoteAgent } from '../../config/a2a.js';
import type { Logger } from '../../telemetry/logger.js';
import { upstreamFailure } from '../../upstream/dispatcher.js';
import { discard } from '../../upstream/relay.js';
import { parseCard, rewriteCard, type ParsedCard } from './card.js';

/** Cards larger than this are refused: a card is a small JSON document. */
const MAX_CARD_BYTES = 1024 * 1024;
/** Rewritten copies kept per card (one per base URL agents reach airlock by). */
const MAX_SERVED = 16;
/** Cards kept (per remote agent, per A2A-Version, per config generation); the oldest go first. */
const MAX_ENTRIES = 256;

export interface CardEntry {
  card: ParsedCard;
  fetchedAt: number;
  expiresAt: number;
  /** Rewritten card text by base URL. */
  served: Map<string, string>;
}

export type CardResult = { ok: true; entry: CardEntry } | { ok: false; code: 'upstream_error' | 'upstream_timeout'; message: string };

export class CardCache {
  private readonly entries = new Map<string, CardEntry>();
  private readonly inflight = new Map<string, Promise<CardResult>>();

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The card of `agent` as served to clients that send `version` in `A2A-Version` (a 1.0 server in
   * compatibility mode answers 0.3 clients with a differently shaped card).
   */
  get(agent: A2ARemoteAgent, version: string | undefined): CardResult | Promise<CardResult> {
    const key = cacheKey(agent, version);
    const e = this.entries.get(key);
    const t = this.now();
    if (e && t < e.expiresAt) return { ok: true, entry: e };
    if (e && t < e.expiresAt + agent.cardTtlMs) {
      void this.fetch(key, agent, version);
      return { ok: true, entry: e };
    }
    return this.fetch(key, agent, version);
  }

  /** The rewritten card text for agents reaching airlock at `base`. */
  served(entry: CardEntry, base: string, agent: A2ARemoteAgent): string {
    let text = entry.served.get(base);
    if (text === undefined) {
      text = JSON.stringify(rewriteCard(entry.card, base, agent.name, agent.cardUrl, agent.origins));
      if (entry.served.size >= MAX_SERVED) entry.served.clear();
      entry.served.set(base, text);
    }
    return text;
  }

  private fetch(key: string, agent: A2ARemoteAgent, version: string | undefined): Promise<CardResult> {
    let p = this.inflight.get(key);
    if (!p) {
      p = this.load(agent, version).then((r) => {
        this.inflight.delete(key);
        if (r.ok) {
          this.entries.delete(key);
          if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
          this.entries.set(key, r.entry);
        }
        else this.log.warn({ a2aAgent: agent.name, card: agent.cardUrl.href, problem: r.message }, 'A2A card fetch failed');
        return r;
      });
      this.inflight.set(key, p);
    }
    return p;
  }

  private async load(agent: A2ARemoteAgent, version: string | undefined): Promise<CardResult> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (version !== undefined) headers['a2a-version'] = version;
    for (const [k, v] of agent.headers) headers[k] = v;
    let text: string;
    try {
      const res = await this.dispatcher.request({
        origin: agent.cardUrl.origin,
        path: `${agent.cardUrl.pathname}${agent.cardUrl.search}`,
        method: 'GET',
        headers,
        headersTimeout: agent.timeoutMs,
        bodyTimeout: agent.timeoutMs,
      });
      if (res.statusCode < 200 || res.statusCode > 299) {
        await res.body.dump().catch(() => {});
        return { ok: false, code: 'upstream_error', message: `the remote agent's card could not be fetched: ${agent.cardUrl.origin} answered HTTP ${res.statusCode}` };
      }
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > MAX_CARD_BYTES) {
        discard(res.body);
        return { ok: false, code: 'upstream_error', message: `the remote agent's card is larger than ${MAX_CARD_BYTES} bytes` };
      }
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const c of res.body as AsyncIterable<Buffer>) {
        n += c.length;
        if (n > MAX_CARD_BYTES) {
          discard(res.body);
          return { ok: false, code: 'upstream_error', message: `the remote agent's card is larger than ${MAX_CARD_BYTES} bytes` };
        }
        chunks.push(c);
      }
      text = Buffer.concat(chunks).toString('utf8');
    } catch (e) {
      const f = upstreamFailure(e);
      return { ok: false, code: f.code, message: `the remote agent's card could not be fetched: ${f.message}` };
    }
    const parsed = parseCard(text, agent.cardUrl, agent.origins);
    if (!parsed.ok) return { ok: false, code: 'upstream_error', message: parsed.problem };
    if (parsed.card.dropped.length > 0) this.log.info({ a2aAgent: agent.name, dropped: parsed.card.dropped }, 'A2A card interfaces left out');
    const t = this.now();
    return { ok: true, entry: { card: parsed.card, fetchedAt: t, expiresAt: t + agent.cardTtlMs, served: new Map() } };
  }
}

const KEY_PREFIX = new WeakMap<A2ARemoteAgent, string>();

/** A config reload that changes where or how the card is fetched starts a new entry. */
function cacheKey(agent: A2ARemoteAgent, version: string | undefined): string {
  let prefix = KEY_PREFIX.get(agent);
  if (prefix === undefined) {
    prefix = `${agent.name}\n${agent.cardUrl.href}\n${[...agent.origins].join(',')}\n${agent.headers.map(([k, v]) => `${k}:${v}`).join('\n')}\n`;
    KEY_PREFIX.set(agent, prefix);
  }
  return prefix + (version ?? '');
}
