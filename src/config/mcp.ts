/**
 * Compiles the `mcp:` section into the runtime model the MCP front door and upstream connections
 * serve from.
 */
import { isAbsolute, resolve } from 'node:path';
import type { LoadedConfig } from './load.js';
import type { McpSectionConfig } from './mcp-schema.js';
import { checkHeaderSafe, compileHeaders } from './headers.js';
import { parseDuration, parseSize } from './units.js';

/** Longer keep-alive gaps defeat their purpose, and past ~24.8 days setInterval would fire every 1 ms. */
const KEEPALIVE_MAX_MS = 3_600_000;

export type McpServerSpec =
  | { kind: 'stdio'; command: string; args: string[]; env: Record<string, string>; cwd: string }
  | { kind: 'streamable-http' | 'sse'; url: URL; headers: Record<string, string> };

export interface McpServerConfig {
  /** The name agents see: `/mcp/<name>`, `<name>__<tool>`, `mcp: <name>/<tool>`. */
  name: string;
  spec: McpServerSpec;
  timeoutMs: number;
  /** Stable text of what must be reconnected when it changes. */
  key: string;
}

export interface McpRuntime {
  servers: Map<string, McpServerConfig>;
  pinning: 'strict' | 'warn' | 'off';
  maxBodySize: number;
  excerptChars: number;
  /** SSE comment interval on GET and subscriptions/listen streams; 0 sends none. */
  keepAliveMs: number;
}


/** Builds the MCP runtime model; semantic errors name the line and key. */
export function compileMcp(c: McpSectionConfig | undefined, loaded: LoadedConfig): McpRuntime {
  const fail = loaded.fail;
  const servers = new Map<string, McpServerConfig>();
  for (const [name, s] of Object.entries(c?.servers ?? {})) {
    const path = ['mcp', 'servers', name];
    let spec: McpServerSpec;
    if (s.command !== undefined) {
      if (s.url !== undefined) fail([...path, 'url'], 'a server has either command (stdio) or url (HTTP), not both');
      for (const k of ['headers', 'token', 'transport'] as const) if (s[k] !== undefined) fail([...path, k], `${k} applies to HTTP servers; a stdio server takes env`);
      const cwd = s.cwd === undefined ? loaded.baseDir : isAbsolute(s.cwd) ? s.cwd : resolve(loaded.baseDir, s.cwd);
      spec = { kind: 'stdio', command: s.command, args: s.args ?? [], env: s.env ?? {}, cwd };
    } else if (s.url !== undefined) {
      for (const k of ['args', 'env', 'cwd'] as const) if (s[k] !== undefined) fail([...path, k], `${k} applies to stdio servers; an HTTP server takes headers`);
      const headers: Record<string, string> = Object.fromEntries(compileHeaders(s.headers, path, fail));
      if (s.token !== undefined) {
        checkHeaderSafe(s.token, [...path, 'token'], fail, 'the token');
        if (Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) fail([...path, 'token'], 'set either token or an Authorization header, not both');
        headers['authorization'] = `Bearer ${s.token}`;
      }
      spec = { kind: s.transport ?? 'streamable-http', url: new URL(s.url), headers };
    } else {
      spec = fail(path, 'an MCP server needs command (a stdio server airlock starts) or url (an HTTP server)');
    }
    const timeoutMs = parseDuration(s.timeout ?? '2m')!;
    servers.set(name, { name, spec, timeoutMs, key: JSON.stringify(spec) });
  }
  return { servers, pinning: c?.pinning ?? 'strict', maxBodySize: parseSize(c?.maxBodySize ?? '1mb')!, excerptChars: c?.excerpt ?? 200, keepAliveMs: Math.min(parseDuration(c?.keepAlive ?? '15s')!, KEEPALIVE_MAX_MS) };
}
