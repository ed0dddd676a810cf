/**
 * `_replicator` in a 3-node cluster (issue 12): a replication document runs on exactly
 * one live node, chosen from its id over the members; when that node is killed (-9)
 * another member takes the document over and goes on from the checkpoint, so writes
 * made after the kill reach the target.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterPerSuite } from '../helpers/cluster';
import { request, waitFor } from '../helpers/node-process';

const cluster = clusterPerSuite({ nodes: 3 });

interface SchedulerDoc {
  doc_id: string;
  node: string;
  state: string;
  id: string | null;
}

async function docRow(nodeIndex: number, docId: string): Promise<SchedulerDoc | undefined> {
  const reply = await request(cluster().nodes[nodeIndex]!, 'GET', '/_scheduler/docs');
  if (reply.status !== 200) return undefined;
  return (reply.body.docs as SchedulerDoc[]).find((d) => d.doc_id === docId);
}

test('a continuous _replicator job runs on one node, and moves to another when that node dies', async () => {
  const c = cluster();
  const [first] = c.nodes;
  assert.equal((await request(first!, 'PUT', '/ward-src')).status, 201);
  assert.equal((await request(first!, 'PUT', '/ward-dst')).status, 201);
  assert.equal((await request(first!, 'PUT', '/ward-src/before', { body: { t: 0 } })).status, 201);
  const made = await request(first!, 'PUT', '/_replicator/ward', { body: { source: 'ward-src', target: 'ward-dst', continuous: true, checkpoint_interval: 500 } });
  assert.equal(made.status, 201, made.text);

  const running = await waitFor(async () => {
    const row = await docRow(0, 'ward');
    return row?.state === 'running' ? row : undefined;
  }, 30_000, 'the document running somewhere');
  // Exactly one node runs it.
  const counts = await Promise.all(c.nodes.map(async (n) => ((await request(n, 'GET', '/_node/_local/_scheduler/jobs')).body.jobs as unknown[]).length));
  assert.deepEqual(counts.filter((k) => k > 0).length, 1, `jobs per node: ${counts}`);
  const owner = c.names.indexOf(running.node);
  assert.ok(owner >= 0, `owner ${running.node} among ${c.names}`);
  const other = (owner + 1) % 3;
  await waitFor(async () => (await request(c.nodes[other]!, 'GET', '/ward-dst/before')).status === 200, 20_000, 'the first write replicated');

  await c.kill9(owner);
  assert.equal((await request(c.nodes[other]!, 'PUT', '/ward-src/after', { body: { t: 1 } })).status, 201);
  await waitFor(async () => (await request(c.nodes[other]!, 'GET', '/ward-dst/after')).status === 200, 60_000, 'a write made after the kill replicated by the new owner');
  const moved = await waitFor(async () => {
    const row = await docRow(other, 'ward');
    return row && row.node !== running.node && row.state === 'running' ? row : undefined;
  }, 30_000, 'the document owned by a survivor');
  assert.notEqual(moved.node, running.node);
});
