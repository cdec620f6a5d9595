/**
 * Test support: a real gateway on 127.0.0.1:0 from a YAML config in a fresh temp directory, with
 * its logs captured (to check that no secret is ever logged).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { Gateway } from '../../src/gateway.js';

/** Fixed test keys (well-formed; only ever used on loopback). */
export const KEYS = {
  alice: 'alk_aliceAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
  bob: 'alk_bobBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB',
  carol: 'alk_carolCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC',
} as const;

export interface TestGateway {
  gw: Gateway;
  dir: string;
  configFile: string;
  agentUrl: string;
  adminUrl: string;
  /** Every log line so far. */
  logs(): string;
  stop(): Promise<void>;
}

/** Writes `yaml` (with `data:` pointing into the temp dir unless given) and starts a gateway on it. */
export async function startGateway(yaml: string, opts: { dir?: string } = {}): Promise<TestGateway> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'airlock-test-'));
  const configFile = join(dir, 'airlock.yaml');
  const text = /^data:/m.test(yaml) ? yaml : `data: ${join(dir, 'data')}\n${yaml}`;
  writeFileSync(configFile, text);
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  let gw: Gateway;
  try {
    gw = await Gateway.start({ configFile, listen: '127.0.0.1:0', adminListen: '127.0.0.1:0', logDestination: sink, watch: false });
  } catch (e) {
    // Tests that expect a config to be refused would otherwise leave their temp dir behind.
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    gw,
    dir,
    configFile,
    agentUrl: gw.agentUrl,
    adminUrl: gw.adminUrl,
    logs: () => chunks.join(''),
    async stop() {
      await gw.stop();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test convenience: bodies are checked field by field
}

/** One HTTP call with undici; never throws for HTTP statuses. */
export async function call(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; key?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.key) headers['authorization'] = `Bearer ${opts.key}`;
  const res = await request(url, { method: (opts.method ?? 'GET') as 'GET', headers, body: opts.body ?? null });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}
