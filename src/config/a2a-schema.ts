/**
 * The `a2a:` section of the config file (SPEC section 5.4): the remote agents that agents may reach
 * over the A2A protocol, only through airlock, with the credentials airlock injects.
 */
import { z } from 'zod';

const duration = z.union([z.string().regex(/^\s*\d+(\.\d+)?\s*(ms|s|m|min|h|hour|d|day)\s*$/i, 'expected a duration such as 500ms, 30s, 5m'), z.number().nonnegative()]);
const size = z.union([z.string().regex(/^\s*\d+(\.\d+)?\s*(b|kb|mb|gb)?\s*$/i, 'expected a size such as 512kb, 10mb'), z.number().int().nonnegative()]);
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'names use letters, digits, _ . - (at most 64, starting with a letter or digit)');
const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' });

const remoteAgent = z.strictObject({
  url: httpUrl.describe('the remote agent\'s base URL; its card is fetched from <url>/.well-known/agent-card.json'),
  card: z.string().min(1).optional().describe('where the card is, if not at the well-known path: a path (relative to url) or a full URL'),
  headers: z.record(z.string(), z.string()).optional().describe('injected on every call to the remote agent (and on card fetches); the agent never sees them'),
  token: z.string().min(1).optional().describe('shorthand for headers: { Authorization: "Bearer <token>" }, usually ${env:NAME}'),
  timeout: duration.optional().describe('how long the remote agent may take to start answering, and the longest silence inside a stream (default 2m)'),
  cardTtl: duration.optional().describe('how long a fetched card is served from cache before it is fetched again (default 5m)'),
  maxBodySize: size.optional().describe('largest request an agent may send to this remote agent (default 10mb)'),
  allowPrivatePushUrls: z.boolean().optional().describe('allow push-notification URLs on private, loopback or link-local addresses (SSRF defence; default false)'),
  origins: z.array(httpUrl).optional().describe('other origins the card may name for its interfaces; by default only the origin of url is trusted'),
});

export const a2aSection = z.strictObject({
  agents: z.record(name, remoteAgent).optional(),
  publicUrl: httpUrl.optional().describe('base URL agents use to reach airlock, written into rewritten cards (default: from the request\'s Host header)'),
  excerpt: z.number().int().min(0).max(4000).optional().describe('characters of message text kept in audit records and approval summaries (default 200; 0 keeps none)'),
});

export type A2ASectionConfig = z.infer<typeof a2aSection>;
