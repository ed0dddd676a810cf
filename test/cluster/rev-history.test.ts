/**
 * Revision histories that reuse one hash at several depths (`1-a → 2-a → 3-a`, and
 * PouchDB's `1-a → 2-c → 3-c` pushed as 2-c), and a bare `1-`, in a real three-node
 * cluster: a copy that was down while they were written, so its tree lacks those
 * revisions, gets them back (shard sync, read repair), and every copy ends with the
 * same tree. And a copy whose stored tree is corrupt is found by the read check:
 * reads through its node are served from the healthy copies, and its node logs it.
 * Issue 16, items 1 and 7.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, clusterPerSuite, eventually } from '../helpers/cluster';
import { request, uniqueDb } from '../helpers/node-process';
import { localDb, remoteDb, replicateOnce } from '../helpers/pouch';
import { damageStoredTree, loseRevision } from '../helpers/stored-docs';

/** Each node's own copy of a doc, as `rev(parent)` words: equal strings = identical trees. */
async function copyTree(cluster: Cluster, node: number, db: string, id: string): Promise<string> {
  const res = await request(cluster.nodes[node]!, 'GET', `/_node/_local/_copy/${encodeURIComponent(db)}/${encodeURIComponent(id)}`, { timeoutMs: 5_000 });
  if (res.status !== 200) return `status ${res.status}`;
  return (res.body.revs as { rev: string; parent: string | null; deleted: boolean }[])
    .map((r) => `${r.rev}(${r.parent ?? ''})${r.deleted ? 'd' : ''}`)
    .join(' ');
}

describe('revision histories with repeated hashes in a three-node cluster', () => {
  const cluster = clusterPerSuite({ nodes: 3 });

  test('a copy that missed them gets every revision back, and all copies agree', async () => {
    const db = uniqueDb('rh');
    assert.equal((await request(cluster().nodes[0]!, 'PUT', `/${db}`)).status, 201);
    const remote = remoteDb(cluster().nodes[0]!, db);
    await remote.bulkDocs([{ _id: 'foo', _rev: '1-a', value: 'generic' }], { new_edits: false });
    await eventually(async () => assert.equal(await copyTree(cluster(), 2, db, 'foo'), '1-a()'), 15_000);

    // n3 goes away: its copy keeps a tree of foo that lacks everything below.
    await cluster().kill9(2);
    await remote.bulkDocs([{ _id: 'foo', _rev: '2-b', _revisions: { start: 2, ids: ['b', 'a'] }, value: 'db2' }], { new_edits: false });
    const local = localDb('rh');
    await local.bulkDocs([{ _id: 'foo', _rev: '1-a', value: 'generic' }], { new_edits: false });
    await local.bulkDocs([{ _id: 'foo', _rev: '2-c', _revisions: { start: 2, ids: ['c', 'a'] }, value: 'whatever' }], { new_edits: false });
    await local.bulkDocs([{ _id: 'foo', _rev: '3-c', _revisions: { start: 3, ids: ['c', 'c'] }, value: 'db1' }], { new_edits: false });
    const push = await replicateOnce(local, remote);
    assert.equal(push.doc_write_failures, 0, JSON.stringify(push.errors));
    const written = await request(cluster().nodes[1]!, 'POST', `/${db}/_bulk_docs`, {
      body: {
        new_edits: false,
        docs: [
          { _id: 'deep', _rev: '4-a', _revisions: { start: 4, ids: ['a', 'a', 'a', 'a'] }, v: 4 },
          { _id: 'deep', _rev: '3-b', _revisions: { start: 3, ids: ['b', 'a', 'a'] }, v: 3 },
          { _id: 'bare', _rev: '1-', v: 1 },
        ],
      },
    });
    assert.equal(written.status, 201, written.text);

    await cluster().restart(2);
    await cluster().waitForAllAlive();
    const expected: Record<string, string> = {
      foo: '1-a() 2-b(1-a) 2-c(1-a)',
      deep: '1-a() 2-a(1-a) 3-a(2-a) 3-b(2-a) 4-a(3-a)',
      bare: '1-()',
    };
    await eventually(
      async () => {
        // Reads through n3 with r=3 also ask its copy, so read repair can help sync along.
        for (const id of Object.keys(expected)) await request(cluster().nodes[2]!, 'GET', `/${db}/${id}?r=3`, { timeoutMs: 5_000 });
        for (const [id, tree] of Object.entries(expected)) {
          for (let i = 0; i < 3; i++) assert.equal(await copyTree(cluster(), i, db, id), tree, `${id} on n${i + 1}`);
        }
      },
      60_000,
      250,
    );
    for (let i = 0; i < 3; i++) {
      const foo = await request(cluster().nodes[i]!, 'GET', `/${db}/foo?conflicts=true`);
      assert.equal(foo.body._rev, '2-c');
      assert.equal(foo.body.value, 'db1');
      assert.deepEqual(foo.body._conflicts, ['2-b']);
      const deep = await request(cluster().nodes[i]!, 'GET', `/${db}/deep?revs=true`);
      assert.deepEqual(deep.body._revisions, { start: 4, ids: ['a', 'a', 'a', 'a'] });
      assert.equal((await request(cluster().nodes[i]!, 'GET', `/${db}/bare`)).body._rev, '1-');
    }
  });

  test('a corrupt copy is logged and skipped: reads through its node come from the healthy copies', async () => {
    const db = uniqueDb('rh');
    assert.equal((await request(cluster().nodes[0]!, 'PUT', `/${db}`)).status, 201);
    const docs = [
      { _id: 'doc', _rev: '2-b', _revisions: { start: 2, ids: ['b', 'a'] }, v: 'b' },
      { _id: 'doc', _rev: '2-c', _revisions: { start: 2, ids: ['c', 'a'] }, v: 'c' },
    ];
    assert.equal((await request(cluster().nodes[0]!, 'POST', `/${db}/_bulk_docs`, { body: { docs, new_edits: false } })).status, 201);
    const whole = '1-a() 2-b(1-a) 2-c(1-a)';
    await eventually(async () => assert.equal(await copyTree(cluster(), 2, db, 'doc'), whole), 15_000);

    // kill -9, not a clean stop: a node that stopped cleanly has left the cluster().
    await cluster().kill9(2);
    assert.ok((await damageStoredTree(cluster().nodes[2]!.dataDir, 'doc', loseRevision('2-b'))) >= 1);
    await cluster().restart(2);
    await cluster().waitForAllAlive();

    // n3's own copy refuses to be read...
    const own = await request(cluster().nodes[2]!, 'GET', `/_node/_local/_copy/${db}/doc`);
    assert.equal(own.status, 500, own.text);
    assert.equal(own.body.error, 'unknown_error');
    // ...while reads through n3 are answered from the other copies, conflict included.
    for (const r of [1, 2]) {
      const read = await request(cluster().nodes[2]!, 'GET', `/${db}/doc?conflicts=true&r=${r}`);
      assert.equal(read.status, 200, read.text);
      assert.equal(read.body._rev, '2-c');
      assert.deepEqual(read.body._conflicts, ['2-b']);
    }
    assert.ok(
      cluster().logs(2).some((line) => line.includes('stored record is corrupt') && line.includes('"docId":"doc"')),
      'n3 logs its corrupt record',
    );
    for (const i of [0, 1]) assert.equal(await copyTree(cluster(), i, db, 'doc'), whole, `healthy copy on n${i + 1}`);
  });

  test('a copy whose stored tree lost a revision, consistently, gets it back by read repair', async () => {
    const db = uniqueDb('rh');
    assert.equal((await request(cluster().nodes[0]!, 'PUT', `/${db}`)).status, 201);
    const docs = [
      { _id: 'lost', _rev: '2-b', _revisions: { start: 2, ids: ['b', 'a'] }, v: 'b' },
      { _id: 'lost', _rev: '3-c', _revisions: { start: 3, ids: ['c', 'c', 'a'] }, v: 'c' },
    ];
    assert.equal((await request(cluster().nodes[0]!, 'POST', `/${db}/_bulk_docs`, { body: { docs, new_edits: false } })).status, 201);
    const whole = '1-a() 2-b(1-a) 2-c(1-a) 3-c(2-c)';
    for (const i of [0, 1, 2]) await eventually(async () => assert.equal(await copyTree(cluster(), i, db, 'lost'), whole), 15_000);

    // Every copy's sync checkpoints pass this doc first, so the sync that follows n3's
    // return does not revisit it: only read repair can bring the lost revision back.
    for (const i of [0, 1, 2]) assert.equal((await request(cluster().nodes[i]!, 'POST', `/${db}/_sync_shards`)).status, 202);
    // What a writer that lost a revision would have stored on n3: a self-consistent tree
    // without the 2-b leaf. It passes the read check; nothing local can bring 2-b back.
    await cluster().kill9(2);
    assert.ok((await damageStoredTree(cluster().nodes[2]!.dataDir, 'lost', loseRevision('2-b'), { consistent: true })) >= 1);
    await cluster().restart(2);
    await cluster().waitForAllAlive();
    assert.equal(await copyTree(cluster(), 2, db, 'lost'), '1-a() 2-c(1-a) 3-c(2-c)');

    // Shard sync has pushed past this doc already; a read that asks n3's copy and a
    // healthy one sees the difference and repairs n3.
    await eventually(
      async () => {
        const read = await request(cluster().nodes[2]!, 'GET', `/${db}/lost?conflicts=true&r=3`, { timeoutMs: 5_000 });
        assert.deepEqual(read.body._conflicts, ['2-b'], 'the merged read has every leaf');
        assert.equal(await copyTree(cluster(), 2, db, 'lost'), whole);
      },
      30_000,
      250,
    );
    const own = await request(cluster().nodes[2]!, 'GET', `/_node/_local/_copy/${db}/lost`);
    assert.equal(own.body.revs.find((r: { rev: string }) => r.rev === '2-b').body, true, 'the repaired leaf has its body');
  });
});
