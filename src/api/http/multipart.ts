/**
 * MIME multipart bodies as CouchDB speaks them (RFC 2046), parsed and built whole.
 *
 * Three shapes travel over the API:
 * - `multipart/related` document: part 1 is `application/json`, the document, whose
 *   `_attachments` entries marked `"follows": true` have their bytes in the parts that
 *   follow, one part per attachment, in the order the stubs appear in the JSON text.
 *   Clients send it on `PUT /db/doc` (the replicator with `new_edits=false`); we answer
 *   it on `GET /db/doc?attachments=true` with `Accept: multipart/related`.
 * - `multipart/mixed` open_revs answer: one part per requested revision; a part is
 *   either `application/json` (no attachments), a nested `multipart/related` document
 *   (its own boundary), or `application/json; error="true"` holding `{"missing": rev}`.
 * - the generic framing both are built on: `--boundary CRLF headers CRLF CRLF body`,
 *   parts separated by `CRLF --boundary`, closed by `CRLF --boundary--`. Preamble and
 *   epilogue are ignored on input and never written on output (as CouchDB writes).
 *
 * Promises: `parseMultipart(encodeMultipart(...))` gives back the same headers
 * (names lowercased) and bytes, whatever the bytes; the encoder picks a boundary that
 * occurs nowhere in the parts and checks it. The parser never loops without advancing,
 * stops at `partsMax` parts, and rejects malformed input with `BadRequestError`.
 * Attachment parts are assigned by `Content-Disposition` filename when one names a
 * pending `follows` stub, otherwise in JSON order (CouchDB itself only uses order).
 *
 * Used by the document and open_revs routes. Pure: no I/O, no streaming (the body is
 * already bounded by the request body limit), no charset or transfer decoding.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BadContentTypeError, BadRequestError } from '../../errors';
import { parseJsonText, stringifyJson, isPlainObject } from '../../json';

/** RFC 2046 §5.1.1: a boundary is 1 to 70 characters. */
export const BOUNDARY_CHARS_MAX = 70;
/** Random bytes per generated boundary (32 hex characters, like couch_uuids:random). */
const BOUNDARY_RANDOM_BYTES = 16;
/**
 * Fresh boundaries tried before giving up. A 128-bit random boundary colliding with
 * content is practically impossible, so a second try already means a bug elsewhere.
 */
const BOUNDARY_ATTEMPTS_MAX = 4;

const CRLF = Buffer.from('\r\n', 'latin1');
const HEADER_END = Buffer.from('\r\n\r\n', 'latin1');
const DASH_DASH = Buffer.from('--', 'latin1');
const EMPTY = Buffer.alloc(0);
/** RFC 7230 `token`: header names and MIME type/subtype. */
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Characters that cannot appear in a header value we write. */
const HEADER_UNSAFE_RE = /[\u0000-\u001f\u007f]/;

export interface MultipartLimits {
  /** Most parts accepted in one multipart body; one more is a `BadRequestError`. */
  partsMax: number;
}

export interface MultipartPart {
  /** Header names lowercased; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** The part's bytes: a view into the parsed body, not a copy. */
  body: Buffer;
}

export interface EncodedBody {
  /** The full Content-Type header value, boundary included. */
  contentType: string;
  body: Buffer;
}

export interface RelatedAttachment {
  name: string;
  contentType: string;
  /** Bytes as stored: already gzip-encoded when `encoding` is set. */
  data: Buffer;
  /** Set for attachments stored compressed; written as the part's Content-Encoding. */
  encoding?: string;
}

export interface RelatedDocument {
  /** The JSON part, untouched: `follows` stubs are still stubs. */
  doc: Record<string, unknown>;
  /** Bytes of every `follows` attachment, by name. */
  attachments: Map<string, Buffer>;
}

export type OpenRevsEntry =
  | { kind: 'ok'; doc: Record<string, unknown>; attachments: RelatedAttachment[] }
  | { kind: 'missing'; rev: string };

// ---------------------------------------------------------------------------
// Header values: Content-Type and Content-Disposition
// ---------------------------------------------------------------------------

/**
 * Splits `type/subtype; name=value; name="quoted \" value"`. The type and parameter
 * names are lowercased; values keep their case (boundaries are case-sensitive). The
 * first of repeated parameters wins; a parameter without `=` is ignored.
 */
export function parseContentType(header: string): { type: string; params: Record<string, string> } {
  const semicolon = header.indexOf(';');
  const type = (semicolon < 0 ? header : header.slice(0, semicolon)).trim().toLowerCase();
  const slash = type.indexOf('/');
  if (slash < 0 || !TOKEN_RE.test(type.slice(0, slash)) || !TOKEN_RE.test(type.slice(slash + 1))) {
    throw new BadRequestError(`Invalid Content-Type: ${JSON.stringify(header)}`);
  }
  const params = semicolon < 0 ? {} : parseParams(header, semicolon + 1);
  return { type, params };
}

/**
 * Reads `; name=value` pairs from `from` to the end of `text`. Each step consumes at
 * least one character, so the loop ends.
 */
function parseParams(text: string, from: number): Record<string, string> {
  const params: Record<string, string> = {};
  let i = from;
  while (i < text.length) {
    i = skipSpaces(text, i);
    if (i >= text.length) break;
    if (text[i] === ';') {
      i += 1;
      continue;
    }
    const nameEnd = findAny(text, i, '=;');
    const name = text.slice(i, nameEnd).trim().toLowerCase();
    if (nameEnd >= text.length || text[nameEnd] === ';') {
      i = nameEnd; // a bare word: tolerated, dropped
      continue;
    }
    const read = readParamValue(text, skipSpaces(text, nameEnd + 1));
    if (name !== '' && name !== '__proto__' && !Object.hasOwn(params, name)) params[name] = read.value;
    i = read.end;
  }
  return params;
}

/** A token value up to `;`, or a quoted-string with backslash escapes. */
function readParamValue(text: string, start: number): { value: string; end: number } {
  if (text[start] !== '"') {
    const end = findAny(text, start, ';');
    return { value: text.slice(start, end).trim(), end };
  }
  let value = '';
  let i = start + 1;
  while (i < text.length && text[i] !== '"') {
    if (text[i] === '\\' && i + 1 < text.length) i += 1;
    value += text[i];
    i += 1;
  }
  if (i >= text.length) throw new BadRequestError(`Unterminated quoted string in header: ${JSON.stringify(text)}`);
  const after = skipSpaces(text, i + 1);
  if (after < text.length && text[after] !== ';') {
    throw new BadRequestError(`Unexpected text after quoted string in header: ${JSON.stringify(text)}`);
  }
  return { value, end: after };
}

function skipSpaces(text: string, i: number): number {
  while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i += 1;
  return i;
}

/** Index of the first of `chars` at or after `from`, or `text.length`. */
function findAny(text: string, from: number, chars: string): number {
  let i = from;
  while (i < text.length && !chars.includes(text[i] ?? '')) i += 1;
  return i;
}

/**
 * The attachment name a part's Content-Disposition gives, or undefined. `filename*`
 * (RFC 5987, UTF-8 only) beats `filename`. A header we cannot read names nothing: the
 * part is then assigned by order, as CouchDB does (it writes names unescaped, so a name
 * holding `"` yields a header no strict parser accepts).
 */
function dispositionFilename(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const semicolon = header.indexOf(';');
  if (semicolon < 0) return undefined;
  let params: Record<string, string>;
  try {
    params = parseParams(header, semicolon + 1);
  } catch (err) {
    if (err instanceof BadRequestError) return undefined;
    throw err;
  }
  const extended = params['filename*'];
  if (extended !== undefined) {
    const match = /^utf-8'[^']*'(.*)$/i.exec(extended);
    if (match !== null) {
      try {
        return decodeURIComponent(match[1] ?? '');
      } catch {
        return undefined;
      }
    }
  }
  return params['filename'];
}

/**
 * RFC 5987 `filename*` value for names a quoted-string cannot carry safely.
 * Percent-encodes everything outside attr-char.
 */
function encodeExtendedValue(name: string): string {
  const bytes = Buffer.from(name, 'utf8');
  let out = "UTF-8''";
  for (const byte of bytes) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9!#$&+.^_`|~-]/.test(ch) ? ch : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function contentDisposition(name: string): string {
  if (/["\\]/.test(name) || HEADER_UNSAFE_RE.test(name)) {
    return `attachment; filename*=${encodeExtendedValue(name)}`;
  }
  return `attachment; filename="${name}"`;
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

/** User input (a request header): printable ASCII, 1 to 70 characters, not ending in space. */
function checkBoundary(boundary: string): void {
  if (boundary.length === 0 || boundary.length > BOUNDARY_CHARS_MAX || !/^[\u0020-\u007e]*[\u0021-\u007e]$/.test(boundary)) {
    throw new BadRequestError(`Invalid multipart boundary: ${JSON.stringify(boundary)}`);
  }
}

/**
 * Splits a multipart body into parts. Tolerates a preamble before the first boundary,
 * transport padding (spaces, tabs) after boundaries, and anything after the closing
 * boundary. Lines end in CRLF, as RFC 2046 requires.
 */
export function parseMultipart(body: Buffer, boundary: string, limits: MultipartLimits): MultipartPart[] {
  assert.ok(Number.isInteger(limits.partsMax) && limits.partsMax >= 1, 'partsMax must be a positive integer');
  checkBoundary(boundary);
  const dashBoundary = Buffer.from(`--${boundary}`, 'latin1');
  const delimiter = Buffer.concat([CRLF, dashBoundary]);

  // `cursor` always points just past the `--boundary` of a delimiter line.
  let cursor: number;
  if (startsWithAt(body, 0, dashBoundary)) {
    cursor = dashBoundary.length;
  } else {
    const first = body.indexOf(delimiter);
    if (first < 0) throw new BadRequestError('Multipart body has no boundary');
    cursor = first + delimiter.length;
  }

  const parts: MultipartPart[] = [];
  for (;;) {
    if (startsWithAt(body, cursor, DASH_DASH)) {
      if (parts.length === 0) throw new BadRequestError('Multipart body has no parts');
      return parts;
    }
    const contentStart = skipDelimiterLineEnd(body, cursor);
    const next = body.indexOf(delimiter, contentStart);
    if (next < 0) throw new BadRequestError('Multipart body ends without a closing boundary');
    if (parts.length >= limits.partsMax) {
      throw new BadRequestError(`Multipart body has more than ${limits.partsMax} parts`);
    }
    parts.push(parsePart(body.subarray(contentStart, next)));
    assert.ok(next + delimiter.length > cursor, 'multipart parser must advance');
    cursor = next + delimiter.length;
  }
}

function startsWithAt(body: Buffer, at: number, prefix: Buffer): boolean {
  return at + prefix.length <= body.length && body.compare(prefix, 0, prefix.length, at, at + prefix.length) === 0;
}

/** Skips transport padding and the CRLF ending a delimiter line; returns the next index. */
function skipDelimiterLineEnd(body: Buffer, from: number): number {
  let i = from;
  while (i < body.length && (body[i] === 0x20 || body[i] === 0x09)) i += 1;
  if (i >= body.length) throw new BadRequestError('Multipart body ends without a closing boundary');
  if (!startsWithAt(body, i, CRLF)) throw new BadRequestError('Multipart boundary line is malformed');
  return i + CRLF.length;
}

/**
 * One body-part (RFC 2046: header fields, then optionally CRLF and the bytes). Empty
 * means no headers and no bytes; a leading CRLF means no headers.
 */
function parsePart(segment: Buffer): MultipartPart {
  if (segment.length === 0) return { headers: {}, body: EMPTY };
  if (startsWithAt(segment, 0, CRLF)) return { headers: {}, body: segment.subarray(CRLF.length) };
  const headerEnd = segment.indexOf(HEADER_END);
  if (headerEnd >= 0) {
    return { headers: parseHeaderBlock(segment.subarray(0, headerEnd)), body: segment.subarray(headerEnd + HEADER_END.length) };
  }
  if (segment.length >= CRLF.length && startsWithAt(segment, segment.length - CRLF.length, CRLF)) {
    return { headers: parseHeaderBlock(segment.subarray(0, segment.length - CRLF.length)), body: EMPTY };
  }
  throw new BadRequestError('Multipart part headers are not terminated');
}

/** `Name: value` lines joined by CRLF; folded continuation lines are unfolded. */
function parseHeaderBlock(block: Buffer): Record<string, string> {
  const headers: Record<string, string> = {};
  let lastName: string | undefined;
  for (const line of block.toString('utf8').split('\r\n')) {
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (lastName === undefined) throw new BadRequestError('Multipart part header starts with a continuation line');
      headers[lastName] = `${headers[lastName] ?? ''} ${line.trim()}`.trim();
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon).toLowerCase();
    if (!TOKEN_RE.test(name)) throw new BadRequestError(`Malformed multipart part header: ${JSON.stringify(line)}`);
    if (name === '__proto__') continue; // meaningless, and unsafe as an object key
    const value = line.slice(colon + 1).trim();
    headers[name] = Object.hasOwn(headers, name) ? `${headers[name]}, ${value}` : value;
    lastName = name;
  }
  return headers;
}

/**
 * Frames parts under a boundary. Header names must be tokens and values free of
 * control characters (programmer errors otherwise). With no boundary given, a random
 * one is drawn, and redrawn should it occur inside the output.
 */
export function encodeMultipart(
  subtype: 'mixed' | 'related',
  parts: Array<{ headers: Record<string, string>; body: Buffer | string }>,
  boundary?: string,
): EncodedBody {
  assert.ok(parts.length >= 1, 'a multipart body needs at least one part');
  if (boundary !== undefined) {
    assert.doesNotThrow(() => checkBoundary(boundary), 'invalid multipart boundary');
    const body = frameParts(parts, boundary);
    assert.ok(isFramingUnambiguous(body, boundary, parts.length), 'multipart boundary occurs inside a part');
    return { contentType: `multipart/${subtype}; boundary="${boundary}"`, body };
  }
  for (let attempt = 0; attempt < BOUNDARY_ATTEMPTS_MAX; attempt += 1) {
    const candidate = randomBytes(BOUNDARY_RANDOM_BYTES).toString('hex');
    const body = frameParts(parts, candidate);
    if (isFramingUnambiguous(body, candidate, parts.length)) {
      return { contentType: `multipart/${subtype}; boundary="${candidate}"`, body };
    }
  }
  assert.fail(`no boundary found absent from the parts after ${BOUNDARY_ATTEMPTS_MAX} tries`);
}

function frameParts(parts: Array<{ headers: Record<string, string>; body: Buffer | string }>, boundary: string): Buffer {
  const chunks: Buffer[] = [];
  parts.forEach((part, index) => {
    let head = index === 0 ? `--${boundary}\r\n` : `\r\n--${boundary}\r\n`;
    for (const [name, value] of Object.entries(part.headers)) {
      assert.ok(TOKEN_RE.test(name), `invalid header name ${JSON.stringify(name)}`);
      assert.ok(!HEADER_UNSAFE_RE.test(value), `control character in header ${name}`);
      head += `${name}: ${value}\r\n`;
    }
    chunks.push(Buffer.from(`${head}\r\n`, 'utf8'));
    chunks.push(typeof part.body === 'string' ? Buffer.from(part.body, 'utf8') : part.body);
  });
  chunks.push(Buffer.from(`\r\n--${boundary}--`, 'latin1'));
  return Buffer.concat(chunks);
}

/**
 * True when `CRLF--boundary` occurs exactly once per part (the delimiters before parts
 * 2..n and the closing one): then no part's bytes can be mistaken for a boundary.
 * Overlapping occurrences are counted.
 */
function isFramingUnambiguous(body: Buffer, boundary: string, partCount: number): boolean {
  const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  let count = 0;
  for (let i = body.indexOf(delimiter); i >= 0; i = body.indexOf(delimiter, i + 1)) {
    count += 1;
    if (count > partCount) return false;
  }
  return count === partCount;
}

// ---------------------------------------------------------------------------
// multipart/related documents
// ---------------------------------------------------------------------------

/**
 * Reads a `multipart/related` document write. The first part must be JSON (a missing
 * Content-Type is accepted); every later part is the bytes of one `follows` stub.
 */
export function parseRelatedDocument(body: Buffer, contentType: string, limits: MultipartLimits): RelatedDocument {
  const { type, params } = parseContentType(contentType);
  if (type !== 'multipart/related') throw new BadContentTypeError('Content-Type must be multipart/related');
  const boundary = params['boundary'];
  if (boundary === undefined) throw new BadRequestError('multipart/related Content-Type has no boundary');
  const [first, ...rest] = parseMultipart(body, boundary, limits);
  assert.ok(first !== undefined, 'parseMultipart returns at least one part');

  const firstType = first.headers['content-type'];
  if (firstType !== undefined && parseContentType(firstType).type !== 'application/json') {
    throw new BadContentTypeError('Content-Type must be application/json');
  }
  const jsonText = decodeJsonText(first.body);
  const doc = parseJsonObject(jsonText);
  const follows = followsNames(doc, jsonText);
  if (rest.length !== follows.length) {
    throw new BadRequestError(
      `Multipart document has ${follows.length} attachments marked follows but ${rest.length} attachment parts`,
    );
  }
  const attachments = assignParts(follows, rest);
  checkLengths(doc, attachments);
  return { doc, attachments };
}

function decodeJsonText(bytes: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new BadRequestError('invalid UTF-8 JSON', 'bad_request');
  }
}

function parseJsonObject(text: string): Record<string, unknown> {
  // The same checks as any JSON body (src/json.ts); integers beyond 2^53 kept exact.
  const value = parseJsonText(text, { exact: true });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequestError('Document must be a JSON object', 'bad_request');
  }
  return value as Record<string, unknown>;
}

/**
 * Names of `follows` stubs in the order they appear in the JSON text. Object key order
 * is not enough: JavaScript puts integer-like keys ("1", "42") first, whatever the text.
 */
function followsNames(doc: Record<string, unknown>, jsonText: string): string[] {
  const stubs = doc['_attachments'];
  if (!isPlainObject(stubs)) return [];
  const keys = Object.keys(stubs);
  // Other keys keep insertion order, which is first appearance in the text.
  const ordered = keys.some(isArrayIndex) ? attachmentKeysInTextOrder(jsonText) : keys;
  assert.deepEqual([...ordered].sort(), [...keys].sort(), 'attachment key scan disagrees with JSON.parse');
  return ordered.filter((name) => isFollowsStub(stubs[name]));
}

/** Keys JavaScript enumerates first, in numeric order (ECMA-262 array indices). */
function isArrayIndex(key: string): boolean {
  return /^(0|[1-9][0-9]*)$/.test(key) && Number(key) < 2 ** 32 - 1;
}

function isFollowsStub(stub: unknown): boolean {
  return isPlainObject(stub) && stub['follows'] === true;
}

/**
 * Keys of the top-level `_attachments` object, in text order, first occurrence of each.
 * Only called on text JSON.parse accepted, so it can skip values without validating.
 * The last top-level `_attachments` wins, as in JSON.parse.
 */
function attachmentKeysInTextOrder(text: string): string[] {
  let keys: string[] = [];
  let i = skipJsonSpace(text, 0);
  assert.equal(text[i], '{');
  i = skipJsonSpace(text, i + 1);
  while (text[i] !== '}') {
    const keyEnd = skipJsonString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipJsonSpace(text, skipJsonSpace(text, keyEnd) + 1); // past ':'
    if (key === '_attachments' && text[i] === '{') {
      const read = readObjectKeys(text, i);
      keys = read.keys;
      i = read.end;
    } else {
      i = skipJsonValue(text, i);
    }
    i = skipJsonSpace(text, i);
    if (text[i] === ',') i = skipJsonSpace(text, i + 1);
  }
  return keys;
}

function readObjectKeys(text: string, start: number): { keys: string[]; end: number } {
  const keys: string[] = [];
  let i = skipJsonSpace(text, start + 1);
  while (text[i] !== '}') {
    const keyEnd = skipJsonString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    if (!keys.includes(key)) keys.push(key);
    i = skipJsonSpace(text, skipJsonSpace(text, keyEnd) + 1);
    i = skipJsonSpace(text, skipJsonValue(text, i));
    if (text[i] === ',') i = skipJsonSpace(text, i + 1);
  }
  return { keys, end: i + 1 };
}

function skipJsonSpace(text: string, i: number): number {
  while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i += 1;
  return i;
}

/** `i` at an opening quote; returns the index after the closing one. */
function skipJsonString(text: string, i: number): number {
  assert.equal(text[i], '"');
  let j = i + 1;
  while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
  return j + 1;
}

/** Skips one value; nesting is tracked with a counter, not recursion. */
function skipJsonValue(text: string, i: number): number {
  if (text[i] === '"') return skipJsonString(text, i);
  if (text[i] !== '{' && text[i] !== '[') {
    while (i < text.length && !/[,}\]\s]/.test(text[i] ?? '')) i += 1;
    return i;
  }
  let depth = 0;
  let j = i;
  do {
    const ch = text[j];
    if (ch === '"') {
      j = skipJsonString(text, j);
      continue;
    }
    if (ch === '{' || ch === '[') depth += 1;
    if (ch === '}' || ch === ']') depth -= 1;
    j += 1;
  } while (depth > 0);
  return j;
}

/**
 * Named parts first (a filename naming a pending stub), then the rest in order onto the
 * stubs still waiting. Counts were checked equal by the caller.
 */
function assignParts(follows: string[], parts: MultipartPart[]): Map<string, Buffer> {
  const pending = new Set(follows);
  const byName = new Map<string, Buffer>();
  const unnamed: Buffer[] = [];
  for (const part of parts) {
    const name = dispositionFilename(part.headers['content-disposition']);
    if (name !== undefined && byName.has(name)) {
      throw new BadRequestError(`Multipart document has two parts for attachment ${JSON.stringify(name)}`);
    }
    if (name !== undefined && pending.has(name)) {
      byName.set(name, part.body);
      pending.delete(name);
    } else {
      unnamed.push(part.body);
    }
  }
  const waiting = follows.filter((name) => pending.has(name));
  assert.equal(waiting.length, unnamed.length);
  waiting.forEach((name, index) => byName.set(name, unnamed[index] as Buffer));
  // Return in JSON order so callers iterating the map see the document's order.
  return new Map(follows.map((name) => [name, byName.get(name) as Buffer]));
}

/**
 * The byte count a stub promises for its part: `encoded_length` for a stored-encoded
 * attachment, else `length`; undefined when the stub does not say.
 */
function expectedPartBytes(stub: Record<string, unknown>): number | undefined {
  const encoded = typeof stub['encoding'] === 'string' ? stub['encoded_length'] : undefined;
  const bytes = encoded ?? stub['length'];
  return typeof bytes === 'number' && Number.isInteger(bytes) && bytes >= 0 ? bytes : undefined;
}

/** CouchDB's reasons when a part is longer or shorter than its stub says. */
function checkLengths(doc: Record<string, unknown>, attachments: Map<string, Buffer>): void {
  const stubs = doc['_attachments'];
  if (!isPlainObject(stubs)) return;
  for (const [name, data] of attachments) {
    const stub = stubs[name];
    const expected = isPlainObject(stub) ? expectedPartBytes(stub) : undefined;
    if (expected === undefined || expected === data.length) continue;
    throw new BadRequestError(data.length > expected ? 'attachment longer than expected' : 'attachment shorter than expected');
  }
}

/**
 * Writes a document with its attachments as `multipart/related`: the JSON first (the
 * caller has made each attachment a `follows: true` stub), then one part per attachment
 * in the stubs' JSON order, each with Content-Disposition, Content-Type and
 * Content-Length. With no attachments the answer is plain `application/json`, as
 * CouchDB answers, so open_revs can nest the result either way.
 */
export function encodeRelatedDocument(docJson: Record<string, unknown>, attachments: RelatedAttachment[]): EncodedBody {
  const stubs = isPlainObject(docJson['_attachments']) ? docJson['_attachments'] : {};
  // JSON.stringify writes keys in Object.keys order, so this is the JSON text order.
  const follows = Object.keys(stubs).filter((name) => isFollowsStub(stubs[name]));
  const byName = new Map(attachments.map((att) => [att.name, att]));
  assert.equal(byName.size, attachments.length, 'attachment names must be unique');
  assert.deepEqual([...follows].sort(), [...byName.keys()].sort(), 'attachments must match the follows stubs');

  const json = stringifyJson(docJson);
  if (attachments.length === 0) return { contentType: 'application/json', body: Buffer.from(json, 'utf8') };

  const parts = follows.map((name) => {
    const att = byName.get(name) as RelatedAttachment;
    const stub = stubs[name];
    const expected = isPlainObject(stub) ? expectedPartBytes(stub) : undefined;
    assert.ok(expected === undefined || expected === att.data.length, `stub length disagrees with data for ${name}`);
    const headers: Record<string, string> = {
      'Content-Disposition': contentDisposition(name),
      // A stored type that cannot be a header value must not break the response.
      'Content-Type': HEADER_UNSAFE_RE.test(att.contentType) ? 'application/octet-stream' : att.contentType,
      'Content-Length': String(att.data.length),
    };
    if (att.encoding !== undefined && att.encoding !== 'identity') headers['Content-Encoding'] = att.encoding;
    return { headers, body: att.data };
  });
  return encodeMultipart('related', [{ headers: { 'Content-Type': 'application/json' }, body: json }, ...parts]);
}

/**
 * The `multipart/mixed` answer to `GET /db/doc?open_revs=...` with
 * `Accept: multipart/mixed`: per revision, the document (nested multipart/related when
 * it has attachments), or `{"missing": rev}` marked `error="true"`, as CouchDB writes.
 */
export function encodeOpenRevs(entries: OpenRevsEntry[]): EncodedBody {
  assert.ok(entries.length >= 1, 'open_revs answers at least one revision');
  const parts = entries.map((entry) => {
    if (entry.kind === 'missing') {
      return {
        headers: { 'Content-Type': 'application/json; error="true"' },
        body: JSON.stringify({ missing: entry.rev }),
      };
    }
    const inner = encodeRelatedDocument(entry.doc, entry.attachments);
    return { headers: { 'Content-Type': inner.contentType }, body: inner.body };
  });
  return encodeMultipart('mixed', parts);
}
