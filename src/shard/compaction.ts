/**
 * Compacting one shard copy, online: what CouchDB's compactor does to a database file,
 * done in place on the copy's keys while every read and write keeps being served.
 *
 * 1. Documents: walk the doc infos in id order; each document that holds bodies of
 *    revisions that are no longer leaves (or a tree longer than `revs_limit`, or
 *    bodies stored before sizes were kept) goes to the copy's updater in a `compact`
 *    step of at most `batchDocs` documents. The step re-reads the document there, so
 *    it never races an edit, keeps the document's seq (readers see no change) and
 *    records the walk's position in the same durable write: after kill -9 the walk
 *    resumes from it.
 * 2. Attachments (mark and sweep): the copy starts a guard that records every digest
 *    an edit refers to from then on; the mark reads every stored body and collects the
 *    attachments (digest and stored form) they refer to; attachments referenced by
 *    neither are deleted by a `sweep`
 *    step in the updater, which drops a candidate the guard has seen meanwhile. So an
 *    attachment some body refers to is never deleted: a body written before the mark
 *    began is in the mark's snapshot, one written after is in the guard, and the sweep
 *    and edits are serialized by the updater.
 * 3. Purge history beyond `_purged_infos_limit` is forgotten, but never a request a
 *    view or Mango index of the copy has not absorbed yet.
 * 4. RocksDB is asked to compact the copy's spaces one by one (not its indexes), which
 *    frees what the deletes and overwrites left in its files.
 *
 * Each step yields to the event loop and to the updater's queue, so edits wait for one
 * step at most, and then rests (`dutyPercent`): on a busy node a compaction takes longer
 * instead of taking the requests' share of the CPU. A cancelled run (node shutdown)
 * keeps its checkpoint and resumes.
 */
import type { ShardCopy } from './shard-copy';
import { decodeDocInfo } from './doc-info';
import { leaves } from './rev-tree';
import type { DocInfo } from './types';
import * as keys from '../storage/keys';

export interface CompactionOptions {
  /** Documents per updater step. */
  batchDocs: number;
  /**
   * Share of wall time the compaction works, percent: after each step it rests so that
   * work is at most this share (100: no rest). Keeps requests' throughput while it runs.
   */
  dutyPercent: number;
  revsLimit: number;
  purgedInfosLimit: number;
  /** The lowest copy seq the copy's indexes have absorbed (purge history they still need). */
  indexedSeq(): Promise<number>;
}

/** How far a run got, for `_active_tasks`. */
export interface CompactionProgress {
  phase: 'documents' | 'attachments' | 'purges' | 'storage' | 'done';
  /** Documents walked (phase 1). */
  changesDone: number;
  /** Documents to walk (the copy's count at start; an estimate). */
  totalChanges: number;
  bodiesDropped: number;
  attachmentsDropped: number;
  purgesTrimmed: number;
  /** Milliseconds each finished phase took (for the log: where a compaction's time goes). */
  phaseMs: Partial<Record<CompactionProgress['phase'], number>>;
}

/** Rests between steps so that work takes at most `dutyPercent` of wall time. */
class Pacer {
  private workStartMs = Date.now();

  constructor(
    private readonly dutyPercent: number,
    private readonly signal: AbortSignal,
  ) {}

  async rest(): Promise<void> {
    const workedMs = Date.now() - this.workStartMs;
    const restMs = this.dutyPercent >= 100 ? 0 : Math.min(1000, (workedMs * (100 - this.dutyPercent)) / this.dutyPercent);
    await new Promise<void>((resolve) => {
      if (restMs < 1 || this.signal.aborted) return setImmediate(resolve);
      const timer = setTimeout(resolve, restMs);
      this.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
    this.workStartMs = Date.now();
  }
}

/** The spaces RocksDB is asked to rewrite, one at a time (the index space is the indexes' own). */
const SPACES_TO_REWRITE = [keys.Space.DocInfo, keys.Space.BySeq, keys.Space.RevBody, keys.Space.Attachment, keys.Space.Local, keys.Space.Meta, keys.Space.Purge];

interface Checkpoint {
  phase: 'documents' | 'attachments';
  /** The last doc id walked. */
  after?: string;
  changesDone: number;
}

export async function compactCopy(copy: ShardCopy, options: CompactionOptions, progress: CompactionProgress, signal: AbortSignal): Promise<void> {
  const saved = await copy.compactionCheckpoint();
  const checkpoint: Checkpoint = saved ? (JSON.parse(saved) as Checkpoint) : { phase: 'documents', changesDone: 0 };
  const pacer = new Pacer(options.dutyPercent, signal);
  const state = copy.getState();
  progress.totalChanges = state.docCount + state.docDelCount;
  progress.changesDone = checkpoint.changesDone;
  let phaseStartMs = Date.now();
  const enter = (phase: CompactionProgress['phase']) => {
    const now = Date.now();
    progress.phaseMs[progress.phase] = (progress.phaseMs[progress.phase] ?? 0) + now - phaseStartMs;
    phaseStartMs = now;
    progress.phase = phase;
  };
  if (checkpoint.phase === 'documents') {
    progress.phase = 'documents';
    if (!(await compactDocuments(copy, options, progress, checkpoint, signal, pacer))) return;
    checkpoint.phase = 'attachments';
    delete checkpoint.after;
    await copy.compactDocs([], JSON.stringify(checkpoint), options.revsLimit);
  }
  enter('attachments');
  if (!(await sweepAttachments(copy, progress, signal, pacer))) return;
  enter('purges');
  progress.purgesTrimmed = await trimPurgeHistory(copy, options);
  enter('storage');
  for (const space of SPACES_TO_REWRITE) {
    if (signal.aborted) return;
    await copy.compactSpace(space);
    await pacer.rest();
  }
  await copy.clearCompactionCheckpoint();
  enter('done');
  progress.changesDone = Math.max(progress.changesDone, progress.totalChanges);
}

function needsCompaction(info: DocInfo, revsLimit: number): boolean {
  if (info.tree.size > revsLimit) return true;
  const leafRevs = new Set(leaves(info.tree).map((leaf) => leaf.rev));
  for (const node of info.tree.values()) if (node.hasBody && (!leafRevs.has(node.rev) || !node.size)) return true;
  return false;
}

async function compactDocuments(copy: ShardCopy, options: CompactionOptions, progress: CompactionProgress, checkpoint: Checkpoint, signal: AbortSignal, pacer: Pacer): Promise<boolean> {
  const cursor = copy.docInfoScan(checkpoint.after);
  let pending: string[] = [];
  const flush = async (after: string | undefined) => {
    if (after !== undefined) checkpoint.after = after;
    checkpoint.changesDone = progress.changesDone;
    const step = await copy.compactDocs(pending, JSON.stringify(checkpoint), options.revsLimit);
    progress.bodiesDropped += step.bodiesDropped;
    pending = [];
  };
  try {
    let last: string | undefined;
    for (let batch = await cursor.next(); batch; batch = await cursor.next()) {
      if (signal.aborted) return false;
      for (const [key, value] of batch) {
        const id = keys.decodeTextKey(key);
        last = id;
        progress.changesDone++;
        let info: DocInfo;
        try {
          info = decodeDocInfo(value);
        } catch {
          continue; // a corrupt record is reported by reads; compaction leaves it alone
        }
        if (!needsCompaction(info, options.revsLimit)) continue;
        pending.push(id);
        if (pending.length >= options.batchDocs) {
          await flush(id);
          await pacer.rest();
        }
      }
      await pacer.rest();
    }
    if (pending.length > 0 || last !== undefined) await flush(last);
    return true;
  } finally {
    await cursor.close();
  }
}

async function sweepAttachments(copy: ShardCopy, progress: CompactionProgress, signal: AbortSignal, pacer: Pacer): Promise<boolean> {
  copy.beginSweepGuard();
  try {
    const referenced = new Set<string>();
    const bodies = copy.bodyKeys(undefined);
    try {
      for (let batch = await bodies.next(); batch; batch = await bodies.next()) {
        if (signal.aborted) return false;
        for (const [, value] of batch) {
          const text = value.toString('utf8');
          if (!text.includes('"_attachments"')) continue;
          const stubs = (JSON.parse(text) as { _attachments?: Record<string, { digest?: unknown; encoding?: unknown }> })._attachments;
          for (const stub of Object.values(stubs ?? {})) {
            if (typeof stub.digest !== 'string') continue;
            const encoding = typeof stub.encoding === 'string' ? stub.encoding : undefined;
            referenced.add(keys.attachmentName(stub.digest, encoding));
            // Encoded bytes stored before forms were kept apart sit under the bare digest.
            if (encoding !== undefined) referenced.add(stub.digest);
          }
        }
        await pacer.rest();
      }
    } finally {
      await bodies.close();
    }
    const stored = copy.attachmentKeys();
    let candidates: string[] = [];
    try {
      for (let batch = await stored.next(); batch; batch = await stored.next()) {
        if (signal.aborted) return false;
        for (const [key] of batch) {
          const name = keys.decodeTextKey(key);
          if (!referenced.has(name)) candidates.push(name);
        }
        if (candidates.length >= 256) {
          progress.attachmentsDropped += await copy.sweepAttachments(candidates);
          candidates = [];
          await pacer.rest();
        }
      }
    } finally {
      await stored.close();
    }
    if (candidates.length > 0) progress.attachmentsDropped += await copy.sweepAttachments(candidates);
    return true;
  } finally {
    copy.endSweepGuard();
  }
}

/** Forget the oldest purge requests beyond the limit, keeping any an index still needs. */
async function trimPurgeHistory(copy: ShardCopy, options: CompactionOptions): Promise<number> {
  const purgeSeq = copy.getState().purgeSeq ?? 0;
  let keepAfter = purgeSeq - options.purgedInfosLimit;
  if (keepAfter <= 0) return 0;
  const indexed = await options.indexedSeq();
  for (const info of await copy.purgeInfos(0, keepAfter)) {
    if (info.atSeq > indexed) {
      keepAfter = info.purgeSeq - 1;
      break;
    }
  }
  return keepAfter > 0 ? copy.trimPurges(keepAfter) : 0;
}
