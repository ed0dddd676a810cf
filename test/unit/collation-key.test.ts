/**
 * View-key codec: its laws as seeded fast-check properties against the exact
 * comparator (`collate`), CouchDB's documented order as a table, and every assigned
 * code point classified under this Node's ICU. Seed printed as a diagnostic; rerun
 * with COLLATION_SEED=<seed> (and COLLATION_RUNS=<factor> for more runs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';

import { collate } from '../../src/shard/query/collate';
import {
  GAP_BELOW_ALL,
  NO_GAP,
  SIDE_PRIMARIES_MAX,
  classifyCodePoint,
  collationTablesBuildMs,
  collationVersion,
  mainSpaceBounds,
  primaryClasses,
  primaryVerifyFailures,
  sideSpaceBounds,
  viewKeyCodes,
} from '../../src/storage/collation-key';

const seed = Number(process.env['COLLATION_SEED'] ?? Date.now() % 2_147_483_647);
/** COLLATION_RUNS=<n> multiplies the number of runs, for a longer hunt. */
const runsFactor = Number(process.env['COLLATION_RUNS'] ?? 1);
const sign = (n: number): number => (n < 0 ? -1 : n > 0 ? 1 : 0);
const show = (v: unknown): string => JSON.stringify(v);

// ---- generators: ASCII-heavy and hostile strings, JSON keys, sorted key lists ----

const ascii = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));
/** A small ASCII pool so that case variants and shared prefixes meet often. */
const asciiNear = fc.constantFrom('a', 'A', 'b', 'B', 'e', 'E', 's', 'S', ' ', '-', '_', '1', 'z', 'Z', '~', '=');
const hostileChars = fc.oneof(
  fc.constantFrom(
    '\u0000', '\u0001', '\u001f', '\u007f', '\u0085', '\u00a0', '\u00ad', '\u200b', '\u200d', '\ufeff',
    '\u0301', '\u0308', '\u0338', '\u0306', '\u0327', '\u034f', '\ufe0f',
    'é', 'É', 'ü', 'Ü', 'ñ', 'ø', 'Å', 'ı', 'İ', 'ß', 'ẞ', 'æ', 'Æ', 'œ', 'ﬁ', 'ﬃ', 'ǆ', 'ǅ', 'ĳ', 'ŉ', 'þ', 'ð',
    'ｅ', 'Ｅ', 'ａ', 'Ａ', '＝', '－', '\u3000', 'ⓔ', 'ᵉ', '𝐞', '𝐄', '²', '½', '™', '℡', '㎒',
    '≠', '≮', '<', '=', '>', 'и', 'й', 'Ё', 'α', 'Ω',
    '\ufffe', '\uffff', '\ufffd', '東', '京', '\u4e00', '가', '힣', '\u1100', '\u1161', '\u11a8',
    '😀', '👍', '\u{1f3fb}', '\u{20000}', '\u{e0001}', '\u{10ffff}',
    'เ', 'ก', 'แ', 'ไ', 'ข', '\u0e31', 'ເ', 'ກ', 'ໄ', '\u0eb1', 'ا', 'क', '्', 'ষ',
  ),
  fc.integer({ min: 0x80, max: 0xd7ff }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0xe000, max: 0xffff }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0x10000, max: 0x10ffff }).map((c) => String.fromCodePoint(c)),
);
const asciiString = fc.array(fc.oneof(ascii, asciiNear), { maxLength: 8 }).map((a) => a.join(''));
const mixedString = fc
  .array(fc.oneof({ weight: 3, arbitrary: asciiNear }, { weight: 1, arbitrary: ascii }, { weight: 2, arbitrary: hostileChars }), {
    maxLength: 7,
  })
  .map((a) => a.join(''));
const anyString = fc.oneof(asciiString, mixedString, fc.constantFrom('', 'a', 'A', 'é', 'e\u0301', 'ss', 'ß', 'Müller', 'muller', 'MULLER'));

const numbers = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308, Number.MAX_SAFE_INTEGER, 0.1, 2, 3),
  fc.integer({ min: -5, max: 5 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);

const { key: keyArb } = fc.letrec((tie) => ({
  key: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    numbers,
    anyString,
    anyString,
    fc.array(tie('key'), { maxLength: 3 }),
    fc.dictionary(fc.oneof(asciiNear, anyString), tie('key'), { maxKeys: 3 }),
  ),
}));
/** Keys built from few parts, so that neighbours in a sorted list share long prefixes. */
const nearString = fc
  .array(fc.oneof({ weight: 4, arbitrary: asciiNear }, { weight: 2, arbitrary: hostileChars }), { maxLength: 4 })
  .map((a) => a.join(''));
const nearKey = fc.oneof(
  nearString,
  fc.tuple(nearString, fc.integer({ min: 0, max: 2 })),
  fc.tuple(nearString, nearString),
  fc.tuple(nearString, nearString, fc.constantFrom(null, 1, 'a')),
  fc.array(nearString, { maxLength: 3 }),
  fc.dictionary(nearString, fc.oneof(nearString, fc.integer({ min: 0, max: 1 })), { maxKeys: 2 }),
);
const keyList = fc.array(fc.oneof(keyArb, nearKey, nearKey), { minLength: 2, maxLength: 24 });

const startsWith = (code: Buffer, prefix: Buffer): boolean =>
  code.length >= prefix.length && code.subarray(0, prefix.length).equals(prefix);

function assertLaws(keys: unknown[]): void {
  const codes = keys.map((k) => viewKeyCodes(k));
  for (let i = 0; i < keys.length; i++) {
    for (let j = 0; j < keys.length; j++) {
      if (i === j) continue;
      const a = keys[i];
      const b = keys[j];
      const ca = codes[i] as ReturnType<typeof viewKeyCodes>;
      const cb = codes[j] as ReturnType<typeof viewKeyCodes>;
      const order = collate(a, b);
      // Law 1: exact codes order exactly (and strictly).
      if (ca.exact !== null && cb.exact !== null) {
        assert.equal(sign(Buffer.compare(ca.exact, cb.exact)), order, `exact ${show(a)} vs ${show(b)}`);
        // Law 2: prefix-free.
        if (!ca.exact.equals(cb.exact)) assert.ok(!startsWith(cb.exact, ca.exact), `exact prefix ${show(a)} of ${show(b)}`);
      }
      // Law 3: side codes are monotone over all keys, and prefix-free.
      if (Buffer.compare(ca.side, cb.side) < 0) assert.equal(order, -1, `side ${show(a)} vs ${show(b)}`);
      if (!ca.side.equals(cb.side)) assert.ok(!startsWith(cb.side, ca.side), `side prefix ${show(a)} of ${show(b)}`);
    }
  }
}

const suffixes = [Buffer.alloc(0), Buffer.from([0x00]), Buffer.from([0xff, 0xff, 0xff]), Buffer.from('doc-id')];
const inBounds = (code: Buffer, b: { gte?: Buffer; lt?: Buffer }): boolean =>
  (b.gte === undefined || Buffer.compare(code, b.gte) >= 0) && (b.lt === undefined || Buffer.compare(code, b.lt) < 0);

function assertBounds(start: unknown | undefined, k: unknown, end: unknown | undefined): void {
  const c = viewKeyCodes(k);
  const main = mainSpaceBounds(start, end);
  const side = sideSpaceBounds(start, end);
  for (const suffix of suffixes) {
    if (c.exact !== null) {
      assert.ok(inBounds(Buffer.concat([c.exact, suffix]), main), `main ${show(start)} <= ${show(k)} <= ${show(end)}`);
    }
    assert.ok(inBounds(Buffer.concat([c.side, suffix]), side), `side ${show(start)} <= ${show(k)} <= ${show(end)}`);
  }
}

// ---- tables ----

test('collation-key: CouchDB documented order (Views Collation), every pair, and punctuation order', () => {
  const couchDocsOrder: unknown[] = [
    null, false, true, 1, 2, 3.0, 4,
    'a', 'A', 'aa', 'b', 'B', 'ba', 'bb',
    ['a'], ['b'], ['b', 'c'], ['b', 'c', 'a'], ['b', 'd'], ['b', 'd', 'e'],
    { a: 1 }, { a: 2 }, { b: 1 }, { b: 2 }, { b: 2, a: 1 }, { b: 2, c: 2 },
  ];
  const punctuation = ['_', '-', ',', ';', ':', '!', '?', '.', "'", '"', '(', ')', '[', ']', '{', '}',
    '@', '*', '/', '\\', '&', '#', '%', '`', '^', '+', '<', '=', '>', '|', '~', '$',
    '0', '1', '9', 'a', 'A', 'b', 'B', 'c', 'C', 'z', 'Z'];
  for (const ordered of [couchDocsOrder, punctuation]) {
    const codes = ordered.map((k) => viewKeyCodes(k));
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < ordered.length; j++) {
        const ei = codes[i]?.exact;
        const ej = codes[j]?.exact;
        assert.ok(ei && ej, `${show(ordered[i])} is exact`);
        assert.equal(sign(Buffer.compare(ei, ej)), sign(i - j), `${show(ordered[i])} vs ${show(ordered[j])}`);
      }
    }
  }
});

test('collation-key: numbers, -0, extremes, and type ranks', () => {
  const ordered = [null, false, true, -1e308, -1, -5e-324, 0, 5e-324, 1e-300, 1, 2.5, 1e308, '', ' ', [], [null], {}, { '': null }];
  assertLaws(ordered);
  for (let i = 0; i + 1 < ordered.length; i++) {
    const a = viewKeyCodes(ordered[i]).exact as Buffer;
    const b = viewKeyCodes(ordered[i + 1]).exact as Buffer;
    assert.equal(Buffer.compare(a, b), -1, `${show(ordered[i])} < ${show(ordered[i + 1])}`);
  }
  assert.deepEqual(viewKeyCodes(-0).exact, viewKeyCodes(0).exact);
  assert.throws(() => viewKeyCodes(Number.NaN));
  assert.throws(() => viewKeyCodes(undefined));
});

test('collation-key: who is exact, what groups (law 5)', () => {
  for (const k of ['post', ['post', '2024-01-02'], { type: 'post', n: 3 }, 'a b~c', '']) {
    assert.notEqual(viewKeyCodes(k).exact, null, show(k));
    assert.deepEqual(viewKeyCodes(k).side, viewKeyCodes(k).exact, `side of exact ${show(k)}`);
  }
  for (const k of ['é', 'Müller', ['post', 'café'], 'a\u0000', 'tab\there', { é: 1 }]) assert.equal(viewKeyCodes(k).exact, null, show(k));
  // Strings equal ignoring case and accents, and above every ASCII case variant: one group.
  const group = ['Müller', 'müller', 'MÜLLER', 'Mùller', 'mullér'].map((k) => viewKeyCodes(k).side);
  for (const g of group) assert.deepEqual(g, group[0]);
  // ...but other primaries are other groups, and ASCII keys are in none.
  assert.notDeepEqual(viewKeyCodes('Müllers').side, group[0]);
  assert.notDeepEqual(viewKeyCodes('Mueller').side, group[0]);
  assert.notDeepEqual(viewKeyCodes('muller').side, group[0]);
  // ß ≡ ss, æ ≡ ae, ﬁ ≡ fi at the primary level: same primaries as the ASCII spelling.
  const primaries = (s: string): Buffer => {
    const side = viewKeyCodes(s).side;
    return side.subarray(0, side.indexOf(0x02));
  };
  assert.deepEqual(primaries('straße'), primaries('strasse'));
  assert.deepEqual(primaries('Æther'), primaries('aether'));
  assert.deepEqual(primaries('ﬁsh'), primaries('fish'));
  assert.deepEqual(primaries('ＡＢＣ'), primaries('abc'));
  // ["a", 2] vs ["A", 1]: exact, so both orders are right; with an accent the side code
  // ends after the string (its lower levels decide before the number).
  assert.equal(Buffer.compare(viewKeyCodes(['a', 2]).exact as Buffer, viewKeyCodes(['A', 1]).exact as Buffer), -1);
  assert.deepEqual(viewKeyCodes(['á', 2]).side, viewKeyCodes(['á', 1]).side);
});

test('collation-key: accented Latin keeps every primary in the side code (no truncation)', (t) => {
  t.diagnostic(`seed ${seed}`);
  const latin = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéèêëÉÈüÜöÖäÄñÑçÇåÅøØàáâãíìîïóòôõúùûÿýşğœæßÆŒａｂＡＢ'.split(''));
  fc.assert(
    fc.property(fc.array(latin, { maxLength: 12 }), fc.nat(), (chars, at) => {
      const cut = at % (chars.length + 1); // at least one non-ASCII letter
      const s = [...chars.slice(0, cut), 'ü', ...chars.slice(cut)].join('');
      const side = viewKeyCodes(s).side;
      // tag, primaries, SEP, then tertiary path and an odd mark: nothing truncated.
      const sep = side.indexOf(0x02);
      assert.ok(sep > 1, show(s));
      for (let i = 1; i < sep; i++) assert.equal((side[i] as number) % 2, 0, `${show(s)} primary ${i} is a class weight`);
      assert.equal((side[side.length - 1] as number) % 2, 1, show(s));
    }),
    { seed, numRuns: 300 * runsFactor },
  );
});

// ---- laws ----

test('collation-key: laws 1-3 over sorted-list pairs of mixed keys (seeded)', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(fc.property(keyList, (keys) => assertLaws(keys)), { seed, numRuns: 400 * runsFactor });
});

test('collation-key: law 1 over printable-ASCII strings (ICU compares them level by level)', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(fc.array(asciiString, { minLength: 2, maxLength: 30 }), (keys) => assertLaws(keys)),
    { seed: seed + 1, numRuns: 300 * runsFactor },
  );
});

test('collation-key: laws 1-3 when strings share primaries (case, accents, ignorables)', (t) => {
  t.diagnostic(`seed ${seed}`);
  const variantOf = fc.constantFrom(
    ...['e', 'E', 'é', 'É', 'ｅ', 'Ｅ', 'ⓔ', 'ᵉ', 'e\u0301', 'e\u0000', '\u0000e', 'e\u00ad', 'ë', 'ê', '𝐞'],
  );
  const word = fc.array(fc.oneof(variantOf, fc.constantFrom('s', 'S', 'ß', 'ss', 'x', 'X', 'ｘ')), { maxLength: 4 }).map((a) => a.join(''));
  const key = fc.oneof(word, fc.tuple(word, fc.integer({ min: 0, max: 2 })), fc.tuple(word, word));
  fc.assert(fc.property(fc.array(key, { minLength: 2, maxLength: 24 }), (keys) => assertLaws(keys)), { seed: seed + 2, numRuns: 300 * runsFactor });
});

test('collation-key: law 4, bounds are conservative (also for non-exact start/end)', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(fc.array(fc.oneof(keyArb, nearKey), { minLength: 3, maxLength: 8 }), fc.boolean(), fc.boolean(), (keys, openStart, openEnd) => {
      const sorted = [...keys].sort(collate);
      for (let i = 0; i < sorted.length; i++) {
        for (let j = i; j < sorted.length; j++) {
          for (let l = j; l < sorted.length; l++) {
            assertBounds(openStart ? undefined : sorted[i], sorted[j], openEnd ? undefined : sorted[l]);
          }
        }
      }
    }),
    { seed: seed + 3, numRuns: 120 * runsFactor },
  );
});

test('collation-key: long strings end the side code after SIDE_PRIMARIES_MAX primaries, still lawful', (t) => {
  t.diagnostic(`seed ${seed}`);
  const long = (tail: string): string => 'x'.repeat(SIDE_PRIMARIES_MAX - 1) + tail;
  const keys = [long(''), long('a'), long('A'), long('é'), long('ab'), long('aB'), long('\uffff'), long('\uffffa'), long('東'),
    [long('ab'), 1], [long('ab'), 'é'], [long('aé'), 0], long('b'), 'x'.repeat(SIDE_PRIMARIES_MAX + 5)];
  assertLaws(keys);
  const sorted = [...keys].sort(collate);
  for (let i = 0; i < sorted.length; i++) for (let j = i; j < sorted.length; j++) assertBounds(sorted[i], sorted[j], sorted[j]);
  const c = viewKeyCodes(long('ab'));
  assert.notEqual(c.exact, null);
  assert.ok(c.side.length < (c.exact as Buffer).length);
});

test('collation-key: laws hold under contractions and reordering (≠, Cyrillic й, Thai/Lao prevowels)', (t) => {
  const before = primaryVerifyFailures();
  const words = ['=', '=\u0338', '≠', '=a', '<\u0338', '≮', 'и', 'и\u0306', 'й', 'иa', 'a\u0306', 'ă', 'เก', 'เข', 'ก', 'กเ',
    'ເກ', 'ກ', 'a\u0308\u0301', 'a\u0301\u0308', 'L\u00b7', 'l\u00b7l', 'ŀl', 'i\u0307', 'İ', 'ı', 'A\u030a', 'Å', 'Å',
    // Lone surrogates (JSON.parse can produce them): no crash, still lawful.
    '\ud800', 'a\udc00', '\ud83d', 'a\ud83d\ude00'];
  assertLaws([...words, ...words.map((w) => [w, 1]), ...words.map((w) => [w, 'é'])]);
  t.diagnostic(`per-code-point primaries failed verification (collator probed instead) ${primaryVerifyFailures() - before} times`);
});

test('collation-key: every assigned code point classifies; counts per class', (t) => {
  const started = Date.now();
  const classes = primaryClasses().length;
  const counts = { s: 0, ignorable: 0, single: 0, expansion: 0, gap: 0, prefixGap: 0, gapBelow: 0, gapAbove: 0 };
  const assigned = /\p{Assigned}/u;
  const base = new Intl.Collator('en', { sensitivity: 'base' });
  const aboveTop: number[] = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0x20 && cp < 0x7f) {
      counts.s++;
      continue;
    }
    const ch = String.fromCodePoint(cp);
    if (!assigned.test(ch)) continue;
    const c = classifyCodePoint(cp);
    // The TOP trick needs U+FFFF's primary to be the highest of all.
    if (cp !== 0xffff && base.compare(ch, '\uffff') >= 0) aboveTop.push(cp);
    if (c.gap === NO_GAP) {
      if (c.classes.length === 0) counts.ignorable++;
      else if (c.classes.length === 1) counts.single++;
      else counts.expansion++;
    } else {
      if (c.classes.length === 0) counts.gap++;
      else counts.prefixGap++;
      if (c.gap === GAP_BELOW_ALL) counts.gapBelow++;
      if (c.gap === classes - 1) counts.gapAbove++;
    }
  }
  t.diagnostic(`classes ${classes}; ${JSON.stringify(counts)}; ${Date.now() - started} ms; tables ${collationTablesBuildMs().toFixed(2)} ms; ${collationVersion}`);
  assert.deepEqual(aboveTop, [], 'code points whose primary is not below U+FFFF');
  assert.equal(counts.s, 95);
  assert.ok(counts.single > 1000 && counts.ignorable > 100 && counts.gap > 10000);
  // Spot checks of the classes the design names.
  const cls = (ch: string) => classifyCodePoint(ch.codePointAt(0) as number);
  assert.deepEqual(cls('é').classes, cls('e').classes);
  assert.deepEqual(cls('Ａ').classes, cls('a').classes);
  assert.equal(cls('ß').classes.length, 2);
  assert.equal(cls('ﬃ').classes.length, 3);
  assert.deepEqual(cls('\u0301'), { classes: [], gap: NO_GAP });
  assert.deepEqual(cls('\u0000'), { classes: [], gap: NO_GAP });
  assert.equal(cls('東').gap, classes - 1);
  assert.deepEqual(cls('😀').classes, []); // symbols: a gap among the ASCII symbols (below '$' here)
  assert.notEqual(cls('😀').gap, NO_GAP);
  assert.equal(cls('\uffff').gap, classes - 1);
});
