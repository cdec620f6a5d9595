/**
 * Test support for the A2A gateway: a real remote agent built with the official `@a2a-js/sdk`
 * server (JSON-RPC and HTTP+JSON bindings, A2A 1.0 with 0.3 compatibility, push notifications), and
 * SDK clients that reach it only through airlock with an agent key.
 *
 * The executor answers by the first word of the message:
 *   quick …  a plain message, no task
 *   ask …    a task that stops in input-required ("Where to?"); the next message on it completes it
 *   slow …   a task that works for ~1.5s in small steps and honours cancel
 *   anything else: a task that streams submitted → working → artifact → working → completed
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Role, TaskState, type AgentCard, type Message, type Part } from '@a2a-js/sdk';
import {
  AgentEvent,
  DefaultPushNotificationSender,
  DefaultRequestHandler,
  InMemoryPushNotificationStore,
  InMemoryTaskStore,
  type AgentExecutor,
  type ExecutionEventBus,
  type RequestContext,
  type User,
} from '@a2a-js/sdk/server';
import { agentCardHandler, jsonRpcHandler, restHandler, UserBuilder } from '@a2a-js/sdk/server/express';
import { ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory, RestTransportFactory, type Client } from '@a2a-js/sdk/client';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

export interface A2AUpstream {
  url: string;
  /** Every request the remote agent received (method, url, headers). */
  seen: SeenRequest[];
  /** Serve this text as the card instead of the SDK's (undefined: back to the SDK's). */
  setCardText(text: string | undefined): void;
  /** The SDK card, as given to the request handler. */
  card: AgentCard;
  close(): Promise<void>;
}

const text = (v: string): Part => ({ content: { $case: 'text', value: v }, metadata: undefined, filename: '', mediaType: 'text/plain' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function agentMessage(ctx: RequestContext, v: string, taskId = ''): Message {
  return { messageId: `m-${Math.random().toString(36).slice(2)}`, contextId: ctx.contextId, taskId, role: Role.ROLE_AGENT, parts: [text(v)], metadata: undefined, extensions: [], referenceTaskIds: [] };
}

class TestExecutor implements AgentExecutor {
  private readonly cancelled = new Set<string>();

  cancelTask = async (taskId: string): Promise<void> => {
    this.cancelled.add(taskId);
  };

  async execute(ctx: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const input = ctx.userMessage.parts.map((p) => (p.content?.$case === 'text' ? p.content.value : '')).join(' ').trim();
    const { taskId, contextId } = ctx;
    const status = (state: TaskState, msg?: string) =>
      bus.publish(AgentEvent.statusUpdate({ taskId, contextId, status: { state, message: msg === undefined ? undefined : agentMessage(ctx, msg, taskId), timestamp: new Date().toISOString() }, metadata: undefined }));
    if (input.startsWith('quick')) {
      bus.publish(AgentEvent.message(agentMessage(ctx, `quick answer to: ${input}`)));
      return;
    }
    if (ctx.task) {
      // A follow-up on a task that asked for input.
      status(TaskState.TASK_STATE_WORKING, 'booking');
      bus.publish(AgentEvent.artifactUpdate({ taskId, contextId, artifact: { artifactId: 'booking', name: 'booking', description: '', parts: [text(`booked: ${input}`)], metadata: undefined, extensions: [] }, append: false, lastChunk: true, metadata: undefined }));
      status(TaskState.TASK_STATE_COMPLETED);
      return;
    }
    bus.publish(AgentEvent.task({ id: taskId, contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() }, artifacts: [], history: [ctx.userMessage], metadata: undefined }));
    if (input.startsWith('ask')) {
      status(TaskState.TASK_STATE_INPUT_REQUIRED, 'Where to?');
      return;
    }
    if (input.startsWith('slow')) {
      for (let i = 0; i < 30; i++) {
        if (this.cancelled.has(taskId)) {
          status(TaskState.TASK_STATE_CANCELED);
          return;
        }
        status(TaskState.TASK_STATE_WORKING, `step ${i + 1}`);
        await sleep(50);
      }
      status(TaskState.TASK_STATE_COMPLETED);
      return;
    }
    status(TaskState.TASK_STATE_WORKING, 'looking for flights');
    await sleep(30);
    bus.publish(AgentEvent.artifactUpdate({ taskId, contextId, artifact: { artifactId: 'answer', name: 'answer', description: '', parts: [text(`answer to: ${input}`)], metadata: undefined, extensions: [] }, append: false, lastChunk: true, metadata: undefined }));
    await sleep(30);
    status(TaskState.TASK_STATE_WORKING, 'checking prices');
    await sleep(30);
    status(TaskState.TASK_STATE_COMPLETED, 'done');
  }
}

/** Starts the SDK remote agent on 127.0.0.1:0. */
export async function startA2AUpstream(opts: { signatures?: boolean; token?: string; setCookie?: string } = {}): Promise<A2AUpstream> {
  const app = express();
  const server: Server = createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const card: AgentCard = {
    name: 'Travel agent',
    description: 'Books trips',
    version: '1.0.0',
    provider: { organization: 'Example Travel', url: 'https://travel.example.com' },
    supportedInterfaces: [
      { url: `${url}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' },
      { url: `${url}/a2a/rest`, protocolBinding: 'HTTP+JSON', tenant: '', protocolVersion: '1.0' },
      { url: `${url}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '0.3' },
      { url: `${url}/a2a/rest`, protocolBinding: 'HTTP+JSON', tenant: '', protocolVersion: '0.3' },
      { url: '127.0.0.1:1', protocolBinding: 'GRPC', tenant: '', protocolVersion: '1.0' },
    ],
    capabilities: { streaming: true, pushNotifications: true, extensions: [], extendedAgentCard: true },
    securitySchemes: { upstreamKey: { scheme: { $case: 'httpAuthSecurityScheme', value: { scheme: 'Bearer', description: 'the travel partner token', bearerFormat: '' } } } },
    securityRequirements: [{ schemes: { upstreamKey: { list: [] } } }],
    defaultInputModes: ['text'],
    defaultOutputModes: ['text'],
    skills: [{ id: 'book', name: 'Book a trip', description: 'books flights', tags: ['travel'], examples: [], inputModes: [], outputModes: [], securityRequirements: [{ schemes: { upstreamKey: { list: [] } } }] }],
    signatures: opts.signatures ? [{ protected: 'eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0', signature: 'c2lnbmF0dXJl', header: undefined }] : [],
  };
  const extended: AgentCard = { ...card, description: 'Books trips (extended card for partners)' };
  const pushStore = new InMemoryPushNotificationStore();
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new TestExecutor(), undefined, pushStore, new DefaultPushNotificationSender(pushStore, { timeout: 2000 }), extended);
  const seen: SeenRequest[] = [];
  let cardText: string | undefined;
  app.use((req, res, next) => {
    seen.push({ method: req.method, url: req.originalUrl, headers: req.headers });
    // As an auth front (Cloudflare Access, say) does: a session cookie minted from the credential airlock injects.
    if (opts.setCookie !== undefined) res.setHeader('set-cookie', opts.setCookie);
    next();
  });
  app.get('/.well-known/agent-card.json', (req, res, next) => {
    if (cardText === undefined) return next();
    res.setHeader('content-type', 'application/json');
    res.end(cardText);
  });
  app.use('/.well-known/agent-card.json', agentCardHandler({ agentCardProvider: handler, legacyCompat: { enabled: true } }));
  // Callers presenting the partner token are authenticated: they get the extended card.
  const userBuilder = async (req: express.Request): Promise<User> =>
    opts.token !== undefined && req.headers.authorization === `Bearer ${opts.token}` ? { isAuthenticated: true, userName: 'partner' } : UserBuilder.noAuthentication();
  app.use('/a2a/jsonrpc', jsonRpcHandler({ requestHandler: handler, userBuilder, legacyCompat: { enabled: true } }));
  app.use('/a2a/rest', restHandler({ requestHandler: handler, userBuilder, legacyCompat: { enabled: true } }));
  return {
    url,
    seen,
    card,
    setCardText: (t) => (cardText = t),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A `fetch` that presents the agent key, as an agent configured for airlock does. */
export function keyFetch(key: string): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${key}`);
    return fetch(input, { ...init, headers });
  };
}

/** An SDK client for `/a2a/<agent>/` through airlock, preferring one binding. */
export async function sdkClient(agentUrl: string, agent: string, key: string, prefer: 'JSONRPC' | 'HTTP+JSON' = 'JSONRPC'): Promise<Client> {
  const f = keyFetch(key);
  const factory = new ClientFactory({
    transports: [new JsonRpcTransportFactory({ fetchImpl: f }), new RestTransportFactory({ fetchImpl: f })],
    preferredTransports: [prefer],
    cardResolver: new DefaultAgentCardResolver({ fetchImpl: f }),
  });
  return factory.createFromUrl(`${agentUrl}/a2a/${agent}/`);
}

/** A user message in the SDK's 1.0 shape. */
export function userMessage(v: string, extra: { taskId?: string; contextId?: string } = {}): Message {
  return { messageId: `u-${Math.random().toString(36).slice(2)}`, contextId: extra.contextId ?? '', taskId: extra.taskId ?? '', role: Role.ROLE_USER, parts: [text(v)], metadata: undefined, extensions: [], referenceTaskIds: [] };
}

/** A webhook receiver for push notifications on 127.0.0.1:0. */
export async function startWebhook(): Promise<{ url: string; received: { headers: IncomingMessage['headers']; body: string }[]; close(): Promise<void> }> {
  const received: { headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
