/**
 * Users, roles, per-database security and every way in (issue 11), against one live
 * node with all four authentication handlers on (cookie, Basic, JWT, proxy).
 *
 * The matrix: each caller (anonymous, a wrong password, a member by name, a member by
 * role through a cookie, a member by role through a JWT, a database admin by role, a
 * database admin through the proxy headers, an authenticated non-member, a server
 * admin, an expired cookie) against each endpoint family, with the status CouchDB 3.5
 * answers. Then the `_users` rules, `validate_doc_update`'s userCtx and secObj,
 * runtime admins, and real clients (PouchDB syncing both ways as a user; nano with a
 * cookie). A second node checks `require_valid_user`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { ADMIN, request, startNode, TestNode, waitFor } from '../helpers/node-process';
import { localDb, PouchDB, replicateOnce } from '../helpers/pouch';

const JWT_SECRET = randomBytes(32);
const PROXY_SECRET = 'proxy-secret-' + randomBytes(8).toString('hex');
const CLUSTER_SECRET = randomBytes(16).toString('hex');

let node: TestNode;

function basic(name: string, password: string): Record<string, string> {
  return { authorization: 'Basic ' + Buffer.from(`${name}:${password}`).toString('base64') };
}

function jwt(claims: Record<string, unknown>, secret = JWT_SECRET): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** As the node signs cookies: HMAC-SHA256 under the secret derived from the cluster secret, binding the user's salt. */
function forgeCookie(name: string, salt: string, issuedSec: number): string {
  const secret = createHmac('sha256', CLUSTER_SECRET).update('divan session cookie v1').digest();
  const payload = `${name}:${issuedSec.toString(16).toUpperCase()}`;
  const mac = createHmac('sha256', secret).update(salt).update('\0').update(payload).digest('base64url');
  return 'AuthSession=' + Buffer.from(`${payload}:${mac}`).toString('base64url');
}

async function as(headers: Record<string, string>, method: string, path: string, body?: unknown) {
  return request(node, method, path, { auth: false, headers, ...(body !== undefined ? { body } : {}) });
}

async function putUser(name: string, password: string, roles: string[]): Promise<void> {
  const r = await request(node, 'PUT', `/_users/org.couchdb.user:${name}`, { body: { name, password, roles, type: 'user' } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

async function cookieOf(name: string, password: string): Promise<string> {
  const r = await request(node, 'POST', '/_session', { auth: false, body: { name, password } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.headers.get('set-cookie')!.split(';')[0]!;
}

type Level = 'anyone' | 'member' | 'db_admin' | 'compact' | 'server' | 'closed';
type Who = 'anonymous' | 'wrong_password' | 'alice' | 'bob_cookie' | 'erin_jwt' | 'carol' | 'frank_proxy' | 'dave' | 'admin' | 'expired_cookie';

/** The status CouchDB 3.5 answers `who` on an endpoint needing `level` that succeeds with `ok`. */
function expected(level: Level, who: Who, ok: number): number {
  if (who === 'wrong_password') return 401;
  const anonymous = who === 'anonymous' || who === 'expired_cookie';
  const member = ['alice', 'bob_cookie', 'erin_jwt', 'carol', 'frank_proxy', 'admin'].includes(who);
  const dbAdmin = ['carol', 'frank_proxy', 'admin'].includes(who);
  switch (level) {
    case 'anyone':
      return ok;
    case 'server':
      return who === 'admin' ? ok : 401;
    case 'closed':
      return who === 'admin' ? ok : anonymous ? 401 : 403;
    case 'member':
      return member ? ok : anonymous ? 401 : 403;
    case 'db_admin':
      return dbAdmin ? ok : anonymous ? 401 : 403;
    case 'compact':
      return dbAdmin ? ok : member ? 401 : anonymous ? 401 : 403;
  }
}

const identities = new Map<Who, Record<string, string>>();

before(async () => {
  node = await startNode({
    env: {
      DIVAN_AUTH_HANDLERS: 'cookie,default,jwt,proxy',
      DIVAN_JWT_KEYS: JSON.stringify({ 'hmac:_default': JWT_SECRET.toString('base64') }),
      DIVAN_JWT_REQUIRED_CLAIMS: 'exp',
      DIVAN_PROXY_SECRET: PROXY_SECRET,
      DIVAN_CLUSTER_SECRET: CLUSTER_SECRET,
      DIVAN_GRPC_PLAINTEXT: '1',
    },
  });
  await putUser('alice', 'alice-pw', []);
  await putUser('bob', 'bob-pw', ['nurse']);
  await putUser('carol', 'carol-pw', ['ward-admin']);
  await putUser('dave', 'dave-pw', []);
  assert.equal((await request(node, 'PUT', '/clinic')).status, 201);
  assert.equal((await request(node, 'PUT', '/closed')).status, 201);
  const security = { admins: { names: [], roles: ['ward-admin'] }, members: { names: ['alice'], roles: ['nurse'] } };
  assert.equal((await request(node, 'PUT', '/clinic/_security', { body: security })).status, 200);
  const p1 = await request(node, 'PUT', '/clinic/p1', {
    body: { type: 'patient', name: 'P', _attachments: { 'att.txt': { content_type: 'text/plain', data: Buffer.from('hello').toString('base64') } } },
  });
  assert.equal(p1.status, 201);
  const views = { views: { by: { map: 'function (doc) { if (doc.type) emit(doc.type, null); }' } } };
  assert.equal((await request(node, 'PUT', '/clinic/_design/v', { body: views })).status, 201);
  assert.equal((await request(node, 'PUT', '/closed/secret', { body: { x: 1 } })).status, 201);

  identities.set('anonymous', {});
  // Not a real user's name: after five failures the lockout answers 403 for this (name, address), even with the right password.
  identities.set('wrong_password', basic('zed', 'nope'));
  identities.set('alice', basic('alice', 'alice-pw'));
  identities.set('bob_cookie', { cookie: await cookieOf('bob', 'bob-pw') });
  identities.set('erin_jwt', { authorization: 'Bearer ' + jwt({ sub: 'erin', '_couchdb.roles': ['nurse'], exp: Math.floor(Date.now() / 1000) + 3600 }) });
  identities.set('carol', basic('carol', 'carol-pw'));
  const proxyToken = createHmac('sha256', PROXY_SECRET).update('frank').digest('hex');
  identities.set('frank_proxy', { 'x-auth-couchdb-username': 'frank', 'x-auth-couchdb-roles': 'ward-admin, x', 'x-auth-couchdb-token': proxyToken });
  identities.set('dave', basic('dave', 'dave-pw'));
  identities.set('admin', basic(ADMIN.user, ADMIN.password));
  const aliceDoc = (await request(node, 'GET', '/_users/org.couchdb.user:alice')).body;
  identities.set('expired_cookie', { cookie: forgeCookie('alice', aliceDoc.salt, Math.floor(Date.now() / 1000) - 3600) });
});

after(async () => {
  await node.destroy();
});

interface Endpoint {
  method: string;
  path: (who: Who) => string;
  body?: (who: Who) => unknown;
  level: Level;
  ok: number;
}

const endpoints: Endpoint[] = [
  { method: 'GET', path: () => '/', level: 'anyone', ok: 200 },
  { method: 'GET', path: () => '/_session', level: 'anyone', ok: 200 },
  { method: 'GET', path: () => '/_uuids', level: 'anyone', ok: 200 },
  { method: 'GET', path: () => '/clinic', level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/p1', level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/p1?open_revs=all', level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/p1/att.txt', level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/_all_docs?include_docs=true', level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/_changes?include_docs=true', level: 'member', ok: 200 },
  { method: 'POST', path: () => '/clinic/_bulk_get', body: () => ({ docs: [{ id: 'p1' }] }), level: 'member', ok: 200 },
  { method: 'POST', path: () => '/clinic/_revs_diff', body: () => ({ p1: ['1-x'] }), level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/_design/v/_view/by', level: 'member', ok: 200 },
  { method: 'POST', path: () => '/clinic/_find', body: () => ({ selector: { type: 'patient' } }), level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/_index', level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/_security', level: 'member', ok: 200 },
  { method: 'GET', path: () => '/clinic/_design/v', level: 'member', ok: 200 },
  { method: 'PUT', path: (w) => `/clinic/doc-${w}`, body: () => ({ a: 1 }), level: 'member', ok: 201 },
  { method: 'PUT', path: (w) => `/clinic/_local/l-${w}`, body: () => ({ a: 1 }), level: 'member', ok: 201 },
  { method: 'PUT', path: (w) => `/clinic/_design/d-${w}`, body: () => ({ views: {} }), level: 'db_admin', ok: 201 },
  {
    method: 'PUT',
    path: () => '/clinic/_security',
    body: () => ({ admins: { names: [], roles: ['ward-admin'] }, members: { names: ['alice'], roles: ['nurse'] } }),
    level: 'db_admin',
    ok: 200,
  },
  { method: 'POST', path: (w) => '/clinic/_index', body: (w) => ({ index: { fields: ['a'] }, ddoc: `i-${w}` }), level: 'db_admin', ok: 200 },
  { method: 'POST', path: () => '/clinic/_view_cleanup', body: () => ({}), level: 'compact', ok: 202 },
  { method: 'GET', path: () => '/closed/secret', level: 'closed', ok: 200 },
  { method: 'GET', path: () => '/closed/_all_docs', level: 'closed', ok: 200 },
  { method: 'PUT', path: (w) => `/made-by-${w.replace('_', '-')}`, level: 'server', ok: 201 },
  { method: 'GET', path: () => '/_all_dbs', level: 'server', ok: 200 },
  { method: 'GET', path: () => '/_active_tasks', level: 'server', ok: 200 },
  { method: 'GET', path: () => '/_membership', level: 'server', ok: 200 },
  { method: 'GET', path: () => '/_node/_local/_config', level: 'server', ok: 200 },
  { method: 'GET', path: () => '/_users/_all_docs', level: 'server', ok: 200 },
  { method: 'POST', path: () => '/clinic/_purge', body: () => ({}), level: 'server', ok: 201 },
  { method: 'GET', path: () => '/clinic/_purged_infos_limit', level: 'server', ok: 200 },
  { method: 'POST', path: () => '/clinic/_compact', body: () => ({}), level: 'compact', ok: 202 },
];

describe('the matrix: every caller against every endpoint family', () => {
  const whos: Who[] = ['anonymous', 'wrong_password', 'alice', 'bob_cookie', 'erin_jwt', 'carol', 'frank_proxy', 'dave', 'admin', 'expired_cookie'];
  for (const who of whos) {
    test(who, async () => {
      const failures: string[] = [];
      for (const e of endpoints) {
        const path = e.path(who);
        const r = await as(identities.get(who)!, e.method, path, e.body?.(who));
        const want = expected(e.level, who, e.ok);
        const lockedOut = who === 'wrong_password' && r.status === 403 && r.body?.reason === 'Account is temporarily locked due to multiple authentication failures';
        if (r.status !== want && !lockedOut) failures.push(`${e.method} ${path}: ${r.status} (want ${want}) ${r.text.slice(0, 160)}`);
        if (r.status === 401 || r.status === 403) {
          assert.ok(r.body && typeof r.body.error === 'string' && typeof r.body.reason === 'string', `${path}: a CouchDB error body`);
          assert.equal(r.body.error, r.status === 401 ? 'unauthorized' : 'forbidden');
        }
      }
      assert.deepEqual(failures, []);
    });
  }

  test("the reasons are CouchDB's", async () => {
    const anon = await as({}, 'GET', '/clinic');
    assert.deepEqual(anon.body, { error: 'unauthorized', reason: 'You are not authorized to access this db.' });
    const dave = await as(identities.get('dave')!, 'GET', '/clinic');
    assert.deepEqual(dave.body, { error: 'forbidden', reason: 'You are not allowed to access this db.' });
    const member = await as(identities.get('alice')!, 'PUT', '/clinic/_design/nope', { views: {} });
    assert.deepEqual(member.body, { error: 'forbidden', reason: 'You are not a db or server admin.' });
    const server = await as(identities.get('alice')!, 'GET', '/_all_dbs');
    assert.deepEqual(server.body, { error: 'unauthorized', reason: 'You are not a server admin.' });
    const compact = await as(identities.get('alice')!, 'POST', '/clinic/_view_cleanup', {});
    assert.deepEqual(compact.body, { error: 'unauthorized', reason: 'You are not a server or db admin.' });
    const wrong = await as(basic('alice', 'wrong'), 'GET', '/');
    assert.deepEqual(wrong.body, { error: 'unauthorized', reason: 'Name or password is incorrect.' });
    assert.equal(wrong.headers.get('www-authenticate'), null, 'no WWW-Authenticate unless configured');
    const metrics = (await request(node, 'GET', '/_node/_local/_prometheus')).text;
    assert.match(metrics, /divan_auth_requests_total\{handler="jwt",result="ok"[^}]*\} [1-9]/);
    assert.match(metrics, /divan_auth_requests_total\{handler="default",result="failed"[^}]*\} [1-9]/);
    assert.match(metrics, /divan_authz_refused_total\{need="db_member"[^}]*\} [1-9]/);
  });

  test('a member cannot slip a design document into _bulk_docs; a missing database is 404 for anyone', async () => {
    const r = await as(identities.get('alice')!, 'POST', '/clinic/_bulk_docs', { docs: [{ _id: 'ok-doc' }, { _id: '_design/sneaky', views: {} }] });
    assert.equal(r.status, 201);
    assert.equal(r.body[0].ok, true);
    assert.deepEqual({ error: r.body[1].error, reason: r.body[1].reason }, { error: 'forbidden', reason: 'You are not a db or server admin.' });
    const missing = await as({}, 'GET', '/no-such-db/x');
    assert.equal(missing.status, 404);
  });

  test('GET /_session names the handler that recognised each caller', async () => {
    const cases: [Who, string | undefined, string | null, string[]][] = [
      ['anonymous', undefined, null, []],
      ['alice', 'default', 'alice', []],
      ['bob_cookie', 'cookie', 'bob', ['nurse']],
      ['erin_jwt', 'jwt', 'erin', ['nurse']],
      ['frank_proxy', 'proxy', 'frank', ['ward-admin', 'x']],
      ['admin', 'default', ADMIN.user, ['_admin']],
      ['expired_cookie', undefined, null, []],
    ];
    for (const [who, method, name, roles] of cases) {
      const r = await as(identities.get(who)!, 'GET', '/_session');
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.userCtx, { name, roles }, who);
      assert.equal(r.body.info.authenticated, method, who);
      assert.deepEqual(r.body.info.authentication_handlers, ['cookie', 'default', 'jwt', 'proxy']);
      assert.equal(r.body.info.authentication_db, '_users');
    }
  });

  test('JWT: a bad signature, an expired token, a missing required claim are 401; a proxy with a wrong token stays anonymous', async () => {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    for (const token of [jwt({ sub: 'erin', exp }, randomBytes(32)), jwt({ sub: 'erin', exp: 1000 }), jwt({ sub: 'erin' })]) {
      const r = await as({ authorization: 'Bearer ' + token }, 'GET', '/_session');
      assert.equal(r.status, 401, r.text);
    }
    const proxied = await as({ 'x-auth-couchdb-username': 'frank', 'x-auth-couchdb-roles': '_admin', 'x-auth-couchdb-token': 'f'.repeat(64) }, 'GET', '/_all_dbs');
    assert.equal(proxied.status, 401, 'a forged proxy header is not trusted');
  });
});

describe('_users', () => {
  test('passwords are stored hashed, never in clear; a user reads and changes only their own document', async () => {
    const own = await as(identities.get('alice')!, 'GET', '/_users/org.couchdb.user:alice');
    assert.equal(own.status, 200);
    assert.equal(own.body.password, undefined);
    assert.equal(own.body.password_scheme, 'pbkdf2');
    assert.equal(own.body.pbkdf2_prf, 'sha256');
    assert.match(own.body.salt, /^[0-9a-f]{32}$/);
    assert.match(own.body.derived_key, /^[0-9a-f]{64}$/);
    assert.ok(Number.isInteger(own.body.iterations));
    const all = await request(node, 'GET', '/_users/_all_docs?include_docs=true');
    assert.ok(!all.text.includes('alice-pw'), 'no clear password anywhere');
    assert.equal((await as(identities.get('alice')!, 'GET', '/_users/org.couchdb.user:bob')).status, 403, 'another user: out of reach (_users is admin-only)');
    const escalate = await as(identities.get('alice')!, 'PUT', '/_users/org.couchdb.user:alice', { ...own.body, roles: ['nurse'] });
    assert.deepEqual(escalate.body, { error: 'forbidden', reason: 'Only _admin may edit roles' });
    const other = await as(identities.get('alice')!, 'PUT', '/_users/org.couchdb.user:dave', { name: 'dave', type: 'user', roles: [], password: 'x' });
    assert.equal(other.status, 403, "_users is admin-only: someone else's document is out of reach");
    assert.equal((await as(identities.get('alice')!, 'GET', '/_users/_changes')).status, 401);
    assert.equal((await as({}, 'PUT', '/_users/org.couchdb.user:mallory', { name: 'mallory', type: 'user', roles: [], password: 'x' })).status, 401, '_users is admin-only: no anonymous sign-up');
  });

  test('the _users rules refuse malformed user documents, even from an admin', async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['org.couchdb.user:x1', { name: 'x2', type: 'user', roles: [] }, 'Doc ID must be of the form org.couchdb.user:name'],
      ['org.couchdb.user:x1', { name: 'x1', type: 'person', roles: [] }, 'doc.type must be user'],
      ['org.couchdb.user:x1', { name: 'x1', type: 'user' }, 'doc.roles must exist'],
      ['org.couchdb.user:x1', { name: 'x1', type: 'user', roles: [1] }, 'doc.roles can only contain strings'],
      ['org.couchdb.user:x1', { name: 'x1', type: 'user', roles: ['_admin'] }, 'No system roles (starting with underscore) in users db.'],
      ['org.couchdb.user:_x', { name: '_x', type: 'user', roles: [] }, 'Username may not start with underscore.'],
    ];
    for (const [id, doc, reason] of cases) {
      const r = await request(node, 'PUT', `/_users/${id}`, { body: doc });
      assert.deepEqual(r.body, { error: 'forbidden', reason }, id);
    }
    const sec = await request(node, 'PUT', '/_users/_security', { body: { members: { names: [], roles: [] } } });
    assert.deepEqual(sec.body, { error: 'forbidden', reason: "You can't edit the security object of the user database." });
  });

  test('a password change takes effect at once on this node; the old password and old cookies stop working', async () => {
    await putUser('gina', 'old-pw', ['nurse']);
    const cookie = await cookieOf('gina', 'old-pw');
    assert.equal((await as(basic('gina', 'old-pw'), 'GET', '/clinic')).status, 200);
    const doc = (await request(node, 'GET', '/_users/org.couchdb.user:gina')).body;
    // The user changes their own password (with Basic, as PouchDB's changePassword does).
    const change = await as(basic('gina', 'old-pw'), 'PUT', '/_users/org.couchdb.user:gina', { ...doc, password: 'new-pw' });
    assert.equal(change.status, 201, change.text);
    assert.equal((await as(basic('gina', 'old-pw'), 'GET', '/clinic')).status, 401);
    assert.equal((await as(basic('gina', 'new-pw'), 'GET', '/clinic')).status, 200);
    assert.equal((await as({ cookie }, 'GET', '/_session')).body.userCtx.name, null, 'the old session ended with the old salt');
    // A role removed by an admin takes effect at once too.
    const current = (await request(node, 'GET', '/_users/org.couchdb.user:gina')).body;
    assert.equal((await request(node, 'PUT', '/_users/org.couchdb.user:gina', { body: { ...current, roles: [] } })).status, 201);
    assert.equal((await as(basic('gina', 'new-pw'), 'GET', '/clinic')).status, 403);
  });
});

test('a user document in conflict cannot log in until the conflict is resolved, as CouchDB refuses it', async () => {
  await putUser('hank', 'hank-pw', ['nurse']);
  assert.equal((await as(basic('hank', 'hank-pw'), 'GET', '/clinic')).status, 200);
  const doc = (await request(node, 'GET', '/_users/org.couchdb.user:hank')).body;
  const [pos, hash] = (doc._rev as string).split('-');
  const { _rev: _r, ...fields } = doc;
  void _r;
  const sibling = { ...fields, _rev: `${Number(pos) + 1}-${'f'.repeat(32)}`, _revisions: { start: Number(pos) + 1, ids: ['f'.repeat(32), hash] } };
  const child = { ...fields, _rev: `${Number(pos) + 1}-${'e'.repeat(32)}`, _revisions: { start: Number(pos) + 1, ids: ['e'.repeat(32), hash] } };
  assert.equal((await request(node, 'POST', '/_users/_bulk_docs', { body: { new_edits: false, docs: [sibling, child] } })).status, 201);
  const refused = await as(basic('hank', 'hank-pw'), 'GET', '/clinic');
  assert.deepEqual(refused.body, { error: 'unauthorized', reason: 'User document conflicts must be resolved before the document is used for authentication purposes.' });
  assert.deepEqual((await as(basic('hank', 'wrong'), 'GET', '/clinic')).body.reason, 'Name or password is incorrect.', 'a wrong password learns nothing more');
  // The admin deletes one branch: hank logs in again.
  assert.equal((await request(node, 'DELETE', `/_users/org.couchdb.user:hank?rev=${sibling._rev}`)).status, 200);
  assert.equal((await as(basic('hank', 'hank-pw'), 'GET', '/clinic')).status, 200);
});

test('validate_doc_update sees the real userCtx and secObj', async () => {
  await request(node, 'PUT', '/vdu');
  await request(node, 'PUT', '/vdu/_security', { body: { members: { names: ['alice'], roles: ['nurse'] }, admins: { names: [], roles: [] } } });
  const vdu = {
    validate_doc_update: `function (newDoc, oldDoc, userCtx, secObj) {
      if (userCtx.db !== 'vdu') throw({ forbidden: 'wrong db ' + userCtx.db });
      if (secObj.members.names.indexOf('alice') < 0) throw({ forbidden: 'no secObj' });
      if (userCtx.roles.indexOf('nurse') < 0) throw({ forbidden: 'nurses only, not ' + userCtx.name });
    }`,
  };
  assert.equal((await request(node, 'PUT', '/vdu/_design/v', { body: vdu })).status, 201);
  const alice = await as(identities.get('alice')!, 'PUT', '/vdu/a', { x: 1 });
  assert.deepEqual(alice.body, { error: 'forbidden', reason: 'nurses only, not alice' });
  assert.equal((await as(identities.get('bob_cookie')!, 'PUT', '/vdu/b', { x: 1 })).status, 201);
});

test('runtime admins: PUT/DELETE /_node/_local/_config/admins/{name}, stored hashed', async () => {
  const put = await request(node, 'PUT', '/_node/_local/_config/admins/root', { body: 'root-pw' });
  assert.equal(put.status, 200);
  assert.equal(put.body, '');
  const listed = (await request(node, 'GET', '/_node/_local/_config/admins')).body;
  assert.match(listed.root, /^-pbkdf2:sha256-[0-9a-f]{64},[0-9a-f]{32},\d+$/);
  assert.ok(listed[ADMIN.user], 'the configured admin is still there');
  assert.equal((await as(basic('root', 'root-pw'), 'GET', '/_all_dbs')).status, 200);
  const removed = await request(node, 'DELETE', '/_node/_local/_config/admins/root');
  assert.equal(removed.body, listed.root, 'DELETE answers the old stored value');
  assert.equal((await as(basic('root', 'root-pw'), 'GET', '/_all_dbs')).status, 401);
  assert.equal((await request(node, 'DELETE', '/_node/_local/_config/admins/root')).status, 404);
  assert.equal((await request(node, 'DELETE', `/_node/_local/_config/admins/${ADMIN.user}`)).status, 400, 'the last admin stays');
  assert.equal((await request(node, 'PUT', '/_node/_local/_config/couchdb/x', { body: '1' })).status, 501);
});

describe('real clients as a user', () => {
  test('PouchDB syncs both ways as alice; as dave it is refused', async () => {
    const remote = new PouchDB(`${node.url}/clinic`, { auth: { username: 'alice', password: 'alice-pw' }, skip_setup: true });
    const local = localDb('alice');
    await local.put({ _id: 'from-laptop', by: 'alice' });
    const push = await replicateOnce(local, remote);
    assert.equal(push.ok, true);
    assert.equal((await request(node, 'GET', '/clinic/from-laptop')).body.by, 'alice');
    await request(node, 'PUT', '/clinic/from-server', { body: { by: 'admin' } });
    const pull = await replicateOnce(remote, local);
    assert.equal(pull.ok, true);
    assert.equal((await local.get('from-server')).by, 'admin');
    const asDave = new PouchDB(`${node.url}/clinic`, { auth: { username: 'dave', password: 'dave-pw' }, skip_setup: true });
    await assert.rejects(replicateOnce(asDave, localDb('dave')), (err: { status?: number }) => err.status === 403);
  });

  test('nano with cookie auth as bob reads the clinic', async () => {
    const Nano = require('nano') as (url: string) => { auth(u: string, p: string): Promise<{ ok: boolean }>; use(db: string): { get(id: string): Promise<Record<string, unknown>> } };
    const client = Nano(node.url);
    const login = await client.auth('bob', 'bob-pw');
    assert.equal(login.ok, true);
    assert.equal((await client.use('clinic').get('p1')).type, 'patient');
  });
});

describe('require_valid_user', () => {
  let strict: TestNode;
  before(async () => {
    strict = await startNode({ env: { DIVAN_REQUIRE_VALID_USER: '1' } });
  });
  after(async () => {
    await strict.destroy();
  });

  test('anonymous callers get 401 with a Basic challenge everywhere, but can still log in', async () => {
    for (const path of ['/', '/_up', '/_session']) {
      const r = await request(strict, 'GET', path, { auth: false });
      assert.equal(r.status, 401, path);
      assert.deepEqual(r.body, { error: 'unauthorized', reason: 'Authentication required.' });
      assert.equal(r.headers.get('www-authenticate'), 'Basic realm="server"');
    }
    const login = await request(strict, 'POST', '/_session', { auth: false, body: { name: ADMIN.user, password: ADMIN.password } });
    assert.equal(login.status, 200);
    assert.equal((await request(strict, 'GET', '/')).status, 200);
    await waitFor(async () => (await request(strict, 'GET', '/_all_dbs')).body?.includes('_users'), 10_000, '_users made at start');
  });
});
