/**
 * K-way merge of sorted cursors (one per range): `_all_docs` by doc id, views by
 * collation. Skip and limit apply to the merged order; rows are handed over in
 * batches as they are merged, so responses stream. Always closes every cursor.
 */
import type { Cursor } from './shard-client';

export async function mergeCursors<T>(
  cursors: Cursor<T>[],
  compare: (a: T, b: T) => number,
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
        if (best === -1 || sign * compare(head.rows[head.at]!, heads[best]!.rows[heads[best]!.at]!) < 0) best = i;
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
        // At the limit nothing more is read: a refill would cost a batch for nothing.
        if (remaining > 0) await refill(best);
      }
    }
    if (out.length > 0) await onRows(out);
  } finally {
    await Promise.all(cursors.map((c) => c.close().catch(() => undefined)));
  }
}
