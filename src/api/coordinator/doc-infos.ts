/**
 * Reading documents' revision trees: ids grouped by range, one multi-get per copy
 * of each range (asking all copies, waiting for r), and the trees of the copies that
 * answered merged, so a read sees every revision any of them acknowledged.
 */
import { mergeTrees, winner } from '../../shard/rev-tree';
import type { DocInfo } from '../../shard/types';
import { askCopies, effectiveQuorum, groupByRange, noCopyError } from './quorum';
import type { DbHandle } from './shard-client';

export interface ReadOptions {
  r?: number;
  timeoutMs: number;
}

export async function readDocInfos(db: DbHandle, ids: string[], options: ReadOptions): Promise<(DocInfo | undefined)[]> {
  const byRange = groupByRange(ids, db.q);
  const out: (DocInfo | undefined)[] = new Array(ids.length);
  await Promise.all(
    [...byRange].map(async ([rangeIndex, positions]) => {
      const range = db.ranges[rangeIndex]!;
      const rangeIds = positions.map((i) => ids[i]!);
      const r = effectiveQuorum(options.r, range.copies.length);
      const replies = await askCopies(range.copies, r, options.timeoutMs, (copy) => copy.getDocInfos(rangeIds));
      const oks = replies.flatMap((reply) => (reply.kind === 'ok' ? [reply.value] : []));
      if (oks.length === 0) throw noCopyError(replies);
      positions.forEach((idIndex, j) => {
        out[idIndex] = mergeInfos(
          oks.map((infos) => infos[j]),
          db.revsLimit,
        );
      });
    }),
  );
  return out;
}

export function mergeInfos(infos: (DocInfo | undefined)[], revsLimit: number): DocInfo | undefined {
  const present = infos.filter((i): i is DocInfo => i !== undefined);
  if (present.length <= 1) return present[0];
  let tree = present[0]!.tree;
  for (const info of present.slice(1)) tree = mergeTrees(tree, info.tree, revsLimit);
  const seq = Math.max(...present.map((i) => i.seq));
  return { id: present[0]!.id, seq, tree, winner: winner(tree)! };
}

