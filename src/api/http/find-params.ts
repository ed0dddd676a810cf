/**
 * The bodies of `POST /{db}/_find`, `_explain` and `_index`, checked as CouchDB 3.5's
 * `mango_opts` checks them: the same defaults, the same error tokens, an unknown key
 * refused. The selector is compiled here once, so an invalid one answers 400 before
 * any copy is asked.
 */
import { isPlainObject } from '../../json';
import { BadRequestError, NotImplementedError } from '../../errors';
import { compileSelector, parseField } from '../../shard/query/mango';
import type { IndexSpec } from '../coordinator/find/indexes';
import type { SortField } from '../coordinator/find/plan';

export interface FindParams {
  selector: Record<string, unknown>;
  useIndex: string[];
  bookmark: string | undefined;
  limit: number;
  skip: number;
  sort: SortField[];
  fields: string[] | undefined;
  r: number;
  conflicts: boolean;
  update: boolean;
  stable: boolean;
  stale: 'ok' | false;
  executionStats: boolean;
  allowFallback: boolean;
}

export interface FindLimits {
  /** `limit` when the request gives none (CouchDB's `[mango] default_limit`). */
  findLimitDefault: number;
}

const findKeys: ReadonlySet<string> = new Set([
  'selector',
  'use_index',
  'bookmark',
  'limit',
  'skip',
  'sort',
  'fields',
  'partition',
  'r',
  'conflicts',
  'stale',
  'update',
  'stable',
  'execution_stats',
  'allow_fallback',
]);

export function parseFindParams(body: Record<string, unknown>, limits: FindLimits): FindParams {
  for (const key of Object.keys(body)) {
    if (!findKeys.has(key)) throw new BadRequestError(`Invalid key ${key} for this request.`, 'invalid_key');
  }
  if (!Object.hasOwn(body, 'selector')) throw new BadRequestError('Missing required key: selector', 'missing_required_key');
  const selector = body.selector;
  if (!isPlainObject(selector)) throw new BadRequestError(`Selector must be a JSON object, not: ${show(selector)}`, 'invalid_selector_json');
  compileSelector(selector);
  if (body.partition !== undefined && body.partition !== '') throw new NotImplementedError('Partitioned databases are not available in Divan: `partition` cannot be used');
  const bookmark = body.bookmark;
  if (bookmark !== undefined && bookmark !== null && typeof bookmark !== 'string') throw new BadRequestError(`Invalid bookmark value: ${show(bookmark)}`, 'invalid_bookmark');
  const stale = body.stale;
  if (stale !== undefined && stale !== false && stale !== 'false' && stale !== 'ok') throw new BadRequestError(`Invalid value for stale: ${show(stale)} (ok or false)`, 'invalid_ok_or_false_value');
  const fields = body.fields;
  if (fields !== undefined && !Array.isArray(fields)) throw new BadRequestError(`Fields must be an array of strings, not: ${show(fields)}`, 'invalid_fields');
  for (const f of (fields as unknown[] | undefined) ?? []) {
    if (typeof f !== 'string') throw new BadRequestError(`Invalid JSON for field spec: ${show(f)}`, 'invalid_field');
    parseField(f);
  }
  return {
    selector,
    useIndex: parseUseIndex(body.use_index),
    bookmark: typeof bookmark === 'string' && bookmark !== '' && bookmark !== 'nil' ? bookmark : undefined,
    limit: nonNegInteger(body.limit, limits.findLimitDefault),
    skip: nonNegInteger(body.skip, 0),
    sort: parseSort(body.sort ?? []),
    fields: fields as string[] | undefined,
    r: posInteger(body.r, 1),
    conflicts: bool(body.conflicts, false),
    update: bool(body.update, true),
    stable: bool(body.stable, false),
    stale: stale === 'ok' ? 'ok' : false,
    executionStats: bool(body.execution_stats, false),
    allowFallback: bool(body.allow_fallback, true),
  };
}

/** `"ddoc"`, `"_design/ddoc"`, `"ddoc/name"`, `[ddoc]`, `[ddoc, name]`: `[]`, `[id]` or `[id, name]` with ids prefixed. */
function parseUseIndex(value: unknown): string[] {
  const invalid = () => new BadRequestError(`Invalid index name: ${show(value)}`, 'invalid_index_name');
  if (value === undefined || value === null) return [];
  let parts: unknown[];
  if (typeof value === 'string') {
    const bare = value.startsWith('_design/') ? value.slice('_design/'.length) : value;
    parts = bare === '' ? [] : bare.split('/');
  } else if (Array.isArray(value)) {
    parts = value;
  } else {
    throw invalid();
  }
  if (parts.length > 2 || parts.some((p) => typeof p !== 'string' || p === '')) throw invalid();
  const strings = parts as string[];
  if (strings.length === 0) return [];
  const ddoc = strings[0]!.startsWith('_design/') ? strings[0]! : `_design/${strings[0]}`;
  return strings.length === 1 ? [ddoc] : [ddoc, strings[1]!];
}

/** A sort spec (`["a", {"b": "desc"}]`), as `sort` and index `fields` take it; one direction only. */
export function parseSort(value: unknown): SortField[] {
  if (!Array.isArray(value)) throw new BadRequestError(`Sort must be an array of sort specs, not: ${show(value)}`, 'invalid_sort_json');
  const out: SortField[] = value.map((item) => {
    if (typeof item === 'string' && item !== '') return { field: checkField(item, item), dir: 'asc' };
    if (isPlainObject(item)) {
      const keys = Object.keys(item);
      const dir = item[keys[0]!];
      if (keys.length === 1 && keys[0] !== '' && (dir === 'asc' || dir === 'desc')) return { field: checkField(keys[0]!, item), dir };
    }
    throw new BadRequestError(`Invalid sort field: ${show(item)}`, 'invalid_sort_field');
  });
  if (new Set(out.map((s) => s.dir)).size > 1) throw new BadRequestError('Sorts currently only support a single direction for all fields.', 'unsupported_mixed_sort');
  return out;
}

function checkField(field: string, item: unknown): string {
  try {
    parseField(field);
  } catch {
    throw new BadRequestError(`Invalid sort field: ${show(item)}`, 'invalid_sort_field');
  }
  return field;
}

const indexKeys: ReadonlySet<string> = new Set(['index', 'type', 'name', 'ddoc', 'w', 'partitioned']);

export function parseIndexSpec(body: Record<string, unknown>): IndexSpec & { w: number | undefined } {
  for (const key of Object.keys(body)) {
    if (!indexKeys.has(key)) throw new BadRequestError(`Invalid key ${key} for this request.`, 'invalid_key');
  }
  if (!Object.hasOwn(body, 'index')) throw new BadRequestError('Missing required key: index', 'missing_required_key');
  const type = body.type ?? 'json';
  if (typeof type !== 'string') throw new BadRequestError(`Invalid type for index: ${show(type)}`, 'invalid_index');
  if (type === 'text' || type === 'nouveau') throw new NotImplementedError(`Indexes of type ${type} (full-text search) are not available in Divan; use "json" indexes`);
  if (type !== 'json') throw new BadRequestError(`Invalid type for index: ${type}`, 'invalid_index');
  for (const key of ['name', 'ddoc'] as const) {
    if (body[key] !== undefined && typeof body[key] !== 'string') throw new BadRequestError(`Invalid string: ${show(body[key])}`, 'invalid_string');
  }
  if (body.partitioned === true) throw new NotImplementedError('Partitioned databases are not available in Divan: `partitioned` indexes cannot be made');
  if (body.partitioned !== undefined && typeof body.partitioned !== 'boolean') throw new BadRequestError(`Invalid value for partitioned: ${show(body.partitioned)}`, 'invalid_partitioned_value');
  const index = body.index;
  if (!isPlainObject(index)) throw new BadRequestError(`JSON indexes must be an object, not: ${show(index)}`, 'invalid_index');
  for (const key of Object.keys(index)) {
    if (key !== 'fields' && key !== 'partial_filter_selector') throw new BadRequestError(`Invalid key ${key} for this request.`, 'invalid_key');
  }
  if (!Object.hasOwn(index, 'fields')) throw new BadRequestError('Missing required key: fields', 'missing_required_key');
  const fields = parseSort(index.fields);
  if (fields.length === 0) throw new BadRequestError('An index needs at least one field', 'invalid_index');
  if (new Set(fields.map((f) => f.field)).size !== fields.length) throw new BadRequestError('An index cannot name a field twice', 'invalid_index');
  const partial = index.partial_filter_selector;
  if (partial !== undefined && !isPlainObject(partial)) throw new BadRequestError(`Selector must be a JSON object, not: ${show(partial)}`, 'invalid_selector_json');
  if (partial !== undefined) compileSelector(partial);
  const name = body.name as string | undefined;
  const ddoc = body.ddoc as string | undefined;
  if (name === '') throw new BadRequestError('Invalid string: ""', 'invalid_string');
  if (ddoc === '' || ddoc === '_design/') throw new BadRequestError('Invalid string: ""', 'invalid_string');
  return {
    fields,
    partialFilter: partial !== undefined && Object.keys(partial).length > 0 ? partial : undefined,
    ddoc: ddoc === undefined ? undefined : ddoc.startsWith('_design/') ? ddoc : `_design/${ddoc}`,
    name,
    def: index,
    w: body.w === undefined ? undefined : posInteger(body.w, 2),
  };
}

function nonNegInteger(value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw new BadRequestError(`${show(value)} is not an integer greater than or equal to zero`, 'invalid_non_neg_integer');
  return value as number;
}

function posInteger(value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < 1) throw new BadRequestError(`${show(value)} is not an integer greater than zero`, 'invalid_pos_integer');
  return value as number;
}

function bool(value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new BadRequestError(`Invalid boolean value: ${show(value)}`, 'invalid_boolean');
  return value;
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}

