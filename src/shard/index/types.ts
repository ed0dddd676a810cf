/**
 * What a view query asks of the view engine, from the HTTP parser down to one shard
 * copy (these cross gRPC as JSON, so they are plain data).
 *
 * Keys are JSON values compared by CouchDB collation (src/shard/query/collate.ts);
 * `undefined` means "open". Doc-id bounds refine a key bound (CouchDB's
 * `startkey_docid` / `endkey_docid`) and compare by code point.
 */

/** One key range of a view, in the direction of the query. */
export interface ViewKeyRange {
  startKey?: unknown;
  startKeyDocId?: string;
  endKey?: unknown;
  endKeyDocId?: string;
  /** Whether rows equal to the end bound are included (CouchDB `inclusive_end`, default true). */
  inclusiveEnd: boolean;
}

/** A view query, parsed and validated (the HTTP layer builds it; see view-params). */
export interface ViewQuery {
  /**
   * The ranges to read, in order. One for a plain query; one per key for `keys=[...]`
   * (rows come per key, in the order given, as CouchDB answers `keys`); `key=k` is a
   * single range from k to k.
   */
  ranges: ViewKeyRange[];
  /** True when the ranges came from `keys` (rows are then not merged across ranges). */
  fromKeys: boolean;
  descending: boolean;
  /** Rows after skip, at most. */
  limit: number;
  skip: number;
  /** Reduce (when the view has a reduce function): undefined means "the view's default" (true when it has one). */
  reduce?: boolean;
  /** Group level: 0 = group=false (one row), 'exact' = group=true, n = group_level=n. */
  groupLevel: number | 'exact';
  includeDocs: boolean;
  conflicts: boolean;
  attachments: boolean;
  attEncodingInfo: boolean;
  /** update=true (default): build before reading; false (stale=ok): read as is; lazy: read, then build. */
  update: 'true' | 'false' | 'lazy';
  /** Add `update_seq` to the answer. */
  updateSeq: boolean;
  /** sorted=false lets the answer skip the merge order (we always sort; accepted for compatibility). */
  sorted: boolean;
}

/** A design document as the view engine needs it: id, rev, and its parsed body. */
export interface DesignDocRef {
  id: string;
  rev: string;
  body: Record<string, unknown>;
}

/** One map row of a view, as a shard copy hands it over. */
export interface ViewRow {
  id: string;
  /** The emitted key and value as JSON text (never re-encoded on the way to the client). */
  keyJson: string;
  valueJson: string;
  /** The emitting document's winning body, rendered, when include_docs asked for it. */
  doc?: string | null;
}

/**
 * The first item a copy's view stream hands over, before any row: the index's row
 * count (CouchDB's total_rows) and the copy sequence the index has reached.
 */
export interface ViewHeader {
  header: true;
  totalRows: number;
  seq: number;
}

export type ViewStreamItem<Row> = ViewHeader | Row;

export function isHeader<Row>(item: ViewStreamItem<Row>): item is ViewHeader {
  return (item as ViewHeader).header === true;
}

/** One reduced row: a group key (null when grouping everything) and its partial reduction. */
export interface ReducedRow {
  keyJson: string;
  /** The partial reduction (builtin partials, or a JS reduce value) as JSON text. */
  partialJson: string;
}

/** What a shard copy is asked to do for a view query. */
export interface ShardViewRequest {
  ddoc: DesignDocRef;
  view: string;
  ranges: ViewKeyRange[];
  descending: boolean;
  /** Rows to hand over at most (the coordinator's skip + limit for map queries). */
  limit: number;
  includeDocs: boolean;
  conflicts: boolean;
  update: 'true' | 'false' | 'lazy';
}

export interface ShardReduceRequest extends ShardViewRequest {
  groupLevel: number | 'exact';
}

/** What `_info` and `_active_tasks` report about one index of one copy. */
export interface IndexInfo {
  signature: string;
  updateSeq: number;
  /** The copy's seq the index must reach to be current. */
  targetSeq: number;
  sizeBytes: number;
  updating: boolean;
}

/**
 * One range of a Mango query over an index, as it crosses the wire. A bound with
 * `startMax`/`endMax` has KEY_MAX appended (storage/collation-key.ts: above every
 * value, so `[v]` + max bounds every row whose first column is v); KEY_MAX is not
 * JSON, hence the flags. For the `_all_docs` source the bounds are doc ids and the
 * flags are ignored (the selector, applied to every row, is exact; bounds only narrow).
 */
export interface FindKeyRange {
  start?: unknown;
  startMax?: boolean;
  end?: unknown;
  endMax?: boolean;
  inclusiveEnd: boolean;
}

/** What a Mango query reads on a copy: a JSON index (a view of a query design doc), or every document. */
export type FindSource = { kind: 'view'; ddoc: DesignDocRef; view: string } | { kind: 'all_docs' };

/** What one shard copy is asked for a `_find`: its matching rows in index order. */
export interface ShardFindRequest {
  source: FindSource;
  /** In scan order, disjoint. */
  ranges: FindKeyRange[];
  descending: boolean;
  selector: Record<string, unknown>;
  /** The projection (dotted paths); undefined: whole documents. */
  fields?: string[];
  /** Answer from index keys alone, reading no document (every field the query needs is a column). */
  covering: boolean;
  /** With `covering`: send each matching row's key and id only (the coordinator reads the answered documents). */
  keysOnly?: boolean;
  /** Resume after this row (a bookmark): its key as JSON and its doc id. */
  after?: { keyJson: string; id: string };
  /** Matching rows to hand over at most. */
  limit: number;
  /**
   * Candidates to examine first (the coordinator's guess of this copy's share of the
   * answer); later slices double. Undefined: `limit`.
   */
  firstSlice?: number;
  conflicts: boolean;
  update: 'true' | 'false' | 'lazy';
}

/** A matching row: where it sorts (index key as JSON; the doc id for `_all_docs`) and the document to answer. */
export interface FindRow {
  id: string;
  keyJson: string;
  /** The projected document as JSON text ('' for a keys-only request). */
  doc: string;
}

/** Sent after every batch of a find stream: what the copy examined so far (running totals). */
export interface FindStats {
  stats: true;
  keysExamined: number;
  docsExamined: number;
}

export type FindStreamItem = ViewHeader | FindStats | FindRow;

export function isFindStats(item: FindStreamItem): item is FindStats {
  return (item as FindStats).stats === true;
}
