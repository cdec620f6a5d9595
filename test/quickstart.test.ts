/**
 * The quickstart (SPEC 1, README): `airlock start` with no -c and no ./airlock.yaml runs
 * examples/quickstart.yaml on the documented ports, starts the example notes service, and
 * enforces the example rules; SIGTERM stops both.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { call } from './support/gateway.js';
import { portBusy, ROOT, runCli, startCli, tempDir, waitFor } from './support/cli.js';

const PORTS = { agent: 8844, admin: 8845, notes: 8850 };

describe('quickstart', { timeout: 180_000 }, () => {
  it('runs examples/quickstart.yaml from a directory without airlock.yaml, and SIGTERM stops it and the notes service', async (t) => {
    const busy = [];
    for (const [name, port] of Object.entries(PORTS)) if (await portBusy(port)) busy.push(`${name} ${port}`);
    if (busy.length > 0) {
      t.skip(`skipped: the quickstart's ports are in use here (${busy.join(', ')}); stop whatever listens there to run this test`);
      return;
    }
    const quickstart = parse(readFileSync(join(ROOT, 'examples', 'quickstart.yaml'), 'utf8')) as { agents: Record<string, { keys: string[] }> };
    const key = quickstart.agents['demo-agent']!.keys[0]!;
    const tmp = tempDir();
    try {
      const gw = await startCli([], { cwd: tmp.dir });
      let stopped = false;
      try {
        assert.equal(gw.agentUrl, `http://127.0.0.1:${PORTS.agent}`);
        assert.equal(gw.adminUrl, `http://127.0.0.1:${PORTS.admin}`);
        // The notes service comes up (a child of the gateway) and demands a token the agent does not have.
        await waitFor('the notes service', async () => (await call(`http://127.0.0.1:${PORTS.notes}/notes`)).status === 401, 10_000, 100);

        const list = await call(`${gw.agentUrl}/http/notes/notes`, { key });
        assert.equal(list.status, 200, list.text);
        assert.ok(Array.isArray(list.json.notes) && list.json.notes.length >= 1, list.text);
        assert.equal(typeof list.json.notes[0].text, 'string');

        const del = await call(`${gw.agentUrl}/http/notes/notes/1`, { method: 'DELETE', key });
        assert.equal(del.status, 403);
        assert.equal(del.json.error.code, 'denied');
        assert.equal(del.json.error.rule, 'no-deletes');

        const anon = await call(`${gw.agentUrl}/http/notes/notes`);
        assert.equal(anon.status, 401);
        assert.equal(anon.json.error.code, 'unauthenticated');

        // Other verbs find the same default config from this directory.
        const ex = await runCli(['explain', '--agent', 'demo-agent', 'http: DELETE notes/notes/1', '--json'], { cwd: tmp.dir });
        assert.equal(ex.code, 0, ex.stderr);
        assert.deepEqual([JSON.parse(ex.stdout).decision, JSON.parse(ex.stdout).rule], ['deny', 'no-deletes']);

        const exit = await gw.stop('SIGTERM');
        stopped = true;
        assert.deepEqual(exit, { code: 0, signal: null }, gw.stderr());
      } finally {
        if (!stopped) await gw.stop();
      }
      // The notes service went with it: its port, and the gateway's, are free again.
      await waitFor('port 8850 to be free', async () => !(await portBusy(PORTS.notes)), 5000, 100);
      assert.equal(await portBusy(PORTS.agent), false);
      assert.equal(await portBusy(PORTS.admin), false);
    } finally {
      tmp.cleanup();
    }
  });
});
