/**
 * Database lifecycle and info: name rules, create, delete, and the info document
 * folded from every range's copy state.
 */
import { BadRequestError } from '../../errors';
import { encodeSeq, currentSeq } from './changes';
import { majority } from './quorum';
import { firstLiveState } from './range-read';
import type { DbDirectory, DbHandle } from './shard-client';

/** CouchDB's rule: a lowercase letter, then lowercase letters, digits and _$()+-/. */
const DB_NAME = /^[a-z][a-z0-9_$()+/-]*$/;
export const dbNameBytesMax = 238;

/** System databases CouchDB clients may look for; creating them is allowed. */
export const SYSTEM_DBS: ReadonlySet<string> = new Set(['_users', '_replicator', '_global_changes']);

/** System databases that exist as clients see them from the start (made on first use). */
export const AUTO_SYSTEM_DBS: ReadonlySet<string> = new Set(['_users', '_replicator']);

/** Ranges of a system database made on demand: its documents are few and small. */
const SYSTEM_DB_Q = 1;

/**
 * A system database (`_users`) exists from the start as clients see it: the first
 * request (or node start) that finds it missing creates it, with this node's default n.
 * Two nodes doing so at once is the catalog's ordinary creation race (one instance
 * wins, the other's documents are adopted into it).
 */
export async function openSystemDb(directory: DbDirectory, name: string, n: number): Promise<DbHandle> {
  const existing = await directory.open(name);
  if (existing) return existing;
  try {
    return await directory.create(name, { q: SYSTEM_DB_Q, n });
  } catch (err) {
    const raced = await directory.open(name);
    if (raced) return raced;
    throw err;
  }
}

export function validateDbName(name: string): void {
  if (SYSTEM_DBS.has(name)) return;
  if (!DB_NAME.test(name) || name.length > dbNameBytesMax) {
    throw new BadRequestError(
      'Name: ' +
        JSON.stringify(name) +
        '. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.',
      'illegal_database_name',
    );
  }
}

export async function createDb(directory: DbDirectory, name: string, options: { q: number; n: number }): Promise<DbHandle> {
  validateDbName(name);
  return directory.create(name, options);
}

export async function dbInfo(db: DbHandle): Promise<Record<string, unknown>> {
  let docCount = 0;
  let docDelCount = 0;
  const sizes = { file: 0, external: 0, active: 0 };
  const [states, compacting] = await Promise.all([
    Promise.all(db.ranges.map((range) => firstLiveState(range.copies, async (copy) => ({ state: await copy.readState(), sizes: await copy.sizes() })))),
    // CouchDB says a compaction runs while any shard copy's does.
    Promise.all(db.ranges.flatMap((range) => range.copies.map((copy) => copy.readState().then((s) => s.compactRunning === true, () => false)))),
  ]);
  for (const { state, sizes: copySizes } of states) {
    docCount += state.docCount;
    docDelCount += state.docDelCount;
    sizes.file += copySizes.file;
    sizes.external += copySizes.external;
    sizes.active += copySizes.active;
  }
  const seq = await currentSeq(db);
  return {
    db_name: db.name,
    purge_seq: encodeSeq(db, seq.map((p, i) => ({ ...p, seq: states[i]?.state.purgeSeq ?? 0 }))),
    update_seq: encodeSeq(db, seq),
    sizes,
    props: {},
    doc_del_count: docDelCount,
    doc_count: docCount,
    disk_format_version: 8,
    compact_running: compacting.some(Boolean),
    cluster: { q: db.q, n: db.n, w: majority(db.n), r: majority(db.n) },
    instance_start_time: '0',
  };
}
