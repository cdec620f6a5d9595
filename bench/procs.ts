/**
 * Child processes of the bench and what /proc says about them. Every child is registered so that
 * one call (also made on errors, signals and the watchdog) stops them all.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** The last lines the child wrote to stderr, for error reports. */
  stderrTail(): string;
}

const children = new Set<Child>();

/**
 * Starts `node <args>` and resolves with the first stdout match of `ready` (its first group), or
 * rejects when the child exits or `timeoutMs` passes first.
 */
export function startNode(name: string, args: string[], ready: RegExp, opts: { cwd?: string; timeoutMs?: number; nodeFlags?: string[] } = {}): Promise<{ child: Child; match: string }> {
  const proc = spawn(process.execPath, [...(opts.nodeFlags ?? []), ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'production' } });
  let err = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (s: string) => {
    err = (err + s).slice(-4000);
  });
  const child: Child = { name, proc, pid: proc.pid ?? -1, stderrTail: () => err };
  children.add(child);
  proc.on('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`${name} did not start within ${opts.timeoutMs ?? 15_000} ms`)), opts.timeoutMs ?? 15_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      reject(new Error(`${e.message}\n--- ${name} stderr ---\n${err}`));
    };
    proc.on('error', fail);
    proc.on('exit', (code, sig) => fail(new Error(`${name} exited (${code ?? sig}) before it was ready`)));
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (s: string) => {
      out += s;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        proc.on('exit', () => children.delete(child));
        out = '';
        resolve({ child, match: m[1]! });
      }
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
export function stop(child: Child, graceMs = 5000): Promise<void> {
  const p = child.proc;
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/** Stops every child still running, gracefully but bounded. */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stop(c)));
}

/** Last resort (process exit): SIGKILL whatever is left, synchronously. */
export function killAllNow(): void {
  for (const c of children) {
    try {
      c.proc.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** User + system CPU time of a process (all its threads), in ms, from /proc/<pid>/stat. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at field 3; utime is 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / ticksPerSecond();
}

/** Resident set size now and at its peak (VmRSS, VmHWM), in MB. */
export function memMb(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** CPU time used by the whole machine (all cores, everything but idle and iowait), in ms. */
export function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user nice system idle iowait irq softirq steal
  return ((total - f[3]! - f[4]!) * 1000) / ticksPerSecond();
}

/** CPU ms used so far by this process and every live child. */
export function benchCpuMs(): number {
  const own = process.cpuUsage();
  let ms = (own.user + own.system) / 1000;
  for (const c of children) {
    try {
      ms += cpuMs(c.pid);
    } catch {
      // exited meanwhile
    }
  }
  return ms;
}
