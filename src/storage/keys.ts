/**
 * Key codecs: the only place that builds or reads a RocksDB key.
 *
 * One RocksDB holds a whole node. Its keys are:
 *
 *   [0x00] name                                   node metadata (uuid, admins, catalog)
 *   [0x01] copy:u32be  space:u8  rest             one shard copy's data
 *
 * Shard-copy spaces and their `rest`:
 *   DocInfo   docId (UTF-8, unescaped: it is the last component)  → doc info
 *   BySeq     seq:u64be                                          → doc info at that seq
 *   RevBody   escaped(docId) 0x00 0x01  rev (ASCII)              → revision body
 *   Attachment digest (ASCII) [' ' encoding]                     → attachment bytes (see attachmentKey)
 *   Local     docId (UTF-8)                                      → local doc
 *   Meta      name (ASCII)                                       → copy metadata
 *   Index     sig:16  part:u8  rest                              → a view index (below)
 *   Purge     part:u8  rest                                      → purge history (below)
 *
 * An index (all views of one design document, by its 16-byte signature) has parts:
 *   IndexPart.Meta                                    → its checkpoint and description
 *   IndexPart.Back   docId (UTF-8)                    → the rows a document emitted
 *   IndexPart.Main   view:u16 exactCode escaped(docId) dup:u16  → one view row
 *   IndexPart.Side   view:u16 escaped(sideCode) escaped(keyJson) escaped(docId) dup:u16  → one view row
 * The purge history of a copy has parts:
 *   PurgePart.BySeq   purgeSeq:u64be                   → one purge request {uuid, id, revs}
 *   PurgePart.ByUuid  uuid (ASCII)                      → its purge seq (a request applied twice counts once)
 *   PurgePart.ByRev   escaped(docId) rev (ASCII)        → its purge seq (internal sync never brings it back)
 *
 * Main rows have keys whose collation code is exact (byte order is collation order);
 * side rows hold a string the codec cannot encode exactly: their code only groups them,
 * and readers sort each group (see storage/collation-key.ts).
 *
 * Byte order of UTF-8 is code-point order, so DocInfo and Local keys sort as CouchDB
 * sorts `_all_docs`. `escaped` maps 0x00 to 0x00 0xFF and ends with 0x00 0x01, so a
 * doc id that is a prefix of another still sorts first and all revisions of one doc
 * are one contiguous range. Copy ids are allocated once and never reused, so a
 * deleted database's keys can never be read by a new one.
 */
import assert from 'node:assert/strict';

export const enum Space {
  DocInfo = 1,
  BySeq = 2,
  RevBody = 3,
  Attachment = 4,
  Local = 5,
  Meta = 6,
  Index = 7,
  Purge = 8,
}

export const enum PurgePart {
  BySeq = 0,
  ByUuid = 1,
  ByRev = 2,
}

export const enum IndexPart {
  Meta = 0,
  Back = 1,
  Main = 2,
  Side = 3,
}

/** Bytes of an index signature in keys. */
export const indexSigBytes = 16;

const NODE_META = 0x00;
const COPY = 0x01;
const COPY_PREFIX_BYTES = 1 + 4 + 1;

/** Upper bound of a copy's sequence numbers: the largest integer a double holds exactly. */
export const seqMax = Number.MAX_SAFE_INTEGER;

export type KeyRange = { gte?: Buffer; gt?: Buffer; lte?: Buffer; lt?: Buffer };

export function nodeMetaKey(name: string): Buffer {
  return Buffer.concat([Buffer.of(NODE_META), Buffer.from(name, 'utf8')]);
}

function spacePrefix(copy: number, space: Space, extraBytes: number): Buffer {
  assert.ok(Number.isInteger(copy) && copy >= 0 && copy <= 0xffffffff, 'copy id out of range');
  const key = Buffer.allocUnsafe(COPY_PREFIX_BYTES + extraBytes);
  key[0] = COPY;
  key.writeUInt32BE(copy, 1);
  key[5] = space;
  return key;
}

function withText(copy: number, space: Space, text: string): Buffer {
  const textBytes = Buffer.byteLength(text, 'utf8');
  const key = spacePrefix(copy, space, textBytes);
  key.write(text, COPY_PREFIX_BYTES, 'utf8');
  return key;
}

/** All keys of one copy: what `DELETE /db` clears. */
export function copyRange(copy: number): KeyRange {
  const gte = Buffer.of(COPY, 0, 0, 0, 0);
  gte.writeUInt32BE(copy, 1);
  // The next copy id; copy 0xffffffff is never allocated.
  const lt = Buffer.of(COPY, 0, 0, 0, 0);
  lt.writeUInt32BE(copy + 1, 1);
  return { gte, lt };
}

/** A copy's keys without its indexes: every space before Space.Index, and every one after it. */
export function dataRanges(copy: number): [KeyRange, KeyRange] {
  const all = copyRange(copy);
  const index = spaceRange(copy, Space.Index);
  return [
    { gte: all.gte!, lt: index.gte! },
    { gte: index.lt!, lt: all.lt! },
  ];
}

/** The whole of one space of a copy. */
export function spaceRange(copy: number, space: Space): KeyRange {
  const gte = spacePrefix(copy, space, 0);
  const lt = spacePrefix(copy, space, 0);
  lt[5] = space + 1;
  return { gte, lt };
}

export function docInfoKey(copy: number, docId: string): Buffer {
  return withText(copy, Space.DocInfo, docId);
}

export function localKey(copy: number, docId: string): Buffer {
  return withText(copy, Space.Local, docId);
}

export function metaKey(copy: number, name: string): Buffer {
  return withText(copy, Space.Meta, name);
}

/**
 * An attachment's bytes, by digest and stored form: encoded bytes are kept apart from
 * identity ones, since an attachment the server gzipped keeps the digest of its
 * identity bytes (the same digest the identity form of those bytes has).
 */
export function attachmentKey(copy: number, digest: string, encoding?: string): Buffer {
  return withText(copy, Space.Attachment, attachmentName(digest, encoding));
}

export function attachmentKeyOfName(copy: number, name: string): Buffer {
  return withText(copy, Space.Attachment, name);
}

/** The name an attachment's bytes are stored under (the rest of its key). */
export function attachmentName(digest: string, encoding: string | undefined): string {
  return encoding === undefined ? digest : digest + ' ' + encoding;
}

/** The doc id of a DocInfo or Local key. */
export function decodeTextKey(key: Buffer): string {
  return key.toString('utf8', COPY_PREFIX_BYTES);
}

export function seqKey(copy: number, seq: number): Buffer {
  assert.ok(Number.isSafeInteger(seq) && seq >= 0, 'seq must be a non-negative safe integer');
  const key = spacePrefix(copy, Space.BySeq, 8);
  key.writeUInt32BE(Math.floor(seq / 0x100000000), COPY_PREFIX_BYTES);
  key.writeUInt32BE(seq >>> 0, COPY_PREFIX_BYTES + 4);
  return key;
}

export function decodeSeqKey(key: Buffer): number {
  return key.readUInt32BE(COPY_PREFIX_BYTES) * 0x100000000 + key.readUInt32BE(COPY_PREFIX_BYTES + 4);
}

/** Order-preserving, self-delimiting encoding of a string: 0x00 → 0x00 0xFF, end 0x00 0x01. */
export function escapeText(text: string): Buffer {
  if (!text.includes('\u0000')) {
    // No zero byte (every real id): the bytes, then the terminator, in one allocation.
    const bytes = Buffer.byteLength(text, 'utf8');
    const out = Buffer.allocUnsafe(bytes + 2);
    out.write(text, 0, 'utf8');
    out[bytes] = 0x00;
    out[bytes + 1] = 0x01;
    return out;
  }
  const raw = Buffer.from(text, 'utf8');
  let zeros = 0;
  for (const byte of raw) if (byte === 0) zeros++;
  const out = Buffer.allocUnsafe(raw.length + zeros + 2);
  let at = 0;
  for (const byte of raw) {
    out[at++] = byte;
    if (byte === 0) out[at++] = 0xff;
  }
  out[at++] = 0x00;
  out[at++] = 0x01;
  return out;
}

/** Inverse of escapeText; returns the text and the offset just past its terminator. */
export function unescapeText(buf: Buffer, start: number): { text: string; end: number } {
  const bytes: number[] = [];
  let at = start;
  for (;;) {
    assert.ok(at < buf.length, 'escaped text without terminator');
    const byte = buf[at++]!;
    if (byte !== 0) {
      bytes.push(byte);
      continue;
    }
    const next = buf[at++];
    if (next === 0xff) bytes.push(0);
    else if (next === 0x01) return { text: Buffer.from(bytes).toString('utf8'), end: at };
    else assert.fail('bad escape in key');
  }
}

export function revBodyKey(copy: number, docId: string, rev: string): Buffer {
  const escaped = escapeText(docId);
  const key = spacePrefix(copy, Space.RevBody, escaped.length + rev.length);
  escaped.copy(key, COPY_PREFIX_BYTES);
  key.write(rev, COPY_PREFIX_BYTES + escaped.length, 'latin1');
  return key;
}

export function decodeRevBodyKey(key: Buffer): { docId: string; rev: string } {
  const { text, end } = unescapeText(key, COPY_PREFIX_BYTES);
  return { docId: text, rev: key.toString('latin1', end) };
}

/** Every stored revision body of one document. */
export function revBodyRange(copy: number, docId: string): KeyRange {
  const gte = Buffer.concat([spacePrefix(copy, Space.RevBody, 0), escapeText(docId)]);
  const lt = Buffer.from(gte);
  lt[lt.length - 1] = 0x02;
  return { gte, lt };
}

/** The smallest key greater than every key that starts with `prefix`. */
export function prefixEnd(prefix: Buffer): Buffer {
  const out = Buffer.from(prefix);
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i]! < 0xff) {
      out[i]!++;
      return out.subarray(0, i + 1);
    }
  }
  assert.fail('prefix of 0xff bytes has no end');
}

// ---- purge history -----------------------------------------------------------------------

function purgePrefix(copy: number, part: PurgePart, extraBytes: number): Buffer {
  const key = spacePrefix(copy, Space.Purge, 1 + extraBytes);
  key[COPY_PREFIX_BYTES] = part;
  return key;
}

export function purgeSeqKey(copy: number, seq: number): Buffer {
  assert.ok(Number.isSafeInteger(seq) && seq >= 0, 'purge seq must be a non-negative safe integer');
  const key = purgePrefix(copy, PurgePart.BySeq, 8);
  key.writeUInt32BE(Math.floor(seq / 0x100000000), COPY_PREFIX_BYTES + 1);
  key.writeUInt32BE(seq >>> 0, COPY_PREFIX_BYTES + 5);
  return key;
}

export function decodePurgeSeqKey(key: Buffer): number {
  return key.readUInt32BE(COPY_PREFIX_BYTES + 1) * 0x100000000 + key.readUInt32BE(COPY_PREFIX_BYTES + 5);
}

/** Purge requests after `since`, in purge seq order. */
export function purgeSeqRange(copy: number, since: number): KeyRange {
  return { gt: purgeSeqKey(copy, Math.min(since, seqMax)), lt: purgePrefix(copy, PurgePart.ByUuid, 0) };
}

export function purgeUuidKey(copy: number, uuid: string): Buffer {
  return Buffer.concat([purgePrefix(copy, PurgePart.ByUuid, 0), Buffer.from(uuid, 'latin1')]);
}

export function purgedRevKey(copy: number, docId: string, rev: string): Buffer {
  return Buffer.concat([purgePrefix(copy, PurgePart.ByRev, 0), escapeText(docId), Buffer.from(rev, 'latin1')]);
}

// ---- view indexes ------------------------------------------------------------------------

function indexPrefix(copy: number, sig: Buffer, part: IndexPart, extraBytes: number): Buffer {
  assert.equal(sig.length, indexSigBytes, 'index signature must be 16 bytes');
  const key = spacePrefix(copy, Space.Index, indexSigBytes + 1 + extraBytes);
  sig.copy(key, COPY_PREFIX_BYTES);
  key[COPY_PREFIX_BYTES + indexSigBytes] = part;
  return key;
}

/** Every key of one index of a copy (what dropping the index clears). */
export function indexRange(copy: number, sig: Buffer): KeyRange {
  const gte = indexPrefix(copy, sig, IndexPart.Meta, 0).subarray(0, COPY_PREFIX_BYTES + indexSigBytes);
  return { gte: Buffer.from(gte), lt: prefixEnd(gte) };
}

export function indexMetaKey(copy: number, sig: Buffer): Buffer {
  return indexPrefix(copy, sig, IndexPart.Meta, 0);
}

export function indexBackKey(copy: number, sig: Buffer, docId: string): Buffer {
  const textBytes = Buffer.byteLength(docId, 'utf8');
  const key = indexPrefix(copy, sig, IndexPart.Back, textBytes);
  key.write(docId, COPY_PREFIX_BYTES + indexSigBytes + 1, 'utf8');
  return key;
}

/** The start of one view's rows in one part (Main or Side), before the code. */
export function viewPrefix(copy: number, sig: Buffer, part: IndexPart.Main | IndexPart.Side, view: number): Buffer {
  assert.ok(Number.isInteger(view) && view >= 0 && view <= 0xffff, 'view number out of range');
  const key = indexPrefix(copy, sig, part, 2);
  key.writeUInt16BE(view, COPY_PREFIX_BYTES + indexSigBytes + 1);
  return key;
}

/** Bytes before the code in a view row key. */
export const viewRowCodeOffset = COPY_PREFIX_BYTES + indexSigBytes + 1 + 2;

/**
 * One view row. `code` is the key's exact code (Main) or its side code (Side, escaped
 * here so the reader can find where it ends; distinct keys may share a side code, so
 * the key's JSON text follows it); `dup` tells apart equal keys one document emitted
 * more than once.
 */
export function viewRowKey(prefix: Buffer, part: IndexPart.Main | IndexPart.Side, code: Buffer, docId: string, dup: number, keyJson: string): Buffer {
  assert.ok(Number.isInteger(dup) && dup >= 0 && dup <= 0xffff, 'duplicate number out of range');
  const tail = Buffer.allocUnsafe(2);
  tail.writeUInt16BE(dup, 0);
  if (part === IndexPart.Main) return Buffer.concat([prefix, code, escapeText(docId), tail]);
  return Buffer.concat([prefix, escapeBytes(code), escapeText(keyJson), escapeText(docId), tail]);
}

/** The side code of a Side row key (still escaped: equal codes give equal bytes). */
export function viewRowSideCode(key: Buffer): Buffer {
  return key.subarray(viewRowCodeOffset, escapedEnd(key, viewRowCodeOffset));
}

/** Bounds of one view's rows in one part, from code bounds (`gte`, `lt` over codes; open when undefined). */
export function viewRowBounds(prefix: Buffer, part: IndexPart.Main | IndexPart.Side, codes: { gte?: Buffer; lt?: Buffer }): KeyRange {
  const wrap = (code: Buffer) => Buffer.concat([prefix, part === IndexPart.Side ? escapeBytesOpen(code) : code]);
  return {
    gte: codes.gte ? wrap(codes.gte) : prefix,
    lt: codes.lt ? wrap(codes.lt) : prefixEnd(prefix),
  };
}

/** Order-preserving, self-delimiting bytes: as escapeText, for any bytes. */
export function escapeBytes(raw: Buffer): Buffer {
  const open = escapeBytesOpen(raw);
  return Buffer.concat([open, Buffer.of(0x00, 0x01)]);
}

/** escapeBytes without the terminator: a bound that sorts before every escaped extension of `raw`... and after `raw` itself escaped shorter. */
function escapeBytesOpen(raw: Buffer): Buffer {
  let zeros = 0;
  for (const byte of raw) if (byte === 0) zeros++;
  if (zeros === 0) return Buffer.from(raw);
  const out = Buffer.allocUnsafe(raw.length + zeros);
  let at = 0;
  for (const byte of raw) {
    out[at++] = byte;
    if (byte === 0) out[at++] = 0xff;
  }
  return out;
}

/** Offset just past the terminator of escaped bytes starting at `start`. */
function escapedEnd(buf: Buffer, start: number): number {
  let at = start;
  for (;;) {
    assert.ok(at + 1 < buf.length, 'escaped bytes without terminator');
    if (buf[at] === 0) {
      if (buf[at + 1] === 0x01) return at + 2;
      at += 2;
    } else at++;
  }
}
