/**
 * Placement: which nodes hold the copies of each of a database's q ranges.
 *
 * Rendezvous (highest-random-weight) hashing. For range i of database `db`, every
 * member gets a score, `murmur3(utf8(JSON.stringify([db, i, member.name])), 0)`, an
 * unsigned 32-bit number; the range's copies go to the n best-scoring members, best
 * first (the first is the primary). Ties (chance about N²/2^33 per range) go to the
 * smaller name (code-unit order), so the ranking is total.
 *
 * Why rendezvous: it needs no virtual-node table, and movement is minimal by
 * construction. A member's score does not depend on who else is in the ring, so adding
 * a node only lets that node push into the top n (about n/(N+1) of the ranges, one copy
 * each: 1/(N+1) of all copies, every one of them onto the new node), and removing a node
 * only refills the slots it held. Why MurmurHash3 x86_32: small, pure 32-bit integer
 * arithmetic (`Math.imul`, no BigInt), full avalanche from its finaliser, and published
 * test vectors (pinned in the tests). FNV-1a is simpler but has no finalising mix, so
 * short keys that differ only at the end (`db-1`, `db-2`) get correlated scores. The
 * JSON array encodes the three fields unambiguously whatever characters names hold.
 *
 * Zones: a member's zone is a failure domain (rack, availability zone). Members are
 * taken in score order in passes; within one pass a zone gives at most one copy, so
 * the first pass spreads a range over distinct zones, and a zone gives a second copy
 * only when there are fewer zones than n; then the copies spread as evenly as the zones
 * allow (a zone with a member left over holds at most one copy fewer than any other).
 * A member with no zone is a zone of its own. Each zone's copies are its best-scoring
 * members, so adding a node still moves at most one copy per range, onto the new node.
 *
 * Compatibility: every node must compute the same placement, so the hash, the key
 * encoding and the tie rule are part of the cluster's on-disk format; the tests pin
 * outputs for fixed inputs. Changing any of them moves shards.
 *
 * Pure and deterministic: no I/O, no clock, no randomness; the output does not depend
 * on the order of `members`. Cost is q × N hashes plus q sorts of N; callers that ask
 * per request should keep the result (it changes only when members or q, n change).
 */
import assert from 'node:assert/strict';

export interface RingMember {
  /** Unique node name (`NodeName`); the member's identity in placement. */
  name: string;
  /** Failure domain; members sharing one are kept apart when there are enough zones. */
  zone?: string;
}

/** Largest q; the same bound `ranges(q)` enforces. */
const Q_MAX = 1024;

/**
 * For each of the q ranges of `dbName`, the n nodes that hold its copies (n capped at
 * the member count), in preference order (first = primary). Deterministic: same inputs
 * in any member order give the same output.
 */
export function placeDatabase(dbName: string, q: number, n: number, members: readonly RingMember[]): string[][] {
  assert.ok(typeof dbName === 'string' && dbName.length > 0, 'dbName must be a non-empty string');
  assert.ok(Number.isInteger(q) && q >= 1 && q <= Q_MAX, `q must be an integer in 1..${Q_MAX}`);
  assert.ok(Number.isInteger(n) && n >= 1, 'n must be an integer ≥ 1');
  assertMembers(members);
  const copies = Math.min(n, members.length);
  const placement: string[][] = [];
  for (let rangeIndex = 0; rangeIndex < q; rangeIndex++) {
    const ranked = rankMembers(dbName, rangeIndex, members);
    const chosen = chooseCopies(ranked, copies);
    assert.equal(chosen.length, copies);
    placement.push(chosen);
  }
  return placement;
}

/**
 * Copies that differ between two placements (for tests and planning): the count of
 * (range, node) pairs in `after` that are not in `before`. Both must have the same q.
 */
export function movedCopies(before: string[][], after: string[][]): number {
  assert.equal(before.length, after.length, 'placements must have the same number of ranges');
  let moved = 0;
  for (let i = 0; i < after.length; i++) {
    const held = new Set(before[i]);
    for (const node of after[i]!) if (!held.has(node)) moved++;
  }
  return moved;
}

interface Ranked {
  readonly name: string;
  readonly zone: string | undefined;
  readonly score: number;
}

function assertMembers(members: readonly RingMember[]): void {
  assert.ok(members.length >= 1, 'members must not be empty');
  const names = new Set<string>();
  for (const m of members) {
    assert.ok(typeof m.name === 'string' && m.name.length > 0, 'member name must be a non-empty string');
    const zoneOk = m.zone === undefined || (typeof m.zone === 'string' && m.zone.length > 0);
    assert.ok(zoneOk, 'member zone must be a non-empty string when given');
    assert.ok(!names.has(m.name), `member names must be unique: ${m.name}`);
    names.add(m.name);
  }
}

/** Members by descending score for one range; ties by ascending name. */
function rankMembers(dbName: string, rangeIndex: number, members: readonly RingMember[]): Ranked[] {
  const ranked = members.map((m) => ({ name: m.name, zone: m.zone, score: score(dbName, rangeIndex, m.name) }));
  ranked.sort((a, b) => b.score - a.score || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return ranked;
}

function score(dbName: string, rangeIndex: number, nodeName: string): number {
  return murmur3(Buffer.from(JSON.stringify([dbName, rangeIndex, nodeName]), 'utf8'), 0);
}

/**
 * The first `count` members of `ranked`, taken in passes: within a pass each zone gives
 * at most one member, in score order. Zoneless members are never held back.
 */
function chooseCopies(ranked: readonly Ranked[], count: number): string[] {
  assert.ok(count <= ranked.length);
  const chosen: string[] = [];
  const taken = new Array<boolean>(ranked.length).fill(false);
  while (chosen.length < count) {
    const zonesThisPass = new Set<string>();
    const before = chosen.length;
    for (let i = 0; i < ranked.length && chosen.length < count; i++) {
      const member = ranked[i]!;
      if (taken[i]) continue;
      if (member.zone !== undefined && zonesThisPass.has(member.zone)) continue;
      taken[i] = true;
      chosen.push(member.name);
      if (member.zone !== undefined) zonesThisPass.add(member.zone);
    }
    // Each pass takes the best untaken member at least, so the loop ends.
    assert.ok(chosen.length > before);
  }
  return chosen;
}

/**
 * MurmurHash3 x86_32 (Austin Appleby, public domain) of `bytes` with `seed`, as an
 * unsigned 32-bit integer. Exported so the tests can pin the published vectors.
 */
export function murmur3(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const length = bytes.length;
  const tail = length & ~3;
  let h = seed | 0;
  for (let i = 0; i < tail; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = length & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= bytes[tail + 2]! << 16;
    if (rest >= 2) k ^= bytes[tail + 1]! << 8;
    k ^= bytes[tail]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= length;
  return fmix32(h);
}

/** murmur3's 32-bit finalizer: spreads every input bit over the whole word (an unsigned result). */
export function fmix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The one member that owns `key` (a `_replicator` document, a background job): the
 * best rendezvous score over `members`, ties to the smaller name. Every node given the
 * same members picks the same owner; a member leaving moves only the keys it owned.
 */
export function ownerOf(key: string, members: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const name of members) {
    const score = murmur3(Buffer.from(JSON.stringify(['owner', key, name]), 'utf8'), 0);
    if (score > bestScore || (score === bestScore && best !== undefined && name < best)) {
      best = name;
      bestScore = score;
    }
  }
  return best;
}
