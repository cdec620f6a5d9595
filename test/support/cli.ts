/**
 * Test support for the CLI: runs `node bin/airlock <verb> ...` as a real child process and
 * captures stdout, stderr and the exit code; starts `airlock start` on port 0 and reads the two
 * `airlock: ... listening on http://HOST:PORT` lines. Children are always spawned asynchronously,
 * so upstreams that live in the test process keep answering while the CLI runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/test/support/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = join(ROOT, 'bin', 'airlock');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  /** Added to (or, with `undefined`, removed from) the test process's environment. */
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

/** Every child a test started and has not seen exit; killed when the test process exits. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function childEnv(extra: CliOptions['env']): NodeJS.ProcessEnv {
  // The tests decide what the CLI sees: no admin token or config leaking in from the outer shell.
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['AIRLOCK_ADMIN_TOKEN'];
  for (const [k, v] of Object.entries(extra ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Spawns `node bin/airlock ...args` (cwd defaults to the repo root). */
export function spawnCli(args: string[], opts: CliOptions = {}): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? ROOT, env: childEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/**
 * At most this many one-shot CLI processes at once per test process. Each costs ~0.3 s of CPU to
 * start; dozens started together on a 2-core machine only starve each other (and the gateways).
 */
const MAX_PARALLEL_CLI = 3;
let running = 0;
const waiting: (() => void)[] = [];

async function slot(): Promise<() => void> {
  if (running < MAX_PARALLEL_CLI) running++;
  else await new Promise<void>((r) => waiting.push(r)); // a finishing run hands its slot over
  return () => {
    const next = waiting.shift();
    if (next) next();
    else running--;
  };
}

/** Runs one CLI verb to completion. Kills it (and fails) after `timeoutMs` (default 30 s). */
export async function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const release = await slot();
  try {
    return await runCliNow(args, opts);
  } finally {
    release();
  }
}

function runCliNow(args: string[], opts: CliOptions): Promise<CliResult> {
  const child = spawnCli(args, opts);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`airlock ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      rej(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout, stderr });
    });
  });
}

export interface CliGateway {
  child: ChildProcess;
  pid: number;
  agentUrl: string;
  adminUrl: string;
  /** Everything the process printed so far. */
  stdout(): string;
  stderr(): string;
  /** Settles when the process has exited (and its output is complete). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (default SIGTERM) and waits for the exit; SIGKILLs it after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const LISTEN_RE = /^airlock: (agent|admin) port listening on (http:\/\/\S+:\d+)$/m;

/**
 * Spawns `airlock start ...args` (add `--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0` yourself, or
 * use `startCliGateway`) and resolves once both listening lines are printed; rejects, with the
 * output, if the process exits first or takes longer than `timeoutMs`.
 */
export function startCli(args: string[], opts: CliOptions = {}): Promise<CliGateway> {
  const child = spawnCli(['start', ...args], opts);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('close', (code, signal) => res({ code, signal })));
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise((res, rej) => {
    const urls: Record<string, string> = {};
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      child.kill('SIGKILL');
      rej(new Error(`airlock start did not print its listening lines within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.stdout!.on('data', (c: string) => {
      stdout += c;
      if (done) return;
      for (const line of stdout.split('\n')) {
        const m = LISTEN_RE.exec(line);
        if (m) urls[m[1]!] = m[2]!;
      }
      if (urls['agent'] && urls['admin']) {
        done = true;
        clearTimeout(timer);
        const gw: CliGateway = {
          child,
          pid: child.pid!,
          agentUrl: urls['agent'],
          adminUrl: urls['admin'],
          stdout: () => stdout,
          stderr: () => stderr,
          exited,
          async stop(signal = 'SIGTERM', ms = 15_000) {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            const t = setTimeout(() => child.kill('SIGKILL'), ms);
            try {
              return await exited;
            } finally {
              clearTimeout(t);
            }
          },
        };
        res(gw);
      }
    });
    void exited.then(({ code, signal }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      rej(Object.assign(new Error(`airlock start exited (code ${code}, signal ${signal}) before listening\nstdout: ${stdout}\nstderr: ${stderr}`), { code, stdout, stderr }));
    });
  });
}

/** `airlock start -c FILE --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0`. */
export function startCliGateway(configFile: string, opts: CliOptions = {}): Promise<CliGateway> {
  return startCli(['-c', configFile, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], opts);
}

/** A fresh temp directory; `cleanup()` removes it. */
export function tempDir(prefix = 'airlock-cli-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes `airlock.yaml` (or `name`) into `dir`, with `data: <dir>/data` first unless the text sets it. */
export function writeConfig(dir: string, yaml: string, name = 'airlock.yaml'): string {
  const file = join(dir, name);
  writeFileSync(file, /^data:/m.test(yaml) ? yaml : `data: ${join(dir, 'data')}\n${yaml}`);
  return file;
}

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Is something accepting connections on 127.0.0.1:port? (true = busy). */
export async function portBusy(port: number): Promise<boolean> {
  const srv = createServer();
  return new Promise((res) => {
    srv.once('error', () => res(true));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(false)));
  });
}

/** Polls `check` every `everyMs` until it returns a truthy value or `timeoutMs` passes (then throws). */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 5000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The JSON log lines a gateway wrote to stderr (pino), parsed; other lines are skipped. */
export function logLines(stderr: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partly written last line
    }
  }
  return out;
}
