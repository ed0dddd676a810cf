/**
 * One shard copy's part of a Mango `_find`: read the chosen source (a JSON index's
 * ranges, or every document by id), resume after the bookmark's row, fetch each
 * candidate's winning document (unless the index covers the query), keep those the
 * selector matches, project them, and hand them over in index order with running
 * counts of keys and documents examined.
 *
 * The ranges only narrow the scan; the selector is applied to every candidate, so a
 * conservative range never changes the answer. Pure of storage details: rows come
 * from the copy's index reader or `_all_docs` cursor.
 */
import { KEY_MAX } from '../../storage/collation-key';
import type { Cursor } from '../../storage/store';
import type { AllDocsOptions, AllDocsRow } from '../types';
import { collate, compareRaw } from '../query/collate';
import { compileSelector } from '../query/mango';
import { fromColumns, parseFields, project } from '../query/mango-fields';
import type { ViewIndex } from './view-index';
import type { FindKeyRange, FindRow, FindStats, FindStreamItem, ShardFindRequest, ViewHeader, ViewKeyRange } from './types';

/** What the scan needs of the copy. */
export interface FindScanSource {
  allDocs(options: AllDocsOptions): Cursor<AllDocsRow>;
  winners(ids: string[], conflicts: boolean): Promise<(string | null)[]>;
}

/** A candidate before its document is read: id and sort key (for a JSON index, its column values). */
interface Candidate {
  id: string;
  keyJson: string;
  /** The rendered document when the source already read it. */
  doc?: string | null;
}

/** Candidates examined together at least and at most (one document read each). */
const SLICE_MIN = 8;
const SLICE_MAX = 256;

/**
 * The find stream of one copy. `index` is the opened, up-to-date index for a view
 * source (undefined for `_all_docs`); `header` comes first.
 */
export function findScan(req: ShardFindRequest, source: FindScanSource, index: { index: ViewIndex; view: number } | undefined, header: ViewHeader): Cursor<FindStreamItem> {
  const matches = compileSelector(req.selector);
  const paths = req.fields && req.fields.length > 0 ? parseFields(req.fields) : undefined;
  const columns = index?.index.def.views[index.view]!.mango?.paths ?? [];
  const stats: FindStats = { stats: true, keysExamined: 0, docsExamined: 0 };
  const rows = index ? indexCandidates(req, index) : allDocsCandidates(req, source);
  let remaining = req.limit;
  let first: ViewHeader | undefined = header;
  let done = false;
  // Candidates read from the source but not examined yet, and how many to examine next:
  // this copy's expected share of the answer at first (an exact range matches every
  // row), as many again while every candidate matches, twice as many after a slice that
  // rejected some, so few documents are read in vain. The coordinator's merge asks for
  // the next slice only when it needs this copy's next row.
  let pending: Candidate[] = [];
  let at = 0;
  let slice = 0;
  let firstSlice = req.firstSlice;
  let lastAllMatched = true;
  const nextSlice = async (): Promise<Candidate[] | null> => {
    if (at >= pending.length) {
      const batch = await rows.next();
      if (batch === null) return null;
      pending = batch;
      at = 0;
    }
    // Every candidate matched: the range is exact, keep the pace; otherwise read more at once.
    const grow = slice > 0 && !lastAllMatched ? slice * 2 : slice;
    slice = Math.min(SLICE_MAX, Math.max(grow, firstSlice ?? remaining, SLICE_MIN));
    firstSlice = undefined;
    const out = pending.slice(at, at + slice);
    at += out.length;
    return out;
  };
  return {
    next: async () => {
      if (done) return null;
      const out: FindStreamItem[] = first ? [first] : [];
      first = undefined;
      while (remaining > 0) {
        const batch = await nextSlice();
        if (batch === null) break;
        stats.keysExamined += batch.length;
        // Each candidate's document: built from its index row (covering), or read.
        let docs: (string | null)[] | undefined;
        let built: Record<string, unknown>[] | undefined;
        if (req.covering) built = batch.map((c) => fromColumns(c.id, columns, JSON.parse(c.keyJson) as unknown[]));
        else if (batch.every((c) => c.doc !== undefined)) docs = batch.map((c) => c.doc ?? null);
        else docs = await source.winners(batch.map((c) => c.id), req.conflicts);
        if (!req.covering) stats.docsExamined += batch.length;
        const found: FindRow[] = [];
        let rejected = 0;
        for (let i = 0; i < batch.length && remaining > 0; i++) {
          const text = docs?.[i];
          const doc = built ? built[i] : text === null || text === undefined ? undefined : (JSON.parse(text) as Record<string, unknown>);
          if (!doc || !matches(doc)) {
            rejected++;
            continue;
          }
          const answer = req.keysOnly ? '' : paths ? JSON.stringify(project(doc, paths)) : (text ?? JSON.stringify(doc));
          found.push({ id: batch[i]!.id, keyJson: batch[i]!.keyJson, doc: answer });
          remaining--;
        }
        lastAllMatched = rejected === 0;
        if (found.length > 0) {
          out.push(...found, { ...stats });
          return out;
        }
      }
      done = true;
      out.push({ ...stats });
      return out;
    },
    close: () => rows.close(),
  };
}

/** The index's rows in the request's ranges, from the bookmark on. */
function indexCandidates(req: ShardFindRequest, { index, view }: { index: ViewIndex; view: number }): Cursor<Candidate> {
  const after = req.after ? { key: JSON.parse(req.after.keyJson) as unknown, id: req.after.id } : undefined;
  const sign = req.descending ? -1 : 1;
  const ranges: ViewKeyRange[] = req.ranges.map((r) => {
    const range: ViewKeyRange = { inclusiveEnd: r.inclusiveEnd };
    const start = bound(r.start, r.startMax);
    const end = bound(r.end, r.endMax);
    if (start !== undefined) range.startKey = start;
    if (end !== undefined) range.endKey = end;
    // Resume at the bookmark's row when it lies inside or past this range's start.
    if (after && (start === undefined || sign * collate(after.key, start) >= 0)) {
      range.startKey = after.key;
      range.startKeyDocId = after.id;
    }
    return range;
  });
  // Read ahead about this copy's first slice: an exact range matches row for row.
  const rows = index.rows(view, ranges, req.descending, Number.MAX_SAFE_INTEGER, Math.max(SLICE_MIN, req.firstSlice ?? req.limit));
  return mapCursor(rows, (batch) => {
    const out: Candidate[] = [];
    for (const row of batch) {
      if (after && row.id === after.id && row.keyJson === req.after!.keyJson) continue;
      out.push({ id: row.id, keyJson: row.keyJson });
    }
    return out;
  });
}

/** Every live document by id but design documents (CouchDB's `_find` never answers those). */
function allDocsCandidates(req: ShardFindRequest, source: FindScanSource): Cursor<Candidate> {
  // One id range: the planner sends at most one for `_all_docs`.
  const range: FindKeyRange = req.ranges[0] ?? { inclusiveEnd: true };
  const afterId = req.after ? req.after.id : undefined;
  let startKey = typeof range.start === 'string' ? range.start : undefined;
  const sign = req.descending ? -1 : 1;
  if (afterId !== undefined && (startKey === undefined || sign * compareRaw(afterId, startKey) >= 0)) startKey = afterId;
  const options: AllDocsOptions = {
    inclusiveEnd: range.inclusiveEnd,
    descending: req.descending,
    limit: Number.MAX_SAFE_INTEGER,
    firstBatch: Math.max(SLICE_MIN, req.firstSlice ?? req.limit),
    includeDocs: !req.covering,
    conflicts: req.conflicts,
  };
  if (startKey !== undefined) options.startKey = startKey;
  if (typeof range.end === 'string') options.endKey = range.end;
  const cursor = source.allDocs(options);
  return mapCursor(cursor, (batch) => {
    const out: Candidate[] = [];
    for (const row of batch) {
      if (row.id === afterId || row.id.startsWith('_design/')) continue;
      out.push({ id: row.id, keyJson: row.idJson, doc: row.doc ?? null });
    }
    return out;
  });
}

function bound(value: unknown, max: boolean | undefined): unknown {
  if (value === undefined) return max ? KEY_MAX : undefined;
  return max && Array.isArray(value) ? [...value, KEY_MAX] : value;
}

/** A cursor of mapped batches; batches that map to nothing are skipped. */
function mapCursor<A, B>(inner: Cursor<A>, map: (batch: A[]) => B[]): Cursor<B> {
  return {
    next: async () => {
      for (;;) {
        const batch = await inner.next();
        if (batch === null) return null;
        const out = map(batch);
        if (out.length > 0) return out;
      }
    },
    close: () => inner.close(),
  };
}
