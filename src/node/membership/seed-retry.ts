/**
 * Background retries of seeds that did not answer `join`, until each answers or the
 * owner stops (a seed that is not up yet, a Kubernetes pod still starting).
 *
 * One timer; the delay doubles from firstDelayMs up to maxDelayMs (20 % jitter below
 * it, so restarted nodes do not retry in step) and starts over once nothing is
 * pending. Seeds whose address is already a live member are dropped: we are in.
 * Attempts run in parallel, at most one round at a time, each under the owner's deadline.
 */
import { Timer } from './timers';
import type { Clock } from './types';

export interface SeedRetryOptions {
  clock: Clock;
  firstDelayMs: number;
  maxDelayMs: number;
  random: () => number;
  /** One push-pull with the seed; resolves true if it answered. Must not reject. */
  attempt: (address: string) => Promise<boolean>;
  /** True when a live member already has this address. */
  isMember: (address: string) => boolean;
}

export class SeedRetry {
  private readonly pending = new Set<string>();
  private readonly timer: Timer;
  private delayMs: number;
  private inFlight = false;
  private stopped = false;

  constructor(private readonly options: SeedRetryOptions) {
    this.delayMs = options.firstDelayMs;
    this.timer = new Timer(options.clock, () => this.retry());
  }

  add(addresses: readonly string[]): void {
    if (this.stopped) return;
    for (const address of addresses) this.pending.add(address);
    if (this.pending.size > 0 && !this.timer.isArmed && !this.inFlight) this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.timer.stop();
    this.pending.clear();
  }

  /** Seeds still waiting for an answer. */
  get size(): number {
    return this.pending.size;
  }

  private schedule(): void {
    const jitter = 0.8 + 0.2 * this.options.random();
    this.timer.start(Math.floor(this.delayMs * jitter));
    this.delayMs = Math.min(this.delayMs * 2, this.options.maxDelayMs);
  }

  private retry(): void {
    for (const address of this.pending) if (this.options.isMember(address)) this.pending.delete(address);
    if (this.pending.size === 0) {
      this.delayMs = this.options.firstDelayMs;
      return;
    }
    this.inFlight = true;
    const attempts = [...this.pending].map((address) =>
      this.options.attempt(address).then(
        (answered) => {
          if (answered) this.pending.delete(address);
        },
        () => undefined, // attempt promises not to reject; a failure is just "not yet"
      ),
    );
    void Promise.all(attempts).then(() => {
      this.inFlight = false;
      if (this.stopped) return;
      if (this.pending.size > 0) this.schedule();
      else this.delayMs = this.options.firstDelayMs;
    });
  }
}
