/**
 * The parts of HTTP authentication (src/api/http/auth/): the PBKDF2 gate, the
 * credential cache, the lockout, cookie signing, and the `next` check of
 * `POST /_session` (a fast-check property; seed printed, rerun with AUTH_SEED=<seed>).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BadRequestError, ForbiddenError, UnavailableError } from '../../src/errors';
import { CredentialCache } from '../../src/api/http/auth/credential-cache';
import { HashPool } from '../../src/api/http/auth/hash-pool';
import { LOCKED_REASON, Lockout } from '../../src/api/http/auth/lockout';
import { hashPassword, verifyPasswordSync } from '../../src/api/http/auth/password';
import { CookieSessions, sessionSecretFromCluster } from '../../src/api/http/auth/sessions';
import { checkNext } from '../../src/api/http/routes/session';
import { waitFor } from '../helpers/node-process';

test('hash gate: at most concurrencyMax run, queueMax wait, the next one is refused with 503 at once', async () => {
  const pool = new HashPool(1, 2);
  const jobs = [0, 1, 2].map((i) => pool.derive(`pw${i}`, 'salt', 2000, 32));
  assert.deepEqual(pool.load, { running: 1, waiting: 2 });
  await assert.rejects(pool.derive('pw3', 'salt', 2000, 32), UnavailableError);
  const keys = await Promise.all(jobs);
  assert.equal(new Set(keys.map((k) => k.toString('hex'))).size, 3);
  assert.deepEqual(pool.load, { running: 0, waiting: 0 });
});

test('password hashes: CouchDB notation, verified', () => {
  const stored = hashPassword('secret', 1000);
  assert.match(stored, /^-pbkdf2:sha256-[0-9a-f]{64},[0-9a-f]{32},1000$/);
  assert.ok(verifyPasswordSync('secret', stored));
  assert.ok(!verifyPasswordSync('Secret', stored));
});

test('credential cache: keyed by an HMAC (no password inside), bounded, stale once the stored hash changes', () => {
  const cache = new CredentialCache(2, 60_000);
  const k1 = cache.keyOf('admin', 'hunter2');
  assert.ok(!k1.includes('hunter2'));
  assert.notEqual(cache.keyOf('ad', 'min:hunter2'), cache.keyOf('ad:min', 'hunter2'));
  cache.set(k1, 'admin', 'hash-1');
  assert.equal(cache.get(k1, 'hash-1'), 'admin');
  assert.equal(cache.get(k1, 'hash-2'), undefined, 'password changed: not trusted');
  assert.equal(cache.get(k1, 'hash-1'), undefined, 'and forgotten');
  const [a, b, c] = ['a', 'b', 'c'].map((n) => cache.keyOf(n, 'pw'));
  cache.set(a!, 'a', 'h');
  cache.set(b!, 'b', 'h');
  assert.equal(cache.get(a!, 'h'), 'a'); // a is now the most recently used
  cache.set(c!, 'c', 'h');
  assert.equal(cache.size, 2);
  assert.equal(cache.get(b!, 'h'), undefined, 'least recently used went first');
  assert.equal(cache.get(a!, 'h'), 'a');
  cache.forget('a');
  assert.equal(cache.get(a!, 'h'), undefined);
});

test('lockout: threshold per (user, address), other addresses untouched, success clears, expires, bounded', async () => {
  const lockout = new Lockout({ mode: 'enforce', threshold: 3, lifetimeMs: 300_000, entriesMax: 100 });
  for (let i = 0; i < 3; i++) {
    lockout.check('admin', '10.0.0.1');
    lockout.failed('admin', '10.0.0.1');
  }
  assert.throws(() => lockout.check('admin', '10.0.0.1'), (err: unknown) => err instanceof ForbiddenError && err.reason === LOCKED_REASON);
  lockout.check('admin', '10.0.0.2');
  lockout.check('other', '10.0.0.1');

  lockout.failed('bob', '10.0.0.1');
  lockout.failed('bob', '10.0.0.1');
  lockout.succeeded('bob', '10.0.0.1');
  lockout.failed('bob', '10.0.0.1');
  lockout.failed('bob', '10.0.0.1');
  lockout.check('bob', '10.0.0.1'); // 2 since the success, below 3

  const bounded = new Lockout({ mode: 'enforce', threshold: 1, lifetimeMs: 300_000, entriesMax: 10 });
  for (let i = 0; i < 50; i++) bounded.failed(`user${i}`, '10.0.0.9');
  assert.equal(bounded.size, 10);
  bounded.check('user0', '10.0.0.9'); // dropped as the oldest
  assert.throws(() => bounded.check('user49', '10.0.0.9'), ForbiddenError);

  const warn = new Lockout({ mode: 'warn', threshold: 1, lifetimeMs: 300_000, entriesMax: 10 });
  const warnings: object[] = [];
  const log = { info() {}, debug() {}, error() {}, warn: (o: object) => warnings.push(o) };
  const warnLogged = new Lockout({ mode: 'warn', threshold: 2, lifetimeMs: 300_000, entriesMax: 10 }, log);
  for (let i = 0; i < 5; i++) warnLogged.failed('admin', '10.0.0.1');
  warnLogged.check('admin', '10.0.0.1');
  assert.equal(warnings.length, 1, 'warned once, not per failure');
  warn.failed('admin', '10.0.0.1');
  warn.check('admin', '10.0.0.1');

  const off = new Lockout({ mode: 'off', threshold: 1, lifetimeMs: 300_000, entriesMax: 10 });
  off.failed('admin', '10.0.0.1');
  off.check('admin', '10.0.0.1');
  assert.equal(off.size, 0);

  const short = new Lockout({ mode: 'enforce', threshold: 1, lifetimeMs: 30, entriesMax: 10 });
  short.failed('admin', '10.0.0.1');
  assert.throws(() => short.check('admin', '10.0.0.1'), ForbiddenError);
  await waitFor(async () => {
    try {
      short.check('admin', '10.0.0.1');
      return true;
    } catch {
      return false;
    }
  }, 5_000, 'the lockout to expire');
});

test('cookies: the same cluster secret signs alike on every node; another secret or another salt (password changed) is refused', () => {
  const options = { timeoutSec: 600, persistent: true };
  const a = new CookieSessions(sessionSecretFromCluster('cluster-secret-0123456789'), options);
  const b = new CookieSessions(sessionSecretFromCluster('cluster-secret-0123456789'), options);
  const other = new CookieSessions(sessionSecretFromCluster('another-secret-0123456789'), options);
  const header = a.cookieFor('alice:x', 'salt-1');
  assert.match(header, /Max-Age=600/);
  const value = header.split(';')[0]!.slice('AuthSession='.length);
  const claims = b.parse(value)!;
  assert.equal(claims.name, 'alice:x', 'a name with a colon survives');
  assert.deepEqual(b.check(claims, 'salt-1'), { renew: false });
  assert.equal(b.check(claims, 'salt-2'), undefined);
  assert.equal(other.check(other.parse(value)!, 'salt-1'), undefined);
  assert.equal(b.parse('bm90IGEgY29va2ll'), undefined);
  const session = new CookieSessions(Buffer.from('s'), { timeoutSec: 600, persistent: false }).cookieFor('bob', 'x');
  assert.doesNotMatch(session, /Max-Age|Expires/, 'not persistent: ends with the browser session');
});

test('next: the cases from the issue', () => {
  for (const ok of ['/', '/_utils/', '/db/doc?x=1#y', '/a/b%2F%5Cc']) checkNext(ok);
  for (const bad of ['/\\evil.example/x', '/\t/evil.example', '//evil.example', '/\r\nSet-Cookie: x', '/a\\b', 'evil', 'http://evil.example/', '', '/€', '/ x']) {
    assert.throws(() => checkNext(bad), BadRequestError, JSON.stringify(bad));
  }
});

test('next: anything accepted stays on this origin and is a valid header value (property)', (t) => {
  const seed = Number(process.env.AUTH_SEED ?? Date.now() % 2 ** 31);
  t.diagnostic(`seed ${seed}`);
  const chars = fc.constantFrom('/', '\\', '\t', '\r', '\n', ' ', '.', ':', '@', '?', '#', '%', 'a', 'e', 'x', '\u0000', '\u007f', 'é', '€');
  fc.assert(
    fc.property(fc.array(chars, { maxLength: 12 }).map((a) => a.join('')), (next) => {
      let accepted = true;
      try {
        checkNext(next);
      } catch (err) {
        assert.ok(err instanceof BadRequestError);
        accepted = false;
      }
      if (!accepted) return;
      const base = 'http://divan.invalid';
      assert.equal(new URL(next, base).origin, base, JSON.stringify(next));
      assert.match(next, /^\/[\x21-\x7e]*$/);
      assert.ok(!next.startsWith('//') && !next.includes('\\'));
    }),
    { seed, numRuns: 2000 },
  );
});
