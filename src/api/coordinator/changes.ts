/**
 * `_changes`: one by-seq cursor per range, interleaved, with an opaque sequence.
 *
 * A database sequence is a vector: for each range, the copy read and that copy's
 * local seq. Encoded as `<sum>-<base64url of "copy.seq" pairs>` (the sum only makes it
 * readable and roughly monotonic; the rest is what resumes). Every row carries the
 * vector as it stands after that row, so `since=<any row's seq>` resumes exactly after
 * it: a range's position only moves past rows already sent. A position whose copy is
 * not the one read now (another copy, or a recreated database) restarts that range
 * from 0: a replay, never a skip.
 *
 * Live feeds (longpoll, continuous, eventsource) subscribe to each copy's update
 * signal before reading, so an update between the read and the wait is never missed.
 */
import { BadRequestError } from '../../errors';
import type { ChangeRow, ChangesFilter } from '../../shard/types';
import type { Cursor, DbHandle } from './shard-client';

export interface SeqPosition {
  copyId: number;
  seq: number;
}

export type SeqVector = SeqPosition[];

export function encodeSeq(vector: SeqVector): string {
  let sum = 0;
  let text = '';
  for (let i = 0; i < vector.length; i++) {
    const p = vector[i]!;
    sum += p.seq;
    text += (i === 0 ? '' : '~') + p.copyId.toString(36) + '.' + p.seq.toString(36);
  }
  return sum + '-' + Buffer.from(text, 'latin1').toString('base64url');
}

/** Parse `since`: 0, "0", "now", or a sequence this database gave out. */
export function decodeSince(db: DbHandle, since: unknown): SeqVector {
  const zero = () => db.ranges.map((r) => ({ copyId: r.copies[0]!.copyId, seq: 0 }));
  if (since === undefined || since === null || since === 0 || since === '0') return zero();
  if (since === 'now') return currentSeq(db);
  if (typeof since === 'number' && Number.isSafeInteger(since) && since >= 0) return zero();
  if (typeof since !== 'string') throw malformed();
  const dash = since.indexOf('-');
  if (dash < 1) {
    if (/^[0-9]+$/.test(since)) return zero();
    throw malformed();
  }
  const text = Buffer.from(since.slice(dash + 1), 'base64url').toString('latin1');
  const parts = text.split('~');
  if (parts.length !== db.ranges.length) throw malformed();
  return db.ranges.map((range, i) => {
    const [copyText, seqText] = parts[i]!.split('.');
    const copyId = parseInt(copyText ?? '', 36);
    const seq = parseInt(seqText ?? '', 36);
    if (!Number.isSafeInteger(copyId) || !Number.isSafeInteger(seq) || seq < 0) throw malformed();
    const copy = range.copies.find((c) => c.copyId === copyId);
    return copy ? { copyId, seq } : { copyId: range.copies[0]!.copyId, seq: 0 };
  });
}

function malformed(): BadRequestError {
  return new BadRequestError("Malformed sequence supplied in 'since' parameter.");
}

export function currentSeq(db: DbHandle): SeqVector {
  return db.ranges.map((r) => ({ copyId: r.copies[0]!.copyId, seq: r.copies[0]!.getState().updateSeq }));
}

export interface ChangesRequest {
  since: SeqVector;
  descending: boolean;
  limit: number;
  allLeaves: boolean;
  includeDocs: boolean;
  conflicts: boolean;
  filter: ChangesFilter;
  /** Only every Nth row carries its seq (CouchDB's seq_interval); 1 = all. */
  seqInterval: number;
}

export interface ChangeEvent {
  row: ChangeRow;
  /** Encoded vector after this row, or null when seq_interval omits it. */
  seq: string | null;
}

export interface PassResult {
  count: number;
  position: SeqVector;
}

/**
 * One pass over the ranges from `request.since` (or `position`), emitting rows until
 * the limit or the end. `emit` may return a promise to apply backpressure.
 */
export async function readChanges(
  db: DbHandle,
  request: ChangesRequest,
  limit: number,
  emit: (event: ChangeEvent) => void | Promise<void>,
  isCancelled: () => boolean = () => false,
): Promise<PassResult> {
  const position = request.since.map((p) => ({ ...p }));
  const cursors: (Cursor<ChangeRow> | null)[] = db.ranges.map((range, i) => {
    const copy = range.copies.find((c) => c.copyId === position[i]!.copyId) ?? range.copies[0]!;
    return copy.changes({
      since: request.descending ? 0 : position[i]!.seq,
      descending: request.descending,
      limit,
      allLeaves: request.allLeaves,
      includeDocs: request.includeDocs,
      conflicts: request.conflicts,
      filter: request.filter,
    });
  });
  let count = 0;
  try {
    let open = cursors.length;
    while (open > 0 && count < limit && !isCancelled()) {
      for (let i = 0; i < cursors.length && count < limit; i++) {
        const cursor = cursors[i];
        if (!cursor) continue;
        const batch = await cursor.next();
        if (batch === null) {
          await cursor.close();
          cursors[i] = null;
          open--;
          continue;
        }
        for (const row of batch) {
          if (count >= limit) break;
          if (!request.descending) position[i]!.seq = row.seq;
          count++;
          const withSeq = request.seqInterval <= 1 || count % request.seqInterval === 0;
          const seq = withSeq ? encodeSeq(request.descending ? withRange(position, i, row.seq) : position) : null;
          const pending = emit({ row, seq });
          if (pending) await pending;
        }
      }
    }
  } finally {
    await Promise.all(cursors.map((c) => c?.close().catch(() => undefined)));
  }
  return { count, position };
}

function withRange(vector: SeqVector, index: number, seq: number): SeqVector {
  return vector.map((p, i) => (i === index ? { ...p, seq } : p));
}

/** Rows after `position` not yet sent: an upper bound (superseded updates count once). */
export function pendingAfter(db: DbHandle, position: SeqVector): number {
  let pending = 0;
  db.ranges.forEach((range, i) => {
    const copy = range.copies.find((c) => c.copyId === position[i]!.copyId) ?? range.copies[0]!;
    pending += Math.max(0, copy.getState().updateSeq - position[i]!.seq);
  });
  return pending;
}

/**
 * Resolves when any copy of the database records an update, the timeout passes, or
 * the signal aborts. Subscribe first (`watchUpdates`), then read, then `wait()`.
 */
export function watchUpdates(db: DbHandle): { wait(timeoutMs: number, signal: AbortSignal): Promise<void>; stop(): void } {
  let dirty = false;
  let wake: (() => void) | null = null;
  const unsubscribes = db.ranges.map((range) =>
    range.copies[0]!.onUpdate(() => {
      dirty = true;
      wake?.();
    }),
  );
  return {
    wait: (timeoutMs, signal) =>
      new Promise<void>((resolve) => {
        if (dirty || signal.aborted) {
          dirty = false;
          return resolve();
        }
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          wake = null;
          dirty = false;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener('abort', done);
        wake = done;
      }),
    stop: () => unsubscribes.forEach((u) => u()),
  };
}
