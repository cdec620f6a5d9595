/**
 * The gateway's node id: which gateway of a scale-out cluster wrote a record or holds a counter.
 * Kept in `<data>/node-id`, so a restarted gateway is the same node (its audit chain goes on, and
 * what it held in shared counters is its own again).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const NODE_ID_RE = /^[a-z0-9]{8,32}$/;

export function nodeId(dataDir: string): string {
  const file = join(dataDir, 'node-id');
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (NODE_ID_RE.test(id)) return id;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const id = randomBytes(8).toString('hex');
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, id + '\n', { mode: 0o600 });
  return id;
}

/** The node id kept in `<data>/node-id`, or undefined when there is none yet (never creates one). */
export function readNodeId(dataDir: string): string | undefined {
  try {
    const id = readFileSync(join(dataDir, 'node-id'), 'utf8').trim();
    return NODE_ID_RE.test(id) ? id : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
