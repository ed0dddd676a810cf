/**
 * The CouchDB HTTP API against a live node: statuses, headers, error bodies and
 * formats that clients depend on; bad input answered with the right error while the
 * node keeps serving.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createDb, request, startNode, TestNode, uniqueDb } from '../helpers/node-process';

let node: TestNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.destroy();
});

const newDb = (q?: number): Promise<string> => createDb(node, 'db', q);

describe('server', () => {
  test('welcome has CouchDB fields and a uuid stable across restarts', async () => {
    const first = await request(node, 'GET', '/', { auth: false });
    assert.equal(first.status, 200);
    assert.equal(first.body.couchdb, 'Welcome');
    assert.match(first.body.version, /^3\./);
    assert.equal(first.body.vendor.name, 'Divan');
    node = await node.restart();
    const second = await request(node, 'GET', '/', { auth: false });
    assert.equal(second.body.uuid, first.body.uuid);
  });

  test('no admin party: everything but /, /_up and /_session needs an admin', async () => {
    assert.equal((await request(node, 'GET', '/_up', { auth: false })).status, 200);
    const denied = await request(node, 'GET', '/_all_dbs', { auth: false });
    assert.equal(denied.status, 401);
    assert.equal(denied.body.error, 'unauthorized');
    const wrong = await request(node, 'GET', '/_all_dbs', { auth: false, headers: { authorization: 'Basic ' + Buffer.from('admin:nope').toString('base64') } });
    assert.equal(wrong.status, 401);
  });

  test('cookie sessions: form and JSON login, session info, logout', async () => {
    const form = await request(node, 'POST', '/_session', {
      auth: false,
      raw: 'name=admin&password=test-password',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(form.status, 200);
    assert.deepEqual(form.body.roles, ['_admin']);
    const cookie = form.headers.get('set-cookie')!.split(';')[0]!;
    assert.match(cookie, /^AuthSession=/);
    const info = await request(node, 'GET', '/_session', { auth: false, headers: { cookie } });
    assert.equal(info.body.userCtx.name, 'admin');
    assert.equal((await request(node, 'GET', '/_all_dbs', { auth: false, headers: { cookie } })).status, 200);
    const json = await request(node, 'POST', '/_session', { auth: false, body: { name: 'admin', password: 'bad' } });
    assert.equal(json.status, 401);
    const out = await request(node, 'DELETE', '/_session', { auth: false, headers: { cookie } });
    assert.match(out.headers.get('set-cookie')!, /Max-Age=0/);
    const forged = await request(node, 'GET', '/_all_dbs', { auth: false, headers: { cookie: 'AuthSession=' + Buffer.from('admin:FFFFFFFF:abc').toString('base64url') } });
    assert.equal(forged.status, 401);
  });

  test('_all_dbs paging, _dbs_info, _uuids', async () => {
    const names = [await newDb(), await newDb(), await newDb()].sort();
    const all = await request(node, 'GET', '/_all_dbs');
    for (const n of names) assert.ok(all.body.includes(n));
    const page = await request(node, 'GET', `/_all_dbs?startkey=${encodeURIComponent(JSON.stringify(names[1]))}&limit=1`);
    assert.deepEqual(page.body, [names[1]]);
    const desc = await request(node, 'GET', `/_all_dbs?descending=true&endkey=${encodeURIComponent(JSON.stringify(names[1]))}`);
    assert.ok(!desc.body.includes(names[0]) && desc.body.includes(names[2]));
    const info = await request(node, 'POST', '/_dbs_info', { body: { keys: [names[0], 'nope-db'] } });
    assert.equal(info.body[0].info.db_name, names[0]);
    assert.equal(info.body[1].error, 'not_found');
    const uuids = await request(node, 'GET', '/_uuids?count=5');
    assert.equal(new Set(uuids.body.uuids).size, 5);
    assert.equal((await request(node, 'GET', '/_uuids?count=100000')).status, 400);
  });

  test('node endpoints: config read, prometheus metrics', async () => {
    const cfg = await request(node, 'GET', '/_node/_local/_config/couchdb/max_document_size');
    assert.equal(cfg.body, '8000000');
    const metrics = await request(node, 'GET', '/_node/_local/_prometheus');
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /divan_http_requests_total\{/);
    assert.equal((await request(node, 'PUT', '/_node/_local/_config/x/y', { body: 'z' })).status, 501);
  });
});

describe('databases', () => {
  test('create, info, errors, delete', async () => {
    const name = uniqueDb();
    assert.equal((await request(node, 'PUT', `/${name}?q=4`)).status, 201);
    const dup = await request(node, 'PUT', `/${name}`);
    assert.equal(dup.status, 412);
    assert.equal(dup.body.error, 'file_exists');
    const bad = await request(node, 'PUT', '/Bad_Name');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'illegal_database_name');
    const info = await request(node, 'GET', `/${name}`);
    assert.equal(info.body.db_name, name);
    assert.equal(info.body.doc_count, 0);
    assert.deepEqual(info.body.cluster, { q: 4, n: 1, w: 1, r: 1 });
    assert.equal(typeof info.body.update_seq, 'string');
    assert.equal((await request(node, 'HEAD', `/${name}`)).status, 200);
    assert.equal((await request(node, 'DELETE', `/${name}?rev=1-x`)).status, 400);
    assert.equal((await request(node, 'DELETE', `/${name}`)).status, 200);
    assert.equal((await request(node, 'GET', `/${name}`)).status, 404);
    assert.equal((await request(node, 'DELETE', `/${name}`)).status, 404);
  });

  test('a database dropped and created again is empty', async () => {
    const name = await newDb();
    await request(node, 'PUT', `/${name}/a`, { body: { v: 1 } });
    await request(node, 'DELETE', `/${name}`);
    await request(node, 'PUT', `/${name}`);
    assert.equal((await request(node, 'GET', `/${name}/a`)).status, 404);
    assert.equal((await request(node, 'GET', `/${name}`)).body.doc_count, 0);
  });

  test('db names with slashes work when encoded', async () => {
    const name = `a/${uniqueDb()}`;
    assert.equal((await request(node, 'PUT', `/${encodeURIComponent(name)}`)).status, 201);
    assert.equal((await request(node, 'PUT', `/${encodeURIComponent(name)}/doc`, { body: {} })).status, 201);
    assert.equal((await request(node, 'GET', `/${encodeURIComponent(name)}/doc`)).body._id, 'doc');
  });

  test('_revs_limit and _security are stored and returned', async () => {
    const name = await newDb();
    assert.equal((await request(node, 'GET', `/${name}/_revs_limit`)).text.trim(), '1000');
    assert.equal((await request(node, 'PUT', `/${name}/_revs_limit`, { raw: '3' })).status, 200);
    assert.equal((await request(node, 'GET', `/${name}/_revs_limit`)).text.trim(), '3');
    let rev: string | undefined;
    for (let i = 0; i < 6; i++) rev = (await request(node, 'PUT', `/${name}/d`, { body: rev ? { _rev: rev, i } : { i } })).body.rev;
    const revs = await request(node, 'GET', `/${name}/d?revs=true`);
    assert.equal(revs.body._revisions.ids.length, 3);
    const sec = { admins: { names: ['a'], roles: [] }, members: { names: [], roles: ['r'] } };
    assert.equal((await request(node, 'PUT', `/${name}/_security`, { body: sec })).status, 200);
    assert.deepEqual((await request(node, 'GET', `/${name}/_security`)).body, sec);
    assert.equal((await request(node, 'PUT', `/${name}/_security`, { body: { admins: { names: 'x' } } })).status, 400);
    assert.equal((await request(node, 'POST', `/${name}/_ensure_full_commit`, { body: {} })).status, 201);
  });
});

describe('documents', () => {
  test('create, read, update, conflict, delete with CouchDB statuses and ETags', async () => {
    const db = await newDb();
    const created = await request(node, 'PUT', `/${db}/doc`, { body: { a: 1 } });
    assert.equal(created.status, 201);
    assert.match(created.body.rev, /^1-[0-9a-f]{32}$/);
    assert.equal(created.headers.get('etag'), `"${created.body.rev}"`);
    assert.match(created.headers.get('location')!, new RegExp(`/${db}/doc$`));
    const read = await request(node, 'GET', `/${db}/doc`);
    assert.deepEqual(read.body, { _id: 'doc', _rev: created.body.rev, a: 1 });
    assert.equal(read.headers.get('etag'), `"${created.body.rev}"`);
    const notModified = await request(node, 'GET', `/${db}/doc`, { headers: { 'if-none-match': `"${created.body.rev}"` } });
    assert.equal(notModified.status, 304);
    const conflict = await request(node, 'PUT', `/${db}/doc`, { body: { a: 2 } });
    assert.equal(conflict.status, 409);
    assert.deepEqual(conflict.body, { error: 'conflict', reason: 'Document update conflict.' });
    const updated = await request(node, 'PUT', `/${db}/doc`, { body: { a: 2 }, headers: { 'if-match': created.body.rev } });
    assert.equal(updated.status, 201);
    assert.match(updated.body.rev, /^2-/);
    const stale = await request(node, 'PUT', `/${db}/doc?rev=${created.body.rev}`, { body: { a: 3 } });
    assert.equal(stale.status, 409);
    const mismatch = await request(node, 'PUT', `/${db}/doc?rev=${updated.body.rev}`, { body: { _rev: created.body.rev } });
    assert.equal(mismatch.status, 400);
    assert.equal((await request(node, 'DELETE', `/${db}/doc`)).status, 409);
    const deleted = await request(node, 'DELETE', `/${db}/doc?rev=${updated.body.rev}`);
    assert.equal(deleted.status, 200);
    const gone = await request(node, 'GET', `/${db}/doc`);
    assert.equal(gone.status, 404);
    assert.deepEqual(gone.body, { error: 'not_found', reason: 'deleted' });
    const old = await request(node, 'GET', `/${db}/doc?rev=${deleted.body.rev}`);
    assert.equal(old.body._deleted, true);
    const recreated = await request(node, 'PUT', `/${db}/doc`, { body: { back: true } });
    assert.equal(recreated.status, 201);
    assert.match(recreated.body.rev, /^4-/);
    assert.deepEqual((await request(node, 'GET', `/${db}/missing`)).body, { error: 'not_found', reason: 'missing' });
  });

  test('the same edit makes the same revision (content-addressed revs)', async () => {
    const a = await newDb();
    const b = await newDb();
    const ra = await request(node, 'PUT', `/${a}/x`, { body: { same: [1, 2] } });
    const rb = await request(node, 'PUT', `/${b}/x`, { body: { same: [1, 2] } });
    assert.equal(ra.body.rev, rb.body.rev);
  });

  test('POST /db generates ids; batch=ok answers 202; COPY copies', async () => {
    const db = await newDb();
    const posted = await request(node, 'POST', `/${db}`, { body: { v: 1 } });
    assert.equal(posted.status, 201);
    assert.match(posted.body.id, /^[0-9a-f]{32}$/);
    const batched = await request(node, 'PUT', `/${db}/b?batch=ok`, { body: { v: 2 } });
    assert.equal(batched.status, 202);
    assert.deepEqual(batched.body, { ok: true, id: 'b' });
    const copied = await request(node, 'COPY', `/${db}/b`, { headers: { destination: 'c' } });
    assert.equal(copied.status, 201);
    assert.equal((await request(node, 'GET', `/${db}/c`)).body.v, 2);
    assert.equal((await request(node, 'POST', `/${db}`, { raw: '{"v":1}', headers: { 'content-type': 'text/plain' } })).status, 415);
  });

  test('conflicts, open_revs, revs_info, latest, local_seq, meta', async () => {
    const db = await newDb();
    const docs = [
      { _id: 'c', _rev: '2-aaa', _revisions: { start: 2, ids: ['aaa', 'root'] }, v: 'a' },
      { _id: 'c', _rev: '2-bbb', _revisions: { start: 2, ids: ['bbb', 'root'] }, v: 'b' },
      { _id: 'c', _rev: '3-ccc', _revisions: { start: 3, ids: ['ccc', 'aaa', 'root'] }, _deleted: true },
    ];
    const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs, new_edits: false } });
    assert.equal(res.status, 201);
    assert.deepEqual(res.body, []);
    const doc = await request(node, 'GET', `/${db}/c?conflicts=true&deleted_conflicts=true`);
    assert.equal(doc.body._rev, '2-bbb');
    assert.equal(doc.body._conflicts, undefined);
    assert.deepEqual(doc.body._deleted_conflicts, ['3-ccc']);
    const all = await request(node, 'GET', `/${db}/c?open_revs=all`, { headers: { accept: 'application/json' } });
    assert.deepEqual(all.body.map((r: any) => r.ok._rev).sort(), ['2-bbb', '3-ccc']);
    const some = await request(node, 'GET', `/${db}/c?open_revs=${encodeURIComponent('["2-aaa","9-zzz"]')}&latest=true`, {
      headers: { accept: 'application/json' },
    });
    assert.deepEqual(some.body.map((r: any) => r.ok?._rev ?? r.missing), ['3-ccc', '9-zzz']);
    const meta = await request(node, 'GET', `/${db}/c?meta=true&local_seq=true`);
    assert.ok(Array.isArray(meta.body._revs_info));
    assert.equal(typeof meta.body._local_seq, 'number');
    const mixed = await request(node, 'GET', `/${db}/c?open_revs=all`, { headers: { accept: 'multipart/mixed' } });
    assert.match(mixed.headers.get('content-type')!, /^multipart\/mixed; boundary=/);
    assert.match(mixed.text, /"_rev":"2-bbb"/);
    // curl's `Accept: */*` (and no Accept at all) gets multipart, as from CouchDB.
    const curlLike = await request(node, 'GET', `/${db}/c?open_revs=all`, { headers: { accept: '*/*' } });
    assert.match(curlLike.headers.get('content-type')!, /^multipart\/mixed/);
    const refused = await request(node, 'GET', `/${db}/c?open_revs=all`, { headers: { accept: 'application/json, multipart/mixed;q=0' } });
    assert.match(refused.headers.get('content-type')!, /^application\/json/);
  });

  test('bulk docs: per-document errors and order kept', async () => {
    const db = await newDb();
    await request(node, 'PUT', `/${db}/taken`, { body: {} });
    const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs: [{ _id: 'n1' }, { _id: 'taken' }, { _id: 'n2' }] } });
    assert.equal(res.status, 201);
    assert.deepEqual(res.body.map((r: any) => r.id), ['n1', 'taken', 'n2']);
    assert.equal(res.body[1].error, 'conflict');
    assert.ok(res.body[0].ok && res.body[2].ok);
    const missing = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { nope: [] } });
    assert.equal(missing.status, 400);
  });

  test('_local docs: versioned 0-N, not in _all_docs or _changes, listed by _local_docs', async () => {
    const db = await newDb();
    const first = await request(node, 'PUT', `/${db}/_local/ck`, { body: { last: 1 } });
    assert.deepEqual(first.body, { ok: true, id: '_local/ck', rev: '0-1' });
    assert.equal((await request(node, 'PUT', `/${db}/_local/ck`, { body: { last: 2 } })).status, 409);
    const second = await request(node, 'PUT', `/${db}/_local/ck`, { body: { last: 2, _rev: '0-1' } });
    assert.equal(second.body.rev, '0-2');
    assert.deepEqual((await request(node, 'GET', `/${db}/_local/ck`)).body, { _id: '_local/ck', _rev: '0-2', last: 2 });
    assert.equal((await request(node, 'GET', `/${db}/_all_docs`)).body.rows.length, 0);
    assert.equal((await request(node, 'GET', `/${db}/_changes`)).body.results.length, 0);
    assert.deepEqual((await request(node, 'GET', `/${db}/_local_docs`)).body.rows.map((r: any) => r.id), ['_local/ck']);
    assert.equal((await request(node, 'DELETE', `/${db}/_local/ck?rev=0-2`)).status, 200);
    assert.equal((await request(node, 'GET', `/${db}/_local/ck`)).status, 404);
  });

  test('design docs are stored, listed and replicated like documents', async () => {
    const db = await newDb();
    assert.equal((await request(node, 'PUT', `/${db}/_design/app`, { body: { views: { v: { map: 'function (doc) {}' } } } })).status, 201);
    assert.equal((await request(node, 'GET', `/${db}/_design%2Fapp`)).body._id, '_design/app');
    await request(node, 'PUT', `/${db}/zzz`, { body: {} });
    const design = await request(node, 'GET', `/${db}/_design_docs`);
    assert.deepEqual(design.body.rows.map((r: any) => r.id), ['_design/app']);
    const all = await request(node, 'GET', `/${db}/_all_docs`);
    assert.deepEqual(all.body.rows.map((r: any) => r.id), ['_design/app', 'zzz']);
    const view = await request(node, 'GET', `/${db}/_design/app/_view/v`);
    assert.equal(view.status, 200, view.text);
    assert.deepEqual(view.body, { total_rows: 0, offset: 0, rows: [] });
    const missing = await request(node, 'GET', `/${db}/_design/app/_view/nope`);
    assert.deepEqual([missing.status, missing.body.reason], [404, 'missing_named_view']);
  });
});

describe('range reads', () => {
  test('_all_docs: order across ranges, keys, skip, limit, descending, inclusive_end', async () => {
    const db = await newDb(4);
    const ids = Array.from({ length: 40 }, (_, i) => `d${String(i).padStart(3, '0')}`);
    await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs: ids.map((_id) => ({ _id, n: _id })) } });
    const all = await request(node, 'GET', `/${db}/_all_docs`);
    assert.equal(all.body.total_rows, 40);
    assert.deepEqual(all.body.rows.map((r: any) => r.id), ids);
    const page = await request(node, 'GET', `/${db}/_all_docs?startkey="d010"&endkey="d015"&inclusive_end=false&skip=1&limit=3`);
    assert.deepEqual(page.body.rows.map((r: any) => r.id), ['d011', 'd012', 'd013']);
    const desc = await request(node, 'GET', `/${db}/_all_docs?descending=true&startkey="d005"&endkey="d002"`);
    assert.deepEqual(desc.body.rows.map((r: any) => r.id), ['d005', 'd004', 'd003', 'd002']);
    const keys = await request(node, 'POST', `/${db}/_all_docs?include_docs=true`, { body: { keys: ['d003', 'nope', 'd001'] } });
    assert.deepEqual(keys.body.rows.map((r: any) => r.id ?? r.error), ['d003', 'not_found', 'd001']);
    assert.equal(keys.body.rows[0].doc.n, 'd003');
    const seq = await request(node, 'GET', `/${db}/_all_docs?update_seq=true&limit=0`);
    assert.equal(typeof seq.body.update_seq, 'string');
    assert.equal(seq.body.rows.length, 0);
  });

  test('_changes: since resumes without skips; limit; descending; include_docs; style=all_docs', async () => {
    const db = await newDb(3);
    const ids = Array.from({ length: 30 }, (_, i) => `c${i}`);
    await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs: ids.map((_id) => ({ _id })) } });
    const seen: string[] = [];
    let since = '0';
    for (;;) {
      const page = await request(node, 'GET', `/${db}/_changes?limit=7&since=${encodeURIComponent(since)}`);
      for (const row of page.body.results) seen.push(row.id);
      since = page.body.last_seq;
      if (page.body.results.length === 0) break;
    }
    assert.deepEqual([...seen].sort(), [...ids].sort());
    assert.equal(seen.length, ids.length);
    const now = await request(node, 'GET', `/${db}/_changes?since=now`);
    assert.equal(now.body.results.length, 0);
    const docs = await request(node, 'GET', `/${db}/_changes?include_docs=true&limit=1`);
    assert.equal(docs.body.results[0].doc._id, docs.body.results[0].id);
    const desc = await request(node, 'GET', `/${db}/_changes?descending=true&limit=2`);
    assert.equal(desc.body.results.length, 2);
    assert.equal((await request(node, 'GET', `/${db}/_changes?since=garbage`)).status, 400);
  });

  test('_changes filters: _doc_ids, _selector, _design', async () => {
    const db = await newDb();
    await request(node, 'POST', `/${db}/_bulk_docs`, {
      body: { docs: [{ _id: 'a', type: 'x', n: 1 }, { _id: 'b', type: 'y', n: 2 }, { _id: '_design/d' }, { _id: 'c', type: 'x', n: 3 }] },
    });
    const ids = await request(node, 'POST', `/${db}/_changes?filter=_doc_ids`, { body: { doc_ids: ['b', 'c'] } });
    assert.deepEqual(ids.body.results.map((r: any) => r.id).sort(), ['b', 'c']);
    const sel = await request(node, 'POST', `/${db}/_changes?filter=_selector`, { body: { selector: { type: 'x', n: { $gt: 1 } } } });
    assert.deepEqual(sel.body.results.map((r: any) => r.id), ['c']);
    const design = await request(node, 'GET', `/${db}/_changes?filter=_design`);
    assert.deepEqual(design.body.results.map((r: any) => r.id), ['_design/d']);
    const bad = await request(node, 'POST', `/${db}/_changes?filter=_selector`, { body: { selector: { n: { $bogus: 1 } } } });
    assert.equal(bad.status, 400);
  });

  test('longpoll waits for the next change; continuous streams rows and heartbeats; eventsource', async () => {
    const db = await newDb();
    const since = (await request(node, 'GET', `/${db}`)).body.update_seq;
    const pending = request(node, 'GET', `/${db}/_changes?feed=longpoll&since=${encodeURIComponent(since)}&timeout=10000`);
    await new Promise((r) => setTimeout(r, 100));
    await request(node, 'PUT', `/${db}/late`, { body: {} });
    const res = await pending;
    assert.deepEqual(res.body.results.map((r: any) => r.id), ['late']);

    const lines = await streamLines(`/${db}/_changes?feed=continuous&heartbeat=200&since=0`, async (got) => {
      if (got.length === 1) await request(node, 'PUT', `/${db}/live`, { body: {} });
      return got.filter((l) => l.includes('"live"')).length > 0 && got.some((l) => l === '');
    });
    assert.ok(lines.some((l) => l.includes('"id":"late"')));
    assert.ok(lines.some((l) => l === ''), 'a heartbeat newline arrives');

    const timed = await request(node, 'GET', `/${db}/_changes?feed=continuous&timeout=100&since=now`);
    assert.match(timed.text, /"last_seq"/);
    const events = await streamLines(`/${db}/_changes?feed=eventsource&since=0`, async (got) => got.some((l) => l.startsWith('data: ')));
    assert.ok(events.some((l) => l.startsWith('data: {"seq"')));
  });
});

/** Read a streaming response line by line until `done` says so, then hang up. */
function streamLines(urlPath: string, done: (lines: string[]) => Promise<boolean>): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const lines: string[] = [];
    const req = http.get(node.url + urlPath, { headers: { authorization: 'Basic ' + Buffer.from('admin:test-password').toString('base64') } }, (res) => {
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', async (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          lines.push(buffered.slice(0, nl));
          buffered = buffered.slice(nl + 1);
        }
        if (await done(lines)) {
          req.destroy();
          resolve(lines);
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', (err) => (lines.length ? resolve(lines) : reject(err)));
    setTimeout(() => {
      req.destroy();
      reject(new Error('stream did not finish: ' + JSON.stringify(lines)));
    }, 10_000).unref();
  });
}

describe('attachments', () => {
  test('standalone put/get/delete, ranges, digests, stubs kept on update', async () => {
    const db = await newDb();
    const data = Buffer.from('0123456789abcdefghij');
    const put = await request(node, 'PUT', `/${db}/d/dir/file.bin`, { raw: data, headers: { 'content-type': 'application/x-test' } });
    assert.equal(put.status, 201);
    const got = await fetch(`${node.url}/${db}/d/dir/file.bin`, { headers: { authorization: auth() } });
    assert.equal(got.headers.get('content-type'), 'application/x-test');
    assert.deepEqual(Buffer.from(await got.arrayBuffer()), data);
    const part = await fetch(`${node.url}/${db}/d/dir/file.bin`, { headers: { authorization: auth(), range: 'bytes=2-5' } });
    assert.equal(part.status, 206);
    assert.equal(await part.text(), '2345');
    assert.equal((await fetch(`${node.url}/${db}/d/dir/file.bin`, { headers: { authorization: auth(), range: 'bytes=99-' } })).status, 416);
    const doc = await request(node, 'GET', `/${db}/d`);
    const stub = doc.body._attachments['dir/file.bin'];
    assert.equal(stub.stub, true);
    assert.equal(stub.length, 20);
    assert.match(stub.digest, /^md5-/);
    const updated = await request(node, 'PUT', `/${db}/d`, { body: { ...doc.body, extra: 1 } });
    assert.equal(updated.status, 201);
    const inline = await request(node, 'GET', `/${db}/d?attachments=true`);
    assert.equal(Buffer.from(inline.body._attachments['dir/file.bin'].data, 'base64').toString(), data.toString());
    const since = await request(node, 'GET', `/${db}/d?atts_since=${encodeURIComponent(JSON.stringify([updated.body.rev]))}`);
    assert.equal(since.body._attachments['dir/file.bin'].stub, true);
    const del = await request(node, 'DELETE', `/${db}/d/dir/file.bin?rev=${updated.body.rev}`);
    assert.equal(del.status, 200);
    assert.equal((await request(node, 'GET', `/${db}/d/dir/file.bin`)).status, 404);
    const badStub = await request(node, 'PUT', `/${db}/e`, { body: { _attachments: { x: { stub: true, digest: 'md5-nope' } } } });
    assert.equal(badStub.status, 412);
  });

  test('multipart/related writes and reads (the CouchDB replicator format)', async () => {
    const db = await newDb();
    const boundary = 'abc123';
    const doc = { _id: 'm', title: 't', _attachments: { 'a.txt': { follows: true, content_type: 'text/plain', length: 5 } } };
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(doc)}\r\n--${boundary}\r\n\r\nhello\r\n--${boundary}--`),
    ]);
    const put = await request(node, 'PUT', `/${db}/m`, { raw: body, headers: { 'content-type': `multipart/related; boundary="${boundary}"` } });
    assert.equal(put.status, 201);
    const att = await fetch(`${node.url}/${db}/m/a.txt`, { headers: { authorization: auth() } });
    assert.equal(await att.text(), 'hello');
    const related = await fetch(`${node.url}/${db}/m?attachments=true`, { headers: { authorization: auth(), accept: '*/*' } });
    assert.match(related.headers.get('content-type')!, /^multipart\/related/);
    const text = await related.text();
    assert.match(text, /"follows":true/);
    // Text is stored gzip (compressible_types): multipart sends it as stored, as CouchDB
    // does, saying so in the stub and the part's headers (the standalone GET above decoded it).
    assert.match(text, /"encoding":"gzip"/);
    assert.match(text, /Content-Encoding: gzip/);
  });
});

function auth(): string {
  return 'Basic ' + Buffer.from('admin:test-password').toString('base64');
}

describe('bad input never crashes the node', () => {
  test('malformed requests get CouchDB errors and the node keeps serving', async () => {
    const db = await newDb();
    const cases: { method: string; path: string; raw?: string; body?: unknown; headers?: Record<string, string>; status: number; error?: string }[] = [
      { method: 'PUT', path: `/${db}/x`, raw: '{bad json', status: 400, error: 'bad_request' },
      { method: 'PUT', path: `/${db}/x`, raw: '[1,2]', status: 400 },
      { method: 'PUT', path: `/${db}/x`, raw: '['.repeat(1000) + ']'.repeat(1000), status: 400 },
      { method: 'PUT', path: `/${db}/_bad`, body: {}, status: 400, error: 'illegal_docid' },
      { method: 'PUT', path: `/${db}/x`, body: { _foo: 1 }, status: 400, error: 'doc_validation' },
      { method: 'PUT', path: `/${db}/x?rev=garbage`, body: {}, status: 400 },
      { method: 'PUT', path: `/${db}/x`, body: { big: 'x'.repeat(8_100_000) }, status: 413, error: 'document_too_large' },
      { method: 'PUT', path: `/${db}/x`, body: { _attachments: { a: { data: '!!!notbase64' } } }, status: 400 },
      { method: 'POST', path: `/${db}/_bulk_docs`, raw: '{"docs":[1]}', headers: { 'content-type': 'application/json' }, status: 400 },
      { method: 'POST', path: `/${db}/_bulk_docs`, body: { docs: [{ _id: 'a', _rev: '1-a' }], new_edits: 'no' }, status: 400 },
      { method: 'POST', path: `/${db}/_bulk_docs`, body: { docs: [{ _id: 'a' }], new_edits: false }, status: 400 },
      { method: 'GET', path: `/${db}/_all_docs?limit=abc`, status: 400, error: 'query_parse_error' },
      { method: 'GET', path: `/${db}/_all_docs?startkey=notjson`, status: 400, error: 'query_parse_error' },
      { method: 'GET', path: `/${db}/_changes?feed=weird`, status: 400 },
      { method: 'GET', path: `/${db}/x?open_revs=[1]`, status: 400 },
      { method: 'GET', path: `/${db}/%E0%A4%A`, status: 400 },
      { method: 'PATCH', path: `/${db}/x`, body: {}, status: 405, error: 'method_not_allowed' },
      { method: 'POST', path: `/${db}/_revs_diff`, body: { x: 'notalist' }, status: 400 },
      { method: 'GET', path: '/_nope', status: 400 },
      { method: 'POST', path: `/${db}/_find`, body: {}, status: 400, error: 'missing_required_key' },
      { method: 'POST', path: '/_replicate', body: {}, status: 400, error: 'bad_request' },
      { method: 'POST', path: '/_replicate', body: { source: 'http://[bad', target: 'x' }, status: 400 },
      { method: 'POST', path: '/_replicate', body: { source: 'Bad Name', target: 'x' }, status: 400 },
      { method: 'POST', path: '/_replicate', body: { source: 'a', target: 'b', doc_ids: 'x' }, status: 400 },
    ];
    for (const c of cases) {
      const res = await request(node, c.method, c.path, { ...(c.raw !== undefined ? { raw: c.raw } : {}), ...(c.body !== undefined ? { body: c.body } : {}), ...(c.headers ? { headers: c.headers } : {}) });
      assert.equal(res.status, c.status, `${c.method} ${c.path}: ${res.text.slice(0, 200)}`);
      assert.equal(typeof res.body?.error, 'string', `${c.method} ${c.path} has an error body`);
      assert.equal(typeof res.body?.reason, 'string');
      if (c.error) assert.equal(res.body.error, c.error, `${c.method} ${c.path}`);
    }
    const tooBig = await request(node, 'PUT', `/${db}/y`, { raw: 'x'.repeat(70 * 1024 * 1024) });
    assert.equal(tooBig.status, 413);
    assert.equal((await request(node, 'GET', '/_up', { auth: false })).status, 200);
    assert.equal((await request(node, 'PUT', `/${db}/fine`, { body: { ok: 1 } })).status, 201);
  });
});
