/**
 * `airlock mcp-stdio --url <agent port>/mcp --key <key>` — a bridge for MCP clients that only
 * speak stdio (desktop apps): newline-delimited JSON-RPC from stdin goes to airlock's Streamable
 * HTTP endpoint with `Authorization: Bearer <key>`; responses, server notifications and server
 * requests (JSON or SSE) come back on stdout. The SDK's transports handle `Mcp-Session-Id`, the
 * protocol-version header and the standalone SSE stream. Logs go to stderr only: stdout is the
 * protocol. Exits 0 when stdin closes, after in-flight requests are answered (or 5 s pass).
 */
import { StreamableHTTPClientTransport, type JSONRPCMessage } from '@modelcontextprotocol/client';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import { args, EXIT_OK, UsageError } from './common.js';

export const usage = 'airlock mcp-stdio --url <agent port>/mcp[/<server>] --key <agent key, or $AIRLOCK_KEY>';

/** How long a closing bridge waits for answers to requests already sent. */
const DRAIN_MS = 5000;

type Id = string | number;

const log = (msg: string) => process.stderr.write(`airlock mcp-stdio: ${msg}\n`);

/** One message per line on stdout. Not through the stdio transport: it refuses writes once stdin has closed, and answers may still arrive then. */
const out = (m: unknown) => process.stdout.write(`${JSON.stringify(m)}\n`);

function isRequest(m: JSONRPCMessage): m is JSONRPCMessage & { id: Id; method: string } {
  return 'method' in m && 'id' in m && m.id !== undefined;
}

function isResponse(m: JSONRPCMessage): m is JSONRPCMessage & { id: Id } {
  return !('method' in m) && 'id' in m && ('result' in m || 'error' in m);
}

/** Turns a failed POST into a JSON-RPC error the client can show, naming airlock's error when there is one. */
function describeFailure(e: unknown): { message: string; data?: unknown } {
  const err = e as { message?: string; data?: { status?: number; text?: string | null } };
  const text = err.data?.text;
  if (typeof text === 'string') {
    try {
      const body = JSON.parse(text) as { error?: { code?: string; message?: string; request_id?: string } };
      if (body.error?.code) return { message: `airlock: ${body.error.code}: ${body.error.message ?? ''}`.trim(), data: { status: err.data?.status, airlock: body.error } };
    } catch {
      // not JSON: fall through to the SDK's message
    }
  }
  const cause = (e as { cause?: { code?: string } }).cause?.code;
  return { message: `airlock mcp-stdio: ${err.message ?? String(e)}${cause ? ` (${cause})` : ''}`, ...(err.data?.status ? { data: { status: err.data.status } } : {}) };
}

export async function mcpStdio(argv: string[]): Promise<number> {
  const { values } = args(argv, { url: { type: 'string' }, key: { type: 'string' } }, false);
  if (!values.url) throw new UsageError('--url is required (the agent port and /mcp, e.g. http://127.0.0.1:8080/mcp)');
  let url: URL;
  try {
    url = new URL(/^https?:\/\//i.test(values.url) ? values.url : `http://${values.url}`);
  } catch {
    throw new UsageError(`--url "${values.url}" is not a URL`);
  }
  const key = values.key ?? process.env['AIRLOCK_KEY'];
  if (!key) throw new UsageError('--key (or AIRLOCK_KEY) is required: the agent key airlock knows this client by');

  const http = new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: `Bearer ${key}` } } });
  const stdio = new StdioServerTransport();
  /** Requests sent upstream and not yet answered, with their method (initialize is watched for the protocol version). */
  const pending = new Map<Id, string>();
  let drained: (() => void) | undefined;
  const settle = (id: Id) => {
    pending.delete(id);
    if (pending.size === 0) drained?.();
  };

  http.onmessage = (m) => {
    if (isResponse(m) && pending.has(m.id)) {
      if (pending.get(m.id) === 'initialize' && 'result' in m) {
        const v = (m.result as { protocolVersion?: unknown }).protocolVersion;
        if (typeof v === 'string') http.setProtocolVersion(v);
      }
      settle(m.id);
    }
    out(m);
  };
  http.onerror = (e) => log(`upstream: ${e.message}`);

  stdio.onmessage = (m) => {
    if (isRequest(m)) pending.set(m.id, m.method);
    http.send(m).catch((e: unknown) => {
      const f = describeFailure(e);
      log(f.message);
      if (!isRequest(m)) return;
      settle(m.id);
      const reply = { jsonrpc: '2.0' as const, id: m.id, error: { code: -32000, message: f.message, ...(f.data !== undefined ? { data: f.data } : {}) } };
      out(reply);
    });
  };
  stdio.onerror = (e) => log(`stdin: ${e.message}`);

  const closed = new Promise<void>((resolve) => (stdio.onclose = resolve));
  await http.start();
  await stdio.start();
  log(`bridging stdio to ${url.href}`);
  await closed;

  if (pending.size > 0) await new Promise<void>((resolve) => ((drained = resolve), setTimeout(resolve, DRAIN_MS).unref()));
  // End the session politely; a gateway that is gone or does not keep sessions is fine too.
  await Promise.race([http.terminateSession().catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
  await http.close().catch(() => {});
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  // fetch keeps idle sockets alive; the bridge has nothing left to do.
  process.exit(EXIT_OK);
}
