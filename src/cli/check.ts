/** `airlock check [-c FILE]`: validates a config; names file, line and key of the first problem. */
import { ConfigError } from '../config/load.js';
import { args, configPath, EXIT_FAILED, EXIT_OK, loadRuntime, printJson } from './common.js';

export const usage = 'airlock check [-c FILE] [--json]';

export function check(argv: string[]): number {
  const { values } = args(argv, {}, false);
  const file = configPath(values.config);
  try {
    const c = loadRuntime(file);
    const summary = { ok: true, file, agents: c.agents.size, rules: c.raw.rules?.length ?? 0, services: c.http.services.size };
    if (values.json) printJson(summary);
    else process.stdout.write(`ok: ${file} (${summary.agents} agents, ${summary.rules} rules, ${summary.services} HTTP services)\n`);
    return EXIT_OK;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    if (values.json) printJson({ ok: false, file: e.file, line: e.line ?? null, key: e.key, problem: e.problem });
    else process.stderr.write(`${e.message}\n`);
    return EXIT_FAILED;
  }
}
