/**
 * Crash-only durability: a node killed with SIGKILL in the middle of a write load
 * restarts with no repair step and has every write it acknowledged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request, startNode } from '../helpers/node-process';

test('no acknowledged write is lost to kill -9', async () => {
  let node = await startNode();
  try {
    const db = 'crash';
    assert.equal((await request(node, 'PUT', `/${db}`)).status, 201);
    const acked = new Map<string, string>();
    let stop = false;
    let failures = 0;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const id = `w${w}-${i}`;
        try {
          const single = i % 3 !== 0;
          if (single) {
            const res = await request(node, 'PUT', `/${db}/${id}`, { body: { w, i, pad: 'x'.repeat(200) } });
            if (res.status === 201) acked.set(id, res.body.rev);
          } else {
            const docs = Array.from({ length: 20 }, (_, j) => ({ _id: `${id}-b${j}`, j }));
            const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
            if (res.status === 201) for (const row of res.body) if (row.ok) acked.set(row.id, row.rev);
          }
        } catch {
          failures++; // the connection died with the node: not acknowledged
          return;
        }
      }
    };
    const writers = Array.from({ length: 8 }, (_, w) => writer(w));
    // Kill once a fair amount was acknowledged, while writes are in flight.
    const deadline = Date.now() + 20_000;
    while (acked.size < 1500 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await node.kill9();
    stop = true;
    await Promise.all(writers);
    assert.ok(acked.size >= 1500, `only ${acked.size} writes acknowledged before the kill`);

    node = await node.restart();
    const ids = [...acked.keys()];
    for (let at = 0; at < ids.length; at += 500) {
      const slice = ids.slice(at, at + 500);
      const res = await request(node, 'POST', `/${db}/_all_docs`, { body: { keys: slice } });
      res.body.rows.forEach((row: any, i: number) => {
        assert.equal(row.id, slice[i], `acknowledged doc ${slice[i]} is missing after kill -9`);
        assert.equal(row.value.rev, acked.get(slice[i]!), `doc ${slice[i]} has another rev`);
      });
    }
    const info = await request(node, 'GET', `/${db}`);
    assert.ok(info.body.doc_count >= acked.size, 'doc_count agrees with what was acknowledged');
    const all = await request(node, 'GET', `/${db}/_all_docs?limit=0`);
    assert.equal(all.body.total_rows, info.body.doc_count);
    // The restarted node keeps working.
    assert.equal((await request(node, 'PUT', `/${db}/after-restart`, { body: {} })).status, 201);
  } finally {
    await node.destroy();
  }
});
