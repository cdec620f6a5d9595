/**
 * Process groups of supervised services (POSIX only): signalling one, and asking whether anything
 * in it still runs.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Sends `signal` to process group `pgid`; false if the group is empty (or not ours to signal). */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

const PROC = (() => {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
})();

/**
 * Does a process in group `pgid` still run? Zombies do not count: an orphan is reaped by whoever
 * inherited it (PID 1, a subreaper), which may be slow to do so or, as a gateway that is PID 1 in
 * a container, never do it; waiting for those would only delay every stop and restart.
 */
export function groupRuns(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  if (!PROC) return true;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // Fields after the parenthesised command name: state, ppid, pgrp, …
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 3);
    if (pgrp === String(pgid) && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}
