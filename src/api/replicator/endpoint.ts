/**
 * One side of a replication, as the replicator sees it: the few operations of
 * CouchDB's replication protocol, with documents in their wire form (JSON text with
 * `_id`, `_rev`, `_revisions`, `_deleted`, `_attachments` inline as base64 or as
 * stubs). Two kinds implement it:
 * - `remote.ts`: a CouchDB-compatible server over HTTP(S) (Divan, CouchDB, PouchDB
 *   Server), with retries and timeouts;
 * - `local.ts`: a database of this cluster, called through the coordinator without
 *   HTTP, with the replication owner's user context for authorization.
 *
 * Every method either answers or throws a `ReplicationError` (kind + CouchDB-style
 * reason) that the job records in its state; none retries forever.
 */

/** Where a replication reads from or writes to, as `_replicate` and `_replicator` docs give it. */
export interface EndpointSpec {
  /** A database name on this cluster, or an http(s) URL (credentials may be in the URL). */
  url: string;
  /** Extra request headers (remote only), e.g. `Authorization`. */
  headers?: Record<string, string>;
  /** `{"basic": {"username", "password"}}` (remote only), as CouchDB 3 accepts. */
  auth?: { basic?: { username: string; password: string } };
}

export interface ChangesOptions {
  /** Opaque sequence to start after ("0" = the beginning). */
  since: string;
  /** Rows per call at most. */
  limit: number;
  /** Wait for changes up to this long when none are pending (continuous replications); 0: answer at once. */
  longpollMs: number;
  /** `filter`: `ddoc/name`, `_doc_ids`, `_selector`, `_view` (with `view`), as `_changes` takes it. */
  filter?: string;
  /** `doc_ids` for `_doc_ids`. */
  docIds?: string[];
  /** `selector` for `_selector`. */
  selector?: unknown;
  /** `query_params` of a design-document filter (sent as query parameters). */
  queryParams?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface ChangeRow {
  id: string;
  /** Opaque sequence of this row. */
  seq: string;
  /** Every leaf revision (style=all_docs), or the winner only (winning_revs_only). */
  revs: string[];
  deleted: boolean;
}

export interface ChangesPage {
  rows: ChangeRow[];
  lastSeq: string;
  /** Rows the source says remain after this page, when it says (CouchDB's `pending`). */
  pending?: number;
}

export interface MissingRevs {
  missing: string[];
  possibleAncestors: string[];
}

export interface RevsRequest {
  id: string;
  revs: string[];
  /** Revisions the target already has: attachments unchanged since them come as stubs. */
  attsSince: string[];
}

/** A revision fetched from the source: its JSON (with `_revisions`), or missing. */
export type FetchedRev = { kind: 'ok'; id: string; rev: string; json: string } | { kind: 'missing'; id: string; rev: string };

export interface WriteResult {
  id: string;
  /** Undefined when written; else CouchDB's error token (`forbidden`, `unauthorized`, ...). */
  error?: string;
  reason?: string;
}

export interface DbInfo {
  updateSeq: string;
  docCount: number;
  /** The instance, for replication ids (CouchDB uses `instance_start_time`/uuid). */
  instance: string;
}

export interface Endpoint {
  /** For logs, job states and `_scheduler`: the URL without credentials, or the database name. */
  readonly label: string;
  /** The database's info; `db_not_found` when it does not exist. */
  info(): Promise<DbInfo>;
  /** Create the database (`create_target`); params as CouchDB's `create_target_params` (q, n, partitioned). */
  create(params: Record<string, unknown>): Promise<void>;
  changes(options: ChangesOptions): Promise<ChangesPage>;
  revsDiff(revs: Map<string, string[]>): Promise<Map<string, MissingRevs>>;
  /** The given revisions with their `_revisions` and attachments (inline, or stubs for those unchanged since `attsSince`). */
  fetch(requests: RevsRequest[]): Promise<FetchedRev[]>;
  /** Write documents as replicated edits (`new_edits: false`). */
  write(docsJson: string[]): Promise<WriteResult[]>;
  /** A `_local` document's JSON, or undefined. */
  getLocal(id: string): Promise<Record<string, unknown> | undefined>;
  /** Write a `_local` document (its `_rev`, if any, inside); answers the new rev. */
  putLocal(id: string, doc: Record<string, unknown>): Promise<string>;
  /** Release connections. */
  close(): void;
}

export type ReplicationErrorKind = 'db_not_found' | 'unauthorized' | 'forbidden' | 'bad_request' | 'unavailable' | 'timeout' | 'protocol';

/** Why an endpoint call failed; `retryable` ones (5xx, timeouts, resets) are retried by the job with backoff. */
export class ReplicationError extends Error {
  constructor(
    readonly kind: ReplicationErrorKind,
    readonly reason: string,
    readonly retryable: boolean,
  ) {
    super(`${kind}: ${reason}`);
  }
}
