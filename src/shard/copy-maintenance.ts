/**
 * The updater's maintenance operations on one shard copy: a compaction step over some
 * documents, purges, trimming the purge history, and the byte counters every update
 * keeps (CopyState's activeBytes, externalBytes, staleBytes). ShardCopy runs each of
 * these inside its updater, between edit batches, so none races an edit; each makes
 * one durable write (`commit`) with the copy's state.
 *
 * Compaction rules are in shard/compaction.ts, purge rules in shard/purge.ts; the keys
 * in storage/keys.ts.
 */
import assert from 'node:assert/strict';
import type { Store, WriteOp } from '../storage/store';
import * as keys from '../storage/keys';
import { encodeDocInfo, seqRecord, storedRecordBytes } from './doc-info';
import { purgeTree, type PurgeInfo, type PurgeRequest } from './purge';
import { leaves, stem, winner, type NodeSize, type RevId, type RevNode } from './rev-tree';
import type { AttachmentStub, CopyState, DocInfo } from './types';

/** What the operations need of their copy. */
export interface MaintenanceContext {
  readonly copyId: number;
  readonly store: Store;
  state(): CopyState;
  /** Write `ops` plus `state` durably, then make `state` the copy's (and wake feeds if its seq moved). */
  commit(state: CopyState, ops: WriteOp[]): Promise<void>;
  decodeInfo(id: string, raw: Buffer): DocInfo;
  readBody(id: string, rev: RevId): Promise<string | undefined>;
}

/** What one compaction step did. */
export interface CompactStep {
  /** Documents whose stored form changed. */
  docsChanged: number;
  /** Revision bodies deleted. */
  bodiesDropped: number;
}

/** Where an unfinished compaction records how far it got (copy metadata). */
export const COMPACTION_KEY = 'compaction';

/**
 * Drop the bodies of revisions that are no longer leaves, stem to `revsLimit`, measure
 * bodies stored before sizes were kept; each document keeps its seq (readers see no
 * change). `checkpoint` is written in the same write.
 */
export async function compactDocs(ctx: MaintenanceContext, ids: string[], checkpoint: string, revsLimit: number): Promise<CompactStep> {
  const stored = await ctx.store.getMany(ids.map((id) => keys.docInfoKey(ctx.copyId, id)));
  const state = { ...ctx.state() };
  const ops: WriteOp[] = [];
  const step: CompactStep = { docsChanged: 0, bodiesDropped: 0 };
  for (let i = 0; i < ids.length; i++) {
    const raw = stored[i];
    if (!raw) continue;
    const id = ids[i]!;
    const before = ctx.decodeInfo(id, raw);
    const unstemmed = new Map(before.tree);
    const stemmed = stem(unstemmed, revsLimit);
    const leafRevs = new Set(leaves(stemmed).map((leaf) => leaf.rev));
    const tree = new Map<RevId, RevNode>();
    // stem answers the map it was given when nothing is cut.
    let changed = stemmed !== unstemmed;
    for (const node of stemmed.values()) {
      if (node.hasBody && !leafRevs.has(node.rev)) {
        tree.set(node.rev, { rev: node.rev, pos: node.pos, parent: node.parent, deleted: node.deleted, hasBody: false });
        changed = true;
        continue;
      }
      if (node.hasBody && !node.size) {
        // Stored before sizes were kept: measure it now, so the counters become true.
        const body = await ctx.readBody(id, node.rev);
        tree.set(node.rev, body === undefined ? node : { ...node, size: bodySize(body) });
        changed ||= body !== undefined;
        continue;
      }
      tree.set(node.rev, node);
    }
    for (const node of before.tree.values()) {
      if (node.hasBody && !tree.get(node.rev)?.hasBody) {
        ops.push({ type: 'del', key: keys.revBodyKey(ctx.copyId, id, node.rev) });
        step.bodiesDropped++;
      }
    }
    if (!changed) continue;
    const after: DocInfo = { id, seq: before.seq, tree, winner: winner(tree)! };
    const encoded = encodeDocInfo(after);
    accountSizes(state, before, storedRecordBytes(raw), after, storedRecordBytes(encoded));
    ops.push({ type: 'put', key: keys.docInfoKey(ctx.copyId, id), value: encoded });
    ops.push({ type: 'put', key: keys.seqKey(ctx.copyId, before.seq), value: seqRecord(encoded) });
    step.docsChanged++;
  }
  ops.push({ type: 'put', key: keys.metaKey(ctx.copyId, COMPACTION_KEY), value: checkpoint });
  await ctx.commit(state, ops);
  return step;
}

/**
 * Apply purge requests in order, each once (a uuid already in the history answers what
 * it did then). Answers what each request removed, and the documents this call removed
 * whole (`removedNow`), for the copy's cache of them.
 */
export async function applyPurges(ctx: MaintenanceContext, requests: PurgeRequest[]): Promise<{ infos: PurgeInfo[]; removedNow: { id: string; seq: number }[] }> {
  const state = { ...ctx.state(), purgeSeq: ctx.state().purgeSeq ?? 0 };
  const ops: WriteOp[] = [];
  const infos: PurgeInfo[] = [];
  const removedNow: { id: string; seq: number }[] = [];
  // Documents purged earlier in this call, as they are now (undefined: gone).
  const current = new Map<string, { info: DocInfo | undefined; bytes: number }>();
  const recordedNow = new Map<string, PurgeInfo>();
  for (const request of requests) {
    const known = recordedNow.get(request.uuid) ?? (await purgeInfoByUuid(ctx, request.uuid));
    if (known) {
      infos.push(known);
      continue;
    }
    if (!current.has(request.id)) {
      const raw = await ctx.store.get(keys.docInfoKey(ctx.copyId, request.id));
      current.set(request.id, { info: raw ? ctx.decodeInfo(request.id, raw) : undefined, bytes: raw ? storedRecordBytes(raw) : 0 });
    }
    const { info: before, bytes } = current.get(request.id)!;
    const outcome = before ? purgeTree(before.tree, request.revs) : { tree: new Map<RevId, RevNode>(), purged: [], dropped: [] };
    let atSeq = 0;
    let removed = false;
    if (before && outcome.purged.length > 0) {
      state.updateSeq += 1;
      atSeq = state.updateSeq;
      // Caches of compiled design documents must see a purged one go.
      if (request.id.startsWith('_design/')) state.designSeq = state.updateSeq;
      for (const rev of outcome.dropped) if (before.tree.get(rev)?.hasBody) ops.push({ type: 'del', key: keys.revBodyKey(ctx.copyId, request.id, rev) });
      ops.push({ type: 'del', key: keys.seqKey(ctx.copyId, before.seq) });
      if (outcome.tree.size === 0) {
        removed = true;
        if (before.winner.deleted) state.docDelCount -= 1;
        else state.docCount -= 1;
        accountSizes(state, before, bytes, undefined, 0);
        ops.push({ type: 'del', key: keys.docInfoKey(ctx.copyId, request.id) });
        current.set(request.id, { info: undefined, bytes: 0 });
        removedNow.push({ id: request.id, seq: atSeq });
      } else {
        const after: DocInfo = { id: request.id, seq: atSeq, tree: outcome.tree, winner: winner(outcome.tree)! };
        countTransition(state, before, after);
        const encoded = encodeDocInfo(after);
        const length = storedRecordBytes(encoded);
        accountSizes(state, before, bytes, after, length);
        ops.push({ type: 'put', key: keys.docInfoKey(ctx.copyId, request.id), value: encoded });
        ops.push({ type: 'put', key: keys.seqKey(ctx.copyId, atSeq), value: seqRecord(encoded) });
        current.set(request.id, { info: after, bytes: length });
      }
    }
    state.purgeSeq += 1;
    const recorded: PurgeInfo = { ...request, purgeSeq: state.purgeSeq, purged: outcome.purged, atSeq, removed };
    ops.push({ type: 'put', key: keys.purgeSeqKey(ctx.copyId, state.purgeSeq), value: JSON.stringify(recorded) });
    ops.push({ type: 'put', key: keys.purgeUuidKey(ctx.copyId, request.uuid), value: String(state.purgeSeq) });
    for (const rev of outcome.purged) ops.push({ type: 'put', key: keys.purgedRevKey(ctx.copyId, request.id, rev), value: String(state.purgeSeq) });
    recordedNow.set(request.uuid, recorded);
    infos.push(recorded);
  }
  if (ops.length > 0) await ctx.commit(state, ops);
  return { infos, removedNow };
}

/** Forget purge history up to `keepAfterSeq`; answers how many requests went. */
export async function trimPurges(ctx: MaintenanceContext, keepAfterSeq: number): Promise<number> {
  const ops: WriteOp[] = [];
  let trimmed = 0;
  const cursor = ctx.store.cursor({ ...keys.purgeSeqRange(ctx.copyId, 0), valuesAsText: true }, 256);
  try {
    scan: for (let batch = await cursor.next(); batch; batch = await cursor.next()) {
      for (const [key, value] of batch) {
        if (keys.decodePurgeSeqKey(key) > keepAfterSeq) break scan;
        const info = JSON.parse(value) as PurgeInfo;
        ops.push({ type: 'del', key });
        ops.push({ type: 'del', key: keys.purgeUuidKey(ctx.copyId, info.uuid) });
        for (const rev of info.purged) ops.push({ type: 'del', key: keys.purgedRevKey(ctx.copyId, info.id, rev) });
        trimmed++;
      }
    }
  } finally {
    await cursor.close();
  }
  if (ops.length > 0) await ctx.store.write(ops);
  return trimmed;
}

async function purgeInfoByUuid(ctx: MaintenanceContext, uuid: string): Promise<PurgeInfo | undefined> {
  const seq = await ctx.store.get(keys.purgeUuidKey(ctx.copyId, uuid));
  if (!seq) return undefined;
  const raw = await ctx.store.get(keys.purgeSeqKey(ctx.copyId, Number(seq.toString('latin1'))));
  return raw ? (JSON.parse(raw.toString('utf8')) as PurgeInfo) : undefined;
}

/** Purge requests recorded after `since` (purge seq), oldest first, at most `limit`. */
export async function readPurgeInfos(store: Store, copyId: number, since: number, limit: number): Promise<PurgeInfo[]> {
  const cursor = store.cursor({ ...keys.purgeSeqRange(copyId, since), limit, valuesAsText: true }, Math.min(256, limit));
  const out: PurgeInfo[] = [];
  try {
    for (let batch = await cursor.next(); batch; batch = await cursor.next()) for (const [, value] of batch) out.push(JSON.parse(value) as PurgeInfo);
  } finally {
    await cursor.close();
  }
  return out;
}

// ---- counters --------------------------------------------------------------------------

export function countTransition(state: CopyState, before: DocInfo | undefined, after: DocInfo): void {
  if (before) {
    if (before.winner.deleted) state.docDelCount -= 1;
    else state.docCount -= 1;
  }
  if (after.winner.deleted) state.docDelCount += 1;
  else state.docCount += 1;
  assert.ok(state.docCount >= 0 && state.docDelCount >= 0, 'document counts went negative');
}

/** What a copy's stored form of one document takes: see CopyState's byte counters. */
function storedSizes(info: DocInfo | undefined, recordBytes: number): { active: number; external: number; stale: number } {
  if (!info) return { active: 0, external: 0, stale: 0 };
  // recordBytes: the doc info under its id and its summary under its seq (doc-info.ts).
  const out = { active: recordBytes, external: 0, stale: 0 };
  const parents = new Set<RevId>();
  for (const node of info.tree.values()) if (node.parent !== null) parents.add(node.parent);
  for (const node of info.tree.values()) {
    if (!node.hasBody || !node.size) continue;
    if (parents.has(node.rev)) out.stale += node.size.active;
    else {
      out.active += node.size.active;
      out.external += node.size.external;
    }
  }
  return out;
}

/** Move the copy's byte counters from a document's old stored form to its new one. */
export function accountSizes(state: CopyState, before: DocInfo | undefined, beforeBytes: number, after: DocInfo | undefined, afterBytes: number): void {
  const was = storedSizes(before, beforeBytes);
  const now = storedSizes(after, afterBytes);
  state.activeBytes = Math.max(0, (state.activeBytes ?? 0) + now.active - was.active);
  state.externalBytes = Math.max(0, (state.externalBytes ?? 0) + now.external - was.external);
  state.staleBytes = Math.max(0, (state.staleBytes ?? 0) + now.stale - was.stale);
}

/** The size of a stored body measured from its text (bodies stored before sizes were kept). */
function bodySize(body: string): NodeSize {
  const bytes = Buffer.byteLength(body, 'utf8');
  let external = bytes;
  let active = bytes;
  if (body.includes('"_attachments"')) {
    const stubs = (JSON.parse(body) as { _attachments?: Record<string, AttachmentStub> })._attachments ?? {};
    for (const stub of Object.values(stubs)) {
      external += stub.length;
      active += stub.encoded_length ?? stub.length;
    }
  }
  return { external, active };
}
