/**
 * Many documents' revision trees at once (`_revs_diff`, `_bulk_get`): ids grouped by
 * range, one multi-get per copy, trees merged over the copies that answered.
 */
import { rangeIndexOf } from '../../ring/ranges';
import { leaves, RevId } from '../../shard/rev-tree';
import type { DocInfo } from '../../shard/types';
import { mergeInfos, ReadOptions } from './doc-open';
import { askCopies, effectiveQuorum, noCopyError } from './quorum';
import type { DbHandle } from './shard-client';

export async function readDocInfos(db: DbHandle, ids: string[], options: ReadOptions): Promise<(DocInfo | undefined)[]> {
  const byRange = new Map<number, number[]>();
  ids.forEach((id, i) => {
    const index = rangeIndexOf(id, db.q);
    const list = byRange.get(index);
    if (list) list.push(i);
    else byRange.set(index, [i]);
  });
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

export interface RevsDiffEntry {
  missing: RevId[];
  possibleAncestors: RevId[];
}

/** For each doc, the given revisions this database lacks, and leaves that may be their ancestors. */
export async function revsDiff(
  db: DbHandle,
  request: Map<string, RevId[]>,
  options: ReadOptions,
): Promise<Map<string, RevsDiffEntry>> {
  const ids = [...request.keys()];
  const infos = await readDocInfos(db, ids, options);
  const out = new Map<string, RevsDiffEntry>();
  ids.forEach((id, i) => {
    const info = infos[i];
    const missing = [...new Set(request.get(id)!)].filter((rev) => !info?.tree.has(rev));
    if (missing.length === 0) return;
    const maxPos = Math.max(...missing.map((rev) => Number(rev.slice(0, rev.indexOf('-')))));
    const possibleAncestors = info ? leaves(info.tree).filter((leaf) => leaf.pos < maxPos).map((leaf) => leaf.rev) : [];
    out.set(id, { missing, possibleAncestors });
  });
  return out;
}
