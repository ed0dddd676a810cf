/**
 * View-key codec: byte strings whose order (RocksDB's, `Buffer.compare`) follows
 * CouchDB view collation, for keys we can encode exactly, and a monotone coarser
 * code for every key. See docs/collation.md for the design and its limits.
 *
 * Everything about strings is DERIVED at first use from the same
 * `Intl.Collator('en')` that the exact comparator uses (never from hard-coded ICU
 * tables), so the codes follow whatever ICU this Node carries; `collationVersion`
 * names that ICU, and an index built under another one must be rebuilt.
 *
 * Layout (one byte each unless said):
 *   END 0x01 (closes an array/object; below every tag)
 *   null 0x10, false 0x11, true 0x12, number 0x13 + 8-byte order-preserving double,
 *   string 0x14 + string part, array 0x15 elements END, object 0x16 (key value)* END
 *   (object keys are written as strings, tag included).
 *
 * Alphabet S = printable ASCII U+0020..U+007E. `sensitivity:'base'` sorts S into
 * primary classes 0..C-1 (C = 69 under ICU 78); class r has primary weight
 * W(r) = 4 + 2r; odd bytes are gaps: 3 below class 0, W(r)+1 between r and r+1 (the
 * last one is "above every S class"). Within a class, the members sorted by the
 * 'variant' collator have tertiary bytes 4 + 2t (lowercase before uppercase).
 *
 * Exact string part (every char in S): W(class)* SEP(0x02) tertiary* TERM(0x02).
 * Strings with equal primaries have equal length, so this is prefix-free; ICU's
 * root collation compares such strings primaries first, then tertiaries (S has no
 * secondary differences, no contractions, no expansions) - the property tests check it.
 *
 * Side string part (any string). Let Q be its primary-weight sequence in units: S
 * classes, and Han ideographs, whose W is TOPGAP 0x04 rank(3 bytes) (TOPGAP = the gap
 * byte above the last S class; rank = place in the collator's Han order). Q is found
 * per code point (cached) and verified against the collator with one or two
 * `compare` calls (or, when verification fails, found by probing the collator
 * directly). Then one of:
 *   W(Q) gap            a char whose first primary lies in that gap: the key's side
 *                       code ENDS (truncation; later chars are unknown); after
 *                       TOPGAP a tier follows: 0x03 below all Han, 0x05 above;
 *   W(Q) TOPGAP 0x04 rank 0x00   (rare) just below the Han unit `rank`: ENDS;
 *   W(Q[0..64)) MORE    more than SIDE_PRIMARIES_MAX primaries: the key ends here
 *                       (also for exact strings, so side codes stay bounded);
 *   W(Q) SEP tertiary* TERM   an exact string, or one of S chars and Han ideographs
 *                       that are their own unit (Han tertiary 0x04) (|Q| <= 64):
 *                       the key goes on;
 *   W(Q) SEP path mark  a non-exact string with complete primaries: its place among
 *                       the S strings with the same primaries (they differ only by
 *                       case), found by comparing with the collator: `path` are the
 *                       tertiary bytes of the case subtree it falls in, `mark` (odd)
 *                       says between which two subtrees; the key ends here, because
 *                       its lower levels are unknown and decide before later elements.
 * Every side string part therefore states "the string lies in this interval", and
 * distinct parts state disjoint intervals in the right order: that is the
 * monotonicity law. For an exact key, side === exact unless it holds a string of more
 * than 64 primaries.
 */
import assert from 'node:assert/strict';

export interface ViewKeyCodes {
  /** Strict, prefix-free, order-preserving code, or null when the key holds a string whose order we cannot encode exactly. */
  exact: Buffer | null;
  /** Monotone, prefix-free code for the side space (computed for every key, exact or not). */
  side: Buffer;
}

/**
 * A bound above every JSON value, for range scans only (never stored, never sent as
 * JSON): `[v, KEY_MAX]` sorts after every array that starts with `v`, so Mango turns
 * "the first column is v, the rest anything" into one range. `collate` ranks it last.
 */
export const KEY_MAX: unique symbol = Symbol('divan.keyMax');

/** Bump when the layout changes; ICU and Unicode versions are part of it too. */
const CODEC_VERSION = 'v2';
/** Changes whenever the codes could change: indexes record it and rebuild on mismatch. */
export const collationVersion = `${CODEC_VERSION}/icu-${process.versions.icu ?? 'none'}/cldr-${
  process.versions.cldr ?? 'none'
}/unicode-${process.versions.unicode ?? 'none'}`;

/**
 * Side codes keep at most this many primaries of one string; longer strings end the
 * key's side code (MORE). Bounds side-key size and the collator work per string.
 */
export const SIDE_PRIMARIES_MAX = 64;

const END = 0x01;
const TAG_NULL = 0x10;
const TAG_FALSE = 0x11;
const TAG_TRUE = 0x12;
const TAG_NUMBER = 0x13;
const TAG_STRING = 0x14;
const TAG_ARRAY = 0x15;
const TAG_OBJECT = 0x16;
/** KEY_MAX: above every tag, and above END (so [v, KEY_MAX] is above [v, ...anything]). */
const TAG_MAX = 0xfe;
const SEP = 0x02;
const TERM = 0x02;
const GAP_BELOW = 0x03;
const MORE = 0xff;
/** Mark for a non-exact string without primaries: above "" (which goes on with TERM). */
const MARK_EMPTY = 0x03;

/** The first code point outside S, and the first inside. */
const S_FIRST = 0x20;
const S_END = 0x7f;
/** U+FFFF has the highest primary weight in CLDR root collation. */
const TOP = '\uffff';

/**
 * Sub-codes after the top-gap byte (a primary above every S class). Han ideographs
 * (Unified_Ideograph) are TOP_HAN and their rank in collation order (3 bytes); a
 * char up there that is not Han lies below the first Han (explicit weights: kana,
 * Hangul, Yi, Tangut...) or above the last (unassigned code points), or (rare) just
 * below some Han: found with the collator, never assumed. Only Han continues the code.
 */
const TOP_LOW = 0x03;
const TOP_HAN = 0x04;
const TOP_HIGH = 0x05;
/** Units >= HAN_UNIT are Han ideographs (the unit is their code point); below it, S classes. */
const HAN_UNIT = 0x100;
/** Han ideographs all lie in planes 0..3. */
const HAN_PLANE_END = 0x40000;

/** Per-code-point result: its primaries in S classes (or Han units), then maybe a gap. */
export interface CharClass {
  /** Class indices of the known primaries, in order; values >= 0x100 are Han ideographs (the URO/Ext code point whose primary it has). */
  classes: number[];
  /** NO_GAP: the primaries are complete; GAP_BELOW_ALL: next primary below class 0; r >= 0: strictly between class r and r+1 (above all when r = C-1). */
  gap: number;
  /** More than SIDE_PRIMARIES_MAX primaries (only for whole strings). */
  more?: boolean;
  /** For the top gap: TOP_LOW or TOP_HIGH (the code ends), or `before` a Han unit (below every string with that unit there). */
  top?: number;
  before?: number;
}
export const NO_GAP = -2;
export const GAP_BELOW_ALL = -1;

interface Tables {
  base: Intl.Collator;
  variant: Intl.Collator;
  /** Members of each primary class, in variant order. */
  members: string[][];
  /** First (lowest) member of each class. */
  reps: string[];
  /** Indexed by char code below 0x80: class + 1 (0 = not in S), tertiary rank. */
  classOf: Int16Array;
  tertiaryOf: Uint8Array;
  /** W(class) and the tertiary byte for S chars, for the fast path. */
  primaryByte: Uint8Array;
  tertiaryByte: Uint8Array;
  cache: Map<number, CharClass>;
  buildMs: number;
  /** Built at the first char that needs them. */
  han?: HanTables;
}

let tables: Tables | undefined;

function getTables(): Tables {
  if (tables !== undefined) return tables;
  const started = process.hrtime.bigint();
  const base = new Intl.Collator('en', { sensitivity: 'base' });
  const variant = new Intl.Collator('en', { sensitivity: 'variant' });
  const chars: string[] = [];
  for (let c = S_FIRST; c < S_END; c++) chars.push(String.fromCharCode(c));
  chars.sort((a, b) => variant.compare(a, b) || (a < b ? -1 : 1));
  const members: string[][] = [];
  for (const ch of chars) {
    const last = members[members.length - 1];
    if (last !== undefined && base.compare(last[0] as string, ch) === 0) last.push(ch);
    else members.push([ch]);
  }
  // The scheme needs classes in strict base order, members distinct at 'variant'.
  for (let r = 0; r + 1 < members.length; r++) {
    assert.ok(base.compare((members[r] as string[])[0] as string, (members[r + 1] as string[])[0] as string) < 0, 'collation-key: S classes out of order');
  }
  for (const m of members) {
    for (let t = 0; t + 1 < m.length; t++) assert.ok(variant.compare(m[t] as string, m[t + 1] as string) < 0, 'collation-key: S members tie');
  }
  assert.ok(5 + 2 * (members.length - 1) < MORE, 'collation-key: too many primary classes for one byte');
  const classOf = new Int16Array(S_END);
  const tertiaryOf = new Uint8Array(S_END);
  const primaryByte = new Uint8Array(S_END);
  const tertiaryByte = new Uint8Array(S_END);
  members.forEach((m, r) =>
    m.forEach((ch, t) => {
      const c = ch.charCodeAt(0);
      classOf[c] = r + 1;
      tertiaryOf[c] = t;
      primaryByte[c] = 4 + 2 * r;
      tertiaryByte[c] = 4 + 2 * t;
    }),
  );
  tables = {
    base,
    variant,
    members,
    reps: members.map((m) => m[0] as string),
    classOf,
    tertiaryOf,
    primaryByte,
    tertiaryByte,
    cache: new Map(),
    buildMs: 0,
  };
  tables.buildMs = Number(process.hrtime.bigint() - started) / 1e6;
  return tables;
}

interface HanTables {
  /** Indexed by code point below HAN_PLANE_END: rank + 1 in collation order of a Unified_Ideograph (NFD itself), 0 if none. */
  rank: Uint32Array;
  /** Compatibility ideograph → the Unified_Ideograph it decomposes to canonically (one char). */
  alias: Map<number, number>;
  /** Every Unified_Ideograph in collation order. */
  list: number[];
  on: boolean;
  buildMs: number;
}

/**
 * Han tables, built at the first char that needs them (70-90 ms here, once): every
 * Unified_Ideograph sorted by the collator itself. ICU's root collation orders Han
 * by radical and stroke count, not by code point, and interleaves the blocks, so
 * the sub-code is the rank in this order. The checks (strict order, all above every
 * S string) switch Han off when they fail: then every top-gap char ends the code.
 */
function hanTables(t: Tables): HanTables {
  if (t.han !== undefined) return t.han;
  const started = process.hrtime.bigint();
  const re = /\p{Unified_Ideograph}/u;
  const chars: string[] = [];
  for (let cp = 0x3400; cp < HAN_PLANE_END; cp++) {
    const ch = String.fromCodePoint(cp);
    // (Unified_Ideographs have no decomposition; checked only where compatibility ideographs live.)
    if (re.test(ch) && ((cp < 0xf900 || cp >= 0xfb00) && (cp < 0x2f800 || cp >= 0x2fa20) ? true : ch.normalize('NFD') === ch)) chars.push(ch);
  }
  const { base } = t;
  chars.sort((a, b) => base.compare(a, b));
  let on = chars.length > 0 && base.compare((t.reps[t.reps.length - 1] as string) + TOP, chars[0] as string) <= 0;
  for (let i = 0; on && i + 1 < chars.length; i++) on = base.compare(chars[i] as string, chars[i + 1] as string) < 0;
  const rank = new Uint32Array(HAN_PLANE_END);
  const list = chars.map((ch, i) => {
    const cp = ch.codePointAt(0) as number;
    rank[cp] = i + 1;
    return cp;
  });
  // The two compatibility-ideograph blocks (Unicode: F900..FAFF, 2F800..2FA1F).
  const alias = new Map<number, number>();
  for (let cp = 0xf900; cp < 0x2fa20; cp++) {
    if (cp === 0xfb00) cp = 0x2f800;
    if (rank[cp] !== 0) continue;
    const d = String.fromCodePoint(cp).normalize('NFD');
    const dc = d.codePointAt(0) as number;
    if (d.length === (dc > 0xffff ? 2 : 1) && dc < HAN_PLANE_END && rank[dc] !== 0) alias.set(cp, dc);
  }
  t.han = { rank, alias, list, on, buildMs: Number(process.hrtime.bigint() - started) / 1e6 };
  return t.han;
}

/** The Han unit of `cp` (its own or its decomposition's code point), or 0. */
function hanUnit(t: Tables, cp: number): number {
  if (cp < 0x3400 || cp >= HAN_PLANE_END) return 0;
  const h = hanTables(t);
  if (!h.on) return 0;
  if (h.rank[cp] !== 0) return cp;
  return h.alias.get(cp) ?? 0;
}

/**
 * Tests only: switch Han handling off (as a failed build-time check would) or back
 * on, dropping cached classifications that may hold Han units.
 */
export function setHanForTests(on: boolean): void {
  const t = getTables();
  const h = hanTables(t);
  h.on = on;
  t.cache.clear();
}

/** How long building the Han tables took (builds them if needed), and whether Han is on; for reports and tests. */
export function hanTablesInfo(): { buildMs: number; on: boolean; count: number; first: number; last: number } {
  const h = hanTables(getTables());
  return { buildMs: h.buildMs, on: h.on, count: h.list.length, first: h.list[0] ?? 0, last: h.list[h.list.length - 1] ?? 0 };
}

/** Does x, with primaries qr and then a top-gap primary, lie in tier `top`? */
function topTierHolds(t: Tables, qr: string, x: string, top: number): boolean {
  const { base } = t;
  const { list, on } = hanTables(t);
  if (!on) return top === TOP_LOW;
  if (top === TOP_HIGH) return base.compare(qr + String.fromCodePoint(list[list.length - 1] as number) + TOP, x) <= 0;
  return base.compare(x, qr + String.fromCodePoint(list[0] as number)) < 0;
}

function unitRep(t: Tables, u: number): string {
  return u >= HAN_UNIT ? String.fromCodePoint(u) : (t.reps[u] as string);
}

/** Where x goes after the primaries qr, given that its next primary is above every S class. */
function topPlace(t: Tables, qr: string, x: string): { han: number } | { top: number } | { before: number } {
  const { base } = t;
  const { list, on } = hanTables(t);
  if (!on || base.compare(x, qr + String.fromCodePoint(list[0] as number)) < 0) return { top: TOP_LOW };
  if (base.compare(qr + String.fromCodePoint(list[list.length - 1] as number) + TOP, x) <= 0) return { top: TOP_HIGH };
  // The last Han h with qr+h <= x; there is one (x >= qr + list[0]).
  let lo = 0;
  let hi = list.length - 1;
  let at = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (base.compare(qr + String.fromCodePoint(list[mid] as number), x) <= 0) {
      at = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  const h = list[at] as number;
  if (base.compare(x, qr + String.fromCodePoint(h) + TOP) < 0) return { han: h };
  const next = list[at + 1];
  return next === undefined ? { top: TOP_HIGH } : { before: next };
}

/** How long building the tables took (builds them if needed); for reports and tests. */
export function collationTablesBuildMs(): number {
  return getTables().buildMs;
}

/** The primary classes of S, each as its members in variant order (for tests and docs). */
export function primaryClasses(): readonly (readonly string[])[] {
  return getTables().members;
}

/**
 * The primaries of `x` found by asking the collator only: at each step, the largest
 * class r with Q+r <= x (binary search), then whether x starts with Q+r (x < Q+r+TOP).
 * Self-verifying, no assumption about contractions; about 8 compares per primary.
 */
function probe(t: Tables, x: string, primariesMax: number): CharClass {
  const { base, reps } = t;
  const classes: number[] = [];
  let qr = '';
  const topGap = reps.length - 1;
  for (;;) {
    if (base.compare(qr, x) === 0) return { classes, gap: NO_GAP };
    // Invariant: Q < x (primary), and x < Q + TOP when Q is not empty.
    if (classes.length >= primariesMax) return { classes, gap: NO_GAP, more: true };
    let lo = 0;
    let hi = reps.length - 1;
    let r = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (base.compare(qr + reps[mid], x) <= 0) {
        r = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (r < 0) return { classes, gap: GAP_BELOW_ALL };
    const next = qr + reps[r];
    if (base.compare(x, next + TOP) < 0) {
      classes.push(r);
      qr = next;
    } else if (r === topGap && (qr === '' || base.compare(x, qr + TOP) < 0)) {
      const place = topPlace(t, qr, x);
      if ('han' in place) {
        classes.push(place.han);
        qr += String.fromCodePoint(place.han);
      } else return { classes, gap: r, ...place };
    } else return { classes, gap: r };
  }
}

/** The class of one code point (cached). */
export function classifyCodePoint(cp: number): CharClass {
  const t = getTables();
  const c = cp < S_END ? t.classOf[cp] ?? 0 : 0;
  if (c > 0) return { classes: [c - 1], gap: NO_GAP };
  const h = hanUnit(t, cp);
  if (h !== 0) return { classes: [h], gap: NO_GAP };
  let found = t.cache.get(cp);
  if (found === undefined) {
    found = probe(t, String.fromCodePoint(cp), SIDE_PRIMARIES_MAX);
    t.cache.set(cp, found);
  }
  return found;
}

/** The side primaries of a whole string: per code point, then verified; probe if the check fails. */
function stringPrimaries(t: Tables, x: string): CharClass {
  const classes: number[] = [];
  let gap = NO_GAP;
  let top: number | undefined;
  let before: number | undefined;
  for (let i = 0; i < x.length && gap === NO_GAP && classes.length <= SIDE_PRIMARIES_MAX; i++) {
    const unit = x.charCodeAt(i);
    const c = unit < S_END ? (t.classOf[unit] as number) : 0;
    if (c > 0) {
      classes.push(c - 1);
      continue;
    }
    const cp = x.codePointAt(i) as number;
    if (cp > 0xffff) i++;
    const info = classifyCodePoint(cp);
    for (const r of info.classes) classes.push(r);
    gap = info.gap;
    top = info.top;
    before = info.before;
  }
  let more = false;
  // At position SIDE_PRIMARIES_MAX anything further (a class or a gap) is MORE; the
  // walk above stops there, so a long string costs no more than its first primaries.
  if (classes.length > SIDE_PRIMARIES_MAX || (classes.length === SIDE_PRIMARIES_MAX && gap !== NO_GAP)) {
    classes.length = SIDE_PRIMARIES_MAX;
    gap = NO_GAP;
    top = undefined;
    before = undefined;
    more = true;
  }
  // Verify with the collator: per-code-point results miss contractions (e.g. a base
  // letter and a combining mark that make a letter of their own).
  const { base, reps } = t;
  let qr = '';
  for (const r of classes) qr += unitRep(t, r);
  let ok: boolean;
  if (before !== undefined) {
    ok = false; // rare (a char between two Han primaries): let the probe place it
  } else if (more) {
    ok = base.compare(qr, x) < 0 && base.compare(x, qr + TOP) < 0;
  } else if (gap === NO_GAP) {
    ok = qr === x || base.compare(qr, x) === 0;
  } else if (gap === GAP_BELOW_ALL) {
    ok = base.compare(qr, x) < 0 && base.compare(x, qr + reps[0]) < 0;
  } else {
    ok =
      base.compare(qr + reps[gap] + TOP, x) <= 0 &&
      (gap + 1 < reps.length
        ? base.compare(x, qr + reps[gap + 1]) < 0
        : (qr === '' || base.compare(x, qr + TOP) < 0) &&
          topTierHolds(t, qr, x, top ?? TOP_LOW));
  }
  if (ok) return gap === reps.length - 1 ? { classes, gap, more, top: top ?? TOP_LOW } : { classes, gap, more };
  verifyFailures++;
  return probe(t, x, SIDE_PRIMARIES_MAX);
}

let verifyFailures = 0;
/** How often the per-code-point primaries failed verification (tests, diagnostics). */
export function primaryVerifyFailures(): number {
  return verifyFailures;
}

/** Code-point order (UTF-8 byte order), the tie-break of the exact comparator. */
function codePointCompare(a: string, b: string): number {
  let i = 0;
  for (;;) {
    if (i >= a.length || i >= b.length) return a.length - i > 0 ? 1 : b.length - i > 0 ? -1 : 0;
    const ca = a.codePointAt(i) as number;
    const cb = b.codePointAt(i) as number;
    if (ca !== cb) return ca < cb ? -1 : 1;
    i += ca > 0xffff ? 2 : 1;
  }
}

/** CouchDB string order as the exact comparator has it: 'variant', then code point. */
function compareStrings(t: Tables, a: string, b: string): number {
  const r = t.variant.compare(a, b);
  return r !== 0 ? r : codePointCompare(a, b);
}

// ---- byte writer (one per process; encoding is synchronous, never reentrant) ----

let out = new Uint8Array(256);
let pos = 0;
const numberView = new DataView(new ArrayBuffer(8));

function ensure(n: number): void {
  if (pos + n <= out.length) return;
  let size = out.length * 2;
  while (size < pos + n) size *= 2;
  const grown = new Uint8Array(size);
  grown.set(out.subarray(0, pos));
  out = grown;
}
function put(byte: number): void {
  if (pos >= out.length) ensure(1);
  out[pos++] = byte;
}
function snapshot(): Buffer {
  const b = Buffer.allocUnsafe(pos);
  b.set(out.subarray(0, pos));
  return b;
}

function putNumber(n: number): void {
  assert.ok(Number.isFinite(n), 'collation-key: not a JSON number');
  numberView.setFloat64(0, n === 0 ? 0 : n);
  ensure(9);
  out[pos++] = TAG_NUMBER;
  const negative = (numberView.getUint8(0) & 0x80) !== 0;
  for (let i = 0; i < 8; i++) {
    const byte = numberView.getUint8(i);
    out[pos++] = negative ? byte ^ 0xff : i === 0 ? byte ^ 0x80 : byte;
  }
}

/** Is every char of `s` in S? */
function isExactString(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < S_FIRST || c >= S_END) return false;
  }
  return true;
}

/** The exact string part (s is all S). */
function putExactString(t: Tables, s: string): void {
  const n = s.length;
  ensure(2 * n + 3);
  out[pos++] = TAG_STRING;
  for (let i = 0; i < n; i++) out[pos++] = t.primaryByte[s.charCodeAt(i)] as number;
  out[pos++] = SEP;
  for (let i = 0; i < n; i++) out[pos++] = t.tertiaryByte[s.charCodeAt(i)] as number;
  out[pos++] = TERM;
}

/** Side part of an exact string longer than SIDE_PRIMARIES_MAX: first primaries, MORE. */
function putLongExactSide(t: Tables, s: string): void {
  ensure(SIDE_PRIMARIES_MAX + 2);
  out[pos++] = TAG_STRING;
  for (let i = 0; i < SIDE_PRIMARIES_MAX; i++) out[pos++] = t.primaryByte[s.charCodeAt(i)] as number;
  out[pos++] = MORE;
}

/** A Han unit: the top-gap byte, TOP_HAN, its rank in 3 bytes. */
function putHanUnit(t: Tables, u: number): void {
  const r = ((t.han as HanTables).rank[u] as number) - 1;
  out[pos++] = 5 + 2 * (t.reps.length - 1);
  out[pos++] = TOP_HAN;
  out[pos++] = r >> 16;
  out[pos++] = (r >> 8) & 0xff;
  out[pos++] = r & 0xff;
}

/**
 * Is x made of S chars and Han ideographs that are their own unit only? Then it is
 * the one string of its case subtree with its letters, and its code (primaries,
 * SEP, tertiaries, TERM) is exact among its peers: the key can go on.
 */
function isSHanString(t: Tables, x: string): boolean {
  for (let i = 0; i < x.length; i++) {
    const c = x.charCodeAt(i);
    if (c >= S_FIRST && c < S_END) continue;
    const cp = x.codePointAt(i) as number;
    if (cp > 0xffff) i++;
    if (cp < HAN_UNIT || hanUnit(t, cp) !== cp) return false; // hanUnit is 0 for non-Han, U+0000 included
  }
  return true;
}

/**
 * Side part of a non-exact string. Returns true when the key's side code goes on
 * after it (a string of S chars and Han only, with at most SIDE_PRIMARIES_MAX
 * primaries); otherwise the side code ends here.
 */
function putSideString(t: Tables, x: string): boolean {
  const p = stringPrimaries(t, x);
  const n = p.classes.length;
  ensure(6 * n + 12);
  out[pos++] = TAG_STRING;
  let hasHan = false;
  for (const r of p.classes) {
    if (r >= HAN_UNIT) {
      putHanUnit(t, r);
      hasHan = true;
    } else out[pos++] = 4 + 2 * r;
  }
  if (p.more) {
    out[pos++] = MORE;
    return false;
  }
  if (p.gap !== NO_GAP) {
    if (p.before !== undefined) {
      // Between two Han primaries (e.g. an ideograph then U+FFFF, which the probe's
      // "starts with" test cannot see): below every string with the next Han there.
      putHanUnit(t, p.before);
      out[pos++] = 0x00; // every continuation of a Han unit starts at SEP or above
      return false;
    }
    out[pos++] = p.gap === GAP_BELOW_ALL ? GAP_BELOW : 5 + 2 * p.gap;
    if (p.gap === t.reps.length - 1) out[pos++] = p.top ?? TOP_LOW;
    return false;
  }
  out[pos++] = SEP;
  if (n === 0) {
    out[pos++] = MARK_EMPTY; // x > "" always: ties break by code point, "" first
    return false;
  }
  const { members } = t;
  const membersOf = (u: number): string[] => (u >= HAN_UNIT ? [String.fromCodePoint(u)] : (members[u] as string[]));
  if (hasHan && isSHanString(t, x)) {
    // Han has one member per unit, so only the S positions' tertiaries vary.
    for (let i = 0; i < x.length; i++) {
      const c = x.charCodeAt(i);
      if (c >= S_FIRST && c < S_END) out[pos++] = t.tertiaryByte[c] as number;
      else {
        out[pos++] = 4;
        if (c >= 0xd800 && c < 0xdc00) i++;
      }
    }
    out[pos++] = TERM;
    return true;
  }
  // Place x among the S (and Han) strings with primaries Q: they differ only by the
  // member chosen at each position, ordered lexicographically by tertiary rank.
  const chosen: string[] = [];
  const lowest = (from: number): string => {
    let s = '';
    for (let j = from; j < n; j++) s += membersOf(p.classes[j] as number)[0];
    return s;
  };
  const highest = (from: number): string => {
    let s = '';
    for (let j = from; j < n; j++) {
      const m = membersOf(p.classes[j] as number);
      s += m[m.length - 1];
    }
    return s;
  };
  const k0 = membersOf(p.classes[0] as number).length;
  if (compareStrings(t, x, highest(0)) > 0) {
    out[pos++] = 3 + 2 * k0;
    return false;
  }
  if (compareStrings(t, x, lowest(0)) < 0) {
    out[pos++] = 3;
    return false;
  }
  // Invariant: lowest(subtree) < x < highest(subtree); x is never an S string.
  for (let i = 0; i < n; i++) {
    const m = membersOf(p.classes[i] as number);
    if (m.length === 1) {
      out[pos++] = 4;
      chosen.push(m[0] as string);
      continue;
    }
    const prefix = chosen.join('');
    let placed = false;
    for (let tt = 0; tt < m.length; tt++) {
      const here = prefix + m[tt];
      if (tt > 0 && compareStrings(t, x, here + lowest(i + 1)) < 0) {
        out[pos++] = 3 + 2 * tt;
        return false;
      }
      if (compareStrings(t, x, here + highest(i + 1)) < 0) {
        out[pos++] = 4 + 2 * tt;
        chosen.push(m[tt] as string);
        placed = true;
        break;
      }
    }
    assert.ok(placed, 'collation-key: string above its case subtree');
  }
  assert.fail('collation-key: non-exact string equal to an S string');
}

type Frame = { array: readonly unknown[]; index: number } | { object: Record<string, unknown>; keys: string[]; index: number };

/**
 * Exact and side codes of a view key (a JSON value; anything else fails an
 * assertion). For most exact keys `side` is the same Buffer as `exact`: do not
 * mutate either. Synchronous; about 2 bytes per char of string plus 9 per number.
 */
export function viewKeyCodes(key: unknown): ViewKeyCodes {
  const t = getTables();
  pos = 0;
  let side: Buffer | null = null;
  // Once a non-exact string's side part goes on, `out` holds the side code only.
  let sideOnly = false;
  /** Write string s; returns the key's codes when the walk ends here. */
  const putString = (s: string): ViewKeyCodes | undefined => {
    if (isExactString(s)) {
      if (side === null && s.length > SIDE_PRIMARIES_MAX) {
        const mark = pos;
        putLongExactSide(t, s);
        side = snapshot();
        if (sideOnly) return { exact: null, side };
        pos = mark;
      }
      putExactString(t, s);
      return undefined;
    }
    if (side === null) {
      if (putSideString(t, s)) {
        sideOnly = true;
        return undefined;
      }
      side = snapshot();
    }
    return { exact: null, side };
  };
  const stack: Frame[] = [];
  let value = key;
  for (;;) {
    // Write `value`; a non-exact string may end the walk.
    switch (typeof value) {
      case 'string': {
        const done = putString(value);
        if (done !== undefined) return done;
        break;
      }
      case 'number':
        putNumber(value);
        break;
      case 'boolean':
        put(value ? TAG_TRUE : TAG_FALSE);
        break;
      case 'symbol':
        assert.ok(value === KEY_MAX, 'collation-key: not a JSON value (symbol)');
        put(TAG_MAX);
        break;
      case 'object':
        if (value === null) put(TAG_NULL);
        else if (Array.isArray(value)) {
          put(TAG_ARRAY);
          stack.push({ array: value, index: 0 });
        } else {
          put(TAG_OBJECT);
          stack.push({ object: value as Record<string, unknown>, keys: Object.keys(value), index: 0 });
        }
        break;
      default:
        assert.fail(`collation-key: not a JSON value (${typeof value})`);
    }
    // Next value: the next member of the innermost open container.
    let next = false;
    while (!next) {
      const frame = stack[stack.length - 1];
      if (frame === undefined) {
        const code = snapshot();
        return sideOnly ? { exact: null, side: code } : { exact: code, side: side ?? code };
      }
      if ('array' in frame) {
        if (frame.index < frame.array.length) {
          value = frame.array[frame.index++];
          next = true;
        }
      } else if (frame.index < frame.keys.length) {
        // The member's key is a string like any other; its value follows.
        const name = frame.keys[frame.index++] as string;
        value = frame.object[name];
        const done = putString(name);
        if (done !== undefined) return done;
        next = true;
      }
      if (!next) {
        put(END);
        stack.pop();
      }
    }
  }
}

/** The least byte string above every string that starts with `code`; undefined if none. */
function prefixEnd(code: Buffer): Buffer | undefined {
  let n = code.length;
  while (n > 0 && code[n - 1] === 0xff) n--;
  if (n === 0) return undefined;
  const b = Buffer.from(code.subarray(0, n));
  b[n - 1] = (b[n - 1] as number) + 1;
  return b;
}

/** Drop a trailing MORE: the rest of that string is unknown, so only the prefix bounds. */
function lowerBound(code: Buffer): Buffer {
  return code.length > 0 && code[code.length - 1] === MORE ? code.subarray(0, code.length - 1) : code;
}

/**
 * Conservative scan bounds for the main space: every row whose key k has
 * start <= k <= end (collate) and an exact code has that code (plus any suffix) in
 * [gte, lt). Undefined start/end leave that side open.
 */
export function mainSpaceBounds(start: unknown | undefined, end: unknown | undefined): { gte?: Buffer; lt?: Buffer } {
  const bounds: { gte?: Buffer; lt?: Buffer } = {};
  if (start !== undefined) {
    const c = viewKeyCodes(start);
    bounds.gte = c.exact ?? lowerBound(c.side);
  }
  if (end !== undefined) {
    const c = viewKeyCodes(end);
    const lt = prefixEnd(c.exact ?? c.side);
    if (lt !== undefined) bounds.lt = lt;
  }
  return bounds;
}

/** The same for the side space: every side(k) (plus any suffix) lies in [gte, lt). */
export function sideSpaceBounds(start: unknown | undefined, end: unknown | undefined): { gte?: Buffer; lt?: Buffer } {
  const bounds: { gte?: Buffer; lt?: Buffer } = {};
  if (start !== undefined) bounds.gte = viewKeyCodes(start).side;
  if (end !== undefined) {
    const lt = prefixEnd(viewKeyCodes(end).side);
    if (lt !== undefined) bounds.lt = lt;
  }
  return bounds;
}
