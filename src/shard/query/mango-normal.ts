/**
 * A Mango selector in normal form, for planning and `_explain` (matching uses the
 * compiled predicate of mango.ts; both read a selector the same way).
 *
 * Normal form, as CouchDB's `mango_selector:normalize` makes it: nested field objects
 * become dotted paths, each operator sits alone under its field, several conditions
 * are an `$and`, and negation (`$not`, `$nor`) is pushed down to the fields: `$eq`
 * becomes `$ne`, `$gt` `$lte`, `$in` `$nin`, `$exists: b` `$exists: !b`, and De Morgan
 * turns `$and` into `$or` and back. A negated operator with no opposite stays as
 * `{"field": {"$not": {op: arg}}}`.
 *
 * The planner asks three things of it:
 * - `requiredFields`: fields every matching document has (CouchDB's
 *   has_required_fields: any condition but `$exists: false` at the `$and` level, or
 *   in every branch of an `$or`). An index on fields the selector does not require
 *   would miss the documents that lack them.
 * - `valueIntervals(field)`: a superset of the values the field can take in a matching
 *   document, as sorted disjoint intervals in collation order (undefined: any value).
 *   `$eq`, `$gt`..`$lte` give bounds as in CouchDB; beyond CouchDB, `$in` gives its
 *   values (plus every array, since `$in` also matches an array holding one of them),
 *   `$or` the union of its branches and `$beginsWith` a lower bound.
 * - `fieldsOf`: every field a selector looks at (an index answers alone only when it
 *   holds them all).
 * Pure; the selector must already have compiled (mango.ts validated it).
 */
import { isPlainObject } from '../../json';
import { collate } from './collate';
import { parseField } from './mango';

export type Node =
  | { kind: 'and' | 'or'; items: Node[] }
  | { kind: 'field'; path: string[]; op: string; arg: unknown }
  /** A negated operator without an opposite: `{"field": {"$not": {op: arg}}}`. */
  | { kind: 'not'; path: string[]; op: string; arg: unknown };

const opposite: Record<string, string> = {
  $eq: '$ne',
  $ne: '$eq',
  $gt: '$lte',
  $lte: '$gt',
  $gte: '$lt',
  $lt: '$gte',
  $in: '$nin',
  $nin: '$in',
};

export function normalize(selector: Record<string, unknown>): Node {
  // The empty selector matches everything: an empty $and.
  if (Object.keys(selector).length === 0) return { kind: 'and', items: [] };
  return flatten(norm(selector, [], false));
}

function norm(cond: unknown, path: string[], negated: boolean): Node {
  if (!isPlainObject(cond) || Object.keys(cond).length === 0) return field(path, '$eq', cond, negated);
  const parts: Node[] = [];
  for (const [key, arg] of Object.entries(cond)) {
    if (key === '$and' || key === '$or') {
      const items = (arg as unknown[]).map((a) => norm(a, path, negated));
      parts.push({ kind: (key === '$and') !== negated ? 'and' : 'or', items });
    } else if (key === '$nor') {
      parts.push({ kind: negated ? 'or' : 'and', items: (arg as unknown[]).map((a) => norm(a, path, !negated)) });
    } else if (key === '$not') {
      parts.push(norm(arg, path, !negated));
    } else if (key.startsWith('$')) {
      parts.push(field(path, key, arg, negated));
    } else {
      parts.push(norm(arg, path.concat(parseField(key)), negated));
    }
  }
  return parts.length === 1 ? parts[0]! : { kind: negated ? 'or' : 'and', items: parts };
}

function field(path: string[], op: string, arg: unknown, negated: boolean): Node {
  if (!negated) return { kind: 'field', path, op, arg };
  if (op === '$exists') return { kind: 'field', path, op, arg: !arg };
  const other = opposite[op];
  return other ? { kind: 'field', path, op: other, arg } : { kind: 'not', path, op, arg };
}

/**
 * Nested `$and` in `$and` (and `$or` in `$or`) become one; a one-item group is its item.
 * An empty group of either kind matches everything (as the matcher reads it), so it
 * drops out of an `$and` but makes a whole `$or` match everything: merging an empty
 * `$or` into its parent `$or` would lose that branch.
 */
function flatten(node: Node): Node {
  if (node.kind !== 'and' && node.kind !== 'or') return node;
  const items: Node[] = [];
  for (const item of node.items.map(flatten)) {
    if (node.kind === 'or' && (item.kind === 'and' || item.kind === 'or') && item.items.length === 0) return { kind: 'and', items: [] };
    if (item.kind === node.kind) items.push(...item.items);
    else items.push(item);
  }
  return items.length === 1 ? items[0]! : { kind: node.kind, items };
}

/** A field path as one string (for sets and comparisons). */
export function pathKey(path: readonly string[]): string {
  return path.join('\u0000');
}

/** A path as a field name again, dots inside names escaped. */
export function fieldName(path: readonly string[]): string {
  return path.map((s) => s.replace(/\./g, '\\.')).join('.');
}

/** The normal form as CouchDB's `_explain` shows it. */
export function toJson(node: Node): Record<string, unknown> {
  switch (node.kind) {
    case 'and':
    case 'or':
      if (node.kind === 'and' && node.items.length === 0) return {};
      return { [`$${node.kind}`]: node.items.map(toJson) };
    case 'field':
      return { [fieldName(node.path)]: { [node.op]: node.arg } };
    case 'not':
      return { [fieldName(node.path)]: { $not: { [node.op]: node.arg } } };
  }
}

/** Fields every matching document has (keys from `pathKey`). */
export function requiredFields(node: Node): Set<string> {
  switch (node.kind) {
    case 'field':
      return node.op === '$exists' && node.arg === false ? new Set() : new Set([pathKey(node.path)]);
    case 'not':
      // A missing field fails a negated condition too (only $exists: false matches it).
      return new Set([pathKey(node.path)]);
    case 'and': {
      const out = new Set<string>();
      for (const item of node.items) for (const f of requiredFields(item)) out.add(f);
      return out;
    }
    case 'or': {
      if (node.items.length === 0) return new Set();
      let out = requiredFields(node.items[0]!);
      for (const item of node.items.slice(1)) {
        const next = requiredFields(item);
        out = new Set([...out].filter((f) => next.has(f)));
      }
      return out;
    }
  }
}

/** Fields compared with `$eq` at the `$and` level: one value in every match. */
export function constantFields(node: Node): Set<string> {
  const items = node.kind === 'and' ? node.items : [node];
  return new Set(items.filter((n) => n.kind === 'field' && n.op === '$eq').map((n) => pathKey((n as { path: string[] }).path)));
}

/** Every field the selector looks at. */
export function fieldsOf(node: Node, out = new Set<string>()): Set<string> {
  if ('items' in node) for (const item of node.items) fieldsOf(item, out);
  else out.add(pathKey(node.path));
  return out;
}

/** CouchDB's indexable fields: `$and`-level fields under `$eq`, `$gt`, `$gte`, `$lt`, `$lte`. */
export function indexableFields(node: Node): Set<string> {
  const items = node.kind === 'and' ? node.items : [node];
  const out = new Set<string>();
  for (const n of items) if (n.kind === 'field' && rangeOps.has(n.op)) out.add(pathKey(n.path));
  return out;
}

const rangeOps: ReadonlySet<string> = new Set(['$eq', '$gt', '$gte', '$lt', '$lte']);

// ---- value intervals ------------------------------------------------------------

/** Values v with low < v < high (or <= where inclusive); undefined bounds are open. */
export interface Interval {
  low?: unknown;
  lowIncl: boolean;
  high?: unknown;
  highIncl: boolean;
}

export type Compare = (a: unknown, b: unknown) => number;

/** `$in` lists longer than this bound no range (matching still uses every value). */
const IN_VALUES_MAX = 1024;

/** Every array, and nothing else: [] is the least array, {} the least object (the next type). */
const allArrays: Interval = { low: [], lowIncl: true, high: {}, highIncl: false };

/**
 * Sorted disjoint intervals holding every value `key`'s field has in a matching
 * document; undefined when the selector does not bound it; [] when nothing matches.
 */
export function valueIntervals(node: Node, key: string, cmp: Compare = collate): Interval[] | undefined {
  switch (node.kind) {
    case 'not':
      return undefined;
    case 'field':
      return pathKey(node.path) === key ? opIntervals(node.op, node.arg, cmp) : undefined;
    case 'and': {
      let out: Interval[] | undefined;
      for (const item of node.items) {
        const next = valueIntervals(item, key, cmp);
        if (next !== undefined) out = out === undefined ? next : intersectSets(out, next, cmp);
      }
      return out;
    }
    case 'or': {
      if (node.items.length === 0) return undefined;
      let out: Interval[] = [];
      for (const item of node.items) {
        const next = valueIntervals(item, key, cmp);
        if (next === undefined) return undefined;
        out = normalizeSet([...out, ...next], cmp);
      }
      return out;
    }
  }
}

function opIntervals(op: string, arg: unknown, cmp: Compare): Interval[] | undefined {
  switch (op) {
    case '$eq':
      return [{ low: arg, lowIncl: true, high: arg, highIncl: true }];
    case '$gt':
      return [{ low: arg, lowIncl: false, highIncl: false }];
    case '$gte':
      return [{ low: arg, lowIncl: true, highIncl: false }];
    case '$lt':
      return [{ lowIncl: false, high: arg, highIncl: false }];
    case '$lte':
      return [{ lowIncl: false, high: arg, highIncl: true }];
    case '$in': {
      // Sorting a huge list would stall the planner; no query reads that many ranges anyway.
      if ((arg as unknown[]).length > IN_VALUES_MAX) return undefined;
      // An array field matches when one of its elements is in the list: keep every array.
      const points = (arg as unknown[]).filter((v) => !Array.isArray(v)).map((v) => ({ low: v, lowIncl: true, high: v, highIncl: true }));
      return normalizeSet([...points, allArrays], cmp);
    }
    case '$beginsWith':
      // Strings from (nearly) the prefix on, up to the end of strings (arrays come next).
      return [{ low: prefixFloor(arg as string), lowIncl: true, high: [], highIncl: false }];
    default:
      return undefined;
  }
}

/**
 * A string that collates at or below every string beginning with `prefix`. The prefix
 * itself is not always one: a longer string can collate below it when its next
 * characters reorder or contract with the prefix's last ones ("เง" < "เ", a Thai
 * prevowel; "À\u0332" < "À", canonical reordering of combining marks; "\u0648\u0654"
 * < "\u0648", a contraction). So the prefix is cut back to end in a printable ASCII
 * character or a CJK ideograph, which (checked against every BMP code point as the
 * next character) never combine with what follows; "" when none is left.
 */
function prefixFloor(prefix: string): string {
  const chars = [...prefix];
  let end = chars.length;
  while (end > 0 && !/^[\x20-\x7e\u4e00-\u9fff]$/.test(chars[end - 1]!)) end--;
  return chars.slice(0, end).join('');
}

export function isPoint(i: Interval, cmp: Compare): boolean {
  return i.low !== undefined && i.high !== undefined && i.lowIncl && i.highIncl && cmp(i.low, i.high) === 0;
}

function intersect(a: Interval, b: Interval, cmp: Compare): Interval | null {
  const out: Interval = { lowIncl: false, highIncl: false };
  if (a.low === undefined || (b.low !== undefined && higherLow(b, a, cmp))) {
    if (b.low !== undefined) out.low = b.low;
    out.lowIncl = b.lowIncl;
  } else {
    out.low = a.low;
    out.lowIncl = a.lowIncl;
  }
  if (a.high === undefined || (b.high !== undefined && lowerHigh(b, a, cmp))) {
    if (b.high !== undefined) out.high = b.high;
    out.highIncl = b.highIncl;
  } else {
    out.high = a.high;
    out.highIncl = a.highIncl;
  }
  if (out.low !== undefined && out.high !== undefined) {
    const c = cmp(out.low, out.high);
    if (c > 0 || (c === 0 && !(out.lowIncl && out.highIncl))) return null;
  }
  return out;
}

/** Whether x's lower bound is above y's (both defined). */
function higherLow(x: Interval, y: Interval, cmp: Compare): boolean {
  const c = cmp(x.low, y.low);
  return c > 0 || (c === 0 && !x.lowIncl && y.lowIncl);
}

/** Whether x's upper bound is below y's (both defined). */
function lowerHigh(x: Interval, y: Interval, cmp: Compare): boolean {
  const c = cmp(x.high, y.high);
  return c < 0 || (c === 0 && !x.highIncl && y.highIncl);
}

function intersectSets(a: Interval[], b: Interval[], cmp: Compare): Interval[] {
  const out: Interval[] = [];
  for (const x of a) {
    for (const y of b) {
      const i = intersect(x, y, cmp);
      if (i) out.push(i);
    }
  }
  return normalizeSet(out, cmp);
}

/** Sort by lower bound and merge intervals that overlap or touch. */
function normalizeSet(set: Interval[], cmp: Compare): Interval[] {
  const sorted = [...set].sort((x, y) => {
    if (x.low === undefined) return y.low === undefined ? 0 : -1;
    if (y.low === undefined) return 1;
    return cmp(x.low, y.low) || (x.lowIncl === y.lowIncl ? 0 : x.lowIncl ? -1 : 1);
  });
  const out: Interval[] = [];
  for (const next of sorted) {
    const last = out[out.length - 1];
    if (last && reaches(last, next, cmp)) {
      if (last.high !== undefined && (next.high === undefined || lowerHigh(last, next, cmp))) {
        if (next.high === undefined) delete last.high;
        else last.high = next.high;
        last.highIncl = next.highIncl;
      }
    } else {
      out.push({ ...next });
    }
  }
  return out;
}

/** Whether `b` (starting at or after `a`'s start) overlaps or touches `a`. */
function reaches(a: Interval, b: Interval, cmp: Compare): boolean {
  if (a.high === undefined || b.low === undefined) return true;
  const c = cmp(b.low, a.high);
  return c < 0 || (c === 0 && (a.highIncl || b.lowIncl));
}

