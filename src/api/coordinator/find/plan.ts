/**
 * The Mango query planner: which index answers a `_find`, which ranges of it to read,
 * in which direction, and whether the index alone can answer (covering).
 *
 * Choice, as CouchDB 3.5 makes it:
 * - The candidates are the database's JSON indexes (views of `language: "query"`
 *   design documents) and the special `_all_docs` index. Indexes with a
 *   `partial_filter_selector` are left out unless `use_index` names them.
 * - A JSON index is usable when the selector requires every one of its fields (other
 *   than the sort fields, `_id` and `_rev`): documents lacking a field have no row.
 *   With a sort, the sort fields must follow the index's fields, after leading fields
 *   the selector fixes with `$eq`, in one direction. `_all_docs` is usable without a
 *   sort, or for a sort on `_id` when the selector bounds `_id`.
 * - `use_index` narrows the choice to the index it names when that one is usable;
 *   otherwise a warning says so and the rest are considered (`allow_fallback: false`
 *   makes it an error, as it does when only `_all_docs` remains).
 * - Among usable JSON indexes: the fewest bounded selector fields left out of the
 *   index's bounded prefix, then the fewest fields, then design document id and name.
 *
 * Ranges, beyond CouchDB: each leading field with a set of single values (`$eq`, `$in`,
 * an `$or` of equalities) multiplies the ranges (up to `rangesMax`), and the first field
 * with a true interval closes them; CouchDB reads one range and scans for `$in` and
 * `$or`. The ranges are conservative: every candidate is matched against the whole
 * selector on the copy, so a range only saves reading.
 *
 * Covering, as CouchDB 3.4+: when `fields` is given and it and the selector touch only
 * the index's fields and `_id`, copies answer from index rows without reading a document.
 * Pure: no I/O.
 */
import { BadRequestError } from '../../../errors';
import type { DesignDocRef, FindKeyRange } from '../../../shard/index/types';
import { indexDef } from '../../../shard/index/design';
import { collate, collateRaw } from '../../../shard/query/collate';
import {
  constantFields,
  fieldName,
  fieldsOf,
  indexableFields,
  isPoint,
  normalize,
  pathKey,
  requiredFields,
  valueIntervals,
  type Interval,
  type Node,
} from '../../../shard/query/mango-normal';
import { parseField } from '../../../shard/query/mango';

/** One index a query may use. */
export interface MangoIndex {
  /** `_design/...`, or null for `_all_docs`. */
  ddoc: string | null;
  name: string;
  type: 'json' | 'special';
  /** Field names, in index order. */
  fields: string[];
  paths: string[][];
  direction: 'asc' | 'desc';
  partialFilter: Record<string, unknown> | undefined;
  /** The design document holding a JSON index. */
  ref?: DesignDocRef;
}

export const allDocsIndex: MangoIndex = { ddoc: null, name: '_all_docs', type: 'special', fields: ['_id'], paths: [['_id']], direction: 'asc', partialFilter: undefined };

/** Every Mango index of a database: `_all_docs`, then JSON indexes by design document id and name. */
export function mangoIndexes(ddocs: Iterable<DesignDocRef>): MangoIndex[] {
  const out: MangoIndex[] = [];
  for (const ref of ddocs) {
    if (ref.body.language !== 'query') continue;
    let def;
    try {
      def = indexDef(ref);
    } catch {
      continue; // a malformed (replicated) query design document offers no index
    }
    for (const view of def.views) {
      if (!view.mango) continue;
      out.push({ ddoc: ref.id, name: view.name, type: 'json', fields: view.mango.fields, paths: view.mango.paths, direction: view.mango.direction, partialFilter: view.mango.partialFilter, ref });
    }
  }
  out.sort((a, b) => (a.ddoc! < b.ddoc! ? -1 : a.ddoc! > b.ddoc! ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return [allDocsIndex, ...out];
}

/** An index as `GET /{db}/_index` and `_explain` show it. */
export function indexJson(index: MangoIndex): Record<string, unknown> {
  const fields = index.fields.map((f) => ({ [f]: index.direction }));
  if (index.type === 'special') return { ddoc: null, name: index.name, type: 'special', def: { fields } };
  const def: Record<string, unknown> = { fields };
  if (index.partialFilter) def.partial_filter_selector = index.partialFilter;
  return { ddoc: index.ddoc, name: index.name, type: 'json', partitioned: false, def };
}

export interface SortField {
  field: string;
  dir: 'asc' | 'desc';
}

export interface PlanInput {
  selector: Record<string, unknown>;
  sort: SortField[];
  /** Projection; undefined or empty: whole documents. */
  fields: string[] | undefined;
  /** `[]`, `[ddoc]` or `[ddoc, name]`, the design document id with its `_design/` prefix. */
  useIndex: string[];
  allowFallback: boolean;
  conflicts: boolean;
}

/** Why an index was not chosen (CouchDB's `_explain` reason names). */
export type Reason = 'is_partial' | 'field_mismatch' | 'sort_order_mismatch' | 'excluded_by_user' | 'unfavored_type' | 'less_overlap' | 'too_many_fields' | 'alphabetically_comes_after';

export interface Candidate {
  index: MangoIndex;
  usable: boolean;
  reason: Reason;
  ranking: number;
  covering: boolean | null;
}

export interface FindPlan {
  index: MangoIndex;
  normal: Node;
  /** In scan order. Empty with `nothing`: the selector cannot match. */
  ranges: FindKeyRange[];
  nothing: boolean;
  descending: boolean;
  covering: boolean;
  /**
   * The selector looks only at the index's fields (and `_id`): copies can match on index
   * rows alone and send keys, and only the answered documents are read (keys first).
   */
  selectorCovered: boolean;
  /** Warnings to answer with, in CouchDB's order. */
  warnings: string[];
  /** Every other index and why it lost (for `_explain`; worked out when asked). */
  candidates: () => Candidate[];
  /** Selector fields the chosen kind of index can bound, and the others (for `_explain`). */
  hints: { indexable: string[]; unindexable: string[] };
}

export interface PlanLimits {
  /** Ranges one query reads at most; beyond, the later fields stay unbounded. */
  rangesMax: number;
}

const noIndexForSort = () => new BadRequestError('No index exists for this sort, try indexing by the sort fields.', 'no_usable_index');

export function plan(input: PlanInput, indexes: readonly MangoIndex[], limits: PlanLimits): FindPlan {
  const normal = normalize(input.selector);
  const required = requiredFields(normal);
  const constant = constantFields(normal);
  const sortKeys = input.sort.map((s) => pathKey(parseField(s.field)));
  const named = (i: MangoIndex) => input.useIndex.length > 0 && i.ddoc === input.useIndex[0] && (input.useIndex.length === 1 || i.name === input.useIndex[1]);
  const reasons = new Map<MangoIndex, Reason>();
  const usable: MangoIndex[] = [];
  for (const index of indexes) {
    if (index.partialFilter && !named(index)) reasons.set(index, 'is_partial');
    else {
      const why = unusable(index, normal, required, constant, sortKeys);
      if (why) reasons.set(index, why);
      else usable.push(index);
    }
  }
  const warnings: string[] = [];
  let pool = usable;
  if (input.useIndex.length > 0) {
    const chosen = usable.filter(named);
    if (chosen.length > 0) pool = chosen;
    else {
      const label = input.useIndex.length === 1 ? `_design/${stripDesign(input.useIndex[0]!)}` : `_design/${stripDesign(input.useIndex[0]!)}, ${input.useIndex[1]}`;
      if (!input.allowFallback) {
        throw new BadRequestError(`${label} was not used because it is not a valid index for this query, and "allow_fallback" is false.`, 'no_usable_index');
      }
      warnings.push(input.useIndex.length === 1 ? `${label} was not used because it does not contain a valid index for this query.` : `${label} was not used because it is not a valid index for this query.`);
    }
    for (const index of usable) if (!pool.includes(index)) reasons.set(index, 'excluded_by_user');
  }
  const json = pool.filter((i) => i.type === 'json');
  let index: MangoIndex;
  const ranked = json.length > 0 ? rank(json, normal) : [];
  if (ranked.length > 0) {
    index = ranked[0]!.index;
    for (const r of ranked.slice(1)) reasons.set(r.index, r.reason);
    for (const i of pool) if (i.type === 'special') reasons.set(i, 'unfavored_type');
  } else if (pool.includes(allDocsIndex)) {
    if (!input.allowFallback && input.useIndex.length === 0) {
      throw new BadRequestError('No index can serve this query and "allow_fallback" is false: create an index for it.', 'no_usable_index');
    }
    index = allDocsIndex;
    warnings.push('No matching index found, create an index to optimize query time.');
  } else {
    throw noIndexForSort();
  }
  const descending = input.sort.length > 0 && input.sort[0]!.dir === 'desc';
  const { ranges, nothing } = index.type === 'special' ? idRanges(normal) : indexRanges(index, normal, limits.rangesMax);
  const covering = isCovering(index, input, normal);
  const candidates = (): Candidate[] =>
    indexes.filter((i) => i !== index).map((i) => ({ index: i, usable: usable.includes(i), reason: reasons.get(i) ?? 'less_overlap', ranking: rankingOf(reasons.get(i), ranked, i), covering: i.type === 'json' ? isCovering(i, input, normal) : null }));
  const indexable = [...indexableFields(normal)];
  const all = [...fieldsOf(normal)];
  return {
    index,
    normal,
    ranges: descending ? ranges.map(reverse).reverse() : ranges,
    nothing,
    descending,
    covering,
    selectorCovered: index.type === 'json' && [...fieldsOf(normal)].every((f) => heldBy(index).has(f)),
    warnings,
    candidates,
    hints: { indexable: indexable.map(display).sort(), unindexable: all.filter((f) => !indexable.includes(f)).map(display).sort() },
  };
}

function stripDesign(id: string): string {
  return id.startsWith('_design/') ? id.slice('_design/'.length) : id;
}

function display(key: string): string {
  return fieldName(key.split('\u0000'));
}

function unusable(index: MangoIndex, normal: Node, required: Set<string>, constant: Set<string>, sortKeys: string[]): Reason | undefined {
  if (index.type === 'special') {
    if (sortKeys.length === 0) return undefined;
    const id = pathKey(['_id']);
    const bounded = indexableFields(normal).has(id);
    return sortKeys.length === 1 && sortKeys[0] === id && bounded ? undefined : 'sort_order_mismatch';
  }
  const columns = index.paths.map(pathKey);
  const skip = new Set([...sortKeys, pathKey(['_id']), pathKey(['_rev'])]);
  if (columns.some((c) => !skip.has(c) && !required.has(c))) return 'field_mismatch';
  return canUseSort(columns, sortKeys, constant) ? undefined : 'sort_order_mismatch';
}

/** CouchDB's can_use_sort: the sort fields follow the index's fields after fixed ones. */
function canUseSort(columns: string[], sortKeys: string[], constant: Set<string>): boolean {
  if (sortKeys.length === 0) return true;
  for (let i = 0; i < columns.length; i++) {
    if (columns[i] === sortKeys[0]) return sortKeys.every((s, j) => columns[i + j] === s);
    if (!constant.has(columns[i]!)) return false;
  }
  return false;
}

/** Usable JSON indexes, best first, each loser with why it lost. */
function rank(indexes: MangoIndex[], normal: Node): { index: MangoIndex; reason: Reason }[] {
  const bounded = [...fieldsOf(normal)].filter((f) => valueIntervals(normal, f) !== undefined);
  const scored = indexes.map((index) => {
    let prefix = 0;
    for (const path of index.paths) {
      const set = valueIntervals(normal, pathKey(path));
      if (set === undefined) break;
      prefix++;
      if (!set.every((i) => isPoint(i, collate))) break;
    }
    return { index, difference: bounded.length - prefix, columns: index.fields.length };
  });
  scored.sort((a, b) => a.difference - b.difference || a.columns - b.columns || compareIds(a.index, b.index));
  const best = scored[0]!;
  return scored.map((s) => ({
    index: s.index,
    reason: s.difference > best.difference ? 'less_overlap' : s.columns > best.columns ? 'too_many_fields' : 'alphabetically_comes_after',
  }));
}

function compareIds(a: MangoIndex, b: MangoIndex): number {
  return a.ddoc! < b.ddoc! ? -1 : a.ddoc! > b.ddoc! ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function rankingOf(reason: Reason | undefined, ranked: { index: MangoIndex }[], index: MangoIndex): number {
  const position = ranked.findIndex((r) => r.index === index);
  if (position >= 0) return position;
  const base = Math.max(1, ranked.length);
  switch (reason) {
    case 'unfavored_type':
      return base;
    case 'excluded_by_user':
      return base + 1;
    case 'is_partial':
      return base + 3;
    default:
      return base + 2;
  }
}

/**
 * The index's ranges, in key order: each single value (`$eq`, an `$in` value, an `$or`
 * of equalities) of a field fixes it and goes on to the next field; an interval closes
 * its range. When that makes more than `rangesMax` ranges, fewer fields are split.
 */
function indexRanges(index: MangoIndex, normal: Node, rangesMax: number): { ranges: FindKeyRange[]; nothing: boolean } {
  // `_id` compares by code point in selectors but by collation in the index: never bounded.
  const usable = index.paths.findIndex((p) => p.length === 1 && p[0] === '_id');
  const sets = index.paths.slice(0, usable === -1 ? undefined : usable).map((p) => valueIntervals(normal, pathKey(p)));
  for (let depth = sets.length; depth >= 0; depth--) {
    const ranges = expand(sets, depth, [], rangesMax);
    if (ranges !== null) return { ranges, nothing: ranges.length === 0 };
  }
  return { ranges: [{ inclusiveEnd: true }], nothing: false };
}

/** Ranges under `prefix` using the first `depth` fields' value sets; null past `max` ranges. */
function expand(sets: (Interval[] | undefined)[], depth: number, prefix: unknown[], max: number): FindKeyRange[] | null {
  const set = prefix.length < depth ? sets[prefix.length] : undefined;
  if (set === undefined) return [keyRange(prefix, undefined)];
  const out: FindKeyRange[] = [];
  for (const interval of set) {
    if (isPoint(interval, collate)) {
      const inner = expand(sets, depth, [...prefix, interval.low], max - out.length);
      if (inner === null) return null;
      out.push(...inner);
    } else {
      out.push(keyRange(prefix, interval));
    }
    if (out.length > max) return null;
  }
  return out;
}

/** One range of array keys: `prefix` fixed, then the next field within `interval` (or anything). */
function keyRange(prefix: unknown[], interval: Interval | undefined): FindKeyRange {
  const range: FindKeyRange = { inclusiveEnd: true };
  if (interval?.low !== undefined) {
    range.start = [...prefix, interval.low];
    if (!interval.lowIncl) range.startMax = true;
  } else if (prefix.length > 0) {
    range.start = prefix;
  }
  if (interval?.high !== undefined) {
    range.end = [...prefix, interval.high];
    if (interval.highIncl) range.endMax = true;
    else range.inclusiveEnd = false;
  } else if (prefix.length > 0) {
    range.end = prefix;
    range.endMax = true;
  }
  return range;
}

/** The same range read from its other end. */
function reverse(range: FindKeyRange): FindKeyRange {
  const out: FindKeyRange = { inclusiveEnd: true };
  if (range.end !== undefined) out.start = range.end;
  if (range.endMax) out.startMax = true;
  if (range.start !== undefined) out.end = range.start;
  if (range.startMax) out.endMax = true;
  return out;
}

/** `_all_docs`: one id range, the hull of the selector's `_id` bounds that are strings. */
function idRanges(normal: Node): { ranges: FindKeyRange[]; nothing: boolean } {
  const set = valueIntervals(normal, pathKey(['_id']), collateRaw);
  if (set === undefined) return { ranges: [], nothing: false };
  if (set.length === 0) return { ranges: [], nothing: true };
  const first = set[0]!;
  const lastInterval = set[set.length - 1]!;
  const range: FindKeyRange = { inclusiveEnd: true };
  if (typeof first.low === 'string') range.start = first.low;
  if (typeof lastInterval.high === 'string') {
    range.end = lastInterval.high;
    range.inclusiveEnd = lastInterval.highIncl;
  }
  return { ranges: [range], nothing: false };
}

/** What an index row holds of a document: its fields and `_id`. */
function heldBy(index: MangoIndex): Set<string> {
  return new Set([...index.paths.map(pathKey), pathKey(['_id'])]);
}

function isCovering(index: MangoIndex, input: PlanInput, normal: Node): boolean {
  if (index.type !== 'json' || !input.fields || input.fields.length === 0 || input.conflicts) return false;
  const held = heldBy(index);
  const wanted = [...input.fields.map((f) => pathKey(parseField(f))), ...fieldsOf(normal)];
  return wanted.every((f) => held.has(f));
}
