/**
 * Local documents (`/db/_local/id`): not replicated, no revision tree; their rev is
 * `0-N`, bumped on each write. Replicators keep their checkpoints here.
 */
import { BadRequestError, ConflictError } from '../../../errors';
import { getLocal, putLocal } from '../../coordinator/local-docs';
import { renderDoc } from '../../../shard/render';
import { stringifyJson } from '../../../json';
import type { Ctx } from '../context';
import { allow, openDb } from './common';

export async function localDoc(ctx: Ctx, dbName: string, localId: string): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'PUT', 'DELETE']);
  const db = await openDb(ctx, dbName);
  if (localId.length === 0) throw new BadRequestError('Local document id must not be empty', 'illegal_docid');
  const id = '_local/' + localId;
  if (ctx.method === 'GET' || ctx.method === 'HEAD') {
    const doc = await getLocal(db, id);
    return ctx.send(200, renderDoc(id, doc.rev, doc.body));
  }
  // As for documents: `?rev=`, then `If-Match`, then `_rev` in the body.
  let rev = ctx.qString('rev') ?? ctx.header('if-match')?.replace(/^"|"$/g, '');
  let body: string | null = null;
  if (ctx.method === 'PUT') {
    const json = await ctx.readJsonObject(ctx.limits.docBytesMax, { exact: true });
    if (typeof json._rev === 'string') rev = json._rev;
    if (json._deleted !== true) {
      const fields: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(json)) if (key !== '_id' && key !== '_rev') fields[key] = value;
      body = stringifyJson(fields);
    }
  }
  if (rev !== undefined && !LOCAL_REV.test(rev)) throw new BadRequestError('Invalid rev format');
  if (body === null && rev === undefined) throw new ConflictError();
  const newRev = await putLocal(db, id, body, rev);
  ctx.send(body === null ? 200 : 201, { ok: true, id, rev: newRev });
}

const LOCAL_REV = /^0-[0-9]{1,15}$/;
