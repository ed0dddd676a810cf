/**
 * A replication endpoint on a CouchDB-compatible server over HTTP(S): the client side
 * of CouchDB's replication protocol, as spoken by Divan, CouchDB 3 and PouchDB Server.
 *
 * The model: one `RemoteEndpoint` per database URL, owning one keep-alive agent with at
 * most `httpConnections` sockets. Each protocol operation is one request (or, for
 * servers without `_bulk_get`, one request per document, `httpConnections` at a time)
 * through `send`, the one place that retries:
 * - an attempt has a deadline (`timeoutMs`, plus `longpollMs` for a longpoll feed) and
 *   a reply-size cap (`replyBytesMax`, checked while the body streams in);
 * - 5xx (but 501), 429, connection resets/refusals, broken pipes, socket hangups and
 *   deadlines are retried `retries` times, after 250 ms, 500 ms, ... (capped at 10 s,
 *   each jittered down by up to half), then thrown as a retryable `unavailable` or
 *   `timeout` ReplicationError: the job decides what happens next;
 * - every 4xx is final and becomes a non-retryable ReplicationError (401
 *   `unauthorized`, 403 `forbidden`, 404 `db_not_found` unless the operation gives 404
 *   a meaning of its own, others `bad_request`); an unexpected 2xx/3xx or a reply that
 *   is not the JSON the protocol promises is `protocol`;
 * - the constructor's `signal`, a call's own `signal` and `close()` abort requests in
 *   flight and backoff sleeps: the call then throws a non-retryable `unavailable`
 *   ("aborted"), which callers that aborted ignore.
 *
 * Bodies keep their fidelity: replies are parsed with `parseJsonBytes` in exact mode
 * and documents re-serialised with `stringifyJson`, so integers beyond 2^53 travel as
 * the digits the source stored. Sequences are opaque strings: a JSON string as is, a
 * number as its digits, anything else (BigCouch-era arrays) as its JSON text, which
 * is also what such servers take back as `since`.
 *
 * Not here: following redirects, gzip, TLS options (CA, client certificates), cookie or
 * proxy auth, `Retry-After`, continuous feeds (the job loops over longpoll pages).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { DivanError } from '../../errors';
import { ExactInteger, parseJsonBytes, stringifyJson, isPlainObject } from '../../json';
import {
  ReplicationError,
  type ChangeRow,
  type ChangesOptions,
  type ChangesPage,
  type DbInfo,
  type Endpoint,
  type EndpointSpec,
  type FetchedRev,
  type MissingRevs,
  type RevsRequest,
  type WriteResult,
} from './endpoint';

export interface RemoteEndpointOptions {
  /** Deadline of one attempt of one request, ms (CouchDB's `connection_timeout`). Longer survives slow servers; shorter notices dead ones sooner. */
  timeoutMs: number;
  /** Retries after a first attempt fails transiently (CouchDB's `retries_per_request`); each waits longer (backoff), so more retries ride out longer outages. */
  retries: number;
  /** Sockets to the server at most (CouchDB's `http_connections`); also bounds per-document fetches in flight. More costs the server more. */
  httpConnections: number;
  /** Largest reply body accepted, bytes: a bound on the memory one request can take. */
  replyBytesMax: number;
  /** Aborts requests in flight and backoff sleeps (the job stopping). */
  signal?: AbortSignal;
}

/** CouchDB's defaults for the options that have one. */
export const REMOTE_DEFAULTS = Object.freeze({ timeoutMs: 30_000, retries: 5, httpConnections: 20 });

/** First retry waits this long (before jitter), ms; each next one twice as long. */
const BACKOFF_FIRST_MS = 250;
/** No retry waits longer than this, ms. */
const BACKOFF_MAX_MS = 10_000;

/** Network error codes worth another attempt: the server or the path to it may come back. */
const RETRYABLE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** Statuses that mean "the server does not have `_bulk_get`": fetch per document instead. */
const NO_BULK_GET = new Set([400, 404, 405, 501]);

type Method = 'GET' | 'PUT' | 'POST';

interface Call {
  method: Method;
  /** After the database path: '' or '/_changes', '/docid', ... (already encoded). */
  path: string;
  query?: Array<[string, string]>;
  body?: string;
  /** Deadline of each attempt, ms (default `timeoutMs`). */
  deadlineMs?: number;
  signal?: AbortSignal;
}

interface Reply {
  status: number;
  body: Buffer;
}

/** A failed attempt that another attempt may fix; after the last one it becomes a retryable ReplicationError. */
class TransientFailure extends Error {
  constructor(
    readonly kind: 'unavailable' | 'timeout',
    readonly reason: string,
  ) {
    super(`${kind}: ${reason}`);
  }
}

export class RemoteEndpoint implements Endpoint {
  readonly label: string;
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly hostname: string;
  private readonly port: number;
  /** The database's path as given (`%2F` and all), without a trailing slash. */
  private readonly dbPath: string;
  private readonly headers: Record<string, string>;
  private readonly options: RemoteEndpointOptions;
  /** Aborted by `close()`: ends requests in flight and stops retries. */
  private readonly closing = new AbortController();
  /** Set once the server answered `_bulk_get` as if it did not know it. */
  private bulkGetMissing = false;

  constructor(spec: EndpointSpec, options: RemoteEndpointOptions) {
    assert.ok(options.timeoutMs > 0 && options.retries >= 0 && options.httpConnections >= 1 && options.replyBytesMax > 0, 'RemoteEndpoint options out of range');
    this.options = options;
    let url: URL;
    try {
      url = new URL(spec.url);
    } catch {
      throw new ReplicationError('bad_request', `Not a URL: ${stripCredentials(spec.url)}`, false);
    }
    const shown = new URL(url.href);
    shown.password = '';
    this.label = shown.href;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ReplicationError('bad_request', `Only http and https URLs are replication endpoints: ${this.label}`, false);
    }
    this.dbPath = url.pathname.replace(/\/+$/, '');
    if (this.dbPath === '') throw new ReplicationError('bad_request', `No database in URL: ${this.label}`, false);
    const secure = url.protocol === 'https:';
    this.transport = secure ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxSockets: options.httpConnections });
    this.hostname = url.hostname.replace(/^\[(.*)\]$/, '$1'); // IPv6 literals come bracketed
    this.port = url.port === '' ? (secure ? 443 : 80) : Number(url.port);
    this.headers = { accept: 'application/json', 'user-agent': 'Divan-replicator' };
    const basic = spec.auth?.basic ?? (url.username !== '' ? { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) } : undefined);
    if (basic) this.headers.authorization = 'Basic ' + Buffer.from(`${basic.username}:${basic.password}`, 'utf8').toString('base64');
    // Explicit headers win over the URL's credentials (header names are case-insensitive).
    for (const [name, value] of Object.entries(spec.headers ?? {})) this.headers[name.toLowerCase()] = value;
  }

  async info(): Promise<DbInfo> {
    const reply = await this.send({ method: 'GET', path: '' });
    if (reply.status === 404) throw this.dbNotFound();
    const body = this.okObject(reply, [200], 'database info');
    if (body.update_seq === undefined) throw this.protocol('database info has no update_seq');
    const instance = typeof body.uuid === 'string' ? body.uuid : typeof body.instance_start_time === 'string' ? body.instance_start_time : this.label;
    return { updateSeq: opaqueSeq(body.update_seq), docCount: count(body.doc_count), instance };
  }

  async create(params: Record<string, unknown>): Promise<void> {
    const query: Array<[string, string]> = [];
    for (const [name, value] of Object.entries(params)) {
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') query.push([name, String(value)]);
    }
    const reply = await this.send({ method: 'PUT', path: '', query });
    // 412: it exists already, which is what create_target wants.
    if (reply.status === 201 || reply.status === 202 || reply.status === 412) return;
    throw this.failure(reply, 'create database');
  }

  async changes(o: ChangesOptions): Promise<ChangesPage> {
    const longpoll = o.longpollMs > 0;
    const ours: Array<[string, string]> = [
      ['style', 'all_docs'],
      ['since', o.since],
      ['limit', String(o.limit)],
      ['feed', longpoll ? 'longpoll' : 'normal'],
    ];
    if (longpoll) ours.push(['timeout', String(o.longpollMs)]);
    let body: string | undefined;
    if (o.filter !== undefined) {
      ours.push(['filter', o.filter]);
      if (o.filter === '_doc_ids') body = stringifyJson({ doc_ids: o.docIds ?? [] });
      else if (o.filter === '_selector') body = stringifyJson({ selector: o.selector ?? {} });
    }
    const taken = new Set(ours.map(([name]) => name));
    const query: Array<[string, string]> = [];
    // A filter's own parameters (`query_params`, `view` for `_view`): strings as they are, other values as JSON, as CouchDB sends them.
    for (const [name, value] of Object.entries(o.queryParams ?? {})) {
      if (!taken.has(name) && value !== undefined) query.push([name, typeof value === 'string' ? value : stringifyJson(value)]);
    }
    query.push(...ours);
    const deadlineMs = this.options.timeoutMs + (longpoll ? o.longpollMs : 0);
    const reply = await this.send({ method: body === undefined ? 'GET' : 'POST', path: '/_changes', query, body, deadlineMs, signal: o.signal });
    const page = this.okObject(reply, [200], '_changes');
    if (!Array.isArray(page.results)) throw this.protocol('_changes reply has no results');
    const rows = page.results.map((row) => this.changeRow(row));
    const lastSeq = page.last_seq !== undefined ? opaqueSeq(page.last_seq) : (rows[rows.length - 1]?.seq ?? o.since);
    const pending = typeof page.pending === 'number' ? page.pending : undefined;
    return pending === undefined ? { rows, lastSeq } : { rows, lastSeq, pending };
  }

  /** Ids with nothing missing may be absent from the answer (CouchDB leaves them out). */
  async revsDiff(revs: Map<string, string[]>): Promise<Map<string, MissingRevs>> {
    const out = new Map<string, MissingRevs>();
    if (revs.size === 0) return out;
    // Concatenated rather than built as an object: ids are user input (`__proto__` included).
    const members = Array.from(revs, ([id, list]) => JSON.stringify(id) + ':' + JSON.stringify(list));
    const reply = await this.send({ method: 'POST', path: '/_revs_diff', body: '{' + members.join(',') + '}' });
    const body = this.okObject(reply, [200], '_revs_diff');
    for (const id of Object.keys(body)) {
      const entry = body[id];
      if (!isPlainObject(entry)) throw this.protocol(`_revs_diff entry for ${JSON.stringify(id)} is not an object`);
      out.set(id, { missing: strings(entry.missing), possibleAncestors: strings(entry.possible_ancestors) });
    }
    return out;
  }

  /** One answer per requested (id, rev), in no promised order; revisions the source does not answer for count as missing. */
  async fetch(requests: RevsRequest[]): Promise<FetchedRev[]> {
    const wanted = requests.filter((r) => r.revs.length > 0);
    if (wanted.length === 0) return [];
    let fetched: FetchedRev[] | undefined;
    if (!this.bulkGetMissing) fetched = await this.fetchBulk(wanted);
    fetched ??= (await mapBounded(wanted, this.options.httpConnections, (r) => this.fetchOne(r))).flat();
    // Fill in what the source left out, so that callers see every revision they asked for.
    const seen = new Set(fetched.map((f) => f.id + '\u0000' + f.rev));
    for (const r of wanted) {
      for (const rev of r.revs) if (!seen.has(r.id + '\u0000' + rev)) fetched.push({ kind: 'missing', id: r.id, rev });
    }
    return fetched;
  }

  /**
   * `_bulk_docs` with `new_edits: false`. CouchDB answers only the failures, so the
   * result lists failed docs (and successes when the server reports them): callers
   * treat an id that is absent as written.
   */
  async write(docsJson: string[]): Promise<WriteResult[]> {
    if (docsJson.length === 0) return [];
    const body = '{"new_edits":false,"docs":[' + docsJson.join(',') + ']}';
    const reply = await this.send({ method: 'POST', path: '/_bulk_docs', body });
    if (reply.status === 413) throw new ReplicationError('bad_request', `_bulk_docs request too large: ${errorText(reply)}`, false);
    if (reply.status !== 201 && reply.status !== 202 && reply.status !== 200) throw this.failure(reply, '_bulk_docs');
    const items = this.parse(reply, '_bulk_docs');
    if (!Array.isArray(items)) throw this.protocol('_bulk_docs reply is not a list');
    return items.map((item): WriteResult => {
      if (!isPlainObject(item) || typeof item.id !== 'string') throw this.protocol('_bulk_docs reply row has no id');
      if (item.error === undefined) return { id: item.id };
      return { id: item.id, error: String(item.error), ...(item.reason !== undefined ? { reason: String(item.reason) } : {}) };
    });
  }

  async getLocal(id: string): Promise<Record<string, unknown> | undefined> {
    const reply = await this.send({ method: 'GET', path: '/_local/' + encodeURIComponent(localName(id)) });
    if (reply.status === 404) return undefined;
    return this.okObject(reply, [200], '_local document');
  }

  async putLocal(id: string, doc: Record<string, unknown>): Promise<string> {
    const reply = await this.send({ method: 'PUT', path: '/_local/' + encodeURIComponent(localName(id)), body: stringifyJson(doc) });
    const body = this.okObject(reply, [200, 201, 202], '_local document write');
    if (typeof body.rev !== 'string') throw this.protocol('_local document write answered no rev');
    return body.rev;
  }

  close(): void {
    this.closing.abort();
    this.agent.destroy();
  }

  // --- Fetching -------------------------------------------------------------------

  /** `_bulk_get` for every revision at once; undefined when the server has no `_bulk_get` (remembered). */
  private async fetchBulk(requests: RevsRequest[]): Promise<FetchedRev[] | undefined> {
    const entries: string[] = [];
    for (const r of requests) {
      for (const rev of r.revs) entries.push(stringifyJson({ id: r.id, rev, atts_since: r.attsSince }));
    }
    const query: Array<[string, string]> = [
      ['revs', 'true'],
      ['attachments', 'true'],
    ];
    const reply = await this.send({ method: 'POST', path: '/_bulk_get', query, body: '{"docs":[' + entries.join(',') + ']}' });
    if (reply.status === 404 && saysDbMissing(reply)) throw this.dbNotFound();
    if (NO_BULK_GET.has(reply.status)) {
      this.bulkGetMissing = true;
      return undefined;
    }
    const body = this.okObject(reply, [200], '_bulk_get');
    if (!Array.isArray(body.results)) throw this.protocol('_bulk_get reply has no results');
    const out: FetchedRev[] = [];
    for (const result of body.results) {
      if (!isPlainObject(result) || !Array.isArray(result.docs)) throw this.protocol('_bulk_get result has no docs');
      const resultId = typeof result.id === 'string' ? result.id : '';
      for (const item of result.docs) {
        if (!isPlainObject(item)) throw this.protocol('_bulk_get answer is not an object');
        if (isPlainObject(item.ok)) out.push(fetchedOk(item.ok, resultId));
        else if (isPlainObject(item.error)) {
          const error = item.error;
          out.push({ kind: 'missing', id: typeof error.id === 'string' ? error.id : resultId, rev: typeof error.rev === 'string' ? error.rev : '' });
        } else throw this.protocol('_bulk_get answer is neither ok nor error');
      }
    }
    return out;
  }

  /** `GET /db/docid?open_revs=[...]` for servers without `_bulk_get`. */
  private async fetchOne(r: RevsRequest): Promise<FetchedRev[]> {
    const query: Array<[string, string]> = [
      ['revs', 'true'],
      ['attachments', 'true'],
      ['open_revs', JSON.stringify(r.revs)],
    ];
    if (r.attsSince.length > 0) query.push(['atts_since', JSON.stringify(r.attsSince)]);
    const reply = await this.send({ method: 'GET', path: '/' + docPath(r.id), query });
    if (reply.status === 404) {
      if (saysDbMissing(reply)) throw this.dbNotFound();
      return r.revs.map((rev) => ({ kind: 'missing', id: r.id, rev }));
    }
    if (reply.status !== 200) throw this.failure(reply, 'open_revs');
    const items = this.parse(reply, 'open_revs');
    if (!Array.isArray(items)) throw this.protocol('open_revs reply is not a list');
    return items.map((item): FetchedRev => {
      if (isPlainObject(item) && isPlainObject(item.ok)) return fetchedOk(item.ok, r.id);
      if (isPlainObject(item) && typeof item.missing === 'string') return { kind: 'missing', id: r.id, rev: item.missing };
      throw this.protocol('open_revs answer is neither ok nor missing');
    });
  }

  private changeRow(row: unknown): ChangeRow {
    if (!isPlainObject(row) || typeof row.id !== 'string' || row.seq === undefined) throw this.protocol('_changes row without id or seq');
    const revs: string[] = [];
    if (Array.isArray(row.changes)) for (const change of row.changes) if (isPlainObject(change) && typeof change.rev === 'string') revs.push(change.rev);
    return { id: row.id, seq: opaqueSeq(row.seq), revs, deleted: row.deleted === true };
  }

  // --- Requests -------------------------------------------------------------------

  /** One request with retries: answers any reply that is not worth retrying, or throws. */
  private async send(call: Call): Promise<Reply> {
    let failure: TransientFailure | undefined;
    for (let attempt = 0; attempt <= this.options.retries; attempt++) {
      if (attempt > 0) await this.sleep(backoffMs(attempt - 1), call.signal);
      try {
        const reply = await this.attempt(call);
        if (!retryableStatus(reply.status)) return reply;
        failure = new TransientFailure('unavailable', `${call.method} ${this.label}${call.path} answered ${errorText(reply)}`);
      } catch (err) {
        if (!(err instanceof TransientFailure)) throw err;
        failure = err;
      }
    }
    assert.ok(failure);
    throw new ReplicationError(failure.kind, `${failure.reason} (after ${this.options.retries + 1} attempts)`, true);
  }

  private attempt(call: Call): Promise<Reply> {
    const signals = this.signals(call.signal);
    if (signals.some((s) => s.aborted)) return Promise.reject(this.aborted());
    const deadlineMs = call.deadlineMs ?? this.options.timeoutMs;
    const max = this.options.replyBytesMax;
    const what = `${call.method} ${this.label}${call.path}`;
    const headers: Record<string, string> = { ...this.headers };
    const body = call.body === undefined ? undefined : Buffer.from(call.body, 'utf8');
    if (body) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(body.length);
    }
    return new Promise<Reply>((resolve, reject) => {
      const req = this.transport.request({
        agent: this.agent,
        hostname: this.hostname,
        port: this.port,
        method: call.method,
        path: this.dbPath + call.path + queryString(call.query),
        headers,
      });
      let settled = false;
      const finish = (err: Error | undefined, reply?: Reply): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        unwatch();
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(reply!);
      };
      const timer = setTimeout(() => finish(new TransientFailure('timeout', `${what}: no reply within ${deadlineMs} ms`)), deadlineMs);
      const unwatch = watchAbort(signals, () => finish(this.aborted()));
      req.on('error', (err) => finish(networkFailure(what, err)));
      req.on('response', (res) => {
        const tooBig = () => this.protocol(`${what}: reply larger than ${max} bytes`);
        if (Number(res.headers['content-length']) > max) return finish(tooBig());
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > max) return finish(tooBig());
          chunks.push(chunk);
        });
        res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(chunks, size) }));
        res.on('error', (err) => finish(networkFailure(what, err)));
        res.on('close', () => {
          if (!res.complete) finish(new TransientFailure('unavailable', `${what}: connection closed before the reply ended`));
        });
      });
      req.end(body);
    });
  }

  private sleep(ms: number, signal?: AbortSignal): Promise<void> {
    const signals = this.signals(signal);
    if (signals.some((s) => s.aborted)) return Promise.reject(this.aborted());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        unwatch();
        resolve();
      }, ms);
      const unwatch = watchAbort(signals, () => {
        clearTimeout(timer);
        reject(this.aborted());
      });
    });
  }

  private signals(extra?: AbortSignal): AbortSignal[] {
    const out = [this.closing.signal];
    if (this.options.signal) out.push(this.options.signal);
    if (extra) out.push(extra);
    return out;
  }

  // --- Replies --------------------------------------------------------------------

  private parse(reply: Reply, what: string): unknown {
    try {
      return parseJsonBytes(reply.body, { exact: true });
    } catch (err) {
      if (err instanceof DivanError) throw this.protocol(`${what} reply from ${this.label} is not JSON (${err.reason})`);
      throw err;
    }
  }

  /** The reply's JSON object when its status is one of `ok`; else the status's error. */
  private okObject(reply: Reply, ok: number[], what: string): Record<string, unknown> {
    if (!ok.includes(reply.status)) throw this.failure(reply, what);
    const body = this.parse(reply, what);
    if (!isPlainObject(body)) throw this.protocol(`${what} reply from ${this.label} is not a JSON object`);
    return body;
  }

  /** The error for a final status: the one table from HTTP statuses to ReplicationError kinds. */
  private failure(reply: Reply, what: string): ReplicationError {
    const text = `${what}: ${errorText(reply)}`;
    const status = reply.status;
    if (status === 401) return new ReplicationError('unauthorized', text, false);
    if (status === 403) return new ReplicationError('forbidden', text, false);
    if (status === 404) return this.dbNotFound();
    if (status >= 400 && status < 500) return new ReplicationError('bad_request', text, false);
    return new ReplicationError('protocol', `${text} (unexpected status)`, false);
  }

  private dbNotFound(): ReplicationError {
    return new ReplicationError('db_not_found', `Database does not exist: ${this.label}`, false);
  }

  private protocol(reason: string): ReplicationError {
    return new ReplicationError('protocol', reason, false);
  }

  private aborted(): ReplicationError {
    const reason = this.closing.signal.aborted ? 'endpoint closed' : 'aborted';
    return new ReplicationError('unavailable', `Request to ${this.label} ${reason}`, false);
  }
}

// --- Helpers (no I/O) -----------------------------------------------------------

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function count(value: unknown): number {
  if (typeof value === 'number') return value;
  if (value instanceof ExactInteger) return Number(value.raw);
  return 0;
}

/** A sequence as an opaque string: see the header. */
function opaqueSeq(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (value instanceof ExactInteger) return value.raw;
  return stringifyJson(value);
}

function fetchedOk(doc: Record<string, unknown>, fallbackId: string): FetchedRev {
  const id = typeof doc._id === 'string' ? doc._id : fallbackId;
  return { kind: 'ok', id, rev: typeof doc._rev === 'string' ? doc._rev : '', json: stringifyJson(doc) };
}

/** A document id as a path segment: encoded, except the slash of `_design/`. */
export function docPath(id: string): string {
  if (id.startsWith('_design/')) return '_design/' + encodeURIComponent(id.slice('_design/'.length));
  return encodeURIComponent(id);
}

/** Callers may name a local doc with or without its `_local/` prefix. */
function localName(id: string): string {
  return id.startsWith('_local/') ? id.slice('_local/'.length) : id;
}

function queryString(query: Array<[string, string]> | undefined): string {
  if (!query || query.length === 0) return '';
  return '?' + query.map(([name, value]) => encodeURIComponent(name) + '=' + encodeURIComponent(value)).join('&');
}

function retryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status !== 501);
}

/** The wait before retry `n` (0-based): 250 ms doubling, capped, jittered into its upper half. */
function backoffMs(n: number): number {
  const ceiling = Math.min(BACKOFF_FIRST_MS * 2 ** n, BACKOFF_MAX_MS);
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

function networkFailure(what: string, err: Error): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const reason = `${what}: ${code ? code + ' ' : ''}${err.message}`;
  if (code === 'ETIMEDOUT') return new TransientFailure('timeout', reason);
  if ((code !== undefined && RETRYABLE_CODES.has(code)) || err.message === 'socket hang up') return new TransientFailure('unavailable', reason);
  // DNS names that do not exist, TLS failures, ...: another attempt will not help.
  return new ReplicationError('unavailable', reason, false);
}

/** Calls `onAbort` once when any signal aborts; answers the function that stops watching. */
function watchAbort(signals: AbortSignal[], onAbort: () => void): () => void {
  const listener = () => {
    unwatch();
    onAbort();
  };
  const unwatch = () => {
    for (const s of signals) s.removeEventListener('abort', listener);
  };
  for (const s of signals) s.addEventListener('abort', listener, { once: true });
  return unwatch;
}

/** `status error: reason` from a CouchDB-style error body (or its first bytes). */
function errorText(reply: Reply): string {
  let error: unknown;
  let reason: unknown;
  try {
    const body = JSON.parse(reply.body.toString('utf8')) as unknown;
    if (isPlainObject(body)) ({ error, reason } = body);
  } catch {
    // not JSON: show the start of the text
  }
  if (error === undefined && reason === undefined) return `${reply.status} ${reply.body.subarray(0, 200).toString('utf8')}`.trim();
  return `${reply.status} ${String(error ?? '')}${reason !== undefined ? ': ' + String(reason) : ''}`;
}

/** A 404 that is about the database, not a document or an endpoint the server lacks. */
function saysDbMissing(reply: Reply): boolean {
  return /database does not exist|no_db_file|db_not_found/i.test(reply.body.subarray(0, 500).toString('utf8'));
}

function stripCredentials(text: string): string {
  return text.replace(/\/\/[^/@]*@/, '//');
}

/** `fn` over `items`, at most `limit` at once; the first failure stops new starts and is thrown. */
async function mapBounded<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
