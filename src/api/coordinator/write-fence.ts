/**
 * Read-your-writes for range reads through this node. A write is answered once its
 * quorum is reached, possibly before every copy applied it (this node's own copy
 * included: its updater may be busy while two remote copies already answered). A
 * range read (`_all_docs`, `_changes`, `total_rows`) reads one copy per range, this
 * node's own first, so it could miss a write this node had just acknowledged.
 *
 * So each copy call still running when its write was answered is fenced here, keyed
 * by the copy, until it settles or the write's deadline passes; a range read waits for
 * the fences of the copy it is about to read. The hot path costs one map lookup: a
 * copy with nothing in flight has no fence. The wait is bounded by the fenced writes'
 * own deadlines (the quorum timeout), and reads never wait for writes that were not
 * yet answered when they started (those the client cannot expect to see).
 *
 * The copy range reads prefer may also have refused an edit the others took (it had
 * not yet heard of the parent revision, written through another node): the writer
 * then sends it the winning revisions at once (doc-update.ts, `bringUp`) and fences it
 * on that, up to `bringUpDocsMax` documents per write; beyond, shard sync brings them.
 */
import type { ShardClient } from './shard-client';

const fences = new WeakMap<ShardClient, Set<Promise<void>>>();

/** Fence `copy` until `call` settles, or `deadline` (ms since the epoch) passes. */
export function fenceWrite(copy: ShardClient, call: Promise<unknown>, deadline: number): void {
  const set = fences.get(copy) ?? new Set<Promise<void>>();
  fences.set(copy, set);
  let timer: NodeJS.Timeout | undefined;
  const fence: Promise<void> = Promise.race([
    call.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
    }),
  ]).then(() => {
    clearTimeout(timer);
    set.delete(fence);
  });
  set.add(fence);
}

/** Resolves once every write fenced on `copy` so far has settled; null when there is none. */
export function writesSettled(copy: ShardClient): Promise<void> | null {
  const set = fences.get(copy);
  if (!set || set.size === 0) return null;
  return Promise.all([...set]).then(() => undefined);
}
