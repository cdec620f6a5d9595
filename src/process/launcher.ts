/**
 * The small process between the gateway and one supervised service: it starts the service in a
 * process group of its own and makes sure that group does not outlive the gateway, even when the
 * gateway is killed with `kill -9` (which no handler in the gateway can see).
 *
 * Why a launcher and not `setpriv --pdeathsig`: a parent-death signal reaches only the process
 * that asked for it, not the processes a service starts itself (a shell script that starts a
 * server leaves the server running); it is cleared when a setuid program is executed; and it is
 * Linux-only and needs util-linux. The launcher instead holds the IPC channel to the gateway: the
 * kernel closes the gateway's end whatever way the gateway dies, the launcher sees the channel
 * end, and signals the service's whole process group (TERM, then KILL after the grace period).
 * Node is certainly installed (it runs the gateway), so this works wherever the gateway does.
 *
 * Protocol (over the IPC channel the gateway opens as fd 3):
 * - gateway → launcher, once: a {@link LaunchSpec};
 * - launcher → gateway: `{ spawned: pid }` once the service runs, or `{ error }` if it could not
 *   be started (the launcher then exits with code 127);
 * - SIGTERM (or SIGINT/SIGHUP) to the launcher, or the channel ending: stop the service.
 * When the service's first process exits, whatever it left in its group is stopped too, and the
 * launcher exits the way that process did (same code, or same signal), so that the gateway can
 * report it.
 *
 * The launcher runs with an empty environment (the gateway's is not the service's to read, and a
 * service's NODE_OPTIONS must not apply to the launcher); the service's comes in the spec.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { groupRuns, signalGroup } from './group.js';

/** What to run, sent by the gateway as the channel's first message. */
export interface LaunchSpec {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** How long the service's group has between SIGTERM and SIGKILL. */
  graceMs: number;
}

/** What the launcher tells the gateway. */
export type LaunchReport = { spawned: number } | { error: string };

/** Process groups (and so `kill(-pgid)`) exist everywhere but on Windows, where only the service's first process is stopped. */
const GROUPS = process.platform !== 'win32';
/** After SIGKILL, how long to wait for the group to be gone. */
const AFTER_KILL_MS = 1000;

let spec: LaunchSpec | undefined;
let service: ChildProcess | undefined;
/** When the service's group gets SIGKILL; set once stopping began. */
let killAt: number | undefined;
let exiting = false;

function report(r: LaunchReport, then?: () => void): void {
  if (!process.connected) return then?.();
  process.send!(r, undefined, {}, () => then?.());
}

/** Sends `signal` to the service's process group (on Windows, to the service's process). */
function signalService(signal: NodeJS.Signals): void {
  const pid = service?.pid;
  if (pid === undefined) return;
  if (GROUPS) signalGroup(pid, signal);
  else if (service!.exitCode === null && service!.signalCode === null) service!.kill(signal);
}

function serviceRuns(): boolean {
  const pid = service?.pid;
  if (pid === undefined) return false;
  return GROUPS ? groupRuns(pid) : service!.exitCode === null && service!.signalCode === null;
}

/** TERM now, KILL after the grace period (counted once, from the first request to stop). */
function terminate(): void {
  if (killAt !== undefined) return;
  const graceMs = spec?.graceMs ?? 3000;
  killAt = Date.now() + graceMs;
  signalService('SIGTERM');
  // Whether or not the service's first process has exited by then (it may ignore SIGTERM).
  setTimeout(() => signalService('SIGKILL'), graceMs).unref();
}

/** Resolves when nothing runs in the service's group any more (KILLed once the grace period is over). */
async function groupGone(): Promise<void> {
  // Something that outlives SIGKILL (stuck in the kernel) is past waiting for.
  while (serviceRuns() && Date.now() < killAt! + AFTER_KILL_MS) await new Promise((r) => setTimeout(r, 50));
}

/** Ends the launcher the way the service ended, so the gateway's log says how it ended. */
function exitLike(code: number | null, signal: NodeJS.Signals | null): void {
  if (signal) {
    process.removeAllListeners(signal);
    try {
      process.kill(process.pid, signal);
    } catch {
      // not a signal this platform can raise
    }
    // Signals Node ignores (SIGPIPE) do not end it: the shell's convention instead.
    setTimeout(() => process.exit(128 + (constants.signals[signal] ?? 0)), 100);
    return;
  }
  process.exit(code ?? 1);
}

function stop(): void {
  if (!service) {
    // Asked to stop before anything was started: nothing to wait for.
    if (!exiting) process.exit(0);
    return;
  }
  terminate();
}

function launch(s: LaunchSpec): void {
  if (spec) return;
  spec = s;
  // Detached: a new session and process group led by the service, holding everything it starts
  // (unless a child leaves on purpose, with setsid). Its output goes straight to the gateway's pipes.
  const failed = (e: unknown) => {
    exiting = true;
    report({ error: e instanceof Error ? e.message : String(e) }, () => process.exit(127));
  };
  let child: ChildProcess;
  try {
    child = spawn(s.command, s.args, { cwd: s.cwd, env: s.env, stdio: ['ignore', 'inherit', 'inherit'], detached: GROUPS, windowsHide: true });
  } catch (e) {
    return failed(e); // arguments spawn refuses outright (a NUL byte in the command, say)
  }
  service = child;
  child.once('spawn', () => report({ spawned: child.pid! }));
  child.on('error', (e) => {
    // Only a failed spawn matters: there is no process then, and no 'exit' follows.
    if (child.pid === undefined) failed(e);
  });
  child.once('exit', (code, signal) => {
    exiting = true;
    // The service is one unit: a group member left behind would hold its port against the next start.
    terminate();
    void groupGone().then(() => exitLike(code, signal));
  });
}

process.once('message', (m) => launch(m as LaunchSpec));
// The gateway is gone, however it went: the service must go too.
process.once('disconnect', stop);
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, stop);
