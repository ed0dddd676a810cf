/**
 * Local documents (`/db/_local/id`): not replicated, no revision tree; their rev is
 * `0-N`, bumped on each write. Replicators keep their checkpoints here.
 */
import { BadRequestError, ConflictError, NotFoundError } from '../../../errors';
import { rangeFor } from '../../coordinator/doc-open';
import { renderDoc } from '../../../shard/render';
import type { Ctx } from '../context';
import { checkRev } from '../doc-input';
import { allow, openDb } from './common';

export async function localDoc(ctx: Ctx, dbName: string, localId: string): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'PUT', 'DELETE']);
  const db = await openDb(ctx, dbName);
  const id = '_local/' + localId;
  if (localId.length === 0) throw new BadRequestError('Local document id must not be empty', 'illegal_docid');
  const copies = rangeFor(db, id).copies;
  if (ctx.method === 'GET' || ctx.method === 'HEAD') {
    const doc = await copies[0]!.getLocal(id);
    if (!doc) throw new NotFoundError('missing');
    return ctx.send(200, renderDoc(id, doc.rev, doc.body));
  }
  let body: string | null = null;
  let rev = ctx.qString('rev');
  if (ctx.method === 'PUT') {
    const json = await ctx.readJsonObject(ctx.limits.docBytesMax);
    if (typeof json._rev === 'string') rev = json._rev;
    const clean: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(json)) if (key !== '_id' && key !== '_rev') clean[key] = value;
    if (json._deleted === true) body = null;
    else body = JSON.stringify(clean);
  } else if (rev === undefined) {
    throw new ConflictError();
  }
  if (rev !== undefined && !/^0-[0-9]+$/.test(rev)) checkRev(rev);
  if (body === null && ctx.method === 'PUT' && rev === undefined) throw new ConflictError();
  const results = await Promise.all(copies.map((copy) => copy.putLocal(id, body, rev)));
  const result = results[0]!;
  if (result.kind === 'conflict') {
    if (body === null) {
      const current = await copies[0]!.getLocal(id);
      if (!current) throw new NotFoundError('missing');
    }
    throw new ConflictError();
  }
  ctx.send(body === null ? 200 : 201, { ok: true, id, rev: result.rev });
}
