/**
 * Storage lifecycle endpoints of a database: `POST /{db}/_compact`, `POST /{db}/_purge`,
 * `GET /{db}/_purged_infos` and `GET/PUT /{db}/_purged_infos_limit`, with CouchDB's statuses and bodies. Who may
 * call them is the policy table's (auth/policy.ts); the work is the copies' (shard/
 * compaction.ts, shard/purge.ts) and the coordinator's (coordinator/purge.ts).
 */
import { BadContentTypeError, BadRequestError } from '../../../errors';
import { isPlainObject } from '../../../json';
import { purgeDocs } from '../../coordinator/purge';
import { firstLiveState } from '../../coordinator/range-read';
import { parseRev } from '../../../shard/rev-tree';
import type { Ctx } from '../context';
import { allow, openDb } from './common';

function requireJson(ctx: Ctx): void {
  const type = (ctx.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new BadContentTypeError();
}

/** `POST /{db}/_compact`: every copy of every range starts compacting in the background. */
export async function compactDb(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['POST']);
  requireJson(ctx);
  const db = await openDb(ctx, dbName);
  const started = await Promise.allSettled(db.ranges.flatMap((range) => range.copies.map((copy) => copy.compact())));
  for (const outcome of started) {
    if (outcome.status === 'rejected') ctx.services.log.warn({ component: 'compaction', db: dbName, err: String(outcome.reason) }, 'a copy could not start compacting');
  }
  ctx.send(202, { ok: true });
}

/** `POST /{db}/_purge {"docid": ["rev", ...]}`. */
export async function purge(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['POST']);
  requireJson(ctx);
  const db = await openDb(ctx, dbName);
  const body = await ctx.readJson();
  if (!isPlainObject(body)) throw new BadRequestError('Request body must be a JSON object');
  const limits = ctx.services.node.purge;
  const wanted = new Map<string, string[]>();
  let revCount = 0;
  for (const [id, revs] of Object.entries(body)) {
    if (!Array.isArray(revs) || revs.some((rev) => typeof rev !== 'string')) throw new BadRequestError(`Revisions of ${JSON.stringify(id)} must be an array of revision strings`);
    for (const rev of revs as string[]) parseRev(rev);
    revCount += revs.length;
    wanted.set(id, revs as string[]);
  }
  if (wanted.size > limits.docsMax) throw new BadRequestError('Exceeded maximum number of documents.');
  if (revCount > limits.revsMax) throw new BadRequestError('Exceeded maximum number of revisions.');
  const w = ctx.query.get('w');
  const answer = await purgeDocs(db, wanted, { timeoutMs: ctx.limits.quorumTimeoutMs, ...(w && /^[1-9][0-9]*$/.test(w) ? { w: Number(w) } : {}) });
  ctx.services.onPurged?.(Object.values(answer.purged).reduce((sum, revs) => sum + revs.length, 0));
  ctx.send(answer.quorum ? 201 : 202, { purge_seq: null, purged: answer.purged });
}

/**
 * `GET /{db}/_purged_infos` (CouchDB 3.4+): the purge requests the database still
 * remembers, per document id the revisions asked for, from one live copy of each
 * range (every copy holds the same requests once synced), at most `rowsMax`.
 */
export async function purgedInfos(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['GET']);
  const db = await openDb(ctx, dbName);
  const cap = ctx.limits.rowsMax;
  const perRange = await Promise.all(db.ranges.map((range) => firstLiveState(range.copies, (copy) => copy.purgeInfos(0, cap))));
  const out: { id: string; revs: string[] }[] = [];
  for (const infos of perRange) for (const info of infos) if (out.length < cap) out.push({ id: info.id, revs: info.revs });
  ctx.send(200, { purged_infos: out });
}

/** `GET/PUT /{db}/_purged_infos_limit`: purge requests each copy remembers. */
export async function purgedInfosLimit(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['GET', 'PUT']);
  const db = await openDb(ctx, dbName);
  if (ctx.method === 'GET') return ctx.send(200, String(db.purgedInfosLimit ?? ctx.services.node.purge.infosLimit));
  const value = await ctx.readJson();
  if (!Number.isSafeInteger(value) || (value as number) < 1) throw new BadRequestError('`purged_infos_limit` must be positive integer');
  await ctx.services.directory.setPurgedInfosLimit(dbName, value as number);
  ctx.send(200, { ok: true });
}
