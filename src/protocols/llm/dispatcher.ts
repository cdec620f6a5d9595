/**
 * The undici dispatcher for LLM providers. Separate from the one for `/http` services because LLM
 * traffic is a few origins carrying many long-lived streams: a per-origin connection cap (which
 * suits plain APIs) would queue the 257th concurrent stream behind the first 256. Agents' own
 * concurrency limits are what bound LLM streams.
 */
import { Agent } from 'undici';

export function createLlmDispatcher(): Agent {
  return new Agent({
    connections: null,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    connect: { timeout: 10_000 },
  });
}
