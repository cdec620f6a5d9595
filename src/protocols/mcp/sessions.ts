/**
 * The sessions of the session-based MCP generation (`initialize` → `Mcp-Session-Id`), bounded in
 * all and per agent, so that one agent opening sessions in a loop can only ever replace its own.
 */
import type { ServerResponse } from 'node:http';

/** A session, bound to the agent key that opened it and to its path. */
export interface Session {
  id: string;
  /** The agent whose share of the table it uses. */
  agent: string;
  keyId: string;
  scope: string | undefined;
  protocolVersion: string;
  /** Its open GET streams; a session with one is never replaced. */
  streams: Set<ServerResponse>;
  lastSeen: number;
}

/** Sessions kept in all (a few hundred bytes each): the table must not grow without bound. */
export const MAX_SESSIONS = 10_000;
/**
 * Sessions one agent may keep: a tenth of the table, far more than one agent process has clients
 * open at once, yet small enough that an agent whose client never reuses a session (or that opens
 * them on purpose) fills its own share and then replaces its own least recently used session,
 * never another agent's.
 */
export const MAX_SESSIONS_PER_AGENT = 1_000;

export type OpenRefusal = 'agent_full' | 'table_full';

export class SessionTable {
  private readonly byId = new Map<string, Session>();
  /** Each agent's sessions, least recently used first (a use moves a session to the end). */
  private readonly byAgent = new Map<string, Map<string, Session>>();

  constructor(
    readonly max = MAX_SESSIONS,
    readonly perAgent = MAX_SESSIONS_PER_AGENT,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  get(id: string): Session | undefined {
    return this.byId.get(id);
  }

  /** The session with this id, marked as used now. */
  use(id: string, now: number): Session | undefined {
    const s = this.byId.get(id);
    if (!s) return undefined;
    s.lastSeen = now;
    const own = this.byAgent.get(s.agent)!;
    own.delete(id);
    own.set(id, s);
    return s;
  }

  /**
   * Adds a session. When its agent is at its share, or the table is full, the agent's own least
   * recently used session without a GET stream makes room; when none can, the session is refused
   * rather than another agent's being ended.
   */
  open(s: Session): OpenRefusal | undefined {
    const own = this.byAgent.get(s.agent) ?? new Map<string, Session>();
    if (own.size >= this.perAgent || this.byId.size >= this.max) {
      let victim: Session | undefined;
      for (const v of own.values()) {
        if (v.streams.size === 0) {
          victim = v;
          break;
        }
      }
      if (!victim) return own.size >= this.perAgent ? 'agent_full' : 'table_full';
      this.delete(victim.id);
    }
    this.byId.set(s.id, s);
    own.set(s.id, s);
    this.byAgent.set(s.agent, own);
    return undefined;
  }

  delete(id: string): Session | undefined {
    const s = this.byId.get(id);
    if (!s) return undefined;
    this.byId.delete(id);
    const own = this.byAgent.get(s.agent)!;
    own.delete(id);
    if (own.size === 0) this.byAgent.delete(s.agent);
    return s;
  }

  /** Forgets sessions without a GET stream that have not been used for `idleMs`. */
  sweep(now: number, idleMs: number): void {
    for (const s of this.byId.values()) if (s.streams.size === 0 && now - s.lastSeen > idleMs) this.delete(s.id);
  }
}
