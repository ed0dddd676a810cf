/**
 * What a shard copy takes and gives: the vocabulary shared by the shard layer and the
 * coordinator (which reaches a copy through `ShardClient`, directly or, later, over
 * gRPC). Everything here is plain data, so it can cross a wire unchanged.
 */
import type { DivanError } from '../errors';
import type { RevId, RevNode, RevTree } from './rev-tree';

export type DocId = string;

/** A document's metadata as a copy stores it. */
export interface DocInfo {
  readonly id: DocId;
  /** The copy-local sequence of the document's latest update. */
  readonly seq: number;
  readonly tree: RevTree;
  /** Winning leaf (see rev-tree.ts). */
  readonly winner: RevNode;
}

/** Attachment metadata as stored in a revision body's `_attachments`. */
export interface AttachmentStub {
  content_type: string;
  digest: string;
  length: number;
  revpos: number;
  stub: true;
  /**
   * Set when the bytes are stored encoded (only `gzip`, as CouchDB keeps compressible
   * types): `length` is then the identity length, `encoded_length` the stored bytes,
   * and `digest` the md5 of the stored bytes (as CouchDB keeps it).
   */
  encoding?: string;
  encoded_length?: number;
}

export type AttachmentInput =
  /**
   * New bytes. With `encoding`, `data` is the encoded (stored) form and `length` the
   * identity length; without it `data` is the identity bytes and `length` is unused.
   */
  | {
      kind: 'data';
      name: string;
      contentType: string;
      data: Buffer;
      revpos?: number;
      encoding?: string;
      length?: number;
      /**
       * The digest to record instead of the md5 of `data`: set when the server gzipped
       * identity bytes itself, so the attachment keeps the digest of those bytes.
       */
      digest?: string;
    }
  /** Keep the attachment as it is in an earlier revision; `digest` may identify it. */
  | {
      kind: 'stub';
      name: string;
      digest?: string;
      revpos?: number;
      contentType?: string;
      length?: number;
      encoding?: string;
      encodedLength?: number;
    };

/**
 * One document edit. Interactive (`revs` absent): `baseRev` must be a leaf, or absent
 * when the document is new or deleted. Replicated (`revs` given, newest first): merged
 * as a path, never a conflict.
 */
export interface DocEdit {
  id: DocId;
  deleted: boolean;
  /** The body without any `_`-prefixed field. */
  body: Record<string, unknown>;
  /** `JSON.stringify(body)` when the caller already has it (saves a second serialisation). */
  bodyJson?: string;
  /** null when the edit has no `_attachments`: the new revision then has none. */
  attachments: AttachmentInput[] | null;
  baseRev?: RevId;
  revs?: RevId[];
  /**
   * Offered by shard sync, read repair or a rebalance rather than a client: a
   * revision this copy purged is then not taken back (see shard/purge.ts).
   */
  internal?: boolean;
}

export type EditResult =
  | { kind: 'ok'; id: DocId; rev: RevId }
  | { kind: 'error'; id: DocId; rev?: RevId; error: DivanError };

export interface LocalDoc {
  id: DocId;
  rev: RevId;
  /** The body as JSON text, without `_id` and `_rev`. */
  body: string;
}

export interface CopyState {
  updateSeq: number;
  docCount: number;
  docDelCount: number;
  /**
   * The update seq of the last `_design/` document edit this copy applied (0: none,
   * or a state persisted before it was recorded). Caches of compiled design documents
   * compare it to know they are current.
   */
  designSeq?: number;
  /**
   * Bytes the copy's live data takes (doc infos, leaf bodies, their attachments),
   * the same with attachments at identity length (CouchDB's `sizes.external`), and
   * bodies of revisions that are no longer leaves (what compaction frees). Absent in
   * a state persisted before they were kept: counted from 0 and corrected by compaction.
   */
  activeBytes?: number;
  externalBytes?: number;
  staleBytes?: number;
  /** Purge requests this copy recorded (its purge seq). */
  purgeSeq?: number;
  /** A compaction of the copy is running (never stored: readState sets it). */
  compactRunning?: boolean;
}

export interface AllDocsOptions {
  startKey?: DocId;
  endKey?: DocId;
  inclusiveEnd: boolean;
  descending: boolean;
  /** Rows this copy returns at most (the coordinator adds skip to the limit). */
  limit: number;
  /**
   * Rows a reader likely wants (a `_find`'s share of its answer): the first batches read
   * about that many (and their bodies), full batches after. Undefined: batches by `limit`.
   */
  firstBatch?: number;
  includeDocs: boolean;
  conflicts: boolean;
}

export interface AllDocsRow {
  id: DocId;
  /** The id JSON-encoded, ready to be written into a response. */
  idJson: string;
  rev: RevId;
  /** The rendered winner (JSON text) when `includeDocs`. */
  doc?: string;
}

export type ChangesFilter =
  | { kind: 'none' }
  | { kind: 'doc_ids'; docIds: DocId[] }
  | { kind: 'selector'; selector: Record<string, unknown> }
  | { kind: 'design' };

export interface ChangesOptions {
  /** Rows strictly after this copy-local seq. */
  since: number;
  descending: boolean;
  limit: number;
  allLeaves: boolean;
  includeDocs: boolean;
  conflicts: boolean;
  filter: ChangesFilter;
}

export interface ChangeRow {
  seq: number;
  id: DocId;
  idJson: string;
  changes: RevId[];
  deleted: boolean;
  doc?: string;
}

export type { RevId, RevNode, RevTree };
