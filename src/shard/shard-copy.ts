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
 * Reads (doc infos, bodies, attachments, _all_docs and _changes cursors) go straight
 * to the store: they see every acknowledged write.
 */
import assert from 'node:assert/strict';
import { DivanError, UnavailableError } from '../errors';
import type { Cursor, Store, WriteOp } from '../storage/store';
import * as keys from '../storage/keys';
import { applyEdit, EditContext } from './edit';
import { CopyIndexes, type CopyIndexesOptions, type IndexTask } from './index/copy-indexes';
import type { IndexInfo, DesignDocRef, FindStreamItem, ReducedRow, ShardFindRequest, ShardReduceRequest, ShardViewRequest, ViewRow, ViewStreamItem } from './index/types';
import { compileSelector } from './query/mango';
import { conflictRevs, renderDoc } from './render';
import { decodeDocInfo, decodeSummary, DocSummary, encodeDocInfo } from './doc-info';
import { sortedLeaves, type RevId } from './rev-tree';
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

/** Told about every stored record that fails the read check (see doc-info.ts), before the read fails. */
export type CorruptRecordReporter = (event: { copyId: number; docId: string; error: unknown }) => void;

interface Waiting {
  edits: DocEdit[];
  resolve(results: EditResult[]): void;
  reject(err: unknown): void;
}

const STATE_KEY = 'state';

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

  private constructor(
    store: Store,
    copyId: number,
    node: string,
    state: CopyState,
    revsLimit: number,
    limits: ShardCopyLimits,
    onCorrupt: CorruptRecordReporter | undefined,
    indexing: IndexingOptions | undefined,
  ) {
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
    options: { copyId: number; node: string; revsLimit: number; limits: ShardCopyLimits; seqFloor?: number; onCorrupt?: CorruptRecordReporter; indexing?: IndexingOptions },
  ): Promise<ShardCopy> {
    const raw = await store.get(keys.metaKey(options.copyId, STATE_KEY));
    const state: CopyState = raw ? JSON.parse(raw.toString('utf8')) : { updateSeq: options.seqFloor ?? 0, docCount: 0, docDelCount: 0 };
    return new ShardCopy(store, options.copyId, options.node, state, options.revsLimit, options.limits, options.onCorrupt, options.indexing);
  }

  getState(): CopyState {
    return { ...this.state };
  }

  async readState(): Promise<CopyState> {
    return { ...this.state };
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
    return new Promise((resolve, reject) => {
      this.queue.push({ edits, resolve, reject });
      this.queuedEdits += edits.length;
      if (!this.updating) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.updating = true;
    try {
      while (this.queue.length > 0) {
        const batch: Waiting[] = [];
        let editCount = 0;
        while (this.queue.length > 0) {
          const next = this.queue[0]!;
          if (batch.length > 0 && editCount + next.edits.length > this.limits.updateBatchDocsMax) break;
          batch.push(next);
          editCount += next.edits.length;
          this.queue.shift();
        }
        this.queuedEdits -= editCount;
        try {
          const results = await this.applyBatch(batch.flatMap((w) => w.edits));
          let at = 0;
          for (const waiting of batch) {
            waiting.resolve(results.slice(at, at + waiting.edits.length));
            at += waiting.edits.length;
          }
        } catch (err) {
          for (const waiting of batch) waiting.reject(err);
        }
      }
    } finally {
      this.updating = false;
    }
  }

  private async applyBatch(edits: DocEdit[]): Promise<EditResult[]> {
    const ids = [...new Set(edits.map((e) => e.id))];
    // A lone edit (the common single-document PUT) takes the cheaper point read.
    const stored =
      ids.length === 1
        ? [await this.store.get(keys.docInfoKey(this.copyId, ids[0]!))]
        : await this.store.getMany(ids.map((id) => keys.docInfoKey(this.copyId, id)));
    const infos = new Map<string, DocInfo | undefined>();
    // A corrupt record fails the edits of its own document only, not the whole batch.
    const corrupt = new Map<string, DivanError>();
    ids.forEach((id, i) => {
      try {
        infos.set(id, stored[i] ? this.decodeInfo(id, stored[i]!) : undefined);
      } catch (err) {
        corrupt.set(id, new DivanError('internal', 'unknown_error', err instanceof Error ? err.message : String(err)));
      }
    });

    const state = { ...this.state };
    const writtenBodies = new Map<string, string>();
    const ops: WriteOp[] = [];
    const ctx: EditContext = {
      revsLimit: this.revsLimit,
      readBody: async (id, rev) => writtenBodies.get(id + '\u0000' + rev) ?? this.readBody(id, rev),
      hasAttachment: async (digest) => (await this.store.get(keys.attachmentKey(this.copyId, digest))) !== undefined,
    };

    const results: EditResult[] = [];
    for (const edit of edits) {
      const unreadable = corrupt.get(edit.id);
      if (unreadable) {
        results.push({ kind: 'error', id: edit.id, error: unreadable });
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
      ops.push({ type: 'put', key: keys.docInfoKey(this.copyId, edit.id), value: encoded });
      ops.push({ type: 'put', key: keys.seqKey(this.copyId, after.seq), value: encoded });
      // One by-seq entry per doc. A doc edited twice in one batch deletes the entry its
      // first edit put: batch ops apply in order, so only the last seq survives.
      if (before) ops.push({ type: 'del', key: keys.seqKey(this.copyId, before.seq) });
      ops.push({ type: 'put', key: keys.revBodyKey(this.copyId, edit.id, outcome.rev), value: outcome.body });
      writtenBodies.set(edit.id + '\u0000' + outcome.rev, outcome.body);
      for (const rev of outcome.dropBodies) ops.push({ type: 'del', key: keys.revBodyKey(this.copyId, edit.id, rev) });
      for (const att of outcome.newAttachments) {
        ops.push({ type: 'put', key: keys.attachmentKey(this.copyId, att.digest), value: att.data });
      }
      results.push({ kind: 'ok', id: edit.id, rev: outcome.rev });
    }
    if (ops.length > 0) {
      ops.push({ type: 'put', key: keys.metaKey(this.copyId, STATE_KEY), value: JSON.stringify(state) });
      await this.store.write(ops);
      this.state = state;
      for (const listener of this.listeners) listener(state.updateSeq);
    }
    return results;
  }

  // ---- reads ---------------------------------------------------------------------

  async getDocInfo(id: string): Promise<DocInfo | undefined> {
    const raw = await this.store.get(keys.docInfoKey(this.copyId, id));
    return raw ? this.decodeInfo(id, raw) : undefined;
  }

  async getDocInfos(ids: string[]): Promise<(DocInfo | undefined)[]> {
    const raw = await this.store.getMany(ids.map((id) => keys.docInfoKey(this.copyId, id)));
    return raw.map((value, i) => (value ? this.decodeInfo(ids[i]!, value) : undefined));
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
    const raw = await this.store.get(keys.revBodyKey(this.copyId, id, rev));
    return raw?.toString('utf8');
  }

  async readBodies(refs: { id: string; rev: RevId }[]): Promise<(string | undefined)[]> {
    const raw = await this.store.getMany(refs.map((r) => keys.revBodyKey(this.copyId, r.id, r.rev)));
    return raw.map((value) => value?.toString('utf8'));
  }

  async readAttachment(digest: string): Promise<Buffer | undefined> {
    return this.store.get(keys.attachmentKey(this.copyId, digest));
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

  /** Wait for queued updates to finish (for shutdown). */
  async idle(): Promise<void> {
    while (this.updating) await new Promise((r) => setTimeout(r, 2));
  }
}

function countTransition(state: CopyState, before: DocInfo | undefined, after: DocInfo): void {
  if (before) {
    if (before.winner.deleted) state.docDelCount -= 1;
    else state.docCount -= 1;
  }
  if (after.winner.deleted) state.docDelCount += 1;
  else state.docCount += 1;
  assert.ok(state.docCount >= 0 && state.docDelCount >= 0, 'document counts went negative');
}

function renderWinner(id: string, summary: DocSummary, body: string, conflicts: boolean): string {
  const others = conflicts ? conflictRevs(summary.leaves, summary.winnerRev) : [];
  const tail: [string, unknown][] = others.length > 0 ? [['_conflicts', others]] : [];
  return renderDoc(id, summary.winnerRev, body, { deleted: summary.deleted, tail });
}
