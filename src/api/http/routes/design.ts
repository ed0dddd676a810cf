/**
 * Design documents as the parts that are not built yet see them (views, shows, lists,
 * updates), and the lookup `_changes` filters use. Before answering 501, a request naming one is checked
 * as CouchDB checks it: a design document that does not exist, or that has no such
 * view or filter, answers 404 `not_found`, so a client learns what is really wrong.
 */
import { NotImplementedError } from '../../../errors';
import { nestedMember, readDesignDoc } from '../../coordinator/design-docs';
import type { DbHandle } from '../../coordinator/shard-client';
import type { DesignDocRef } from '../../../shard/index/types';
import type { Ctx } from '../context';
import { openDb } from './common';

/** The winning body of design document `id`, parsed; 404 `missing` or `deleted` as CouchDB. */
export async function openDesignDoc(ctx: Ctx, db: DbHandle, id: string): Promise<Record<string, unknown>> {
  return (await openDesignDocRef(ctx, db, id)).body;
}

/** The winning revision of design document `id` with its id and rev (what the view engine takes). */
export function openDesignDocRef(ctx: Ctx, db: DbHandle, id: string): Promise<DesignDocRef> {
  return readDesignDoc(db, id, ctx.limits.quorumTimeoutMs);
}

export { nestedMember };

/**
 * `/db/_design/name/_show`, `_list`, `_update`, `_rewrite`...: 404 when the design
 * document is missing; otherwise an honest 501: CouchDB 3 deprecates these and they
 * are not built.
 */
export async function designResourceNotBuilt(ctx: Ctx, dbName: string, ddocId: string, resource: string, name: string | undefined): Promise<void> {
  const db = await openDb(ctx, dbName);
  await openDesignDoc(ctx, db, ddocId);
  void name;
  throw new NotImplementedError(`Design document ${resource} functions (shows, lists, updates, rewrites; deprecated in CouchDB 3) are not available in Divan`);
}
