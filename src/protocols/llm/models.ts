/**
 * `GET /llm/v1/models` and `/models/<id>`: the models this agent may use (allowed, or allowed with
 * approval) that its surface can reach, in the OpenAI shape, or the Anthropic shape when the caller
 * is an Anthropic SDK. Served by airlock itself: no provider is called. A killed agent gets
 * `killed`; models a target kill switch covers are left out.
 */
import type { ServerResponse } from 'node:http';
import { surfacesOf, type LlmModel } from '../../config/llm.js';
import type { Caller, DoorContext } from '../../server/context.js';
import { sendJson } from '../../server/respond.js';
import { sendLlmError } from './render.js';
import type { LlmRoute } from './routes.js';

/** The configured models `caller` may ask for on `route`'s surface (not denied, not killed). */
export function visibleModels(gw: DoorContext, caller: Caller, route: LlmRoute): LlmModel[] {
  const out: LlmModel[] = [];
  for (const m of caller.config.llm.models.values()) {
    if (!surfacesOf(m.provider.type).includes(route.surface)) continue;
    const action = `llm: ${m.name}`;
    if (caller.config.rules.decide(caller.agent.name, action).decision === 'deny') continue;
    if (gw.kills?.covering({ agent: caller.agent.name, team: caller.agent.team, action })) continue;
    out.push(m);
  }
  return out;
}

const EPOCH = '1970-01-01T00:00:00Z';

function view(m: LlmModel, route: LlmRoute): Record<string, unknown> {
  return route.surface === 'anthropic' ? { type: 'model', id: m.name, display_name: m.name, created_at: EPOCH } : { id: m.name, object: 'model', created: 0, owned_by: m.provider.name };
}

export function serveModels(gw: DoorContext, res: ServerResponse, caller: Caller, route: LlmRoute): void {
  const a = caller.agent;
  const stopped = gw.kills?.active.find((k) => k.scope === 'all' || (k.scope === 'agent' && k.value === a.name) || (k.scope === 'team' && k.value === a.team));
  if (stopped) return sendLlmError(res, route.surface, caller.requestId, 'killed', `a kill switch (${stopped.scope}${stopped.scope === 'all' ? '' : ` ${stopped.value}`}) stops every call of agent "${a.name}"`);
  const models = visibleModels(gw, caller, route);
  if (route.op === 'model') {
    const m = models.find((x) => x.name === route.modelId);
    if (!m) return sendLlmError(res, route.surface, caller.requestId, 'not_found', `no model "${route.modelId}" is available to agent "${caller.agent.name}"`);
    return sendJson(res, 200, view(m, route));
  }
  const data = models.map((m) => view(m, route));
  if (route.surface === 'anthropic') return sendJson(res, 200, { data, has_more: false, first_id: models[0]?.name ?? null, last_id: models.at(-1)?.name ?? null });
  return sendJson(res, 200, { object: 'list', data });
}
