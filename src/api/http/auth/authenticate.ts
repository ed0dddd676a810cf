/**
 * Authentication: who is calling. Admins come from configuration (no admin party).
 * Two ways in, as CouchDB: HTTP Basic on every request, or a cookie session from
 * `POST /_session` (see sessions.ts).
 *
 * A password check costs one PBKDF2 (tens of ms), so it:
 * - runs off the event loop, through a bounded gate (hash-pool.ts);
 * - is remembered when it succeeds (credential-cache.ts), so Basic clients pay once;
 * - is refused for a (name, address) that failed too often (lockout.ts), before any hash;
 * - costs the same for an unknown name: a PBKDF2 against a dummy salt with the same
 *   iterations runs, so the answer's timing does not tell which names exist.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { UnauthorizedError, UnavailableError } from '../../../errors';
import type { Logger, UserCtx } from '../context';
import { CredentialCache } from './credential-cache';
import { HashPool } from './hash-pool';
import { Lockout, LockoutOptions } from './lockout';
import { KEY_BYTES, parseHash } from './password';
import { CookieSessions, readCookie } from './sessions';

export interface Session {
  user: UserCtx;
  /** A renewed cookie to send back, when the old one is past half its life. */
  renewCookie?: string;
}

export interface AuthOptions {
  admins: ReadonlyMap<string, string>;
  /** Signs session cookies; the same on every node of a cluster. */
  secret: Buffer;
  sessionTimeoutSec: number;
  /** Iterations of the dummy hash run for unknown names (those of new admin hashes). */
  pbkdf2Iterations: number;
  hashConcurrencyMax: number;
  hashQueueMax: number;
  cacheEntriesMax: number;
  cacheTtlMs: number;
  lockout: LockoutOptions;
  log?: Logger;
}

export interface Credentials {
  authorization?: string | undefined;
  cookie?: string | undefined;
  /** The client's address, for the lockout. */
  peer: string;
}

export class Auth {
  private readonly admins: ReadonlyMap<string, string>;
  private readonly sessions: CookieSessions;
  private readonly pool: HashPool;
  private readonly cache: CredentialCache;
  private readonly lockout: Lockout;
  private readonly dummySalt = randomBytes(16).toString('hex');
  private readonly pbkdf2Iterations: number;
  /** Checks in progress per (name, address), run in turn. */
  private readonly pairs = new Map<string, { tail: Promise<void>; waiting: number }>();
  private readonly pairWaitingMax: number;

  constructor(options: AuthOptions) {
    this.admins = options.admins;
    this.sessions = new CookieSessions(options.secret, options.sessionTimeoutSec);
    this.pool = new HashPool(options.hashConcurrencyMax, options.hashQueueMax);
    this.cache = new CredentialCache(options.cacheEntriesMax, options.cacheTtlMs);
    this.lockout = new Lockout(options.lockout, options.log);
    this.pbkdf2Iterations = options.pbkdf2Iterations;
    this.pairWaitingMax = options.hashQueueMax;
  }

  /** The caller of a request; anonymous when it presents nothing. Bad credentials: 401; locked out: 403. */
  async authenticate(credentials: Credentials): Promise<Session> {
    const authorization = credentials.authorization;
    if (authorization && /^basic /i.test(authorization)) {
      const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const name = colon < 0 ? decoded : decoded.slice(0, colon);
      const password = colon < 0 ? '' : decoded.slice(colon + 1);
      return { user: await this.login(name, password, credentials.peer) };
    }
    const token = readCookie(credentials.cookie, 'AuthSession');
    if (token) {
      const verified = this.sessions.verify(token);
      if (verified && this.admins.has(verified.name)) {
        const session: Session = { user: adminCtx(verified.name) };
        if (verified.renew) session.renewCookie = this.sessions.cookieFor(verified.name);
        return session;
      }
    }
    return { user: { name: null, roles: [] } };
  }

  /**
   * Check a name and password from `peer` (Basic and `POST /_session`). Wrong: 401;
   * locked out: 403; too many checks waiting: 503.
   */
  async login(name: string, password: string, peer: string): Promise<UserCtx> {
    // The common case first: known credentials, not locked out, no waiting.
    this.lockout.check(name, peer);
    const known = this.cached(name, password);
    if (known) return known;
    // Checks of one (name, address) run one after another: twenty parallel guesses
    // cannot all pass the lockout check before the first failure is counted, and
    // parallel requests with the right password (PouchDB opens several at once) hash
    // once, then find the cache.
    const pairKey = `${peer.length}:${peer}:${name}`;
    let pair = this.pairs.get(pairKey);
    if (!pair) {
      pair = { tail: Promise.resolve(), waiting: 0 };
      this.pairs.set(pairKey, pair);
    }
    if (pair.waiting >= this.pairWaitingMax) throw new UnavailableError('Too many password checks in progress; retry shortly.', 'service_unavailable', 1);
    pair.waiting++;
    const previous = pair.tail;
    let done!: () => void;
    pair.tail = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      return await this.check(name, password, peer);
    } finally {
      done();
      if (--pair.waiting === 0) this.pairs.delete(pairKey);
    }
  }

  private async check(name: string, password: string, peer: string): Promise<UserCtx> {
    this.lockout.check(name, peer);
    const known = this.cached(name, password);
    if (known) return known;
    const stored = this.admins.get(name);
    const parsed = stored === undefined ? undefined : parseHash(stored);
    // Unknown name (or an unreadable hash): the same work against a dummy salt.
    const salt = parsed?.salt ?? this.dummySalt;
    const iterations = parsed?.iterations ?? this.pbkdf2Iterations;
    const derived = await this.pool.derive(password, salt, iterations, parsed?.key.length ?? KEY_BYTES);
    if (!parsed || !timingSafeEqual(parsed.key, derived)) {
      this.lockout.failed(name, peer);
      throw new UnauthorizedError('Name or password is incorrect.');
    }
    this.lockout.succeeded(name, peer);
    this.cache.set(this.cache.keyOf(name, password), name, stored!);
    return adminCtx(name);
  }

  private cached(name: string, password: string): UserCtx | undefined {
    const stored = this.admins.get(name);
    if (stored === undefined) return undefined;
    return this.cache.get(this.cache.keyOf(name, password), stored) === name ? adminCtx(name) : undefined;
  }

  /** Forget remembered credentials of `name` (call when its password changes). */
  passwordChanged(name: string): void {
    this.cache.forget(name);
  }

  cookieFor(name: string): string {
    return this.sessions.cookieFor(name);
  }

  clearCookie(): string {
    return this.sessions.clearCookie();
  }
}

function adminCtx(name: string): UserCtx {
  return { name, roles: ['_admin'] };
}
