/**
 * The `mcp:` section of the config file (SPEC section 5.3): the MCP servers agents may reach, only
 * through airlock — stdio servers airlock starts itself, Streamable HTTP and legacy HTTP+SSE servers
 * — with the credentials airlock injects (env for stdio, headers for HTTP).
 */
import { z } from 'zod';

const duration = z.union([z.string().regex(/^\s*\d+(\.\d+)?\s*(ms|s|m|min|h|hour|d|day)\s*$/i, 'expected a duration such as 500ms, 30s, 5m'), z.number().nonnegative()]);
const size = z.union([z.string().regex(/^\s*\d+(\.\d+)?\s*(b|kb|mb|gb)?\s*$/i, 'expected a size such as 512kb, 10mb'), z.number().int().nonnegative()]);
// No "__": it separates server and tool in the aggregated /mcp catalogue. Nor a "_" at either end:
// `a_` with tool `x` is `a___x`, which splits at the first "__" into server `a`, tool `_x`.
const name = z
  .string()
  .regex(/^(?!.*__)[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9.-])?$/, 'MCP server names use letters, digits, _ . - (at most 64, starting with a letter or digit, not ending with "_", no "__"), so that <server>__<tool> splits one way');
const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' });

const server = z.strictObject({
  command: z.string().min(1).optional().describe('stdio server: the program airlock starts (restarted with backoff if it dies, stopped on shutdown)'),
  args: z.array(z.string()).optional().describe('stdio server: its arguments'),
  env: z.record(z.string(), z.string()).optional().describe('stdio server: environment added to a minimal one (PATH, HOME …); credentials go here, usually ${env:NAME}'),
  cwd: z.string().min(1).optional().describe('stdio server: working directory (default: the config file\'s directory)'),
  url: httpUrl.optional().describe('HTTP server: its MCP endpoint'),
  transport: z.enum(['streamable-http', 'sse']).optional().describe('HTTP server: streamable-http (default) or sse (the legacy HTTP+SSE transport)'),
  headers: z.record(z.string(), z.string()).optional().describe('HTTP server: injected on every request; the agent never sees them'),
  token: z.string().min(1).optional().describe('HTTP server: shorthand for headers: { Authorization: "Bearer <token>" }'),
  timeout: duration.optional().describe('longest a call to this server may take (default 2m)'),
});

export const mcpSection = z.strictObject({
  servers: z.record(name, server).optional(),
  pinning: z.enum(['strict', 'warn', 'off']).optional().describe('tool-definition pinning: strict quarantines a changed tool, warn only alerts, off skips (default strict)'),
  maxBodySize: size.optional().describe('largest JSON-RPC request an agent may send (default 1mb)'),
  keepAlive: duration.optional().describe('an SSE comment this often on idle notification streams, so client body timeouts and proxies do not close them (default 15s, at most 1h; 0 sends none)'),
  excerpt: z.number().int().min(0).max(4000).optional().describe('characters of tool arguments kept in audit records and approval summaries (default 200; 0 keeps none)'),
});

export type McpSectionConfig = z.infer<typeof mcpSection>;
