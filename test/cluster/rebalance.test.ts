/**
 * Rebalancing with real node processes: a node that joins after a database was made
 * gets its share of the ranges, and a dead node's ranges are given to live ones; in
 * both, every new copy holds every acknowledged revision before an old copy is let go,
 * and a node moved off a range clears its copy (after handing over anything only it had).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { ackedWriteChecker, Cluster, eventually, startCluster } from '../helpers/cluster';
import { continuousFeed } from '../helpers/feed';
import { ADMIN, request, uniqueDb } from '../helpers/node-process';

const execFileAsync = promisify(execFile);
import { placeDatabase } from '../../src/ring/placement';
import { rangeIndexOf } from '../../src/ring/ranges';

let cluster: Cluster;
before(async () => {
  cluster = await startCluster({ nodes: 4 });
});
after(async () => {
  await cluster?.destroy();
});

const members = (indexes: number[]) => indexes.map((i) => ({ name: cluster.name(i) }));

/** Each node's own copy of `id`: its winning revision, or null when it holds no copy of the range. */
async function copyWinner(i: number, db: string, id: string): Promise<string | null> {
  const res = await request(cluster.nodes[i]!, 'GET', `/_node/_local/_copy/${db}/${encodeURIComponent(id)}`);
  if (res.status === 404 && /holds no copy/.test(res.body.reason)) return null;
  assert.equal(res.status, 200, `node ${i} copy of ${id}: ${JSON.stringify(res.body)}`);
  return res.body.winner;
}

async function writeDocs(db: string, prefix: string, count: number, via: number[], acked: ReturnType<typeof ackedWriteChecker>): Promise<void> {
  for (let at = 0; at < count; at += 100) {
    const docs = Array.from({ length: Math.min(100, count - at) }, (_, k) => ({ _id: `${prefix}${at + k}`, v: at + k }));
    const res = await request(cluster.nodes[via[(at / 100) % via.length]!]!, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
    assert.equal(res.status, 201);
    for (const row of res.body) acked.recordRev(row.id, row.rev);
  }
}

/** Every acknowledged doc is on each copy the placement names, with its acknowledged revision. */
async function assertPlacedCopies(db: string, placement: string[][], acked: ReturnType<typeof ackedWriteChecker>): Promise<void> {
  for (const id of acked.ids()) {
    const [rev] = acked.acked.get(id)!;
    for (const node of placement[rangeIndexOf(id, placement.length)]!) {
      assert.equal(await copyWinner(cluster.names.indexOf(node), db, id), rev, `${id} on ${node}`);
    }
  }
}

test('a node that joins after a database was made gets its share of the ranges', async () => {
  await cluster.kill9(3);
  await cluster.waitForMembers(0, { [cluster.name(3)]: 'dead' }, 30_000);
  // A name whose placement over four nodes gives n4 at least one range.
  let db = '';
  for (let k = 0; !db; k++) {
    const candidate = `${uniqueDb('grow')}-${k}`;
    if (placeDatabase(candidate, 4, 2, members([0, 1, 2, 3])).some((nodes) => nodes.includes(cluster.name(3)))) db = candidate;
  }
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?q=4&n=2`)).status, 201);
  const acked = ackedWriteChecker();
  await writeDocs(db, 'g', 400, [0, 1, 2], acked);
  const before = (await request(cluster.nodes[0]!, 'GET', `/${db}/_shards`)).body.shards as Record<string, string[]>;
  assert.ok(Object.values(before).every((nodes) => !nodes.includes(cluster.name(3))), 'n4 was down at creation');

  // A replication checkpoint in every range (local docs are not in the changes feed).
  const checkpoints = [0, 1, 2, 3].map((range) => {
    let k = 0;
    while (rangeIndexOf(`_local/ck${k}`, 4) !== range) k++;
    return `ck${k}`;
  });
  for (const ck of checkpoints) assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}/_local/${ck}`, { body: { last_seq: ck } })).status, 201);

  await cluster.restart(3);
  await cluster.waitForAllAlive();
  // A live feed on a node that is about to let a range go to n4.
  const planned = placeDatabase(db, 4, 2, members([0, 1, 2, 3]));
  const givenUp = Object.values(before).findIndex((nodes, range) => nodes.some((node) => !planned[range]!.includes(node)));
  const feedNode = cluster.names.indexOf(Object.values(before)[givenUp]!.find((node) => !planned[givenUp]!.includes(node))!);
  const feed = continuousFeed(cluster.nodes[feedNode]!.port, db, 'heartbeat=1000');
  await eventually(async () => assert.ok(feed.ids.has('g0')), 10_000);

  const res = await request(cluster.nodes[1]!, 'POST', `/${db}/_rebalance`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.ok(res.body.moved.length > 0);
  for (const move of res.body.moved) assert.deepEqual(move.added, [cluster.name(3)], `only n4 gains: ${JSON.stringify(move)}`);

  const target = placeDatabase(db, 4, 2, members([0, 1, 2, 3]));
  for (const i of [0, 1, 2, 3]) {
    const shards = (await request(cluster.nodes[i]!, 'GET', `/${db}/_shards`)).body.shards as Record<string, string[]>;
    assert.deepEqual(Object.values(shards).map((nodes) => [...nodes].sort()), target.map((nodes) => [...nodes].sort()), `placement seen by node ${i}`);
  }
  // The new copies were filled before the answer; the old holders let theirs go.
  await assertPlacedCopies(db, target, acked);
  const dropped = res.body.moved.flatMap((move: any) => move.removed.map((node: string) => ({ node, range: Object.keys(before).indexOf(move.range) })));
  const idIn = (range: number) => acked.ids().find((id) => rangeIndexOf(id, 4) === range)!;
  await eventually(async () => {
    for (const { node, range } of dropped) assert.equal(await copyWinner(cluster.names.indexOf(node), db, idIn(range)), null, `${node} let range ${range} go`);
  }, 15_000, 200);
  // The new holder has the checkpoints of its ranges (it reads its own copy first).
  for (const ck of checkpoints) {
    const got = await request(cluster.nodes[3]!, 'GET', `/${db}/_local/${ck}`);
    assert.equal(got.status, 200, `_local/${ck} through n4`);
    assert.deepEqual([got.body._rev, got.body.last_seq], ['0-1', ck]);
  }
  // The feed now reads the range from its new holders: writes there still reach it.
  try {
    const late: string[] = [];
    for (let k = 0; late.length < 5; k++) if (rangeIndexOf(`late${k}`, 4) === givenUp) late.push(`late${k}`);
    for (const id of late) assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}/${id}`, { body: {} })).status, 201);
    await eventually(async () => assert.deepEqual(late.filter((id) => !feed.ids.has(id)), [], `feed on ${cluster.name(feedNode)}`), 15_000, 200);
    assert.equal(feed.ended(), false);
  } finally {
    feed.close();
  }
  // Business as usual afterwards: writes reach w=2 of the new placement.
  for (let i = 0; i < 10; i++) assert.equal((await request(cluster.nodes[3]!, 'PUT', `/${db}/after-${i}`, { body: {} })).status, 201);
  assert.equal((await request(cluster.nodes[2]!, 'GET', `/${db}`)).body.doc_count, 415);
  // Nothing left to move: a second rebalance is a no-op.
  assert.deepEqual((await request(cluster.nodes[0]!, 'POST', `/${db}/_rebalance`)).body, { ok: true, moved: [] });
});

test('a dead node\'s ranges are given to the live nodes, and it hands over and clears its copies when it returns', async () => {
  await cluster.waitForAllAlive();
  const db = uniqueDb('heal');
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?q=4&n=3`)).status, 201);
  const placement = Object.values((await request(cluster.nodes[0]!, 'GET', `/${db}/_shards`)).body.shards as Record<string, string[]>);
  const victimName = placement.flat().find((node) => node !== cluster.name(0))!;
  const victim = cluster.names.indexOf(victimName);
  const live = [0, 1, 2, 3].filter((i) => i !== victim);
  const acked = ackedWriteChecker();
  await writeDocs(db, 'h', 300, live, acked);

  await cluster.kill9(victim);
  await cluster.waitForMembers(0, { [victimName]: 'dead' }, 30_000);
  await writeDocs(db, 'd', 200, live, acked); // while it is down (201: w=2 of 3)
  // Checkpoints keep working with a copy down, in every range.
  for (let k = 0; k < 12; k++) {
    const put = await request(cluster.nodes[live[k % 3]!]!, 'PUT', `/${db}/_local/down${k}`, { body: { k } });
    assert.equal(put.status, 201, `_local/down${k} with ${victimName} down: ${JSON.stringify(put.body)}`);
    const again = await request(cluster.nodes[live[(k + 1) % 3]!]!, 'PUT', `/${db}/_local/down${k}`, { body: { k, again: true }, headers: { 'if-match': put.body.rev } });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal((await request(cluster.nodes[live[(k + 2) % 3]!]!, 'GET', `/${db}/_local/down${k}`)).body.again, true);
  }
  const res = await request(cluster.nodes[0]!, 'POST', `/${db}/_rebalance`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.ok(res.body.moved.length > 0 && res.body.moved.every((m: any) => m.removed.includes(victimName)), JSON.stringify(res.body.moved));
  const target = placeDatabase(db, 4, 3, members(live));
  assert.ok(target.every((nodes) => !nodes.includes(victimName)));
  await assertPlacedCopies(db, target, acked);
  await acked.verify(live.map((i) => cluster.nodes[i]!), db);

  // It comes back: it learns it holds nothing of this database and clears its copies.
  await cluster.restart(victim);
  await cluster.waitForAllAlive();
  await eventually(async () => {
    for (const id of acked.ids().slice(0, 20)) assert.equal(await copyWinner(victim, db, id), null, `${victimName} cleared its copy of ${id}`);
  }, 15_000, 200);
  assert.equal((await request(cluster.nodes[victim]!, 'GET', `/${db}`)).body.doc_count, 500);
});

test('a range moved off a node and back: a since from its old copy skips nothing in the new one', async () => {
  await cluster.waitForAllAlive();
  const db = uniqueDb('back');
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?q=1&n=3`)).status, 201);
  const holders = Object.values((await request(cluster.nodes[0]!, 'GET', `/${db}/_shards`)).body.shards as Record<string, string[]>)[0]!;
  const x = cluster.names.indexOf(holders.find((node) => node !== cluster.name(0))!);
  // One document edited many times: x's copy counts every edit, a fresh copy gets the doc once.
  let rev = (await request(cluster.nodes[0]!, 'PUT', `/${db}/hot`, { body: { n: 0 } })).body.rev as string;
  for (let n = 1; n <= 400; n++) rev = (await request(cluster.nodes[0]!, 'PUT', `/${db}/hot`, { body: { n }, headers: { 'if-match': rev } })).body.rev;
  assert.ok(rev.startsWith('401-'), rev);
  await eventually(async () => assert.equal(await copyWinner(x, db, 'hot'), rev), 10_000);
  // A client's position on x's own copy.
  const since = (await request(cluster.nodes[x]!, 'GET', `/${db}/_changes?limit=0`)).body.last_seq as string;
  assert.ok(Number(since.split('-')[0]) >= 401, `x's copy is at ${since.split('-')[0]}`);

  await cluster.kill9(x);
  await cluster.waitForMembers(0, { [cluster.name(x)]: 'dead' }, 30_000);
  assert.equal((await request(cluster.nodes[0]!, 'POST', `/${db}/_rebalance`)).status, 200);
  const mid = Array.from({ length: 100 }, (_, i) => ({ _id: `mid${i}` }));
  assert.equal((await request(cluster.nodes[0]!, 'POST', `/${db}/_bulk_docs`, { body: { docs: mid } })).status, 201);
  await cluster.restart(x);
  await cluster.waitForAllAlive();
  await eventually(async () => {
    assert.equal(await copyWinner(x, db, 'hot'), null, 'x no longer serves its old copy');
    assert.ok(cluster.logs(x).some((line) => line.includes('cleared it') && line.includes(db)), 'x handed over and cleared its old copy');
  }, 15_000, 200);
  const back = await request(cluster.nodes[0]!, 'POST', `/${db}/_rebalance`);
  assert.ok(back.body.moved.some((m: any) => m.added.includes(cluster.name(x))), JSON.stringify(back.body));

  const changes = await request(cluster.nodes[x]!, 'GET', `/${db}/_changes?since=${encodeURIComponent(since)}`);
  assert.equal(changes.status, 200);
  const seen = new Set((changes.body.results as { id: string }[]).map((r) => r.id));
  const missing = mid.map((d) => d._id).filter((id) => !seen.has(id));
  assert.deepEqual(missing, [], `rows written after the client's position, read from x's new copy`);
});

test('divan rebalance (the CLI) walks every database and reports what moved', async () => {
  await cluster.waitForAllAlive();
  const main = path.resolve(__dirname, '../../src/node/main.js');
  const run = async () => (await execFileAsync(process.execPath, [main, 'rebalance', '--url', cluster.nodes[0]!.url, '-u', ADMIN.user, '-p', ADMIN.password])).stdout.trim().split('\n');
  const dbs = (await request(cluster.nodes[0]!, 'GET', '/_all_dbs')).body as string[];
  // The node that came back in the last test is owed its share of that test's database.
  const first = await run();
  assert.deepEqual(first.map((line) => line.split(':')[0]).sort(), [...dbs].sort());
  assert.ok(first.some((line) => !line.endsWith(': in place')), first.join('\n'));
  const second = await run();
  for (const line of second) assert.match(line, /: in place$/);
});
