/**
 * JSON collation: CouchDB's documented key order as a table, code-point order for
 * raw comparison, and the laws of a total order as fast-check properties (seeds are
 * printed on failure; pin any failure as a table case).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';

import { collate, collateRaw, compareRaw, rankOf } from '../../src/shard/query/collate';

const sign = (n: number): number => (n < 0 ? -1 : n > 0 ? 1 : 0);

/** CouchDB docs, "Views Collation": keys in ascending order. */
const couchDocsOrder: unknown[] = [
  null,
  false,
  true,
  1,
  2,
  3.0,
  4,
  'a',
  'A',
  'aa',
  'b',
  'B',
  'ba',
  'bb',
  ['a'],
  ['b'],
  ['b', 'c'],
  ['b', 'c', 'a'],
  ['b', 'd'],
  ['b', 'd', 'e'],
  { a: 1 },
  { a: 2 },
  { b: 1 },
  { b: 2 },
  { b: 2, a: 1 },
  { b: 2, c: 2 },
];

test('collate: CouchDB documented order, every pair', () => {
  for (let i = 0; i < couchDocsOrder.length; i++) {
    for (let j = 0; j < couchDocsOrder.length; j++) {
      const a = couchDocsOrder[i];
      const b = couchDocsOrder[j];
      assert.equal(collate(a, b), sign(i - j), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }
  }
});

test('collate: ICU-like string order', () => {
  // Lowercase before uppercase, then base letters; punctuation < digits < letters.
  const ordered = ['_', '-', ',', ';', ':', '!', '?', '.', "'", '"', '(', ')', '[', ']', '{', '}',
    '@', '*', '/', '\\', '&', '#', '%', '`', '^', '+', '<', '=', '>', '|', '~', '$',
    '0', '1', '9', 'a', 'A', 'b', 'B', 'c', 'C', 'z', 'Z'];
  for (let i = 0; i + 1 < ordered.length; i++) {
    assert.equal(collate(ordered[i], ordered[i + 1]), -1, `${ordered[i]} < ${ordered[i + 1]}`);
  }
  assert.equal(collate('abc', 'ABC'), -1);
  assert.equal(collate('ABC', 'abd'), -1);
  assert.equal(collate('a', 'á'), -1);
  assert.equal(collate('á', 'b'), -1);
  assert.equal(collate('10', '9'), -1, 'no numeric collation');
});

test('collate: collator ties between distinct strings are broken by code point', () => {
  // Canonically equivalent: ICU calls them equal; we must not.
  const precomposed = '\u00e9';
  const decomposed = 'e\u0301';
  assert.notEqual(collate(precomposed, decomposed), 0);
  assert.equal(collate(precomposed, decomposed), -collate(decomposed, precomposed));
  assert.notEqual(collate('a\u0000', 'a'), 0);
  assert.equal(collate('', ''), 0);
});

test('collate: numbers compare numerically', () => {
  assert.equal(collate(-1, 0), -1);
  assert.equal(collate(0, -0), 0);
  assert.equal(collate(2, 10), -1);
  assert.equal(collate(1.5, 1.25), 1);
  assert.equal(collate(-1e300, 1e-300), -1);
});

test('collate: containers', () => {
  assert.equal(collate([], [null]), -1);
  assert.equal(collate([], {}), -1);
  assert.equal(collate({}, { a: null }), -1);
  assert.equal(collate([1, [2, [3]]], [1, [2, [3]]]), 0);
  assert.equal(collate([1, [2, [3]]], [1, [2, [4]]]), -1);
  assert.equal(collate({ a: { b: [1] } }, { a: { b: [1, 2] } }), -1);
  // Object keys collate with ICU, not raw.
  assert.equal(collate({ a: 1 }, { B: 1 }), -1);
  assert.equal(collateRaw({ a: 1 }, { B: 1 }), 1);
  // Member order matters.
  assert.equal(collate({ a: 1, b: 1 }, { b: 1, a: 1 }), -1);
});

test('collate: deep nesting does not overflow the call stack', () => {
  const depth = 200_000;
  let a: unknown = 1;
  let b: unknown = 2;
  let c: unknown = 1;
  for (let i = 0; i < depth; i++) {
    a = [a];
    b = [b];
    c = { k: c };
  }
  assert.equal(collate(a, b), -1);
  assert.equal(collate(a, a), 0);
  assert.equal(collate(c, c), 0);
  assert.equal(collate(a, c), -1);
});

test('collate: non-JSON values fail an assertion', () => {
  assert.throws(() => collate(undefined, 1), assert.AssertionError);
  assert.throws(() => collate([() => 1], [1]), assert.AssertionError);
});

test('compareRaw: code-point order', () => {
  const cases: Array<[string, string, number]> = [
    ['a', 'b', -1],
    ['B', 'a', -1],
    ['a', 'a', 0],
    ['a', 'aa', -1],
    ['', 'a', -1],
    ['_design/x', 'a', -1],
    // U+FFFF is below U+10000 in code points, though not in UTF-16 code units.
    ['\uffff', '\u{10000}', -1],
    ['\ue000', '\u{1f600}', -1],
    ['\u{1f600}', '\u{1f601}', -1],
    ['\ud7ff', '\u{10000}', -1],
  ];
  for (const [a, b, expected] of cases) {
    assert.equal(compareRaw(a, b), expected, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    assert.equal(compareRaw(b, a), 0 - expected);
  }
});

test('property: compareRaw agrees with UTF-8 byte order', () => {
  fc.assert(
    fc.property(fc.fullUnicodeString(), fc.fullUnicodeString(), (a, b) => {
      const bytes = sign(Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
      assert.equal(compareRaw(a, b), bytes);
    }),
    { numRuns: 2000 },
  );
});

/** Strings from a small alphabet that exercises case, accents and ignorables. */
const trickyString = fc
  .array(fc.constantFrom('a', 'A', 'b', 'B', 'e', 'é', '\u0301', 'E', ' ', '-', '1', '\u0000',
    '\u{1f600}', '\uffff', 'ß', 'ss'), { maxLength: 5 })
  .map((chars) => chars.join(''));

/** JSON values biased towards collisions: few keys, small numbers, tricky strings. */
const { json: jsonArb } = fc.letrec((tie) => ({
  json: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -3, max: 3 }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    trickyString,
    fc.array(tie('json'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom('a', 'A', 'b', 'é', 'e\u0301'), tie('json'), { maxKeys: 3 }),
  ),
}));

const anyJson = fc.oneof(jsonArb, fc.jsonValue());

test('property: collate(x, x) === 0 and equals a structural copy', () => {
  fc.assert(
    fc.property(anyJson, (x) => {
      assert.equal(collate(x, x), 0);
      assert.equal(collate(x, structuredClone(x)), 0);
      assert.equal(collateRaw(x, x), 0);
    }),
    { numRuns: 1000 },
  );
});

test('property: antisymmetry', () => {
  fc.assert(
    fc.property(anyJson, anyJson, (a, b) => {
      assert.equal(sign(collate(a, b)), 0 - sign(collate(b, a)));
      assert.equal(sign(collateRaw(a, b)), 0 - sign(collateRaw(b, a)));
    }),
    { numRuns: 2000 },
  );
});

test('property: collate is 0 only for the same JSON value', () => {
  fc.assert(
    fc.property(anyJson, anyJson, (a, b) => {
      const same = JSON.stringify(a) === JSON.stringify(b);
      assert.equal(collate(a, b) === 0, same);
    }),
    { numRuns: 2000 },
  );
});

test('property: transitivity on sorted triples', () => {
  fc.assert(
    fc.property(anyJson, anyJson, anyJson, (a, b, c) => {
      for (const compare of [collate, collateRaw]) {
        const [x, y, z] = [a, b, c].sort(compare);
        assert.ok(compare(x, y) <= 0, 'sorted pair x, y');
        assert.ok(compare(y, z) <= 0, 'sorted pair y, z');
        assert.ok(compare(x, z) <= 0, 'x <= z follows');
        if (compare(x, y) < 0 || compare(y, z) < 0) assert.ok(compare(x, z) < 0, 'x < z follows');
      }
    }),
    { numRuns: 2000 },
  );
});

test('property: transitivity on strings alone', () => {
  fc.assert(
    fc.property(trickyString, trickyString, trickyString, (a, b, c) => {
      const [x, y, z] = [a, b, c].sort(collate);
      assert.ok(collate(x, y) <= 0 && collate(y, z) <= 0);
      assert.ok(collate(x, z) <= 0);
    }),
    { numRuns: 3000 },
  );
});

test('property: type order null < false < true < number < string < array < object', () => {
  const byRank: fc.Arbitrary<unknown>[] = [
    fc.constant(null),
    fc.constant(false),
    fc.constant(true),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string(),
    fc.array(anyJson, { maxLength: 3 }),
    fc.dictionary(fc.string(), anyJson, { maxKeys: 3 }),
  ];
  const ranked = fc.oneof(...byRank.map((arb, rank) => arb.map((value) => ({ rank, value }))));
  fc.assert(
    fc.property(ranked, ranked, (a, b) => {
      assert.equal(rankOf(a.value), a.rank);
      if (a.rank !== b.rank) assert.equal(collate(a.value, b.value), sign(a.rank - b.rank));
    }),
    { numRuns: 2000 },
  );
});
