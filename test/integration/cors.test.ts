/**
 * CORS for browser clients: off by default; with origins configured, preflights are
 * answered without credentials and responses carry the allow/expose headers.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request, startNode, TestNode } from '../helpers/node-process';

let plain: TestNode;
let cors: TestNode;
before(async () => {
  plain = await startNode();
  cors = await startNode({ env: { DIVAN_CORS_ORIGINS: 'https://app.example, https://other.example', DIVAN_CORS_CREDENTIALS: '1' } });
});
after(async () => {
  await plain.destroy();
  await cors.destroy();
});

test('without configuration no CORS headers are sent', async () => {
  const res = await request(plain, 'GET', '/', { headers: { origin: 'https://app.example' } });
  assert.equal(res.headers.get('access-control-allow-origin'), null);
});

test('a preflight from an allowed origin is answered before authentication', async () => {
  const res = await request(cors, 'OPTIONS', '/db/doc', {
    auth: false,
    headers: { origin: 'https://app.example', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' },
  });
  assert.equal(res.status, 204);
  assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example');
  assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
  assert.match(res.headers.get('access-control-allow-methods')!, /PUT/);
  const denied = await request(cors, 'OPTIONS', '/db/doc', {
    auth: false,
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'PUT' },
  });
  assert.equal(denied.status, 403);
});

test('actual responses expose the headers PouchDB reads', async () => {
  const res = await request(cors, 'PUT', '/corsdb', { headers: { origin: 'https://other.example' } });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get('access-control-allow-origin'), 'https://other.example');
  assert.match(res.headers.get('access-control-expose-headers')!, /etag/);
  const other = await request(cors, 'GET', '/corsdb', { headers: { origin: 'https://evil.example' } });
  assert.equal(other.status, 200);
  assert.equal(other.headers.get('access-control-allow-origin'), null);
});
