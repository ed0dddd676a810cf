/**
 * SWIM membership, whole clusters in one process: Membership instances wired by an
 * in-memory network with faults, on simulated time (ManualClock) so every run is
 * deterministic for its seed and takes milliseconds; the last tests run on real
 * timers with the loopback profile.
 *
 * Seeds: MEMBERSHIP_SEED=<n> replays a run; otherwise one is drawn and printed.
 * Every wait is a condition with a deadline (simulated or real), never a fixed sleep.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deadDetectionBoundMs, loopbackProfile, type MembershipConfig } from '../../src/node/membership/config';
import { ManualClock } from '../../src/node/membership/manual-clock';
import { Membership } from '../../src/node/membership/membership';
import { MemoryNetwork } from '../../src/node/membership/memory-network';
import { systemClock } from '../../src/node/membership/timers';
import type { Clock, MemberState, MembershipTransport } from '../../src/node/membership/types';
import { mulberry32 } from '../helpers/random';

const BASE_SEED = process.env.MEMBERSHIP_SEED ? Number(process.env.MEMBERSHIP_SEED) : Math.floor(Math.random() * 1e9);
console.log(`membership tests: seed ${BASE_SEED} (replay with MEMBERSHIP_SEED=${BASE_SEED})`);

const P = loopbackProfile.probeIntervalMs;

const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => unhandled.push(reason));


interface Transition {
  atMs: number;
  observer: string;
  member: string;
  state: MemberState;
  previous: MemberState | undefined;
  incarnation: number;
}

interface LogLine {
  level: 'info' | 'warn';
  node: string;
  msg: string | undefined;
  fields: object;
}

const nameOf = (i: number) => `divan@10.0.0.${i}`;
const addressOf = (i: number) => `10.0.0.${i}:7946`;

/** A cluster on one network and one clock; nodes are numbered from 1. */
class Cluster {
  readonly network: MemoryNetwork;
  readonly random: () => number;
  readonly transitions: Transition[] = [];
  readonly logs: LogLine[] = [];
  /** The current instance of each node, by number. */
  readonly nodes = new Map<number, Membership>();
  private readonly instances: Membership[] = [];

  private readonly wrapTransport: ((i: number, base: MembershipTransport) => MembershipTransport) | undefined;

  constructor(
    readonly clock: Clock,
    readonly seed: number,
    readonly config: MembershipConfig = loopbackProfile,
    options: { latencyMs?: number; transport?: (i: number, base: MembershipTransport) => MembershipTransport } = {},
  ) {
    this.network = new MemoryNetwork({ clock, latencyMs: options.latencyMs ?? 1 });
    this.random = mulberry32(seed);
    this.wrapTransport = options.transport;
  }

  /** A new instance for node i (a restart if it existed), listening, started. */
  add(i: number, options: { address?: string; start?: boolean } = {}): Membership {
    const name = nameOf(i);
    const address = options.address ?? addressOf(i);
    const base = this.network.transportFor(address);
    const node: Membership = new Membership({
      self: { name, address, httpAddress: `10.0.0.${i}:5984`, zone: `zone-${i % 2}` },
      transport: this.wrapTransport ? this.wrapTransport(i, base) : base,
      config: this.config,
      clock: this.clock,
      random: mulberry32(Math.floor(this.random() * 2 ** 32)),
      log: {
        info: (fields, msg) => this.logs.push({ level: 'info', node: name, msg, fields }),
        warn: (fields, msg) => this.logs.push({ level: 'warn', node: name, msg, fields }),
      },
    });
    node.on('change', (member, previous) => {
      this.transitions.push({ atMs: this.clock.now(), observer: name, member: member.name, state: member.state, previous, incarnation: member.incarnation });
    });
    this.network.attach(address, node);
    this.nodes.set(i, node);
    this.instances.push(node);
    if (options.start !== false) node.start();
    return node;
  }

  node(i: number): Membership {
    const node = this.nodes.get(i);
    assert.ok(node, `no node ${i}`);
    return node;
  }

  running(): [number, Membership][] {
    return [...this.nodes.entries()].filter(([, m]) => !m.isStopped);
  }

  /** State of node `of` as node `by` sees it. */
  view(by: number, of: number): MemberState | undefined {
    return this.node(by).member(nameOf(of))?.state;
  }

  /** Every running node sees each of `members` in `state` (all nodes by default). */
  allSee(state: MemberState, members: number[] = [...this.nodes.keys()], observers?: number[]): boolean {
    const by = observers ?? this.running().map(([i]) => i);
    return by.every((o) => members.every((m) => m === o || this.view(o, m) === state));
  }

  describe(): string {
    return this.running()
      .map(([i, m]) => `${i}: ` + m.members().map((x) => `${x.name.split('.').pop()}=${x.state}@${x.incarnation}`).join(' '))
      .join(' | ');
  }

  /** Kill -9: nothing in or out, and the instance stops. */
  kill(i: number): void {
    this.network.isolate(this.node(i).member(nameOf(i))!.address);
    this.node(i).stop();
  }

  /** Stops everything and checks nothing was left behind. */
  close(): void {
    for (const node of this.instances) node.stop();
    this.network.close();
    const internal = this.logs.filter((l) => l.msg === 'membership: internal error' || l.msg === 'membership: malformed update ignored');
    assert.deepEqual(internal, [], 'no internal errors or malformed messages');
  }
}

/** A simulated cluster of n nodes; every node joins through node 1. */
async function simulate(n: number, seed: number, config?: MembershipConfig): Promise<{ cluster: Cluster; clock: ManualClock }> {
  const clock = new ManualClock(1_000_000);
  const cluster = new Cluster(clock, seed, config);
  for (let i = 1; i <= n; i++) cluster.add(i);
  const joins = [...cluster.nodes.values()].map((m) => m.join([addressOf(1)]));
  await clock.runUntil(() => cluster.allSee('alive') && cluster.nodes.size === n && allHaveAll(cluster, n), 5000, () => cluster.describe());
  assert.deepEqual(await Promise.all(joins), [0, ...Array<number>(n - 1).fill(1)], 'node 1 skips its own address; the others reach it');
  return { cluster, clock };
}

function allHaveAll(cluster: Cluster, n: number): boolean {
  return cluster.running().every(([, m]) => m.members().length === n);
}

/** Checks the simulated cluster left no timers and no unhandled rejections. */
async function finish(cluster: Cluster, clock: ManualClock): Promise<void> {
  cluster.close();
  await clock.advance(0);
  assert.equal(clock.pendingCount, 0, 'stop() and close() clear every timer');
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unhandled, [], 'no unhandled rejections');
}

let seedOffset = 0;
const nextSeed = () => BASE_SEED + seedOffset++;

test('3 and 5 nodes converge to all alive after joining through one seed, and stay so', async () => {
  for (const n of [3, 5]) {
    const { cluster, clock } = await simulate(n, nextSeed());
    for (const [, m] of cluster.running()) {
      const members = m.members();
      assert.deepEqual(
        members.map((x) => x.name),
        [...members.map((x) => x.name)].sort(),
        'members() is sorted by name',
      );
      assert.ok(members.every((x) => x.state === 'alive' && x.incarnation === 0 && x.httpAddress.endsWith(':5984')));
    }
    // A healthy cluster never suspects anyone: 20 s of probes, gossip and push-pull.
    await clock.advance(20_000);
    assert.deepEqual(
      cluster.transitions.filter((t) => t.state !== 'alive'),
      [],
      `no suspicion in a healthy cluster of ${n}`,
    );
    assert.ok(cluster.allSee('alive'));
    const zones = cluster.node(1).members().map((x) => x.zone);
    assert.deepEqual(zones.slice(0, 3), ['zone-1', 'zone-0', 'zone-1'], 'zones travel with the gossip');
    await finish(cluster, clock);
  }
});

test('a killed node is marked dead by every other member within deadDetectionBoundMs', async () => {
  for (const n of [3, 5, 7]) {
    const boundMs = deadDetectionBoundMs(loopbackProfile, n);
    let worstMs = 0;
    for (let run = 0; run < 6; run++) {
      const seed = nextSeed();
      const { cluster, clock } = await simulate(n, seed);
      await clock.advance(Math.floor(cluster.random() * 2000)); // a random phase of the loops
      const victim = 1 + Math.floor(cluster.random() * n);
      const killedAtMs = clock.now();
      cluster.kill(victim);
      const survivors = [...cluster.nodes.keys()].filter((i) => i !== victim);
      await clock.runUntil(() => cluster.allSee('dead', [victim], survivors), boundMs + 10 * P, () => `seed ${seed}: ${cluster.describe()}`);
      for (const observer of survivors) {
        const death = cluster.transitions.find((t) => t.observer === nameOf(observer) && t.member === nameOf(victim) && t.state === 'dead');
        assert.ok(death, `${observer} saw ${victim} die`);
        const tookMs = death.atMs - killedAtMs;
        worstMs = Math.max(worstMs, tookMs);
        assert.ok(tookMs <= boundMs, `seed ${seed}: node ${observer} took ${tookMs} ms > bound ${boundMs} ms to see node ${victim} dead`);
      }
      const falseAlarms = cluster.transitions.filter((t) => t.member !== nameOf(victim) && t.state !== 'alive');
      assert.deepEqual(falseAlarms, [], `seed ${seed}: survivors never suspect each other`);
      await finish(cluster, clock);
    }
    console.log(`  ${n} nodes: slowest death seen after ${worstMs} ms (bound ${boundMs} ms)`);
  }
});

test('a paused node is suspected, refutes when traffic resumes, and ends alive at a higher incarnation', async () => {
  const seed = nextSeed();
  const { cluster, clock } = await simulate(3, seed);
  cluster.network.isolate(addressOf(3));
  await clock.runUntil(() => cluster.view(1, 3) === 'suspect' || cluster.view(2, 3) === 'suspect', deadDetectionBoundMs(loopbackProfile, 3), () => cluster.describe());
  cluster.network.reconnect(addressOf(3));
  await clock.runUntil(
    () => cluster.allSee('alive') && [1, 2].every((o) => cluster.node(o).member(nameOf(3))!.incarnation > 0),
    5000,
    () => `seed ${seed}: ${cluster.describe()}`,
  );
  const about3 = cluster.transitions.filter((t) => t.member === nameOf(3) && t.observer !== nameOf(3));
  assert.ok(about3.some((t) => t.state === 'suspect'), 'it was suspected');
  assert.ok(!about3.some((t) => t.state === 'dead'), `seed ${seed}: refuted in time, never declared dead`);
  assert.ok(cluster.node(3).member(nameOf(3))!.incarnation >= 1, 'it raised its own incarnation');
  assert.ok(cluster.logs.some((l) => l.node === nameOf(3) && l.msg === 'membership: refuting'));
  assert.ok(cluster.logs.some((l) => l.level === 'warn' && l.msg === 'membership: member suspect'), 'the suspicion is logged');
  await finish(cluster, clock);
});

test('the accused hears the accusation on the next ping, even when gossip has moved on', async () => {
  // No gossip timer and one send per update: only the buddy system tells the suspect.
  const seed = nextSeed();
  const { cluster, clock } = await simulate(3, seed, { ...loopbackProfile, gossipFanout: 0, retransmitMultiplier: 1 });
  for (let round = 0; round < 5; round++) {
    const before = cluster.transitions.length;
    cluster.network.isolate(addressOf(3));
    await clock.runUntil(() => cluster.view(1, 3) === 'suspect' || cluster.view(2, 3) === 'suspect', deadDetectionBoundMs(loopbackProfile, 3));
    cluster.network.reconnect(addressOf(3));
    await clock.runUntil(() => cluster.allSee('alive'), 5000, () => `seed ${seed}: ${cluster.describe()}`);
    const deaths = cluster.transitions.slice(before).filter((t) => t.member === nameOf(3) && t.state === 'dead');
    assert.deepEqual(deaths, [], `seed ${seed}, round ${round}: refuted before the suspicion ran out`);
    await clock.advance(Math.floor(cluster.random() * 1000));
  }
  await finish(cluster, clock);
});

test('graceful leave is seen as left everywhere, and left members are not probed', async () => {
  const { cluster, clock } = await simulate(3, nextSeed());
  const leaving = cluster.node(3).leave(500);
  assert.equal(cluster.node(3).leave(500), leaving, 'a second leave waits for the first');
  await clock.runUntil(() => cluster.allSee('left', [3], [1, 2]), 1000, () => cluster.describe());
  await clock.runUntil(() => cluster.node(3).isStopped, 1000);
  await leaving;
  assert.equal(cluster.node(3).member(nameOf(3))!.state, 'left');
  assert.equal(cluster.node(1).member(nameOf(3))!.incarnation, 1, 'left at incarnation + 1');
  assert.throws(() => cluster.node(3).handlePing({ from: nameOf(1), seqNo: 1, updates: [] }), /stopped/);
  const callsBefore = { ...cluster.network.callsTo.get(addressOf(3)) };
  await clock.advance(10_000);
  assert.deepEqual({ ...cluster.network.callsTo.get(addressOf(3)) }, callsBefore, 'nobody calls a member that left');
  assert.ok(cluster.allSee('left', [3], [1, 2]), 'left stays left (not dead)');
  assert.ok(cluster.allSee('alive', [1, 2], [1, 2]));
  assert.equal(cluster.transitions.filter((t) => t.member === nameOf(3) && t.state === 'left').length, 3, 'one left event per node');
  await finish(cluster, clock);
});

test('a restarted node (new instance, incarnation 0) becomes alive again everywhere', async () => {
  const seed = nextSeed();
  const { cluster, clock } = await simulate(3, seed);
  // After a crash that was noticed: dead at 0, back at 1.
  cluster.kill(3);
  await clock.runUntil(() => cluster.allSee('dead', [3], [1, 2]), deadDetectionBoundMs(loopbackProfile, 3), () => cluster.describe());
  cluster.network.reconnect(addressOf(3));
  const restarted = cluster.add(3);
  assert.equal(restarted.member(nameOf(3))!.incarnation, 0);
  assert.equal(await runJoin(clock, restarted, [addressOf(2)]), 1);
  await clock.runUntil(() => cluster.allSee('alive'), 5000, () => `seed ${seed}: ${cluster.describe()}`);
  for (const o of [1, 2, 3]) assert.equal(cluster.node(o).member(nameOf(3))!.incarnation, 1, `node ${o} has node 3 at 1`);
  // After a graceful leave: left at 2, back at 3.
  const leaving = restarted.leave(500);
  await clock.runUntil(() => cluster.allSee('left', [3], [1, 2]), 2000, () => cluster.describe());
  await clock.runUntil(() => restarted.isStopped, 1000);
  await leaving;
  const again = cluster.add(3);
  await runJoin(clock, again, [addressOf(1)]);
  await clock.runUntil(() => cluster.allSee('alive'), 5000, () => `seed ${seed}: ${cluster.describe()}`);
  for (const o of [1, 2, 3]) assert.equal(cluster.node(o).member(nameOf(3))!.incarnation, 3);
  await finish(cluster, clock);
});

test('a node restarted at a new address is found there', async () => {
  const seed = nextSeed();
  const { cluster, clock } = await simulate(3, seed);
  cluster.kill(3);
  await clock.runUntil(() => cluster.allSee('dead', [3], [1, 2]), deadDetectionBoundMs(loopbackProfile, 3));
  const moved = cluster.add(3, { address: '10.0.1.3:7946' });
  await runJoin(clock, moved, [addressOf(1)]);
  await clock.runUntil(() => cluster.allSee('alive') && [1, 2].every((o) => cluster.node(o).member(nameOf(3))!.address === '10.0.1.3:7946'), 5000, () => cluster.describe());
  await clock.advance(5000);
  assert.ok(cluster.allSee('alive'), 'and stays alive there');
  await finish(cluster, clock);
});

test('partition {A} | {B, C}: each side declares the other dead; after healing all are alive', async () => {
  const seed = nextSeed();
  const { cluster, clock } = await simulate(3, seed);
  cluster.network.partition([addressOf(1)], [addressOf(2), addressOf(3)]);
  await clock.runUntil(
    () => cluster.allSee('dead', [2, 3], [1]) && cluster.allSee('dead', [1], [2, 3]),
    2 * deadDetectionBoundMs(loopbackProfile, 3),
    () => cluster.describe(),
  );
  assert.ok(cluster.allSee('alive', [2, 3], [2, 3]), 'the majority side stays whole');
  const healedAtMs = clock.now();
  cluster.network.heal();
  const tookMs = await clock.runUntil(() => cluster.allSee('alive'), 10_000, () => `seed ${seed}: ${cluster.describe()}`);
  console.log(`  partition healed in ${tookMs} ms of simulated time (push-pull every ${loopbackProfile.pushPullIntervalMs} ms)`);
  await clock.advance(5000);
  assert.ok(cluster.allSee('alive'), `seed ${seed}: still all alive 5 s later: ${cluster.describe()}`);
  assert.ok(cluster.node(1).member(nameOf(1))!.incarnation > 0, 'the isolated node refuted its death');
  // Stale verdicts of the isolated side may make the majority flap briefly after the
  // heal (SWIM: dead(i) beats alive(i)); the refutations settle it, checked above.
  assert.ok(cluster.transitions.some((t) => t.atMs >= healedAtMs && t.state === 'alive' && t.previous === 'dead'));
  await finish(cluster, clock);
});

test('a broken link between two nodes causes no suspicion while a third reaches both (indirect probes)', async () => {
  const seed = nextSeed();
  const { cluster, clock } = await simulate(3, seed);
  // 1 and 3 cannot talk; 2 talks to both.
  cluster.network.partition([addressOf(1), addressOf(2)], [addressOf(2), addressOf(3)]);
  const before = cluster.transitions.length;
  await clock.advance(20_000);
  assert.deepEqual(
    cluster.transitions.slice(before),
    [],
    `seed ${seed}: nobody suspected: ${cluster.describe()}`,
  );
  await finish(cluster, clock);
});

test('dead members stay in members(), with their last addresses', async () => {
  const { cluster, clock } = await simulate(5, nextSeed());
  cluster.kill(4);
  await clock.runUntil(() => cluster.allSee('dead', [4], [1, 2, 3, 5]), deadDetectionBoundMs(loopbackProfile, 5));
  await clock.advance(60_000);
  for (const o of [1, 2, 3, 5]) {
    const members = cluster.node(o).members();
    assert.equal(members.length, 5);
    const dead = cluster.node(o).member(nameOf(4))!;
    assert.equal(dead.state, 'dead');
    assert.equal(dead.address, addressOf(4));
    assert.equal(cluster.node(o).isAlive(nameOf(4)), false);
    assert.equal(cluster.node(o).isAlive(nameOf(1)), true);
  }
  assert.ok(cluster.logs.some((l) => l.level === 'warn' && l.msg === 'membership: member dead'));
  // One log line per transition, not per probe: 60 s of probing a dead node adds none.
  const deadLines = cluster.logs.filter((l) => l.msg === 'membership: member dead').length;
  assert.equal(deadLines, 4);
  await finish(cluster, clock);
});

test('join: own address skipped, unreached seeds retried in the background until they answer', async () => {
  const clock = new ManualClock(1_000_000);
  const cluster = new Cluster(clock, nextSeed());
  const second = cluster.add(2);
  assert.equal(await runJoin(clock, second, [addressOf(2)]), 0, 'only its own address: nothing to do');
  assert.equal(await runJoin(clock, second, [addressOf(1), addressOf(1)]), 0, 'node 1 is not up yet');
  await clock.advance(3000); // retries fail meanwhile (connection refused), with backoff
  const attempts = cluster.network.callsTo.get(addressOf(1))!.pushPull;
  assert.ok(attempts >= 3 && attempts <= 12, `bounded retries in 3 s: ${attempts}`);
  cluster.add(1); // node 1 comes up and joins nobody: node 2 must find it
  await clock.runUntil(() => cluster.allSee('alive') && allHaveAll(cluster, 2), 2 * loopbackProfile.joinRetryMaxMs, () => cluster.describe());
  const settled = cluster.network.callsTo.get(addressOf(1))!.pushPull;
  await clock.advance(loopbackProfile.pushPullIntervalMs - 1);
  assert.ok(cluster.network.callsTo.get(addressOf(1))!.pushPull <= settled + 1, 'retries end once the seed answered');
  await finish(cluster, clock);
});

test('a transport that never answers still fails probes on time (own deadlines)', async () => {
  const clock = new ManualClock(1_000_000);
  let silent = false;
  const hang = <T>() => new Promise<T>(() => undefined);
  const cluster = new Cluster(clock, nextSeed(), loopbackProfile, {
    transport: (i, base) => ({
      // Calls to node 3 vanish without an answer or a timeout, once `silent`.
      ping: (address, message, timeoutMs) => (silent && address === addressOf(3) ? hang() : base.ping(address, message, timeoutMs)),
      pingReq: (via, target, message, timeoutMs) =>
        silent && (via === addressOf(3) || i === 3) ? hang() : base.pingReq(via, target, message, timeoutMs),
      pushPull: (address, state, timeoutMs) => (silent && address === addressOf(3) ? hang() : base.pushPull(address, state, timeoutMs)),
    }),
  });
  for (const i of [1, 2, 3]) cluster.add(i);
  for (const i of [2, 3]) void cluster.node(i).join([addressOf(1)]);
  await clock.runUntil(() => cluster.allSee('alive') && allHaveAll(cluster, 3), 5000);
  silent = true;
  cluster.network.isolate(addressOf(3)); // and nothing from 3 gets out
  await clock.runUntil(() => cluster.allSee('dead', [3], [1, 2]), deadDetectionBoundMs(loopbackProfile, 3), () => cluster.describe());
  await finish(cluster, clock);
});

test('handlers: misdirected pings refused, own echoes and malformed updates ignored, stop is final', async () => {
  const clock = new ManualClock();
  const cluster = new Cluster(clock, nextSeed());
  const node = cluster.add(1, { start: false });
  assert.throws(() => node.handlePing({ from: 'x', seqNo: 1, updates: [], target: 'someone-else' }), /meant for someone-else/);
  const echo = node.handlePing({ from: nameOf(1), seqNo: 9, updates: [{ name: 'ghost', address: 'g:1', httpAddress: '', incarnation: 0, state: 'alive' }] });
  assert.deepEqual(echo, { from: nameOf(1), seqNo: 9, updates: [] });
  assert.equal(node.member('ghost'), undefined, 'messages from self are ignored');
  assert.throws(() => node.handlePing({ from: 'x', seqNo: 'one' as unknown as number, updates: [] }), TypeError);
  const ack = node.handlePing({
    from: 'x',
    seqNo: 2,
    updates: [{ name: 'x', address: 'x:1', httpAddress: 'x:2', incarnation: 0, state: 'alive' }, { nonsense: true } as never],
  });
  assert.equal(ack.from, nameOf(1));
  assert.equal(node.member('x')?.state, 'alive', 'the good update is kept');
  assert.equal(cluster.logs.filter((l) => l.msg === 'membership: malformed update ignored').length, 1);
  cluster.logs.length = 0; // expected above; close() checks for others
  assert.equal(await node.handlePingReq({ name: nameOf(1), address: addressOf(1) }, { from: 'x', seqNo: 3, updates: [] }), true);
  // A death heard by push-pull may be stale: here it is only a suspicion.
  node.handlePushPull([{ name: 'x', address: 'x:1', httpAddress: 'x:2', incarnation: 0, state: 'dead' }]);
  assert.equal(node.member('x')?.state, 'suspect');
  node.handlePing({ from: 'y', seqNo: 5, updates: [{ name: 'x', address: 'x:1', httpAddress: 'x:2', incarnation: 0, state: 'dead' }] });
  assert.equal(node.member('x')?.state, 'dead', 'by gossip it is a death');
  // Someone says we are dead at our incarnation: we refute with a higher one.
  node.handlePushPull([{ name: nameOf(1), address: addressOf(1), httpAddress: '', incarnation: 0, state: 'dead' }]);
  assert.equal(node.member(nameOf(1))!.incarnation, 1);
  assert.equal(node.member(nameOf(1))!.state, 'alive');
  node.start();
  node.start(); // idempotent
  node.stop();
  node.stop(); // idempotent
  assert.throws(() => node.handlePushPull([]), /stopped/);
  await assert.rejects(node.handlePingReq({ name: 'x', address: 'x:1' }, { from: 'x', seqNo: 4, updates: [] }), /stopped/);
  assert.throws(() => node.start(), /cannot start again/);
  assert.equal(await node.join([addressOf(2)]), 0);
  await finish(cluster, clock);
});

test('the member table is capped at membersMax, with one warning', async () => {
  const clock = new ManualClock();
  const cluster = new Cluster(clock, nextSeed(), { ...loopbackProfile, membersMax: 3 });
  const node = cluster.add(1, { start: false });
  const others = [2, 3, 4, 5].map((i) => ({ name: nameOf(i), address: addressOf(i), httpAddress: '', incarnation: 0, state: 'alive' as const }));
  node.handlePushPull(others);
  node.handlePushPull(others);
  assert.equal(node.members().length, 3);
  assert.equal(cluster.logs.filter((l) => l.msg === 'membership: member table full, news of new members dropped').length, 1);
  await finish(cluster, clock);
});

test('a throwing change listener does not break the protocol', async () => {
  const clock = new ManualClock();
  const cluster = new Cluster(clock, nextSeed());
  const a = cluster.add(1);
  const b = cluster.add(2);
  a.on('change', () => {
    throw new Error('listener bug');
  });
  await runJoin(clock, b, [addressOf(1)]);
  await clock.runUntil(() => cluster.allSee('alive') && allHaveAll(cluster, 2), 2000);
  assert.ok(cluster.logs.some((l) => l.msg === 'membership: internal error'));
  cluster.logs.length = 0;
  await finish(cluster, clock);
});

// ---- real timers, loopback profile -----------------------------------------------------

test('real timers: 3 nodes converge, and a killed one is dead everywhere within the bound', async () => {
  const cluster = new Cluster(systemClock, nextSeed(), loopbackProfile, { latencyMs: 0 });
  try {
    for (const i of [1, 2, 3]) cluster.add(i);
    await Promise.all([2, 3].map((i) => cluster.node(i).join([addressOf(1)])));
    await waitFor(() => cluster.allSee('alive') && allHaveAll(cluster, 3), 5000, () => cluster.describe());
    await sleepUntilPhase(); // some probes and gossip on real time
    const boundMs = deadDetectionBoundMs(loopbackProfile, 3);
    const killedAtMs = systemClock.now();
    cluster.kill(2);
    await waitFor(() => cluster.allSee('dead', [2], [1, 3]), 4 * boundMs, () => cluster.describe());
    const worstMs = Math.max(
      ...cluster.transitions.filter((t) => t.member === nameOf(2) && t.state === 'dead').map((t) => t.atMs - killedAtMs),
    );
    console.log(`  real timers: dead everywhere after ${Math.round(worstMs)} ms (bound ${boundMs} ms)`);
    assert.ok(worstMs <= boundMs, `took ${worstMs} ms, bound ${boundMs} ms`);
    assert.ok(cluster.allSee('alive', [1, 3], [1, 3]));
  } finally {
    cluster.close();
  }
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unhandled, []);
});

/** Runs a join on simulated time. */
async function runJoin(clock: ManualClock, node: Membership, seeds: string[]): Promise<number> {
  let result: number | undefined;
  void node.join(seeds).then((n) => (result = n));
  await clock.runUntil(() => result !== undefined, loopbackProfile.pushPullTimeoutMs! + 10);
  return result!;
}

/** Polls a condition on real time until it holds or the deadline passes. */
async function waitFor(condition: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Lets the loops run a while on real time, so the kill lands at an arbitrary phase. */
function sleepUntilPhase(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 300 + Math.floor(Math.random() * 200)));
}
