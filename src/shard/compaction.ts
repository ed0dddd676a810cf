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
 * 4. RocksDB is asked to compact the copy's key range, which frees what the deletes and
 *    overwrites left in its files.
 *
 * Each step yields to the event loop and to the updater's queue, so edits wait for one
 * step at most. A cancelled run (node shutdown) keeps its checkpoint and resumes.
 */
import type { ShardCopy } from './shard-copy';
import { decodeDocInfo } from './doc-info';
import { leaves } from './rev-tree';
import type { DocInfo } from './types';
import * as keys from '../storage/keys';

export interface CompactionOptions {
  /** Documents per updater step. */
  batchDocs: number;
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
}

interface Checkpoint {
  phase: 'documents' | 'attachments';
  /** The last doc id walked. */
  after?: string;
  changesDone: number;
}

export async function compactCopy(copy: ShardCopy, options: CompactionOptions, progress: CompactionProgress, signal: AbortSignal): Promise<void> {
  const saved = await copy.compactionCheckpoint();
  const checkpoint: Checkpoint = saved ? (JSON.parse(saved) as Checkpoint) : { phase: 'documents', changesDone: 0 };
  const state = copy.getState();
  progress.totalChanges = state.docCount + state.docDelCount;
  progress.changesDone = checkpoint.changesDone;
  if (checkpoint.phase === 'documents') {
    progress.phase = 'documents';
    if (!(await compactDocuments(copy, options, progress, checkpoint, signal))) return;
    checkpoint.phase = 'attachments';
    delete checkpoint.after;
    await copy.compactDocs([], JSON.stringify(checkpoint), options.revsLimit);
  }
  progress.phase = 'attachments';
  if (!(await sweepAttachments(copy, progress, signal))) return;
  progress.phase = 'purges';
  progress.purgesTrimmed = await trimPurgeHistory(copy, options);
  progress.phase = 'storage';
  await copy.compactStorage();
  await copy.clearCompactionCheckpoint();
  progress.phase = 'done';
  progress.changesDone = Math.max(progress.changesDone, progress.totalChanges);
}

function needsCompaction(info: DocInfo, revsLimit: number): boolean {
  if (info.tree.size > revsLimit) return true;
  const leafRevs = new Set(leaves(info.tree).map((leaf) => leaf.rev));
  for (const node of info.tree.values()) if (node.hasBody && (!leafRevs.has(node.rev) || !node.size)) return true;
  return false;
}

async function compactDocuments(copy: ShardCopy, options: CompactionOptions, progress: CompactionProgress, checkpoint: Checkpoint, signal: AbortSignal): Promise<boolean> {
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
        if (pending.length >= options.batchDocs) await flush(id);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (pending.length > 0 || last !== undefined) await flush(last);
    return true;
  } finally {
    await cursor.close();
  }
}

async function sweepAttachments(copy: ShardCopy, progress: CompactionProgress, signal: AbortSignal): Promise<boolean> {
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
        await new Promise((resolve) => setImmediate(resolve));
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
