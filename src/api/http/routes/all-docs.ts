/**
 * `_all_docs` (GET, and POST with `keys`), `_design_docs` and `_local_docs`, streamed
 * row by row in CouchDB's format; and their `/queries` forms (POST
 * `{"queries":[q1, q2, ...]}`), which answer `{"results":[r1, r2, ...]}`, one result
 * object per query, in order. Both forms parse a query with `parseAllDocsQuery` and
 * write its result object with `prepareAllDocs`.
 */
import { BadRequestError } from '../../../errors';
import { streamAllDocs, streamLocalDocs, totalRows } from '../../coordinator/all-docs';
import { encodeSeq, currentSeq } from '../../coordinator/changes';
import { readDocInfos } from '../../coordinator/doc-infos';
import { openRevsMany, plainRender, renderRowDoc } from '../../coordinator/doc-open';
import { renderDoc } from '../../../shard/render';
import type { DbHandle } from '../../coordinator/shard-client';
import { isPlainObject, type Ctx } from '../context';
import { readJsonObjectCapped } from '../json-scan';
import { allow, boolParam, keyRangeParams, KeyRangeParams, openDb } from './common';

type Which = 'all' | 'design' | 'local';

/** One `_all_docs` query, parsed and checked. */
interface AllDocsQuery {
  /** `keys`: the ids to read, in order (the range then only gives skip, limit, descending). */
  keys?: string[];
  range: KeyRangeParams;
  includeDocs: boolean;
  conflicts: boolean;
  updateSeq: boolean;
  docOptions: { attachments: boolean; attEncodingInfo: boolean };
}

const tooManyKeys = (ctx: Ctx) => new BadRequestError(`At most ${ctx.limits.keysMax} keys per request`);

export async function allDocs(ctx: Ctx, dbName: string, which: Which): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'POST']);
  const db = await openDb(ctx, dbName);
  // Keys counted on the raw bytes: parsing millions of them would be the cost itself.
  const body = ctx.method === 'POST' ? await readJsonObjectCapped(ctx, { depth: 2, max: ctx.limits.keysMax, tooMany: () => tooManyKeys(ctx) }) : {};
  const query = parseAllDocsQuery(ctx, which, body, body.keys ?? ctx.qJson('keys'));
  const write = await prepareAllDocs(ctx, db, which, query);
  ctx.startStream(200);
  await write();
  ctx.end('\n');
}

/**
 * POST `/{db}/_all_docs/queries` (and `_design_docs`, `_local_docs`): each entry is
 * one query object, on top of the request's query string (an entry's parameter wins;
 * `keys` come from the entry alone, as in CouchDB). Every entry is parsed before the
 * first byte goes out, so a bad one is a 400; the results are then streamed one after
 * the other. At most `queriesMax` entries, and `keysMax` keys over all of them.
 */
export async function allDocsQueries(ctx: Ctx, dbName: string, which: Which): Promise<void> {
  allow(ctx, ['POST']);
  const db = await openDb(ctx, dbName);
  const tooManyQueries = () => new BadRequestError(`At most ${ctx.limits.queriesMax} queries per request`);
  const body = await readJsonObjectCapped(
    ctx,
    { depth: 2, max: ctx.limits.queriesMax, tooMany: tooManyQueries },
    // body → queries → one entry → its keys
    { depth: 4, max: ctx.limits.keysMax, tooMany: () => tooManyKeys(ctx) },
  );
  const entries = body.queries;
  if (entries === undefined) throw new BadRequestError('POST body must include `queries` parameter.');
  if (!Array.isArray(entries)) throw new BadRequestError('`queries` member must be an array.');
  if (entries.length > ctx.limits.queriesMax) throw tooManyQueries();
  const queries = entries.map((entry) => {
    if (!isPlainObject(entry)) throw new BadRequestError('Each member of `queries` must be a JSON object.');
    return parseAllDocsQuery(ctx, which, entry, entry.keys);
  });
  if (queries.reduce((n, q) => n + (q.keys?.length ?? 0), 0) > ctx.limits.keysMax) throw tooManyKeys(ctx);
  // The first result is prepared before the status goes out, as a single query's is.
  let write = queries.length > 0 ? await prepareAllDocs(ctx, db, which, queries[0]!) : undefined;
  ctx.startStream(200);
  await ctx.write('{"results":[');
  for (let i = 0; i < queries.length; i++) {
    if (ctx.signal.aborted) return;
    if (i > 0) write = await prepareAllDocs(ctx, db, which, queries[i]!);
    await ctx.write(i === 0 ? '\r\n' : ',\r\n');
    await write!();
  }
  ctx.end('\r\n]}\n');
}

/**
 * One query's parameters: `body` (a POST body or a `queries` entry) first, the query
 * string for what it does not say; `keys` as the caller found them.
 */
function parseAllDocsQuery(ctx: Ctx, which: Which, body: Record<string, unknown>, keys: unknown): AllDocsQuery {
  const range = keyRangeParams(ctx, body);
  const flag = (name: string) => boolParam(ctx, body, name, false);
  if (which === 'design') {
    // Design ids lie between `_design/` and `_design0` ('0' follows '/'); neither bound
    // is a valid id. A descending scan starts at the high one.
    if (!range.descending) {
      range.startKey = maxKey(DESIGN_LOW, range.startKey);
      range.endKey = minKey(DESIGN_HIGH, range.endKey);
      if (range.endKey === DESIGN_HIGH) range.inclusiveEnd = false;
    } else {
      range.startKey = minKey(DESIGN_HIGH, range.startKey);
      range.endKey = maxKey(DESIGN_LOW, range.endKey);
    }
  }
  if (keys !== undefined) {
    if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string')) throw new BadRequestError('`keys` must be an array of strings', 'bad_request');
    if (keys.length > 0 && range.keyBounded) {
      throw new BadRequestError('`keys` is incompatible with `key`, `start_key` and `end_key`', 'query_parse_error');
    }
    if (keys.length > ctx.limits.keysMax) throw tooManyKeys(ctx);
  }
  const query: AllDocsQuery = {
    range,
    includeDocs: flag('include_docs'),
    conflicts: flag('conflicts'),
    updateSeq: flag('update_seq'),
    docOptions: { attachments: flag('attachments'), attEncodingInfo: flag('att_encoding_info') },
  };
  if (keys !== undefined) query.keys = keys as string[];
  return query;
}

/**
 * Everything of one query that may fail with a status of its own (the row count, the
 * update seq, and for `keys` the reads themselves), then a writer that sends its result
 * object, `{"total_rows":..,"offset":..,"rows":[...]}`, on a started stream.
 */
async function prepareAllDocs(ctx: Ctx, db: DbHandle, which: Which, query: AllDocsQuery): Promise<() => Promise<void>> {
  const { range, includeDocs, conflicts, docOptions } = query;
  const head =
    '{"total_rows":' + (which === 'local' ? 'null' : await totalRows(db)) +
    ',"offset":' + (range.startKey === undefined || which !== 'all' ? range.skip : 'null') +
    (query.updateSeq ? ',"update_seq":' + JSON.stringify(encodeSeq(db, await currentSeq(db))) : '') +
    ',"rows":[';
  if (query.keys !== undefined) {
    const text = await keysResult(ctx, db, query.keys, { head, includeDocs, conflicts, range, docOptions });
    return async () => {
      await ctx.write(text);
    };
  }
  return () => streamRange(ctx, db, which, head, query);
}

async function streamRange(ctx: Ctx, db: DbHandle, which: Which, head: string, query: AllDocsQuery): Promise<void> {
  const { range, includeDocs, conflicts, docOptions } = query;
  let first = true;
  await ctx.write(head);
  const options = {
    inclusiveEnd: range.inclusiveEnd,
    descending: range.descending,
    limit: range.limit,
    skip: range.skip,
    includeDocs,
    conflicts,
    ...(range.startKey !== undefined ? { startKey: range.startKey } : {}),
    ...(range.endKey !== undefined ? { endKey: range.endKey } : {}),
  };
  if (which === 'local') {
    await streamLocalDocs(db, options, async (rows) => {
      let chunk = '';
      for (const row of rows) {
        chunk += (first ? '\r\n' : ',\r\n') + '{"id":' + JSON.stringify(row.id) + ',"key":' + JSON.stringify(row.id) + ',"value":{"rev":"' + row.rev + '"}';
        if (includeDocs) chunk += ',"doc":' + renderDoc(row.id, row.rev, row.body);
        chunk += '}';
        first = false;
      }
      await ctx.write(chunk);
    });
  } else {
    await streamAllDocs(db, options, async (rows) => {
      if (ctx.signal.aborted) throw new Error('client went away');
      let chunk = '';
      for (const row of rows) {
        const id = row.idJson;
        chunk += (first ? '\r\n' : ',\r\n') + '{"id":' + id + ',"key":' + id + ',"value":{"rev":"' + row.rev + '"}';
        if (row.doc !== undefined) chunk += ',"doc":' + (await renderRowDoc(db, row.doc, docOptions));
        chunk += '}';
        first = false;
        // Rows with inline attachments can be large: write them out one by one.
        if (chunk.length >= ROW_CHUNK_CHARS) {
          await ctx.write(chunk);
          chunk = '';
        }
      }
      await ctx.write(chunk);
    });
  }
  await ctx.write('\r\n]}');
}

/** Characters of rows gathered before a write while a batch is rendered. */
const ROW_CHUNK_CHARS = 64 * 1024;

const DESIGN_LOW = '_design/';
const DESIGN_HIGH = '_design0';

function maxKey(floor: string, key: string | undefined): string {
  return key === undefined || key < floor ? floor : key;
}

function minKey(ceiling: string, key: string | undefined): string {
  return key === undefined || key > ceiling ? ceiling : key;
}

/** The result object of a `keys` query, read in full (at most keysMax ids). */
async function keysResult(
  ctx: Ctx,
  db: DbHandle,
  keys: string[],
  options: {
    head: string;
    includeDocs: boolean;
    conflicts: boolean;
    range: KeyRangeParams;
    docOptions: { attachments: boolean; attEncodingInfo: boolean };
  },
): Promise<string> {
  const ordered = options.range.descending ? [...keys].reverse() : keys;
  const selected = ordered.slice(options.range.skip, options.range.skip + options.range.limit);
  const infos = await readDocInfos(db, selected, { timeoutMs: ctx.limits.quorumTimeoutMs });
  const live = infos.flatMap((info) => (info && !info.winner.deleted ? [info] : []));
  const docs = options.includeDocs
    ? await openRevsMany(
        db,
        live.map((info) => ({
          info,
          revs: [info.winner.rev],
          latest: false,
          options: { ...plainRender, conflicts: options.conflicts, ...options.docOptions },
        })),
      )
    : [];
  let at = 0;
  const rows: string[] = [];
  for (let i = 0; i < selected.length; i++) {
    const key = JSON.stringify(selected[i]);
    const info = infos[i];
    if (!info) {
      rows.push('{"key":' + key + ',"error":"not_found"}');
      continue;
    }
    const rev = info.winner.rev;
    if (info.winner.deleted) {
      rows.push('{"id":' + key + ',"key":' + key + ',"value":{"rev":"' + rev + '","deleted":true}' + (options.includeDocs ? ',"doc":null' : '') + '}');
      continue;
    }
    let row = '{"id":' + key + ',"key":' + key + ',"value":{"rev":"' + rev + '"}';
    if (options.includeDocs) {
      const opened = docs[at++]![0]!;
      row += ',"doc":' + (opened.kind === 'ok' ? opened.doc : 'null');
    }
    rows.push(row + '}');
  }
  return options.head + (rows.length ? '\r\n' + rows.join(',\r\n') : '') + '\r\n]}';
}
