/**
 * The judged MCP methods: tools/call (`mcp: <server>/<tool>`), resources/read
 * (`mcp-resource: <server>/<uri>`) and prompts/get (`mcp-prompt: <server>/<prompt>`). Each becomes an
 * exchange judged by the pipeline (rules, limits, loop guard, kill switches, approvals), is sent to
 * the upstream over its shared connection, and ends as one audit record with the server, the
 * target, a bounded secret-free excerpt of the arguments, the result size, isError and the duration.
 */
import { createHash } from 'node:crypto';
import { ExchangeBodies, injectedSecrets } from '../../audit/bodies.js';
import { canonical } from '../../audit/record.js';
import { scrubbedJson } from '../../audit/secrets.js';
import { ERROR_CODES, type ErrorCode } from '../../errors.js';
import type { ExchangeAbort } from '../../pipeline/abort.js';
import type { Exchange } from '../../pipeline/types.js';
import type { Caller, DoorContext } from '../../server/context.js';
import { mcpResourceAction } from '../../policies/rules/pattern.js';
import type { McpHub } from './hub.js';
import { resourceUriProblem } from './resource-uri.js';
import type { Upstream } from './upstream.js';
import { deniedError, deniedResult, type Reply, type RpcId } from './wire.js';

export type JudgedMethod = 'tools/call' | 'resources/read' | 'prompts/get';

export interface JudgedCall {
  method: JudgedMethod;
  server: string;
  /** Tool or prompt name, or resource URI, as the upstream knows it. */
  target: string;
  /** Tool or prompt arguments. */
  args: Record<string, unknown> | undefined;
  rpcId: RpcId;
  progressToken: string | number | undefined;
  bytesIn: number;
  /** The JSON-RPC request as the agent sent it (for the audit record's bodies, with audit.bodies on). */
  raw: Buffer;
}

/** Arguments as bounded JSON text, values under secret-looking keys and secret-looking values replaced. */
export function argsExcerpt(args: unknown, max: number): string {
  if (max === 0 || args === undefined) return '';
  return scrubbedJson(args, max);
}

function actionOf(c: JudgedCall): string {
  return c.method === 'tools/call' ? `mcp: ${c.server}/${c.target}` : c.method === 'resources/read' ? mcpResourceAction(c.server, c.target) : `mcp-prompt: ${c.server}/${c.target}`;
}

function targetOf(c: JudgedCall, excerpt: string): Record<string, unknown> {
  const t: Record<string, unknown> = { server: c.server };
  if (c.method === 'tools/call') t['tool'] = c.target;
  else if (c.method === 'resources/read') t['uri'] = c.target;
  else t['prompt'] = c.target;
  if (excerpt !== '') t['args'] = excerpt;
  return t;
}

/** Renders a refusal in the method's shape. */
function refusal(reply: Reply, c: JudgedCall, code: ErrorCode, message: string, requestId: string): void {
  if (c.method === 'tools/call') reply.result(c.rpcId, deniedResult(code, message, requestId));
  else {
    const e = deniedError(code, message, requestId);
    reply.error(c.rpcId, e.code, e.message, e.data);
  }
}

/** Why a tool may not be called now (quarantined by strict pinning, or gone from the server's catalogue), if it may not. */
function toolUnusable(hub: McpHub, up: Upstream, server: string, tool: string): { code: ErrorCode; message: string } | undefined {
  if (hub.quarantined(server, tool)) {
    return { code: 'tool_changed', message: `the definition of ${server}/${tool} changed since it was pinned; it stays unavailable until an operator runs "airlock tools accept ${server}/${tool}"` };
  }
  if (!up.catalogue.tools.some((t) => t.name === tool)) return { code: 'not_found', message: `MCP server "${server}" has no tool named "${tool}"` };
  return undefined;
}

/** Judges one call, forwards it if allowed, answers the agent and reports the outcome. */
export async function judgedCall(gw: DoorContext, hub: McpHub, caller: Caller, c: JudgedCall, reply: Reply, cancel: ExchangeAbort): Promise<void> {
  const excerpt = argsExcerpt(c.args, caller.config.mcp.excerptChars);
  const action = actionOf(c);
  const target = targetOf(c, excerpt);
  const refuseEarly = (code: ErrorCode, message: string) => {
    gw.pipeline.reject({ id: caller.requestId, protocol: 'mcp', agent: caller.agent, user: caller.user, session: caller.session, action, target, code, message, status: ERROR_CODES[code].status, startedHr: caller.startedHr });
    refusal(reply, c, code, message, caller.requestId);
  };
  if (c.method === 'resources/read') {
    const problem = resourceUriProblem(c.target);
    if (problem) return refuseEarly('bad_request', `${problem}; mcp-resource rules match the URI as sent, so it must mean to the server what it says to the rules (see docs/mcp.md)`);
  }
  const up = hub.get(c.server);
  if (!up) return refuseEarly('not_found', `no MCP server named "${c.server}" is configured`);
  if (c.method === 'tools/call') {
    // While the server is (re)connecting its catalogue is not known yet: checked again once it is (below).
    const unusable = up.connected ? toolUnusable(hub, up, c.server, c.target) : undefined;
    if (unusable) return refuseEarly(unusable.code, unusable.message);
  } else if (c.method === 'prompts/get' && up.connected && !up.catalogue.prompts.some((p) => p['name'] === c.target)) {
    return refuseEarly('not_found', `MCP server "${c.server}" has no prompt named "${c.target}"`);
  }

  const summary = `${c.method === 'tools/call' ? 'tool' : c.method === 'resources/read' ? 'resource' : 'prompt'} ${c.server}/${c.target}${excerpt !== '' ? ` ${excerpt}` : ''}`;
  let bodies: ExchangeBodies | undefined;
  if (caller.config.audit.bodies) {
    const spec = up.cfg.spec;
    bodies = new ExchangeBodies(injectedSecrets(spec.kind === 'stdio' ? spec.env : spec.headers));
    bodies.request.describe('application/json').set(c.raw);
  }
  const x = gw.pipeline.begin({ id: caller.requestId, protocol: 'mcp', agent: caller.agent, keyId: caller.keyId, user: caller.user, session: caller.session, action, target, argsKey: createHash('sha1').update(canonical(c.args ?? {})).digest('base64'), summary, config: caller.config, bodies });
  const onCancel = () => x.abort.abort('client_closed');
  cancel.once('abort', onCancel);
  // While a human decides, a client that asked for progress hears that the call is waiting.
  let waiting: NodeJS.Timeout | undefined;
  if (c.progressToken !== undefined && reply.isStreaming) {
    let n = 0;
    waiting = setInterval(() => reply.notify('notifications/progress', { progressToken: c.progressToken, progress: ++n, message: 'airlock: waiting for approval' }), 5000);
  }
  let verdict;
  try {
    verdict = await gw.pipeline.decide(x);
  } finally {
    clearInterval(waiting);
  }
  if (verdict.kind === 'deny') {
    cancel.removeListener('abort', onCancel);
    return refusal(reply, c, verdict.code, verdict.message, x.id);
  }
  const end = (code: ErrorCode | undefined, message: string | undefined, resultBytes: number, isError: boolean | undefined, refused?: true) => {
    cancel.removeListener('abort', onCancel);
    gw.pipeline.finish(x, { status: code ? ERROR_CODES[code].status : 200, code, message, refused, bytesIn: c.bytesIn, bytesOut: resultBytes, details: { server: c.server, resultBytes, ...(isError !== undefined ? { isError } : {}) } });
  };
  const t0 = performance.now();
  try {
    const onProgress = c.progressToken !== undefined ? (p: Record<string, unknown>) => reply.notify('notifications/progress', { ...p, progressToken: c.progressToken }) : undefined;
    let result: Record<string, unknown>;
    if (c.method === 'tools/call') {
      // Checked again right before the call: a hold for approval can last minutes, and the server
      // may have reconnected meanwhile, so the tool may have been quarantined or removed since the
      // first check. ready() resolves only once the connection's catalogue is loaded and checked
      // against the pins.
      await up.ready(Math.min(10_000, up.cfg.timeoutMs));
      const unusable = toolUnusable(hub, up, c.server, c.target);
      if (unusable) {
        const message = `${unusable.message} (found when the call was about to be made; it was not made)`;
        try {
          refusal(reply, c, unusable.code, message, x.id);
        } finally {
          end(unusable.code, message, 0, undefined, true);
        }
        return;
      }
      result = await up.callTool(c.target, c.args, { abort: x.abort, timeoutMs: up.cfg.timeoutMs, onProgress });
    } else {
      const client = await up.ready(Math.min(10_000, up.cfg.timeoutMs));
      const opts = { signal: x.abort.signal, timeout: up.cfg.timeoutMs, ...(onProgress ? { onprogress: onProgress, resetTimeoutOnProgress: true } : {}) };
      if (c.method === 'resources/read') result = (await client.readResource({ uri: c.target }, opts)) as Record<string, unknown>;
      else result = (await client.getPrompt({ name: c.target, ...(c.args ? { arguments: c.args as Record<string, string> } : {}) }, opts)) as Record<string, unknown>;
    }
    gw.metrics.upstreamDuration.labels('mcp', c.server).observe((performance.now() - t0) / 1000);
    const text = JSON.stringify(result);
    const isError = c.method === 'tools/call' ? result['isError'] === true : undefined;
    // The result the server returned (what the agent receives inside its JSON-RPC response).
    x.bodies?.response.describe('application/json').set(text);
    // The answer first, the bookkeeping (policies released, outcome record) after: the agent does not wait for it.
    try {
      reply.result(c.rpcId, result, text);
    } finally {
      end(undefined, undefined, Buffer.byteLength(text), isError);
    }
  } catch (e) {
    const reason = x.abort.reason as string | undefined;
    const code: ErrorCode = reason === 'killed' ? 'killed' : x.abort.aborted ? 'upstream_error' : /timed? ?out/i.test(String((e as Error)?.message)) ? 'upstream_timeout' : 'upstream_error';
    const message =
      code === 'killed'
        ? 'a kill switch stopped this call'
        : reason === 'client_closed'
          ? 'the call was cancelled by the client'
          : `MCP server "${c.server}" failed: ${e instanceof Error ? e.message : String(e)}`.slice(0, 500);
    try {
      refusal(reply, c, code, message, x.id);
    } finally {
      end(code, message, 0, undefined);
    }
  }
}

/** The exchange type, re-exported for tests of the door. */
export type { Exchange };
