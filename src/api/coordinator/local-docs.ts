/**
 * Local documents (`_local/…`): per-database documents that are not replicated and
 * have no revision tree; the rev is `0-N`, and a write must name the current one
 * (none for a new doc), as in CouchDB. Replicators keep their checkpoints here.
 *
 * Reads take the first copy that answers (this node's own first). A write checks the
 * rev against that same copy, then sets the new rev on every copy of the id's range
 * unconditionally, so a copy that missed earlier writes (its node was down) is
 * brought level rather than refusing, and one live copy is enough: checkpoints keep
 * working while a node is down.
 */
import { ConflictError, NotFoundError } from '../../errors';
import type { LocalDoc } from '../../shard/types';
import { rangeFor } from './doc-open';
import { noCopyError } from './quorum';
import { firstLiveState } from './range-read';
import type { DbHandle, ShardClient } from './shard-client';

export async function getLocal(db: DbHandle, id: string): Promise<LocalDoc> {
  const doc = await firstLiveState(rangeFor(db, id).copies, (copy) => copy.getLocal(id));
  if (!doc) throw new NotFoundError('missing');
  return doc;
}

/** Write `body` (JSON text), or delete with body null. Returns the new rev. */
export async function putLocal(db: DbHandle, id: string, body: string | null, rev: string | undefined): Promise<string> {
  const copies = rangeFor(db, id).copies;
  const current = await firstLiveState(copies, (copy) => copy.getLocal(id));
  if (body === null && !current) throw new NotFoundError('missing');
  if (current?.rev !== rev) throw new ConflictError();
  const newRev = body === null ? '0-0' : `0-${current ? Number(current.rev.slice(2)) + 1 : 1}`;
  const results = await Promise.allSettled(copies.map((copy) => copy.putLocal(id, body, rev, newRev)));
  if (!results.some((r) => r.status === 'fulfilled')) {
    throw noCopyError(results.map((r, copy) => (r.status === 'rejected' ? { kind: 'failed', error: r.reason, copy } : { kind: 'ok', value: r.value, copy })));
  }
  return newRev;
}

/** Every local doc of `from` onto `to` with the same rev (a rebalance filling a new copy). */
export async function copyLocalDocs(from: ShardClient, to: ShardClient): Promise<number> {
  const cursor = from.localDocs({ inclusiveEnd: true, descending: false, limit: 2 ** 31 - 1, includeDocs: true, conflicts: false });
  let copied = 0;
  try {
    for (let batch = await cursor.next(); batch; batch = await cursor.next()) {
      for (const doc of batch) {
        await to.putLocal(doc.id, doc.body, undefined, doc.rev);
        copied++;
      }
    }
  } finally {
    await cursor.close();
  }
  return copied;
}
