/**
 * `/http/<service>/<path>` → service name and a path that is safe to append to the service's base
 * URL. A path whose segments decode to `.` or `..`, or that contains empty segments or backslashes,
 * could escape the base path at the upstream and is refused.
 */

export interface HttpRoute {
  service: string;
  /** As received (still percent-encoded), beginning with `/`; appended to the base path. */
  rawPath: string;
  /** Decoded, for the action and the rules: `repos/acme/app`. */
  path: string;
  /** With the leading `?`, or ''. */
  query: string;
}

export type RouteResult = { ok: true; route: HttpRoute } | { ok: false; problem: string };

/** C0 and C1 controls, DEL, and the line and paragraph separators, decoded: none belongs in a path. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** Parses a request URL that starts with `/http/`. */
export function parseHttpRoute(url: string): RouteResult {
  // A fragment is never part of a request target (RFC 9112 origin-form), yet Node's parser accepts
  // one. Forwarded, `/admin#x` would be judged by the rules as path "admin#x" (slipping past a deny
  // on `admin/**`) while most upstreams serve it as /admin. Refuse it.
  if (url.includes('#')) return { ok: false, problem: 'a fragment (#) is not allowed in the request target; encode it as %23 if it is part of the path' };
  const q = url.indexOf('?');
  const pathPart = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
  const rest = pathPart.slice('/http/'.length);
  const slash = rest.indexOf('/');
  const service = slash === -1 ? rest : rest.slice(0, slash);
  const rawPath = slash === -1 ? '/' : rest.slice(slash);
  if (service === '') return { ok: false, problem: 'the URL names no service: use /http/<service>/<path>' };
  const checked = checkPath(rawPath);
  if (typeof checked !== 'string') return { ok: false, problem: checked.problem };
  return { ok: true, route: { service, rawPath, path: checked, query } };
}

/**
 * A path as received (percent-encoded, beginning with `/`) → its decoded segments joined by `/`,
 * for the action and the rules; or why it is refused. Used for `/http/<service>/<path>` and for
 * forward-proxy requests alike: a rule on `repos/secret/**` must not be passed by `repos/x/../secret`.
 */
export function checkPath(rawPath: string): string | { problem: string } {
  if (rawPath.includes('\\')) return { problem: 'backslashes are not allowed in the path' };
  // Servlet containers (Tomcat, Jetty, Spring) cut `;params` off a segment before they route it:
  // `admin;x/users` would be judged as "admin;x/users" and served as /admin/users, and `..;` as `..`.
  if (rawPath.includes(';')) return { problem: 'a ";" is not allowed in the path (servers may read it as path parameters); encode it as %3B if it is part of a name' };
  const segments = rawPath.slice(1).split('/');
  const decoded: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '' && i < segments.length - 1) return { problem: 'empty path segments (//) are not allowed' };
    let d: string;
    try {
      d = decodeURIComponent(s);
    } catch {
      return { problem: 'the path has malformed percent-encoding' };
    }
    for (const part of d.split(/[/\\]/)) {
      if (part === '.' || part === '..') return { problem: 'dot segments (. and .., encoded or not) are not allowed in the path' };
    }
    if (CONTROL.test(d)) return { problem: 'control characters (and line or paragraph separators) are not allowed in the path' };
    decoded.push(d);
  }
  return decoded.join('/');
}
