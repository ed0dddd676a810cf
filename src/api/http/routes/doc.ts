/**
 * Documents: `GET/HEAD/PUT/DELETE/COPY /db/doc` (and `_design/` docs), with CouchDB's
 * read options, `open_revs` in JSON or multipart/mixed, multipart/related reads and
 * writes, ETags and conditional requests.
 */
import { randomBytes } from 'node:crypto';
import { BadRequestError, ConflictError, NotFoundError } from '../../../errors';
import { parseStoredJson } from '../../../json';
import type { RevNode } from '../../../shard/rev-tree';
import type { AttachmentInput, AttachmentStub } from '../../../shard/types';
import type { DbHandle } from '../../coordinator/shard-client';
import {
  attachmentsKnownPos,
  chooseRevision,
  openRevs,
  readBody,
  readDocInfo,
  readAttachment,
  renderRevision,
  RenderOptions,
} from '../../coordinator/doc-open';
import { updateDocs } from '../../coordinator/doc-update';
import type { Ctx } from '../context';
import { checkRev, compressAttachments, parseDoc, validateDocId } from '../doc-input';
import { encodeOpenRevs, encodeRelatedDocument, OpenRevsEntry, parseContentType, parseRelatedDocument, RelatedAttachment } from '../multipart';
import { allow, openDb, sendWrite } from './common';

export async function doc(ctx: Ctx, dbName: string, docId: string): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'PUT', 'DELETE', 'COPY']);
  const db = await openDb(ctx, dbName);
  switch (ctx.method) {
    case 'GET':
    case 'HEAD':
      return getDoc(ctx, db, docId);
    case 'PUT':
      return putDoc(ctx, db, docId);
    case 'DELETE':
      return deleteDoc(ctx, db, docId);
    default:
      return copyDoc(ctx, db, docId);
  }
}

export function renderOptions(ctx: Ctx): RenderOptions {
  const meta = ctx.qBool('meta', false);
  const options: RenderOptions = {
    revs: ctx.qBool('revs', false),
    revsInfo: meta || ctx.qBool('revs_info', false),
    conflicts: meta || ctx.qBool('conflicts', false),
    deletedConflicts: meta || ctx.qBool('deleted_conflicts', false),
    localSeq: ctx.qBool('local_seq', false),
    attachments: ctx.qBool('attachments', false),
    attEncodingInfo: ctx.qBool('att_encoding_info', false),
  };
  const attsSince = ctx.qJson('atts_since');
  if (attsSince !== undefined) {
    if (!Array.isArray(attsSince) || attsSince.some((r) => typeof r !== 'string')) {
      throw new BadRequestError('atts_since must be a JSON array of revisions', 'query_parse_error');
    }
    options.attsSince = attsSince as string[];
    options.attachments = true;
  }
  return options;
}

async function getDoc(ctx: Ctx, db: DbHandle, docId: string): Promise<void> {
  const timeoutMs = ctx.limits.quorumTimeoutMs;
  const r = ctx.qInt('r', 0) || undefined;
  const options = renderOptions(ctx);
  const info = await readDocInfo(db, docId, { timeoutMs, ...(r ? { r } : {}) });
  const openRevsParam = ctx.qString('open_revs');
  // `open_revs=[]` reads like no open_revs at all, as in CouchDB (its default is []).
  if (openRevsParam !== undefined && !isEmptyRevList(ctx, openRevsParam)) return sendOpenRevs(ctx, db, info, openRevsParam, options);

  const revParam = ctx.qString('rev');
  const node = chooseRevision(info, revParam === undefined ? undefined : checkRev(revParam));
  const etag = `"${node.rev}"`;
  if (ctx.header('if-none-match') === etag && !options.attachments) {
    ctx.res.writeHead(304, { ETag: etag, 'Cache-Control': 'must-revalidate' });
    return ctx.end();
  }
  const body = await readBody(db, docId, node.rev);
  if (body === undefined) throw new NotFoundError('missing');
  if (options.attachments && ctx.accepts('multipart/related') && body.includes('"_attachments"')) {
    const entry = await relatedEntry(db, info!, node, body, options);
    if (entry.kind === 'ok') {
      const encoded = encodeRelatedDocument(entry.doc, entry.attachments);
      return ctx.sendBytes(200, encoded.body, { 'Content-Type': encoded.contentType, ETag: etag });
    }
  }
  ctx.send(200, await renderRevision(db, info!, node, body, options), { ETag: etag });
}

function isEmptyRevList(ctx: Ctx, param: string): boolean {
  if (param === 'all') return false;
  const parsed = ctx.qJson('open_revs');
  return Array.isArray(parsed) && parsed.length === 0;
}

async function sendOpenRevs(
  ctx: Ctx,
  db: DbHandle,
  info: Awaited<ReturnType<typeof readDocInfo>>,
  param: string,
  options: RenderOptions,
): Promise<void> {
  let revs: string[] | 'all';
  if (param === 'all') revs = 'all';
  else {
    const parsed = ctx.qJson('open_revs');
    if (!Array.isArray(parsed) || parsed.some((r) => typeof r !== 'string')) {
      throw new BadRequestError('open_revs must be "all" or a JSON array of revisions', 'bad_request'); // CouchDB's token
    }
    if (parsed.length > ctx.limits.keysMax) throw new BadRequestError(`open_revs lists more than ${ctx.limits.keysMax} revisions`);
    revs = (parsed as string[]).map(checkRev);
  }
  if (revs === 'all' && !info) throw new NotFoundError('missing');
  const latest = ctx.qBool('latest', false);
  const results = await openRevs(db, info, revs, latest, { ...options, attachments: false });
  if (ctx.accepts('multipart/mixed')) {
    const entries: OpenRevsEntry[] = [];
    for (const result of results) {
      if (result.kind === 'missing') entries.push({ kind: 'missing', rev: result.rev });
      else {
        const node = info!.tree.get(result.rev)!;
        const body = (await readBody(db, info!.id, result.rev)) ?? '{}';
        // Every attachment follows as a part (only atts_since trims them), whatever
        // `attachments` says: CouchDB's replicator asks without it and needs the bytes.
        entries.push(await relatedEntry(db, info!, node, body, { ...options, attachments: true }));
      }
    }
    const encoded = encodeOpenRevs(entries);
    return ctx.sendBytes(200, encoded.body, { 'Content-Type': encoded.contentType });
  }
  const parts: string[] = [];
  for (const result of results) {
    if (result.kind === 'missing') parts.push(JSON.stringify({ missing: result.rev }));
    else if (!options.attachments) parts.push('{"ok":' + result.doc + '}');
    else {
      const node = info!.tree.get(result.rev)!;
      const body = (await readBody(db, info!.id, result.rev)) ?? '{}';
      parts.push('{"ok":' + (await renderRevision(db, info!, node, body, options)) + '}');
    }
  }
  ctx.send(200, '[' + parts.join(',') + ']');
}

/** A revision as a multipart entry: attachments changed since `atts_since` follow as parts. */
async function relatedEntry(
  db: DbHandle,
  info: NonNullable<Awaited<ReturnType<typeof readDocInfo>>>,
  node: RevNode,
  body: string,
  options: RenderOptions,
): Promise<OpenRevsEntry> {
  // Multipart always carries the encoding fields: encoded attachments travel as stored.
  const doc = parseStoredJson(await renderRevision(db, info, node, body, { ...options, attachments: false, attEncodingInfo: true })) as Record<
    string,
    unknown
  >;
  const attachments: RelatedAttachment[] = [];
  const stubs = doc._attachments as Record<string, AttachmentStub> | undefined;
  if (stubs && options.attachments) {
    const knownPos = attachmentsKnownPos(info, options.attsSince);
    for (const [name, stub] of Object.entries(stubs)) {
      if (stub.revpos <= knownPos) continue;
      const data = await readAttachment(db, info.id, stub);
      if (!data) throw new NotFoundError(`attachment ${name} is missing its data`);
      const { stub: _omit, encoding: _encoding, encoded_length: _encodedLength, ...rest } = stub as typeof stub & { stub?: boolean };
      void _omit;
      // The part goes as stored, and the stub says how it is stored.
      const encoding = stub.encoding;
      (stubs as Record<string, unknown>)[name] = { ...rest, ...(encoding !== undefined ? { encoding, encoded_length: data.length } : {}), follows: true };
      attachments.push({ name, contentType: stub.content_type, data, ...(encoding !== undefined ? { encoding } : {}) });
    }
  }
  return { kind: 'ok', doc, attachments };
}

/** The document's rev from `?rev=`, `If-Match` or `_rev`; they must agree. */
function requestRev(ctx: Ctx, bodyRev: string | undefined): string | undefined {
  const queryRev = ctx.qString('rev');
  const ifMatch = ctx.header('if-match')?.replace(/^"|"$/g, '');
  const headerRev = queryRev ?? ifMatch;
  if (headerRev !== undefined && bodyRev !== undefined && headerRev !== bodyRev) {
    throw new BadRequestError('Document rev from request body and query string have different values', 'bad_request');
  }
  const rev = bodyRev ?? headerRev;
  return rev === undefined ? undefined : checkRev(rev);
}

async function putDoc(ctx: Ctx, db: DbHandle, docId: string): Promise<void> {
  validateDocId(docId, ctx.limits);
  const contentType = ctx.header('content-type') ?? '';
  let json: unknown;
  let followed: Map<string, Buffer> | undefined;
  if (contentType.toLowerCase().startsWith('multipart/related')) {
    const related = parseRelatedDocument(await ctx.readBody(), contentType, { partsMax: 10_000 });
    json = related.doc;
    followed = related.attachments;
  } else {
    json = await ctx.readJson(undefined, { exact: true });
  }
  const newEdits = ctx.qBool('new_edits', true);
  const parsed = parseDoc(json, { id: docId, newEdits, limits: ctx.limits, ...(followed ? { followed } : {}) });
  await compressAttachments(parsed, { compression: ctx.services.attachmentCompression, attachmentBytesMax: ctx.limits.attachmentBytesMax });
  const rev = requestRev(ctx, parsed.rev);
  if (newEdits) {
    if (rev !== undefined) parsed.edit.baseRev = rev;
  }
  const w = ctx.qInt('w', 0) || undefined;
  const [outcome] = await updateDocs(db, [parsed.edit], { timeoutMs: ctx.limits.quorumTimeoutMs, validate: ctx.validation, ...(w ? { w } : {}) });
  if (ctx.qString('batch') === 'ok' && outcome!.kind !== 'error') {
    return ctx.send(202, { ok: true, id: docId });
  }
  sendWrite(ctx, outcome!, { Location: docLocation(ctx, db.name, docId) });
}

async function deleteDoc(ctx: Ctx, db: DbHandle, docId: string): Promise<void> {
  const rev = requestRev(ctx, undefined);
  if (rev === undefined) throw new ConflictError();
  const w = ctx.qInt('w', 0) || undefined;
  const [outcome] = await updateDocs(db, [{ id: docId, deleted: true, body: {}, attachments: null, baseRev: rev }], {
    timeoutMs: ctx.limits.quorumTimeoutMs,
    validate: ctx.validation,
    ...(w ? { w } : {}),
  });
  if (outcome!.kind === 'error') throw outcome!.error;
  ctx.send(outcome!.kind === 'ok' ? 200 : 202, { ok: true, id: docId, rev: outcome!.rev }, { ETag: `"${outcome!.rev}"` });
}

async function copyDoc(ctx: Ctx, db: DbHandle, docId: string): Promise<void> {
  const destination = ctx.header('destination');
  if (!destination) throw new BadRequestError('Destination header is mandatory for COPY.', 'bad_request');
  const [rawTarget, query] = destination.split('?', 2) as [string, string | undefined];
  let decodedTarget: string;
  try {
    decodedTarget = decodeURIComponent(rawTarget);
  } catch {
    throw new BadRequestError('Destination header is not valid percent-encoding', 'bad_request');
  }
  const targetId = validateDocId(decodedTarget, ctx.limits);
  const targetRev = query ? new URLSearchParams(query).get('rev') ?? undefined : undefined;
  const timeoutMs = ctx.limits.quorumTimeoutMs;
  const info = await readDocInfo(db, docId, { timeoutMs });
  const revParam = ctx.qString('rev');
  const node = chooseRevision(info, revParam === undefined ? undefined : checkRev(revParam));
  const text = await readBody(db, docId, node.rev);
  if (text === undefined) throw new NotFoundError('missing');
  const body = parseStoredJson(text) as Record<string, unknown>;
  const stubs = body._attachments as Record<string, AttachmentStub> | undefined;
  delete body._attachments;
  const attachments: AttachmentInput[] = [];
  for (const [name, stub] of Object.entries(stubs ?? {})) {
    const data = await readAttachment(db, docId, stub);
    if (!data) throw new NotFoundError(`attachment ${name} is missing its data`);
    // An encoded attachment is copied in its stored form, with its identity length.
    const encoding = stub.encoding;
    const encoded = encoding !== undefined ? { encoding, length: stub.length } : {};
    attachments.push({ kind: 'data' as const, name, contentType: stub.content_type, data, ...encoded, digest: stub.digest });
  }
  const edit = { id: targetId, deleted: false, body, attachments: stubs ? attachments : null, ...(targetRev ? { baseRev: checkRev(targetRev) } : {}) };
  const [outcome] = await updateDocs(db, [edit], { timeoutMs, validate: ctx.validation });
  sendWrite(ctx, outcome!, { Location: docLocation(ctx, db.name, targetId) });
}

export function docLocation(ctx: Ctx, dbName: string, docId: string): string {
  const host = ctx.header('host') ?? 'localhost';
  const encodedId = docId.startsWith('_design/') ? '_design/' + encodeURIComponent(docId.slice(8)) : encodeURIComponent(docId);
  return `http://${host}/${encodeURIComponent(dbName)}/${encodedId}`;
}

/** `POST /db`: create a document, with a generated id when it has none. */
export async function postDoc(ctx: Ctx, db: DbHandle): Promise<void> {
  ctx.requireJsonType();
  const json = await ctx.readJson(undefined, { exact: true });
  const parsed = parseDoc(json, { newEdits: true, limits: ctx.limits, generateId: () => randomBytes(16).toString('hex') });
  await compressAttachments(parsed, { compression: ctx.services.attachmentCompression, attachmentBytesMax: ctx.limits.attachmentBytesMax });
  if (parsed.rev !== undefined) parsed.edit.baseRev = parsed.rev;
  const [outcome] = await updateDocs(db, [parsed.edit], { timeoutMs: ctx.limits.quorumTimeoutMs, validate: ctx.validation });
  if (ctx.qString('batch') === 'ok' && outcome!.kind !== 'error') return ctx.send(202, { ok: true, id: parsed.edit.id });
  sendWrite(ctx, outcome!, { Location: docLocation(ctx, db.name, parsed.edit.id) });
}

export { parseContentType };
