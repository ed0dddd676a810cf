/**
 * Quorum arithmetic, shared by every coordinator operation. Pure.
 *
 * Writes. An edit goes to every copy of its range; each copy answers, per document,
 * `ok` (it took the edit) or a refusal (`conflict` above all: the edit's parent is no
 * longer a leaf there, or the new id already exists there; other refusals, such as
 * `forbidden`, are the same on every copy). A copy whose node does not answer counts
 * for neither. Two writers racing on one id (a new id without `_rev`, or the same
 * `_rev`) are ordered by each copy's updater: every copy takes exactly one of them and
 * refuses the other. The copies that vote are the range's established ones (`c`,
 * normally n; a copy a rebalance is still filling gets the edit but does not vote).
 * With `m = majority(c)` and the write quorum `w` (default majority(n)), the verdict
 * for one document (`writeVerdict`) is, in this order:
 *
 * 1. `ok` (201) once `ok ≥ W`, where W = max(w, m) when w is at least a majority of n
 *    (the default; W = w unless c ≠ n), and W = w when a caller asked for less (w=1:
 *    fast, but two racing writers may then both be told they won, as in CouchDB);
 * 2. `refused` (409 etc.) once `refused ≥ m`, even if some copy took the edit: that
 *    copy's branch stays as a conflict (shard sync spreads it), as CouchDB leaves it;
 * 3. otherwise the coordinator waits for the other copies, up to the deadline, and
 *    then, with what arrived:
 *    - `accepted` (202) if `ok ≥ m` (a majority took it, but fewer than an explicit
 *      w > m), or if `ok ≥ 1` and no copy refused (copies down: durable somewhere,
 *      uncontested, shard sync carries it to the others);
 *    - `refused` if some copy took it and some refused, neither a majority (a split
 *      with a copy down): no writer of the race can claim a majority, so none is told
 *      it won; both branches stay as a conflict;
 *    - `refused` too if no copy took it but one refused; `failed` if none answered.
 *
 * So when both racing coordinators hear from the same live copies and w ≥ majority(n),
 * at most one writer is told it won (201 or 202): winning needs a majority of copies,
 * or every answering copy, and each copy took only one of them. Only across a
 * partition, where the two coordinators reach disjoint copies, can both get 202
 * (accepted: not confirmed by a quorum), which is what 202 means.
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

/** What the copies answered for one document of a write. */
export interface EditTally {
  /** Copies that took the edit. */
  ok: number;
  /** Copies that refused it (conflict, forbidden, ...). */
  refused: number;
}

export type WriteVerdict = 'ok' | 'accepted' | 'refused' | 'failed' | 'pending';

/**
 * The verdict for one document (rules in the header). `copies`: copies voting; `w`: the
 * effective write quorum; `final`: every copy has answered (or failed), or the deadline
 * passed. Before that, `pending` means: wait for more answers.
 */
export function writeVerdict(tally: EditTally, copies: number, n: number, w: number, final: boolean): WriteVerdict {
  const m = majority(copies);
  const winAt = w >= majority(Math.min(n, copies)) ? Math.max(w, m) : w;
  if (tally.ok >= winAt) return 'ok';
  if (tally.refused >= m) return 'refused';
  if (!final) return 'pending';
  if (tally.ok >= m || (tally.ok >= 1 && tally.refused === 0)) return 'accepted';
  if (tally.refused >= 1) return 'refused';
  return 'failed';
}

/**
 * Ask every copy at once; resolve when `isDone(replies)` holds (checked after each
 * reply), all copies have answered, or the deadline passed. `complete` tells which.
 */
export function askAllCopies<C, T>(
  copies: readonly C[],
  timeoutMs: number,
  ask: (copy: C) => Promise<T>,
  isDone: (replies: readonly CopyReply<T>[]) => boolean,
): Promise<{ replies: CopyReply<T>[]; complete: boolean }> {
  return new Promise((resolve) => {
    const replies: CopyReply<T>[] = [];
    let settled = false;
    const finish = (complete: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ replies, complete });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    copies.forEach((copy, index) => {
      const onReply = (reply: CopyReply<T>) => {
        if (settled) return;
        replies.push(reply);
        if (replies.length === copies.length) finish(true);
        else if (isDone(replies)) finish(false);
      };
      let pending: Promise<T>;
      try {
        pending = ask(copy);
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        (value) => onReply({ kind: 'ok', value, copy: index }),
        (error: unknown) => onReply({ kind: 'failed', error, copy: index }),
      );
    });
  });
}
