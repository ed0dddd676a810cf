/**
 * Mango selector matching: CouchDB's documented examples ("Selector Syntax") as
 * tables of selector, document, expected match; CouchDB's edge cases from
 * mango_selector.erl; invalid selectors; and fast-check laws (complements, $in as
 * an $or of $eq). Seeds are printed on failure; pin failures as table cases.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';

import { InvalidSelectorError } from '../../src/errors';
import { compileSelector, parseField, selectorDepthMax } from '../../src/shard/query/mango';

type Doc = Record<string, unknown>;
type Case = [selector: unknown, doc: Doc, expected: boolean];

function runTable(cases: readonly Case[]): void {
  for (const [selector, doc, expected] of cases) {
    const match = compileSelector(selector);
    assert.equal(match(doc), expected, `${JSON.stringify(selector)} on ${JSON.stringify(doc)}`);
  }
}

const movie: Doc = {
  _id: 'm1',
  director: 'Lars von Trier',
  year: 2003,
  title: 'Dogville',
  imdb: { rating: 8, votes: 110000 },
  genre: ['Drama', 'Crime'],
  cast: [{ name: 'Nicole Kidman', role: 'Grace' }, { name: 'Paul Bettany', role: 'Tom' }],
  cameras: { primary: 'a', secondary: 'b' },
};

test('implicit $eq, implicit $and, subfields (documented examples)', () => {
  runTable([
    [{}, movie, true],
    [{}, {}, true],
    [{ director: 'Lars von Trier' }, movie, true],
    [{ director: { $eq: 'Lars von Trier' } }, movie, true],
    [{ director: 'lars von trier' }, movie, false],
    [{ director: 'Lars von Trier', year: 2003 }, movie, true],
    [{ director: 'Lars von Trier', year: 2004 }, movie, false],
    [{ imdb: { rating: 8 } }, movie, true],
    [{ imdb: { rating: { $eq: 8 } } }, movie, true],
    [{ 'imdb.rating': 8 }, movie, true],
    [{ 'imdb.rating': 7 }, movie, false],
    [{ imdb: { rating: 8, votes: { $gt: 100000 } } }, movie, true],
    [{ imdb: { $gt: { rating: 7 }, votes: 110000 } }, movie, true],
    [{ _id: { $gt: null } }, movie, true],
    [{ _id: { $gt: null } }, { other: 1 }, false],
    [{ genre: ['Drama', 'Crime'] }, movie, true],
    [{ genre: ['Crime', 'Drama'] }, movie, false],
    [{ imdb: { $eq: { rating: 8, votes: 110000 } } }, movie, true],
    [{ 'cast.0.name': 'Nicole Kidman' }, movie, true],
    [{ 'cast.1.name': 'Nicole Kidman' }, movie, false],
    [{ 'genre.1': 'Crime' }, movie, true],
    [{ 'genre.+1': 'Crime' }, movie, true],
    [{ 'genre.2': { $exists: false } }, movie, false], // bad path, not missing
    [{ 'title.length': { $exists: false } }, movie, false], // through a scalar
    [{ 'imdb.metascore': { $exists: false } }, movie, true],
    [{ nested: {} }, { nested: {} }, true],
    [{ nested: {} }, { nested: { a: 1 } }, false],
    [{ nested: null }, { nested: null }, true],
    [{ nested: null }, {}, false],
  ]);
});

test('escaped dots in field names', () => {
  runTable([
    [{ 'a\\.b': 1 }, { 'a.b': 1 }, true],
    [{ 'a\\.b': 1 }, { a: { b: 1 } }, false],
    [{ 'a.b': 1 }, { 'a.b': 1 }, false],
    [{ 'a.b': 1 }, { a: { b: 1 } }, true],
    [{ x: { 'a\\.b': { c: 2 } } }, { x: { 'a.b': { c: 2 } } }, true],
  ]);
  assert.deepEqual(parseField('a.b\\.c'), ['a', 'b.c']);
  assert.deepEqual(parseField('ab'), ['ab']);
  assert.throws(() => parseField('a..b'), InvalidSelectorError);
});

test('own properties only', () => {
  runTable([
    [{ constructor: { $exists: true } }, {}, false],
    [{ toString: { $exists: false } }, {}, true],
    [{ __proto__: { $exists: false } }, JSON.parse('{}') as Doc, true],
    [JSON.parse('{"__proto__": 1}'), JSON.parse('{"__proto__": 1}') as Doc, true],
  ]);
});

test('$and, $or, $not, $nor (documented examples)', () => {
  const y = (year: number): Doc => ({ year, director: 'George Lucas' });
  runTable([
    [{ $and: [{ _id: { $gt: null } }, { year: { $in: [2014, 2015] } }] }, { _id: 'x', year: 2015 }, true],
    [{ $and: [{ _id: { $gt: null } }, { year: { $in: [2014, 2015] } }] }, { _id: 'x', year: 2013 }, false],
    [{ year: 1977, $or: [{ director: 'George Lucas' }, { director: 'Steven Spielberg' }] }, y(1977), true],
    [{ year: 1977, $or: [{ director: 'Ridley Scott' }, { director: 'Steven Spielberg' }] }, y(1977), false],
    [{ year: { $gte: 1900, $lte: 1903 }, $not: { year: 1901 } }, y(1902), true],
    [{ year: { $gte: 1900, $lte: 1903 }, $not: { year: 1901 } }, y(1901), false],
    [{ year: { $gte: 1900, $lte: 1910 }, $nor: [{ year: 1901 }, { year: 1905 }, { year: 1907 }] }, y(1904), true],
    [{ year: { $gte: 1900, $lte: 1910 }, $nor: [{ year: 1901 }, { year: 1905 }, { year: 1907 }] }, y(1905), false],
    // Operators under a field distribute the field.
    [{ year: { $or: [{ $lt: 1900 }, { $gt: 2000 }] } }, y(2003), true],
    [{ year: { $or: [{ $lt: 1900 }, { $gt: 2000 }] } }, y(1950), false],
    [{ year: { $or: [1950, 1960] } }, y(1950), true],
    [{ year: { $not: { $eq: 1950 } } }, y(1951), true],
    [{ year: { $and: [{ $gt: 1900 }, { $lt: 2000 }] } }, y(1950), true],
    // Empty combinations.
    [{ $and: [] }, y(1), true],
    [{ $or: [] }, y(1), true],
    [{ $nor: [] }, y(1), true],
    [{ $not: { $and: [] } }, y(1), true],
    [{ $not: { $or: [] } }, y(1), true],
  ]);
});

test('negation is pushed to fields: missing fields never match a negation', () => {
  runTable([
    [{ $not: { a: 1 } }, { a: 2 }, true],
    [{ $not: { a: 1 } }, { a: 1 }, false],
    [{ $not: { a: 1 } }, { b: 1 }, false],
    [{ a: { $not: { $eq: 1 } } }, { b: 1 }, false],
    [{ $nor: [{ a: 1 }] }, { b: 1 }, false],
    [{ $not: { a: { $gt: 10 } } }, { a: 5 }, true],
    [{ $not: { a: { $gt: 10 } } }, {}, false],
    [{ $not: { a: { $regex: '^x' } } }, { a: 'y' }, true],
    [{ $not: { a: { $regex: '^x' } } }, {}, false],
    [{ $not: { a: { $exists: true } } }, {}, true],
    [{ $not: { a: { $exists: true } } }, { a: null }, false],
    [{ $not: { a: { $exists: false } } }, { a: 1 }, true],
    [{ $not: { a: { $exists: false } } }, {}, false],
    [{ $not: { $not: { a: 1 } } }, { a: 1 }, true],
    [{ $not: { $not: { a: 1 } } }, {}, false],
    [{ $not: { a: 1, b: 1 } }, { a: 1, b: 2 }, true],
    [{ $not: { a: 1, b: 1 } }, { a: 1, b: 1 }, false],
    [{ $not: { $or: [{ a: 1 }, { b: 1 }] } }, { a: 2, b: 2 }, true],
    [{ $not: { $or: [{ a: 1 }, { b: 1 }] } }, { a: 2, b: 1 }, false],
    [{ $not: { $nor: [{ a: 1 }, { b: 1 }] } }, { a: 2, b: 1 }, true],
    [{ $not: { $nor: [{ a: 1 }, { b: 1 }] } }, { a: 2, b: 2 }, false],
    [{ $not: { a: { $in: [1, 2] } } }, { a: 3 }, true],
    [{ $not: { a: { $in: [1, 2] } } }, {}, false],
  ]);
});

test('comparison operators ($lt $lte $eq $ne $gte $gt)', () => {
  runTable([
    [{ year: { $lt: 2004 } }, { year: 2003 }, true],
    [{ year: { $lt: 2003 } }, { year: 2003 }, false],
    [{ year: { $lte: 2003 } }, { year: 2003 }, true],
    [{ year: { $gt: 2003 } }, { year: 2003 }, false],
    [{ year: { $gte: 2003 } }, { year: 2003 }, true],
    [{ year: { $ne: 2003 } }, { year: 2004 }, true],
    [{ year: { $ne: 2003 } }, { year: 2003 }, false],
    // Only present fields match, even for $ne and $lt.
    [{ year: { $ne: 2003 } }, {}, false],
    [{ year: { $lt: 2003 } }, {}, false],
    // Collation across types: strings sort after numbers, null first.
    [{ year: { $gt: 2003 } }, { year: 'abc' }, true],
    [{ year: { $lt: 2003 } }, { year: null }, true],
    [{ year: { $lt: 2003 } }, { year: false }, true],
    [{ name: { $gt: 'a' } }, { name: 'A' }, true],
    [{ name: { $lt: 'b' } }, { name: 'A' }, true],
    [{ name: { $lt: 'b' } }, { name: 'B' }, false],
    [{ tags: { $gt: ['a'] } }, { tags: ['a', 'b'] }, true],
    [{ tags: { $lt: {} } }, { tags: ['z'] }, true],
    [{ name: { $eq: 'A' } }, { name: 'a' }, false],
    [{ name: { $eq: '\u00e9' } }, { name: 'e\u0301' }, false],
    [{ v: { $eq: 0 } }, { v: -0 }, true],
  ]);
});

test('_id compares by code point', () => {
  runTable([
    // Collation would put "a" < "B"; code points put "B" (0x42) < "a" (0x61).
    [{ _id: { $gt: 'a' } }, { _id: 'B' }, false],
    [{ _id: { $lt: 'a' } }, { _id: 'B' }, true],
    [{ name: { $lt: 'a' } }, { name: 'B' }, false],
    [{ _id: { $gte: '_design/' } }, { _id: '_design/x' }, true],
    [{ _id: { $in: ['a', 'b'] } }, { _id: 'b' }, true],
  ]);
});

test('$exists and $type', () => {
  runTable([
    [{ a: { $exists: true } }, { a: null }, true],
    [{ a: { $exists: true } }, {}, false],
    [{ a: { $exists: false } }, {}, true],
    [{ a: { $exists: false } }, { a: 0 }, false],
    [{ 'a.b': { $exists: false } }, { a: {} }, true],
    [{ 'a.b': { $exists: false } }, { a: 5 }, false],
    [{ a: { $exists: false, $ne: 1 } }, {}, false],
    [{ a: { $type: 'null' } }, { a: null }, true],
    [{ a: { $type: 'boolean' } }, { a: false }, true],
    [{ a: { $type: 'number' } }, { a: 1.5 }, true],
    [{ a: { $type: 'string' } }, { a: '' }, true],
    [{ a: { $type: 'array' } }, { a: [] }, true],
    [{ a: { $type: 'object' } }, { a: {} }, true],
    [{ a: { $type: 'object' } }, { a: [] }, false],
    [{ a: { $type: 'object' } }, { a: null }, false],
    [{ a: { $type: 'null' } }, {}, false],
  ]);
});

test('$in, $nin, $all, $size', () => {
  runTable([
    [{ year: { $in: [2010, 2015] } }, { year: 2015 }, true],
    [{ year: { $in: [2010, 2015] } }, { year: 2014 }, false],
    [{ year: { $in: [] } }, { year: 2014 }, false],
    [{ genre: { $in: ['Crime', 'Horror'] } }, movie, true],
    [{ genre: { $in: [['Drama', 'Crime']] } }, movie, false], // elements, not the array
    [{ pair: { $in: [[1, 2], { a: 1 }] } }, { pair: { a: 1 } }, true],
    [{ year: { $nin: [2010, 2015] } }, { year: 2014 }, true],
    [{ year: { $nin: [2010, 2015] } }, { year: 2015 }, false],
    [{ year: { $nin: [2010, 2015] } }, {}, false],
    [{ year: { $nin: [] } }, { year: 1 }, true],
    [{ genre: { $nin: ['Comedy'] } }, movie, true],
    [{ genre: { $nin: ['Comedy', 'Drama'] } }, movie, false],
    [{ genre: { $all: ['Comedy', 'Short'] } }, { genre: ['Short', 'Comedy', 'Drama'] }, true],
    [{ genre: { $all: ['Comedy', 'Short'] } }, { genre: ['Comedy'] }, false],
    [{ genre: { $all: ['Comedy'] } }, { genre: 'Comedy' }, false],
    [{ genre: { $all: [] } }, { genre: [] }, false],
    [{ genre: { $all: [['a', 'b']] } }, { genre: ['a', 'b'] }, true],
    [{ genre: { $all: [['a', 'b']] } }, { genre: [['a', 'b'], 'c'] }, true],
    [{ genre: { $all: [['a', 'b']] } }, { genre: ['b', 'a'] }, false],
    [{ genre: { $size: 2 } }, movie, true],
    [{ genre: { $size: 3 } }, movie, false],
    [{ genre: { $size: 0 } }, { genre: [] }, true],
    [{ genre: { $size: 1 } }, { genre: 'x' }, false],
  ]);
});

test('$mod, $regex, $beginsWith', () => {
  runTable([
    [{ year: { $mod: [4, 0] } }, { year: 2004 }, true],
    [{ year: { $mod: [4, 0] } }, { year: 2003 }, false],
    [{ year: { $mod: [4, 3] } }, { year: 2003 }, true],
    [{ year: { $mod: [4, -3] } }, { year: -2003 }, true], // remainder takes the field's sign
    [{ year: { $mod: [-4, 3] } }, { year: 2003 }, true],
    [{ year: { $mod: [4, 0] } }, { year: 4.5 }, false],
    [{ year: { $mod: [4, 0] } }, { year: '2004' }, false],
    [{ director: { $regex: '^Lars' } }, movie, true],
    [{ director: { $regex: 'Trier$' } }, movie, true],
    [{ director: { $regex: 'von' } }, movie, true], // unanchored
    [{ director: { $regex: '^lars' } }, movie, false],
    [{ director: { $regex: '(?i)^lars' } }, movie, true],
    [{ year: { $regex: '2003' } }, movie, false], // strings only
    [{ director: { $regex: '(?i)VON\\s+t' } }, movie, true], // RE2 takes PCRE's inline flags and classes
    // RE2: linear time, so the classic catastrophic-backtracking pattern just answers.
    [{ s: { $regex: '^(a+)+$' } }, { s: 'a'.repeat(37) + '!' }, false],
    [{ s: { $regex: '^(a+)+$' } }, { s: 'a'.repeat(37) }, true],
    [{ title: { $beginsWith: 'Dog' } }, movie, true],
    [{ title: { $beginsWith: 'dog' } }, movie, false],
    [{ title: { $beginsWith: '' } }, movie, true],
    [{ year: { $beginsWith: '2' } }, movie, false],
  ]);
});

test('$elemMatch, $allMatch, $keyMapMatch (documented examples)', () => {
  runTable([
    [{ genre: { $elemMatch: { $eq: 'Horror' } } }, { genre: ['Comedy', 'Horror'] }, true],
    [{ genre: { $elemMatch: { $eq: 'Horror' } } }, { genre: ['Comedy'] }, false],
    [{ genre: { $elemMatch: { $eq: 'Horror' } } }, { genre: 'Horror' }, false],
    [{ genre: { $elemMatch: { $eq: 'Horror' } } }, { genre: [] }, false],
    [{ genre: { $allMatch: { $eq: 'Horror' } } }, { genre: ['Horror', 'Horror'] }, true],
    [{ genre: { $allMatch: { $eq: 'Horror' } } }, { genre: ['Horror', 'Comedy'] }, false],
    [{ genre: { $allMatch: { $eq: 'Horror' } } }, { genre: [] }, false],
    [{ cameras: { $keyMapMatch: { $eq: 'secondary' } } }, movie, true],
    [{ cameras: { $keyMapMatch: { $eq: 'tertiary' } } }, movie, false],
    [{ cameras: { $keyMapMatch: { $eq: 'secondary' } } }, { cameras: ['secondary'] }, false],
    [{ cast: { $elemMatch: { name: 'Paul Bettany', role: 'Tom' } } }, movie, true],
    [{ cast: { $elemMatch: { name: 'Paul Bettany', role: 'Grace' } } }, movie, false],
    [{ scores: { $elemMatch: { $gte: 80, $lt: 85 } } }, { scores: [79, 90, 82] }, true],
    [{ scores: { $elemMatch: { $gte: 80, $lt: 85 } } }, { scores: [79, 90] }, false],
    [{ scores: { $elemMatch: { $not: { $eq: 1 } } } }, { scores: [1, 2] }, true],
    [{ scores: { $allMatch: { $not: { $eq: 1 } } } }, { scores: [1, 2] }, false],
    [{ m: { $elemMatch: { $elemMatch: { $eq: 1 } } } }, { m: [[0], [1]] }, true],
    [{ m: { $elemMatch: { 0: 1 } } }, { m: [[0], [1]] }, true],
    [{ m: { $elemMatch: { $or: [{ $eq: 9 }, { a: 1 }] } } }, { m: [{ a: 1 }] }, true],
    [{ $not: { genre: { $elemMatch: { $eq: 'Horror' } } } }, { genre: ['Comedy'] }, true],
    [{ $not: { genre: { $elemMatch: { $eq: 'Horror' } } } }, {}, false],
  ]);
});

const invalid: Array<[selector: unknown, reason: RegExp]> = [
  [null, /JSON object/],
  [[], /JSON object/],
  ['director', /JSON object/],
  [42, /JSON object/],
  [{ a: { $foo: 1 } }, /Invalid operator: \$foo/],
  [{ $foo: 1 }, /Invalid operator: \$foo/],
  [{ a: { $where: 'x' } }, /Unsupported operator: \$where/],
  [{ $text: 'x' }, /Unsupported operator: \$text/],
  [{ $and: {} }, /\$and/],
  [{ $or: 1 }, /\$or/],
  [{ $nor: 'x' }, /\$nor/],
  [{ $not: [] }, /\$not/],
  [{ $not: 1 }, /\$not/],
  [{ a: { $in: 1 } }, /\$in/],
  [{ a: { $nin: {} } }, /\$nin/],
  [{ a: { $all: 'x' } }, /\$all/],
  [{ a: { $exists: 'yes' } }, /\$exists/],
  [{ a: { $type: 1 } }, /\$type/],
  [{ a: { $type: 'integer' } }, /\$type/],
  [{ a: { $size: -1 } }, /\$size/],
  [{ a: { $size: 1.5 } }, /\$size/],
  [{ a: { $size: '1' } }, /\$size/],
  [{ a: { $mod: [0, 1] } }, /\$mod/],
  [{ a: { $mod: [2] } }, /\$mod/],
  [{ a: { $mod: [2.5, 1] } }, /\$mod/],
  [{ a: { $mod: [2, '1'] } }, /\$mod/],
  [{ a: { $mod: 2 } }, /\$mod/],
  [{ a: { $regex: '(' } }, /\$regex/],
  [{ a: { $regex: 1 } }, /\$regex/],
  [{ a: { $regex: '(a)\\1' } }, /\$regex.*backreferences/], // backreference
  [{ a: { $regex: 'a(?=b)' } }, /\$regex.*lookahead/],
  [{ a: { $regex: '(?<!a)b' } }, /\$regex/],
  [{ a: { $regex: 'a++' } }, /\$regex/],
  [{ a: { $beginsWith: 1 } }, /\$beginsWith/],
  [{ a: { $elemMatch: [] } }, /\$elemMatch/],
  [{ a: { $allMatch: 1 } }, /\$allMatch/],
  [{ a: { $keyMapMatch: 'x' } }, /\$keyMapMatch/],
  [{ a: { $elemMatch: { $bad: 1 } } }, /Invalid operator: \$bad/],
  [{ $gt: 1 }, /missing a field name/],
  [{ $or: [{ $gt: 1 }] }, /missing a field name/],
  [{ $and: [1] }, /missing a field name/],
  [{ $not: {} }, /missing a field name/],
  [{ 'a..b': 1 }, /Invalid field name/],
  [{ '': 1 }, /Invalid field name/],
  [{ a: { '': 1 } }, /Invalid field name/],
];

test('invalid selectors throw InvalidSelectorError', () => {
  for (const [selector, reason] of invalid) {
    assert.throws(
      () => compileSelector(selector),
      (err: unknown) => {
        assert.ok(err instanceof InvalidSelectorError, `${JSON.stringify(selector)}: ${String(err)}`);
        assert.match(err.reason, reason, JSON.stringify(selector));
        return true;
      },
    );
  }
});

test('nesting depth is bounded by selectorDepthMax', () => {
  const nested = (depth: number): unknown => {
    // depth objects in all: depth - 1 $not wrappers around {a: 1}.
    let selector: unknown = { a: 1 };
    for (let i = 1; i < depth; i++) selector = { $not: selector };
    return selector;
  };
  const atMax = compileSelector(nested(selectorDepthMax));
  assert.equal(atMax({ a: selectorDepthMax % 2 === 1 ? 1 : 2 }), true);
  assert.throws(() => compileSelector(nested(selectorDepthMax + 1)), InvalidSelectorError);

  let fields: unknown = 1;
  for (let i = 0; i < 10_000; i++) fields = { f: fields };
  assert.throws(() => compileSelector(fields), /nested deeper/);

  let ands: unknown = { a: 1 };
  for (let i = 0; i < 10_000; i++) ands = { $and: [ands] };
  assert.throws(() => compileSelector(ands), /nested deeper/);
});

test('compiled predicate is reusable and stateless', () => {
  const match = compileSelector({ name: { $regex: 'a' } });
  for (let i = 0; i < 5; i++) {
    assert.equal(match({ name: 'banana' }), true);
    assert.equal(match({ name: 'kiwi' }), false);
  }
});

// --- properties -----------------------------------------------------------------

const scalar = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom('a', 'A', 'b', 'B', ''),
);
const value = fc.oneof(scalar, fc.array(scalar, { maxLength: 3 }), fc.dictionary(fc.constantFrom('a', 'b'), scalar, { maxKeys: 2 }));
const docWithMaybeA = fc.option(value, { nil: undefined }).map((a): Doc => (a === undefined ? { b: 1 } : { a, b: 1 }));

test('property: $lt and $gte are complements on present fields; both fail on missing', () => {
  fc.assert(
    fc.property(value, docWithMaybeA, (v, doc) => {
      const lt = compileSelector({ a: { $lt: v } })(doc);
      const gte = compileSelector({ a: { $gte: v } })(doc);
      const notLt = compileSelector({ $not: { a: { $lt: v } } })(doc);
      if ('a' in doc) {
        assert.notEqual(lt, gte);
        assert.equal(notLt, gte);
      } else {
        assert.equal(lt || gte || notLt, false);
      }
    }),
    { numRuns: 1000 },
  );
});

test('property: $in is an $or of $eq for scalar fields; $nin is its complement', () => {
  fc.assert(
    fc.property(fc.array(value, { maxLength: 4 }), scalar, (args, a) => {
      const doc: Doc = { a };
      const viaIn = compileSelector({ a: { $in: args } })(doc);
      const viaOr = compileSelector({ $or: args.map((v) => ({ a: { $eq: v } })) })(doc);
      const viaNin = compileSelector({ a: { $nin: args } })(doc);
      assert.equal(viaIn, args.length > 0 && viaOr);
      assert.equal(viaNin, !viaIn);
    }),
    { numRuns: 1000 },
  );
});

test('property: $not of a selector is its complement when the field is present', () => {
  const condition = fc.oneof(
    value.map((v) => ({ $eq: v })),
    value.map((v) => ({ $gt: v })),
    fc.array(value, { maxLength: 3 }).map((vs) => ({ $in: vs })),
    fc.constantFrom('null', 'boolean', 'number', 'string', 'array', 'object').map((t) => ({ $type: t })),
    fc.integer({ min: 0, max: 3 }).map((n) => ({ $size: n })),
    scalar.map((v) => ({ $elemMatch: { $eq: v } })),
  );
  fc.assert(
    fc.property(condition, value, (cond, a) => {
      const doc: Doc = { a };
      const plain = compileSelector({ a: cond })(doc);
      assert.equal(compileSelector({ $not: { a: cond } })(doc), !plain);
      assert.equal(compileSelector({ a: { $not: cond } })(doc), !plain);
      assert.equal(compileSelector({ $nor: [{ a: cond }] })(doc), !plain);
      assert.equal(compileSelector({ $not: { $not: { a: cond } } })(doc), plain);
    }),
    { numRuns: 1000 },
  );
});
