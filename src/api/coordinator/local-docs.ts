/**
 * Local documents (`_local/…`): per-database documents that are not replicated and
 * have no revision tree; the rev is `0-N`, and a write must name the current one
 * (none for a new doc), as in CouchDB. Replicators keep their checkpoints here.
 * Reads take the first copy; writes go to every copy of the id's range.
 */
import { ConflictError, NotFoundError } from '../../errors';
import type { LocalDoc } from '../../shard/types';
import { rangeFor } from './doc-open';
import type { DbHandle } from './shard-client';

export async function getLocal(db: DbHandle, id: string): Promise<LocalDoc> {
  const doc = await rangeFor(db, id).copies[0]!.getLocal(id);
  if (!doc) throw new NotFoundError('missing');
  return doc;
}

/** Write `body` (JSON text), or delete with body null. Returns the new rev. */
export async function putLocal(db: DbHandle, id: string, body: string | null, rev: string | undefined): Promise<string> {
  const copies = rangeFor(db, id).copies;
  if (body === null && !(await copies[0]!.getLocal(id))) throw new NotFoundError('missing');
  const results = await Promise.all(copies.map((copy) => copy.putLocal(id, body, rev)));
  const result = results[0]!;
  if (result.kind === 'conflict') throw new ConflictError();
  return result.rev;
}
