/**
 * Turning a client's JSON document into a `DocEdit`: CouchDB's rules for ids,
 * special (`_`-prefixed) members, inline attachments, `_revisions`, and size limits.
 * Every violation is a typed error with CouchDB's token; nothing here trusts input.
 */
import { BadRequestError, TooLargeError } from '../../errors';
import { stringifyJson } from '../../json';
import { checkPath, parseRev } from '../../shard/rev-tree';
import type { AttachmentInput, DocEdit } from '../../shard/types';
import { isPlainObject } from './context';

export interface DocInputLimits {
  docBytesMax: number;
  docIdBytesMax: number;
  attachmentBytesMax: number;
}

/** Special members a client may send; the read-only ones are accepted and ignored. */
/** In unicode mode `\p{Cs}` matches only unpaired surrogates: text UTF-8 cannot encode. */
const LONE_SURROGATE = /\p{Cs}/u;

const ALLOWED_SPECIALS = new Set([
  '_id',
  '_rev',
  '_deleted',
  '_attachments',
  '_revisions',
  '_conflicts',
  '_deleted_conflicts',
  '_local_seq',
  '_revs_info',
]);

export function validateDocId(id: unknown, limits: DocInputLimits, options: { allowLocal?: boolean } = {}): string {
  if (typeof id !== 'string' || id.length === 0) throw new BadRequestError('Document id must be a non-empty string', 'illegal_docid');
  if (LONE_SURROGATE.test(id)) throw new BadRequestError('Document id must be valid UTF-8', 'illegal_docid');
  if (Buffer.byteLength(id, 'utf8') > limits.docIdBytesMax) throw new BadRequestError('Document id is too long', 'illegal_docid');
  if (id.startsWith('_')) {
    const reserved = id.startsWith('_design/') && id.length > 8;
    const local = options.allowLocal && id.startsWith('_local/') && id.length > 7;
    if (!reserved && !local) throw new BadRequestError('Only reserved document ids may start with underscore.', 'illegal_docid');
  }
  return id;
}

export interface ParsedDoc {
  edit: DocEdit;
  /** The `_rev` the client sent, if any. */
  rev: string | undefined;
}

/**
 * Build an edit from a JSON document. `id` overrides/must match `_id` (the URL's id);
 * `newEdits=false` makes a replicated edit from `_revisions` (or `_rev` alone).
 * `followed` holds multipart attachment bodies for `follows: true` stubs.
 */
export function parseDoc(
  json: unknown,
  options: { id?: string; newEdits: boolean; limits: DocInputLimits; followed?: Map<string, Buffer>; generateId?: () => string },
): ParsedDoc {
  if (!isPlainObject(json)) throw new BadRequestError('Document must be a JSON object', 'bad_request');
  const body: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    if (!key.startsWith('_')) body[key] = value;
    else if (!ALLOWED_SPECIALS.has(key)) throw new BadRequestError(`Bad special document member: ${key}`, 'doc_validation');
  }
  let id: string;
  if (options.id !== undefined) {
    id = options.id;
    if (json._id !== undefined && json._id !== id) throw new BadRequestError('Document id must match the id in the URL', 'bad_request');
  } else if (json._id !== undefined) id = validateDocId(json._id, options.limits);
  else if (options.generateId) id = options.generateId();
  else throw new BadRequestError('Document must have an _id', 'bad_request');

  const rev = json._rev === undefined || json._rev === null ? undefined : (parseRev(json._rev), json._rev as string);
  const deleted = json._deleted === true;
  const attachments = json._attachments === undefined ? null : parseAttachments(json._attachments, options.limits, options.followed);

  const bodyJson = stringifyJson(body);
  if (bodyJson.length > options.limits.docBytesMax || Buffer.byteLength(bodyJson, 'utf8') > options.limits.docBytesMax) {
    throw new TooLargeError(id, 'document_too_large');
  }

  const edit: DocEdit = { id, deleted, body, bodyJson, attachments };
  if (options.newEdits) {
    if (rev !== undefined) edit.baseRev = rev;
  } else {
    edit.revs = replicatedPath(json, rev);
  }
  return { edit, rev };
}

function replicatedPath(json: Record<string, unknown>, rev: string | undefined): string[] {
  const revisions = json._revisions;
  if (revisions === undefined) {
    if (rev === undefined) throw new BadRequestError('When new_edits is false, each document needs a _rev', 'bad_request');
    return [rev];
  }
  if (!isPlainObject(revisions) || !Number.isSafeInteger(revisions.start) || !Array.isArray(revisions.ids)) {
    throw new BadRequestError('_revisions must be {"start": integer, "ids": [...]}', 'doc_validation');
  }
  const start = revisions.start as number;
  const ids = revisions.ids as unknown[];
  if (ids.length === 0 || ids.length > start) throw new BadRequestError('_revisions ids do not fit start', 'doc_validation');
  const path = ids.map((hash, i) => {
    if (typeof hash !== 'string') throw new BadRequestError('_revisions ids must be strings', 'doc_validation');
    return `${start - i}-${hash}`;
  });
  checkPath(path);
  if (rev !== undefined && rev !== path[0]) throw new BadRequestError('_rev does not match _revisions', 'bad_request');
  return path;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function parseAttachments(value: unknown, limits: DocInputLimits, followed: Map<string, Buffer> | undefined): AttachmentInput[] {
  if (!isPlainObject(value)) throw new BadRequestError('_attachments must be an object', 'bad_request');
  const out: AttachmentInput[] = [];
  for (const [name, spec] of Object.entries(value)) {
    if (name.length === 0 || name.startsWith('_') || LONE_SURROGATE.test(name)) {
      throw new BadRequestError(`Attachment name ${JSON.stringify(name)} is not allowed`, 'bad_request');
    }
    if (!isPlainObject(spec)) throw new BadRequestError(`Attachment ${name} must be an object`, 'bad_request');
    const contentType = typeof spec.content_type === 'string' ? spec.content_type : 'application/octet-stream';
    const revpos = Number.isSafeInteger(spec.revpos) ? (spec.revpos as number) : undefined;
    if (spec.stub === true) {
      const stub: AttachmentInput = { kind: 'stub', name };
      if (typeof spec.digest === 'string') stub.digest = spec.digest;
      if (revpos !== undefined) stub.revpos = revpos;
      if (typeof spec.content_type === 'string') stub.contentType = spec.content_type;
      if (Number.isSafeInteger(spec.length)) stub.length = spec.length as number;
      out.push(stub);
      continue;
    }
    let data: Buffer;
    if (spec.follows === true) {
      const part = followed?.get(name);
      if (!part) throw new BadRequestError(`Attachment ${name} says it follows, but no part holds it`, 'bad_request');
      data = part;
    } else if (typeof spec.data === 'string') {
      const compact = spec.data.replace(/\s+/g, '');
      if (!BASE64.test(compact) || compact.length % 4 === 1) throw new BadRequestError(`Invalid attachment data for ${name}`, 'bad_request');
      data = Buffer.from(compact, 'base64');
    } else {
      throw new BadRequestError(`Attachment ${name} needs data, follows or stub`, 'bad_request');
    }
    if (data.length > limits.attachmentBytesMax) throw new TooLargeError(`Attachment ${name} is too large`, 'attachment_too_large');
    const att: AttachmentInput = { kind: 'data', name, contentType, data };
    if (revpos !== undefined && !Number.isNaN(revpos)) att.revpos = revpos;
    out.push(att);
  }
  return out;
}

/** A revision from `?rev=`, `If-Match` or `_rev`, checked. */
export function checkRev(rev: string): string {
  parseRev(rev);
  return rev;
}
