/**
 * The MCP scenario of `npm run bench`: a `tools/call` straight to a Streamable HTTP MCP server built
 * with the official SDK, and the same call through airlock's `/mcp/<server>` front door, in one run,
 * on loopback. Both are stateless 2026-07-28 requests (no session to set up per call).
 *
 *   load generator (this process) ─► [direct]  SDK MCP server                 (child process)
 *                                 ─► [airlock] bin/airlock ─► the same server  (child process)
 *
 * The difference between the rows is airlock's own cost: authentication, the rules, limits and
 * guards, the write-ahead audit record, the JSON-RPC handling and the call over airlock's shared SDK
 * client connection. Targets: <= 1 ms added at p50 (c=1), >= 500 calls/s through airlock (c=50).
 *
 * `mcpScenario()` is what bench/run.ts calls; `node dist/bench/mcp.js` runs it alone, and
 * `node dist/bench/mcp.js --upstream` is the MCP server's process.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Pool, request } from 'undici';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

/** The call both targets get: a 2026-07-28 tools/call of `lookup` with a short argument. */
const SEND = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/call',
  params: { name: 'lookup', arguments: { word: 'egress' }, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'bench', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} } },
});
const MCP_HEADERS = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'lookup' };

export interface McpScenarioOptions {
  warmupS?: number;
  /** c=50 throughput run, seconds. */
  durationS?: number;
  /** c=1 latency run, seconds. */
  latencyS?: number;
  log?: (s: string) => void;
}

export interface McpRow {
  target: 'direct' | 'airlock';
  connections: number;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  /** CPU time of the airlock process per request (µs); undefined for the direct call. */
  cpuUsPerReq: number | undefined;
}

export interface McpResult {
  rows: McpRow[];
  /** airlock p50 minus direct p50 at c=1, in ms. */
  addedP50Ms: number;
  met: boolean;
  airlockPeakRssMb: number;
}

// ---------------------------------------------------------------------------------------------
// The fake remote agent (child process).

async function runUpstream(): Promise<void> {
  const { McpServer, createMcpHandler } = await import('@modelcontextprotocol/server');
  const { toNodeHandler } = await import('@modelcontextprotocol/node');
  const z = await import('zod/v4');
  const factory = () => {
    const s = new McpServer({ name: 'bench', version: '1.0.0' });
    s.registerTool('lookup', { description: 'Looks a word up', inputSchema: z.object({ word: z.string() }) }, async ({ word }) => ({ content: [{ type: 'text', text: `${word}: leaving a network` }] }));
    return s;
  };
  const handler = toNodeHandler(createMcpHandler(factory));
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => void handler(req as Parameters<typeof handler>[0], res));
  server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT=${(server.address() as AddressInfo).port}\n`));
  process.on('SIGTERM', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// The scenario.

function key(): string {
  const A = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  let s = 'alk_';
  for (const b of randomBytes(40)) s += A[b % 62];
  return s;
}

/**
 * POST load: `connections` callers, each sending the next request when the last one answered, for
 * `duration` seconds, over one keep-alive undici pool per run. Latencies are kept as float ms.
 */
async function post(url: string, headers: Record<string, string>, connections: number, duration: number): Promise<{ requests: number; rps: number; p50: number; p99: number; failures: number }> {
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
        const r = await pool.request({ path: u.pathname, method: 'POST', headers: h, body: SEND });
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

interface Child {
  proc: ChildProcess;
  pid: number;
}

/** Starts `node <args>`; resolves with the first group of `ready` in its stdout. */
function startNode(name: string, args: string[], ready: RegExp, nodeFlags: string[] = []): Promise<{ child: Child; match: string }> {
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
function stop(c: Child, graceMs = 15_000): Promise<void> {
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
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** Peak resident set size (VmHWM) in MB. */
function peakRssMb(pid: number): number {
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

/** CPU ms the whole machine spent busy. */
function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3]! - f[4]!) * 10;
}

/** Waits (at most `maxS`) for a second in which other processes use under 15% of a core. */
async function quiet(own: Child[], maxS = 30): Promise<void> {
  const mine = () => own.reduce((a, c) => a + cpuMs(c.pid), 0) + (process.cpuUsage().user + process.cpuUsage().system) / 1000;
  const deadline = Date.now() + maxS * 1000;
  while (Date.now() < deadline) {
    const m0 = machineBusyMs();
    const b0 = mine();
    await new Promise((r) => setTimeout(r, 1000));
    if (machineBusyMs() - m0 - (mine() - b0) < 150) return;
  }
}

async function sendOnce(url: string, headers: Record<string, string>): Promise<Record<string, unknown>> {
  const r = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: SEND });
  const text = await r.body.text();
  const json = JSON.parse(text) as Record<string, unknown>;
  if (r.statusCode !== 200 || json['result'] === undefined) throw new Error(`mcp bench: sanity tools/call to ${url} got ${r.statusCode} ${text.slice(0, 300)}`);
  return json;
}

/** Runs the MCP tools/call comparison and prints its table; returns the numbers. */
export async function mcpScenario(opts: McpScenarioOptions = {}): Promise<McpResult> {
  const warmupS = opts.warmupS ?? 2;
  const durationS = opts.durationS ?? 5;
  const latencyS = opts.latencyS ?? 5;
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-mcp-'));
  const started: Child[] = [];
  try {
    const up = await startNode('mcp server', [SELF, '--upstream'], /PORT=(\d+)/);
    started.push(up.child);
    const upstream = `http://127.0.0.1:${up.match}`;
    const k = key();
    const config = join(dir, 'airlock.yaml');
    writeFileSync(
      config,
      `# generated by bench/mcp.ts
data: ${JSON.stringify(join(dir, 'data'))}
agents:
  bench-agent:
    keys: ["${k}"]
    limits: { requests: 100000000/min, concurrency: 10000 }
rules:
  - name: bench-lookups
    agents: [bench-agent]
    allow: ["mcp: bench/lookup"]
  - name: no-writes
    deny: ["mcp: bench/write_*"]
mcp:
  pinning: strict
  servers:
    bench: { url: "${upstream}/mcp" }
`,
    );
    const gw = await startNode('airlock', [join(ROOT, 'bin/airlock'), 'start', '-c', config, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], /airlock: agent port listening on (http:\/\/\S+)/, (process.env.BENCH_AIRLOCK_NODE_FLAGS ?? '').split(' ').filter(Boolean));
    started.push(gw.child);
    const auth = { authorization: `Bearer ${k}` };
    const targets = [
      { name: 'direct' as const, url: `${upstream}/mcp`, headers: MCP_HEADERS, proc: undefined as Child | undefined },
      { name: 'airlock' as const, url: `${gw.match}/mcp/bench`, headers: { ...auth, ...MCP_HEADERS }, proc: gw.child },
    ];
    // airlock connects to the server in the background; wait for its catalogue.
    for (let i = 0; i < 100; i++) {
      const r = await request(targets[1]!.url, { method: 'POST', headers: { 'content-type': 'application/json', ...targets[1]!.headers }, body: SEND });
      const text = await r.body.text();
      if (r.statusCode === 200 && !text.includes('isError')) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const direct = await sendOnce(targets[0]!.url, targets[0]!.headers);
    const via = await sendOnce(targets[1]!.url, targets[1]!.headers);
    if (JSON.stringify(Object.keys(direct).sort()) !== JSON.stringify(Object.keys(via).sort()) || JSON.stringify((direct["result"] as { content?: unknown }).content) !== JSON.stringify((via["result"] as { content?: unknown }).content)) throw new Error(`mcp bench: airlock answered differently from the direct call: ${JSON.stringify(via)} vs ${JSON.stringify(direct)}`);

    const rows: McpRow[] = [];
    for (const t of targets) {
      await quiet(started);
      log(`  mcp ${t.name}: warm-up ${warmupS}s at c=50`);
      const w = await post(t.url, t.headers, 50, warmupS);
      if (w.failures > 0) throw new Error(`mcp ${t.name}: ${w.failures} failed requests in the warm-up`);
      for (const [c, d] of [[50, durationS], [1, latencyS]] as const) {
        log(`  mcp ${t.name}: c=${c} for ${d}s`);
        const cpu0 = t.proc ? cpuMs(t.proc.pid) : 0;
        const r = await post(t.url, t.headers, c, d);
        if (r.failures > 0) throw new Error(`mcp ${t.name}: ${r.failures} failed requests at c=${c}`);
        rows.push({ target: t.name, connections: c, requests: r.requests, rps: r.rps, p50: r.p50, p99: r.p99, cpuUsPerReq: t.proc ? ((cpuMs(t.proc.pid) - cpu0) * 1000) / r.requests : undefined });
      }
    }
    const peak = peakRssMb(gw.child.pid);
    const at = (t: string, c: number) => rows.find((r) => r.target === t && r.connections === c)!;
    const added = at('airlock', 1).p50 - at('direct', 1).p50;
    const met = added <= 1 && at('airlock', 50).rps >= 500;
    const f = (n: number | undefined, d: number) => (n === undefined || Number.isNaN(n) ? '—' : n.toFixed(d));
    console.log(`\nMCP tools/call (Streamable HTTP, 2026-07-28): direct to the SDK server vs through airlock /mcp/bench
| target  | conns |  req/s | p50 ms | p99 ms | airlock CPU µs/req |
|---------|------:|-------:|-------:|-------:|-------------------:|
${rows.map((r) => `| ${r.target.padEnd(7)} | ${String(r.connections).padStart(5)} | ${r.rps.toFixed(0).padStart(6)} | ${f(r.p50, 3).padStart(6)} | ${f(r.p99, 3).padStart(6)} | ${f(r.cpuUsPerReq, 1).padStart(18)} |`).join('\n')}

mcp: added p50 latency at c=1, airlock over direct: ${(added * 1000).toFixed(0)} µs   (targets <= 1000 µs and >= 500 calls/s: ${met ? 'met' : 'MISSED'})
mcp: throughput at c=50, airlock / direct: ${(at('airlock', 50).rps / at('direct', 50).rps).toFixed(2)}x; airlock peak RSS ${peak.toFixed(0)} MB`);
    return { rows, addedP50Ms: added, met, airlockPeakRssMb: peak };
  } finally {
    for (const c of started.reverse()) await stop(c);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--upstream')) void runUpstream();
  else
    mcpScenario().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error(`mcp bench failed: ${e instanceof Error ? e.message : String(e)}`);
        process.exit(1);
      },
    );
}
