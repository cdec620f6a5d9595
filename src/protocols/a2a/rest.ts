/**
 * The HTTP+JSON (REST) binding's routes under `/a2a/<agent>`: 1.0 paths (`/message:send`,
 * `/tasks/{id}:cancel` …, optionally after a tenant segment) and 0.3 paths (`/v1/message:send` …).
 * A path whose segments could escape the upstream base path is refused.
 */
import type { A2AMethod, A2AVersion } from './methods.js';

export interface RestRoute {
  method: A2AMethod;
  version: A2AVersion;
  taskId: string | undefined;
  /** Query parameters that name a context (ListTasks). */
  contextId: string | undefined;
}

export type RestParse = { ok: true; route: RestRoute } | { ok: false; code: 'not_found' | 'bad_request'; problem: string };

const FIRST = new Set(['message:send', 'message:stream', 'tasks', 'extendedAgentCard', 'v1']);

function decode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/**
 * Parses the part of a REST URL after `/a2a/<agent>` (beginning with `/`, without the query) for an
 * HTTP method. `query` is the raw query string without `?`.
 */
export function parseRestPath(httpMethod: string, rest: string, query: string): RestParse {
  if (rest === '/') return notFound(rest);
  if (rest.includes('\\')) return { ok: false, code: 'bad_request', problem: 'backslashes are not allowed in the path' };
  let segs = rest.slice(1).split('/');
  if (segs.length > 1 && segs[segs.length - 1] === '') segs = segs.slice(0, -1);
  for (const s of segs) {
    const d = decode(s);
    if (d === undefined) return { ok: false, code: 'bad_request', problem: 'the path has malformed percent-encoding' };
    if (s === '' || d === '.' || d === '..' || /[/\\\0\r\n]/.test(d) || d.split(/[/\\]/).some((p) => p === '.' || p === '..')) {
      return { ok: false, code: 'bad_request', problem: 'empty, dot (. ..) or control-character path segments are not allowed' };
    }
  }
  let version: A2AVersion = '1.0';
  if (segs[0] === 'v1') {
    version = '0.3';
    segs = segs.slice(1);
  } else if (segs.length > 1 && !FIRST.has(segs[0]!)) {
    segs = segs.slice(1); // a tenant: forwarded as it is, not judged
  }
  const m = httpMethod;
  const want = (method: A2AMethod, allowed: string[], taskId?: string): RestParse =>
    allowed.includes(m)
      ? { ok: true, route: { method, version, taskId: taskId === undefined ? undefined : decode(taskId), contextId: undefined } }
      : { ok: false, code: 'bad_request', problem: `${method} over HTTP+JSON uses ${allowed.join(' or ')}, not ${m}` };
  const [a, b, c, d, ...more] = segs;
  if (more.length > 0) return notFound(rest);
  if (a === 'message:send' && b === undefined) return want('SendMessage', ['POST']);
  if (a === 'message:stream' && b === undefined) return want('SendStreamingMessage', ['POST']);
  if (((a === 'extendedAgentCard' && version === '1.0') || (a === 'card' && version === '0.3')) && b === undefined) return want('GetExtendedAgentCard', ['GET']);
  if (a !== 'tasks') return notFound(rest);
  if (b === undefined) {
    const r = want('ListTasks', ['GET']);
    if (r.ok) r.route.contextId = new URLSearchParams(query).get('contextId') ?? undefined;
    return r;
  }
  if (c === undefined) {
    if (b.endsWith(':cancel')) return want('CancelTask', ['POST'], b.slice(0, -':cancel'.length));
    if (b.endsWith(':subscribe')) return want('SubscribeToTask', ['GET', 'POST'], b.slice(0, -':subscribe'.length));
    return want('GetTask', ['GET'], b);
  }
  if (c !== 'pushNotificationConfigs') return notFound(rest);
  if (d === undefined) return m === 'POST' ? want('CreateTaskPushNotificationConfig', ['POST'], b) : want('ListTaskPushNotificationConfigs', ['GET'], b);
  return m === 'DELETE' ? want('DeleteTaskPushNotificationConfig', ['DELETE'], b) : want('GetTaskPushNotificationConfig', ['GET'], b);
}

function notFound(rest: string): RestParse {
  return {
    ok: false,
    code: 'not_found',
    problem: `no A2A method at ${rest}: JSON-RPC goes to POST /a2a/<agent>; HTTP+JSON to /a2a/<agent>/message:send, /message:stream, /tasks, /tasks/{id}[:cancel|:subscribe], /tasks/{id}/pushNotificationConfigs[/{configId}], /extendedAgentCard (0.3: the same under /v1, and /v1/card); the card is at /a2a/<agent>/.well-known/agent-card.json`,
  };
}
