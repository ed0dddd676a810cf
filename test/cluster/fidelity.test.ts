/**
 * Integers beyond 2^53 stay exact across the cluster (issue 8, item 12): through the
 * shard RPC for edits the coordinator builds from a stored body (attachment PUT), and
 * through shard sync, which re-sends stored revisions to a copy that missed them.
 * Reads use `?r=1`, which each node answers from its own copy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterPerSuite, eventually } from '../helpers/cluster';
import { request, uniqueDb } from '../helpers/node-process';

const BIG = '9007199254740993';
const FIELDS = `"n":${BIG},"m":[-123456789012345678901234567890]`;

const cluster = clusterPerSuite({ nodes: 3 });

test('big integers survive the shard RPC and shard sync to a copy that was down', async () => {
  const db = uniqueDb('fid');
  assert.equal((await request(cluster().nodes[0]!, 'PUT', `/${db}?q=1&n=3`)).status, 201);
  await cluster().kill9(2);
  const put = await request(cluster().nodes[0]!, 'PUT', `/${db}/doc`, { raw: `{${FIELDS}}`, headers: { 'content-type': 'application/json' } });
  assert.ok(put.status === 201 || put.status === 202, put.text);
  // An attachment PUT re-serialises the stored body on the coordinator and sends it to
  // every copy over the shard RPC.
  const att = await request(cluster().nodes[1]!, 'PUT', `/${db}/doc/a.txt?rev=${put.body.rev}`, { raw: 'hi', headers: { 'content-type': 'text/plain' } });
  assert.ok(att.status === 201 || att.status === 202, att.text);
  const rev = att.body.rev as string;
  for (const i of [0, 1]) {
    const read = await request(cluster().nodes[i]!, 'GET', `/${db}/doc?r=1`);
    assert.equal(read.body._rev, rev, `node ${i}: ${read.text}`);
    assert.ok(read.text.includes(FIELDS), `node ${i}: ${read.text}`);
  }
  await cluster().restart(2);
  await cluster().waitForAllAlive();
  await eventually(async () => {
    const sync = await request(cluster().nodes[0]!, 'POST', `/${db}/_sync_shards`);
    assert.equal(sync.status, 202, sync.text);
    const read = await request(cluster().nodes[2]!, 'GET', `/${db}/doc?r=1`);
    assert.equal(read.body?._rev, rev, read.text);
    assert.ok(read.text.includes(FIELDS), read.text);
  }, 30_000, 500);
});
