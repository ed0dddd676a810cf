/**
 * Remembered successful (name, password) pairs, so a client sending Basic credentials
 * on every request pays for PBKDF2 once. Bounded LRU with a time to live.
 *
 * The key is a SHA-256 of the credentials under a random per-process secret (an HMAC
 * on Node before 20.12): the plain password is never stored, and the key is useless
 * outside this process. Each entry
 * keeps the stored hash it was checked against; when the admin's stored hash differs
 * (password changed, admin removed) the entry no longer matches, at once.
 */
import * as crypto from 'node:crypto';

/** `crypto.hash` where this Node has it (20.12 and later), else undefined. */
const oneShotHash = (crypto as unknown as { hash?: (algorithm: string, data: string, encoding: 'base64url') => string }).hash;

interface Entry {
  name: string;
  stored: string;
  expiresMs: number;
}

export class CredentialCache {
  private readonly hmacKey = crypto.randomBytes(32);
  private readonly hashPrefix = this.hmacKey.toString('base64') + ':';
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
    const text = `${name.length}:${name}:${password}`;
    // On every request with Basic credentials: the one-shot hash (Node ≥ 20.12) of the
    // secret prefix and the text costs a fifth of an HMAC object. It is only a lookup
    // key, never checked against a value an attacker sends, so a keyed hash does.
    if (oneShotHash) return oneShotHash('sha256', this.hashPrefix + text, 'base64url');
    return crypto.createHmac('sha256', this.hmacKey).update(text, 'utf8').digest('base64url');
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
