/**
 * What real clients found (issue 16): behaviours PouchDB 9's own integration suite
 * checks against CouchDB 3.5, reproduced against a live node, with PouchDB where the
 * original failure was a PouchDB test and plain HTTP where CouchDB's exact answer is
 * the point. Plus the `_changes` timeout clamp of issue 8.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ADMIN, request, startNode, TestNode, uniqueDb, createDb, waitFor } from '../helpers/node-process';
import { localDb, remoteDb, replicateOnce, withDeadline } from '../helpers/pouch';

let node: TestNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.destroy();
});

const newDb = (): Promise<string> => createDb(node, 'compat');

const enc = encodeURIComponent;
const authHeader = 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');

/** Names an object literal "has" through Object.prototype, which once answered 501. */
const RESERVED = ['constructor', 'toString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString'];

describe('ids and names that are Object.prototype members (item 2)', () => {
  test('every endpoint treats them as ordinary ids', async () => {
    const db = await newDb();
    for (const id of RESERVED) {
      const put = await request(node, 'PUT', `/${db}/${id}`, { body: { n: id } });
      assert.equal(put.status, 201, `PUT ${id}: ${put.text}`);
      const get = await request(node, 'GET', `/${db}/${id}`);
      assert.equal(get.status, 200, `GET ${id}: ${get.text}`);
      assert.equal(get.body._id, id);
      let rev = put.body.rev as string;

      // An attachment whose name is reserved too.
      const att = await fetch(`${node.url}/${db}/${id}/${id}?rev=${rev}`, {
        method: 'PUT',
        headers: { authorization: authHeader, 'content-type': 'text/plain' },
        body: 'bytes of ' + id,
      });
      const attText = await att.text();
      assert.equal(att.status, 201, `PUT attachment on ${id}: ${attText}`);
      rev = (JSON.parse(attText) as { rev: string }).rev;
      const attGet = await fetch(`${node.url}/${db}/${id}/${id}`, { headers: { authorization: authHeader } });
      assert.equal(attGet.status, 200);
      assert.equal(await attGet.text(), 'bytes of ' + id);
      const noAtt = await request(node, 'GET', `/${db}/${id}/${id === 'constructor' ? 'valueOf' : 'constructor'}`);
      assert.equal(noAtt.status, 404, 'a missing attachment named like a prototype member is missing');

      const bulkGet = await request(node, 'POST', `/${db}/_bulk_get`, { body: { docs: [{ id }, { id, rev }] } });
      assert.equal(bulkGet.status, 200);
      for (const result of bulkGet.body.results) assert.equal(result.docs[0].ok?._id, id, JSON.stringify(result));

      const diff = await request(node, 'POST', `/${db}/_revs_diff`, { body: { [id]: [rev, '9-abc'] } });
      assert.equal(diff.status, 200);
      assert.deepEqual(diff.body, { [id]: { missing: ['9-abc'], possible_ancestors: [rev] } });

      const byKeys = await request(node, 'POST', `/${db}/_all_docs`, { body: { keys: [id] } });
      assert.equal(byKeys.body.rows[0].id, id);
      const byKey = await request(node, 'GET', `/${db}/_all_docs?key=${enc(JSON.stringify(id))}`);
      assert.deepEqual(byKey.body.rows.map((r: { id: string }) => r.id), [id]);

      const local = await request(node, 'PUT', `/${db}/_local/${id}`, { body: { n: id } });
      assert.equal(local.status, 201, `PUT _local/${id}: ${local.text}`);
      assert.equal((await request(node, 'GET', `/${db}/_local/${id}`)).body.n, id);
      assert.equal((await request(node, 'DELETE', `/${db}/_local/${id}?rev=${local.body.rev}`)).status, 200);

      const del = await request(node, 'DELETE', `/${db}/${id}?rev=${rev}`);
      assert.equal(del.status, 200, `DELETE ${id}: ${del.text}`);
      assert.equal((await request(node, 'GET', `/${db}/${id}`)).body.reason, 'deleted');
    }
    // `__proto__` as an attachment name once vanished into the prototype of the
    // attachments map; like every name starting with `_` it is refused, as CouchDB does.
    const doc = await request(node, 'PUT', `/${db}/protoatt`, { body: {} });
    for (const name of ['__proto__', '_foo']) {
      const res = await request(node, 'PUT', `/${db}/protoatt/${name}?rev=${doc.body.rev}`, { raw: 'x', headers: { 'content-type': 'text/plain' } });
      assert.deepEqual([res.status, res.body.error], [400, 'bad_request'], `${name}: ${res.text}`);
    }
    // `__proto__` is refused as an id (it starts with `_`), but as a _revs_diff key
    // it is answered like any other: it must not vanish into the prototype.
    const diff = await request(node, 'POST', `/${db}/_revs_diff`, { raw: '{"__proto__":["1-abc"]}', headers: { 'content-type': 'application/json' } });
    assert.equal(diff.text.trim(), '{"__proto__":{"missing":["1-abc"]}}');
  });

  test('database names and config sections that are prototype members', async () => {
    for (const name of ['constructor']) { // database names are lowercase: the one prototype member that is valid
      assert.equal((await request(node, 'PUT', `/${name}`)).status, 201, name);
      assert.equal((await request(node, 'GET', `/${name}`)).body.db_name, name);
      assert.equal((await request(node, 'PUT', `/${name}/hasOwnProperty`, { body: {} })).status, 201);
      assert.equal((await request(node, 'GET', `/${name}/_all_docs`)).body.total_rows, 1);
      assert.equal((await request(node, 'DELETE', `/${name}`)).status, 200);
    }
    for (const path of ['/_node/_local/_config/constructor', '/_node/_local/_config/couchdb/constructor']) {
      const res = await request(node, 'GET', path);
      assert.equal(res.status, 404, `${path}: ${res.text}`);
    }
  });

  test('PouchDB: test docs with reserved javascript ids, #5886 bulkGet, revs diff with reserved ID', async () => {
    const db = remoteDb(node, uniqueDb('reserved'));
    await db.bulkDocs([{ _id: 'constructor' }, { _id: 'toString' }, { _id: 'valueOf' }, { _id: '_design/all', views: { all: { map: 'function (doc) { emit(doc._id); }' } } }]);
    assert.equal((await db.allDocs({ key: 'constructor' })).rows.length, 1, 'allDocs with key');
    assert.equal((await db.allDocs({ keys: ['constructor'] })).rows.length, 1, 'allDocs with keys');
    assert.equal((await db.allDocs()).rows.length, 4, 'allDocs empty opts');
    const copy = localDb('reserved');
    const result = await replicateOnce(db, copy);
    assert.equal(result.docs_written, 4);

    const pouch = db as unknown as {
      get(id: string): Promise<{ _rev: string }>;
      bulkGet(o: unknown): Promise<{ results: { id: string; docs: { ok?: { _id: string } }[] }[] }>;
      revsDiff(o: unknown): Promise<Record<string, { missing: string[] }>>;
    };
    const rev = (await pouch.get('constructor'))._rev;
    const got = await pouch.bulkGet({ docs: [{ id: 'constructor', rev }] });
    assert.equal(got.results[0]!.docs[0]!.ok!._id, 'constructor');
    const diff = await pouch.revsDiff({ constructor: [rev, '2-a'] });
    assert.deepEqual(diff['constructor' as string]!.missing, ['2-a']);
    await copy.destroy();
    await db.destroy();
  });
});

describe('_all_docs key (item 3)', () => {
  test('PouchDB: test total_rows with a variety of criteria', async () => {
    const db = remoteDb(node, uniqueDb('totalrows'));
    const docs: Record<string, unknown>[] = Array.from({ length: 10 }, (_, i) => ({ _id: String(i) }));
    const written = await db.bulkDocs(docs);
    await db.bulkDocs([3, 7].map((i) => ({ _id: String(i), _rev: written[i].rev, _deleted: true })));
    const check = async (options: Record<string, unknown>, rows: number, keys?: string[]) => {
      const res = await db.allDocs(options);
      assert.equal(res.rows.length, rows, JSON.stringify(options));
      assert.equal(res.total_rows, 8, 'total_rows with ' + JSON.stringify(options));
      if (keys) assert.deepEqual(res.rows.map((r) => r.key), keys);
    };
    await check({}, 8);
    await check({ startkey: '5' }, 4);
    await check({ startkey: '5', skip: 2, limit: 10 }, 2);
    await check({ startkey: '5', limit: 0 }, 0);
    await check({ keys: ['5'], limit: 0 }, 0);
    await check({ limit: 0 }, 0);
    await check({ startkey: '5', descending: true, skip: 1 }, 4);
    await check({ startkey: '5', endkey: 'z' }, 4);
    await check({ startkey: '5', endkey: '5' }, 1);
    await check({ startkey: '5', endkey: '4' }, 0);
    await check({ startkey: '5', endkey: '4', descending: true }, 2);
    await check({ startkey: '3', endkey: '7', descending: false }, 3);
    await check({ startkey: '7', endkey: '3', descending: true }, 3);
    await check({ startkey: '', endkey: '0' }, 1);
    await check({ keys: ['0', '1', '3'] }, 3);
    await check({ keys: ['0', '1', '0', '2', '1', '1'] }, 6, ['0', '1', '0', '2', '1', '1']);
    await check({ keys: [] }, 0);
    await check({ keys: ['7'] }, 1);
    await check({ key: '3' }, 0);
    await check({ key: '2' }, 1, ['2']);
    await check({ key: 'z' }, 0);
    await db.destroy();
  });

  test('PouchDB: test "key" option (key with keys is refused as CouchDB refuses it)', async () => {
    const db = remoteDb(node, uniqueDb('keyopt'));
    await db.bulkDocs([{ _id: '0' }, { _id: '1' }, { _id: '2' }]);
    assert.deepEqual((await db.allDocs({ key: '1' })).rows.map((r) => r.id), ['1']);
    await assert.rejects(db.allDocs({ key: '1', keys: ['1', '2'] }));
    await db.allDocs({ key: '1', startkey: '1' });
    await db.allDocs({ key: '1', endkey: '1' });
    const both = await request(node, 'POST', `/${db.name.split('/').pop()}/_all_docs?key=%221%22`, { body: { keys: ['1'] } });
    assert.equal(both.status, 400);
    assert.deepEqual(both.body, { error: 'query_parse_error', reason: '`keys` is incompatible with `key`, `start_key` and `end_key`' });
    await db.destroy();
  });

  test('key on _design_docs, _local_docs and _all_dbs', async () => {
    const db = await newDb();
    for (const id of ['_design/a', '_design/b', 'c']) await request(node, 'PUT', `/${db}/${id}`, { body: {} });
    for (const id of ['x', 'y']) await request(node, 'PUT', `/${db}/_local/${id}`, { body: {} });
    const design = await request(node, 'GET', `/${db}/_design_docs?key=${enc('"_design/b"')}`);
    assert.deepEqual(design.body.rows.map((r: { id: string }) => r.id), ['_design/b']);
    const local = await request(node, 'GET', `/${db}/_local_docs?key=${enc('"_local/y"')}`);
    assert.deepEqual(local.body.rows.map((r: { id: string }) => r.id), ['_local/y']);
    const dbs = await request(node, 'GET', `/_all_dbs?key=${enc(JSON.stringify(db))}`);
    assert.deepEqual(dbs.body, [db]);
  });
});

describe('_local documents (item 5)', () => {
  const binAttDocLocal = {
    _id: '_local/bin_doc',
    _attachments: { 'foo.txt': { content_type: 'text/plain', data: 'VGhpcyBpcyBhIGJhc2U2NCBlbmNvZGVkIHRleHQ=' } },
  };

  test('PouchDB: putting returns {ok: true}; Deleting _local docs with bulkDocs', async () => {
    const db = remoteDb(node, uniqueDb('localbulk'));
    assert.equal((await db.put({ _id: '_local/foo' })).ok, true);
    assert.equal((await db.put({ _id: 'quux' })).ok, true);
    const bulk = await db.bulkDocs([{ _id: '_local/bar' }, { _id: 'baz' }]);
    assert.equal(bulk.length, 2);
    assert.equal(bulk[0].ok, true, JSON.stringify(bulk[0]));
    assert.equal(bulk[0].rev, '0-1');
    assert.equal(bulk[1].ok, true);
    assert.equal((await db.get('_local/bar'))._rev, '0-1');

    const rev1 = (await db.put({ _id: '_local/godzilla' })).rev;
    const rev2 = (await db.put({ _id: 'mothra' })).rev;
    const rev3 = (await db.put({ _id: 'rodan' })).rev;
    const deleted = await db.bulkDocs([
      { _id: 'mothra', _rev: rev2, _deleted: true },
      { _id: '_local/godzilla', _rev: rev1, _deleted: true },
      { _id: 'rodan', _rev: rev3, _deleted: true },
    ]);
    assert.deepEqual(deleted[1], { ok: true, id: '_local/godzilla', rev: '0-0' });
    assert.deepEqual((await db.allDocs({ keys: ['mothra', 'rodan'] })).rows.map((r) => r.value.deleted), [true, true]);
    await assert.rejects(db.get('_local/godzilla'), (err: { status: number }) => err.status === 404);
    // A local doc's failure is its own row, as for any document.
    const stale = await db.bulkDocs([{ _id: '_local/bar', _rev: '0-9', x: 1 }, { _id: 'zilla' }]);
    assert.equal((stale[0] as { error: string }).error, 'conflict');
    assert.equal(stale[1].ok, true);
    await db.destroy();
  });

  test('PouchDB: local docs - put then get w/ revisions', async () => {
    const db = remoteDb(node, uniqueDb('localrevs'));
    await db.put({ _id: '_local/foo' });
    const doc = await db.get('_local/foo');
    assert.equal(doc._revisions, undefined);
    doc._revisions = { start: 0, ids: ['1'] };
    await db.put(doc);
    const again = await db.get('_local/foo');
    assert.equal(again._revisions, undefined, 'a local doc stores no _revisions');
    await db.destroy();
  });

  test('PouchDB: Test attachments:true for _local doc; attachment endpoints answer 400 as CouchDB', async () => {
    const name = uniqueDb('localatt');
    const db = remoteDb(node, name);
    await db.put(binAttDocLocal);
    const doc = await db.get('_local/bin_doc', { attachments: true });
    assert.equal(doc._attachments, undefined, 'a local doc keeps no _attachments');
    const raw = await request(node, 'GET', `/${name}/_local/bin_doc`);
    assert.equal(raw.text.includes('_attachments'), false, raw.text);
    for (const [method, path] of [
      ['GET', `/${name}/_local/bin_doc/foo.txt`],
      ['GET', `/${name}/_local/not_a_doc/not-real.txt`],
      ['PUT', `/${name}/_local/bin_doc/foo.txt?rev=0-1`],
      ['DELETE', `/${name}/_local/bin_doc/foo.txt?rev=0-1`],
      ['GET', `/${name}/_local%2Fbin_doc/foo.txt`],
    ] as const) {
      const res = await request(node, method, path, method === 'PUT' ? { raw: 'x', headers: { 'content-type': 'text/plain' } } : {});
      assert.equal(res.status, 400, `${method} ${path}: ${res.text}`);
      assert.deepEqual(res.body, { error: 'bad_request', reason: '_local documents do not accept attachments.' });
    }
    await assert.rejects(db.getAttachment('_local/bin_doc', 'foo.txt'), (err: { status: number }) => err.status === 400);
    await db.destroy();
  });

  test('local docs refuse unknown special members, as documents do', async () => {
    const db = await newDb();
    const res = await request(node, 'PUT', `/${db}/_local/x`, { body: { _zing: 1 } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error, 'doc_validation');
    const missing = await request(node, 'DELETE', `/${db}/_local/nothere?rev=1-fake`);
    assert.equal(missing.status, 404, 'PouchDB: local docs - remove missing');
  });
});

describe('_replication_* fields (item 6)', () => {
  test('PouchDB: Replication fields (#2442)', async () => {
    const db = remoteDb(node, uniqueDb('replfields'));
    const doc = { _replication_id: 'test', _replication_state: 'triggered', _replication_state_time: 1, _replication_stats: {}, _replication_state_reason: 'r' };
    const resp = await (db as unknown as { post(d: unknown): Promise<{ id: string }> }).post(doc);
    const back = await db.get(resp.id);
    assert.equal(back._replication_id, 'test');
    assert.equal(back._replication_state, 'triggered');
    assert.equal(back._replication_state_time, 1);
    assert.deepEqual(back._replication_stats, {});
    assert.equal(back._replication_state_reason, 'r');
    const bad = await request(node, 'POST', `/${db.name.split('/').pop()}`, { body: { _replication_nonsense: 1 } });
    assert.equal(bad.body.error, 'doc_validation');
    await db.destroy();
  });
});

describe('_changes with long doc_ids (item 8)', () => {
  test('PouchDB: #2569 Big non-live doc_ids filter', async () => {
    const db = remoteDb(node, uniqueDb('bigids'));
    const docs = Array.from({ length: 5 }, (_, i) => {
      let id = '';
      // As the PouchDB test: 50 base64 pieces of a 20-character number string.
      for (let j = 0; j < 50; j++) id += Buffer.from(String(i * 1000 + j).padStart(20, '0.')).toString('base64');
      return { _id: id };
    });
    assert.ok(docs[0]!._id.length > 1300, `ids of ${docs[0]!._id.length} characters`);
    await db.bulkDocs(docs);
    const changes = await (db as unknown as { changes(o: unknown): Promise<{ results: { id: string }[] }> }).changes({ return_docs: true, doc_ids: [docs[1]!._id, docs[3]!._id] });
    assert.deepEqual(changes.results.map((r) => r.id).sort(), [docs[1]!._id, docs[3]!._id].sort());
    await db.destroy();
  });
});

/** Read a `_changes` response line by line until `until` says stop (or the response ends). */
async function changesLines(pathAndQuery: string, until: (lines: string[]) => boolean, onOpen?: (lines: string[]) => Promise<void>): Promise<string[]> {
  const controller = new AbortController();
  const res = await fetch(node.url + pathAndQuery, { headers: { authorization: authHeader }, signal: controller.signal });
  assert.equal(res.status, 200);
  const lines: string[] = [];
  let buffered = '';
  const decoder = new TextDecoder();
  const opened = onOpen?.(lines);
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        lines.push(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
      if (until(lines)) break;
    }
  } finally {
    controller.abort();
    await opened;
  }
  return lines;
}

function rowsOf(lines: string[]): { id: string; seq: string | null }[] {
  return lines.filter((l) => l.startsWith('{"seq"')).map((l) => JSON.parse(l.replace(/,$/, '')));
}

describe('seq_interval (item 9)', () => {
  test('normal feed: seq only where the countdown from limit (CouchDB: 10^15 without one) is a multiple', async () => {
    const db = await newDb();
    for (let i = 0; i < 9; i++) await request(node, 'PUT', `/${db}/d${i}`, { body: {} });
    const full = (await request(node, 'GET', `/${db}/_changes`)).body;
    const seqOf = (id: string) => full.results.find((r: { id: string }) => r.id === id).seq;

    const limited = (await request(node, 'GET', `/${db}/_changes?seq_interval=3&limit=7`)).body;
    assert.equal(limited.results.length, 7);
    // Rows 0..6 with countdowns 7..1: only countdowns 6 and 3 (rows 1 and 4) carry a seq.
    limited.results.forEach((row: { id: string; seq: string | null }, k: number) => {
      if (k === 1 || k === 4) assert.equal(row.seq, seqOf(row.id), `row ${k} carries its seq`);
      else assert.equal(row.seq, null, `row ${k} carries none`);
    });
    assert.equal(typeof limited.last_seq, 'string');
    assert.equal(limited.last_seq, seqOf(limited.results[6].id), 'last_seq is the last row\'s position');

    // No limit: CouchDB counts down from 10^15, and 10^15 mod 3 = 1: rows 1, 4, 7.
    const unlimited = (await request(node, 'GET', `/${db}/_changes?seq_interval=3`)).body;
    assert.deepEqual(
      unlimited.results.flatMap((row: { seq: string | null }, k: number) => (row.seq === null ? [] : [k])),
      [1, 4, 7],
    );
    const bad = await request(node, 'GET', `/${db}/_changes?seq_interval=0`);
    assert.deepEqual([bad.status, bad.body], [400, { error: 'bad_request', reason: 'invalid_seq_interval' }]);
  });

  test('continuous and longpoll feeds count across passes; every row of a live feed keeps counting', async () => {
    const db = await newDb();
    let written = 0;
    const writeOne = async () => {
      assert.equal((await request(node, 'PUT', `/${db}/w${written++}`, { body: {} })).status, 201);
    };
    // One document per pass: countdowns 4, 3, 2, 1, so rows 0 and 2 carry a seq.
    const lines = await withDeadline(
      changesLines(`/${db}/_changes?feed=continuous&since=now&seq_interval=2&limit=4`, (ls) => ls.some((l) => l.startsWith('{"last_seq"')), async (seen) => {
        for (let i = 0; i < 4; i++) {
          await writeOne();
          // Wait until that row is out before the next write, so each row is its own pass.
          await waitFor(async () => rowsOf(seen).length > i, 10_000, `row ${i} of the feed`);
        }
      }),
      30_000,
      'continuous feed with seq_interval',
    );
    const rows = rowsOf(lines);
    assert.deepEqual(rows.map((r) => r.seq !== null), [true, false, true, false]);
    assert.ok(lines.some((l) => l.startsWith('{"last_seq"')));

    const longpoll = (await request(node, 'GET', `/${db}/_changes?feed=longpoll&since=0&seq_interval=2&limit=3`)).body;
    assert.deepEqual(longpoll.results.map((r: { seq: string | null }) => r.seq !== null), [false, true, false]);
  });
});

describe('error tokens as CouchDB (item 10)', () => {
  test('PouchDB: Testing get with open_revs with wrong params', async () => {
    const db = remoteDb(node, uniqueDb('openrevs'));
    await db.put({ _id: 'foo' });
    await assert.rejects(db.get('foo', { open_revs: { whatever: 'which is', 'not an array': 'or all string' } }), (err: { name: string }) =>
      ['unknown_error', 'bad_request'].includes(err.name),
    );
    await assert.rejects(db.get('foo', { open_revs: ['1-almost', '2-correct', 'keys'] }), (err: { name: string }) => err.name === 'bad_request');
    await db.destroy();
  });

  test('_changes filters and _view: 404 where the design doc or member is missing, honest answers where it exists', async () => {
    const db = await newDb();
    await request(node, 'PUT', `/${db}/_design/d`, { body: { filters: { f: 'function (doc) { return true; }' }, views: { v: { map: 'function (doc) {}' } } } });
    await request(node, 'PUT', `/${db}/_design/empty`, { body: {} });
    const expect = async (path: string, status: number, error: string, reason?: string, init: { body?: unknown; method?: string } = {}) => {
      const res = await request(node, init.method ?? 'GET', path, init.body === undefined ? {} : { body: init.body });
      assert.equal(res.status, status, `${path}: ${res.text}`);
      assert.equal(res.body.error, error, `${path}: ${res.text}`);
      if (reason !== undefined) assert.equal(res.body.reason, reason, path);
    };
    await expect(`/${db}/_changes?filter=d/nope`, 404, 'not_found', 'missing json key: nope');
    await expect(`/${db}/_changes?filter=empty/f`, 404, 'not_found', 'missing json key: filters');
    await expect(`/${db}/_changes?filter=nodoc/f`, 404, 'not_found', 'missing');
    await expect(`/${db}/_changes?filter=d/constructor`, 404, 'not_found', 'missing json key: constructor');
    assert.equal((await request(node, 'GET', `/${db}/_changes?filter=d/f`)).status, 200);
    await expect(`/${db}/_changes?filter=oneword`, 400, 'bad_request', '`filter` must be of the form `designname/filtername`');
    await expect(`/${db}/_changes?filter=_nonsense`, 400, 'bad_request', 'unknown builtin filter name');
    await expect(`/${db}/_changes?filter=_view&view=d/nope`, 404, 'not_found', 'missing json key: nope');
    await expect(`/${db}/_changes?filter=_view`, 400, 'bad_request', '`view` filter parameter is not provided.');
    assert.equal((await request(node, 'GET', `/${db}/_changes?filter=_view&view=d/v`)).status, 200);
    await expect(`/${db}/_design/d/_view/nope`, 404, 'not_found', 'missing_named_view');
    await expect(`/${db}/_design/nodoc/_view/v`, 404, 'not_found', 'missing');
    assert.equal((await request(node, 'GET', `/${db}/_design/d/_view/v`)).status, 200);
    await expect(`/${db}/_changes?filter=_selector`, 400, 'bad_request', 'Selector must be specified in POST payload');
    await expect(`/${db}/_changes?filter=_selector`, 400, 'bad_request', 'Selector error: expected a JSON object', { method: 'POST', body: { selector: [1] } });
    await expect(`/${db}/_changes?filter=_selector`, 400, 'bad_request', 'Selector error: expected a JSON object', { method: 'POST', body: {} });
  });
});

/** Resolves with the status once the response headers arrive, and the first body bytes. */
function openFeed(pathAndQuery: string): { headers: Promise<{ status: number; contentType: string }>; firstBytes: Promise<string>; close(): void } {
  const req = http.get(node.url + pathAndQuery, { headers: { authorization: authHeader } });
  let resolveFirst: (text: string) => void = () => undefined;
  const firstBytes = new Promise<string>((resolve) => (resolveFirst = resolve));
  const headers = new Promise<{ status: number; contentType: string }>((resolve, reject) => {
    req.on('response', (res) => {
      resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']) });
      res.setEncoding('utf8');
      res.once('data', (chunk: string) => resolveFirst(chunk));
    });
    req.on('error', reject);
  });
  headers.catch(() => undefined);
  return { headers, firstBytes, close: () => req.destroy() };
}

describe('live feeds answer at once (item 13)', () => {
  test('continuous, eventsource and longpoll send status and headers before anything is written', async () => {
    const db = await newDb();
    for (const [feed, type] of [
      ['continuous', 'application/json'],
      ['eventsource', 'text/event-stream'],
      ['longpoll', 'application/json'],
    ] as const) {
      const open = openFeed(`/${db}/_changes?feed=${feed}&since=now`);
      try {
        // Nothing is written while waiting: before the fix these waited for the 60 s timeout.
        const head = await withDeadline(open.headers, 10_000, `${feed} headers`);
        assert.equal(head.status, 200);
        assert.equal(head.contentType, type);
        const first = await withDeadline(open.firstBytes, 10_000, `${feed} first bytes`);
        if (feed === 'longpoll') assert.ok(first.startsWith('{"results":['), first);
        else assert.equal(first, '\n');
      } finally {
        open.close();
      }
    }
  });
});

describe('_changes timeout and heartbeat beyond setTimeout\'s range (issue 8, item 8)', () => {
  test('a huge timeout or heartbeat never overflows setTimeout', async () => {
    const db = await newDb();
    for (const query of ['feed=longpoll&since=now&timeout=9999999999', 'feed=continuous&since=now&heartbeat=9999999999', 'feed=continuous&since=now&timeout=9999999999']) {
      const lines = await withDeadline(
        changesLines(`/${db}/_changes?${query}`, (ls) => ls.some((l) => l.includes('"id"')), async () => {
          await request(node, 'PUT', `/${db}/${uniqueDb('doc')}`, { body: {} });
        }),
        20_000,
        query,
      );
      assert.ok(lines.some((l) => l.includes('"id"')), query);
    }
    // One more round trip, so whatever the node wrote to stderr meanwhile has arrived.
    await request(node, 'GET', `/${db}`);
    assert.ok(!node.stderr.join('').includes('TimeoutOverflowWarning'), node.stderr.join('').slice(0, 500));
  });

  test('timeout is clamped to changesTimeoutMsMax: a longpoll asking for 2^33 ms ends at the maximum', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'divan-compat-config-'));
    const file = path.join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ changesTimeoutMs: 300, changesTimeoutMsMax: 600 }));
    const small = await startNode({ args: ['--config', file] });
    try {
      const db = uniqueDb('clamp');
      assert.equal((await request(small, 'PUT', `/${db}`)).status, 201);
      const res = await request(small, 'GET', `/${db}/_changes?feed=longpoll&since=now&timeout=9999999999`, { timeoutMs: 20_000 });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.results, []);
      assert.equal(typeof res.body.last_seq, 'string');
      assert.ok(!small.stderr.join('').includes('TimeoutOverflowWarning'));
    } finally {
      await small.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
