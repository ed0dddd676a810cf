/**
 * View queries across the cluster: each range is read on one live copy (falling over
 * to the next like `_all_docs`), and the copies' streams are merged by collation then
 * doc id; skip and limit apply after the merge. Reduce queries merge the copies'
 * partial reductions group by group and rereduce equal groups across ranges.
 *
 * With `keys`, each key is its own range read in the order given (rows per key, as
 * CouchDB answers). Copies build their own index first when the query asks
 * (`update=true`); every copy indexes only its own documents.
 *
 * `total_rows` sums the row counts of the copies read; `update_seq` is an opaque
 * sequence like `_changes` seqs, built from the index checkpoints of the copies read.
 */
import type { SandboxPool } from '../../shard/js/sandbox';
import { indexDef, type ViewDef } from '../../shard/index/design';
import { combinePartials, linkedIdOfValue } from '../../shard/index/copy-indexes';
import { isHeader, type DesignDocRef, type ReducedRow, type ShardViewRequest, type ViewQuery, type ViewRow, type ViewStreamItem } from '../../shard/index/types';
import { collate, compareRaw } from '../../shard/query/collate';
import { encodeSeq, type SeqVector } from './changes';
import { mergeCursors } from './merge';
import { firstLiveCursor } from './range-read';
import type { Cursor, DbHandle, ShardClient } from './shard-client';

/** What the head of a view answer says. */
export interface ViewAnswerHead {
  totalRows: number;
  /** Rows before the first row answered, when known (CouchDB's `offset`). */
  offset: number | null;
  updateSeq: string;
}

/** A row with its key parsed once (for merging). */
type Keyed<Row> = Row & { key: unknown };

/**
 * Open one cursor per range (on its first live copy) and collect the stream headers.
 * `onHead` runs once, when every cursor has delivered its header (before any row).
 */
function openRanges<Row extends { keyJson: string }>(
  db: DbHandle,
  open: (copy: ShardClient) => Cursor<ViewStreamItem<Row>>,
): { cursors: Cursor<Keyed<Row>>[]; head: () => Promise<{ totalRows: number; seqs: SeqVector }> } {
  const seqs: SeqVector = db.ranges.map((r) => ({ node: r.copies[0]!.node, seq: 0 }));
  const totals = db.ranges.map(() => 0);
  const headers: Promise<void>[] = [];
  const cursors = db.ranges.map((range, i) => {
    let gotHeader!: () => void;
    let failed!: (err: unknown) => void;
    headers.push(new Promise<void>((resolve, reject) => ((gotHeader = resolve), (failed = reject))));
    const inner = firstLiveCursor(range.copies, open, (copy) => (seqs[i] = { node: copy.node, seq: 0 }));
    let pending: Keyed<Row>[] | null | undefined;
    const pull = async (): Promise<Keyed<Row>[] | null> => {
      for (;;) {
        const batch = await inner.next();
        if (batch === null) {
          gotHeader();
          return null;
        }
        const rows: Keyed<Row>[] = [];
        for (const item of batch) {
          if (isHeader(item)) {
            totals[i] = item.totalRows;
            seqs[i] = { node: seqs[i]!.node, seq: item.seq };
            gotHeader();
          } else {
            rows.push(Object.assign(item, { key: JSON.parse(item.keyJson) as unknown }));
          }
        }
        if (rows.length > 0) return rows;
      }
    };
    const cursor: Cursor<Keyed<Row>> = {
      next: async () => {
        if (pending !== undefined) {
          const first = pending;
          pending = undefined;
          return first;
        }
        return pull();
      },
      close: () => inner.close(),
    };
    return { cursor, prime: () => pull().then((rows) => void (pending = rows), (err) => failed(err)) };
  });
  return {
    cursors: cursors.map((c) => c.cursor),
    head: async () => {
      // Each range's first batch carries its header; read them before answering the head.
      await Promise.all(cursors.map((c) => c.prime()));
      await Promise.all(headers);
      return { totalRows: totals.reduce((a, b) => a + b, 0), seqs };
    },
  };
}

function byKeyThenId(a: Keyed<ViewRow>, b: Keyed<ViewRow>): number {
  return collate(a.key, b.key) || compareRaw(a.id, b.id);
}

/**
 * Stream the map rows of a view. `onHead` is called once, before the first row;
 * `onRows` with rows in answer order (docs included as asked; linked `{_id}` docs
 * are fetched through `fetchDocs`).
 */
export async function streamViewRows(
  db: DbHandle,
  ddoc: DesignDocRef,
  viewName: string,
  query: ViewQuery,
  handlers: {
    onHead(head: ViewAnswerHead): Promise<void>;
    onRows(rows: ViewRow[]): Promise<void>;
    /** Winning docs of other documents (linked by `{_id}` values), rendered or null. */
    fetchDocs(ids: string[]): Promise<(string | null)[]>;
  },
): Promise<void> {
  const shardRequest = (ranges: ViewQuery['ranges'], limit: number): ShardViewRequest => ({
    ddoc,
    view: viewName,
    ranges,
    descending: query.descending,
    limit,
    includeDocs: query.includeDocs,
    conflicts: query.conflicts,
    update: query.update,
  });
  // `keys`: each key is read on its own, in the order given; otherwise all ranges in one merge.
  const groups = query.fromKeys ? query.ranges.map((r) => [r]) : [query.ranges];
  let skip = query.skip;
  let remaining = query.limit;
  let headSent = false;
  const send = async (rows: Keyed<ViewRow>[]) => {
    const out = rows.map(({ key: _key, ...row }) => row as ViewRow);
    if (query.includeDocs) await fillLinkedDocs(out, handlers.fetchDocs);
    await handlers.onRows(out);
  };
  for (const ranges of groups) {
    if (remaining <= 0 && headSent) break;
    const { cursors, head } = openRanges<ViewRow>(db, (copy) => copy.viewRows(shardRequest(ranges, skip + remaining)));
    try {
      if (!headSent) {
        const { totalRows, seqs } = await head();
        await handlers.onHead({ totalRows, offset: query.ranges[0]?.startKey === undefined ? query.skip : null, updateSeq: encodeSeq(db, seqs) });
        headSent = true;
      }
      await mergeCursors(cursors, byKeyThenId, { descending: query.descending, skip: 0, limit: Number.MAX_SAFE_INTEGER }, async (rows) => {
        let from = 0;
        if (skip > 0) {
          from = Math.min(skip, rows.length);
          skip -= from;
        }
        const take = rows.slice(from, from + remaining);
        remaining -= take.length;
        if (take.length > 0) await send(take);
        if (remaining <= 0) throw stop;
      });
    } catch (err) {
      if (err !== stop) throw err;
    } finally {
      await Promise.all(cursors.map((c) => c.close().catch(() => undefined)));
    }
  }
  if (!headSent) await handlers.onHead({ totalRows: 0, offset: query.skip, updateSeq: encodeSeq(db, db.ranges.map((r) => ({ node: r.copies[0]!.node, seq: 0 }))) });
}

/** Thrown through the merge to end it early (limit reached). */
const stop = Symbol('limit reached');

/** Docs named by `{_id}` values (CouchDB's linked documents) replace the emitting doc. */
async function fillLinkedDocs(rows: ViewRow[], fetchDocs: (ids: string[]) => Promise<(string | null)[]>): Promise<void> {
  const linked: { row: ViewRow; id: string }[] = [];
  for (const row of rows) {
    const id = linkedIdOfValue(row.valueJson);
    if (id !== undefined) linked.push({ row, id });
  }
  if (linked.length === 0) return;
  const docs = await fetchDocs(linked.map((l) => l.id));
  linked.forEach((l, i) => (l.row.doc = docs[i] ?? null));
}

/** One answered reduce row: the group key and the value a client sees, as JSON text. */
export interface ReducedAnswerRow {
  keyJson: string;
  valueJson: string;
}

/**
 * Stream the reduced rows of a view: per range the copies' partial reductions per
 * group, merged in collation order, equal groups rereduced, then finished.
 */
export async function streamViewReduce(
  db: DbHandle,
  ddoc: DesignDocRef,
  viewName: string,
  query: ViewQuery,
  js: SandboxPool,
  handlers: { onHead(head: ViewAnswerHead): Promise<void>; onRows(rows: ReducedAnswerRow[]): Promise<void> },
): Promise<void> {
  const def = indexDef(ddoc, viewName).views.find((v) => v.name === viewName)!;
  const compiled = lazyCompile(js, ddoc);
  const groups = query.fromKeys ? query.ranges.map((r) => [r]) : [query.ranges];
  let skip = query.skip;
  let remaining = query.limit;
  let headSent = false;
  try {
    for (const ranges of groups) {
      if (remaining <= 0 && headSent) break;
      const { cursors, head } = openRanges<ReducedRow>(db, (copy) =>
        copy.viewReduce({
          ddoc,
          view: viewName,
          ranges,
          descending: query.descending,
          limit: Number.MAX_SAFE_INTEGER,
          includeDocs: false,
          conflicts: false,
          update: query.update,
          groupLevel: query.groupLevel,
        }),
      );
      try {
        if (!headSent) {
          const { totalRows, seqs } = await head();
          await handlers.onHead({ totalRows, offset: null, updateSeq: encodeSeq(db, seqs) });
          headSent = true;
        }
        // Equal groups from several ranges arrive next to each other in the merge.
        let pendingKey: unknown;
        let pendingKeyJson = '';
        let partials: unknown[] = [];
        const flush = async (): Promise<ReducedAnswerRow[]> => {
          if (partials.length === 0) return [];
          const value = await finish(def, await combinePartials(def, partials, js, compiled.get));
          partials = [];
          if (skip > 0) {
            skip--;
            return [];
          }
          if (remaining <= 0) return [];
          remaining--;
          return [{ keyJson: pendingKeyJson, valueJson: JSON.stringify(value) ?? 'null' }];
        };
        await mergeCursors(cursors, (a: Keyed<ReducedRow>, b: Keyed<ReducedRow>) => collate(a.key, b.key), { descending: query.descending, skip: 0, limit: Number.MAX_SAFE_INTEGER }, async (rows) => {
          const out: ReducedAnswerRow[] = [];
          for (const row of rows) {
            if (partials.length > 0 && (query.groupLevel === 0 || collate(row.key, pendingKey) === 0)) {
              partials.push(JSON.parse(row.partialJson));
              continue;
            }
            out.push(...(await flush()));
            pendingKey = row.key;
            pendingKeyJson = query.groupLevel === 0 ? 'null' : row.keyJson;
            partials.push(JSON.parse(row.partialJson));
          }
          if (out.length > 0) await handlers.onRows(out);
          if (remaining <= 0) throw stop;
        });
        const last = await flush();
        if (last.length > 0) await handlers.onRows(last);
      } catch (err) {
        if (err !== stop) throw err;
      } finally {
        await Promise.all(cursors.map((c) => c.close().catch(() => undefined)));
      }
    }
    if (!headSent) await handlers.onHead({ totalRows: 0, offset: null, updateSeq: encodeSeq(db, db.ranges.map((r) => ({ node: r.copies[0]!.node, seq: 0 }))) });
  } finally {
    compiled.release();
  }
}

async function finish(def: ViewDef, partial: unknown): Promise<unknown> {
  return def.builtin ? def.builtin.finish(partial) : partial;
}

/** The views of a design document compiled on first need (JavaScript rereduce), released after. */
function lazyCompile(js: SandboxPool, ddoc: DesignDocRef) {
  let compiled: ReturnType<SandboxPool['compile']> | undefined;
  return {
    get: () => (compiled ??= js.compile(indexDef(ddoc).compileDoc)),
    release: () => void compiled?.then((c) => js.release(c), () => undefined),
  };
}
