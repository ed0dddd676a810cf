/**
 * Local documents (`_local/…`): per-database documents that are not replicated and
 * have no revision tree; the rev is `0-N`, and a write must name the current one
 * (none for a new doc), as in CouchDB. Replicators keep their checkpoints here.
 *
 * Reads take the first copy that answers (this node's own first). A write checks the
 * rev against that same copy, then sets the new rev on every copy of the id's range
 * unconditionally, so a copy that missed earlier writes (its node was down) is
 * brought level rather than refusing, and one live copy is enough: checkpoints keep
 * working while a node is down. The write answers once a majority of copies took it
 * (or every copy answered), not after the slowest.
 */
import { ConflictError, NotFoundError } from '../../errors';
import type { LocalDoc } from '../../shard/types';
import { rangeFor } from './doc-open';
import { majority, noCopyError } from './quorum';
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
  const results = await settledEnough(copies.map((copy) => copy.putLocal(id, body, rev, newRev)));
  if (!results.some((r) => r?.status === 'fulfilled')) {
    throw noCopyError(results.map((r, copy) => (r?.status === 'rejected' ? { kind: 'failed', error: r.reason, copy } : { kind: 'ok', value: r?.value, copy })));
  }
  return newRev;
}

/**
 * The copies' answers once a majority took the write, the first copy (the one the
 * rev was checked against, which the next read of this node prefers) among them, or
 * once every copy answered; the others go on applying it. Waiting for the slowest
 * copy made each replicator checkpoint, and so each batch of a live PouchDB pull, cost the slowest node's
 * round trip (loadtest/CLUSTER.md, "Live PouchDB pull").
 */
function settledEnough<T>(calls: Promise<T>[]): Promise<(PromiseSettledResult<T> | undefined)[]> {
  const needed = majority(calls.length);
  const results: (PromiseSettledResult<T> | undefined)[] = new Array(calls.length);
  return new Promise((resolve) => {
    let ok = 0;
    let settled = 0;
    const record = (i: number, result: PromiseSettledResult<T>): void => {
      results[i] = result;
      settled++;
      if (result.status === 'fulfilled') ok++;
      if ((ok >= needed && results[0] !== undefined) || settled === calls.length) resolve(results);
    };
    calls.forEach((call, i) =>
      call.then(
        (value) => record(i, { status: 'fulfilled', value }),
        (reason: unknown) => record(i, { status: 'rejected', reason }),
      ),
    );
  });
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
