/**
 * Local service processes (`http.services.<name>.command`): started with the gateway, given a
 * minimal environment plus their configured `env` — never the gateway's own (admin tokens,
 * provider keys, whatever its operator exported).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { freePort, waitFor } from './support/cli.js';

// Serves the names of its environment variables and the value of SERVICE_SETTING.
const SERVICE = "require('http').createServer((q, r) => r.end(JSON.stringify({ names: Object.keys(process.env), setting: process.env.SERVICE_SETTING }))).listen(+process.env.PORT, '127.0.0.1')";

describe('local service processes', () => {
  let t: TestGateway;
  before(async () => {
    process.env['AIRLOCK_TEST_GATEWAY_SECRET'] = 'not-for-services';
    const port = await freePort();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: GET envdump/**"]
http:
  services:
    envdump:
      url: "http://127.0.0.1:${port}"
      command: ${JSON.stringify(process.execPath)}
      args: ["-e", ${JSON.stringify(SERVICE)}]
      env: { PORT: "${port}", SERVICE_SETTING: "configured" }
`);
  });
  after(async () => {
    delete process.env['AIRLOCK_TEST_GATEWAY_SECRET'];
    await t?.stop();
  });

  it('get their configured env and a minimal one, not the gateway’s environment', async () => {
    const r = await waitFor('the service to answer', async () => {
      const x = await call(`${t.agentUrl}/http/envdump/`, { key: KEYS.alice });
      return x.status === 200 ? x : undefined;
    }, 10_000);
    const { names, setting } = r.json as { names: string[]; setting: string };
    assert.equal(setting, 'configured');
    assert.ok(names.includes('PATH'), names.join());
    assert.ok(!names.includes('AIRLOCK_TEST_GATEWAY_SECRET'), 'the gateway’s own environment stays with it');
  });
});
