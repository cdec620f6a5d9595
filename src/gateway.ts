/**
 * The running gateway: wires config, store, keys, pipeline, front doors and listeners together;
 * reloads config without dropping connections; drains on stop.
 */
import { randomUUID } from 'node:crypto';
import { Gauge } from 'prom-client';
import { watchFile, unwatchFile } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import type { Agent as UndiciAgent, Dispatcher } from 'undici';
import { adminHandler } from './admin/api.js';
import { ApprovalNotifier } from './approvals/notify.js';
import { AnomalyDetector } from './events/anomalies.js';
import { Webhooks } from './events/webhooks.js';
import { Approvals } from './approvals/service.js';
import { AuditLog } from './audit/log.js';
import { PostgresAudit } from './audit/postgres.js';
import { clearRunning, markRunning } from './server/running.js';
import { compileConfig, isLoopbackHost, type HostPort, type RuntimeConfig } from './config/compile.js';
import { loadConfigFile } from './config/load.js';
import { Alerts, alertText } from './events/alerts.js';
import { EventBus } from './events/bus.js';
import { KeyRing, type KeyRecord } from './identity/keys.js';
import { Pipeline } from './pipeline/runner.js';
import type { Exchange } from './pipeline/types.js';
import { approvalPolicy } from './policies/approval/policy.js';
import { BudgetLedger } from './policies/budget/ledger.js';
import { budgetPolicy, TokenCounters } from './policies/budget/policy.js';
import { guardsPolicy } from './policies/guards/policy.js';
import { killPolicy } from './policies/kill/policy.js';
import { KillSwitches } from './policies/kill/switches.js';
import { LimitCounters, limitsPolicy } from './policies/limits/policy.js';
import { rulesPolicy } from './policies/rules/policy.js';
import { ServicePidFile } from './process/pidfile.js';
import { SupervisedProcess } from './process/supervisor.js';
import { agentHandler, connectHandler, type AgentPortDeps } from './server/agent.js';
import { createProxyDispatcher, type OwnPorts } from './protocols/http/proxy.js';
import { DeferredWrites } from './store/deferred.js';
import { SqliteStore } from './store/sqlite.js';
import { nodeId } from './store/node.js';
import type { SharedCounters } from './store/redis/counters.js';
import type { ClusterApprovals } from './store/redis/approvals.js';
import type { ClusterFeed } from './store/redis/feed.js';
import type { RedisLink } from './store/redis/link.js';
import type { ClusterSync } from './store/redis/sync.js';
import type { Alert, KillScope, KillSwitch, Store } from './store/types.js';
import type { SyncTarget } from './store/redis/sync.js';
import { createDispatcher } from './upstream/dispatcher.js';
import { createLlmDispatcher } from './protocols/llm/dispatcher.js';
import { Pins } from './protocols/mcp/pinning.js';
import { McpHub } from './protocols/mcp/hub.js';
import { TaskOwners } from './protocols/a2a/owners.js';
import { errorBody } from './errors.js';
import { createLogger, type Logger } from './telemetry/logger.js';
import { Metrics } from './telemetry/metrics.js';
import { dirname } from 'node:path';

type RedisModule = typeof import('./store/redis/index.js');

export interface GatewayOptions {
  configFile: string;
  listen?: string | undefined;
  adminListen?: string | undefined;
  /** Where logs go; stderr by default. */
  logDestination?: number | NodeJS.WritableStream;
  /** Watch the config file for changes (on by default). */
  watch?: boolean;
}

function listen(server: Server, hp: HostPort): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(hp.port, hp.host, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve(`http://${host}:${a.port}`);
    });
  });
}

export class Gateway implements AgentPortDeps {
  agentUrl = '';
  adminUrl = '';
  readonly keys = new KeyRing();
  readonly bus = new EventBus();
  readonly metrics = new Metrics();
  readonly counters = new LimitCounters();
  readonly dispatcher: UndiciAgent = createDispatcher();
  readonly llmDispatcher: UndiciAgent = createLlmDispatcher();
  /** The listeners' ports: forward-proxy mode never connects to them. */
  readonly own: OwnPorts = { ports: () => [this.agentUrl, this.adminUrl].filter(Boolean).map((u) => Number(new URL(u).port)) };
  readonly proxyDispatcher: Dispatcher = createProxyDispatcher(this.own);
  readonly store: Store;
  readonly audit: AuditLog;
  /** store.postgres: ships this gateway's audit chain to PostgreSQL, and reads every gateway's there. */
  readonly postgres: PostgresAudit | undefined;
  readonly alerts: Alerts;
  readonly kills: KillSwitches;
  /** Kill switch, key revocation and alert writes, made without stalling on a lock held elsewhere. */
  private readonly deferredWrites: DeferredWrites;
  /** Keys revoked in memory whose revocation is not in the store yet. */
  private readonly revocationsUnsaved = new Set<string>();
  readonly pins: Pins;
  /** Which agent started each A2A task: the A2A door refuses the others. */
  readonly a2aTasks: TaskOwners;
  /** Shared connections to the configured MCP servers. */
  readonly mcpHub: McpHub;
  readonly approvals: Approvals;
  /** Watches every finished exchange for anomalies, raised as alerts. */
  readonly anomalies: AnomalyDetector;
  readonly pipeline: Pipeline;
  readonly log: Logger;
  /** The scale-out cluster this gateway is part of (store.redis): shared counters, kill switches, keys and exchange feed. */
  readonly cluster: { link: RedisLink; counters: SharedCounters; sync: ClusterSync; feed: ClusterFeed; approvals: ClusterApprovals } | undefined;
  private current: RuntimeConfig;
  private agentServer: Server | undefined;
  private adminServer: Server | undefined;
  private processes = new Map<string, SupervisedProcess>();
  private readonly servicePids: ServicePidFile;
  private draining = false;
  private listening = false;
  private stopped: Promise<void> | undefined;
  private readonly auditLagTimer: NodeJS.Timeout;

  private constructor(
    private readonly opts: GatewayOptions,
    config: RuntimeConfig,
    cluster: RedisModule | undefined,
  ) {
    this.current = config;
    this.log = createLogger(config.logLevel, opts.logDestination);
    this.store = new SqliteStore(config.dataDir, { autoCheckpoint: false }); // the audit writer thread checkpoints
    const redis = config.store.redis;
    let link: RedisLink | undefined;
    let feed: ClusterFeed | undefined;
    if (redis && cluster) {
      const node = nodeId(config.dataDir);
      link = new cluster.RedisLink(redis.url, redis.prefix, node, this.log);
      feed = new cluster.ClusterFeed(link, node, this.bus);
      this.log.info({ redis: cluster.redactUrl(redis.url), prefix: redis.prefix, member: link.member }, 'sharing counters, kill switches, keys and events through Redis');
    }
    this.audit = new AuditLog(config.dataDir, this.bus, {
      jsonlPath: config.audit.jsonl ? join(config.dataDir, 'audit.jsonl') : undefined,
      onError: (e) => this.log.error({ err: e }, 'audit write failed'),
      onWarn: (message) => this.log.warn(message),
      onCommitted: feed ? (records) => feed.committed(records) : undefined,
    });
    this.postgres = config.store.postgres ? new PostgresAudit(config.store.postgres, config.dataDir, this.log, this.metrics, () => this.audit.headSeq) : undefined;
    this.deferredWrites = new DeferredWrites(this.store, (problem) => (problem ? this.log.error(problem) : this.log.info('the writes that waited for the store (kill switches, key revocations, alerts, approval ends, tool pins, A2A task owners) reached it')));
    this.kills = new KillSwitches(this.store, this.deferredWrites);
    this.servicePids = new ServicePidFile(config.dataDir, this.log);
    const webhooks = new Webhooks(this.dispatcher, this.log);
    this.alerts = new Alerts(
      this.store,
      this.bus,
      this.deferredWrites,
      (a) => {
        const targets = this.current.alerts.notify;
        if (targets.length > 0) webhooks.post(targets, JSON.stringify({ text: alertText(a, this.adminUrl), event: 'alert.raised', alert: a }), 'alert', a.id);
      },
      link ? (a) => link.publish('alert', { ...a, data: { ...a.data, node: nodeId(config.dataDir) } }) : undefined,
    );
    this.anomalies = new AnomalyDetector(config.alerts.anomalies, (kind, subject, severity, message, data, agent) => this.alerts.raise(kind, subject, severity, message, data, agent));
    link?.on('alert', (d) => {
      const a = d as Alert;
      const severities: unknown[] = ['info', 'warning', 'critical'];
      if (typeof a?.id === 'string' && typeof a.kind === 'string' && typeof a.message === 'string' && typeof a.ts === 'string' && severities.includes(a.severity)) this.alerts.adopt(a);
    });
    this.pins = new Pins(this.store, this.deferredWrites);
    this.a2aTasks = new TaskOwners(this.store, this.deferredWrites);
    this.mcpHub = new McpHub(this.log, this.alerts, this.pins);
    const shared = link && cluster ? new cluster.SharedCounters(link) : undefined;
    this.cluster =
      link && shared && feed && cluster
        ? { link, counters: shared, feed, sync: new cluster.ClusterSync(link, this.syncTarget()), approvals: new cluster.ClusterApprovals(link, () => this.approvals) }
        : undefined;
    this.approvals = new Approvals(this.store, this.deferredWrites, this.bus, new ApprovalNotifier(webhooks), this.metrics, this.log, () => this.adminUrl, this.cluster?.approvals);
    this.pipeline = new Pipeline(
      [
        killPolicy(this.kills),
        rulesPolicy(),
        limitsPolicy(this.counters, Date.now, shared),
        // Token limits and budgets: reserved before the call, settled with real usage; spend survives restarts via the audit.
        // Only LLM records carry a cost: the sum reads those alone rather than every protocol's.
        budgetPolicy(
          new BudgetLedger((scope, name, since) => this.store.usageSummary('agent', since, scope === 'agent' ? { agent: name, protocol: 'llm' } : { team: name, protocol: 'llm' }).reduce((s, g) => s + g.costUsd, 0)),
          new TokenCounters(),
          Date.now,
          shared,
        ),
        guardsPolicy(
          (x) =>
            this.alerts.raise('loop', `${x.agent.name} ${x.action}`, 'warning', `agent "${x.agent.name}" is repeating ${x.action} with the same arguments; calls are refused with loop_detected`, { action: x.action, session: x.session }, x.agent.name),
          Date.now,
          undefined,
          shared,
        ),
        approvalPolicy(this.approvals, this.keys),
      ],
      this.audit,
      this.metrics,
      this.log,
    );
    this.pipeline.onFinal = (rec) => this.anomalies.observe(rec);
    this.loadKeys();
    // In a cluster: whether this gateway shares its counters now, or counts alone (Redis unreachable).
    const linkUp = this.cluster ? new Gauge({ name: 'airlock_cluster_link_up', help: "1 while the link to the cluster's Redis (store.redis) is up; 0 while this gateway counts alone", registers: [this.metrics.registry] }) : undefined;
    this.auditLagTimer = setInterval(() => {
      this.metrics.auditLag.set(this.audit.lagSeconds);
      linkUp?.set(this.cluster!.link.available ? 1 : 0);
    }, 1000).unref();
  }

  /** Loads the config, opens the store and starts both listeners. Throws ConfigError on a bad config. */
  static async start(opts: GatewayOptions): Promise<Gateway> {
    const config = compileConfig(loadConfigFile(opts.configFile), { listen: opts.listen, adminListen: opts.adminListen });
    const gw = new Gateway(opts, config, config.store.redis ? await import('./store/redis/index.js') : undefined);
    try {
      await gw.audit.opened();
      // Kill switches and keys set elsewhere in the cluster are in force before the first call.
      if (gw.cluster && !(await gw.cluster.link.connected(3_000))) {
        gw.log.warn('Redis is not reachable yet: this gateway starts with its own counters, kill switches and keys, and shares them once the link is up');
      }
      await gw.listen();
    } catch (e) {
      await gw.stop();
      throw e;
    }
    return gw;
  }

  config(): RuntimeConfig {
    return this.current;
  }

  ready(): boolean {
    return this.listening && !this.draining;
  }

  isDraining(): boolean {
    return this.draining;
  }

  private async listen(): Promise<void> {
    const c = this.current;
    // A gateway killed with its services' launchers (kill -9 of both) left them running: they hold
    // the ports our services are about to need.
    await this.servicePids.stopLeftovers();
    this.syncProcesses(c);
    this.mcpHub.sync(c.mcp);
    const agent = createServer(
      {
        headersTimeout: c.server.headersTimeoutMs,
        requestTimeout: c.server.requestTimeoutMs,
        keepAliveTimeout: c.server.keepAliveTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, c.server.headersTimeoutMs),
      },
      this.countingActive(agentHandler(this)),
    );
    // Without this listener Node answers `100 Continue` before any check; the front door sends it
    // only when it is ready to take the body (after the size check and authentication).
    agent.on('checkContinue', this.countingActive(agentHandler(this)));
    agent.on('clientError', answerMalformed);
    // Forward-proxy mode's tunnels (HTTPS_PROXY): a CONNECT request gets the raw socket.
    agent.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => connectHandler(this, req, socket, head));
    this.agentServer = agent;
    this.agentUrl = await listen(agent, c.listen);
    const admin = createServer({ headersTimeout: 10_000, requestTimeout: 0 }, adminHandler(this));
    admin.on('clientError', answerMalformed);
    this.adminServer = admin;
    this.adminUrl = await listen(admin, c.admin.listen);
    this.listening = true;
    if (this.opts.watch !== false) watchFile(this.opts.configFile, { interval: 500 }, (cur, prev) => cur.mtimeMs !== prev.mtimeMs && this.reload('file change'));
    try {
      markRunning(c.dataDir, { pid: process.pid, admin: this.adminUrl, agent: this.agentUrl, startedAt: new Date().toISOString() });
    } catch (e) {
      this.log.warn({ err: e }, 'could not write gateway.json; the CLI finds this gateway only at its configured admin address');
    }
    this.log.info({ agent: this.agentUrl, admin: this.adminUrl, config: c.file }, 'gateway started');
  }

  /** Requests on the agent port whose response has not finished: what a drain waits for. */
  private active = 0;

  private countingActive(h: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      this.active++;
      res.once('close', () => this.active--);
      h(req, res);
    };
  }

  /** Re-reads the config; a bad file is refused and the running config kept. */
  reload(why: string): { ok: true } | { ok: false; error: string } {
    let next: RuntimeConfig;
    try {
      next = compileConfig(loadConfigFile(this.opts.configFile), { listen: this.opts.listen, adminListen: this.opts.adminListen });
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      this.log.error({ why, error }, 'config reload refused; the running config stays in force');
      return { ok: false, error };
    }
    const prev = this.current;
    const moved = (a: HostPort, b: HostPort) => a.host !== b.host || a.port !== b.port;
    if (moved(prev.listen, next.listen) || moved(prev.admin.listen, next.admin.listen) || prev.dataDir !== next.dataDir) {
      this.log.warn({ why }, 'listen addresses and data directory change only on restart; keeping the running ones');
      next = { ...next, listen: prev.listen, admin: { ...next.admin, listen: prev.admin.listen }, dataDir: prev.dataDir };
      // The new file was checked against its own admin address; the port stays on the old one.
      if (!isLoopbackHost(next.admin.listen.host) && next.admin.tokens.length === 0) {
        const error = `the admin port keeps listening on ${next.admin.listen.host} until a restart, which is not loopback: the new config must keep an admin token`;
        this.log.error({ why, error }, 'config reload refused; the running config stays in force');
        return { ok: false, error };
      }
    }
    if (JSON.stringify(prev.store) !== JSON.stringify(next.store)) {
      const error = 'the store section (store.redis, store.postgres) changes only on restart: restart the gateway to use the new one';
      this.log.error({ why, error }, 'config reload refused; the running config stays in force');
      return { ok: false, error };
    }
    this.current = next;
    this.anomalies.configure(next.alerts.anomalies);
    this.loadKeys();
    this.syncProcesses(next);
    this.mcpHub.sync(next.mcp);
    // Listings are filtered by the rules and the pinning mode: connected MCP clients should list again.
    this.mcpHub.announceAll();
    this.log.info({ why }, 'config reloaded');
    this.bus.emit('config', { reloadedAt: new Date().toISOString() });
    this.recheckTunnels();
    return { ok: true };
  }

  /**
   * Open forward-proxy tunnels are long-lived connections, judged once, when they opened: after a
   * key revocation or a reload, each is judged again, and cut if its key no longer works, its agent
   * is gone, forward-proxy mode is off, or the rules no longer let it through. (Calls are short and
   * end on their own; a tunnel may stay open for hours.)
   */
  private recheckTunnels(): void {
    const c = this.current;
    const now = Date.now();
    const cut = this.pipeline.abortWhere((x) => {
      if (!x.tunnel) return false;
      if (!c.http.forwardProxy || !c.agents.has(x.agent.name) || !this.keys.usable(x.keyId, now)) return true;
      return c.rules.decide(x.agent.name, x.action).decision === 'deny';
    }, 'revoked');
    if (cut > 0) this.log.warn({ tunnels: cut }, 'open forward-proxy tunnels cut: their key, agent or rules no longer allow them');
  }

  private loadKeys(): void {
    const c = this.current;
    const records: KeyRecord[] = c.configKeys.map((k) => ({ id: k.id, agent: k.agent, hash: k.hash, prefix: k.prefix, source: 'config', createdAt: undefined, expiresAt: undefined, revokedAt: undefined }));
    for (const k of this.store.listKeys()) if (!this.revocationsUnsaved.has(k.id)) records.push(k);
    this.keys.reset(records);
  }

  /** Starts the local processes the config names (example services) and stops removed ones. */
  private syncProcesses(c: RuntimeConfig): void {
    const want = new Map<string, { command: string; args: string[]; env: Record<string, string> }>();
    for (const s of c.http.services.values()) if (s.process) want.set(`http:${s.name}`, s.process);
    for (const [name, p] of this.processes) {
      const w = want.get(name);
      if (!w || JSON.stringify(w) !== JSON.stringify({ command: p.spec.command, args: p.spec.args, env: p.spec.env })) {
        void p.stop();
        this.processes.delete(name);
      }
    }
    for (const [name, w] of want) {
      if (this.processes.has(name)) continue;
      const p = new SupervisedProcess({ name, ...w, cwd: dirname(c.file) }, this.log, this.servicePids);
      this.processes.set(name, p);
      p.start();
    }
  }

  /** A key made by the admin API: usable at once here, and on the cluster's other gateways. */
  keyCreated(k: KeyRecord): void {
    this.keys.add(k);
    this.cluster?.sync.keyChanged(k);
  }

  /** Revokes a stored key: refused from the very next request, whatever the store is doing (see DeferredWrites), on every gateway of the cluster. */
  revokeKey(id: string): KeyRecord | undefined {
    const r = this.revokeHere(id, new Date().toISOString());
    if (r) this.cluster?.sync.keyChanged(r);
    return r;
  }

  private revokeHere(id: string, at: string): KeyRecord | undefined {
    const usable = this.keys.remove(id);
    if (usable) {
      this.revocationsUnsaved.add(id); // a reload meanwhile must not bring the key back from the store
      this.deferredWrites.write(() => {
        this.store.revokeKey(id, at);
        this.revocationsUnsaved.delete(id);
      });
      this.recheckTunnels();
      return { ...usable, revokedAt: at };
    }
    return this.store.revokeKey(id, at); // already revoked, expired, or unknown: nothing to put in force
  }

  /** What the cluster's kill switch and key sync does to this gateway. */
  private syncTarget(): SyncTarget {
    return {
      localKills: () => this.kills.active,
      applyKill: (k) => void this.putKill(k, 'cluster'),
      applyUnkill: (scope, value, by) => {
        if (this.kills.remove(scope, value)) {
          this.log.warn({ scope, value, by, from: 'cluster' }, 'kill switch lifted');
          this.bus.emit('unkill', { scope, value, by });
        }
      },
      localKeys: () => this.store.listKeys(),
      applyKey: (k, local) => {
        // By id, never among all the agent's keys: a merge or a burst of announcements (every
        // gateway re-announces its keys after Redis lost them) would take time quadratic in their number.
        const known = local !== undefined ? (local ?? undefined) : this.store.getKey(k.id);
        if (!known) {
          this.deferredWrites.write(() => this.store.insertKey(k));
          if (!k.revokedAt) this.keys.add(k);
          else this.keys.remove(k.id);
        } else if (k.revokedAt && !known.revokedAt) {
          this.revokeHere(k.id, k.revokedAt);
          this.log.info({ keyId: k.id, from: 'cluster' }, 'agent key revoked');
        }
      },
    };
  }

  /** Turns a kill switch on and cuts that scope's in-flight exchanges, on every gateway of the cluster. */
  kill(scope: KillScope, value: string, reason: string | undefined, by: string | undefined): { kill: KillSwitch; aborted: number } {
    const k = this.kills.add(scope, value, reason, by);
    this.cluster?.sync.killed(k);
    return { kill: k, aborted: this.cut(k) };
  }

  /** Puts a switch set on another gateway in force here. */
  private putKill(k: KillSwitch, from: string): void {
    try {
      this.kills.put(k);
    } catch (e) {
      this.log.error({ err: e, scope: k.scope, value: k.value, from }, 'a kill switch from the cluster could not be put in force');
      return;
    }
    this.cut(k, from);
  }

  /** Cuts the in-flight and held exchanges a switch covers; logs and announces it. */
  private cut(k: KillSwitch, from?: string): number {
    const covered = (x: Exchange) =>
      this.kills.covering({ agent: x.agent.name, team: x.agent.team, action: x.action }) !== undefined ||
      (x.servedAction !== undefined && this.kills.covering({ agent: x.agent.name, team: x.agent.team, action: x.servedAction }) !== undefined);
    let aborted = this.pipeline.abortWhere(covered, 'killed');
    // Held calls are not in flight yet; their abort signal denies them at once.
    for (const x of this.approvals.heldExchanges()) {
      if (covered(x) && !x.abort.aborted) {
        x.abort.abort('killed');
        aborted++;
      }
    }
    this.log.warn({ scope: k.scope, value: k.value, by: k.by, aborted, from }, 'kill switch on');
    this.bus.emit('kill', { ...k, aborted });
    return aborted;
  }

  unkill(scope: KillScope, value: string, by: string | undefined): boolean {
    const lifted = this.kills.remove(scope, value);
    if (lifted) {
      this.log.warn({ scope, value, by }, 'kill switch lifted');
      this.bus.emit('unkill', { scope, value, by });
      this.cluster?.sync.unkilled(scope, scope === 'all' ? '*' : value, by, new Date().toISOString());
    }
    return lifted;
  }

  /**
   * Drains: stops accepting, lets in-flight exchanges finish (bounded by shutdownTimeout), cuts the
   * rest, flushes the audit log, stops local processes.
   */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.draining = true;
    unwatchFile(this.opts.configFile);
    clearInterval(this.auditLagTimer);
    const agentClosed = this.agentServer ? new Promise<void>((r) => this.agentServer!.close(() => r())) : Promise.resolve();
    this.agentServer?.closeIdleConnections();
    // Held calls cannot outlive the process: answer them now instead of waiting out the drain.
    this.approvals.releaseAll('the gateway is shutting down');
    const deadline = Date.now() + this.current.shutdownTimeoutMs;
    while ((this.active > 0 || this.pipeline.inFlight.size > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (this.pipeline.inFlight.size > 0) {
      this.log.warn({ inFlight: this.pipeline.inFlight.size }, 'shutdown timeout: cutting the remaining exchanges');
      this.pipeline.abortWhere(() => true, 'shutdown');
      await new Promise((r) => setTimeout(r, 50));
    }
    this.agentServer?.closeAllConnections();
    await agentClosed;
    if (this.adminServer) {
      const closed = new Promise<void>((r) => this.adminServer!.close(() => r()));
      this.adminServer.closeAllConnections();
      await closed;
    }
    await Promise.all([...this.processes.values()].map((p) => p.stop()));
    await this.mcpHub.close();
    await this.audit.close();
    await this.postgres?.close(); // after the local store has every record: ships the last ones (bounded)
    this.cluster?.feed.close();
    await this.cluster?.link.close();
    this.a2aTasks.flush();
    try {
      this.deferredWrites.flush();
    } catch (e) {
      this.log.error({ err: e }, 'kill switch, key or alert writes could not be made; they are lost with this process');
    }
    this.store.close();
    clearRunning(this.current.dataDir);
    await this.dispatcher.close().catch(() => {});
    await this.llmDispatcher.close().catch(() => {});
    await this.proxyDispatcher.close().catch(() => {});
    this.log.info('gateway stopped');
    await new Promise<void>((r) => this.log.flush(() => r()));
  }
}

/**
 * Answers a request the HTTP parser rejected (bad headers, smuggling attempts, header timeouts) on
 * either port: a plain 4xx with the SPEC's JSON error and request id, and a closed socket.
 */
function answerMalformed(err: Error, socket: Duplex): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const code = (err as { code?: string }).code;
  const status = code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  // SPEC 10: every error carries a request_id, also in x-airlock-request-id (parser errors included).
  const requestId = randomUUID();
  const body = errorBody('bad_request', `malformed HTTP request (${code ?? 'parse error'})`, requestId);
  socket.end(`HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-airlock-request-id: ${requestId}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`);
}
