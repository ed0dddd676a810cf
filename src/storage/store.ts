/**
 * The node's RocksDB, behind one door. The only module that imports `rocksdb`.
 *
 * Writes are group-committed: every `write(ops)` made while a synced batch is in
 * flight joins the next batch, so many concurrent writers share one WriteBatch and one
 * WAL fsync. `write` resolves only after its batch is durable; a crash (even kill -9)
 * after that loses nothing, because RocksDB replays its WAL on open.
 *
 * Reads are plain point gets, multi-gets and ordered scans; scans hand rows over in
 * batches (RocksDB's iterator already reads ahead in chunks), so a caller streams a
 * range without one promise per row and stops early by returning false.
 */
import assert from 'node:assert/strict';
import { KeyRange } from './keys';

// The rocksdb package ships no types; this is the subset we use.
type Callback<T = void> = (err: Error | null | undefined, value?: T) => void;
interface RawIterator {
  /** The native iterator handle (rocksdb 5.x). */
  context?: unknown;
  next(cb: (err: Error | null | undefined, key?: Buffer, value?: Buffer | string) => void): void;
  end(cb: Callback): void;
}
interface RawChainedBatch {
  put(key: Buffer, value: Buffer | string): void;
  del(key: Buffer): void;
  write(options: object, cb: Callback): void;
}
interface RawDb {
  open(options: object, cb: Callback): void;
  close(cb: Callback): void;
  get(key: Buffer, options: object, cb: Callback<Buffer>): void;
  getMany(keys: Buffer[], options: object, cb: Callback<(Buffer | undefined)[]>): void;
  batch(): RawChainedBatch;
  clear(options: object, cb: Callback): void;
  iterator(options: object): RawIterator;
  approximateSize(start: Buffer, end: Buffer, cb: Callback<number>): void;
  compactRange(start: Buffer, end: Buffer, cb: Callback): void;
}
// eslint-disable-next-line @typescript-eslint/no-var-requires
const rocksdb = require('rocksdb') as (location: string) => RawDb;

/**
 * The package's native binding. Its iterator already fetches rows in batches (up to
 * 1000 rows or `highWaterMark` bytes per call), but the public iterator hands them
 * out one `process.nextTick` callback at a time, which caps a scan at ~300k rows/s.
 * Reading the batches directly is about twice as fast. The binding is internal to the
 * pinned `rocksdb` version; if its shape ever differs, cursors fall back to the
 * public `next()`.
 */
interface NativeBinding {
  iterator_next(context: unknown, cb: (err: Error | null, rows: (Buffer | string)[], finished: boolean) => void): void;
}
const native: NativeBinding | undefined = (() => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const binding = require('rocksdb/binding') as Partial<NativeBinding>;
    return typeof binding.iterator_next === 'function' ? (binding as NativeBinding) : undefined;
  } catch {
    return undefined;
  }
})();

export type WriteOp = { type: 'put'; key: Buffer; value: Buffer | string } | { type: 'del'; key: Buffer };

export interface ScanOptions extends KeyRange {
  reverse?: boolean;
  /** Rows at most; -1 for no limit. */
  limit?: number;
  /** Skip values when only keys are needed. */
  keysOnly?: boolean;
  /**
   * Bytes the binding reads ahead per batch (its highWaterMark); default about 1 KiB per
   * row of `rowsPerBatch`, at least 16 KiB. Small rows read for a small limit (index
   * rows for `limit=1`) set it lower, or each batch reads hundreds of rows in vain.
   */
  batchBytes?: number;
}

/** Scan options for a cursor whose values are UTF-8 text (made by the binding as strings: cheaper than Buffers). */
export interface TextScanOptions extends ScanOptions {
  valuesAsText: true;
}

/** A pull cursor: batches until null; always closed by whoever opened it. */
export interface Cursor<T> {
  next(): Promise<T[] | null>;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** RocksDB block cache, bytes. */
  cacheBytes: number;
  /** RocksDB memtable size before a flush to an L0 file, bytes. */
  writeBufferBytes: number;
  /** Ops in one group-committed batch at most; writers beyond wait for the next. */
  batchOpsMax: number;
}

interface PendingRead {
  keys: Buffer[];
  resolve(values: (Buffer | undefined)[]): void;
  reject(err: Error): void;
}

/** Keys in one coalesced multi-get at most; a turn that asks for more sends several. */
const readKeysMax = 1024;

export class Store {
  private readonly db: RawDb;
  private readonly options: StoreOptions;
  private pending: { ops: WriteOp[]; done: Callback }[] = [];
  private pendingOps = 0;
  private flushing = false;
  private closed = false;
  private reads: PendingRead[] = [];
  private readKeys = 0;
  private readsScheduled = false;

  private constructor(db: RawDb, options: StoreOptions) {
    this.db = db;
    this.options = options;
  }

  static async open(location: string, options: StoreOptions): Promise<Store> {
    const db = rocksdb(location);
    await new Promise<void>((resolve, reject) =>
      db.open(
        { createIfMissing: true, cacheSize: options.cacheBytes, writeBufferSize: options.writeBufferBytes, infoLogLevel: 'error' }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    return new Store(db, options);
  }

  /** One value, or undefined when the key is absent. Coalesced with the turn's other reads (see `getMany`). */
  async get(key: Buffer): Promise<Buffer | undefined> {
    return (await this.getMany([key]))[0];
  }

  /**
   * Values in key order (undefined where absent). Every read asked for during one turn
   * of the event loop goes to RocksDB as a single multi-get at the end of that turn:
   * each native read costs a hand-off to a libuv worker thread and back, and on a
   * machine with few cores those two context switches, not the lookup, are most of a
   * point read's cost. Under load one hand-off now serves every request of the turn.
   */
  getMany(keys: Buffer[]): Promise<(Buffer | undefined)[]> {
    if (keys.length === 0) return Promise.resolve([]);
    if (this.closed) return Promise.reject(new Error('store is closed'));
    return new Promise((resolve, reject) => {
      this.reads.push({ keys, resolve, reject });
      this.readKeys += keys.length;
      if (this.readKeys >= readKeysMax) this.flushReads();
      else if (!this.readsScheduled) {
        this.readsScheduled = true;
        setImmediate(this.flushReads);
      }
    });
  }

  private readonly flushReads = (): void => {
    this.readsScheduled = false;
    if (this.reads.length === 0) return;
    const group = this.reads;
    this.reads = [];
    this.readKeys = 0;
    const keys = group.length === 1 ? group[0]!.keys : group.flatMap((reader) => reader.keys);
    this.db.getMany(keys, { asBuffer: true, fillCache: true }, (err, values) => {
      if (err) {
        for (const reader of group) reader.reject(err);
        return;
      }
      if (group.length === 1) return group[0]!.resolve(values!);
      let at = 0;
      for (const reader of group) {
        reader.resolve(values!.slice(at, at + reader.keys.length));
        at += reader.keys.length;
      }
    });
  };

  /** Durable write of `ops` as part of the next group commit. */
  write(ops: WriteOp[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    if (ops.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.pending.push({ ops, done: (err) => (err ? reject(err) : resolve()) });
      this.pendingOps += ops.length;
      if (!this.flushing) this.flush();
    });
  }

  private flush(): void {
    if (this.pending.length === 0) {
      this.flushing = false;
      return;
    }
    this.flushing = true;
    // Take writers until the batch is full; one oversized writer still goes alone.
    const group: { ops: WriteOp[]; done: Callback }[] = [];
    let opCount = 0;
    while (this.pending.length > 0) {
      const next = this.pending[0]!;
      if (group.length > 0 && opCount + next.ops.length > this.options.batchOpsMax) break;
      group.push(next);
      opCount += next.ops.length;
      this.pending.shift();
    }
    this.pendingOps -= opCount;
    // A chained batch marshals each op with one native call; the array form looks up
    // three properties per op and costs about twice the main-thread time.
    const batch = this.db.batch();
    for (const writer of group) {
      for (const op of writer.ops) {
        if (op.type === 'put') batch.put(op.key, op.value);
        else batch.del(op.key);
      }
    }
    batch.write({ sync: true }, (err) => {
      for (const writer of group) writer.done(err);
      this.flush();
    });
  }

  /**
   * A pull cursor over a key range, in order. `next()` gives the next batch of
   * [key, value] rows (RocksDB reads ahead natively, so most rows cost no I/O wait),
   * or null at the end. The caller must `close()` it, also when stopping early.
   */
  cursor(options: TextScanOptions, rowsPerBatch?: number): Cursor<[Buffer, string]>;
  cursor(options: ScanOptions, rowsPerBatch?: number): Cursor<[Buffer, Buffer]>;
  cursor(options: ScanOptions & { valuesAsText?: boolean }, rowsPerBatch = 256): Cursor<[Buffer, Buffer | string]> {
    // The binding treats a present-but-undefined bound as a bound: pass only real ones.
    const iteratorOptions: Record<string, unknown> = {
      reverse: options.reverse ?? false,
      limit: options.limit ?? -1,
      values: !options.keysOnly,
      keyAsBuffer: true,
      valueAsBuffer: !options.valuesAsText,
      highWaterMark: options.batchBytes ?? Math.max(16 * 1024, Math.min(256 * 1024, rowsPerBatch * 1024)),
    };
    for (const bound of ['gte', 'gt', 'lte', 'lt'] as const) if (options[bound] !== undefined) iteratorOptions[bound] = options[bound];
    const iterator = this.db.iterator(iteratorOptions);
    let done = false;
    let closed = false;
    const nativeNext = native && iterator.context !== undefined ? native : undefined;
    type Row = [Buffer, Buffer | string];
    const nextNative = (): Promise<Row[] | null> =>
      new Promise((resolve, reject) => {
        if (done || closed) return resolve(null);
        nativeNext!.iterator_next(iterator.context, (err, flat, finished) => {
          if (err) return reject(err);
          if (finished) done = true;
          // Rows come newest-last in reverse pairs: [..., value2, key2, value1, key1].
          const rows: Row[] = new Array(flat.length / 2);
          for (let i = flat.length - 1, r = 0; i > 0; i -= 2, r++) rows[r] = [flat[i] as Buffer, flat[i - 1]!];
          resolve(rows.length > 0 ? rows : done ? null : []);
        });
      });
    const nextPublic = (): Promise<Row[] | null> =>
      new Promise((resolve, reject) => {
        if (done || closed) return resolve(null);
        const rows: Row[] = [];
        const pull = () =>
          iterator.next((err, key, value) => {
            if (err) return reject(err);
            if (key === undefined) {
              done = true;
              return resolve(rows.length > 0 ? rows : null);
            }
            rows.push([key, value ?? EMPTY]);
            if (rows.length >= rowsPerBatch) resolve(rows);
            else pull();
          });
        pull();
      });
    return {
      next: async () => {
        if (!nativeNext) return nextPublic();
        for (;;) {
          const rows = await nextNative();
          if (rows === null || rows.length > 0) return rows;
        }
      },
      close: () =>
        new Promise<void>((resolve, reject) => {
          if (closed) return resolve();
          closed = true;
          iterator.end((err) => (err ? reject(err) : resolve()));
        }),
    };
  }

  /**
   * A cursor that reads `firstRows` rows at a time (`firstBytes` ahead) at first, for a
   * reader that usually wants only a few, and once it has handed over twice that many
   * goes on from after the last key with full batches (a new native iterator: the
   * binding's read-ahead is fixed when one is made). A long scan pays one more open; a
   * short read converts a tenth of the rows a full batch would.
   */
  rampCursor(options: TextScanOptions, firstRows: number, firstBytes: number): Cursor<[Buffer, string]> {
    // A row limit would start again on the second iterator.
    if (options.limit !== undefined && options.limit >= 0) return this.cursor({ ...options, batchBytes: firstBytes }, firstRows);
    let cursor = this.cursor({ ...options, batchBytes: firstBytes }, firstRows);
    let delivered = 0;
    let ramped = false;
    let lastKey: Buffer | undefined;
    let finished = false;
    return {
      next: async () => {
        if (finished) return null;
        if (!ramped && lastKey !== undefined && delivered >= firstRows * 2) {
          ramped = true;
          await cursor.close();
          const { batchBytes: _bytes, gt, gte, lt, lte, ...rest } = options;
          void _bytes;
          // Past the last key handed over, in the scan's direction; the far bound stays.
          const far = options.reverse ? { ...(gt ? { gt } : {}), ...(gte ? { gte } : {}) } : { ...(lt ? { lt } : {}), ...(lte ? { lte } : {}) };
          cursor = this.cursor({ ...rest, ...far, ...(options.reverse ? { lt: lastKey } : { gt: lastKey }) }, 256);
        }
        const batch = await cursor.next();
        if (batch === null) {
          finished = true;
          return null;
        }
        delivered += batch.length;
        lastKey = batch[batch.length - 1]![0];
        return batch;
      },
      close: () => cursor.close(),
    };
  }

  /** Delete every key in a range (a dropped database's copy). */
  clear(range: KeyRange): Promise<void> {
    return new Promise((resolve, reject) => this.db.clear({ ...range }, (err) => (err ? reject(err) : resolve())));
  }

  /** Compact the files holding a range (drops what deletions and overwrites left behind). */
  compact(range: KeyRange): Promise<void> {
    const start = range.gte ?? range.gt;
    const end = range.lt ?? range.lte;
    assert.ok(start && end, 'compact needs both ends');
    return new Promise((resolve, reject) => this.db.compactRange(start, end, (err) => (err ? reject(err) : resolve())));
  }

  approximateSize(range: KeyRange): Promise<number> {
    const start = range.gte ?? range.gt;
    const end = range.lt ?? range.lte;
    assert.ok(start && end, 'approximateSize needs both ends');
    return new Promise((resolve, reject) =>
      this.db.approximateSize(start, end, (err, size) => (err ? reject(err) : resolve(size ?? 0))),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flushReads();
    while (this.flushing) await new Promise((r) => setTimeout(r, 5));
    await new Promise<void>((resolve, reject) => this.db.close((err) => (err ? reject(err) : resolve())));
  }
}

const EMPTY = Buffer.alloc(0);
