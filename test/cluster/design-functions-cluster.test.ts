/**
 * Design-document functions across nodes: a validate_doc_update written through one
 * node takes effect on writes through the others (within designDocsRecheckMs when the
 * design document's range lives on another node: the cache compares the copies'
 * design seqs, read over gRPC), its removal too, and a filtered `_changes` through a
 * node that holds no copy of some ranges reads them from the others.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterPerSuite } from '../helpers/cluster';
import { request, uniqueDb, waitFor } from '../helpers/node-process';

const cluster = clusterPerSuite({ nodes: 3 });

test('a VDU written through node A refuses writes through B and C; removed, it stops refusing', async () => {
  const [a, b, c] = cluster().nodes;
  const db = uniqueDb('vdu-cluster');
  // One copy per range, spread over the nodes: each node reaches some ranges only remotely.
  assert.equal((await request(a!, 'PUT', `/${db}?q=4&n=1`)).status, 201);
  // B and C cache "no validators" first.
  for (const [i, node] of [b, c].entries()) assert.equal((await request(node!, 'PUT', `/${db}/before-${i}`, { body: {} })).status, 201);
  const vdu = await request(a!, 'PUT', `/${db}/_design/v`, { body: { validate_doc_update: `function (d) { if (d.bad) throw({ forbidden: 'no bad docs' }); }` } });
  assert.equal(vdu.status, 201, vdu.text);
  // Through A itself: at once.
  assert.equal((await request(a!, 'PUT', `/${db}/bad-a`, { body: { bad: true } })).status, 403);
  for (const node of [b, c]) {
    let n = 0;
    await waitFor(async () => (await request(node!, 'PUT', `/${db}/bad-${node!.port}-${n++}`, { body: { bad: true } })).status === 403, 15_000, 'the VDU on another node');
  }
  assert.equal((await request(a!, 'DELETE', `/${db}/_design/v?rev=${vdu.body.rev}`)).status, 200);
  for (const node of [b, c]) {
    let n = 0;
    await waitFor(async () => (await request(node!, 'PUT', `/${db}/late-${node!.port}-${n++}`, { body: { bad: true } })).status === 201, 15_000, 'the VDU removal on another node');
  }
});

test('a filtered _changes through any node sees every range', async () => {
  const [a, b] = cluster().nodes;
  const db = uniqueDb('filter-cluster');
  assert.equal((await request(a!, 'PUT', `/${db}?q=4&n=1`)).status, 201);
  await request(a!, 'PUT', `/${db}/_design/app`, { body: { filters: { odd: 'function (doc) { return doc.n % 2 === 1; }' } } });
  const docs = Array.from({ length: 40 }, (_, i) => ({ _id: `d${i}`, n: i }));
  assert.equal((await request(a!, 'POST', `/${db}/_bulk_docs`, { body: { docs } })).status, 201);
  for (const node of [a, b]) {
    const res = await request(node!, 'GET', `/${db}/_changes?filter=app/odd`);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.results.length, 20);
  }
});
