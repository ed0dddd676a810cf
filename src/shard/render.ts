/**
 * Rendering a stored revision as the JSON text CouchDB clients receive.
 *
 * Bodies are stored as JSON text without `_id`, `_rev` and `_deleted` (attachments
 * are stored as stubs). The common read adds those fields by string concatenation,
 * with no parse and no re-serialisation: the body is spliced after the leading
 * fields. Reads that must change the body (attachments inline, `_revisions`...) go
 * through `renderDocObject`.
 */
import { createHash } from 'node:crypto';
import type { RevId } from './rev-tree';

export interface RenderExtras {
  deleted?: boolean;
  /** Fields appended after the body (`_conflicts`, `_revisions`, `_local_seq`...), already JSON values. */
  tail?: [string, unknown][];
}

export function renderDoc(id: string, rev: RevId, body: string, extras: RenderExtras = {}): string {
  let out = '{"_id":' + JSON.stringify(id) + ',"_rev":' + JSON.stringify(rev);
  if (extras.deleted) out += ',"_deleted":true';
  if (body.length > 2) out += ',' + body.slice(1, -1);
  if (extras.tail) for (const [name, value] of extras.tail) out += ',' + JSON.stringify(name) + ':' + JSON.stringify(value);
  return out + '}';
}

/** `_conflicts` of a revision: the other live leaves, in winner order. */
export function conflictRevs(sortedLeaves: readonly { rev: RevId; deleted: boolean }[], shown: RevId): RevId[] {
  return sortedLeaves.filter((leaf) => !leaf.deleted && leaf.rev !== shown).map((leaf) => leaf.rev);
}

/** Deterministic revision hash: the same edit makes the same rev on every copy. */
export function revHash(input: { deleted: boolean; parent: RevId | null; body: string }): string {
  return createHash('md5')
    .update(input.deleted ? '1' : '0')
    .update('\n')
    .update(input.parent ?? '')
    .update('\n')
    .update(input.body)
    .digest('hex');
}

export function attachmentDigest(data: Buffer): string {
  return 'md5-' + createHash('md5').update(data).digest('base64');
}
