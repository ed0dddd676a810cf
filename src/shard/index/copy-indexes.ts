/**
 * The view indexes of one shard copy: opened by design-document signature on first
 * query, brought up to date through the copy's change pipeline (on query with
 * `update=true`, after the answer with `update=lazy`, and in the background soon
 * after writes for indexes queried recently), read and reduced for the coordinator,
 * listed for `_active_tasks` and `_info`, and dropped by `_view_cleanup`.
 *
 * The indexes a copy holds are listed in its metadata (`x/indexes`), so cleanup finds
 * them without a scan; each index's rows live under its own key range.
 */
import { OsProcessError } from '../../errors';
import type { SandboxPool } from '../js/sandbox';
import * as keys from '../../storage/keys';
import type { Cursor, Store } from '../../storage/store';
import { collate } from '../query/collate';
import { indexDef, type IndexDef, type ViewDef } from './design';
import { findScan, type FindScanSource } from './find-scan';
import { Pipeline, type PipelineSource } from './pipeline';
import { ViewIndex, type IndexLogger, type ReadRow } from './view-index';
import type { DesignDocRef, FindStreamItem, IndexInfo, ShardFindRequest, ReducedRow, ViewHeader, ShardReduceRequest, ShardViewRequest, ViewRow, ViewStreamItem } from './types';

export interface CopyIndexesOptions {
  copyId: number;
  store: Store;
  js: SandboxPool;
  /** Changes absorbed per durable batch (config viewBatchDocsMax). */
  batchDocsMax: number;
  /** Document JSON per sandbox call at most, bytes (config viewMapBatchBytesMax). */
  mapBatchBytesMax: number;
  /** Rows of one side group a read sorts in memory at most (config viewSideGroupRowsMax). */
  sideGroupRowsMax: number;
  /** Background catch-up this long after a write, ms (config viewWarmDelayMs; 0 turns warming off). */
  warmDelayMs: number;
  /** Indexes not queried for this long are no longer warmed, ms. */
  warmIdleMs: number;
  /** JavaScript reduce output size from which `reduce_limit` applies, bytes (CouchDB's reduce_limit_threshold). */
  reduceLimitBytes: number;
  log?: IndexLogger;
  /** After each durable build batch: documents absorbed. */
  onIndexed?: (docs: number) => void;
}

/** What the copy supplies: its change feed, sequence, writes, documents by id and winning documents. */
export interface IndexedCopy extends PipelineSource, FindScanSource {
  /** Winning revisions rendered (null when missing or deleted). */
  winners(ids: string[], conflicts: boolean): Promise<(string | null)[]>;
  onUpdate(listener: (seq: number) => void): () => void;
}

/** A running build, for `_active_tasks`. */
export interface IndexTask {
  ddocId: string;
  signature: string;
  changesDone: number;
  totalChanges: number;
  startedOnSec: number;
  updatedOnSec: number;
  loggedOnSec: number;
}

const REGISTRY = 'x/indexes';
const JS_REDUCE_ROWS_PER_CALL = 1000;
const REDUCE_CACHE_ENTRIES = 64;

export class CopyIndexes {
  private readonly indexes = new Map<string, Promise<ViewIndex>>();
  private readonly pipeline: Pipeline;
  private readonly tasks = new Map<ViewIndex, IndexTask>();
  private readonly unsubscribe: () => void;
  private warmTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** group=false reductions by query, valid while the index stays at the same checkpoint. */
  private readonly reduceCache = new Map<string, { seq: number; row: ReducedRow[] }>();

  constructor(
    private readonly copy: IndexedCopy,
    private readonly options: CopyIndexesOptions,
  ) {
    this.pipeline = new Pipeline(copy, {
      batchDocsMax: options.batchDocsMax,
      isCancelled: () => this.closed,
      onProgress: (consumer, progress, docs) => {
        const index = consumer as ViewIndex;
        const now = Math.floor(Date.now() / 1000);
        const task = this.tasks.get(index);
        if (task) {
          Object.assign(task, { changesDone: progress.done, totalChanges: progress.total, updatedOnSec: now });
          // Long builds say how far they are, every ten seconds or so.
          if (now - task.loggedOnSec >= 10) {
            task.loggedOnSec = now;
            options.log?.({ ddocId: index.def.ddocId, message: `index build: ${progress.done} of about ${progress.total} changes` });
          }
        }
        options.onIndexed?.(docs);
      },
    });
    this.unsubscribe = copy.onUpdate(() => this.scheduleWarm());
  }

  /** The index of a design document (opened on first use). */
  async open(ddoc: DesignDocRef, view?: string): Promise<ViewIndex> {
    const def = indexDef(ddoc, view);
    let opening = this.indexes.get(def.sigHex);
    if (!opening) {
      opening = this.openIndex(def);
      this.indexes.set(def.sigHex, opening);
      opening.catch(() => this.indexes.delete(def.sigHex));
    }
    const index = await opening;
    index.lastUsedMs = Date.now();
    return index;
  }

  private async openIndex(def: IndexDef): Promise<ViewIndex> {
    const { store, copyId } = this.options;
    await this.editRegistry((registry) => {
      if (registry[def.sigHex] === def.ddocId) return false;
      registry[def.sigHex] = def.ddocId;
      return true;
    });
    return ViewIndex.open({ copyId, store, js: this.options.js, mapBatchBytesMax: this.options.mapBatchBytesMax, sideGroupRowsMax: this.options.sideGroupRowsMax, ...(this.options.log ? { log: this.options.log } : {}) }, def);
  }

  /** Registry edits run one at a time (a read-modify-write each), so none is lost. */
  private registryChain: Promise<unknown> = Promise.resolve();

  private editRegistry(edit: (registry: Record<string, string>) => boolean): Promise<void> {
    const run = this.registryChain.then(async () => {
      const registry = await this.registry();
      if (edit(registry)) await this.options.store.write([{ type: 'put', key: keys.metaKey(this.options.copyId, REGISTRY), value: JSON.stringify(registry) }]);
    });
    this.registryChain = run.catch(() => undefined);
    return run;
  }

  private async registry(): Promise<Record<string, string>> {
    const raw = await this.options.store.get(keys.metaKey(this.options.copyId, REGISTRY));
    return raw ? (JSON.parse(raw.toString('utf8')) as Record<string, string>) : {};
  }

  /** Bring an index up to the copy's current sequence (shared with concurrent callers). */
  async update(index: ViewIndex): Promise<void> {
    if (this.pipeline.isRunning(index) || index.checkpoint() >= this.copy.currentSeq()) return this.pipeline.catchUp(index);
    const now = Math.floor(Date.now() / 1000);
    this.tasks.set(index, {
      ddocId: index.def.ddocId,
      signature: index.def.sigHex,
      changesDone: 0,
      totalChanges: Math.max(0, this.copy.currentSeq() - index.checkpoint()),
      startedOnSec: now,
      updatedOnSec: now,
      loggedOnSec: now,
    });
    try {
      await this.pipeline.catchUp(index);
    } finally {
      this.tasks.delete(index);
    }
  }

  private async prepared(req: Pick<ShardViewRequest, 'ddoc' | 'view' | 'update'>): Promise<{ index: ViewIndex; view: number; def: ViewDef }> {
    const index = await this.open(req.ddoc, req.view);
    const view = index.viewNumber(req.view);
    if (req.update === 'true') await this.update(index);
    else if (req.update === 'lazy') void this.update(index).catch(() => undefined);
    return { index, view, def: index.def.views[view]! };
  }

  /** Map rows of a view, in order, with their documents when asked. */
  viewRows(req: ShardViewRequest): Cursor<ViewStreamItem<ViewRow>> {
    return lazyCursor(async () => {
      const { index, view } = await this.prepared(req);
      const rows = index.rows(view, req.ranges, req.descending, req.limit);
      let header: ViewHeader | undefined = { header: true, totalRows: index.rowCount(view), seq: index.checkpoint() };
      return {
        next: async () => {
          const batch = await rows.next();
          if (batch === null) {
            const last = header ? [header] : null;
            header = undefined;
            return last;
          }
          const out: ViewStreamItem<ViewRow>[] = [];
          if (header) out.push(header);
          header = undefined;
          const mapped: ViewRow[] = batch.map((r) => ({ id: r.id, keyJson: r.keyJson, valueJson: r.valueJson }));
          if (req.includeDocs) {
            // Rows whose value names another document (`{_id}`) are the coordinator's to fetch.
            const own = mapped.map((row, i) => (linkedId(batch[i]!) === undefined ? i : -1)).filter((i) => i >= 0);
            const docs = await this.copy.winners(own.map((i) => mapped[i]!.id), req.conflicts);
            own.forEach((rowIndex, j) => (mapped[rowIndex]!.doc = docs[j]!));
          }
          for (const row of mapped) out.push(row);
          return out;
        },
        close: () => rows.close(),
      };
    });
  }

  /**
   * A Mango query's matching rows on this copy, in index order: from a JSON index
   * (brought up to date as `update` asks) or from every document by id.
   */
  findRows(req: ShardFindRequest): Cursor<FindStreamItem> {
    return lazyCursor(async () => {
      if (req.source.kind === 'all_docs') {
        return findScan(req, this.copy, undefined, { header: true, totalRows: 0, seq: this.copy.currentSeq() });
      }
      const { index, view } = await this.prepared({ ddoc: req.source.ddoc, view: req.source.view, update: req.update });
      return findScan(req, this.copy, { index, view }, { header: true, totalRows: index.rowCount(view), seq: index.checkpoint() });
    });
  }

  /** Reduced rows of a view: one per group (or one in all for group level 0), partial reductions. */
  viewReduce(req: ShardReduceRequest): Cursor<ViewStreamItem<ReducedRow>> {
    return lazyCursor(async () => {
      const { index, view, def } = await this.prepared(req);
      const cacheKey = req.groupLevel === 0 ? JSON.stringify([index.def.sigHex, view, req.ranges, req.descending]) : undefined;
      const cached = cacheKey !== undefined ? this.reduceCache.get(cacheKey) : undefined;
      const seq = index.checkpoint();
      const header: ViewHeader = { header: true, totalRows: index.rowCount(view), seq };
      if (cached && cached.seq === seq) return onceCursor<ViewStreamItem<ReducedRow>>([header, ...cached.row]);
      // A whole-view _count or numeric _sum is kept as the index is built: no scan.
      const whole = req.groupLevel === 0 && req.ranges.length === 1 && req.ranges[0]!.startKey === undefined && req.ranges[0]!.endKey === undefined;
      if (whole && index.rowCount(view) === 0) return onceCursor<ViewStreamItem<ReducedRow>>([header]);
      const kept = !whole ? undefined : def.builtin?.name === '_count' ? index.rowCount(view) : def.builtin?.name === '_sum' ? index.runningSum(view) : undefined;
      if (kept !== undefined) return onceCursor<ViewStreamItem<ReducedRow>>([header, { keyJson: 'null', partialJson: JSON.stringify(kept) }]);
      let headerSent = false;
      const rows = index.rows(view, req.ranges, req.descending, Number.MAX_SAFE_INTEGER);
      const reducer = new GroupReducer(def, index, this.options.js, this.options.reduceLimitBytes);
      let done = false;
      let groupKey: unknown;
      let groupKeyJson = 'null';
      let group: ReadRow[] = [];
      let started = false;
      const all: ReducedRow[] = [];
      return {
        next: async () => {
          while (!done) {
            const batch = await rows.next();
            const out: ReducedRow[] = [];
            const withHeader = (): ViewStreamItem<ReducedRow>[] => {
              if (headerSent) return out;
              headerSent = true;
              return [header, ...out];
            };
            if (batch === null) {
              done = true;
              if (started) out.push(await reducer.row(groupKeyJson, group));
            } else {
              for (const row of batch) {
                // Exact groups compare the key's JSON text (canonical): no parse needed.
                const key = req.groupLevel === 'exact' ? undefined : groupOf(row.key, req.groupLevel);
                if (!started) {
                  started = true;
                  groupKey = key;
                  groupKeyJson = req.groupLevel === 0 ? 'null' : groupJson(row, key, req.groupLevel);
                } else if (req.groupLevel !== 0 && (req.groupLevel === 'exact' ? row.keyJson !== groupKeyJson : collate(key, groupKey) !== 0)) {
                  out.push(await reducer.row(groupKeyJson, group));
                  group = [];
                  groupKey = key;
                  groupKeyJson = groupJson(row, key, req.groupLevel);
                }
                group.push(row);
                if (group.length >= JS_REDUCE_ROWS_PER_CALL) await reducer.fold(group).then(() => (group = []));
              }
            }
            if (cacheKey !== undefined) all.push(...out);
            if (done && cacheKey !== undefined) this.cacheReduce(cacheKey, seq, all);
            if (out.length > 0 || (done && !headerSent)) return withHeader();
          }
          return null;
        },
        close: () => rows.close(),
      };
    });
  }

  private cacheReduce(key: string, seq: number, row: ReducedRow[]): void {
    this.reduceCache.delete(key);
    this.reduceCache.set(key, { seq, row });
    if (this.reduceCache.size > REDUCE_CACHE_ENTRIES) this.reduceCache.delete(this.reduceCache.keys().next().value!);
  }

  /** `_info` of a design document's index on this copy. */
  async info(ddoc: DesignDocRef): Promise<IndexInfo> {
    const index = await this.open(ddoc);
    return {
      signature: index.def.sigHex,
      updateSeq: index.checkpoint(),
      targetSeq: this.copy.currentSeq(),
      sizeBytes: await index.sizeBytes(),
      updating: this.pipeline.isRunning(index),
    };
  }

  /** `_compact/{ddoc}`: bring the index up to date, then compact its key range in RocksDB. */
  async compact(ddoc: DesignDocRef): Promise<void> {
    const index = await this.open(ddoc);
    await this.update(index);
    await this.options.store.compact(keys.indexRange(this.options.copyId, index.def.sig));
  }

  /** Builds running now. */
  runningTasks(): IndexTask[] {
    return [...this.tasks.values()].map((t) => ({ ...t }));
  }

  /** Changes not yet absorbed, summed over the indexes opened on this copy. */
  /**
   * The lowest copy seq every index of this copy has absorbed: purge history after it is
   * still needed (0 while an index registered on disk has not been opened since start).
   */
  async indexedSeq(): Promise<number> {
    let low = this.copy.currentSeq();
    for (const sigHex of Object.keys(await this.registry())) {
      const opening = this.indexes.get(sigHex);
      const index = opening ? await opening.catch(() => undefined) : undefined;
      if (!index) return 0;
      low = Math.min(low, index.checkpoint());
    }
    return low;
  }

  async lag(): Promise<number> {
    let lag = 0;
    for (const opening of this.indexes.values()) {
      const index = await opening.catch(() => undefined);
      if (index) lag += Math.max(0, this.copy.currentSeq() - index.checkpoint());
    }
    return lag;
  }

  /** Drop every index whose signature is not in `keep` (`_view_cleanup`); answers how many. */
  async cleanup(keep: ReadonlySet<string>): Promise<number> {
    let dropped: string[] = [];
    await this.editRegistry((registry) => {
      dropped = Object.keys(registry).filter((sigHex) => !keep.has(sigHex));
      for (const sigHex of dropped) delete registry[sigHex];
      return dropped.length > 0;
    });
    for (const sigHex of dropped) {
      const open = this.indexes.get(sigHex);
      this.indexes.delete(sigHex);
      const index = await open?.catch(() => undefined);
      index?.release(true);
      // A build under way stops before its next write; clear after its last one.
      if (index) await this.pipeline.settled(index);
      await this.options.store.clear(keys.indexRange(this.options.copyId, Buffer.from(sigHex, 'hex')));
    }
    return dropped.length;
  }

  /** Catch up recently used indexes a little after writes, so queries find them warm. */
  private scheduleWarm(): void {
    if (this.closed || this.warmTimer || this.options.warmDelayMs <= 0 || this.indexes.size === 0) return;
    this.warmTimer = setTimeout(() => {
      this.warmTimer = undefined;
      void this.warm();
    }, this.options.warmDelayMs);
    this.warmTimer.unref();
  }

  private async warm(): Promise<void> {
    const now = Date.now();
    for (const opening of [...this.indexes.values()]) {
      if (this.closed) return;
      const index = await opening.catch(() => undefined);
      if (!index || now - index.lastUsedMs > this.options.warmIdleMs) continue;
      await this.update(index).catch((err: unknown) => this.options.log?.({ ddocId: index.def.ddocId, message: `background index update failed: ${err instanceof Error ? err.message : String(err)}` }));
    }
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    if (this.warmTimer) clearTimeout(this.warmTimer);
    for (const opening of this.indexes.values()) void opening.then((index) => index.release(), () => undefined);
  }
}

/** The `_id` a row's value links to (include_docs then shows that document), if any. */
export function linkedIdOfValue(valueJson: string): string | undefined {
  if (!valueJson.startsWith('{')) return undefined;
  const value = JSON.parse(valueJson) as Record<string, unknown>;
  return typeof value._id === 'string' ? value._id : undefined;
}

function linkedId(row: ReadRow): string | undefined {
  return linkedIdOfValue(row.valueJson);
}

/** The group a key falls in at a group level. */
export function groupOf(key: unknown, level: number | 'exact'): unknown {
  if (level === 'exact') return key;
  if (level === 0) return null;
  return Array.isArray(key) ? key.slice(0, level) : key;
}

function groupJson(row: ReadRow, key: unknown, level: number | 'exact'): string {
  return level === 'exact' || !Array.isArray(row.key) ? row.keyJson : JSON.stringify(key);
}

/**
 * Reduces one group at a time: built-ins here, JavaScript in the sandbox in chunks of
 * rows then a rereduce. Rows of a group=false query are folded as they stream, so a
 * big view is never held in memory.
 */
class GroupReducer {
  private partials: unknown[] = [];

  constructor(
    private readonly def: ViewDef,
    private readonly index: ViewIndex,
    private readonly js: SandboxPool,
    private readonly limitBytes: number,
  ) {}

  async fold(rows: readonly ReadRow[]): Promise<void> {
    if (rows.length === 0) return;
    const builtin = this.def.builtin;
    if (builtin) {
      // Only _approx_count_distinct looks at keys; the others would parse them for nothing.
      const withKeys = builtin.name === '_approx_count_distinct';
      this.partials.push(builtin.reduce(rows.map((r) => [withKeys ? r.key : null, builtin.name === '_count' ? null : JSON.parse(r.valueJson)] as const)));
      if (this.partials.length > 64) this.partials = [builtin.rereduce(this.partials)];
      return;
    }
    const compiled = await this.index.compile();
    for (let at = 0; at < rows.length; at += JS_REDUCE_ROWS_PER_CALL) {
      const chunk = rows.slice(at, at + JS_REDUCE_ROWS_PER_CALL);
      const input = chunk.map((r) => [[r.key, r.id], JSON.parse(r.valueJson)] as const);
      const { value } = await this.js.reduce(compiled, this.def.name, input, false);
      this.checkLimit(value, chunk);
      this.partials.push(value);
    }
    if (this.partials.length > 64) this.partials = [(await this.js.reduce(compiled, this.def.name, this.partials.map((p) => [null, p] as const), true)).value];
  }

  /** The group's row: fold what is left, combine the partials. */
  async row(keyJson: string, rows: readonly ReadRow[]): Promise<ReducedRow> {
    await this.fold(rows);
    const partials = this.partials;
    this.partials = [];
    return { keyJson, partialJson: JSON.stringify(await combinePartials(this.def, partials, this.js, () => this.index.compile())) };
  }

  /** CouchDB's reduce_limit: a JavaScript reduce must shrink its input. */
  private checkLimit(value: unknown, rows: readonly ReadRow[]): void {
    const out = JSON.stringify(value) ?? 'null';
    if (this.limitBytes <= 0 || out.length <= this.limitBytes) return;
    let input = 0;
    for (const r of rows) input += r.keyJson.length + r.valueJson.length + r.id.length;
    if (out.length * 2 > input) {
      throw new OsProcessError('exception', `reduce_overflow_error: Reduce output must shrink more rapidly: Current output: '${out.slice(0, 200)}'...`);
    }
  }
}

/** Combine partial reductions of one group (from chunks, or from several copies). */
export async function combinePartials(def: ViewDef, partials: unknown[], js: SandboxPool, compile: () => Promise<import('../js/sandbox').CompiledDdoc>): Promise<unknown> {
  const builtin = def.builtin;
  if (builtin) return partials.length === 1 ? partials[0] : builtin.rereduce(partials.length > 0 ? partials : [builtin.reduce([])]);
  if (partials.length === 0) return (await js.reduce(await compile(), def.name, [], false)).value;
  if (partials.length === 1) return partials[0];
  return (await js.reduce(await compile(), def.name, partials.map((p) => [null, p] as const), true)).value;
}

/** A cursor whose source is made on the first `next` (after async set-up). */
function lazyCursor<T>(make: () => Promise<Cursor<T>>): Cursor<T> {
  let inner: Promise<Cursor<T>> | undefined;
  let closed = false;
  return {
    next: async () => {
      if (closed) return null;
      inner ??= make();
      return (await inner).next();
    },
    close: async () => {
      closed = true;
      if (inner) await (await inner.catch(() => undefined))?.close();
    },
  };
}

function onceCursor<T>(rows: T[]): Cursor<T> {
  let sent = false;
  return {
    next: async () => {
      if (sent) return null;
      sent = true;
      return rows;
    },
    close: async () => undefined,
  };
}
