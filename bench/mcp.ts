/**
 * The MCP scenario of `npm run bench`: a `tools/call` straight to a Streamable HTTP MCP server built
 * with the official SDK, and the same call through airlock's `/mcp/<server>` front door, in one run,
 * on loopback. Both are stateless 2026-07-28 requests (no session to set up per call).
 *
 *   load generator (this process) ─► [direct]  SDK MCP server                 (child process)
 *                                 ─► [airlock] bin/airlock ─► the same server  (child process)
 *
 * The difference between the rows is airlock's own cost: authentication, the rules, limits and
 * guards, the write-ahead audit record, the JSON-RPC handling and the upstream call (one undici POST
 * on the connection airlock's SDK client negotiated; src/protocols/mcp/direct.ts). Targets: <= 1 ms added at p50 (c=1, judged on back-to-back rounds), >= 500 calls/s through airlock (c=50).
 *
 * `mcpScenario()` is what bench/run.ts calls; `node dist/bench/mcp.js` runs it alone, and
 * `node dist/bench/mcp.js --upstream` is the MCP server's process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { cpuMs, key, peakRssMb, post, quiet, sendOnce, startNode, stop, type Child } from './rpc-kit.js';

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
  /**
   * Back-to-back c=1 rounds (direct, then airlock, 3 s each) the latency target is judged on, by
   * their median; 0 judges the table. Default: BENCH_PAIRED_ROUNDS, else 3.
   */
  pairedRounds?: number;
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
  /** airlock p50 minus direct p50 at c=1, in ms: the median of the paired rounds (the table's when there are none). */
  addedP50Ms: number;
  /** The paired rounds' added p50s, in ms. */
  roundsAddedMs: number[];
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

/** Runs the MCP tools/call comparison and prints its table; returns the numbers. */
export async function mcpScenario(opts: McpScenarioOptions = {}): Promise<McpResult> {
  const warmupS = opts.warmupS ?? 2;
  const durationS = opts.durationS ?? 5;
  const latencyS = opts.latencyS ?? 5;
  const pairedRounds = opts.pairedRounds ?? Number(process.env['BENCH_PAIRED_ROUNDS'] ?? 3);
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
    const direct = await sendOnce(targets[0]!.url, targets[0]!.headers, SEND, 'mcp bench: sanity tools/call');
    const via = await sendOnce(targets[1]!.url, targets[1]!.headers, SEND, 'mcp bench: sanity tools/call');
    if (JSON.stringify(Object.keys(direct).sort()) !== JSON.stringify(Object.keys(via).sort()) || JSON.stringify((direct["result"] as { content?: unknown }).content) !== JSON.stringify((via["result"] as { content?: unknown }).content)) throw new Error(`mcp bench: airlock answered differently from the direct call: ${JSON.stringify(via)} vs ${JSON.stringify(direct)}`);

    const rows: McpRow[] = [];
    for (const t of targets) {
      await quiet();
      log(`  mcp ${t.name}: warm-up ${warmupS}s at c=50`);
      const w = await post(t.url, t.headers, SEND, 50, warmupS);
      if (w.failures > 0) throw new Error(`mcp ${t.name}: ${w.failures} failed requests in the warm-up`);
      for (const [c, d] of [[50, durationS], [1, latencyS]] as const) {
        log(`  mcp ${t.name}: c=${c} for ${d}s`);
        const cpu0 = t.proc ? cpuMs(t.proc.pid) : 0;
        const r = await post(t.url, t.headers, SEND, c, d);
        if (r.failures > 0) throw new Error(`mcp ${t.name}: ${r.failures} failed requests at c=${c}`);
        rows.push({ target: t.name, connections: c, requests: r.requests, rps: r.rps, p50: r.p50, p99: r.p99, cpuUsPerReq: t.proc ? ((cpuMs(t.proc.pid) - cpu0) * 1000) / r.requests : undefined });
      }
    }
    // The table's two c=1 runs are ~10 s apart, and this VM's speed drifts by more than the
    // target within that (the SDK server alone took 0.5 to 1.9 ms a call at c=1 across runs): the
    // target is judged on back-to-back rounds, as the /http one is (bench/run.ts).
    const rounds: number[] = [];
    for (let i = 1; i <= pairedRounds; i++) {
      log(`  mcp paired round ${i}/${pairedRounds}: direct, then airlock, c=1 for 3s each`);
      const [d, a] = [await post(targets[0]!.url, targets[0]!.headers, SEND, 1, 3), await post(targets[1]!.url, targets[1]!.headers, SEND, 1, 3)];
      if (d.failures + a.failures > 0) throw new Error(`mcp paired round ${i}: ${d.failures + a.failures} failed requests`);
      rounds.push(a.p50 - d.p50);
    }
    const peak = peakRssMb(gw.child.pid);
    const at = (t: string, c: number) => rows.find((r) => r.target === t && r.connections === c)!;
    const tableAdded = at('airlock', 1).p50 - at('direct', 1).p50;
    const added = rounds.length > 0 ? [...rounds].sort((x, y) => x - y)[Math.floor(rounds.length / 2)]! : tableAdded;
    const met = added <= 1 && at('airlock', 50).rps >= 500;
    const f = (n: number | undefined, d: number) => (n === undefined || Number.isNaN(n) ? '—' : n.toFixed(d));
    console.log(`\nMCP tools/call (Streamable HTTP, 2026-07-28): direct to the SDK server vs through airlock /mcp/bench
| target  | conns |  req/s | p50 ms | p99 ms | airlock CPU µs/req |
|---------|------:|-------:|-------:|-------:|-------------------:|
${rows.map((r) => `| ${r.target.padEnd(7)} | ${String(r.connections).padStart(5)} | ${r.rps.toFixed(0).padStart(6)} | ${f(r.p50, 3).padStart(6)} | ${f(r.p99, 3).padStart(6)} | ${f(r.cpuUsPerReq, 1).padStart(18)} |`).join('\n')}

${rounds.length > 0 ? `mcp: added p50 at c=1 in the table: ${(tableAdded * 1000).toFixed(0)} µs; in ${rounds.length} back-to-back rounds: ${rounds.map((r) => (r * 1000).toFixed(0)).join(', ')} µs
` : ''}mcp: added p50 latency at c=1, airlock over direct${rounds.length > 0 ? ' (median round)' : ''}: ${(added * 1000).toFixed(0)} µs   (targets <= 1000 µs and >= 500 calls/s: ${met ? 'met' : 'MISSED'})
mcp: throughput at c=50, airlock / direct: ${(at('airlock', 50).rps / at('direct', 50).rps).toFixed(2)}x; airlock peak RSS ${peak.toFixed(0)} MB`);
    return { rows, addedP50Ms: added, roundsAddedMs: rounds, met, airlockPeakRssMb: peak };
  } finally {
    for (const c of started.reverse()) await stop(c, 15_000);
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
