/**
 * Standalone attachments: `GET/HEAD/PUT/DELETE /db/doc/att` (names may contain `/`),
 * with content type, `md5-` digest ETag, Content-MD5, and single byte ranges.
 */
import { BadRequestError, ConflictError, RangeNotSatisfiableError } from '../../../errors';
import { changeAttachment, getAttachment } from '../../coordinator/attachments';
import type { Ctx } from '../context';
import { checkRev, validateDocId } from '../doc-input';
import { allow, openDb, sendWrite } from './common';
import { docLocation } from './doc';

export async function attachment(ctx: Ctx, dbName: string, docId: string, name: string): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'PUT', 'DELETE']);
  const db = await openDb(ctx, dbName);
  const timeoutMs = ctx.limits.quorumTimeoutMs;
  const revParam = ctx.qString('rev') ?? ctx.header('if-match')?.replace(/^"|"$/g, '');
  const rev = revParam === undefined ? undefined : checkRev(revParam);
  if (ctx.method === 'GET' || ctx.method === 'HEAD') {
    const read = await getAttachment(db, { id: docId, name, timeoutMs, ...(rev ? { rev } : {}) });
    const etag = `"${read.stub.digest.slice(4)}"`;
    if (ctx.header('if-none-match') === etag) {
      ctx.res.writeHead(304, { ETag: etag });
      return ctx.end();
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
    const outcome = await changeAttachment(db, { id: docId, name, rev, timeoutMs });
    if (outcome.kind === 'error') throw outcome.error;
    return ctx.send(outcome.kind === 'ok' ? 200 : 202, { ok: true, id: docId, rev: outcome.rev });
  }
  const bytes = await ctx.readBody(ctx.limits.attachmentBytesMax);
  const contentType = ctx.header('content-type') ?? 'application/octet-stream';
  const outcome = await changeAttachment(db, { id: docId, name, timeoutMs, data: { contentType, bytes }, ...(rev ? { rev } : {}) });
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
