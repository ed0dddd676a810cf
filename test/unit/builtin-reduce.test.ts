/**
 * Built-in reduces: CouchDB's behaviour as table cases, and the law the view engine
 * rests on as fast-check properties: reducing all rows equals rereducing (in any
 * number of levels) the reductions of any partition of the rows, in any order; for
 * _approx_count_distinct, merging sketches equals the sketch of the union. Seed
 * printed as a diagnostic; rerun with REDUCE_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';

import { BuiltinReduceError, DivanError } from '../../src/errors';
import { mapError } from '../../src/api/http/error-map';
import {
  builtinReducer,
  BuiltinReducer,
  HLL_PRECISION,
  ReduceRow,
  SUM_ERROR_REASON,
} from '../../src/shard/index/builtin-reduce';

const seed = Number(process.env['REDUCE_SEED'] ?? Date.now() % 2_147_483_647);

function reducer(name: string): BuiltinReducer {
  const r = builtinReducer(name);
  assert.ok(r, name);
  return r;
}
const count = reducer('_count');
const sum = reducer('_sum');
const stats = reducer('_stats');
const approx = reducer('_approx_count_distinct');

const rows = (values: unknown[]): ReduceRow[] => values.map((v, i) => [i, v] as const);
/** Plain JSON, so prototypes and member order of the two sides do not matter... */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
/** ...except where member order is part of the answer. */
const text = (v: unknown): string => JSON.stringify(v);

test('lookup: only the four built-in names, exactly', () => {
  for (const name of ['_count', '_sum', '_stats', '_approx_count_distinct']) assert.equal(builtinReducer(name)?.name, name);
  for (const name of ['_sum_x', '_first', '_top_3', 'sum', '', '__proto__', 'constructor', 'function(k,v){return 1}']) {
    assert.equal(builtinReducer(name), undefined, name);
  }
});

test('_count: counts rows, rereduce sums counts', () => {
  assert.equal(count.reduce([]), 0);
  assert.equal(count.reduce(rows([1, 'x', null, { a: 1 }])), 4);
  assert.equal(count.rereduce([3, 4, 0]), 7);
  assert.equal(count.finish(7), 7);
});

test('_sum: numbers, arrays element-wise, a number meeting an array, nested objects', () => {
  assert.equal(sum.reduce([]), 0);
  assert.equal(sum.reduce(rows([1, 2, 3.5])), 6.5);
  assert.deepEqual(sum.reduce(rows([[1, 2], [10], [100, 200, 300]])), [111, 202, 300]);
  assert.deepEqual(sum.reduce(rows([5, [1, 2]])), [6, 2]);
  assert.deepEqual(sum.reduce(rows([[1, 2], 5])), [6, 2]);
  const got = sum.reduce(
    rows([
      { n: 1, arr: [1, 2], deep: { p: 3 }, z: 1 },
      { z: 1, n: 2, arr: 3, deep: { q: 5 }, only: 1 },
    ]),
  );
  // members sorted by code point, as CouchDB sorts them
  assert.equal(text(got), text({ arr: [4, 2], deep: { p: 3, q: 5 }, n: 3, only: 1, z: 2 }));
  assert.equal(sum.rereduce([1, 2, 3]), 6);
  assert.deepEqual(sum.rereduce([[1], [2, 3]]), [3, 3]);
});

test('_sum: a member named __proto__ is data, not a prototype', () => {
  const a = JSON.parse('{"__proto__": 1, "x": 1}');
  const b = JSON.parse('{"__proto__": 2}');
  const got = sum.reduce(rows([a, b])) as Record<string, unknown>;
  assert.equal(text(got), '{"__proto__":3,"x":1}');
  assert.equal(Object.getPrototypeOf(got), Object.prototype);
});

test('_sum: values it cannot add become CouchDB\'s in-band builtin_reduce_error', () => {
  const err = (cause: unknown) => ({ error: 'builtin_reduce_error', reason: SUM_ERROR_REASON, caused_by: cause });
  assert.deepEqual(sum.reduce(rows([1, 'two'])), err('two'));
  assert.deepEqual(sum.reduce(rows([null])), err(null));
  assert.deepEqual(sum.reduce(rows([true])), err(true));
  assert.deepEqual(sum.reduce(rows([{ a: 1 }, 2])), err(2)); // objects do not mix with numbers
  assert.deepEqual(sum.reduce(rows([{ a: 1 }, [2]])), err([2]));
  assert.deepEqual(sum.reduce(rows([[1, 2], ['x']])), err([1, 2])); // CouchDB reports the running sum's tail
  assert.deepEqual(sum.reduce(rows([{ a: 'x' }, { a: 1 }])), err(1)); // the first object is taken unchecked; the member added to it is reported
  // the error is a partial like any other: it wins every rereduce it takes part in
  const e = sum.reduce(rows([1, 'two']));
  assert.deepEqual(sum.rereduce([5, e, 7]), e);
  assert.deepEqual(sum.rereduce([{ a: 1 }, e]), e);
  assert.deepEqual(plain(sum.finish(e)), err('two'));
  // CouchDB's quirk kept: an object meeting a running sum of exactly 0 replaces it
  assert.deepEqual(sum.reduce(rows([0, { a: 1 }])), { a: 1 });
});

test('_stats: numbers, arrays of numbers, precomputed stats objects', () => {
  assert.deepEqual(stats.reduce([]), { sum: 0, count: 0, min: 0, max: 0, sumsqr: 0 });
  const s = stats.reduce(rows([3, -1, 4]));
  assert.equal(text(s), text({ sum: 6, count: 3, min: -1, max: 4, sumsqr: 26 }));
  assert.deepEqual(stats.reduce(rows([[1, 10], [2, 20]])), [
    { sum: 3, count: 2, min: 1, max: 2, sumsqr: 5 },
    { sum: 30, count: 2, min: 10, max: 20, sumsqr: 500 },
  ]);
  const pre = { sum: 10, count: 4, min: 1, max: 4, sumsqr: 30, note: 'extra members are ignored' };
  assert.deepEqual(stats.reduce(rows([pre, 5])), { sum: 15, count: 5, min: 1, max: 5, sumsqr: 55 });
  assert.deepEqual(stats.reduce(rows([5, pre])), { sum: 15, count: 5, min: 1, max: 5, sumsqr: 55 });
  assert.deepEqual(stats.rereduce([stats.reduce(rows([1, 2])), stats.reduce(rows([7]))]), {
    sum: 10,
    count: 3,
    min: 1,
    max: 7,
    sumsqr: 54,
  });
  assert.equal(stats.finish(s), s);
});

test('_stats: anything else fails the reduction with 500 invalid_value, as CouchDB', () => {
  const fails = (values: unknown[], reason: RegExp) =>
    assert.throws(
      () => stats.reduce(rows(values)),
      (e: unknown) => e instanceof BuiltinReduceError && e.token === 'invalid_value' && reason.test(e.reason),
      JSON.stringify(values),
    );
  fails(['x'], /^non-numeric _stats input: "x"$/);
  fails([1, 'x'], /^The _stats function requires that map values be numbers or arrays of numbers, not '"x"'$/);
  fails([1, null], /not 'null'/);
  fails([1, [1]], /not '\[1\]'/);
  fails([[1], 1], /not '1'/);
  fails([[1, 2], [1]], /not '\[1\]'/);
  fails([{ sum: 1, count: 1, min: 1, max: 1 }], /^user _stats input missing required field sumsqr \(/);
  fails([1, { sum: 1, count: '1', min: 1, max: 1, sumsqr: 1 }], /^non-numeric _stats input received for count: "1"$/);
  const mapped = mapError(new BuiltinReduceError('r'));
  assert.equal(mapped.status, 500);
  assert.deepEqual(mapped.body, { error: 'invalid_value', reason: 'r' });
  assert.ok(new BuiltinReduceError('r') instanceof DivanError);
});

test('_approx_count_distinct: small counts are exact, duplicates count once, values ignored', () => {
  assert.equal(approx.finish(approx.reduce([])), 0);
  assert.equal(approx.finish(approx.reduce([['k', 1]])), 1);
  const keys: unknown[] = [null, false, true, 0, 1, 'a', 'A', ['a'], { a: 1 }, [1, 'x', { b: null }]];
  assert.equal(approx.finish(approx.reduce(keys.map((k) => [k, 'v'] as const))), keys.length);
  const once = approx.reduce(keys.map((k) => [k, 1] as const));
  const thrice = approx.reduce([...keys, ...keys, ...keys].map((k, i) => [k, i] as const));
  assert.deepEqual(thrice, once);
  // the partial is small, plain JSON
  const p = approx.reduce([['k', 1]]);
  assert.deepEqual(plain(p), p);
  assert.equal(Buffer.from((p as { hll: string }).hll, 'base64').length, 2 ** HLL_PRECISION);
});

test('_approx_count_distinct: 10,000 distinct keys within 3 standard errors (~2.3% each)', (t) => {
  const keys: unknown[] = [];
  for (let i = 0; i < 10_000; i++) keys.push(i % 3 === 0 ? i : i % 3 === 1 ? `doc-${i}` : [i, 'x']);
  const partials = [];
  for (let i = 0; i < keys.length; i += 1000) partials.push(approx.reduce(keys.slice(i, i + 1000).map((k) => [k, null] as const)));
  const estimate = approx.finish(approx.rereduce(partials)) as number;
  assert.ok(Number.isInteger(estimate));
  const relErr = Math.abs(estimate - keys.length) / keys.length;
  t.diagnostic(`estimate ${estimate} for 10000 distinct keys, error ${(relErr * 100).toFixed(2)}%`);
  assert.ok(relErr < 3 * (1.04 / Math.sqrt(2 ** HLL_PRECISION)), `estimate ${estimate}`);
  // the same keys again, in another order, do not move the estimate
  const again = approx.reduce([...keys].reverse().map((k) => [k, 1] as const));
  assert.equal(approx.finish(approx.rereduce([approx.rereduce(partials), again])), estimate);
});

// ---------------------------------------------------------------------------------
// properties

/** Shuffle, cut into chunks, reduce each, then rereduce in random groups until one is left. */
function reduceInPieces(r: BuiltinReducer, all: readonly ReduceRow[], rand: () => number): unknown {
  const shuffled = [...all];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  let level: unknown[] = [];
  for (let i = 0; i < shuffled.length; ) {
    const n = 1 + Math.floor(rand() * 4);
    level.push(r.reduce(shuffled.slice(i, i + n)));
    i += n;
  }
  while (level.length > 1) {
    const next: unknown[] = [];
    for (let i = 0; i < level.length; ) {
      const n = 1 + Math.floor(rand() * 3);
      next.push(r.rereduce(level.slice(i, i + n)));
      i += n;
    }
    level = next;
  }
  return level.length === 1 ? r.rereduce(level) : r.rereduce([]);
}

function law(t: { diagnostic(m: string): void }, r: BuiltinReducer, values: fc.Arbitrary<unknown>, runs = 300): void {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(fc.array(values, { minLength: 1, maxLength: 30 }), fc.integer(), (vs, shuffleSeed) => {
      const all = rows(vs);
      let s = shuffleSeed >>> 0;
      const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
      assert.deepEqual(plain(reduceInPieces(r, all, rand)), plain(r.reduce(all)));
    }),
    { seed, numRuns: runs },
  );
}

const int = fc.integer({ min: -1000, max: 1000 });
const intArray = fc.array(int, { minLength: 1, maxLength: 4 });

test('law: _count', (t) => law(t, count, fc.jsonValue()));

test('law: _sum over integers', (t) => law(t, sum, int));
test('law: _sum over integers mixed with arrays of integers', (t) => law(t, sum, fc.oneof(int, intArray)));
test('law: _sum over nested objects', (t) =>
  law(
    t,
    sum,
    fc.record(
      { a: fc.oneof(int, intArray), b: int, c: fc.record({ x: int, y: intArray }, { requiredKeys: [] }) },
      { requiredKeys: [] },
    ),
  ));

test('law: _stats over integers and precomputed stats objects', (t) =>
  law(
    t,
    stats,
    fc.oneof(
      int,
      fc.record({ sum: int, count: fc.nat(50), min: int, max: int, sumsqr: fc.nat() }),
    ),
  ));
test('law: _stats over arrays of integers', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }).chain((len) => fc.array(fc.array(int, { minLength: len, maxLength: len }), { minLength: 1, maxLength: 20 })),
      fc.integer(),
      (vs, shuffleSeed) => {
        let s = shuffleSeed >>> 0;
        const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
        assert.deepEqual(plain(reduceInPieces(stats, rows(vs), rand)), plain(stats.reduce(rows(vs))));
      },
    ),
    { seed, numRuns: 200 },
  );
});

test('law: _approx_count_distinct merges to the sketch of the union, in any order and chunking', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 40 }), fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 40 }), fc.integer(), (a, b, shuffleSeed) => {
      const union = [...a, ...b, ...a.slice(0, 5)].map((k) => [k, null] as const);
      const merged = approx.rereduce([approx.reduce(a.map((k) => [k, 1] as const)), approx.reduce(b.map((k) => [k, 2] as const))]);
      assert.deepEqual(merged, approx.reduce(union));
      let s = shuffleSeed >>> 0;
      const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
      if (union.length > 0) assert.deepEqual(reduceInPieces(approx, union, rand), merged);
    }),
    { seed, numRuns: 200 },
  );
});
