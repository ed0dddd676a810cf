/**
 * nano (the CouchDB client for Node) against a live node, unmodified.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Nano from 'nano';
import { startNode, TestNode, uniqueDb } from '../helpers/node-process';

let node: TestNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.destroy();
});

test('nano: databases and document CRUD', async () => {
  const nano = Nano(node.authUrl);
  const name = uniqueDb('nano');
  await nano.db.create(name);
  assert.ok((await nano.db.list()).includes(name));
  const db = nano.use<{ title: string; n?: number }>(name);
  const created = await db.insert({ title: 'one' }, 'doc1');
  assert.equal(created.ok, true);
  const read = await db.get('doc1');
  assert.equal(read.title, 'one');
  const updated = await db.insert({ ...read, n: 2 });
  assert.match(updated.rev, /^2-/);
  await assert.rejects(db.insert({ title: 'stale', _rev: created.rev } as never, 'doc1'), (err: any) => err.statusCode === 409);
  const bulk = await db.bulk({ docs: [{ _id: 'a', title: 'a' }, { _id: 'b', title: 'b' }] });
  assert.equal(bulk.length, 2);
  const list = await db.list({ include_docs: true });
  assert.deepEqual(list.rows.map((r) => r.id), ['a', 'b', 'doc1']);
  assert.equal(list.rows[0]!.doc!.title, 'a');
  const fetched = await db.fetch({ keys: ['b', 'zzz'] });
  assert.equal(fetched.rows.length, 2);
  const destroyed = await db.destroy('doc1', updated.rev);
  assert.equal(destroyed.ok, true);
  await assert.rejects(db.get('doc1'), (err: any) => err.statusCode === 404 && err.reason === 'deleted');
  const info = await nano.db.get(name);
  assert.equal(info.doc_count, 2);
  assert.equal(info.doc_del_count, 1);
  await db.attachment.insert('a', 'note.txt', Buffer.from('hi there'), 'text/plain', { rev: bulk[0]!.rev! });
  const att = await db.attachment.get('a', 'note.txt');
  assert.equal(att.toString(), 'hi there');
  await nano.db.destroy(name);
  assert.ok(!(await nano.db.list()).includes(name));
});

test('nano: changes feed and follow-style longpoll', async () => {
  const nano = Nano(node.authUrl);
  const name = uniqueDb('nano');
  await nano.db.create(name);
  const db = nano.use(name);
  await db.bulk({ docs: Array.from({ length: 25 }, (_, i) => ({ _id: `k${i}` })) });
  const changes = await db.changes({ since: 0, limit: 10 });
  assert.equal(changes.results.length, 10);
  const rest = await db.changes({ since: changes.last_seq });
  assert.equal(rest.results.length, 15);
  const ids = new Set([...changes.results, ...rest.results].map((r) => r.id));
  assert.equal(ids.size, 25);
  const waiting = db.changes({ since: rest.last_seq, feed: 'longpoll', timeout: 10_000 });
  await db.insert({}, 'late');
  const late = await waiting;
  assert.deepEqual(late.results.map((r) => r.id), ['late']);
});

test('nano: session login with cookie', async () => {
  const nano = Nano(node.url);
  const auth = await nano.auth('admin', 'test-password');
  assert.equal(auth.ok, true);
  assert.ok(auth.roles.includes('_admin'));
  const session = await nano.session();
  assert.equal(session.userCtx.name, 'admin');
});
