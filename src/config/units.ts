/** Parsers for the config's human units: durations `30s`, sizes `10mb`, rates `600/min`, amounts `200k`. */

const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, hour: 3_600_000, d: 86_400_000, day: 86_400_000 };
const SIZE_BYTES: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const WINDOW_MS: Record<string, number> = { s: 1000, sec: 1000, min: 60_000, m: 60_000, hour: 3_600_000, h: 3_600_000, day: 86_400_000, d: 86_400_000 };

/** `30s` → 30000; a bare number is milliseconds. Returns undefined when malformed. */
export function parseDuration(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|hour|d|day)\s*$/i.exec(v);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_MS[m[2]!.toLowerCase()]!);
}

/** `10mb` → 10485760; a bare number is bytes. */
export function parseSize(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(v);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_BYTES[(m[2] ?? 'b').toLowerCase()]!);
}

/** `200k` → 200000, `1.5m` → 1500000. */
export function parseAmount(v: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([km])?\s*$/i.exec(v);
  if (!m) return undefined;
  const mult = m[2] === undefined ? 1 : m[2].toLowerCase() === 'k' ? 1e3 : 1e6;
  return Number(m[1]) * mult;
}

export interface Rate {
  limit: number;
  windowMs: number;
  /** As written, for messages. */
  text: string;
}

/** `600/min`, `200k/hour`, `10/s`. */
export function parseRate(v: string): Rate | undefined {
  const m = /^\s*([\d.]+\s*[km]?)\s*\/\s*(s|sec|min|m|hour|h|day|d)\s*$/i.exec(v);
  if (!m) return undefined;
  const limit = parseAmount(m[1]!);
  if (limit === undefined || limit <= 0) return undefined;
  return { limit, windowMs: WINDOW_MS[m[2]!.toLowerCase()]!, text: v.trim() };
}

/** Human duration for messages: 90000 → "1m30s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
}

/** `since` as a duration back from now (`1d`) or an ISO time → ISO; undefined when absent; an Error when malformed. */
export function parseSince(since: string | null | undefined, now = Date.now()): string | undefined | Error {
  if (since === null || since === undefined || since === '') return undefined;
  const rel = parseDuration(since);
  const t = rel !== undefined ? now - rel : Date.parse(since);
  if (Number.isNaN(t)) return new Error('since must be a duration such as 1d or 12h, or an ISO time');
  return new Date(t).toISOString();
}
