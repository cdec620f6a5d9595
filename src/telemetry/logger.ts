/**
 * Structured JSON logs (pino) on stderr, so stdout carries only the human lines (`listening on`).
 * Known secret-bearing fields are redacted wherever they appear; code never logs keys or headers.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

const REDACT = [
  'key',
  'token',
  'authorization',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers["proxy-authorization"]',
  '*.authorization',
  '*.token',
  '*.key',
];

/** A logger at `level`; `destination` defaults to stderr. */
export function createLogger(level: string, destination: number | NodeJS.WritableStream = 2): Logger {
  const dest = typeof destination === 'number' ? pino.destination({ fd: destination, sync: false }) : destination;
  return pino({ level, base: { name: 'airlock' }, redact: { paths: REDACT, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}
