/**
 * Standalone attachments: `GET/HEAD/PUT/DELETE /db/doc/att` (names may contain `/`),
 * with content type, `md5-` digest ETag, Content-MD5, and single byte ranges.
 *
 * An identity upload of a compressible type is stored gzip (att-compress.ts) with the
 * digest of its identity bytes. An attachment stored gzip is served as stored to a
 * client that accepts gzip and decoded to any other, always whole (`Accept-Ranges:
 * none`, as CouchDB); its ETag is its digest either way, and Content-MD5, sent only
 * with the stored bytes (as CouchDB), is the md5 of the bytes sent.
 */
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { BadContentTypeError, BadRequestError, ConflictError, RangeNotSatisfiableError } from '../../../errors';
import { changeAttachment, getAttachment } from '../../coordinator/attachments';
import { identityBytes } from '../../coordinator/doc-open';
import { attachmentDigest } from '../../../shard/render';
import { compressAttachment, shouldCompress } from '../att-compress';
import type { Ctx } from '../context';
import { checkContentType, checkRev, validateDocId } from '../doc-input';
import { allow, openDb, sendWrite } from './common';
import { docLocation } from './doc';

export async function attachment(ctx: Ctx, dbName: string, docId: string, name: string): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'PUT', 'DELETE']);
  const db = await openDb(ctx, dbName);
  const timeoutMs = ctx.limits.quorumTimeoutMs;
  const revParam = ctx.qString('rev') ?? ctx.header('if-match')?.replace(/^"|"$/g, '');
  const rev = revParam === undefined ? undefined : checkRev(revParam);
  if (ctx.method === 'GET' || ctx.method === 'HEAD') {
    const r = ctx.qInt('r', 0) || undefined;
    const read = await getAttachment(db, { id: docId, name, timeoutMs, ...(rev ? { rev } : {}), ...(r ? { r } : {}) });
    const etag = `"${read.stub.digest.slice(4)}"`;
    if (ctx.header('if-none-match') === etag) {
      ctx.res.writeHead(304, { ETag: etag });
      return ctx.end();
    }
    const encoding = read.stub.encoding;
    if (encoding !== undefined) {
      // Stored encoded (as CouchDB keeps compressible types): the stored bytes to a
      // client that accepts the encoding, decoded ones to any other; no ranges.
      const headers: Record<string, string> = { 'Content-Type': read.stub.content_type, ETag: etag, 'Accept-Ranges': 'none' };
      if (acceptsEncoding(ctx.header('accept-encoding'), encoding)) {
        headers['Content-Encoding'] = encoding;
        // Of the bytes sent, not the digest: one the server compressed is of the identity bytes.
        headers['Content-MD5'] = attachmentDigest(read.data).slice(4);
        return ctx.sendBytes(200, read.data, headers);
      }
      return ctx.sendBytes(200, await identityBytes(read.stub, read.data, ctx.limits.attachmentBytesMax), headers);
    }
    const headers: Record<string, string> = {
      'Content-Type': read.stub.content_type,
      ETag: etag,
      'Accept-Ranges': 'bytes',
      'Content-MD5': read.stub.digest.slice(4),
    };
    const range = parseRange(ctx.header('range'), read.data.length);
    if (range) {
      headers['Content-Range'] = `bytes ${range.start}-${range.end}/${read.data.length}`;
      return ctx.sendBytes(206, read.data.subarray(range.start, range.end + 1), headers);
    }
    return ctx.sendBytes(200, read.data, headers);
  }
  validateDocId(docId, ctx.limits);
  // As CouchDB (and as inline attachments are checked): no name may start with `_`,
  // which also keeps `__proto__` out of every attachments map.
  if (name.startsWith('_')) throw new BadRequestError(`Attachment name '${name}' starts with prohibited character '_'`);
  if (ctx.method === 'DELETE') {
    if (rev === undefined) throw new ConflictError();
    const outcome = await changeAttachment(db, { id: docId, name, rev, timeoutMs, validate: ctx.validation });
    if (outcome.kind === 'error') throw outcome.error;
    return ctx.send(outcome.kind === 'ok' ? 200 : 202, { ok: true, id: docId, rev: outcome.rev });
  }
  const contentType = checkContentType(ctx.header('content-type') ?? 'application/octet-stream');
  const contentEncoding = (ctx.header('content-encoding') ?? 'identity').trim().toLowerCase();
  if (contentEncoding !== 'identity' && contentEncoding !== 'gzip') {
    throw new BadContentTypeError('Only gzip and identity content-encodings are supported');
  }
  const bytes = await ctx.readBody(ctx.limits.attachmentBytesMax);
  let data: { contentType: string; bytes: Buffer; encoding?: string; length?: number; digest?: string } = { contentType, bytes };
  if (contentEncoding === 'gzip') {
    // Kept as sent, like CouchDB; the identity length is measured off the event loop.
    data.encoding = 'gzip';
    data.length = (await decodeStored(bytes, ctx.limits.attachmentBytesMax)).length;
  } else if (shouldCompress(ctx.services.attachmentCompression, contentType)) {
    const gz = await compressAttachment(bytes, ctx.services.attachmentCompression.level, ctx.limits.attachmentBytesMax);
    // Kept identity only when its gzip form would outgrow the attachment limit.
    if (gz !== undefined) data = { contentType, bytes: gz, encoding: 'gzip', length: bytes.length, digest: attachmentDigest(bytes) };
  }
  const outcome = await changeAttachment(db, { id: docId, name, timeoutMs, data, validate: ctx.validation, ...(rev ? { rev } : {}) });
  sendWrite(ctx, outcome, { Location: docLocation(ctx, dbName, docId) + '/' + encodeURIComponent(name) });
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; other forms are ignored (whole body). */
export function parseRange(header: string | undefined, length: number): { start: number; end: number } | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    start = Math.max(0, length - suffix);
    end = length - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? length - 1 : Math.min(Number(match[2]), length - 1);
  }
  if (start > end || start >= length) throw new RangeNotSatisfiableError();
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) throw new BadRequestError('Bad Range header');
  return { start, end };
}

const gunzipAsync = promisify(gunzip) as (data: Buffer, options: { maxOutputLength: number }) => Promise<Buffer>;

/** The identity bytes of a gzip upload, on the thread pool, bounded so a gzip bomb stops at the limit. */
async function decodeStored(data: Buffer, bytesMax: number): Promise<Buffer> {
  try {
    return await gunzipAsync(data, { maxOutputLength: Math.max(bytesMax, 1) });
  } catch {
    throw new BadRequestError('Attachment body is not valid gzip, or decodes larger than the attachment limit');
  }
}

/**
 * Whether `Accept-Encoding` accepts `coding` (RFC 9110 §12.5.3): listed, or `*`, with
 * a non-zero q; an explicit entry beats `*`. No header means identity only, as CouchDB
 * (mochiweb) reads it.
 */
export function acceptsEncoding(header: string | undefined, coding: string): boolean {
  if (header === undefined) return false;
  let wildcard: boolean | undefined;
  for (const entry of header.split(',')) {
    const [name, ...params] = entry.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const accepted = q === undefined || Number(q.slice(2)) > 0;
    if (name === coding || (coding === 'gzip' && name === 'x-gzip')) return accepted;
    if (name === '*') wildcard = accepted;
  }
  return wildcard ?? false;
}
