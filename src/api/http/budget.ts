/**
 * A node-wide budget of request-body bytes held by the requests in flight
 * (`requestBytesInFlightMax`). A request takes bytes as its body arrives and gives
 * them back when its response is over, so a handful of huge bodies cannot take every
 * byte of memory: past the budget a request is answered 503 at once instead of every
 * request slowing down.
 */
import assert from 'node:assert/strict';

export class ByteBudget {
  readonly bytesMax: number;
  private used = 0;

  constructor(bytesMax: number) {
    assert.ok(Number.isSafeInteger(bytesMax) && bytesMax > 0, 'ByteBudget needs a positive size');
    this.bytesMax = bytesMax;
  }

  /** Bytes currently taken. */
  get inUse(): number {
    return this.used;
  }

  /** Whether `bytes` more would fit now. */
  fits(bytes: number): boolean {
    return this.used + bytes <= this.bytesMax;
  }

  /** Take `bytes` if they fit; false (and nothing taken) when they do not. */
  tryTake(bytes: number): boolean {
    if (this.used + bytes > this.bytesMax) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
    assert.ok(this.used >= 0, 'ByteBudget: more bytes given back than taken');
  }
}
