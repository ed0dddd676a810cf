/**
 * Mango over HTTP: `POST /{db}/_find` (streams `{"docs":[...],"bookmark":...}`),
 * `POST /{db}/_explain`, `GET|POST /{db}/_index`, `DELETE /{db}/_index/{ddoc}/json/{name}`
 * and `POST /{db}/_index/_bulk_delete`, in CouchDB 3.5's formats.
 */
import { performance } from 'node:perf_hooks';
import { BadRequestError, NotFoundError } from '../../../errors';
import { createIndex, deleteIndex } from '../../coordinator/find/indexes';
import { runFind, type FindOutcome } from '../../coordinator/find/execute';
import { indexJson, mangoIndexes, plan, type FindPlan, type MangoIndex } from '../../coordinator/find/plan';
import type { DbHandle } from '../../coordinator/shard-client';
import { toJson } from '../../../shard/query/mango-normal';
import type { FindKeyRange } from '../../../shard/index/types';
import type { Ctx } from '../context';
import { parseFindParams, parseIndexSpec, type FindParams } from '../find-params';
import { allow, openDb } from './common';

/** `/{db}/_index[/...]`. */
export async function indexRoute(ctx: Ctx, dbName: string, rest: string[]): Promise<void> {
  if (rest.length === 0) {
    allow(ctx, ['GET', 'POST']);
    const db = await openDb(ctx, dbName);
    return ctx.method === 'GET' ? listIndexes(ctx, db) : postIndex(ctx, db);
  }
  if (rest.length === 1 && rest[0] === '_bulk_delete') {
    allow(ctx, ['POST']);
    return bulkDelete(ctx, await openDb(ctx, dbName));
  }
  // `{ddoc}/json/{name}`, or `_design/{ddoc}/json/{name}` with the slash not encoded.
  const parts = rest.length === 4 && rest[0] === '_design' ? [`_design/${rest[1]}`, rest[2]!, rest[3]!] : rest;
  allow(ctx, ['DELETE']);
  if (parts.length !== 3) throw new NotFoundError('missing');
  const db = await openDb(ctx, dbName);
  const [ddoc, type, name] = parts as [string, string, string];
  if (type !== 'json') throw new NotFoundError('missing');
  await deleteIndex(db, designId(ddoc), name, writeOptions(ctx));
  ctx.send(200, { ok: true });
}

/** `POST /{db}/_find` and `POST /{db}/_explain`. */
export async function findRoute(ctx: Ctx, dbName: string, explain: boolean): Promise<void> {
  allow(ctx, ['POST']);
  const started = performance.now();
  ctx.requireJsonType();
  const db = await openDb(ctx, dbName);
  const params = parseFindParams(await ctx.readJsonObject(), ctx.limits);
  const planned = await planFor(ctx, db, params);
  if (explain) return ctx.send(200, explainBody(db, params, planned));
  const update = params.stale === 'ok' || !params.update ? 'false' : 'true';
  // The answer is gathered up to BUFFER_BYTES and sent in one write with a length (most
  // answers: one syscall, no chunking); a bigger one streams from there on.
  let first = true;
  let streaming = false;
  let pending = '{"docs":[';
  const flush = async () => {
    if (!streaming) ctx.startStream(200);
    streaming = true;
    const text = pending;
    pending = '';
    await ctx.write(text);
  };
  const outcome: FindOutcome = await runFind(db, planned, { selector: params.selector, fields: params.fields, limit: params.limit, skip: params.skip, bookmark: params.bookmark, conflicts: params.conflicts, update, r: params.r, timeoutMs: ctx.limits.quorumTimeoutMs }, async (docs) => {
    if (ctx.signal.aborted) throw new Error('client went away');
    for (const doc of docs) {
      pending += (first ? '\r\n' : ',\r\n') + doc;
      first = false;
    }
    if (pending.length >= BUFFER_BYTES) await flush();
  });
  ctx.services.onFind?.(planned.index.type === 'json' ? 'json' : '_all_docs', outcome.docsExamined + outcome.quorumDocsExamined);
  const warnings = [...planned.warnings];
  const ratio = ctx.limits.findScanWarningRatio;
  if (ratio > 0 && outcome.docsExamined + outcome.quorumDocsExamined > ratio * Math.max(1, outcome.resultsReturned)) {
    warnings.push('The number of documents examined is high in proportion to the number of results returned. Consider adding a more specific index to improve this.');
  }
  let tail = '\r\n],\r\n"bookmark":' + JSON.stringify(outcome.bookmark);
  if (params.executionStats) {
    const stats = {
      total_keys_examined: outcome.keysExamined,
      total_docs_examined: outcome.docsExamined,
      total_quorum_docs_examined: outcome.quorumDocsExamined,
      results_returned: outcome.resultsReturned,
      execution_time_ms: Math.round((performance.now() - started) * 1000) / 1000,
    };
    tail += ',\r\n"execution_stats":' + JSON.stringify(stats);
  }
  if (warnings.length > 0) tail += ',\r\n"warning":' + JSON.stringify(warnings.join('\n'));
  pending += tail + '}\r\n';
  if (streaming) return ctx.end(pending);
  ctx.sendBytes(200, Buffer.from(pending, 'utf8'), { 'Content-Type': 'application/json' });
}

/** Answer bytes gathered before the response starts streaming. */
const BUFFER_BYTES = 64 * 1024;

/** The plan, from the node's design-document cache (read again once when `use_index` names an index it lacks). */
async function planFor(ctx: Ctx, db: DbHandle, params: FindParams): Promise<FindPlan> {
  const input = { selector: params.selector, sort: params.sort, fields: params.fields, useIndex: params.useIndex, allowFallback: params.allowFallback, conflicts: params.conflicts };
  let indexes = await indexesOf(ctx, db);
  const names = (i: MangoIndex) => i.ddoc === params.useIndex[0] && (params.useIndex.length === 1 || i.name === params.useIndex[1]);
  if (params.useIndex.length > 0 && !indexes.some(names)) {
    // Made through another node a moment ago: its design document may not be cached yet.
    // Only the copies' design sequences are asked again; nothing reloads unless one moved.
    ctx.services.designDocs.recheck(db.uuid);
    indexes = await indexesOf(ctx, db);
  }
  return plan(input, indexes, { rangesMax: ctx.limits.findRangesMax });
}

async function indexesOf(ctx: Ctx, db: DbHandle): Promise<MangoIndex[]> {
  return mangoIndexes(await ctx.services.designDocs.designDocRefs(db, ctx.limits.quorumTimeoutMs));
}

async function listIndexes(ctx: Ctx, db: DbHandle): Promise<void> {
  const all = await indexesOf(ctx, db);
  const limit = listParam(ctx, 'limit', 1);
  const skip = listParam(ctx, 'skip', 0) ?? 0;
  const shown = all.slice(skip, limit === undefined ? undefined : skip + limit);
  ctx.send(200, { total_rows: all.length, indexes: shown.map(indexJson) });
}

function listParam(ctx: Ctx, name: string, min: number): number | undefined {
  const raw = ctx.query.get(name);
  if (raw === null) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min) throw new BadRequestError(`Index parameter ranges: limit >= 1, skip >= 0 (${name}=${raw})`, 'invalid_list_index_params');
  return value;
}

async function postIndex(ctx: Ctx, db: DbHandle): Promise<void> {
  ctx.requireJsonType();
  const spec = parseIndexSpec(await ctx.readJsonObject());
  const result = await createIndex(db, spec, writeOptions(ctx, spec.w));
  ctx.send(200, result);
}

async function bulkDelete(ctx: Ctx, db: DbHandle): Promise<void> {
  ctx.requireJsonType();
  const body = await ctx.readJsonObject();
  const ids = body.docids;
  if (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string' || id === '')) {
    throw new BadRequestError(`Bulk Delete requires an array of non-null docids. Docids: ${(JSON.stringify(ids) ?? 'undefined').slice(0, 100)}`, 'invalid_bulk_docs');
  }
  if (ids.length > ctx.limits.bulkDocsMax) throw new BadRequestError(`At most ${ctx.limits.bulkDocsMax} docids per _bulk_delete`, 'invalid_bulk_docs');
  const success: { id: string; ok: true }[] = [];
  const fail: { id: string; error: string }[] = [];
  for (const raw of ids as string[]) {
    const id = designId(raw);
    try {
      await deleteIndex(db, id, undefined, writeOptions(ctx));
      success.push({ id, ok: true });
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      fail.push({ id, error: 'not_found' });
    }
  }
  ctx.send(200, { success, fail });
}

function designId(ddoc: string): string {
  return ddoc.startsWith('_design/') ? ddoc : `_design/${ddoc}`;
}

function writeOptions(ctx: Ctx, w?: number) {
  const query = ctx.qInt('w', 0) || undefined;
  const chosen = w ?? query;
  return { timeoutMs: ctx.limits.quorumTimeoutMs, validate: ctx.validation, ...(chosen ? { w: chosen } : {}) };
}

/** CouchDB's `_explain` body, plus the ranges every copy reads. */
function explainBody(db: DbHandle, params: FindParams, planned: FindPlan): Record<string, unknown> {
  const fields = params.fields ?? [];
  const first = planned.ranges[0];
  const last = planned.ranges[planned.ranges.length - 1];
  const special = planned.index.type === 'special';
  const startKey = planned.nothing ? null : first?.start !== undefined ? shownBound(first.start, first.startMax) : special ? null : [];
  const endKey = planned.nothing ? null : last?.end !== undefined ? shownBound(last.end, last.endMax) : special ? '<MAX>' : ['<MAX>'];
  return {
    dbname: db.name,
    index: indexJson(planned.index),
    partitioned: false,
    selector: toJson(planned.normal),
    opts: {
      use_index: params.useIndex.map((p, i) => (i === 0 ? p.slice('_design/'.length) : p)),
      bookmark: params.bookmark ?? 'nil',
      limit: params.limit,
      skip: params.skip,
      sort: Object.fromEntries(params.sort.map((s) => [s.field, s.dir])),
      fields,
      partition: '',
      r: params.r,
      conflicts: params.conflicts,
      stale: params.stale,
      update: params.update,
      stable: params.stable,
      execution_stats: params.executionStats,
      allow_fallback: params.allowFallback,
    },
    limit: params.limit,
    skip: params.skip,
    fields,
    index_candidates: planned.candidates().map((c) => ({
      index: indexJson(c.index),
      analysis: { usable: c.usable, reasons: [{ name: c.reason }], ranking: c.ranking, covering: c.covering },
    })),
    selector_hints: [{ type: 'json', indexable_fields: planned.hints.indexable, unindexable_fields: planned.hints.unindexable }],
    mrargs: {
      include_docs: !planned.covering,
      view_type: 'map',
      reduce: false,
      partition: null,
      start_key: startKey,
      end_key: endKey,
      direction: planned.descending ? 'rev' : 'fwd',
      stable: params.stable || params.stale === 'ok',
      update: params.stale === 'ok' ? false : params.update,
      conflicts: params.conflicts ? true : 'undefined',
    },
    covering: planned.covering,
    // Beyond CouchDB: every range the copies read (several for `$in` and `$or`), in scan order.
    ranges: planned.ranges.map(shownRange),
  };
}

function shownBound(value: unknown, max: boolean | undefined): unknown {
  if (!max) return value;
  return Array.isArray(value) ? [...value, '<MAX>'] : value;
}

function shownRange(range: FindKeyRange): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (range.start !== undefined) out.start_key = shownBound(range.start, range.startMax);
  if (range.end !== undefined) out.end_key = shownBound(range.end, range.endMax);
  out.inclusive_end = range.inclusiveEnd;
  return out;
}
