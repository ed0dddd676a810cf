/**
 * Reading one design document for a request (view queries, `_changes` filters, the
 * replicator's filters): the winning revision, parsed, with CouchDB's 404s, and the
 * member lookup CouchDB's filters and views use.
 */
import { isPlainObject } from '../../json';
import { NotFoundError } from '../../errors';
import type { DesignDocRef } from '../../shard/index/types';
import { readBody, readDocInfo } from './doc-open';
import type { DbHandle } from './shard-client';

/** The winning revision of design document `id` with its id and rev; 404 `missing` or `deleted` as CouchDB. */
export async function readDesignDoc(db: DbHandle, id: string, timeoutMs: number): Promise<DesignDocRef> {
  const info = await readDocInfo(db, id, { timeoutMs });
  if (!info) throw new NotFoundError('missing');
  if (info.winner.deleted) throw new NotFoundError('deleted');
  const body = await readBody(db, id, info.winner.rev);
  if (body === undefined) throw new NotFoundError('missing');
  const parsed: unknown = JSON.parse(body);
  return { id, rev: info.winner.rev, body: isPlainObject(parsed) ? parsed : {} };
}

/**
 * The member at `path` (CouchDB's get_nested_json_value): 404 `missing json key: K`
 * for the first key that is absent, `json_mismatch` where a non-object is in the way.
 * Own members only, so `filters.constructor` is missing, as it should be.
 */
export function nestedMember(value: unknown, path: readonly string[]): unknown {
  let current = value;
  for (const key of path) {
    if (!isPlainObject(current)) throw new NotFoundError('json_mismatch');
    if (!Object.hasOwn(current, key)) throw new NotFoundError(`missing json key: ${key}`);
    current = current[key];
  }
  return current;
}
