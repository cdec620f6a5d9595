/**
 * `airlock kill <agent> | --team T | --target "<pattern>" | --all [--reason R]` and `airlock unkill …`.
 * Through the admin API (immediate, cuts in-flight calls); with no gateway running, written to the
 * store, in force from the next start.
 */
import { compileActionPattern, PatternError } from '../policies/rules/pattern.js';
import { SqliteStore } from '../store/sqlite.js';
import type { KillScope } from '../store/types.js';
import { adminBase, adminCall, AdminUnreachable, apiError, args, assertNoGateway, configPath, EXIT_FAILED, EXIT_OK, loadRuntime, printJson, table, UsageError } from './common.js';

export const usage = 'airlock kill <agent> | --team TEAM | --target "<pattern>" | --all [--reason TEXT] | kill --list   [-c FILE] [--admin URL] [--json]';
export const unkillUsage = 'airlock unkill <agent> | --team TEAM | --target "<pattern>" | --all   [-c FILE] [--admin URL] [--json]';

function scopeOf(values: { team?: string | undefined; target?: string | undefined; all?: boolean | undefined }, positionals: string[]): { scope: KillScope; value: string } {
  const given = [positionals.length > 0, values.team !== undefined, values.target !== undefined, values.all === true].filter(Boolean).length;
  if (given !== 1 || positionals.length > 1) throw new UsageError('give exactly one of: an agent name, --team, --target or --all');
  if (values.all) return { scope: 'all', value: '*' };
  if (values.team !== undefined) return { scope: 'team', value: values.team };
  if (values.target !== undefined) {
    try {
      compileActionPattern(values.target);
    } catch (e) {
      if (e instanceof PatternError) throw new UsageError(e.message);
      throw e;
    }
    return { scope: 'target', value: values.target };
  }
  return { scope: 'agent', value: positionals[0]! };
}

export async function kill(argv: string[], lift: boolean): Promise<number> {
  const { values, positionals } = args(argv, { team: { type: 'string' }, target: { type: 'string' }, all: { type: 'boolean' }, reason: { type: 'string' }, list: { type: 'boolean' } });
  if (values.list) return list(values);
  const s = scopeOf(values, positionals);
  const body = { [s.scope]: s.scope === 'all' ? true : s.value, ...(values.reason ? { reason: values.reason } : {}) };
  let r: { status: number; json: Record<string, unknown> };
  try {
    r = await adminCall(adminBase(values.admin, values.config), lift ? 'DELETE' : 'POST', '/api/kill', body);
  } catch (e) {
    if (!(e instanceof AdminUnreachable) || values.admin) throw e;
    const c = loadRuntime(configPath(values.config));
    assertNoGateway(c.dataDir);
    const store = new SqliteStore(c.dataDir);
    const by = `cli:${process.env['USER'] ?? 'unknown'}`;
    const k = { scope: s.scope, value: s.value, reason: values.reason, createdAt: new Date().toISOString(), by };
    let found = true;
    try {
      if (lift) found = store.removeKill(s.scope, s.value) > 0;
      else store.addKill(k);
    } finally {
      store.close();
    }
    let shared = '';
    if (c.store.redis) {
      // A cluster's running gateways put it in force at once.
      try {
        const { shareChange } = await import('../store/redis/offline.js'); // Redis' client loads only for a cluster
        const had = await shareChange(c.store.redis, lift ? { type: 'unkill', scope: s.scope, value: s.value, by } : { type: 'kill', kill: k });
        found ||= had;
        shared = '; the cluster\'s running gateways have it now';
      } catch (e) {
        shared = `; Redis could not be reached (${e instanceof Error ? e.message : String(e)}), so the cluster's gateways have not heard of it${lift ? ': lift it again once Redis is back' : ''}`;
      }
    }
    r = !found ? { status: 404, json: { error: { code: 'not_found', message: `no kill switch on ${s.scope} ${s.value}` } } } : lift ? { status: 200, json: { lifted: s } } : { status: 200, json: { kill: k, aborted: 0 } };
    process.stderr.write(`airlock: no gateway is running here; the change is stored and applies when it starts${shared}\n`);
  }
  if (r.status !== 200) {
    process.stderr.write(`airlock: ${apiError(r.json)}\n`);
    return EXIT_FAILED;
  }
  if (values.json) printJson(r.json);
  else if (lift) process.stdout.write(`lifted the kill switch on ${s.scope === 'all' ? 'all traffic' : `${s.scope} ${s.value}`}\n`);
  else process.stdout.write(`killed ${s.scope === 'all' ? 'all traffic' : `${s.scope} ${s.value}`}${r.json['aborted'] ? ` (cut ${String(r.json['aborted'])} in-flight calls)` : ''}\n`);
  return EXIT_OK;
}

async function list(values: { admin?: string | undefined; config?: string | undefined; json?: boolean | undefined }): Promise<number> {
  let kills: Record<string, unknown>[];
  try {
    const r = await adminCall(adminBase(values.admin, values.config), 'GET', '/api/kill');
    if (r.status !== 200) {
      process.stderr.write(`airlock: ${apiError(r.json)}\n`);
      return EXIT_FAILED;
    }
    kills = r.json['kills'] as Record<string, unknown>[];
  } catch (e) {
    if (!(e instanceof AdminUnreachable) || values.admin) throw e;
    const store = new SqliteStore(loadRuntime(configPath(values.config)).dataDir);
    kills = store.listKills() as unknown as Record<string, unknown>[];
    store.close();
  }
  if (values.json) printJson(kills);
  else process.stdout.write(kills.length === 0 ? 'no kill switches are on\n' : table([['SCOPE', 'VALUE', 'SINCE', 'BY', 'REASON'], ...kills.map((k) => [String(k['scope']), String(k['value']), String(k['createdAt']), String(k['by'] ?? ''), String(k['reason'] ?? '')])]));
  return EXIT_OK;
}
