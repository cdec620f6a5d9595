/**
 * The A2A methods airlock understands, under their 1.0 names (what actions and rules use) and their
 * 0.3 JSON-RPC names, so a rule `a2a: travel SendMessage` covers `message/send` too.
 */
import { scrubSecrets } from '../../audit/secrets.js';

export type A2AMethod =
  | 'SendMessage'
  | 'SendStreamingMessage'
  | 'GetTask'
  | 'ListTasks'
  | 'CancelTask'
  | 'SubscribeToTask'
  | 'CreateTaskPushNotificationConfig'
  | 'GetTaskPushNotificationConfig'
  | 'ListTaskPushNotificationConfigs'
  | 'DeleteTaskPushNotificationConfig'
  | 'GetExtendedAgentCard';

export type A2AVersion = '1.0' | '0.3';

export interface MethodInfo {
  /** The 1.0 name: the action's method. */
  method: A2AMethod;
  /** Which protocol generation the name the agent used belongs to. */
  version: A2AVersion;
}

/** Every method, for discovery ("may this agent use that remote agent at all?"). */
export const ALL_METHODS: readonly A2AMethod[] = [
  'SendMessage',
  'SendStreamingMessage',
  'GetTask',
  'ListTasks',
  'CancelTask',
  'SubscribeToTask',
  'CreateTaskPushNotificationConfig',
  'GetTaskPushNotificationConfig',
  'ListTaskPushNotificationConfigs',
  'DeleteTaskPushNotificationConfig',
  'GetExtendedAgentCard',
];

const BY_NAME = new Map<string, MethodInfo>();
for (const m of ALL_METHODS) BY_NAME.set(m, { method: m, version: '1.0' });
// Spellings from 1.0 release candidates that clients still send.
BY_NAME.set('ListTaskPushNotificationConfig', { method: 'ListTaskPushNotificationConfigs', version: '1.0' });
BY_NAME.set('GetAuthenticatedExtendedCard', { method: 'GetExtendedAgentCard', version: '1.0' });
const V03: [string, A2AMethod][] = [
  ['message/send', 'SendMessage'],
  ['message/stream', 'SendStreamingMessage'],
  ['tasks/get', 'GetTask'],
  ['tasks/list', 'ListTasks'],
  ['tasks/cancel', 'CancelTask'],
  ['tasks/resubscribe', 'SubscribeToTask'],
  ['tasks/pushNotificationConfig/set', 'CreateTaskPushNotificationConfig'],
  ['tasks/pushNotificationConfig/get', 'GetTaskPushNotificationConfig'],
  ['tasks/pushNotificationConfig/list', 'ListTaskPushNotificationConfigs'],
  ['tasks/pushNotificationConfig/delete', 'DeleteTaskPushNotificationConfig'],
  ['agent/getAuthenticatedExtendedCard', 'GetExtendedAgentCard'],
];
for (const [name, method] of V03) BY_NAME.set(name, { method, version: '0.3' });

/** A JSON-RPC method name (1.0 or 0.3) → its 1.0 name and generation; undefined when unknown. */
export function methodInfo(name: string): MethodInfo | undefined {
  return BY_NAME.get(name);
}

/** Methods whose answer is an SSE stream. */
export function isStreaming(m: A2AMethod): boolean {
  return m === 'SendStreamingMessage' || m === 'SubscribeToTask';
}

/** Methods that can carry a push-notification URL (checked against SSRF). */
export function carriesPushUrl(m: A2AMethod): 'configuration' | 'params' | undefined {
  if (m === 'SendMessage' || m === 'SendStreamingMessage') return 'configuration';
  if (m === 'CreateTaskPushNotificationConfig') return 'params';
  return undefined;
}

/** Methods where a bare `id` parameter names the task (in 0.3 the push-config methods too). */
function idIsTask(m: A2AMethod, v: A2AVersion): boolean {
  if (m === 'GetTask' || m === 'CancelTask' || m === 'SubscribeToTask') return true;
  return v === '0.3' && (m === 'GetTaskPushNotificationConfig' || m === 'ListTaskPushNotificationConfigs' || m === 'DeleteTaskPushNotificationConfig');
}

export const METHOD_LIST_TEXT = `1.0: ${ALL_METHODS.join(', ')}; 0.3: ${V03.map(([n]) => n).join(', ')}`;

type Obj = Record<string, unknown>;

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v.slice(0, 200) : undefined;
}

function fullStr(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
}

/** Methods that act on one existing task: it must be named, and be the caller's. */
export function isTaskScoped(m: A2AMethod): boolean {
  return m === 'GetTask' || m === 'CancelTask' || m === 'SubscribeToTask' || m === 'CreateTaskPushNotificationConfig' || m === 'GetTaskPushNotificationConfig' || m === 'ListTaskPushNotificationConfigs' || m === 'DeleteTaskPushNotificationConfig';
}

/** Every task and context a request names, in full, for the ownership check; `problem` when one is not a string. */
export interface TaskRefs {
  tasks: string[];
  contexts: string[];
  problem: string | undefined;
}

/**
 * Every task and context id a request names, wherever a remote agent might read one: the params'
 * `taskId` / `task_id`, `id` where it names the task, a `tasks/{id}` resource name (`name`,
 * `parent`), the message's `taskId` and `referenceTaskIds` (a remote agent may read referenced
 * tasks into its answer), and the `contextId`s. All of them, not the first found: a request naming
 * its own task in one place and another agent's in the next must not pass.
 */
export function taskRefs(m: A2AMethod, v: A2AVersion, params: Obj): TaskRefs {
  const refs: TaskRefs = { tasks: [], contexts: [], problem: undefined };
  const add = (list: string[], where: string, value: unknown) => {
    if (value === undefined || value === null || value === '') return;
    if (typeof value === 'string') list.push(value);
    else refs.problem ??= `"${where}" must be a string`;
  };
  add(refs.tasks, 'taskId', params['taskId']);
  add(refs.tasks, 'task_id', params['task_id']);
  if (idIsTask(m, v)) add(refs.tasks, 'id', params['id']);
  for (const k of ['name', 'parent']) {
    const n = params[k];
    if (typeof n === 'string') add(refs.tasks, k, /(?:^|\/)tasks\/([^/]+)/.exec(n)?.[1]);
  }
  add(refs.contexts, 'contextId', params['contextId']);
  add(refs.contexts, 'context_id', params['context_id']);
  // `request` is the 1.0 proto's field name for the message, which proto-JSON parsers also accept.
  for (const mk of ['message', 'request']) {
    const message = params[mk];
    if (message === undefined || message === null) continue;
    const msg = obj(message);
    if (!msg) continue;
    add(refs.tasks, `${mk}.taskId`, msg['taskId']);
    add(refs.tasks, `${mk}.task_id`, msg['task_id']);
    add(refs.contexts, `${mk}.contextId`, msg['contextId']);
    add(refs.contexts, `${mk}.context_id`, msg['context_id']);
    for (const rk of ['referenceTaskIds', 'reference_task_ids']) {
      const r = msg[rk];
      if (r === undefined || r === null) continue;
      if (!Array.isArray(r)) refs.problem ??= `"${mk}.${rk}" must be a list of task ids`;
      else for (const id of r) add(refs.tasks, `${mk}.${rk}`, id);
    }
  }
  return refs;
}

/**
 * Text read past the excerpt's cut before secrets are scrubbed, so that a secret straddling the cut
 * is still recognised whole (a cut one would no longer match, and its first part would be kept).
 */
const SCRUB_MARGIN = 4096;

/**
 * The text parts of the request's message, joined, secret-looking values replaced by `[redacted]`
 * (as in MCP argument excerpts), and cut to `max` characters ('' when none).
 */
export function messageExcerpt(params: Obj, max: number): string {
  if (max <= 0) return '';
  const message = obj(params['message']);
  const parts = message?.['parts'] ?? message?.['content'];
  if (!Array.isArray(parts)) return '';
  const limit = max + SCRUB_MARGIN;
  let out = '';
  for (const p of parts) {
    const t = obj(p)?.['text'];
    if (typeof t !== 'string') continue;
    out += (out ? ' ' : '') + t.slice(0, limit - out.length);
    if (out.length >= limit) break;
  }
  // Control characters would make audit lines and approval summaries unreadable.
  out = scrubSecrets(out).replace(/[\x00-\x08\x0b-\x1f\x7f]/g, ' ');
  return out.length > max ? `${out.slice(0, max)}…` : out;
}

/** Facts about a task found in a response or stream event (either generation). */
export interface ResponseFacts {
  taskId?: string | undefined;
  contextId?: string | undefined;
  state?: string | undefined;
  error?: { code: unknown; message: string | undefined } | undefined;
}

/**
 * Reads task facts from one response value: a JSON-RPC response (result or error), a REST body, or
 * one SSE event's data. 1.0 wraps payloads (`{task}`, `{message}`, `{statusUpdate}` …); 0.3 sends
 * them bare with a `kind`.
 */
export function responseFacts(value: unknown): ResponseFacts {
  let v = obj(value);
  if (!v) return {};
  if (v['jsonrpc'] !== undefined) {
    const err = obj(v['error']);
    if (err) return { error: { code: err['code'], message: str(err['message']) } };
    v = obj(v['result']);
    if (!v) return {};
  } else {
    const err = obj(v['error']);
    if (err) return { error: { code: err['code'] ?? err['status'], message: str(err['message']) } };
  }
  const wrapped = obj(v['task']) ?? obj(v['statusUpdate']) ?? obj(v['status_update']) ?? obj(v['artifactUpdate']) ?? obj(v['artifact_update']) ?? obj(v['message']) ?? obj(v['msg']);
  const isTask = obj(v['task']) !== undefined || v['kind'] === 'task' || (wrapped === undefined && obj(v['status']) !== undefined && typeof v['id'] === 'string');
  const o = wrapped ?? v;
  const state = obj(o['status'])?.['state'];
  // Ids in full: they are what task ownership is keyed by (the audit record cuts them).
  return {
    taskId: fullStr(o['taskId']) ?? fullStr(o['task_id']) ?? (isTask ? fullStr(o['id']) : undefined),
    contextId: fullStr(o['contextId']) ?? fullStr(o['context_id']),
    state: typeof state === 'string' ? state : undefined,
  };
}
