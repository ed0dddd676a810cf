/**
 * The one JSON parser for client input and stored bodies, with CouchDB's rules: a
 * client's data is never silently changed.
 *
 * - Invalid UTF-8 (raw 0xFF, overlong forms, encoded surrogates), escaped lone
 *   surrogates (`"\ud800"`, in values and keys) and numbers that overflow a double
 *   (`1e400`) are refused with 400 bad_request "invalid UTF-8 JSON", as CouchDB does.
 * - Integers beyond ±2^53 stay exact in `exact` mode (documents): they are parsed as
 *   `ExactInteger`, which `stringifyJson` writes back as the digits received. In
 *   the default mode (queries, keys, options) they become the nearest double.
 *   Non-integers are doubles, as in CouchDB (which re-renders them too).
 *
 * The common path costs one native UTF-8 check, one scan of the bytes (nesting depth,
 * and whether anything needs a closer look) and `JSON.parse`; only text the scan
 * flags (a run of 16+ digits, a 3-digit exponent, or a `\uD8xx`-`\uDFxx` escape,
 * even inside strings) is parsed again by the small parser below, which is exact and
 * checks every string.
 */
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { BadRequestError } from './errors';

export const INVALID_JSON = 'invalid UTF-8 JSON';

/** An integer outside ±2^53, kept as its text so that it is stored and returned unchanged. */
export class ExactInteger {
  constructor(readonly raw: string) {}
  valueOf(): number {
    return Number(this.raw);
  }
  /** Exact inside `stringifyJson`; elsewhere the nearest double (never a stray marker). */
  toJSON(): string | number {
    if (stringifyDepth === 0) return Number(this.raw);
    markerWritten = true;
    return MARKER + this.raw;
  }
}

// `JSON.stringify` cannot write raw text for an object on Node 20 (no JSON.rawJSON), so
// inside `stringifyJson` an ExactInteger writes a marker string, replaced afterwards by
// its digits. The marker starts with U+0000 (written escaped, as `\u0000`) and holds a
// per-process random nonce, so no client string can forge it.
const NONCE = randomBytes(12).toString('hex');
const MARKER = '\u0000' + NONCE + ':';
const MARKER_TEXT = new RegExp('"\\\\u0000' + NONCE + ':(-?[0-9]+)"', 'g');
let stringifyDepth = 0;
let markerWritten = false;

/** `JSON.stringify` that writes `ExactInteger`s as their digits. */
export function stringifyJson(value: unknown): string {
  stringifyDepth++;
  const outer = markerWritten;
  markerWritten = false;
  let text: string;
  let wrote: boolean;
  try {
    text = JSON.stringify(value);
  } finally {
    stringifyDepth--;
    wrote = markerWritten;
    markerWritten = outer || wrote;
  }
  return wrote ? text.replace(MARKER_TEXT, '$1') : text;
}

export interface ParseOptions {
  /** Refuse nesting deeper than this many arrays/objects. */
  depthMax?: number;
  /** Keep integers beyond ±2^53 exact (as `ExactInteger`). */
  exact?: boolean;
}

/** Parse a request body: its bytes must be UTF-8 and its text JSON. */
export function parseJsonBytes(bytes: Buffer, options: ParseOptions = {}): unknown {
  if (!isUtf8(bytes)) throw new BadRequestError(INVALID_JSON);
  const suspect = scanJson(bytes, options.depthMax ?? RECURSION_MAX);
  return parseJsonChecked(bytes.toString('utf8'), options, suspect);
}

/**
 * The elements of a JSON array, given as the bytes between its first element's start
 * and its last element's end (values separated by commas), parsed in one `JSON.parse`
 * when nothing in them needs a closer look; otherwise `undefined`, and the caller
 * parses each element with `parseJsonBytes` for its exact answer (which element fails,
 * and how). `depthMax` bounds each element. One UTF-8 check, scan and parse per run
 * instead of per element: `_bulk_docs` paid those per document.
 */
export function parseJsonElementsFast(bytes: Buffer, depthMax: number): unknown[] | undefined {
  if (!isUtf8(bytes)) return undefined;
  try {
    if (scanJson(bytes, depthMax)) return undefined;
    const value: unknown = JSON.parse('[' + bytes.toString('utf8') + ']');
    return Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Parse JSON text from a client (query parameter, multipart part): same checks. */
export function parseJsonText(text: string, options: ParseOptions = {}): unknown {
  if (LONE_SURROGATE.test(text)) throw new BadRequestError(INVALID_JSON);
  const suspect = scanJson(Buffer.from(text, 'utf8'), options.depthMax ?? RECURSION_MAX);
  return parseJsonChecked(text, options, suspect);
}

function parseJsonChecked(text: string, options: ParseOptions, suspect: boolean): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadRequestError(INVALID_JSON);
  }
  if (!suspect) return value;
  return new CarefulParser(text, options.exact === true, true).parseDocument();
}

/**
 * Parse a body this node stored (already checked on the way in): `JSON.parse`, except
 * that integers beyond ±2^53 come back as `ExactInteger`. Pair with `stringifyJson`.
 */
export function parseStoredJson(text: string): unknown {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text);
  return new CarefulParser(text, true, false).parseDocument();
}
const LONG_DIGITS = /[0-9]{16}/;

/**
 * One pass over the bytes: refuses nesting deeper than `depthMax` (outside strings,
 * each `[` or `{` opens a level) before any recursive code sees the text, and tells
 * whether the text needs the careful parser: a run of 16+ digits (an integer that may
 * not fit a double exactly), an exponent of 3+ digits (may overflow), or a `\uD800`-
 * `\uDFFF` escape (may be a lone surrogate). Digits inside strings count too: a false
 * alarm only costs the careful parse. Folded into one loop, as a regex pass costs more.
 */
function scanJson(body: Buffer, depthMax: number): boolean {
  let depth = 0;
  let inString = false;
  let suspect = false;
  let run = 0;
  let runMax = 16;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i]!;
    if (inString) {
      if (byte === 0x5c) {
        // `\u` then `d`/`D` then 8-9, a-f or A-F: a surrogate escape.
        if (body[i + 1] === 0x75 && (body[i + 2]! | 0x20) === 0x64) {
          const h = body[i + 3]! | 0x20;
          if (h === 0x38 || h === 0x39 || (h >= 0x61 && h <= 0x66)) suspect = true;
        }
        i++; // skip the escaped byte
      } else if (byte === 0x22) inString = false;
      continue;
    }
    if (byte >= 0x30 && byte <= 0x39) {
      if (++run >= runMax) suspect = true;
      continue;
    }
    run = 0;
    if (byte === 0x65 || byte === 0x45) runMax = 3;
    else if (byte === 0x2b || byte === 0x2d) runMax = runMax === 3 && (body[i - 1]! | 0x20) === 0x65 ? 3 : 16;
    else {
      runMax = 16;
      if (byte === 0x22) inString = true;
      else if (byte === 0x5b || byte === 0x7b) {
        if (++depth > depthMax) throw new BadRequestError(`JSON nesting deeper than ${depthMax} levels`);
      } else if (byte === 0x5d || byte === 0x7d) depth--;
    }
  }
  return suspect;
}

/** In unicode mode `\p{Cs}` matches only unpaired surrogates: text UTF-8 cannot encode. */
const LONE_SURROGATE = /\p{Cs}/u;
const RECURSION_MAX = 1000;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;

/**
 * A recursive-descent parser for text `JSON.parse` already accepted (so it checks no
 * syntax), depth already bounded. Strings are decoded by `JSON.parse` on their slice.
 */
class CarefulParser {
  private i = 0;
  private depth = 0;
  constructor(
    private readonly text: string,
    private readonly exact: boolean,
    private readonly check: boolean,
  ) {}

  parseDocument(): unknown {
    this.skip();
    return this.value();
  }

  private skip(): void {
    WHITESPACE.lastIndex = this.i;
    WHITESPACE.test(this.text);
    this.i = WHITESPACE.lastIndex;
  }

  private value(): unknown {
    const c = this.text.charCodeAt(this.i);
    if (c === 0x22) return this.string();
    if (c === 0x7b || c === 0x5b) {
      // Callers bound depth with the configured limit first; this only keeps the
      // recursion off the end of the stack for text that was not depth-checked.
      if (++this.depth > RECURSION_MAX) throw new BadRequestError(`JSON nesting deeper than ${RECURSION_MAX} levels`);
      const out = c === 0x7b ? this.object() : this.array();
      this.depth--;
      return out;
    }
    if (c === 0x74) return (this.i += 4), true;
    if (c === 0x66) return (this.i += 5), false;
    if (c === 0x6e) return (this.i += 4), null;
    return this.number();
  }

  private string(): string {
    // The closing quote is the first one not escaped, i.e. after an even run of backslashes.
    let end = this.i;
    for (;;) {
      end = this.text.indexOf('"', end + 1);
      let slashes = 0;
      while (this.text.charCodeAt(end - 1 - slashes) === 0x5c) slashes++;
      if (slashes % 2 === 0) break;
    }
    end++;
    const value = JSON.parse(this.text.slice(this.i, end)) as string;
    this.i = end;
    if (this.check && LONE_SURROGATE.test(value)) throw new BadRequestError(INVALID_JSON);
    return value;
  }

  private number(): number | ExactInteger {
    NUMBER.lastIndex = this.i;
    const match = NUMBER.exec(this.text)!;
    this.i = NUMBER.lastIndex;
    const raw = match[0];
    const value = Number(raw);
    if (this.exact && match[1] === undefined && match[2] === undefined && !Number.isSafeInteger(value)) return new ExactInteger(raw);
    if (!Number.isFinite(value)) throw new BadRequestError(INVALID_JSON);
    return value;
  }

  private array(): unknown[] {
    const out: unknown[] = [];
    this.i++;
    this.skip();
    if (this.text.charCodeAt(this.i) === 0x5d) {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.skip();
      const c = this.text.charCodeAt(this.i++);
      if (c === 0x5d) return out;
      this.skip(); // after ','
    }
  }

  private object(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.i++;
    this.skip();
    if (this.text.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return out;
    }
    for (;;) {
      const key = this.string();
      this.skip();
      this.i++; // ':'
      this.skip();
      const value = this.value();
      // As JSON.parse: `__proto__` is an own property, never the prototype.
      if (key === '__proto__') Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
      else out[key] = value;
      this.skip();
      const c = this.text.charCodeAt(this.i++);
      if (c === 0x7d) return out;
      this.skip(); // after ','
    }
  }
}

/** A JSON object (not null, not an array): what documents, bodies and options must be. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
