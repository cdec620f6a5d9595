/** `airlock explain --agent NAME "<action>"`: the decision for an action and the rules behind it; sends nothing. */
import { canonicalHost } from '../protocols/http/host.js';
import { methodInfo } from '../protocols/a2a/methods.js';
import { compileActionPattern, PatternError, uriMatchForm } from '../policies/rules/pattern.js';
import { args, configPath, EXIT_OK, loadRuntime, printJson, table, UsageError } from './common.js';

export const usage = 'airlock explain --agent NAME "<protocol>: <target>" [-c FILE] [--json]';

const DECISION_WORDS = { allow: 'allowed', deny: 'denied', hold: 'held for approval' } as const;

export function explain(argv: string[]): number {
  const { values, positionals } = args(argv, { agent: { type: 'string', short: 'a' } });
  if (!values.agent || positionals.length !== 1) throw new UsageError('give --agent NAME and one action, such as "http: DELETE github/repos/x"');
  const action = normalise(positionals[0]!);
  const c = loadRuntime(configPath(values.config));
  if (!c.agents.has(values.agent)) throw new UsageError(`no agent named "${values.agent}" in ${c.file}`);
  const d = c.rules.decide(values.agent, action, true);
  const limits = c.targetLimits.filter((t) => t.match(action)).map((t) => t.target);
  if (values.json) {
    printJson({ agent: values.agent, action, decision: d.decision, rule: d.rule ?? null, message: d.message, matched: d.matched, targetLimits: limits });
    return EXIT_OK;
  }
  let out = `${action}\n  agent:    ${values.agent}\n  decision: ${DECISION_WORDS[d.decision]}${d.rule ? ` (rule "${d.rule}")` : d.decision === 'deny' ? ' (no rule allows it: default deny)' : ''}\n  why:      ${d.message}\n`;
  if (d.matched.length > 0) out += `  matching rule entries:\n${table(d.matched.map((m) => ['   ', m.effect, m.rule, m.pattern]))}`;
  if (limits.length > 0) out += `  target limits: ${limits.join(', ')}\n`;
  process.stdout.write(out);
  return EXIT_OK;
}

/**
 * Accepts `http: delete github/x` as `http: DELETE github/x`, a resource URI in the MCP door's
 * spelling, and an A2A 0.3 method name as its 1.0 name (`a2a: travel message/send` →
 * `a2a: travel SendMessage`), as the gateway judges them; checks the shape.
 */
function normalise(action: string): string {
  const m = /^\s*([a-z0-9-]+)\s*:\s*(.+?)\s*$/.exec(action); // digits: `a2a`
  if (!m) throw new UsageError(`"${action}" is not an action; expected "<protocol>: <target>"`);
  let rest = m[2]!;
  if (m[1] === 'http') {
    const [method, ...target] = rest.split(/\s+/);
    if (target.length !== 1) throw new UsageError('an HTTP action is "http: <METHOD> <service>/<path>" (or, in forward-proxy mode, "http: <METHOD> <host>/<path>" and "http: CONNECT <host>:<port>")');
    const t = target[0]!.replace(/^\/+/, '');
    const m2 = method!.toUpperCase();
    // A tunnel's target is host:port, with no path, the host spelt as the forward proxy spells it.
    if (m2 === 'CONNECT') {
      const colon = t.lastIndexOf(':');
      const host = colon > 0 ? canonicalHost(t.slice(0, colon)) : undefined;
      if (host === undefined) throw new UsageError('a tunnel action is "http: CONNECT <host>:<port>"');
      rest = `CONNECT ${host}${t.slice(colon)}`;
    }
    else rest = `${m2} ${t.includes('/') ? t : `${t}/`}`;
  } else if (m[1] === 'mcp-resource') rest = uriMatchForm(rest); // as the MCP door spells it
  else if (m[1] === 'a2a') {
    const [agent, method, ...more] = rest.split(/\s+/);
    const info = method === undefined ? undefined : methodInfo(method);
    if (info && more.length === 0) rest = `${agent!} ${info.method}`;
  }
  const out = `${m[1]}: ${rest}`;
  try {
    compileActionPattern(out);
  } catch (e) {
    if (e instanceof PatternError) throw new UsageError(e.message);
    throw e;
  }
  return out;
}
