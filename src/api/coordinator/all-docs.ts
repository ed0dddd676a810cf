/**
 * `_all_docs`, `_design_docs` and `_local_docs`: one cursor per range (on its first
 * copy that answers), merged in doc-id order, with skip and limit applied here. Each
 * range returns at most skip + limit rows, so no range is read further than needed.
 * Rows are handed over in batches as they are merged: the response streams.
 */
import { compareRaw } from '../../shard/query/collate';
import { mergeCursors } from './merge';
import type { AllDocsOptions, AllDocsRow, LocalDoc } from '../../shard/types';
import { firstLiveCursor, firstLiveState } from './range-read';
import type { DbHandle } from './shard-client';

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
  await mergeCursors(cursors, byId, options, onRows);
}

export async function streamLocalDocs(
  db: DbHandle,
  options: RangeReadOptions,
  onRows: (rows: LocalDoc[]) => Promise<void>,
): Promise<void> {
  const shardOptions: AllDocsOptions = { ...options, limit: options.skip + options.limit };
  const cursors = db.ranges.map((range) => firstLiveCursor(range.copies, (copy) => copy.localDocs(shardOptions)));
  await mergeCursors(cursors, byId, options, onRows);
}

/** Every live design document of the database with its winning body, in id order. */
export async function streamDesignDocs(db: DbHandle, onDoc: (row: AllDocsRow & { doc: string }) => void): Promise<void> {
  // Design document ids run from `_design/` up to (not including) `_design0`.
  await streamAllDocs(
    db,
    { startKey: '_design/', endKey: '_design0', inclusiveEnd: false, includeDocs: true, conflicts: false, descending: false, skip: 0, limit: Number.MAX_SAFE_INTEGER },
    async (rows) => {
      for (const row of rows) if (row.doc !== undefined) onDoc(row as AllDocsRow & { doc: string });
    },
  );
}

function byId(a: { id: string }, b: { id: string }): number {
  return compareRaw(a.id, b.id);
}
