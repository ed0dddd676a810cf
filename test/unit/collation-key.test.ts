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
  hanTablesInfo,
  mainSpaceBounds,
  primaryClasses,
  primaryVerifyFailures,
  setHanForTests,
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
/** Han-heavy chars: URO, Ext A-B, compatibility ideographs (with and without decompositions), radicals, kana, Hangul, Tangut, unassigned. */
const hanChars = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('東', '京', '北', '一', '丁', '七', '山', '田', '太', '郎', '人', '亻', '\u9fff', '\u4e00', '\u4e01') },
  { weight: 3, arbitrary: fc.integer({ min: 0x4e00, max: 0x9fff }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x3400, max: 0x4dbf }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x20000, max: 0x2a6df }).map((c) => String.fromCodePoint(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0xf900, max: 0xfaff }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x2f800, max: 0x2fa1f }).map((c) => String.fromCodePoint(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x2e80, max: 0x2fdf }).map((c) => String.fromCharCode(c)) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '\ufa0e', '\ufa29', '\uf900', '\u8c48', '\u2f00', '\u2e80', '\u3005', '\u3007', '\u3006', '\u3000', '\u30fc',
      'あ', 'ア', 'ｱ', 'が', 'か\u3099', '가', '각', '\u1100\u1161', '\u{17000}', '\u{1b170}', '\u{18b00}', '\ua000',
      String.fromCodePoint(hanTablesInfo().last), String.fromCodePoint(hanTablesInfo().last) + '\uffff', '\uffff',
      '\u{31350}', '\u{323af}', '\u{2ebf0}', '\u{e0080}', '\u{3ffff}', '\u{33479}', '\u{2a6d9}', '\u{2fffd}', '\u{40000}',
      '\u0301', '\u0308', '\u3099', '\u309a', '\ufe0f', '\u{e0100}', '\u200d', '\u0000', '😀', 'é', 'É', 'ｅ',
    ),
  },
);
const hanString = fc
  .array(fc.oneof({ weight: 4, arbitrary: hanChars }, { weight: 2, arbitrary: asciiNear }, { weight: 1, arbitrary: hostileChars }), {
    maxLength: 6,
  })
  .map((a) => a.join(''));
const hanKey = fc.oneof(
  hanString,
  fc.tuple(hanString, fc.integer({ min: 0, max: 2 })),
  fc.tuple(hanString, hanString),
  fc.tuple(fc.constantFrom('post', 'a', 'A'), hanString, fc.constantFrom(null, 1, 'a', 'A', 'é', '東')),
  fc.dictionary(hanString, fc.oneof(hanString, fc.integer({ min: 0, max: 1 })), { maxKeys: 2 }),
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
  const counts = { s: 0, ignorable: 0, single: 0, han: 0, expansion: 0, gap: 0, prefixGap: 0, gapBelow: 0, gapAbove: 0 };
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
      else if (c.classes.length === 1 && (c.classes[0] as number) >= 0x100) counts.han++;
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
  assert.deepEqual(cls('東'), { classes: [0x6771], gap: NO_GAP }); // a Han unit: the code goes on
  assert.deepEqual(cls('😀').classes, []); // symbols: a gap among the ASCII symbols (below '$' here)
  assert.notEqual(cls('😀').gap, NO_GAP);
  assert.equal(cls('\uffff').gap, classes - 1);
});

// ---- Han ideographs ----

test('collation-key: Han claims, checked against this ICU (order, tiers, compatibility ideographs, contractions)', (t) => {
  const started = Date.now();
  const base = new Intl.Collator('en', { sensitivity: 'base' });
  const variant = new Intl.Collator('en', { sensitivity: 'variant' });
  const info = hanTablesInfo();
  assert.ok(info.on, 'Han handling is on under this ICU');
  const re = /\p{Unified_Ideograph}/u;
  const han: number[] = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp < 0xe000) continue;
    const ch = String.fromCodePoint(cp);
    if (re.test(ch) && ch.normalize('NFD') === ch) han.push(cp);
  }
  assert.equal(han.length, info.count);
  const top = (primaryClasses().at(-1)?.[0] as string) + '\uffff';
  const sorted = han.map((c) => String.fromCodePoint(c)).sort((a, b) => base.compare(a, b));
  // Strict total order (no two ideographs share a primary), and all above every S string.
  for (let i = 0; i + 1 < sorted.length; i++) assert.equal(base.compare(sorted[i] as string, sorted[i + 1] as string), -1, `Han tie at ${i}`);
  assert.equal(base.compare(top, sorted[0] as string), -1);
  // The brief's premise "URO in code-point order, core below Ext" does NOT hold here:
  // ICU's root orders Han by radical and stroke count, blocks interleaved.
  const cpOrderPairs = han.slice(0, -1).filter((c, i) => base.compare(String.fromCodePoint(c), String.fromCodePoint(han[i + 1] as number)) < 0).length;
  t.diagnostic(`Han ${han.length}; adjacent code points in collation order ${cpOrderPairs} of ${han.length - 1}; first ${info.first.toString(16)} last ${info.last.toString(16)}; tables ${info.buildMs.toFixed(1)} ms`);
  // (ICU 78: U+2A6D9, Extension B, sorts between 一 and 丁. The codec holds either way: it uses ranks.)
  t.diagnostic(`一 < U+2A6D9 < 丁: ${base.compare('\u4e00', '\u{2a6d9}') < 0 && base.compare('\u{2a6d9}', '\u4e01') < 0}`);
  // Every side code of a single Han char is TOP, TOP_HAN, rank: distinct and in order.
  const codes = sorted.map((ch) => viewKeyCodes(ch).side);
  for (let i = 0; i + 1 < codes.length; i++) assert.equal(Buffer.compare(codes[i] as Buffer, codes[i + 1] as Buffer), -1);
  // Compatibility ideographs that decompose to one ideograph: base-equal to it, variant-equal too (canonical), coded as it.
  let compat = 0;
  for (let cp = 0xf900; cp < 0x30000; cp++) {
    if (cp === 0xfb00) cp = 0x2f800;
    const ch = String.fromCodePoint(cp);
    const d = ch.normalize('NFD');
    if (d === ch || [...d].length !== 1 || !re.test(d)) continue;
    compat++;
    assert.equal(base.compare(ch, d), 0, `U+${cp.toString(16)} ≡ its decomposition`);
    assert.equal(variant.compare(ch, d), 0);
    assert.equal(collate(ch, d), sign(cp - (d.codePointAt(0) as number)), 'tie broken by code point');
    assert.ok(viewKeyCodes(ch).side.subarray(0, 6).equals(viewKeyCodes(d).side.subarray(0, 6)));
  }
  // Non-Han chars above every S string: where do they lie relative to Han?
  const tiers = { below: 0, above: 0, equalHan: 0, hanExpansion: 0 };
  const first = String.fromCodePoint(info.first);
  const lastTop = String.fromCodePoint(info.last) + '\uffff';
  for (let cp = 0x80; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp < 0xe000) continue;
    const ch = String.fromCodePoint(cp);
    if ((re.test(ch) && ch.normalize('NFD') === ch) || base.compare(ch, top) < 0) continue;
    if (base.compare(ch, first) < 0) tiers.below++;
    else if (base.compare(lastTop, ch) <= 0) tiers.above++;
    else {
      const c = classifyCodePoint(cp);
      if (c.gap === NO_GAP && c.classes.length === 1 && (c.classes[0] as number) >= 0x100) {
        tiers.equalHan++;
        assert.equal(base.compare(ch, String.fromCodePoint(c.classes[0] as number)), 0, `U+${cp.toString(16)}`);
      } else {
        // Square era names (U+32FF, U+337B..U+337F): several Han primaries.
        assert.ok(c.gap === NO_GAP && c.classes.length > 1 && c.classes.every((u) => u >= 0x100), `U+${cp.toString(16)} ${show(c)}`);
        tiers.hanExpansion++;
      }
    }
  }
  t.diagnostic(`compatibility ideographs ${compat}; non-Han chars above S: ${JSON.stringify(tiers)}; ${Date.now() - started} ms`);
  // Every assigned code point in planes 1+ above Han is unassigned or private use; kana, Hangul, Yi, Tangut, Nushu, Khitan lie below.
  for (const ch of ['々', 'ー']) assert.equal(base.compare(ch, 'z'), -1, `${show(ch)} lies below z`);
  for (const ch of ['あ', 'ア', '가', '\ua000', '\u{17000}', '\u{1b170}', '\u{18b00}']) {
    assert.equal(base.compare(ch, first), -1, show(ch));
    assert.equal(viewKeyCodes(ch).side.at(-1), 0x03, `${show(ch)} ends the code below Han`);
  }
  for (const ch of ['\u{e0080}', '\u{3ffff}', '\u{2fffd}']) assert.equal(viewKeyCodes(ch).side.at(-1), 0x05, `${show(ch)} above Han`);
  // No contraction starts at an ideograph: the per-char primaries pass the whole-string check.
  const before = primaryVerifyFailures();
  for (let i = 0; i < sorted.length; i += 97) {
    const h = sorted[i] as string;
    const h2 = sorted[(i * 7919) % sorted.length] as string;
    for (const s of [h + '\u0301', h + '\u0308\u0301', h + 'a', h + 'A', 'a' + h, h + h2, h + '\u3099', h + '\ufe0f', h + '\u{e0100}', h + 'あ', h + '가']) {
      viewKeyCodes(s);
    }
  }
  assert.equal(primaryVerifyFailures() - before, 0, 'no Han string needed the probe');
});

test('collation-key: Han keys get their own side codes (law 5), and later elements still order', () => {
  const words = ['東京', '東北', '北京', '東京都', '東', '京都', '山田太郎', '山田花子', '張偉', '王芳'];
  const sides = words.map((w) => viewKeyCodes(w).side.toString('hex'));
  assert.equal(new Set(sides).size, words.length, 'one side code per word');
  for (const w of words) assert.equal(viewKeyCodes(w).exact, null, 'still not in the main space');
  // ASCII and Han: exact side parts, so the key goes on (no group for ["東京", n]).
  assert.notDeepEqual(viewKeyCodes(['東京', 1]).side, viewKeyCodes(['東京', 2]).side);
  assert.notDeepEqual(viewKeyCodes(['東京', '東北']).side, viewKeyCodes(['東京', '北京']).side);
  assert.notDeepEqual(viewKeyCodes('東京a').side, viewKeyCodes('東京A').side);
  assert.notDeepEqual(viewKeyCodes({ 東京: 1 }).side, viewKeyCodes({ 東京: 2 }).side);
  // Accents, compatibility ideographs, kana still end the side code (groups remain there).
  assert.deepEqual(viewKeyCodes(['東京é', 1]).side, viewKeyCodes(['東京é', 2]).side);
  assert.deepEqual(viewKeyCodes(['東京あ', 1]).side, viewKeyCodes(['東京い', 2]).side);
  assert.deepEqual(viewKeyCodes(['\uf900', 1]).side, viewKeyCodes(['\uf900', 2]).side);
  // Found by the property test: U+0000 (no primary) before an ideograph, and U+FFFF after one.
  assertLaws(['丁', '\u0000丁', '丁\u0000', ['丁', 1], ['\u0000丁', 0], '東\uffff', '東\uffffa', '東', '丁', ['東\uffff', 0], ['東', 9]]);
  assertLaws([...words, ...words.map((w) => [w, 1]), ...words.map((w) => [w, 'a']), '東京é', '東京E', '東京e', '\uf900', '\u8c48', ['\u8c48', 1], '東京あ']);
});

test('collation-key: laws 1-3 over Han-heavy keys (seeded)', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(fc.array(fc.oneof(hanKey, hanKey, nearKey, keyArb), { minLength: 2, maxLength: 24 }), (keys) => assertLaws(keys)),
    { seed: seed + 4, numRuns: 400 * runsFactor },
  );
});

test('collation-key: law 4 over Han-heavy keys (seeded)', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(fc.array(fc.oneof(hanKey, hanKey, nearKey), { minLength: 3, maxLength: 8 }), fc.boolean(), fc.boolean(), (keys, openStart, openEnd) => {
      const sorted = [...keys].sort(collate);
      for (let i = 0; i < sorted.length; i++) {
        for (let j = i; j < sorted.length; j++) {
          for (let l = j; l < sorted.length; l++) assertBounds(openStart ? undefined : sorted[i], sorted[j], openEnd ? undefined : sorted[l]);
        }
      }
    }),
    { seed: seed + 5, numRuns: 120 * runsFactor },
  );
});

test('collation-key: with Han off (a failed build-time check), every top-gap char ends the code and the laws hold', (t) => {
  t.diagnostic(`seed ${seed}`);
  setHanForTests(false);
  try {
    assert.deepEqual(viewKeyCodes(['東京', 1]).side, viewKeyCodes(['北京', 2]).side);
    fc.assert(
      fc.property(fc.array(fc.oneof(hanKey, nearKey), { minLength: 2, maxLength: 16 }), (keys) => assertLaws(keys)),
      { seed: seed + 6, numRuns: 100 * runsFactor },
    );
  } finally {
    setHanForTests(true);
  }
  assert.notDeepEqual(viewKeyCodes(['東京', 1]).side, viewKeyCodes(['北京', 2]).side);
});
