/**
 * Server-side replication (`POST /_replicate`, issue 12) between real node processes:
 * within one node and between two single nodes, one-shot and continuous, pushed and
 * pulled, with `create_target`, `doc_ids` / `selector` / design-document filters, and
 * every revision, conflict, deletion and attachment arriving as it is (the leaves of
 * every document and their `_revisions` compared on both sides). A replication posted
 * again resumes from its checkpoint, also after `kill -9` of the node; endpoints that
 * are missing or refuse answer CouchDB's errors.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, request, startNode, TestNode, waitFor } from '../helpers/node-process';
import { FaultProxy } from '../helpers/fault-proxy';

let a: TestNode;
let b: TestNode;

before(async () => {
  [a, b] = await Promise.all([startNode(), startNode()]);
});
after(async () => {
  await Promise.all([a?.destroy(), b?.destroy()]);
});

/** `http://admin:pw@127.0.0.1:PORT/db` */
function urlOf(node: TestNode, db: string): string {
  return `${node.authUrl}/${encodeURIComponent(db)}`;
}

async function seed(node: TestNode, db: string, count: number): Promise<void> {
  assert.equal((await request(node, 'PUT', `/${db}`)).status, 201);
  const docs: Record<string, unknown>[] = [];
  for (let i = 0; i < count; i++) docs.push({ _id: `doc-${String(i).padStart(4, '0')}`, n: i, kind: i % 2 ? 'odd' : 'even' });
  assert.equal((await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } })).status, 201);
  // An attachment, a conflict (two leaves), a deleted document and a design document with a filter.
  const att = await request(node, 'PUT', `/${db}/with-att`, {
    body: { _attachments: { 'note.txt': { content_type: 'text/plain', data: Buffer.from('hello clinic').toString('base64') } } },
  });
  assert.equal(att.status, 201);
  const conflict = await request(node, 'POST', `/${db}/_bulk_docs`, {
    body: {
      new_edits: false,
      docs: [
        { _id: 'conflicted', _rev: '2-aaa', v: 'a', _revisions: { start: 2, ids: ['aaa', 'root'] } },
        { _id: 'conflicted', _rev: '2-bbb', v: 'b', _revisions: { start: 2, ids: ['bbb', 'root'] } },
      ],
    },
  });
  assert.equal(conflict.status, 201);
  const gone = await request(node, 'PUT', `/${db}/gone`, { body: { x: 1 } });
  assert.equal((await request(node, 'DELETE', `/${db}/gone?rev=${gone.body.rev}`)).status, 200);
  const ddoc = { filters: { odd: 'function (doc, req) { return doc.kind === (req.query.kind || "odd"); }' } };
  assert.equal((await request(node, 'PUT', `/${db}/_design/f`, { body: ddoc })).status, 201);
}

/** Every document's leaves (deleted ones too) with their paths, and attachment digests: what replication must carry. */
async function trees(node: TestNode, db: string): Promise<Map<string, string>> {
  const ids = (await request(node, 'GET', `/${db}/_changes?style=all_docs`)).body.results.map((r: { id: string }) => r.id) as string[];
  const out = new Map<string, string>();
  for (const id of ids) {
    const r = await request(node, 'GET', `/${db}/${encodeURIComponent(id).replace('%2F', '/')}?open_revs=all&revs=true`);
    assert.equal(r.status, 200, `${id}: ${r.text}`);
    const leaves = (r.body as { ok: Record<string, any> }[]) // eslint-disable-line @typescript-eslint/no-explicit-any
      .map(({ ok }) => JSON.stringify([ok._rev, ok._deleted === true, ok._revisions, Object.entries(ok._attachments ?? {}).map(([n, s]) => [n, (s as { digest: string }).digest])]))
      .sort();
    out.set(id, leaves.join('|'));
  }
  return out;
}

async function assertSame(x: TestNode, dbX: string, y: TestNode, dbY: string): Promise<void> {
  const [tx, ty] = await Promise.all([trees(x, dbX), trees(y, dbY)]);
  assert.deepEqual([...ty.keys()].sort(), [...tx.keys()].sort(), 'the same documents');
  for (const [id, leaves] of tx) assert.equal(ty.get(id), leaves, `${id}: the same leaves, paths and attachments`);
}

describe('one-shot', () => {
  test('within one node, with create_target: every revision, conflict, deletion and attachment arrives; posted again, nothing to do', async () => {
    await seed(a, 'clinic-a', 50);
    const r = await request(a, 'POST', '/_replicate', { body: { source: 'clinic-a', target: 'copy-a', create_target: true } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.ok, true);
    assert.equal(r.body.replication_id_version, 4);
    assert.equal(r.body.history[0].docs_written, 55, '50 docs, 2 conflicting leaves, the attachment, the deletion, the design doc');
    await assertSame(a, 'clinic-a', a, 'copy-a');
    const again = await request(a, 'POST', '/_replicate', { body: { source: 'clinic-a', target: 'copy-a' } });
    assert.equal(again.status, 200);
    assert.equal(again.body.no_changes, true, 'resumed from the checkpoint');
    const att = await request(a, 'GET', '/copy-a/with-att/note.txt');
    assert.equal(att.text, 'hello clinic');
  });

  test('push to another node and pull back from it, by URL', async () => {
    await seed(a, 'push-src', 30);
    const push = await request(a, 'POST', '/_replicate', { body: { source: 'push-src', target: urlOf(b, 'push-dst'), create_target: true } });
    assert.equal(push.status, 200, push.text);
    await assertSame(a, 'push-src', b, 'push-dst');
    // A write on b, pulled by a.
    assert.equal((await request(b, 'PUT', '/push-dst/from-b', { body: { at: 'b' } })).status, 201);
    const pull = await request(a, 'POST', '/_replicate', { body: { source: { url: `${b.url}/push-dst`, auth: { basic: { username: ADMIN.user, password: ADMIN.password } } }, target: 'push-src' } });
    assert.equal(pull.status, 200, pull.text);
    assert.equal((await request(a, 'GET', '/push-src/from-b')).body.at, 'b');
    await assertSame(a, 'push-src', b, 'push-dst');
  });

  test('doc_ids, selector and a design-document filter (run by the remote source) replicate only what they pass', async () => {
    await seed(b, 'filtered', 20);
    const ids = await request(a, 'POST', '/_replicate', { body: { source: urlOf(b, 'filtered'), target: 'by-ids', create_target: true, doc_ids: ['doc-0001', 'with-att'] } });
    assert.equal(ids.status, 200, ids.text);
    assert.deepEqual((await request(a, 'GET', '/by-ids/_all_docs')).body.rows.map((r: { id: string }) => r.id), ['doc-0001', 'with-att']);
    const sel = await request(a, 'POST', '/_replicate', { body: { source: urlOf(b, 'filtered'), target: 'by-selector', create_target: true, selector: { n: { $lt: 3 } } } });
    assert.equal(sel.status, 200, sel.text);
    assert.deepEqual((await request(a, 'GET', '/by-selector/_all_docs')).body.rows.map((r: { id: string }) => r.id), ['doc-0000', 'doc-0001', 'doc-0002']);
    const local = await request(a, 'POST', '/_replicate', { body: { source: 'by-selector', target: 'by-selector-2', create_target: true, selector: { n: 1 } } });
    assert.equal(local.status, 200, local.text);
    assert.deepEqual((await request(a, 'GET', '/by-selector-2/_all_docs')).body.rows.map((r: { id: string }) => r.id), ['doc-0001']);
    // The same filter run by a local source, and a _view filter.
    await seed(a, 'filtered-here', 20);
    const here = await request(a, 'POST', '/_replicate', { body: { source: 'filtered-here', target: 'by-filter-here', create_target: true, filter: 'f/odd', query_params: { kind: 'odd' } } });
    assert.equal(here.status, 200, here.text);
    const hereRows = (await request(a, 'GET', '/by-filter-here/_all_docs')).body.rows as { id: string }[];
    assert.equal(hereRows.length, 10);
    assert.ok(hereRows.every((r) => Number(r.id.slice(4)) % 2 === 1));
    await request(a, 'PUT', '/filtered-here/_design/v', { body: { views: { small: { map: 'function (doc) { if (doc.n < 2) emit(doc.n); }' } } } });
    const byView = await request(a, 'POST', '/_replicate', { body: { source: 'filtered-here', target: 'by-view', create_target: true, filter: '_view', query_params: { view: 'v/small' } } });
    assert.equal(byView.status, 200, byView.text);
    assert.deepEqual((await request(a, 'GET', '/by-view/_all_docs')).body.rows.map((r: { id: string }) => r.id), ['doc-0000', 'doc-0001']);
    const missingFilter = await request(a, 'POST', '/_replicate', { body: { source: 'filtered-here', target: 'nowhere', create_target: true, filter: 'nope/x' } });
    assert.equal(missingFilter.status, 400, missingFilter.text);
    const fn = await request(a, 'POST', '/_replicate', { body: { source: urlOf(b, 'filtered'), target: 'by-filter', create_target: true, filter: 'f/odd', query_params: { kind: 'even' } } });
    assert.equal(fn.status, 200, fn.text);
    const rows = (await request(a, 'GET', '/by-filter/_all_docs')).body.rows as { id: string }[];
    assert.equal(rows.length, 10);
    assert.ok(rows.every((r) => Number(r.id.slice(4)) % 2 === 0), 'only the even ones, as query_params asked');
  });

  test("errors as CouchDB's: a missing source is 404 db_not_found, bad credentials 401, a bad body 400", async () => {
    const missing = await request(a, 'POST', '/_replicate', { body: { source: 'no-such-db', target: 'x' } });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error, 'db_not_found');
    const remote = await request(a, 'POST', '/_replicate', { body: { source: `${b.url.replace('http://', 'http://admin:wrong@')}/filtered`, target: 'y', create_target: true } });
    assert.equal(remote.status, 401, remote.text);
    assert.equal((await request(a, 'POST', '/_replicate', { body: { source: 'a' } })).status, 400);
    assert.equal((await request(a, 'POST', '/_replicate', { auth: false, body: { source: 'a', target: 'b' } })).status, 401, 'admins only');
  });
});

describe('continuous', () => {
  test('writes flow to the target while it runs; _active_tasks and _scheduler/jobs show it; cancel stops it', async () => {
    await seed(a, 'live-src', 5);
    const started = await request(a, 'POST', '/_replicate', { body: { source: 'live-src', target: urlOf(b, 'live-dst'), create_target: true, continuous: true } });
    assert.equal(started.status, 202, started.text);
    const localId = started.body._local_id as string;
    assert.match(localId, /^[0-9a-f]{32}\+continuous$/);
    await waitFor(async () => (await request(b, 'GET', '/live-dst/doc-0004')).status === 200, 10_000, 'the first batch');
    assert.equal((await request(a, 'PUT', '/live-src/later', { body: { t: 1 } })).status, 201);
    await waitFor(async () => (await request(b, 'GET', '/live-dst/later')).status === 200, 10_000, 'a write made while it runs');
    const tasks = (await request(a, 'GET', '/_active_tasks')).body as Record<string, unknown>[];
    const task = tasks.find((t) => t.type === 'replication');
    assert.ok(task, JSON.stringify(tasks));
    assert.equal(task.continuous, true);
    assert.ok((task.docs_written as number) >= 10);
    const jobs = (await request(a, 'GET', '/_scheduler/jobs')).body;
    assert.equal(jobs.total_rows, 1);
    assert.equal(jobs.jobs[0].id, localId);
    const again = await request(a, 'POST', '/_replicate', { body: { source: 'live-src', target: urlOf(b, 'live-dst'), continuous: true } });
    assert.equal(again.body._local_id, localId, 'the same replication runs once');
    assert.equal((await request(a, 'GET', '/_scheduler/jobs')).body.total_rows, 1);
    const cancelled = await request(a, 'POST', '/_replicate', { body: { source: 'live-src', target: urlOf(b, 'live-dst'), continuous: true, cancel: true } });
    assert.equal(cancelled.status, 200, cancelled.text);
    assert.equal((await request(a, 'GET', '/_scheduler/jobs')).body.total_rows, 0);
    assert.equal((await request(a, 'POST', '/_replicate', { body: { replication_id: localId, cancel: true } })).status, 404);
  });
});

test('a one-shot replication resumes from its checkpoint after kill -9 of its node', async () => {
  await seed(a, 'durable-src', 200);
  const first = await request(a, 'POST', '/_replicate', { body: { source: 'durable-src', target: urlOf(b, 'durable-dst'), create_target: true } });
  assert.equal(first.status, 200, first.text);
  for (let i = 0; i < 3; i++) assert.equal((await request(a, 'PUT', `/durable-src/new-${i}`, { body: { i } })).status, 201);
  await a.kill9();
  a = await a.restart();
  const second = await request(a, 'POST', '/_replicate', { body: { source: 'durable-src', target: urlOf(b, 'durable-dst') } });
  assert.equal(second.status, 200, second.text);
  assert.equal(second.body.history[0].docs_read, 3, 'only what came after the checkpoint');
  await assertSame(a, 'durable-src', b, 'durable-dst');
});

describe('_replicator documents', () => {
  test('a document starts its replication; a one-shot one records completed with its stats; _scheduler/docs shows it', async () => {
    await seed(a, 'doc-src', 10);
    const made = await request(a, 'PUT', '/_replicator/one-shot', { body: { source: 'doc-src', target: urlOf(b, 'doc-dst'), create_target: true } });
    assert.equal(made.status, 201, made.text);
    const done = await waitFor(async () => {
      const doc = (await request(a, 'GET', '/_replicator/one-shot')).body;
      return doc._replication_state === 'completed' ? doc : undefined;
    }, 20_000, 'the completed state');
    assert.equal(done._replication_stats.docs_written, 15);
    assert.match(done._replication_state_time, /^\d{4}-\d\d-\d\dT/);
    await assertSame(a, 'doc-src', b, 'doc-dst');
    const docs = (await request(a, 'GET', '/_scheduler/docs')).body;
    const row = docs.docs.find((d: { doc_id: string }) => d.doc_id === 'one-shot');
    assert.equal(row.state, 'completed');
    assert.equal(row.database, '_replicator');
    assert.equal((await request(a, 'GET', '/_scheduler/docs/_replicator/one-shot')).body.doc_id, 'one-shot');
  });

  test('a continuous document runs until deleted; a bad one is refused on write', async () => {
    await seed(a, 'doc-live', 3);
    const made = await request(a, 'PUT', '/_replicator/live', { body: { source: 'doc-live', target: 'doc-live-copy', create_target: true, continuous: true } });
    assert.equal(made.status, 201);
    assert.equal((await request(a, 'PUT', '/doc-live/later', { body: { x: 1 } })).status, 201);
    await waitFor(async () => (await request(a, 'GET', '/doc-live-copy/later')).status === 200, 20_000, 'a later write replicated');
    const jobs = (await request(a, 'GET', '/_scheduler/jobs')).body.jobs as { doc_id: string; database: string }[];
    assert.ok(jobs.some((j) => j.doc_id === 'live' && j.database === '_replicator'), JSON.stringify(jobs));
    const rev = (await request(a, 'GET', '/_replicator/live')).body._rev;
    assert.equal((await request(a, 'DELETE', `/_replicator/live?rev=${rev}`)).status, 200);
    await waitFor(async () => !((await request(a, 'GET', '/_scheduler/jobs')).body.jobs as { doc_id: string }[]).some((j) => j.doc_id === 'live'), 10_000, 'the job stopped');
    const bad = await request(a, 'PUT', '/_replicator/bad', { body: { source: 'doc-live' } });
    assert.equal(bad.status, 403, bad.text);
    assert.equal((await request(a, 'PUT', '/_replicator/x', { auth: false, body: { source: 'a', target: 'b' } })).status, 401);
  });
});

test('a network cut (connections reset) during a continuous replication heals with nothing lost', async () => {
  const proxy = new FaultProxy({ host: '127.0.0.1', port: b.port }, 'a->b http');
  await proxy.listen();
  try {
    await seed(a, 'cut-src', 5);
    const target = `http://${ADMIN.user}:${ADMIN.password}@${proxy.address}/cut-dst`;
    const started = await request(a, 'POST', '/_replicate', { body: { source: 'cut-src', target, create_target: true, continuous: true } });
    assert.equal(started.status, 202, started.text);
    await waitFor(async () => (await request(b, 'GET', '/cut-dst/doc-0004')).status === 200, 15_000, 'the first batch');
    proxy.reset();
    for (let i = 0; i < 20; i++) assert.equal((await request(a, 'PUT', `/cut-src/during-${i}`, { body: { i } })).status, 201);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await request(b, 'GET', '/cut-dst/during-0')).status, 404, 'nothing crosses the cut');
    proxy.pass();
    await waitFor(async () => (await request(b, 'GET', '/cut-dst/during-19')).status === 200, 60_000, 'the writes made during the cut');
    await assertSame(a, 'cut-src', b, 'cut-dst');
    assert.equal((await request(a, 'POST', '/_replicate', { body: { source: 'cut-src', target, continuous: true, cancel: true } })).status, 200);
  } finally {
    await proxy.close();
  }
});

test('a user replicates what they may read into what they may write; nothing else', async () => {
  const user = { authorization: 'Basic ' + Buffer.from('nurse1:pw-1').toString('base64') };
  assert.equal((await request(a, 'PUT', '/_users/org.couchdb.user:nurse1', { body: { name: 'nurse1', password: 'pw-1', roles: ['ward'], type: 'user' } })).status, 201);
  await seed(a, 'ward-notes', 4);
  for (const db of ['ward-notes', 'ward-copy']) {
    if (db === 'ward-copy') assert.equal((await request(a, 'PUT', '/ward-copy')).status, 201);
    assert.equal((await request(a, 'PUT', `/${db}/_security`, { body: { members: { roles: ['ward'] }, admins: {} } })).status, 200);
  }
  const ok = await request(a, 'POST', '/_replicate', { auth: false, headers: user, body: { source: 'ward-notes', target: 'ward-copy' } });
  assert.equal(ok.status, 200, ok.text);
  // The design document is not hers to write: it fails on the target, the rest arrives.
  assert.equal(ok.body.history[0].doc_write_failures, 1);
  assert.equal((await request(a, 'GET', '/ward-copy/doc-0003')).status, 200);
  const closed = await request(a, 'POST', '/_replicate', { auth: false, headers: user, body: { source: 'clinic-a', target: 'ward-copy' } });
  assert.equal(closed.status, 403, closed.text);
  const create = await request(a, 'POST', '/_replicate', { auth: false, headers: user, body: { source: 'ward-notes', target: 'brand-new', create_target: true } });
  assert.equal(create.status, 401, create.text);
  assert.equal((await request(a, 'POST', '/_replicate', { auth: false, body: { source: 'ward-notes', target: 'ward-copy' } })).status, 401);
  assert.equal((await request(a, 'GET', '/_scheduler/jobs', { auth: false, headers: user })).status, 401, '_scheduler is for server admins');
});
