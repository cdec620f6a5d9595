/**
 * The A2A scenario of `npm run bench`: a JSON-RPC `SendMessage` (A2A 1.0) straight to a remote
 * agent, and the same call through airlock's `/a2a/<agent>` front door, in one run, on loopback.
 *
 *   load generator (this process) ─► [direct]  fake A2A agent            (child process)
 *                                 ─► [airlock] bin/airlock ─► the same agent (child process)
 *
 * The remote agent is a minimal node:http A2A server (a card, and a completed task for every
 * SendMessage), so the difference between the two rows is airlock's own cost: authentication, the
 * rules, limits and guards, the write-ahead audit record, the card lookup, the request relay and
 * the tap that reads the answer for the audit. Target: <= 1 ms added at p50 (c=1).
 *
 * `a2aScenario()` is what bench/run.ts calls; `node dist/bench/a2a.js` runs it alone, and
 * `node dist/bench/a2a.js --upstream` is the fake remote agent's process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cpuMs, key, peakRssMb, post, quiet, sendOnce, startNode, stop, type Child } from './rpc-kit.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

/** The call both targets get: A2A 1.0 JSON-RPC SendMessage with a short text message. */
const SEND = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'SendMessage',
  params: { message: { messageId: 'bench-message', role: 'ROLE_USER', parts: [{ text: 'find me a flight from Lisbon to Porto on Friday morning' }] } },
});

export interface A2AScenarioOptions {
  warmupS?: number;
  /** c=50 throughput run, seconds. */
  durationS?: number;
  /** c=1 latency run, seconds. */
  latencyS?: number;
  log?: (s: string) => void;
}

export interface A2ARow {
  target: 'direct' | 'airlock';
  connections: number;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  /** CPU time of the airlock process per request (µs); undefined for the direct call. */
  cpuUsPerReq: number | undefined;
}

export interface A2AResult {
  rows: A2ARow[];
  /** airlock p50 minus direct p50 at c=1, in ms. */
  addedP50Ms: number;
  met: boolean;
  airlockPeakRssMb: number;
}

// ---------------------------------------------------------------------------------------------
// The fake remote agent (child process).

function runUpstream(): void {
  let base = '';
  const task = (n: number) => ({
    task: {
      id: `task-${n}`,
      contextId: `ctx-${n}`,
      status: { state: 'TASK_STATE_COMPLETED', timestamp: '2026-01-01T00:00:00.000Z' },
      artifacts: [{ artifactId: 'a', name: 'answer', parts: [{ text: 'Flight TP1942, 07:40, EUR 89' }] }],
    },
  });
  let n = 0;
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/.well-known/agent-card.json') {
        const card = JSON.stringify({
          name: 'Bench travel agent',
          description: 'answers every message with a completed task',
          version: '1.0.0',
          supportedInterfaces: [{ url: `${base}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
          capabilities: { streaming: false },
          defaultInputModes: ['text'],
          defaultOutputModes: ['text'],
          skills: [],
        });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(card) });
        res.end(card);
        return;
      }
      if (req.method === 'POST' && req.url === '/a2a/jsonrpc') {
        let id: unknown = null;
        try {
          id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: unknown }).id ?? null;
        } catch {
          // answered below with id null
        }
        const out = JSON.stringify({ jsonrpc: '2.0', id, result: task(++n) });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
        res.end(out);
        return;
      }
      res.writeHead(404).end();
    });
  });
  server.listen(0, '127.0.0.1', () => {
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    process.stdout.write(`PORT=${(server.address() as AddressInfo).port}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// The scenario.

/** Runs the A2A SendMessage comparison and prints its table; returns the numbers. */
export async function a2aScenario(opts: A2AScenarioOptions = {}): Promise<A2AResult> {
  const warmupS = opts.warmupS ?? 2;
  const durationS = opts.durationS ?? 5;
  const latencyS = opts.latencyS ?? 5;
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-a2a-'));
  const started: Child[] = [];
  try {
    const up = await startNode('a2a agent', [SELF, '--upstream'], /PORT=(\d+)/);
    started.push(up.child);
    const upstream = `http://127.0.0.1:${up.match}`;
    const k = key();
    const config = join(dir, 'airlock.yaml');
    writeFileSync(
      config,
      `# generated by bench/a2a.ts
data: ${JSON.stringify(join(dir, 'data'))}
agents:
  bench-agent:
    keys: ["${k}"]
    limits: { requests: 100000000/min, concurrency: 10000 }
rules:
  - name: bench-sends
    agents: [bench-agent]
    allow: ["a2a: travel SendMessage", "a2a: travel GetTask"]
  - name: no-cancel
    deny: ["a2a: travel CancelTask"]
a2a:
  agents:
    travel: { url: "${upstream}", token: "bench-partner-token" }
`,
    );
    const gw = await startNode('airlock', [join(ROOT, 'bin/airlock'), 'start', '-c', config, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], /airlock: agent port listening on (http:\/\/\S+)/, (process.env.BENCH_AIRLOCK_NODE_FLAGS ?? '').split(' ').filter(Boolean));
    started.push(gw.child);
    const auth = { authorization: `Bearer ${k}` };
    const targets = [
      { name: 'direct' as const, url: `${upstream}/a2a/jsonrpc`, headers: { 'a2a-version': '1.0' }, proc: undefined as Child | undefined },
      { name: 'airlock' as const, url: `${gw.match}/a2a/travel`, headers: { ...auth, 'a2a-version': '1.0' }, proc: gw.child },
    ];
    const direct = await sendOnce(targets[0]!.url, targets[0]!.headers, SEND, 'a2a bench: sanity SendMessage');
    const via = await sendOnce(targets[1]!.url, targets[1]!.headers, SEND, 'a2a bench: sanity SendMessage');
    if (JSON.stringify(Object.keys(direct)) !== JSON.stringify(Object.keys(via))) throw new Error('a2a bench: airlock answered differently from the direct call');

    const rows: A2ARow[] = [];
    for (const t of targets) {
      await quiet();
      log(`  a2a ${t.name}: warm-up ${warmupS}s at c=50`);
      const w = await post(t.url, t.headers, SEND, 50, warmupS);
      if (w.failures > 0) throw new Error(`a2a ${t.name}: ${w.failures} failed requests in the warm-up`);
      for (const [c, d] of [[50, durationS], [1, latencyS]] as const) {
        log(`  a2a ${t.name}: c=${c} for ${d}s`);
        const cpu0 = t.proc ? cpuMs(t.proc.pid) : 0;
        const r = await post(t.url, t.headers, SEND, c, d);
        if (r.failures > 0) throw new Error(`a2a ${t.name}: ${r.failures} failed requests at c=${c}`);
        rows.push({ target: t.name, connections: c, requests: r.requests, rps: r.rps, p50: r.p50, p99: r.p99, cpuUsPerReq: t.proc ? ((cpuMs(t.proc.pid) - cpu0) * 1000) / r.requests : undefined });
      }
    }
    const peak = peakRssMb(gw.child.pid);
    const at = (t: string, c: number) => rows.find((r) => r.target === t && r.connections === c)!;
    const added = at('airlock', 1).p50 - at('direct', 1).p50;
    const met = added <= 1;
    const f = (n: number | undefined, d: number) => (n === undefined || Number.isNaN(n) ? '—' : n.toFixed(d));
    console.log(`\nA2A SendMessage (JSON-RPC, A2A 1.0): direct to the remote agent vs through airlock /a2a/travel
| target  | conns |  req/s | p50 ms | p99 ms | airlock CPU µs/req |
|---------|------:|-------:|-------:|-------:|-------------------:|
${rows.map((r) => `| ${r.target.padEnd(7)} | ${String(r.connections).padStart(5)} | ${r.rps.toFixed(0).padStart(6)} | ${f(r.p50, 3).padStart(6)} | ${f(r.p99, 3).padStart(6)} | ${f(r.cpuUsPerReq, 1).padStart(18)} |`).join('\n')}

a2a: added p50 latency at c=1, airlock over direct: ${(added * 1000).toFixed(0)} µs   (target <= 1000 µs: ${met ? 'met' : 'MISSED'})
a2a: throughput at c=50, airlock / direct: ${(at('airlock', 50).rps / at('direct', 50).rps).toFixed(2)}x; airlock peak RSS ${peak.toFixed(0)} MB`);
    return { rows, addedP50Ms: added, met, airlockPeakRssMb: peak };
  } finally {
    for (const c of started.reverse()) await stop(c, 15_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--upstream')) runUpstream();
  else
    a2aScenario().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error(`a2a bench failed: ${e instanceof Error ? e.message : String(e)}`);
        process.exit(1);
      },
    );
}
