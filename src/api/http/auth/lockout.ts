/**
 * Lockout after repeated authentication failures, as CouchDB's `[chttpd_auth_lockout]`:
 * failures are counted per (user name, client address); once `threshold` are counted,
 * `enforce` refuses that pair with 403 — even with the right password — until the
 * count expires `lifetimeMs` after its first failure; `warn` only logs; `off` counts
 * nothing. Other addresses are not affected, so an attacker cannot lock the real
 * admin out from elsewhere. Unknown names are counted like known ones, or the 403
 * would tell which names exist.
 *
 * Bounded: at most `entriesMax` pairs; a new pair beyond that drops the oldest.
 */
import { ForbiddenError } from '../../../errors';
import type { Logger } from '../context';

export type LockoutMode = 'enforce' | 'warn' | 'off';

export const LOCKED_REASON = 'Account is temporarily locked due to multiple authentication failures';

export interface LockoutOptions {
  mode: LockoutMode;
  threshold: number;
  lifetimeMs: number;
  entriesMax: number;
}

interface Entry {
  failures: number;
  firstMs: number;
}

export class Lockout {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly options: LockoutOptions,
    private readonly log?: Logger,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Throws 403 when `user` from `peer` is locked out (enforce mode). */
  check(user: string, peer: string): void {
    if (this.options.mode !== 'enforce') return;
    const entry = this.live(keyOf(user, peer));
    if (entry && entry.failures >= this.options.threshold) throw new ForbiddenError(LOCKED_REASON);
  }

  failed(user: string, peer: string): void {
    if (this.options.mode === 'off') return;
    const key = keyOf(user, peer);
    let entry = this.live(key);
    if (!entry) {
      while (this.entries.size >= this.options.entriesMax) this.entries.delete(this.entries.keys().next().value!);
      entry = { failures: 0, firstMs: Date.now() };
      this.entries.set(key, entry);
    }
    entry.failures++;
    if (entry.failures === this.options.threshold) {
      // Once per pair and lifetime, not per request: an attack must not flood the log.
      this.log?.warn({ component: 'auth', user, peer, mode: this.options.mode }, 'authentication failure threshold reached');
    }
  }

  /** A correct password from this pair clears its count. */
  succeeded(user: string, peer: string): void {
    this.entries.delete(keyOf(user, peer));
  }

  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry && entry.firstMs + this.options.lifetimeMs <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }
}

function keyOf(user: string, peer: string): string {
  return `${peer.length}:${peer}:${user}`;
}
