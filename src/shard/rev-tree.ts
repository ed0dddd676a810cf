/**
 * Revision trees: the edit history of one document.
 *
 * A revision id is `<pos>-<hash>`: `pos` is the revision's depth counted from the
 * document's first edit (1), so a parent always has `pos - 1`. We keep the tree flat:
 * a map from rev to node `{ parent, deleted, hasBody }`. `parent` is null for a root:
 * the first edit, or a revision whose ancestors were stemmed away or never seen.
 * `hasBody` is false for ancestors known only by id (replication sends paths of ids
 * and one body, for the leaf).
 *
 * Because a rev id names its own depth, merging two trees is a union of nodes (a
 * known parent beats an unknown one, a body beats none), which makes merge
 * commutative, associative and idempotent. Stemming then keeps, for every leaf, the
 * last `revsLimit` revisions of its path: a pure function of the merged set.
 *
 * Leaves are nodes nobody names as parent. More than one live leaf is a conflict.
 * The winner is the same on every copy: the non-deleted leaf with the highest pos,
 * ties broken by the greater rev id; a deleted leaf wins only when all leaves are
 * deleted.
 *
 * Used by shard updates (interactive and replicated edits), reads and shard sync.
 * No I/O. Parent chains are walked with loops, never recursion.
 */
import assert from 'node:assert/strict';
import { BadRequestError } from '../errors';

export type RevId = string;

export interface RevNode {
  readonly rev: RevId;
  readonly pos: number;
  readonly parent: RevId | null;
  readonly deleted: boolean;
  readonly hasBody: boolean;
  /**
   * What the revision's body takes, set when it is written (absent on revisions known
   * only by id and on bodies stored before sizes were kept): `external` is the body's
   * JSON plus its attachments' identity lengths, `active` the body plus the stored
   * (encoded) attachment bytes. Deterministic from the edit, so every copy agrees.
   */
  readonly size?: NodeSize;
}

export interface NodeSize {
  readonly external: number;
  readonly active: number;
}

export type RevTree = ReadonlyMap<RevId, RevNode>;

/** Longest revision id we accept (pos digits + dash + hash). */
export const revIdBytesMax = 200;

/**
 * The hash may be empty: CouchDB parses `1-` as (1, "") and a replicated `1-` is
 * stored and served as such (PouchDB's test 7829). An interactive edit naming `1-`
 * as its base then conflicts, as in CouchDB, unless that revision is a leaf.
 */
const REV_PATTERN = /^([1-9][0-9]{0,15})-([0-9A-Za-z_]*)$/;

/** Parse and validate a client-supplied revision id. */
export function parseRev(rev: unknown): { pos: number; hash: string } {
  if (typeof rev !== 'string' || rev.length > revIdBytesMax) throw new BadRequestError('Invalid rev format');
  const match = REV_PATTERN.exec(rev);
  if (!match) throw new BadRequestError('Invalid rev format');
  const pos = Number(match[1]);
  if (!Number.isSafeInteger(pos)) throw new BadRequestError('Invalid rev format');
  return { pos, hash: match[2]! };
}

export function revPos(rev: RevId): number {
  return Number(rev.slice(0, rev.indexOf('-')));
}

export function emptyTree(): RevTree {
  return new Map();
}

/**
 * Sorted leaves of trees whose leaves were found while they were built (decodeTree,
 * an edit's result), so an update finds them once instead of once per reader
 * (decodeDocInfo's check, isLeaf, winner, encodeDocInfo). Only a tree that is never
 * changed afterwards may be entered: trees are shared (a doc-info cache hands the
 * same decoded tree to the updater and to readers), so nobody writes to one.
 */
const knownLeaves = new WeakMap<RevTree, readonly RevNode[]>();

/**
 * Record the winner-ordered leaves of a tree its builder will not change again.
 * `sorted` is kept, not copied: the caller hands it over.
 */
export function rememberSortedLeaves(tree: RevTree, sorted: readonly RevNode[]): void {
  knownLeaves.set(tree, sorted);
}

/** Revisions nobody names as parent, in no particular order. */
export function leaves(tree: RevTree): RevNode[] {
  const known = knownLeaves.get(tree);
  // Usually one leaf: picking the known ones out keeps the map's order without a set.
  if (known && known.length <= 8) {
    const out: RevNode[] = [];
    for (const node of tree.values()) if (known.includes(node)) out.push(node);
    return out;
  }
  const parents = new Set<RevId>();
  for (const node of tree.values()) if (node.parent !== null) parents.add(node.parent);
  const out: RevNode[] = [];
  for (const node of tree.values()) if (!parents.has(node.rev)) out.push(node);
  return out;
}

/** Winner order: live before deleted, then higher pos, then greater rev id. */
export function compareForWinner(a: RevNode, b: RevNode): number {
  if (a.deleted !== b.deleted) return a.deleted ? 1 : -1;
  if (a.pos !== b.pos) return b.pos - a.pos;
  return a.rev < b.rev ? 1 : a.rev > b.rev ? -1 : 0;
}

/** Leaves sorted winner first. Empty only for an empty tree. */
export function sortedLeaves(tree: RevTree): RevNode[] {
  const known = knownLeaves.get(tree);
  return known ? known.slice() : leaves(tree).sort(compareForWinner);
}

/** sortedLeaves without the copy, for readers in this module and doc-info.ts that do not keep or change it. */
export function sortedLeavesShared(tree: RevTree): readonly RevNode[] {
  return knownLeaves.get(tree) ?? leaves(tree).sort(compareForWinner);
}

export function winner(tree: RevTree): RevNode | undefined {
  const known = knownLeaves.get(tree);
  if (known) return known[0];
  let best: RevNode | undefined;
  for (const leaf of leaves(tree)) if (!best || compareForWinner(leaf, best) < 0) best = leaf;
  return best;
}

export function isLeaf(tree: RevTree, rev: RevId): boolean {
  const known = knownLeaves.get(tree);
  if (known) return known.some((leaf) => leaf.rev === rev);
  if (!tree.has(rev)) return false;
  for (const node of tree.values()) if (node.parent === rev) return false;
  return true;
}

/** Rev ids from `rev` up to its oldest known ancestor, newest first. */
export function ancestry(tree: RevTree, rev: RevId): RevId[] {
  const out: RevId[] = [];
  let at: RevNode | undefined = tree.get(rev);
  while (at) {
    out.push(at.rev);
    at = at.parent === null ? undefined : tree.get(at.parent);
  }
  return out;
}

/** Leaves that descend from `rev` (itself included when it is a leaf). */
export function leavesFrom(tree: RevTree, rev: RevId): RevNode[] {
  return leaves(tree).filter((leaf) => ancestry(tree, leaf.rev).includes(rev));
}

/**
 * Merge a path into a tree. `path` is newest first: path[0] the leaf, path[i+1] the
 * parent of path[i]; positions must be consecutive. Returns the stemmed tree and
 * whether the leaf revision was new (or gained its body).
 */
export function mergePath(
  tree: RevTree,
  path: { revs: readonly RevId[]; deleted: boolean; hasBody: boolean },
  revsLimit: number,
): { tree: RevTree; added: boolean } {
  const merged = mergePathOwned(tree, path, revsLimit);
  return { tree: merged.tree, added: merged.added };
}

export interface OwnedMerge {
  /** A new map, never `tree` itself: the caller owns it and may still change it. */
  tree: Map<RevId, RevNode>;
  added: boolean;
  /** Whether stemming removed nodes or parent links (only then can bodies be dropped). */
  stemmed: boolean;
  /**
   * The result's leaves in no particular order, when the input tree's leaves were
   * known (see rememberSortedLeaves); otherwise undefined and the caller finds them.
   */
  leaves: RevNode[] | undefined;
}

/**
 * mergePath for an edit that goes on to change the result (edit.ts sets the new
 * revision's size) and wants its leaves without another pass. `tree` and its nodes
 * are not changed.
 */
export function mergePathOwned(
  tree: RevTree,
  path: { revs: readonly RevId[]; deleted: boolean; hasBody: boolean },
  revsLimit: number,
): OwnedMerge {
  assert.ok(path.revs.length > 0, 'a path has at least one revision');
  const next = new Map(tree);
  let added = false;
  // Merging only adds nodes and parent links, so the leaves after it are the leaves
  // before plus the new nodes, less every rev this merge names as a parent.
  const inserted: RevId[] = [];
  const linked: RevId[] = [];
  for (let i = 0; i < path.revs.length; i++) {
    const rev = path.revs[i]!;
    const parent = path.revs[i + 1] ?? null;
    const existing = next.get(rev);
    const isLeafOfPath = i === 0;
    if (!existing) {
      next.set(rev, {
        rev,
        pos: revPos(rev),
        parent,
        deleted: isLeafOfPath ? path.deleted : false,
        hasBody: isLeafOfPath ? path.hasBody : false,
      });
      inserted.push(rev);
      if (parent !== null) linked.push(parent);
      if (isLeafOfPath) added = true;
      continue;
    }
    const gainsBody = isLeafOfPath && path.hasBody && !existing.hasBody;
    const gainsParent = existing.parent === null && parent !== null;
    if (gainsBody || gainsParent) {
      next.set(rev, {
        ...existing,
        parent: gainsParent ? parent : existing.parent,
        deleted: gainsBody ? path.deleted : existing.deleted,
        hasBody: existing.hasBody || gainsBody,
      });
      if (gainsParent) linked.push(parent);
      if (gainsBody) added = true;
    }
  }
  const stemmedTree = stem(next, revsLimit) as Map<RevId, RevNode>;
  const stemmed = stemmedTree !== next;
  const before = knownLeaves.get(tree);
  // Stemming keeps every leaf but may replace nodes (cut parents): rare, so look again.
  if (!before || stemmed) return { tree: stemmedTree, added, stemmed, leaves: undefined };
  // A replicated path may be long: look its links up in a set then, not by scanning.
  const linkedSet = linked.length > 8 ? new Set(linked) : undefined;
  const isLinked = (rev: RevId) => (linkedSet ? linkedSet.has(rev) : linked.includes(rev));
  const out: RevNode[] = [];
  for (const leaf of before) if (!isLinked(leaf.rev)) out.push(next.get(leaf.rev)!);
  for (const rev of inserted) if (!isLinked(rev)) out.push(next.get(rev)!);
  return { tree: next, added, stemmed, leaves: out };
}

/** Check a replicated path's shape before merging it. */
export function checkPath(revs: readonly RevId[]): void {
  if (revs.length === 0) throw new BadRequestError('A revision path must not be empty');
  let expected = -1;
  for (const rev of revs) {
    const { pos } = parseRev(rev);
    if (expected !== -1 && pos !== expected) throw new BadRequestError('Revision path positions must be consecutive');
    expected = pos - 1;
  }
}

/** Merge every node of `other` into `tree`: the union, then stemming. */
export function mergeTrees(tree: RevTree, other: RevTree, revsLimit: number): RevTree {
  const next = new Map(tree);
  for (const node of other.values()) {
    const existing = next.get(node.rev);
    if (!existing) {
      next.set(node.rev, node);
      continue;
    }
    const parent = existing.parent ?? node.parent;
    const hasBody = existing.hasBody || node.hasBody;
    const deleted = existing.hasBody ? existing.deleted : node.hasBody ? node.deleted : existing.deleted || node.deleted;
    const size = existing.hasBody ? existing.size : node.size;
    if (parent !== existing.parent || hasBody !== existing.hasBody || deleted !== existing.deleted || size !== existing.size) {
      next.set(node.rev, { ...existing, parent, hasBody, deleted, ...(size ? { size } : {}) });
    }
  }
  return stem(next, revsLimit);
}

/** Keep, for each leaf, the newest `revsLimit` revisions of its path. */
export function stem(tree: Map<RevId, RevNode>, revsLimit: number): RevTree {
  assert.ok(Number.isInteger(revsLimit) && revsLimit >= 1, 'revsLimit must be a positive integer');
  if (tree.size <= revsLimit) return tree;
  // A node survives if some leaf's truncated path holds it; a parent link survives
  // only if some truncated path holds both ends (so a node kept by a short sibling
  // path is not re-attached to a branch whose own path was cut below it).
  const keep = new Set<RevId>();
  const keepLink = new Set<RevId>();
  for (const leaf of leaves(tree)) {
    let at: RevNode | undefined = leaf;
    for (let depth = 0; at && depth < revsLimit; depth++) {
      keep.add(at.rev);
      if (depth + 1 < revsLimit && at.parent !== null) keepLink.add(at.rev);
      at = at.parent === null ? undefined : tree.get(at.parent);
    }
  }
  let unchanged = keep.size === tree.size;
  for (const node of tree.values()) if (node.parent !== null && tree.has(node.parent) && !keepLink.has(node.rev)) unchanged = false;
  if (unchanged) return tree;
  const out = new Map<RevId, RevNode>();
  for (const node of tree.values()) {
    if (!keep.has(node.rev)) continue;
    const cut = node.parent !== null && (!keep.has(node.parent) || !keepLink.has(node.rev));
    out.set(node.rev, cut ? { ...node, parent: null } : node);
  }
  return out;
}

/**
 * Stored form: `[rev, parentIndex, flags]` sorted by (pos, rev), so that two copies
 * holding the same tree store the same bytes. flags: 1 deleted, 2 has body. A body
 * with a known size appends `external, active` (see RevNode.size).
 */
export type EncodedTree = ([RevId, number, number] | [RevId, number, number, number, number])[];

export function encodeTree(tree: RevTree): EncodedTree {
  const nodes = [...tree.values()];
  // Decoded trees and linear edits are already in order; a merge that learns a parent
  // after its child is not: one check, then the sort only when needed.
  if (!inStoredOrder(nodes)) nodes.sort(compareStoredOrder);
  const out: EncodedTree = new Array(nodes.length);
  // A parent sits one level up (pos - 1): look for it among that level's few entries
  // (one on a linear history) and index the whole tree only for a wide level.
  let index: Map<RevId, number> | undefined;
  let levelStart = 0;
  let previousLevelStart = 0;
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i]!;
    if (i > 0 && node.pos !== nodes[i - 1]!.pos) {
      previousLevelStart = levelStart;
      levelStart = i;
    }
    let parent = -1;
    if (node.parent !== null) {
      const above = levelStart > 0 && nodes[previousLevelStart]!.pos === node.pos - 1 && levelStart - previousLevelStart <= 8;
      if (above) for (let j = previousLevelStart; j < levelStart && parent === -1; j++) if (nodes[j]!.rev === node.parent) parent = j;
      if (parent === -1) {
        index ??= new Map(nodes.map((n, j) => [n.rev, j]));
        parent = index.get(node.parent)!;
      }
    }
    const flags = (node.deleted ? 1 : 0) | (node.hasBody ? 2 : 0);
    out[i] = node.hasBody && node.size ? [node.rev, parent, flags, node.size.external, node.size.active] : [node.rev, parent, flags];
  }
  return out;
}

function compareStoredOrder(a: RevNode, b: RevNode): number {
  return a.pos - b.pos || (a.rev < b.rev ? -1 : a.rev > b.rev ? 1 : 0);
}

function inStoredOrder(nodes: readonly RevNode[]): boolean {
  for (let i = 1; i < nodes.length; i++) if (compareStoredOrder(nodes[i - 1]!, nodes[i]!) >= 0) return false;
  return true;
}

/**
 * Decode a stored tree, checking every invariant the readers rely on, so a corrupted
 * record fails its request (an assertion: 500 unknown_error, logged) instead of being
 * served or merged into other copies. Checked: each entry is `[rev, parentIndex,
 * flags]` with a well-formed rev; entries are strictly sorted by (pos, rev), so no
 * rev appears twice; a parent comes earlier and sits exactly one level up; flags are
 * 0..3. Linear in the tree's size (measured: see docs/rev-tree-check.md).
 */
export function decodeTree(encoded: EncodedTree): RevTree {
  if (!Array.isArray(encoded)) corrupt('is not an array');
  const tree = new Map<RevId, RevNode>();
  // Leaves found on the way: entry i is a parent once a later entry names index i.
  const hasChild = new Uint8Array(encoded.length);
  const nodes: RevNode[] = new Array(encoded.length);
  let prevPos = 0;
  let prevRev = '';
  // Messages are built only on failure: this loop runs on every read.
  for (let i = 0; i < encoded.length; i++) {
    const entry = encoded[i];
    if (!Array.isArray(entry) || (entry.length !== 3 && entry.length !== 5)) corrupt(`entry ${i} is not [rev, parent, flags, sizes?]`);
    const [rev, parentIndex, flags, external, active] = entry;
    if (typeof rev !== 'string' || rev.length > revIdBytesMax || !REV_PATTERN.test(rev)) corrupt(`entry ${i} has a malformed rev`);
    const pos = revPos(rev);
    if (!(pos > prevPos || (pos === prevPos && rev > prevRev))) corrupt(`${rev} is out of order or repeated`);
    if (!Number.isInteger(parentIndex) || parentIndex < -1 || parentIndex >= i) corrupt(`${rev} has a parent index out of range`);
    if (flags !== (flags & 3)) corrupt(`${rev} has unknown flags`);
    // Entries before i are checked already: the parent's pos is known.
    const above = parentIndex === -1 ? undefined : nodes[parentIndex]!;
    if (above && above.pos !== pos - 1) corrupt(`${rev} has a parent at the wrong depth`);
    if (above) hasChild[parentIndex] = 1;
    const parent = above ? above.rev : null;
    const deleted = (flags & 1) !== 0;
    const hasBody = (flags & 2) !== 0;
    let node: RevNode;
    if (external !== undefined) {
      if (!Number.isSafeInteger(external) || !Number.isSafeInteger(active) || external! < 0 || active! < 0 || !hasBody) corrupt(`${rev} has bad sizes`);
      // Built whole, not spread from the unsized node: spread-built nodes have a slower
      // shape, which made decode+edit+encode of a 35-revision tree ~3x slower.
      node = { rev, pos, parent, deleted, hasBody, size: { external, active: active! } };
    } else node = { rev, pos, parent, deleted, hasBody };
    nodes[i] = node;
    tree.set(rev, node);
    prevPos = pos;
    prevRev = rev;
  }
  const found: RevNode[] = [];
  for (let i = 0; i < encoded.length; i++) if (hasChild[i] === 0) found.push(nodes[i]!);
  rememberSortedLeaves(tree, found.sort(compareForWinner));
  return tree;
}

function corrupt(what: string): never {
  assert.fail(`stored rev tree is corrupt: ${what}`);
}
