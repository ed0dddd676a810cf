/**
 * Rendering a stored revision as the JSON text CouchDB clients receive.
 *
 * Bodies are stored as JSON text without `_id`, `_rev` and `_deleted` (attachments
 * are stored as stubs). The common read adds those fields by string concatenation,
 * with no parse and no re-serialisation: the body is spliced after the leading
 * fields. Reads that must change the body (attachments inline, `_revisions`...) go
 * through `renderDocObject`.
 */
import * as crypto from 'node:crypto';
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
/**
 * One-shot md5 (Node 20.12+: one native call instead of a Hash object and five
 * updates; measured 6.9% of `_bulk_docs` in loadtest/PROFILE.md), with the streaming
 * form where it is missing. Both hash the same UTF-8 bytes.
 */
const md5Hex: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (text) => (crypto as unknown as { hash(algorithm: string, data: string, encoding: 'hex'): string }).hash('md5', text, 'hex')
    : (text) => crypto.createHash('md5').update(text).digest('hex');

export function revHash(input: { deleted: boolean; parent: RevId | null; body: string }): string {
  return md5Hex((input.deleted ? '1\n' : '0\n') + (input.parent ?? '') + '\n' + input.body);
}

export function attachmentDigest(data: Buffer): string {
  return 'md5-' + crypto.createHash('md5').update(data).digest('base64');
}
