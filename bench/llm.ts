/**
 * The LLM scenarios of `npm run bench` (also runnable alone: `node dist/bench/llm.js`), on loopback,
 * against a fake OpenAI-shaped provider in its own process (bench/llm-upstream.ts):
 *
 *   1. non-streamed chat completions: direct, through a bare pass-through proxy, through airlock
 *      (`/llm/v1/chat/completions` with token limits and budgets on) — req/s at c=50 and p50/p99
 *      at c=1. Targets: airlock ≥ 0.5× the bare proxy's req/s (judged on the median of
 *      BENCH_PAIRED_ROUNDS back-to-back rounds, default 3); ≤ 0.5 ms added p50 over direct.
 *   2. streamed chat: time to the first chunk, one stream at a time. Target: ≤ 1 ms added p50.
 *   3. 1,000 concurrent open streams through airlock (20 chunks, 500 ms apart): every stream
 *      complete, airlock's peak RSS. Target: under 400 MB.
 *
 * Env knobs: BENCH_DURATION, BENCH_LATENCY_DURATION, BENCH_WARMUP (s), BENCH_LLM_TTFC (streams per
 * target, default 1000), BENCH_LLM_STREAMS (default 1000), BENCH_PAIRED_ROUNDS (0: judge the table).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

// Self-contained on purpose (like bench/a2a.ts): its own processes and /proc readings.

interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
}

const children = new Set<Child>();

/** Starts `node <args>`; resolves with the first match of `ready` on its stdout. */
function startNode(name: string, args: string[], ready: RegExp, cwd?: string): Promise<{ child: Child; match: string }> {
  const proc = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'production' } });
  const child: Child = { name, proc, pid: proc.pid ?? -1 };
  children.add(child);
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 15 s\n${err}`)), 15_000);
    proc.once('exit', (code) => {
      children.delete(child);
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready\n${err}`));
    });
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        proc.once('exit', () => children.delete(child));
        out = '';
        resolve({ child, match: m[1]! });
      }
    });
  });
}

function stop(c: Child, graceMs = 5000): Promise<void> {
  const p = c.proc;
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
    p.once('exit', () => (clearTimeout(t), resolve()));
    p.kill('SIGTERM');
  });
}

function killAllNow(): void {
  for (const c of children) c.proc.kill('SIGKILL');
}

/** User + system CPU of a process, ms (assumes the usual 100 clock ticks per second). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** RSS now and at its peak, MB. */
function memMb(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

const envNum = (k: string, d: number) => (process.env[k] ? Number(process.env[k]) : d);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BENCH_DIR = fileURLToPath(new URL('./', import.meta.url));
const PATH = '/v1/chat/completions';
/** Back-to-back c=50 rounds (bare proxy, then airlock) the throughput target is judged on; 0 judges the table. */
const PAIRED_ROUNDS = envNum('BENCH_PAIRED_ROUNDS', 3);
const PAIRED_S = 5;
const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a terse assistant.' }, { role: 'user', content: 'Summarise the benchmark in one sentence, please.' }], max_tokens: 64 });
const streamBody = (chunks: number, delay: number) => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Stream a few words, please.' }], max_tokens: 64, stream: true, user: `chunks=${chunks},delay=${delay}` });

interface PostResult {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  failures: number;
}

/** The slice of autocannon's API used here (loaded with require: the package ships no types). */
type Autocannon = (opts: { url: string; connections: number; duration: number; method: string; body: string; headers: Record<string, string>; timeout: number }) => PromiseLike<{ duration: number; non2xx: number; errors: number; timeouts: number }> & {
  on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void;
};
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/** autocannon POSTing the chat request, with latencies kept at full resolution (its histogram keeps whole ms). */
async function loadPost(url: string, connections: number, durationS: number, headers: Record<string, string>): Promise<PostResult> {
  const inst = autocannon({ url, connections, duration: durationS, method: 'POST', body: BODY, headers: { 'content-type': 'application/json', ...headers }, timeout: 10 });
  const times: number[] = [];
  inst.on('response', (_c, status, _b, ms) => {
    if (status >= 200 && status < 300) times.push(ms);
  });
  const r = await inst;
  times.sort((a, b) => a - b);
  const pct = (p: number) => (times.length === 0 ? NaN : times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))]!);
  return { requests: times.length, rps: times.length / r.duration, p50: pct(50), p99: pct(99), failures: r.non2xx + r.errors + r.timeouts };
}

/** Time to the first body chunk of `n` streams, one at a time. */
async function ttfc(origin: string, path: string, headers: Record<string, string>, n: number): Promise<{ p50: number; p99: number; events: number }> {
  const pool = new Pool(origin, { connections: 1 });
  const times: number[] = [];
  let events = 0;
  const body = streamBody(20, 0);
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const r = await pool.request({ path, method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      if (r.statusCode !== 200) throw new Error(`stream got ${r.statusCode}: ${await r.body.text()}`);
      let first = true;
      let text = '';
      for await (const c of r.body) {
        if (first) {
          times.push(performance.now() - t0);
          first = false;
        }
        text += (c as Buffer).toString();
      }
      events = text.split('\n\n').length - 1;
    }
  } finally {
    await pool.close();
  }
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(times.length / 2)]!, p99: times[Math.floor(times.length * 0.99)]!, events };
}

/** Opens `n` streams at once through `origin`; samples `proxy`'s RSS while they run. */
async function openStreams(origin: string, headers: Record<string, string>, n: number, proxy: Child): Promise<{ complete: number; failed: number; peakRssMb: number; rssBeforeMb: number; openMs: number; wallMs: number }> {
  const pool = new Pool(origin, { connections: n });
  const rssBeforeMb = memMb(proxy.pid).rss;
  let peak = rssBeforeMb;
  const sampler = setInterval(() => (peak = Math.max(peak, memMb(proxy.pid).rss)), 100);
  const t0 = performance.now();
  let opened = 0;
  let openMs = 0;
  const body = streamBody(20, 500);
  const one = async (): Promise<boolean> => {
    const r = await pool.request({ path: `/llm${PATH}`, method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, headersTimeout: 60_000, bodyTimeout: 60_000 });
    if (++opened === n) openMs = performance.now() - t0;
    let text = '';
    for await (const c of r.body) text += (c as Buffer).toString();
    return r.statusCode === 200 && text.endsWith('data: [DONE]\n\n') && text.split('\n\n').length - 1 === 23;
  };
  const results = await Promise.allSettled(Array.from({ length: n }, one));
  const wallMs = performance.now() - t0;
  clearInterval(sampler);
  peak = Math.max(peak, memMb(proxy.pid).peak);
  await pool.close();
  const complete = results.filter((r) => r.status === 'fulfilled' && r.value).length;
  return { complete, failed: n - complete, peakRssMb: peak, rssBeforeMb, openMs, wallMs };
}

function airlockConfig(dataDir: string, upstream: string, key: string): string {
  return `# generated by bench/llm.ts
data: ${JSON.stringify(dataDir)}
agents:
  bench-agent:
    team: bench
    keys: ["${key}"]
    limits: { requests: 100000000/min, tokens: 1000000000000/min, budget: 1000000000/day, concurrency: 100000 }
teams:
  bench:
    limits: { budget: 1000000000/day }
rules:
  - name: bench-llm
    agents: [bench-agent]
    allow: ["llm: gpt-4o-mini"]
llm:
  providers:
    bench: { type: openai, url: "${upstream}/v1", key: sk-bench-provider-key }
  models:
    gpt-4o-mini: { provider: bench }
`;
}

const f = (n: number, d: number) => (Number.isNaN(n) ? '—' : n.toFixed(d));

function table(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' | ')} |`;
  return [line(head), `|${w.map((n, i) => (i === 0 ? `${'-'.repeat(n + 1)}-` : `${'-'.repeat(n + 1)}:`)).join('|')}|`, ...body.map(line)].join('\n');
}

/** Runs the LLM scenarios and prints their tables and verdicts; returns false if a target was missed. */
export async function runLlmBench(log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<boolean> {
  const durationS = envNum('BENCH_DURATION', 10);
  const latencyS = envNum('BENCH_LATENCY_DURATION', 5);
  const warmupS = envNum('BENCH_WARMUP', 2);
  const ttfcN = envNum('BENCH_LLM_TTFC', 1000);
  const streamsN = envNum('BENCH_LLM_STREAMS', 1000);
  process.once('exit', killAllNow); // no child outlives the bench, whoever runs it
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-llm-'));
  const started: Child[] = [];
  try {
    const up = await startNode('llm upstream', [join(BENCH_DIR, 'llm-upstream.js')], /PORT=(\d+)/);
    started.push(up.child);
    const upstream = `http://127.0.0.1:${up.match}`;
    const bare = await startNode('bare proxy', [join(BENCH_DIR, 'llm-upstream.js'), '--bare', upstream], /PORT=(\d+)/);
    started.push(bare.child);
    const key = `alk_${randomBytes(30).toString('base64url').replace(/[-_]/g, 'x')}`;
    const config = join(dir, 'airlock.yaml');
    writeFileSync(config, airlockConfig(join(dir, 'data'), upstream, key));
    const gw = await startNode('airlock', [join(ROOT, 'bin/airlock'), 'start', '-c', config, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], /airlock: agent port listening on (http:\/\/\S+)/, ROOT);
    started.push(gw.child);
    const auth = { authorization: `Bearer ${key}` };
    const targets = [
      { name: 'direct', url: `${upstream}${PATH}`, proxy: undefined as Child | undefined },
      { name: 'bare proxy', url: `http://127.0.0.1:${bare.match}${PATH}`, proxy: bare.child },
      { name: 'airlock', url: `${gw.match}/llm${PATH}`, proxy: gw.child },
    ];

    log('llm 1/3: non-streamed chat completions');
    const rows: string[][] = [];
    const res: Record<string, { c50: PostResult; c1: PostResult }> = {};
    for (const t of targets) {
      const warm = await loadPost(t.url, 50, warmupS, auth);
      if (warm.failures > 0) throw new Error(`${t.name}: ${warm.failures} failed requests in warm-up`);
      const cpu0 = t.proxy ? cpuMs(t.proxy.pid) : 0;
      const c50 = await loadPost(t.url, 50, durationS, auth);
      const cpuUs = t.proxy ? ((cpuMs(t.proxy.pid) - cpu0) * 1000) / c50.requests : NaN;
      const c1 = await loadPost(t.url, 1, latencyS, auth);
      if (c50.failures + c1.failures > 0) throw new Error(`${t.name}: ${c50.failures + c1.failures} failed requests`);
      res[t.name] = { c50, c1 };
      rows.push([t.name, f(c50.rps, 0), f(c50.p50, 3), f(c50.p99, 3), f(c1.p50, 3), f(c1.p99, 3), f(cpuUs, 1), t.proxy ? f(memMb(t.proxy.pid).peak, 0) : '—']);
    }
    console.log(`\nLLM: non-streamed chat completions (POST ${PATH}, ~600-byte replies with usage)\n`);
    console.log(table(['target', 'req/s c=50', 'p50 ms c=50', 'p99 ms c=50', 'p50 ms c=1', 'p99 ms c=1', 'proxy CPU µs/req', 'proxy peak RSS MB'], rows));
    const tableRatio = res['airlock']!.c50.rps / res['bare proxy']!.c50.rps;
    const added = (res['airlock']!.c1.p50 - res['direct']!.c1.p50) * 1000;
    // The table measures bare and airlock minutes apart; on a shared VM the host's load moves both by
    // more than the margin of the target. The ratio is judged on back-to-back rounds instead, as for /http.
    const rounds: number[] = [];
    for (let i = 1; i <= PAIRED_ROUNDS; i++) {
      log(`llm paired round ${i}/${PAIRED_ROUNDS}: bare proxy, then airlock, c=50 for ${PAIRED_S}s each`);
      const b = await loadPost(targets[1]!.url, 50, PAIRED_S, auth);
      const a = await loadPost(targets[2]!.url, 50, PAIRED_S, auth);
      if (a.failures + b.failures > 0) throw new Error(`${a.failures + b.failures} failed requests in a paired round`);
      rounds.push(a.rps / b.rps);
    }
    const ratio = rounds.length > 0 ? [...rounds].sort((x, y) => x - y)[Math.floor(rounds.length / 2)]! : tableRatio;
    if (rounds.length > 0) console.log(`\nLLM c=50 ratios, airlock / bare proxy: the table's ${tableRatio.toFixed(2)}x; back-to-back rounds ${rounds.map((r) => `${r.toFixed(2)}x`).join(', ')}`);

    log(`llm 2/3: time to first chunk, ${ttfcN} streams per target`);
    const tt: Record<string, Awaited<ReturnType<typeof ttfc>>> = {};
    for (const t of targets) {
      const u = new URL(t.url);
      await ttfc(u.origin, u.pathname, auth, Math.min(50, ttfcN)); // warm-up
      tt[t.name] = await ttfc(u.origin, u.pathname, auth, ttfcN);
    }
    console.log(`\nLLM: streamed chat, time to first chunk (20 chunks, one stream at a time, ${ttfcN} streams)\n`);
    console.log(table(['target', 'TTFC p50 ms', 'TTFC p99 ms', 'events seen'], targets.map((t) => [t.name, f(tt[t.name]!.p50, 3), f(tt[t.name]!.p99, 3), String(tt[t.name]!.events)])));
    const ttfcAdded = (tt['airlock']!.p50 - tt['direct']!.p50) * 1000;

    log(`llm 3/3: ${streamsN} concurrent streams through airlock (20 chunks, 500 ms apart)`);
    const os = await openStreams(gw.match, auth, streamsN, gw.child);
    console.log(`\nLLM: ${streamsN} concurrent open streams through airlock: ${os.complete} complete, ${os.failed} failed; all open after ${f(os.openMs, 0)} ms, all done after ${f(os.wallMs, 0)} ms; airlock RSS ${f(os.rssBeforeMb, 0)} MB before, peak ${f(os.peakRssMb, 0)} MB`);

    const ok = [ratio >= 0.5, added <= 500, ttfcAdded <= 1000, os.failed === 0 && os.peakRssMb < 400];
    console.log(`
airlock / bare proxy throughput at c=50 (non-streamed):  ${ratio.toFixed(2)}x${rounds.length > 0 ? ' (median round)' : ''}   (target >= 0.50: ${ok[0] ? 'met' : 'MISSED'})
added p50 latency at c=1, airlock over direct:          ${added.toFixed(0)} µs   (target <= 500 µs: ${ok[1] ? 'met' : 'MISSED'})
added p50 time to first chunk, airlock over direct:     ${ttfcAdded.toFixed(0)} µs   (target <= 1000 µs: ${ok[2] ? 'met' : 'MISSED'})
${streamsN} open streams: peak RSS ${f(os.peakRssMb, 0)} MB, ${os.failed} failed   (target < 400 MB, none failed: ${ok[3] ? 'met' : 'MISSED'})`);
    await stop(gw.child, 15_000);
    return ok.every(Boolean);
  } finally {
    await Promise.all(started.map((c) => stop(c)));
    rmSync(dir, { recursive: true, force: true });
  }
}

// Run alone: `node dist/bench/llm.js`.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const watchdog = setTimeout(() => {
    console.error('bench llm: still running after 15 minutes; stopping');
    killAllNow();
    process.exit(2);
  }, 900_000);
  runLlmBench().then(
    (ok) => {
      clearTimeout(watchdog);
      process.exitCode = ok ? 0 : 1;
    },
    (e: unknown) => {
      console.error(`bench llm failed: ${e instanceof Error ? e.message : String(e)}`);
      clearTimeout(watchdog);
      killAllNow();
      process.exit(1);
    },
  );
}
