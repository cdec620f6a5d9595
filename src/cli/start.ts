/** `airlock start [-c FILE] [--listen H:P] [--admin-listen H:P]`: runs the gateway until SIGTERM/SIGINT. */
import { ConfigError } from '../config/load.js';
import { Gateway } from '../gateway.js';
import { parseHostPort } from '../config/compile.js';
import { args, configPath, EXIT_FAILED, EXIT_OK, UsageError } from './common.js';

export const usage = 'airlock start [-c FILE] [--listen HOST:PORT] [--admin-listen HOST:PORT]';

export async function start(argv: string[]): Promise<number> {
  const { values } = args(argv, { listen: { type: 'string' }, 'admin-listen': { type: 'string' } }, false);
  for (const [flag, v] of [['--listen', values.listen], ['--admin-listen', values['admin-listen']]] as const) {
    // A bad flag is the caller's mistake, not the file's: without this check it surfaced as a config
    // error blaming the file's `listen` line (exit 1); SPEC 11 makes it a usage error (exit 2).
    if (v !== undefined && !parseHostPort(v)) throw new UsageError(`${flag} takes HOST:PORT, such as 127.0.0.1:8844 (port 0 picks a free port); got "${v}"`);
  }
  const file = configPath(values.config);
  let gw: Gateway;
  try {
    gw = await Gateway.start({ configFile: file, listen: values.listen, adminListen: values['admin-listen'] });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`airlock: config error: ${e.message}\n`);
      return EXIT_FAILED;
    }
    const err = e as NodeJS.ErrnoException;
    // Only a failed listen() is a listen problem: an EACCES on the data directory used to be
    // reported as "cannot listen", sending the operator after the wrong thing.
    if (err.syscall === 'listen' && (err.code === 'EADDRINUSE' || err.code === 'EACCES')) {
      process.stderr.write(`airlock: cannot listen: ${err.message}\n`);
      return EXIT_FAILED;
    }
    if (err.syscall !== undefined) {
      process.stderr.write(`airlock: cannot start: ${err.message} (check \`data\` in ${file})\n`);
      return EXIT_FAILED;
    }
    throw e;
  }
  process.stdout.write(`airlock: agent port listening on ${gw.agentUrl}\n`);
  process.stdout.write(`airlock: admin port listening on ${gw.adminUrl}\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      gw.log.info({ signal }, 'draining');
      gw.stop().then(
        () => resolve(EXIT_OK),
        (e: unknown) => {
          process.stderr.write(`airlock: shutdown failed: ${String(e)}\n`);
          resolve(EXIT_FAILED);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => gw.reload('SIGHUP'));
  });
}
