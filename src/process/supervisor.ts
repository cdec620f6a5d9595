/**
 * Keeps a local child process running: started with the gateway, restarted with exponential
 * backoff when it dies, stopped (TERM, then KILL) on shutdown. Its output goes to the log.
 */
import { getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../telemetry/logger.js';

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
}

const MAX_BACKOFF_MS = 30_000;

export class SupervisedProcess {
  private child: ChildProcess | undefined;
  private stopping = false;
  private restarts = 0;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;

  constructor(
    readonly spec: ProcessSpec,
    private readonly log: Logger,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (this.stopping) return;
    const { spec } = this;
    this.startedAt = Date.now();
    // A minimal environment plus the configured one, as for MCP stdio servers: the gateway's own
    // (admin token, provider keys, anything its operator exported) is not the service's to read.
    const child = spawn(spec.command, spec.args, { cwd: spec.cwd, env: { ...getDefaultEnvironment(), ...spec.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    for (const s of [child.stdout, child.stderr]) {
      if (s) createInterface({ input: s }).on('line', (line) => this.log.debug({ process: spec.name, line }, 'process output'));
    }
    child.on('error', (e) => this.log.error({ process: spec.name, err: e.message }, 'process could not start'));
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (this.stopping) return;
      // A process that ran a while before dying starts its backoff over.
      if (Date.now() - this.startedAt > 60_000) this.restarts = 0;
      const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.restarts++);
      this.log.warn({ process: spec.name, code, signal, restartInMs: delay }, 'process exited; restarting');
      this.timer = setTimeout(() => this.start(), delay);
    });
    this.log.info({ process: spec.name, pid: child.pid }, 'process started');
  }

  /** Stops it for good; resolves when it has exited. */
  async stop(graceMs = 3000): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}
