/**
 * The member table: what this node believes about every member, itself included, and
 * the rules that change it (memberlist's state.go without the network).
 *
 * Every statement, whatever its source (piggybacked gossip, push-pull, our own probe,
 * a suspicion timing out), goes through `apply`, which keeps it only if it supersedes
 * what we know (`precedence.ts`). A kept statement changes the table, starts or stops
 * the member's suspicion timer, is queued for gossip and announced through `onChange`.
 * Statements about ourselves are never kept: a suspicion, death or departure at our
 * incarnation or above is refuted by raising our incarnation and gossiping alive.
 *
 * Members are never forgotten (dead and left stay: liveness is not ownership); the
 * table is capped at membersMax. No I/O; timers only through the injected clock.
 */
import assert from 'node:assert/strict';
import { BroadcastQueue } from './broadcasts';
import { retransmitLimit, suspicionTimeouts, type ResolvedMembershipConfig } from './config';
import { parseUpdate, toInfo } from './messages';
import { supersedes } from './precedence';
import { Suspicion } from './suspicion';
import type { Clock, Member, MemberInfo, MembershipLog, MemberState, MemberUpdate, SelfIdentity } from './types';

/** Where a statement came from; push-pull deaths count only as suspicions. */
export type UpdateSource = 'gossip' | 'push-pull' | 'local';

export interface MemberListOptions {
  self: SelfIdentity;
  config: ResolvedMembershipConfig;
  clock: Clock;
  log: MembershipLog;
  /** After every state change, new member and address change; must not throw. */
  onChange: (member: Member, previous: MemberState | undefined) => void;
}

const COMPONENT = 'membership';

export class MemberList {
  readonly broadcasts: BroadcastQueue;
  private readonly byName = new Map<string, Member>();
  private readonly suspicions = new Map<string, Suspicion>();
  private readonly selfName: string;
  private capWarned = false;

  constructor(private readonly options: MemberListOptions) {
    this.selfName = options.self.name;
    const self: Member = { ...toInfo({ ...options.self, incarnation: 0, state: 'alive' }), stateChangedAtMs: options.clock.now() };
    this.byName.set(self.name, self);
    this.broadcasts = new BroadcastQueue(() => retransmitLimit(options.config, this.byName.size));
    this.broadcasts.push(toInfo(self));
  }

  self(): Member {
    return copy(this.byName.get(this.selfName)!);
  }

  get(name: string): Member | undefined {
    const member = this.byName.get(name);
    return member === undefined ? undefined : copy(member);
  }

  /** Every member, self included, sorted by name. */
  all(): Member[] {
    return [...this.byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map(copy);
  }

  /** Other members in one of `states`. */
  others(states: readonly MemberState[]): Member[] {
    return this.all().filter((m) => m.name !== this.selfName && states.includes(m.state));
  }

  /** The full state for push-pull. */
  infos(): MemberInfo[] {
    return [...this.byName.values()].map(toInfo);
  }

  /** Members alive or suspect, self included: the N of the timeout formulas. */
  liveCount(): number {
    let count = 0;
    for (const member of this.byName.values()) if (member.state === 'alive' || member.state === 'suspect') count++;
    return count;
  }

  /** Takes in one statement from anywhere; malformed ones are skipped with a warning. */
  apply(raw: unknown, source: UpdateSource): void {
    const update = parseUpdate(raw);
    if (update === undefined) {
      const name = typeof raw === 'object' && raw !== null ? (raw as { name?: unknown }).name : undefined;
      const fields = { component: COMPONENT, name: typeof name === 'string' ? name : null };
      this.options.log.warn(fields, 'membership: malformed update ignored');
      return;
    }
    this.applyUpdate(update, source);
  }

  /** Our probe of `name` at `incarnation` failed, direct and indirect. */
  suspect(name: string, incarnation: number): void {
    const member = this.byName.get(name);
    if (member === undefined) return;
    this.applyUpdate({ ...toInfo(member), incarnation, state: 'suspect', suspectedBy: this.selfName }, 'local');
  }

  /** Graceful leave: `left` at a new incarnation, queued for gossip; returns it. */
  leaveSelf(): MemberInfo {
    const self = this.byName.get(this.selfName)!;
    const previous = self.state;
    if (previous !== 'left') {
      self.incarnation++;
      self.state = 'left';
      self.stateChangedAtMs = this.options.clock.now();
      this.announce(self, previous);
    }
    const info = toInfo(self);
    this.broadcasts.push(info);
    return info;
  }

  /** Stops every suspicion timer. The table stays readable. */
  stop(): void {
    for (const suspicion of this.suspicions.values()) suspicion.stop();
    this.suspicions.clear();
  }

  private applyUpdate(update: MemberUpdate, source: UpdateSource): void {
    if (update.name === this.selfName) return this.applyAboutSelf(update);
    // A full state may be stale: a death heard in push-pull is only a suspicion here, so
    // the member gets its chance to refute (memberlist's mergeState does the same).
    const incoming = source === 'push-pull' && update.state === 'dead' ? asSuspicion(update) : update;
    const current = this.byName.get(incoming.name);
    if (current === undefined) return this.add(incoming);
    if (incoming.state === 'suspect' && current.state === 'suspect' && incoming.incarnation === current.incarnation) {
      return this.confirm(current, incoming.suspectedBy);
    }
    if (!supersedes(incoming, current)) return; // older or equal news
    this.transition(current, incoming);
  }

  private applyAboutSelf(update: MemberUpdate): void {
    const self = this.byName.get(this.selfName)!;
    if (self.state === 'left') return; // leaving: nothing said about us matters any more
    if (update.incarnation < self.incarnation && update.state !== 'alive') {
      // A stale accusation: its holder missed our refutation. Send it again (the ack to
      // this very message carries it first: fewest sends, newest).
      this.broadcasts.push(toInfo(self));
      return;
    }
    if (update.incarnation < self.incarnation) return; // news about an older us
    if (update.state === 'alive' && update.incarnation === self.incarnation && sameAddresses(update, self)) return; // that is us
    // Suspected, declared dead or left at our incarnation or above, or someone else's
    // idea of us (a previous life, other addresses): outbid it.
    self.incarnation = update.incarnation + 1;
    this.broadcasts.push(toInfo(self));
    this.options.log.info(
      { component: COMPONENT, heard: update.state, heardIncarnation: update.incarnation, incarnation: self.incarnation },
      'membership: refuting',
    );
  }

  private add(incoming: MemberUpdate): void {
    if (this.byName.size >= this.options.config.membersMax) {
      if (!this.capWarned) {
        this.capWarned = true;
        const fields = { component: COMPONENT, member: incoming.name, membersMax: this.options.config.membersMax };
        this.options.log.warn(fields, 'membership: member table full, news of new members dropped');
      }
      return;
    }
    const member: Member = { ...toInfo(incoming), stateChangedAtMs: this.options.clock.now() };
    this.byName.set(member.name, member);
    if (member.state === 'suspect') this.startSuspicion(member, incoming.suspectedBy);
    this.broadcasts.push(withSuspector(member, incoming));
    this.announce(member, undefined);
  }

  private transition(current: Member, incoming: MemberUpdate): void {
    assert.ok(incoming.incarnation >= current.incarnation, 'incarnations only grow');
    const previous = current.state;
    const newer = incoming.incarnation > current.incarnation;
    const moved = newer && !sameAddresses(incoming, current);
    if (newer) {
      current.address = incoming.address;
      current.httpAddress = incoming.httpAddress;
      if (incoming.zone === undefined) delete current.zone;
      else current.zone = incoming.zone;
    }
    current.incarnation = incoming.incarnation;
    if (previous !== incoming.state) {
      current.state = incoming.state;
      current.stateChangedAtMs = this.options.clock.now();
    }
    if (current.state === 'suspect') this.startSuspicion(current, incoming.suspectedBy);
    else this.stopSuspicion(current.name);
    this.broadcasts.push(withSuspector(current, incoming));
    if (previous !== current.state || moved) this.announce(current, previous);
  }

  private confirm(current: Member, from: string | undefined): void {
    if (from === undefined) return; // an anonymous suspicion confirms nothing
    const suspicion = this.suspicions.get(current.name);
    if (suspicion === undefined) return;
    // A new independent confirmation is news: pass it on so others shorten theirs too.
    if (suspicion.confirm(from)) this.broadcasts.push({ ...toInfo(current), suspectedBy: from });
  }

  private startSuspicion(member: Member, from: string | undefined): void {
    this.stopSuspicion(member.name);
    const { minMs, maxMs, confirmationsExpected } = suspicionTimeouts(this.options.config, this.liveCount());
    const { name, incarnation } = member;
    const suspicion: Suspicion = new Suspicion({
      from: from ?? '',
      expected: confirmationsExpected,
      minMs,
      maxMs,
      clock: this.options.clock,
      onTimeout: () => this.suspicionExpired(suspicion, name, incarnation),
    });
    this.suspicions.set(name, suspicion);
  }

  private stopSuspicion(name: string): void {
    this.suspicions.get(name)?.stop();
    this.suspicions.delete(name);
  }

  private suspicionExpired(suspicion: Suspicion, name: string, incarnation: number): void {
    if (this.suspicions.get(name) !== suspicion) return; // replaced meanwhile
    this.suspicions.delete(name);
    const member = this.byName.get(name);
    if (member === undefined || member.state !== 'suspect' || member.incarnation !== incarnation) return; // refuted or overtaken
    this.applyUpdate({ ...toInfo(member), state: 'dead' }, 'local');
  }

  private announce(member: Member, previous: MemberState | undefined): void {
    const fields = {
      component: COMPONENT,
      member: member.name,
      address: member.address,
      incarnation: member.incarnation,
      previous: previous ?? null,
      state: member.state,
    };
    const log = this.options.log;
    if (previous === undefined) log.info(fields, 'membership: member discovered');
    else if (previous === member.state) log.info(fields, 'membership: member addresses changed');
    else if (member.state === 'alive') log.info(fields, 'membership: member alive');
    else if (member.state === 'suspect') log.warn(fields, 'membership: member suspect');
    else if (member.state === 'dead') log.warn(fields, 'membership: member dead');
    else log.info(fields, 'membership: member left');
    this.options.onChange(copy(member), previous);
  }
}

function copy(member: Member): Member {
  return { ...toInfo(member), stateChangedAtMs: member.stateChangedAtMs };
}

function sameAddresses(a: MemberInfo, b: MemberInfo): boolean {
  return a.address === b.address && a.httpAddress === b.httpAddress && a.zone === b.zone;
}

function asSuspicion(update: MemberUpdate): MemberUpdate {
  const suspicion: MemberUpdate = { ...update, state: 'suspect' };
  delete suspicion.suspectedBy; // whoever declared it dead, it is no confirmation here
  return suspicion;
}

/** The gossip form of a member's new state, keeping who suspected it. */
function withSuspector(member: Member, incoming: MemberUpdate): MemberUpdate {
  const update: MemberUpdate = toInfo(member);
  if (member.state === 'suspect' && incoming.suspectedBy !== undefined) update.suspectedBy = incoming.suspectedBy;
  return update;
}
