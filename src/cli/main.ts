/** The CLI's entry: dispatches a verb; exit 0 success, 1 failure of the thing asked, 2 usage error. */
import { ConfigError } from '../config/load.js';
import * as approvalsV from './approvals.js';
import * as auditV from './audit.js';
import * as checkV from './check.js';
import { AdminUnreachable, EXIT_FAILED, EXIT_USAGE, UsageError } from './common.js';
import * as explainV from './explain.js';
import * as initV from './init.js';
import * as keysV from './keys.js';
import * as killV from './kill.js';
import * as mcpStdioV from './mcp-stdio.js';
import * as schemaV from './schema.js';
import * as startV from './start.js';
import * as toolsV from './tools.js';
import * as usageV from './usage.js';

const VERBS: Record<string, { usage: string; run: (argv: string[]) => number | Promise<number> }> = {
  init: { usage: initV.usage, run: initV.init },
  start: { usage: startV.usage, run: startV.start },
  check: { usage: checkV.usage, run: checkV.check },
  schema: { usage: schemaV.usage, run: schemaV.schema },
  explain: { usage: explainV.usage, run: explainV.explain },
  keys: { usage: keysV.usage, run: keysV.keys },
  kill: { usage: killV.usage, run: (a) => killV.kill(a, false) },
  unkill: { usage: killV.usage.replace('kill', 'unkill'), run: (a) => killV.kill(a, true) },
  audit: { usage: auditV.usage, run: auditV.audit },
  approvals: { usage: approvalsV.usage, run: approvalsV.approvals },
  usage: { usage: usageV.usage, run: usageV.usageVerb },
  tools: { usage: toolsV.usage, run: toolsV.tools },
  'mcp-stdio': { usage: mcpStdioV.usage, run: mcpStdioV.mcpStdio },
};

function help(): string {
  return `airlock — the egress gateway for AI agents\n\nusage:\n${Object.values(VERBS)
    .map((v) => `  ${v.usage}`)
    .join('\n')}\n\nVerbs that act on a running gateway use its admin API (--admin URL; token from AIRLOCK_ADMIN_TOKEN).\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === 'help' || verb === '--help' || verb === '-h') {
    process.stdout.write(help());
    return verb ? 0 : EXIT_USAGE;
  }
  const v = VERBS[verb];
  if (!v) {
    process.stderr.write(`airlock: unknown verb "${verb}"\n\n${help()}`);
    return EXIT_USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: ${v.usage}\n`);
    return 0;
  }
  try {
    return await v.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`airlock ${verb}: ${e.message}\nusage: ${v.usage}\n`);
      return EXIT_USAGE;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`airlock: config error: ${e.message}\n`);
      return EXIT_FAILED;
    }
    if (e instanceof AdminUnreachable) {
      process.stderr.write(`airlock: ${e.message}\n`);
      return EXIT_FAILED;
    }
    throw e;
  }
}
