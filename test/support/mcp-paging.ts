/**
 * A Streamable HTTP MCP server built on the v2 SDK's low-level `Server` that pages every listing
 * (`nextCursor`), offers completions for its prompts and resource templates, and counts the
 * requests it gets per method. `endless` makes tools/list hand out a new cursor on every page.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { toNodeHandler } from '@modelcontextprotocol/node';
import { createMcpHandler, Server } from '@modelcontextprotocol/server';

export interface PagingUpstream {
  url: string;
  /** Requests seen per JSON-RPC method. */
  requests: Map<string, number>;
  /** completion/complete params, as received. */
  completions: unknown[];
  close(): Promise<void>;
}

export const PAGED = {
  tools: Array.from({ length: 7 }, (_, i) => ({ name: `tool_${i}`, description: `Paged tool ${i}`, inputSchema: { type: 'object' as const, properties: {} } })),
  prompts: Array.from({ length: 5 }, (_, i) => ({ name: `prompt_${i}`, description: `Paged prompt ${i}`, arguments: [{ name: 'topic', required: false }] })),
  resources: Array.from({ length: 5 }, (_, i) => ({ uri: `paged://item/${i}`, name: `item ${i}` })),
  templates: Array.from({ length: 3 }, (_, i) => ({ uriTemplate: `paged://tpl${i}/{id}`, name: `template ${i}` })),
};

/** One page of `items` from the offset in `cursor`, with the next cursor while items remain. */
function page<T>(items: T[], cursor: string | undefined, size: number): { items: T[]; nextCursor?: string } {
  const from = cursor === undefined ? 0 : Number(cursor);
  const next = from + size;
  return next < items.length ? { items: items.slice(from, next), nextCursor: String(next) } : { items: items.slice(from) };
}

export async function startPagingUpstream(opts: { pageSize: number; endless?: boolean }): Promise<PagingUpstream> {
  const requests = new Map<string, number>();
  const completions: unknown[] = [];
  const count = (m: string) => requests.set(m, (requests.get(m) ?? 0) + 1);
  const factory = () => {
    const s = new Server({ name: 'paging', version: '1.0.0' }, { capabilities: { tools: {}, prompts: {}, resources: {}, completions: {} } });
    s.setRequestHandler('tools/list', (r) => {
      count('tools/list');
      if (opts.endless) {
        const n = Number(r.params?.cursor ?? 0);
        return { tools: [{ name: `endless_${n}`, inputSchema: { type: 'object' as const, properties: {} } }], nextCursor: String(n + 1) };
      }
      const p = page(PAGED.tools, r.params?.cursor, opts.pageSize);
      return { tools: p.items, ...(p.nextCursor !== undefined ? { nextCursor: p.nextCursor } : {}) };
    });
    s.setRequestHandler('prompts/list', (r) => {
      count('prompts/list');
      const p = page(PAGED.prompts, r.params?.cursor, opts.pageSize);
      return { prompts: p.items, ...(p.nextCursor !== undefined ? { nextCursor: p.nextCursor } : {}) };
    });
    s.setRequestHandler('resources/list', (r) => {
      count('resources/list');
      const p = page(PAGED.resources, r.params?.cursor, opts.pageSize);
      return { resources: p.items, ...(p.nextCursor !== undefined ? { nextCursor: p.nextCursor } : {}) };
    });
    s.setRequestHandler('resources/templates/list', (r) => {
      count('resources/templates/list');
      const p = page(PAGED.templates, r.params?.cursor, opts.pageSize);
      return { resourceTemplates: p.items, ...(p.nextCursor !== undefined ? { nextCursor: p.nextCursor } : {}) };
    });
    s.setRequestHandler('tools/call', (r) => {
      count('tools/call');
      return { content: [{ type: 'text' as const, text: `called ${r.params.name}` }] };
    });
    s.setRequestHandler('completion/complete', (r) => {
      count('completion/complete');
      completions.push(r.params);
      const { ref, argument } = r.params;
      const base = ref.type === 'ref/prompt' ? ref.name : ref.uri;
      return { completion: { values: [`${argument.value}1 for ${base}`, `${argument.value}2 for ${base}`], total: 2, hasMore: false } };
    });
    return s;
  };
  const mcp = createMcpHandler(factory);
  const handler = toNodeHandler(mcp);
  const srv = createServer((req, res) => void handler(req as Parameters<typeof handler>[0], res));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/mcp`,
    requests,
    completions,
    close: async () => {
      await mcp.close();
      await new Promise<void>((r) => (srv.closeAllConnections(), srv.close(() => r())));
    },
  };
}
