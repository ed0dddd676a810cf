/**
 * Attachments the server stores gzip-compressed, as CouchDB does with its
 * `[attachments] compressible_types` and `compression_level`.
 *
 * A policy is parsed once at start-up from the node config: a list of content types
 * (`text/*, application/json`, case-insensitive, `*` matching any run of characters,
 * parameters after `;` in the attachment's type ignored) and a zlib level (1..9; 0 turns
 * compression off). An upload is compressed when it arrives identity-encoded, its type
 * matches and the level is above 0, whatever the ratio (CouchDB's rule), except when
 * the gzip form would not fit the attachment size limit: then it stays identity.
 *
 * Compression runs on libuv's thread pool (zlib's async API), never on the event loop.
 * The digest of a compressed attachment is that of its identity bytes (the caller
 * computes it before compressing), so clients see the digest they computed themselves.
 * No I/O besides zlib; no knowledge of documents or storage.
 */
import { promisify } from 'node:util';
import { gunzip, gzip, type ZlibOptions } from 'node:zlib';

/** Parsed `compressible_types`: whether an attachment content type is one to compress. */
export interface CompressibleTypes {
  matches(contentType: string): boolean;
  /** The patterns as parsed (lower-cased, trimmed), for logs and `_config`. */
  readonly patterns: readonly string[];
}

export interface AttachmentCompression {
  types: CompressibleTypes;
  /** zlib level 0..9; 0: never compress. */
  level: number;
}

/** The matcher of a comma-separated list of types; empty entries are skipped. */
export function parseCompressibleTypes(list: string): CompressibleTypes {
  const patterns = list
    .split(',')
    .map((p) => p.trim().toLowerCase())
    .filter((p) => p.length > 0);
  const regexps = patterns.map((p) => new RegExp('^' + p.split('*').map(escapeRegExp).join('.*') + '$'));
  return {
    patterns,
    matches(contentType: string): boolean {
      const bare = mediaType(contentType);
      return bare.length > 0 && regexps.some((r) => r.test(bare));
    },
  };
}

/** `Text/HTML; charset=utf-8` → `text/html`. */
function mediaType(contentType: string): string {
  const semi = contentType.indexOf(';');
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

export function attachmentCompression(settings: { types: string; level: number }): AttachmentCompression {
  if (!Number.isInteger(settings.level) || settings.level < 0 || settings.level > 9) {
    throw new RangeError(`attachment compression level must be 0..9, got ${settings.level}`);
  }
  return { types: parseCompressibleTypes(settings.types), level: settings.level };
}

/** Whether an identity upload of this type is stored compressed under this policy. */
export function shouldCompress(policy: AttachmentCompression, contentType: string): boolean {
  return policy.level > 0 && policy.types.matches(contentType);
}

const gzipAsync = promisify(gzip) as (data: Buffer, options: ZlibOptions & { maxOutputLength?: number }) => Promise<Buffer>;
const gunzipAsync = promisify(gunzip) as (data: Buffer, options: { maxOutputLength: number }) => Promise<Buffer>;

/**
 * `data` gzip-compressed at `level`, on the thread pool. With `bytesMax`, undefined
 * when the gzip form would be larger (zlib stops there: memory stays bounded).
 */
export async function compressAttachment(data: Buffer, level: number, bytesMax?: number): Promise<Buffer | undefined> {
  try {
    return await gzipAsync(data, { level, ...(bytesMax !== undefined ? { maxOutputLength: Math.max(1, bytesMax) } : {}) });
  } catch (err) {
    if (bytesMax !== undefined && (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw err;
  }
}

/** The identity bytes of gzip `data`, on the thread pool; undefined if not valid gzip or larger than `bytesMax`. */
export async function decompressAttachment(data: Buffer, bytesMax: number): Promise<Buffer | undefined> {
  try {
    return await gunzipAsync(data, { maxOutputLength: Math.max(1, bytesMax) });
  } catch {
    return undefined;
  }
}
