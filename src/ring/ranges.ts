/**
 * Shard ranges: a database's documents are spread over `q` ranges of a 32-bit hash
 * of the doc id (CRC-32, as CouchDB does), each range an equal slice of
 * [0, 2^32). Pure: no I/O, no clock. Placement of ranges on nodes comes with the
 * cluster; a single node owns every range.
 */
import assert from 'node:assert/strict';

export interface Range {
  /** Inclusive bounds of the hash slice. */
  readonly begin: number;
  readonly end: number;
}

const HASH_SPACE = 0x100000000;

/** The q ranges of a database, in hash order; together they cover [0, 2^32) exactly. */
export function ranges(q: number): Range[] {
  assert.ok(Number.isInteger(q) && q >= 1 && q <= 1024, 'q must be an integer in 1..1024');
  const out: Range[] = [];
  for (let i = 0; i < q; i++) {
    out.push({ begin: Math.floor((i * HASH_SPACE) / q), end: Math.floor(((i + 1) * HASH_SPACE) / q) - 1 });
  }
  return out;
}

/** Index of the range holding `docId` among a database's q ranges. */
export function rangeIndexOf(docId: string, q: number): number {
  return Math.floor((crc32(docId) * q) / HASH_SPACE);
}

/** Range bounds as CouchDB names them in `_shards`: `00000000-7fffffff`. */
export function rangeName(range: Range): string {
  return range.begin.toString(16).padStart(8, '0') + '-' + range.end.toString(16).padStart(8, '0');
}

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-32 (IEEE) of the UTF-8 bytes of a string, as an unsigned 32-bit integer. */
export function crc32(text: string): number {
  const bytes = Buffer.from(text, 'utf8');
  let crc = -1;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}
