/**
 * Which agent started each A2A task (and conversation context), per remote agent.
 *
 * Every agent reaches a remote agent with the same injected credential, so the remote agent cannot
 * tell them apart: without this, any agent that learns a task id could read, cancel, subscribe to or
 * continue another agent's task. airlock learns owners from the answers it relays (a task id in the
 * answer to an agent's SendMessage is that agent's) and refuses task calls from anyone else.
 *
 * Kept in memory, because it is read on every task call, and written to the store (so it survives
 * a restart) in batches: the changes of up to WRITE_EVERY_MS go in one transaction, through
 * `DeferredWrites`, which never stalls the event loop on a lock another process holds. (One
 * transaction per claim put two commits on every SendMessage: A2A calls at c=50 fell from ~12,000
 * to ~4,800 a second.) An owner the process loses before the store has it (a kill -9 within that
 * time) costs nothing unsafe: the task is unknown after the restart, and unknown tasks are refused.
 *
 * Bounded: an id is forgotten MEMORY_DAYS after it was first seen, an agent keeps at most
 * MAX_PER_OWNER ids (its oldest go first, so one busy agent cannot push out the others'), and the
 * gateway at most MAX_IDS (the oldest go first). A forgotten task is unknown, so refused.
 */
import type { DeferredWrites } from '../../store/deferred.js';
import type { A2AOwned, A2AOwnedChange, A2AOwnedKind, Store } from '../../store/types.js';

export const MEMORY_DAYS = 30;
const MEMORY_MS = MEMORY_DAYS * 24 * 3600_000;
export const MAX_IDS = 200_000;
export const MAX_PER_OWNER = 20_000;
/** Longer ids (remote agents use UUIDs) are not remembered: their tasks are refused. */
export const MAX_ID_CHARS = 1024;

/** How long owner changes gather before they are written, in one transaction. */
const WRITE_EVERY_MS = 100;

const keyOf = (remote: string, kind: A2AOwnedKind, id: string) => `${remote}\n${kind}\n${id}`;

/**
 * Owners in the order they were learned, oldest first. A queue of its own rather than a Map's
 * insertion order: finding the first live entry of a Map or Set that keeps losing its oldest
 * entries walks over every deleted one, which made each claim at a cap cost a scan (10% of the
 * event loop at c=50). Forgotten entries are skipped lazily, when they reach the front.
 */
class Oldest {
  private items: A2AOwned[] = [];
  private head = 0;
  size = 0;

  push(o: A2AOwned): void {
    this.items.push(o);
    this.size++;
  }

  /** The oldest entry `live` still holds, dropping forgotten ones from the front. */
  first(live: (o: A2AOwned) => boolean): A2AOwned | undefined {
    while (this.head < this.items.length && !live(this.items[this.head]!)) this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return this.items[this.head];
  }
}

export class TaskOwners {
  /** Every remembered id. */
  private readonly byKey = new Map<string, A2AOwned>();
  /** All owners, and each agent's, oldest first. */
  private readonly oldest = new Oldest();
  private readonly byOwner = new Map<string, Oldest>();
  private readonly live = (o: A2AOwned) => this.byKey.get(keyOf(o.remote, o.kind, o.id)) === o;
  private readonly maxIds: number;
  private readonly maxPerOwner: number;
  /** Changes not yet handed to the store, in order. */
  private unsaved: A2AOwnedChange[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** Loads the owners the store remembers; `caps` are for tests (defaults MAX_IDS, MAX_PER_OWNER). */
  constructor(
    private readonly store: Store,
    private readonly writes: DeferredWrites,
    private readonly now: () => number = Date.now,
    caps: { maxIds?: number; maxPerOwner?: number } = {},
  ) {
    this.maxIds = caps.maxIds ?? MAX_IDS;
    this.maxPerOwner = caps.maxPerOwner ?? MAX_PER_OWNER;
    const since = now() - MEMORY_MS;
    for (const o of store.listA2AOwned(since, this.maxIds)) this.remember(o);
    this.writes.write(() => store.forgetA2AOwnedBefore(since));
  }

  /** The agent that started this task or context on `remote`; undefined when airlock never saw it (or forgot it). */
  owner(remote: string, kind: A2AOwnedKind, id: string): string | undefined {
    const o = this.byKey.get(keyOf(remote, kind, id));
    if (o === undefined) return undefined;
    if (o.createdAt < this.now() - MEMORY_MS) {
      this.forget(o);
      return undefined;
    }
    return o.owner;
  }

  /**
   * Records `owner` as the agent that started this task or context, unless another agent did
   * (the first owner stays). Returns whether `owner` owns it now.
   */
  claim(remote: string, kind: A2AOwnedKind, id: string, owner: string): boolean {
    const current = this.owner(remote, kind, id);
    if (current !== undefined) return current === owner;
    if (id === '' || id.length > MAX_ID_CHARS) return false;
    this.expireOldest();
    const mine = this.byOwner.get(owner);
    // Also drops the entries forgotten since (by the caps or expiry: always an agent's oldest) from
    // the front of its queue, so that the queue holds no more than the agent's live ids for long.
    const oldestOfMine = mine?.first(this.live);
    if (mine !== undefined && mine.size >= this.maxPerOwner) this.forget(oldestOfMine!);
    if (this.byKey.size >= this.maxIds) this.forget(this.oldest.first(this.live)!);
    const o: A2AOwned = { remote, kind, id, owner, createdAt: this.now() };
    this.remember(o);
    this.change({ op: 'save', owned: o });
    return true;
  }

  /** Hands the changes that wait to the store now (at shutdown, before the deferred writes are flushed). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.unsaved.length === 0) return;
    const changes = this.unsaved;
    this.unsaved = [];
    this.writes.write(() => this.store.changeA2AOwned(changes));
  }

  private change(c: A2AOwnedChange): void {
    this.unsaved.push(c);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), WRITE_EVERY_MS);
      this.timer.unref();
    }
  }

  private remember(o: A2AOwned): void {
    this.byKey.set(keyOf(o.remote, o.kind, o.id), o);
    this.oldest.push(o);
    let mine = this.byOwner.get(o.owner);
    if (mine === undefined) this.byOwner.set(o.owner, (mine = new Oldest()));
    mine.push(o);
  }

  private forget(o: A2AOwned): void {
    if (!this.live(o)) return;
    this.byKey.delete(keyOf(o.remote, o.kind, o.id));
    this.oldest.size--;
    const mine = this.byOwner.get(o.owner)!;
    if (--mine.size === 0) this.byOwner.delete(o.owner);
    this.change({ op: 'forget', owned: o });
  }

  /** Ids past MEMORY_DAYS, from the oldest on (learning order is creation order). */
  private expireOldest(): void {
    const cutoff = this.now() - MEMORY_MS;
    for (let o = this.oldest.first(this.live); o !== undefined && o.createdAt < cutoff; o = this.oldest.first(this.live)) this.forget(o);
  }
}

/** Why a call may not touch the tasks it names; undefined when it may. */
export interface OwnershipRefusal {
  code: 'denied' | 'bad_request';
  message: string;
}

/**
 * Checks the tasks and contexts a call names against their owners: every task it names must be
 * one `agent` started through airlock (a task airlock never saw, or forgot, is refused: it may be
 * another agent's, and the remote agent cannot tell); a context another agent started is refused,
 * while an unknown one passes (A2A clients may make up a new context id). Task-scoped methods must
 * name their task where airlock can read it.
 */
export function ownershipRefusal(owners: TaskOwners, remote: string, agent: string, method: string, taskScoped: boolean, refs: { tasks: string[]; contexts: string[]; problem: string | undefined }): OwnershipRefusal | undefined {
  if (refs.problem !== undefined) return { code: 'bad_request', message: `${refs.problem}; the call was not forwarded` };
  if (taskScoped && refs.tasks.length === 0) return { code: 'bad_request', message: `${method} must name its task (id, or taskId on push-notification methods); the call was not forwarded` };
  for (const id of refs.tasks) {
    if (owners.owner(remote, 'task', id) !== agent) {
      // The same words whether the task is another agent's or unknown: no way to probe for ids.
      return { code: 'denied', message: `task "${printable(id)}" was not started by agent "${agent}" through airlock, so ${method} on it is refused (A2A tasks are bound to the agent that started them; tasks airlock never saw are refused)` };
    }
  }
  for (const id of refs.contexts) {
    const o = owners.owner(remote, 'context', id);
    if (o !== undefined && o !== agent) return { code: 'denied', message: `context "${printable(id)}" is another agent's conversation, so ${method} in it is refused (A2A contexts are bound to the agent that started them)` };
  }
  return undefined;
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 100);
}
