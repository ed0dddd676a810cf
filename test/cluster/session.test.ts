/**
 * A session cookie made by one node works on every node (issue 8, item 6): each node
 * signs cookies with a secret derived from the shared cluster secret, as CouchDB asks
 * for the same `[chttpd_auth] secret` on every node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterPerSuite } from '../helpers/cluster';
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
