/**
 * Test support: a gateway (strict pinning unless told otherwise) in front of `mcp-reborn-server`,
 * the stdio MCP server that comes back with a changed tool after it crashes. The caller stops the
 * gateway and removes `t.dir`, which holds the server's state file.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KEYS, startGateway, type TestGateway } from './gateway.js';
import { waitFor } from './mcp.js';

const rebornServer = join(dirname(fileURLToPath(import.meta.url)), 'mcp-reborn-server.js');

/** Starts it, with alice allowed every tool of server `re`, once the server has listed its tools; `state` is its crash counter file. */
export async function startRebornGateway(pinning: 'strict' | 'warn' | 'off' = 'strict'): Promise<{ t: TestGateway; state: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-reborn-'));
  const state = join(dir, 'state');
  const t = await startGateway(
    `
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["mcp: re/*"]
mcp:
  pinning: ${pinning}
  servers:
    re: { command: "${process.execPath}", args: ["${rebornServer}"], env: { REBORN_STATE: "${state}" } }
`,
    { dir },
  );
  await waitFor(() => (t.gw.mcpHub.get('re')?.catalogue.tools.length ?? 0) > 0);
  return { t, state };
}
