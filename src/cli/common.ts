/** What every CLI verb shares: config discovery, the admin API client, output helpers, exit codes. */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { compileConfig, type RuntimeConfig } from '../config/compile.js';
import { loadConfigFile } from '../config/load.js';
import { runningFile, runningGateway } from '../server/running.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A wrong invocation: printed with the verb's usage, exit 2. */
export class UsageError extends Error {}

/** The repository / package root (holds examples/). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

let toldQuickstart = false;

/**
 * `--config`, else ./airlock.yaml, else the quickstart example — said on stderr, so that
 * `airlock check` run in the wrong directory does not pass by checking the example instead.
 */
export function configPath(given: string | undefined): string {
  if (given) return resolve(given);
  if (existsSync('airlock.yaml')) return resolve('airlock.yaml');
  const quickstart = join(PACKAGE_ROOT, 'examples', 'quickstart.yaml');
  if (!toldQuickstart) process.stderr.write(`airlock: no -c FILE and no ./airlock.yaml: using the quickstart example (${quickstart})\n`);
  toldQuickstart = true;
  return quickstart;
}

export function loadRuntime(file: string): RuntimeConfig {
  return compileConfig(loadConfigFile(file));
}

/** parseArgs with the common options, turning its errors into UsageError. */
export function args<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = true) {
  try {
    return parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, admin: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * The admin API base URL: `--admin`, else that of the gateway running on the config's data
 * directory (its `gateway.json`: right even after `--admin-listen` or an edited admin.listen),
 * else the config's admin.listen.
 */
export function adminBase(admin: string | undefined, config: string | undefined): string {
  if (admin) return admin.replace(/\/+$/, '');
  const c = loadRuntime(configPath(config));
  const running = runningGateway(c.dataDir);
  if (running) return reachable(running.admin);
  // Port 0 means "any free port": only a running gateway's gateway.json can say which it got.
  if (c.admin.listen.port === 0) throw new AdminUnreachable(`no running gateway found on ${c.dataDir} (admin.listen is port 0, so its port is known only while it runs); pass --admin URL`);
  const h = c.admin.listen.host.includes(':') ? `[${c.admin.listen.host}]` : c.admin.listen.host;
  return reachable(`http://${h}:${c.admin.listen.port}`);
}

/** A listen URL as a local client reaches it: the wildcard addresses mean this machine. */
function reachable(url: string): string {
  return url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:');
}

/**
 * For verbs that write the store themselves when no gateway answers (`kill`, `keys`): throws if a
 * gateway does run on the data directory, since it would not see the change (it reads kill
 * switches and keys at start).
 */
export function assertNoGateway(dataDir: string): void {
  const running = runningGateway(dataDir);
  if (running) {
    throw new Error(`a gateway (pid ${running.pid}) runs on ${dataDir}, but its admin API at ${running.admin} did not answer; nothing was changed. Retry, or pass --admin URL (if no gateway runs, remove ${runningFile(dataDir)})`);
  }
}

export class AdminUnreachable extends Error {}

/** Calls the running gateway's admin API; throws AdminUnreachable when nothing listens. */
export async function adminCall(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'x-airlock-operator': `cli:${process.env['USER'] ?? 'unknown'}` };
  const token = process.env['AIRLOCK_ADMIN_TOKEN'];
  if (token) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    // Loaded here, not at the top: undici is most of the CLI's start-up time, and most verbs never call the admin API.
    const { request } = await import('undici');
    res = await request(`${base}${path}`, { method: method as 'GET', headers, body: body === undefined ? null : JSON.stringify(body), headersTimeout: 10_000, bodyTimeout: 10_000 });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ECONNREFUSED') throw new AdminUnreachable(`no gateway answers at ${base} (is it running? pass --admin URL)`);
    throw new Error(`cannot reach the admin API at ${base}: ${code ?? (e as Error).message}`);
  }
  const text = await res.body.text();
  let json: Record<string, unknown> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    json = { raw: text };
  }
  return { status: res.statusCode, json };
}

/** The message of an API error body. */
export function apiError(json: Record<string, unknown>): string {
  const e = json['error'] as { code?: string; message?: string } | undefined;
  return e ? `${e.code}: ${e.message}` : JSON.stringify(json);
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/** Left-aligned columns. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
