/**
 * One suspicion: the timer that declares a suspect dead unless it refutes in time
 * (memberlist's suspicion.go, from Lifeguard).
 *
 * The timeout starts at maxMs and shrinks toward minMs as distinct members confirm the
 * suspicion: after n of the k expected confirmations it is
 *   max(minMs, maxMs − (maxMs − minMs) × log(n + 1) / log(k + 1)),
 * measured from the start. A suspicion many members share ends soon; one only a single
 * prober holds (perhaps its own bad link) gets the longest time to be refuted.
 * The owner stops it when the member refutes, dies otherwise, or on shutdown.
 */
import { Timer } from './timers';
import type { Clock } from './types';

export function suspicionTimeoutMs(confirmations: number, expected: number, minMs: number, maxMs: number): number {
  if (expected < 1) return minMs;
  const fraction = Math.log(confirmations + 1) / Math.log(expected + 1);
  return Math.max(minMs, Math.floor(maxMs - fraction * (maxMs - minMs)));
}

export class Suspicion {
  private readonly confirmedBy = new Set<string>();
  private readonly timer: Timer;
  private readonly startedAtMs: number;
  private confirmations = 0;

  constructor(
    private readonly options: {
      /** Who raised it; '' when unknown (then any member's confirmation counts). */
      from: string;
      expected: number;
      minMs: number;
      maxMs: number;
      clock: Clock;
      onTimeout: () => void;
    },
  ) {
    if (options.from !== '') this.confirmedBy.add(options.from);
    this.startedAtMs = options.clock.now();
    this.timer = new Timer(options.clock, options.onTimeout);
    this.timer.start(this.timeoutMs());
  }

  /** Counts an independent confirmation; true if it was new (worth re-gossiping). */
  confirm(from: string): boolean {
    if (this.confirmations >= this.options.expected) return false; // already at the minimum
    if (from === '' || this.confirmedBy.has(from)) return false; // not independent
    this.confirmedBy.add(from);
    this.confirmations++;
    const elapsedMs = this.options.clock.now() - this.startedAtMs;
    this.timer.start(this.timeoutMs() - elapsedMs);
    return true;
  }

  /** Total timeout as of now, ms from the start. */
  timeoutMs(): number {
    return suspicionTimeoutMs(this.confirmations, this.options.expected, this.options.minMs, this.options.maxMs);
  }

  stop(): void {
    this.timer.stop();
  }
}
