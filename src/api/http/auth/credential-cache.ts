/**
 * Remembered successful (name, password) pairs, so a client sending Basic credentials
 * on every request pays for PBKDF2 once. Bounded LRU with a time to live.
 *
 * The key is an HMAC of the credentials under a random per-process key: the plain
 * password is never stored, and the key is useless outside this process. Each entry
 * keeps the stored hash it was checked against; when the admin's stored hash differs
 * (password changed, admin removed) the entry no longer matches, at once.
 */
import { createHmac, randomBytes } from 'node:crypto';

interface Entry {
  name: string;
  stored: string;
  expiresMs: number;
}

export class CredentialCache {
  private readonly hmacKey = randomBytes(32);
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly entriesMax: number,
    private readonly ttlMs: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  keyOf(name: string, password: string): string {
    // Length-prefixed, so no (name, password) pair can collide with another.
    return createHmac('sha256', this.hmacKey).update(`${name.length}:${name}:${password}`, 'utf8').digest('base64url');
  }

  /** The name the credentials were accepted for, if still valid against `stored`. */
  get(key: string, stored: string): string | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresMs <= Date.now() || entry.stored !== stored) {
      this.entries.delete(key);
      return undefined;
    }
    // Most recently used goes last; eviction takes the first.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.name;
  }

  set(key: string, name: string, stored: string): void {
    this.entries.delete(key);
    while (this.entries.size >= this.entriesMax) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { name, stored, expiresMs: Date.now() + this.ttlMs });
  }

  /** Forget every remembered credential of `name` (its password changed). */
  forget(name: string): void {
    for (const [key, entry] of this.entries) if (entry.name === name) this.entries.delete(key);
  }
}
