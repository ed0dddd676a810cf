/**
 * What the rev-tree check on read costs: decoding a stored doc info with every
 * invariant checked (`decodeDocInfo`, as production runs it) against the same decode
 * with no checks (JSON parse and map build only), on big trees:
 *
 *   deep-1000   one branch, 1000 revisions (the default revs_limit)
 *   wide-1000   a root and 1000 conflicting leaves one level below it
 *   bushy-1000  100 branches of 10 revisions each from one root (100 leaves)
 *   small-3     a three-revision document, the common case
 *
 * Run: `npx tsc -p . && node dist/loadtest/rev-tree-check.js` (single-threaded, no I/O).
 * Prints µs per decode (median of rounds) for both and the difference.
 */
import { createHash } from 'node:crypto';
import { decodeDocInfo, encodeDocInfo } from '../src/shard/doc-info';
import { emptyTree, EncodedTree, mergePath, revPos, RevNode, RevTree, winner } from '../src/shard/rev-tree';

function hash(label: string): string {
  return createHash('md5').update(label).digest('hex');
}

function build(paths: string[][]): RevTree {
  let tree = emptyTree();
  for (const revs of paths) tree = mergePath(tree, { revs, deleted: false, hasBody: true }, 1000).tree;
  return tree;
}

function chain(from: number, to: number, label: string, root: string[]): string[] {
  const out: string[] = [];
  for (let pos = to; pos >= from; pos--) out.push(`${pos}-${hash(label + pos)}`);
  return [...out, ...root];
}

const root = `1-${hash('root')}`;
const shapes: Record<string, RevTree> = {
  'deep-1000': build([chain(2, 1000, 'deep', [root])]),
  'wide-1000': build(Array.from({ length: 1000 }, (_, i) => [`2-${hash('w' + i)}`, root])),
  'bushy-1000': build(Array.from({ length: 100 }, (_, b) => chain(2, 11, `b${b}-`, [root]))),
  'small-3': build([chain(2, 3, 'small', [root])]),
};

/** The decode without any check: what reading costs when nothing is verified. */
function decodeUnchecked(raw: Buffer): { tree: RevTree; winner: RevNode | undefined } {
  const first = raw.indexOf(10);
  const second = raw.indexOf(10, first + 1);
  JSON.parse(raw.toString('utf8', first + 1, second));
  const parsed = JSON.parse(raw.toString('utf8', second + 1)) as { seq: number; tree: EncodedTree };
  const tree = new Map<string, RevNode>();
  for (const [rev, parentIndex, flags] of parsed.tree) {
    const parent = parentIndex === -1 ? null : parsed.tree[parentIndex]![0];
    tree.set(rev, { rev, pos: revPos(rev), parent, deleted: (flags & 1) !== 0, hasBody: (flags & 2) !== 0 });
  }
  return { tree, winner: winner(tree) };
}

function timeUs(fn: () => unknown, iterations: number): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - started) / 1e3 / iterations;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const rounds = 15;
console.log(`node ${process.version}; µs per decode, median of ${rounds} rounds`);
console.log('shape        nodes  leaves   checked  unchecked  check costs');
for (const [name, tree] of Object.entries(shapes)) {
  const raw = Buffer.from(encodeDocInfo({ id: 'doc', seq: 1, tree, winner: winner(tree)! }));
  const iterations = tree.size > 100 ? 200 : 20_000;
  for (let i = 0; i < 3; i++) timeUs(() => decodeDocInfo(raw), iterations); // warm up both paths
  for (let i = 0; i < 3; i++) timeUs(() => decodeUnchecked(raw), iterations);
  const checked: number[] = [];
  const unchecked: number[] = [];
  for (let r = 0; r < rounds; r++) {
    checked.push(timeUs(() => decodeDocInfo(raw), iterations));
    unchecked.push(timeUs(() => decodeUnchecked(raw), iterations));
  }
  const c = median(checked);
  const u = median(unchecked);
  const leafCount = [...tree.values()].filter((n) => ![...tree.values()].some((m) => m.parent === n.rev)).length;
  console.log(
    `${name.padEnd(11)} ${String(tree.size).padStart(6)} ${String(leafCount).padStart(7)} ${c.toFixed(1).padStart(9)} ${u.toFixed(1).padStart(10)} ${(c - u).toFixed(1).padStart(9)} µs`,
  );
}
