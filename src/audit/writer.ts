/**
 * The audit writer thread: commits the batches the gateway hands it while it is busy, so that
 * SQLite commits, WAL checkpoints and mirror writes do not take the event loop's time when many
 * calls are in flight (see `log.ts`). It keeps no chain state: each batch says which head to link
 * to, and the answer gives the new head, so the event loop and this thread can take turns.
 *
 * In:  { type: 'batch', lines, head, mirrored } — canonical records joined by newlines, and the seq
 *      audit.jsonl ends at (see ChainWriter.mirrored); { type: 'close' }.
 * Out: { type: 'ready' }; { type: 'committed', head, mirrored }; { type: 'failed', message };
 *      { type: 'warn', message } (a mirror problem: the store has the records).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteStore } from '../store/sqlite.js';
import { ChainWriter, type ChainHead } from './chain.js';

export interface WriterInit {
  dataDir: string;
  jsonlPath: string | undefined;
}

export type WriterIn = { type: 'batch'; lines: string; head: ChainHead; mirrored: number } | { type: 'close' };
export type WriterOut = { type: 'ready' } | { type: 'committed'; head: ChainHead; mirrored: number } | { type: 'failed'; message: string } | { type: 'warn'; message: string };

/** How often the WAL is copied back into the database file. */
const CHECKPOINT_EVERY_MS = 200;
/** Audit records indexed per checkpoint tick at most: 50,000 a second, several times what the gateway can append. */
const INDEX_PER_TICK = 10_000;
/** A WAL past this many pages (16 MB) is started over with a RESTART checkpoint (see SqliteStore.checkpoint). */
const RESTART_AT_PAGES = 4096;

function serve(): void {
  const port = parentPort!;
  const init = workerData as WriterInit;
  const post = (m: WriterOut) => port.postMessage(m);
  const store = new SqliteStore(init.dataDir, { autoCheckpoint: false });
  const writer = new ChainWriter(store, init.jsonlPath, (message) => post({ type: 'warn', message }));
  // This thread is the store's only checkpointer: the gateway's own connections never pause a
  // commit to copy the WAL back, which used to put ~2 ms into every few hundredth call.
  // It also fills the audit index tables, in bulk, just before (see the store's schema): at most
  // INDEX_PER_TICK records at a time, so that catching up with a big store written by an earlier
  // version holds the write lock for tens of milliseconds at a time, not seconds.
  const checkpoints = setInterval(() => {
    try {
      store.indexAudit(INDEX_PER_TICK);
    } catch (e) {
      if ((e as { code?: string }).code !== 'SQLITE_BUSY') post({ type: 'warn', message: `audit indexing failed: ${String(e)}` });
    }
    try {
      if (store.checkpoint().walPages > RESTART_AT_PAGES) store.checkpoint('RESTART');
    } catch (e) {
      post({ type: 'warn', message: `WAL checkpoint failed: ${String(e)}` });
    }
  }, CHECKPOINT_EVERY_MS);
  post({ type: 'ready' });
  port.on('message', (m: WriterIn) => {
    if (m.type === 'close') {
      clearInterval(checkpoints);
      try {
        store.indexAudit(Number.MAX_SAFE_INTEGER, 1000);
      } catch {
        // left for the next start: queries scan what is not indexed
      }
      store.checkpoint();
      writer.close();
      store.close();
      port.close();
      return;
    }
    try {
      writer.mirrored = m.mirrored;
      const head = writer.append(m.lines.split('\n'), m.head);
      post({ type: 'committed', head, mirrored: writer.mirrored });
    } catch (e) {
      post({ type: 'failed', message: String(e) });
    }
  });
}

if (parentPort && (workerData as WriterInit | undefined)?.dataDir !== undefined) serve();
