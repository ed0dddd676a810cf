/**
 * A replication as users ask for it — the body of `POST /_replicate` or a document
 * of `_replicator`, which take the same fields — checked, given its stable id, and
 * turned into a job for the node's registry. Both doors use this one module.
 *
 * Fields: `source`, `target` (a database name of this cluster, an http(s) URL, or
 * `{url, headers, auth: {basic}}`), `continuous`, `create_target`,
 * `create_target_params`, `doc_ids` | `selector` | `filter` (+ `query_params`),
 * `since_seq`, `use_checkpoints`, `checkpoint_interval`, `worker_batch_size`,
 * `winning_revs_only`, `connection_timeout`, `retries_per_request`,
 * `http_connections` (at most the node's), `cancel`. Others (`worker_processes`) are
 * accepted and ignored: one pipeline per job does the work.
 */
import { isPlainObject } from '../../json';
import { BadRequestError } from '../../errors';
import { validateDbName } from '../coordinator/db-admin';
import type { DbDirectory } from '../coordinator/shard-client';
import type { Validation } from '../coordinator/validate';
import type { DocInputLimits } from '../http/doc-input';
import type { Endpoint, EndpointSpec } from './endpoint';
import { LocalEndpoint } from './local';
import { RemoteEndpoint } from './remote';
import { Replication, replicationId, type ReplicationOptions, type ReplicationResult, type ReplicationStats } from './replication';

/** Replication settings (node config: replication*). */
export interface ReplicationSettings {
  checkpointIntervalMs: number;
  batchSize: number;
  longpollMs: number;
  retryBackoffMaxMs: number;
  oneShotRetriesMax: number;
  connectionTimeoutMs: number;
  retriesPerRequest: number;
  httpConnections: number;
}

/** What a replication job needs from where it was asked. */
export interface ReplicatorEnv {
  directory: DbDirectory;
  /** Writes to a local target are validated as this user's. */
  validation: Validation;
  limits: DocInputLimits & { keysMax: number; bulkDocsMax: number; requestBytesMax: number; quorumTimeoutMs: number };
  settings: ReplicationSettings;
  nodeName: string;
}

export interface ReplicationRequest {
  source: EndpointSpec;
  target: EndpointSpec;
  /** The replication id; `+continuous` for continuous ones, as CouchDB's `_local_id`. */
  id: string;
  continuous: boolean;
  cancel: boolean;
  body: Record<string, unknown>;
}

/** `owner`: the caller's name when they are not a server admin (it is part of the replication id). */
export function parseReplication(body: Record<string, unknown>, keysMax: number, owner?: string): ReplicationRequest {
  const source = spec(body.source, 'source');
  const target = spec(body.target, 'target');
  const continuous = body.continuous === true;
  const filter = optionalString(body.filter, 'filter');
  const docIds = body.doc_ids;
  if (docIds !== undefined && (!Array.isArray(docIds) || docIds.some((d) => typeof d !== 'string'))) throw new BadRequestError('`doc_ids` must be an array of strings');
  if (Array.isArray(docIds) && docIds.length > keysMax) throw new BadRequestError(`At most ${keysMax} doc_ids`);
  if (body.selector !== undefined && !isPlainObject(body.selector)) throw new BadRequestError('`selector` must be a JSON object');
  if (filter !== undefined && (docIds !== undefined || body.selector !== undefined)) throw new BadRequestError('`filter`, `doc_ids` and `selector` are mutually exclusive');
  if (body.query_params !== undefined && !isPlainObject(body.query_params)) throw new BadRequestError('`query_params` must be a JSON object');
  for (const key of ['checkpoint_interval', 'worker_batch_size', 'connection_timeout', 'http_connections']) positiveInt(body[key], key);
  if (body.retries_per_request !== undefined && body.retries_per_request !== 0) positiveInt(body.retries_per_request, 'retries_per_request');
  const base = replicationId({
    source: labelOf(source),
    target: labelOf(target),
    filter,
    docIds: docIds as string[] | undefined,
    selector: body.selector,
    queryParams: body.query_params as Record<string, unknown> | undefined,
    winningRevsOnly: body.winning_revs_only === true,
    owner,
  });
  return { source, target, id: continuous ? base + '+continuous' : base, continuous, cancel: body.cancel === true, body };
}

/** The registry job that runs `request`; `docId` names the `_replicator` document it came from. */
export function replicationJob(env: ReplicatorEnv, request: ReplicationRequest, docId?: string) {
  const holder: { stats: ReplicationStats | undefined } = { stats: undefined };
  return {
    id: request.id,
    kind: 'replication',
    // A continuous replication takes turns with waiting ones: it resumes from its checkpoint.
    rotatable: request.continuous,
    task: () => task(env, request, holder.stats, docId),
    run: (signal: AbortSignal): Promise<ReplicationResult> => {
      const source = endpoint(env, request, request.source, signal);
      const target = endpoint(env, request, request.target, signal);
      const replication = new Replication(options(env, request, source, target, signal));
      holder.stats = replication.stats;
      return replication.run().finally(() => {
        source.close();
        target.close();
      });
    },
  };
}

function task(env: ReplicatorEnv, request: ReplicationRequest, stats: ReplicationStats | undefined, docId: string | undefined): Record<string, unknown> {
  return {
    type: 'replication',
    node: env.nodeName,
    replication_id: request.id,
    doc_id: docId ?? null,
    database: docId ? '_replicator' : null,
    source: labelOf(request.source),
    target: labelOf(request.target),
    continuous: request.continuous,
    user: env.validation.user.name,
    docs_read: stats?.docsRead ?? 0,
    docs_written: stats?.docsWritten ?? 0,
    doc_write_failures: stats?.docWriteFailures ?? 0,
    revisions_checked: stats?.revisionsChecked ?? 0,
    missing_revisions_found: stats?.missingRevisionsFound ?? 0,
    changes_pending: stats?.changesPending ?? null,
    source_seq: stats?.sourceSeq ?? '0',
    checkpointed_source_seq: stats?.checkpointedSourceSeq ?? '0',
  };
}

function options(env: ReplicatorEnv, request: ReplicationRequest, source: Endpoint, target: Endpoint, signal: AbortSignal): ReplicationOptions {
  const b = request.body;
  const settings = env.settings;
  const filter = optionalString(b.filter, 'filter');
  const docIds = b.doc_ids as string[] | undefined;
  return {
    source,
    target,
    id: request.id.replace(/\+continuous$/, ''),
    continuous: request.continuous,
    createTarget: b.create_target === true,
    createTargetParams: isPlainObject(b.create_target_params) ? b.create_target_params : {},
    ...(filter !== undefined ? { filter } : docIds !== undefined ? { filter: '_doc_ids', docIds } : b.selector !== undefined ? { filter: '_selector', selector: b.selector } : {}),
    ...(isPlainObject(b.query_params) ? { queryParams: b.query_params } : {}),
    ...(b.since_seq !== undefined ? { sinceSeq: typeof b.since_seq === 'string' ? b.since_seq : JSON.stringify(b.since_seq) } : {}),
    useCheckpoints: b.use_checkpoints !== false,
    checkpointIntervalMs: positiveInt(b.checkpoint_interval, 'checkpoint_interval') ?? settings.checkpointIntervalMs,
    batchSize: Math.min(positiveInt(b.worker_batch_size, 'worker_batch_size') ?? settings.batchSize, env.limits.bulkDocsMax),
    winningRevsOnly: b.winning_revs_only === true,
    longpollMs: settings.longpollMs,
    retryBackoffMaxMs: settings.retryBackoffMaxMs,
    ...(request.continuous ? {} : { retriesMax: settings.oneShotRetriesMax }),
    signal,
  };
}

/** An endpoint; a remote one takes the request's `connection_timeout`, `retries_per_request` and `http_connections` (bounded by the node's settings). */
function endpoint(env: ReplicatorEnv, request: ReplicationRequest, s: EndpointSpec, signal: AbortSignal): Endpoint {
  const settings = env.settings;
  const b = request.body;
  if (isRemote(s.url)) {
    return new RemoteEndpoint(s, {
      timeoutMs: Math.min(positiveInt(b.connection_timeout, 'connection_timeout') ?? settings.connectionTimeoutMs, 10 * settings.connectionTimeoutMs),
      retries: b.retries_per_request === 0 ? 0 : Math.min(positiveInt(b.retries_per_request, 'retries_per_request') ?? settings.retriesPerRequest, 20),
      httpConnections: Math.min(positiveInt(b.http_connections, 'http_connections') ?? settings.httpConnections, settings.httpConnections),
      replyBytesMax: env.limits.requestBytesMax,
      signal,
    });
  }
  return new LocalEndpoint({ directory: env.directory, name: s.url, validation: env.validation, limits: env.limits, timeoutMs: env.limits.quorumTimeoutMs });
}

function spec(value: unknown, what: string): EndpointSpec {
  if (typeof value === 'string') return checkUrl(value, what, {});
  if (isPlainObject(value) && typeof value.url === 'string') {
    const headers = value.headers;
    if (headers !== undefined && (!isPlainObject(headers) || Object.values(headers).some((h) => typeof h !== 'string'))) throw new BadRequestError(`${what}.headers must be an object of strings`);
    const auth = value.auth;
    const out: EndpointSpec = { url: value.url };
    if (headers) out.headers = headers as Record<string, string>;
    if (isPlainObject(auth) && isPlainObject(auth.basic)) {
      const { username, password } = auth.basic;
      if (typeof username !== 'string' || typeof password !== 'string') throw new BadRequestError(`${what}.auth.basic needs username and password strings`);
      out.auth = { basic: { username, password } };
    }
    return checkUrl(value.url, what, out);
  }
  throw new BadRequestError(`${what} must be a database name, a URL, or an object with url`, 'bad_request');
}

function checkUrl(url: string, what: string, base: Partial<EndpointSpec>): EndpointSpec {
  if (isRemote(url)) {
    try {
      new URL(url);
    } catch {
      throw new BadRequestError(`${what} is not a valid URL`, 'bad_request');
    }
  } else validateDbName(url);
  return { ...base, url };
}

/** An http(s) URL (a remote endpoint), as opposed to a database name of this cluster. */
export function isRemote(url: string): boolean {
  return /^https?:\/\//i.test(url);
}

/** A `_replicator` document's replication fields: all but its own `_` members (`_id`, `_rev`, the states written back). */
export function replicationFields(doc: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(doc)) if (!key.startsWith('_')) out[key] = value;
  return out;
}

/** The endpoint without its password (for ids, logs and `_active_tasks`). */
export function labelOf(s: EndpointSpec): string {
  if (!isRemote(s.url)) return s.url;
  const u = new URL(s.url);
  if (u.password) u.password = '*****';
  return u.toString();
}

function optionalString(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new BadRequestError(`\`${what}\` must be a string`);
  return value;
}

function positiveInt(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw new BadRequestError(`\`${what}\` must be a positive integer`);
  return n;
}
