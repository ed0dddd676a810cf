/**
 * The queue of updates waiting to be piggybacked (memberlist's TransmitLimitedQueue).
 *
 * At most one update per member: newer news about a member replaces older news, so
 * the queue never holds more entries than there are members. Each message takes the
 * updates sent least often so far (newest first among equals); an update is dropped
 * after `limit()` sends, retransmitMultiplier × ceil(log10(N + 1)), enough for
 * epidemic spread to reach every member with high probability.
 */
import type { MemberUpdate } from './types';

interface Entry {
  update: MemberUpdate;
  transmits: number;
  /** Insertion order, for "newest first" among equally sent updates. */
  id: number;
}

export class BroadcastQueue {
  private readonly byName = new Map<string, Entry>();
  private nextId = 0;

  constructor(private readonly limit: () => number) {}

  /** Queues news about a member, replacing any older news about it. */
  push(update: MemberUpdate): void {
    this.byName.set(update.name, { update: { ...update }, transmits: 0, id: this.nextId++ });
  }

  /** Up to max updates for one message; each counts as sent once. */
  take(max: number, skipName?: string): MemberUpdate[] {
    if (max <= 0 || this.byName.size === 0) return [];
    const limit = this.limit();
    const chosen = [...this.byName.values()]
      .filter((entry) => entry.update.name !== skipName)
      .sort((a, b) => a.transmits - b.transmits || b.id - a.id)
      .slice(0, max);
    for (const entry of chosen) {
      entry.transmits++;
      if (entry.transmits >= limit) this.byName.delete(entry.update.name);
    }
    return chosen.map((entry) => ({ ...entry.update }));
  }

  get size(): number {
    return this.byName.size;
  }

  clear(): void {
    this.byName.clear();
  }
}
