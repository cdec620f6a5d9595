/** The CLI's entry: dispatches a verb; exit 0 success, 1 failure of the thing asked, 2 usage error. */
import { ConfigError } from '../config/load.js';
import { AdminUnreachable, EXIT_FAILED, EXIT_USAGE, UsageError } from './common.js';

interface Verb {
  usage: string;
  run: (argv: string[]) => number | Promise<number>;
}

/**
 * Each verb's module is loaded only when that verb runs: `start` pulls in the whole gateway (the
 * MCP SDK, undici, SQLite …), which `explain` or `keys list` have no use for, and start-up time is
 * most of what a short verb costs.
 */
const VERBS: Record<string, () => Promise<Verb>> = {
  init: async () => import('./init.js').then((m) => ({ usage: m.usage, run: m.init })),
  start: async () => import('./start.js').then((m) => ({ usage: m.usage, run: m.start })),
  check: async () => import('./check.js').then((m) => ({ usage: m.usage, run: m.check })),
  schema: async () => import('./schema.js').then((m) => ({ usage: m.usage, run: m.schema })),
  explain: async () => import('./explain.js').then((m) => ({ usage: m.usage, run: m.explain })),
  keys: async () => import('./keys.js').then((m) => ({ usage: m.usage, run: m.keys })),
  kill: async () => import('./kill.js').then((m) => ({ usage: m.usage, run: (a: string[]) => m.kill(a, false) })),
  unkill: async () => import('./kill.js').then((m) => ({ usage: m.unkillUsage, run: (a: string[]) => m.kill(a, true) })),
  audit: async () => import('./audit.js').then((m) => ({ usage: m.usage, run: m.audit })),
  approvals: async () => import('./approvals.js').then((m) => ({ usage: m.usage, run: m.approvals })),
  usage: async () => import('./usage.js').then((m) => ({ usage: m.usage, run: m.usageVerb })),
  tools: async () => import('./tools.js').then((m) => ({ usage: m.usage, run: m.tools })),
  'mcp-stdio': async () => import('./mcp-stdio.js').then((m) => ({ usage: m.usage, run: m.mcpStdio })),
};

async function help(): Promise<string> {
  const verbs = await Promise.all(Object.values(VERBS).map((load) => load()));
  return `airlock — the egress gateway for AI agents\n\nusage:\n${verbs
    .map((v) => `  ${v.usage}`)
    .join('\n')}\n\n-c FILE names the config (default ./airlock.yaml, else the quickstart example). Verbs that act on a running\ngateway use its admin API (--admin URL, else found through the config; token from AIRLOCK_ADMIN_TOKEN).\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === 'help' || verb === '--help' || verb === '-h') {
    process.stdout.write(await help());
    return verb ? 0 : EXIT_USAGE;
  }
  const load = Object.hasOwn(VERBS, verb) ? VERBS[verb] : undefined;
  if (!load) {
    process.stderr.write(`airlock: unknown verb "${verb}"\n\n${await help()}`);
    return EXIT_USAGE;
  }
  const v = await load();
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
