/**
 * The console (SPEC section 1: the admin port serves the admin API, metrics and a console): a web
 * page for the people who run the gateway — pending approvals to approve or deny, kill switches,
 * the live exchange feed, agents and keys, alerts, usage and the audit trail.
 *
 * It is three static files (`console/`, copied next to this module by the build) that call the
 * admin API from the browser; it holds no state and no secret of its own. When the admin API needs
 * a token, the page asks for it and keeps it in the tab's sessionStorage.
 *
 * The page is locked down because it shows what agents wrote (approval summaries, actions, audit
 * records): a Content-Security-Policy that allows only its own script and style (so no text an
 * agent wrote can run, even if the page rendered it as markup, which it never does), no framing
 * (an approve button must not be clickable through someone else's page), and no referrer.
 */
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';

interface Asset {
  body: Buffer;
  type: string;
}

const FILES: Record<string, { file: string; type: string }> = {
  '/console/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

let assets: Map<string, Asset> | undefined;

/** The files, read once (they are a few kilobytes and never change while the gateway runs). */
function load(): Map<string, Asset> {
  if (assets) return assets;
  const dir = new URL('./console/', import.meta.url);
  assets = new Map(Object.entries(FILES).map(([path, f]) => [path, { body: readFileSync(new URL(f.file, dir)), type: f.type }]));
  return assets;
}

/** Serves the request if it is for the console (GET or HEAD); returns false otherwise. */
export function serveConsole(path: string, method: string, res: ServerResponse): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  if (path === '/' || path === '/console') {
    res.writeHead(302, { location: '/console/', 'cache-control': 'no-store' });
    res.end();
    return true;
  }
  if (!Object.hasOwn(FILES, path)) return false;
  const a = load().get(path)!;
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': a.type, 'content-length': a.body.length });
  res.end(method === 'HEAD' ? undefined : a.body);
  return true;
}
