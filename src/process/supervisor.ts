/**
 * Keeps a local child process running: started with the gateway, restarted with exponential
 * backoff when it dies, stopped (TERM, then KILL) on shutdown. Its output goes to the log.
 *
 * The process runs under a launcher (launcher.ts) that puts it in a process group of its own and
 * stops that whole group — what the service started included — when the gateway goes, even by
 * `kill -9`. A {@link ServicePidFile} lets the next start stop what a dead launcher left behind.
 */
import { getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../telemetry/logger.js';
import { signalGroup } from './group.js';
import type { LaunchReport, LaunchSpec } from './launcher.js';
import type { ServicePidFile } from './pidfile.js';

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
}

const MAX_BACKOFF_MS = 30_000;
const LAUNCHER = fileURLToPath(new URL('./launcher.js', import.meta.url));
/** See launcher.ts: process groups exist everywhere but on Windows. */
const GROUPS = process.platform !== 'win32';

export class SupervisedProcess {
  private launcher: ChildProcess | undefined;
  /** Settles when the current launcher has exited and its end has been handled. */
  private finished: Promise<void> = Promise.resolve();
  private servicePid: number | undefined;
  private stopping = false;
  private restarts = 0;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;

  constructor(
    readonly spec: ProcessSpec,
    private readonly log: Logger,
    private readonly pidFile?: ServicePidFile,
    private readonly graceMs = 3000,
  ) {}

  /** The service's process (its process group's leader), while it runs. */
  get pid(): number | undefined {
    return this.servicePid;
  }

  start(): void {
    if (this.stopping) return;
    const { spec } = this;
    this.startedAt = Date.now();
    // A minimal environment plus the configured one, as for MCP stdio servers: the gateway's own
    // (admin token, provider keys, anything its operator exported) is not the service's to read.
    // It travels over the IPC channel, not in argv, which any local user can read with ps.
    const launch: LaunchSpec = { command: spec.command, args: spec.args, env: { ...getDefaultEnvironment(), ...spec.env }, cwd: spec.cwd, graceMs: this.graceMs };
    // Detached, so that a Ctrl-C at the gateway's terminal reaches the gateway only, which then
    // drains before it stops the service (the service's requests in flight are part of the drain).
    const launcher = spawn(process.execPath, [LAUNCHER], { env: {}, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: GROUPS, windowsHide: true });
    this.launcher = launcher;
    let servicePid: number | undefined;
    let couldNotStart = false;
    for (const s of [launcher.stdout, launcher.stderr]) {
      if (s) createInterface({ input: s }).on('line', (line) => this.log.debug({ process: spec.name, line }, 'process output'));
    }
    launcher.on('message', (m: LaunchReport) => {
      if ('spawned' in m) {
        servicePid = m.spawned;
        if (this.launcher === launcher) this.servicePid = servicePid;
        this.pidFile?.record(spec.name, servicePid, spec.command);
        this.log.info({ process: spec.name, pid: servicePid }, 'process started');
      } else {
        couldNotStart = true;
        this.log.error({ process: spec.name, err: m.error }, 'process could not start');
      }
    });
    // The end is handled once the process has exited *and* its channel has closed, so that every
    // report it sent (a failed start, above all) has been read.
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let disconnected = false;
    let finish!: () => void;
    this.finished = new Promise((r) => (finish = r));
    launcher.on('error', (e) => {
      this.log.error({ process: spec.name, err: e.message }, 'process launcher could not start');
      // No process, so no exit will follow: as with a command that cannot be started, no retry.
      if (launcher.pid === undefined) {
        if (this.launcher === launcher) this.launcher = undefined;
        finish();
      }
    });
    if (launcher.connected) launcher.send(launch, (e) => e && this.log.debug({ process: spec.name, err: e.message }, 'the launcher went before it got its orders'));
    const ended = () => {
      if (!exit || !disconnected) return;
      finish();
      const { code, signal } = exit;
      if (servicePid !== undefined) {
        // The launcher empties the group before it exits; if it was killed instead, this does it.
        if (GROUPS) signalGroup(servicePid, 'SIGKILL');
        this.pidFile?.forget(spec.name, servicePid);
      }
      if (this.launcher === launcher) {
        this.launcher = undefined;
        this.servicePid = undefined;
      }
      // As before the launcher: a command that cannot be started (not found, not executable) is reported once, not retried.
      if (this.stopping || couldNotStart) return;
      // A process that ran a while before dying starts its backoff over.
      if (Date.now() - this.startedAt > 60_000) this.restarts = 0;
      const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.restarts++);
      this.log.warn({ process: spec.name, code, signal, restartInMs: delay }, 'process exited; restarting');
      this.timer = setTimeout(() => this.start(), delay);
    };
    launcher.once('exit', (code, signal) => {
      exit = { code, signal };
      ended();
      // The channel ends with the process; should it not (an fd held elsewhere), do not wait forever.
      if (!disconnected) setTimeout(() => launcher.connected && launcher.disconnect(), 1000);
    });
    launcher.once('disconnect', () => {
      disconnected = true;
      ended();
    });
  }

  /** Stops it for good (its whole process group); resolves when it has exited. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const launcher = this.launcher;
    if (!launcher) return;
    const servicePid = this.servicePid;
    // The launcher TERMs the group and KILLs it after graceMs; this is for a launcher that hangs.
    const kill = setTimeout(() => {
      if (servicePid !== undefined && GROUPS) signalGroup(servicePid, 'SIGKILL');
      launcher.kill('SIGKILL');
    }, this.graceMs + 2000);
    if (launcher.exitCode === null && launcher.signalCode === null) launcher.kill('SIGTERM');
    await this.finished;
    clearTimeout(kill);
  }
}
