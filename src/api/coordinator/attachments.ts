/**
 * Standalone attachment operations (`/db/doc/att`): read one attachment of a
 * revision; add, replace or remove one, which makes a new revision that keeps every
 * other attachment as a stub.
 */
import { ConflictError, NotFoundError } from '../../errors';
import { parseStoredJson } from '../../json';
import type { AttachmentInput, AttachmentStub, DocEdit, RevId } from '../../shard/types';
import { chooseRevision, readAttachment, readBody, readDocInfo } from './doc-open';
import { DocOutcome, updateDocs } from './doc-update';
import type { DbHandle } from './shard-client';
import type { Validation } from './validate';

export interface AttachmentRead {
  stub: AttachmentStub;
  data: Buffer;
  rev: RevId;
}

export async function getAttachment(
  db: DbHandle,
  request: { id: string; name: string; rev?: RevId; timeoutMs: number; r?: number },
): Promise<AttachmentRead> {
  const info = await readDocInfo(db, request.id, { timeoutMs: request.timeoutMs, ...(request.r ? { r: request.r } : {}) });
  const node = chooseRevision(info, request.rev);
  const body = await readBody(db, request.id, node.rev);
  const stubs = body === undefined ? undefined : attachmentsOf(body);
  // Own members only: an attachment named `constructor` must not find Object.prototype's.
  const stub = stubs && Object.hasOwn(stubs, request.name) ? stubs[request.name] : undefined;
  if (!stub) throw new NotFoundError('Document is missing attachment');
  const data = await readAttachment(db, request.id, stub);
  if (!data) throw new NotFoundError('Document is missing attachment');
  return { stub, data, rev: node.rev };
}

/** Put (data) or delete (data undefined) one attachment, as a new revision. */
export async function changeAttachment(
  db: DbHandle,
  request: {
    id: string;
    name: string;
    rev?: RevId;
    /**
     * With `encoding`, `bytes` are the stored (encoded) form and `length` the identity
     * length; `digest`, when the server compressed them, is that of the identity bytes.
     */
    data?: { contentType: string; bytes: Buffer; encoding?: string; length?: number; digest?: string };
    timeoutMs: number;
    w?: number;
    validate?: Validation;
  },
): Promise<DocOutcome> {
  const info = await readDocInfo(db, request.id, { timeoutMs: request.timeoutMs });
  let body: Record<string, unknown> = {};
  let current: Record<string, AttachmentStub> = {};
  if (info && !(info.winner.deleted && request.rev === undefined)) {
    if (request.rev === undefined) throw new ConflictError();
    const node = info.tree.get(request.rev);
    if (!node) throw new ConflictError();
    const text = await readBody(db, request.id, request.rev);
    if (text === undefined) throw new ConflictError();
    const parsed = parseStoredJson(text) as Record<string, unknown>;
    current = (parsed._attachments as Record<string, AttachmentStub> | undefined) ?? {};
    delete parsed._attachments;
    body = parsed;
  } else if (request.data === undefined) {
    throw new NotFoundError(info ? 'deleted' : 'missing');
  }
  if (request.data === undefined && !Object.hasOwn(current, request.name)) throw new NotFoundError('Document is missing attachment');
  const attachments: AttachmentInput[] = [];
  for (const [name, stub] of Object.entries(current)) {
    // The stub's metadata too, for validate_doc_update's newDoc (the copy keeps its own stub).
    if (name !== request.name) attachments.push({ kind: 'stub', name, digest: stub.digest, contentType: stub.content_type, length: stub.length, revpos: stub.revpos });
  }
  if (request.data) {
    const att: AttachmentInput = { kind: 'data', name: request.name, contentType: request.data.contentType, data: request.data.bytes };
    if (request.data.encoding !== undefined) {
      att.encoding = request.data.encoding;
      att.length = request.data.length ?? request.data.bytes.length;
    }
    if (request.data.digest !== undefined) att.digest = request.data.digest;
    attachments.push(att);
  }
  const edit: DocEdit = { id: request.id, deleted: false, body, attachments };
  if (info && request.rev !== undefined) edit.baseRev = request.rev;
  const [outcome] = await updateDocs(db, [edit], {
    timeoutMs: request.timeoutMs,
    ...(request.w ? { w: request.w } : {}),
    ...(request.validate ? { validate: request.validate } : {}),
  });
  return outcome!;
}

export function attachmentsOf(body: string): Record<string, AttachmentStub> {
  if (!body.includes('"_attachments"')) return {};
  const parsed = JSON.parse(body) as { _attachments?: Record<string, AttachmentStub> };
  return parsed._attachments ?? {};
}
