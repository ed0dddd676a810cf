/**
 * Document updates (`PUT /db/doc`, `_bulk_docs`, deletes, attachment writes): group
 * edits by range, send each range's edits to all its copies in one call, and fold the
 * copies' per-document results into one outcome per document (the rules, and why at
 * most one of two racing writers is told it won, are in quorum.ts).
 *
 * The answer can come before every copy has applied the edits. A copy still applying
 * them when the client is answered is fenced (see write-fence.ts): range reads through
 * this node wait for it first, so they see every write this node acknowledged. The
 * copy those reads prefer (this node's own) is also brought up at once when it
 * refused a document the write won.
 */
import { DivanError } from '../../errors';
import { missingEdits } from '../../shard/sync';
import type { DocEdit, EditResult, RevId } from '../../shard/types';
import { askAllCopies, CopyReply, EditTally, effectiveQuorum, groupByRange, noCopyError, writeVerdict, type WriteVerdict } from './quorum';
import type { DbHandle, RangeCopies, ShardClient } from './shard-client';
import { validateEdits, type Validation } from './validate';
import { fenceWrite } from './write-fence';

export type DocOutcome =
  | { kind: 'ok'; id: string; rev: RevId }
  | { kind: 'accepted'; id: string; rev: RevId }
  | { kind: 'error'; id: string; rev?: RevId; error: DivanError };

export interface UpdateOptions {
  w?: number;
  timeoutMs: number;
  /**
   * A client's write: run the validation step (validate.ts) first. Internal writes
   * (sync, adoption, repair) leave it out.
   */
  validate?: Validation;
}

type OkReply = Extract<CopyReply<EditResult[]>, { kind: 'ok' }>;

export async function updateDocs(db: DbHandle, edits: DocEdit[], options: UpdateOptions): Promise<DocOutcome[]> {
  if (!options.validate) return writeDocs(db, edits, options);
  const refused = await validateEdits(db, edits, options.validate, options.timeoutMs);
  const kept = edits.filter((_, i) => refused[i] === undefined);
  const written = kept.length === 0 ? [] : await writeDocs(db, kept, options);
  let at = 0;
  const outcomes = edits.map((edit, i): DocOutcome => (refused[i] ? { kind: 'error', id: edit.id, error: refused[i]! } : written[at++]!));
  // This node's cache of validators sees a design document written through it at once.
  if (outcomes.some((o, i) => o.kind !== 'error' && edits[i]!.id.startsWith('_design/'))) options.validate.functions.forget(db.uuid);
  options.validate.hooks?.get(db.name)?.written(outcomes.filter((o) => o.kind !== 'error').map((o) => o.id));
  return outcomes;
}

async function writeDocs(db: DbHandle, edits: DocEdit[], options: UpdateOptions): Promise<DocOutcome[]> {
  const byRange = groupByRange(edits.map((e) => e.id), db.q);
  const outcomes: DocOutcome[] = new Array(edits.length);
  const deadline = Date.now() + options.timeoutMs;
  await Promise.all(
    [...byRange].map(async ([rangeIndex, positions]) => {
      const range = db.ranges[rangeIndex]!;
      const rangeEdits = positions.map((i) => edits[i]!);
      // Copies a rebalance is still filling get every edit but do not vote: one lacking
      // a document would refuse every update of it, and a fourth voter would let two
      // racing writers each reach two acknowledgements.
      const voters = votersOf(range);
      const w = effectiveQuorum(options.w, db.n, voters);
      const verdicts = (replies: readonly CopyReply<EditResult[]>[]) => {
        const votes = replies.filter((r) => r.copy < voters);
        const oks = votes.filter((r): r is OkReply => r.kind === 'ok');
        const final = votes.length === voters;
        return rangeEdits.map((_, j) => writeVerdict(tallyOf(oks, j), voters, db.n, w, final));
      };
      // Answer once every document has its verdict (w copies took it, or a majority
      // refused it) or every voter answered; at the deadline, with what arrived. Copies
      // still working go on applying the edits (shard sync reconciles them).
      const calls = new Map<ShardClient, Promise<EditResult[]>>();
      const { replies } = await askAllCopies(
        range.copies,
        options.timeoutMs,
        (copy) => {
          const call = copy.updateDocs(rangeEdits);
          calls.set(copy, call);
          return call;
        },
        (sofar) => verdicts(sofar).every((v) => v !== 'pending'),
      );
      const votes = replies.filter((r) => r.copy < voters);
      const oks = votes.filter((r): r is OkReply => r.kind === 'ok');
      if (oks.length === 0) throw noCopyError(votes);
      // After the wait, what arrived is final (the deadline passed or all voters answered).
      const won: boolean[] = [];
      positions.forEach((editIndex, j) => {
        const verdict = writeVerdict(tallyOf(oks, j), voters, db.n, w, true);
        won[j] = verdict === 'ok' || verdict === 'accepted';
        outcomes[editIndex] = outcomeOf(verdict, oks.map((r) => r.value[j]!));
      });
      const answered = new Set(replies.map((r) => r.copy));
      range.copies.forEach((copy, i) => {
        const call = calls.get(copy);
        if (!call) return;
        if (i === 0) {
          // The copy range reads through this node prefer: fence it until it applied the
          // edits, and until it holds every winning revision it refused.
          const mine = replies.find((r) => r.copy === 0);
          const landed = call.then((results) => bringUp(copy, range.copies, refusedWinners(results, won, oks)));
          if (!mine || (mine.kind === 'ok' && refusedWinners(mine.value, won, oks).length > 0)) fenceWrite(copy, landed, deadline);
          else landed.catch(() => undefined);
        } else if (!answered.has(i)) fenceWrite(copy, call, deadline);
      });
    }),
  );
  return outcomes;
}

const bringUpDocsMax = 100;

/**
 * The documents a copy refused although the write won, each with a copy that took it
 * (at most `bringUpDocsMax`).
 */
function refusedWinners(results: readonly EditResult[], won: readonly boolean[], oks: readonly OkReply[]): { id: string; source: number }[] {
  const out: { id: string; source: number }[] = [];
  for (let j = 0; j < results.length && out.length < bringUpDocsMax; j++) {
    if (!won[j] || results[j]!.kind !== 'error') continue;
    const source = oks.find((r) => r.value[j]!.kind === 'ok');
    if (source) out.push({ id: results[j]!.id, source: source.copy });
  }
  return out;
}

/**
 * Send `target` the revisions of the documents it refused that a copy which took them
 * has and it lacks, as replicated edits: what shard sync would do later, done now so
 * this node's range reads see the write it acknowledged. A failure leaves it to sync.
 */
async function bringUp(target: ShardClient, copies: readonly ShardClient[], docs: readonly { id: string; source: number }[]): Promise<void> {
  if (docs.length === 0) return;
  const bySource = new Map<number, string[]>();
  for (const { id, source } of docs) bySource.set(source, [...(bySource.get(source) ?? []), id]);
  try {
    for (const [sourceIndex, ids] of bySource) {
      const source = copies[sourceIndex]!;
      const [mine, theirs] = await Promise.all([source.getDocInfos(ids), target.getDocInfos(ids)]);
      const edits: DocEdit[] = [];
      for (let j = 0; j < ids.length; j++) {
        if (mine[j]) edits.push(...(await missingEdits(source, mine[j]!, theirs[j])));
      }
      if (edits.length > 0) await target.updateDocs(edits);
    }
  } catch {
    // Shard sync brings the copy up on its own schedule.
  }
}

function votersOf(range: RangeCopies): number {
  const established = range.established ?? range.copies.length;
  return established > 0 ? Math.min(established, range.copies.length) : range.copies.length;
}

function tallyOf(oks: readonly OkReply[], j: number): EditTally {
  let ok = 0;
  let refused = 0;
  for (const reply of oks) {
    if (reply.value[j]!.kind === 'ok') ok++;
    else refused++;
  }
  return { ok, refused };
}

function outcomeOf(verdict: WriteVerdict, results: EditResult[]): DocOutcome {
  const ok = results.find((r): r is Extract<EditResult, { kind: 'ok' }> => r.kind === 'ok');
  if (verdict === 'ok' && ok) return { kind: 'ok', id: ok.id, rev: ok.rev };
  if (verdict === 'accepted' && ok) return { kind: 'accepted', id: ok.id, rev: ok.rev };
  const failed = results.find((r): r is Extract<EditResult, { kind: 'error' }> => r.kind === 'error');
  // Every copy that answered is in `results` (at least one): no refusal means the
  // verdict was ok/accepted, handled above.
  return { kind: 'error', id: failed!.id, error: failed!.error, ...(failed!.rev ? { rev: failed!.rev } : {}) };
}
