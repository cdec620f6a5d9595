/**
 * Verifies every node's chain in PostgreSQL (store.postgres) the way `verify.ts` verifies the local
 * store's: each link's seq follows the one before, its prevHash is that link's hash, its hash is
 * sha256(prevHash + the stored canonical record), and its indexed columns are the record's. And,
 * for the node of the local store at hand, that PostgreSQL holds the same chain as the local
 * store: a row altered in PostgreSQL with every later hash recomputed makes a chain whole by
 * itself, which only the gateway's own copy shows up. (PostgreSQL ending before the local store
 * is normal: the shipper is a moment behind, or PostgreSQL was down.)
 */
import type { PgAuditStore } from '../store/postgres/audit.js';
import type { AuditRow, Store } from '../store/types.js';
import { GENESIS_HASH } from './record.js';
import { checkLink } from './verify.js';

export interface NodeChain {
  node: string;
  records: number;
  head: string;
}

export interface PostgresVerifyResult {
  ok: boolean;
  nodes: number;
  records: number;
  chains: NodeChain[];
  /** The first broken link (chains are walked in node order). */
  broken?: { node: string; seq: number; id: string; problem: string };
  /** The local store's node: how far PostgreSQL has its chain, and how far the local store goes. */
  local?: { node: string; inPostgres: number; inLocalStore: number };
}

const LOCAL_PAGE = 2000;

/** Walks every chain in PostgreSQL; `local`: this data directory's node and store, to compare with. */
export async function verifyPostgres(pg: PgAuditStore, local?: { node: string; store: Store }): Promise<PostgresVerifyResult> {
  const chains: NodeChain[] = [];
  let records = 0;
  let cur: NodeChain | undefined;
  let prevSeq = 0;
  let prevHash = GENESIS_HASH;
  // The local store's rows for the stretch being compared, by seq (fetched a page at a time).
  let localRows = new Map<number, AuditRow>();
  let localEnd = 0;
  const localHead = local?.store.auditHead()?.seq ?? 0;
  const result = (broken?: PostgresVerifyResult['broken']): PostgresVerifyResult => {
    const mine = local ? chains.find((c) => c.node === local.node) : undefined;
    return {
      ok: broken === undefined,
      nodes: chains.length,
      records,
      chains,
      ...(broken ? { broken } : {}),
      ...(local ? { local: { node: local.node, inPostgres: mine?.records ?? 0, inLocalStore: localHead } } : {}),
    };
  };
  for await (const row of pg.iterate()) {
    if (row.node !== cur?.node) {
      cur = { node: row.node, records: 0, head: GENESIS_HASH };
      chains.push(cur);
      prevSeq = 0;
      prevHash = GENESIS_HASH;
    }
    const problem = checkLink(row, prevSeq, prevHash);
    if (problem) return result({ node: row.node, seq: row.seq, id: row.id, problem });
    if (local && row.node === local.node) {
      if (row.seq > localEnd) {
        localRows = new Map(local.store.queryAudit({ afterSeq: row.seq - 1, limit: LOCAL_PAGE }).map((r) => [r.seq, r]));
        localEnd = row.seq - 1 + LOCAL_PAGE;
      }
      const mine = localRows.get(row.seq);
      if (!mine) return result({ node: row.node, seq: row.seq, id: row.id, problem: `PostgreSQL has this record of this gateway's node, but the local store ends at #${localHead} (records deleted from the local store, or added to PostgreSQL)` });
      if (mine.hash !== row.hash) return result({ node: row.node, seq: row.seq, id: row.id, problem: "it differs from the local store's record of that seq (the record was altered in PostgreSQL or in the local store)" });
    }
    prevSeq = row.seq;
    prevHash = row.hash;
    cur.records++;
    cur.head = row.hash;
    records++;
  }
  return result();
}
