/**
 * A shard copy's lifecycle operations on real RocksDB (issue 13): purges recorded once
 * per uuid, purged revisions refused when internal mechanisms offer them again but
 * accepted from clients, purge history exchanged by shard sync before documents, the
 * purge tree rule, size counters that follow every edit and compaction, and compaction
 * steps that keep seqs. Seeded where random.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../../src/storage/store';
import { ShardCopy } from '../../src/shard/shard-copy';
import { purgeTree } from '../../src/shard/purge';
import { pushToSibling } from '../../src/shard/sync';
import { compactCopy, type CompactionProgress } from '../../src/shard/compaction';
import { mergePath, type RevTree } from '../../src/shard/rev-tree';
import type { DocEdit } from '../../src/shard/types';

let dir: string;
let store: Store;
let nextCopyId = 1;
before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'divan-lifecycle-'));
  store = await Store.open(dir, { cacheBytes: 8 << 20, writeBufferBytes: 4 << 20, batchOpsMax: 10_000 });
});
after(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const limits = { updateBatchDocsMax: 1000, updateQueueDocsMax: 10_000 };
const open = () => ShardCopy.open(store, { copyId: nextCopyId++, node: 'n1', revsLimit: 1000, limits });

function replicated(id: string, revs: string[], body: Record<string, unknown> = {}, internal = false): DocEdit {
  return { id, deleted: false, body, attachments: null, revs, ...(internal ? { internal: true } : {}) };
}

function progress(): CompactionProgress {
  return { phase: 'documents', changesDone: 0, totalChanges: 0, bodiesDropped: 0, attachmentsDropped: 0, purgesTrimmed: 0, phaseMs: {} };
}

test('purgeTree removes named leaves and the ancestors no other leaf keeps; non-leaves are ignored', () => {
  let tree: RevTree = new Map();
  tree = mergePath(tree, { revs: ['3-c', '2-b', '1-a'], deleted: false, hasBody: true }, 1000).tree;
  tree = mergePath(tree, { revs: ['2-x', '1-a'], deleted: false, hasBody: true }, 1000).tree;
  const one = purgeTree(tree, ['3-c', '1-a']);
  assert.deepEqual(one.purged, ['3-c']);
  assert.deepEqual(one.dropped.sort(), ['2-b', '3-c']);
  assert.deepEqual([...one.tree.keys()].sort(), ['1-a', '2-x']);
  const all = purgeTree(one.tree, ['2-x']);
  assert.equal(all.tree.size, 0);
  assert.deepEqual(purgeTree(tree, ['9-zz']).purged, []);
});

test('a purge is recorded once per uuid; internal edits of a purged revision are refused, client ones accepted', async () => {
  const copy = await open();
  await copy.updateDocs([replicated('d', ['2-aa', '1-r'], { v: 1 }), replicated('d', ['2-bb', '1-r'], { v: 2 })]);
  const request = { uuid: 'u-1', id: 'd', revs: ['2-bb'] };
  const [first] = await copy.purge([request]);
  assert.deepEqual(first!.purged, ['2-bb']);
  assert.equal(first!.removed, false);
  const seqAfterPurge = copy.getState().updateSeq;
  const [again] = await copy.purge([request]);
  assert.equal(again!.purgeSeq, first!.purgeSeq, 'applied once');
  assert.equal(copy.getState().purgeSeq, 1);
  assert.equal(copy.getState().updateSeq, seqAfterPurge);

  // Shard sync or read repair offering it again: refused (a success with no change).
  const [internal] = await copy.updateDocs([replicated('d', ['2-bb', '1-r'], { v: 2 }, true)]);
  assert.equal(internal!.kind, 'ok');
  assert.equal((await copy.getDocInfo('d'))!.tree.has('2-bb'), false);
  // A client replicating it back: accepted, as CouchDB does.
  await copy.updateDocs([replicated('d', ['2-bb', '1-r'], { v: 2 })]);
  assert.equal((await copy.getDocInfo('d'))!.tree.has('2-bb'), true);

  // Purging the last leaves removes the document and its by-seq row.
  await copy.purge([{ uuid: 'u-2', id: 'd', revs: ['2-aa', '2-bb'] }]);
  assert.equal(await copy.getDocInfo('d'), undefined);
  assert.equal(copy.getState().docCount, 0);
  const rows = [];
  const cursor = copy.changes({ since: 0, descending: false, limit: 100, allLeaves: true, includeDocs: false, conflicts: false, filter: { kind: 'none' } });
  for (let b = await cursor.next(); b; b = await cursor.next()) rows.push(...b);
  await cursor.close();
  assert.deepEqual(rows, []);
  const removed = await copy.purgedBetween(0, copy.getState().updateSeq);
  assert.deepEqual(removed.map((r) => r.id), ['d']);
});

test('shard sync carries purges both ways before documents: a stale copy never pushes purged revisions back', async () => {
  const purged = await open();
  const stale = await open();
  for (const copy of [purged, stale]) await copy.updateDocs([replicated('x', ['1-a'], { v: 1 }), replicated('y', ['1-b'], { v: 2 })]);
  await purged.purge([{ uuid: 'p-x', id: 'x', revs: ['1-a'] }]);
  // The stale copy pushes to the purged one: it first learns the purge, then has nothing of x to send.
  await pushToSibling(stale, purged, { batchDocsMax: 10, purges: {} });
  assert.equal(await purged.getDocInfo('x'), undefined);
  assert.equal(await stale.getDocInfo('x'), undefined);
  assert.equal(stale.getState().purgeSeq, 1);
  assert.ok(await stale.getDocInfo('y'));
});

test('sizes follow edits and compaction; compaction keeps every seq and frees older bodies', async () => {
  const copy = await open();
  assert.deepEqual(await copy.sizes().then((s) => [s.active, s.external]), [0, 0]);
  let rev: string | undefined;
  for (let i = 0; i < 5; i++) {
    const [result] = await copy.updateDocs([{ id: 'doc', deleted: false, body: { text: 'q'.repeat(100), i }, attachments: null, ...(rev ? { baseRev: rev } : {}) }]);
    assert.equal(result!.kind, 'ok');
    rev = (result as { rev: string }).rev;
  }
  const state = copy.getState();
  const bodyBytes = JSON.stringify({ text: 'q'.repeat(100), i: 4 }).length;
  assert.equal(state.externalBytes, bodyBytes);
  assert.ok(state.staleBytes! >= 4 * bodyBytes - 4, `stale ${state.staleBytes}`);
  const seqBefore = (await copy.getDocInfo('doc'))!.seq;
  const info = await copy.getDocInfo('doc');
  const oldRev = [...info!.tree.values()].find((n) => n.pos === 1)!.rev;
  assert.ok(await copy.readBody('doc', oldRev));
  await compactCopy(copy, { batchDocs: 10, dutyPercent: 100, revsLimit: 1000, purgedInfosLimit: 1000, indexedSeq: async () => copy.getState().updateSeq }, progress(), new AbortController().signal);
  assert.equal(await copy.readBody('doc', oldRev), undefined);
  assert.equal((await copy.getDocInfo('doc'))!.seq, seqBefore);
  assert.equal(copy.getState().staleBytes, 0);
  assert.equal(copy.getState().externalBytes, bodyBytes);
  assert.equal(await copy.compactionCheckpoint(), undefined);
});

test('compaction stems trees to a lowered revs_limit and trims purge history beyond the limit', async () => {
  const copy = await open();
  let rev: string | undefined;
  for (let i = 0; i < 6; i++) {
    const [result] = await copy.updateDocs([{ id: 's', deleted: false, body: { i }, attachments: null, ...(rev ? { baseRev: rev } : {}) }]);
    rev = (result as { rev: string }).rev;
  }
  for (let i = 0; i < 5; i++) {
    await copy.updateDocs([replicated(`g${i}`, ['1-a'])]);
    await copy.purge([{ uuid: `t${i}`, id: `g${i}`, revs: ['1-a'] }]);
  }
  await compactCopy(copy, { batchDocs: 10, dutyPercent: 100, revsLimit: 2, purgedInfosLimit: 2, indexedSeq: async () => copy.getState().updateSeq }, progress(), new AbortController().signal);
  assert.equal((await copy.getDocInfo('s'))!.tree.size, 2);
  assert.deepEqual((await copy.purgeInfos(0, 100)).map((i) => i.uuid), ['t3', 't4']);
  assert.equal(copy.getState().purgeSeq, 5);
  // An index that has not absorbed a purge keeps it in the history.
  const held = await open();
  for (let i = 0; i < 4; i++) {
    await held.updateDocs([replicated(`h${i}`, ['1-a'])]);
    await held.purge([{ uuid: `h${i}`, id: `h${i}`, revs: ['1-a'] }]);
  }
  await compactCopy(held, { batchDocs: 10, dutyPercent: 100, revsLimit: 1000, purgedInfosLimit: 1, indexedSeq: async () => 0 }, progress(), new AbortController().signal);
  assert.equal((await held.purgeInfos(0, 100)).length, 4);
});
