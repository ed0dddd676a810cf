/**
 * One HTTP request as the routes see it: the decoded path segments, query helpers
 * with CouchDB's parameter rules, bounded body reading, and response writers that
 * add CouchDB's standard headers. Routes never touch `req`/`res` for these.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BadContentTypeError, BadRequestError, ClientGoneError, TooLargeError, UnavailableError } from '../../errors';
import type { DbDirectory } from '../coordinator/shard-client';
import { isPlainObject, parseJsonBytes, parseJsonText } from '../../json';

export interface HttpLimits {
  requestBytesMax: number;
  docBytesMax: number;
  attachmentBytesMax: number;
  jsonDepthMax: number;
  docIdBytesMax: number;
  bulkDocsMax: number;
  keysMax: number;
  /** Queries in one `_all_docs/queries` request at most. */
  queriesMax: number;
  /** `_find` defaults and bounds (node config: findLimitDefault, findRangesMax, findScanWarningRatio). */
  findLimitDefault: number;
  findRangesMax: number;
  findScanWarningRatio: number;
  revsDiffRevsMax: number;
  uuidsCountMax: number;
  requestTimeoutMs: number;
  /** How long reads and writes wait for r / w copies before answering with what they have. */
  quorumTimeoutMs: number;
  changesTimeoutMs: number;
  /** `timeout` and `heartbeat` of `_changes` are clamped to this (CouchDB clamps to changes_timeout). */
  changesTimeoutMsMax: number;
  rowsMax: number;
}

export interface NodeIdentity {
  name: string;
  uuid: string;
  version: string;
  /** Server admins may change `_users/_security` (CouchDB's users_db_security_editable). */
  usersDbSecurityEditable: boolean;
  /** `_purge` bounds per request and the default `_purged_infos_limit`. */
  purge: { docsMax: number; revsMax: number; infosLimit: number };
  /** PBKDF2 iterations of new password hashes (admins and users). */
  pbkdf2Iterations: number;
  /** Defaults for new databases. */
  q: number;
  n: number;
  /** Settings an admin may read at `/_node/_local/_config`, already without secrets. */
  publicConfig: Record<string, Record<string, string>>;
}

/** The request's authenticated user; the same type the coordinator's validation step takes. */
export type { UserCtx } from '../coordinator/validate';
import type { UserCtx, Validation } from '../coordinator/validate';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** The cluster as the HTTP layer sees it (membership, readiness, routing to nodes). */
export interface ClusterInfo {
  readonly self: string;
  /** Joined the cluster and holds the catalog (`/_up`). */
  ready(): boolean;
  members(): { name: string; state: string; incarnation: number; address: string; httpAddress: string; zone?: string }[];
  /** HTTP host:port of a live member, for `/_node/{name}/...`. */
  httpAddressOfMember(name: string): string | undefined;
  /** Push every local copy of a database to its siblings now (`_sync_shards`). */
  syncDatabase(db: string): Promise<void>;
  /** Move a database's copies to the placement the live members call for (`_rebalance`). */
  rebalance(db: string): Promise<{ moved: { range: string; added: string[]; removed: string[] }[] }>;
  /** View index builds running on this node (`_active_tasks` entries). */
  indexTasks(): Record<string, unknown>[];
  /** Compactions running on this node (`_active_tasks` entries). */
  compactionTasks(): Record<string, unknown>[];
}

/** Server admin accounts as `/_node/…/_config/admins` reads and writes them (hashes, never passwords). */
export interface AdminAccounts {
  get(name: string): string | undefined;
  all(): Map<string, string>;
  set(name: string, hash: string): Promise<void>;
  remove(name: string): Promise<void>;
}

/** The node's registry of background jobs (src/node/jobs.ts), as routes use it. */
export interface BackgroundJobs {
  start<T>(spec: { id: string; kind: string; task(): Record<string, unknown>; run(signal: AbortSignal): Promise<T> }): { started: boolean; done: Promise<T> };
  cancel(id: string): boolean;
  has(id: string): boolean;
  list(kind?: string): { id: string; kind: string; state: string; startedOn: number; updatedOn: number; error?: string; task: Record<string, unknown> }[];
}

/** Everything a route may use; built once at start-up by src/node. */
export interface Services {
  directory: DbDirectory;
  limits: HttpLimits;
  /** Which identity attachment uploads are stored gzip (node config: attachmentCompressibleTypes, attachmentCompressionLevel). */
  attachmentCompression: import('./att-compress').AttachmentCompression;
  node: NodeIdentity;
  log: Logger;
  /** Prometheus exposition text of this node's registry. */
  metricsText(): Promise<string>;
  /** A `_find` was answered: the kind of index it read and the documents it examined. */
  onFind?(index: 'json' | '_all_docs', docsExamined: number): void;
  /** Told how many revisions a `_purge` removed. */
  onPurged?(revisions: number): void;
  sessions: import('./auth').Auth;
  /** Server admins: configured, and those set at runtime on every node (`/_node/…/_config/admins`). */
  admins: AdminAccounts;
  /** Request-body bytes of all requests in flight (`requestBytesInFlightMax`). */
  requestBytes: import('./budget').ByteBudget;
  cluster: ClusterInfo;
  /** The sandbox every piece of design-document JavaScript runs in (filters, validate_doc_update). */
  js: import('../../shard/js/sandbox').SandboxPool;
  /** This node's cache of compiled validate_doc_update functions, per database. */
  designDocs: import('../coordinator/validate').DesignFunctions;
  /** `_replicator` documents as this node follows them (`_scheduler/docs`); set once the node is wired. */
  replicatorDocs?: { states(): import('../replicator/doc-processor').ReplicatorDocState[] };
  /** Background jobs of this node (replications). */
  jobs: BackgroundJobs;
  replication: import('../replicator/request').ReplicationSettings;
  /** Built-in write rules of system databases (`_users`). */
  updateHooks: import('../coordinator/update-hooks').UpdateHooks;
}

export const serverHeader = 'Divan/0.1.0 (Node.js)';

export class Ctx {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  readonly segments: string[];
  readonly query: URLSearchParams;
  readonly reqId: string;
  readonly services: Services;
  user: UserCtx = { name: null, roles: [] };
  /** How the caller authenticated (`GET /_session`'s `info.authenticated`), when they did. */
  authenticatedBy: string | undefined;
  /** Set by the authorization step: the caller is an admin of the request's database. */
  dbAdmin = false;
  private abort: AbortController | undefined;
  private bodyRead = false;
  private bodyBytesTaken = 0;

  constructor(init: { req: IncomingMessage; res: ServerResponse; segments: string[]; query: URLSearchParams; reqId: string; services: Services }) {
    this.req = init.req;
    this.res = init.res;
    this.method = (init.req.method ?? 'GET').toUpperCase();
    this.segments = init.segments;
    this.query = init.query;
    this.reqId = init.reqId;
    this.services = init.services;
  }

  /**
   * Fires when the client goes away before the response ended. Made on first use:
   * only streaming handlers need it, and most requests never ask.
   */
  get signal(): AbortSignal {
    if (!this.abort) {
      const abort = new AbortController();
      this.abort = abort;
      if (this.res.destroyed && !this.res.writableFinished) abort.abort();
      else this.res.on('close', () => {
        if (!this.res.writableFinished) abort.abort();
      });
    }
    return this.abort.signal;
  }

  /** What a client write hands to `updateDocs`: validate_doc_update and design document checks. */
  get validation(): Validation {
    return { functions: this.services.designDocs, user: this.user, dbAdmin: this.dbAdmin, hooks: this.services.updateHooks };
  }

  get limits(): HttpLimits {
    return this.services.limits;
  }

  header(name: string): string | undefined {
    const value = this.req.headers[name.toLowerCase()];
    return Array.isArray(value) ? value[0] : value;
  }

  /**
   * Whether the client accepts `type`, as CouchDB decides it (mochiweb's
   * accepts_content_type): true with no Accept header, or when Accept lists the type,
   * its main-type wildcard or the any-type wildcard with a non-zero q. So curl (which
   * accepts anything) gets multipart where CouchDB sends multipart, and JSON clients
   * (`Accept: application/json`) get JSON.
   */
  accepts(type: string): boolean {
    const header = this.header('accept');
    if (header === undefined || header.trim() === '') return true;
    const main = type.slice(0, type.indexOf('/'));
    return header.split(',').some((entry) => {
      const [range, ...params] = entry.trim().toLowerCase().split(';');
      const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      if (q !== undefined && !(Number(q.slice(2)) > 0)) return false;
      return range === type || range === main + '/*' || range === '*/*';
    });
  }

  // ---- query parameters ------------------------------------------------------------

  /** A boolean parameter: `true`/`false` only. */
  qBool(name: string, fallback: boolean): boolean {
    const raw = this.query.get(name);
    if (raw === null) return fallback;
    if (raw === 'true') return true;
    if (raw === 'false') return false;
    throw new BadRequestError(`Invalid boolean parameter: ${JSON.stringify(name)}`, 'query_parse_error');
  }

  /** A non-negative integer parameter. */
  qInt(name: string, fallback: number): number {
    const raw = this.query.get(name);
    if (raw === null) return fallback;
    const value = Number(raw);
    if (!/^[0-9]+$/.test(raw.trim()) || !Number.isSafeInteger(value)) {
      throw new BadRequestError(`Invalid value for integer: ${JSON.stringify(name)}`, 'query_parse_error');
    }
    return value;
  }

  /** A JSON-valued parameter (`startkey="a"`, `open_revs=[...]`), or undefined. */
  qJson(name: string): unknown {
    const raw = this.query.get(name);
    if (raw === null) return undefined;
    try {
      // URLSearchParams turns percent-encoded bytes that are not UTF-8 into U+FFFD.
      if (raw.includes('\uFFFD') && !rawQueryValueIsUtf8(this.req.url ?? '', name)) throw new Error('not UTF-8');
      return parseJsonText(raw, { depthMax: this.limits.jsonDepthMax });
    } catch {
      throw new BadRequestError(`Invalid JSON value for parameter ${JSON.stringify(name)}`, 'query_parse_error');
    }
  }

  qString(name: string): string | undefined {
    return this.query.get(name) ?? undefined;
  }

  // ---- request body ----------------------------------------------------------------

  /**
   * The whole body, refused past `maxBytes` (413) without reading the rest into memory.
   * Its bytes come out of the node-wide in-flight budget as they arrive and go back
   * when the response is over; past the budget, 503. A declared length that does not
   * fit is refused before anything is read. Taking bytes as they arrive, not the
   * declared length up front, keeps a client that declares 64 MB and sends slowly
   * from holding 64 MB of everyone's budget.
   */
  async readBody(maxBytes = this.limits.requestBytesMax): Promise<Buffer> {
    if (this.bodyRead) throw new Error('request body read twice');
    this.bodyRead = true;
    const declared = Number(this.req.headers['content-length'] ?? NaN);
    if (declared > maxBytes) throw new TooLargeError('Request body is too large', 'too_large');
    // Stream events, not `for await`: the async iterator costs more than the small
    // bodies most requests carry.
    if (this.req.readableEnded) return Buffer.alloc(0);
    if (this.req.destroyed) throw new ClientGoneError();
    if (declared > 0 && !this.services.requestBytes.fits(declared)) throw bodyBudgetExhausted();
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let total = 0;
      const cleanup = () => {
        this.req.off('data', onData);
        this.req.off('end', onEnd);
        this.req.off('error', onError);
        this.req.off('close', onClose);
      };
      const onData = (chunk: Buffer) => {
        total += chunk.length;
        if (total > maxBytes) {
          cleanup();
          reject(new TooLargeError('Request body is too large', 'too_large'));
          return;
        }
        if (!this.takeBodyBytes(chunk.length)) {
          cleanup();
          reject(bodyBudgetExhausted());
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = () => {
        cleanup();
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
      };
      // A hang-up mid-body surfaces as 'error' (aborted, ECONNRESET) then 'close': routine.
      const onError = (err: Error) => {
        cleanup();
        reject(this.req.complete ? err : new ClientGoneError());
      };
      const onClose = () => {
        if (this.req.complete) return;
        cleanup();
        reject(new ClientGoneError());
      };
      this.req.on('data', onData);
      this.req.on('end', onEnd);
      this.req.on('error', onError);
      this.req.on('close', onClose);
    });
  }

  /** Take body bytes from the node-wide budget, given back when the response is over; false when they do not fit. */
  private takeBodyBytes(bytes: number): boolean {
    if (bytes === 0) return true;
    const budget = this.services.requestBytes;
    if (!budget.tryTake(bytes)) return false;
    if (this.bodyBytesTaken === 0) this.res.once('close', () => budget.give(this.bodyBytesTaken));
    this.bodyBytesTaken += bytes;
    return true;
  }

  /**
   * The body as JSON, whatever the Content-Type (as CouchDB does for document writes).
   * `exact` (documents) keeps integers beyond ±2^53 as written (see src/json.ts).
   */
  async readJson(maxBytes?: number, options: { exact?: boolean } = {}): Promise<unknown> {
    return parseJsonBody(await this.readBody(maxBytes), this.limits.jsonDepthMax, options.exact);
  }

  /** Where CouchDB insists (`_bulk_docs`, `POST /db`...): 415 unless the body is declared JSON. */
  requireJsonType(): void {
    const type = (this.header('content-type') ?? '').toLowerCase();
    if (!type.startsWith('application/json')) throw new BadContentTypeError();
  }

  /** A JSON body that must be an object. */
  async readJsonObject(maxBytes?: number, options: { exact?: boolean } = {}): Promise<Record<string, unknown>> {
    const value = await this.readJson(maxBytes, options);
    if (!isPlainObject(value)) throw new BadRequestError('Request body must be a JSON object');
    return value;
  }

  // ---- responses -------------------------------------------------------------------

  /** Send a JSON response; `body` may be pre-serialised text. */
  send(status: number, body: unknown, headers?: Record<string, string | number>): void {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const payload = Buffer.from(text + '\n', 'utf8');
    const block = [...STANDARD_HEAD, 'X-Couch-Request-ID', this.reqId, 'X-CouchDB-Body-Time', '0', 'Content-Type', 'application/json', 'Content-Length', payload.length];
    this.res.writeHead(status, withHeaders(block, headers));
    this.res.end(this.method === 'HEAD' ? undefined : payload);
  }

  /** Send raw bytes (attachments, multipart). */
  sendBytes(status: number, body: Buffer, headers: Record<string, string | number>): void {
    const block = [...STANDARD_HEAD, 'X-Couch-Request-ID', this.reqId, 'X-CouchDB-Body-Time', '0', 'Content-Length', body.length];
    this.res.writeHead(status, withHeaders(block, headers));
    this.res.end(this.method === 'HEAD' ? undefined : body);
  }

  /** Start a streamed (chunked) response. */
  startStream(status: number, headers?: Record<string, string | number>): void {
    const block = [...STANDARD_HEAD, 'X-Couch-Request-ID', this.reqId, 'X-CouchDB-Body-Time', '0', 'Content-Type', 'application/json', 'Transfer-Encoding', 'chunked'];
    this.res.writeHead(status, withHeaders(block, headers));
  }

  /** Write a chunk of a stream; resolves when the socket can take more (backpressure). */
  write(text: string): Promise<void> | undefined {
    if (this.res.destroyed) return undefined;
    if (this.res.write(text)) return undefined;
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }

  /**
   * Buffer small pieces of a stream into chunks of about `chunkBytes` (one socket
   * write per row would cost a syscall per row). `flush()` before waiting on anything.
   */
  chunker(chunkBytes = 16 * 1024): { add(text: string): Promise<void> | undefined; flush(): Promise<void> | undefined } {
    let pending = '';
    const flush = () => {
      if (pending.length === 0) return undefined;
      const text = pending;
      pending = '';
      return this.write(text);
    };
    return {
      add: (text) => {
        pending += text;
        return pending.length >= chunkBytes ? flush() : undefined;
      },
      flush,
    };
  }

  end(text?: string): void {
    if (!this.res.destroyed) this.res.end(text);
  }
}

function bodyBudgetExhausted(): UnavailableError {
  return new UnavailableError('Too many request bytes in flight on this node; retry shortly', 'service_unavailable', 1);
}

/**
 * The standard headers every reply starts with but the request id, as `writeHead`'s
 * flat [name, value, ...] array: a reply copies this instead of spreading an object of
 * them into a new one (one object and its shape changes per request), in the order
 * `standardHeaders` gives them.
 */
const STANDARD_HEAD: readonly (string | number)[] = Object.freeze(['Cache-Control', 'must-revalidate', 'Server', serverHeader]);

/**
 * A reply's header block with a route's own headers: a name already in the block
 * (compared as HTTP does, without case) takes the route's value in its place, as the
 * object spread did; others are appended in their order.
 */
function withHeaders(block: (string | number)[], headers: Record<string, string | number> | undefined): (string | number)[] {
  for (const name in headers) {
    const lower = name.toLowerCase();
    let at = 0;
    while (at < block.length && (block[at] as string).toLowerCase() !== lower) at += 2;
    if (at < block.length) block[at + 1] = headers[name]!;
    else block.push(name, headers[name]!);
  }
  return block;
}

export function standardHeaders(reqId: string): Record<string, string> {
  return {
    'Cache-Control': 'must-revalidate',
    Server: serverHeader,
    'X-Couch-Request-ID': reqId,
    'X-CouchDB-Body-Time': '0',
  };
}

/** Whether the first `name=` value of the URL's query is UTF-8 once percent-decoded. */
export function rawQueryValueIsUtf8(url: string, name: string): boolean {
  const q = url.indexOf('?');
  if (q < 0) return true;
  const plus = /\+/g;
  for (const pair of url.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    let key: string;
    try {
      key = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(plus, ' '));
    } catch {
      continue;
    }
    if (key !== name) continue;
    try {
      decodeURIComponent((eq < 0 ? '' : pair.slice(eq + 1)).replace(plus, ' '));
      return true;
    } catch {
      return false;
    }
  }
  return true;
}

export { isPlainObject };

/**
 * Parse a JSON body: UTF-8 checked, nesting depth checked before any recursive code,
 * overflowing numbers and lone surrogates refused (src/json.ts).
 */
export function parseJsonBody(body: Buffer, depthMax: number, exact = false): unknown {
  return parseJsonBytes(body, { depthMax, exact });
}
