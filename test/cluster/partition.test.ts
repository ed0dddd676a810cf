/**
 * A TCP-level partition of one node from the other two, with clients writing on both
 * sides (including conflicting edits of the same document). After healing, every copy
 * converges, conflicts resolve to the same winner everywhere, and no acknowledged
 * write is missing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ackedWriteChecker, Cluster, eventually, startCluster } from '../helpers/cluster';
import { request, uniqueDb } from '../helpers/node-process';

let cluster: Cluster;
before(async () => {
  cluster = await startCluster({ nodes: 3, proxied: true });
});
after(async () => {
  await cluster?.destroy();
});

async function copyTree(i: number, db: string, id: string): Promise<string> {
  const res = await request(cluster.nodes[i]!, 'GET', `/_node/_local/_copy/${db}/${encodeURIComponent(id)}`);
  if (res.status !== 200) return `status ${res.status}`;
  return res.body.revs.map((r: any) => `${r.rev}(${r.parent ?? ''})${r.deleted ? 'd' : ''}`).join(' ');
}

test('a partitioned node and the majority both take writes; after healing all copies converge and nothing acknowledged is lost', async () => {
  const db = uniqueDb('part');
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}`)).status, 201);
  const acked = ackedWriteChecker();
  const shared = await request(cluster.nodes[1]!, 'PUT', `/${db}/shared`, { body: { side: 'none' } });
  acked.record(shared);
  await eventually(async () => {
    for (const i of [0, 1, 2]) assert.equal((await request(cluster.nodes[i]!, 'GET', `/${db}/shared`)).body._rev, shared.body.rev);
  }, 10_000);

  cluster.partition([[0], [1, 2]]);
  await cluster.waitForMembers(0, { [cluster.name(1)]: 'dead', [cluster.name(2)]: 'dead' }, 30_000);
  await cluster.waitForMembers(1, { [cluster.name(0)]: 'dead' }, 30_000);

  const statuses: Record<string, number[]> = { minority: [], majority: [] };
  for (let i = 0; i < 20; i++) {
    const minority = await request(cluster.nodes[0]!, 'PUT', `/${db}/m0-${i}`, { body: { i } });
    acked.record(minority);
    statuses.minority!.push(minority.status);
    const majority = await request(cluster.nodes[1 + (i % 2)]!, 'PUT', `/${db}/m12-${i}`, { body: { i } });
    acked.record(majority);
    statuses.majority!.push(majority.status);
  }
  // Alone, node 1 holds one copy of three: durable there, below w=2.
  assert.ok(statuses.minority!.every((s) => s === 202), `minority statuses ${statuses.minority}`);
  assert.ok(statuses.majority!.every((s) => s === 201), `majority statuses ${statuses.majority}`);

  // The same document edited on both sides: a conflict once healed.
  const left = await request(cluster.nodes[0]!, 'PUT', `/${db}/shared`, { body: { side: 'left' }, headers: { 'if-match': shared.body.rev } });
  const right = await request(cluster.nodes[2]!, 'PUT', `/${db}/shared`, { body: { side: 'right' }, headers: { 'if-match': shared.body.rev } });
  assert.equal(left.status, 202);
  assert.equal(right.status, 201);
  acked.record(left);
  acked.record(right);

  cluster.heal();
  await cluster.waitForAllAlive();
  const ids = acked.ids();
  await eventually(async () => {
    for (const id of ids) {
      const trees = await Promise.all([0, 1, 2].map((i) => copyTree(i, db, id)));
      assert.ok(trees[0] === trees[1] && trees[1] === trees[2], `copies of ${id} differ: ${JSON.stringify(trees)}`);
      assert.ok(!trees[0]!.startsWith('status'), `copy of ${id}: ${trees[0]}`);
    }
  }, 60_000, 250);
  await acked.verify(cluster.nodes, db);

  const views = await Promise.all([0, 1, 2].map((i) => request(cluster.nodes[i]!, 'GET', `/${db}/shared?conflicts=true`)));
  const winner = [left.body.rev, right.body.rev].sort().reverse()[0];
  for (const view of views) {
    assert.equal(view.body._rev, winner, 'the same winner everywhere');
    assert.equal(view.body._conflicts.length, 1);
  }
  for (const i of [0, 1, 2]) {
    const info = await request(cluster.nodes[i]!, 'GET', `/${db}`);
    assert.equal(info.body.doc_count, 41);
  }
});

test('the same database created on both sides of a partition: after healing one instance holds every write made to either', async () => {
  const db = uniqueDb('race');
  cluster.partition([[0], [1, 2]]);
  await cluster.waitForMembers(0, { [cluster.name(1)]: 'dead', [cluster.name(2)]: 'dead' }, 30_000);
  await cluster.waitForMembers(1, { [cluster.name(0)]: 'dead' }, 30_000);
  // Each side creates the name, unaware of the other, and takes writes.
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}`)).status, 201);
  assert.equal((await request(cluster.nodes[1]!, 'PUT', `/${db}`)).status, 201);
  const acked = ackedWriteChecker();
  for (let i = 0; i < 25; i++) {
    const alone = await request(cluster.nodes[0]!, 'PUT', `/${db}/alone-${i}`, { body: { i } });
    assert.ok(alone.status === 201 || alone.status === 202, `alone-${i}: ${alone.status}`);
    acked.record(alone);
    const majority = await request(cluster.nodes[1 + (i % 2)]!, 'PUT', `/${db}/majority-${i}`, { body: { i } });
    assert.equal(majority.status, 201);
    acked.record(majority);
  }
  // Both sides also wrote the same id: after the merge it is one document with a conflict.
  const left = await request(cluster.nodes[0]!, 'PUT', `/${db}/both`, { body: { side: 'left' } });
  const right = await request(cluster.nodes[2]!, 'PUT', `/${db}/both`, { body: { side: 'right' } });
  acked.record(left);
  acked.record(right);

  cluster.heal();
  await cluster.waitForAllAlive();
  // Every node ends up with one instance (the same placement) holding all 51 documents.
  await eventually(async () => {
    const shards = await Promise.all([0, 1, 2].map((i) => request(cluster.nodes[i]!, 'GET', `/${db}/_shards`)));
    assert.deepEqual(shards[0]!.body, shards[1]!.body);
    assert.deepEqual(shards[1]!.body, shards[2]!.body);
    for (const i of [0, 1, 2]) {
      const info = await request(cluster.nodes[i]!, 'GET', `/${db}`);
      assert.equal(info.body.doc_count, 51, `node ${i} doc_count`);
    }
  }, 60_000, 250);
  await acked.verify(cluster.nodes, db);
  const both = await request(cluster.nodes[1]!, 'GET', `/${db}/both?conflicts=true`);
  assert.equal(both.status, 200);
  assert.deepEqual([both.body._rev, ...both.body._conflicts].sort(), [left.body.rev, right.body.rev].sort());
});

test('a database deleted and created again while a node was cut off is not resurrected by that node', async () => {
  const db = uniqueDb('again');
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}`)).status, 201);
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}/old`, { body: {} })).status, 201);
  await eventually(async () => assert.equal((await request(cluster.nodes[2]!, 'GET', `/${db}/old`)).status, 200), 10_000);
  cluster.partition([[0], [1, 2]]);
  await cluster.waitForMembers(1, { [cluster.name(0)]: 'dead' }, 30_000);
  assert.equal((await request(cluster.nodes[1]!, 'DELETE', `/${db}`)).status, 200);
  assert.equal((await request(cluster.nodes[1]!, 'PUT', `/${db}`)).status, 201);
  assert.equal((await request(cluster.nodes[2]!, 'PUT', `/${db}/new`, { body: {} })).status, 201);
  cluster.heal();
  await cluster.waitForAllAlive();
  await eventually(async () => {
    for (const i of [0, 1, 2]) {
      assert.equal((await request(cluster.nodes[i]!, 'GET', `/${db}/new`)).status, 200, `node ${i} has the new instance`);
    }
  }, 30_000, 250);
  // Give a wrongful adoption time to happen, then check that none did.
  await new Promise((r) => setTimeout(r, 3000));
  for (const i of [0, 1, 2]) {
    assert.equal((await request(cluster.nodes[i]!, 'GET', `/${db}/old`)).status, 404, `node ${i}: the deleted instance's doc stays deleted`);
    assert.equal((await request(cluster.nodes[i]!, 'GET', `/${db}`)).body.doc_count, 1);
  }
});
