/**
 * The gateway's event bus: exchange records, kill switches, alerts and (later) approvals, fanned out
 * to `/api/events` subscribers. Delivery is synchronous and best effort; a throwing listener is
 * dropped rather than allowed to break the exchange that emitted.
 */
export interface GatewayEvent {
  type: string;
  data: unknown;
}

export type Listener = (e: GatewayEvent) => void;

export class EventBus {
  private readonly listeners = new Set<Listener>();

  get size(): number {
    return this.listeners.size;
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  emit(type: string, data: unknown): void {
    if (this.listeners.size === 0) return;
    const e = { type, data };
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        this.listeners.delete(l);
      }
    }
  }
}
