import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ancestry,
  decodeTree,
  emptyTree,
  encodeTree,
  isLeaf,
  leaves,
  mergePath,
  mergePathOwned,
  mergeTrees,
  RevTree,
  sortedLeaves,
  stem,
  winner,
} from '../../src/shard/rev-tree';
import { decodeDocInfo, encodeDocInfo } from '../../src/shard/doc-info';
import { applyEdit } from '../../src/shard/edit';
import type { DocInfo } from '../../src/shard/types';
import { parseDoc } from '../../src/api/http/doc-input';

const LIMIT = 1000;

function build(paths: { revs: string[]; deleted?: boolean }[], limit = LIMIT): RevTree {
  let tree = emptyTree();
  for (const p of paths) tree = mergePath(tree, { revs: p.revs, deleted: p.deleted ?? false, hasBody: true }, limit).tree;
  return tree;
}

test('a linear history has one leaf and it wins', () => {
  const tree = build([{ revs: ['3-c', '2-b', '1-a'] }]);
  assert.deepEqual(leaves(tree).map((l) => l.rev), ['3-c']);
  assert.equal(winner(tree)!.rev, '3-c');
  assert.deepEqual(ancestry(tree, '3-c'), ['3-c', '2-b', '1-a']);
});

test('winner: highest pos, then greater rev id; live beats deleted (CouchDB cases)', () => {
  const cases: { paths: { revs: string[]; deleted?: boolean }[]; expected: string }[] = [
    { paths: [{ revs: ['2-a', '1-x'] }, { revs: ['2-b', '1-x'] }], expected: '2-b' },
    { paths: [{ revs: ['3-a', '2-a', '1-x'] }, { revs: ['2-z', '1-x'] }], expected: '3-a' },
    { paths: [{ revs: ['3-a', '2-a', '1-x'], deleted: true }, { revs: ['2-z', '1-x'] }], expected: '2-z' },
    { paths: [{ revs: ['2-a', '1-x'], deleted: true }, { revs: ['2-b', '1-x'], deleted: true }], expected: '2-b' },
  ];
  for (const c of cases) assert.equal(winner(build(c.paths))!.rev, c.expected, JSON.stringify(c.paths));
});

test('sorted leaves put the winner first and list conflicts after', () => {
  const tree = build([{ revs: ['2-a', '1-x'] }, { revs: ['2-c', '1-x'] }, { revs: ['2-b', '1-x'], deleted: true }]);
  assert.deepEqual(sortedLeaves(tree).map((l) => l.rev), ['2-c', '2-a', '2-b']);
});

test('merging a path that extends a leaf adds one revision', () => {
  const tree = build([{ revs: ['1-a'] }]);
  const merged = mergePath(tree, { revs: ['2-b', '1-a'], deleted: false, hasBody: true }, LIMIT);
  assert.equal(merged.added, true);
  assert.deepEqual(leaves(merged.tree).map((l) => l.rev), ['2-b']);
  assert.equal(mergePath(merged.tree, { revs: ['2-b', '1-a'], deleted: false, hasBody: true }, LIMIT).added, false);
});

test('stemming keeps the newest revsLimit revisions of every path', () => {
  const revs = Array.from({ length: 10 }, (_, i) => `${10 - i}-r${10 - i}`);
  const tree = build([{ revs }], 3);
  assert.deepEqual([...tree.keys()].sort(), ['10-r10', '8-r8', '9-r9']);
  assert.equal(tree.get('8-r8')!.parent, null);
  assert.equal(winner(tree)!.rev, '10-r10');
});

test('a stemmed branch keeps its sibling branch intact', () => {
  const tree = build([{ revs: ['4-d', '3-c', '2-b', '1-a'] }, { revs: ['2-x', '1-a'] }], 2);
  assert.deepEqual(leaves(tree).map((l) => l.rev).sort(), ['2-x', '4-d']);
  assert.ok(tree.has('3-c') && tree.has('1-a') && !tree.has('2-b'));
});

test('encode then decode gives the same tree, and equal trees encode equally', () => {
  const a = build([{ revs: ['2-a', '1-x'] }, { revs: ['3-c', '2-b', '1-x'], deleted: true }]);
  const b = build([{ revs: ['3-c', '2-b', '1-x'], deleted: true }, { revs: ['2-a', '1-x'] }]);
  assert.deepEqual(encodeTree(a), encodeTree(b));
  assert.deepEqual(encodeTree(decodeTree(encodeTree(a))), encodeTree(a));
});

// ---- properties -------------------------------------------------------------------

/**
 * A random edit history: each step extends a random existing revision (making
 * branches), sometimes as a deletion. Returns every leaf-to-root path.
 *
 * Hashes come from a tiny alphabet (and may be empty, as in `1-`), so one hash
 * recurs at many depths and on many branches: `1-a → 2-c → 3-c` and the like. A
 * revision is (pos, hash): the same id twice means the same revision, so a step
 * that would give an existing id a second parent gets a distinct hash instead.
 */
const HASHES = ['a', 'b', 'c', ''];
const history = fc
  .array(fc.tuple(fc.nat(), fc.boolean(), fc.nat({ max: HASHES.length - 1 })), { minLength: 1, maxLength: 40 })
  .map((steps) => {
    const nodes: { rev: string; parent: number; deleted: boolean }[] = [{ rev: '1-a', parent: -1, deleted: false }];
    const byRev = new Map<string, number>([['1-a', 0]]);
    for (const [pick, deleted, h] of steps) {
      const parent = pick % nodes.length;
      const pos = Number(nodes[parent]!.rev.split('-')[0]) + 1;
      let rev = `${pos}-${HASHES[h]}`;
      const same = byRev.get(rev);
      if (same !== undefined && nodes[same]!.parent === parent) continue; // the same edit again
      if (same !== undefined) rev = `${pos}-${HASHES[h]}${nodes.length}`;
      byRev.set(rev, nodes.length);
      nodes.push({ rev, parent, deleted: deleted && pick % 5 === 0 });
    }
    const hasChild = new Set(nodes.map((n) => n.parent));
    const paths: { revs: string[]; deleted: boolean }[] = [];
    nodes.forEach((node, i) => {
      if (hasChild.has(i)) return;
      const revs: string[] = [];
      for (let at = i; at !== -1; at = nodes[at]!.parent) revs.push(nodes[at]!.rev);
      paths.push({ revs, deleted: node.deleted });
    });
    return paths;
  });

const limitArb = fc.oneof(fc.constant(1000), fc.integer({ min: 1, max: 6 }));

test('property: merge is order-independent', () => {
  fc.assert(
    fc.property(history, limitArb, fc.func(fc.integer()), (paths, limit, order) => {
      const shuffled = [...paths].sort((a, b) => order(a.revs[0]) - order(b.revs[0]));
      assert.deepEqual(encodeTree(build(paths, limit)), encodeTree(build(shuffled, limit)));
    }),
  );
});

test('property: merge is idempotent, and merging trees equals merging their paths', () => {
  fc.assert(
    fc.property(history, limitArb, fc.nat(), (paths, limit, split) => {
      const whole = build(paths, limit);
      const again = build([...paths, ...paths], limit);
      assert.deepEqual(encodeTree(again), encodeTree(whole));
      const cut = split % (paths.length + 1);
      const left = build(paths.slice(0, cut), limit);
      const right = build(paths.slice(cut), limit);
      assert.deepEqual(encodeTree(mergeTrees(left, right, limit)), encodeTree(whole));
      assert.deepEqual(encodeTree(mergeTrees(right, left, limit)), encodeTree(whole));
    }),
  );
});

test('property: no leaf is ever lost, and without stemming no revision is lost', () => {
  fc.assert(
    fc.property(history, limitArb, (paths, limit) => {
      const tree = build(paths, limit);
      const leafRevs = new Set(leaves(tree).map((l) => l.rev));
      for (const p of paths) assert.ok(leafRevs.has(p.revs[0]!), `leaf ${p.revs[0]} lost`);
      if (limit === 1000) for (const p of paths) for (const rev of p.revs) assert.ok(tree.has(rev));
    }),
  );
});

test('property: stemming keeps each leaf\'s newest revsLimit revisions and nothing older', () => {
  fc.assert(
    fc.property(history, fc.integer({ min: 1, max: 6 }), (paths, limit) => {
      const tree = build(paths, limit);
      // Every kept node is within revsLimit of some leaf, along parent links.
      const near = new Set<string>();
      for (const leaf of leaves(tree)) for (const rev of ancestry(tree, leaf.rev).slice(0, limit)) near.add(rev);
      for (const rev of tree.keys()) assert.ok(near.has(rev), `${rev} is older than revsLimit on every path`);
      // Every leaf still has its newest revisions, as many as the limit allows.
      for (const p of paths) {
        const leaf = p.revs[0]!;
        if (!tree.has(leaf) || leaves(tree).every((l) => l.rev !== leaf)) continue;
        assert.ok(ancestry(tree, leaf).length >= Math.min(limit, p.revs.length));
        for (const rev of p.revs.slice(0, limit)) assert.ok(tree.has(rev), `${rev} of ${leaf} lost`);
      }
      assert.deepEqual(encodeTree(stem(new Map(tree), limit)), encodeTree(tree));
    }),
  );
});

test('property: the winner is a leaf and no leaf beats it', () => {
  fc.assert(
    fc.property(history, (paths) => {
      const tree = build(paths);
      const best = winner(tree)!;
      for (const leaf of leaves(tree)) {
        if (leaf.deleted === best.deleted) assert.ok(leaf.pos < best.pos || (leaf.pos === best.pos && leaf.rev <= best.rev));
        else assert.equal(best.deleted, false);
      }
    }),
  );
});

// ---- repeated hashes (issue 16, item 1) -------------------------------------------

const LIMITS = { docBytesMax: 1 << 20, docIdBytesMax: 512, attachmentBytesMax: 1 << 20 };

/** What a replicator sends for `rev`: `_revisions` built from the tree, as CouchDB renders it. */
function revisionsOf(tree: RevTree, rev: string): { start: number; ids: string[] } {
  return { start: tree.get(rev)!.pos, ids: ancestry(tree, rev).map((r) => r.slice(r.indexOf('-') + 1)) };
}

test('one hash at several depths makes distinct revisions', () => {
  const tree = build([{ revs: ['3-c', '2-c', '1-a'] }, { revs: ['2-b', '1-a'] }]);
  assert.deepEqual([...tree.keys()].sort(), ['1-a', '2-b', '2-c', '3-c']);
  assert.deepEqual(ancestry(tree, '3-c'), ['3-c', '2-c', '1-a']);
  assert.deepEqual(sortedLeaves(tree).map((l) => l.rev), ['3-c', '2-b']);
  assert.deepEqual(revisionsOf(tree, '3-c'), { start: 3, ids: ['c', 'c', 'a'] });
});

test('_revisions wins over a disagreeing _rev, as in CouchDB (PouchDB sends these)', () => {
  // PouchDB looks 3-c up by hash alone, finds 2-c, and sends 2-c's history under _rev 3-c.
  const json = { _id: 'foo', _rev: '3-c', _revisions: { start: 2, ids: ['c', 'a'] }, value: 'db1' };
  assert.deepEqual(parseDoc(json, { newEdits: false, limits: LIMITS }).edit.revs, ['2-c', '1-a']);
  const reordered = { _id: 'foo', _revisions: { start: 2, ids: ['c', 'a'] }, _rev: '3-c' };
  assert.deepEqual(parseDoc(reordered, { newEdits: false, limits: LIMITS }).edit.revs, ['2-c', '1-a']);
});

test('a bare `1-` parses, and replicates as its own revision', () => {
  assert.deepEqual(parseDoc({ _id: 'x', _rev: '1-' }, { newEdits: false, limits: LIMITS }).edit.revs, ['1-']);
  const tree = build([{ revs: ['2-', '1-'] }, { revs: ['2-a', '1-'] }]);
  assert.deepEqual(sortedLeaves(tree).map((l) => l.rev), ['2-a', '2-']);
  assert.equal(decodeDocInfo(Buffer.from(encodeDocInfo({ id: 'x', seq: 1, tree, winner: winner(tree)! }))).winner.rev, '2-a');
  for (const bad of ['-', '0-', '1', 'a-b', '1-a-b', '1-a b', '01-a']) {
    assert.throws(() => parseDoc({ _id: 'x', _rev: bad }, { newEdits: false, limits: LIMITS }), { token: 'bad_request' }, bad);
  }
});

test('property: every leaf\'s _revisions, sent back in, names exactly its stored path', () => {
  fc.assert(
    fc.property(history, limitArb, (paths, limit) => {
      const tree = build(paths, limit);
      for (const leaf of leaves(tree)) {
        const json = { _id: 'd', _rev: leaf.rev, _revisions: revisionsOf(tree, leaf.rev) };
        const { edit } = parseDoc(json, { newEdits: false, limits: LIMITS });
        assert.deepEqual(edit.revs, ancestry(tree, leaf.rev));
        // Replaying it into an empty tree and into the tree itself changes nothing it holds.
        const again = mergePath(tree, { revs: edit.revs!, deleted: leaf.deleted, hasBody: true }, limit);
        assert.equal(again.added, false);
        assert.deepEqual(encodeTree(again.tree), encodeTree(tree));
      }
    }),
  );
});

test('property: stored doc infos of such histories pass the read check and round-trip', () => {
  fc.assert(
    fc.property(history, limitArb, (paths, limit) => {
      const tree = build(paths, limit);
      const info = { id: 'd', seq: 7, tree, winner: winner(tree)! };
      const back = decodeDocInfo(Buffer.from(encodeDocInfo(info)));
      assert.deepEqual(encodeTree(back.tree), encodeTree(tree));
      assert.equal(back.winner.rev, info.winner.rev);
    }),
  );
});

// ---- the read check ----------------------------------------------------------------

test('a corrupted stored tree is refused on read, never served', () => {
  const tree = build([{ revs: ['3-c', '2-c', '1-a'] }, { revs: ['2-b', '1-a'] }]);
  const good = encodeDocInfo({ id: 'foo', seq: 3, tree, winner: winner(tree)! });
  const [line, idLine, rest] = good.split('\n') as [string, string, string];
  const stored = JSON.parse(rest) as { seq: number; tree: [string, number, number][] };
  const withTree = (t: unknown, leavesLine = line) => Buffer.from(`${leavesLine}\n${idLine}\n${JSON.stringify({ seq: 3, tree: t })}`);
  assert.equal(decodeDocInfo(withTree(stored.tree)).winner.rev, '3-c');
  const t = stored.tree; // [1-a, 2-b, 2-c, 3-c]
  const corrupt: [string, unknown, string?][] = [
    ['swapped order', [t[0], t[2], t[1], [t[3]![0], 1, t[3]![2]]]],
    ['repeated rev', [t[0], t[1], t[1], t[3]]],
    ['parent at the wrong depth', [t[0], t[1], t[2], ['3-c', 0, 2]]],
    ['parent index after the child', [t[0], ['2-b', 3, 2], t[2], t[3]]],
    ['parent index out of range', [t[0], t[1], t[2], ['3-c', 9, 2]]],
    ['unknown flags', [t[0], t[1], t[2], ['3-c', 2, 6]]],
    ['malformed rev', [t[0], t[1], t[2], ['3-c c', 2, 2]]],
    ['entry not a triple', [t[0], t[1], t[2], ['3-c', 2]]],
    ['not an array', { a: 1 }],
    ['empty tree', []],
    ['a lost revision', [t[0], t[2], [t[3]![0], 1, t[3]![2]]], line],
    ['leaves line disagrees', t, '3-c'],
  ];
  for (const [what, bad, leavesLine] of corrupt) {
    assert.throws(() => decodeDocInfo(withTree(bad, leavesLine)), { name: 'AssertionError' }, what);
  }
});

test('property: leaves carried through decode and edits agree with a fresh look, and the input tree is never changed', async () => {
  const op = fc.record({
    replicated: fc.boolean(),
    pick: fc.nat(),
    deleted: fc.boolean(),
    length: fc.integer({ min: 1, max: 4 }),
    roundTrip: fc.boolean(),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), fc.integer({ min: 2, max: 6 }), async (ops, revsLimit) => {
      const ctx = { revsLimit, readBody: async () => '{}', hasAttachment: async () => true };
      let info: DocInfo | undefined;
      for (let k = 0; k < ops.length; k++) {
        const o = ops[k]!;
        let edit;
        if (info && o.replicated) {
          // A branch of new revisions on any known node (a leaf or an interior one).
          const nodes = [...info.tree.values()];
          const base = nodes[o.pick % nodes.length]!;
          const revs = Array.from({ length: o.length }, (_, i) => `${base.pos + o.length - i}-r${k}x${i}`);
          edit = { id: 'd', body: { k }, deleted: o.deleted, attachments: null, revs: [...revs, base.rev] };
        } else if (info) {
          const ls = leaves(info.tree);
          edit = { id: 'd', body: { k }, deleted: o.deleted, attachments: null, baseRev: ls[o.pick % ls.length]!.rev };
        } else edit = { id: 'd', body: { k }, deleted: o.deleted, attachments: null };
        const snapshot = info ? [...info.tree.entries()] : [];
        const encodedBefore = info ? encodeTree(info.tree) : [];
        const out = await applyEdit(info, edit, ctx);
        if (info) {
          assert.deepEqual([...info.tree.entries()], snapshot, 'the input map keeps its entries');
          for (const [rev, node] of snapshot) assert.equal(info.tree.get(rev), node, 'and its node objects');
          assert.deepEqual(encodeTree(info.tree), encodedBefore, 'and its nodes their fields');
        }
        assert.equal(out.kind, 'write');
        if (out.kind !== 'write') return;
        const fresh = new Map(out.tree); // not known to the leaves record: computed from scratch
        assert.deepEqual(sortedLeaves(out.tree), sortedLeaves(fresh));
        assert.deepEqual(leaves(out.tree), leaves(fresh));
        assert.equal(out.winner, winner(fresh));
        for (const rev of out.tree.keys()) assert.equal(isLeaf(out.tree, rev), isLeaf(fresh, rev), rev);
        const next: DocInfo = { id: 'd', seq: k, tree: out.tree, winner: out.winner };
        const encoded = encodeDocInfo(next);
        assert.equal(encoded, encodeDocInfo({ ...next, tree: fresh }));
        info = o.roundTrip ? decodeDocInfo(Buffer.from(encoded, 'utf8')) : next;
      }
    }),
    { numRuns: 200 },
  );
});

test('merged leaves follow a parent learned after its child (a root gains a parent)', () => {
  const decoded = decodeTree(encodeTree(build([{ revs: ['5-e'] }, { revs: ['2-b', '1-a'] }])));
  const merged = mergePathOwned(decoded, { revs: ['5-e', '4-d', '3-c', '2-b'], deleted: false, hasBody: false }, LIMIT);
  assert.ok(merged.leaves, 'the decoded tree\'s leaves were known');
  assert.deepEqual(merged.leaves.map((l) => l.rev).sort(), ['5-e']);
  assert.deepEqual(leaves(new Map(merged.tree)).map((l) => l.rev), ['5-e']);
  assert.notEqual(merged.tree, decoded, 'a new map');
  assert.equal(decoded.size, 3, 'the input is unchanged');
});

test('property: encodeTree gives what the sort-and-index encoder gave, in and out of order, narrow and wide', () => {
  // The encoder before the hot-path rework, kept as the reference for the stored format.
  const reference = (tree: RevTree) => {
    const nodes = [...tree.values()].sort((a, b) => a.pos - b.pos || (a.rev < b.rev ? -1 : a.rev > b.rev ? 1 : 0));
    const index = new Map(nodes.map((node, i) => [node.rev, i]));
    return nodes.map((node) => {
      const parent = node.parent === null ? -1 : index.get(node.parent)!;
      const flags = (node.deleted ? 1 : 0) | (node.hasBody ? 2 : 0);
      return node.hasBody && node.size ? [node.rev, parent, flags, node.size.external, node.size.active] : [node.rev, parent, flags];
    });
  };
  const branch = fc.record({ from: fc.integer({ min: 1, max: 6 }), length: fc.integer({ min: 1, max: 4 }), hash: fc.hexaString({ minLength: 1, maxLength: 3 }), deleted: fc.boolean() });
  fc.assert(
    fc.property(fc.array(branch, { minLength: 1, maxLength: 30 }), fc.integer({ min: 1, max: 12 }), (branches, limit) => {
      let tree = build([{ revs: ['3-c', '2-b', '1-a'] }]);
      for (const b of branches) {
        // Branch off an ancestor of the 1-a..3-c line, or start a detached path (a stemmed root).
        const base = b.from <= 3 ? [`${b.from}-${'abc'[b.from - 1]}`] : [];
        const top = (b.from <= 3 ? b.from : b.from + 2) + b.length;
        const revs = Array.from({ length: b.length }, (_, i) => `${top - i}-${b.hash}`);
        tree = mergePath(tree, { revs: [...revs, ...base], deleted: b.deleted, hasBody: true }, limit).tree;
        assert.deepEqual(encodeTree(tree), reference(tree));
        assert.deepEqual(encodeTree(decodeTree(encodeTree(tree))), reference(tree));
      }
    }),
  );
});
