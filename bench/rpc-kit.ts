/**
 * What the JSON-RPC scenarios (A2A, MCP) share: a closed-loop POST load generator, the child
 * processes they start, and what /proc says about them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function key(): string {
  const A = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  let s = 'alk_';
  for (const b of randomBytes(40)) s += A[b % 62];
  return s;
}

/**
 * POST load: `connections` callers, each sending the next request when the last one answered, for
 * `duration` seconds, over one keep-alive undici pool per run. Latencies are kept as float ms.
 */
export async function post(url: string, headers: Record<string, string>, body: string, connections: number, duration: number): Promise<{ requests: number; rps: number; p50: number; p99: number; failures: number }> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const h = { 'content-type': 'application/json', ...headers };
  const times: number[] = [];
  let failures = 0;
  const t0 = performance.now();
  const until = t0 + duration * 1000;
  const caller = async () => {
    while (performance.now() < until) {
      const s = performance.now();
      try {
        const r = await pool.request({ path: u.pathname, method: 'POST', headers: h, body });
        await r.body.dump();
        if (r.statusCode >= 200 && r.statusCode < 300) times.push(performance.now() - s);
        else failures++;
      } catch {
        failures++;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, caller));
  const seconds = (performance.now() - t0) / 1000;
  await pool.close();
  times.sort((a, b) => a - b);
  const pct = (p: number) => (times.length === 0 ? NaN : times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))]!);
  return { requests: times.length, rps: times.length / seconds, p50: pct(50), p99: pct(99), failures };
}

// ---------------------------------------------------------------------------------------------
// Child processes and what /proc says about them.

export interface Child {
  proc: ChildProcess;
  pid: number;
}

/** Starts `node <args>`; resolves with the first group of `ready` in its stdout. */
export function startNode(name: string, args: string[], ready: RegExp, nodeFlags: string[] = []): Promise<{ child: Child; match: string }> {
  const proc = spawn(process.execPath, [...nodeFlags, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'production' } });
  const child: Child = { proc, pid: proc.pid ?? -1 };
  let err = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err = (err + d).slice(-4000)));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 15 s\n${err}`)), 15_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready\n${err}`));
    });
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => {
      out += d;
      const m = ready.exec(out);
      if (!m) return;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      proc.stdout!.removeAllListeners('data');
      proc.stdout!.resume();
      resolve({ child, match: m[1]! });
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export function stop(c: Child, graceMs = 15_000): Promise<void> {
  const p = c.proc;
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

/** User + system CPU ms of a process (/proc/<pid>/stat; 100 ticks per second on Linux). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** Peak resident set size (VmHWM) in MB. */
export function peakRssMb(pid: number): number {
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

/** CPU ms the whole machine spent busy. */
export function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3]! - f[4]!) * 10;
}

/** Waits (at most `maxS`) for a second in which other processes use under 15% of a core. */
export async function quiet(own: Child[], maxS = 30): Promise<void> {
  const mine = () => own.reduce((a, c) => a + cpuMs(c.pid), 0) + (process.cpuUsage().user + process.cpuUsage().system) / 1000;
  const deadline = Date.now() + maxS * 1000;
  while (Date.now() < deadline) {
    const m0 = machineBusyMs();
    const b0 = mine();
    await new Promise((r) => setTimeout(r, 1000));
    if (machineBusyMs() - m0 - (mine() - b0) < 150) return;
  }
}

export async function sendOnce(url: string, headers: Record<string, string>, body: string, label: string): Promise<Record<string, unknown>> {
  const r = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await r.body.text();
  const json = JSON.parse(text) as Record<string, unknown>;
  if (r.statusCode !== 200 || json['result'] === undefined) throw new Error(`${label} to ${url} got ${r.statusCode} ${text.slice(0, 300)}`);
  return json;
}
