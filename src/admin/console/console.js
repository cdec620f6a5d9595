// The airlock console: a client of the admin API (SPEC section 9), served by the admin port itself.
// Everything shown comes from the API and is put on the page as text (textContent, never markup):
// approval summaries, actions and audit records quote what agents sent.
'use strict';

const $ = (id) => document.getElementById(id);
const LIVE_MAX = 200;
/** How long the event feed may stay silent before it is taken for dead (the gateway's keep-alive comes every 15 s). */
const FEED_SILENCE_MS = 40_000;

let token = sessionStorage.getItem('airlock.token') ?? '';
let feed; // the AbortController of the open /api/events request
let feedRun = 0; // which runFeed() loop is the live one: an older one, asleep before reconnecting, stops when it wakes
let started = false;

// ---- building the page ------------------------------------------------------------------------

/** An element with attributes, listeners (`onclick`…) and children; strings become text nodes. */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...(rows.length > 0 ? rows : [el('tr', { class: 'empty' }, el('td', { colspan: 20 }, empty))]));
}

const time = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '—');

function left(iso) {
  const s = Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

let noticeTimer;
function notice(text, kind = 'ok') {
  const n = $('notice');
  n.textContent = text;
  n.dataset.kind = kind;
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (n.hidden = true), kind === 'error' ? 10000 : 4000);
}

// ---- the admin API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Who the gateway records as approver or killer, after the admin token's name (like the CLI's `cli:<user>`).
 * Percent-encoded: a header carries only Latin-1, and fetch() throws on a name such as 张伟.
 */
function operator() {
  const name = $('operator').value.trim();
  return name ? `console:${encodeURIComponent(name)}` : 'console';
}

function headers(json) {
  const h = { 'x-airlock-operator': operator() };
  if (token) h.authorization = `Bearer ${token}`;
  if (json) h['content-type'] = 'application/json';
  return h;
}

async function api(method, path, body) {
  const r = await fetch(path, { method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  let json = {};
  try {
    json = await r.json();
  } catch {
    // an empty or non-JSON answer: the status says enough
  }
  if (r.status === 401) {
    showLogin(token ? 'The admin token was not accepted.' : '');
    throw new ApiError(401, 'unauthenticated', 'the admin API needs a token');
  }
  if (!r.ok) throw new ApiError(r.status, json.error?.code, json.error?.message ?? `HTTP ${r.status}`);
  return json;
}

/** Runs an action from a button; its error becomes a notice. */
async function act(button, what) {
  if (button) button.disabled = true;
  try {
    await what();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) notice(e.message, 'error');
  } finally {
    if (button) button.disabled = false;
  }
}

/**
 * A loader that events call: while a load is in flight, the calls share one more load after it. So
 * answers are applied in the order they were asked for (an older list, answered late, would drop
 * the card of a call held since, or bring back one decided since), and a burst of holds costs two
 * loads, not one per hold.
 */
function coalesced(load) {
  let running; // the load in flight
  let queued; // the one load to run after it
  const run = () => {
    if (!running) {
      running = load().finally(() => (running = undefined));
      return running;
    }
    queued ??= running
      .catch(() => {})
      .then(() => {
        queued = undefined;
        return run();
      });
    return queued;
  };
  return run;
}

// ---- token ------------------------------------------------------------------------------------

function showLogin(message) {
  stopFeed();
  started = false;
  $('login').hidden = false;
  $('tabs').hidden = true;
  $('main').hidden = true;
  $('login-error').textContent = message;
  $('token').focus();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem('airlock.token', token);
  $('token').value = '';
  start();
});

$('operator').value = localStorage.getItem('airlock.operator') ?? '';
$('operator').addEventListener('change', () => localStorage.setItem('airlock.operator', $('operator').value.trim()));

// ---- approvals --------------------------------------------------------------------------------

/** The cards of pending approvals, by id: kept across refreshes so a reason being typed survives. */
const cards = new Map();

/** Pending approvals and the rest of the approvals tab; see coalesced() for why. */
const loadApprovals = coalesced(async () => {
  // Decided ones by status: among the newest approvals of all kinds, a crowd of pending ones would hide them.
  const [pending, approved, denied, expired, remembered] = await Promise.all([
    api('GET', '/api/approvals?status=pending&limit=1000'),
    api('GET', '/api/approvals?status=approved&limit=30'),
    api('GET', '/api/approvals?status=denied&limit=30'),
    api('GET', '/api/approvals?status=expired&limit=30'),
    api('GET', '/api/approvals/remembered'),
  ]);
  const when = (a) => a.decidedAt ?? a.createdAt;
  const recent = { approvals: [...approved.approvals, ...denied.approvals, ...expired.approvals].sort((a, b) => (when(a) < when(b) ? 1 : -1)).slice(0, 30) };
  showPending(pending.approvals);
  fill(
    $('decided').tBodies[0],
    recent.approvals
      .filter((a) => a.status !== 'pending')
      .map((a) => el('tr', {}, el('td', {}, time(a.decidedAt ?? a.createdAt)), el('td', {}, a.agent), el('td', {}, el('code', {}, a.action)), el('td', { class: `status-${a.status}` }, a.status), el('td', {}, a.decidedBy ?? '—'), el('td', {}, a.reason ?? ''))),
    'Nothing decided yet.',
  );
  fill(
    $('remembered').tBodies[0],
    remembered.remembered.map((g) =>
      el('tr', {}, el('td', {}, g.agent), el('td', {}, el('code', {}, g.action)), el('td', {}, g.createdBy), el('td', {}, time(g.expiresAt)), el('td', {}, el('button', { onclick: (ev) => act(ev.target, () => forget(g)) }, 'Revoke'))),
    ),
    'No remembered approvals.',
  );
});

function showPending(list) {
  const box = $('approvals-list');
  const ids = new Set(list.map((a) => a.id));
  for (const [id, card] of cards) {
    if (!ids.has(id)) {
      card.remove();
      cards.delete(id);
    }
  }
  // Oldest first: the call that has waited longest is the first one to decide.
  for (const a of [...list].sort((x, y) => (x.createdAt < y.createdAt ? -1 : 1))) {
    if (!cards.has(a.id)) {
      const card = approvalCard(a);
      cards.set(a.id, card);
      box.append(card);
    }
  }
  $('pending-count').textContent = String(list.length);
  $('pending-count').dataset.some = String(list.length > 0);
  if (list.length === 0) box.replaceChildren(el('p', { class: 'empty' }, 'No call is waiting.'));
  else box.querySelector(':scope > p.empty')?.remove();
}

function approvalCard(a) {
  const reason = el('input', { class: 'reason', placeholder: 'reason (the agent sees it on a deny)', maxlength: 1000, autocomplete: 'off' });
  const remember = el(
    'select',
    { class: 'remember', title: 'approve the same agent, action and arguments without asking, for a while' },
    el('option', { value: '' }, 'just this call'),
    el('option', { value: '10m' }, 'and for 10 minutes'),
    el('option', { value: '1h' }, 'and for 1 hour'),
    el('option', { value: '8h' }, 'and for 8 hours'),
    el('option', { value: '1d' }, 'and for 1 day'),
  );
  const expires = el('span', { class: 'expires', 'data-expires': a.expiresAt }, `expires in ${left(a.expiresAt)}`);
  const decide = (decision) => (ev) =>
    act(ev.target, async () => {
      const body = { decision };
      if (reason.value.trim()) body.reason = reason.value.trim();
      if (decision === 'approve' && remember.value) body.remember = remember.value;
      try {
        await api('POST', `/api/approvals/${encodeURIComponent(a.id)}`, body);
        notice(`${decision === 'approve' ? 'Approved' : 'Denied'}: ${a.action}`);
      } finally {
        await loadApprovals().catch(() => {});
      }
    });
  const who = [a.team ? `${a.agent} (team ${a.team})` : a.agent, a.user ? `for user ${a.user}` : '', a.session ? `session ${a.session}` : ''].filter(Boolean).join(' · ');
  return el(
    'article',
    { class: 'approval', 'data-id': a.id },
    el('div', { class: 'meta' }, el('strong', { class: 'agent' }, who), el('span', {}, a.protocol), a.rule ? el('span', {}, `rule ${a.rule}`) : null, el('span', { class: 'since', title: 'when the call was held' }, `held at ${clock(a.createdAt)}`), el('code', { class: 'id', title: 'the approval id, as airlock approvals approve|deny takes it' }, a.id), expires),
    el('code', { class: 'action' }, a.action),
    el('pre', { class: 'summary' }, a.summary),
    el('div', { class: 'row' }, reason, remember, el('button', { class: 'approve', onclick: decide('approve') }, 'Approve'), el('button', { class: 'deny danger', onclick: decide('deny') }, 'Deny')),
  );
}

async function forget(g) {
  await api('DELETE', `/api/approvals/remembered/${encodeURIComponent(g.id)}`);
  notice(`Revoked the remembered approval of ${g.action}`);
  await loadApprovals();
}

setInterval(() => {
  for (const e of document.querySelectorAll('.approval .expires')) e.textContent = `expires in ${left(e.dataset.expires)}`;
}, 1000);

// ---- kill switches ----------------------------------------------------------------------------

const loadKills = coalesced(async () => {
  const { kills } = await api('GET', '/api/kill');
  $('kill-count').textContent = String(kills.length);
  $('kill-count').dataset.some = String(kills.length > 0);
  document.body.dataset.killed = String(kills.some((k) => k.scope === 'all'));
  fill(
    $('kills').tBodies[0],
    kills.map((k) => el('tr', {}, el('td', {}, k.scope), el('td', {}, el('code', {}, k.value)), el('td', {}, k.reason ?? ''), el('td', {}, k.by ?? '—'), el('td', {}, time(k.createdAt)), el('td', {}, el('button', { onclick: (ev) => act(ev.target, () => lift(k)) }, 'Lift')))),
    'No kill switch is on.',
  );
});

async function lift(k) {
  await api('DELETE', '/api/kill', k.scope === 'all' ? { all: true } : { [k.scope]: k.value });
  notice(`Lifted the kill switch on ${k.scope === 'all' ? 'everything' : `${k.scope} ${k.value}`}`);
  await loadKills();
}

$('kill-scope').addEventListener('change', () => ($('kill-value').disabled = $('kill-scope').value === 'all'));
$('kill-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const scope = $('kill-scope').value;
  const value = $('kill-value').value.trim();
  const reason = $('kill-reason').value.trim();
  if (scope !== 'all' && !value) return notice(`Name the ${scope} to stop.`, 'error');
  if (scope === 'all' && !confirm('Stop every call of every agent, now?')) return;
  const body = scope === 'all' ? { all: true } : { [scope]: value };
  if (reason) body.reason = reason;
  act(ev.submitter, async () => {
    const r = await api('POST', '/api/kill', body);
    notice(`Kill switch on ${scope === 'all' ? 'everything' : `${scope} ${value}`}: ${r.aborted ?? 0} call(s) in flight cut`);
    $('kill-value').value = '';
    $('kill-reason').value = '';
    await loadKills();
  });
});

// ---- live exchanges ---------------------------------------------------------------------------

/** Exchanges received and not yet on the page: drawn together, a few times a second (a busy gateway ends thousands a second). */
let unshown = [];

function addExchange(r) {
  unshown.push(r);
  if (unshown.length > LIVE_MAX) unshown = unshown.slice(-LIVE_MAX);
  if (unshown.length === 1) setTimeout(showExchanges, 150);
}

function showExchanges() {
  const tbody = $('live').tBodies[0];
  tbody.querySelector('tr.empty')?.remove();
  const rows = unshown.reverse().map((r) =>
    el(
      'tr',
      { 'data-id': r.id },
      el('td', {}, clock(r.ts)),
      el('td', {}, r.agent ?? '—', r.node ? el('span', { class: 'node' }, ` @${r.node}`) : null),
      el('td', {}, r.protocol),
      el('td', {}, el('code', {}, r.action ?? '')),
      el('td', { class: `decision-${r.decision}` }, r.decision),
      el('td', {}, r.status ?? r.code ?? ''),
      el('td', {}, typeof r.durationMs === 'number' ? r.durationMs.toFixed(1) : ''),
    ),
  );
  unshown = [];
  tbody.prepend(...rows);
  while (tbody.rows.length > LIVE_MAX) tbody.lastElementChild.remove();
}

// ---- agents and keys --------------------------------------------------------------------------

async function loadAgents() {
  const [{ agents }, { keys }] = await Promise.all([api('GET', '/api/agents'), api('GET', '/api/keys')]);
  fill(
    $('agents').tBodies[0],
    agents.map((a) => {
      const expires = el('select', { title: 'when the new key expires' }, el('option', { value: '' }, 'never expires'), el('option', { value: '1d' }, '1 day'), el('option', { value: '30d' }, '30 days'), el('option', { value: '90d' }, '90 days'));
      return el(
        'tr',
        { 'data-agent': a.name },
        el('td', {}, a.name),
        el('td', {}, a.team ?? '—'),
        el('td', {}, a.limits.requests ?? '—'),
        el('td', {}, a.limits.tokens ?? '—'),
        el('td', {}, a.limits.budget ?? '—'),
        el('td', {}, a.limits.concurrency ?? '—'),
        el('td', {}, String(a.keys)),
        el('td', { class: 'row' }, expires, el('button', { onclick: (ev) => act(ev.target, () => createKey(a.name, expires.value)) }, 'New key')),
      );
    }),
    'No agents are declared.',
  );
  fill(
    $('keys').tBodies[0],
    keys.map((k) =>
      el(
        'tr',
        { 'data-key': k.id },
        el('td', {}, el('code', {}, k.id)),
        el('td', {}, k.agent),
        el('td', {}, el('code', {}, k.prefix)),
        el('td', {}, k.source),
        el('td', {}, time(k.createdAt)),
        el('td', {}, k.expiresAt ? time(k.expiresAt) : 'never'),
        el('td', { class: `key-${k.status}` }, k.status),
        el('td', {}, k.source !== 'config' && k.status === 'active' ? el('button', { class: 'danger', onclick: (ev) => act(ev.target, () => revoke(k)) }, 'Revoke') : null),
      ),
    ),
    'No keys.',
  );
}

async function createKey(agent, expires) {
  const k = await api('POST', `/api/agents/${encodeURIComponent(agent)}/keys`, expires ? { expires } : {});
  $('new-key-agent').textContent = agent;
  $('new-key-value').textContent = k.key;
  $('new-key').hidden = false;
  $('new-key').scrollIntoView({ block: 'nearest' });
  await loadAgents();
}

async function revoke(k) {
  if (!confirm(`Revoke key ${k.id} of ${k.agent}? Its next request is refused.`)) return;
  await api('DELETE', `/api/keys/${encodeURIComponent(k.id)}`);
  notice(`Revoked key ${k.id}`);
  await loadAgents();
}

// ---- MCP tool pins ----------------------------------------------------------------------------

/** What "changed" means under the gateway's pinning mode. */
const CHANGED = { strict: 'changed: quarantined', warn: 'changed: still callable (pinning: warn)', off: 'changed (pinning: off, callable)' };

async function loadTools() {
  const { pinning, tools } = await api('GET', '/api/tools');
  const changed = tools.filter((p) => p.status === 'changed');
  $('tools-count').textContent = String(changed.length);
  $('tools-count').dataset.some = String(changed.length > 0);
  // Changed tools first: they are the ones waiting for someone.
  const rows = [...changed, ...tools.filter((p) => p.status !== 'changed')].map((p) =>
    el(
      'tr',
      { 'data-tool': `${p.server}/${p.tool}` },
      el('td', {}, p.server),
      el('td', {}, p.tool),
      el('td', { class: `pin-${p.status}` }, p.status === 'changed' ? CHANGED[pinning] : 'pinned'),
      el('td', {}, time(p.firstSeen)),
      el('td', {}, time(p.changedAt)),
      el('td', {}, el('code', { title: p.pendingFingerprint ? `${p.fingerprint} → ${p.pendingFingerprint}` : p.fingerprint }, p.pendingFingerprint ? `${p.fingerprint.slice(0, 12)} → ${p.pendingFingerprint.slice(0, 12)}` : p.fingerprint.slice(0, 12))),
      el('td', {}, p.status === 'changed' ? el('button', { onclick: (ev) => act(ev.target, () => acceptTool(p, pinning)) }, 'Accept') : null),
    ),
  );
  fill($('tools').tBodies[0], rows, 'No MCP tool has been seen yet.');
}

async function acceptTool(p, pinning) {
  if (!confirm(`Accept the new definition of ${p.server}/${p.tool}? It becomes the pinned one${pinning === 'strict' ? ', and agents allowed to call the tool can call it again' : ''}.`)) return;
  await api('POST', '/api/tools/accept', { server: p.server, tool: p.tool });
  notice(`Accepted the new definition of ${p.server}/${p.tool}`);
  await loadTools();
}

$('new-key-done').addEventListener('click', () => {
  // The key is not kept anywhere on the page once it has been copied.
  $('new-key-value').textContent = '';
  $('new-key').hidden = true;
});

// ---- alerts, usage, audit ---------------------------------------------------------------------

async function loadAlerts() {
  const { alerts } = await api('GET', '/api/alerts?limit=200');
  fill(
    $('alerts').tBodies[0],
    alerts.map((a) => el('tr', {}, el('td', {}, time(a.ts)), el('td', { class: `severity-${a.severity}` }, a.severity), el('td', {}, a.kind), el('td', {}, a.agent ?? '—'), el('td', {}, a.message))),
    'No alerts.',
  );
}

async function loadUsage() {
  const by = $('usage-by').value;
  const since = $('usage-since').value;
  const u = await api('GET', `/api/usage?by=${encodeURIComponent(by)}${since ? `&since=${encodeURIComponent(since)}` : ''}`);
  $('usage-key').textContent = by;
  // Where the calls went: "http 3 · llm 2" (by model every call is an LLM call).
  const protocols = (g) => Object.entries(g.protocols).map(([p, n]) => `${p} ${n}`).join(' · ');
  const cells = (g) => [el('td', {}, String(g.requests)), el('td', {}, String(g.refused)), el('td', {}, protocols(g)), el('td', {}, String(g.inputTokens)), el('td', {}, String(g.outputTokens)), el('td', {}, g.costUsd.toFixed(6))];
  fill($('usage').tBodies[0], u.groups.map((g) => el('tr', {}, el('td', {}, g[by] ?? '—'), ...cells(g))), 'No calls in this period.');
  $('usage').tFoot.replaceChildren(el('tr', {}, el('th', {}, 'total'), ...cells(u.total)));
}
$('usage-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  act(ev.submitter, loadUsage);
});

async function loadAudit() {
  const q = new URLSearchParams({ limit: '100' });
  for (const [name, id] of [['agent', 'audit-agent'], ['protocol', 'audit-protocol'], ['decision', 'audit-decision'], ['since', 'audit-since']]) {
    const v = $(id).value.trim();
    if (v) q.set(name, v);
  }
  const { records } = await api('GET', `/api/audit?${q}`);
  $('audit-record').hidden = true;
  fill(
    $('audit').tBodies[0],
    records.map((r) =>
      el(
        'tr',
        { class: 'clickable', title: 'show the whole record', onclick: () => showRecord(r) },
        el('td', {}, r.node ? `${r.node}:${r.seq}` : String(r.seq)),
        el('td', {}, time(r.ts)),
        el('td', {}, r.phase),
        el('td', {}, r.agent ?? '—'),
        el('td', {}, r.protocol),
        el('td', {}, el('code', {}, r.action ?? '')),
        el('td', { class: `decision-${r.decision}` }, r.decision),
        el('td', {}, r.status ?? ''),
        el('td', {}, r.rule ?? ''),
      ),
    ),
    'No records match.',
  );
}
function showRecord(r) {
  $('audit-record').textContent = JSON.stringify(r, null, 2);
  $('audit-record').hidden = false;
}
$('audit-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  act(ev.submitter, loadAudit);
});

// ---- tabs -------------------------------------------------------------------------------------

const LOADERS = { approvals: loadApprovals, kill: loadKills, live: async () => {}, agents: loadAgents, tools: loadTools, alerts: loadAlerts, usage: loadUsage, audit: loadAudit };

function currentTab() {
  const t = location.hash.slice(1);
  return Object.hasOwn(LOADERS, t) ? t : 'approvals';
}

function showTab() {
  const tab = currentTab();
  for (const p of document.querySelectorAll('[data-panel]')) p.hidden = p.dataset.panel !== tab;
  for (const a of document.querySelectorAll('[data-tab]')) a.classList.toggle('active', a.dataset.tab === tab);
  if (started) act(null, LOADERS[tab]);
}
window.addEventListener('hashchange', showTab);

// ---- the live feed ----------------------------------------------------------------------------

function setFeed(state) {
  $('feed-state').textContent = `feed: ${state}`;
  $('feed-state').dataset.state = state;
}

function stopFeed() {
  feedRun++;
  feed?.abort();
  feed = undefined;
  setFeed('off');
}

/** Reloads that events ask for: one at a time each (see coalesced()), their errors shown as notices. */
const quietly = (load) => () => act(null, load);
const refresh = { approvals: quietly(loadApprovals), kills: quietly(loadKills), tools: quietly(coalesced(loadTools)), alerts: quietly(coalesced(loadAlerts)), agents: quietly(coalesced(loadAgents)) };

function onEvent(type, data) {
  if (type === 'exchange') return addExchange(data);
  if (type === 'approval') return refresh.approvals();
  if (type === 'kill' || type === 'unkill') return refresh.kills();
  if (type === 'tool_accepted' || (type === 'alert' && data.kind === 'tool_changed')) refresh.tools();
  if (type === 'alert' && currentTab() === 'alerts') return refresh.alerts();
  if (type === 'config' && currentTab() === 'agents') return refresh.agents();
}

/** Reads /api/events (fetch rather than EventSource, which cannot send the token) and reconnects when it drops. */
async function runFeed() {
  const run = ++feedRun;
  let wait = 500;
  while (started && run === feedRun) {
    const ctl = new AbortController();
    feed = ctl;
    // The gateway sends a keep-alive every 15 s: a feed silent for longer has died without a word
    // (a laptop that slept, a NAT that forgot the connection), and is replaced.
    let heard = Date.now();
    let silent = false;
    const watchdog = setInterval(() => {
      if (Date.now() - heard < FEED_SILENCE_MS) return;
      silent = true;
      ctl.abort();
    }, 5000);
    try {
      const r = await fetch('/api/events', { headers: headers(false), signal: ctl.signal, cache: 'no-store' });
      if (r.status === 401) return showLogin('The admin token was not accepted.');
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      setFeed('live');
      wait = 500;
      // What happened while the feed was down.
      refresh.approvals();
      refresh.kills();
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let crLast = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        heard = Date.now();
        // SSE lines end in LF, CRLF or CR (a proxy in front of the admin port may rewrite them):
        // made LF here, a CRLF split across two reads included.
        const text = crLast && value.startsWith('\n') ? value.slice(1) : value;
        crLast = text.endsWith('\r');
        buf += text.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let type = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            // `field: value` or `field:value` (one space after the colon is not part of the value).
            const colon = line.indexOf(':');
            if (colon <= 0) continue;
            const field = line.slice(0, colon);
            const v = line[colon + 1] === ' ' ? line.slice(colon + 2) : line.slice(colon + 1);
            if (field === 'event') type = v;
            else if (field === 'data') data.push(v);
          }
          if (data.length > 0) {
            try {
              onEvent(type, JSON.parse(data.join('\n')));
            } catch {
              // one bad event must not end the feed
            }
          }
        }
      }
    } catch {
      if (ctl.signal.aborted && !silent) return;
    } finally {
      clearInterval(watchdog);
    }
    if (feed !== ctl) return;
    setFeed('reconnecting');
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 10000);
  }
}

// ---- start ------------------------------------------------------------------------------------

async function status() {
  try {
    const r = await fetch('/readyz', { cache: 'no-store' });
    const s = (await r.json()).status;
    $('status').textContent = s;
    $('status').dataset.state = s;
  } catch {
    $('status').textContent = 'unreachable';
    $('status').dataset.state = 'unreachable';
  }
}

async function start() {
  try {
    await Promise.all([loadApprovals(), loadKills(), loadTools()]);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) notice(e.message, 'error');
    return;
  }
  started = true;
  $('login').hidden = true;
  $('tabs').hidden = false;
  $('main').hidden = false;
  showTab();
  runFeed();
}

status();
setInterval(status, 10000);
// A backstop for a feed that is down: pending approvals are the page's first job.
setInterval(() => started && $('feed-state').dataset.state !== 'live' && refresh.approvals(), 5000);
start();
