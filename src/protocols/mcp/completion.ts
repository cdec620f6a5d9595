/**
 * `completion/complete`: argument suggestions for a prompt or a resource template, asked of the
 * upstream that owns it. Judged like a listing, by the rule for what it completes
 * (`mcp-prompt: <server>/<prompt>`, `mcp-resource: <server>/<uri template>`) and the kill
 * switches, not as an exchange: it is called per keystroke, reveals only what the server offers
 * to suggest, and the prompts/get or resources/read that follows is judged in full. Refusals are
 * audited; allowed completions are not (like listings).
 */
import { ERROR_CODES, type ErrorCode } from '../../errors.js';
import { killMessage } from '../../policies/kill/switches.js';
import type { Caller, DoorContext } from '../../server/context.js';
import { mcpResourceAction } from '../../policies/rules/pattern.js';
import type { McpHub } from './hub.js';
import { deniedError, type Reply, type RpcId } from './wire.js';

/** What a completion's `ref` names, as the upstream knows it. */
export interface CompletionRef {
  server: string;
  type: 'ref/prompt' | 'ref/resource';
  /** Prompt name, or the resource (template) URI. */
  name: string;
}

/** The bits of the request the door has already checked the shape of. */
export interface CompletionRequest {
  rpcId: RpcId;
  argument: { name: string; value: string };
  context: { arguments?: Record<string, string> } | undefined;
}

const NO_SUGGESTIONS = { completion: { values: [], hasMore: false } };

/** Judges a completion, asks the owning upstream and answers the agent. */
export async function serveCompletion(gw: DoorContext, hub: McpHub, caller: Caller, ref: CompletionRef, req: CompletionRequest, reply: Reply, signal: AbortSignal): Promise<void> {
  const action = ref.type === 'ref/prompt' ? `mcp-prompt: ${ref.server}/${ref.name}` : mcpResourceAction(ref.server, ref.name);
  const target = ref.type === 'ref/prompt' ? { server: ref.server, prompt: ref.name, completion: req.argument.name } : { server: ref.server, uri: ref.name, completion: req.argument.name };
  const refuse = (code: ErrorCode, message: string, rule?: string) => {
    gw.pipeline.reject({ id: caller.requestId, protocol: 'mcp', agent: caller.agent, user: caller.user, session: caller.session, action, target, code, message, rule, status: ERROR_CODES[code].status, startedHr: caller.startedHr });
    const e = deniedError(code, message, caller.requestId);
    reply.error(req.rpcId, e.code, e.message, e.data);
  };
  const kill = gw.kills?.covering({ agent: caller.agent.name, team: caller.agent.team, action });
  if (kill) return refuse('killed', killMessage(kill));
  const d = caller.config.rules.decide(caller.agent.name, action);
  if (d.decision === 'deny') return refuse('denied', `${d.message} (completion for ${action})`, d.rule);

  const up = hub.get(ref.server);
  if (!up) return refuse('not_found', `no MCP server named "${ref.server}" is configured`);
  try {
    const client = await up.ready(Math.min(10_000, up.cfg.timeoutMs));
    // On /mcp airlock offers completions when any server does; a server without them has none to give.
    if (!client.getServerCapabilities()?.completions) return reply.result(req.rpcId, NO_SUGGESTIONS);
    const r = await client.complete(
      { ref: ref.type === 'ref/prompt' ? { type: 'ref/prompt', name: ref.name } : { type: 'ref/resource', uri: ref.name }, argument: req.argument, ...(req.context ? { context: req.context } : {}) },
      { signal, timeout: up.cfg.timeoutMs },
    );
    reply.result(req.rpcId, r as Record<string, unknown>);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const code: ErrorCode = /timed? ?out/i.test(message) ? 'upstream_timeout' : 'upstream_error';
    const err = deniedError(code, `MCP server "${ref.server}" failed to complete: ${message}`.slice(0, 500), caller.requestId);
    reply.error(req.rpcId, err.code, err.message, err.data);
  }
}

/** The `argument` and `context` of a completion/complete request, or a message saying what is wrong. */
export function completionRequest(p: Record<string, unknown>, rpcId: RpcId): CompletionRequest | string {
  const a = p['argument'];
  if (a === null || typeof a !== 'object' || typeof (a as Record<string, unknown>)['name'] !== 'string' || typeof (a as Record<string, unknown>)['value'] !== 'string') {
    return 'completion/complete needs argument: {name, value} (strings)';
  }
  const c = p['context'];
  let context: CompletionRequest['context'];
  if (c !== undefined) {
    const args = c !== null && typeof c === 'object' ? (c as Record<string, unknown>)['arguments'] : undefined;
    if (c === null || typeof c !== 'object' || (args !== undefined && (args === null || typeof args !== 'object' || Array.isArray(args) || Object.values(args).some((v) => typeof v !== 'string')))) {
      return 'context.arguments must be an object of strings';
    }
    context = args === undefined ? {} : { arguments: args as Record<string, string> };
  }
  const { name, value } = a as { name: string; value: string };
  return { rpcId, argument: { name, value }, context };
}
