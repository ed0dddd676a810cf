/**
 * Purge: removing revisions from a document's tree for good (erasure requests), as
 * CouchDB's `_purge` does. Only leaves can be purged; purging a leaf also removes the
 * ancestors no remaining leaf descends from, so purging every leaf removes the document.
 *
 * Every copy keeps a purge history (storage/keys.ts, Space.Purge): each request, with a
 * uuid the coordinator gives it, gets the copy's next purge seq. The uuid makes a request
 * applied twice (by the coordinator's retry or by shard sync carrying it to a copy that
 * missed it) count once; the purged (doc, rev) pairs let a copy refuse those revisions
 * when internal mechanisms (shard sync, read repair, rebalance) offer them again. A
 * client replicating a purged revision back is accepted, as in CouchDB.
 *
 * No I/O here: the shard updater applies this to trees and writes the history.
 */
import { ancestry, leaves, type RevId, type RevNode, type RevTree } from './rev-tree';

/** One document's purge, as the coordinator sends it to every copy. */
export interface PurgeRequest {
  uuid: string;
  id: string;
  revs: RevId[];
}

/** A purge as a copy records it: what was asked, what it removed, at which copy seq. */
export interface PurgeInfo extends PurgeRequest {
  /** This copy's purge seq of the request. */
  purgeSeq: number;
  /** The leaves this copy removed (a subset of `revs`). */
  purged: RevId[];
  /** The copy's update seq after the purge (0 when it changed nothing). */
  atSeq: number;
  /** The document had no revision left afterwards. */
  removed: boolean;
}

export interface PurgeOutcome {
  /** The tree left (empty when every leaf was purged). */
  tree: RevTree;
  /** Requested revisions that were leaves, now gone. */
  purged: RevId[];
  /** Every revision removed (the purged leaves and their ancestors no leaf keeps). */
  dropped: RevId[];
}

export function purgeTree(tree: RevTree, revs: readonly RevId[]): PurgeOutcome {
  const leafRevs = new Set(leaves(tree).map((leaf) => leaf.rev));
  const purged = [...new Set(revs)].filter((rev) => leafRevs.has(rev));
  if (purged.length === 0) return { tree, purged, dropped: [] };
  const gone = new Set(purged);
  const keep = new Set<RevId>();
  for (const leaf of leafRevs) if (!gone.has(leaf)) for (const rev of ancestry(tree, leaf)) keep.add(rev);
  const next = new Map<RevId, RevNode>();
  const dropped: RevId[] = [];
  for (const node of tree.values()) {
    if (keep.has(node.rev)) next.set(node.rev, node);
    else dropped.push(node.rev);
  }
  return { tree: next, purged, dropped };
}

/** Whether a stored or received value has the shape of a PurgeInfo. */
export function isPurgeInfo(value: unknown): value is PurgeInfo {
  const v = value as PurgeInfo;
  return typeof v === 'object' && v !== null && typeof v.uuid === 'string' && typeof v.id === 'string' && Array.isArray(v.revs) && Number.isSafeInteger(v.purgeSeq);
}
