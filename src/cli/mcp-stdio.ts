/**
 * `airlock mcp-stdio --url <agent port>/mcp --key <key>` — a bridge for MCP clients that only
 * speak stdio (desktop apps): newline-delimited JSON-RPC from stdin goes to airlock's Streamable
 * HTTP endpoint with `Authorization: Bearer <key>`; responses, server notifications and server
 * requests (JSON or SSE) come back on stdout. The SDK's transports handle `Mcp-Session-Id`, the
 * protocol-version header and the POST streams; the bridge keeps the standalone notification
 * stream open and outlives a gateway restart (see below). Logs go to stderr only: stdout is the
 * protocol. Exits 0 when stdin closes, after in-flight requests are answered (or 5 s pass).
 *
 * A stdio client initializes once, with the bridge, and cannot start a new session itself. So the
 * bridge keeps its `initialize`: when the gateway forgets the session (404 to a request carrying
 * it: a restart), the bridge replays the handshake to open a new session and sends the request
 * again, once. A request whose response stream breaks before the answer is answered by the bridge
 * with an error, never left waiting.
 */
import { StreamableHTTPClientTransport, type JSONRPCMessage } from '@modelcontextprotocol/client';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import { args, EXIT_OK, UsageError } from './common.js';

export const usage = 'airlock mcp-stdio --url <agent port>/mcp[/<server>] --key <agent key, or $AIRLOCK_KEY>';

/** How long a closing bridge waits for answers to requests already sent. */
const DRAIN_MS = 5000;
/** How long a replayed `initialize` may take. */
const RENEW_MS = 10_000;
/** Delays between attempts to reopen the notification stream: 1 s, doubling, at most 30 s. */
const LISTEN_FIRST_MS = 1000;
const LISTEN_MAX_MS = 30_000;
/** The error a request gets when its answer can no longer come (JSON-RPC's implementation-defined range; the SDK's own "connection closed" value). */
const CONNECTION_LOST = -32000;

type Id = string | number;
type Request = JSONRPCMessage & { id: Id; method: string };

const log = (msg: string) => process.stderr.write(`airlock mcp-stdio: ${msg}\n`);

/** One message per line on stdout. Not through the stdio transport: it refuses writes once stdin has closed, and answers may still arrive then. */
const out = (m: unknown) => process.stdout.write(`${JSON.stringify(m)}\n`);

function isRequest(m: JSONRPCMessage): m is Request {
  return 'method' in m && 'id' in m && m.id !== undefined;
}

function isResponse(m: JSONRPCMessage): m is JSONRPCMessage & { id: Id } {
  return !('method' in m) && 'id' in m && ('result' in m || 'error' in m);
}

/** Turns a failed POST into a JSON-RPC error the client can show, naming airlock's error when there is one. */
function describeFailure(e: unknown): { message: string; data?: unknown } {
  const err = e as { message?: string; data?: { status?: number; text?: string | null } };
  const text = err.data?.text;
  const status = err.data?.status;
  if (typeof text === 'string') {
    try {
      const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; request_id?: unknown; data?: { airlock_code?: unknown; request_id?: unknown } } };
      const { code, message } = body.error ?? {};
      // airlock's HTTP error shape: { error: { code: "unauthenticated", message, request_id } }.
      if (typeof code === 'string') return { message: `airlock: ${code}: ${typeof message === 'string' ? message : ''}`.trim(), data: { status, airlock: body.error } };
      // A JSON-RPC error (the MCP door's refusals): its message already reads "airlock: <code>: …".
      if (typeof code === 'number' && typeof message === 'string') {
        const d = body.error?.data;
        return { message, data: { status, ...(typeof d?.airlock_code === 'string' ? { airlock: { code: d.airlock_code, message, request_id: d.request_id } } : {}) } };
      }
    } catch {
      // not JSON: fall through to the SDK's message
    }
  }
  const cause = (e as { cause?: { code?: string } }).cause?.code;
  return { message: `airlock mcp-stdio: ${err.message ?? String(e)}${cause ? ` (${cause})` : ''}`, ...(status ? { data: { status } } : {}) };
}

/** `res` with a body that calls `onEnd` once when it ends, fails or is cancelled. */
function watchEnd(res: Response, onEnd: () => void): Response {
  if (!res.body) {
    onEnd();
    return res;
  }
  const reader = res.body.getReader();
  let ended = false;
  const end = () => {
    if (!ended) (ended = true), onEnd();
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      try {
        const r = await reader.read();
        if (r.done) end(), c.close();
        else c.enqueue(r.value);
      } catch (e) {
        end();
        c.error(e);
      }
    },
    cancel(reason) {
      end();
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
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

  let closing = false;

  // The standalone notification stream (the session's GET). The SDK opens it after
  // `notifications/initialized` but gives up on it after a few retries; the bridge reopens it for as
  // long as it runs. Every GET passes through `watched`, which sees it open, fail and end.
  let listenTimer: NodeJS.Timeout | undefined;
  let listenAttempt = 0;
  let noStream = false;
  let lastEventId: string | undefined;
  const relisten = () => {
    if (closing || noStream || listenTimer || !http.sessionId) return;
    const delay = Math.min(LISTEN_FIRST_MS * 2 ** listenAttempt++, LISTEN_MAX_MS);
    listenTimer = setTimeout(() => {
      listenTimer = undefined;
      if (closing) return;
      // An empty event id sends no Last-Event-ID: a fresh stream. Failures reach `watched` (and onerror).
      http.resumeStream(lastEventId ?? '', { onresumptiontoken: (t) => (lastEventId = t) }).catch(() => {});
    }, delay);
  };
  const watched = async (input: string | URL, init?: RequestInit): Promise<Response> => {
    if ((init?.method ?? 'GET').toUpperCase() !== 'GET') return fetch(input, init);
    clearTimeout(listenTimer);
    listenTimer = undefined;
    const sid = new Headers(init?.headers).get('mcp-session-id') ?? undefined;
    let res: Response;
    try {
      res = await fetch(input, init);
    } catch (e) {
      relisten();
      throw e;
    }
    if (res.status === 405) noStream = true; // the server offers no standalone stream
    else if (res.status === 404 && sid !== undefined) {
      // The session is gone: a new one's `notifications/initialized` makes the SDK open a new stream.
      void renew(sid).then((ok) => ok || relisten());
    } else if (!res.ok) relisten();
    else {
      listenAttempt = 0;
      return watchEnd(res, () => {
        if (closing) return;
        log('the notification stream from the gateway closed; reopening it');
        relisten();
      });
    }
    return res;
  };

  // No SDK retries: a POST stream that breaks ends at once (its request is answered with an error
  // below), and the notification stream is reopened by the bridge, without a retry limit.
  const http = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
    fetch: watched,
    reconnectionOptions: { initialReconnectionDelay: LISTEN_FIRST_MS, maxReconnectionDelay: LISTEN_MAX_MS, reconnectionDelayGrowFactor: 2, maxRetries: 0 },
  });
  const stdio = new StdioServerTransport();
  /** Requests sent upstream and not yet answered, with their method (initialize is watched for the protocol version). */
  const pending = new Map<Id, string>();
  let drained: (() => void) | undefined;
  const settle = (id: Id) => {
    pending.delete(id);
    if (pending.size === 0) drained?.();
  };
  const answerError = (id: Id, message: string, data?: unknown) => {
    if (!pending.has(id)) return;
    settle(id);
    out({ jsonrpc: '2.0', id, error: { code: CONNECTION_LOST, message, ...(data !== undefined ? { data } : {}) } });
  };

  /** The client's handshake, replayed to open a new session when the gateway forgets the old one. */
  let handshake: Request | undefined;
  let initializedNote: JSONRPCMessage | undefined;
  /** Answers to the bridge's own requests (replayed initializes), kept from the client. */
  const own = new Map<Id, (m: JSONRPCMessage | undefined) => void>();
  let renewals = 0;
  let renewal: Promise<boolean> | undefined;

  /** Opens a new session in place of `stale`; true when there is a session other than `stale` afterwards. */
  const renew = (stale: string): Promise<boolean> => {
    if (http.sessionId !== stale) return Promise.resolve(true);
    if (renewal) return renewal;
    if (!handshake || closing) return Promise.resolve(false);
    const id = `airlock-mcp-stdio/renew/${++renewals}`;
    const hello = handshake;
    renewal = (async () => {
      try {
        const answered = new Promise<JSONRPCMessage | undefined>((resolve) => {
          own.set(id, resolve);
          setTimeout(() => resolve(undefined), RENEW_MS).unref();
        });
        await http.send({ ...hello, id } as JSONRPCMessage, { onRequestStreamEnd: () => own.get(id)?.(undefined) });
        const r = await answered;
        if (!r || !('result' in r)) {
          log(`the gateway forgot the session and did not start a new one: ${r && 'error' in r ? r.error.message : 'no answer'}`);
          return false;
        }
        const v = (r.result as { protocolVersion?: unknown }).protocolVersion;
        if (typeof v === 'string') http.setProtocolVersion(v);
        await http.send(initializedNote ?? { jsonrpc: '2.0', method: 'notifications/initialized' });
        log('the gateway forgot the session (restarted?): started a new one');
        return http.sessionId !== stale;
      } catch (e) {
        log(`the gateway forgot the session and a new one could not be started: ${describeFailure(e).message}`);
        return false;
      } finally {
        own.delete(id);
        renewal = undefined;
      }
    })();
    return renewal;
  };

  /** Sends one message from the client upstream; on a forgotten session, renews it and sends once more. */
  const forward = async (m: JSONRPCMessage, again = false): Promise<void> => {
    if (renewal) await renewal; // not on a session being replaced
    const sid = http.sessionId;
    try {
      await http.send(m, isRequest(m) ? { onRequestStreamEnd: () => answerError(m.id, 'airlock: the connection to the gateway was lost before it answered; retry') } : undefined);
    } catch (e) {
      const status = (e as { data?: { status?: number } }).data?.status;
      const replayable = 'method' in m && m.method !== 'initialize';
      if (!again && replayable && status === 404 && sid !== undefined && (await renew(sid))) return forward(m, true);
      const f = describeFailure(e);
      log(f.message);
      if (isRequest(m)) answerError(m.id, f.message, f.data);
    }
  };

  http.onmessage = (m) => {
    if (isResponse(m) && own.has(m.id)) return own.get(m.id)!(m);
    if (isResponse(m) && pending.has(m.id)) {
      if (pending.get(m.id) === 'initialize' && 'result' in m) {
        const v = (m.result as { protocolVersion?: unknown }).protocolVersion;
        if (typeof v === 'string') http.setProtocolVersion(v);
      }
      settle(m.id);
    }
    out(m);
  };
  http.onerror = (e) => {
    if (!closing) log(`upstream: ${e.message}`);
  };

  stdio.onmessage = (m) => {
    if (isRequest(m)) {
      pending.set(m.id, m.method);
      if (m.method === 'initialize') handshake = m;
    } else if ('method' in m && m.method === 'notifications/initialized') initializedNote = m;
    void forward(m);
  };
  stdio.onerror = (e) => log(`stdin: ${e.message}`);

  const closed = new Promise<void>((resolve) => (stdio.onclose = resolve));
  await http.start();
  await stdio.start();
  log(`bridging stdio to ${url.href}`);
  await closed;

  if (pending.size > 0) await new Promise<void>((resolve) => ((drained = resolve), setTimeout(resolve, DRAIN_MS).unref()));
  closing = true;
  clearTimeout(listenTimer);
  // End the session politely; a gateway that is gone or does not keep sessions is fine too.
  await Promise.race([http.terminateSession().catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
  await http.close().catch(() => {});
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  // fetch keeps idle sockets alive; the bridge has nothing left to do.
  process.exit(EXIT_OK);
}
