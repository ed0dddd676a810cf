/**
 * `POST /_replicate` and `GET /_scheduler/jobs`: replications run by this node.
 *
 * - One-shot (`continuous` false): the request waits for the replication to finish
 *   and answers CouchDB's body (`ok`, `session_id`, `source_last_seq`, `history`, or
 *   `no_changes`); an endpoint that is missing or refuses answers CouchDB's error
 *   (404 `db_not_found`, 401, 403).
 * - Continuous: answers at once `202 {"ok":true,"_local_id":"<id>+continuous"}`; the
 *   job runs in the node's job registry until cancelled (`"cancel": true` with the
 *   same body, or `"replication_id"`), retrying with backoff when an endpoint fails.
 *   Posting the same continuous replication again finds the running job.
 *
 * Source and target are a database name of this cluster (read and written through the
 * coordinator, as the caller) or an http(s) URL (credentials in the URL, `auth.basic`
 * or `headers`). Jobs live on the node that took the request; they end with it.
 */
import { BadRequestError, DivanError, ForbiddenError, NotFoundError, UnauthorizedError, UnavailableError } from '../../../errors';
import { ReplicationError } from '../../replicator/endpoint';
import { isRemote, parseReplication, replicationJob, type ReplicationRequest, type ReplicatorEnv } from '../../replicator/request';
import { readSecurity } from '../../coordinator/security';
import { authorize } from '../auth/policy';
import type { Ctx } from '../context';
import { REPLICATOR_DB } from '../../replicator/doc-processor';
import { askNode } from './cluster';
import { allow } from './common';

export async function replicate(ctx: Ctx): Promise<void> {
  allow(ctx, ['POST']);
  const body = await ctx.readJsonObject(1024 * 1024);
  if (body.cancel === true && typeof body.replication_id === 'string') return cancel(ctx, body.replication_id);
  const owner = ctx.user.roles.includes('_admin') ? undefined : (ctx.user.name ?? undefined);
  const request = parseReplication(body, ctx.limits.keysMax, owner);
  if (request.cancel) return cancel(ctx, request.id);
  await checkAccess(ctx, request);
  const started = ctx.services.jobs.start(replicationJob(envOf(ctx), request));
  if (request.continuous) return ctx.send(202, { ok: true, _local_id: request.id });
  try {
    ctx.send(200, await started.done);
  } catch (err) {
    throw asHttpError(err);
  }
}

/** The replicator's view of this request: its directory, the caller (local writes are theirs), limits and settings. */
function envOf(ctx: Ctx): ReplicatorEnv {
  return { directory: ctx.services.directory, validation: ctx.validation, limits: ctx.limits, settings: ctx.services.replication, nodeName: ctx.services.node.name };
}

/**
 * A caller who is not a server admin replicates only what they could read and write
 * themselves: a local source needs membership (as `_changes` does), a local target
 * membership too (its writes are the caller's, through its validate_doc_update), and
 * creating a local target needs a server admin, as creating any database does.
 * Remote endpoints check the credentials given for them.
 */
async function checkAccess(ctx: Ctx, request: ReplicationRequest): Promise<void> {
  if (ctx.user.roles.includes('_admin')) return;
  const security = async (db: string) => {
    const handle = await ctx.services.directory.open(db);
    return handle ? readSecurity(handle.security) : undefined;
  };
  if (!isRemote(request.source.url)) await authorize('GET', [request.source.url, '_changes'], ctx.user, security);
  if (!isRemote(request.target.url)) {
    if (request.body.create_target === true && !(await ctx.services.directory.open(request.target.url))) throw new UnauthorizedError('You are not a server admin.');
    await authorize('POST', [request.target.url, '_bulk_docs'], ctx.user, security);
  }
}

/** Cancel a job of this node; a caller who is not a server admin cancels only their own. */
function cancel(ctx: Ctx, id: string): void {
  const job = ctx.services.jobs.list('replication').find((j) => j.id === id);
  if (!job) throw new NotFoundError(`Replication ${id} is not running on this node`, 'not_found');
  if (!ctx.user.roles.includes('_admin') && job.task.user !== ctx.user.name) throw new ForbiddenError('Only the user who started a replication, or a server admin, may cancel it.');
  ctx.services.jobs.cancel(id);
  ctx.send(200, { ok: true, _local_id: id });
}

/**
 * `GET /_scheduler/jobs[/{id}]` and `/_scheduler/docs[/_replicator[/{docid}]]`, in
 * CouchDB's shape, for the whole cluster: this node's own lists and every other live
 * member's (`/_node/{name}/_scheduler/...`), merged.
 */
export async function scheduler(ctx: Ctx): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  const [, what, db, docId] = ctx.segments;
  if (what !== 'jobs' && what !== 'docs') throw new NotFoundError('missing');
  if (what === 'docs' && db !== undefined && db !== REPLICATOR_DB) throw new NotFoundError('Database does not exist.', 'not_found');
  const lists = await Promise.all(
    ctx.services.cluster.members().filter((m) => m.state === 'alive' || m.state === 'suspect').map(async (m) => {
      if (m.name === ctx.services.node.name) return what === 'jobs' ? localJobs(ctx) : localDocs(ctx);
      const reply = (await askNode(ctx, m.name, ['_scheduler', what]).catch(() => undefined)) as { jobs?: unknown[]; docs?: unknown[] } | undefined;
      return (what === 'jobs' ? reply?.jobs : reply?.docs) ?? [];
    }),
  );
  let rows = lists.flat() as Record<string, unknown>[];
  if (what === 'docs') rows = dedupeDocs(rows);
  rows.sort((x, y) => String(x.doc_id ?? x.id).localeCompare(String(y.doc_id ?? y.id)));
  const one = what === 'jobs' ? db : docId;
  if (one !== undefined) {
    const row = rows.find((r) => (what === 'jobs' ? r.id === one : r.doc_id === one));
    if (!row) throw new NotFoundError(what === 'jobs' ? 'unknown_job' : 'unknown_doc');
    return ctx.send(200, row);
  }
  const skip = ctx.qInt('skip', 0);
  const limit = ctx.qInt('limit', rows.length);
  ctx.send(200, { total_rows: rows.length, offset: skip, [what]: rows.slice(skip, skip + limit) });
}

/** `GET /_node/{name}/_scheduler/{jobs|docs}`: this node's part of the lists. */
export async function nodeScheduler(ctx: Ctx, what: string | undefined): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  if (what === 'jobs') return ctx.send(200, { jobs: localJobs(ctx) });
  if (what === 'docs') return ctx.send(200, { docs: localDocs(ctx) });
  throw new NotFoundError('missing');
}

function localJobs(ctx: Ctx): Record<string, unknown>[] {
  return ctx.services.jobs.list('replication').map((job) => ({
    database: job.task.database ?? null,
    id: job.id,
    pid: null,
    source: job.task.source,
    target: job.task.target,
    user: job.task.user ?? null,
    doc_id: job.task.doc_id ?? null,
    info: jobInfo(job.task),
    history: [{ timestamp: iso(job.startedOn), type: job.state === 'pending' ? 'added' : 'started' }],
    node: ctx.services.node.name,
    start_time: iso(job.startedOn),
  }));
}

/** The `_replicator` documents this node owns, with the state of their job here. */
function localDocs(ctx: Ctx): Record<string, unknown>[] {
  const states = ctx.services.replicatorDocs?.states() ?? [];
  const jobs = new Map(ctx.services.jobs.list('replication').map((job) => [job.id, job]));
  return states
    .filter((s) => s.owner === ctx.services.node.name)
    .map((s) => {
      const job = s.jobId ? jobs.get(s.jobId) : undefined;
      return {
        database: REPLICATOR_DB,
        doc_id: s.docId,
        id: s.jobId ?? null,
        node: ctx.services.node.name,
        source: job?.task.source ?? null,
        target: job?.task.target ?? null,
        state: job ? (job.state === 'pending' ? 'pending' : 'running') : s.state,
        info: job ? jobInfo(job.task) : s.error ? { error: s.error } : null,
        error_count: s.error ? 1 : 0,
        last_updated: iso(job?.updatedOn ?? Math.floor(Date.now() / 1000)),
        start_time: job ? iso(job.startedOn) : null,
      };
    });
}

/** A document reported by two nodes (owners disagreeing for a moment): the one with a job wins. */
function dedupeDocs(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  const byId = new Map<string, Record<string, unknown>>();
  for (const row of rows) {
    const known = byId.get(String(row.doc_id));
    if (!known || (known.id === null && row.id !== null)) byId.set(String(row.doc_id), row);
  }
  return [...byId.values()];
}

function jobInfo(task: Record<string, unknown>): Record<string, unknown> {
  return {
    revisions_checked: task.revisions_checked,
    missing_revisions_found: task.missing_revisions_found,
    docs_read: task.docs_read,
    docs_written: task.docs_written,
    changes_pending: task.changes_pending,
    doc_write_failures: task.doc_write_failures,
    checkpointed_source_seq: task.checkpointed_source_seq,
    source_seq: task.source_seq,
  };
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `_active_tasks` entries of this node's replications. */
export function replicationTasks(ctx: Ctx): Record<string, unknown>[] {
  return ctx.services.jobs.list('replication').map((job) => ({ ...job.task, started_on: job.startedOn, updated_on: job.updatedOn }));
}

/** A replication's failure as CouchDB answers it. */
function asHttpError(err: unknown): unknown {
  if (err instanceof DivanError || !(err instanceof ReplicationError)) return err;
  switch (err.kind) {
    case 'db_not_found':
      return new NotFoundError(err.reason, 'db_not_found');
    case 'unauthorized':
      return new UnauthorizedError(err.reason);
    case 'forbidden':
      return new ForbiddenError(err.reason);
    case 'bad_request':
      return new BadRequestError(err.reason);
    default:
      return new UnavailableError(err.reason, 'replication_failed');
  }
}
