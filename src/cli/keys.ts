/**
 * `airlock keys create <agent> [--expires 30d]`, `keys list [agent]`, `keys revoke <id>`.
 * Through the running gateway's admin API (so revocation applies to the very next request); with
 * no gateway running, directly on the store (the gateway loads it when it starts).
 */
import { parseDuration } from '../config/units.js';
import { createStoredKey, publicKey } from '../identity/keystore.js';
import type { KeyRecord } from '../identity/keys.js';
import { SqliteStore } from '../store/sqlite.js';
import { adminBase, adminCall, AdminUnreachable, apiError, args, assertNoGateway, configPath, EXIT_FAILED, EXIT_OK, loadRuntime, printJson, table, UsageError } from './common.js';

export const usage = 'airlock keys create <agent> [--expires 30d] | keys list [agent] | keys revoke <id>   [-c FILE] [--admin URL] [--json]';

export async function keys(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { expires: { type: 'string' } });
  const [sub, arg] = positionals;
  if (sub === 'create') {
    if (!arg || positionals.length !== 2) throw new UsageError('keys create needs an agent name');
    const lifetime = values.expires === undefined ? undefined : parseDuration(values.expires);
    if (values.expires !== undefined && !(lifetime! > 0 && lifetime! <= 36500 * 86_400_000)) throw new UsageError('--expires takes a duration such as 30d, 12h or 90m (at most 36500d)');
    const body = values.expires ? { expires: values.expires } : {};
    const r = await viaGatewayOrStore(values, (base) => adminCall(base, 'POST', `/api/agents/${encodeURIComponent(arg)}/keys`, body), async (file) => {
      const c = loadRuntime(file);
      if (!c.agents.has(arg)) return { status: 404, json: { error: { code: 'not_found', message: `no agent named "${arg}" is declared in the config` } } };
      const store = new SqliteStore(c.dataDir);
      let k;
      try {
        k = createStoredKey(store, arg, values.expires ? parseDuration(values.expires) : undefined);
      } finally {
        store.close();
      }
      await tellCluster(c.store.redis, k.record);
      return { status: 201, json: { ...publicKey(k.record), key: k.key } };
    });
    if (r.status !== 201) return fail(r.json);
    if (values.json) printJson(r.json);
    else {
      process.stdout.write(`${r.json['key'] as string}\n`);
      process.stderr.write(`created key ${r.json['id'] as string} for agent ${arg}${r.json['expiresAt'] ? `, expires ${r.json['expiresAt'] as string}` : ''}. It is shown only now: store it.\n`);
    }
    return EXIT_OK;
  }
  if (sub === 'list') {
    if (positionals.length > 2) throw new UsageError('keys list takes at most an agent name');
    const r = await viaGatewayOrStore(values, (base) => adminCall(base, 'GET', `/api/keys${arg ? `?agent=${encodeURIComponent(arg)}` : ''}`), (file) => {
      const c = loadRuntime(file);
      const store = new SqliteStore(c.dataDir);
      try {
        const cfg = c.configKeys.filter((k) => !arg || k.agent === arg).map((k) => ({ id: k.id, agent: k.agent, prefix: k.prefix, source: 'config', createdAt: null, expiresAt: null, revokedAt: null, status: 'active' }));
        return { status: 200, json: { keys: [...cfg, ...store.listKeys(arg).map((k) => publicKey(k))] } };
      } finally {
        store.close();
      }
    });
    if (r.status !== 200) return fail(r.json);
    const list = r.json['keys'] as Record<string, unknown>[];
    if (values.json) printJson(list);
    else process.stdout.write(table([['ID', 'AGENT', 'PREFIX', 'SOURCE', 'STATUS', 'EXPIRES'], ...list.map((k) => [String(k['id']), String(k['agent']), `${String(k['prefix'])}…`, String(k['source']), String(k['status']), String(k['expiresAt'] ?? 'never')])]));
    return EXIT_OK;
  }
  if (sub === 'revoke') {
    if (!arg || positionals.length !== 2) throw new UsageError('keys revoke needs a key id (see keys list)');
    const r = await viaGatewayOrStore(values, (base) => adminCall(base, 'DELETE', `/api/keys/${encodeURIComponent(arg)}`), async (file) => {
      const c = loadRuntime(file);
      const store = new SqliteStore(c.dataDir);
      const at = new Date().toISOString();
      let k;
      try {
        k = store.revokeKey(arg, at);
      } finally {
        store.close();
      }
      // A key made on another machine of the cluster is known to the cluster only.
      if (!k && c.store.redis) {
        const { clusterKey } = await import('../store/redis/offline.js');
        const known = await clusterKey(c.store.redis, arg).catch(() => undefined);
        if (known) k = known.revokedAt ? known : { ...known, revokedAt: at };
      }
      if (!k) return { status: 404, json: { error: { code: 'not_found', message: `no key with id "${arg}"` } } };
      await tellCluster(c.store.redis, k);
      return { status: 200, json: publicKey(k) };
    });
    if (r.status !== 200) return fail(r.json);
    if (values.json) printJson(r.json);
    else process.stdout.write(`revoked ${arg}\n`);
    return EXIT_OK;
  }
  throw new UsageError('keys takes create, list or revoke');
}

type Call = { status: number; json: Record<string, unknown> };

async function viaGatewayOrStore(values: { admin?: string | undefined; config?: string | undefined }, online: (base: string) => Promise<Call>, offline: (file: string) => Call | Promise<Call>): Promise<Call> {
  try {
    return await online(adminBase(values.admin, values.config));
  } catch (e) {
    if (!(e instanceof AdminUnreachable) || values.admin) throw e;
    const file = configPath(values.config);
    assertNoGateway(loadRuntime(file).dataDir);
    return await offline(file);
  }
}

function fail(json: Record<string, unknown>): number {
  process.stderr.write(`airlock: ${apiError(json)}\n`);
  return EXIT_FAILED;
}

/** A key made or revoked here with no gateway running: the cluster's running gateways take it at once. */
async function tellCluster(redis: { url: string; prefix: string } | undefined, k: KeyRecord): Promise<void> {
  if (!redis) return;
  try {
    const { shareChange } = await import('../store/redis/offline.js'); // Redis' client loads only for a cluster
    await shareChange(redis, { type: 'key', key: k });
  } catch (e) {
    process.stderr.write(`airlock: Redis could not be reached (${e instanceof Error ? e.message : String(e)}): the cluster's gateways learn of this key when a gateway using this data directory starts\n`);
  }
}
