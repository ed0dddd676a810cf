/**
 * One shard copy on this node: a range of one database's documents in the node's
 * RocksDB, under the copy's own key prefix (see storage/keys.ts).
 *
 * Updates go through one updater per copy: edits that arrive while a batch is being
 * applied wait and form the next batch, which is applied in arrival order against
 * the trees left by earlier edits of the same batch, then written as one durable
 * write (the store group-commits across copies too). Every edit is acknowledged only
 * after its batch is on disk. The copy's counters (update seq, doc counts) are kept in
 * memory and written in the same batch, so they never disagree with the data.
 *
 * The updater's queue also carries the copy's maintenance operations (UpdaterOp:
 * compaction steps, purges, the attachment sweep, purge-history trims; see
 * copy-maintenance.ts and compaction.ts). Each runs alone between edit batches, so
 * none races an edit and an edit waits for one bounded step at most.
 *
 * Reads (doc infos, bodies, attachments, _all_docs and _changes cursors) go straight
 * to the store: they see every acknowledged write.
 */
import { DivanError, UnavailableError } from '../errors';
import type { Cursor, Store, WriteOp } from '../storage/store';
import * as keys from '../storage/keys';
import { applyEdit, EditContext } from './edit';
import { CopyIndexes, type CopyIndexesOptions, type IndexTask } from './index/copy-indexes';
import type { IndexInfo, DesignDocRef, FindStreamItem, ReducedRow, ShardFindRequest, ShardReduceRequest, ShardViewRequest, ViewRow, ViewStreamItem } from './index/types';
import { compileSelector } from './query/mango';
import { conflictRevs, renderDoc } from './render';
import { decodeDocInfo, decodeSummary, DocSummary, encodeDocInfo, seqRecord, storedRecordBytes } from './doc-info';
import { sortedLeaves, type RevId } from './rev-tree';
import { DocInfoCache } from './doc-info-cache';
import type { PurgeInfo, PurgeRequest } from './purge';
import { accountSizes, applyPurges, COMPACTION_KEY, compactDocs, countTransition, readPurgeInfos, trimPurges, type CompactStep, type MaintenanceContext } from './copy-maintenance';
import type {
  AllDocsOptions,
  AllDocsRow,
  ChangeRow,
  ChangesOptions,
  CopyState,
  DocEdit,
  DocInfo,
  EditResult,
  LocalDoc,
} from './types';

/** How a copy builds its view indexes (absent: the copy has none, every view query fails). */
export type IndexingOptions = Omit<CopyIndexesOptions, 'copyId' | 'store'>;

export interface ShardCopyLimits {
  /** Edits applied in one updater batch at most. */
  updateBatchDocsMax: number;
  /** Edits waiting for the updater at most; beyond, new edits fail with 503. */
  updateQueueDocsMax: number;
}

/** Who runs a copy's compaction (the node's scheduler); a bare copy has none. */
export interface CopyMaintenance {
  /** Start this copy's compaction, or keep the one running. */
  requestCompaction(copy: ShardCopy): void;
  compactionRunning(copy: ShardCopy): boolean;
  /** Stop this copy's compaction (the copy is being dropped); resolves once it stopped. */
  stopCompaction(copy: ShardCopy): Promise<void>;
}

/** Told about every stored record that fails the read check (see doc-info.ts), before the read fails. */
export type CorruptRecordReporter = (event: { copyId: number; docId: string; error: unknown }) => void;

/**
 * What the updater applies, one kind of operation each (all go through one queue, so
 * they never race each other): client and replicated edits (batched together), a
 * compaction step over some documents, purges, and the attachment sweep of a compaction.
 */
export type UpdaterOp =
  | { kind: 'edits'; edits: DocEdit[] }
  | { kind: 'compact'; ids: string[]; checkpoint: string; revsLimit: number }
  | { kind: 'purge'; requests: PurgeRequest[] }
  | { kind: 'sweep'; names: string[] }
  | { kind: 'trim-purges'; keepAfterSeq: number };

interface Waiting {
  op: UpdaterOp;
  resolve(results: unknown): void;
  reject(err: unknown): void;
}


const STATE_KEY = 'state';
/** The cache of a copy opened without the node's (tests, tools). */
const BARE_COPY_CACHE_BYTES = 1024 * 1024;

export class ShardCopy {
  readonly copyId: number;
  /** The node this copy lives on (its name in the cluster). */
  readonly node: string;
  private readonly store: Store;
  private readonly limits: ShardCopyLimits;
  private state: CopyState;
  private revsLimit: number;
  private readonly onCorrupt: CorruptRecordReporter | undefined;
  private queue: Waiting[] = [];
  private queuedEdits = 0;
  private updating = false;
  /** Wakes `_changes` feeds waiting for the next update. */
  private readonly listeners = new Set<(seq: number) => void>();
  private readonly indexes: CopyIndexes | undefined;
  private readonly maintenance: CopyMaintenance | undefined;
  /** Decoded doc infos, node-wide (doc-info-cache.ts); a bare copy gets a small one of its own. */
  private readonly cache: DocInfoCache;

  private constructor(
    store: Store,
    copyId: number,
    node: string,
    state: CopyState,
    revsLimit: number,
    limits: ShardCopyLimits,
    onCorrupt: CorruptRecordReporter | undefined,
    indexing: IndexingOptions | undefined,
    maintenance: CopyMaintenance | undefined,
    cache: DocInfoCache,
  ) {
    this.cache = cache;
    this.maintenance = maintenance;
    this.onCorrupt = onCorrupt;
    this.store = store;
    this.copyId = copyId;
    this.node = node;
    this.state = state;
    this.revsLimit = revsLimit;
    this.limits = limits;
    this.indexes = indexing
      ? new CopyIndexes(
          {
            changes: (options) => this.changes(options),
            currentSeq: () => this.state.updateSeq,
            write: (ops) => store.write(ops),
            winners: (ids, conflicts) => this.winners(ids, conflicts),
            allDocs: (options) => this.allDocs(options),
            onUpdate: (listener) => this.onUpdate(listener),
            purgedBetween: (since, upTo) => this.purgedBetween(since, upTo),
          },
          { ...indexing, copyId, store },
        )
      : undefined;
  }

  /**
   * `seqFloor`: where a new copy's sequence starts. A copy made again on a node that
   * held one of the same range before starts above the old one's last sequence, so a
   * `since` from the old copy never skips a row of the new one.
   */
  static async open(
    store: Store,
    options: {
      copyId: number;
      node: string;
      revsLimit: number;
      limits: ShardCopyLimits;
      seqFloor?: number;
      onCorrupt?: CorruptRecordReporter;
      indexing?: IndexingOptions;
      maintenance?: CopyMaintenance;
      docInfoCache?: DocInfoCache;
    },
  ): Promise<ShardCopy> {
    const raw = await store.get(keys.metaKey(options.copyId, STATE_KEY));
    const state: CopyState = raw ? JSON.parse(raw.toString('utf8')) : { updateSeq: options.seqFloor ?? 0, docCount: 0, docDelCount: 0 };
    return new ShardCopy(store, options.copyId, options.node, state, options.revsLimit, options.limits, options.onCorrupt, options.indexing, options.maintenance, options.docInfoCache ?? new DocInfoCache(BARE_COPY_CACHE_BYTES));
  }

  getState(): CopyState {
    return { ...this.state };
  }

  async readState(): Promise<CopyState> {
    return { ...this.state, compactRunning: this.maintenance?.compactionRunning(this) ?? false };
  }

  /** `POST /{db}/_compact` on this copy: start its compaction in the background. */
  async compact(): Promise<void> {
    if (!this.maintenance) throw new UnavailableError('this copy has no compaction scheduler', 'not_implemented');
    this.maintenance.requestCompaction(this);
  }

  /** A value this copy keeps for itself (shard sync checkpoints), or undefined. */
  async readMeta(name: string): Promise<string | undefined> {
    return (await this.store.get(keys.metaKey(this.copyId, 'x/' + name)))?.toString('utf8');
  }

  async writeMeta(name: string, value: string): Promise<void> {
    await this.store.write([{ type: 'put', key: keys.metaKey(this.copyId, 'x/' + name), value }]);
  }

  setRevsLimit(revsLimit: number): void {
    this.revsLimit = revsLimit;
  }

  /** Call `listener(updateSeq)` after every durable update; returns the unsubscribe. */
  onUpdate(listener: (seq: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- updates -------------------------------------------------------------------

  updateDocs(edits: DocEdit[]): Promise<EditResult[]> {
    if (edits.length === 0) return Promise.resolve([]);
    if (this.queuedEdits + edits.length > this.limits.updateQueueDocsMax) {
      return Promise.reject(new UnavailableError('Too many pending updates for this shard; retry later', 'service_unavailable'));
    }
    this.queuedEdits += edits.length;
    return this.enqueue({ kind: 'edits', edits }) as Promise<EditResult[]>;
  }

  /** Queue an operation for the updater; resolves with its answer once durable. */
  private enqueue(op: UpdaterOp): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ op, resolve, reject });
      if (!this.updating) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.updating = true;
    try {
      while (this.queue.length > 0) {
        const head = this.queue[0]!;
        if (head.op.kind !== 'edits') {
          // Maintenance runs alone, between edit batches, each step bounded by its caller.
          this.queue.shift();
          await this.applyMaintenance(head.op).then(head.resolve, head.reject);
          continue;
        }
        const batch: Waiting[] = [];
        const edits: DocEdit[] = [];
        while (this.queue.length > 0) {
          const next = this.queue[0]!;
          if (next.op.kind !== 'edits') break;
          if (batch.length > 0 && edits.length + next.op.edits.length > this.limits.updateBatchDocsMax) break;
          batch.push(next);
          edits.push(...next.op.edits);
          this.queue.shift();
        }
        this.queuedEdits -= edits.length;
        try {
          const results = await this.applyBatch(edits);
          let at = 0;
          for (const waiting of batch) {
            const count = (waiting.op as { edits: DocEdit[] }).edits.length;
            waiting.resolve(results.slice(at, at + count));
            at += count;
          }
        } catch (err) {
          for (const waiting of batch) waiting.reject(err);
        }
      }
    } finally {
      this.updating = false;
    }
  }

  /** The updater's view of this copy for the maintenance operations (copy-maintenance.ts). */
  private get maintenanceContext(): MaintenanceContext {
    return (this.maintenanceContextOnce ??= this.makeMaintenanceContext());
  }

  private maintenanceContextOnce: MaintenanceContext | undefined;

  private makeMaintenanceContext(): MaintenanceContext {
    return {
    copyId: this.copyId,
    store: this.store,
    state: () => this.state,
    commit: async (state, ops) => {
      ops.push({ type: 'put', key: keys.metaKey(this.copyId, STATE_KEY), value: JSON.stringify(state) });
      await this.store.write(ops);
      const moved = state.updateSeq !== this.state.updateSeq;
      this.state = state;
      if (moved) for (const listener of this.listeners) listener(state.updateSeq);
    },
    decodeInfo: (id, raw) => this.decodeInfo(id, raw),
    readBody: (id, rev) => this.readBody(id, rev),
    };
  }

  private applyMaintenance(op: Exclude<UpdaterOp, { kind: 'edits' }>): Promise<unknown> {
    const rewrites = op.kind === 'compact' ? op.ids : op.kind === 'purge' ? op.requests.map((r) => r.id) : [];
    if (rewrites.length === 0) return this.runMaintenance(op);
    // Compaction and purge rewrite doc infos the cache may hold: forget them once the
    // step is done (no edit runs in between: the updater is busy with this step).
    const forget = (): void => {
      this.cache.bump(this.copyId);
      for (const id of rewrites) this.cache.delete(this.copyId, id);
    };
    return this.runMaintenance(op).finally(forget);
  }

  private runMaintenance(op: Exclude<UpdaterOp, { kind: 'edits' }>): Promise<unknown> {
    switch (op.kind) {
      case 'compact':
        return compactDocs(this.maintenanceContext, op.ids, op.checkpoint, op.revsLimit);
      case 'purge':
        return applyPurges(this.maintenanceContext, op.requests).then(({ infos, removedNow }) => {
          this.removedByPurge?.push(...removedNow);
          return infos;
        });
      case 'sweep':
        return this.applySweep(op.names);
      case 'trim-purges':
        return trimPurges(this.maintenanceContext, op.keepAfterSeq).then((trimmed) => {
          this.removedByPurge = undefined;
          return trimmed;
        });
    }
  }

  private async applyBatch(edits: DocEdit[]): Promise<EditResult[]> {
    const infos = new Map<string, DocInfo | undefined>();
    const encodedLengths = new Map<string, number>();
    // What the cache holds is what the store holds (only this updater writes doc infos).
    const ids: string[] = [];
    for (const edit of edits) {
      if (infos.has(edit.id)) continue;
      const hit = this.cache.get(this.copyId, edit.id);
      if (hit) {
        infos.set(edit.id, hit.info);
        encodedLengths.set(edit.id, hit.recordBytes);
      } else {
        infos.set(edit.id, undefined);
        ids.push(edit.id);
      }
    }
    // A lone edit (the common single-document PUT) takes the cheaper point read.
    const stored =
      ids.length === 0
        ? []
        : ids.length === 1
          ? [await this.store.get(keys.docInfoKey(this.copyId, ids[0]!))]
          : await this.store.getMany(ids.map((id) => keys.docInfoKey(this.copyId, id)));
    // A corrupt record fails the edits of its own document only, not the whole batch.
    const corrupt = new Map<string, DivanError>();
    ids.forEach((id, i) => {
      try {
        infos.set(id, stored[i] ? this.decodeInfo(id, stored[i]!) : undefined);
        if (stored[i]) encodedLengths.set(id, storedRecordBytes(stored[i]!));
      } catch (err) {
        corrupt.set(id, new DivanError('internal', 'unknown_error', err instanceof Error ? err.message : String(err)));
      }
    });

    const purgedRevs = await this.purgedAmong(edits);
    const state = { ...this.state };
    const writtenBodies = new Map<string, string>();
    const referenced: string[] = [];
    const ops: WriteOp[] = [];
    const ctx: EditContext = {
      revsLimit: this.revsLimit,
      readBody: async (id, rev) => writtenBodies.get(id + '\u0000' + rev) ?? this.readBody(id, rev),
      hasAttachment: async (digest, encoding) => (await this.readAttachment(digest, encoding)) !== undefined,
    };

    const results: EditResult[] = [];
    const written = new Set<string>();
    for (const edit of edits) {
      const unreadable = corrupt.get(edit.id);
      if (unreadable) {
        results.push({ kind: 'error', id: edit.id, error: unreadable });
        continue;
      }
      if (purgedRevs?.has(edit.id + '\u0000' + edit.revs![0])) {
        // Purged here: internal mechanisms never bring it back (shard/purge.ts).
        results.push({ kind: 'ok', id: edit.id, rev: edit.revs![0]! });
        continue;
      }
      const before = infos.get(edit.id);
      const outcome = await applyEdit(before, edit, ctx);
      if (outcome.kind === 'error') {
        results.push({ kind: 'error', id: edit.id, error: outcome.error });
        continue;
      }
      if (outcome.kind === 'noop') {
        results.push({ kind: 'ok', id: edit.id, rev: outcome.rev });
        continue;
      }
      state.updateSeq += 1;
      if (edit.id.startsWith('_design/')) state.designSeq = state.updateSeq;
      const after: DocInfo = { id: edit.id, seq: state.updateSeq, tree: outcome.tree, winner: outcome.winner };
      countTransition(state, before, after);
      infos.set(edit.id, after);
      const encoded = encodeDocInfo(after);
      const recordBytes = storedRecordBytes(encoded);
      accountSizes(state, before, encodedLengths.get(edit.id) ?? 0, after, recordBytes);
      encodedLengths.set(edit.id, recordBytes);
      written.add(edit.id);
      referenced.push(...outcome.digests);
      ops.push({ type: 'put', key: keys.docInfoKey(this.copyId, edit.id), value: encoded });
      ops.push({ type: 'put', key: keys.seqKey(this.copyId, after.seq), value: seqRecord(encoded) });
      // One by-seq entry per doc. A doc edited twice in one batch deletes the entry its
      // first edit put: batch ops apply in order, so only the last seq survives.
      if (before) ops.push({ type: 'del', key: keys.seqKey(this.copyId, before.seq) });
      ops.push({ type: 'put', key: keys.revBodyKey(this.copyId, edit.id, outcome.rev), value: outcome.body });
      writtenBodies.set(edit.id + '\u0000' + outcome.rev, outcome.body);
      for (const rev of outcome.dropBodies) ops.push({ type: 'del', key: keys.revBodyKey(this.copyId, edit.id, rev) });
      for (const att of outcome.newAttachments) {
        ops.push({ type: 'put', key: keys.attachmentKey(this.copyId, att.digest, att.encoding), value: att.data });
      }
      results.push({ kind: 'ok', id: edit.id, rev: outcome.rev });
    }
    if (ops.length > 0) {
      ops.push({ type: 'put', key: keys.metaKey(this.copyId, STATE_KEY), value: JSON.stringify(state) });
      try {
        await this.store.write(ops);
      } catch (err) {
        // The batch may or may not be on disk: nothing cached for its documents stays.
        this.cache.bump(this.copyId);
        for (const id of written) this.cache.delete(this.copyId, id);
        throw err;
      }
      this.cache.bump(this.copyId);
      for (const id of written) {
        const info = infos.get(id)!;
        this.cache.set(this.copyId, info, encodedLengths.get(id)!, writtenBodies.get(id + '\u0000' + info.winner.rev));
      }
      this.state = state;
      // After the write: a sweep that began before it saw these bodies or sees the guard.
      for (const digest of referenced) this.sweepGuard?.add(digest);
      for (const listener of this.listeners) listener(state.updateSeq);
    }
    return results;
  }

  /** Which replicated internal edits offer a revision this copy purged (undefined: none can). */
  private async purgedAmong(edits: DocEdit[]): Promise<Set<string> | undefined> {
    if (!this.state.purgeSeq) return undefined;
    const offered = edits.filter((e) => e.internal && e.revs !== undefined);
    if (offered.length === 0) return undefined;
    const found = await this.store.getMany(offered.map((e) => keys.purgedRevKey(this.copyId, e.id, e.revs![0]!)));
    const out = new Set<string>();
    found.forEach((value, i) => value !== undefined && out.add(offered[i]!.id + '\u0000' + offered[i]!.revs![0]));
    return out;
  }

  // ---- compaction and purge (the updater's other operations) ------------------------

  /**
   * Set while a compaction sweeps attachments: stored names (keys.attachmentName) of
   * attachments edits written since its mark phase began refer to, which the sweep
   * must keep (see shard/compaction.ts).
   */
  private sweepGuard: Set<string> | undefined;

  /** Start recording referenced digests (before the mark phase reads any body). */
  beginSweepGuard(): void {
    this.sweepGuard = new Set();
  }

  endSweepGuard(): void {
    this.sweepGuard = undefined;
  }

  /** One compaction step over `ids`: drop bodies of revisions that are not leaves, stem to `revsLimit`. */
  compactDocs(ids: string[], checkpoint: string, revsLimit: number): Promise<CompactStep> {
    return this.enqueue({ kind: 'compact', ids, checkpoint, revsLimit }) as Promise<CompactStep>;
  }

  /** Delete the stored attachments among `names` (keys.attachmentName) no edit referenced since the guard began; answers how many went. */
  sweepAttachments(names: string[]): Promise<number> {
    return this.enqueue({ kind: 'sweep', names }) as Promise<number>;
  }

  /** Apply purge requests (each at most once, by uuid); answers what each purged. */
  purge(requests: PurgeRequest[]): Promise<PurgeInfo[]> {
    if (requests.length === 0) return Promise.resolve([]);
    return this.enqueue({ kind: 'purge', requests }) as Promise<PurgeInfo[]>;
  }

  /** Forget purge history up to `keepAfterSeq` (compaction, `_purged_infos_limit`). */
  trimPurges(keepAfterSeq: number): Promise<number> {
    return this.enqueue({ kind: 'trim-purges', keepAfterSeq }) as Promise<number>;
  }

  private async applySweep(names: string[]): Promise<number> {
    const keep = this.sweepGuard ?? new Set<string>();
    const gone = names.filter((name) => !keep.has(name));
    if (gone.length > 0) await this.store.write(gone.map((name) => ({ type: 'del' as const, key: keys.attachmentKeyOfName(this.copyId, name) })));
    return gone.length;
  }

  /** Purge requests recorded after `since` (purge seq), oldest first, at most `limit`. */
  purgeInfos(since: number, limit: number): Promise<PurgeInfo[]> {
    return readPurgeInfos(this.store, this.copyId, since, limit);
  }

  /**
   * Documents a purge removed whole with the copy seq it happened at in (since, upTo]:
   * index consumers drop their rows (a removed document has no by-seq row to follow).
   */
  async purgedBetween(since: number, upTo: number): Promise<{ id: string; seq: number }[]> {
    if (!this.state.purgeSeq) return [];
    if (!this.removedByPurge) {
      const loaded: { id: string; seq: number }[] = [];
      for (const info of await readPurgeInfos(this.store, this.copyId, 0, Number.MAX_SAFE_INTEGER)) if (info.removed && info.atSeq > 0) loaded.push({ id: info.id, seq: info.atSeq });
      this.removedByPurge ??= loaded;
    }
    return this.removedByPurge.filter((r) => r.seq > since && r.seq <= upTo);
  }

  /**
   * Documents purges removed whole, with their copy seqs, in seq order: the purge
   * history's part index consumers need, kept in memory once read (bounded by the
   * history, `_purged_infos_limit`), extended by purges and dropped by trims.
   */
  private removedByPurge: { id: string; seq: number }[] | undefined;

  /** The checkpoint of an unfinished compaction (kill -9 mid-way), or undefined. */
  async compactionCheckpoint(): Promise<string | undefined> {
    return (await this.store.get(keys.metaKey(this.copyId, COMPACTION_KEY)))?.toString('utf8');
  }

  async clearCompactionCheckpoint(): Promise<void> {
    await this.store.write([{ type: 'del', key: keys.metaKey(this.copyId, COMPACTION_KEY) }]);
  }

  /** Ask RocksDB to rewrite one space of this copy's keys (compaction does them one at a time). */
  compactSpace(space: keys.Space): Promise<void> {
    return this.store.compact(keys.spaceRange(this.copyId, space));
  }

  /** Stored revision bodies in key order, from after `after` (a key), in batches. */
  bodyKeys(after: Buffer | undefined): Cursor<[Buffer, Buffer]> {
    const space = keys.spaceRange(this.copyId, keys.Space.RevBody);
    return this.store.cursor(after ? { gt: after, lt: space.lt } : space, 256);
  }

  /** Stored attachments' keys, in batches. */
  attachmentKeys(): Cursor<[Buffer, Buffer]> {
    return this.store.cursor({ ...keys.spaceRange(this.copyId, keys.Space.Attachment), keysOnly: true }, 256);
  }

  /** Doc infos in id order after `afterId`, in batches (compaction's walk). */
  docInfoScan(afterId: string | undefined): Cursor<[Buffer, Buffer]> {
    const space = keys.spaceRange(this.copyId, keys.Space.DocInfo);
    return this.store.cursor(afterId === undefined ? space : { gt: keys.docInfoKey(this.copyId, afterId), lt: space.lt }, 256);
  }

  // ---- reads ---------------------------------------------------------------------

  async getDocInfo(id: string): Promise<DocInfo | undefined> {
    const hit = this.cache.get(this.copyId, id);
    if (hit) return hit.info;
    const epoch = this.cache.epoch(this.copyId);
    const raw = await this.store.get(keys.docInfoKey(this.copyId, id));
    return raw ? this.decodeAndFill(id, raw, epoch) : undefined;
  }

  /** Doc infos by id, from the cache where it has them and one multi-get for the rest. */
  async getDocInfos(ids: string[]): Promise<(DocInfo | undefined)[]> {
    const out: (DocInfo | undefined)[] = new Array(ids.length).fill(undefined);
    const missing: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const hit = this.cache.get(this.copyId, ids[i]!);
      if (hit) out[i] = hit.info;
      else missing.push(i);
    }
    if (missing.length === 0) return out;
    const epoch = this.cache.epoch(this.copyId);
    const raw = await this.store.getMany(missing.map((i) => keys.docInfoKey(this.copyId, ids[i]!)));
    raw.forEach((value, j) => {
      const i = missing[j]!;
      out[i] = value ? this.decodeAndFill(ids[i]!, value, epoch) : undefined;
    });
    return out;
  }

  private decodeAndFill(id: string, raw: Buffer, epoch: number): DocInfo {
    const info = this.decodeInfo(id, raw);
    this.cache.fill(this.copyId, epoch, info, storedRecordBytes(raw));
    return info;
  }

  /** Decode a stored doc info; a record failing the read check is reported, then thrown. */
  private decodeInfo(id: string, raw: Buffer): DocInfo {
    try {
      return decodeDocInfo(raw);
    } catch (err) {
      this.onCorrupt?.({ copyId: this.copyId, docId: id, error: err });
      throw err;
    }
  }

  async readBody(id: string, rev: RevId): Promise<string | undefined> {
    const cached = this.cache.body(this.copyId, id, rev);
    if (cached !== undefined) return cached;
    const raw = await this.store.get(keys.revBodyKey(this.copyId, id, rev));
    if (raw === undefined) return undefined;
    const body = raw.toString('utf8');
    this.cache.fillBody(this.copyId, id, rev, body);
    return body;
  }

  /** Bodies by (id, rev): winners from the cache where it has them, one multi-get for the rest. */
  async readBodies(refs: { id: string; rev: RevId }[]): Promise<(string | undefined)[]> {
    const out: (string | undefined)[] = new Array(refs.length).fill(undefined);
    const missing: number[] = [];
    for (let i = 0; i < refs.length; i++) {
      const cached = this.cache.body(this.copyId, refs[i]!.id, refs[i]!.rev);
      if (cached !== undefined) out[i] = cached;
      else missing.push(i);
    }
    if (missing.length === 0) return out;
    const raw = await this.store.getMany(missing.map((i) => keys.revBodyKey(this.copyId, refs[i]!.id, refs[i]!.rev)));
    raw.forEach((value, j) => {
      const ref = refs[missing[j]!]!;
      if (value === undefined) return;
      const body = value.toString('utf8');
      out[missing[j]!] = body;
      this.cache.fillBody(this.copyId, ref.id, ref.rev, body);
    });
    return out;
  }

  /** An attachment's stored bytes, in the form `encoding` names (undefined: identity). */
  async readAttachment(digest: string, encoding?: string): Promise<Buffer | undefined> {
    const found = await this.store.get(keys.attachmentKey(this.copyId, digest, encoding));
    // Encoded bytes written before forms were kept apart sit under the bare digest
    // (their digest was the md5 of those encoded bytes, so nothing else shares it).
    return found ?? (encoding !== undefined ? this.store.get(keys.attachmentKey(this.copyId, digest)) : undefined);
  }

  allDocs(options: AllDocsOptions): Cursor<AllDocsRow> {
    const range = this.docRange(options);
    // Deleted docs are skipped, so the scan may read past the limit: batch by it anyway.
    const scan = { ...range, reverse: options.descending, valuesAsText: true as const };
    const first = options.firstBatch;
    // Doc summaries are ~200 bytes: read about the first batch's worth ahead.
    const cursor = first !== undefined && first < 256 ? this.store.rampCursor(scan, Math.max(8, first), Math.max(1024, first * 200)) : this.store.cursor(scan, Math.max(16, Math.min(256, options.limit)));
    let remaining = options.limit;
    return {
      next: async () => {
        while (remaining > 0) {
          const batch = await cursor.next();
          if (batch === null) return null;
          const rows: AllDocsRow[] = [];
          const summaries: DocSummary[] = [];
          for (const [key, value] of batch) {
            const summary = decodeSummary(value);
            if (summary.deleted) continue;
            rows.push({ id: keys.decodeTextKey(key), idJson: summary.idJson, rev: summary.winnerRev });
            summaries.push(summary);
            if (--remaining === 0) break;
          }
          if (rows.length === 0) continue;
          if (options.includeDocs) {
            const bodies = await this.readBodies(rows.map((r) => ({ id: r.id, rev: r.rev })));
            rows.forEach((row, i) => (row.doc = renderWinner(row.id, summaries[i]!, bodies[i] ?? '{}', options.conflicts)));
          }
          return rows;
        }
        return null;
      },
      close: () => cursor.close(),
    };
  }

  private docRange(options: AllDocsOptions): keys.KeyRange {
    const [low, high] = options.descending ? [options.endKey, options.startKey] : [options.startKey, options.endKey];
    const space = keys.spaceRange(this.copyId, keys.Space.DocInfo);
    const range: keys.KeyRange = {};
    range.gte = low === undefined ? space.gte : keys.docInfoKey(this.copyId, low);
    if (high === undefined) range.lt = space.lt;
    else if (options.descending || options.inclusiveEnd) range.lte = keys.docInfoKey(this.copyId, high);
    else range.lt = keys.docInfoKey(this.copyId, high);
    if (options.descending && !options.inclusiveEnd && low !== undefined) {
      delete range.gte;
      range.gt = keys.docInfoKey(this.copyId, low);
    }
    return range;
  }

  changes(options: ChangesOptions): Cursor<ChangeRow> {
    const space = keys.spaceRange(this.copyId, keys.Space.BySeq);
    // Unfiltered feeds return every row they read: the scan itself can stop at the limit.
    const scanLimit = options.filter.kind === 'none' ? options.limit : -1;
    const cursor = this.store.cursor(
      options.descending
        ? { gte: space.gte, lt: space.lt, reverse: true, limit: scanLimit, valuesAsText: true }
        : { gt: keys.seqKey(this.copyId, Math.min(options.since, keys.seqMax)), lt: space.lt, limit: scanLimit, valuesAsText: true },
      scanLimit > 0 ? Math.min(256, scanLimit) : 256,
    );
    const filter = options.filter;
    const docIds = filter.kind === 'doc_ids' ? new Set(filter.docIds) : undefined;
    const selector = filter.kind === 'selector' ? compileSelector(filter.selector) : undefined;
    const needBodies = options.includeDocs || selector !== undefined;
    let remaining = options.limit;
    return {
      next: async () => {
        while (remaining > 0) {
          const batch = await cursor.next();
          if (batch === null) return null;
          let rows: ChangeRow[] = [];
          let summaries: DocSummary[] = [];
          for (const [key, value] of batch) {
            const summary = decodeSummary(value);
            const id = JSON.parse(summary.idJson) as string;
            if (docIds && !docIds.has(id)) continue;
            if (filter.kind === 'design' && !id.startsWith('_design/')) continue;
            rows.push({
              seq: keys.decodeSeqKey(key),
              id,
              idJson: summary.idJson,
              changes: options.allLeaves ? summary.leaves.map((l) => l.rev) : [summary.winnerRev],
              deleted: summary.deleted,
            });
            summaries.push(summary);
          }
          if (needBodies && rows.length > 0) {
            const bodies = await this.readBodies(rows.map((r, i) => ({ id: r.id, rev: summaries[i]!.winnerRev })));
            const docs = rows.map((r, i) => renderWinner(r.id, summaries[i]!, bodies[i] ?? '{}', options.conflicts));
            if (selector) {
              const keep = docs.map((doc) => selector(JSON.parse(doc) as Record<string, unknown>));
              rows = rows.filter((_, i) => keep[i]);
              summaries = summaries.filter((_, i) => keep[i]);
              const kept = docs.filter((_, i) => keep[i]);
              if (options.includeDocs) rows.forEach((row, i) => (row.doc = kept[i]));
            } else {
              rows.forEach((row, i) => (row.doc = docs[i]));
            }
          }
          if (rows.length > remaining) rows = rows.slice(0, remaining);
          remaining -= rows.length;
          if (rows.length > 0) return rows;
        }
        return null;
      },
      close: () => cursor.close(),
    };
  }

  /** Winning revisions of documents, rendered (null when missing or deleted). */
  async winners(ids: string[], conflicts: boolean): Promise<(string | null)[]> {
    const infos = await this.getDocInfos(ids);
    const live = infos.map((info, i) => (info && !info.winner.deleted ? i : -1)).filter((i) => i >= 0);
    const bodies = await this.readBodies(live.map((i) => ({ id: ids[i]!, rev: infos[i]!.winner.rev })));
    const out: (string | null)[] = ids.map(() => null);
    live.forEach((i, j) => {
      const info = infos[i]!;
      const tail: [string, unknown][] = [];
      if (conflicts) {
        const others = conflictRevs(sortedLeaves(info.tree), info.winner.rev);
        if (others.length > 0) tail.push(['_conflicts', others]);
      }
      out[i] = renderDoc(ids[i]!, info.winner.rev, bodies[j] ?? '{}', { tail });
    });
    return out;
  }

  // ---- view indexes --------------------------------------------------------------

  private indexing(): CopyIndexes {
    if (!this.indexes) throw new UnavailableError('this copy has no view engine', 'not_implemented');
    return this.indexes;
  }

  viewRows(req: ShardViewRequest): Cursor<ViewStreamItem<ViewRow>> {
    return this.indexing().viewRows(req);
  }

  viewReduce(req: ShardReduceRequest): Cursor<ViewStreamItem<ReducedRow>> {
    return this.indexing().viewReduce(req);
  }

  findRows(req: ShardFindRequest): Cursor<FindStreamItem> {
    return this.indexing().findRows(req);
  }

  indexInfo(ddoc: DesignDocRef): Promise<IndexInfo> {
    return this.indexing().info(ddoc);
  }

  compactIndex(ddoc: DesignDocRef): Promise<void> {
    return this.indexing().compact(ddoc);
  }

  /** Drop this copy's indexes whose signatures are not in `keep`; answers how many went. */
  cleanupIndexes(keep: string[]): Promise<number> {
    return this.indexing().cleanup(new Set(keep));
  }

  indexTasks(): IndexTask[] {
    return this.indexes?.runningTasks() ?? [];
  }

  /** The lowest copy seq every index has absorbed (see CopyIndexes.indexedSeq). */
  indexedSeq(): Promise<number> {
    return this.indexes?.indexedSeq() ?? Promise.resolve(this.state.updateSeq);
  }

  indexLag(): Promise<number> {
    return this.indexes?.lag() ?? Promise.resolve(0);
  }

  /** Stop background index work (the copy is being dropped or the node stops). */
  closeIndexes(): void {
    this.indexes?.close();
  }

  // ---- local documents -----------------------------------------------------------

  async getLocal(id: string): Promise<LocalDoc | undefined> {
    const raw = await this.store.get(keys.localKey(this.copyId, id));
    return raw ? (JSON.parse(raw.toString('utf8')) as LocalDoc) : undefined;
  }

  /**
   * Writes (or deletes, with body null) a local doc; `rev` must match the stored one.
   * With `setRev` the write is unconditional and stores that rev (the coordinator has
   * checked the rev on another copy and sets the same result on every copy).
   */
  async putLocal(
    id: string,
    body: string | null,
    rev: RevId | undefined,
    setRev?: RevId,
  ): Promise<{ kind: 'ok'; rev: RevId } | { kind: 'conflict' }> {
    return this.serializeLocal(id, async () => {
      const current = await this.getLocal(id);
      // The write must name the current rev, or none when there is no doc yet.
      if (setRev === undefined && current?.rev !== rev) return { kind: 'conflict' };
      const generation = current ? Number(current.rev.slice(2)) + 1 : 1;
      const newRev = setRev ?? `0-${generation}`;
      if (body === null) {
        if (!current) return setRev === undefined ? { kind: 'conflict' } : { kind: 'ok', rev: '0-0' };
        await this.store.write([{ type: 'del', key: keys.localKey(this.copyId, id) }]);
        return { kind: 'ok', rev: '0-0' };
      }
      const doc: LocalDoc = { id, rev: newRev, body };
      await this.store.write([{ type: 'put', key: keys.localKey(this.copyId, id), value: JSON.stringify(doc) }]);
      return { kind: 'ok', rev: newRev };
    });
  }

  private localChains = new Map<string, Promise<unknown>>();

  /** Local doc updates to one id run one at a time, so a rev check is never stale. */
  private serializeLocal<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.localChains.get(id) ?? Promise.resolve();
    const run = previous.then(work, work);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.localChains.set(id, settled);
    void settled.then(() => {
      if (this.localChains.get(id) === settled) this.localChains.delete(id);
    });
    return run;
  }

  localDocs(options: AllDocsOptions): Cursor<LocalDoc> {
    const space = keys.spaceRange(this.copyId, keys.Space.Local);
    const [low, high] = options.descending ? [options.endKey, options.startKey] : [options.startKey, options.endKey];
    const range: keys.KeyRange = {
      gte: low === undefined ? space.gte : keys.localKey(this.copyId, low),
    };
    if (high === undefined) range.lt = space.lt;
    else if (options.inclusiveEnd || options.descending) range.lte = keys.localKey(this.copyId, high);
    else range.lt = keys.localKey(this.copyId, high);
    const cursor = this.store.cursor({ ...range, reverse: options.descending, limit: options.limit });
    return {
      next: async () => {
        const batch = await cursor.next();
        return batch === null ? null : batch.map(([, value]) => JSON.parse(value.toString('utf8')) as LocalDoc);
      },
      close: () => cursor.close(),
    };
  }

  async sizeBytes(): Promise<number> {
    return this.store.approximateSize(keys.copyRange(this.copyId));
  }

  /**
   * `sizes` of `GET /{db}`: `active` and `external` are counted exactly by the updater
   * (CopyState); `file` is RocksDB's estimate of the copy's key range, or, while most of
   * the copy still sits in the memtable (RocksDB's estimate counts only its files), the
   * bytes the copy holds: active plus the bodies compaction would free.
   */
  async sizes(): Promise<{ file: number; active: number; external: number }> {
    const active = this.state.activeBytes ?? 0;
    // Documents only: view and Mango indexes report their own sizes (`_info`), as in CouchDB.
    const [before, after] = keys.dataRanges(this.copyId);
    const onDisk = (await this.store.approximateSize(before)) + (await this.store.approximateSize(after));
    return { file: Math.max(onDisk, active + (this.state.staleBytes ?? 0)), active, external: this.state.externalBytes ?? 0 };
  }

  /** Before the copy's keys are cleared: stop its background work, let queued updates finish. */
  async retire(): Promise<void> {
    this.closeIndexes();
    await this.maintenance?.stopCompaction(this);
    await this.idle();
    this.cache.dropCopy(this.copyId);
  }

  /** Wait for queued updates to finish (for shutdown). */
  async idle(): Promise<void> {
    while (this.updating) await new Promise((r) => setTimeout(r, 2));
  }
}

function renderWinner(id: string, summary: DocSummary, body: string, conflicts: boolean): string {
  const others = conflicts ? conflictRevs(summary.leaves, summary.winnerRev) : [];
  const tail: [string, unknown][] = others.length > 0 ? [['_conflicts', others]] : [];
  return renderDoc(id, summary.winnerRev, body, { deleted: summary.deleted, tail });
}
