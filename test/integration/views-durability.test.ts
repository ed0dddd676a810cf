/**
 * A view build killed with -9 mid-way: the node restarts with no repair step, the index
 * keeps the checkpoint it had reached (never rows without their checkpoint or the
 * reverse), and the next query finishes the build with every row right.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDb, request, startNode, TestNode, waitFor } from '../helpers/node-process';

let node: TestNode | undefined;
after(async () => {
  await node?.destroy();
});

test('kill -9 during a view build: restart resumes from the last checkpoint, rows exact', async () => {
  node = await startNode();
  const db = await createDb(node, 'vkill', 2);
  const total = 30_000;
  for (let at = 0; at < total; at += 5000) {
    const docs = Array.from({ length: 5000 }, (_, i) => ({ _id: `d${String(at + i).padStart(6, '0')}`, n: at + i }));
    const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
    assert.equal(res.status, 201);
  }
  // A map function slow enough that the build takes seconds.
  const map = 'function(doc){ var x = 0; for (var i = 0; i < 20000; i++) { x += i; } emit(doc.n, x > 0 ? 1 : 0); }';
  assert.equal((await request(node, 'PUT', `/${db}/_design/k`, { body: { views: { n: { map, reduce: '_count' } } } })).status, 201);
  const building = request(node, 'GET', `/${db}/_design/k/_view/n?limit=1`, { timeoutMs: 120_000 }).catch(() => undefined);
  // Wait until some batches are durable, but not all.
  await waitFor(async () => {
    const tasks = (await request(node!, 'GET', '/_active_tasks')).body as { changes_done: number; total_changes: number }[];
    return tasks.some((t) => t.changes_done >= 2000 && t.changes_done < t.total_changes);
  }, 60_000, 'a build part way');
  await node.kill9();
  await building;
  node = await node.restart();
  const info = await request(node, 'GET', `/${db}/_design/k/_info`);
  assert.equal(info.status, 200, info.text);
  const reached = Number(String(info.body.view_index.update_seq).split('-')[0]);
  assert.ok(reached > 0 && reached < total + 1, `checkpoint kept: ${reached}`);
  // What the index holds now agrees with its checkpoint: a stale read shows exactly those rows.
  const stale = await request(node, 'GET', `/${db}/_design/k/_view/n?update=false&reduce=false`);
  assert.equal(stale.status, 200);
  assert.equal(stale.body.total_rows, stale.body.rows.length);
  for (const row of stale.body.rows) assert.equal(row.id, `d${String(row.key).padStart(6, '0')}`);
  // The next query finishes from there: every document exactly once.
  const full = await request(node, 'GET', `/${db}/_design/k/_view/n?reduce=false`, { timeoutMs: 120_000 });
  assert.equal(full.status, 200);
  assert.equal(full.body.rows.length, total);
  full.body.rows.forEach((row: { key: number; id: string }, i: number) => {
    assert.equal(row.key, i);
    assert.equal(row.id, `d${String(i).padStart(6, '0')}`);
  });
  assert.deepEqual((await request(node, 'GET', `/${db}/_design/k/_view/n`)).body.rows, [{ key: null, value: total }]);
});

test('a collation group past viewSideGroupRowsMax fails that read with a clear 500; the node keeps serving', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'divan-cfg-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ viewSideGroupRowsMax: 5 }));
  const small = await startNode({ args: ['--config', file] });
  try {
    const db = await createDb(small, 'vgroup', 1);
    // Cyrillic keys share one side group (the codec ends their code at the first letter).
    const docs = Array.from({ length: 12 }, (_, i) => ({ _id: `c${i}`, name: `Жук ${i}` }));
    assert.equal((await request(small, 'POST', `/${db}/_bulk_docs`, { body: { docs } })).status, 201);
    assert.equal((await request(small, 'PUT', `/${db}/_design/g`, { body: { views: { n: { map: 'function(doc){ if (doc.name) emit(doc.name, null); }' }, ascii: { map: 'function(doc){ emit(doc._id, null); }' } } } })).status, 201);
    const res = await request(small, 'GET', `/${db}/_design/g/_view/n`);
    assert.equal(res.status, 500, res.text);
    assert.equal(res.body.error, 'view_group_too_large');
    // Exactly ordered keys of the same index are unaffected, and so is the node.
    const ok = await request(small, 'GET', `/${db}/_design/g/_view/ascii?limit=3`);
    assert.deepEqual(ok.body.rows.map((r: { id: string }) => r.id), ['c0', 'c1', 'c10']);
    assert.equal((await request(small, 'GET', `/${db}/c1`)).status, 200);
  } finally {
    await small.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
