/**
 * Tool pinning, the rug-pull defence (SPEC 5.3): every MCP tool definition is fingerprinted the
 * first time airlock sees it; a later, different definition is kept pending (quarantined) until an
 * operator accepts it with `airlock tools accept <server>/<tool>`. Pins live in the store (they
 * survive restarts) and in a Map, because `isQuarantined` runs on every tool call.
 *
 * A pin is in force in the Map at once and reaches the store through the deferred writes, in
 * order: a catalogue that arrives while another process holds the store's lock must not stall the
 * gateway, nor leave a changed tool callable because its quarantine could not be written yet.
 * A pin the process loses before the store has it costs nothing unsafe at the next start: a lost
 * quarantine is found again (the stored pin still has the old fingerprint), a lost accept leaves
 * the tool quarantined, a lost first sight is a first sight again.
 */
import { createHash } from 'node:crypto';
import { canonical } from '../../audit/record.js';
import type { DeferredWrites } from '../../store/deferred.js';
import type { Store, ToolPin } from '../../store/types.js';

/** The parts of an MCP tool definition that pinning and scanning look at (other fields are ignored). */
export interface ToolDef {
  name: string;
  title?: string;
  description?: string;
  inputSchema?: unknown;
  outputSchema?: unknown;
  annotations?: unknown;
}

/**
 * sha256 hex of the canonical JSON (sorted keys, undefined left out) of name, title, description,
 * inputSchema, outputSchema and annotations: the same definition gives the same fingerprint
 * whatever the key order an upstream serialised it in.
 * @example fingerprintTool({ name: 'create_issue', description: 'Creates a GitHub issue' })
 */
export function fingerprintTool(def: ToolDef): string {
  const picked = { name: def.name, title: def.title, description: def.description, inputSchema: def.inputSchema, outputSchema: def.outputSchema, annotations: def.annotations };
  return createHash('sha256').update(canonical(picked)).digest('hex');
}

export interface PinView {
  server: string;
  tool: string;
  fingerprint: string;
  firstSeen: string;
  status: 'pinned' | 'changed';
  pendingFingerprint?: string;
  changedAt?: string;
}

const keyOf = (server: string, tool: string) => `${server}\n${tool}`;

/** The pins of every tool of every MCP server, kept in memory and written through to the store. */
export class Pins {
  private readonly pins = new Map<string, ToolPin>();

  constructor(
    private readonly store: Store,
    private readonly writes: DeferredWrites,
    private readonly now: () => Date = () => new Date(),
  ) {
    for (const p of store.listToolPins()) this.pins.set(keyOf(p.server, p.tool), p);
  }

  /** First sight pins it ('new'); same fingerprint → 'same'; otherwise 'changed' (the new fingerprint kept pending until accepted). */
  observe(server: string, def: ToolDef): 'new' | 'same' | 'changed' {
    const key = keyOf(server, def.name);
    const fp = fingerprintTool(def);
    const pin = this.pins.get(key);
    if (!pin) {
      this.put({ server, tool: def.name, fingerprint: fp, firstSeen: this.now().toISOString() });
      return 'new';
    }
    if (pin.fingerprint === fp) {
      // Back to the accepted definition: nothing is left to accept.
      if (pin.pendingFingerprint !== undefined) this.put({ server, tool: def.name, fingerprint: pin.fingerprint, firstSeen: pin.firstSeen });
      return 'same';
    }
    if (pin.pendingFingerprint !== fp) this.put({ ...pin, pendingFingerprint: fp, changedAt: this.now().toISOString() });
    return 'changed';
  }

  /** True while a changed definition waits for `airlock tools accept`. */
  isQuarantined(server: string, tool: string): boolean {
    return this.pins.get(keyOf(server, tool))?.pendingFingerprint !== undefined;
  }

  /** Pins the pending definition; false if nothing was pending. */
  accept(server: string, tool: string): boolean {
    const pin = this.pins.get(keyOf(server, tool));
    if (pin?.pendingFingerprint === undefined) return false;
    this.put({ server, tool, fingerprint: pin.pendingFingerprint, firstSeen: pin.firstSeen });
    return true;
  }

  /** One pin, as `list` shows it; undefined when the tool was never seen. */
  get(server: string, tool: string): PinView | undefined {
    const p = this.pins.get(keyOf(server, tool));
    return p ? view(p) : undefined;
  }

  list(): PinView[] {
    return [...this.pins.values()].sort((a, b) => (a.server === b.server ? (a.tool < b.tool ? -1 : 1) : a.server < b.server ? -1 : 1)).map(view);
  }

  private put(p: ToolPin): void {
    this.pins.set(keyOf(p.server, p.tool), p);
    this.writes.write(() => this.store.saveToolPin(p));
  }
}

function view(p: ToolPin): PinView {
  const v: PinView = { server: p.server, tool: p.tool, fingerprint: p.fingerprint, firstSeen: p.firstSeen, status: p.pendingFingerprint === undefined ? 'pinned' : 'changed' };
  if (p.pendingFingerprint !== undefined) v.pendingFingerprint = p.pendingFingerprint;
  if (p.changedAt !== undefined) v.changedAt = p.changedAt;
  return v;
}
