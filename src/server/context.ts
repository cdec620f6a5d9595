/** What a protocol front door needs from the gateway, and what the agent listener tells it of the caller. */
import type { Dispatcher } from 'undici';
import type { AgentRuntime, RuntimeConfig } from '../config/compile.js';
import type { Pipeline } from '../pipeline/runner.js';
import type { KillSwitches } from '../policies/kill/switches.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';

export interface DoorContext {
  readonly pipeline: Pipeline;
  readonly dispatcher: Dispatcher;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Provider calls of the LLM front door (many long-lived streams per origin); `dispatcher` when absent. */
  readonly llmDispatcher?: Dispatcher;
  /** Forward-proxy calls to hosts: pools of their own, each new connection checked to reach no forbidden address (protocols/http/proxy.ts). */
  readonly proxyDispatcher: Dispatcher;
  /** For requests that are not exchanges (discovery: cards, model lists) but must stop when killed. */
  readonly kills?: KillSwitches;
}

/** An authenticated caller of one request. */
export interface Caller {
  requestId: string;
  agent: AgentRuntime;
  keyId: string;
  user: string | undefined;
  session: string | undefined;
  config: RuntimeConfig;
  startedHr: number;
}
