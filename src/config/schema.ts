/**
 * The config file's schema. The one source for validation at load (with file, line and key in
 * errors) and for the JSON Schema that editors use (`airlock schema`).
 */
import { z } from 'zod';
import { a2aSection } from './a2a-schema.js';
import { mcpSection } from './mcp-schema.js';
import { llmSection } from './llm-schema.js';

const DURATION_RE = /^\s*\d+(\.\d+)?\s*(ms|s|m|min|h|hour|d|day)\s*$/i;
const SIZE_RE = /^\s*\d+(\.\d+)?\s*(b|kb|mb|gb)?\s*$/i;
const RATE_RE = /^\s*[\d.]+\s*[km]?\s*\/\s*(s|sec|min|m|hour|h|day|d)\s*$/i;
const BUDGET_RE = /^\s*\$?\d+(\.\d+)?\s*\/\s*(day|d|month)\s*$/i;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const HOSTPORT_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

const duration = z.union([z.string().regex(DURATION_RE, 'expected a duration such as 500ms, 30s, 5m, 1h'), z.number().nonnegative()]);
const size = z.union([z.string().regex(SIZE_RE, 'expected a size such as 512kb, 10mb'), z.number().int().nonnegative()]);
const rate = z.string().regex(RATE_RE, 'expected a rate such as 600/min, 10/s, 200k/hour');
const budget = z.string().regex(BUDGET_RE, 'expected a budget in USD per calendar window, such as 5/day or 100/month');
const hostPort = z.string().regex(HOSTPORT_RE, 'expected HOST:PORT, such as 127.0.0.1:8844');
const name = z.string().regex(NAME_RE, 'names use letters, digits, _ . - (at most 64, starting with a letter or digit)');

const agentLimits = z.strictObject({
  requests: rate.optional(),
  tokens: rate.optional(),
  budget: budget.optional(),
  concurrency: z.number().int().positive().optional(),
});

const agent = z.strictObject({
  team: name.optional(),
  description: z.string().optional(),
  keys: z.array(z.string()).optional().describe('agent keys (alk_...), usually ${env:NAME}; hashed at load'),
  limits: agentLimits.optional(),
});

const team = z.strictObject({ limits: agentLimits.optional() });

const pattern = z.string().min(1);
const rule = z.strictObject({
  name: z.string().min(1),
  agents: z.array(z.string().min(1)).optional().describe('agent names, globs, or team:<name>; default "*"'),
  allow: z.array(pattern).optional(),
  approve: z.array(pattern).optional(),
  deny: z.array(pattern).optional(),
  reason: z.string().optional(),
});

const targetLimit = z.strictObject({
  target: pattern.describe('action pattern, such as "mcp: github/*"'),
  agents: z.array(z.string().min(1)).optional(),
  requests: rate.optional(),
  tokens: rate.optional(),
  concurrency: z.number().int().positive().optional(),
});

const guards = z.strictObject({
  loop: z.strictObject({ repeats: z.number().int().min(2), window: duration }).optional(),
  session: z.strictObject({ maxCalls: z.number().int().positive() }).optional(),
});

const headers = z.record(z.string(), z.string());

const httpService = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
  headers: headers.optional(),
  timeout: duration.optional(),
  retries: z.number().int().min(0).max(10).optional(),
  maxBodySize: size.optional(),
  command: z.string().optional().describe('optional: a local process airlock starts with the gateway and stops, with every process it started, on shutdown or when the gateway dies (for example services)'),
  args: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
});

const notify = z.strictObject({ webhook: z.url(), headers: headers.optional() });

/** A spike of one agent's calls or spend against its own average (alerts.anomalies). */
const spike = z.strictObject({
  factor: z.number().min(1.5).optional().describe('how many times its average window the last window must be, default 5'),
  min: rate.optional().describe('the least that counts as a spike whatever the average; its window is the unit compared (calls: default 60/min; spend: USD, default 1/min)'),
  learn: duration.optional().describe('how long an agent is watched before its spikes are judged, default 10m'),
});
const burst = z.union([rate, z.literal(false)], { error: 'expected a rate such as 20/min, or false (off)' });

const alertsSection = z.strictObject({
  notify: z.array(notify).optional().describe('webhooks told of every alert (loops, pinning, poisoning, anomalies): JSON with a human-readable `text`'),
  anomalies: z
    .union([
      z.literal(false),
      z.strictObject({
        denials: burst.optional().describe("one agent's calls refused by the rules (not a person's denials of held calls), default 20/min; false: off"),
        limited: burst.optional().describe("one agent's calls refused by its limits and guards, default 100/min; false: off"),
        authFailures: burst.optional().describe('calls with a missing, unknown, revoked or expired agent key, all callers together, default 20/min; false: off'),
        callSpike: z.union([spike, z.literal(false)], { error: 'expected { factor, min, learn }, or false (off)' }).optional().describe("one agent's calls in the last window against its average window; false: off"),
        spendSpike: z.union([spike, z.literal(false)], { error: 'expected { factor, min, learn }, or false (off)' }).optional().describe("one agent's LLM spend (USD) in the last window against its average window; false: off"),
      }),
    ], { error: 'expected false (all off), or a mapping of denials, limited, authFailures, callSpike, spendSpike' })
    .optional()
    .describe('anomaly alerts, on by default with the defaults named here; false turns them all off'),
});

/** `store.redis`: a URL, or the URL and the key prefix gateways of one cluster share. */
const redisStore = z.union([
  z.string().regex(/^rediss?:\/\//, 'a Redis URL starts with redis:// or rediss://'),
  z.strictObject({
    url: z.string().regex(/^rediss?:\/\//, 'a Redis URL starts with redis:// or rediss://'),
    prefix: z.string().min(1).max(64).optional().describe('prefix of every Redis key and channel, default "airlock:"; gateways with the same prefix share counters and events'),
  }),
]);

/** `store.postgres`: a URL, or the URL and the schema that holds airlock's tables. */
const postgresStore = z.union([
  z.string().regex(/^postgres(ql)?:\/\//, 'a PostgreSQL URL starts with postgres:// or postgresql://'),
  z.strictObject({
    url: z.string().regex(/^postgres(ql)?:\/\//, 'a PostgreSQL URL starts with postgres:// or postgresql://').describe('postgres://user:password@host:5432/database; use ${env:…} for the password, which is never logged'),
    schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a schema name is lower-case letters, digits and _').optional().describe('schema of airlock\'s tables, default "airlock"'),
  }),
]);

/** The whole config file. */
export const configSchema = z.strictObject({
  listen: hostPort.optional().describe('agent port, default 127.0.0.1:8844'),
  data: z.string().optional().describe('directory of the embedded store and audit.jsonl, default ./.airlock'),
  shutdownTimeout: duration.optional(),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional() }).optional(),
  server: z
    .strictObject({
      headersTimeout: duration.optional().describe('time a client has to send its request headers (slow-client defence)'),
      requestTimeout: duration.optional(),
      keepAliveTimeout: duration.optional(),
    })
    .optional(),
  admin: z
    .strictObject({
      listen: hostPort.optional(),
      token: z.string().min(16, 'an admin token needs at least 16 characters').optional(),
      tokens: z
        .array(z.strictObject({ name: z.string().min(1).max(64), token: z.string().min(16, 'an admin token needs at least 16 characters') }))
        .optional()
        .describe('named admin tokens: the name is recorded as the operator (approver, killer) in audit records'),
    })
    .optional(),
  agents: z.record(name, agent).optional(),
  teams: z.record(name, team).optional(),
  rules: z.array(rule).optional(),
  limits: z.array(targetLimit).optional(),
  guards: guards.optional(),
  http: z
    .strictObject({
      services: z.record(name, httpService).optional(),
      maxBodySize: size.optional(),
      forwardProxy: z
        .union([z.boolean(), z.strictObject({ timeout: duration.optional() })])
        .optional()
        .describe('forward-proxy mode (HTTP_PROXY / HTTPS_PROXY pointing at the agent port): off unless set, so that rules written for /http services never open other hosts by accident. Actions are "http: <METHOD> <host>/<path>" and "http: CONNECT <host>:<port>"'),
    })
    .optional(),
  approvals: z.strictObject({ timeout: duration.optional(), notify: z.array(notify).optional() }).optional(),
  alerts: alertsSection.optional(),
  audit: z.strictObject({ bodies: z.boolean().optional(), jsonl: z.boolean().optional() }).optional(),
  // Sections of later front doors and stores; shaped by their own modules as they land.
  llm: llmSection.optional(),
  mcp: mcpSection.optional(),
  a2a: a2aSection.optional(),
  store: z
    .strictObject({
      postgres: postgresStore
        .optional()
        .describe(
          'scale-out: every gateway\'s audit records in one PostgreSQL database. Each gateway keeps its SQLite store as the write-ahead journal and ships committed records there moments later (retrying while PostgreSQL is down); audit queries, usage and `airlock audit verify` then read every gateway\'s records from it. Changes only on restart',
        ),
      redis: redisStore.optional().describe('scale-out: counters, kill switches, keys and events shared by every gateway using the same Redis and prefix'),
    })
    .optional(),
});

export type ConfigFile = z.infer<typeof configSchema>;
export type HttpServiceConfig = z.infer<typeof httpService>;
export type AgentLimitsConfig = z.infer<typeof agentLimits>;
export type RuleConfig = z.infer<typeof rule>;

/** The JSON Schema of the config file, for editors. */
export function configJsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' });
}
