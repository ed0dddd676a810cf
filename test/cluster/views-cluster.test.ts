/**
 * Views across a 3-node cluster: copies index their own documents, a query through any
 * node merges the ranges (local and remote copies over gRPC), rereduces across them, and
 * keeps answering with a node killed (each range falls over to its other copy).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterPerSuite } from '../helpers/cluster';
import { request, uniqueDb } from '../helpers/node-process';

const cluster = clusterPerSuite({ nodes: 3 });

test('views through every node of a cluster, with one node killed', async () => {
  const db = uniqueDb('vclu');
  const nodes = cluster().nodes;
  assert.equal((await request(nodes[0]!, 'PUT', `/${db}?q=4&n=2`)).status, 201);
  const docs = Array.from({ length: 200 }, (_, i) => ({ _id: `doc${String(i).padStart(3, '0')}`, kind: ['a', 'b', 'c'][i % 3], n: i }));
  const bulk = await request(nodes[1]!, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
  assert.equal(bulk.status, 201, bulk.text);
  const ddoc = {
    views: {
      by_n: { map: 'function(doc){ if (doc.kind) emit(doc.n, doc.kind); }' },
      kinds: { map: 'function(doc){ if (doc.kind) emit(doc.kind, doc.n); }', reduce: '_sum' },
      js: { map: 'function(doc){ if (doc.kind) emit(doc.kind, 1); }', reduce: 'function(k, v, re){ return sum(v); }' },
    },
    filters: { kind: 'function(doc, req){ return doc.kind === req.query.kind; }' },
  };
  assert.equal((await request(nodes[2]!, 'PUT', `/${db}/_design/v`, { body: ddoc })).status, 201);
  const sums = { a: 0, b: 0, c: 0 } as Record<string, number>;
  docs.forEach((d) => (sums[d.kind] += d.n));
  const check = async (i: number) => {
    const node = cluster().nodes[i]!;
    const all = await request(node, 'GET', `/${db}/_design/v/_view/by_n`);
    assert.equal(all.status, 200, all.text);
    assert.equal(all.body.total_rows, 200);
    assert.deepEqual(all.body.rows.map((r: any) => r.key), docs.map((d) => d.n));
    const page = await request(node, 'GET', `/${db}/_design/v/_view/by_n?startkey=50&limit=5&skip=2&descending=true`);
    assert.deepEqual(page.body.rows.map((r: any) => r.id), ['doc048', 'doc047', 'doc046', 'doc045', 'doc044']);
    const grouped = await request(node, 'GET', `/${db}/_design/v/_view/kinds?group=true`);
    assert.deepEqual(grouped.body.rows, [{ key: 'a', value: sums.a }, { key: 'b', value: sums.b }, { key: 'c', value: sums.c }]);
    const js = await request(node, 'GET', `/${db}/_design/v/_view/js`);
    assert.deepEqual(js.body.rows, [{ key: null, value: 200 }]);
    const keys = await request(node, 'POST', `/${db}/_design/v/_view/by_n`, { body: { keys: [150, 3, 77] } });
    assert.deepEqual(keys.body.rows.map((r: any) => r.id), ['doc150', 'doc003', 'doc077']);
    const seq = await request(node, 'GET', `/${db}/_design/v/_view/by_n?limit=1&update_seq=true`);
    assert.equal(typeof seq.body.update_seq, 'string');
    // A design-document filter and filter=_view on _changes, through this node.
    const filtered = await request(node, 'GET', `/${db}/_changes?filter=v/kind&kind=b`);
    assert.equal(filtered.status, 200, filtered.text);
    assert.deepEqual(filtered.body.results.map((r: any) => r.id).sort(), docs.filter((d) => d.kind === 'b').map((d) => d._id));
    const byView = await request(node, 'GET', `/${db}/_changes?filter=_view&view=v/by_n`);
    assert.equal(byView.body.results.length, 200);
  };
  for (const i of [0, 1, 2]) await check(i);
  await cluster().kill9(1);
  for (const i of [0, 2]) await check(i);
  // Writes with a node down reach the views of the nodes that are up.
  const extra = await request(nodes[0]!, 'PUT', `/${db}/late`, { body: { kind: 'a', n: 1000 } });
  assert.ok(extra.status === 201 || extra.status === 202, extra.text);
  const late = await request(cluster().nodes[2]!, 'GET', `/${db}/_design/v/_view/by_n?key=1000`);
  assert.deepEqual(late.body.rows.map((r: any) => r.id), ['late']);
  await cluster().restart(1);
  await cluster().waitForAllAlive();
});
