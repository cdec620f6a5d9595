/**
 * `<data>/services.json`: the service processes this gateway runs, so that the next start can stop
 * those a dead gateway left behind. The launcher (launcher.ts) already stops a service when its
 * gateway dies; this is the backstop for when the launcher died with it (`pkill -9 node`, the OOM
 * killer), which would otherwise leave the service holding its port with a stale config.
 *
 * A process is identified by pid *and* start time (from /proc, with the boot id): a pid alone may
 * since have been given to an unrelated process, which must never be signalled. Where /proc is
 * missing (not Linux) nothing is recorded and nothing is swept.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../telemetry/logger.js';
import { groupRuns, signalGroup } from './group.js';

interface ProcessId {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot. */
  startTime: string;
}

interface PidFileContent {
  bootId: string;
  gateway: ProcessId;
  services: Record<string, ProcessId & { command: string }>;
}

const FILE = 'services.json';
const TERM_GRACE_MS = 3000;

function readBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The start time of `pid`, or undefined if it does not exist (or is a zombie: it is not running anything). */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return undefined;
    return fields[19]; // field 22 overall: the fields after the name start at field 3
  } catch {
    return undefined;
  }
}


/** Records the service processes of this gateway in its data directory; see the file comment. */
export class ServicePidFile {
  private readonly file: string;
  private readonly bootId = readBootId();
  private readonly services = new Map<string, ProcessId & { command: string }>();

  constructor(
    dataDir: string,
    private readonly log: Logger,
  ) {
    this.file = join(dataDir, FILE);
  }

  /**
   * Stops the process groups of services recorded by a gateway that is no longer running (TERM, then
   * KILL after 3 s); resolves when they are gone. Call once, before starting any service.
   */
  async stopLeftovers(): Promise<void> {
    if (!this.bootId) return;
    let old: PidFileContent;
    try {
      old = JSON.parse(readFileSync(this.file, 'utf8')) as PidFileContent;
    } catch {
      return; // none, or unreadable: nothing we could safely act on
    }
    if (old.bootId !== this.bootId || typeof old.services !== 'object' || old.services === null) return this.write(); // from before a reboot: all gone
    if (old.gateway && startTime(old.gateway.pid) === old.gateway.startTime) {
      this.log.warn({ pid: old.gateway.pid, file: this.file }, 'another gateway still runs on this data directory; its services are left alone');
      return;
    }
    const left: { name: string; pid: number }[] = [];
    for (const [name, p] of Object.entries(old.services)) {
      if (typeof p?.pid !== 'number' || startTime(p.pid) !== p.startTime) continue;
      this.log.warn({ process: name, pid: p.pid, command: p.command }, 'stopping a service process left running by a gateway that did not shut down');
      signalGroup(p.pid, 'SIGTERM');
      left.push({ name, pid: p.pid });
    }
    const deadline = Date.now() + TERM_GRACE_MS;
    let killed = false;
    while (left.some((p) => groupRuns(p.pid))) {
      if (Date.now() > deadline + 1000) break; // what outlives SIGKILL is past waiting for
      if (!killed && Date.now() > deadline) {
        for (const p of left) signalGroup(p.pid, 'SIGKILL');
        killed = true;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    this.write();
  }

  /** Notes that service `name` runs as process-group leader `pid`. */
  record(name: string, pid: number, command: string): void {
    if (!this.bootId) return;
    const t = startTime(pid);
    if (t === undefined) return; // already gone
    this.services.set(name, { pid, startTime: t, command });
    this.write();
  }

  /** Notes that service `name`'s process `pid` is gone (with its group). */
  forget(name: string, pid: number): void {
    if (this.services.get(name)?.pid !== pid) return;
    this.services.delete(name);
    this.write();
  }

  private write(): void {
    const self = startTime(process.pid);
    if (!this.bootId || self === undefined) return;
    try {
      if (this.services.size === 0) {
        rmSync(this.file, { force: true });
        return;
      }
      const content: PidFileContent = { bootId: this.bootId, gateway: { pid: process.pid, startTime: self }, services: Object.fromEntries(this.services) };
      // Atomically: a gateway starting after a crash mid-write must not find half a file.
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(content)}\n`, { mode: 0o600 });
      renameSync(tmp, this.file);
    } catch (e) {
      this.log.warn({ err: e, file: this.file }, 'could not record service processes; a crash of this gateway could leave them running');
    }
  }
}
