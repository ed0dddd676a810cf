/**
 * `_purge` on a real three-node cluster (n=3, q=2) with one node down during the purge
 * (issue 13): the purge answers from the two live copies; the node that missed it comes
 * back with the purged revisions, and neither read repair nor shard sync (in either
 * direction) brings them back to the copies that purged them; after sync the returned
 * node has purged them too, and every copy agrees, also after a restart.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, startCluster } from '../helpers/cluster';
import { request, uniqueDb, waitFor } from '../helpers/node-process';

let cluster: Cluster;

before(async () => {
  cluster = await startCluster({ nodes: 3 });
});
after(async () => {
  await cluster?.destroy();
});

/** The doc's revisions as node `i`'s own copy holds them (404: the copy has no such doc). */
async function copyRevs(i: number, db: string, id: string): Promise<number | string[]> {
  const reply = await request(cluster.nodes[i]!, 'GET', `/_node/_local/_copy/${db}/${id}`);
  return reply.status === 200 ? (reply.body.revs as { rev: string }[]).map((r) => r.rev).sort() : reply.status;
}

describe('purge across a cluster with a node down', () => {
  test('the node that missed the purge gets it through sync and nothing is resurrected', async () => {
    const db = uniqueDb('purge');
    assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?q=2&n=3`)).status, 201);
    const docs = [
      { _id: 'p', _rev: '2-aa', v: 'a', _revisions: { start: 2, ids: ['aa', 'root'] } },
      { _id: 'p', _rev: '2-bb', v: 'b', _revisions: { start: 2, ids: ['bb', 'root'] } },
      { _id: 'half', _rev: '2-cc', v: 'c', _revisions: { start: 2, ids: ['cc', 'root'] } },
      { _id: 'half', _rev: '2-dd', v: 'd', _revisions: { start: 2, ids: ['dd', 'root'] } },
      { _id: 'keep', _rev: '1-ee', v: 'e' },
    ];
    assert.equal((await request(cluster.nodes[0]!, 'POST', `/${db}/_bulk_docs?w=3`, { body: { new_edits: false, docs } })).status, 201);
    for (const i of [0, 1, 2]) {
      await waitFor(async () => JSON.stringify(await copyRevs(i, db, 'p')) === JSON.stringify(['1-root', '2-aa', '2-bb']), 10_000, `node ${i} holds p`);
      await waitFor(async () => Array.isArray(await copyRevs(i, db, 'half')), 10_000, `node ${i} holds half`);
    }

    await cluster.kill9(2);
    const purged = await request(cluster.nodes[0]!, 'POST', `/${db}/_purge`, { body: { p: ['2-aa', '2-bb'], half: ['2-dd'] } });
    assert.equal(purged.status, 201, purged.text);
    assert.deepEqual(purged.body.purged, { p: ['2-aa', '2-bb'], half: ['2-dd'] });
    for (const i of [0, 1]) {
      assert.equal(await copyRevs(i, db, 'p'), 404);
      assert.deepEqual(await copyRevs(i, db, 'half'), ['1-root', '2-cc']);
    }

    await cluster.restart(2);
    await cluster.waitForAllAlive();
    // The returned node still has what it missed; a quorum read through another node
    // sees its copy (read repair offers its leaves to the others: they must refuse them).
    await request(cluster.nodes[0]!, 'GET', `/${db}/p?r=3`);
    await request(cluster.nodes[1]!, 'GET', `/${db}/half?r=3&conflicts=true`);
    await request(cluster.nodes[0]!, 'POST', `/${db}/_sync_shards`);
    await request(cluster.nodes[2]!, 'POST', `/${db}/_sync_shards`);
    await request(cluster.nodes[1]!, 'POST', `/${db}/_sync_shards`);
    for (const i of [0, 1, 2]) {
      await waitFor(async () => (await copyRevs(i, db, 'p')) === 404, 20_000, `node ${i} without p`);
      await waitFor(async () => JSON.stringify(await copyRevs(i, db, 'half')) === JSON.stringify(['1-root', '2-cc']), 20_000, `node ${i} with half's kept branch only`);
    }
    // Through every node: the purge holds, counts agree, purge_seq moved on every copy.
    for (const i of [0, 1, 2]) {
      const node = cluster.nodes[i]!;
      assert.equal((await request(node, 'GET', `/${db}/p?r=3`)).status, 404);
      const half = await request(node, 'GET', `/${db}/half?r=3&conflicts=true`);
      assert.equal(half.body._rev, '2-cc');
      assert.equal(half.body._conflicts, undefined);
      const info = (await request(node, 'GET', `/${db}`)).body;
      assert.equal(info.doc_count, 2, `node ${i}`);
      assert.ok(Number(String(info.purge_seq).split('-')[0]) >= 2, `purge_seq on node ${i}: ${info.purge_seq}`);
    }
    // A restarted node keeps its purges.
    await cluster.restart(0);
    await cluster.waitForAllAlive();
    await request(cluster.nodes[1]!, 'POST', `/${db}/_sync_shards`);
    assert.equal(await copyRevs(0, db, 'p'), 404);
    assert.deepEqual(await copyRevs(0, db, 'half'), ['1-root', '2-cc']);
  });
});
