/**
 * Local documents (`/db/_local/id`): not replicated, no revision tree; their rev is
 * `0-N`, bumped on each write. Replicators keep their checkpoints here.
 */
import { BadRequestError, ConflictError } from '../../../errors';
import { getLocal, putLocal } from '../../coordinator/local-docs';
import { renderDoc } from '../../../shard/render';
import type { Ctx } from '../context';
import { checkLocalRev, parseLocalDoc } from '../doc-input';
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
    const parsed = parseLocalDoc(json, ctx.limits);
    rev = parsed.rev ?? rev;
    body = parsed.body;
  }
  if (rev !== undefined) checkLocalRev(rev);
  if (body === null && rev === undefined) throw new ConflictError();
  const newRev = await putLocal(db, id, body, rev);
  ctx.send(body === null ? 200 : 201, { ok: true, id, rev: newRev });
}

/** `/db/_local/id/name`: CouchDB refuses attachments on local docs, whatever the method. */
export async function localAttachment(ctx: Ctx, dbName: string): Promise<void> {
  await openDb(ctx, dbName);
  throw new BadRequestError('_local documents do not accept attachments.');
}
