/**
 * SWIM membership with Lifeguard-style suspicion, as hashicorp/memberlist does it,
 * over any transport (gRPC in a node, an in-memory network in tests).
 *
 * Loops, each a Ticker owned here and stopped by `stop()`:
 * - probe (every probeIntervalMs): ping the next member of a shuffled round-robin; if
 *   no ack within probeTimeoutMs, ask indirectChecks other alive members to ping it
 *   (ping-req) until the period ends; if nobody got an ack, suspect it. A suspicion
 *   becomes a death after its timeout unless the member refutes (member-list.ts).
 * - gossip (every gossipIntervalMs, only while news is queued): ping gossipFanout
 *   random live members carrying the news. Every ping and ack also carries news.
 * - push-pull (every pushPullIntervalMs): exchange full state with one random live
 *   member (repairs lost gossip) and one dead member (heals partitions, finds restarts).
 * Plus the background retry of seeds that did not answer `join` (seed-retry.ts).
 *
 * The accused are told: a ping to a member we suspect carries that suspicion, so it can
 * refute at once (Lifeguard's buddy system); an ack to a member we think suspect or
 * dead does the same.
 *
 * Every remote call runs under a deadline owned here (deadlines.ts); failures are the
 * normal case and never escape as rejections. Handlers (`handle*`) are what the server
 * side of the transport calls; they throw once stopped.
 * Lifecycle: created → start() → running → leave()/stop() → stopped (final: a restart is
 * a new instance, which rejoins with a higher incarnation).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { validateMembershipConfig, type MembershipConfig, type ResolvedMembershipConfig } from './config';
import { Deadlines, MembershipStoppedError } from './deadlines';
import { MemberList, type UpdateSource } from './member-list';
import { checkAck, checkPing, checkState, checkTarget, toInfo } from './messages';
import { pickRandom, ProbeOrder } from './probe-order';
import { SeedRetry } from './seed-retry';
import { systemClock, Ticker } from './timers';
import type {
  AckMessage,
  Clock,
  Member,
  MemberInfo,
  MembershipHandlers,
  MembershipLog,
  MembershipTransport,
  MemberState,
  MemberUpdate,
  PingMessage,
  SelfIdentity,
} from './types';

export interface MembershipOptions {
  self: SelfIdentity;
  transport: MembershipTransport;
  config: MembershipConfig;
  /** Default: the real clock. Tests pass a ManualClock to run on simulated time. */
  clock?: Clock;
  log?: MembershipLog;
  /** Uniform in [0, 1), for shuffles and random picks; seed it in simulations. */
  random?: () => number;
}

export type ChangeListener = (member: Member, previous: MemberState | undefined) => void;

/**
 * Two probes overlap for a moment at most: a failing probe's indirect window ends just
 * as the next period begins. More in flight means the event loop fell behind; then a
 * period is skipped rather than piling probes up.
 */
const PROBES_IN_FLIGHT_MAX = 2;

/**
 * Ping-reqs we run for others at once. A failing member draws at most indirectChecks
 * per prober per period, so this is far above normal; beyond it a ping-req is refused
 * (the asker counts it as no ack) instead of piling up pings and timers.
 */
const PING_REQS_IN_FLIGHT_MAX = 64;

const LIVE: readonly MemberState[] = ['alive', 'suspect'];
const COMPONENT = 'membership';
const SILENT_LOG: MembershipLog = { info: () => undefined, warn: () => undefined };

type Phase = 'created' | 'running' | 'leaving' | 'stopped';

// Typed events: 'change' on every state transition, new member and address change.
export interface Membership {
  on(event: 'change', listener: ChangeListener): this;
  once(event: 'change', listener: ChangeListener): this;
  off(event: 'change', listener: ChangeListener): this;
  emit(event: 'change', member: Member, previous: MemberState | undefined): boolean;
}

export class Membership extends EventEmitter implements MembershipHandlers {
  readonly config: ResolvedMembershipConfig;
  private readonly selfName: string;
  private readonly selfAddress: string;
  private readonly transport: MembershipTransport;
  private readonly clock: Clock;
  private readonly log: MembershipLog;
  private readonly random: () => number;
  private readonly list: MemberList;
  private readonly order: ProbeOrder;
  private readonly deadlines: Deadlines;
  private readonly probeTicker: Ticker;
  private readonly gossipTicker: Ticker;
  private readonly pushPullTicker: Ticker;
  private readonly seedRetry: SeedRetry;
  private phase: Phase = 'created';
  private seqNo = 0;
  private probesInFlight = 0;
  private pingReqsInFlight = 0;
  private gossipInFlight = false;
  private pushPullInFlight = false;
  private leaving: Promise<void> | undefined;

  constructor(options: MembershipOptions) {
    super();
    const { self } = options;
    assert.ok(typeof self.name === 'string' && self.name !== '', 'self.name must be a non-empty string');
    assert.ok(typeof self.address === 'string' && self.address !== '', 'self.address must be a non-empty string');
    assert.ok(typeof self.httpAddress === 'string', 'self.httpAddress must be a string');
    this.config = validateMembershipConfig(options.config);
    this.selfName = self.name;
    this.selfAddress = self.address;
    this.transport = options.transport;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? SILENT_LOG;
    this.random = options.random ?? Math.random;
    this.list = new MemberList({
      self,
      config: this.config,
      clock: this.clock,
      log: this.log,
      onChange: (member, previous) => this.onChange(member, previous),
    });
    this.order = new ProbeOrder(this.random);
    this.deadlines = new Deadlines(this.clock);
    const c = this.config;
    this.probeTicker = new Ticker(this.clock, c.probeIntervalMs, () => this.guard('probe', () => this.onProbeTick()));
    this.gossipTicker = new Ticker(this.clock, c.gossipIntervalMs, () => this.guard('gossip', () => this.onGossipTick()));
    this.pushPullTicker = new Ticker(this.clock, c.pushPullIntervalMs, () => this.guard('push-pull', () => this.onPushPullTick()));
    this.seedRetry = new SeedRetry({
      clock: this.clock,
      firstDelayMs: Math.min(c.probeIntervalMs, c.joinRetryMaxMs),
      maxDelayMs: c.joinRetryMaxMs,
      random: this.random,
      attempt: (address) => this.pushPullWith(address),
      isMember: (address) => this.list.others(LIVE).some((m) => m.address === address),
    });
  }

  /** Begins the probe, gossip and push-pull loops, each at a random phase. Idempotent. */
  start(): void {
    assert.notEqual(this.phase, 'stopped', 'a stopped Membership cannot start again: create a new one');
    if (this.phase !== 'created') return;
    this.phase = 'running';
    const c = this.config;
    this.probeTicker.start(this.randomPhaseMs(c.probeIntervalMs));
    this.gossipTicker.start(this.randomPhaseMs(c.gossipIntervalMs));
    this.pushPullTicker.start(this.randomPhaseMs(c.pushPullIntervalMs));
  }

  /**
   * Push-pull with each seed address (own address skipped), in parallel, each under
   * pushPullTimeoutMs. Resolves with how many answered. Seeds that did not answer are
   * retried in the background (backoff up to joinRetryMaxMs) until they do or stop().
   */
  async join(seeds: readonly string[]): Promise<number> {
    if (this.phase === 'stopped' || this.phase === 'leaving') return 0;
    const addresses = [...new Set(seeds)].filter((address) => address !== '' && address !== this.selfAddress);
    const answered = await Promise.all(addresses.map((address) => this.pushPullWith(address)));
    if (this.phase === 'created' || this.phase === 'running') {
      this.seedRetry.add(addresses.filter((_, i) => !answered[i]));
    }
    return answered.filter(Boolean).length;
  }

  /**
   * Graceful leave: marks self `left` at incarnation + 1, stops probing, pings up to
   * max(1, gossipFanout) live members with the news (they gossip it on), waits for
   * their acks at most timeoutMs, then stops. Members that miss it see us dead instead.
   */
  leave(timeoutMs: number): Promise<void> {
    if (this.leaving === undefined) {
      this.leaving = this.phase === 'stopped' ? Promise.resolve() : this.leaveOnce(timeoutMs);
    }
    return this.leaving; // a second call waits for the first
  }

  private async leaveOnce(timeoutMs: number): Promise<void> {
    this.phase = 'leaving';
    this.stopLoops();
    const left = this.list.leaveSelf();
    const targets = pickRandom(this.list.others(LIVE), Math.max(1, this.config.gossipFanout), this.random);
    const acks = await Promise.all(
      targets.map((target) =>
        this.deadlines
          .run(`leave → ${target.name}`, timeoutMs, () =>
            this.transport.ping(target.address, this.message(target.name, [left]), timeoutMs),
          )
          .then(
            () => true,
            () => false,
          ),
      ),
    );
    if (targets.length > 0 && !acks.includes(true)) {
      const fields = { component: COMPONENT, told: targets.length };
      this.log.warn(fields, 'membership: nobody acknowledged our leave; they will see us dead');
    }
    this.stop();
  }

  /** Stops every timer and fails every call in flight. Idempotent; final. */
  stop(): void {
    if (this.phase === 'stopped') return;
    this.phase = 'stopped';
    this.stopLoops();
    this.list.stop();
    this.deadlines.cancelAll();
  }

  /** All known members, self, dead and left included (liveness is not ownership), by name. */
  members(): Member[] {
    return this.list.all();
  }

  member(name: string): Member | undefined {
    return this.list.get(name);
  }

  /**
   * True while `name` is alive or merely suspect: a suspicion is not yet a failure
   * (SWIM), and most suspicions are refuted. Use `member(name).state` for the detail.
   */
  isAlive(name: string): boolean {
    const state = this.list.get(name)?.state;
    return state === 'alive' || state === 'suspect';
  }

  /** True once stop() (or the end of leave()) ran. */
  get isStopped(): boolean {
    return this.phase === 'stopped';
  }

  // ---- server side -----------------------------------------------------------------

  handlePing(message: PingMessage): AckMessage {
    this.assertServing();
    const ping = checkPing(message);
    if (ping.target !== undefined && ping.target !== this.selfName) {
      throw new Error(`ping meant for ${ping.target} reached ${this.selfName}`);
    }
    if (ping.from === this.selfName) return { from: this.selfName, seqNo: ping.seqNo, updates: [] }; // our own echo
    this.applyAll(ping.updates, 'gossip');
    return { from: this.selfName, seqNo: ping.seqNo, updates: this.gossipFor(ping.from) };
  }

  async handlePingReq(target: { name: string; address: string }, message: PingMessage): Promise<boolean> {
    this.assertServing();
    const checkedTarget = checkTarget(target);
    const ping = checkPing(message);
    if (ping.from !== this.selfName) this.applyAll(ping.updates, 'gossip');
    if (checkedTarget.name === this.selfName) return true; // we are the target, evidently alive
    if (this.pingReqsInFlight >= PING_REQS_IN_FLIGHT_MAX) throw new Error('membership: too many ping-reqs in flight');
    this.pingReqsInFlight++;
    try {
      return await this.pingOnce(checkedTarget, this.gossipFor(checkedTarget.name), this.config.probeTimeoutMs);
    } finally {
      this.pingReqsInFlight--;
    }
  }

  handlePushPull(state: MemberInfo[]): MemberInfo[] {
    this.assertServing();
    this.applyAll(checkState(state), 'push-pull');
    return this.list.infos();
  }

  // ---- loops -----------------------------------------------------------------------

  private onProbeTick(): void {
    if (this.probesInFlight >= PROBES_IN_FLIGHT_MAX) return; // fell behind: skip a period
    const name = this.order.next(
      () => this.list.others(LIVE).map((m) => m.name),
      (candidate) => this.isProbeable(candidate),
    );
    if (name === undefined) return; // nobody to probe
    this.probesInFlight++;
    void this.probe(name)
      .catch((error: unknown) => this.warnInternal('probe', error))
      .finally(() => this.probesInFlight--);
  }

  private async probe(name: string): Promise<void> {
    const target = this.list.get(name);
    if (target === undefined) return;
    const startedAtMs = this.clock.now();
    if (await this.pingOnce(target, this.gossipFor(target.name), this.config.probeTimeoutMs)) return; // acked
    if (this.phase !== 'running') return;
    const windowMs = Math.max(1, startedAtMs + this.config.probeIntervalMs - this.clock.now());
    if (await this.indirectProbe(target, windowMs)) return; // acked through a helper
    if (this.phase !== 'running') return;
    // At the incarnation we probed: if it refuted meanwhile, this suspicion is stale and loses.
    this.list.suspect(target.name, target.incarnation);
  }

  /** Up to indirectChecks alive helpers ping the target; true as soon as one got an ack. */
  private indirectProbe(target: Member, windowMs: number): Promise<boolean> {
    const helpers = pickRandom(
      this.list.others(['alive']).filter((m) => m.name !== target.name),
      this.config.indirectChecks,
      this.random,
    );
    const ref = { name: target.name, address: target.address };
    return firstTrue(
      helpers.map((helper) =>
        this.deadlines
          .run(`ping-req ${helper.name} → ${target.name}`, windowMs, () =>
            this.transport.pingReq(helper.address, ref, this.message(helper.name, this.gossipFor(helper.name)), windowMs),
          )
          .then(
            (acked) => acked === true,
            () => false,
          ),
      ),
    );
  }

  private onGossipTick(): void {
    if (this.gossipInFlight || this.list.broadcasts.size === 0) return; // busy, or no news
    const targets = pickRandom(this.list.others(LIVE), this.config.gossipFanout, this.random);
    const sends: Promise<boolean>[] = [];
    for (const target of targets) {
      const updates = this.gossipFor(target.name);
      if (updates.length === 0) break; // the news ran out
      sends.push(this.pingOnce(target, updates, this.config.probeTimeoutMs));
    }
    if (sends.length === 0) return;
    this.gossipInFlight = true;
    void Promise.all(sends).finally(() => {
      this.gossipInFlight = false;
    });
  }

  private onPushPullTick(): void {
    if (this.pushPullInFlight) return;
    const targets = [
      ...pickRandom(this.list.others(LIVE), 1, this.random),
      ...pickRandom(this.list.others(['dead']), 1, this.random),
    ];
    if (targets.length === 0) return;
    this.pushPullInFlight = true;
    void Promise.all(targets.map((target) => this.pushPullWith(target.address))).finally(() => {
      this.pushPullInFlight = false;
    });
  }

  // ---- calls -----------------------------------------------------------------------

  /** One ping under a deadline; true if `target` itself acked. Never rejects. */
  private async pingOnce(target: { name: string; address: string }, updates: MemberUpdate[], timeoutMs: number): Promise<boolean> {
    const message = this.message(target.name, updates);
    let ack: AckMessage;
    try {
      ack = checkAck(
        await this.deadlines.run(`ping ${target.name}`, timeoutMs, () => this.transport.ping(target.address, message, timeoutMs)),
      );
    } catch {
      return false; // no answer: normal
    }
    if (ack.from !== target.name || ack.seqNo !== message.seqNo) return false; // someone else answers there
    if (this.phase !== 'stopped') this.applyAll(ack.updates, 'gossip');
    return true;
  }

  /** One push-pull under a deadline; true if it answered. Never rejects. */
  private async pushPullWith(address: string): Promise<boolean> {
    const timeoutMs = this.config.pushPullTimeoutMs;
    const exchange = () => this.transport.pushPull(address, this.list.infos(), timeoutMs);
    let state: unknown[];
    try {
      state = checkState(await this.deadlines.run(`push-pull ${address}`, timeoutMs, exchange));
    } catch {
      return false;
    }
    if (this.phase !== 'stopped') this.applyAll(state, 'push-pull');
    return true;
  }

  // ---- helpers ---------------------------------------------------------------------

  private applyAll(updates: readonly unknown[], source: UpdateSource): void {
    // A full state holds at most membersMax members; anything longer is not from a peer.
    const count = Math.min(updates.length, this.config.membersMax);
    for (let i = 0; i < count; i++) this.list.apply(updates[i], source);
  }

  /**
   * News for a message to `name`: what we hold against it first (suspect or dead), so
   * it can refute, then the least-sent queued updates, gossipUpdatesMax in all.
   */
  private gossipFor(name: string): MemberUpdate[] {
    const member = this.list.get(name);
    const accusation = member !== undefined && (member.state === 'suspect' || member.state === 'dead') ? [toInfo(member)] : [];
    const max = this.config.gossipUpdatesMax - accusation.length;
    return [...accusation, ...this.list.broadcasts.take(max, accusation.length > 0 ? name : undefined)];
  }

  private message(target: string, updates: MemberUpdate[]): PingMessage {
    return { from: this.selfName, seqNo: ++this.seqNo, updates, target };
  }

  private isProbeable(name: string): boolean {
    const state = this.list.get(name)?.state;
    return name !== this.selfName && (state === 'alive' || state === 'suspect');
  }

  private onChange(member: Member, previous: MemberState | undefined): void {
    const revived = previous === undefined || previous === 'dead' || previous === 'left';
    if (revived && member.name !== this.selfName && (member.state === 'alive' || member.state === 'suspect')) {
      this.order.add(member.name);
    }
    try {
      this.emit('change', member, previous);
    } catch (error) {
      this.warnInternal('change listener', error);
    }
  }

  private stopLoops(): void {
    this.probeTicker.stop();
    this.gossipTicker.stop();
    this.pushPullTicker.stop();
    this.seedRetry.stop();
  }

  private assertServing(): void {
    if (this.phase === 'stopped') throw new MembershipStoppedError();
  }

  private randomPhaseMs(intervalMs: number): number {
    return Math.floor(this.random() * intervalMs);
  }

  /** Timer callbacks must not throw: a bug fails one tick, not the process. */
  private guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.warnInternal(what, error);
    }
  }

  private warnInternal(what: string, error: unknown): void {
    this.log.warn(
      { component: COMPONENT, what, err: error instanceof Error ? (error.stack ?? error.message) : String(error) },
      'membership: internal error',
    );
  }
}

/** Resolves true as soon as one resolves true, false once all resolved otherwise. */
function firstTrue(promises: readonly Promise<boolean>[]): Promise<boolean> {
  if (promises.length === 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    let left = promises.length;
    for (const promise of promises) {
      void promise.then((value) => {
        if (value) resolve(true);
        else if (--left === 0) resolve(false);
      });
    }
  });
}
