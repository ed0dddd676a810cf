/**
 * `_all_docs`, `_design_docs` and `_local_docs`: one cursor per range (on its first
 * copy that answers), merged in doc-id order, with skip and limit applied here. Each
 * range returns at most skip + limit rows, so no range is read further than needed.
 * Rows are handed over in batches as they are merged: the response streams.
 */
import { compareRaw } from '../../shard/query/collate';
import type { AllDocsOptions, AllDocsRow, LocalDoc } from '../../shard/types';
import { firstLiveCursor, firstLiveState } from './range-read';
import type { Cursor, DbHandle } from './shard-client';

export interface RangeReadOptions extends Omit<AllDocsOptions, 'limit'> {
  limit: number;
  skip: number;
}

/** Total of live documents over all ranges (CouchDB's `total_rows`). */
export async function totalRows(db: DbHandle): Promise<number> {
  const states = await Promise.all(db.ranges.map((range) => firstLiveState(range.copies, (copy) => copy.readState())));
  return states.reduce((sum, state) => sum + state.docCount, 0);
}

export async function streamAllDocs(
  db: DbHandle,
  options: RangeReadOptions,
  onRows: (rows: AllDocsRow[]) => Promise<void>,
): Promise<void> {
  const shardOptions: AllDocsOptions = { ...options, limit: options.skip + options.limit };
  const cursors = db.ranges.map((range) => firstLiveCursor(range.copies, (copy) => copy.allDocs(shardOptions)));
  await mergeCursors(cursors, (row) => row.id, options, onRows);
}

export async function streamLocalDocs(
  db: DbHandle,
  options: RangeReadOptions,
  onRows: (rows: LocalDoc[]) => Promise<void>,
): Promise<void> {
  const shardOptions: AllDocsOptions = { ...options, limit: options.skip + options.limit };
  const cursors = db.ranges.map((range) => firstLiveCursor(range.copies, (copy) => copy.localDocs(shardOptions)));
  await mergeCursors(cursors, (row) => row.id, options, onRows);
}

/** K-way merge of sorted cursors; always closes every cursor. */
async function mergeCursors<T>(
  cursors: Cursor<T>[],
  keyOf: (row: T) => string,
  options: { descending: boolean; skip: number; limit: number },
  onRows: (rows: T[]) => Promise<void>,
): Promise<void> {
  const sign = options.descending ? -1 : 1;
  const heads: { rows: T[]; at: number; done: boolean }[] = cursors.map(() => ({ rows: [], at: 0, done: false }));
  let skip = options.skip;
  let remaining = options.limit;
  try {
    const refill = async (i: number) => {
      const head = heads[i]!;
      while (!head.done && head.at >= head.rows.length) {
        const batch = await cursors[i]!.next();
        if (batch === null) head.done = true;
        else {
          head.rows = batch;
          head.at = 0;
        }
      }
    };
    await Promise.all(heads.map((_, i) => refill(i)));
    let out: T[] = [];
    while (remaining > 0) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const head = heads[i]!;
        if (head.done) continue;
        if (best === -1 || sign * compareRaw(keyOf(head.rows[head.at]!), keyOf(heads[best]!.rows[heads[best]!.at]!)) < 0) best = i;
      }
      if (best === -1) break;
      const head = heads[best]!;
      const row = head.rows[head.at++]!;
      if (skip > 0) skip--;
      else {
        out.push(row);
        remaining--;
      }
      if (head.at >= head.rows.length) {
        if (out.length > 0) {
          await onRows(out);
          out = [];
        }
        await refill(best);
      }
    }
    if (out.length > 0) await onRows(out);
  } finally {
    await Promise.all(cursors.map((c) => c.close().catch(() => undefined)));
  }
}
