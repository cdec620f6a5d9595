/**
 * `airlock approvals list [--status S] [--limit N] | approve <id> [--remember 10m] [--reason R] |
 * deny <id> [--reason R] | watch | remembered | forget <id>` — through the running gateway's admin API.
 */
import { request } from 'undici';
import { APPROVAL_STATUSES } from '../approvals/types.js';
import { parseDuration } from '../config/units.js';
import { adminBase, adminCall, AdminUnreachable, apiError, args, EXIT_FAILED, EXIT_OK, printJson, table, UsageError } from './common.js';

export const usage = 'airlock approvals list [--status pending|approved|denied|expired|cancelled] [--limit N] | approve <id> [--remember 10m] [--reason R] | deny <id> [--reason R] | watch | remembered | forget <id>   [-c FILE] [--admin URL] [--json]';

type Row = Record<string, unknown>;

/** One table row per approval, each followed by its summary (method and URL and body excerpt, tool and arguments …), indented: what a human decides on. */
function rows(list: Row[]): string {
  const lines = table([
    ['ID', 'STATUS', 'AGENT', 'ACTION', 'CREATED', 'EXPIRES', 'DECIDED BY'],
    ...list.map((a) => [String(a['id']), String(a['status']), String(a['agent']), String(a['action']), String(a['createdAt']), String(a['expiresAt']), String(a['decidedBy'] ?? '')]),
  ]).split('\n');
  let out = `${lines[0]!}\n`;
  list.forEach((a, i) => {
    out += `${lines[i + 1]!}\n`;
    const detail = [...(a['user'] ? [`for user ${String(a['user'])}`] : []), ...(a['summary'] ? String(a['summary']).split('\n') : []), ...(a['reason'] ? [`reason: ${String(a['reason'])}`] : [])];
    for (const d of detail) out += `    ${d}\n`;
  });
  return out;
}

function describe(a: Row): string {
  return `${String(a['id'])}  agent ${String(a['agent'])}${a['user'] ? ` for ${String(a['user'])}` : ''}: ${String(a['action'])}\n  ${String(a['summary']).split('\n').join('\n  ')}\n  expires ${String(a['expiresAt'])}\n`;
}

export async function approvals(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { status: { type: 'string' }, remember: { type: 'string' }, reason: { type: 'string' }, limit: { type: 'string' } });
  const [sub, id] = positionals;
  const base = adminBase(values.admin, values.config);
  const done = (r: { status: number; json: Row }, print: () => void): number => {
    if (r.status >= 300) {
      process.stderr.write(`airlock: ${apiError(r.json)}\n`);
      return EXIT_FAILED;
    }
    if (values.json) printJson(r.json);
    else print();
    return EXIT_OK;
  };
  switch (sub) {
    case 'list': {
      if (values.status !== undefined && !(APPROVAL_STATUSES as readonly string[]).includes(values.status)) throw new UsageError(`--status is one of ${APPROVAL_STATUSES.join(', ')}`);
      // As audit query's --limit: a typo is a usage error, not the default limit in silence.
      if (values.limit !== undefined && !(Number.isInteger(Number(values.limit)) && Number(values.limit) >= 1)) throw new UsageError('--limit takes a positive whole number');
      const q = new URLSearchParams();
      if (values.status) q.set('status', values.status);
      if (values.limit) q.set('limit', values.limit);
      const r = await adminCall(base, 'GET', `/api/approvals${q.size ? `?${q}` : ''}`);
      return done(r, () => {
        const list = r.json['approvals'] as Row[];
        process.stdout.write(list.length === 0 ? 'no approvals\n' : rows(list));
      });
    }
    case 'approve':
    case 'deny': {
      if (!id || positionals.length !== 2) throw new UsageError(`approvals ${sub} needs an approval id (see approvals list)`);
      if (values.remember !== undefined && (sub === 'deny' || !(parseDuration(values.remember)! > 0))) throw new UsageError('--remember takes a duration such as 10m, and goes with approve');
      const body: Row = { decision: sub };
      if (values.reason) body['reason'] = values.reason;
      if (values.remember) body['remember'] = values.remember;
      const r = await adminCall(base, 'POST', `/api/approvals/${encodeURIComponent(id)}`, body);
      return done(r, () => process.stdout.write(`${sub === 'approve' ? 'approved' : 'denied'} ${id}: ${String(r.json['action'])}${values.remember ? ` (the same call is approved for ${values.remember})` : ''}\n`));
    }
    case 'remembered': {
      const r = await adminCall(base, 'GET', '/api/approvals/remembered');
      return done(r, () => {
        const list = r.json['remembered'] as Row[];
        process.stdout.write(list.length === 0 ? 'no remembered approvals\n' : table([['ID', 'AGENT', 'ACTION', 'EXPIRES', 'BY'], ...list.map((x) => [String(x['id']), String(x['agent']), String(x['action']), String(x['expiresAt']), String(x['createdBy'])])]));
      });
    }
    case 'forget': {
      if (!id || positionals.length !== 2) throw new UsageError('approvals forget needs a remembered id (see approvals remembered)');
      const r = await adminCall(base, 'DELETE', `/api/approvals/remembered/${encodeURIComponent(id)}`);
      return done(r, () => process.stdout.write(`forgot ${id}\n`));
    }
    case 'watch':
      return watch(base, values.json === true);
    default:
      throw new UsageError('approvals takes list, approve, deny, watch, remembered or forget');
  }
}

/** Prints pending approvals, then each new one as it appears, until interrupted. */
async function watch(base: string, json: boolean): Promise<number> {
  // The event feed first, then the pending list: an approval created in between is then in both
  // (and shown once), where the other order would miss it.
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (process.env['AIRLOCK_ADMIN_TOKEN']) headers['authorization'] = `Bearer ${process.env['AIRLOCK_ADMIN_TOKEN']}`;
  let res;
  try {
    res = await request(`${base}/api/events`, { headers, bodyTimeout: 0 });
  } catch (e) {
    // Said as every other verb says it (not a bare "connect ECONNREFUSED").
    if ((e as { code?: string }).code === 'ECONNREFUSED') throw new AdminUnreachable(`no gateway answers at ${base} (is it running? pass --admin URL)`);
    throw e;
  }
  if (res.statusCode !== 200) {
    await res.body.dump().catch(() => {});
    process.stderr.write(`airlock: the event feed answered ${res.statusCode}\n`);
    return EXIT_FAILED;
  }
  const pending = await adminCall(base, 'GET', '/api/approvals?status=pending');
  if (pending.status !== 200) {
    res.body.destroy();
    process.stderr.write(`airlock: ${apiError(pending.json)}\n`);
    return EXIT_FAILED;
  }
  const shown = new Set<string>();
  const show = (a: Row) => {
    if (shown.has(String(a['id']))) return;
    shown.add(String(a['id']));
    process.stdout.write(json ? `${JSON.stringify(a)}\n` : describe(a));
  };
  for (const a of (pending.json['approvals'] as Row[]).reverse()) show(a);
  let buf = '';
  for await (const chunk of res.body) {
    buf += (chunk as Buffer).toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const type = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (type !== 'approval' || !data) continue;
      const e = JSON.parse(data) as { event: string; approval: Row };
      if (e.event === 'created') show(e.approval);
      else if (!json) process.stdout.write(`${String(e.approval['id'])} ${e.event}${e.approval['decidedBy'] ? ` by ${String(e.approval['decidedBy'])}` : ''}\n`);
      else process.stdout.write(`${JSON.stringify({ event: e.event, ...e.approval })}\n`);
    }
  }
  return EXIT_OK;
}
