/**
 * A database of this cluster as a replication endpoint, called through the
 * coordinator without HTTP: `_changes` reads every range's copies and merges them,
 * `_revs_diff`, `open_revs` with inline attachments, `_bulk_docs` with
 * `new_edits: false` through the validation step (the replication's user, its VDUs
 * and the `_users` rules apply, as to any client write) and `_local` checkpoints.
 *
 * The database is looked up again on each call, so a replication follows a handle
 * the catalog replaced (copies moved) and notices a deletion (`db_not_found`).
 *
 * Filters: every kind `_changes` takes (changes-filter.ts): `_doc_ids`,
 * `_selector`, `_design`, `_view` (`query_params.view`) and design-document filter
 * functions, called with CouchDB's request object (`query` = `query_params`). A
 * JavaScript filter is compiled once, on the first page, and released by `close()`.
 */
import { DivanError } from '../../errors';
import { parseJsonText, stringifyJson } from '../../json';
import type { ChangesFilter, DocEdit } from '../../shard/types';
import { decodeSince, encodeSeq, pendingAfter, readChanges, watchUpdates, type JsChangesFilter } from '../coordinator/changes';
import { compileChangesFilter } from '../coordinator/changes-filter';
import { createDb, dbInfo } from '../coordinator/db-admin';
import { readDocInfos } from '../coordinator/doc-infos';
import { openRevsMany } from '../coordinator/doc-open';
import { updateDocs } from '../coordinator/doc-update';
import { getLocal, putLocal } from '../coordinator/local-docs';
import { revsDiff } from '../coordinator/revs-diff';
import type { DbDirectory, DbHandle } from '../coordinator/shard-client';
import type { Validation } from '../coordinator/validate';
import { parseDoc, type DocInputLimits } from '../http/doc-input';
import type { ChangesOptions, ChangesPage, DbInfo, Endpoint, FetchedRev, MissingRevs, RevsRequest, WriteResult } from './endpoint';
import { ReplicationError } from './endpoint';

export interface LocalEndpointOptions {
  directory: DbDirectory;
  /** The database name. */
  name: string;
  /** Who replicates: their writes are validated as theirs. */
  validation: Validation;
  limits: DocInputLimits;
  timeoutMs: number;
}

export class LocalEndpoint implements Endpoint {
  readonly label: string;

  constructor(private readonly options: LocalEndpointOptions) {
    this.label = options.name;
  }

  private async db(): Promise<DbHandle> {
    const db = await this.options.directory.open(this.options.name);
    if (!db) throw new ReplicationError('db_not_found', `Database does not exist: ${this.options.name}`, false);
    return db;
  }

  async info(): Promise<DbInfo> {
    const db = await this.db();
    const info = await call(() => dbInfo(db));
    return { updateSeq: String(info.update_seq), docCount: Number(info.doc_count), instance: db.uuid };
  }

  async create(params: Record<string, unknown>): Promise<void> {
    if (await this.options.directory.open(this.options.name)) return;
    const q = typeof params.q === 'number' ? params.q : 2;
    const n = typeof params.n === 'number' ? params.n : 3;
    await call(() => createDb(this.options.directory, this.options.name, { q, n })).catch((err: unknown) => {
      // Made meanwhile by someone else: as good.
      if (!(err instanceof ReplicationError && err.kind === 'bad_request' && /exists/.test(err.reason))) throw err;
    });
  }

  private compiled: Promise<ChangesFilter | { js: JsChangesFilter }> | undefined;

  /** The source's filter, compiled on first use (its 404s and 400s fail the replication). */
  private filterFor(db: DbHandle, options: ChangesOptions): Promise<ChangesFilter | { js: JsChangesFilter }> {
    this.compiled ??= (async () =>
      compileChangesFilter(db, {
        filter: options.filter,
        docIds: options.docIds,
        selector: options.selector,
        view: typeof options.queryParams?.view === 'string' ? options.queryParams.view : undefined,
        isPost: true,
        keysMax: Number.MAX_SAFE_INTEGER,
        timeoutMs: this.options.timeoutMs,
        js: this.options.validation.functions.js,
        request: () => filterRequest(db, options, this.options.validation),
      }))().catch((err: unknown) => {
      if (!(err instanceof DivanError)) throw err;
      throw new ReplicationError('bad_request', `filter ${options.filter ?? ''}: ${err.reason}`, false);
    });
    return this.compiled;
  }

  async changes(options: ChangesOptions): Promise<ChangesPage> {
    let db = await this.db();
    const compiled = await this.filterFor(db, options);
    const filter: ChangesFilter = 'js' in compiled ? { kind: 'none' } : compiled;
    const js = 'js' in compiled ? compiled.js : undefined;
    const since = await call(() => decodeSince(db, options.since === '0' ? 0 : options.since));
    const read = async (from: typeof since) => {
      const rows: ChangesPage['rows'] = [];
      const pass = await readChanges(
        db,
        { since: from, descending: false, limit: options.limit, allLeaves: true, includeDocs: false, conflicts: false, filter, seqInterval: 1, ...(js ? { js } : {}) },
        options.limit,
        ({ row, seq }) => {
          rows.push({ id: row.id, seq: seq!, revs: row.changes, deleted: row.deleted });
        },
        () => options.signal?.aborted ?? false,
      );
      return { rows, position: pass.position };
    };
    let page = await call(() => read(since));
    if (page.rows.length === 0 && options.longpollMs > 0) {
      // Nothing pending: wait for the next update of any range (or the deadline), then read once more.
      const watcher = watchUpdates(db);
      try {
        // Read again first: an update may have landed between the pass and the subscription.
        page = await call(() => read(page.position));
        if (page.rows.length === 0) {
          await watcher.wait(options.longpollMs, options.signal ?? new AbortController().signal);
          db = await this.db();
          page = await call(() => read(page.position));
        }
      } finally {
        watcher.stop();
      }
    }
    return { rows: page.rows, lastSeq: encodeSeq(db, page.position), pending: await pendingAfter(db, page.position).catch(() => 0) };
  }

  async revsDiff(revs: Map<string, string[]>): Promise<Map<string, MissingRevs>> {
    const db = await this.db();
    const diff = await call(() => revsDiff(db, revs, { timeoutMs: this.options.timeoutMs }));
    const out = new Map<string, MissingRevs>();
    for (const [id, entry] of diff) out.set(id, { missing: entry.missing, possibleAncestors: entry.possibleAncestors });
    return out;
  }

  async fetch(requests: RevsRequest[]): Promise<FetchedRev[]> {
    const db = await this.db();
    const infos = await call(() => readDocInfos(db, requests.map((r) => r.id), { timeoutMs: this.options.timeoutMs }));
    const results = await call(() =>
      openRevsMany(
        db,
        requests.map((r, i) => ({
          info: infos[i],
          revs: r.revs,
          latest: false,
          options: { revs: true, revsInfo: false, conflicts: false, deletedConflicts: false, localSeq: false, attachments: true, attsSince: r.attsSince },
        })),
      ),
    );
    const out: FetchedRev[] = [];
    requests.forEach((r, i) => {
      for (const result of results[i]!) out.push(result.kind === 'ok' ? { kind: 'ok', id: r.id, rev: result.rev, json: result.doc } : { kind: 'missing', id: r.id, rev: result.rev });
    });
    return out;
  }

  async write(docsJson: string[]): Promise<WriteResult[]> {
    const db = await this.db();
    const out: WriteResult[] = [];
    const edits: DocEdit[] = [];
    for (const text of docsJson) {
      try {
        edits.push(parseDoc(parseJsonText(text), { newEdits: false, limits: this.options.limits }).edit);
      } catch (err) {
        if (!(err instanceof DivanError)) throw err;
        out.push({ id: idOf(text), error: err.token, reason: err.reason });
      }
    }
    if (edits.length === 0) return out;
    const outcomes = await call(() => updateDocs(db, edits, { timeoutMs: this.options.timeoutMs, validate: this.options.validation }));
    for (const outcome of outcomes) if (outcome.kind === 'error') out.push({ id: outcome.id, error: outcome.error.token, reason: outcome.error.reason });
    return out;
  }

  async getLocal(id: string): Promise<Record<string, unknown> | undefined> {
    const db = await this.db();
    try {
      const doc = await getLocal(db, '_local/' + id);
      return { ...(parseJsonText(doc.body) as Record<string, unknown>), _id: '_local/' + id, _rev: doc.rev };
    } catch (err) {
      if (err instanceof DivanError && err.kind === 'not_found') return undefined;
      throw wrap(err);
    }
  }

  async putLocal(id: string, doc: Record<string, unknown>): Promise<string> {
    const db = await this.db();
    const { _id: _i, _rev: rev, ...body } = doc;
    void _i;
    return call(() => putLocal(db, '_local/' + id, stringifyJson(body), typeof rev === 'string' ? rev : undefined));
  }

  close(): void {
    const compiled = this.compiled;
    this.compiled = undefined;
    void compiled?.then((c) => {
      if ('js' in c) c.js.pool.release(c.js.ddoc);
    }, () => undefined);
  }
}

/** CouchDB's request object for a filter function run by the replicator: the query is the replication's `query_params`. */
function filterRequest(db: DbHandle, options: ChangesOptions, validation: Validation): unknown {
  const query: Record<string, string> = Object.create(null);
  for (const [key, value] of Object.entries(options.queryParams ?? {})) query[key] = typeof value === 'string' ? value : JSON.stringify(value);
  return {
    info: { db_name: db.name },
    id: null,
    uuid: null,
    method: 'GET',
    path: [db.name, '_changes'],
    requested_path: [db.name, '_changes'],
    raw_path: `/${encodeURIComponent(db.name)}/_changes`,
    query,
    headers: {},
    body: 'undefined',
    peer: null,
    form: {},
    cookie: {},
    userCtx: { db: db.name, name: validation.user.name, roles: validation.user.roles },
    secObj: db.security,
  };
}

function idOf(text: string): string {
  const match = /"_id"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(text);
  return match ? (JSON.parse(`"${match[1]}"`) as string) : '';
}

/** Coordinator errors as replication errors (retryable when the cluster is short of copies or slow). */
async function call<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw wrap(err);
  }
}

function wrap(err: unknown): unknown {
  if (err instanceof ReplicationError || !(err instanceof DivanError)) return err;
  switch (err.kind) {
    case 'unauthorized':
      return new ReplicationError('unauthorized', err.reason, false);
    case 'forbidden':
      return new ReplicationError('forbidden', err.reason, false);
    case 'not_found':
      return new ReplicationError('db_not_found', err.reason, false);
    case 'unavailable':
    case 'timeout':
    case 'internal':
      return new ReplicationError('unavailable', err.reason, true);
    default:
      return new ReplicationError('bad_request', err.reason, false);
  }
}
