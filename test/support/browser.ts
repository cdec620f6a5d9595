/**
 * Test support: a headless Chromium (Debian's `chromium` package) driven by playwright-core, for
 * the console. `.ci/run` installs the package; elsewhere the browser tests are skipped, loudly,
 * when no Chromium is found, unless AIRLOCK_REQUIRE_BROWSER=1 (set by CI), where they fail instead.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

const CANDIDATES = [process.env['AIRLOCK_CHROMIUM'], '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** The Chromium to use, or why there is none. */
export function findChromium(): { path: string } | { missing: string } {
  const path = CANDIDATES.find((p): p is string => p !== undefined && p !== '' && existsSync(p));
  if (path) return { path };
  const missing = 'no Chromium found (install Debian\'s "chromium" package, or set AIRLOCK_CHROMIUM)';
  if (process.env['AIRLOCK_REQUIRE_BROWSER'] === '1') throw new Error(missing);
  return { missing };
}

/** A headless Chromium with the flags a closed network needs (no background calls home). */
export function launchBrowser(path: string): Promise<Browser> {
  return chromium.launch({
    executablePath: path,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}
