/**
 * Views over HTTP: `GET|POST /{db}/_design/{ddoc}/_view/{view}` (POST takes `keys` and
 * any parameter in its body), `POST .../_view/{view}/queries` (several queries in one
 * request), `GET /{db}/_design/{ddoc}/_info`, `POST /{db}/_view_cleanup` and
 * `POST /{db}/_compact/{ddoc}`. Answers stream in CouchDB's format.
 */
import { BadContentTypeError, BadRequestError, NotFoundError } from '../../../errors';
import { indexDef } from '../../../shard/index/design';
import type { DesignDocRef, ViewQuery } from '../../../shard/index/types';
import { readDocInfos } from '../../coordinator/doc-infos';
import { openRevsMany, plainRender, renderRowDoc } from '../../coordinator/doc-open';
import { streamViewReduce, streamViewRows } from '../../coordinator/view-query';
import { viewCleanup, viewCompact, viewInfo } from '../../coordinator/view-admin';
import type { DbHandle } from '../../coordinator/shard-client';
import { isPlainObject, type Ctx } from '../context';
import { readJsonObjectCapped } from '../json-scan';
import { checkAgainstView, parseViewQuery } from '../view-params';
import { allow, openDb } from './common';
import { openDesignDocRef } from './design';

/** `/{db}/_design/{name}/_view/{view}[/queries]`. */
export async function view(ctx: Ctx, dbName: string, ddocId: string, viewName: string | undefined, rest: string[]): Promise<void> {
  if (viewName === undefined || viewName === '') throw new NotFoundError('missing_named_view');
  const multi = rest.length === 1 && rest[0] === 'queries';
  if (rest.length > 0 && !multi) throw new NotFoundError('missing');
  allow(ctx, multi ? ['POST'] : ['GET', 'HEAD', 'POST']);
  const db = await openDb(ctx, dbName);
  const ddoc = await cachedDesignDoc(ctx, db, ddocId);
  const def = indexDef(ddoc, viewName).views.find((v) => v.name === viewName)!;
  const hasReduce = def.reduce !== undefined;
  const tooMany = () => new BadRequestError(`At most ${ctx.limits.keysMax} keys per request`);
  const tooManyQueries = () => new BadRequestError(`At most ${ctx.limits.queriesMax} queries per request`);
  // Keys (and queries) counted on the raw bytes: parsing millions of them would be the cost itself.
  const caps = multi
    ? [{ depth: 2, max: ctx.limits.queriesMax, tooMany: tooManyQueries }, { depth: 3, max: ctx.limits.keysMax, tooMany }]
    : [{ depth: 2, max: ctx.limits.keysMax, tooMany }];
  const body = ctx.method === 'POST' ? await readJsonObjectCapped(ctx, ...caps) : {};
  if (!multi) {
    const query = checkAgainstView(parseViewQuery({ query: ctx.query, url: ctx.req.url ?? '', body }, ctx.limits), { hasReduce });
    // The status goes out with the head, once every range has built its index: a build
    // that fails (a map function past its deadline) still answers a proper error.
    await writeViewAnswer(ctx, db, ddoc, viewName, query, () => ctx.startStream(200));
    ctx.end('\n');
    return;
  }
  const queries = body.queries;
  if (!Array.isArray(queries)) throw new BadRequestError('`queries` must be an array of query objects', 'bad_request');
  const parsed = queries.map((q) => {
    if (!isPlainObject(q)) throw new BadRequestError('each query must be an object', 'bad_request');
    return checkAgainstView(parseViewQuery({ query: ctx.query, url: ctx.req.url ?? '', body: q, precedence: 'body' }, ctx.limits), { hasReduce });
  });
  if (parsed.length === 0) return ctx.send(200, { results: [] });
  let started = false;
  for (let i = 0; i < parsed.length; i++) {
    await writeViewAnswer(ctx, db, ddoc, viewName, parsed[i]!, () => {
      if (!started) ctx.startStream(200);
      started = true;
    }, i === 0 ? '{"results":[' : ',');
  }
  ctx.end(']}\n');
}

/**
 * The design document from the node's design-document cache (kept current with the
 * design sequences of the copies, as for validate_doc_update); read directly when the
 * cache has none, so a missing or deleted one answers CouchDB's 404.
 */
async function cachedDesignDoc(ctx: Ctx, db: DbHandle, id: string): Promise<DesignDocRef> {
  const cached = await ctx.services.designDocs.designDoc(db, id, ctx.limits.quorumTimeoutMs);
  return cached ? { id, rev: cached.rev, body: cached.body } : openDesignDocRef(ctx, db, id);
}

/** One view answer object, streamed: `{"total_rows":..,"offset":..,"rows":[...]}` or `{"rows":[...]}`. */
async function writeViewAnswer(
  ctx: Ctx,
  db: DbHandle,
  ddoc: DesignDocRef,
  viewName: string,
  query: ViewQuery,
  start: () => void,
  before = '',
): Promise<void> {
  let first = true;
  const gone = () => {
    if (ctx.signal.aborted) throw new Error('client went away');
  };
  if (query.reduce) {
    await streamViewReduce(db, ddoc, viewName, query, ctx.services.js, {
      onHead: async (head) => {
        start();
        await ctx.write(before + '{' + (query.updateSeq ? '"update_seq":' + JSON.stringify(head.updateSeq) + ',' : '') + '"rows":[');
      },
      onRows: async (rows) => {
        gone();
        let chunk = '';
        for (const row of rows) {
          chunk += (first ? '\r\n' : ',\r\n') + '{"key":' + row.keyJson + ',"value":' + row.valueJson + '}';
          first = false;
        }
        await ctx.write(chunk);
      },
    });
    await ctx.write('\r\n]}');
    return;
  }
  const docOptions = { ...plainRender, conflicts: query.conflicts, attachments: query.attachments, attEncodingInfo: query.attEncodingInfo };
  await streamViewRows(db, ddoc, viewName, query, {
    onHead: async (head) => {
      start();
      await ctx.write(
        before + '{"total_rows":' + head.totalRows + ',"offset":' + (head.offset === null ? 'null' : head.offset) +
          (query.updateSeq ? ',"update_seq":' + JSON.stringify(head.updateSeq) : '') + ',"rows":[',
      );
    },
    onRows: async (rows) => {
      gone();
      // Inline attachments need the coordinator's renderer: fetch those docs here.
      if (query.includeDocs && query.attachments) {
        const docs = await fetchDocs(ctx, db, rows.map((r) => r.id), docOptions);
        rows.forEach((row, i) => (row.doc = row.doc === undefined || row.doc === null ? row.doc : docs[i]!));
      }
      let chunk = '';
      for (const row of rows) {
        chunk += (first ? '\r\n' : ',\r\n') + '{"id":' + JSON.stringify(row.id) + ',"key":' + row.keyJson + ',"value":' + row.valueJson;
        if (query.includeDocs) chunk += ',"doc":' + (row.doc ?? 'null');
        chunk += '}';
        first = false;
      }
      await ctx.write(chunk);
    },
    fetchDocs: (ids) => fetchDocs(ctx, db, ids, docOptions),
  });
  await ctx.write('\r\n]}');
}

/** Winning revisions of documents anywhere in the database, rendered (null when missing or deleted). */
async function fetchDocs(ctx: Ctx, db: DbHandle, ids: string[], options: typeof plainRender & { conflicts: boolean; attachments: boolean; attEncodingInfo: boolean }): Promise<(string | null)[]> {
  const infos = await readDocInfos(db, ids, { timeoutMs: ctx.limits.quorumTimeoutMs });
  const live = infos.map((info, i) => (info && !info.winner.deleted ? i : -1)).filter((i) => i >= 0);
  const opened = await openRevsMany(db, live.map((i) => ({ info: infos[i]!, revs: [infos[i]!.winner.rev], latest: false, options })));
  const out: (string | null)[] = ids.map(() => null);
  for (let j = 0; j < live.length; j++) {
    const result = opened[j]![0];
    if (result?.kind === 'ok') out[live[j]!] = await renderRowDoc(db, result.doc, options);
  }
  return out;
}

/** `GET /{db}/_design/{name}/_info`. */
export async function designInfo(ctx: Ctx, dbName: string, ddocId: string): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  const db = await openDb(ctx, dbName);
  const ddoc = await openDesignDocRef(ctx, db, ddocId);
  ctx.send(200, { name: ddocId.slice('_design/'.length), view_index: await viewInfo(db, ddoc) });
}

/** `POST /{db}/_view_cleanup`: drop index files no current design document uses. */
export async function viewCleanupRoute(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['POST']);
  requireJson(ctx);
  const db = await openDb(ctx, dbName);
  await viewCleanup(db);
  ctx.send(202, { ok: true });
}

/** `POST /{db}/_compact/{ddoc}`: each copy catches its index up and compacts its key range, in the background. */
export async function compactDesign(ctx: Ctx, dbName: string, ddocName: string): Promise<void> {
  allow(ctx, ['POST']);
  requireJson(ctx);
  const db = await openDb(ctx, dbName);
  const ddoc = await openDesignDocRef(ctx, db, '_design/' + ddocName);
  indexDef(ddoc);
  viewCompact(db, ddoc, (err) => ctx.services.log.warn({ component: 'views', db: dbName, ddoc: ddoc.id, err: String(err) }, 'view compaction failed'));
  ctx.send(202, { ok: true });
}

function requireJson(ctx: Ctx): void {
  const type = (ctx.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new BadContentTypeError();
}
