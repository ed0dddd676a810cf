/**
 * The pure parts of SWIM membership: precedence rules, config and its bounds,
 * suspicion timeouts, the broadcast queue, probe order, timers and deadlines.
 * Whole clusters are simulated in membership.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BroadcastQueue } from '../../src/node/membership/broadcasts';
import {
  deadDetectionBoundMs,
  lanProfile,
  loopbackProfile,
  retransmitLimit,
  suspicionTimeouts,
  validateMembershipConfig,
  type MembershipConfig,
} from '../../src/node/membership/config';
import { DeadlineError, Deadlines, MembershipStoppedError } from '../../src/node/membership/deadlines';
import { ManualClock } from '../../src/node/membership/manual-clock';
import { parseUpdate } from '../../src/node/membership/messages';
import { supersedes } from '../../src/node/membership/precedence';
import { ProbeOrder } from '../../src/node/membership/probe-order';
import { Suspicion, suspicionTimeoutMs } from '../../src/node/membership/suspicion';
import { Ticker, Timer } from '../../src/node/membership/timers';
import type { MemberState, MemberUpdate } from '../../src/node/membership/types';
import { mulberry32 } from '../helpers/random';


test('precedence: the override table, case by case', () => {
  const s = (state: MemberState, incarnation: number) => ({ state, incarnation });
  // [incoming, current, overrides?]
  const cases: [ReturnType<typeof s>, ReturnType<typeof s>, boolean][] = [
    [s('alive', 1), s('alive', 0), true],
    [s('alive', 0), s('alive', 0), false],
    [s('alive', 1), s('suspect', 1), false],
    [s('alive', 2), s('suspect', 1), true],
    [s('alive', 1), s('dead', 1), false],
    [s('alive', 2), s('dead', 1), true],
    [s('alive', 1), s('left', 1), false],
    [s('alive', 2), s('left', 1), true],
    [s('suspect', 1), s('alive', 1), true],
    [s('suspect', 2), s('alive', 1), true],
    [s('suspect', 0), s('alive', 1), false],
    [s('suspect', 1), s('suspect', 1), false],
    [s('suspect', 2), s('suspect', 1), true],
    [s('suspect', 5), s('dead', 1), false],
    [s('suspect', 5), s('left', 1), false],
    [s('dead', 1), s('alive', 1), true],
    [s('dead', 0), s('alive', 1), false],
    [s('dead', 1), s('suspect', 1), true],
    [s('dead', 1), s('dead', 1), false],
    [s('dead', 2), s('dead', 1), true],
    [s('dead', 9), s('left', 1), false],
    [s('left', 1), s('alive', 1), true],
    [s('left', 0), s('alive', 1), false],
    [s('left', 1), s('suspect', 1), true],
    [s('left', 1), s('dead', 1), true],
    [s('left', 1), s('left', 1), false],
    [s('left', 2), s('left', 1), true],
  ];
  for (const [incoming, current, expected] of cases) {
    assert.equal(supersedes(incoming, current), expected, `${JSON.stringify(incoming)} over ${JSON.stringify(current)}`);
  }
});

test('precedence: no two different statements override each other (no flip-flop)', () => {
  const states: MemberState[] = ['alive', 'suspect', 'dead', 'left'];
  for (const a of states)
    for (const b of states)
      for (let i = 0; i < 3; i++)
        for (let j = 0; j < 3; j++) {
          const x = { state: a, incarnation: i };
          const y = { state: b, incarnation: j };
          assert.ok(!(supersedes(x, y) && supersedes(y, x)), `${a}(${i}) and ${b}(${j}) override each other`);
          if (supersedes(x, y)) assert.ok(i >= j, 'a statement never wins over a newer incarnation');
        }
});

test('config: both profiles validate and the bounds are as documented', () => {
  validateMembershipConfig(lanProfile);
  validateMembershipConfig(loopbackProfile);
  assert.ok(Object.isFrozen(lanProfile) && Object.isFrozen(loopbackProfile));
  // 3 nodes: (2·3 − 1) probe periods + minimum suspicion (too few members to confirm).
  assert.equal(deadDetectionBoundMs(lanProfile, 3), 5 * 1000 + 4 * 1000);
  assert.equal(deadDetectionBoundMs(loopbackProfile, 3), 5 * 300 + 4 * 300);
  // 5 nodes: two confirmations possible, so an unconfirmed suspicion may last the maximum.
  assert.equal(deadDetectionBoundMs(lanProfile, 5), 9 * 1000 + 6 * 4 * 1000);
  assert.equal(deadDetectionBoundMs(loopbackProfile, 5), 9 * 300 + 3 * 4 * 300);
  // log10 scaling beyond ten members.
  const lan = validateMembershipConfig(lanProfile);
  assert.equal(suspicionTimeouts(lan, 100).minMs, 4 * 2 * 1000);
  assert.equal(retransmitLimit(lan, 3), 4);
  assert.equal(retransmitLimit(lan, 10), 8);
  assert.equal(retransmitLimit(lan, 1), 4);
});

test('config: defaults fill optional fields; bad values and unknown keys are refused', () => {
  const minimal: MembershipConfig = {
    probeIntervalMs: 1000,
    probeTimeoutMs: 500,
    indirectChecks: 3,
    suspicionMultiplier: 4,
    pushPullIntervalMs: 30_000,
    retransmitMultiplier: 4,
    gossipUpdatesMax: 32,
    joinRetryMaxMs: 10_000,
  };
  const resolved = validateMembershipConfig(minimal);
  assert.equal(resolved.gossipIntervalMs, 200);
  assert.equal(resolved.gossipFanout, 3);
  assert.equal(resolved.pushPullTimeoutMs, 5000);
  assert.equal(resolved.suspicionMaxTimeoutMultiplier, 6);
  assert.equal(resolved.membersMax, 1024);
  assert.ok(Object.isFrozen(resolved));
  const bad: [Partial<MembershipConfig> & Record<string, unknown>, RegExp][] = [
    [{ probeTimeoutMs: 600 }, /half of probeIntervalMs/],
    [{ probeIntervalMs: 0 }, /probeIntervalMs/],
    [{ indirectChecks: -1 }, /indirectChecks/],
    [{ gossipUpdatesMax: 0 }, /gossipUpdatesMax/],
    [{ suspicionMultiplier: 1.5 }, /integer/],
    [{ joinRetryMaxMs: 10 }, /joinRetryMaxMs/],
    [{ pushPullIntervalMs: 10 }, /pushPullIntervalMs/],
    [{ probeIntervalMS: 1000 }, /unknown key probeIntervalMS/],
  ];
  for (const [patch, message] of bad) {
    assert.throws(() => validateMembershipConfig({ ...minimal, ...patch } as MembershipConfig), message);
  }
  assert.throws(() => deadDetectionBoundMs(lanProfile, 0), /memberCount/);
});

test('suspicion: the timeout shrinks from max to min with confirmations (Lifeguard)', () => {
  assert.equal(suspicionTimeoutMs(0, 0, 400, 1200), 400);
  assert.equal(suspicionTimeoutMs(0, 2, 400, 1200), 1200);
  const one = suspicionTimeoutMs(1, 2, 400, 1200);
  assert.ok(one < 1200 && one > 400, `one confirmation: ${one}`);
  assert.equal(suspicionTimeoutMs(2, 2, 400, 1200), 400);
});

test('suspicion: fires at max unconfirmed; confirmations only from new members shorten it', async () => {
  const clock = new ManualClock();
  let firedAt = -1;
  const s = new Suspicion({ from: 'a', expected: 2, minMs: 400, maxMs: 1200, clock, onTimeout: () => (firedAt = clock.now()) });
  await clock.advance(100);
  assert.equal(s.confirm('a'), false, 'the accuser does not confirm itself');
  assert.equal(s.confirm(''), false, 'an anonymous confirmation counts for nothing');
  assert.equal(s.confirm('b'), true);
  assert.equal(s.confirm('b'), false, 'twice from the same member is one confirmation');
  assert.equal(s.confirm('c'), true);
  assert.equal(s.confirm('d'), false, 'beyond the expected number nothing changes');
  await clock.advance(1000);
  assert.equal(firedAt, 400, 'two confirmations: the minimum, counted from the start');
  const clock2 = new ManualClock();
  let fired2 = -1;
  new Suspicion({ from: 'a', expected: 2, minMs: 400, maxMs: 1200, clock: clock2, onTimeout: () => (fired2 = clock2.now()) });
  await clock2.advance(5000);
  assert.equal(fired2, 1200);
  // Confirmed after the shortened timeout already passed: fires at once.
  const clock3 = new ManualClock();
  let fired3 = -1;
  const late = new Suspicion({ from: 'a', expected: 2, minMs: 400, maxMs: 1200, clock: clock3, onTimeout: () => (fired3 = clock3.now()) });
  await clock3.advance(900);
  late.confirm('b');
  late.confirm('c');
  await clock3.advance(1);
  assert.equal(fired3, 900);
  late.stop();
  assert.equal(clock3.pendingCount, 0);
});

test('broadcast queue: one entry per member, fewest sends first, dropped after the limit', () => {
  const u = (name: string, incarnation: number, state: MemberState = 'alive'): MemberUpdate => ({
    name,
    address: `${name}:1`,
    httpAddress: `${name}:2`,
    incarnation,
    state,
  });
  const q = new BroadcastQueue(() => 2);
  q.push(u('a', 0));
  q.push(u('b', 0));
  q.push(u('a', 1, 'suspect')); // replaces a's older news
  assert.equal(q.size, 2);
  const first = q.take(1);
  assert.deepEqual(
    first.map((x) => [x.name, x.incarnation]),
    [['a', 1]],
    'newest first among equally sent',
  );
  const second = q.take(5);
  assert.deepEqual(second.map((x) => x.name), ['b', 'a'], 'least sent first');
  assert.equal(q.size, 1, 'a reached its limit of 2 sends');
  assert.deepEqual(q.take(5).map((x) => x.name), ['b']);
  assert.equal(q.size, 0);
  q.push(u('c', 0));
  assert.deepEqual(q.take(5, 'c'), [], 'skipped by name');
  assert.deepEqual(q.take(0), []);
  // Taken updates are copies: editing them does not touch the queue.
  const taken = q.take(1)[0]!;
  taken.incarnation = 99;
  assert.equal(q.take(1)[0]!.incarnation, 0);
});

test('probe order: every member once per round, newcomers get a turn, the gone are skipped', () => {
  const random = mulberry32(7);
  const order = new ProbeOrder(random);
  const members = new Set(['a', 'b', 'c', 'd']);
  const next = () => order.next(() => [...members], (n) => members.has(n));
  for (let round = 0; round < 5; round++) {
    const seen = [next(), next(), next(), next()];
    assert.deepEqual([...seen].sort(), ['a', 'b', 'c', 'd'], `round ${round}: ${seen.join(',')}`);
  }
  const firstOfRound = next();
  members.add('e');
  order.add('e');
  const rest = [next(), next(), next(), next()];
  assert.deepEqual([firstOfRound, ...rest].sort(), ['a', 'b', 'c', 'd', 'e']);
  members.delete('a');
  const after = new Set<string | undefined>();
  for (let i = 0; i < 8; i++) after.add(next());
  assert.ok(!after.has('a'));
  members.clear();
  assert.equal(next(), undefined);
});

test('timer and ticker: re-arm, stop, fixed rate, no timers left', async () => {
  const clock = new ManualClock();
  const fired: number[] = [];
  const timer = new Timer(clock, () => fired.push(clock.now()));
  timer.start(100);
  timer.start(50); // replaces
  await clock.advance(200);
  assert.deepEqual(fired, [50]);
  timer.start(10);
  timer.stop();
  timer.stop();
  await clock.advance(100);
  assert.deepEqual(fired, [50]);
  const ticks: number[] = [];
  const ticker = new Ticker(clock, 100, () => ticks.push(clock.now()));
  ticker.start(30);
  await clock.advance(350);
  assert.deepEqual(ticks, [330, 430, 530, 630]); // started at 300
  ticker.stop();
  assert.equal(clock.pendingCount, 0);
});

test('deadlines: a call that never settles fails at its deadline; stop fails the rest', async () => {
  const clock = new ManualClock();
  const deadlines = new Deadlines(clock);
  const never = deadlines.run('never', 100, () => new Promise<number>(() => undefined));
  const outcome = never.then(
    () => 'resolved',
    (e: Error) => e,
  );
  await clock.advance(100);
  assert.ok((await outcome) instanceof DeadlineError);
  const quick = await deadlines.run('quick', 100, () => Promise.resolve(7));
  assert.equal(quick, 7);
  await assert.rejects(
    deadlines.run('throws', 100, () => {
      throw new Error('sync');
    }),
    /sync/,
  );
  let settleLate: (v: number) => void = () => undefined;
  const late = deadlines.run('late', 100, () => new Promise<number>((r) => (settleLate = r)));
  const lateOutcome = late.then(
    () => 'resolved',
    (e: Error) => e,
  );
  deadlines.cancelAll();
  assert.ok((await lateOutcome) instanceof MembershipStoppedError);
  settleLate(1); // a late answer is absorbed
  await assert.rejects(deadlines.run('after', 100, () => Promise.resolve(1)), MembershipStoppedError);
  assert.equal(clock.pendingCount, 0);
  assert.equal(deadlines.size, 0);
});

test('parseUpdate: keeps well-formed updates, normalises proto defaults, refuses the rest', () => {
  const good = { name: 'n', address: 'a:1', httpAddress: 'a:2', incarnation: 3, state: 'suspect', zone: '', suspectedBy: 'm', extra: 1 };
  assert.deepEqual(parseUpdate(good), { name: 'n', address: 'a:1', httpAddress: 'a:2', incarnation: 3, state: 'suspect', suspectedBy: 'm' });
  assert.deepEqual(parseUpdate({ ...good, incarnation: '4', state: 'alive', zone: 'z1' }), {
    name: 'n',
    address: 'a:1',
    httpAddress: 'a:2',
    incarnation: 4,
    state: 'alive',
    zone: 'z1',
  });
  for (const bad of [null, 1, {}, { ...good, state: 'zombie' }, { ...good, incarnation: -1 }, { ...good, name: '' }, { ...good, incarnation: 1.5 }]) {
    assert.equal(parseUpdate(bad), undefined, JSON.stringify(bad));
  }
});
