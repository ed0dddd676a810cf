/**
 * PouchDB against a live Divan node, for compatibility tests.
 *
 * Gives in-memory local databases and authenticated remote ones, one-shot replication
 * with a deadline, and per-document snapshots (winning rev, sorted `_conflicts`,
 * deleted flag, attachment digests) read either through PouchDB or from Divan over
 * plain HTTP, plus a diff of two snapshots that names the documents that differ.
 * PouchDB ships no TypeScript types: the interfaces below declare only what the tests
 * call. Nothing here asserts; callers compare.
 */
import { createHash } from 'node:crypto';
import { once, type EventEmitter } from 'node:events';
import { ADMIN, request, type TestNode } from './node-process';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

export interface ReplicationResult {
  ok: boolean;
  status: string;
  docs_read: number;
  docs_written: number;
  doc_write_failures: number;
  errors: unknown[];
  last_seq: number | string;
}

/** What `PouchDB.replicate` and `db.sync` return: an event emitter that is also a promise. */
export interface ReplicationHandle extends EventEmitter, PromiseLike<ReplicationResult> {
  cancel(): void;
}

export interface Pouch {
  name: string;
  info(): Promise<Json>;
  get(id: string, options?: Record<string, unknown>): Promise<Json>;
  put(doc: Record<string, unknown>): Promise<{ ok: boolean; id: string; rev: string }>;
  bulkDocs(docs: Record<string, unknown>[], options?: { new_edits?: boolean }): Promise<Json[]>;
  allDocs(options?: Record<string, unknown>): Promise<{ total_rows: number; rows: Json[] }>;
  query(view: string, options?: Record<string, unknown>): Promise<{ total_rows?: number; rows: Json[] }>;
  getAttachment(id: string, name: string, options?: Record<string, unknown>): Promise<Buffer>;
  sync(remote: Pouch, options?: Record<string, unknown>): ReplicationHandle;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

interface PouchStatic {
  new (name: string, options?: Record<string, unknown>): Pouch;
  replicate(source: Pouch, target: Pouch, options?: Record<string, unknown>): ReplicationHandle;
  plugin(plugin: unknown): PouchStatic;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const PouchDB: PouchStatic = (require('pouchdb') as PouchStatic).plugin(require('pouchdb-adapter-memory'));

let localCounter = 0;
/** A fresh in-memory PouchDB (names are unique so two tests never share one). */
export function localDb(prefix = 'local'): Pouch {
  return new PouchDB(`${prefix}-${process.pid}-${localCounter++}`, { adapter: 'memory' });
}

/** A PouchDB handle on a Divan database, as admin. PouchDB creates the database if it is missing. */
export function remoteDb(node: { url: string }, dbName: string): Pouch {
  return new PouchDB(`${node.url}/${encodeURIComponent(dbName)}`, {
    auth: { username: ADMIN.user, password: ADMIN.password },
  });
}

/** Reject with `what` if `promise` has not settled within `timeoutMs`. */
export async function withDeadline<T>(promise: PromiseLike<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** One-shot replication, resolved with PouchDB's result, or rejected after `timeoutMs`. */
export function replicateOnce(
  source: Pouch,
  target: Pouch,
  options: Record<string, unknown> = {},
  timeoutMs = 60_000,
): Promise<ReplicationResult> {
  return withDeadline(PouchDB.replicate(source, target, options), timeoutMs, `replicate ${source.name} → ${target.name}`);
}

/**
 * PouchDB 9 calls `src.info()` after every replicated batch to update its active-task
 * progress and never catches it (`finishBatch` in pouchdb/lib/index.js), so a source
 * that dies mid-replication leaves an unhandled rejection in the client process, which
 * node:test reports as a failure of whatever test is running. For tests that kill the
 * server on purpose: a failed `info()` on `db` never settles instead of rejecting.
 * Only that progress report waits on it; the replication itself still fails on its
 * own requests.
 */
export function muteInfoFailures(db: Pouch): void {
  const info = db.info.bind(db);
  db.info = () => info().catch(() => new Promise<never>(() => {}));
}

/** Wait for one `event` from `emitter`, or fail after `timeoutMs`. */
export async function nextEvent(emitter: EventEmitter, event: string, timeoutMs: number): Promise<unknown[]> {
  return withDeadline(once(emitter, event), timeoutMs, `event '${event}'`);
}

/** Cancel a live replication or sync and wait until PouchDB reports it complete. */
export async function cancelAndWait(handle: ReplicationHandle, timeoutMs = 10_000): Promise<void> {
  const completed = nextEvent(handle, 'complete', timeoutMs);
  handle.cancel();
  await completed;
}

/** Run `fn` over `items` with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** CouchDB's attachment digest: `md5-` and the base64 MD5 of the bytes. */
export function md5Digest(data: Buffer): string {
  return 'md5-' + createHash('md5').update(data).digest('base64');
}

/** What replication must carry over for one document id. */
export interface DocState {
  rev: string;
  deleted: boolean;
  /** Non-winning live leaves, sorted. */
  conflicts: string[];
  /** Attachment name → digest of the winning revision. */
  digests: Record<string, string>;
}

export type Snapshot = Map<string, DocState>;

function digestsOf(doc: Json): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, stub] of Object.entries((doc?._attachments ?? {}) as Record<string, { digest: string }>)) out[name] = stub.digest;
  return out;
}

/** Snapshot of `ids` in a PouchDB (local or remote), deleted documents included. */
export async function snapshotPouch(db: Pouch, ids: readonly string[]): Promise<Snapshot> {
  const { rows } = await db.allDocs({ keys: ids, include_docs: true, conflicts: true });
  const out: Snapshot = new Map();
  for (const row of rows) {
    if (row.error) continue; // never existed: absent from the snapshot
    out.set(row.id, {
      rev: row.value.rev,
      deleted: row.value.deleted === true,
      conflicts: [...((row.doc?._conflicts ?? []) as string[])].sort(),
      digests: digestsOf(row.doc),
    });
  }
  return out;
}

/**
 * Snapshot of `ids` in a Divan database, read the way a CouchDB user would: each
 * document with `GET /db/id?conflicts=true`; ids that answer 404 `deleted` get their
 * winning (deleted) rev from `POST /db/_all_docs` with `keys`.
 */
export async function snapshotDivan(node: { url: string }, dbName: string, ids: readonly string[]): Promise<Snapshot> {
  const db = encodeURIComponent(dbName);
  const out: Snapshot = new Map();
  const deletedIds: string[] = [];
  await mapLimit(ids, 8, async (id) => {
    const reply = await request(node, 'GET', `/${db}/${encodeURIComponent(id)}?conflicts=true`);
    if (reply.status === 200) {
      out.set(id, {
        rev: reply.body._rev,
        deleted: false,
        conflicts: [...((reply.body._conflicts ?? []) as string[])].sort(),
        digests: digestsOf(reply.body),
      });
    } else if (reply.status === 404 && reply.body?.reason === 'deleted') {
      deletedIds.push(id);
    } else if (reply.status !== 404) {
      throw new Error(`GET /${dbName}/${id} answered ${reply.status}: ${reply.text}`);
    }
  });
  if (deletedIds.length > 0) {
    const reply = await request(node, 'POST', `/${db}/_all_docs`, { body: { keys: deletedIds } });
    if (reply.status !== 200) throw new Error(`POST _all_docs answered ${reply.status}: ${reply.text}`);
    for (const row of reply.body.rows as Json[]) {
      if (row.error) throw new Error(`${row.key} answered 404 deleted to GET but ${row.error} to _all_docs`);
      out.set(row.id, { rev: row.value.rev, deleted: row.value.deleted === true, conflicts: [], digests: {} });
    }
  }
  return out;
}

/** Ids whose state differs between two snapshots, each with both sides, at most `max`. */
export function diffSnapshots(a: Snapshot, b: Snapshot, max = 10): string[] {
  const out: string[] = [];
  for (const id of new Set([...a.keys(), ...b.keys()])) {
    const left = JSON.stringify(a.get(id) ?? null);
    const right = JSON.stringify(b.get(id) ?? null);
    if (left !== right) out.push(`${id}: ${left} ≠ ${right}`);
    if (out.length >= max) break;
  }
  return out;
}

/** Attachment bytes straight from Divan (the JSON helper would decode them as text). */
export async function divanAttachment(node: { url: string }, dbName: string, id: string, name: string): Promise<Buffer> {
  const res = await fetch(`${node.url}/${encodeURIComponent(dbName)}/${encodeURIComponent(id)}/${encodeURIComponent(name)}`, {
    headers: { authorization: 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64') },
  });
  if (res.status !== 200) throw new Error(`GET attachment ${id}/${name} answered ${res.status}: ${await res.text()}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Write `docs` to Divan with `_bulk_docs` in batches; fails on any per-document error. */
export async function bulkWrite(node: TestNode, dbName: string, docs: Record<string, unknown>[], batchDocs = 500): Promise<Json[]> {
  const results: Json[] = [];
  for (let i = 0; i < docs.length; i += batchDocs) {
    const reply = await request(node, 'POST', `/${encodeURIComponent(dbName)}/_bulk_docs`, { body: { docs: docs.slice(i, i + batchDocs) } });
    if (reply.status !== 201) throw new Error(`_bulk_docs answered ${reply.status}: ${reply.text}`);
    const failed = (reply.body as Json[]).filter((r) => r.error);
    if (failed.length > 0) throw new Error(`_bulk_docs rejected ${failed.length} docs, first: ${JSON.stringify(failed[0])}`);
    results.push(...reply.body);
  }
  return results;
}
