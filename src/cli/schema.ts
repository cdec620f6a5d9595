/** `airlock schema`: prints the config file's JSON Schema (for editors). */
import { configJsonSchema } from '../config/schema.js';
import { args, EXIT_OK, printJson } from './common.js';

export const usage = 'airlock schema';

export function schema(argv: string[]): number {
  args(argv, {}, false);
  const s = configJsonSchema() as Record<string, unknown>;
  printJson({ $id: 'https://airlock.dev/schema/airlock.yaml.json', title: 'airlock.yaml', ...s });
  return EXIT_OK;
}
