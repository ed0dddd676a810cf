/**
 * Authentication: who is calling. There is no admin party: anonymous callers reach
 * only what the policy table (policy.ts) lets anyone reach.
 *
 * Handlers run in the configured order (CouchDB's `authentication_handlers`,
 * default `cookie,default`); the first that recognises credentials decides:
 * - `cookie`: an `AuthSession` cookie from `POST /_session` (sessions.ts). An invalid
 *   or expired cookie is ignored (the caller stays anonymous), as in CouchDB.
 * - `default`: HTTP Basic. Wrong credentials: 401.
 * - `jwt`: `Authorization: Bearer <JWS>` signed by a configured key (jwt.ts); `sub`
 *   is the name, roles come from the configured claim. Bad token: 401.
 * - `proxy`: a trusted reverse proxy names the user in `X-Auth-CouchDB-UserName`
 *   with roles in `X-Auth-CouchDB-Roles` (comma-separated) and, unless disabled,
 *   proves it with `X-Auth-CouchDB-Token` = hex HMAC-SHA256 (or SHA-1, as older
 *   CouchDB proxies compute it) of the name under the proxy secret. A missing or wrong
 *   token is ignored (the next handler runs), as in CouchDB.
 *
 * Names and passwords are checked against server admins first, then `_users`
 * (principals.ts). A password check costs one PBKDF2 (tens of ms), so it:
 * - runs off the event loop, through a bounded gate (hash-pool.ts);
 * - is remembered when it succeeds (credential-cache.ts), so Basic clients pay once;
 * - is refused for a (name, address) that failed too often (lockout.ts), before any hash;
 * - costs the same for an unknown name: a PBKDF2 against a dummy salt with the same
 *   iterations runs, so the answer's timing does not tell which names exist.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { UnauthorizedError, UnavailableError } from '../../../errors';
import type { Logger, UserCtx } from '../context';
import { CredentialCache } from './credential-cache';
import { HashPool } from './hash-pool';
import { type JwtOptions, verifyJwt } from './jwt';
import { Lockout, LockoutOptions } from './lockout';
import { KEY_BYTES } from './password';
import { adminPrincipal, CONFLICTED_USER_REASON, type Principal, type UsersCache } from './principals';
import { type CookieClaims, CookieSessions, readCookie } from './sessions';

export type HandlerName = 'cookie' | 'default' | 'jwt' | 'proxy';
export const HANDLER_NAMES: readonly HandlerName[] = ['cookie', 'default', 'jwt', 'proxy'];

export interface Session {
  user: UserCtx;
  /** The handler that recognised the caller (`GET /_session`'s `info.authenticated`). */
  method?: HandlerName;
  /** A renewed cookie to send back. */
  renewCookie?: string;
}

/** Server admins as this node knows them now: name → stored hash (configured and runtime). */
export interface AdminSource {
  get(name: string): string | undefined;
}

export interface AuthOptions {
  admins: AdminSource;
  users: UsersCache;
  handlers: readonly HandlerName[];
  /** Signs session cookies; the same on every node of a cluster. */
  secret: Buffer;
  sessionTimeoutSec: number;
  persistentCookies: boolean;
  jwt?: JwtOptions;
  /** Proxy authentication: the secret its tokens are signed with; undefined: tokens not required. */
  proxySecret: Buffer | undefined;
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
  /** Other request headers (proxy authentication reads its own). */
  header(name: string): string | undefined;
  /** The client's address, for the lockout. */
  peer: string;
}

const ADMIN_PRINCIPALS_MAX = 256;

export class Auth {
  readonly handlers: readonly HandlerName[];
  private readonly admins: AdminSource;
  private readonly users: UsersCache;
  private readonly sessions: CookieSessions;
  private readonly pool: HashPool;
  private readonly cache: CredentialCache;
  private readonly lockout: Lockout;
  private readonly jwt: JwtOptions | undefined;
  private readonly proxySecret: Buffer | undefined;
  private readonly dummySalt = randomBytes(16).toString('hex');
  private readonly pbkdf2Iterations: number;
  /** Checks in progress per (name, address), run in turn. */
  private readonly pairs = new Map<string, { tail: Promise<void>; waiting: number }>();
  private readonly pairWaitingMax: number;
  private readonly adminPrincipals = new Map<string, Principal>();

  constructor(options: AuthOptions) {
    this.handlers = options.handlers;
    this.admins = options.admins;
    this.users = options.users;
    this.sessions = new CookieSessions(options.secret, { timeoutSec: options.sessionTimeoutSec, persistent: options.persistentCookies });
    this.pool = new HashPool(options.hashConcurrencyMax, options.hashQueueMax);
    this.cache = new CredentialCache(options.cacheEntriesMax, options.cacheTtlMs);
    this.lockout = new Lockout(options.lockout, options.log);
    this.jwt = options.jwt;
    this.proxySecret = options.proxySecret;
    this.pbkdf2Iterations = options.pbkdf2Iterations;
    this.pairWaitingMax = options.hashQueueMax;
  }

  /** The caller of a request; anonymous when it presents nothing recognised. Bad credentials: 401; locked out: 403. */
  async authenticate(credentials: Credentials): Promise<Session> {
    for (const handler of this.handlers) {
      const pending = this.run(handler, credentials);
      // Handlers that find none of their credentials answer at once (no microtask per handler).
      const session = pending instanceof Promise ? await pending : pending;
      if (session) return session;
    }
    return { user: { name: null, roles: [] } };
  }

  private run(handler: HandlerName, credentials: Credentials): Session | undefined | Promise<Session | undefined> {
    const authorization = credentials.authorization;
    switch (handler) {
      case 'default': {
        if (!authorization || !/^basic /i.test(authorization)) return undefined;
        const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        const name = colon < 0 ? decoded : decoded.slice(0, colon);
        const password = colon < 0 ? '' : decoded.slice(colon + 1);
        return this.login(name, password, credentials.peer).then((principal): Session => ({ user: userCtxOf(principal), method: 'default' }));
      }
      case 'cookie':
        return this.fromCookie(credentials.cookie);
      case 'jwt': {
        if (!this.jwt || !authorization || !/^bearer /i.test(authorization)) return undefined;
        const { name, roles } = verifyJwt(authorization.slice(7).trim(), this.jwt);
        return { user: { name, roles }, method: 'jwt' };
      }
      case 'proxy':
        return this.fromProxy(credentials);
    }
  }

  private fromCookie(header: string | undefined): Promise<Session | undefined> | undefined {
    const token = readCookie(header, 'AuthSession');
    if (!token) return undefined;
    const claims = this.sessions.parse(token);
    if (!claims) return undefined;
    return this.checkCookie(claims);
  }

  private async checkCookie(claims: CookieClaims): Promise<Session | undefined> {
    const principal = await this.principal(claims.name);
    if (!principal?.password || principal.conflicted) return undefined;
    const checked = this.sessions.check(claims, principal.password.salt);
    if (!checked) return undefined;
    const session: Session = { user: userCtxOf(principal), method: 'cookie' };
    if (checked.renew) session.renewCookie = this.cookieFor(principal);
    return session;
  }

  private fromProxy(credentials: Credentials): Session | undefined {
    const name = credentials.header('x-auth-couchdb-username');
    if (name === undefined || name === '') return undefined;
    if (this.proxySecret) {
      const token = Buffer.from(credentials.header('x-auth-couchdb-token') ?? '', 'utf8');
      const ok = ['sha256', 'sha1'].some((digest) => {
        const expected = Buffer.from(createHmac(digest, this.proxySecret!).update(name).digest('hex'), 'utf8');
        return token.length === expected.length && timingSafeEqual(token, expected);
      });
      if (!ok) return undefined;
    }
    const roles = (credentials.header('x-auth-couchdb-roles') ?? '')
      .split(',')
      .map((r) => r.trim())
      .filter((r) => r.length > 0);
    return { user: { name, roles }, method: 'proxy' };
  }

  /** A server admin by that name, else the `_users` user, else undefined. */
  private async principal(name: string): Promise<Principal | undefined> {
    const stored = this.admins.get(name);
    if (stored === undefined) return this.users.get(name);
    // Parsed once per stored hash (admins are few; a changed hash is a new key).
    const key = `${name.length}:${name}:${stored}`;
    let principal = this.adminPrincipals.get(key);
    if (!principal) {
      if (this.adminPrincipals.size >= ADMIN_PRINCIPALS_MAX) this.adminPrincipals.clear();
      principal = adminPrincipal(name, stored);
      this.adminPrincipals.set(key, principal);
    }
    return principal;
  }

  /**
   * Check a name and password from `peer` (Basic and `POST /_session`). Wrong: 401;
   * locked out: 403; too many checks waiting: 503.
   */
  async login(name: string, password: string, peer: string): Promise<Principal> {
    // The common case first: known credentials, not locked out, no waiting.
    this.lockout.check(name, peer);
    const known = await this.cached(name, password);
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

  private async check(name: string, password: string, peer: string): Promise<Principal> {
    this.lockout.check(name, peer);
    const known = await this.cached(name, password);
    if (known) return known;
    const principal = await this.principal(name);
    const stored = principal?.password;
    // Unknown name (or no usable hash): the same work against a dummy salt.
    const derived = await this.pool.derive(
      password,
      stored?.salt ?? this.dummySalt,
      stored?.iterations ?? this.pbkdf2Iterations,
      stored?.key.length ?? KEY_BYTES,
      stored?.digest ?? 'sha256',
    );
    if (!stored || stored.key.length !== derived.length || !timingSafeEqual(stored.key, derived)) {
      this.lockout.failed(name, peer);
      throw new UnauthorizedError('Name or password is incorrect.');
    }
    this.lockout.succeeded(name, peer);
    if (principal!.conflicted) throw new UnauthorizedError(CONFLICTED_USER_REASON);
    this.cache.set(this.cache.keyOf(name, password), name, stored.fingerprint);
    return principal!;
  }

  private async cached(name: string, password: string): Promise<Principal | undefined> {
    const principal = await this.principal(name);
    const stored = principal?.password;
    if (!stored || principal!.conflicted) return undefined;
    return this.cache.get(this.cache.keyOf(name, password), stored.fingerprint) === name ? principal : undefined;
  }

  /** A user's document or an admin's password changed through this node: forget what was remembered. */
  changed(name: string): void {
    this.cache.forget(name);
    this.users.forget(name);
  }

  /** PBKDF2 through the login gate (user passwords written to `_users` are hashed here too). */
  derive(password: string, salt: string, iterations: number, keyBytes: number): Promise<Buffer> {
    return this.pool.derive(password, salt, iterations, keyBytes);
  }

  cookieFor(principal: Principal): string {
    return this.sessions.cookieFor(principal.name, principal.password?.salt ?? '');
  }

  clearCookie(): string {
    return this.sessions.clearCookie();
  }
}

export function userCtxOf(principal: Principal): UserCtx {
  return { name: principal.name, roles: [...principal.roles] };
}
