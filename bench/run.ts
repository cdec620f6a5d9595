/**
 * `npm run bench`: airlock against a direct call and a bare Node pass-through proxy, in one run,
 * on loopback only.
 *
 *   load generator (this process, autocannon) ─► [direct]  fake upstream        (child process)
 *                                             ─► [bare]    bare proxy   ─► upstream (child process)
 *                                             ─► [bare (pipeline)] the same, relaying with stream.pipeline
 *                                             ─► [airlock] bin/airlock  ─► upstream (child process)
 *
 * Each target gets a warm-up, a c=50 throughput run and a c=1 latency run. Printed: requests/s,
 * p50/p99 latency, CPU time per request and peak RSS of the proxy process, and the ratios the
 * targets are set on (airlock ≥ 0.6× bare rps at c=50; ≤ 0.3 ms added p50 at c=1 over direct).
 * The targets are judged against the faster bare proxy (the real floor); the `stream.pipeline`
 * variant is shown because that one API choice moves the floor itself by about 2× on Node 20.
 *
 * `--soak` (or BENCH_SOAK=1) then drives 1,000,000 requests through airlock and samples its RSS
 * every 100k; `--soak-only` skips the comparison. Env knobs: BENCH_DURATION (s, c=50 run, default
 * 10), BENCH_LATENCY_DURATION (s, c=1 run, default 5), BENCH_WARMUP (s, default 2),
 * BENCH_SOAK_REQUESTS (default 1000000), BENCH_ONLY (e.g. `airlock`: one target, no ratios),
 * BENCH_QUIET_WAIT (s to wait for other processes to go quiet before each target, default 60),
 * BENCH_ATTEMPTS (measured runs per phase when others load the machine, default 3),
 * BENCH_PAIRED_ROUNDS (back-to-back rounds the targets are judged on, default 3; 0: judge the table),
 * BENCH_AIRLOCK_NODE_FLAGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the gateway),
 * BENCH_REDIS (a Redis URL: airlock counts its limits in that Redis, as a cluster member, under a
 * fresh prefix), BENCH_POSTGRES (a PostgreSQL URL: airlock ships its audit records there, see
 * bench/postgres.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { a2aScenario } from './a2a.js';
import { runLlmBench } from './llm.js';
import { load, type LoadResult } from './load.js';
import { mcpScenario } from './mcp.js';
import { postgresReport, postgresStoreEntry } from './postgres.js';
import { benchCpuMs, cpuMs, killAllNow, machineBusyMs, memMb, startNode, stop, stopAll, type Child } from './procs.js';

const argv = process.argv.slice(2);
const SOAK = argv.includes('--soak') || argv.includes('--soak-only') || process.env.BENCH_SOAK === '1';
const COMPARE = !argv.includes('--soak-only');
const envNum = (k: string, d: number) => (process.env[k] ? Number(process.env[k]) : d);
const DURATION_S = envNum('BENCH_DURATION', 10);
const LATENCY_S = envNum('BENCH_LATENCY_DURATION', 5);
const WARMUP_S = envNum('BENCH_WARMUP', 2);
const SOAK_REQUESTS = envNum('BENCH_SOAK_REQUESTS', 1_000_000);
const SOAK_STEP = 100_000;
/** Background CPU (% of one core, other processes) above which a measured run is repeated. */
const MAX_BACKGROUND_PCT = 20;
const ATTEMPTS = envNum('BENCH_ATTEMPTS', 3);
/** Back-to-back rounds of direct, bare proxy and airlock that the targets are judged on (0: judge the table). */
const PAIRED_ROUNDS = envNum('BENCH_PAIRED_ROUNDS', 3);
/** Seconds per phase of a paired round: c=50 (throughput) and c=1 (latency). */
const PAIRED_S = { throughput: 5, latency: 3 };
/** Comma-separated target names to run (for profiling one of them); all three by default. */
const ONLY = process.env.BENCH_ONLY?.split(',');
const CONNECTIONS = 50;

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BENCH_DIR = fileURLToPath(new URL('./', import.meta.url));
/** The bare proxy relaying with stream.pipeline: shown for reference, never the floor. */
const PIPELINE = 'bare (pipeline)';
const PATH = '/items/42?view=full';

interface Target {
  name: string;
  url: string;
  /** The proxy process whose CPU and memory are reported (none for the direct call). */
  proxy: Child | undefined;
}

interface Row {
  target: string;
  connections: number;
  r: LoadResult;
  /** CPU time of the proxy process per request, in µs. */
  cpuUsPerReq: number | undefined;
  /** CPU time of the upstream per request, in µs (the same work in every row: a sanity check). */
  upstreamUsPerReq: number;
  peakRssMb: number | undefined;
  /** CPU used by processes other than the bench's during the run, in % of one core. */
  backgroundPct: number;
}

/**
 * Other work on the machine skews a 2-core benchmark. Waits (up to `maxS`) for a second in which
 * processes other than the bench used under 15% of one core; returns false if that never came.
 */
async function quiet(maxS = envNum('BENCH_QUIET_WAIT', 60)): Promise<boolean> {
  const deadline = Date.now() + maxS * 1000;
  let warned = false;
  for (;;) {
    const m0 = machineBusyMs();
    const b0 = benchCpuMs();
    await new Promise((r) => setTimeout(r, 1000));
    const other = machineBusyMs() - m0 - (benchCpuMs() - b0);
    if (other < 150) return true;
    if (Date.now() > deadline) return false;
    if (!warned) process.stderr.write(`  waiting for the machine to be quiet (other processes use ${(other / 10).toFixed(0)}% of a core)\n`);
    warned = true;
  }
}

function randomBase62(n: number): string {
  const A = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  let s = '';
  for (const b of randomBytes(n)) s += A[b % 62];
  return s;
}

/** The generated config's store section: BENCH_REDIS (a fresh prefix) and BENCH_POSTGRES (a fresh schema). */
function storeSection(): string {
  const redis = process.env.BENCH_REDIS ? `  redis: { url: ${JSON.stringify(process.env.BENCH_REDIS)}, prefix: "airlock-bench-${randomBase62(8)}:" }` : '';
  const entries = [redis, postgresStoreEntry()].filter(Boolean);
  return entries.length > 0 ? `store:\n${entries.join('\n')}\n` : '';
}

function airlockConfig(dataDir: string, upstream: string, key: string, otherKey: string): string {
  return `# generated by bench/run.ts
data: ${JSON.stringify(dataDir)}
agents:
  bench-agent:
    team: bench
    keys: ["${key}"]
    limits: { requests: 100000000/min, concurrency: 10000 }
  other-agent:
    keys: ["${otherKey}"]
teams:
  bench:
    limits: { requests: 100000000/min }
rules:
  - name: bench-reads-writes
    agents: [bench-agent]
    allow: ["http: GET,POST bench/**"]
  - name: no-deletes
    deny: ["http: DELETE bench/**"]
    reason: agents may not delete
  - name: no-admin
    deny: ["http: * bench/admin/**", "http: * */secrets/*"]
    reason: admin endpoints and secrets are off limits
  - name: writes-need-a-human
    approve: ["http: PUT,PATCH bench/**"]
  - name: team-reads
    agents: ["team:bench", "other-*"]
    allow: ["http: GET other/*/items/**"]
http:
  services:
    bench: { url: "${upstream}", timeout: 10s }
${storeSection()}`;
}

/** One request through `url`; the body must be the upstream's. */
async function sanity(name: string, url: string, headers: Record<string, string>, expected: string): Promise<void> {
  const r = await request(url, { headers });
  const text = await r.body.text();
  if (r.statusCode !== 200 || text !== expected) throw new Error(`${name}: sanity request got ${r.statusCode} ${text.slice(0, 200)}`);
}

async function measure(t: Target, upstream: Child, headers: Record<string, string>, log: (s: string) => void): Promise<{ rows: Row[]; served: number }> {
  const rows: Row[] = [];
  if (!(await quiet())) log('  the machine did not become quiet; measuring anyway (see the background column)');
  log(`  ${t.name}: warm-up ${WARMUP_S}s at c=${CONNECTIONS}`);
  const warm = await load({ url: t.url, connections: CONNECTIONS, duration: WARMUP_S, headers });
  if (warm.failures > 0) throw new Error(`${t.name}: ${warm.failures} failed requests during warm-up`);
  let served = warm.requests;
  for (const [c, d] of [[CONNECTIONS, DURATION_S], [1, LATENCY_S]] as const) {
    // A run during which other processes took a real share of the 2 cores is measured again (after
    // waiting for quiet), up to ATTEMPTS times; the table shows the background of the kept run.
    for (let attempt = 1; ; attempt++) {
      log(`  ${t.name}: c=${c} for ${d}s`);
      const cpu0 = t.proxy ? cpuMs(t.proxy.pid) : 0;
      const up0 = cpuMs(upstream.pid);
      const m0 = machineBusyMs();
      const b0 = benchCpuMs();
      const r = await load({ url: t.url, connections: c, duration: d, headers });
      const background = Math.max(0, ((machineBusyMs() - m0 - (benchCpuMs() - b0)) / (r.seconds * 1000)) * 100);
      const cpu1 = t.proxy ? cpuMs(t.proxy.pid) : 0;
      const up1 = cpuMs(upstream.pid);
      served += r.requests;
      if (r.failures > 0) throw new Error(`${t.name}: ${r.failures} failed requests at c=${c}`);
      if (background > MAX_BACKGROUND_PCT && attempt < ATTEMPTS) {
        log(`  ${t.name}: other processes used ${background.toFixed(0)}% of a core during that run; measuring again`);
        await quiet();
        continue;
      }
      rows.push({
        target: t.name,
        connections: c,
        r,
        cpuUsPerReq: t.proxy ? ((cpu1 - cpu0) * 1000) / r.requests : undefined,
        upstreamUsPerReq: ((up1 - up0) * 1000) / r.requests,
        peakRssMb: undefined,
        backgroundPct: background,
      });
      break;
    }
  }
  const peak = t.proxy ? memMb(t.proxy.pid).peak : undefined;
  for (const row of rows) row.peakRssMb = peak;
  return { rows, served };
}

function table(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' | ')} |`;
  return [line(head), `|${w.map((n, i) => (i === 0 ? `${'-'.repeat(n + 1)}-` : `${'-'.repeat(n + 1)}:`)).join('|')}|`, ...body.map(line)].join('\n');
}

const fmt = (n: number | undefined, digits: number) => (n === undefined || Number.isNaN(n) ? '—' : n.toFixed(digits));

interface Ratios {
  /** airlock / bare proxy requests per second at c=50. */
  ratio: number;
  /** Added p50 at c=1, in ms: airlock over direct, airlock over the bare proxy, the bare proxy over direct. */
  addDirect: number;
  addBare: number;
  bareAdd: number;
}

/**
 * The table measures its targets one after another, minutes apart. On a shared VM the host's
 * other tenants move every number by up to ±30% over minutes (seen on 2026-11-21 with nothing else
 * running inside the VM), which a ratio of two runs minutes apart inherits. A paired round measures
 * the three back to back within seconds (c=1: direct, bare proxy, airlock; then c=50: bare proxy,
 * airlock); the targets are judged on the median round, and every round is printed.
 */
async function pairedRounds(direct: Target, bare: Target, airlock: Target, headers: Record<string, string>, log: (s: string) => void): Promise<{ median: Ratios; served: number }> {
  const rounds: Ratios[] = [];
  const rowsOut: string[][] = [];
  let served = 0;
  const run = async (t: Target, connections: number, duration: number) => {
    const r = await load({ url: t.url, connections, duration, headers });
    if (r.failures > 0) throw new Error(`${t.name}: ${r.failures} failed requests in a paired round`);
    if (t === airlock) served += r.requests;
    return r;
  };
  for (let i = 1; i <= PAIRED_ROUNDS; i++) {
    if (!(await quiet())) log('  the machine did not become quiet; measuring anyway');
    log(`  paired round ${i}/${PAIRED_ROUNDS}`);
    const d1 = await run(direct, 1, PAIRED_S.latency);
    const b1 = await run(bare, 1, PAIRED_S.latency);
    const a1 = await run(airlock, 1, PAIRED_S.latency);
    const b50 = await run(bare, CONNECTIONS, PAIRED_S.throughput);
    const a50 = await run(airlock, CONNECTIONS, PAIRED_S.throughput);
    const r: Ratios = { ratio: a50.rps / b50.rps, addDirect: a1.p50 - d1.p50, addBare: a1.p50 - b1.p50, bareAdd: b1.p50 - d1.p50 };
    rounds.push(r);
    rowsOut.push([String(i), b50.rps.toFixed(0), a50.rps.toFixed(0), `${r.ratio.toFixed(2)}x`, fmt(d1.p50, 3), fmt(b1.p50, 3), fmt(a1.p50, 3), (r.addDirect * 1000).toFixed(0)]);
  }
  console.log(`\npaired rounds (c=${CONNECTIONS} for ${PAIRED_S.throughput}s, c=1 for ${PAIRED_S.latency}s, back to back; after the warm-ups above):\n` + table(['round', `bare req/s c=${CONNECTIONS}`, `airlock req/s c=${CONNECTIONS}`, 'ratio', 'direct p50 ms c=1', 'bare p50 ms c=1', 'airlock p50 ms c=1', 'airlock added µs'], rowsOut));
  const median = (f: (r: Ratios) => number) => {
    const v = rounds.map(f).sort((a, b) => a - b);
    return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  };
  return { median: { ratio: median((r) => r.ratio), addDirect: median((r) => r.addDirect), addBare: median((r) => r.addBare), bareAdd: median((r) => r.bareAdd) }, served };
}

async function compare(targets: Target[], upstream: Child, headers: Record<string, string>): Promise<number> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const rows: Row[] = [];
  let served = 0;
  for (const t of targets) {
    const m = await measure(t, upstream, headers, log);
    rows.push(...m.rows);
    if (t.name === 'airlock') served = m.served;
  }
  const get = (target: string, c: number) => rows.find((r) => r.target === target && r.connections === c)!.r;
  console.log('\n' + table(
    ['target', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU µs/req', 'proxy peak RSS MB', 'upstream CPU µs/req', 'background CPU %'],
    rows.map((r) => [r.target, String(r.connections), r.r.rps.toFixed(0), fmt(r.r.p50, 3), fmt(r.r.p99, 3), fmt(r.cpuUsPerReq, 1), fmt(r.peakRssMb, 0), fmt(r.upstreamUsPerReq, 1), r.backgroundPct.toFixed(0)]),
  ));
  const [direct, bare, airlock] = ['direct', 'bare proxy', 'airlock'].map((n) => targets.find((t) => t.name === n));
  if (!direct || !bare || !airlock) return served;
  let judged: Ratios = {
    ratio: get('airlock', CONNECTIONS).rps / get('bare proxy', CONNECTIONS).rps,
    addDirect: get('airlock', 1).p50 - get('direct', 1).p50,
    addBare: get('airlock', 1).p50 - get('bare proxy', 1).p50,
    bareAdd: get('bare proxy', 1).p50 - get('direct', 1).p50,
  };
  let basis = 'the table above';
  if (PAIRED_ROUNDS > 0) {
    console.log(`\nthe table's ratios: ${judged.ratio.toFixed(2)}x at c=${CONNECTIONS}, +${(judged.addDirect * 1000).toFixed(0)} µs at c=1 (its targets were measured minutes apart)`);
    const p = await pairedRounds(direct, bare, airlock, headers, log);
    served += p.served;
    judged = p.median;
    basis = `the median of ${PAIRED_ROUNDS} back-to-back rounds`;
  }
  const ok1 = judged.ratio >= 0.6;
  const ok2 = judged.addDirect <= 0.3;
  console.log(`
judged on ${basis}:
airlock / bare proxy throughput at c=${CONNECTIONS}: ${judged.ratio.toFixed(2)}x   (target >= 0.60: ${ok1 ? 'met' : 'MISSED'})
added p50 latency at c=1, airlock over direct:  ${(judged.addDirect * 1000).toFixed(0)} µs   (target <= 300 µs: ${ok2 ? 'met' : 'MISSED'})
added p50 latency at c=1, airlock over bare:    ${(judged.addBare * 1000).toFixed(0)} µs
added p50 latency at c=1, bare over direct:     ${(judged.bareAdd * 1000).toFixed(0)} µs`);
  if (targets.some((t) => t.name === PIPELINE)) {
    console.log(`airlock / ${PIPELINE} throughput at c=${CONNECTIONS}: ${(get('airlock', CONNECTIONS).rps / get(PIPELINE, CONNECTIONS).rps).toFixed(2)}x   (for reference, not a target)`);
  }
  return served;
}

/** Least-squares slope of ys over 0..n-1. */
function slope(ys: number[]): number {
  const n = ys.length;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => ((num += (x - mx) * (y - my)), (den += (x - mx) ** 2)));
  return den === 0 ? 0 : num / den;
}

async function soak(t: Target, headers: Record<string, string>): Promise<void> {
  const rounds = Math.max(2, Math.round(SOAK_REQUESTS / SOAK_STEP));
  if (!(await quiet())) process.stderr.write('  the machine did not become quiet; soaking anyway\n');
  console.log(`\nsoak: ${rounds * SOAK_STEP} requests through airlock at c=${CONNECTIONS}, RSS sampled every 250 ms, summarized every ${SOAK_STEP}`);
  // One RSS reading lands at a random point of the garbage collector's sawtooth (tens of MB apart
  // at this load), so each round keeps the lowest and highest of many readings: a leak shows as
  // rising lows, which are what the trend is judged on.
  const lows: number[] = [];
  const rowsOut: string[][] = [];
  let total = 0;
  const cpu0 = cpuMs(t.proxy!.pid);
  const t0 = Date.now();
  for (let i = 0; i < rounds; i++) {
    let low = Infinity;
    let high = 0;
    const sample = () => {
      const rss = memMb(t.proxy!.pid).rss;
      low = Math.min(low, rss);
      high = Math.max(high, rss);
    };
    const timer = setInterval(sample, 250);
    const r = await load({ url: t.url, connections: CONNECTIONS, amount: SOAK_STEP, headers }).finally(() => clearInterval(timer));
    sample();
    if (r.failures > 0) throw new Error(`soak: ${r.failures} failed requests in round ${i + 1}`);
    total += r.requests;
    lows.push(low);
    rowsOut.push([String(total), r.rps.toFixed(0), fmt(r.p99, 2), low.toFixed(1), high.toFixed(1)]);
    process.stderr.write(`  soak: ${total} requests, RSS ${low.toFixed(1)}–${high.toFixed(1)} MB\n`);
  }
  const cpuUs = ((cpuMs(t.proxy!.pid) - cpu0) * 1000) / total;
  const peak = memMb(t.proxy!.pid).peak;
  console.log('\n' + table(['requests', 'req/s', 'p99 ms', 'RSS low MB', 'RSS high MB'], rowsOut));
  // The first rounds include start-up growth (JIT, pools and caches filling, V8 sizing its heap to
  // the load), so the trend is judged on the second half of the rounds; the whole run is shown too.
  const half = lows.slice(Math.floor(lows.length / 2));
  const sAll = slope(lows);
  const s = slope(half);
  const fitted = s * (half.length - 1);
  const flat = fitted <= Math.max(5, half[0]! * 0.05);
  const trend = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)} MB per ${SOAK_STEP} requests`;
  console.log(`
soak: ${total} requests in ${((Date.now() - t0) / 1000).toFixed(0)} s, ${cpuUs.toFixed(1)} µs CPU per request, peak RSS ${peak.toFixed(1)} MB
RSS lows: ${lows[0]!.toFixed(1)} MB after the first round, ${half[0]!.toFixed(1)} MB at the half, ${lows.at(-1)!.toFixed(1)} MB at the end
fitted trend of the lows: ${trend(s)} over the second half (${trend(sAll)} over the whole run)
verdict: ${flat ? 'flat (no growth trend)' : 'GROWING'} (flat = fitted growth of the lows over the second half <= max(5 MB, 5%))`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-'));
  try {
    const c = cpus();
    console.log(`airlock bench — ${c.length} × ${c[0]?.model.trim() ?? 'cpu'}, Linux ${release()}, Node ${process.version}; loopback only`);
    const up = await startNode('upstream', [join(BENCH_DIR, 'upstream.js')], /PORT=(\d+)/);
    const upstream = `http://127.0.0.1:${up.match}`;
    const expected = await (await request(`${upstream}${PATH}`)).body.text();

    const key = `alk_${randomBase62(40)}`;
    const headers = { authorization: `Bearer ${key}` };
    const config = join(dir, 'airlock.yaml');
    writeFileSync(config, airlockConfig(join(dir, 'data'), upstream, key, `alk_${randomBase62(40)}`));
    const gw = await startNode('airlock', [join(ROOT, 'bin/airlock'), 'start', '-c', config, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], /airlock: agent port listening on (http:\/\/\S+)/, { cwd: ROOT, nodeFlags: (process.env.BENCH_AIRLOCK_NODE_FLAGS ?? '').split(' ').filter(Boolean) });
    const airlock: Target = { name: 'airlock', url: `${gw.match}/http/bench${PATH}`, proxy: gw.child };
    await sanity('airlock', airlock.url, headers, expected);

    let served = 0;
    if (COMPARE) {
      const bare = await startNode('bare proxy', [join(BENCH_DIR, 'bare-proxy.js'), upstream], /PORT=(\d+)/);
      const bareTarget: Target = { name: 'bare proxy', url: `http://127.0.0.1:${bare.match}${PATH}`, proxy: bare.child };
      await sanity('bare proxy', bareTarget.url, headers, expected);
      const piped = await startNode(PIPELINE, [join(BENCH_DIR, 'bare-proxy.js'), upstream, '--pipeline'], /PORT=(\d+)/);
      const pipedTarget: Target = { name: PIPELINE, url: `http://127.0.0.1:${piped.match}${PATH}`, proxy: piped.child };
      await sanity(PIPELINE, pipedTarget.url, headers, expected);
      const targets = [{ name: 'direct', url: `${upstream}${PATH}`, proxy: undefined }, bareTarget, pipedTarget, airlock].filter((t) => !ONLY || ONLY.includes(t.name));
      served = 1 + (await compare(targets, up.child, headers));
      await stop(bare.child);
      await stop(piped.child);
    }
    if (SOAK) await soak(airlock, headers);

    // Stop airlock (drain + audit flush), then check that the audit trail holds every exchange.
    await stop(gw.child, 15_000);
    const db = new Database(join(dir, 'data', 'airlock.db'), { readonly: true });
    const n = (db.prepare("SELECT count(*) AS n FROM audit WHERE phase = 'final'").get() as { n: number }).n;
    const w = (db.prepare("SELECT count(*) AS n FROM audit WHERE phase = 'decision'").get() as { n: number }).n;
    db.close();
    if (COMPARE) console.log(`\naudit: ${w} write-ahead and ${n} final records for ${served} exchanges answered 200 in the sanity, warm-up and measured runs (requests cut off at a run's end may add a few)`);
    else console.log(`\naudit: ${w} write-ahead and ${n} final records`);
    await postgresReport(w + n);
    // The A2A SendMessage scenario (bench/a2a.ts) brings its own remote agent and gateway.
    if (COMPARE && (!ONLY || ONLY.includes('a2a'))) await a2aScenario({ warmupS: WARMUP_S, durationS: DURATION_S, latencyS: LATENCY_S });
    // The LLM scenarios (bench/llm.ts) bring their own provider, bare proxy and gateway.
    if (COMPARE && (!ONLY || ONLY.includes('llm'))) await runLlmBench();
    // The MCP tools/call scenario (bench/mcp.ts) brings its own MCP server and gateway.
    if (COMPARE && (!ONLY || ONLY.includes('mcp'))) await mcpScenario({ warmupS: WARMUP_S, durationS: DURATION_S, latencyS: LATENCY_S });
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

// Bounded in time, and no child outlives the bench, whatever happens.
const limitS = (COMPARE ? PAIRED_ROUNDS * (3 * PAIRED_S.latency + 2 * PAIRED_S.throughput + 70) + 4 * (WARMUP_S + 80 + ATTEMPTS * (DURATION_S + LATENCY_S + 125)) + 60 + 2 * (WARMUP_S + DURATION_S + LATENCY_S + 45) + 3 * (WARMUP_S + DURATION_S + LATENCY_S) + 240 : 120) + (SOAK ? Math.ceil(SOAK_REQUESTS / 1000) + 120 : 0);
const watchdog = setTimeout(() => {
  console.error(`bench: still running after ${limitS} s; stopping`);
  killAllNow();
  process.exit(2);
}, limitS * 1000);
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllNow();
    process.exit(130);
  });
}
main().then(
  () => {
    clearTimeout(watchdog);
  },
  (e: unknown) => {
    console.error(`bench failed: ${e instanceof Error ? e.message : String(e)}`);
    clearTimeout(watchdog);
    void stopAll().finally(() => process.exit(1));
  },
);
