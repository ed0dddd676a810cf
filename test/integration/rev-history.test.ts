/**
 * Revision histories that real clients produce, against one live Divan node, compared
 * with what CouchDB 3.5 does with them (issue 16, items 1 and 7):
 *
 * - one hash at several depths (`1-a → 2-c → 3-c`). PouchDB finds a revision's place
 *   in its history by hash alone, so it pushes 3-c as `_rev: "3-c"` with the
 *   `_revisions` of 2-c. CouchDB ignores `_rev` when `_revisions` is given, stores 2-c
 *   with 3-c's body and counts no failure; so must we (PouchDB's "Testing allDocs
 *   with some conflicts (issue #468)"). Pulling such trees from us must work too
 *   ("Replication of multiple remote conflicts (#789)").
 * - a bare `1-` written with new_edits=false is stored and served as `1-` (PouchDB's
 *   test 7829); an interactive write naming `1-` conflicts unless it is a leaf.
 *
 * - a stored tree that is corrupt on disk is found on read: the request fails with
 *   500 unknown_error and a log line, the node keeps serving everything else.
 *
 * Divan's side is read over plain HTTP so a PouchDB quirk cannot hide a server fault.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request, startNode, uniqueDb, type TestNode } from '../helpers/node-process';
import { damageStoredTree, loseRevision } from '../helpers/stored-docs';
import { localDb, remoteDb, replicateOnce, type Pouch } from '../helpers/pouch';

let node: TestNode;
const logLines: string[] = [];

before(async () => {
  node = await startNode({ onStdoutLine: (line) => logLines.push(line) });
});

after(async () => {
  await node?.destroy();
});

/** PouchDB's test helper `putAfter`: write `doc` as a child of `parent` with new_edits=false. */
async function putAfter(db: Pouch, doc: { _id: string; _rev: string; [k: string]: unknown }, parent: string): Promise<void> {
  const [pos, hash] = [Number(doc._rev.split('-')[0]), doc._rev.slice(doc._rev.indexOf('-') + 1)];
  const parentHash = parent.slice(parent.indexOf('-') + 1);
  await db.bulkDocs([{ ...doc, _revisions: { start: pos, ids: [hash, parentHash] } }], { new_edits: false });
}

/** Every leaf Divan holds for `id`: rev → body, from `open_revs=all`. */
async function divanLeaves(dbName: string, id: string): Promise<Map<string, Record<string, unknown>>> {
  const reply = await request(node, 'GET', `/${encodeURIComponent(dbName)}/${encodeURIComponent(id)}?open_revs=all&revs=true`);
  assert.equal(reply.status, 200, reply.text);
  const out = new Map<string, Record<string, unknown>>();
  for (const item of reply.body as { ok?: Record<string, unknown> }[]) if (item.ok) out.set(item.ok._rev as string, item.ok);
  return out;
}

test('a history with one hash at two depths replicates as CouchDB does (#468)', async () => {
  const dbName = uniqueDb('revhist');
  const db1 = localDb('revhist');
  const db2 = remoteDb(node, dbName);
  await db1.bulkDocs([{ _id: 'foo', _rev: '1-a', value: 'generic' }], { new_edits: false });
  await db2.bulkDocs([{ _id: 'foo', _rev: '1-a', value: 'generic' }], { new_edits: false });
  await putAfter(db2, { _id: 'foo', _rev: '2-b', value: 'db2' }, '1-a');
  await putAfter(db1, { _id: 'foo', _rev: '2-c', value: 'whatever' }, '1-a');
  await putAfter(db1, { _id: 'foo', _rev: '3-c', value: 'db1' }, '2-c');
  assert.equal((await db1.get('foo')).value, 'db1');
  assert.equal((await db2.get('foo')).value, 'db2');

  const push = await replicateOnce(db1, db2);
  assert.equal(push.ok, true);
  assert.equal(push.doc_write_failures, 0, JSON.stringify(push.errors));
  assert.equal(push.docs_written, 1);
  // What CouchDB 3.5 stores: 2-c (PouchDB's _revisions) carrying 3-c's body, winning over 2-b.
  const leaves = await divanLeaves(dbName, 'foo');
  assert.deepEqual([...leaves.keys()].sort(), ['2-b', '2-c']);
  assert.equal(leaves.get('2-c')!.value, 'db1');
  assert.deepEqual(leaves.get('2-c')!._revisions, { start: 2, ids: ['c', 'a'] });
  const winner = await request(node, 'GET', `/${encodeURIComponent(dbName)}/foo?conflicts=true`);
  assert.equal(winner.body._rev, '2-c');
  assert.deepEqual(winner.body._conflicts, ['2-b']);

  const pull = await replicateOnce(db2, db1);
  assert.equal(pull.ok, true);
  assert.equal(pull.doc_write_failures, 0, JSON.stringify(pull.errors));
  assert.equal((await db1.get('foo')).value, 'db1');
  assert.equal((await db2.get('foo')).value, 'db1');
  const all1 = await db1.allDocs({ include_docs: true });
  const all2 = await db2.allDocs({ include_docs: true });
  assert.equal(all1.rows[0].doc.value, 'db1');
  assert.equal(all2.rows[0].doc.value, 'db1');
  const info = await request(node, 'GET', `/${encodeURIComponent(dbName)}`);
  assert.equal(info.body.doc_count, 1);
});

test('the history a correct client sends for 1-a → 2-c → 3-c is stored whole', async () => {
  const dbName = uniqueDb('revhist');
  await request(node, 'PUT', `/${dbName}`);
  const docs = [
    { _id: 'foo', _rev: '2-b', _revisions: { start: 2, ids: ['b', 'a'] }, v: 'b' },
    { _id: 'foo', _rev: '3-c', _revisions: { start: 3, ids: ['c', 'c', 'a'] }, v: 'c' },
  ];
  const reply = await request(node, 'POST', `/${dbName}/_bulk_docs`, { body: { docs, new_edits: false } });
  assert.equal(reply.status, 201, reply.text);
  const leaves = await divanLeaves(dbName, 'foo');
  assert.deepEqual([...leaves.keys()].sort(), ['2-b', '3-c']);
  assert.deepEqual(leaves.get('3-c')!._revisions, { start: 3, ids: ['c', 'c', 'a'] });
  const info = await request(node, 'GET', `/${dbName}/foo?revs_info=true`);
  assert.deepEqual(
    info.body._revs_info.map((r: { rev: string }) => r.rev),
    ['3-c', '2-c', '1-a'],
  );
  const diff = await request(node, 'POST', `/${dbName}/_revs_diff`, { body: { foo: ['1-a', '2-c', '3-c', '2-a', '3-b'] } });
  assert.deepEqual(diff.body.foo.missing, ['2-a', '3-b']);
});

test('pulling a tree whose branches reuse one hash gets every conflict (#789)', async () => {
  const dbName = uniqueDb('revhist');
  const remote = remoteDb(node, dbName);
  await remote.bulkDocs([{ _id: '789', _rev: '1-a', value: 'test' }], { new_edits: false });
  await putAfter(remote, { _id: '789', _rev: '2-a', value: 'v1' }, '1-a');
  await putAfter(remote, { _id: '789', _rev: '2-b', value: 'v2' }, '1-a');
  await putAfter(remote, { _id: '789', _rev: '2-c', value: 'v3' }, '1-a');
  assert.deepEqual([...(await divanLeaves(dbName, '789')).keys()].sort(), ['2-a', '2-b', '2-c']);

  const db = localDb('revhist');
  const result = await replicateOnce(remote, db);
  assert.equal(result.ok, true);
  assert.equal(result.doc_write_failures, 0);
  const local = (await db.get('789', { open_revs: 'all' })) as { ok: { _rev: string; value: string } }[];
  assert.deepEqual(local.map((r) => r.ok._rev).sort(), ['2-a', '2-b', '2-c']);
  const winner = await db.get('789', { conflicts: true });
  assert.equal(winner._rev, '2-c');
  assert.deepEqual([...winner._conflicts].sort(), ['2-a', '2-b']);
});

test('a bare 1- is accepted with new_edits=false and served as written (7829)', async () => {
  const dbName = uniqueDb('revhist');
  const remote = remoteDb(node, dbName);
  await remote.bulkDocs([{ _id: 'x', _rev: '1-', value: 1 }], { new_edits: false });
  const got = await request(node, 'GET', `/${dbName}/x`);
  assert.equal(got.status, 200, got.text);
  assert.equal(got.body._rev, '1-');
  assert.equal((await request(node, 'GET', `/${dbName}/x?rev=1-`)).body.value, 1);
  const db = localDb('revhist');
  const pulled = await replicateOnce(remote, db);
  assert.equal(pulled.doc_write_failures, 0);
  assert.equal((await db.get('x'))._rev, '1-');

  // Interactive writes naming 1- follow CouchDB: a conflict on a doc without that leaf...
  const missing = await request(node, 'PUT', `/${dbName}/y`, { body: { _rev: '1-' } });
  assert.equal(missing.status, 409, missing.text);
  assert.equal(missing.body.error, 'conflict');
  // ...and an ordinary edit of the leaf when there is one.
  const edit = await request(node, 'PUT', `/${dbName}/x`, { body: { _rev: '1-', value: 2 } });
  assert.equal(edit.status, 201, edit.text);
  assert.match(edit.body.rev, /^2-[0-9a-f]{32}$/);
  // Still no empty positions or dashes inside the hash.
  for (const rev of ['-', '0-', '1-a-b', 'x-1']) {
    const bad = await request(node, 'POST', `/${dbName}/_bulk_docs`, { body: { docs: [{ _id: 'z', _rev: rev }], new_edits: false } });
    assert.equal(bad.status, 400, `${rev}: ${bad.text}`);
  }
});

test('a corrupted stored tree fails its request with a logged 500, and the node keeps serving', async () => {
  const dbName = uniqueDb('revhist');
  await request(node, 'PUT', `/${dbName}`);
  const docs = [
    { _id: 'bad', _rev: '2-b', _revisions: { start: 2, ids: ['b', 'a'] } },
    { _id: 'bad', _rev: '2-c', _revisions: { start: 2, ids: ['c', 'a'] } },
    { _id: 'good', _rev: '1-a' },
  ];
  assert.equal((await request(node, 'POST', `/${dbName}/_bulk_docs`, { body: { docs, new_edits: false } })).status, 201);

  // With the node stopped, lose 2-b from every stored copy of the doc info (by id and by
  // seq); the leaves line still names it.
  await node.stop();
  assert.ok((await damageStoredTree(node.dataDir, 'bad', loseRevision('2-b'))) >= 1, 'found the stored doc info');
  node = await node.restart();

  for (const url of [`/${dbName}/bad`, `/${dbName}/bad?open_revs=all`, `/${dbName}/bad?revs=true&rev=2-c`]) {
    const reply = await request(node, 'GET', url);
    assert.equal(reply.status, 500, `${url}: ${reply.text}`);
    assert.equal(reply.body.error, 'unknown_error');
    assert.match(reply.body.reason, /corrupt/);
  }
  const write = await request(node, 'PUT', `/${dbName}/bad`, { body: { _rev: '2-c', v: 1 } });
  assert.equal(write.status, 500, write.text);
  assert.equal(write.body.error, 'unknown_error');
  // In one batch, only the corrupt document's edit fails.
  const batch = await request(node, 'POST', `/${dbName}/_bulk_docs`, { body: { docs: [{ _id: 'bad', _rev: '2-c' }, { _id: 'other' }] } });
  assert.equal(batch.status, 201, batch.text);
  assert.equal(batch.body[0].error, 'unknown_error');
  assert.match(batch.body[0].reason, /corrupt/);
  assert.equal(batch.body[1].ok, true);
  assert.equal((await request(node, 'GET', '/_up', { auth: false })).status, 200);
  assert.equal((await request(node, 'GET', `/${dbName}/good`)).body._rev, '1-a');
  assert.equal((await request(node, 'PUT', `/${dbName}/new`, { body: { v: 1 } })).status, 201);
  assert.ok(
    logLines.some((line) => line.includes('request failed') && line.includes('corrupt')),
    'the failed request is logged',
  );
  assert.ok(
    logLines.some((line) => line.includes('stored record is corrupt') && line.includes('"docId":"bad"')),
    'the corrupt record is logged by the copy that holds it',
  );
});

test('a single node whose stored tree lost a revision gets it back by replication from a healthy copy', async () => {
  const dbName = uniqueDb('revhist');
  const healthy = localDb('revhist');
  await healthy.bulkDocs(
    [
      { _id: 'lost', _rev: '2-b', _revisions: { start: 2, ids: ['b', 'a'] }, v: 'b' },
      // Hashes distinct here: PouchDB itself would send 3-c → 2-c → 1-a as 2-c (see above).
      { _id: 'lost', _rev: '3-d', _revisions: { start: 3, ids: ['d', 'c', 'a'] }, v: 'd' },
    ],
    { new_edits: false },
  );
  const remote = remoteDb(node, dbName);
  assert.equal((await replicateOnce(healthy, remote)).doc_write_failures, 0);
  assert.deepEqual([...(await divanLeaves(dbName, 'lost')).keys()].sort(), ['2-b', '3-d']);

  // What a writer that lost a revision would have stored: a self-consistent tree without 2-b.
  await node.stop();
  assert.ok((await damageStoredTree(node.dataDir, 'lost', loseRevision('2-b'), { consistent: true })) >= 1);
  node = await node.restart();
  assert.deepEqual([...(await divanLeaves(dbName, 'lost')).keys()], ['3-d'], 'passes the read check, lacks 2-b');

  // PouchDB's checkpoint says it is done: a fresh replication (no checkpoint) finds 2-b missing.
  const again = await replicateOnce(healthy, remoteDb(node, dbName), { checkpoint: false });
  assert.equal(again.doc_write_failures, 0);
  const leaves = await divanLeaves(dbName, 'lost');
  assert.deepEqual([...leaves.keys()].sort(), ['2-b', '3-d']);
  assert.equal(leaves.get('2-b')!.v, 'b');
});
