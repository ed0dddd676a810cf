/**
 * Quorum arithmetic, shared by every coordinator operation. Pure.
 *
 * A write goes to all n copies of a range. With `w` acknowledgements it is `ok`
 * (HTTP 201); with fewer but at least one it is `accepted` (202): durable somewhere,
 * and shard sync will carry it to the others; with none it failed.
 */
import { DivanError, TimeoutError, UnavailableError } from '../../errors';
import { rangeIndexOf } from '../../ring/ranges';

/** CouchDB's default r and w: a majority of the copies. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * A requested r or w (default: a majority of the database's n), capped to the copies
 * the range has. A range being moved by a rebalance has more copies than n for a
 * while; its quorum stays that of n.
 */
export function effectiveQuorum(requested: number | undefined, n: number, copies: number = n): number {
  const wanted = requested ?? majority(Math.min(n, copies));
  return Math.max(1, Math.min(wanted, copies));
}

/** A copy's answer; `copy` is its index in the list asked. */
export type CopyReply<T> = { kind: 'ok'; value: T; copy: number } | { kind: 'failed'; error: unknown; copy: number };

/**
 * Ask copies, resolve once `needed` have answered ok, all have answered, or the
 * deadline passed. Replies that come later are ignored (their copies still did the
 * work). `spread: 'all'` asks every copy at once (writes: every copy must get the
 * edit); `'needed'` asks the first `needed` copies (the local one first) and another
 * copy only when one fails (reads: r answers suffice).
 */
export function askCopies<C, T>(
  copies: readonly C[],
  needed: number,
  timeoutMs: number,
  ask: (copy: C) => Promise<T>,
  spread: 'all' | 'needed' = 'all',
): Promise<CopyReply<T>[]> {
  return new Promise((resolve) => {
    const replies: CopyReply<T>[] = [];
    let oks = 0;
    let launched = 0;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(replies);
    };
    const timer = setTimeout(finish, timeoutMs);
    const launch = () => {
      const index = launched++;
      ask(copies[index]!).then(
        (value) => {
          if (settled) return;
          replies.push({ kind: 'ok', value, copy: index });
          if (++oks >= needed || replies.length === copies.length) finish();
        },
        (error: unknown) => {
          if (settled) return;
          replies.push({ kind: 'failed', error, copy: index });
          if (replies.length === copies.length) finish();
          else if (launched < copies.length) launch();
        },
      );
    };
    const first = spread === 'all' ? copies.length : Math.min(needed, copies.length);
    for (let i = 0; i < first; i++) launch();
  });
}

/** The error to answer when no copy replied ok. */
export function noCopyError(replies: CopyReply<unknown>[]): Error {
  const failed = replies.find((r): r is Extract<CopyReply<unknown>, { kind: 'failed' }> => r.kind === 'failed');
  if (failed && failed.error instanceof DivanError) return failed.error;
  if (failed && failed.error instanceof Error) return failed.error;
  if (replies.length === 0) return new TimeoutError('No shard copy answered in time');
  return new UnavailableError('No shard copy is available');
}

/** Positions of `ids` grouped by the index of the range that holds each. */
export function groupByRange(ids: readonly string[], q: number): Map<number, number[]> {
  const byRange = new Map<number, number[]>();
  ids.forEach((id, i) => {
    const index = rangeIndexOf(id, q);
    const list = byRange.get(index);
    if (list) list.push(i);
    else byRange.set(index, [i]);
  });
  return byRange;
}
