/**
 * Document updates (`PUT /db/doc`, `_bulk_docs`, deletes, attachment writes): group
 * edits by range, send each range's edits to all its copies in one call, and fold the
 * copies' per-document results into one outcome per document.
 */
import { DivanError } from '../../errors';
import type { DocEdit, EditResult, RevId } from '../../shard/types';
import { askCopies, CopyReply, effectiveQuorum, groupByRange, noCopyError } from './quorum';
import type { DbHandle } from './shard-client';

export type DocOutcome =
  | { kind: 'ok'; id: string; rev: RevId }
  | { kind: 'accepted'; id: string; rev: RevId }
  | { kind: 'error'; id: string; rev?: RevId; error: DivanError };

export interface UpdateOptions {
  w?: number;
  timeoutMs: number;
}

export async function updateDocs(db: DbHandle, edits: DocEdit[], options: UpdateOptions): Promise<DocOutcome[]> {
  const byRange = groupByRange(edits.map((e) => e.id), db.q);
  const outcomes: DocOutcome[] = new Array(edits.length);
  await Promise.all(
    [...byRange].map(async ([rangeIndex, positions]) => {
      const range = db.ranges[rangeIndex]!;
      const rangeEdits = positions.map((i) => edits[i]!);
      const w = effectiveQuorum(options.w, db.n, range.copies.length);
      // Answer once w copies acknowledged (the others still apply the edits, and shard
      // sync reconciles them); at the deadline, answer with what arrived.
      const replies = await askCopies(range.copies, w, options.timeoutMs, (copy) => copy.updateDocs(rangeEdits));
      const oks = replies.filter((r): r is Extract<CopyReply<EditResult[]>, { kind: 'ok' }> => r.kind === 'ok');
      if (oks.length === 0) throw noCopyError(replies);
      positions.forEach((editIndex, j) => {
        outcomes[editIndex] = foldDoc(oks.map((r) => r.value[j]!), w);
      });
    }),
  );
  return outcomes;
}

function foldDoc(results: EditResult[], w: number): DocOutcome {
  const ok = results.filter((r): r is Extract<EditResult, { kind: 'ok' }> => r.kind === 'ok');
  if (ok.length >= w) return { kind: 'ok', id: ok[0]!.id, rev: ok[0]!.rev };
  if (ok.length > 0) return { kind: 'accepted', id: ok[0]!.id, rev: ok[0]!.rev };
  const failed = results.find((r): r is Extract<EditResult, { kind: 'error' }> => r.kind === 'error')!;
  return { kind: 'error', id: failed.id, error: failed.error, ...(failed.rev ? { rev: failed.rev } : {}) };
}
