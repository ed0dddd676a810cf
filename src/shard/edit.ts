/**
 * Applying one document edit to a document's revision tree: the decision part of a
 * shard update, with I/O pushed out to two callbacks (read a revision body, look an
 * attachment up by digest). The shard updater calls it once per edit, in order, on
 * the tree as left by earlier edits of the same batch.
 *
 * Interactive edits follow CouchDB: `baseRev` must be a leaf (else conflict); with no
 * `baseRev` the document must be new or deleted, and the new revision then extends
 * the deleted winner. Replicated edits merge their path and never conflict; a
 * revision already stored is a no-op success.
 */
import { ConflictError, DivanError, PreconditionFailedError } from '../errors';
import { stringifyJson } from '../json';
import { attachmentDigest, revHash } from './render';
import { attachmentName } from '../storage/keys';
import { checkPath, compareForWinner, emptyTree, isLeaf, leaves, mergePathOwned, OwnedMerge, rememberSortedLeaves, RevId, RevNode, RevTree } from './rev-tree';
import type { AttachmentInput, AttachmentStub, DocEdit, DocInfo } from './types';

export interface EditContext {
  revsLimit: number;
  /** A stored revision body (JSON text), or undefined. */
  readBody(id: string, rev: RevId): Promise<string | undefined>;
  /** Whether an attachment with this digest is stored on this copy, in this form (undefined: identity). */
  hasAttachment(digest: string, encoding: string | undefined): Promise<boolean>;
}

export type EditOutcome =
  | { kind: 'error'; error: DivanError }
  /** Replicated revision already stored: nothing to write. */
  | { kind: 'noop'; rev: RevId }
  | {
      kind: 'write';
      rev: RevId;
      tree: RevTree;
      winner: RevNode;
      body: string;
      newAttachments: NewAttachment[];
      /** Bodies no longer needed: revisions stemmed out of the tree. */
      dropBodies: RevId[];
      /** Stored names (keys.attachmentName) of every attachment the new revision refers to. */
      digests: string[];
    };

/** Bytes an edit brings, stored under their digest and form. */
export interface NewAttachment {
  digest: string;
  data: Buffer;
  encoding?: string;
}

export async function applyEdit(info: DocInfo | undefined, edit: DocEdit, ctx: EditContext): Promise<EditOutcome> {
  try {
    return edit.revs ? await applyReplicated(info, edit, edit.revs, ctx) : await applyInteractive(info, edit, ctx);
  } catch (err) {
    if (err instanceof DivanError) return { kind: 'error', error: err };
    throw err;
  }
}

async function applyInteractive(info: DocInfo | undefined, edit: DocEdit, ctx: EditContext): Promise<EditOutcome> {
  const tree = info?.tree ?? emptyTree();
  let parent: RevId | null;
  if (edit.baseRev !== undefined) {
    if (!isLeaf(tree, edit.baseRev)) return { kind: 'error', error: new ConflictError() };
    parent = edit.baseRev;
  } else if (info && !info.winner.deleted) {
    return { kind: 'error', error: new ConflictError() };
  } else {
    parent = info ? info.winner.rev : null;
  }
  const pos = parent === null ? 1 : Number(parent.slice(0, parent.indexOf('-'))) + 1;
  const parentBody = async () => (parent === null ? undefined : ctx.readBody(edit.id, parent));
  const { stubs, newAttachments } = await resolveAttachments(edit, pos, parentBody, ctx);
  const body = serializeBody(edit, stubs);
  const rev = `${pos}-${revHash({ deleted: edit.deleted, parent, body })}`;
  if (tree.has(rev)) return { kind: 'error', error: new ConflictError() };
  const merged = mergePathOwned(tree, { revs: parent === null ? [rev] : [rev, parent], deleted: edit.deleted, hasBody: true }, ctx.revsLimit);
  return finish(tree, merged, rev, body, stubs, newAttachments);
}

async function applyReplicated(
  info: DocInfo | undefined,
  edit: DocEdit,
  revs: RevId[],
  ctx: EditContext,
): Promise<EditOutcome> {
  checkPath(revs);
  const tree = info?.tree ?? emptyTree();
  const rev = revs[0]!;
  if (tree.get(rev)?.hasBody) return { kind: 'noop', rev };
  const pos = Number(rev.slice(0, rev.indexOf('-')));
  const parent = revs[1];
  const parentBody = async () => (parent === undefined ? undefined : ctx.readBody(edit.id, parent));
  const { stubs, newAttachments } = await resolveAttachments(edit, pos, parentBody, ctx);
  const body = serializeBody(edit, stubs);
  const merged = mergePathOwned(tree, { revs, deleted: edit.deleted, hasBody: true }, ctx.revsLimit);
  if (!merged.added) return { kind: 'noop', rev };
  return finish(tree, merged, rev, body, stubs, newAttachments);
}

/**
 * The write outcome of a merged edit. `before` (shared: a cached doc info's tree) is
 * only read; `merged.tree` is the merge's own new map, so the new revision's size goes
 * straight into it and the result's leaves are recorded for encodeDocInfo and the next
 * edit of the batch.
 */
function finish(
  before: RevTree,
  merged: OwnedMerge,
  rev: RevId,
  body: string,
  stubs: Record<string, AttachmentStub> | null,
  newAttachments: NewAttachment[],
): EditOutcome {
  const tree = merged.tree;
  // Every revision keeps its body until compaction, as in CouchDB (`?rev=` of an older
  // one answers it); only revisions stemmed out of the tree lose theirs now.
  const dropBodies: RevId[] = [];
  if (merged.stemmed) for (const node of before.values()) if (node.hasBody && !tree.has(node.rev)) dropBodies.push(node.rev);
  const bodyBytes = Buffer.byteLength(body, 'utf8');
  let external = bodyBytes;
  let active = bodyBytes;
  const digests: string[] = [];
  for (const stub of stubs === null ? [] : Object.values(stubs)) {
    external += stub.length;
    active += stub.encoded_length ?? stub.length;
    digests.push(attachmentName(stub.digest, stub.encoding));
    // Encoded bytes stored before forms were kept apart sit under the bare digest.
    if (stub.encoding !== undefined) digests.push(stub.digest);
  }
  const plain = tree.get(rev)!;
  // Spelled out, not spread: a spread-built node has a slower shape than decodeTree's
  // (measured: spreading in decodeTree made decode+edit+encode ~3x slower).
  const node: RevNode = { rev, pos: plain.pos, parent: plain.parent, deleted: plain.deleted, hasBody: plain.hasBody, size: { external, active } };
  tree.set(rev, node);
  const found = merged.leaves ?? leaves(tree);
  const at = found.findIndex((leaf) => leaf.rev === rev);
  if (at !== -1) found[at] = node;
  found.sort(compareForWinner);
  rememberSortedLeaves(tree, found);
  return { kind: 'write', rev, tree, winner: found[0]!, body, newAttachments, dropBodies, digests };
}

function serializeBody(edit: DocEdit, stubs: Record<string, AttachmentStub> | null): string {
  const json = edit.bodyJson ?? stringifyJson(edit.body);
  if (stubs === null) return json;
  return json.slice(0, -1) + (json.length > 2 ? ',' : '') + '"_attachments":' + JSON.stringify(stubs) + '}';
}

async function resolveAttachments(
  edit: DocEdit,
  pos: number,
  parentBody: () => Promise<string | undefined>,
  ctx: EditContext,
): Promise<{ stubs: Record<string, AttachmentStub> | null; newAttachments: NewAttachment[] }> {
  if (edit.attachments === null) return { stubs: null, newAttachments: [] };
  const stubs: Record<string, AttachmentStub> = {};
  const newAttachments: NewAttachment[] = [];
  let previous: Record<string, AttachmentStub> | undefined;
  for (const att of edit.attachments) {
    if (att.kind === 'data') {
      // The digest is of the stored bytes (gzip ones when encoded), as CouchDB's.
      const digest = att.digest ?? attachmentDigest(att.data);
      const stub: AttachmentStub = {
        content_type: att.contentType,
        digest,
        length: att.encoding !== undefined ? att.length! : att.data.length,
        // New bytes in an interactive edit belong to the new revision, whatever revpos
        // the client sent (CouchDB's set_new_att_revpos); a replicated edit keeps its own.
        revpos: edit.revs ? (att.revpos ?? pos) : pos,
        stub: true,
      };
      if (att.encoding !== undefined) {
        stub.encoding = att.encoding;
        stub.encoded_length = att.data.length;
      }
      stubs[att.name] = stub;
      newAttachments.push({ digest, data: att.data, ...(att.encoding !== undefined ? { encoding: att.encoding } : {}) });
      continue;
    }
    previous ??= await previousAttachments(parentBody);
    stubs[att.name] = await resolveStub(att, previous, ctx);
  }
  return { stubs, newAttachments };
}

async function previousAttachments(parentBody: () => Promise<string | undefined>): Promise<Record<string, AttachmentStub>> {
  const text = await parentBody();
  if (text === undefined) return {};
  const parsed = JSON.parse(text) as { _attachments?: Record<string, AttachmentStub> };
  return parsed._attachments ?? {};
}

async function resolveStub(
  att: Extract<AttachmentInput, { kind: 'stub' }>,
  previous: Record<string, AttachmentStub>,
  ctx: EditContext,
): Promise<AttachmentStub> {
  const known = Object.hasOwn(previous, att.name) ? previous[att.name] : undefined; // own members only: names are user input
  if (known && (att.digest === undefined || att.digest === known.digest)) return known;
  if (att.digest !== undefined && att.contentType !== undefined && att.length !== undefined && (await ctx.hasAttachment(att.digest, att.encoding))) {
    const stub: AttachmentStub = { content_type: att.contentType, digest: att.digest, length: att.length, revpos: att.revpos ?? 1, stub: true };
    if (att.encoding !== undefined && att.encodedLength !== undefined) {
      stub.encoding = att.encoding;
      stub.encoded_length = att.encodedLength;
    }
    return stub;
  }
  throw new PreconditionFailedError(`Invalid attachment stub in ${JSON.stringify(att.name)}`, 'missing_stub');
}
