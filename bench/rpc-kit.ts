/**
 * What the JSON-RPC scenarios (A2A, MCP) share: a closed-loop POST load generator, the child
 * processes they start, and what /proc says about them.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';
import { benchCpuMs, machineBusyMs, memMb, startNode as startChild, type Child } from './procs.js';

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
// Child processes: the bench's one kit (procs.ts), so that these children are stopped by the
// watchdog and on signals too.

export { cpuMs, stop, type Child } from './procs.js';

/** Starts `node <args>` from the repository root; resolves with the first group of `ready` in its stdout. */
export function startNode(name: string, args: string[], ready: RegExp, nodeFlags: string[] = []): Promise<{ child: Child; match: string }> {
  return startChild(name, args, ready, { cwd: ROOT, nodeFlags });
}

/** Peak resident set size (VmHWM) in MB. */
export function peakRssMb(pid: number): number {
  return memMb(pid).peak;
}

/** Waits (at most `maxS`) for a second in which processes other than the bench use under 15% of a core. */
export async function quiet(maxS = 30): Promise<void> {
  const deadline = Date.now() + maxS * 1000;
  while (Date.now() < deadline) {
    const m0 = machineBusyMs();
    const b0 = benchCpuMs();
    await new Promise((r) => setTimeout(r, 1000));
    if (machineBusyMs() - m0 - (benchCpuMs() - b0) < 150) return;
  }
}

export async function sendOnce(url: string, headers: Record<string, string>, body: string, label: string): Promise<Record<string, unknown>> {
  const r = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await r.body.text();
  const json = JSON.parse(text) as Record<string, unknown>;
  if (r.statusCode !== 200 || json['result'] === undefined) throw new Error(`${label} to ${url} got ${r.statusCode} ${text.slice(0, 300)}`);
  return json;
}
