/**
 * `airlock tools list [--status pinned|changed] | accept <server>/<tool>` — MCP tool pins, through
 * the running gateway's admin API. What a changed tool means depends on the gateway's pinning
 * mode, which the list says: under `strict` it is quarantined until accepted here, under `warn` it
 * stays callable (accepting pins the new definition), under `off` nothing is checked.
 */
import { adminBase, adminCall, apiError, args, EXIT_FAILED, EXIT_OK, printJson, table, UsageError } from './common.js';

export const usage = 'airlock tools list [--status pinned|changed] | accept <server>/<tool>   [-c FILE] [--admin URL] [--json]';

type Row = Record<string, unknown>;

export async function tools(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { status: { type: 'string' } });
  const [sub, name] = positionals;
  if (sub !== 'list' && sub !== 'accept') throw new UsageError('tools takes list or accept');
  if (sub === 'list' && positionals.length !== 1) throw new UsageError('tools list takes no arguments');
  if (values.status !== undefined && (sub !== 'list' || (values.status !== 'pinned' && values.status !== 'changed'))) throw new UsageError('--status is pinned or changed, and goes with list');
  let server = '';
  let tool = '';
  if (sub === 'accept') {
    const slash = name?.indexOf('/') ?? -1;
    if (!name || positionals.length !== 2 || slash <= 0 || slash === name.length - 1) throw new UsageError('tools accept needs <server>/<tool> (see tools list)');
    server = name.slice(0, slash);
    tool = name.slice(slash + 1);
  }
  const base = adminBase(values.admin, values.config);
  const r =
    sub === 'list'
      ? await adminCall(base, 'GET', `/api/tools${values.status ? `?status=${values.status}` : ''}`)
      : await adminCall(base, 'POST', '/api/tools/accept', { server, tool });
  if (r.status >= 300) {
    process.stderr.write(`airlock: ${apiError(r.json)}\n`);
    return EXIT_FAILED;
  }
  if (values.json) {
    printJson(r.json);
    return EXIT_OK;
  }
  if (sub === 'accept') {
    const p = r.json['accepted'] as Row;
    process.stdout.write(`accepted ${server}/${tool}: now pinned to ${String(p['fingerprint']).slice(0, 12)}\n`);
    return EXIT_OK;
  }
  const list = r.json['tools'] as Row[];
  const pinning = r.json['pinning'];
  if (list.length === 0) {
    process.stdout.write(pinning === 'off' ? 'no tools pinned (pinning: off, so tool definitions are not checked)\n' : 'no tools pinned yet\n');
    return EXIT_OK;
  }
  process.stdout.write(
    table([
      ['TOOL', 'STATUS', 'FINGERPRINT', 'FIRST SEEN', 'CHANGED'],
      ...list.map((p) => [
        `${String(p['server'])}/${String(p['tool'])}`,
        String(p['status']),
        p['pendingFingerprint'] ? `${String(p['fingerprint']).slice(0, 12)} → ${String(p['pendingFingerprint']).slice(0, 12)}` : String(p['fingerprint']).slice(0, 12),
        String(p['firstSeen']),
        String(p['changedAt'] ?? ''),
      ]),
    ]),
  );
  const note = pinningNote(pinning, list.filter((p) => p['status'] === 'changed').length);
  if (note) process.stdout.write(`\n${note}\n`);
  return EXIT_OK;
}

/** What the changed tools mean under the gateway's pinning mode (strict, the default, when it does not say). */
function pinningNote(pinning: unknown, changed: number): string | undefined {
  if (pinning === 'off') return `pinning: off: tool definitions are not checked and nothing is quarantined; these pins are from when it was on${changed > 0 ? ` (${changed} changed, callable all the same)` : ''}`;
  if (changed === 0) return undefined;
  if (pinning === 'warn') return `${changed} changed tool(s) still callable (pinning: warn: a change raises an alert, nothing is quarantined); review, then pin the new definition: airlock tools accept <server>/<tool>`;
  return `${changed} changed tool(s) quarantined; review, then: airlock tools accept <server>/<tool>`;
}
