/**
 * Mango selectors: CouchDB 3.x's JSON query language, compiled to a predicate.
 *
 * A selector is a JSON object. Each member is either a field or an operator:
 * - `{"field": value}` with a non-object value (or `{}`) means `{"field": {"$eq": value}}`;
 * - several members in one object mean their `$and` (implicit $and);
 * - `{"a": {"b": cond}}` means `{"a.b": cond}`; a field name is a dotted path whose
 *   segments are object keys or array indexes, `\.` writes a literal dot
 *   (CouchDB's `mango_util:parse_field`: split on unescaped dots, then drop every
 *   backslash); empty segments are invalid;
 * - combination operators `$and` `$or` `$nor` (arrays) and `$not` (object) may
 *   appear at the top or under a field, where the field is distributed over their
 *   arguments: `{"a": {"$or": [{"$lt": 1}, {"$gt": 9}]}}`;
 * - `$elemMatch` / `$allMatch` apply a fresh selector to the elements of an array,
 *   `$keyMapMatch` to the keys of an object; inside it an operator with no field
 *   applies to the element itself;
 * - condition operators: `$lt $lte $eq $ne $gte $gt` (by JSON collation, across
 *   types: `{"$gt": 5}` matches any string), `$exists`, `$type`, `$in`, `$nin`,
 *   `$size`, `$mod`, `$regex`, `$beginsWith`, `$all`.
 * The empty selector `{}` matches every document; elsewhere `{}` is the value {}.
 *
 * Semantics follow CouchDB's `mango_selector` (normalize, then match):
 * - A condition on a field that is missing fails, except `$exists: false`; a path
 *   that runs into a scalar or a bad array index fails, even `$exists: false`.
 * - Negation is pushed down to the fields (De Morgan), so `$not` and `$nor` never
 *   make a missing field match: `{"$not": {"a": 1}}` means `{"a": {"$ne": 1}}`.
 * - Empty `$and`, `$or` and `$nor` match everything (even when negated); empty
 *   `$in` and `$all` match nothing; empty `$nin` matches every present field.
 * - `$in`/`$nin` on an array field test its elements; `$all: [[...]]` also
 *   matches a field equal to that one array.
 * - Conditions on `_id` compare strings by code point, like `_all_docs`.
 *
 * Where we differ, on purpose:
 * - An operator with no field at the top scope (`{"$gt": 1}`, or inside a
 *   top-level `$and`/`$or`) is rejected; CouchDB rejects only the first and
 *   otherwise compares the whole document.
 * - `$type` accepts only the six JSON type names; CouchDB accepts any string and
 *   never matches. `$mod` rejects divisor 0 (CouchDB fails at match time).
 * - `$regex` uses RE2 syntax (the `re2js` engine), not PCRE: matching takes time
 *   linear in the text (times the compiled pattern's size), so no pattern can
 *   backtrack without bound. Inline flags `(?i)`, `(?m)`, `(?s)`, classes, `\d \w \s
 *   \b`, `\p{..}`, `[[:alpha:]]`, named groups, lazy quantifiers and `{n,m}` (n, m at
 *   most 1000) work as in PCRE. Constructs that need backtracking are refused with
 *   400 at compile time: backreferences (`\1`), lookahead `(?=` `(?!`, lookbehind
 *   `(?<=` `(?<!`, atomic groups `(?>`, possessive quantifiers `a++`, and also
 *   `(?x)`, `(?#...)`, `\Z`, `\G`, `\K`, `\R`, `\h`. Without `(?m)`, `$` matches only
 *   at the very end (PCRE also matches before a final newline).
 * - Equality in `$all` uses collation (exact for JSON values), where CouchDB uses
 *   Erlang term equality; the two differ only for 1 vs 1.0, which JSON.parse merges.
 * - `$mod` needs `Number.isInteger`, so 4.0 counts as an integer.
 * - `$text` and `$default` (text indexes) are unsupported, like `$where` and the geo
 *   operators.
 *
 * Compile once with `compileSelector`, then call the predicate per document: no
 * per-call parsing. Selector nesting is bounded by `selectorDepthMax`, so compiling
 * and matching recurse at most that deep; compared values are walked by `collate`
 * with an explicit stack. Pure; no I/O. For `_find` (and `_changes?filter=_selector`).
 */

import { isPlainObject } from '../../json';
import assert from 'node:assert/strict';

import { RE2JS } from 're2js';

import { InvalidSelectorError } from '../../errors';
import { collate, collateRaw } from './collate';

/** Deepest nesting of objects in a selector; deeper is rejected. */
export const selectorDepthMax = 64;

/** The compiled form of a selector: true when the document matches. */
export type DocPredicate = (doc: Record<string, unknown>) => boolean;

/** Matches a value in scope: the document, or an element in `$elemMatch`. */
type Matcher = (scope: unknown) => boolean;

/** Tests a present field value against one operator. */
type Test = (value: unknown) => boolean;

type Comparer = (a: unknown, b: unknown) => number;

interface Context {
  /** Nesting depth of the selector object being compiled; the top is 1. */
  depth: number;
  /** An odd number of `$not`/`$nor` lies above: the condition is negated. */
  negated: boolean;
  /** `doc` at the top; `element` inside `$elemMatch`, `$allMatch`, `$keyMapMatch`. */
  scope: 'doc' | 'element';
}

const jsonTypes: ReadonlySet<string> = new Set([
  'null',
  'boolean',
  'number',
  'string',
  'array',
  'object',
]);

/** Operators that test the value at one field (the combination operators aside). */
const conditionOperators: ReadonlySet<string> = new Set([
  '$eq',
  '$ne',
  '$lt',
  '$lte',
  '$gt',
  '$gte',
  '$in',
  '$nin',
  '$all',
  '$exists',
  '$type',
  '$size',
  '$mod',
  '$regex',
  '$beginsWith',
  '$elemMatch',
  '$allMatch',
  '$keyMapMatch',
]);

/** Operators CouchDB knows but does not (or we do not) support. */
const unsupportedOperators: ReadonlySet<string> = new Set([
  '$where',
  '$geoWithin',
  '$geoIntersects',
  '$near',
  '$nearSphere',
  '$text',
  '$default',
]);

/** Compile a selector into a predicate; throws InvalidSelectorError if invalid. */
export function compileSelector(selector: unknown): DocPredicate {
  if (!isPlainObject(selector)) {
    throw new InvalidSelectorError('Invalid selector: must be a JSON object', 'invalid_selector_json');
  }
  if (Object.keys(selector).length === 0) return () => true;
  return compileCondition(selector, [], { depth: 1, negated: false, scope: 'doc' });
}

/** A condition at `path`: an operator object, a nested field object or a bare value. */
function compileCondition(condition: unknown, path: readonly string[], ctx: Context): Matcher {
  if (!isPlainObject(condition)) return compileOperator('$eq', condition, path, ctx);
  const keys = Object.keys(condition);
  if (keys.length === 0) return compileOperator('$eq', condition, path, ctx);
  if (ctx.depth > selectorDepthMax) {
    throw new InvalidSelectorError(`Selector is nested deeper than ${selectorDepthMax} levels`);
  }
  const parts = keys.map((key) => compileMember(key, condition[key], path, ctx));
  // Implicit $and; under negation De Morgan turns it into an $or.
  return ctx.negated ? anyOf(parts) : allOf(parts);
}

/** One member `key: arg` of a selector object whose field path is `path`. */
function compileMember(key: string, arg: unknown, path: readonly string[], ctx: Context): Matcher {
  const child: Context = { ...ctx, depth: ctx.depth + 1 };
  switch (key) {
    case '$and':
    case '$or': {
      const parts = requireArray(key, arg).map((a) => compileCondition(a, path, child));
      // NOT(a AND b) = NOT a OR NOT b; the parts carry the negation themselves.
      return (key === '$and') !== ctx.negated ? allOf(parts) : anyOf(parts);
    }
    case '$nor': {
      const negatedChild = { ...child, negated: !ctx.negated };
      const parts = requireArray(key, arg).map((a) => compileCondition(a, path, negatedChild));
      return ctx.negated ? anyOf(parts) : allOf(parts);
    }
    case '$not':
      if (!isPlainObject(arg)) throw badArgument(key, arg);
      return compileCondition(arg, path, { ...child, negated: !ctx.negated });
  }
  if (key.startsWith('$')) return compileOperator(key, arg, path, ctx);
  return compileCondition(arg, path.concat(parseField(key)), child);
}

/** A condition operator applied at `path`. */
function compileOperator(op: string, arg: unknown, path: readonly string[], ctx: Context): Matcher {
  if (unsupportedOperators.has(op)) {
    throw new InvalidSelectorError(`Unsupported operator: ${op}`, 'not_supported');
  }
  if (!conditionOperators.has(op)) throw new InvalidSelectorError(`Invalid operator: ${op}`, 'invalid_operator');
  if (path.length === 0 && ctx.scope === 'doc') {
    throw new InvalidSelectorError('One or more conditions is missing a field name.');
  }
  // CouchDB compares `_id` by code point, everything else by collation.
  const compare: Comparer = path.length === 1 && path[0] === '_id' ? collateRaw : collate;
  const test = makeTest(op, arg, compare, ctx);
  const existsArg = op === '$exists' ? (arg as boolean) : undefined;
  return matchAtPath(path, test, ctx.negated, existsArg);
}

/** Validate an operator's argument and build its test of a present value. */
function makeTest(op: string, arg: unknown, compare: Comparer, ctx: Context): Test {
  switch (op) {
    case '$eq':
      if (isScalar(arg)) return (value) => value === arg;
      return (value) => compare(value, arg) === 0;
    case '$ne':
      if (isScalar(arg)) return (value) => value !== arg;
      return (value) => compare(value, arg) !== 0;
    case '$lt':
      return (value) => compare(value, arg) < 0;
    case '$lte':
      return (value) => compare(value, arg) <= 0;
    case '$gt':
      return (value) => compare(value, arg) > 0;
    case '$gte':
      return (value) => compare(value, arg) >= 0;
    case '$in': {
      const isMember = makeMembership(requireArray(op, arg), compare);
      return (value) => (Array.isArray(value) ? value.some(isMember) : isMember(value));
    }
    case '$nin': {
      const isMember = makeMembership(requireArray(op, arg), compare);
      return (value) => !(Array.isArray(value) ? value.some(isMember) : isMember(value));
    }
    case '$all':
      return makeAllTest(requireArray(op, arg), compare);
    case '$exists':
      if (typeof arg !== 'boolean') throw badArgument(op, arg);
      // Reached only for present values; a missing field is decided in matchAtPath.
      return () => arg;
    case '$type':
      if (typeof arg !== 'string' || !jsonTypes.has(arg)) throw badArgument(op, arg);
      return (value) => jsonTypeOf(value) === arg;
    case '$size':
      if (!Number.isInteger(arg) || (arg as number) < 0) throw badArgument(op, arg);
      return (value) => Array.isArray(value) && value.length === arg;
    case '$mod':
      return makeModTest(arg);
    case '$regex':
      return makeRegexTest(arg);
    case '$beginsWith': {
      if (typeof arg !== 'string') throw badArgument(op, arg);
      return (value) => typeof value === 'string' && value.startsWith(arg);
    }
    case '$elemMatch':
    case '$allMatch':
    case '$keyMapMatch':
      return makeSubSelectorTest(op, arg, ctx);
    default:
      // conditionOperators and this switch list the same operators.
      assert.fail(`mango: operator ${op} has no test`);
  }
}

/** `$elemMatch`, `$allMatch`, `$keyMapMatch`: a selector applied to each element or key. */
function makeSubSelectorTest(op: string, arg: unknown, ctx: Context): Test {
  if (!isPlainObject(arg)) throw badArgument(op, arg);
  const inner = compileCondition(arg, [], { depth: ctx.depth + 1, negated: false, scope: 'element' });
  switch (op) {
    case '$elemMatch':
      return (value) => Array.isArray(value) && value.some(inner);
    case '$allMatch':
      // An empty array has no element to match: CouchDB says false.
      return (value) => Array.isArray(value) && value.length > 0 && value.every(inner);
    default:
      return (value) => isPlainObject(value) && Object.keys(value).some(inner);
  }
}

/**
 * Membership in a list of JSON values under `compare`. Both collations call
 * scalars equal only when they are identical, so scalars go through a Set and
 * only arrays and objects need comparing.
 */
function makeMembership(values: readonly unknown[], compare: Comparer): Test {
  const scalars = new Set<unknown>();
  const containers: unknown[] = [];
  for (const v of values) {
    if (isScalar(v)) scalars.add(v);
    else containers.push(v);
  }
  if (containers.length === 0) return (value) => scalars.has(value);
  return (value) =>
    isScalar(value) ? scalars.has(value) : containers.some((c) => compare(value, c) === 0);
}

/** `$all`: an array field holding every argument, or equal to a lone array argument. */
function makeAllTest(args: readonly unknown[], compare: Comparer): Test {
  if (args.length === 0) return () => false;
  const lone = args.length === 1 && Array.isArray(args[0]) ? args[0] : undefined;
  return (value) => {
    if (!Array.isArray(value)) return false;
    const holdsAll = args.every((a) => value.some((v) => compare(v, a) === 0));
    return holdsAll || (lone !== undefined && compare(value, lone) === 0);
  };
}

/** `$mod: [divisor, remainder]`: integer field whose remainder (sign of the field) matches. */
function makeModTest(arg: unknown): Test {
  if (!Array.isArray(arg) || arg.length !== 2) throw badArgument('$mod', arg);
  const [divisor, remainder] = arg as [unknown, unknown];
  if (!Number.isInteger(divisor) || !Number.isInteger(remainder) || divisor === 0) {
    throw badArgument('$mod', arg);
  }
  const d = divisor as number;
  const r = remainder as number;
  return (value) => Number.isInteger(value) && (value as number) % d === r;
}

/** Why an RE2 syntax error may be PCRE syntax that backtracks, for the error reason. */
const re2Unsupported =
  'backreferences, lookahead, lookbehind, atomic groups and possessive quantifiers are not supported ($regex uses linear-time RE2 syntax)';

/**
 * `$regex`: an unanchored search in string fields, in RE2 syntax (linear time in the
 * text, whatever the pattern: no catastrophic backtracking). Compiled once per selector.
 */
function makeRegexTest(arg: unknown): Test {
  if (typeof arg !== 'string') throw badArgument('$regex', arg);
  let regex: RE2JS;
  try {
    regex = RE2JS.compile(arg);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new InvalidSelectorError(`Bad argument for operator $regex: ${detail}; ${re2Unsupported}`, 'bad_arg');
  }
  return (value) => typeof value === 'string' && regex.test(value);
}

/**
 * Apply `test` to the value at `path` in scope. A missing field matches only an
 * (effective) `$exists: false`; a path through a scalar or a bad index never matches.
 */
function matchAtPath(
  path: readonly string[],
  test: Test,
  negated: boolean,
  existsArg: boolean | undefined,
): Matcher {
  // Missing matches when the effective condition is $exists:false, i.e. arg === negated.
  const whenMissing = existsArg !== undefined && existsArg === negated;
  if (path.length === 0) return (scope) => test(scope) !== negated;
  return (scope) => {
    const found = getField(scope, path);
    if (found === missing) return whenMissing;
    if (found === badPath) return false;
    return test(found) !== negated;
  };
}

/**
 * The value at a field path (CouchDB's get_field), or undefined when the document does
 * not have it (missing, or the path runs through a scalar or a bad array index).
 */
export function fieldValue(scope: unknown, path: readonly string[]): unknown {
  const found = getField(scope, path);
  return found === missing || found === badPath ? undefined : found;
}

const missing: unique symbol = Symbol('missing');
const badPath: unique symbol = Symbol('badPath');

/** CouchDB's `mango_doc:get_field`: object keys, and array indexes on arrays. */
function getField(scope: unknown, path: readonly string[]): unknown {
  let current = scope;
  for (const name of path) {
    if (isPlainObject(current)) {
      // Own properties only: a document must not "have" `constructor` or `__proto__`.
      if (!Object.hasOwn(current, name)) return missing;
      current = current[name];
      if (current === undefined) return missing;
    } else if (Array.isArray(current)) {
      if (!arrayIndexPattern.test(name)) return badPath;
      const index = Number(name);
      if (index < 0 || index >= current.length) return badPath;
      current = current[index];
    } else {
      return badPath;
    }
  }
  return current;
}

/** What Erlang's `list_to_integer` accepts. */
const arrayIndexPattern = /^[+-]?[0-9]+$/;

/**
 * Split a field name into path segments on unescaped dots, then drop backslashes,
 * as CouchDB's `mango_util:parse_field` does: "a\\.b" is the one key "a.b".
 */
export function parseField(field: string): string[] {
  const segments = field.includes('\\') ? field.split(/(?<!\\)\./) : field.split('.');
  if (segments.some((s) => s.length === 0)) {
    throw new InvalidSelectorError(`Invalid field name: ${JSON.stringify(field)}`, 'invalid_field_name');
  }
  return field.includes('\\') ? segments.map((s) => s.replace(/\\/g, '')) : segments;
}

function allOf(parts: readonly Matcher[]): Matcher {
  if (parts.length === 1) return parts[0] as Matcher;
  // Empty $and (and, after De Morgan, empty negated $or) matches everything.
  return (scope) => {
    for (const part of parts) if (!part(scope)) return false;
    return true;
  };
}

function anyOf(parts: readonly Matcher[]): Matcher {
  if (parts.length === 1) return parts[0] as Matcher;
  // CouchDB: an empty $or matches everything, like an empty $and.
  if (parts.length === 0) return () => true;
  return (scope) => {
    for (const part of parts) if (part(scope)) return true;
    return false;
  };
}

function requireArray(op: string, arg: unknown): unknown[] {
  if (!Array.isArray(arg)) throw badArgument(op, arg);
  return arg;
}

function badArgument(op: string, arg: unknown): InvalidSelectorError {
  return new InvalidSelectorError(`Bad argument for operator ${op}: ${describe(arg)}`, 'bad_arg');
}

/** A short rendering of a user value for an error reason. */
function describe(value: unknown): string {
  const lengthMax = 100;
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = `<${typeof value}>`;
  }
  return text.length > lengthMax ? `${text.slice(0, lengthMax)}…` : text;
}

function jsonTypeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** null, booleans, numbers, strings: values that collate equal only when identical. */
function isScalar(value: unknown): boolean {
  return value === null || (typeof value !== 'object' && typeof value !== 'function');
}
