/**
 * Admin password hashes in CouchDB's notation `-pbkdf2:sha256-<key hex>,<salt hex>,<iterations>`.
 *
 * The synchronous functions are for start-up only (storing the configured admin);
 * requests check passwords through `HashPool`, off the event loop.
 */
import { pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export const KEY_BYTES = 32;

export interface StoredHash {
  key: Buffer;
  salt: string;
  iterations: number;
}

export function parseHash(stored: string): StoredHash | undefined {
  const match = /^-pbkdf2:sha256-([0-9a-f]+),([0-9a-f]+),([0-9]+)$/.exec(stored);
  if (!match) return undefined;
  const iterations = Number(match[3]);
  if (!Number.isSafeInteger(iterations) || iterations < 1) return undefined;
  return { key: Buffer.from(match[1]!, 'hex'), salt: match[2]!, iterations };
}

/** A new stored hash (start-up only: it blocks for one PBKDF2). */
export function hashPassword(password: string, iterations: number, salt = randomBytes(16).toString('hex')): string {
  return formatHash(pbkdf2Sync(password, salt, iterations, KEY_BYTES, 'sha256'), salt, iterations);
}

export function formatHash(key: Buffer, salt: string, iterations: number): string {
  return `-pbkdf2:sha256-${key.toString('hex')},${salt},${iterations}`;
}

/** Start-up only (it blocks for one PBKDF2); requests use `Auth.login`. */
export function verifyPasswordSync(password: string, stored: string): boolean {
  const parsed = parseHash(stored);
  if (!parsed) return false;
  const actual = pbkdf2Sync(password, parsed.salt, parsed.iterations, parsed.key.length, 'sha256');
  return timingSafeEqual(parsed.key, actual);
}

/** PBKDF2 (SHA-256 unless told) on libuv's thread pool. */
export function pbkdf2Async(password: string, salt: string, iterations: number, keyBytes: number, digest = 'sha256'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, keyBytes, digest, (err, key) => (err ? reject(err) : resolve(key)));
  });
}
