/**
 * A clock that only moves when told: runs the membership protocol on simulated time,
 * deterministically and much faster than real time (tests, simulations).
 *
 * Timers fire in due order (insertion order among equals); after each one, pending
 * promise jobs are allowed to run (one macrotask turn) so that async flows started by
 * the timer reach their next timer before time moves on. This works as long as the
 * code under test waits only on this clock and on promises, never on real I/O.
 */
import type { Clock } from './types';

interface Scheduled {
  atMs: number;
  seq: number;
  fn: () => void;
}

/** Guards against a timer that re-arms itself at zero delay forever. */
const STEPS_MAX = 5_000_000;

export class ManualClock implements Clock {
  private nowMs: number;
  private seq = 0;
  private readonly timers = new Map<number, Scheduled>();

  constructor(startMs = 0) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const seq = this.seq++;
    this.timers.set(seq, { atMs: this.nowMs + Math.max(0, ms), seq, fn });
    return seq;
  }

  clearTimeout(handle: unknown): void {
    if (typeof handle === 'number') this.timers.delete(handle);
  }

  /** Timers armed and not yet fired. */
  get pendingCount(): number {
    return this.timers.size;
  }

  /** Runs every timer due within ms, in order, then sets the time to now + ms. */
  async advance(ms: number): Promise<void> {
    const untilMs = this.nowMs + ms;
    await settle();
    for (let steps = 0; this.fireNext(untilMs); steps++) {
      if (steps >= STEPS_MAX) throw new Error('ManualClock: too many timer firings (a zero-delay loop?)');
      await settle();
    }
    this.nowMs = Math.max(this.nowMs, untilMs);
  }

  /**
   * Runs timers until `condition` holds; returns the simulated ms it took. Throws, with
   * `describe()` when given, if it does not hold within timeoutMs of simulated time.
   */
  async runUntil(condition: () => boolean, timeoutMs: number, describe?: () => string): Promise<number> {
    const startMs = this.nowMs;
    const untilMs = startMs + timeoutMs;
    await settle();
    for (let steps = 0; ; steps++) {
      if (condition()) return this.nowMs - startMs;
      if (steps >= STEPS_MAX) throw new Error('ManualClock: too many timer firings (a zero-delay loop?)');
      if (!this.fireNext(untilMs)) break;
      await settle();
    }
    this.nowMs = Math.max(this.nowMs, untilMs);
    if (condition()) return this.nowMs - startMs;
    throw new Error(`condition not met within ${timeoutMs} ms of simulated time${describe ? `: ${describe()}` : ''}`);
  }

  /** Fires the earliest timer due at or before untilMs; false if there is none. */
  private fireNext(untilMs: number): boolean {
    let next: Scheduled | undefined;
    for (const timer of this.timers.values()) {
      if (next === undefined || timer.atMs < next.atMs || (timer.atMs === next.atMs && timer.seq < next.seq)) next = timer;
    }
    if (next === undefined || next.atMs > untilMs) return false;
    this.timers.delete(next.seq);
    this.nowMs = Math.max(this.nowMs, next.atMs);
    next.fn();
    return true;
  }
}

/** Lets every queued promise job run (they all run before the next macrotask). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
