/**
 * Action patterns (SPEC section 3) compiled to regular expressions once, at config load.
 *
 * An action is `<protocol>: <target>`. Targets use globs: `*` within a `/` segment, `**` across
 * segments; a trailing `/**` also matches the bare prefix. HTTP patterns start with a method list
 * (`GET,HEAD` or `*`); an A2A pattern without a method matches every method.
 */

export type Matcher = (subject: string) => boolean;

const PROTOCOLS = new Set(['llm', 'mcp', 'mcp-resource', 'mcp-prompt', 'a2a', 'http', '*']);

/** A pattern that cannot be compiled; the message says why. */
export class PatternError extends Error {}

function escapeRe(s: string): string {
  return s.replace(/[.+^${}()|[\]\\]/g, '\\$&');
}

/** Glob text to a regex source: `**` spans `/`, `*` and `?` do not. */
export function globSource(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        // `/**` at the end matches the prefix itself too: `repos/**` covers `repos`.
        if (i === glob.length - 1 && out.endsWith('/')) out = `${out.slice(0, -1)}(?:/.*)?`;
        else out += '.*';
      } else out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else out += escapeRe(c);
  }
  return out;
}

/** Compiles a plain glob (agent names and the like). */
export function compileGlob(glob: string): Matcher {
  if (!/[*?]/.test(glob)) return (s) => s === glob;
  const re = new RegExp(`^${globSource(glob)}$`, 's');
  return (s) => re.test(s);
}

/** Compiles an action pattern such as `http: POST,PUT github/repos/**` or `mcp: github/get_*`. */
export function compileActionPattern(pattern: string): Matcher {
  // Digits are allowed in the protocol name: `a2a` has one (SPEC section 3).
  const m = /^\s*([a-z0-9*-]+)\s*:\s*(.*?)\s*$/.exec(pattern);
  if (!m) throw new PatternError(`"${pattern}" is not an action pattern; expected "<protocol>: <target>", such as "http: GET github/**"`);
  const protocol = m[1]!;
  const rest = m[2]!;
  if (!PROTOCOLS.has(protocol)) throw new PatternError(`"${pattern}": unknown protocol "${protocol}" (one of llm, mcp, mcp-resource, mcp-prompt, a2a, http)`);
  if (rest === '') throw new PatternError(`"${pattern}": the target is empty`);
  let targetSrc: string;
  if (protocol === 'http') targetSrc = httpTarget(pattern, rest);
  else if (protocol === 'a2a') {
    const [agent, method, extra] = rest.split(/\s+/);
    if (extra !== undefined) throw new PatternError(`"${pattern}": an A2A pattern is "<agent> [method]"`);
    targetSrc = `${globSource(agent!)}${method === undefined ? '(?: .*)?' : ` ${globSource(method)}`}`;
  } else if (protocol === '*') targetSrc = rest === '*' || rest === '**' ? '.*' : globSource(rest);
  else if (protocol === 'mcp-resource') targetSrc = globSource(uriMatchForm(rest));
  else targetSrc = globSource(rest);
  const protoSrc = protocol === '*' ? '[a-z0-9-]+' : escapeRe(protocol);
  // 's': a `**` (`.*`) must span line terminators (U+2028 and the like) as `*` does; without it a
  // deny on `repos/secret/**` missed `repos/secret/\u2028`.
  const re = new RegExp(`^${protoSrc}: ${targetSrc}$`, 's');
  return (s) => re.test(s);
}

/** Characters a URI may hold as they are (RFC 3986 unreserved, reserved and `%`), plus `{}` of URI templates. */
const URI_RAW = /[^A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%{}]+/g;

/**
 * The one spelling of a resource URI (or a pattern for one) that `mcp-resource` actions are matched
 * in: hex digits of percent-encodings in upper case, and characters a URI cannot hold as they are
 * (spaces, non-ASCII letters) percent-encoded as UTF-8. A server that decodes URIs reads
 * `caf%c3%a9`, `caf%C3%A9` and `café` alike, so a deny rule must not tell them apart either
 * (RFC 3986 section 6.2.2: case and percent-encoding normalisation). The URI itself is forwarded as sent.
 */
export function uriMatchForm(uri: string): string {
  return uri.replace(/%[0-9a-f]{2}/gi, (m) => m.toUpperCase()).replace(URI_RAW, (m) => {
    let out = '';
    for (const b of Buffer.from(m, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    return out;
  });
}

/** The action of reading resource `uri` (or a template) on MCP server `server`, in the spelling rules match. */
export function mcpResourceAction(server: string, uri: string): string {
  return `mcp-resource: ${server}/${uriMatchForm(uri)}`;
}

function httpTarget(pattern: string, rest: string): string {
  const parts = rest.split(/\s+/);
  let methods = '*';
  let target: string;
  if (parts.length === 1) target = parts[0]!;
  else if (parts.length === 2) [methods, target] = parts as [string, string];
  else throw new PatternError(`"${pattern}": an HTTP pattern is "<METHODS> <service>/<path>", such as "GET,HEAD github/repos/**"`);
  let methodSrc: string;
  if (methods === '*') methodSrc = '[A-Z]+';
  else {
    const list = methods.split(',').map((x) => x.trim().toUpperCase());
    for (const x of list) if (!/^[A-Z]+$/.test(x)) throw new PatternError(`"${pattern}": "${x}" is not an HTTP method`);
    methodSrc = `(?:${list.join('|')})`;
  }
  return `${methodSrc} ${globSource(target)}`;
}
