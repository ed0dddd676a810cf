/**
 * The policy table (src/api/http/auth/policy.ts) and the `_users` rules
 * (src/api/coordinator/users-db.ts) as pure functions: which row decides, what each
 * caller is told, and the rules CouchDB's `_design/_auth` enforces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DivanError } from '../../src/errors';
import { authorize, needFor } from '../../src/api/http/auth/policy';
import { adminOnlySecurity, isMember, readSecurity } from '../../src/api/coordinator/security';
import { checkUserDoc } from '../../src/api/coordinator/users-db';
import { userPrincipal } from '../../src/api/http/auth/principals';

const publicDb = readSecurity({});
const adminOnly = readSecurity(adminOnlySecurity());
const anonymous = { name: null, roles: [] };
const alice = { name: 'alice', roles: [] as string[] };
const admin = { name: 'root', roles: ['_admin'] };

async function outcome(method: string, path: string, user: { name: string | null; roles: string[] }, sec = publicDb): Promise<string> {
  try {
    const d = await authorize(method, path.split('/').filter(Boolean), user, async () => sec);
    return d.dbAdmin ? 'ok admin' : 'ok';
  } catch (err) {
    return err instanceof DivanError ? `${err.token}: ${err.reason}` : String(err);
  }
}

test('rows: the first match decides, unknown endpoints are strict', () => {
  const cases: [string, string, string][] = [
    ['GET', '', 'anyone'],
    ['GET', '_all_dbs', 'server_admin'],
    ['GET', '_something_new', 'server_admin'],
    ['POST', '_replicate', 'authenticated'],
    ['GET', '_scheduler/jobs', 'server_admin'],
    ['GET', '_node/_local/_prometheus', 'metrics'],
    ['PUT', '_node/_local/_config/admins/x', 'server_admin'],
    ['PUT', 'db', 'server_admin'],
    ['GET', 'db', 'db_member'],
    ['GET', 'db/_security', 'db_member'],
    ['PUT', 'db/_security', 'db_admin'],
    ['PUT', 'db/_design/x', 'db_admin'],
    ['PUT', 'db/_design/x/att', 'db_admin'],
    ['POST', 'db/_design/x/_view/v', 'db_member'],
    ['GET', 'db/_design/x', 'db_member'],
    ['POST', 'db/_index', 'db_admin'],
    ['GET', 'db/_index', 'db_member'],
    ['POST', 'db/_purge', 'server_admin'],
    ['POST', 'db/_compact', 'compact'],
    ['GET', 'db/anything/else', 'db_member'],
    ['GET', '_users/org.couchdb.user:bob', 'user_doc'],
    ['GET', '_users/_all_docs', 'server_admin'],
    ['GET', '_users/_design/_auth', 'db_admin'],
    ['GET', '_replicator/_changes', 'server_admin'],
  ];
  for (const [method, path, need] of cases) assert.equal(needFor(method, path.split('/').filter(Boolean)), need, `${method} /${path}`);
});

test('members, admins, public databases', async () => {
  assert.equal(await outcome('GET', 'db/doc', anonymous), 'ok', 'empty members: public');
  assert.equal(await outcome('GET', 'db/doc', anonymous, adminOnly), 'unauthorized: You are not authorized to access this db.');
  assert.equal(await outcome('GET', 'db/doc', alice, adminOnly), 'forbidden: You are not allowed to access this db.');
  const sec = readSecurity({ members: { roles: ['nurse'] }, admins: { names: ['carol'] } });
  assert.equal(await outcome('GET', 'db/doc', { name: 'bob', roles: ['nurse'] }, sec), 'ok');
  assert.equal(await outcome('GET', 'db/doc', { name: 'carol', roles: [] }, sec), 'ok admin', 'a db admin is a member');
  assert.equal(await outcome('PUT', 'db/_design/x', { name: 'bob', roles: ['nurse'] }, sec), 'forbidden: You are not a db or server admin.');
  assert.equal(await outcome('POST', 'db/_compact', { name: 'bob', roles: ['nurse'] }, sec), 'unauthorized: You are not a server or db admin.');
  assert.equal(await outcome('GET', '_all_dbs', alice), 'unauthorized: You are not a server admin.');
  assert.equal(await outcome('GET', '_node/_local/_prometheus', { name: 'mon', roles: ['_metrics'] }), 'ok');
  assert.equal(await outcome('GET', '_node/_local/_config', { name: 'mon', roles: ['_metrics'] }), 'unauthorized: You are not a server admin.');
  assert.equal(await outcome('DELETE', 'db', admin, adminOnly), 'ok admin');
  assert.ok(isMember(admin, adminOnly));
  // A database that does not exist: the route answers 404.
  const missing = await authorize('GET', ['nope', 'x'], alice, async () => undefined);
  assert.equal(missing.dbAdmin, false);
});

test('_users documents: the owner reaches their own; others are hidden (public _users) or refused', async () => {
  assert.equal(await outcome('GET', '_users/org.couchdb.user:alice', alice, adminOnly), 'ok', 'own document, _users admin-only');
  assert.equal(await outcome('GET', '_users/org.couchdb.user:bob', alice, adminOnly), 'forbidden: You are not allowed to access this db.');
  assert.equal(await outcome('GET', '_users/org.couchdb.user:bob', alice, publicDb), 'not_found: missing');
  assert.equal(await outcome('PUT', '_users/org.couchdb.user:bob', alice, publicDb), 'not_found: missing');
  assert.equal(await outcome('PUT', '_users/org.couchdb.user:bob', anonymous, publicDb), 'ok', 'a sign-up goes on to the rules');
  assert.equal(await outcome('GET', '_users/org.couchdb.user:bob', anonymous, publicDb), 'not_found: missing');
  assert.equal(await outcome('GET', '_users/_all_docs', alice, publicDb), 'unauthorized: You are not a server admin.');
});

test("_users rules: CouchDB's _design/_auth, as native code", () => {
  const ctx = (name: string | null, roles: string[] = []) => ({ db: '_users', name, roles });
  const sec = adminOnlySecurity();
  const reason = (doc: Record<string, unknown>, old: Record<string, unknown> | null, who: ReturnType<typeof ctx>) => checkUserDoc(doc, old, who, sec)?.reason;
  const bob = { _id: 'org.couchdb.user:bob', name: 'bob', type: 'user', roles: [] as string[] };
  assert.equal(reason(bob, null, ctx(null)), undefined, 'sign-up without roles');
  assert.equal(reason({ ...bob, roles: ['nurse'] }, null, ctx(null)), 'Only _admin may set roles');
  assert.equal(reason({ ...bob, roles: ['nurse'] }, bob, ctx('bob')), 'Only _admin may edit roles');
  assert.equal(reason({ ...bob, roles: ['nurse'] }, bob, ctx('root', ['_admin'])), undefined);
  assert.equal(reason({ ...bob, roles: ['_metrics'] }, bob, ctx('root', ['_admin'])), undefined, '_metrics is the one system role allowed');
  assert.equal(reason({ ...bob, name: 'bobby' }, bob, ctx('root', ['_admin'])), 'Doc ID must be of the form org.couchdb.user:name');
  assert.equal(reason({ ...bob, _id: 'org.couchdb.user:bobby', name: 'bobby' }, bob, ctx('root', ['_admin'])), 'Usernames can not be changed.');
  assert.equal(reason(bob, bob, ctx(null)), 'You may only update your own user document.');
  assert.equal(checkUserDoc(bob, bob, ctx('eve'), sec)?.token, 'not_found', "a named user writing someone else's document: 404");
  assert.equal(reason({ ...bob, _deleted: true }, bob, ctx(null)), 'Only admins may delete other user docs.');
  assert.equal(reason({ ...bob, _deleted: true }, bob, ctx('bob')), undefined);
  assert.equal(reason({ ...bob, password_scheme: 'md5' }, null, ctx(null)), 'Password scheme `md5` not supported.');
  assert.equal(reason({ ...bob, password: 42 }, null, ctx(null)), "Password value of '42' is invalid.");
  assert.equal(reason({ ...bob, name: 'a:b', _id: 'org.couchdb.user:a:b' }, null, ctx(null)), 'Character `:` is not allowed in usernames.');
  const dbAdminSec = { admins: { names: ['carol'] } };
  assert.equal(checkUserDoc({ ...bob, roles: ['nurse'] }, bob, ctx('carol'), dbAdminSec), undefined, 'a _users admin may set roles');
});

test('a user document grants its roles, but no system role other than _metrics; only a usable pbkdf2 hash can log in', () => {
  const p = userPrincipal('eve', { roles: ['nurse', '_admin', '_metrics', 7], password_scheme: 'pbkdf2', salt: 'ab', derived_key: 'cd', iterations: 10 });
  assert.deepEqual(p.roles, ['nurse', '_metrics']);
  assert.equal(p.password?.digest, 'sha1', 'no pbkdf2_prf: the SHA-1 PRF of CouchDB 2');
  assert.equal(userPrincipal('eve', { roles: [], password_scheme: 'pbkdf2', salt: 'ab', derived_key: 'cd', iterations: 1e12 }).password, undefined, 'iterations bounded');
  assert.equal(userPrincipal('eve', { roles: [], password_scheme: 'pbkdf2', pbkdf2_prf: 'md5', salt: 'ab', derived_key: 'cd', iterations: 10 }).password, undefined);
  assert.equal(userPrincipal('eve', { roles: [], password: 'clear' }).password, undefined, 'a clear password is no credential');
});
