/**
 * A cheap look at a JSON body before it is parsed. Parsing costs in proportion to the
 * number of values, not bytes: 1.5 M ids of `_revs_diff` in 23 MB took seconds of
 * JSON.parse on the event loop. Routes whose caps count members (ids, keys, docs)
 * check the count on the raw bytes first, in one pass that allocates nothing; and a
 * big body (`_bulk_docs`) is split at its top two levels so that its members are
 * parsed one by one, yielding to the event loop between chunks.
 */
import { BadRequestError } from '../../errors';
import { isPlainObject, parseJsonBody, type Ctx } from './context';

/** A cap on the members of any array or object at one nesting depth, and its error. */
export interface MembersCap {
  /** 1: the body itself; 2: the values of its members (`keys`, `docs`)... */
  depth: number;
  max: number;
  tooMany: () => Error;
}

/**
 * A JSON object body whose containers obey `caps`, checked on the raw bytes before
 * anything is parsed (as `Ctx.readJsonObject` otherwise).
 */
export async function readJsonObjectCapped(ctx: Ctx, ...caps: MembersCap[]): Promise<Record<string, unknown>> {
  const raw = await ctx.readBody();
  for (const cap of caps) if (largestContainerAt(raw, cap.depth) > cap.max) throw cap.tooMany();
  const body = parseJsonBody(raw, ctx.limits.jsonDepthMax);
  if (!isPlainObject(body)) throw new BadRequestError('Request body must be a JSON object');
  return body;
}

/**
 * Members of the largest array or object that opens at nesting `depth` (1: the body
 * itself, 2: the values of its members...). Counts commas outside strings, so it
 * expects JSON the parser will then check; on malformed input the count is only an
 * estimate, which is fine for refusing early.
 */
export function largestContainerAt(body: Buffer, depth: number): number {
  let level = 0;
  let largest = 0;
  let members = 0;
  let empty = true;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i]!;
    if (byte === 0x22) {
      if (level === depth) empty = false;
      const end = stringEndOrMinus1(body, i, body.length);
      if (end < 0) break;
      i = end - 1;
    } else if (byte === 0x5b || byte === 0x7b) {
      if (level === depth) empty = false;
      level++;
      if (level === depth) {
        members = 0;
        empty = true;
      }
    } else if (byte === 0x5d || byte === 0x7d) {
      if (level === depth) largest = Math.max(largest, empty ? 0 : members + 1);
      level--;
    } else if (level === depth) {
      if (byte === 0x2c) members++;
      else if (byte > 0x20) empty = false;
    }
  }
  return largest;
}

/** Whether the first non-blank byte opens an object. */
export function startsWithObject(body: Buffer): boolean {
  return body[skipWhitespace(body, 0, body.length)] === 0x7b;
}

/** Byte range [start, end) of one JSON value inside a body. */
export type Span = readonly [start: number, end: number];

/**
 * The members of the object that is the whole body, as key → byte range of the value,
 * so that a big member (the `docs` of `_bulk_docs`) can be parsed piece by piece.
 * The structure around the values (braces, colons, commas, whitespace) is checked
 * here; each value is checked when it is parsed. A repeated key keeps its last value,
 * as JSON.parse does.
 */
export function objectMemberSpans(body: Buffer): Map<string, Span> {
  const members = new Map<string, Span>();
  let i = skipWhitespace(body, 0, body.length);
  if (body[i] !== 0x7b) throw malformed();
  i = skipWhitespace(body, i + 1, body.length);
  if (body[i] === 0x7d) return end(body, i + 1, members);
  for (;;) {
    if (body[i] !== 0x22) throw malformed();
    const keyEnd = skipValue(body, i, body.length);
    const key = JSON.parse(body.toString('utf8', i, keyEnd)) as string;
    i = skipWhitespace(body, keyEnd, body.length);
    if (body[i] !== 0x3a) throw malformed();
    const start = skipWhitespace(body, i + 1, body.length);
    const stop = skipValue(body, start, body.length);
    members.set(key, [start, stop]);
    i = skipWhitespace(body, stop, body.length);
    if (body[i] === 0x2c) i = skipWhitespace(body, i + 1, body.length);
    else if (body[i] === 0x7d) return end(body, i + 1, members);
    else throw malformed();
  }
}

/** The elements of the array spanning `span`, as byte ranges. */
export function arrayElementSpans(body: Buffer, span: Span): Span[] {
  const [start, stop] = span;
  const out: Span[] = [];
  if (body[start] !== 0x5b || body[stop - 1] !== 0x5d) throw malformed();
  const last = stop - 1;
  let i = skipWhitespace(body, start + 1, last);
  if (i === last) return out;
  for (;;) {
    const valueEnd = skipValue(body, i, last);
    out.push([i, valueEnd]);
    i = skipWhitespace(body, valueEnd, last);
    if (i === last) return out;
    if (body[i] !== 0x2c) throw malformed();
    i = skipWhitespace(body, i + 1, last);
  }
}

function end<T>(body: Buffer, i: number, value: T): T {
  if (skipWhitespace(body, i, body.length) !== body.length) throw malformed();
  return value;
}

function skipWhitespace(body: Buffer, i: number, limit: number): number {
  while (i < limit) {
    const byte = body[i]!;
    if (byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) break;
    i++;
  }
  return i;
}

/** Index just past the value starting at `i`: a string, a bracketed container, or a bare scalar. */
function skipValue(body: Buffer, i: number, limit: number): number {
  const first = body[i];
  if (first === 0x22) return stringEnd(body, i, limit);
  if (first === 0x7b || first === 0x5b) {
    let level = 0;
    for (let j = i; j < limit; j++) {
      const byte = body[j]!;
      if (byte === 0x22) j = stringEnd(body, j, limit) - 1;
      else if (byte === 0x7b || byte === 0x5b) level++;
      else if (byte === 0x7d || byte === 0x5d) {
        if (--level === 0) return j + 1;
      }
    }
    throw malformed();
  }
  let j = i;
  while (j < limit) {
    const byte = body[j]!;
    if (byte === 0x2c || byte === 0x7d || byte === 0x5d || byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) break;
    j++;
  }
  if (j === i) throw malformed();
  return j;
}

/**
 * Index just past the string whose opening quote is at `i`. Finds quotes with indexOf
 * (memchr speed over long strings), then skips those escaped by an odd run of backslashes.
 */
function stringEnd(body: Buffer, i: number, limit: number): number {
  const end = stringEndOrMinus1(body, i, limit);
  if (end < 0) throw malformed();
  return end;
}

function stringEndOrMinus1(body: Buffer, i: number, limit: number): number {
  let from = i + 1;
  for (;;) {
    const quote = body.indexOf(0x22, from);
    if (quote < 0 || quote >= limit) return -1;
    let backslashes = 0;
    while (body[quote - 1 - backslashes] === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

function malformed(): BadRequestError {
  return new BadRequestError('invalid UTF-8 JSON');
}
