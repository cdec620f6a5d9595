/**
 * What the gateway (`postgres.ts`) and its audit shipper thread (`shipper.ts`) say to each other:
 * messages, and the slots of the shared array the lag metrics read. Kept apart from the thread's
 * code so that the gateway does not load the PostgreSQL client until it reads from PostgreSQL.
 */

export interface ShipperInit {
  dataDir: string;
  url: string;
  schema: string;
  node: string;
  shared: SharedArrayBuffer;
}

export type ShipperIn = { type: 'flush'; id: number } | { type: 'close'; withinMs: number };
export type ShipperOut =
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string }
  | { type: 'flushed'; id: number; ok: boolean; message?: string }
  | { type: 'closed'; shipped: number; head: number };

/** Slots of the shared BigInt64Array: PostgreSQL's last seq of this node as far as the thread knows, the local store's head, and since when (epoch ms) the oldest record not shipped has waited (0: none). */
export const SHIPPED = 0;
export const HEAD = 1;
export const WAITING_SINCE = 2;
export const SHARED_SLOTS = 3;
