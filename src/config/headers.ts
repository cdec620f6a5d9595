/** Checks for configured headers and credentials, shared by every section that injects them. */
import type { PathKey } from './load.js';

const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const UNSAFE_VALUE_RE = /[\r\n\0]/;

type Fail = (path: readonly PathKey[], problem: string) => never;

/** Validates configured headers (at `path`.headers) and returns them with lower-cased names. */
export function compileHeaders(headers: Record<string, string> | undefined, path: readonly PathKey[], fail: Fail): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (!HEADER_NAME_RE.test(k)) fail([...path, 'headers', k], 'not a valid header name');
    if (UNSAFE_VALUE_RE.test(v)) fail([...path, 'headers', k], 'header values cannot contain CR, LF or NUL');
    out.push([k.toLowerCase(), v]);
  }
  return out;
}

/** A credential that will be sent in a header must not be able to inject another one. */
export function checkHeaderSafe(value: string, path: readonly PathKey[], fail: Fail, what: string): void {
  if (UNSAFE_VALUE_RE.test(value)) fail(path, `${what} cannot contain CR, LF or NUL`);
}
