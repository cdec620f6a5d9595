/** `airlock init [--force] [FILE]`: writes a commented starter airlock.yaml. */
import { existsSync, writeFileSync } from 'node:fs';
import { args, EXIT_FAILED, EXIT_OK, UsageError } from './common.js';

export const usage = 'airlock init [FILE] [--force]';

const TEMPLATE = `# airlock.yaml — the egress gateway for your AI agents.
# Every key is documented in docs/config.md; \`airlock schema\` prints a JSON Schema for editors,
# \`airlock check\` validates this file. Secrets come from the environment: \${env:NAME}, or files: \${file:path}.

listen: 127.0.0.1:8844          # agents send all their outbound traffic here
admin:
  listen: 127.0.0.1:8845        # admin API, metrics; keep it on loopback (or set admin.token)
data: ./.airlock                # embedded store (SQLite) and audit.jsonl

# Who may call. Give each agent a key: \`airlock keys create my-agent\` (printed once), or list
# keys here from the environment: keys: ["\${env:MY_AGENT_KEY}"]
agents:
  my-agent:
    team: platform
    limits: { requests: 600/min, concurrency: 20 }

teams:
  platform:
    limits: { requests: 3000/min }

# What they may do. Default deny: an action no rule allows is refused. Any deny wins;
# an approve entry holds an allowed action for a human.
rules:
  - name: read-the-example-api
    agents: [my-agent]
    allow:
      - "http: GET,HEAD example/**"
  - name: writes-need-a-human
    approve:
      - "http: POST,PUT,PATCH,DELETE */**"

# Limits scoped to targets, counted per agent.
limits:
  - target: "http: * example/**"
    requests: 60/min

guards:
  loop: { repeats: 5, window: 60s }     # same agent + action + arguments, more than 5 times a minute
  session: { maxCalls: 500 }            # per x-airlock-session

# Plain HTTP APIs: /http/<service>/<path> → url + path. Headers here are injected; agents never see them.
http:
  services:
    example:
      url: https://api.example.com
      headers: { Authorization: "Bearer \${env:EXAMPLE_API_TOKEN}" }
      timeout: 30s
      retries: 2          # idempotent methods only
      maxBodySize: 10mb
  # Forward-proxy mode: agents set HTTP_PROXY/HTTPS_PROXY=http://<agent>:<key>@127.0.0.1:8844 and
  # rules name hosts: "http: GET docs.example.com/**", "http: CONNECT api.example.com:443".
  # Off unless set, so that rules written for services never open other hosts (docs/forward-proxy.md).
  # forwardProxy: true

# Other agents over A2A: agents use http://127.0.0.1:8844/a2a/<name>/ as the remote agent's URL;
# rules name "a2a: <name>" or "a2a: <name> SendMessage". Uncomment to add one (see docs/a2a.md).
# a2a:
#   agents:
#     travel: { url: https://travel.example.com, token: "\${env:TRAVEL_TOKEN}" }

approvals:
  timeout: 5m

# Alerts (loops, MCP pinning and poisoning, anomalies) are listed by GET /api/alerts and the console.
# Anomalies are on with these defaults; a webhook hears of every alert (see docs/alerts.md).
# alerts:
#   notify: [ { webhook: "\${env:ALERTS_WEBHOOK_URL}" } ]
#   anomalies:
#     denials: 20/min            # one agent's calls refused by the rules
#     limited: 100/min           # one agent's calls refused by its limits
#     authFailures: 20/min       # calls with a bad agent key, all callers together
#     callSpike: { factor: 5, min: 60/min, learn: 10m }    # an agent's calls against its own average
#     spendSpike: { factor: 5, min: 1/min, learn: 10m }    # its LLM spend (USD) against its average

# Several gateways behind a load balancer act as one when they share a Redis: limits, budgets,
# guards, kill switches and keys are the cluster's; with a PostgreSQL too, each ships its audit
# records there (keeping its SQLite journal under \`data\`), and \`airlock audit\`, \`airlock usage\`
# and the admin API read every gateway's (see docs/scale-out.md). Uncomment to use.
# store:
#   redis: "\${env:REDIS_URL}"
#   postgres: "\${env:AIRLOCK_POSTGRES_URL}"     # or { url: ..., schema: airlock }
`;

export function init(argv: string[]): number {
  const { values, positionals } = args(argv, { force: { type: 'boolean' } });
  if (positionals.length > 1) throw new UsageError('init takes at most one file name');
  const file = positionals[0] ?? 'airlock.yaml';
  if (existsSync(file) && !values.force) {
    process.stderr.write(`airlock: ${file} exists; pass --force to overwrite it\n`);
    return EXIT_FAILED;
  }
  writeFileSync(file, TEMPLATE, { mode: 0o600 });
  process.stdout.write(`wrote ${file}. Next: set EXAMPLE_API_TOKEN, \`airlock keys create my-agent\`, \`airlock start\`.\n`);
  return EXIT_OK;
}
