/**
 * Time for the membership protocol: the real clock, and timers as small owned objects.
 *
 * Every timer belongs to exactly one owner that stops it (Membership.stop stops them
 * all); nothing here starts on construction or lives at module level. Callbacks must
 * not throw: owners pass guarded functions.
 */
import { performance } from 'node:perf_hooks';
import type { Clock } from './types';

/** Wall-clock milliseconds that never go backwards (performance.now anchored at start). */
export const systemClock: Clock = Object.freeze({
  now: () => performance.timeOrigin + performance.now(),
  setTimeout: (fn: () => void, ms: number): unknown => setTimeout(fn, ms),
  clearTimeout: (handle: unknown) => clearTimeout(handle as ReturnType<typeof setTimeout>),
});

/** A one-shot timer that can be re-armed; stopping it is always safe. */
export class Timer {
  private handle: unknown = undefined;
  private armed = false;

  constructor(
    private readonly clock: Clock,
    private readonly fn: () => void,
  ) {}

  /** Fires once after delayMs, replacing any pending firing. */
  start(delayMs: number): void {
    this.stop();
    this.armed = true;
    this.handle = this.clock.setTimeout(() => {
      this.armed = false;
      this.handle = undefined;
      this.fn();
    }, Math.max(0, delayMs));
  }

  stop(): void {
    if (!this.armed) return;
    this.clock.clearTimeout(this.handle);
    this.armed = false;
    this.handle = undefined;
  }

  get isArmed(): boolean {
    return this.armed;
  }
}

/**
 * Calls fn every intervalMs at a fixed rate (a slow callback does not push later ticks
 * back); after a stall longer than one interval it skips the missed ticks rather than
 * firing them in a burst.
 */
export class Ticker {
  private readonly timer: Timer;
  private nextAtMs = 0;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly fn: () => void,
  ) {
    this.timer = new Timer(clock, () => this.tick());
  }

  /** First tick after firstDelayMs (a random phase keeps nodes from ticking in step). */
  start(firstDelayMs: number): void {
    this.nextAtMs = this.clock.now() + firstDelayMs;
    this.timer.start(firstDelayMs);
  }

  stop(): void {
    this.timer.stop();
  }

  get isRunning(): boolean {
    return this.timer.isArmed;
  }

  private tick(): void {
    const now = this.clock.now();
    this.nextAtMs += this.intervalMs;
    if (this.nextAtMs <= now) this.nextAtMs = now + this.intervalMs;
    this.timer.start(this.nextAtMs - now);
    this.fn();
  }
}
