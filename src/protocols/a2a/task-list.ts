/**
 * A ListTasks answer cut down to the caller's own tasks. A remote agent lists every task it holds,
 * and every agent reaches it with the same injected credential, so it cannot do this itself.
 *
 * Both bindings and generations: a JSON-RPC response whose `result` holds `tasks` (or is the list),
 * or an HTTP+JSON body that holds `tasks`. `totalSize` (`total_size`) becomes the number of tasks
 * left in this answer, since the remote agent's count includes other agents' tasks; the page size
 * and page token pass unchanged, so pages can come back shorter than asked, or empty.
 */

type Obj = Record<string, unknown>;

export type FilteredList = { ok: true; text: string; kept: number; removed: number } | { ok: false; problem: string };

function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
}

/** `text` (a ListTasks answer) with only the tasks `keep` accepts; a shape it cannot read is a problem, not a pass. */
export function filterTaskList(text: string, keep: (taskId: string) => boolean): FilteredList {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'the ListTasks answer is not valid JSON, so it cannot be cut down to the caller\'s tasks' };
  }
  const top = obj(value);
  if (!top) return { ok: false, problem: 'the ListTasks answer is not a JSON object' };
  const pick = (tasks: unknown[]) => tasks.filter((t) => {
    const id = obj(t)?.['id'];
    return typeof id === 'string' && keep(id);
  });
  let holder: Obj = top;
  if (top['jsonrpc'] !== undefined) {
    // The remote agent's own JSON-RPC error lists nothing: it passes as sent.
    if (top['error'] !== undefined && top['result'] === undefined) return { ok: true, text, kept: 0, removed: 0 };
    const result = top['result'];
    if (Array.isArray(result)) {
      const kept = pick(result);
      top['result'] = kept;
      return { ok: true, text: JSON.stringify(top), kept: kept.length, removed: result.length - kept.length };
    }
    const r = obj(result);
    if (!r) return { ok: false, problem: 'the ListTasks answer has no result object' };
    holder = r;
  }
  const tasks = holder['tasks'];
  if (tasks !== undefined && !Array.isArray(tasks)) return { ok: false, problem: 'the ListTasks answer\'s "tasks" is not a list' };
  // Proto JSON leaves an empty list out: then there is nothing to cut, but the count still goes.
  const kept = tasks === undefined ? [] : pick(tasks);
  if (tasks !== undefined) holder['tasks'] = kept;
  for (const k of ['totalSize', 'total_size']) if (k in holder) holder[k] = kept.length;
  return { ok: true, text: JSON.stringify(top), kept: kept.length, removed: (tasks?.length ?? 0) - kept.length };
}
