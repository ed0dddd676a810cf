/**
 * The views of a design document as the index engine sees them: their definitions in a
 * fixed order and the signature that names their index.
 *
 * All views of one design document share one index (one map pass per document). The
 * signature is an MD5 over what changes the rows: the language, each view's map and
 * reduce source (by view name), `views.lib` (CommonJS modules the maps may require),
 * the design document's `options` (`include_design`, `local_seq`), and the collation
 * codec's version. Editing anything else in the design document (a filter, a VDU, a
 * field) keeps the index, as in CouchDB.
 *
 * Design documents with `"language": "query"` hold Mango JSON indexes, stored as
 * CouchDB stores them: each view's `map` is `{"fields": {"a": "asc", ...},
 * "partial_filter_selector": {...}}`. They need no JavaScript: a document's row is the
 * array of its values at those fields (mango-map.ts). Pure; no I/O.
 */
import { createHash } from 'node:crypto';
import { BadRequestError, NotFoundError } from '../../errors';
import { collationVersion } from '../../storage/collation-key';
import { parseField } from '../query/mango';
import { builtinReducer, type BuiltinReducer } from './builtin-reduce';
import type { DesignDocRef } from './types';

/** A Mango JSON index's columns (a view of a `language: "query"` design document). */
export interface MangoColumns {
  /** Field names as given (dotted paths) and parsed. */
  fields: string[];
  paths: string[][];
  /** Every column sorts this way (CouchDB refuses mixed directions). */
  direction: 'asc' | 'desc';
  /** Only documents matching this selector are indexed; undefined: all. */
  partialFilter: Record<string, unknown> | undefined;
}

export interface ViewDef {
  name: string;
  /** The map source; for a Mango index, its `map` object as JSON. */
  map: string;
  /** The reduce source: undefined for a map-only view, `_sum`... for a built-in. */
  reduce: string | undefined;
  builtin: BuiltinReducer | undefined;
  /** Set for the views of a `language: "query"` design document. */
  mango?: MangoColumns;
}

export interface IndexDef {
  ddocId: string;
  /** 16 bytes, and as hex for `_info`. */
  sig: Buffer;
  sigHex: string;
  /** `javascript` (map functions in the sandbox) or `query` (Mango JSON indexes, no JavaScript). */
  language: 'javascript' | 'query';
  /** Views in name order: a view's number in row keys is its position here. */
  views: ViewDef[];
  includeDesign: boolean;
  /** What the sandbox compiles: the views and their lib, nothing else of the design doc. */
  compileDoc: Record<string, unknown>;
}

/**
 * The index definition of a design document. Throws 404 `missing_named_view` when
 * `view` is given and absent; a design document whose views are malformed answers
 * 400 `invalid_design_doc` (a write would have been refused, but replicated design
 * documents are not checked).
 */
export function indexDef(ddoc: DesignDocRef, view?: string): IndexDef {
  // The same body (a cached design document) gives the same definition: work it out once.
  let def = known.get(ddoc.body);
  if (!def) {
    def = buildIndexDef(ddoc);
    known.set(ddoc.body, def);
  }
  if (view !== undefined && !def.views.some((v) => v.name === view)) throw new NotFoundError('missing_named_view');
  return def;
}

const known = new WeakMap<object, IndexDef>();

function buildIndexDef(ddoc: DesignDocRef): IndexDef {
  const body = ddoc.body;
  const language = typeof body.language === 'string' ? body.language : 'javascript';
  const rawViews = body.views;
  if (rawViews !== undefined && (rawViews === null || typeof rawViews !== 'object' || Array.isArray(rawViews))) {
    throw new BadRequestError('`views` is not an object', 'invalid_design_doc');
  }
  const members = new Map(Object.entries((rawViews ?? {}) as Record<string, unknown>));
  if (language !== 'javascript' && language !== 'query') {
    throw new BadRequestError(`Views in language ${JSON.stringify(language)} are not supported`, 'invalid_design_doc');
  }
  const lib = language === 'query' ? undefined : members.get('lib');
  members.delete('lib');
  const views: ViewDef[] = [];
  for (const name of [...members.keys()].sort()) {
    const def = members.get(name);
    if (def === null || typeof def !== 'object' || Array.isArray(def)) throw new BadRequestError(`View ${name} must be an object`, 'invalid_design_doc');
    const { map, reduce } = def as { map?: unknown; reduce?: unknown };
    if (language === 'query') {
      views.push(mangoView(name, map, reduce));
      continue;
    }
    if (typeof map !== 'string') throw new BadRequestError(`View ${name} must have a string map function`, 'invalid_design_doc');
    if (reduce !== undefined && typeof reduce !== 'string') throw new BadRequestError(`Reduce of view ${name} must be a string`, 'invalid_design_doc');
    const trimmed = reduce?.trim();
    const builtin = trimmed !== undefined && trimmed.startsWith('_') ? builtinReducer(trimmed) : undefined;
    if (trimmed !== undefined && trimmed.startsWith('_') && !builtin) {
      throw new BadRequestError(`Builtin reduce function ${trimmed} is not supported`, 'invalid_design_doc');
    }
    views.push({ name, map, reduce: builtin ? builtin.name : reduce, builtin });
  }
  const options = body.options !== null && typeof body.options === 'object' ? (body.options as Record<string, unknown>) : {};
  const includeDesign = options.include_design === true;
  const identity = JSON.stringify({
    collation: collationVersion,
    language,
    views: views.map((v) => [v.name, v.map, v.reduce ?? null]),
    lib: lib ?? null,
    includeDesign,
    localSeq: options.local_seq === true,
  });
  const sig = createHash('md5').update(identity).digest();
  const compileViews: Record<string, unknown> = {};
  for (const v of views) compileViews[v.name] = v.reduce !== undefined ? { map: v.map, reduce: v.reduce } : { map: v.map };
  if (lib !== undefined) compileViews.lib = lib;
  return {
    ddocId: ddoc.id,
    sig,
    sigHex: sig.toString('hex'),
    language,
    views,
    includeDesign,
    compileDoc: { _id: ddoc.id, language, views: compileViews },
  };
}

/** A view of a `language: "query"` design document: a Mango JSON index. */
function mangoView(name: string, map: unknown, reduce: unknown): ViewDef {
  const invalid = (why: string) => new BadRequestError(`Mango index ${name}: ${why}`, 'invalid_design_doc');
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw invalid('`map` must be an object with `fields`');
  const { fields, partial_filter_selector: partial } = map as { fields?: unknown; partial_filter_selector?: unknown };
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields) || Object.keys(fields).length === 0) throw invalid('`map.fields` must be a non-empty object of field: "asc" | "desc"');
  const names = Object.keys(fields);
  const directions = new Set(Object.values(fields as Record<string, unknown>));
  if (directions.size !== 1 || !(directions.has('asc') || directions.has('desc'))) throw invalid('`map.fields` must sort every field the same way, "asc" or "desc"');
  if (partial !== undefined && (partial === null || typeof partial !== 'object' || Array.isArray(partial))) throw invalid('`partial_filter_selector` must be an object');
  let paths: string[][];
  try {
    paths = names.map(parseField);
  } catch {
    throw invalid('a field name is invalid');
  }
  const partialFilter = partial !== undefined && Object.keys(partial).length > 0 ? (partial as Record<string, unknown>) : undefined;
  return {
    name,
    map: JSON.stringify({ fields, partial: partialFilter ?? null }),
    // CouchDB stores "_count"; the rows' values are null, so any reduce would be empty.
    reduce: typeof reduce === 'string' ? reduce : undefined,
    builtin: reduce === '_count' ? builtinReducer('_count') : undefined,
    mango: { fields: names, paths, direction: directions.has('asc') ? 'asc' : 'desc', partialFilter },
  };
}
