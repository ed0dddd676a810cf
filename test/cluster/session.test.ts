/**
 * A session cookie made by one node works on every node (issue 8, item 6; users and runtime admins: issue 11): each node
 * signs cookies with a secret derived from the shared cluster secret, as CouchDB asks
 * for the same `[chttpd_auth] secret` on every node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterPerSuite, eventually } from '../helpers/cluster';
import { ADMIN, request } from '../helpers/node-process';

const cluster = clusterPerSuite({ nodes: 3 });

test('a cookie from node A is accepted by nodes B and C', async () => {
  const [a, b, c] = cluster().nodes;
  const login = await request(a!, 'POST', '/_session', { auth: false, body: { name: ADMIN.user, password: ADMIN.password } });
  assert.equal(login.status, 200);
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
  assert.match(cookie, /^AuthSession=./);
  for (const [name, node] of [['A', a], ['B', b], ['C', c]] as const) {
    const session = await request(node!, 'GET', '/_session', { auth: false, headers: { cookie } });
    assert.equal(session.body.userCtx.name, ADMIN.user, `node ${name} knows the session`);
    const dbs = await request(node!, 'GET', '/_all_dbs', { auth: false, headers: { cookie } });
    assert.equal(dbs.status, 200, `node ${name} accepts the cookie`);
  }
  // A cookie signed with anything else is still refused everywhere.
  const forged = 'AuthSession=' + Buffer.from(`${ADMIN.user}:${Math.floor(Date.now() / 1000).toString(16).toUpperCase()}:forged`).toString('base64url');
  assert.equal((await request(b!, 'GET', '/_all_dbs', { auth: false, headers: { cookie: forged } })).status, 401);
});

function basic(name: string, password: string): Record<string, string> {
  return { authorization: 'Basic ' + Buffer.from(`${name}:${password}`).toString('base64') };
}

test('a user made through node A logs in on B; her cookie reads her database on C; her password change reaches C within the users cache bound', async () => {
  const [a, b, c] = cluster().nodes;
  const made = await request(a!, 'PUT', '/_users/org.couchdb.user:alice', { body: { name: 'alice', password: 'pw-1', roles: ['nurse'], type: 'user' } });
  assert.equal(made.status, 201, made.text);
  assert.equal((await request(a!, 'PUT', '/ward?q=2')).status, 201);
  assert.equal((await request(a!, 'PUT', '/ward/_security', { body: { members: { roles: ['nurse'] }, admins: {} } })).status, 200);
  assert.equal((await request(a!, 'PUT', '/ward/chart', { body: { bed: 4 } })).status, 201);
  const login = await request(b!, 'POST', '/_session', { auth: false, body: { name: 'alice', password: 'pw-1' } });
  assert.equal(login.status, 200, login.text);
  assert.deepEqual(login.body.roles, ['nurse']);
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
  const read = await request(c!, 'GET', '/ward/chart', { auth: false, headers: { cookie } });
  assert.equal(read.status, 200, read.text);
  assert.equal((await request(c!, 'GET', '/_all_dbs', { auth: false, headers: { cookie } })).status, 401, 'a user is no server admin');
  // A user who is not a member reads nothing of the database, by any path, through any node.
  assert.equal((await request(a!, 'PUT', '/_users/org.couchdb.user:dave', { body: { name: 'dave', password: 'd', roles: [], type: 'user' } })).status, 201);
  const paths: [string, string, unknown?][] = [
    ['GET', '/ward/chart'],
    ['GET', '/ward/chart?open_revs=all'],
    ['GET', '/ward/_all_docs?include_docs=true'],
    ['GET', '/ward/_changes?include_docs=true'],
    ['POST', '/ward/_bulk_get', { docs: [{ id: 'chart' }] }],
    ['POST', '/ward/_find', { selector: { bed: 4 } }],
    ['POST', '/ward/_all_docs', { keys: ['chart'] }],
  ];
  for (const node of [a, b, c]) {
    for (const [method, path, body] of paths) {
      const r = await request(node!, method, path, { auth: false, headers: basic('dave', 'd'), ...(body ? { body } : {}) });
      assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
    }
  }

  // She changes her password through A: at once there, on C within usersCacheTtlMs (5 s by default).
  const doc = (await request(a!, 'GET', '/_users/org.couchdb.user:alice')).body;
  const changed = await request(a!, 'PUT', '/_users/org.couchdb.user:alice', { auth: false, headers: basic('alice', 'pw-1'), body: { ...doc, password: 'pw-2' } });
  assert.equal(changed.status, 201, changed.text);
  assert.equal((await request(a!, 'GET', '/ward/chart', { auth: false, headers: basic('alice', 'pw-1') })).status, 401);
  await eventually(async () => {
    assert.equal((await request(c!, 'GET', '/ward/chart', { auth: false, headers: basic('alice', 'pw-1') })).status, 401);
    assert.equal((await request(c!, 'GET', '/ward/chart', { auth: false, headers: { cookie } })).status, 401, 'the old session ended');
    assert.equal((await request(c!, 'GET', '/ward/chart', { auth: false, headers: basic('alice', 'pw-2') })).status, 200);
  }, 15_000);
});

test('an admin added through node A at runtime works on B and C at once; removed, nowhere', async () => {
  const [a, b, c] = cluster().nodes;
  const put = await request(a!, 'PUT', '/_node/_local/_config/admins/ops', { body: 'ops-pw' });
  assert.equal(put.status, 200, put.text);
  for (const node of [a, b, c]) assert.equal((await request(node!, 'GET', '/_all_dbs', { auth: false, headers: basic('ops', 'ops-pw') })).status, 200);
  const hashes = await Promise.all([a, b, c].map(async (node) => (await request(node!, 'GET', '/_node/_local/_config/admins/ops')).body));
  assert.equal(new Set(hashes).size, 1, 'one stored hash on every node');
  assert.equal((await request(b!, 'DELETE', '/_node/_local/_config/admins/ops')).status, 200);
  for (const node of [a, b, c]) assert.equal((await request(node!, 'GET', '/_all_dbs', { auth: false, headers: basic('ops', 'ops-pw') })).status, 401);
});
