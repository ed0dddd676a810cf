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
 *   Attachment digest (ASCII)                                    → attachment bytes
 *   Local     docId (UTF-8)                                      → local doc
 *   Meta      name (ASCII)                                       → copy metadata
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
}

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

export function attachmentKey(copy: number, digest: string): Buffer {
  return withText(copy, Space.Attachment, digest);
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
  return Buffer.concat([spacePrefix(copy, Space.RevBody, 0), escapeText(docId), Buffer.from(rev, 'latin1')]);
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
