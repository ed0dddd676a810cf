/**
 * `_revs_diff` and `_missing_revs`: which of the given revisions this database lacks.
 */
import { leaves, RevId } from '../../shard/rev-tree';
import { readDocInfos, ReadOptions } from './doc-infos';
import type { DbHandle } from './shard-client';

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
