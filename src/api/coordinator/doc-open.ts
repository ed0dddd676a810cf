/**
 * Document reads: `GET /db/doc` with its options, `open_revs`, `_bulk_get`, and the
 * revision lookups behind `_revs_diff` and attachment reads.
 *
 * A read asks the copies of the document's range, waits for `r` of them, and merges
 * their revision trees, so the answer holds every revision any of them acknowledged.
 * The body comes from a copy that has it.
 */
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { NotFoundError } from '../../errors';
import { parseStoredJson, stringifyJson } from '../../json';
import { rangeIndexOf } from '../../ring/ranges';
export type { ReadOptions };
import { conflictRevs, renderDoc } from '../../shard/render';
import { ancestry, leavesFrom, RevId, RevNode, sortedLeaves } from '../../shard/rev-tree';
import type { AttachmentStub, DocInfo } from '../../shard/types';
import { readDocInfos, ReadOptions } from './doc-infos';
import type { DbHandle, RangeCopies, ShardClient } from './shard-client';

export interface RenderOptions {
  revs: boolean;
  revsInfo: boolean;
  conflicts: boolean;
  deletedConflicts: boolean;
  localSeq: boolean;
  /** Inline attachment data (base64) instead of stubs. */
  attachments: boolean;
  /** With attachments: only those changed after one of these revisions. */
  attsSince?: RevId[];
  /**
   * `att_encoding_info`: show `encoding`/`encoded_length` of attachments stored
   * encoded, and inline their stored (encoded) bytes; otherwise stubs look identity
   * and inline data is decoded, as CouchDB renders them.
   */
  attEncodingInfo?: boolean;
}

export const plainRender: RenderOptions = {
  revs: false,
  revsInfo: false,
  conflicts: false,
  deletedConflicts: false,
  localSeq: false,
  attachments: false,
};

export function rangeFor(db: DbHandle, id: string): RangeCopies {
  return db.ranges[rangeIndexOf(id, db.q)]!;
}

/** The merged doc info of `id` over r copies, or undefined when no copy has it. */
export async function readDocInfo(db: DbHandle, id: string, options: ReadOptions): Promise<DocInfo | undefined> {
  return (await readDocInfos(db, [id], options))[0];
}

/** Read a revision body from the first copy of the doc's range that has it. */
export async function readBody(db: DbHandle, id: string, rev: RevId): Promise<string | undefined> {
  for (const copy of rangeFor(db, id).copies) {
    const body = await copy.readBody(id, rev).catch(() => undefined);
    if (body !== undefined) return body;
  }
  return undefined;
}

/** The stored bytes of an attachment, in the form its stub says (`stub.encoding`). */
export async function readAttachment(db: DbHandle, id: string, stub: Pick<AttachmentStub, 'digest' | 'encoding'>): Promise<Buffer | undefined> {
  for (const copy of rangeFor(db, id).copies) {
    const data = await copy.readAttachment(stub.digest, stub.encoding).catch(() => undefined);
    if (data !== undefined) return data;
  }
  return undefined;
}

/** The revision `GET /db/doc` answers: the given rev, or the winner if not deleted. */
export function chooseRevision(info: DocInfo | undefined, rev: RevId | undefined): RevNode {
  if (!info) throw new NotFoundError('missing');
  if (rev === undefined) {
    if (info.winner.deleted) throw new NotFoundError('deleted');
    return info.winner;
  }
  const node = info.tree.get(rev);
  if (!node || !node.hasBody) throw new NotFoundError('missing');
  return node;
}

/** Render one revision with CouchDB's read options, as JSON text. */
export async function renderRevision(
  db: DbHandle,
  info: DocInfo,
  node: RevNode,
  body: string,
  options: RenderOptions,
): Promise<string> {
  const tail: [string, unknown][] = [];
  // Sorting the leaves costs a walk of the tree: only for the options that show them.
  const leaves = options.conflicts || options.deletedConflicts ? sortedLeaves(info.tree) : [];
  if (options.conflicts) {
    const conflicts = conflictRevs(leaves, node.rev);
    if (conflicts.length > 0) tail.push(['_conflicts', conflicts]);
  }
  if (options.deletedConflicts) {
    const deleted = leaves.filter((l) => l.deleted && l.rev !== node.rev).map((l) => l.rev);
    if (deleted.length > 0) tail.push(['_deleted_conflicts', deleted]);
  }
  if (options.localSeq) tail.push(['_local_seq', info.seq]);
  if (options.revsInfo) {
    tail.push([
      '_revs_info',
      ancestry(info.tree, node.rev).map((rev) => {
        const n = info.tree.get(rev)!;
        return { rev, status: n.deleted ? 'deleted' : n.hasBody ? 'available' : 'missing' };
      }),
    ]);
  }
  if (options.revs) tail.push(['_revisions', revisionsOf(info, node.rev)]);
  if (!body.includes('"_attachments"') || (!options.attachments && (options.attEncodingInfo || !hasEncodedStub(body)))) {
    return renderDoc(info.id, node.rev, body, { deleted: node.deleted, tail });
  }
  const parsed = parseStoredJson(body) as Record<string, unknown>;
  const stubs = (parsed._attachments ?? {}) as Record<string, AttachmentStub>;
  parsed._attachments = options.attachments
    ? await inlineAttachments(db, info.id, stubs, attachmentsKnownPos(info, options.attsSince), options.attEncodingInfo === true)
    : shownStubs(stubs, options.attEncodingInfo === true);
  return renderDoc(info.id, node.rev, stringifyJson(parsed), { deleted: node.deleted, tail });
}

/** Cheap test before a parse: only stubs of encoded attachments carry `encoded_length`. */
function hasEncodedStub(json: string): boolean {
  return json.includes('"encoded_length"');
}

/** A stub as a reader sees it: without the encoding fields unless `att_encoding_info`. */
export function shownStub(stub: AttachmentStub, showEncoding: boolean): AttachmentStub {
  if (showEncoding || stub.encoding === undefined) return stub;
  const { encoding: _encoding, encoded_length: _encodedLength, ...rest } = stub;
  return rest;
}

function shownStubs(stubs: Record<string, AttachmentStub>, showEncoding: boolean): Record<string, AttachmentStub> {
  const out: Record<string, AttachmentStub> = {};
  for (const [name, stub] of Object.entries(stubs)) out[name] = shownStub(stub, showEncoding);
  return out;
}

const gunzipAsync = promisify(gunzip) as (data: Buffer, options: { maxOutputLength: number }) => Promise<Buffer>;

/**
 * The identity bytes of a stored attachment: decoded on the thread pool when stored
 * gzip, bounded by `bytesMax` (a corrupt stored length cannot make it unbounded).
 */
export async function identityBytes(stub: AttachmentStub, data: Buffer, bytesMax: number): Promise<Buffer> {
  if (stub.encoding === undefined) return data;
  return gunzipAsync(data, { maxOutputLength: Math.max(1, bytesMax) });
}

/**
 * Re-render a document's JSON text (a `_all_docs` or `_changes` row's `doc`) for
 * `attachments=true` (data inline) or to hide encoding fields; untouched when neither
 * applies, so the common row costs one substring test.
 */
export async function renderRowDoc(
  db: DbHandle,
  docJson: string,
  options: { attachments: boolean; attEncodingInfo: boolean },
): Promise<string> {
  if (!docJson.includes('"_attachments"')) return docJson;
  if (!options.attachments && (options.attEncodingInfo || !hasEncodedStub(docJson))) return docJson;
  const parsed = parseStoredJson(docJson) as Record<string, unknown>;
  const stubs = parsed._attachments as Record<string, AttachmentStub> | undefined;
  if (stubs === undefined || typeof parsed._id !== 'string') return docJson;
  parsed._attachments = options.attachments
    ? await inlineAttachments(db, parsed._id, stubs, 0, options.attEncodingInfo)
    : shownStubs(stubs, options.attEncodingInfo);
  return stringifyJson(parsed);
}

export function revisionsOf(info: DocInfo, rev: RevId): { start: number; ids: string[] } {
  const path = ancestry(info.tree, rev);
  return { start: info.tree.get(rev)!.pos, ids: path.map((r) => r.slice(r.indexOf('-') + 1)) };
}

/** Attachments past `knownPos` with their data inline (base64); the others stay stubs. */
async function inlineAttachments(
  db: DbHandle,
  id: string,
  stubs: Record<string, AttachmentStub>,
  knownPos: number,
  showEncoding: boolean,
): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [name, stub] of Object.entries(stubs)) {
    if (stub.revpos <= knownPos) {
      out[name] = shownStub(stub, showEncoding);
      continue;
    }
    const stored = await readAttachment(db, id, stub);
    if (!stored) throw new NotFoundError(`attachment ${name} is missing its data`);
    const inline: Record<string, unknown> = { content_type: stub.content_type, revpos: stub.revpos, digest: stub.digest, length: stub.length };
    // Inline data is always the identity bytes (as CouchDB writes it, and reads it back).
    inline.data = (await identityBytes(stub, stored, Math.max(stub.length, stored.length))).toString('base64');
    if (showEncoding && stub.encoding !== undefined) {
      inline.encoding = stub.encoding;
      inline.encoded_length = stub.encoded_length;
    }
    out[name] = inline;
  }
  return out;
}

/**
 * `atts_since`: attachments with revpos at or below the newest of the given revisions
 * that this document knows are ones the client already has (sent as stubs).
 */
export function attachmentsKnownPos(info: DocInfo, attsSince: RevId[] | undefined): number {
  let knownPos = 0;
  for (const rev of attsSince ?? []) {
    const node = info.tree.get(rev);
    if (node) knownPos = Math.max(knownPos, node.pos);
  }
  return knownPos;
}

export type OpenRevResult = { kind: 'ok'; rev: RevId; doc: string } | { kind: 'missing'; rev: RevId };

export interface OpenRevsItem {
  info: DocInfo | undefined;
  revs: RevId[] | 'all';
  latest: boolean;
  options: RenderOptions;
}

/** `open_revs`: the given revisions (or all leaves), each rendered or reported missing. */
export async function openRevs(
  db: DbHandle,
  info: DocInfo | undefined,
  revs: RevId[] | 'all',
  latest: boolean,
  options: RenderOptions,
): Promise<OpenRevResult[]> {
  return (await openRevsMany(db, [{ info, revs, latest, options }]))[0]!;
}

/**
 * `open_revs` for many documents at once (`_bulk_get`): every body is fetched with
 * one multi-get per range instead of one read per revision.
 */
export async function openRevsMany(db: DbHandle, items: OpenRevsItem[]): Promise<OpenRevResult[][]> {
  const wanted = items.map((item) => wantedRevs(item));
  const refs: { id: string; rev: RevId }[] = [];
  items.forEach((item, i) => {
    for (const rev of wanted[i]!) if (item.info?.tree.get(rev)?.hasBody) refs.push({ id: item.info.id, rev });
  });
  const bodies = await readBodiesMany(db, refs);
  const out: OpenRevResult[][] = [];
  for (let i = 0; i < items.length; i++) {
    const { info, options } = items[i]!;
    const results: OpenRevResult[] = [];
    for (const rev of wanted[i]!) {
      const node = info?.tree.get(rev);
      const body = node ? bodies.get(info!.id + '\u0000' + rev) : undefined;
      if (!info || !node || body === undefined) results.push({ kind: 'missing', rev });
      else results.push({ kind: 'ok', rev, doc: await renderRevision(db, info, node, body, options) });
    }
    out.push(results);
  }
  return out;
}

function wantedRevs(item: OpenRevsItem): RevId[] {
  const { info, revs, latest } = item;
  if (revs === 'all') return info ? sortedLeaves(info.tree).map((l) => l.rev) : [];
  if (!latest || !info) return revs;
  const out: RevId[] = [];
  for (const rev of revs) {
    const descendants = info.tree.has(rev) ? leavesFrom(info.tree, rev).map((l) => l.rev) : [rev];
    for (const d of descendants) if (!out.includes(d)) out.push(d);
  }
  return out;
}

/** Bodies keyed `id\0rev`: one multi-get per range on its first copy, then the other copies for what it lacks. */
async function readBodiesMany(db: DbHandle, refs: { id: string; rev: RevId }[]): Promise<Map<string, string>> {
  const byRange = new Map<RangeCopies, { id: string; rev: RevId }[]>();
  for (const ref of refs) {
    const range = rangeFor(db, ref.id);
    const list = byRange.get(range);
    if (list) list.push(ref);
    else byRange.set(range, [ref]);
  }
  const out = new Map<string, string>();
  await Promise.all(
    [...byRange].map(async ([range, list]) => {
      const bodies = await range.copies[0]!.readBodies(list).catch(() => list.map(() => undefined));
      for (let i = 0; i < list.length; i++) {
        const ref = list[i]!;
        const body = bodies[i] ?? (await readBody(db, ref.id, ref.rev));
        if (body !== undefined) out.set(ref.id + '\u0000' + ref.rev, body);
      }
    }),
  );
  return out;
}

export type { ShardClient };
