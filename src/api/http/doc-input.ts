/**
 * Turning a client's JSON document into a `DocEdit`: CouchDB's rules for ids,
 * special (`_`-prefixed) members, inline attachments, `_revisions`, and size limits.
 * Every violation is a typed error with CouchDB's token; nothing here trusts input.
 *
 * Parsing is synchronous; `compressAttachments` is its asynchronous second step for
 * writes: it gzips identity attachments of compressible types (att-compress.ts) and
 * checks the digests clients give for gzip parts, both on the thread pool.
 */
import { BadRequestError, TooLargeError } from '../../errors';
import { stringifyJson } from '../../json';
import { attachmentDigest } from '../../shard/render';
import { checkPath, parseRev } from '../../shard/rev-tree';
import type { AttachmentInput, DocEdit } from '../../shard/types';
import { type AttachmentCompression, compressAttachment, decompressAttachment, shouldCompress } from './att-compress';
import { isPlainObject } from './context';

export interface DocInputLimits {
  docBytesMax: number;
  docIdBytesMax: number;
  attachmentBytesMax: number;
}

/** In unicode mode `\p{Cs}` matches only unpaired surrogates: text UTF-8 cannot encode. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Special members a client may send; the read-only ones are accepted and ignored. */

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

/**
 * Special members CouchDB keeps in the stored body as they are (replication state
 * that the `_replicator` database and clients like PouchDB write into documents).
 */
const KEPT_SPECIALS = new Set([
  '_replication_id',
  '_replication_state',
  '_replication_state_time',
  '_replication_state_reason',
  '_replication_stats',
]);

function isSpecialMember(key: string): 'body' | 'special' {
  if (!key.startsWith('_') || KEPT_SPECIALS.has(key)) return 'body';
  if (!ALLOWED_SPECIALS.has(key)) throw new BadRequestError(`Bad special document member: ${key}`, 'doc_validation');
  return 'special';
}

/**
 * A copy of `json` without its special members, in the same key order (the order is
 * hashed into the rev). `for...in` walks the object's enum cache without the array per
 * member that `Object.entries` allocates; parsed JSON has no inherited enumerable
 * members. Deleting `_id`/`_rev` from `json` instead measured slower: the object falls
 * into dictionary mode and `JSON.stringify` leaves its fast path.
 */
function bodyMembers(json: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const key in json) {
    if (isSpecialMember(key) === 'body') body[key] = json[key];
  }
  return body;
}

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
  /**
   * The digests the client gave for gzip parts (`"encoding":"gzip"`, `follows`), by
   * attachment name: unchecked claims, used only once `compressAttachments` verified one.
   */
  encodedDigests?: Map<string, string>;
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
  const body = bodyMembers(json);
  let id: string;
  if (options.id !== undefined) {
    id = options.id;
    if (json._id !== undefined && json._id !== id) throw new BadRequestError('Document id must match the id in the URL', 'bad_request');
  } else if (json._id !== undefined) id = validateDocId(json._id, options.limits);
  else if (options.generateId) id = options.generateId();
  else throw new BadRequestError('Document must have an _id', 'bad_request');

  const rev = json._rev === undefined || json._rev === null ? undefined : (parseRev(json._rev), json._rev as string);
  const deleted = json._deleted === true;
  const encodedDigests = new Map<string, string>();
  const attachments = json._attachments === undefined ? null : parseAttachments(json._attachments, options.limits, options.followed, encodedDigests);

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
  return encodedDigests.size > 0 ? { edit, rev, encodedDigests } : { edit, rev };
}

/**
 * The write-side second step of `parseDoc`, off the event loop:
 * - an identity attachment of a compressible type becomes its gzip form (encoding
 *   `gzip`, `length` the identity length), keeping the digest of its identity bytes;
 * - a gzip part whose claimed digest is the md5 of its identity bytes (as this server
 *   hands on the attachments it compressed) keeps that digest once checked; any other
 *   gzip part keeps the digest of its stored bytes, as CouchDB's replicator expects.
 * Replaces attachments in `parsed.edit.attachments`; a document without any costs nothing.
 */
export async function compressAttachments(
  parsed: ParsedDoc,
  settings: { compression: AttachmentCompression; attachmentBytesMax: number },
): Promise<void> {
  const attachments = parsed.edit.attachments;
  if (attachments === null) return;
  for (let i = 0; i < attachments.length; i++) {
    const att = attachments[i]!;
    if (att.kind !== 'data') continue;
    if (att.encoding === undefined) {
      if (!shouldCompress(settings.compression, att.contentType)) continue;
      const digest = attachmentDigest(att.data);
      const gz = await compressAttachment(att.data, settings.compression.level, settings.attachmentBytesMax);
      if (gz === undefined) continue; // would outgrow the attachment limit: kept identity
      attachments[i] = { ...att, data: gz, encoding: 'gzip', length: att.data.length, digest };
      continue;
    }
    const claimed = parsed.encodedDigests?.get(att.name);
    if (claimed === undefined || att.encoding !== 'gzip' || claimed === attachmentDigest(att.data)) continue;
    const plain = await decompressAttachment(att.data, settings.attachmentBytesMax);
    if (plain !== undefined && plain.length === att.length && attachmentDigest(plain) === claimed) attachments[i] = { ...att, digest: claimed };
  }
}

/**
 * A replicated edit's path, newest first. `_revisions` wins over `_rev` (CouchDB's
 * rule); a revision is (pos, hash), so repeated hashes at different depths are fine.
 */
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
  // Like CouchDB, `_revisions` names the revision and `_rev` is then ignored. They
  // disagree in real traffic: PouchDB finds a revision's place in its history by
  // hash alone, so for a history like 1-a → 2-c → 3-c it sends `_rev: "3-c"` with
  // the `_revisions` of 2-c; CouchDB stores 2-c, and so do we.
  return path;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function parseAttachments(
  value: unknown,
  limits: DocInputLimits,
  followed: Map<string, Buffer> | undefined,
  encodedDigests: Map<string, string>,
): AttachmentInput[] {
  if (!isPlainObject(value)) throw new BadRequestError('_attachments must be an object', 'bad_request');
  const out: AttachmentInput[] = [];
  for (const [name, spec] of Object.entries(value)) {
    if (name.length === 0 || name.startsWith('_') || LONE_SURROGATE.test(name)) {
      throw new BadRequestError(`Attachment name ${JSON.stringify(name)} is not allowed`, 'bad_request');
    }
    if (!isPlainObject(spec)) throw new BadRequestError(`Attachment ${name} must be an object`, 'bad_request');
    const contentType = typeof spec.content_type === 'string' ? checkContentType(spec.content_type) : 'application/octet-stream';
    const revpos = Number.isSafeInteger(spec.revpos) ? (spec.revpos as number) : undefined;
    if (spec.stub === true) {
      const stub: AttachmentInput = { kind: 'stub', name };
      if (typeof spec.digest === 'string') stub.digest = spec.digest;
      if (revpos !== undefined) stub.revpos = revpos;
      if (typeof spec.content_type === 'string') stub.contentType = spec.content_type;
      if (Number.isSafeInteger(spec.length)) stub.length = spec.length as number;
      const encoding = attachmentEncoding(spec.encoding, name);
      if (encoding !== undefined) {
        stub.encoding = encoding;
        if (Number.isSafeInteger(spec.encoded_length)) stub.encodedLength = spec.encoded_length as number;
      }
      out.push(stub);
      continue;
    }
    let data: Buffer;
    let encoded: { encoding: string; length: number } | undefined;
    if (spec.follows === true) {
      const part = followed?.get(name);
      if (!part) throw new BadRequestError(`Attachment ${name} says it follows, but no part holds it`, 'bad_request');
      data = part;
      // As CouchDB: only a following part may be sent in its stored (encoded) form;
      // inline `data` is always the identity bytes.
      const encoding = attachmentEncoding(spec.encoding, name);
      if (encoding !== undefined) {
        encoded = { encoding, length: identityLength(data, spec.length, name, limits) };
        if (typeof spec.digest === 'string') encodedDigests.set(name, spec.digest);
      }
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
    if (encoded !== undefined) {
      att.encoding = encoded.encoding;
      att.length = encoded.length;
    }
    out.push(att);
  }
  return out;
}

/**
 * Characters a header value cannot hold (Node's rule: tab, printable ASCII and
 * U+0080..U+00FF only). An attachment's type is served as its Content-Type header, so a
 * type with any other character is refused on write rather than failing every read.
 */
const HEADER_VALUE_INVALID = /[^\t\u0020-\u007e\u0080-\u00ff]/;

/** An attachment content type, checked to be a valid header value. */
export function checkContentType(value: string): string {
  if (HEADER_VALUE_INVALID.test(value)) {
    throw new BadRequestError(`Attachment content type ${JSON.stringify(value)} is not a valid header value`, 'bad_request');
  }
  return value;
}

/** The stored encoding a stub or part declares: undefined for identity; only gzip is kept encoded. */
function attachmentEncoding(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null || value === 'identity') return undefined;
  if (value === 'gzip') return 'gzip';
  throw new BadRequestError(`Attachment ${name} has unsupported encoding ${JSON.stringify(value)}; only gzip and identity are supported`, 'bad_request');
}

/**
 * The identity length of a gzip part: the stub's `length`, which CouchDB always sends
 * with an encoded part (measuring it would mean decompressing on the event loop).
 * The bytes must at least start like gzip (RFC 1952 magic), so a mislabelled identity
 * part is refused instead of being served through a failing decoder.
 */
function identityLength(data: Buffer, declared: unknown, name: string, limits: DocInputLimits): number {
  if (data.length < 2 || data[0] !== 0x1f || data[1] !== 0x8b) {
    throw new BadRequestError(`Attachment ${name} says it is gzip-encoded, but its bytes are not gzip`, 'bad_request');
  }
  if (!Number.isSafeInteger(declared) || (declared as number) < 0) {
    throw new BadRequestError(`Attachment ${name} is gzip-encoded but gives no identity length`, 'bad_request');
  }
  if ((declared as number) > limits.attachmentBytesMax) throw new TooLargeError(`Attachment ${name} is too large`, 'attachment_too_large');
  return declared as number;
}

/** A revision from `?rev=`, `If-Match` or `_rev`, checked. */
export function checkRev(rev: string): string {
  parseRev(rev);
  return rev;
}

export interface ParsedLocalDoc {
  /** The `_rev` the client sent, if any (checked: `0-N`, or any well-formed rev). */
  rev: string | undefined;
  /** The body to store as JSON text, or null to delete (`_deleted: true`). */
  body: string | null;
}

const LOCAL_REV = /^0-[0-9]{1,15}$/;

/** A local doc's rev from a client: CouchDB's `0-N`, or any rev of the usual form (which then simply does not match). */
export function checkLocalRev(rev: string): string {
  if (!LOCAL_REV.test(rev)) parseRev(rev);
  return rev;
}

/**
 * A `_local` document as CouchDB takes it: the same special members as any document
 * are allowed (others are refused), but only the plain members (and the replication
 * ones) are stored: local docs keep no `_attachments` and no `_revisions`.
 */
export function parseLocalDoc(json: Record<string, unknown>, limits: DocInputLimits): ParsedLocalDoc {
  const body = bodyMembers(json);
  const rev = json._rev === undefined || json._rev === null ? undefined : checkLocalRev(String(json._rev));
  if (json._deleted === true) return { rev, body: null };
  const text = stringifyJson(body);
  if (Buffer.byteLength(text, 'utf8') > limits.docBytesMax) throw new TooLargeError(String(json._id ?? ''), 'document_too_large');
  return { rev, body: text };
}
