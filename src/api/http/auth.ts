/**
 * Authentication: who is calling. Admins come from configuration (no admin party);
 * their passwords are stored as PBKDF2-SHA256 hashes in CouchDB's notation
 * `-pbkdf2:sha256-<key hex>,<salt hex>,<iterations>`.
 *
 * Two ways in, as CouchDB: HTTP Basic on every request, or a cookie session from
 * `POST /_session` (`AuthSession`, an HMAC-signed name and time, valid
 * `sessionTimeoutSec` and renewed once half of it has passed). PBKDF2 is slow by
 * design, so a successful Basic credential is remembered
 * for a minute, in a bounded cache (a changed password is honoured after that minute).
 */
import { createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { UnauthorizedError } from '../../errors';
import type { UserCtx } from './context';

const KEY_BYTES = 32;
/** Remembered Basic credentials at most, and for how long. */
const BASIC_CACHE_MAX = 1024;
const BASIC_CACHE_MS = 60_000;

export function hashPassword(password: string, iterations: number): string {
  const salt = randomBytes(16).toString('hex');
  const key = pbkdf2Sync(password, salt, iterations, KEY_BYTES, 'sha256').toString('hex');
  return `-pbkdf2:sha256-${key},${salt},${iterations}`;
}

export function verifyPassword(password: string, stored: string): boolean {
  const match = /^-pbkdf2:sha256-([0-9a-f]+),([0-9a-f]+),([0-9]+)$/.exec(stored);
  if (!match) return false;
  const expected = Buffer.from(match[1]!, 'hex');
  const actual = pbkdf2Sync(password, match[2]!, Number(match[3]), expected.length, 'sha256');
  return timingSafeEqual(expected, actual);
}

export interface Session {
  user: UserCtx;
  /** A renewed cookie to send back, when the old one is past half its life. */
  renewCookie?: string;
}

export class Auth {
  private readonly admins: ReadonlyMap<string, string>;
  private readonly secret: Buffer;
  private readonly sessionTimeoutSec: number;
  private readonly basicCache = new Map<string, { name: string; expiresMs: number }>();

  constructor(options: { admins: ReadonlyMap<string, string>; secret: Buffer; sessionTimeoutSec: number }) {
    this.admins = options.admins;
    this.secret = options.secret;
    this.sessionTimeoutSec = options.sessionTimeoutSec;
  }

  /** The caller of a request; anonymous when it presents nothing. Bad credentials: 401. */
  authenticate(headers: { authorization?: string | undefined; cookie?: string | undefined }): Session {
    const authorization = headers.authorization;
    if (authorization && /^basic /i.test(authorization)) return { user: this.basic(authorization) };
    const token = readCookie(headers.cookie, 'AuthSession');
    if (token) {
      const session = this.fromCookie(token);
      if (session) return session;
    }
    return { user: { name: null, roles: [] } };
  }

  /** Check a name and password (for `POST /_session`); undefined when wrong. */
  login(name: string, password: string): UserCtx | undefined {
    const stored = this.admins.get(name);
    if (!stored || !verifyPassword(password, stored)) return undefined;
    return adminCtx(name);
  }

  cookieFor(name: string): string {
    const timeHex = Math.floor(Date.now() / 1000).toString(16).toUpperCase();
    const payload = `${name}:${timeHex}`;
    const mac = createHmac('sha256', this.secret).update(payload).digest('base64url');
    const value = Buffer.from(`${payload}:${mac}`, 'utf8').toString('base64url');
    // Expires as well as Max-Age: CouchDB sends both, and some clients (nano) read only Expires.
    const expires = new Date(Date.now() + this.sessionTimeoutSec * 1000).toUTCString();
    return `AuthSession=${value}; Version=1; Expires=${expires}; Max-Age=${this.sessionTimeoutSec}; Path=/; HttpOnly; SameSite=Lax`;
  }

  clearCookie(): string {
    return 'AuthSession=; Version=1; Path=/; HttpOnly; SameSite=Lax; Max-Age=0';
  }

  private basic(header: string): UserCtx {
    // Keyed by the header itself: the process holds it anyway, and hashing every
    // request cost more than the lookup.
    const cacheKey = header;
    const cached = this.basicCache.get(cacheKey);
    if (cached && cached.expiresMs > Date.now()) return adminCtx(cached.name);
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const name = colon < 0 ? decoded : decoded.slice(0, colon);
    const password = colon < 0 ? '' : decoded.slice(colon + 1);
    const user = this.login(name, password);
    if (!user) throw new UnauthorizedError('Name or password is incorrect.');
    if (this.basicCache.size >= BASIC_CACHE_MAX) this.basicCache.delete(this.basicCache.keys().next().value!);
    this.basicCache.set(cacheKey, { name, expiresMs: Date.now() + BASIC_CACHE_MS });
    return user;
  }

  private fromCookie(token: string): Session | undefined {
    const decoded = Buffer.from(token, 'base64url').toString('utf8');
    const last = decoded.lastIndexOf(':');
    const middle = decoded.lastIndexOf(':', last - 1);
    if (last < 0 || middle < 0) return undefined;
    const name = decoded.slice(0, middle);
    const timeHex = decoded.slice(middle + 1, last);
    const mac = Buffer.from(decoded.slice(last + 1), 'utf8');
    const expected = Buffer.from(createHmac('sha256', this.secret).update(`${name}:${timeHex}`).digest('base64url'), 'utf8');
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return undefined;
    if (!this.admins.has(name)) return undefined;
    const ageSec = Math.floor(Date.now() / 1000) - parseInt(timeHex, 16);
    if (!(ageSec >= 0 && ageSec < this.sessionTimeoutSec)) return undefined;
    const session: Session = { user: adminCtx(name) };
    if (ageSec > this.sessionTimeoutSec / 2) session.renewCookie = this.cookieFor(name);
    return session;
  }
}

function adminCtx(name: string): UserCtx {
  return { name, roles: ['_admin'] };
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}
