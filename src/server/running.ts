/**
 * `<data>/gateway.json`: which gateway process serves a data directory, and where its admin API
 * listens. The CLI reads it to reach the running gateway even when it was started with
 * `--admin-listen` or its config's admin address was edited since, and to refuse writing kill
 * switches or keys straight into the store of a running gateway, which would not see them.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface RunningGateway {
  pid: number;
  admin: string;
  agent: string;
  startedAt: string;
}

const FILE = 'gateway.json';

export function runningFile(dataDir: string): string {
  return join(dataDir, FILE);
}

/** Records this process as the data directory's gateway (atomically: a reader never sees half a file). */
export function markRunning(dataDir: string, r: RunningGateway): void {
  const tmp = `${runningFile(dataDir)}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(r)}\n`, { mode: 0o600 });
  renameSync(tmp, runningFile(dataDir));
}

/** Removes the record, if it is still this process's. */
export function clearRunning(dataDir: string, pid = process.pid): void {
  if (readRecord(dataDir)?.pid === pid) rmSync(runningFile(dataDir), { force: true });
}

/** The gateway recorded for `dataDir`, if its process is alive (a record left by a crash is ignored). */
export function runningGateway(dataDir: string): RunningGateway | undefined {
  const r = readRecord(dataDir);
  return r && alive(r.pid) ? r : undefined;
}

function readRecord(dataDir: string): RunningGateway | undefined {
  try {
    const r = JSON.parse(readFileSync(runningFile(dataDir), 'utf8')) as Partial<RunningGateway>;
    return typeof r.pid === 'number' && typeof r.admin === 'string' ? (r as RunningGateway) : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM'; // alive, but another user's
  }
}
