/**
 * `_purge` across the cluster: every copy of each document's range gets the request
 * (with a uuid per document, so a retry or shard sync applying it again counts once),
 * and the answer waits for a write quorum, as CouchDB's fabric does. A copy that is
 * down gets the purge later through shard sync, which exchanges purge history before
 * documents (shard/sync.ts), so it can never push the purged revisions back.
 */
import { randomUUID } from 'node:crypto';
import { askCopies, effectiveQuorum, groupByRange, noCopyError } from './quorum';
import type { DbHandle } from './shard-client';
import type { PurgeInfo, PurgeRequest } from '../../shard/purge';
import type { RevId } from '../../shard/types';

export interface PurgeAnswer {
  /** Per document, the revisions purged on the copies that answered. */
  purged: Record<string, RevId[]>;
  /** Every range reached its write quorum (201); otherwise 202, as CouchDB answers. */
  quorum: boolean;
}

export async function purgeDocs(db: DbHandle, wanted: ReadonlyMap<string, RevId[]>, options: { timeoutMs: number; w?: number }): Promise<PurgeAnswer> {
  const ids = [...wanted.keys()];
  const requests: PurgeRequest[] = ids.map((id) => ({ uuid: randomUUID(), id, revs: wanted.get(id)! }));
  const purged: Record<string, RevId[]> = {};
  for (const id of ids) purged[id] = [];
  let quorum = true;
  await Promise.all(
    [...groupByRange(ids, db.q)].map(async ([rangeIndex, positions]) => {
      const range = db.ranges[rangeIndex]!;
      const rangeRequests = positions.map((i) => requests[i]!);
      const w = effectiveQuorum(options.w, db.n, range.copies.length);
      const replies = await askCopies(range.copies, range.copies.length, options.timeoutMs, (copy) => copy.purge(rangeRequests));
      const oks = replies.filter((r): r is { kind: 'ok'; value: PurgeInfo[]; copy: number } => r.kind === 'ok');
      if (oks.length === 0) throw noCopyError(replies);
      if (oks.length < w) quorum = false;
      for (const reply of oks) {
        for (const info of reply.value) {
          const list = purged[info.id]!;
          for (const rev of info.purged) if (!list.includes(rev)) list.push(rev);
        }
      }
    }),
  );
  return { purged, quorum };
}
