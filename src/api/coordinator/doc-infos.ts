/**
 * Reading documents' revision trees: ids grouped by range, one multi-get per copy
 * of each range (asking r copies, this node's own first, more only if one fails), and the trees of the copies that
 * answered merged, so a read sees every revision any of them acknowledged.
 *
 * Read repair: when an answering copy lacks a leaf another answering copy has, the
 * missing revisions are sent to it as replicated edits in the background (shard sync
 * would get there too, on its own schedule). Bounded: at most `repairDocsMax` docs per
 * read, and a failed repair is only logged by the next sync.
 */
import { leaves, mergeTrees, winner } from '../../shard/rev-tree';
import { missingEdits } from '../../shard/sync';
import type { DocEdit, DocInfo } from '../../shard/types';
import { askCopies, effectiveQuorum, groupByRange, noCopyError } from './quorum';
import type { DbHandle, ShardClient } from './shard-client';

export interface ReadOptions {
  r?: number;
  timeoutMs: number;
}

/**
 * Ids per round of multi-gets. A request over many ids (`_revs_diff`, `_bulk_get`,
 * `_all_docs` keys) reads them round by round and yields to the event loop between
 * rounds, so other requests (`/_up`) are served meanwhile and no single reply is huge.
 */
export const idsPerRound = 1000;

export async function readDocInfos(db: DbHandle, ids: string[], options: ReadOptions): Promise<(DocInfo | undefined)[]> {
  if (ids.length <= idsPerRound) return readRound(db, ids, options);
  const out: (DocInfo | undefined)[] = [];
  for (let at = 0; at < ids.length; at += idsPerRound) {
    if (at > 0) await new Promise((resolve) => setImmediate(resolve));
    const round = await readRound(db, ids.slice(at, at + idsPerRound), options);
    for (const info of round) out.push(info);
  }
  return out;
}

async function readRound(db: DbHandle, ids: string[], options: ReadOptions): Promise<(DocInfo | undefined)[]> {
  const byRange = groupByRange(ids, db.q);
  const out: (DocInfo | undefined)[] = new Array(ids.length);
  await Promise.all(
    [...byRange].map(async ([rangeIndex, positions]) => {
      const range = db.ranges[rangeIndex]!;
      const rangeIds = positions.map((i) => ids[i]!);
      const r = effectiveQuorum(options.r, db.n, range.copies.length);
      const replies = await askCopies(range.copies, r, options.timeoutMs, (copy) => copy.getDocInfos(rangeIds), 'needed');
      const oks = replies.flatMap((reply) => (reply.kind === 'ok' ? [reply] : []));
      if (oks.length === 0) throw noCopyError(replies);
      positions.forEach((idIndex, j) => {
        out[idIndex] = mergeInfos(
          oks.map((reply) => reply.value[j]),
          db.revsLimit,
        );
      });
      if (oks.length > 1) void repairStale(range.copies, oks.map((reply) => ({ copy: reply.copy, infos: reply.value })));
    }),
  );
  return out;
}

const repairDocsMax = 100;

/** Send each answering copy the leaves other answering copies have and it lacks. */
async function repairStale(copies: readonly ShardClient[], answers: { copy: number; infos: (DocInfo | undefined)[] }[]): Promise<void> {
  const perCopy = new Map<number, DocEdit[]>();
  let docs = 0;
  const count = answers[0]!.infos.length;
  for (let j = 0; j < count && docs < repairDocsMax; j++) {
    for (const holder of answers) {
      const mine = holder.infos[j];
      if (!mine) continue;
      for (const other of answers) {
        if (other === holder) continue;
        const theirs = other.infos[j];
        if (theirs && leaves(mine.tree).every((leaf) => !leaf.hasBody || theirs.tree.get(leaf.rev)?.hasBody)) continue;
        const edits = await missingEdits(copies[holder.copy]!, mine, theirs).catch(() => []);
        if (edits.length === 0) continue;
        docs++;
        const list = perCopy.get(other.copy) ?? [];
        list.push(...edits);
        perCopy.set(other.copy, list);
      }
    }
  }
  await Promise.allSettled([...perCopy].map(([copy, edits]) => copies[copy]!.updateDocs(edits)));
}

export function mergeInfos(infos: (DocInfo | undefined)[], revsLimit: number): DocInfo | undefined {
  const present = infos.filter((i): i is DocInfo => i !== undefined);
  if (present.length <= 1) return present[0];
  let tree = present[0]!.tree;
  for (const info of present.slice(1)) tree = mergeTrees(tree, info.tree, revsLimit);
  const seq = Math.max(...present.map((i) => i.seq));
  return { id: present[0]!.id, seq, tree, winner: winner(tree)! };
}

