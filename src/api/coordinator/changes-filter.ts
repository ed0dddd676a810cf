/**
 * The filters of a changes feed, checked and compiled as CouchDB checks them before a
 * feed starts — for `GET/POST /{db}/_changes` and for the replicator reading a local
 * source alike:
 *
 * - none, `_doc_ids` (`doc_ids`, at most `keysMax`), `_design`, `_selector` (POST only;
 *   the selector compiled here, so an invalid one is a 400 before any row);
 * - `_view` (`view=ddoc/name`): passes documents the view's map emits for;
 * - `ddoc/name`: the design document's filter function, called with `(doc, req)`.
 *
 * A design document or member that does not exist gets CouchDB's 404 (`missing`,
 * `deleted`, `missing json key: …`), a function that does not compile 400
 * `compilation_error`. JavaScript filters come back compiled (only the function asked
 * for, with the CommonJS modules it may require); the caller releases them.
 */
import { isPlainObject } from '../../json';
import { BadRequestError } from '../../errors';
import type { SandboxPool } from '../../shard/js/sandbox';
import { compileSelector } from '../../shard/query/mango';
import type { ChangesFilter } from '../../shard/types';
import type { JsChangesFilter } from './changes';
import { nestedMember, readDesignDoc } from './design-docs';
import type { DbHandle } from './shard-client';

export interface FilterParams {
  /** The `filter` parameter. */
  filter: string | undefined;
  docIds: unknown;
  selector: unknown;
  /** The `view` parameter of `filter=_view`. */
  view: string | undefined;
  /** `_selector` needs its selector in a POST body, as CouchDB requires. */
  isPost: boolean;
  keysMax: number;
  timeoutMs: number;
  js: SandboxPool;
  /** CouchDB's request object, as design-document filter functions receive it. */
  request: () => unknown;
}

export async function compileChangesFilter(db: DbHandle, p: FilterParams): Promise<ChangesFilter | { js: JsChangesFilter }> {
  const name = p.filter;
  if (name === undefined || name === '') {
    if (p.docIds !== undefined) return docIdsFilter(p.docIds, p.keysMax);
    return { kind: 'none' };
  }
  if (name === '_doc_ids') return docIdsFilter(p.docIds, p.keysMax);
  if (name === '_design') return { kind: 'design' };
  if (name === '_selector') {
    if (!p.isPost) throw new BadRequestError('Selector must be specified in POST payload', 'bad_request');
    if (!isPlainObject(p.selector)) throw new BadRequestError('Selector error: expected a JSON object', 'bad_request');
    compileSelector(p.selector); // reject an invalid selector before the response starts
    return { kind: 'selector', selector: p.selector };
  }
  if (name === '_view') {
    const view = p.view ?? '';
    if (view === '') throw new BadRequestError('`view` filter parameter is not provided.', 'bad_request');
    const parts = view.split('/').filter((part) => part !== '');
    if (parts.length !== 2) throw new BadRequestError('`view` must be of the form `designname/viewname`', 'bad_request');
    const ddoc = (await readDesignDoc(db, '_design/' + parts[0], p.timeoutMs)).body;
    const viewDef = nestedMember(ddoc, ['views', parts[1]!]);
    if ((ddoc.language ?? 'javascript') !== 'javascript' || !isPlainObject(viewDef) || parts[1] === 'lib') {
      throw new BadRequestError('filter=_view needs a JavaScript view with a map function', 'bad_request');
    }
    const views = ddoc.views as Record<string, unknown>;
    const only = { _id: ddoc._id, views: { [parts[1]!]: { map: viewDef.map }, ...(Object.hasOwn(views, 'lib') ? { lib: views.lib } : {}) } };
    const compiled = await p.js.compile(only);
    return { js: { pool: p.js, ddoc: compiled, kind: 'view', name: parts[1]!, req: null } };
  }
  if (name.startsWith('_')) throw new BadRequestError('unknown builtin filter name', 'bad_request');
  const parts = name.split('/').filter((part) => part !== '');
  if (parts.length === 0) return { kind: 'none' };
  if (parts.length !== 2) throw new BadRequestError('`filter` must be of the form `designname/filtername`', 'bad_request');
  const ddoc = (await readDesignDoc(db, '_design/' + parts[0], p.timeoutMs)).body;
  const source = nestedMember(ddoc, ['filters', parts[1]!]);
  // The filter alone, with the rest of the document and the module trees beside the
  // filters for require() (views and other filters are not compiled: a broken one
  // stored by an older version must not stop this feed).
  const { views: _views, filters: _filters, ...rest } = ddoc;
  void _views;
  void _filters;
  const modules = Object.entries(ddoc.filters as Record<string, unknown>).filter(([, value]) => isPlainObject(value));
  const compiled = await p.js.compile({ ...rest, filters: { ...Object.fromEntries(modules), [parts[1]!]: source } });
  return { js: { pool: p.js, ddoc: compiled, kind: 'filter', name: parts[1]!, req: p.request() } };
}

function docIdsFilter(value: unknown, keysMax: number): ChangesFilter {
  if (!Array.isArray(value) || value.some((id) => typeof id !== 'string')) {
    throw new BadRequestError('`doc_ids` filter parameter is not a list of doc ids.', 'bad_request');
  }
  if (value.length > keysMax) throw new BadRequestError(`At most ${keysMax} doc_ids`);
  return { kind: 'doc_ids', docIds: value as string[] };
}
