/**
 * How the coordinator reaches one shard copy. A local copy is the `ShardCopy` itself
 * (a direct call); a remote one will be a gRPC client with the same methods and the
 * same typed errors. Cursors must be closed by whoever opened them.
 */
import type { Cursor } from '../../storage/store';
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
  RevId,
} from '../../shard/types';
import type { PurgeInfo, PurgeRequest } from '../../shard/purge';
import type { DesignDocRef, FindStreamItem, IndexInfo, ShardFindRequest, ReducedRow, ShardReduceRequest, ShardViewRequest, ViewRow, ViewStreamItem } from '../../shard/index/types';

export interface ShardClient {
  updateDocs(edits: DocEdit[]): Promise<EditResult[]>;
  getDocInfo(id: string): Promise<DocInfo | undefined>;
  getDocInfos(ids: string[]): Promise<(DocInfo | undefined)[]>;
  readBody(id: string, rev: RevId): Promise<string | undefined>;
  readBodies(refs: { id: string; rev: RevId }[]): Promise<(string | undefined)[]>;
  /** Winning revisions rendered (with `_conflicts` when asked); null when missing or deleted. */
  winners(ids: string[], conflicts: boolean): Promise<(string | null)[]>;
  /** Stored bytes by digest and form (`encoding` of the stub; undefined: identity). */
  readAttachment(digest: string, encoding?: string): Promise<Buffer | undefined>;
  allDocs(options: AllDocsOptions): Cursor<AllDocsRow>;
  changes(options: ChangesOptions): Cursor<ChangeRow>;
  getLocal(id: string): Promise<LocalDoc | undefined>;
  /** Conditional on `rev`; with `setRev`, unconditional, storing that rev. */
  putLocal(id: string, body: string | null, rev: RevId | undefined, setRev?: RevId): Promise<{ kind: 'ok'; rev: RevId } | { kind: 'conflict' }>;
  localDocs(options: AllDocsOptions): Cursor<LocalDoc>;
  /** Map rows of a view on this copy (after bringing its index up to date when asked). */
  viewRows(req: ShardViewRequest): Cursor<ViewStreamItem<ViewRow>>;
  /** Reduced rows (partial reductions per group) of a view on this copy. */
  viewReduce(req: ShardReduceRequest): Cursor<ViewStreamItem<ReducedRow>>;
  /** A Mango query's matching rows on this copy (index order), with running stats. */
  findRows(req: ShardFindRequest): Cursor<FindStreamItem>;
  indexInfo(ddoc: DesignDocRef): Promise<IndexInfo>;
  /** Bring the index up to date, then compact its storage. */
  compactIndex(ddoc: DesignDocRef): Promise<void>;
  /** Drop this copy's indexes whose signatures are not in `keep`; answers how many went. */
  cleanupIndexes(keep: string[]): Promise<number>;
  readState(): Promise<CopyState>;
  /** Start the copy's compaction in the background (`POST /{db}/_compact`). */
  compact(): Promise<void>;
  /** Apply purge requests; answers what each removed on this copy. */
  purge(requests: PurgeRequest[]): Promise<PurgeInfo[]>;
  /** Purge requests this copy recorded after `since` (its purge seq), oldest first. */
  purgeInfos(since: number, limit: number): Promise<PurgeInfo[]>;
  /** What the copy takes: `sizes` of `GET /{db}`. */
  sizes(): Promise<{ file: number; active: number; external: number }>;
  sizeBytes(): Promise<number>;
  /**
   * Call `listener(updateSeq)` after each update of the copy; returns the unsubscribe.
   * `onLost` is called if the copy can no longer signal (its node went away).
   */
  onUpdate(listener: (seq: number) => void, onLost?: () => void): () => void;
  /** The node that holds this copy. */
  readonly node: string;
}

/** One range of a database and the copies that hold it. */
export interface RangeCopies {
  readonly index: number;
  readonly name: string;
  /** Copies in preference order (this node's own first). */
  readonly copies: readonly ShardClient[];
  /** The nodes holding the range's copies, in placement order. */
  readonly nodes: readonly string[];
  /**
   * How many of `copies` (the first ones) are established; the others are being
   * filled by a rebalance: they get every write but do not vote on its outcome.
   * Absent: all of them.
   */
  readonly established?: number;
}

/** What the coordinator knows of an open database. */
export interface DbHandle {
  readonly name: string;
  /** This instance of the database (a name dropped and created again gets a new one). */
  readonly uuid: string;
  readonly q: number;
  readonly n: number;
  readonly ranges: readonly RangeCopies[];
  /** Microseconds since the epoch at creation, as a string (CouchDB's instance_start_time is "0"). */
  readonly createdAt: number;
  readonly revsLimit: number;
  /** `_purged_infos_limit` when set (absent: the node's default). */
  readonly purgedInfosLimit?: number;
  readonly security: Record<string, unknown>;
}

/** The catalog of databases, as the coordinator needs it (implemented in src/node). */
export interface DbDirectory {
  open(name: string): Promise<DbHandle | undefined>;
  create(name: string, options: { q: number; n: number }): Promise<DbHandle>;
  delete(name: string): Promise<void>;
  list(): Promise<string[]>;
  setRevsLimit(name: string, revsLimit: number): Promise<void>;
  setPurgedInfosLimit(name: string, limit: number): Promise<void>;
  setSecurity(name: string, security: Record<string, unknown>): Promise<void>;
}

export type { Cursor };
