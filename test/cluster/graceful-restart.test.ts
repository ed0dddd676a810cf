/**
 * A node stopped gracefully (SIGTERM, as Kubernetes stops a pod) is `left` to the
 * others; started again with its seeds it refutes that with a higher incarnation and
 * is alive everywhere, and it serves its copies again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterPerSuite } from '../helpers/cluster';
import { request } from '../helpers/node-process';

const cluster = clusterPerSuite({ nodes: 3 });

test('a node stopped with SIGTERM rejoins when it starts again, and serves its copies', async () => {
  const db = 'graceful-' + Date.now().toString(36);
  assert.equal((await request(cluster().nodes[0]!, 'PUT', `/${db}`)).status, 201);
  await cluster().stop(2);
  const seen = await cluster().membership(0);
  assert.equal(seen.members?.find((m) => m.name === cluster().name(2))?.state, 'left', 'a graceful stop is a leave');
  assert.equal((await request(cluster().nodes[0]!, 'PUT', `/${db}/while-away`, { body: { a: 1 } })).status, 201);
  await cluster().restart(2);
  await cluster().waitForAllAlive(undefined, 30_000);
  const back = await cluster().membership(1);
  assert.ok((back.members?.find((m) => m.name === cluster().name(2))?.incarnation ?? 0) >= 2, 'it outbid its own leave');
  const read = await request(cluster().nodes[2]!, 'GET', `/${db}/while-away`);
  assert.equal(read.status, 200);
  assert.equal(read.body.a, 1);
});
