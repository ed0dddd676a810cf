/**
 * `_all_docs` (GET, and POST with `keys`), `_design_docs` and `_local_docs`, streamed
 * row by row in CouchDB's format.
 */
import { BadRequestError } from '../../../errors';
import { streamAllDocs, streamLocalDocs, totalRows } from '../../coordinator/all-docs';
import { encodeSeq, currentSeq } from '../../coordinator/changes';
import { readDocInfos } from '../../coordinator/doc-infos';
import { openRevsMany, plainRender, renderRowDoc } from '../../coordinator/doc-open';
import { renderDoc } from '../../../shard/render';
import type { DbHandle } from '../../coordinator/shard-client';
import type { Ctx } from '../context';
import { readJsonObjectCapped } from '../json-scan';
import { allow, keyRangeParams, KeyRangeParams, openDb } from './common';

type Which = 'all' | 'design' | 'local';

export async function allDocs(ctx: Ctx, dbName: string, which: Which): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'POST']);
  const db = await openDb(ctx, dbName);
  const tooManyKeys = () => new BadRequestError(`At most ${ctx.limits.keysMax} keys per request`);
  // Keys counted on the raw bytes: parsing millions of them would be the cost itself.
  const body = ctx.method === 'POST' ? await readJsonObjectCapped(ctx, { depth: 2, max: ctx.limits.keysMax, tooMany: tooManyKeys }) : {};
  const keys = body.keys ?? ctx.qJson('keys');
  const range = keyRangeParams(ctx, body);
  const includeDocs = typeof body.include_docs === 'boolean' ? body.include_docs : ctx.qBool('include_docs', false);
  const conflicts = typeof body.conflicts === 'boolean' ? body.conflicts : ctx.qBool('conflicts', false);
  const updateSeq = ctx.qBool('update_seq', false);
  const docOptions = rowDocOptions(ctx, body);
  if (which === 'design') {
    range.startKey = maxKey('_design/', range.startKey, range.descending);
    range.endKey = minKey('_design0', range.endKey, range.descending);
    if (range.endKey === '_design0') range.inclusiveEnd = false;
  }

  const head =
    '{"total_rows":' + (which === 'local' ? 'null' : await totalRows(db)) +
    ',"offset":' + (range.startKey === undefined || which !== 'all' ? range.skip : 'null') +
    (updateSeq ? ',"update_seq":' + JSON.stringify(encodeSeq(db, await currentSeq(db))) : '') +
    ',"rows":[';
  if (keys !== undefined) {
    if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string')) throw new BadRequestError('`keys` must be an array of strings', 'bad_request');
    if (keys.length > 0 && range.keyBounded) {
      throw new BadRequestError('`keys` is incompatible with `key`, `start_key` and `end_key`', 'query_parse_error');
    }
    if (keys.length > ctx.limits.keysMax) throw tooManyKeys();
    return sendKeys(ctx, db, keys as string[], { head, includeDocs, conflicts, range, docOptions });
  }

  ctx.startStream(200);
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
  ctx.end('\r\n]}\n');
}

/** Characters of rows gathered before a write while a batch is rendered. */
const ROW_CHUNK_CHARS = 64 * 1024;

/** `attachments` and `att_encoding_info` for rows with `include_docs`, from the body (POST) or the query. */
function rowDocOptions(ctx: Ctx, body: Record<string, unknown>): { attachments: boolean; attEncodingInfo: boolean } {
  const flag = (name: string) => (typeof body[name] === 'boolean' ? (body[name] as boolean) : ctx.qBool(name, false));
  return { attachments: flag('attachments'), attEncodingInfo: flag('att_encoding_info') };
}

function maxKey(floor: string, key: string | undefined, descending: boolean): string | undefined {
  if (descending) return key === undefined ? undefined : key;
  return key === undefined || key < floor ? floor : key;
}

function minKey(ceiling: string, key: string | undefined, descending: boolean): string | undefined {
  if (descending) return key;
  return key === undefined || key > ceiling ? ceiling : key;
}

async function sendKeys(
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
): Promise<void> {
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
  ctx.send(200, options.head + (rows.length ? '\r\n' + rows.join(',\r\n') : '') + '\r\n]}');
}
