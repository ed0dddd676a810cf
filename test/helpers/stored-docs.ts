/**
 * Damaging a stopped node's stored doc infos on purpose, to test the rev-tree check on
 * read: opens the node's RocksDB (the node must be stopped), finds every stored copy of
 * one document's info (by id and by seq, in every shard copy) and rewrites its tree
 * with `mutate`. With `consistent`, the whole record is encoded again from the mutated
 * tree (leaves line included), as a buggy writer would have stored it: it passes the
 * read check. Without, only the tree changes and the record no longer agrees with
 * itself. Returns how many records were changed.
 */
import path from 'node:path';
import { Store } from '../../src/storage/store';
import { encodeDocInfo } from '../../src/shard/doc-info';
import { decodeTree, winner } from '../../src/shard/rev-tree';

export type StoredTree = [string, number, number][];

export async function damageStoredTree(
  dataDir: string,
  docId: string,
  mutate: (tree: StoredTree) => StoredTree,
  options: { consistent?: boolean } = {},
): Promise<number> {
  const store = await Store.open(path.join(dataDir, 'rocksdb'), { cacheBytes: 1 << 20, writeBufferBytes: 1 << 20, batchOpsMax: 1000 });
  try {
    const idLine = JSON.stringify(docId);
    const ops: { type: 'put'; key: Buffer; value: string }[] = [];
    const cursor = store.cursor({ valuesAsText: true });
    try {
      for (let batch = await cursor.next(); batch; batch = await cursor.next()) {
        for (const [key, value] of batch) {
          const lines = value.split('\n');
          if (lines.length !== 3 || lines[1] !== idLine || !lines[2]!.startsWith('{"seq":')) continue;
          const stored = JSON.parse(lines[2]!) as { seq: number; tree: StoredTree };
          stored.tree = mutate(stored.tree);
          if (options.consistent) {
            const tree = decodeTree(stored.tree);
            ops.push({ type: 'put', key, value: encodeDocInfo({ id: docId, seq: stored.seq, tree, winner: winner(tree)! }) });
          } else {
            ops.push({ type: 'put', key, value: `${lines[0]}\n${lines[1]}\n${JSON.stringify(stored)}` });
          }
        }
      }
    } finally {
      await cursor.close();
    }
    if (ops.length > 0) await store.write(ops);
    return ops.length;
  } finally {
    await store.close();
  }
}

/** A mutation that drops revision `rev` from a stored tree, keeping parent indexes right. */
export function loseRevision(rev: string): (tree: StoredTree) => StoredTree {
  return (tree) => {
    const lost = tree.findIndex(([r]) => r === rev);
    if (lost < 0) throw new Error(`${rev} is not in the stored tree`);
    return tree.filter((_, i) => i !== lost).map(([r, parent, flags]) => [r, parent > lost ? parent - 1 : parent, flags]);
  };
}
