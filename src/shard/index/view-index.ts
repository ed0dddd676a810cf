/**
 * One view index of one shard copy: all views of one design document (by signature),
 * kept up to date through the copy's change pipeline, and read in collation order.
 *
 * Storage (storage/keys.ts, Space.Index): per view, rows in a Main part (keys with an
 * exact collation code, so RocksDB's byte order is the view's order) and a Side part
 * (keys holding a string the codec cannot order exactly: their code only groups them;
 * the reader sorts each group, then merges both parts with the exact comparator). A
 * back-index per document lists what it emitted, so an update or deletion removes its
 * old rows. The checkpoint sits in the same durable write as the rows (pipeline.ts).
 *
 * Mango JSON indexes (`language: "query"`) map natively (mango-map.ts). JavaScript
 * map functions run in the sandbox, a batch of documents per call; a map function that
 * throws on a document is logged and that document emits nothing for that view (as
 * CouchDB does). Deleted documents, and design documents unless the design document
 * sets `options.include_design`, emit nothing.
 */
import { DivanError } from '../../errors';
import type { CompiledDdoc, SandboxPool } from '../js/sandbox';
import { collate, compareRaw } from '../query/collate';
import * as keys from '../../storage/keys';
import { mainSpaceBounds, sideSpaceBounds, viewKeyCodes } from '../../storage/collation-key';
import type { Cursor, Store, WriteOp } from '../../storage/store';
import { MangoMapper } from './mango-map';
import type { ChangeConsumer, ChangedDoc } from './pipeline';
import type { IndexDef, ViewDef } from './design';
import type { ViewKeyRange } from './types';

/** What a checkpoint record holds. */
export interface IndexMeta {
  seq: number;
  ddocId: string;
  views: string[];
  /** Rows per view (in view order): CouchDB's `total_rows`, and the `_count` of the whole view. */
  rows: number[];
  /**
   * Per `_sum` view, the sum of all its values while every value was a number (null
   * once one was not): a whole-view `_sum` is then read here, not over every row.
   */
  sums?: (number | null)[];
  /** Rows per view in the Side part (keys without an exact code). */
  side?: number[];
}

/** Told about lines user code logged and map errors (the copy's owner logs them). */
export type IndexLogger = (event: { ddocId: string; message: string; docId?: string; view?: string }) => void;

export interface ViewIndexOptions {
  copyId: number;
  store: Store;
  js: SandboxPool;
  /** Bytes of document JSON per sandbox call at most (the batch is split beyond). */
  mapBatchBytesMax: number;
  /** Rows of one side group a read sorts in memory at most (config viewSideGroupRowsMax). */
  sideGroupRowsMax: number;
  log?: IndexLogger;
}

/** A parsed row as the reader handles it. */
interface ReadRow {
  readonly key: unknown;
  keyJson: string;
  id: string;
  valueJson: string;
  /** Position among equal (key, id) rows. */
  dup: number;
}

const NL = '\n';

/** Documents a Mango index maps between two yields (parsing is most of the cost). */
const MANGO_MAP_SLICE_DOCS = 200;

/** Documents handled between two yields to the event loop while a batch is absorbed. */
const YIELD_EVERY_DOCS = 50;

/**
 * A pause, not just a turn: a timer (about 1 ms) leaves the loop idle long enough for
 * requests in flight to take several steps, where setImmediate let each step wait
 * behind the next slice of the build. Measured over a 100k-doc build: GET by id during
 * the build p50 8.9 → 3.7 ms, p99 44 → 31 ms, the build 30k → 26k docs/s.
 */
function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}

export class ViewIndex implements ChangeConsumer {
  readonly def: IndexDef;
  readonly name: string;
  private meta: IndexMeta;
  private compiled: Promise<CompiledDdoc> | undefined;
  private readonly prefixes: { main: Buffer; side: Buffer }[];
  /** When a query last used this index (ms since epoch), for background warming. */
  lastUsedMs = Date.now();

  private constructor(
    private readonly options: ViewIndexOptions,
    def: IndexDef,
    meta: IndexMeta,
  ) {
    this.def = def;
    this.meta = meta;
    this.name = `${def.ddocId} ${def.sigHex}`;
    this.prefixes = def.views.map((_, i) => ({
      main: keys.viewPrefix(options.copyId, def.sig, keys.IndexPart.Main, i),
      side: keys.viewPrefix(options.copyId, def.sig, keys.IndexPart.Side, i),
    }));
  }

  static async open(options: ViewIndexOptions, def: IndexDef): Promise<ViewIndex> {
    const raw = await options.store.get(keys.indexMetaKey(options.copyId, def.sig));
    const meta: IndexMeta = raw ? (JSON.parse(raw.toString('utf8')) as IndexMeta) : { seq: 0, ddocId: def.ddocId, views: def.views.map((v) => v.name), rows: def.views.map(() => 0) };
    return new ViewIndex(options, def, meta);
  }

  checkpoint(): number {
    return this.meta.seq;
  }

  /** The running sum of a `_sum` view over all its rows, when every value was a number. */
  runningSum(view: number): number | undefined {
    const sum = this.meta.sums?.[view];
    return typeof sum === 'number' ? sum : undefined;
  }

  /** Rows of one view at the checkpoint. */
  rowCount(view: number): number {
    return this.meta.rows[view] ?? 0;
  }

  viewNumber(name: string): number {
    return this.def.views.findIndex((v) => v.name === name);
  }

  view(name: string): ViewDef | undefined {
    return this.def.views.find((v) => v.name === name);
  }

  /** The compiled views (compiled once per index; a compile error fails every build). */
  compile(): Promise<CompiledDdoc> {
    if (!this.compiled) {
      this.compiled = this.options.js.compile(this.def.compileDoc);
      this.compiled.catch(() => (this.compiled = undefined));
    }
    return this.compiled;
  }

  private dropped = false;

  isDropped(): boolean {
    return this.dropped;
  }

  /** Forget the compiled views; with `drop`, the index is going away: builds stop. */
  release(drop = false): void {
    if (drop) this.dropped = true;
    const compiled = this.compiled;
    this.compiled = undefined;
    void compiled?.then((c) => this.options.js.release(c), () => undefined);
  }

  // ---- building (the pipeline's consumer) -------------------------------------------

  /** The map step (in the sandbox): per document, its emits. Reads nothing of the index. */
  prepare(docs: ChangedDoc[]): Promise<unknown> {
    return this.mapAll(docs);
  }

  async absorb(docs: ChangedDoc[], toSeq: number, prepared: unknown): Promise<WriteOp[]> {
    const { copyId, store } = this.options;
    const sig = this.def.sig;
    const ops: WriteOp[] = [];
    const olds = docs.length > 0 ? await store.getMany(docs.map((d) => keys.indexBackKey(copyId, sig, d.id))) : [];
    const emits = prepared as [number, string, string, unknown][][];
    const rows = [...this.meta.rows];
    // Side rows per view: a view without any is read from its Main part alone.
    const side = this.def.views.map((_, i) => this.meta.side?.[i] ?? (this.meta.seq === 0 ? 0 : 1));
    // Back-index entries of `_sum` views keep each value, so a removed row leaves the sum.
    const sums = this.def.views.map((v, i) => (v.builtin?.name === '_sum' ? (this.meta.sums?.[i] ?? (this.meta.seq === 0 ? 0 : null)) : null));
    const addSum = (view: number, valueJson: string | undefined, sign: 1 | -1) => {
      const current = sums[view];
      if (current === null || current === undefined) return;
      const value: unknown = valueJson === undefined ? undefined : JSON.parse(valueJson);
      sums[view] = typeof value === 'number' ? current + sign * value : null;
    };
    for (let i = 0; i < docs.length; i++) {
      // Hand the event loop back now and then: a batch is thousands of rows.
      if (i % YIELD_EVERY_DOCS === YIELD_EVERY_DOCS - 1) await yieldToLoop();
      const doc = docs[i]!;
      const old = olds[i];
      if (old) {
        const previous = JSON.parse(old.toString('utf8')) as [number, string, string?][];
        for (const [view, , valueJson] of previous) {
          rows[view]! -= 1;
          if (sums[view] !== null) addSum(view, valueJson, -1);
        }
        for (const op of this.rowOps(doc.id, previous.map((p) => [p[0], p[1]] as [number, string]), 'del', side)) ops.push(op);
      }
      const emitted = emits[i]!;
      if (emitted.length > 0) {
        for (const [view, , valueJson] of emitted) {
          rows[view]! += 1;
          if (sums[view] !== null) addSum(view, valueJson, 1);
        }
        for (const op of this.rowOps(doc.id, emitted.map((r) => [r[0], r[1]] as [number, string]), 'put', side, emitted)) ops.push(op);
        const back = emitted.map((r) => (this.def.views[r[0]]!.builtin?.name === '_sum' ? [r[0], r[1], r[2]] : [r[0], r[1]]));
        ops.push({ type: 'put', key: keys.indexBackKey(copyId, sig, doc.id), value: JSON.stringify(back) });
      } else if (old) {
        ops.push({ type: 'del', key: keys.indexBackKey(copyId, sig, doc.id) });
      }
    }
    const meta: IndexMeta = { ...this.meta, seq: toSeq, rows, sums, side };
    ops.push({ type: 'put', key: keys.indexMetaKey(copyId, sig), value: JSON.stringify(meta) });
    this.pendingMeta = meta;
    return ops;
  }

  private pendingMeta: IndexMeta | undefined;

  absorbed(toSeq: number): void {
    this.meta = this.pendingMeta && this.pendingMeta.seq === toSeq ? this.pendingMeta : { ...this.meta, seq: toSeq };
    this.pendingMeta = undefined;
  }

  /**
   * Row writes for one document's emits (`[view, keyJson]` in emit order; for puts,
   * the emits with their values). Equal (view, key) pairs are told apart by `dup`.
   */
  private *rowOps(docId: string, emitted: [number, string][], type: 'put' | 'del', sideRows: number[], withValues?: [number, string, string, unknown][]): Generator<WriteOp> {
    const seen = new Map<string, number>();
    for (let i = 0; i < emitted.length; i++) {
      const [view, keyJson] = emitted[i]!;
      const tag = view + NL + keyJson;
      const dup = seen.get(tag) ?? 0;
      seen.set(tag, dup + 1);
      const codes = viewKeyCodes(withValues ? withValues[i]![3] : JSON.parse(keyJson));
      const prefixes = this.prefixes[view]!;
      if (codes.exact === null) sideRows[view]! += type === 'put' ? 1 : -1;
      const key =
        codes.exact !== null
          ? keys.viewRowKey(prefixes.main, keys.IndexPart.Main, codes.exact, docId, dup, keyJson)
          : keys.viewRowKey(prefixes.side, keys.IndexPart.Side, codes.side, docId, dup, keyJson);
      if (type === 'del') yield { type: 'del', key };
      else yield { type: 'put', key, value: keyJson + NL + JSON.stringify(docId) + NL + withValues![i]![2] };
    }
  }

  /** Per document: its emits `[view, keyJson, valueJson, key]`. */
  private async mapAll(docs: ChangedDoc[]): Promise<[number, string, string, unknown][][]> {
    if (this.def.language === 'query') return this.mapMango(docs);
    const out: [number, string, string, unknown][][] = docs.map(() => []);
    const mapped: number[] = [];
    for (let i = 0; i < docs.length; i++) {
      const doc = docs[i]!;
      if (doc.deleted) continue;
      if (!this.def.includeDesign && doc.id.startsWith('_design/')) continue;
      mapped.push(i);
    }
    if (mapped.length === 0 || this.def.views.length === 0) return out;
    const compiled = await this.compile();
    const names = this.def.views.map((v) => v.name);
    let at = 0;
    while (at < mapped.length) {
      const chunk: number[] = [];
      let bytes = 0;
      while (at < mapped.length && (chunk.length === 0 || bytes + docs[mapped[at]!]!.json.length <= this.options.mapBatchBytesMax)) {
        bytes += docs[mapped[at]!]!.json.length;
        chunk.push(mapped[at++]!);
      }
      const result = await this.options.js.mapDocTexts(compiled, names, chunk.map((i) => docs[i]!.json));
      for (const line of result.logs) this.options.log?.({ ddocId: this.def.ddocId, message: line });
      await yieldToLoop();
      chunk.forEach((docIndex, j) => {
        const perView = result.docs[j]!;
        const rows = out[docIndex]!;
        perView.forEach((emitted, view) => {
          if (!Array.isArray(emitted)) {
            this.options.log?.({ ddocId: this.def.ddocId, docId: docs[docIndex]!.id, view: names[view]!, message: `map function failed: ${emitted.error}` });
            return;
          }
          for (const [key, value] of emitted) rows.push([view, JSON.stringify(key ?? null), JSON.stringify(value ?? null), key ?? null]);
        });
      });
    }
    return out;
  }

  /** Mango JSON indexes map on the event loop (no user code), a slice at a time. */
  private async mapMango(docs: ChangedDoc[]): Promise<[number, string, string, unknown][][]> {
    this.mango ??= new MangoMapper(this.def.views);
    const out: [number, string, string, unknown][][] = [];
    for (let at = 0; at < docs.length; at += MANGO_MAP_SLICE_DOCS) {
      if (at > 0) await yieldToLoop();
      for (const perView of this.mango.map(docs.slice(at, at + MANGO_MAP_SLICE_DOCS))) {
        const rows: [number, string, string, unknown][] = [];
        perView.forEach((emitted, view) => {
          for (const [key, value] of emitted) rows.push([view, JSON.stringify(key), JSON.stringify(value), key]);
        });
        out.push(rows);
      }
    }
    return out;
  }

  private mango: MangoMapper | undefined;

  // ---- reading ----------------------------------------------------------------------

  /**
   * The rows of `view` within `ranges` (each in the query's direction), in collation
   * order then doc id; at most `limit` rows. Reads a snapshot per range.
   */
  rows(view: number, ranges: readonly ViewKeyRange[], descending: boolean, limit: number, wantedHint = limit): Cursor<ReadRow> {
    let rangeIndex = 0;
    let current: RangeReader | undefined;
    let remaining = limit;
    return {
      next: async () => {
        while (remaining > 0 && rangeIndex < ranges.length) {
          current ??= new RangeReader(this.options.store, this.prefixes[view]!, ranges[rangeIndex]!, descending, (this.meta.side?.[view] ?? 1) > 0, this.options.sideGroupRowsMax, Math.min(remaining, wantedHint));
          const batch = await current.next(Math.min(256, remaining, wantedHint));
          if (batch === null) {
            await current.close();
            current = undefined;
            rangeIndex++;
            continue;
          }
          const out = batch.length > remaining ? batch.slice(0, remaining) : batch;
          remaining -= out.length;
          return out;
        }
        return null;
      },
      close: async () => {
        await current?.close();
        current = undefined;
      },
    };
  }

  async sizeBytes(): Promise<number> {
    return this.options.store.approximateSize(keys.indexRange(this.options.copyId, this.def.sig));
  }
}

export type { ReadRow };

/** Compare a row with a bound: by key, then (when the bound names one) by doc id. */
function compareToBound(key: unknown, id: string, boundKey: unknown, boundId: string | undefined): number {
  const byKey = collate(key, boundKey);
  if (byKey !== 0 || boundId === undefined) return byKey;
  return compareRaw(id, boundId);
}

/** Row order of a view: key by collation, then doc id by code point, then emit order. */
export function compareRows(a: ReadRow, b: ReadRow): number {
  return collate(a.key, b.key) || compareRaw(a.id, b.id) || a.dup - b.dup;
}

/**
 * One key range of one view: the Main part streamed as stored, the Side part in
 * groups sorted here, merged by the exact comparator, each row checked against the
 * range (the part bounds are conservative).
 */
class RangeReader {
  private readonly main: Cursor<[Buffer, string]>;
  private readonly side: Cursor<[Buffer, string]>;
  private mainRows: ReadRow[] = [];
  private mainAt = 0;
  private mainDone = false;
  private sideRows: ReadRow[] = [];
  private sideAt = 0;
  private sideDone = false;
  /** A side row read past the current group. */
  private sideCarry: { code: Buffer; row: ReadRow } | undefined;
  private sideBatch: [Buffer, string][] = [];
  private sideBatchAt = 0;
  private sideExhausted = false;
  private finished = false;
  private readonly sign: number;
  private readonly checkStart: boolean;
  private readonly checkEnd: boolean;

  constructor(
    store: Store,
    prefixes: { main: Buffer; side: Buffer },
    private readonly range: ViewKeyRange,
    descending: boolean,
    hasSide: boolean,
    private readonly groupRowsMax: number,
    /** Rows the reader is likely to need: the first batches read about that many, not 256. */
    wanted: number,
  ) {
    this.sign = descending ? -1 : 1;
    const low = descending ? range.endKey : range.startKey;
    const high = descending ? range.startKey : range.endKey;
    const mainCodes = mainSpaceBounds(low, high);
    const sideCodes = sideSpaceBounds(low, high);
    // The Main part's store bounds are the exact codes of bounds without a doc id (an
    // inclusive end): its rows need no check against them.
    const exact = (key: unknown) => key === undefined || viewKeyCodes(key).exact !== null;
    this.checkStart = range.startKeyDocId !== undefined || !exact(range.startKey);
    this.checkEnd = range.endKey !== undefined && (range.endKeyDocId !== undefined || !range.inclusiveEnd || !exact(range.endKey));
    // Read about what is wanted first (index rows are ~100 bytes: key, id, value), full
    // batches if the reader goes on: converting rows nobody reads is most of a short read.
    const rows = Math.max(8, Math.min(256, wanted));
    const open = (bounds: { gte?: Buffer; lt?: Buffer }) => {
      const options = { ...bounds, reverse: descending, valuesAsText: true as const };
      return rows < 256 ? store.rampCursor(options, rows, Math.max(512, rows * 100)) : store.cursor(options, 256);
    };
    this.main = open(keys.viewRowBounds(prefixes.main, keys.IndexPart.Main, mainCodes));
    this.side = hasSide ? open(keys.viewRowBounds(prefixes.side, keys.IndexPart.Side, sideCodes)) : emptyCursor;
    this.sideDone = !hasSide;
  }

  /** Whether a row is past the range's start (in the scan direction): skip it. */
  private beforeStart(row: ReadRow): boolean {
    if (this.range.startKey === undefined) return false;
    return this.sign * compareToBound(row.key, row.id, this.range.startKey, this.range.startKeyDocId) < 0;
  }

  /** Whether a row is past the range's end: the scan is over. */
  private afterEnd(row: ReadRow): boolean {
    if (this.range.endKey === undefined) return false;
    const c = this.sign * compareToBound(row.key, row.id, this.range.endKey, this.range.endKeyDocId);
    return c > 0 || (c === 0 && !this.range.inclusiveEnd);
  }

  /** The next rows in range, at most `max` (each call reads only about what it returns). */
  async next(max: number): Promise<ReadRow[] | null> {
    const out: ReadRow[] = [];
    while (!this.finished && out.length < max) {
      if (this.mainAt >= this.mainRows.length && !this.mainDone) await this.fillMain();
      if (this.sideAt >= this.sideRows.length && !this.sideDone) await this.fillSide();
      const m = this.mainAt < this.mainRows.length ? this.mainRows[this.mainAt]! : undefined;
      const s = this.sideAt < this.sideRows.length ? this.sideRows[this.sideAt]! : undefined;
      if (!m && !s) {
        this.finished = true;
        break;
      }
      const takeMain = m !== undefined && (s === undefined || this.sign * compareRows(m, s) <= 0);
      const row = takeMain ? m! : s!;
      if (takeMain) this.mainAt++;
      else this.sideAt++;
      // Main rows lie within exact bounds already (no key to parse); side rows may not.
      if ((!takeMain || this.checkEnd) && this.afterEnd(row)) {
        // Both parts are in order: nothing after this row can be in range.
        this.finished = true;
        break;
      }
      if ((takeMain && !this.checkStart) || !this.beforeStart(row)) out.push(row);
    }
    return out.length === 0 && this.finished ? null : out;
  }

  private async fillMain(): Promise<void> {
    const batch = await this.main.next();
    if (batch === null) {
      this.mainDone = true;
      this.mainRows = [];
    } else {
      this.mainRows = batch.map(([key, value]) => parseRow(key, value));
    }
    this.mainAt = 0;
  }

  /** Read the next whole group of side rows (equal side codes) and sort it. */
  private async fillSide(): Promise<void> {
    const group: ReadRow[] = [];
    let code: Buffer | undefined;
    if (this.sideCarry) {
      code = this.sideCarry.code;
      group.push(this.sideCarry.row);
      this.sideCarry = undefined;
    }
    for (;;) {
      if (this.sideBatchAt >= this.sideBatch.length) {
        if (this.sideExhausted) break;
        const batch = await this.side.next();
        if (batch === null) {
          this.sideExhausted = true;
          break;
        }
        this.sideBatch = batch;
        this.sideBatchAt = 0;
      }
      const [key, value] = this.sideBatch[this.sideBatchAt++]!;
      const rowCode = keys.viewRowSideCode(key);
      const row = parseRow(key, value);
      if (code === undefined) {
        code = rowCode;
        group.push(row);
      } else if (rowCode.equals(code)) {
        group.push(row);
        if (group.length > this.groupRowsMax) {
          throw new DivanError(
            'internal',
            'view_group_too_large',
            `More than ${this.groupRowsMax} rows of this view share one collation group (keys whose strings the collation codec cannot order exactly, see docs/collation.md); raise viewSideGroupRowsMax`,
          );
        }
      } else {
        this.sideCarry = { code: rowCode, row };
        break;
      }
    }
    if (group.length === 0) this.sideDone = true;
    group.sort((a, b) => this.sign * compareRows(a, b));
    this.sideRows = group;
    this.sideAt = 0;
  }

  async close(): Promise<void> {
    await Promise.all([this.main.close(), this.side.close()]);
  }
}

const emptyCursor: Cursor<[Buffer, string]> = { next: async () => null, close: async () => undefined };

/** A stored row; its key is parsed on first use (many reads only pass the JSON text on). */
class StoredRow implements ReadRow {
  private parsed: unknown;
  private isParsed = false;

  constructor(
    readonly keyJson: string,
    readonly id: string,
    readonly valueJson: string,
    readonly dup: number,
  ) {}

  get key(): unknown {
    if (!this.isParsed) {
      this.parsed = JSON.parse(this.keyJson);
      this.isParsed = true;
    }
    return this.parsed;
  }
}

function parseRow(key: Buffer, value: string): ReadRow {
  const first = value.indexOf(NL);
  const second = value.indexOf(NL, first + 1);
  const idJson = value.slice(first + 1, second);
  // Doc ids without escapes (nearly all) need no JSON parse.
  const id = idJson.includes('\\') ? (JSON.parse(idJson) as string) : idJson.slice(1, -1);
  return new StoredRow(value.slice(0, first), id, value.slice(second + 1), key.readUInt16BE(key.length - 2));
}

