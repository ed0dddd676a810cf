/**
 * Real three-node clusters on loopback: membership from seeds, placement, quorum
 * writes and reads through any node, shard sync convergence, kill -9 under load,
 * inter-node authentication, and PouchDB through any node.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ackedWriteChecker, Cluster, eventually, startCluster } from '../helpers/cluster';
import { continuousFeed } from '../helpers/feed';
import { request, TestNode, uniqueDb, waitFor } from '../helpers/node-process';
import { PeerClients } from '../../src/node/rpc/client';
import { rangeIndexOf } from '../../src/ring/ranges';
import { deadDetectionBoundMs, loopbackProfile } from '../../src/node/membership/config';

/** Each node's own copy of a doc, as `rev(parent)` lines: equal strings = identical trees. */
async function copyTrees(cluster: Cluster, db: string, id: string, nodes: number[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (const i of nodes) {
    const res = await request(cluster.nodes[i]!, 'GET', `/_node/_local/_copy/${encodeURIComponent(db)}/${encodeURIComponent(id)}`);
    out.set(i, res.status === 200 ? res.body.revs.map((r: any) => `${r.rev}(${r.parent ?? ''})${r.deleted ? 'd' : ''}`).join(' ') : `status ${res.status}`);
  }
  return out;
}

async function assertCopiesConverged(cluster: Cluster, db: string, ids: string[], nodes: number[]): Promise<void> {
  await eventually(async () => {
    for (const id of ids) {
      const trees = await copyTrees(cluster, db, id, nodes);
      const distinct = new Set(trees.values());
      assert.equal(distinct.size, 1, `copies of ${id} differ: ${JSON.stringify([...trees])}`);
      assert.ok(![...distinct][0]!.startsWith('status'), `copy of ${id} missing: ${[...distinct][0]}`);
    }
  }, 30_000, 200);
}

describe('a three-node cluster', () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ nodes: 3 });
  });
  after(async () => {
    await cluster?.destroy();
  });

  test('nodes find each other from seeds and report membership', async () => {
    // Short loopback timers can briefly suspect a node starved of CPU: wait, don't assume.
    await cluster.waitForAllAlive();
    for (let i = 0; i < 3; i++) {
      const m = await request(cluster.nodes[i]!, 'GET', '/_membership');
      assert.equal(m.status, 200);
      assert.deepEqual([...m.body.cluster_nodes].sort(), [...cluster.names].sort());
      assert.ok(m.body.members.every((x: any) => typeof x.incarnation === 'number' && x.address && x.httpAddress));
      assert.equal((await request(cluster.nodes[i]!, 'GET', '/_up', { auth: false })).status, 200);
    }
  });

  test('a database made on one node is usable on all, with the same placement everywhere', async () => {
    const db = uniqueDb('c');
    assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}`)).status, 201);
    const maps = [];
    for (let i = 0; i < 3; i++) {
      const info = await request(cluster.nodes[i]!, 'GET', `/${db}`);
      assert.equal(info.status, 200, `node ${i} knows ${db}`);
      assert.deepEqual(info.body.cluster, { q: 2, n: 3, w: 2, r: 2 });
      maps.push((await request(cluster.nodes[i]!, 'GET', `/${db}/_shards`)).body.shards);
    }
    assert.deepEqual(maps[1], maps[0]);
    assert.deepEqual(maps[2], maps[0]);
    for (const nodes of Object.values(maps[0] as Record<string, string[]>)) assert.equal(new Set(nodes).size, 3);
    const shard = await request(cluster.nodes[2]!, 'GET', `/${db}/_shards/some-doc`);
    assert.equal(shard.body.nodes.length, 3);
    assert.equal((await request(cluster.nodes[1]!, 'DELETE', `/${db}`)).status, 200);
    await waitFor(async () => (await request(cluster.nodes[2]!, 'GET', `/${db}`)).status === 404, 10_000, 'delete seen by all');
  });

  test('writes through any node are read through any other, and every copy converges', async () => {
    const db = uniqueDb('c');
    await request(cluster.nodes[1]!, 'PUT', `/${db}`);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      const id = `doc-${i}`;
      ids.push(id);
      const res = await request(cluster.nodes[i % 3]!, 'PUT', `/${db}/${id}`, { body: { i } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const read = await request(cluster.nodes[(i + 1) % 3]!, 'GET', `/${db}/${id}`);
      assert.equal(read.status, 200);
      assert.equal(read.body._rev, res.body.rev);
    }
    const bulk = await request(cluster.nodes[2]!, 'POST', `/${db}/_bulk_docs`, { body: { docs: Array.from({ length: 200 }, (_, i) => ({ _id: `b${i}` })) } });
    assert.equal(bulk.status, 201);
    // Range reads use one copy per range (as CouchDB's): a write acknowledged by w=2
    // may still be arriving at the third copy, so these converge rather than hold at once.
    await eventually(async () => {
      for (let i = 0; i < 3; i++) {
        const all = await request(cluster.nodes[i]!, 'GET', `/${db}/_all_docs`);
        assert.equal(all.body.total_rows, 230);
        const changes = await request(cluster.nodes[i]!, 'GET', `/${db}/_changes`);
        assert.equal(new Set(changes.body.results.map((r: any) => r.id)).size, 230);
      }
    }, 10_000);
    await assertCopiesConverged(cluster, db, ['doc-0', 'doc-7', 'b0', 'b199'], [0, 1, 2]);
  });

  test('conflicting edits made through different nodes become the same conflict everywhere', async () => {
    const db = uniqueDb('c');
    await request(cluster.nodes[0]!, 'PUT', `/${db}`);
    const base = await request(cluster.nodes[0]!, 'PUT', `/${db}/x`, { body: { v: 0 } });
    const edits = await Promise.all(
      [0, 1, 2].map((i) =>
        request(cluster.nodes[i]!, 'POST', `/${db}/_bulk_docs`, {
          body: { new_edits: false, docs: [{ _id: 'x', _rev: `2-${'abc'[i]!.repeat(32)}`, _revisions: { start: 2, ids: ['abc'[i]!.repeat(32), base.body.rev.slice(2)] }, from: i }] },
        }),
      ),
    );
    for (const e of edits) assert.equal(e.status, 201);
    await assertCopiesConverged(cluster, db, ['x'], [0, 1, 2]);
    for (let i = 0; i < 3; i++) {
      const doc = await request(cluster.nodes[i]!, 'GET', `/${db}/x?conflicts=true`);
      assert.equal(doc.body._rev, `2-${'c'.repeat(32)}`);
      assert.deepEqual(doc.body._conflicts, [`2-${'b'.repeat(32)}`, `2-${'a'.repeat(32)}`]);
    }
  });

  test('the gRPC port refuses a caller without the cluster secret', async () => {
    const impostor = new PeerClients({ secret: 'not-the-cluster-secret', dialOverrides: {} });
    try {
      await assert.rejects(
        impostor.unary(cluster.grpcAddress(0), 'Membership', 'PushPull', { members: [] }, 5000),
        (err: any) => err.token === 'unauthorized',
      );
    } finally {
      impostor.close();
    }
    const member = new PeerClients({ secret: cluster.secret, dialOverrides: {} });
    try {
      const reply = await member.unary(cluster.grpcAddress(0), 'Membership', 'PushPull', { members: [] }, 5000);
      assert.ok(reply.members.length >= 3);
    } finally {
      member.close();
    }
  });

  test('PouchDB replicates through any node', async () => {
    const PouchDB = require('pouchdb').plugin(require('pouchdb-adapter-memory'));
    const db = uniqueDb('c');
    await request(cluster.nodes[0]!, 'PUT', `/${db}`);
    const local = new PouchDB(`src-${db}`, { adapter: 'memory' });
    await local.bulkDocs(Array.from({ length: 300 }, (_, i) => ({ _id: `p${i}`, n: i })));
    const push = await local.replicate.to(new PouchDB(`${cluster.nodes[1]!.authUrl}/${db}`));
    assert.equal(push.docs_written, 300);
    const back = new PouchDB(`dst-${db}`, { adapter: 'memory' });
    const pull = await back.replicate.from(new PouchDB(`${cluster.nodes[2]!.authUrl}/${db}`));
    assert.equal(pull.docs_written, 300);
    const info = await back.info();
    assert.equal(info.doc_count, 300);
    // Live: a write on node 1 reaches a live pull from node 3.
    const live = back.replicate.from(new PouchDB(`${cluster.nodes[2]!.authUrl}/${db}`), { live: true, retry: true });
    await request(cluster.nodes[0]!, 'PUT', `/${db}/live-one`, { body: {} });
    await waitFor(async () => (await back.get('live-one').catch(() => undefined)) !== undefined, 15_000, 'live pull');
    live.cancel();
    await local.destroy();
    await back.destroy();
  });

  test('a continuous _changes feed keeps running when the node whose copy it reads and watches is killed', async () => {
    // n=2 of 3 nodes: each range lacks a copy on one node, whose feed reads it remotely.
    const db = uniqueDb('c');
    assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?q=4&n=2`)).status, 201);
    const shards = (await request(cluster.nodes[0]!, 'GET', `/${db}/_shards`)).body.shards as Record<string, string[]>;
    const [rangeName, rangeNodes] = Object.entries(shards)[0]!;
    assert.equal(rangeNodes.length, 2);
    const reader = cluster.names.findIndex((name) => !rangeNodes.includes(name));
    // Docs of that range, big enough that the feed stalls on a paused client mid-range.
    const rangeIds: string[] = [];
    for (let i = 0; rangeIds.length < 601; i++) if (rangeIndexOf(`r${i}`, 4) === 0) rangeIds.push(`r${i}`);
    const lateId = rangeIds.pop()!;
    assert.equal((await request(cluster.nodes[reader]!, 'GET', `/${db}/_shards/${rangeIds[0]}`)).body.range, rangeName);
    const pad = 'x'.repeat(8 * 1024);
    for (let at = 0; at < rangeIds.length; at += 200) {
      const docs = rangeIds.slice(at, at + 200).map((_id) => ({ _id, pad }));
      assert.equal((await request(cluster.nodes[reader]!, 'POST', `/${db}/_bulk_docs`, { body: { docs } })).status, 201);
    }
    // The reader's feed reads the range from the first copy in placement order.
    const victim = cluster.names.indexOf(rangeNodes[0]!);
    const feed = continuousFeed(cluster.nodes[reader]!.port, db, 'include_docs=true&heartbeat=30000');
    const seen = feed.ids;
    assert.equal(await feed.status, 200);
    try {
      await waitFor(async () => seen.size > 0, 10_000, 'first rows');
      // Stop reading: the feed blocks on a full socket, its remote cursor open mid-range.
      feed.pause();
      await new Promise((r) => setTimeout(r, 500));
      await cluster.kill9(victim);
      feed.resume();
      await waitFor(async () => rangeIds.every((id) => seen.has(id)), 30_000, 'every row of the range after the copy was lost');
      // Still live: a new write in that range arrives, though the copy the feed watched is gone.
      const late = await request(cluster.nodes[reader]!, 'PUT', `/${db}/${lateId}`, { body: {} });
      assert.equal(late.status, 202, 'one of the range\'s two copies took it');
      await waitFor(async () => seen.has(lateId), 15_000, 'a write after the kill reaches the feed');
      assert.equal(feed.ended(), false, 'the feed is still open');
    } finally {
      feed.close();
      await cluster.restart(victim);
      await cluster.waitForAllAlive();
    }
  });

  test('kill -9 under write load: writes keep answering 201, survivors have every acknowledged write, the node catches up', async () => {
    const db = uniqueDb('c');
    await request(cluster.nodes[0]!, 'PUT', `/${db}`);
    const acked = ackedWriteChecker();
    const statuses = new Map<number, number>();
    let stop = false;
    let afterKill = false;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const target = cluster.nodes[w % 2]!; // nodes 0 and 1 stay up
        try {
          const res = await request(target, 'PUT', `/${db}/w${w}-${i}`, { body: { w, i } });
          acked.record(res);
          if (afterKill) statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        } catch {
          // connection trouble to a live node is a failure of the test below
          statuses.set(-1, (statuses.get(-1) ?? 0) + 1);
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    await waitFor(async () => acked.ids().length > 100, 15_000, 'writes before the kill');
    await cluster.kill9(2);
    afterKill = true;
    await waitFor(async () => (statuses.get(201) ?? 0) > 200, 30_000, 'writes after the kill');
    stop = true;
    await Promise.all(writers);
    assert.equal(statuses.get(-1) ?? 0, 0, 'writes to live nodes failed');
    assert.ok((statuses.get(201) ?? 0) > 0);
    assert.equal(statuses.get(500) ?? 0, 0);
    await acked.verify([cluster.nodes[0]!, cluster.nodes[1]!], db);

    await cluster.restart(2);
    await cluster.waitForAllAlive();
    const ids = acked.ids();
    await assertCopiesConverged(cluster, db, [ids[0]!, ids[Math.floor(ids.length / 2)]!, ids[ids.length - 1]!], [0, 1, 2]);
    await acked.verify(cluster.nodes, db);
    const counts = await Promise.all([0, 1, 2].map(async (i) => (await request(cluster.nodes[i]!, 'GET', `/${db}`)).body.doc_count));
    assert.deepEqual(counts, [ids.length, ids.length, ids.length]);
  });

  test('membership: a killed node is marked dead within the documented bound; a paused node refutes and rejoins', async () => {
    const boundMs = deadDetectionBoundMs(loopbackProfile, 3);
    await cluster.kill9(2);
    const started = Date.now();
    const name = cluster.name(2);
    await cluster.waitForMembers(0, { [name]: 'dead' }, boundMs + 5_000);
    const tookMs = Date.now() - started;
    assert.ok(tookMs <= boundMs + 5_000, `dead after ${tookMs} ms (bound ${boundMs} ms)`);
    await cluster.restart(2);
    await cluster.waitForAllAlive();

    cluster.pause(1);
    await cluster.waitForMembers(0, { [cluster.name(1)]: 'suspect' }, 20_000).catch(async () =>
      cluster.waitForMembers(0, { [cluster.name(1)]: 'dead' }, 20_000),
    );
    cluster.resume(1);
    await cluster.waitForAllAlive();
    const m = await cluster.membership(0);
    const paused = m.members!.find((x) => x.name === cluster.name(1))!;
    assert.equal(paused.state, 'alive');
    assert.ok(paused.incarnation > 0, 'the paused node refuted with a higher incarnation');
  });
});

export type { TestNode };
