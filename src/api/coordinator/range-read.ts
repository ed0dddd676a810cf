/**
 * Range reads take one copy per range: the first in preference order (this node's
 * own when it has one). If that copy fails before any row was read, the next copy
 * is tried. After rows were sent a failure ends the read (the client resumes), unless
 * the reader can take rows again (`replayAfterRows`: `_changes`, where a row seen
 * twice is harmless and one never seen is not): then the next copy is read from its
 * start, `onSwitch` telling the reader to reset its position.
 *
 * Before reading a copy, a read waits for the writes this node acknowledged while
 * that copy was still applying them (write-fence.ts), so it sees them.
 */
import type { Cursor, ShardClient } from './shard-client';
import { writesSettled } from './write-fence';

export function firstLiveCursor<T>(
  copies: readonly ShardClient[],
  open: (copy: ShardClient) => Cursor<T>,
  onSwitch?: (copy: ShardClient) => void,
  replayAfterRows = false,
): Cursor<T> {
  let index = 0;
  // Opened at the first `next`, once the copy's fenced writes have landed.
  let cursor: Cursor<T> | null = writesSettled(copies[0]!) ? null : open(copies[0]!);
  let delivered = false;
  let closed = false;
  return {
    next: async () => {
      for (;;) {
        try {
          if (cursor === null) {
            await writesSettled(copies[index]!);
            // Closed meanwhile: open nothing (nobody would close it).
            if (closed) return null;
            cursor = open(copies[index]!);
          }
          const batch = await cursor.next();
          delivered = true;
          return batch;
        } catch (err) {
          if ((delivered && !replayAfterRows) || index + 1 >= copies.length) throw err;
          await cursor?.close().catch(() => undefined);
          index++;
          onSwitch?.(copies[index]!);
          cursor = null;
        }
      }
    },
    close: async () => {
      closed = true;
      await cursor?.close();
      cursor = null;
    },
  };
}

/** The first copy whose state answers (for counts and sequences). */
export async function firstLiveState<R>(copies: readonly ShardClient[], read: (copy: ShardClient) => Promise<R>): Promise<R> {
  let last: unknown;
  for (const copy of copies) {
    try {
      const settled = writesSettled(copy);
      if (settled) await settled;
      return await read(copy);
    } catch (err) {
      last = err;
    }
  }
  throw last;
}
