/**
 * The Mango planner and the selector normal form, without a node: which index a
 * selector and sort get (CouchDB's rules), the ranges read for equalities, intervals,
 * `$in` and `$or`, the normal form `_explain` shows, and the interval algebra behind it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allDocsIndex, mangoIndexes, plan, type MangoIndex, type PlanInput } from '../../src/api/coordinator/find/plan';
import { normalize, requiredFields, toJson, valueIntervals, pathKey } from '../../src/shard/query/mango-normal';

function jsonIndex(ddoc: string, name: string, fields: string[], partial?: Record<string, unknown>): MangoIndex {
  const [index] = mangoIndexes([
    {
      id: `_design/${ddoc}`,
      rev: '1-a',
      body: { language: 'query', views: { [name]: { map: { fields: Object.fromEntries(fields.map((f) => [f, 'asc'])), partial_filter_selector: partial ?? {} }, reduce: '_count' } } },
    },
  ]).slice(1);
  return index!;
}

const input = (selector: Record<string, unknown>, extra: Partial<PlanInput> = {}): PlanInput => ({ selector, sort: [], fields: undefined, useIndex: [], allowFallback: true, conflicts: false, ...extra });
const limits = { rangesMax: 256 };

const byType = jsonIndex('a', 'type', ['type']);
const byTypeDate = jsonIndex('b', 'type-date', ['type', 'date']);
const byN = jsonIndex('c', 'n', ['n']);
const partial = jsonIndex('d', 'partial', ['n'], { kind: 'x' });
const all = [allDocsIndex, byType, byTypeDate, byN, partial];

test('normal form: fields dotted, operators alone, negation pushed down', () => {
  assert.deepEqual(toJson(normalize({ a: 1 })), { a: { $eq: 1 } });
  assert.deepEqual(toJson(normalize({ a: { b: { $gt: 1, $lt: 5 } } })), { $and: [{ 'a.b': { $gt: 1 } }, { 'a.b': { $lt: 5 } }] });
  assert.deepEqual(toJson(normalize({ $not: { a: { $gt: 1 } } })), { a: { $lte: 1 } });
  assert.deepEqual(toJson(normalize({ $nor: [{ a: 1 }, { b: { $in: [2] } }] })), { $and: [{ a: { $ne: 1 } }, { b: { $nin: [2] } }] });
  assert.deepEqual(toJson(normalize({ a: { $not: { $regex: 'x' } } })), { a: { $not: { $regex: 'x' } } });
  assert.deepEqual(toJson(normalize({ $not: { $and: [{ a: 1 }, { b: { $exists: true } }] } })), { $or: [{ a: { $ne: 1 } }, { b: { $exists: false } }] });
  assert.deepEqual(toJson(normalize({})), {});
});

test('required fields: any condition but $exists:false, and $or only when every branch has it', () => {
  const keys = (s: Record<string, unknown>) => [...requiredFields(normalize(s))].sort();
  assert.deepEqual(keys({ a: { $ne: 1 }, b: { $exists: false }, c: { $regex: 'x' } }), ['a', 'c']);
  assert.deepEqual(keys({ $or: [{ a: 1, b: 2 }, { a: 3 }] }), ['a']);
});

test('intervals: $and intersects, $or unites, $in keeps every array, contradictions are empty', () => {
  const of = (s: Record<string, unknown>, f = 'n') => valueIntervals(normalize(s), pathKey([f]));
  assert.deepEqual(of({ n: { $gt: 1, $lte: 5 } }), [{ low: 1, lowIncl: false, high: 5, highIncl: true }]);
  assert.deepEqual(of({ $or: [{ n: { $lt: 3 } }, { n: { $gt: 1, $lt: 9 } }] }), [{ lowIncl: false, high: 9, highIncl: false }]);
  assert.deepEqual(of({ n: { $gt: 5, $lt: 2 } }), []);
  assert.deepEqual(of({ n: { $in: [3, 1, 3] } }), [
    { low: 1, lowIncl: true, high: 1, highIncl: true },
    { low: 3, lowIncl: true, high: 3, highIncl: true },
    { low: [], lowIncl: true, high: {}, highIncl: false },
  ]);
  assert.equal(of({ n: { $ne: 3 } }), undefined);
  assert.equal(of({ $or: [{ n: 1 }, { m: 2 }] }), undefined);
  assert.equal(of({ m: 1 }), undefined);
});

test('choice: the index whose bounded prefix covers the most selector fields; _all_docs with a warning otherwise', () => {
  assert.equal(plan(input({ type: 'visit', date: { $gt: '2026' } }), all, limits).index, byTypeDate);
  assert.equal(plan(input({ type: 'visit' }), all, limits).index, byType);
  const none = plan(input({ other: 1 }), all, limits);
  assert.equal(none.index, allDocsIndex);
  assert.deepEqual(none.warnings, ['No matching index found, create an index to optimize query time.']);
  // A field the selector does not require makes an index unusable (its docs would be missing).
  assert.equal(plan(input({ date: { $gt: '2026' } }), all, limits).index, allDocsIndex);
  // Partial indexes only by name.
  assert.equal(plan(input({ n: 1 }), [allDocsIndex, partial], limits).index, allDocsIndex);
  assert.equal(plan(input({ n: 1 }, { useIndex: ['_design/d'] }), [allDocsIndex, partial], limits).index, partial);
});

test('sort: needs an index whose fields it follows, one direction; desc reads the ranges backwards', () => {
  assert.throws(() => plan(input({ n: { $gt: 1 } }, { sort: [{ field: 'x', dir: 'asc' }] }), all, limits), { token: 'no_usable_index' });
  const byDate = plan(input({ type: 'visit' }, { sort: [{ field: 'date', dir: 'desc' }] }), all, limits);
  assert.equal(byDate.index, byTypeDate);
  assert.equal(byDate.descending, true);
  assert.deepEqual(byDate.ranges, [{ start: ['visit'], startMax: true, end: ['visit'], inclusiveEnd: true }]);
  assert.throws(() => plan(input({ type: { $gt: 'a' } }, { sort: [{ field: 'date', dir: 'asc' }] }), [allDocsIndex, byTypeDate], limits), { token: 'no_usable_index' });
});

test('ranges: equalities fix a prefix, an interval closes it, $in and $or of values multiply it', () => {
  assert.deepEqual(plan(input({ type: 'visit', date: { $gt: '2026', $lt: '2027' } }), all, limits).ranges, [
    { start: ['visit', '2026'], startMax: true, end: ['visit', '2027'], inclusiveEnd: false },
  ]);
  assert.deepEqual(plan(input({ type: { $in: ['a', 'b'] }, date: { $gte: 'x' } }), [allDocsIndex, byTypeDate], limits).ranges, [
    { start: ['a', 'x'], end: ['a'], endMax: true, inclusiveEnd: true },
    { start: ['b', 'x'], end: ['b'], endMax: true, inclusiveEnd: true },
    { start: [[]], end: [{}], inclusiveEnd: false },
  ]);
  assert.deepEqual(plan(input({ $or: [{ n: 1 }, { n: 7 }] }), all, limits).ranges.map((r) => r.start), [[1], [7]]);
  assert.equal(plan(input({ n: { $gt: 5, $lt: 2 } }), all, limits).nothing, true);
  // Past rangesMax the field is not split into ranges (it is still matched on every row).
  assert.equal(plan(input({ n: { $in: [1, 2, 3, 4] } }), all, { rangesMax: 3 }).ranges.length, 1);
});

test('_all_docs: the _id bounds by code point; covering needs every wanted field in the index', () => {
  assert.deepEqual(plan(input({ _id: { $gt: 'B', $lte: 'a' } }), [allDocsIndex], limits).ranges, [{ start: 'B', end: 'a', inclusiveEnd: true }]);
  assert.equal(plan(input({ type: 'visit' }, { fields: ['_id', 'type'] }), all, limits).covering, true);
  assert.equal(plan(input({ type: 'visit' }, { fields: ['_id', '_rev'] }), all, limits).covering, false);
  assert.equal(plan(input({ type: 'visit', x: 1 }, { fields: ['type'] }), all, limits).covering, false);
});
