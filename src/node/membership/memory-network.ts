/**
 * An in-memory network between Membership instances of one process, with faults:
 * isolate a node (all its traffic dropped), partition addresses into groups, add
 * latency, or have no one listening (connection refused). For tests and simulations.
 *
 * Every message is copied through JSON, as a real transport would serialise it, so
 * no object is shared between nodes. A dropped request or reply is silence: the
 * caller's promise rejects when its timeoutMs passes, like a lost packet. Links are
 * checked when a message is delivered, so a fault applies to messages in flight.
 * All timers come from the given clock and are cleared by close().
 */
import type { AckMessage, Clock, MemberInfo, MembershipHandlers, MembershipTransport } from './types';

export class NetworkError extends Error {
  override readonly name = 'NetworkError';
}

export interface MemoryNetworkOptions {
  clock: Clock;
  /** One-way delay of every message, ms. 0 delivers on the next promise job. */
  latencyMs?: number;
}

export type CallKind = 'ping' | 'pingReq' | 'pushPull';

export class MemoryNetwork {
  private readonly clock: Clock;
  private readonly handlers = new Map<string, MembershipHandlers>();
  private readonly isolated = new Set<string>();
  private groups: string[][] | undefined;
  private latencyMs: number;
  private readonly timers = new Map<number, { handle: unknown; onClose: () => void }>();
  private nextTimerId = 0;
  private closed = false;
  /** Calls addressed to each address, by kind, whether delivered or not. */
  readonly callsTo = new Map<string, Record<CallKind, number>>();

  constructor(options: MemoryNetworkOptions) {
    this.clock = options.clock;
    this.latencyMs = options.latencyMs ?? 0;
  }

  /** Starts listening at `address` (replacing whoever listened there: a restart). */
  attach(address: string, handlers: MembershipHandlers): void {
    this.handlers.set(address, handlers);
  }

  /** Nobody listens at `address` any more: calls fail at once (connection refused). */
  detach(address: string): void {
    this.handlers.delete(address);
  }

  /** Drops every message to or from `address` until `reconnect`. */
  isolate(address: string): void {
    this.isolated.add(address);
  }

  reconnect(address: string): void {
    this.isolated.delete(address);
  }

  /** Only addresses in the same group can talk; addresses in no group talk to nobody. */
  partition(...groups: string[][]): void {
    this.groups = groups.map((group) => [...group]);
  }

  heal(): void {
    this.groups = undefined;
  }

  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  /** The transport a node at `fromAddress` uses. */
  transportFor(fromAddress: string): MembershipTransport {
    return {
      ping: (address, message, timeoutMs) =>
        this.call<AckMessage>('ping', fromAddress, address, timeoutMs, (h) => h.handlePing(copy(message))),
      pingReq: (via, target, message, timeoutMs) =>
        this.call<boolean>('pingReq', fromAddress, via, timeoutMs, (h) => h.handlePingReq(copy(target), copy(message))),
      pushPull: (address, state, timeoutMs) =>
        this.call<MemberInfo[]>('pushPull', fromAddress, address, timeoutMs, (h) => h.handlePushPull(copy(state))),
    };
  }

  canTalk(a: string, b: string): boolean {
    if (this.isolated.has(a) || this.isolated.has(b)) return false;
    if (this.groups === undefined) return true;
    return this.groups.some((group) => group.includes(a) && group.includes(b));
  }

  /** Clears every timer and fails every call in flight. */
  close(): void {
    this.closed = true;
    for (const { handle, onClose } of [...this.timers.values()]) {
      this.clock.clearTimeout(handle);
      onClose();
    }
    this.timers.clear();
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  private call<T>(
    kind: CallKind,
    from: string,
    to: string,
    timeoutMs: number,
    deliver: (handlers: MembershipHandlers) => T | Promise<T>,
  ): Promise<T> {
    const counts = this.callsTo.get(to) ?? { ping: 0, pingReq: 0, pushPull: 0 };
    counts[kind]++;
    this.callsTo.set(to, counts);
    return new Promise<T>((resolve, reject) => {
      if (this.closed) return reject(new NetworkError('network closed'));
      let done = false;
      const finish = (error: Error | undefined, value?: T): void => {
        if (done) return;
        done = true;
        this.cancel(timeout);
        if (error) reject(error);
        else resolve(value as T);
      };
      const timeout = this.schedule(
        timeoutMs,
        () => finish(new NetworkError(`${kind} ${from} → ${to}: timed out after ${timeoutMs} ms`)),
        () => finish(new NetworkError('network closed')),
      );
      this.afterLatency(() => {
        if (done || !this.canTalk(from, to)) return; // request lost
        const handlers = this.handlers.get(to);
        if (handlers === undefined) return finish(new NetworkError(`${kind} ${from} → ${to}: connection refused`));
        let reply: Promise<T>;
        try {
          reply = Promise.resolve(deliver(handlers));
        } catch (error) {
          reply = Promise.reject(error);
        }
        reply.then(
          (value) =>
            this.afterLatency(() => {
              if (this.canTalk(to, from)) finish(undefined, copy(value)); // else the reply is lost
            }),
          (error: unknown) =>
            this.afterLatency(() => {
              if (this.canTalk(to, from)) finish(new NetworkError(`${kind} ${from} → ${to}: ${String(error)}`));
            }),
        );
      });
    });
  }

  private afterLatency(fn: () => void): void {
    if (this.closed) return;
    if (this.latencyMs <= 0) {
      queueMicrotask(fn);
      return;
    }
    this.schedule(this.latencyMs, fn, () => undefined);
  }

  private schedule(ms: number, fn: () => void, onClose: () => void): number {
    const id = this.nextTimerId++;
    const handle = this.clock.setTimeout(() => {
      this.timers.delete(id);
      fn();
    }, ms);
    this.timers.set(id, { handle, onClose });
    return id;
  }

  private cancel(id: number): void {
    const timer = this.timers.get(id);
    if (timer === undefined) return;
    this.clock.clearTimeout(timer.handle);
    this.timers.delete(id);
  }
}

function copy<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}
