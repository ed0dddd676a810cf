/**
 * JSON collation: the order CouchDB sorts view keys and Mango compares values in.
 *
 * Types rank first: null < false < true < numbers < strings < arrays < objects.
 * Within a type:
 * - numbers compare numerically (0 and -0 are equal);
 * - strings compare by Unicode collation (see below);
 * - arrays compare element by element; a proper prefix sorts first;
 * - objects compare member by member in their key order, first the key (as a
 *   string, by collation) then the value; an object that is a proper prefix of
 *   another sorts first. Member order matters: {b:1, a:1} and {a:1, b:1} differ.
 *
 * Two string orders are exported:
 * - `collate` uses Unicode collation. CouchDB uses ICU's UCA root collator at
 *   tertiary strength; we approximate it with one `Intl.Collator('en',
 *   { sensitivity: 'variant' })` (Node's built-in ICU, root rules, no tailoring), so
 *   "a" < "A" < "aa" < "b" < "B" and punctuation sorts before digits before letters.
 *   Where the collator calls two distinct strings equal (canonically equivalent
 *   forms such as "é" and "e\u0301", or ignorable code points such as U+0000) we
 *   break the tie by code point, so `collate(a, b) === 0` exactly when `a` and `b`
 *   are the same JSON value. CouchDB does not break that tie: there such keys
 *   compare equal. Results may also drift from CouchDB's where the two ICU versions
 *   differ.
 * - `compareRaw` / `collateRaw` use code-point order (the order of UTF-8 bytes),
 *   which is what `_all_docs` and Mango's comparisons on `_id` use.
 *
 * Another approximation: JavaScript objects list integer-like keys ("1", "42")
 * first, in numeric order, whatever order the JSON text had; CouchDB keeps the text
 * order. Objects with such keys may therefore collate differently from CouchDB.
 *
 * Values must be JSON values (null, boolean, finite number, string, array, plain
 * object), or the scan bound KEY_MAX (storage/collation-key.ts), which sorts after
 * everything; anything else is a programmer error and fails an assertion. Nested values
 * are walked with an explicit stack, so depth is limited by memory, not by the call
 * stack. Pure; no I/O. Used by views, Mango matching and sorting.
 */

import assert from 'node:assert/strict';

import { KEY_MAX } from '../../storage/collation-key';

/** Type ranks in collation order. */
const enum Rank {
  Null = 0,
  False = 1,
  True = 2,
  Number = 3,
  String = 4,
  Array = 5,
  Object = 6,
  /** KEY_MAX, a scan bound above every JSON value. */
  Max = 7,
}

type StringComparer = (a: string, b: string) => number;

/** One collator for the whole process: building a collator is expensive. */
const collator = new Intl.Collator('en', { sensitivity: 'variant' });

/**
 * Compare two strings by code point (UTF-8 byte order), not by UTF-16 code unit:
 * a supplementary character (surrogate pair) sorts after U+E000..U+FFFF.
 */
export function compareRaw(a: string, b: string): number {
  if (a === b) return 0;
  const lengthMin = Math.min(a.length, b.length);
  for (let i = 0; i < lengthMin; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // Code units ≥ U+D800 are surrogates (D800..DFFF) or BMP characters E000..FFFF;
    // in code-point order every surrogate pair sorts above E000..FFFF, so move the
    // surrogates up and E000..FFFF down before comparing (ICU's fix-up trick).
    if (ca >= 0xd800 && cb >= 0xd800) {
      ca = ca >= 0xe000 ? ca - 0x800 : ca + 0x2000;
      cb = cb >= 0xe000 ? cb - 0x800 : cb + 0x2000;
    }
    return ca < cb ? -1 : 1;
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

/** Unicode collation, ties between distinct strings broken by code point. */
function compareCollated(a: string, b: string): number {
  if (a === b) return 0;
  const result = collator.compare(a, b);
  if (result !== 0) return result < 0 ? -1 : 1;
  return compareRaw(a, b);
}

/**
 * CouchDB view collation of two JSON values: negative if `a` sorts first, 0 if they
 * are the same value, positive if `b` sorts first. Always -1, 0 or 1.
 */
export function collate(a: unknown, b: unknown): number {
  return collateWith(a, b, compareCollated);
}

/** Like `collate` but strings (and object keys) compare by code point. */
export function collateRaw(a: unknown, b: unknown): number {
  return collateWith(a, b, compareRaw);
}

/** The rank of a JSON value; asserts that it is one. */
export function rankOf(value: unknown): number {
  switch (typeof value) {
    case 'boolean':
      return value ? Rank.True : Rank.False;
    case 'number':
      return Rank.Number;
    case 'string':
      return Rank.String;
    case 'object':
      if (value === null) return Rank.Null;
      return Array.isArray(value) ? Rank.Array : Rank.Object;
    case 'symbol':
      if (value === KEY_MAX) return Rank.Max;
      assert.fail('collate: not a JSON value (symbol)');
    // falls through (assert.fail never returns)
    default:
      assert.fail(`collate: not a JSON value (${typeof value})`);
  }
}

/** A container being compared member by member: where we are and what is left. */
type Frame =
  | { kind: 'array'; a: readonly unknown[]; b: readonly unknown[]; index: number }
  | {
      kind: 'object';
      a: Record<string, unknown>;
      b: Record<string, unknown>;
      keysA: string[];
      keysB: string[];
      index: number;
    };

function collateWith(a: unknown, b: unknown, compareStrings: StringComparer): number {
  const stack: Frame[] = [];
  let x = a;
  let y = b;
  for (;;) {
    // Compare the current pair; containers of the same type push a frame.
    const rankX = rankOf(x);
    const rankY = rankOf(y);
    if (rankX !== rankY) return rankX < rankY ? -1 : 1;
    if (rankX === Rank.Number) {
      if ((x as number) < (y as number)) return -1;
      if ((x as number) > (y as number)) return 1;
    } else if (rankX === Rank.String) {
      const result = compareStrings(x as string, y as string);
      if (result !== 0) return result;
    } else if (rankX === Rank.Array) {
      stack.push({ kind: 'array', a: x as unknown[], b: y as unknown[], index: 0 });
    } else if (rankX === Rank.Object) {
      const objectX = x as Record<string, unknown>;
      const objectY = y as Record<string, unknown>;
      stack.push({
        kind: 'object',
        a: objectX,
        b: objectY,
        keysA: Object.keys(objectX),
        keysB: Object.keys(objectY),
        index: 0,
      });
    }

    // The pair was equal: find the next pair, popping exhausted containers.
    for (;;) {
      const frame = stack[stack.length - 1];
      if (frame === undefined) return 0;
      const lengthA = frame.kind === 'array' ? frame.a.length : frame.keysA.length;
      const lengthB = frame.kind === 'array' ? frame.b.length : frame.keysB.length;
      const i = frame.index;
      if (i < lengthA && i < lengthB) {
        frame.index = i + 1;
        if (frame.kind === 'array') {
          x = frame.a[i];
          y = frame.b[i];
        } else {
          const keyA = frame.keysA[i] as string;
          const keyB = frame.keysB[i] as string;
          const result = compareStrings(keyA, keyB);
          if (result !== 0) return result;
          x = frame.a[keyA];
          y = frame.b[keyB];
        }
        break;
      }
      // Every shared position was equal: the shorter container sorts first.
      if (lengthA !== lengthB) return lengthA < lengthB ? -1 : 1;
      stack.pop();
    }
  }
}
