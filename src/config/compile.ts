/**
 * Compiles a validated config file into the immutable runtime model the gateway serves from:
 * units parsed, patterns compiled, keys hashed. Semantic errors name the line and key.
 */
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { hashKey, isWellFormedKey, keyPrefix } from '../identity/keys.js';
import { compileActionPattern, compileGlob, PatternError, type Matcher } from '../policies/rules/pattern.js';
import { RuleSet } from '../policies/rules/ruleset.js';
import { compileA2A, type A2ARuntime } from './a2a.js';
import { compileMcp, type McpRuntime } from './mcp.js';
import { compileLlm, type LlmRuntime } from './llm.js';
import { compileHeaders } from './headers.js';
import type { LoadedConfig, PathKey } from './load.js';
import type { AgentLimitsConfig, ConfigFile } from './schema.js';
import { parseDuration, parseRate, parseSize, type Rate } from './units.js';
import type { AnomalyConfig, Spike } from '../events/anomalies.js';

export interface Budget {
  usd: number;
  period: 'day' | 'month';
  text: string;
}

export interface LimitSet {
  requests: Rate | undefined;
  tokens: Rate | undefined;
  budget: Budget | undefined;
  concurrency: number | undefined;
}

export interface AgentRuntime {
  name: string;
  team: string | undefined;
  limits: LimitSet;
}

export interface TeamRuntime {
  name: string;
  limits: LimitSet;
}

export interface TargetLimit {
  /** Stable index-based id, for counter keys. */
  id: string;
  target: string;
  match: Matcher;
  appliesTo: (agent: AgentRuntime) => boolean;
  requests: Rate | undefined;
  tokens: Rate | undefined;
  concurrency: number | undefined;
}

export interface HttpService {
  name: string;
  url: URL;
  /** The base URL's path without a trailing slash: what upstream paths are appended to. */
  basePath: string;
  /** Injected headers, names lower-cased. */
  headers: [string, string][];
  timeoutMs: number;
  retries: number;
  maxBodySize: number;
  process: { command: string; args: string[]; env: Record<string, string> } | undefined;
}

export interface ConfigKey {
  id: string;
  agent: string;
  hash: string;
  prefix: string;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface RuntimeConfig {
  file: string;
  listen: HostPort;
  /** `tokens` maps each admin token to the operator name it stands for. */
  admin: { listen: HostPort; token: string | undefined; tokens: { name: string; token: string }[] };
  dataDir: string;
  shutdownTimeoutMs: number;
  logLevel: string;
  server: { headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number };
  agents: Map<string, AgentRuntime>;
  teams: Map<string, TeamRuntime>;
  rules: RuleSet;
  targetLimits: TargetLimit[];
  guards: { loop: { repeats: number; windowMs: number } | undefined; sessionMaxCalls: number | undefined };
  http: {
    services: Map<string, HttpService>;
    /** Forward-proxy mode (`http.forwardProxy`), or undefined when it is off. */
    forwardProxy: { timeoutMs: number; maxBodySize: number } | undefined;
  };
  llm: LlmRuntime;
  a2a: A2ARuntime;
  mcp: McpRuntime;
  approvals: { timeoutMs: number; notify: { webhook: string; headers: Record<string, string> }[] };
  alerts: { notify: { webhook: string; headers: Record<string, string> }[]; anomalies: AnomalyConfig };
  audit: { bodies: boolean; jsonl: boolean };
  /** The scale-out store, when configured (SPEC section 1). */
  store: StoreRuntime;
  configKeys: ConfigKey[];
  /** The raw sections of front doors that compile their own (llm, mcp, a2a, store). */
  raw: LoadedConfig['config'];
}

export interface StoreRuntime {
  redis: { url: string; prefix: string } | undefined;
  postgres: { url: string; schema: string } | undefined;
}

export const DEFAULT_LISTEN = '127.0.0.1:8844';
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:8845';

/** `127.0.0.1:8844` / `[::1]:8844` → host and port. */
export function parseHostPort(v: string): HostPort | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

/** Is this listen host reachable only from this machine? */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}

const BUDGET_RE = /^\s*\$?(\d+(?:\.\d+)?)\s*\/\s*(day|d|month)\s*$/i;

function compileLimits(l: AgentLimitsConfig | undefined, path: PathKey[], loaded: LoadedConfig): LimitSet {
  const rate = (key: 'requests' | 'tokens'): Rate | undefined => {
    const v = l?.[key];
    if (v === undefined) return undefined;
    return parseRate(v) ?? loaded.fail([...path, key], `"${v}" is not a rate`);
  };
  let budget: Budget | undefined;
  if (l?.budget !== undefined) {
    const m = BUDGET_RE.exec(l.budget) ?? loaded.fail([...path, 'budget'], `"${l.budget}" is not a budget`);
    budget = { usd: Number(m[1]), period: m[2]!.toLowerCase() === 'month' ? 'month' : 'day', text: l.budget };
  }
  return { requests: rate('requests'), tokens: rate('tokens'), budget, concurrency: l?.concurrency };
}

function compilePattern(pattern: string, path: PathKey[], loaded: LoadedConfig): Matcher {
  try {
    return compileActionPattern(pattern);
  } catch (e) {
    if (e instanceof PatternError) loaded.fail(path, e.message);
    throw e;
  }
}

/** Builds the runtime model; throws ConfigError. `overrides` come from command-line flags. */
export function compileConfig(loaded: LoadedConfig, overrides: { listen?: string | undefined; adminListen?: string | undefined } = {}): RuntimeConfig {
  const c = loaded.config;
  const fail = loaded.fail;

  const listenText = overrides.listen ?? c.listen ?? DEFAULT_LISTEN;
  const listen = parseHostPort(listenText) ?? fail(['listen'], `"${listenText}" is not HOST:PORT`);
  const adminText = overrides.adminListen ?? c.admin?.listen ?? DEFAULT_ADMIN_LISTEN;
  const adminListen = parseHostPort(adminText) ?? fail(['admin', 'listen'], `"${adminText}" is not HOST:PORT`);
  const adminToken = c.admin?.token;
  const adminTokens = [...(adminToken ? [{ name: 'admin-token', token: adminToken }] : []), ...(c.admin?.tokens ?? [])];
  if (!isLoopbackHost(adminListen.host) && adminTokens.length === 0) {
    fail(['admin', 'token'], `the admin port listens on ${adminListen.host}, which is not loopback: set admin.token (for example \${env:AIRLOCK_ADMIN_TOKEN}) or listen on 127.0.0.1`);
  }

  const teams = new Map<string, TeamRuntime>();
  for (const [name, t] of Object.entries(c.teams ?? {})) teams.set(name, { name, limits: compileLimits(t.limits, ['teams', name, 'limits'], loaded) });

  const agents = new Map<string, AgentRuntime>();
  const configKeys: ConfigKey[] = [];
  const seenHashes = new Set<string>();
  for (const [name, a] of Object.entries(c.agents ?? {})) {
    agents.set(name, { name, team: a.team, limits: compileLimits(a.limits, ['agents', name, 'limits'], loaded) });
    (a.keys ?? []).forEach((key, i) => {
      if (!isWellFormedKey(key)) fail(['agents', name, 'keys', i], 'an agent key is "alk_" followed by at least 32 letters and digits (create one with `airlock keys create`)');
      const hash = hashKey(key);
      if (seenHashes.has(hash)) fail(['agents', name, 'keys', i], 'this key is already given to an agent');
      seenHashes.add(hash);
      configKeys.push({ id: `config:${name}:${i}`, agent: name, hash, prefix: keyPrefix(key) });
    });
  }

  let rules: RuleSet;
  const declaredTeams = new Set([...teams.keys(), ...[...agents.values()].flatMap((a) => (a.team === undefined ? [] : [a.team]))]);
  (c.rules ?? []).forEach((r, i) => {
    for (const effect of ['allow', 'approve', 'deny'] as const) {
      (r[effect] ?? []).forEach((p, j) => compilePattern(p, ['rules', i, effect, j], loaded));
    }
    // A misspelt name in `agents` makes the rule quietly apply to nobody: for a deny, a rule that
    // never stops anyone. Names without a glob must name a declared agent or team.
    (r.agents ?? []).forEach((s, j) => {
      if (/[*?]/.test(s)) return;
      if (s.startsWith('team:')) {
        if (!declaredTeams.has(s.slice(5).trim())) fail(['rules', i, 'agents', j], `no team named "${s.slice(5).trim()}" is declared (teams) or given to an agent; the rule would apply to nobody`);
      } else if (!agents.has(s)) fail(['rules', i, 'agents', j], `no agent named "${s}" is declared; the rule would apply to nobody`);
    });
  });
  rules = new RuleSet(c.rules ?? [], [...agents.values()]);

  // A limit's counters are keyed by what it limits (target and agents), not by its place in the
  // list: a reload that inserts or removes another limit must not hand this one fresh counters
  // (nor another limit's). Identical entries are told apart by their order among themselves.
  const seenLimits = new Map<string, number>();
  const targetLimits: TargetLimit[] = (c.limits ?? []).map((l, i) => {
    const path: PathKey[] = ['limits', i];
    const what = JSON.stringify([l.target, l.agents ?? null]);
    const nth = seenLimits.get(what) ?? 0;
    seenLimits.set(what, nth + 1);
    const sel = l.agents?.map((s) => (s.startsWith('team:') ? { team: compileGlob(s.slice(5)) } : { agent: compileGlob(s) }));
    const lim = compileLimits({ requests: l.requests, tokens: l.tokens }, path, loaded);
    if (!l.requests && !l.tokens && !l.concurrency) fail(path, 'a target limit needs requests, tokens or concurrency');
    return {
      id: `t${nth}${what}`,
      target: l.target,
      match: compilePattern(l.target, [...path, 'target'], loaded),
      appliesTo: (a: AgentRuntime) => !sel || sel.some((s) => ('team' in s ? a.team !== undefined && s.team(a.team) : s.agent(a.name))),
      requests: lim.requests,
      tokens: lim.tokens,
      concurrency: l.concurrency,
    };
  });

  const services = new Map<string, HttpService>();
  const defaultMaxBody = parseSize(c.http?.maxBodySize ?? '10mb')!;
  for (const [name, s] of Object.entries(c.http?.services ?? {})) {
    const url = new URL(s.url);
    if (url.search || url.hash) fail(['http', 'services', name, 'url'], 'the service URL must not have a query or fragment');
    const headers = compileHeaders(s.headers, ['http', 'services', name], fail);
    services.set(name, {
      name,
      url,
      basePath: url.pathname.replace(/\/+$/, ''),
      headers,
      timeoutMs: parseDuration(s.timeout ?? '30s')!,
      retries: s.retries ?? 0,
      maxBodySize: s.maxBodySize !== undefined ? parseSize(s.maxBodySize)! : defaultMaxBody,
      process: s.command ? { command: s.command, args: s.args ?? [], env: s.env ?? {} } : undefined,
    });
  }

  const loopCfg = c.guards?.loop;
  return {
    file: loaded.file,
    listen,
    admin: { listen: adminListen, token: adminToken, tokens: adminTokens },
    dataDir: resolve(loaded.baseDir, c.data ?? './.airlock'),
    shutdownTimeoutMs: parseDuration(c.shutdownTimeout ?? '10s')!,
    logLevel: c.log?.level ?? 'info',
    server: {
      headersTimeoutMs: parseDuration(c.server?.headersTimeout ?? '10s')!,
      requestTimeoutMs: parseDuration(c.server?.requestTimeout ?? '5m')!,
      keepAliveTimeoutMs: parseDuration(c.server?.keepAliveTimeout ?? '5s')!,
    },
    agents,
    teams,
    rules,
    targetLimits,
    guards: {
      loop: loopCfg ? { repeats: loopCfg.repeats, windowMs: parseDuration(loopCfg.window)! } : undefined,
      sessionMaxCalls: c.guards?.session?.maxCalls,
    },
    http: {
      services,
      forwardProxy: c.http?.forwardProxy ? { timeoutMs: parseDuration((typeof c.http.forwardProxy === 'object' ? c.http.forwardProxy.timeout : undefined) ?? '30s')!, maxBodySize: defaultMaxBody } : undefined,
    },
    llm: compileLlm(c.llm, loaded),
    a2a: compileA2A(c.a2a, loaded),
    mcp: compileMcp(c.mcp, loaded),
    approvals: {
      timeoutMs: parseDuration(c.approvals?.timeout ?? '5m')!,
      notify: (c.approvals?.notify ?? []).map((n) => ({ webhook: n.webhook, headers: n.headers ?? {} })),
    },
    alerts: {
      notify: (c.alerts?.notify ?? []).map((n) => ({ webhook: n.webhook, headers: n.headers ?? {} })),
      anomalies: compileAnomalies(c.alerts?.anomalies),
    },
    audit: { bodies: c.audit?.bodies ?? false, jsonl: c.audit?.jsonl ?? true },
    store: compileStore(c.store),
    configKeys,
    raw: c,
  };
}

type AnomaliesFile = NonNullable<ConfigFile['alerts']>['anomalies'];
type SpikeFile = Exclude<NonNullable<Exclude<AnomaliesFile, false>>['callSpike'], false>;

/** `alerts.anomalies`: every signal on with its default unless set, or turned off with false. */
function compileAnomalies(a: AnomaliesFile): AnomalyConfig {
  if (a === false) return { denials: undefined, limited: undefined, authFailures: undefined, callSpike: undefined, spendSpike: undefined };
  const burst = (v: string | false | undefined, dflt: string) => (v === false ? undefined : parseRate(v ?? dflt)!);
  const spike = (v: SpikeFile | false | undefined, min: string): Spike | undefined =>
    v === false ? undefined : { factor: v?.factor ?? 5, min: parseRate(v?.min ?? min)!, learnMs: parseDuration(v?.learn ?? '10m')! };
  return {
    denials: burst(a?.denials, '20/min'),
    limited: burst(a?.limited, '100/min'),
    authFailures: burst(a?.authFailures, '20/min'),
    callSpike: spike(a?.callSpike, '60/min'),
    spendSpike: spike(a?.spendSpike, '1/min'),
  };
}

function compileStore(s: ConfigFile['store']): StoreRuntime {
  const r = s?.redis;
  const p = s?.postgres;
  return {
    redis: r === undefined ? undefined : typeof r === 'string' ? { url: r, prefix: 'airlock:' } : { url: r.url, prefix: r.prefix ?? 'airlock:' },
    postgres: p === undefined ? undefined : typeof p === 'string' ? { url: p, schema: 'airlock' } : { url: p.url, schema: p.schema ?? 'airlock' },
  };
}
