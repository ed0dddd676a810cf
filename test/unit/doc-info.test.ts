import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeDocInfo, decodeSummary, encodeDocInfo } from '../../src/shard/doc-info';
import { revHash } from '../../src/shard/render';
import { emptyTree, encodeTree, mergePath, sortedLeaves, winner } from '../../src/shard/rev-tree';

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
