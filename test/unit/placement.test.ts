import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { movedCopies, murmur3, placeDatabase, RingMember } from '../../src/ring/placement';

// ---------------------------------------------------------------------------------
// Helpers and generators

function nodes(...names: string[]): RingMember[] {
  return names.map((name) => ({ name }));
}

function placeAll(dbNames: readonly string[], q: number, n: number, members: readonly RingMember[]): string[][] {
  return dbNames.flatMap((db) => placeDatabase(db, q, n, members));
}

function copiesPerNode(placement: readonly string[][]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const copies of placement) for (const node of copies) counts.set(node, (counts.get(node) ?? 0) + 1);
  return counts;
}

function totalCopies(placement: readonly string[][]): number {
  return placement.reduce((sum, copies) => sum + copies.length, 0);
}

/** Short arbitrary names, and names that differ only at the end, as real clusters use. */
const nodeName = fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.nat({ max: 999 }).map((i) => `node-${i}`));

function memberList(minLength: number, maxLength: number): fc.Arbitrary<RingMember[]> {
  return fc.uniqueArray(nodeName, { minLength, maxLength }).map((names) => names.map((name) => ({ name })));
}

const dbName = fc.string({ minLength: 1 });

/** `count` database names: either one prefix and a counter, or unrelated strings. */
function dbNameList(count: number): fc.Arbitrary<string[]> {
  return fc.oneof(
    fc.string({ minLength: 1, maxLength: 8 }).map((prefix) => Array.from({ length: count }, (_, i) => `${prefix}${i}`)),
    fc.uniqueArray(fc.string({ minLength: 1, maxLength: 16 }), { minLength: count, maxLength: count }),
  );
}

/** Members with zones: `zoneCount` zones, each with at least one member. */
const zonedMembers = fc
  .tuple(fc.uniqueArray(nodeName, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 12 }))
  .chain(([names, zoneWanted]) => {
    const zoneCount = Math.min(zoneWanted, names.length);
    return fc
      .array(fc.integer({ min: 0, max: zoneCount - 1 }), { minLength: names.length, maxLength: names.length })
      .map((picks) => ({
        zoneCount,
        members: names.map((name, i) => ({ name, zone: `zone-${i < zoneCount ? i : picks[i]!}` })),
      }));
  });

// ---------------------------------------------------------------------------------
// The hash: pinned, because every node must compute the same placement.

test('murmur3 x86_32 matches the published vectors', () => {
  const utf8 = (text: string) => Buffer.from(text, 'utf8');
  const cases: [Uint8Array, number, number][] = [
    [utf8(''), 0, 0],
    [utf8(''), 1, 0x514e28b7],
    [utf8(''), 0xffffffff, 0x81f16f39],
    [new Uint8Array([0xff, 0xff, 0xff, 0xff]), 0, 0x76293b50],
    [new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0, 0xf55b516b],
    [new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0x5082edee, 0x2362f9de],
    [new Uint8Array([0x21, 0x43, 0x65]), 0, 0x7e4a8634],
    [new Uint8Array([0x21, 0x43]), 0, 0xa0f7b07a],
    [new Uint8Array([0x21]), 0, 0x72661cf4],
    [new Uint8Array([0, 0, 0, 0]), 0, 0x2362f9de],
    [utf8('aaaa'), 0x9747b28c, 0x5a97808a],
    [utf8('abc'), 0, 0xb3dd93fa],
    [utf8('Hello, world!'), 0x9747b28c, 0x24884cba],
    [utf8('The quick brown fox jumps over the lazy dog'), 0x9747b28c, 0x2fa826cd],
  ];
  for (const [bytes, seed, expected] of cases) {
    assert.equal(murmur3(bytes, seed), expected, `murmur3(${Buffer.from(bytes).toString('hex')}, ${seed})`);
  }
});

test('placement of fixed inputs is pinned (changing it moves shards on upgrade)', () => {
  assert.deepEqual(placeDatabase('db', 4, 3, nodes('node-1', 'node-2', 'node-3', 'node-4', 'node-5')), PINNED_PLAIN);
  const zoned: RingMember[] = [
    { name: 'a1', zone: 'a' },
    { name: 'a2', zone: 'a' },
    { name: 'b1', zone: 'b' },
    { name: 'b2', zone: 'b' },
    { name: 'c1', zone: 'c' },
  ];
  assert.deepEqual(placeDatabase('db', 4, 3, zoned), PINNED_ZONED);
});

const PINNED_PLAIN: string[][] = [
  ['node-4', 'node-5', 'node-2'],
  ['node-5', 'node-4', 'node-1'],
  ['node-3', 'node-2', 'node-4'],
  ['node-4', 'node-1', 'node-5'],
];
const PINNED_ZONED: string[][] = [
  ['b1', 'c1', 'a1'],
  ['c1', 'a1', 'b1'],
  ['b1', 'a1', 'c1'],
  ['a2', 'b1', 'c1'],
];

// ---------------------------------------------------------------------------------
// Tables

test('one node holds every copy of every range', () => {
  assert.deepEqual(placeDatabase('db', 4, 3, nodes('only')), [['only'], ['only'], ['only'], ['only']]);
  assert.deepEqual(placeDatabase('db', 1, 1, nodes('only')), [['only']]);
});

test('n above the member count is capped at the member count', () => {
  const placement = placeDatabase('db', 8, 5, nodes('a', 'b', 'c'));
  assert.equal(placement.length, 8);
  for (const copies of placement) assert.deepEqual([...copies].sort(), ['a', 'b', 'c']);
});

test('n = 1 gives one copy per range', () => {
  const placement = placeDatabase('db', 16, 1, nodes('a', 'b', 'c'));
  for (const copies of placement) assert.equal(copies.length, 1);
});

test('different databases are placed differently', () => {
  const members = nodes('a', 'b', 'c', 'd', 'e', 'f');
  assert.notDeepEqual(placeDatabase('db-1', 8, 2, members), placeDatabase('db-2', 8, 2, members));
});

test('zones: two zones and n = 3 put two copies in one zone and one in the other', () => {
  const members: RingMember[] = [
    { name: 'a1', zone: 'a' },
    { name: 'a2', zone: 'a' },
    { name: 'a3', zone: 'a' },
    { name: 'b1', zone: 'b' },
    { name: 'b2', zone: 'b' },
    { name: 'b3', zone: 'b' },
  ];
  const zoneOf = new Map(members.map((m) => [m.name, m.zone!]));
  for (const copies of placeDatabase('db', 32, 3, members)) {
    const zones = copies.map((node) => zoneOf.get(node)!).sort();
    assert.ok(zones.join() === 'a,a,b' || zones.join() === 'a,b,b', copies.join());
    // The primary and the next copy are in different zones.
    assert.notEqual(zoneOf.get(copies[0]!), zoneOf.get(copies[1]!));
  }
});

test('zones: a member without a zone is a zone of its own', () => {
  const members: RingMember[] = [{ name: 'a1', zone: 'a' }, { name: 'a2', zone: 'a' }, { name: 'x' }, { name: 'y' }];
  for (const copies of placeDatabase('db', 32, 3, members)) {
    assert.deepEqual([...copies].filter((node) => node.startsWith('a')).length, 1, copies.join());
    assert.ok(copies.includes('x') && copies.includes('y'), copies.join());
  }
});

test('invalid inputs fail assertions', () => {
  const members = nodes('a', 'b');
  assert.throws(() => placeDatabase('db', 0, 1, members));
  assert.throws(() => placeDatabase('db', 1.5, 1, members));
  assert.throws(() => placeDatabase('db', 1025, 1, members));
  assert.throws(() => placeDatabase('db', 2, 0, members));
  assert.throws(() => placeDatabase('db', 2, 2.5, members));
  assert.throws(() => placeDatabase('db', 2, 1, []));
  assert.throws(() => placeDatabase('db', 2, 1, nodes('a', 'a')));
  assert.throws(() => placeDatabase('db', 2, 1, nodes('')));
  assert.throws(() => placeDatabase('', 2, 1, members));
  assert.throws(() => placeDatabase('db', 2, 1, [{ name: 'a', zone: '' }]));
});

test('movedCopies counts (range, node) pairs new in the second placement', () => {
  assert.equal(movedCopies([['a', 'b'], ['b', 'c']], [['a', 'b'], ['b', 'c']]), 0);
  assert.equal(movedCopies([['a', 'b'], ['b', 'c']], [['b', 'a'], ['c', 'b']]), 0, 'order is not movement');
  assert.equal(movedCopies([['a', 'b'], ['b', 'c']], [['a', 'd'], ['d', 'e']]), 3);
  assert.equal(movedCopies([['a'], ['b']], [['a', 'b'], ['b', 'a']]), 2);
  assert.equal(movedCopies([['a', 'b'], ['b', 'a']], [['a'], ['b']]), 0, 'dropped copies are not moves');
  assert.throws(() => movedCopies([['a']], [['a'], ['b']]));
});

// ---------------------------------------------------------------------------------
// Properties

test('property: every range gets min(n, N) distinct members', () => {
  fc.assert(
    fc.property(dbName, fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 6 }), memberList(1, 12), (db, q, n, members) => {
      const names = new Set(members.map((m) => m.name));
      const placement = placeDatabase(db, q, n, members);
      assert.equal(placement.length, q);
      for (const copies of placement) {
        assert.equal(copies.length, Math.min(n, members.length));
        assert.equal(new Set(copies).size, copies.length);
        for (const node of copies) assert.ok(names.has(node));
      }
    }),
  );
});

test('property: placement is deterministic and independent of member order', () => {
  const input = fc
    .tuple(
      dbName,
      fc.integer({ min: 1, max: 32 }),
      fc.integer({ min: 1, max: 5 }),
      fc.oneof(memberList(1, 12), zonedMembers.map((z) => z.members)),
    )
    .chain(([db, q, n, members]) =>
      fc
        .shuffledSubarray(members, { minLength: members.length, maxLength: members.length })
        .map((shuffled) => ({ db, q, n, members, shuffled })),
    );
  fc.assert(
    fc.property(input, ({ db, q, n, members, shuffled }) => {
      const first = placeDatabase(db, q, n, members);
      assert.deepEqual(placeDatabase(db, q, n, members), first);
      assert.deepEqual(placeDatabase(db, q, n, shuffled), first);
      // The preference order within a range also agrees, not only the set.
      assert.deepEqual(placeDatabase(db, q, n, [...members].reverse()), first);
    }),
  );
});

test('property: with at least n zones a range has its copies in n distinct zones', () => {
  fc.assert(
    fc.property(dbName, fc.integer({ min: 1, max: 32 }), fc.integer({ min: 1, max: 5 }), zonedMembers, (db, q, n, zoned) => {
      const { zoneCount, members } = zoned;
      const zoneOf = new Map(members.map((m) => [m.name, m.zone]));
      const zoneSize = new Map<string, number>();
      for (const m of members) zoneSize.set(m.zone, (zoneSize.get(m.zone) ?? 0) + 1);
      const copiesWanted = Math.min(n, members.length);
      for (const copies of placeDatabase(db, q, n, members)) {
        const perZone = new Map<string, number>();
        for (const node of copies) perZone.set(zoneOf.get(node)!, (perZone.get(zoneOf.get(node)!) ?? 0) + 1);
        if (zoneCount >= copiesWanted) {
          assert.equal(perZone.size, copiesWanted, `copies ${copies.join()} share a zone`);
          continue;
        }
        // Fewer zones than copies: every zone is used, and as evenly as zone sizes allow.
        assert.equal(perZone.size, zoneCount);
        const most = Math.max(...perZone.values());
        for (const [zone, count] of perZone) {
          if (count < zoneSize.get(zone)!) assert.ok(count >= most - 1, `zone ${zone} holds ${count}, another ${most}`);
        }
      }
    }),
  );
});

/** Slack on the movement bound for small totals; see the binomial tail note below. */
const MOVE_SLACK_COPIES = 8;

test('property: adding a node moves at most about 2/(N+1) of the copies, all onto the new node', () => {
  // 20 databases × q = 8 gives 160 ranges. Each range gains the new node with chance
  // n/(N+1), so moved copies are Binomial(160, n/(N+1)) with mean total/(N+1); the
  // chance of exceeding twice the mean plus 8 is below 4e-7 per run for n ≤ 4, N ≤ 15.
  const input = fc.record({
    dbNames: dbNameList(20),
    n: fc.integer({ min: 1, max: 4 }),
    members: memberList(1, 15),
    newName: nodeName,
  });
  fc.assert(
    fc.property(input, ({ dbNames, n, members, newName }) => {
      fc.pre(!members.some((m) => m.name === newName));
      const before = placeAll(dbNames, 8, n, members);
      const after = placeAll(dbNames, 8, n, [...members, { name: newName }]);
      const moved = movedCopies(before, after);
      const total = totalCopies(after);
      const bound = (2 * total) / (members.length + 1) + MOVE_SLACK_COPIES;
      assert.ok(moved <= bound, `moved ${moved} of ${total} with N=${members.length}`);
      for (let i = 0; i < after.length; i++) {
        const held = new Set(before[i]);
        for (const node of after[i]!) if (!held.has(node)) assert.equal(node, newName, `range ${i} moved onto ${node}`);
      }
    }),
  );
});

test('property: with zones, adding a node moves at most one copy per range, onto the new node', () => {
  const input = fc.record({
    dbNames: dbNameList(5),
    n: fc.integer({ min: 1, max: 5 }),
    zoned: zonedMembers,
    newName: nodeName,
    newZone: fc.integer({ min: 0, max: 12 }),
  });
  fc.assert(
    fc.property(input, ({ dbNames, n, zoned, newName, newZone }) => {
      const { members } = zoned;
      fc.pre(!members.some((m) => m.name === newName));
      const before = placeAll(dbNames, 8, n, members);
      const after = placeAll(dbNames, 8, n, [...members, { name: newName, zone: `zone-${newZone}` }]);
      for (let i = 0; i < after.length; i++) {
        const held = new Set(before[i]);
        const arrived = after[i]!.filter((node) => !held.has(node));
        assert.ok(arrived.length <= 1, `range ${i}: ${before[i]!.join()} → ${after[i]!.join()}`);
        for (const node of arrived) assert.equal(node, newName);
      }
    }),
  );
});

test('property: removing a node moves only the copies that were on it', () => {
  const input = fc
    .record({
      dbNames: dbNameList(10),
      n: fc.integer({ min: 1, max: 5 }),
      members: fc.oneof(memberList(2, 12), zonedMembers.map((z) => z.members).filter((m) => m.length >= 2)),
    })
    .chain((r) => fc.nat({ max: r.members.length - 1 }).map((removed) => ({ ...r, removed })));
  fc.assert(
    fc.property(input, ({ dbNames, n, members, removed }) => {
      const gone = members[removed]!.name;
      const rest = members.filter((m) => m.name !== gone);
      const before = placeAll(dbNames, 8, n, members);
      const after = placeAll(dbNames, 8, n, rest);
      let heldByGone = 0;
      for (let i = 0; i < before.length; i++) {
        const kept = new Set(after[i]);
        for (const node of before[i]!) {
          if (node !== gone) assert.ok(kept.has(node), `range ${i}: ${node} lost a copy`);
        }
        if (before[i]!.includes(gone)) heldByGone++;
      }
      // Each copy on the removed node is refilled elsewhere while there are enough nodes.
      assert.equal(movedCopies(before, after), rest.length >= n ? heldByGone : 0);
    }),
  );
});

test('property: with many databases each node holds roughly total/N copies', () => {
  // 200 databases × q = 8 = 1600 ranges; a node's count is Binomial(1600, n/N): the
  // chance that any node leaves 0.6–1.4 × the mean is below 3e-8 per run for N ≤ 8.
  const input = fc.record({
    dbNames: dbNameList(200),
    n: fc.integer({ min: 1, max: 3 }),
    members: memberList(2, 8),
  });
  fc.assert(
    fc.property(input, ({ dbNames, n, members }) => {
      const placement = placeAll(dbNames, 8, n, members);
      const check = (counts: Map<string, number>, total: number, what: string) => {
        const mean = total / members.length;
        for (const m of members) {
          const count = counts.get(m.name) ?? 0;
          assert.ok(count >= 0.6 * mean && count <= 1.4 * mean, `${m.name} holds ${count} ${what}, mean ${mean}`);
        }
      };
      check(copiesPerNode(placement), totalCopies(placement), 'copies');
      check(copiesPerNode(placement.map((copies) => [copies[0]!])), placement.length, 'primaries');
    }),
    { numRuns: 50 },
  );
});
