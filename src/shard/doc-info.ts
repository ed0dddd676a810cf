/**
 * How a document's info is stored under its id:
 *
 *   <leaves>\n<id as JSON>\n{"seq":N,"tree":<encoded tree>}
 *
 * and under its seq, only the first two lines (`seqRecord`): scans by seq never need
 * the tree (records written before this version hold all three lines; readers read
 * the first two either way).
 *
 * `leaves` is every leaf rev, winner first then in winner order, each followed by
 * `!` when deleted, separated by spaces. Scans that need only the winner and the
 * leaves (`_all_docs`, `_changes` without docs) read the first two lines and never
 * parse the tree; the id is kept JSON-encoded so rows can be written without
 * re-encoding it. Rev ids never contain spaces, `!` or newlines (parseRev).
 */
import assert from 'node:assert/strict';
import { decodeTree, encodeTree, EncodedTree, RevId, RevNode, sortedLeavesShared } from './rev-tree';
import type { DocInfo } from './types';

export interface DocSummary {
  /** The doc id, JSON-encoded (a string literal with quotes). */
  idJson: string;
  winnerRev: RevId;
  deleted: boolean;
  /** Leaves in winner order (winner first). */
  leaves: { rev: RevId; deleted: boolean }[];
}

function leavesLine(sorted: readonly RevNode[]): string {
  if (sorted.length === 1) return sorted[0]!.deleted ? sorted[0]!.rev + '!' : sorted[0]!.rev;
  return sorted.map((leaf) => (leaf.deleted ? leaf.rev + '!' : leaf.rev)).join(' ');
}

export function encodeDocInfo(info: DocInfo): string {
  return leavesLine(sortedLeavesShared(info.tree)) + '\n' + JSON.stringify(info.id) + '\n' + JSON.stringify({ seq: info.seq, tree: encodeTree(info.tree) });
}

/** The by-seq record of a doc info: its first two lines (leaves and id), all that scans read. */
export function seqRecord(encoded: string): string {
  return encoded.slice(0, encoded.indexOf('\n', encoded.indexOf('\n') + 1) + 1);
}

/** Bytes a document's two records take (by id and by seq), from its by-id record. */
export function storedRecordBytes(record: Buffer | string): number {
  if (typeof record === 'string') return Buffer.byteLength(record, 'utf8') + Buffer.byteLength(seqRecord(record), 'utf8');
  return record.length + record.indexOf(10, record.indexOf(10) + 1) + 1;
}

export function decodeDocInfo(raw: Buffer): DocInfo {
  const first = raw.indexOf(10);
  const second = raw.indexOf(10, first + 1);
  assert.ok(first > 0 && second > first, 'stored doc info is malformed');
  const id = JSON.parse(raw.toString('utf8', first + 1, second)) as string;
  const parsed = JSON.parse(raw.toString('utf8', second + 1)) as { seq: number; tree: EncodedTree };
  if (typeof id !== 'string' || !Number.isSafeInteger(parsed.seq) || parsed.seq < 0) assert.fail('stored doc info is corrupt: no id or seq');
  let tree: DocInfo['tree'];
  try {
    tree = decodeTree(parsed.tree);
  } catch (err) {
    assert.fail(`document ${JSON.stringify(id)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const sorted = sortedLeavesShared(tree); // found by decodeTree, no second pass
  const best = sorted[0];
  if (!best) assert.fail(`stored rev tree of ${JSON.stringify(id)} is corrupt: it is empty`);
  // The leaves line is what scans serve without parsing the tree: it must agree.
  if (raw.toString('utf8', 0, first) !== leavesLine(sorted)) {
    assert.fail(`stored rev tree of ${JSON.stringify(id)} is corrupt: its leaves line disagrees with it`);
  }
  return { id, seq: parsed.seq, tree, winner: best };
}

/** The summary of a stored doc info, given as text (scans) or bytes. */
export function decodeSummary(stored: Buffer | string): DocSummary {
  const raw = typeof stored === 'string' ? stored : stored.toString('utf8');
  const first = raw.indexOf('\n');
  const second = raw.indexOf('\n', first + 1);
  assert.ok(first > 0 && second > first, 'stored doc info is malformed');
  const idJson = raw.slice(first + 1, second);
  const space = raw.indexOf(' ');
  if (space < 0 || space > first) {
    // One leaf: the common case, without splitting.
    const deleted = raw.charCodeAt(first - 1) === 0x21;
    const rev = raw.slice(0, deleted ? first - 1 : first);
    return { idJson, winnerRev: rev, deleted, leaves: [{ rev, deleted }] };
  }
  const leaves = raw
    .slice(0, first)
    .split(' ')
    .map((text) => (text.endsWith('!') ? { rev: text.slice(0, -1), deleted: true } : { rev: text, deleted: false }));
  const winner = leaves[0]!;
  return { idJson, winnerRev: winner.rev, deleted: winner.deleted, leaves };
}
