/**
 * Reads a config file: YAML with line positions, `${env:NAME}` / `${file:path}` interpolation,
 * schema validation. Every error names the file, the line and the key.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import { configSchema, type ConfigFile } from './schema.js';
import type { z } from 'zod';

/** A config that cannot be used; `message` reads `FILE:LINE: KEY: problem`. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${key ? `${key}: ` : ''}${problem}`);
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  file: string;
  /** Directory relative paths in the config resolve against. */
  baseDir: string;
  config: ConfigFile;
  /** Throws a ConfigError for the key at `path`, with its line. */
  fail(path: readonly PathKey[], problem: string): never;
}

export type PathKey = string | number;

function keyPath(path: readonly PathKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

function lineOf(doc: Document, lc: LineCounter, path: readonly PathKey[]): number | undefined {
  // Walk up the path until a node with a position is found (a missing key has none).
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
  }
  return undefined;
}

const INTERPOLATION = /\$\{(env|file):([^}]+)\}/g;

/** Replaces `${env:NAME}` and `${file:path}` in every string, depth first. */
function interpolate(value: unknown, path: PathKey[], baseDir: string, fail: (path: readonly PathKey[], problem: string) => never, env: NodeJS.ProcessEnv): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    // A `${…}` that is not exactly `${env:…}` or `${file:…}` (`${ENV:X}`, `${ env:X }`, `${vault:X}`)
    // would otherwise be used as the literal text: an admin token or a credential nobody meant.
    const stray = /\$\{[^}]*\}?/.exec(value.replace(INTERPOLATION, ''));
    if (stray) fail(path, `"${stray[0].slice(0, 40)}" is not an interpolation airlock knows: write \${env:NAME} or \${file:path} (lowercase, no spaces)`);
    return value.replace(INTERPOLATION, (_m, kind: string, ref: string) => {
      const r = ref.trim();
      if (kind === 'env') {
        const v = env[r];
        if (v === undefined) fail(path, `environment variable ${r} is not set (referenced as \${env:${r}})`);
        return v;
      }
      try {
        return readFileSync(resolve(baseDir, r), 'utf8').trim();
      } catch (e) {
        fail(path, `cannot read file ${r} (referenced as \${file:${r}}): ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, i], baseDir, fail, env));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, [...path, k], baseDir, fail, env);
    return out;
  }
  return value;
}

/** Parses and validates config text; throws ConfigError. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = lc.linePos(e.pos[0]).line;
    throw new ConfigError(file, line, '', `invalid YAML: ${e.message.split('\n')[0]}`);
  }
  const baseDir = dirname(resolve(file));
  const fail = (path: readonly PathKey[], problem: string): never => {
    throw new ConfigError(file, lineOf(doc, lc, path), keyPath(path), problem);
  };
  const raw = doc.toJS() ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(file, 1, '', 'the config must be a YAML mapping');
  const interpolated = interpolate(raw, [], baseDir, fail, env);
  const parsed = configSchema.safeParse(interpolated);
  if (!parsed.success) {
    const issue = settled(parsed.error.issues[0]!);
    let path = issue.path.filter((p): p is PathKey => typeof p !== 'symbol');
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      path = [...path, issue.keys[0]!];
      message = `unknown key (allowed here: ${allowedKeysHint(issue.path)})`;
    } else if (issue.code === 'invalid_key' && issue.issues[0]) {
      // A name that fails its rule (an MCP server's, say): the rule's own message, not zod's "Invalid key in record".
      message = issue.issues[0].message;
    }
    fail(path, message);
  }
  return { file, baseDir, config: parsed.data!, fail };
}

type Issue = z.core.$ZodIssue;

/**
 * A value no branch of a union took (`rate | false`, `false | {...}`): the issue of the branch that
 * got furthest into it, so the message names the key that is wrong and says why; the union's own
 * message when every branch refused the value as a whole.
 */
function settled(issue: Issue): Issue {
  if (issue.code !== 'invalid_union') return issue;
  let best: Issue | undefined;
  for (const branch of issue.errors) {
    const inner = branch[0] && settled(branch[0]);
    if (inner && inner.path.length > (best?.path.length ?? 0)) best = inner;
  }
  return best ? { ...best, path: [...issue.path, ...best.path] } : issue;
}

function allowedKeysHint(path: readonly PropertyKey[]): string {
  // Find the schema at this path to list its keys; a best effort that keeps messages helpful.
  let s: unknown = configSchema;
  for (const p of path) {
    s = objectOf(unwrap(s));
    const def = (s as { def?: { shape?: Record<string, unknown>; valueType?: unknown; element?: unknown } }).def;
    if (!def) return '?';
    if (def.shape && typeof p === 'string' && p in def.shape) s = def.shape[p];
    else if (def.valueType) s = def.valueType;
    else if (def.element) s = def.element;
    else return '?';
  }
  const def = (objectOf(unwrap(s)) as { def?: { shape?: Record<string, unknown> } }).def;
  return def?.shape ? Object.keys(def.shape).join(', ') : '?';
}

/** The mapping among a union's branches (`false | {...}`), or the schema itself. */
function objectOf(s: unknown): unknown {
  const options = (s as { def?: { options?: unknown[] } })?.def?.options;
  return options?.map(unwrap).find((o) => (o as { def?: { shape?: unknown } }).def?.shape !== undefined) ?? s;
}

function unwrap(s: unknown): unknown {
  let cur = s as { def?: { type?: string; innerType?: unknown } };
  while (cur?.def && (cur.def.type === 'optional' || cur.def.type === 'nullable' || cur.def.type === 'default') && cur.def.innerType) {
    cur = cur.def.innerType as typeof cur;
  }
  return cur;
}

/** Reads and validates a config file; throws ConfigError. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, undefined, '', `cannot read the config file: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return parseConfig(text, file, env);
}
