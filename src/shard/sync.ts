/**
 * Shard sync: one copy pushes to a sibling copy (same database, same range, another
 * node) every revision the sibling lacks, so copies converge after failures and
 * partitions without an operator.
 *
 * From a checkpoint (this copy's sequence last pushed to that sibling), read this
 * copy's changes in batches; ask the sibling for those documents' trees (the
 * revs_diff step); for each leaf the sibling does not have, send the leaf's path,
 * body and attachments as a replicated edit (merged, never a conflict). The
 * checkpoint advances only after the sibling acknowledged the batch, so a failed
 * push repeats (replicated edits are idempotent) and never skips.
 *
 * Purges first: before any document, the two copies exchange the purge requests each
 * recorded since the last exchange (both ways), so a copy that missed a purge (it was
 * down) applies it before it could push the purged revisions back; and the target
 * refuses purged revisions offered by sync anyway (DocEdit.internal).
 *
 * Source and target are interfaces: the shard layer does not know where either lives
 * (a rebalance pushes from another node's copy through this one).
 */
import { DivanError, UnavailableError } from '../errors';
import { parseStoredJson } from '../json';
import { ancestry, leaves } from './rev-tree';
import type { ShardCopy } from './shard-copy';
import type { PurgeInfo, PurgeRequest } from './purge';
import type { AttachmentInput, AttachmentStub, DocEdit, DocInfo, EditResult } from './types';

export interface SyncTarget {
  getDocInfos(ids: string[]): Promise<(DocInfo | undefined)[]>;
  updateDocs(edits: DocEdit[]): Promise<EditResult[]>;
}

/** Where missing revisions are read from: a local copy or any ShardClient. */
export interface RevisionSource {
  readBody(id: string, rev: string): Promise<string | undefined>;
  /** Stored bytes by digest and form (undefined: identity). */
  readAttachment(digest: string, encoding?: string): Promise<Buffer | undefined>;
}

export interface SyncResult {
  /** Changes rows read from this copy. */
  docsChecked: number;
  /** Revisions the sibling lacked and received. */
  revisionsSent: number;
  /** This copy's sequence the sibling is now known to have. */
  checkpoint: number;
}

/** A copy to push from: a local ShardCopy or any ShardClient (another node's copy). */
export interface SyncSource extends RevisionSource {
  changes: ShardCopy['changes'];
  getDocInfos(ids: string[]): Promise<(DocInfo | undefined)[]>;
}

/** A copy's purge history, as sync exchanges it. */
export interface PurgeHistory {
  purgeInfos(since: number, limit: number): Promise<PurgeInfo[]>;
  purge(requests: PurgeRequest[]): Promise<PurgeInfo[]>;
}

/** Where a push records how far it got; without one a push starts from 0 each time. */
export interface SyncCheckpoint {
  load(): Promise<number>;
  save(seq: number): Promise<void>;
}

/** The checkpoint of pushes from a local copy, kept in that copy's metadata. */
export function copyCheckpoint(copy: ShardCopy, name: string): SyncCheckpoint {
  return {
    load: async () => Number((await copy.readMeta(name)) ?? '0'),
    save: (seq) => copy.writeMeta(name, String(seq)),
  };
}

export async function pushToSibling(
  source: SyncSource,
  target: SyncTarget,
  options: {
    checkpoint?: SyncCheckpoint;
    batchDocsMax: number;
    isCancelled?: () => boolean;
    /** Exchange purge history first (both must be PurgeHistory); checkpoints of each direction. */
    purges?: { pull?: SyncCheckpoint; push?: SyncCheckpoint };
  },
): Promise<SyncResult> {
  if (options.purges && isPurgeHistory(source) && isPurgeHistory(target)) {
    try {
      await copyPurges(target, source, options.purges.pull, options.batchDocsMax);
      await copyPurges(source, target, options.purges.push, options.batchDocsMax);
    } catch (err) {
      // A sibling of an earlier version has no purge calls (400): documents still sync,
      // and no purged revision can come back through them (it refuses nothing, but this
      // copy refuses what it purged). Anything else is a failed sync.
      if (!(err instanceof DivanError && err.kind === 'bad_request')) throw err;
    }
  }
  let checkpoint = options.checkpoint ? await options.checkpoint.load() : 0;
  const result: SyncResult = { docsChecked: 0, revisionsSent: 0, checkpoint };
  for (;;) {
    if (options.isCancelled?.()) return result;
    const rows = await readBatch(source, checkpoint, options.batchDocsMax);
    if (rows.length === 0) return result;
    const ids = rows.map((r) => r.id);
    const [mine, theirs] = await Promise.all([source.getDocInfos(ids), target.getDocInfos(ids)]);
    const edits: DocEdit[] = [];
    for (let i = 0; i < ids.length; i++) {
      const info = mine[i];
      if (info) edits.push(...(await missingEdits(source, info, theirs[i])));
    }
    if (edits.length > 0) {
      const results = await target.updateDocs(edits);
      const failed = results.find((r) => r.kind === 'error');
      if (failed && failed.kind === 'error') {
        throw new UnavailableError(`sibling refused ${failed.id}: ${failed.error.reason}`, 'sync_failed');
      }
    }
    checkpoint = rows[rows.length - 1]!.seq;
    await options.checkpoint?.save(checkpoint);
    result.docsChecked += rows.length;
    result.revisionsSent += edits.length;
    result.checkpoint = checkpoint;
  }
}

function isPurgeHistory(value: unknown): value is PurgeHistory {
  const v = value as Partial<PurgeHistory>;
  return typeof v.purgeInfos === 'function' && typeof v.purge === 'function';
}

/** Apply on `to` the purge requests `from` recorded after the checkpoint (its purge seq). */
export async function copyPurges(from: PurgeHistory, to: PurgeHistory, checkpoint: SyncCheckpoint | undefined, batch: number): Promise<number> {
  let since = checkpoint ? await checkpoint.load() : 0;
  let applied = 0;
  for (;;) {
    const infos = await from.purgeInfos(since, batch);
    if (infos.length === 0) return applied;
    await to.purge(infos.map(({ uuid, id, revs }) => ({ uuid, id, revs })));
    applied += infos.length;
    since = infos[infos.length - 1]!.purgeSeq;
    await checkpoint?.save(since);
  }
}

async function readBatch(source: SyncSource, since: number, limit: number): Promise<{ id: string; seq: number }[]> {
  const cursor = source.changes({
    since,
    descending: false,
    limit,
    allLeaves: true,
    includeDocs: false,
    conflicts: false,
    filter: { kind: 'none' },
  });
  const out: { id: string; seq: number }[] = [];
  try {
    for (let batch = await cursor.next(); batch; batch = await cursor.next()) {
      for (const row of batch) out.push({ id: row.id, seq: row.seq });
    }
  } finally {
    await cursor.close();
  }
  return out;
}

/** Replicated edits for every leaf of `mine` that `theirs` lacks (or holds without a body). */
export async function missingEdits(source: RevisionSource, mine: DocInfo, theirs: DocInfo | undefined): Promise<DocEdit[]> {
  const edits: DocEdit[] = [];
  for (const leaf of leaves(mine.tree)) {
    if (theirs?.tree.get(leaf.rev)?.hasBody) continue;
    if (!leaf.hasBody) continue;
    const body = await source.readBody(mine.id, leaf.rev);
    if (body === undefined) continue;
    const parsed = parseStoredJson(body) as Record<string, unknown>;
    const stubs = parsed._attachments as Record<string, AttachmentStub> | undefined;
    delete parsed._attachments;
    let attachments: AttachmentInput[] | null = null;
    if (stubs) {
      attachments = [];
      for (const [name, stub] of Object.entries(stubs)) {
        const data = await source.readAttachment(stub.digest, stub.encoding);
        if (!data) throw new UnavailableError(`attachment ${stub.digest} of ${mine.id} is missing locally`, 'sync_failed');
        // The stub's digest travels: one the server compressed is not the md5 of `data`.
        const att: AttachmentInput = { kind: 'data', name, contentType: stub.content_type, data, revpos: stub.revpos, digest: stub.digest };
        if (stub.encoding !== undefined) {
          att.encoding = stub.encoding;
          att.length = stub.length;
        }
        attachments.push(att);
      }
    }
    edits.push({ id: mine.id, deleted: leaf.deleted, body: parsed, attachments, revs: ancestry(mine.tree, leaf.rev), internal: true });
  }
  return edits;
}
