/**
 * Compiles the `a2a:` section into the runtime model the A2A front door serves from: each remote
 * agent's base URL, card location, injected headers and limits.
 */
import type { A2ASectionConfig } from './a2a-schema.js';
import type { LoadedConfig } from './load.js';
import { checkHeaderSafe, compileHeaders } from './headers.js';
import { parseDuration, parseSize } from './units.js';

export interface A2ARemoteAgent {
  /** The name agents use: `/a2a/<name>`, `a2a: <name> <Method>`. */
  name: string;
  url: URL;
  /** Where the card is fetched from. */
  cardUrl: URL;
  /** Injected on every upstream call, names lower-cased. */
  headers: [string, string][];
  timeoutMs: number;
  cardTtlMs: number;
  maxBodySize: number;
  allowPrivatePushUrls: boolean;
  /** Origins the card may name for its interfaces: url's own, plus `origins`. */
  origins: Set<string>;
}

export interface A2ARuntime {
  agents: Map<string, A2ARemoteAgent>;
  /** Base for rewritten card URLs, without a trailing slash; undefined: from the Host header. */
  publicUrl: string | undefined;
  excerptChars: number;
}


/** Builds the A2A runtime model; semantic errors name the line and key. */
export function compileA2A(c: A2ASectionConfig | undefined, loaded: LoadedConfig): A2ARuntime {
  const fail = loaded.fail;
  const agents = new Map<string, A2ARemoteAgent>();
  for (const [name, a] of Object.entries(c?.agents ?? {})) {
    const path = ['a2a', 'agents', name];
    const url = new URL(a.url);
    if (url.search || url.hash) fail([...path, 'url'], 'the agent URL must not have a query or fragment');
    const base = new URL(url.href.endsWith('/') ? url.href : `${url.href}/`);
    const cardUrl = URL.canParse(a.card ?? '.well-known/agent-card.json', base.href)
      ? new URL(a.card ?? '.well-known/agent-card.json', base)
      : fail([...path, 'card'], `"${a.card}" is neither a path nor a URL`);
    if (cardUrl.protocol !== 'http:' && cardUrl.protocol !== 'https:') fail([...path, 'card'], 'the card must be fetched over http:// or https://');
    const headers = compileHeaders(a.headers, path, fail);
    if (a.token !== undefined) {
      checkHeaderSafe(a.token, [...path, 'token'], fail, 'the token');
      if (headers.some(([k]) => k === 'authorization')) fail([...path, 'token'], 'set either token or an Authorization header, not both');
      headers.push(['authorization', `Bearer ${a.token}`]);
    }
    const origins = new Set([url.origin, ...(a.origins ?? []).map((o) => new URL(o).origin)]);
    agents.set(name, {
      name,
      url,
      cardUrl,
      headers,
      timeoutMs: parseDuration(a.timeout ?? '2m')!,
      cardTtlMs: parseDuration(a.cardTtl ?? '5m')!,
      maxBodySize: parseSize(a.maxBodySize ?? '10mb')!,
      allowPrivatePushUrls: a.allowPrivatePushUrls ?? false,
      origins,
    });
  }
  return { agents, publicUrl: c?.publicUrl?.replace(/\/+$/, ''), excerptChars: c?.excerpt ?? 200 };
}
