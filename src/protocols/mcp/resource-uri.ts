/**
 * Which resource URIs airlock passes on (resources/read). `mcp-resource` rules match the URI as
 * sent, with `/` separating segments, while the server may resolve it as a path (a file server
 * joining it onto its root, say), percent-decoding it first. A URI that could mean something else to
 * such a server than to the rules is refused, as /http refuses such paths (http/route.ts):
 *
 * - in the path (the authority counts as its first segment): dot segments (`.`, `..`), empty
 *   segments (`//`; a trailing `/` is fine), backslashes, malformed percent-encoding, and
 *   percent-encoded `/`, `\`, control characters or unreserved characters (letters, digits,
 *   `-._~`): RFC 3986 says unreserved characters are never encoded, so `%70rivate` is `private`
 *   spelled to slip past a rule on `private/**`, and `%2E%2E` is `..`;
 * - in the query and fragment: dot segments, encoded or not (a server that does not split the query
 *   off before resolving the path would resolve them too); nothing else, so `?next=https://…` or
 *   `?path=a%2Fb` stay ordinary;
 * - anywhere: raw control characters.
 *
 * Other percent-encodings (`%20`, UTF-8 bytes such as `%C3%A9`, `%3F`, `%25` …) are ordinary and
 * kept as sent: they are how servers list such names, and rules match them in that spelling.
 */

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
/** Characters never to be percent-encoded in a path: unreserved ones, and the separators `/` `\`. */
const NOT_TO_ENCODE = /[A-Za-z0-9\-._~/\\]/;

/** Why this resource URI is refused, or undefined when it may be passed on. */
export function resourceUriProblem(uri: string): string | undefined {
  if (/[\0-\x1f\x7f]/.test(uri)) return 'control characters are not allowed in a resource URI';
  const rest = uri.slice(SCHEME.exec(uri)?.[0].length ?? 0);
  const end = rest.search(/[?#]/);
  const hier = end === -1 ? rest : rest.slice(0, end);
  const tail = end === -1 ? '' : rest.slice(end);
  // `scheme://authority/path`: the `//` marks the authority, which may be empty (`file:///x`).
  const hasAuthority = hier.startsWith('//');
  const segments = (hasAuthority ? hier.slice(2) : hier.startsWith('/') ? hier.slice(1) : hier).split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '' && i < segments.length - 1 && !(hasAuthority && i === 0)) return 'empty path segments (//) are not allowed in a resource URI';
    if (s.includes('\\')) return 'backslashes are not allowed in a resource URI path';
    if (s === '.' || s === '..') return 'dot segments (. and ..) are not allowed in a resource URI';
    for (let j = s.indexOf('%'); j !== -1; j = s.indexOf('%', j + 1)) {
      const hex = s.slice(j + 1, j + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return 'the resource URI path has malformed percent-encoding';
      const code = Number.parseInt(hex, 16);
      if (code < 0x20 || code === 0x7f) return 'percent-encoded control characters are not allowed in a resource URI path';
      const c = String.fromCharCode(code);
      if (NOT_TO_ENCODE.test(c)) return `percent-encoded "${c}" (%${hex}) is not allowed in a resource URI path: letters, digits, - . _ ~ are sent as they are, and / \\ . cannot be hidden in a segment`;
    }
  }
  if (tail !== '') {
    for (const part of tail.replace(/%2e/gi, '.').split(/[/\\]|%2f|%5c/i)) {
      if (part === '.' || part === '..') return 'dot segments (. and .., encoded or not) are not allowed in a resource URI, in its query or fragment either';
    }
  }
  return undefined;
}
