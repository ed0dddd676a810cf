/**
 * Deadlines on remote calls, owned by one Membership.
 *
 * `run` starts a call and settles no later than timeoutMs, whatever the transport
 * does; the transport's own late settlement is absorbed (never an unhandled rejection).
 * `cancelAll` (on stop) rejects every call still waiting and clears its timer, so the
 * async flows behind them finish at once and no timer outlives the owner.
 */
import type { Clock } from './types';

export class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
}

export class MembershipStoppedError extends Error {
  override readonly name = 'MembershipStoppedError';
  constructor() {
    super('membership stopped');
  }
}

interface Pending {
  handle: unknown;
  reject: (error: Error) => void;
}

export class Deadlines {
  private readonly pending = new Set<Pending>();
  private closed = false;

  constructor(private readonly clock: Clock) {}

  run<T>(what: string, timeoutMs: number, start: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) return reject(new MembershipStoppedError());
      const entry: Pending = { handle: undefined, reject };
      const settle = (): boolean => {
        if (!this.pending.has(entry)) return false; // already timed out or cancelled
        this.pending.delete(entry);
        this.clock.clearTimeout(entry.handle);
        return true;
      };
      entry.handle = this.clock.setTimeout(() => {
        if (!this.pending.delete(entry)) return;
        reject(new DeadlineError(`${what}: no answer within ${timeoutMs} ms`));
      }, Math.max(1, timeoutMs));
      this.pending.add(entry);
      let call: Promise<T>;
      try {
        call = Promise.resolve(start());
      } catch (error) {
        settle();
        return reject(error instanceof Error ? error : new Error(String(error)));
      }
      call.then(
        (value) => {
          if (settle()) resolve(value);
        },
        (error: unknown) => {
          if (settle()) reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  /** Rejects every waiting call and refuses new ones. Idempotent. */
  cancelAll(): void {
    this.closed = true;
    for (const entry of [...this.pending]) {
      this.pending.delete(entry);
      this.clock.clearTimeout(entry.handle);
      entry.reject(new MembershipStoppedError());
    }
  }

  get size(): number {
    return this.pending.size;
  }
}
