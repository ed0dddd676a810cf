/**
 * View index administration across the cluster: `_info` of a design document (from
 * one live copy per range), and `_view_cleanup` (every copy drops the indexes no
 * current design document names).
 */
import { indexDef } from '../../shard/index/design';
import type { DesignDocRef } from '../../shard/index/types';
import { streamDesignDocs } from './all-docs';
import { encodeSeq } from './changes';
import { firstLiveState } from './range-read';
import type { DbHandle } from './shard-client';

/** CouchDB's `view_index` object of `GET /{db}/_design/{ddoc}/_info`. */
export async function viewInfo(db: DbHandle, ddoc: DesignDocRef): Promise<Record<string, unknown>> {
  const infos = await Promise.all(
    db.ranges.map((range) => firstLiveState(range.copies, async (copy) => ({ node: copy.node, info: await copy.indexInfo(ddoc) }))),
  );
  const size = infos.reduce((sum, r) => sum + r.info.sizeBytes, 0);
  return {
    signature: indexDef(ddoc).sigHex,
    language: typeof ddoc.body.language === 'string' ? ddoc.body.language : 'javascript',
    sizes: { file: size, active: size, external: size },
    update_seq: encodeSeq(db, infos.map((r) => ({ node: r.node, seq: r.info.updateSeq }))),
    purge_seq: 0,
    updater_running: infos.some((r) => r.info.updating),
    compact_running: false,
    waiting_clients: 0,
    waiting_commit: false,
  };
}

/** Signatures of the database's current design documents (those whose views parse). */
async function currentSignatures(db: DbHandle): Promise<string[]> {
  const sigs: string[] = [];
  await streamDesignDocs(db, (row) => {
    const body: unknown = JSON.parse(row.doc);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
    try {
      sigs.push(indexDef({ id: row.id, rev: row.rev, body: body as Record<string, unknown> }).sigHex);
    } catch {
      // A design document whose views do not parse has no index to keep.
    }
  });
  return sigs;
}

/** Every copy of every range drops the indexes of design documents gone or changed. */
export async function viewCleanup(db: DbHandle): Promise<number> {
  const keep = await currentSignatures(db);
  const results = await Promise.allSettled(db.ranges.flatMap((range) => range.copies.map((copy) => copy.cleanupIndexes(keep))));
  return results.reduce((sum, r) => sum + (r.status === 'fulfilled' ? r.value : 0), 0);
}

/**
 * `_compact/{ddoc}`: every copy brings the index up to date and compacts its storage, in
 * the background (CouchDB answers 202 at once too). Failures are logged by `onError`.
 */
export function viewCompact(db: DbHandle, ddoc: DesignDocRef, onError: (err: unknown) => void): void {
  for (const range of db.ranges) for (const copy of range.copies) copy.compactIndex(ddoc).catch(onError);
}
