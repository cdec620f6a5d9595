/**
 * The LLM front door's routes (SPEC section 5.2). OpenAI shape under `/llm/v1` (the OpenAI SDK's
 * baseURL), Anthropic shape under `/llm` + the Anthropic SDK's own `/v1/...` paths.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Surface } from '../../config/llm.js';

export type Operation = 'chat' | 'responses' | 'embeddings' | 'models' | 'model' | 'messages' | 'count_tokens';

export interface LlmRoute {
  op: Operation;
  surface: Surface;
  /** The path after `/v1` (`/chat/completions`, `/messages/count_tokens`). */
  path: string;
  /** `?…` as the agent sent it (the Anthropic SDK adds `?beta=true`), or ''. */
  query: string;
  /** For `GET /v1/models/<id>`. */
  modelId?: string;
}

const POST_ROUTES: Record<string, { op: Operation; surface: Surface }> = {
  '/chat/completions': { op: 'chat', surface: 'openai' },
  '/responses': { op: 'responses', surface: 'openai' },
  '/embeddings': { op: 'embeddings', surface: 'openai' },
  '/messages': { op: 'messages', surface: 'anthropic' },
  '/messages/count_tokens': { op: 'count_tokens', surface: 'anthropic' },
};

/** The surface whose error shape a caller understands: Anthropic SDKs send `anthropic-version`. */
export function surfaceOf(url: string, headers: IncomingHttpHeaders): Surface {
  if (headers['anthropic-version'] !== undefined) return 'anthropic';
  return /^\/llm\/v1\/messages(?:[/?]|$)/.test(url) ? 'anthropic' : 'openai';
}

/** Parses `/llm/...`; an unknown path or method gives the reason. */
export function parseLlmRoute(method: string, url: string, headers: IncomingHttpHeaders): { ok: true; route: LlmRoute } | { ok: false; surface: Surface; problem: string } {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
  const rest = path.startsWith('/llm/v1/') ? path.slice(7) : '';
  const post = POST_ROUTES[rest];
  if (post && method === 'POST') return { ok: true, route: { op: post.op, surface: post.surface, path: rest, query } };
  const surface = surfaceOf(url, headers);
  if (!rest) return { ok: false, surface, problem: `no LLM route ${path}: OpenAI SDKs use baseURL …/llm/v1, Anthropic SDKs use …/llm` };
  if (post) return { ok: false, surface: post.surface, problem: `${path} takes POST, not ${method}` };
  if (rest === '/models' || rest.startsWith('/models/')) {
    if (method !== 'GET') return { ok: false, surface, problem: `${path} takes GET, not ${method}` };
    if (rest === '/models') return { ok: true, route: { op: 'models', surface, path: rest, query } };
    let id: string;
    try {
      id = decodeURIComponent(rest.slice(8));
    } catch {
      return { ok: false, surface, problem: 'the model id is not valid percent-encoding' };
    }
    return { ok: true, route: { op: 'model', surface, path: rest, query, modelId: id } };
  }
  return { ok: false, surface, problem: `no LLM route ${path}: the OpenAI shape serves /llm/v1/chat/completions, /responses, /embeddings, /models; the Anthropic shape /llm/v1/messages and /messages/count_tokens` };
}
