import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeDocInfo, decodeSummary, encodeDocInfo } from '../../src/shard/doc-info';
import { revHash } from '../../src/shard/render';
import { emptyTree, encodeTree, mergePath, RevTree, sortedLeaves, winner } from '../../src/shard/rev-tree';
import { applyEdit } from '../../src/shard/edit';
import type { DocInfo } from '../../src/shard/types';

test('property: stored doc info round-trips and its summary agrees with the tree', () => {
  const branch = fc.record({ hash: fc.hexaString({ minLength: 1, maxLength: 8 }), depth: fc.integer({ min: 2, max: 5 }), deleted: fc.boolean() });
  fc.assert(
    fc.property(fc.fullUnicodeString().filter((s) => !/\p{Cs}/u.test(s)), fc.array(branch, { minLength: 1, maxLength: 5 }), fc.nat(), (id, branches, seq) => {
      let tree = emptyTree();
      for (const b of branches) {
        const revs = Array.from({ length: b.depth }, (_, i) => (b.depth - i === 1 ? '1-root' : `${b.depth - i}-${b.hash}${i}`));
        tree = mergePath(tree, { revs, deleted: b.deleted, hasBody: true }, 1000).tree;
      }
      const info = { id, seq, tree, winner: winner(tree)! };
      const raw = Buffer.from(encodeDocInfo(info), 'utf8');
      const back = decodeDocInfo(raw);
      assert.equal(back.id, id);
      assert.equal(back.seq, seq);
      assert.deepEqual(encodeTree(back.tree), encodeTree(tree));
      const summary = decodeSummary(raw);
      assert.equal(JSON.parse(summary.idJson), id);
      assert.equal(summary.winnerRev, info.winner.rev);
      assert.equal(summary.deleted, info.winner.deleted);
      assert.deepEqual(summary.leaves, sortedLeaves(tree).map((l) => ({ rev: l.rev, deleted: l.deleted })));
      assert.deepEqual(decodeSummary(raw.toString('utf8')), summary, 'text and bytes decode alike');
    }),
  );
});

test('ids with newlines and quotes survive', () => {
  const tree = mergePath(emptyTree(), { revs: ['1-a'], deleted: false, hasBody: true }, 10).tree;
  for (const id of ['a\nb', 'x"y', '\\', '\u0000', 'é']) {
    const raw = Buffer.from(encodeDocInfo({ id, seq: 1, tree, winner: winner(tree)! }));
    assert.equal(decodeDocInfo(raw).id, id);
    assert.equal(JSON.parse(decodeSummary(raw).idJson), id);
  }
});

test('revision hashes are stable: the same edit makes the same rev on every node and version', () => {
  // Values pinned from the streaming implementation; a faster hashing path must give the same bytes.
  assert.equal(revHash({ deleted: false, parent: null, body: '{"a":1}' }), 'a02ccf2bf592c45f5954db5c733f5bb1');
  assert.equal(revHash({ deleted: true, parent: '1-abc', body: '{}' }), '726486ea771bb40c8c966fb88b349800');
  assert.equal(revHash({ deleted: false, parent: '2-def', body: '{"ü":"héllo","n":[1,2,3]}' }), 'a8a9b1f0ca6ec671b61dd874dd03e79f');
});

test('stored bytes are pinned: trees with conflicts, deletions, stemming and sizes encode as before', async () => {
  // Expected strings captured from the implementation before the one-pass rework of
  // rev-tree.ts/doc-info.ts/edit.ts: stored records must read back and revs must not move.
  const chain = (n: number, h: string) => Array.from({ length: n }, (_, i) => `${n - i}-${h}${n - i}`);
  const body = { deleted: false, hasBody: true };
  const cases: [string, RevTree, string][] = [];
  const linear = mergePath(emptyTree(), { revs: chain(3, 'a'), ...body }, 1000).tree;
  cases.push(['linear', linear, "3-a3\n\"id-linear\"\n{\"seq\":7,\"tree\":[[\"1-a1\",-1,0],[\"2-a2\",0,0],[\"3-a3\",1,2]]}"]);
  let conflicts = mergePath(linear, { revs: ['3-b3', '2-a2', '1-a1'], ...body }, 1000).tree;
  conflicts = mergePath(conflicts, { revs: ['4-c4', '3-c3', '2-a2'], deleted: true, hasBody: true }, 1000).tree;
  cases.push(['conflicts+deleted', conflicts, "3-b3 3-a3 4-c4!\n\"id-conflicts+deleted\"\n{\"seq\":7,\"tree\":[[\"1-a1\",-1,0],[\"2-a2\",0,0],[\"3-a3\",1,2],[\"3-b3\",1,2],[\"3-c3\",1,0],[\"4-c4\",4,3]]}"]);
  const oneDeleted = mergePath(linear, { revs: ['4-z', '3-a3'], deleted: true, hasBody: true }, 1000).tree;
  const allDeleted = mergePath(oneDeleted, { revs: ['2-q', '1-a1'], deleted: true, hasBody: true }, 1000).tree;
  cases.push(['all deleted', allDeleted, "4-z! 2-q!\n\"id-all deleted\"\n{\"seq\":7,\"tree\":[[\"1-a1\",-1,0],[\"2-a2\",0,0],[\"2-q\",0,3],[\"3-a3\",1,2],[\"4-z\",3,3]]}"]);
  let stemmed = mergePath(emptyTree(), { revs: chain(8, 'x'), ...body }, 3).tree;
  stemmed = mergePath(stemmed, { revs: ['9-y', '8-x8', '7-x7', '6-x6', '5-x5'], ...body }, 3).tree;
  cases.push(['stemmed', stemmed, "9-y\n\"id-stemmed\"\n{\"seq\":7,\"tree\":[[\"7-x7\",-1,0],[\"8-x8\",0,2],[\"9-y\",1,2]]}"]);
  // A parent learned after its child: the map is not in (pos, rev) order.
  let outOfOrder = mergePath(emptyTree(), { revs: ['5-e'], ...body }, 1000).tree;
  outOfOrder = mergePath(outOfOrder, { revs: ['5-e', '4-d', '3-c'], deleted: false, hasBody: false }, 1000).tree;
  outOfOrder = mergePath(outOfOrder, { revs: ['2-b', '1-a'], ...body }, 1000).tree;
  outOfOrder = mergePath(outOfOrder, { revs: ['3-c', '2-b'], deleted: false, hasBody: false }, 1000).tree;
  cases.push(['out of order', outOfOrder, "5-e\n\"id-out of order\"\n{\"seq\":7,\"tree\":[[\"1-a\",-1,0],[\"2-b\",0,2],[\"3-c\",1,0],[\"4-d\",2,0],[\"5-e\",3,2]]}"]);
  const ctx = { revsLimit: 4, readBody: async () => '{}', hasAttachment: async () => true };
  let info: DocInfo | undefined;
  for (let k = 0; k < 6; k++) {
    const out = await applyEdit(info, { id: 'doc', body: { k }, deleted: k === 5, attachments: null, ...(info ? { baseRev: info.winner.rev } : {}) }, ctx);
    assert.equal(out.kind, 'write');
    if (out.kind === 'write') info = { id: 'doc', seq: k, tree: out.tree, winner: out.winner };
  }
  const replicated = await applyEdit(info, { id: 'doc', body: { r: 1 }, deleted: false, attachments: null, revs: ['8-r', '7-r', info!.winner.rev] }, ctx);
  assert.equal(replicated.kind, 'write');
  if (replicated.kind === 'write') cases.push(['edits with sizes, stemmed, replicated', replicated.tree, "8-r\n\"id-edits with sizes, stemmed, replicated\"\n{\"seq\":7,\"tree\":[[\"5-68999711e731a175ac8a7a3dd0126009\",-1,2,7,7],[\"6-de778cc79539b533b752be887ee08444\",0,3,7,7],[\"7-r\",1,0],[\"8-r\",2,2,7,7]]}"]);
  for (const [name, tree, expected] of cases) {
    const id = 'id-' + name;
    assert.equal(encodeDocInfo({ id, seq: 7, tree, winner: winner(tree)! }), expected, name);
    const back = decodeDocInfo(Buffer.from(expected, 'utf8'));
    assert.equal(encodeDocInfo(back), expected, `${name}: a stored record re-encodes to the same bytes`);
    assert.deepEqual(back.winner, winner(tree), name);
  }
});
