/**
 * The node's decoded doc-info cache (src/shard/doc-info-cache.ts) on real RocksDB: its
 * byte budget, and that a copy reading through it never answers an older doc info than
 * the store holds — after edits racing reads, a purge, a compaction step and a failed
 * write; winner bodies it keeps for reads by id. Seeded where random.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../../src/storage/store';
import { ShardCopy } from '../../src/shard/shard-copy';
import { DocInfoCache } from '../../src/shard/doc-info-cache';
import { decodeDocInfo } from '../../src/shard/doc-info';
import * as keys from '../../src/storage/keys';
import type { DocEdit, DocInfo } from '../../src/shard/types';
import { mulberry32 } from '../helpers/random';

let dir: string;
let store: Store;
let nextCopyId = 1;
before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'divan-docinfo-cache-'));
  store = await Store.open(dir, { cacheBytes: 8 << 20, writeBufferBytes: 4 << 20, batchOpsMax: 10_000 });
});
after(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const limits = { updateBatchDocsMax: 1000, updateQueueDocsMax: 10_000 };

function edit(id: string, baseRev: string | null, body: Record<string, unknown>): DocEdit {
  return { id, deleted: false, body, attachments: null, ...(baseRev ? { baseRev } : {}) };
}

async function stored(copyId: number, id: string): Promise<DocInfo | undefined> {
  const raw = await store.get(keys.docInfoKey(copyId, id));
  return raw ? decodeDocInfo(raw) : undefined;
}

test('the cache stays within its byte budget, oldest out first', () => {
  const cache = new DocInfoCache(10_000);
  const info = (id: string): DocInfo => ({ id, seq: 1, tree: new Map(), winner: { rev: '1-a', deleted: false } }) as unknown as DocInfo;
  for (let i = 0; i < 200; i++) cache.set(1, info('d' + i), 200);
  const stats = cache.stats();
  assert.ok(stats.bytes <= 10_000, `bytes ${stats.bytes}`);
  assert.ok(stats.entries > 0 && stats.entries < 200);
  assert.equal(cache.get(1, 'd0'), undefined, 'the oldest went first');
  assert.ok(cache.get(1, 'd199'), 'the newest is kept');
  cache.dropCopy(1);
  assert.equal(cache.stats().entries, 0);
  const off = new DocInfoCache(0);
  off.set(1, info('x'), 10);
  assert.equal(off.get(1, 'x'), undefined);
});

for (const [label, budget, docs] of [['roomy', 1 << 20, 4], ['evicting', 6_000, 12]] as const) {
  test(`reads racing edits never answer an older doc info than the store holds (seeded, ${label} cache)`, async () => {
    const cache = new DocInfoCache(budget);
    const copyId = nextCopyId++;
    const copy = await ShardCopy.open(store, { copyId, node: 'n1', revsLimit: 1000, limits, docInfoCache: cache });
    const random = mulberry32(14);
    const ids = Array.from({ length: docs }, (_, i) => 'doc' + i);
    const revs = new Map<string, string | null>(ids.map((id) => [id, null]));
    for (let round = 0; round < 60; round++) {
      // Readers start before, alongside and after a batch of edits; none awaited in between.
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < 6; i++) pending.push(random() < 0.5 ? copy.getDocInfos(ids) : copy.getDocInfo(ids[Math.floor(random() * ids.length)]!));
      const id = ids[Math.floor(random() * ids.length)]!;
      const write = copy.updateDocs([edit(id, revs.get(id)!, { round })]);
      for (let i = 0; i < 6; i++) pending.push(copy.getDocInfos(ids));
      const [result] = await write;
      assert.equal(result!.kind, 'ok');
      revs.set(id, (result as { rev: string }).rev);
      await Promise.all(pending);
      for (const each of ids) {
        const expected = await stored(copyId, each);
        const seen = (await copy.getDocInfos([each]))[0];
        assert.equal(seen?.winner.rev, expected?.winner.rev, `round ${round}, doc ${each}`);
        assert.equal(seen?.seq, expected?.seq);
      }
    }
    assert.ok(cache.stats().hits > 0, 'the cache answered some reads');
  });
}

test('purge and compaction drop what they rewrote from the cache', async () => {
  const cache = new DocInfoCache(1 << 20);
  const copyId = nextCopyId++;
  const copy = await ShardCopy.open(store, { copyId, node: 'n1', revsLimit: 1000, limits, docInfoCache: cache });
  const [first] = await copy.updateDocs([edit('p', null, { v: 1 })]);
  const rev1 = (first as { rev: string }).rev;
  const [second] = await copy.updateDocs([edit('p', rev1, { v: 2 })]);
  const rev2 = (second as { rev: string }).rev;
  assert.equal((await copy.getDocInfo('p'))?.winner.rev, rev2);
  assert.ok((await copy.getDocInfo('p'))!.tree.get(rev1)!.hasBody, 'the old body is kept until compaction');
  assert.equal(await copy.readBody('p', rev2), '{"v":2}', 'the winner body (cached by the write)');
  assert.equal(await copy.readBody('p', rev1), '{"v":1}', 'an older body comes from the store');
  assert.deepEqual(await copy.readBodies([{ id: 'p', rev: rev2 }, { id: 'p', rev: rev1 }, { id: 'p', rev: '9-nope' }]), ['{"v":2}', '{"v":1}', undefined]);

  await copy.compactDocs(['p'], 'p', 1000);
  assert.equal((await copy.getDocInfo('p'))!.tree.get(rev1)!.hasBody, false, 'compaction is seen through the cache');

  await copy.purge([{ uuid: 'u1', id: 'p', revs: [rev2] }]);
  assert.equal(await copy.getDocInfo('p'), undefined, 'a purged document is gone through the cache');
  assert.equal((await copy.getDocInfos(['p']))[0], undefined);
  assert.equal(await copy.readBody('p', rev2), undefined, 'nor is its body');
});
