/**
 * Mango against a live node: `_index` (create, list, delete, bulk delete, stored as
 * `language: "query"` design documents), `_find` with every operator, sort with and
 * without an index, projection, bookmarks, partial and covering indexes, `$in` read
 * from the index, `_explain`, CouchDB's error bodies, and real clients (pouchdb-find
 * over http, nano's db.find).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import Nano from 'nano';
import { createDb, request, startNode, TestNode } from '../helpers/node-process';
import { PouchDB, remoteDb } from '../helpers/pouch';

// eslint-disable-next-line @typescript-eslint/no-require-imports
PouchDB.plugin(require('pouchdb-find'));

let node: TestNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.destroy();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

async function post(path: string, body: unknown, status = 200): Promise<Json> {
  const res = await request(node, 'POST', path, { body });
  assert.equal(res.status, status, res.text);
  return res.body;
}

async function find(db: string, query: Record<string, unknown>): Promise<Json> {
  return post(`/${db}/_find`, query);
}

async function ids(db: string, query: Record<string, unknown>): Promise<string[]> {
  return (await find(db, { limit: 1000, ...query })).docs.map((d: Json) => d._id);
}

async function expectError(path: string, body: unknown, status: number, error: string, reason?: RegExp | string, method = 'POST'): Promise<void> {
  const res = await request(node, method, path, { body });
  assert.equal(res.status, status, `${path} ${JSON.stringify(body)}: ${res.text}`);
  assert.equal(res.body.error, error, res.text);
  if (typeof reason === 'string') assert.equal(res.body.reason, reason);
  else if (reason) assert.match(res.body.reason, reason);
}

const pad = (n: number) => String(n).padStart(2, '0');

/** 40 documents (d00..d39) and two design documents that must never be answered. */
async function fixture(q = 4): Promise<string> {
  const db = await createDb(node, 'find', q);
  const docs: Json[] = [];
  for (let n = 0; n < 40; n++) {
    docs.push({
      _id: `d${pad(n)}`,
      type: n % 3 === 0 ? 'visit' : 'note',
      date: `2026-01-${pad((n % 28) + 1)}`,
      n,
      tags: n % 5 === 0 ? ['a', 'b'] : ['c'],
      ...(n % 4 === 0 ? { owner: { name: n % 8 === 0 ? 'ann' : 'bob', age: n } } : {}),
      ...(n === 7 ? { flag: null, word: 'Émile' } : {}),
    });
  }
  await post(`/${db}/_bulk_docs`, { docs }, 201);
  await request(node, 'PUT', `/${db}/_design/app`, { body: { views: { v: { map: 'function(doc){ emit(doc.n, null); }' } } } });
  return db;
}

const range = (from: number, to: number, step = 1) => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => `d${pad(from + i * step)}`);

test('_index: create, exists, list with _all_docs, stored as a query design doc, delete and bulk delete', async () => {
  const db = await fixture();
  const created = await post(`/${db}/_index`, { index: { fields: ['type', { date: 'asc' }] }, ddoc: 'by-type', name: 'type-date' });
  assert.deepEqual(created, { result: 'created', id: '_design/by-type', name: 'type-date' });
  assert.deepEqual(await post(`/${db}/_index`, { index: { fields: ['type', { date: 'asc' }] }, ddoc: '_design/by-type', name: 'type-date' }), { result: 'exists', id: '_design/by-type', name: 'type-date' });
  const generated = await post(`/${db}/_index`, { index: { fields: ['n'] } });
  assert.equal(generated.result, 'created');
  assert.match(generated.id, /^_design\/[0-9a-f]{40}$/);
  assert.equal(generated.id, `_design/${generated.name}`);
  assert.equal((await post(`/${db}/_index`, { index: { fields: ['n'] } })).result, 'exists');
  await post(`/${db}/_index`, { index: { fields: ['owner.name'], partial_filter_selector: { type: 'visit' } }, ddoc: 'by-type', name: 'owners' });

  const stored = await request(node, 'GET', `/${db}/_design/by-type`);
  assert.equal(stored.body.language, 'query');
  assert.deepEqual(stored.body.views['type-date'], { map: { fields: { type: 'asc', date: 'asc' }, partial_filter_selector: {} }, reduce: '_count', options: { def: { fields: ['type', { date: 'asc' }] } } });
  assert.deepEqual(stored.body.views.owners.map.partial_filter_selector, { type: { $eq: 'visit' } });
  const designDocs = await request(node, 'GET', `/${db}/_design_docs`);
  assert.ok(designDocs.body.rows.some((r: Json) => r.id === '_design/by-type'));

  const list = await request(node, 'GET', `/${db}/_index`);
  assert.equal(list.status, 200);
  assert.equal(list.body.total_rows, 4);
  assert.deepEqual(list.body.indexes[0], { ddoc: null, name: '_all_docs', type: 'special', def: { fields: [{ _id: 'asc' }] } });
  const byName = new Map(list.body.indexes.map((i: Json) => [i.name, i]));
  assert.deepEqual(byName.get('type-date'), { ddoc: '_design/by-type', name: 'type-date', type: 'json', partitioned: false, def: { fields: [{ type: 'asc' }, { date: 'asc' }] } });
  assert.deepEqual((byName.get('owners') as Json).def.partial_filter_selector, { type: { $eq: 'visit' } });
  assert.deepEqual((await request(node, 'GET', `/${db}/_index?skip=1&limit=1`)).body.indexes.length, 1);

  // DELETE with the ddoc's slash encoded (as pouchdb sends it), bare, or with _design/ in the path.
  const del = await request(node, 'DELETE', `/${db}/_index/_design%2Fby-type/json/owners`);
  assert.deepEqual([del.status, del.body], [200, { ok: true }]);
  await expectError(`/${db}/_index/by-type/json/owners`, undefined, 404, 'not_found', undefined, 'DELETE');
  await expectError(`/${db}/_index/by-type/text/type-date`, undefined, 404, 'not_found', undefined, 'DELETE');
  assert.equal((await request(node, 'DELETE', `/${db}/_index/_design/by-type/json/type-date`)).status, 200);
  // Nothing but the language left: the design document goes.
  assert.equal((await request(node, 'GET', `/${db}/_design/by-type`)).status, 404);

  const bulk = await post(`/${db}/_index/_bulk_delete`, { docids: [generated.name, '_design/nothing-here'] });
  assert.deepEqual(bulk, { success: [{ id: generated.id, ok: true }], fail: [{ id: '_design/nothing-here', error: 'not_found' }] });
  assert.equal((await request(node, 'GET', `/${db}/_index`)).body.total_rows, 1);
});

test('_index errors as CouchDB answers them; text and nouveau indexes are an honest 501', async () => {
  const db = await fixture(1);
  await expectError(`/${db}/_index`, {}, 400, 'missing_required_key', 'Missing required key: index');
  await expectError(`/${db}/_index`, { index: {} }, 400, 'missing_required_key', 'Missing required key: fields');
  await expectError(`/${db}/_index`, { index: { fields: 'a' } }, 400, 'invalid_sort_json');
  await expectError(`/${db}/_index`, { index: { fields: [{ a: 'up' }] } }, 400, 'invalid_sort_field');
  await expectError(`/${db}/_index`, { index: { fields: [{ a: 'asc' }, { b: 'desc' }] } }, 400, 'unsupported_mixed_sort', 'Sorts currently only support a single direction for all fields.');
  await expectError(`/${db}/_index`, { index: { fields: ['a'] }, partial_filter_selector: {} }, 400, 'invalid_key', 'Invalid key partial_filter_selector for this request.');
  await expectError(`/${db}/_index`, { index: { fields: ['a'] }, name: 5 }, 400, 'invalid_string');
  await expectError(`/${db}/_index`, { index: { fields: ['a'] }, type: 'geo' }, 400, 'invalid_index');
  await expectError(`/${db}/_index`, { index: { fields: ['a'], partial_filter_selector: { a: { $bad: 1 } } } }, 400, 'invalid_operator');
  await expectError(`/${db}/_index`, { index: { fields: ['a'] }, type: 'text' }, 501, 'not_implemented');
  await expectError(`/${db}/_index`, { index: { fields: ['a'] }, type: 'nouveau' }, 501, 'not_implemented');
  // A JavaScript design document cannot take a Mango index.
  await expectError(`/${db}/_index`, { index: { fields: ['a'] }, ddoc: 'app' }, 400, 'invalid_ddoc_lang');
  const wrongType = await request(node, 'POST', `/${db}/_index`, { body: { index: { fields: ['a'] } }, headers: { 'Content-Type': 'text/plain' } });
  assert.equal(wrongType.status, 415);
});

test('_find: every operator, against the documents they must match', async () => {
  const db = await fixture();
  const cases: [Record<string, unknown>, string[]][] = [
    [{ n: 5 }, ['d05']],
    [{ n: { $eq: 5 } }, ['d05']],
    [{ n: { $ne: 0 }, type: 'visit' }, range(3, 39, 3)],
    [{ n: { $gt: 36 } }, range(37, 39)],
    [{ n: { $gte: 37 } }, range(37, 39)],
    [{ n: { $lt: 2 } }, ['d00', 'd01']],
    [{ n: { $lte: 1 } }, ['d00', 'd01']],
    [{ n: { $in: [3, 30, 99] } }, ['d03', 'd30']],
    [{ n: { $nin: range(2, 39).map((_, i) => i + 2) } }, ['d00', 'd01']],
    [{ flag: { $exists: true } }, ['d07']],
    [{ owner: { $exists: false }, n: { $lt: 4 } }, ['d01', 'd02', 'd03']],
    [{ flag: { $type: 'null' } }, ['d07']],
    [{ tags: { $size: 2 } }, range(0, 35, 5)],
    [{ n: { $mod: [10, 1] } }, ['d01', 'd11', 'd21', 'd31']],
    [{ word: { $regex: '^[ÉE]mi' } }, ['d07']],
    [{ date: { $beginsWith: '2026-01-2' }, n: { $lt: 25 } }, range(19, 24)],
    [{ tags: { $all: ['a', 'b'] } }, range(0, 35, 5)],
    [{ tags: { $elemMatch: { $eq: 'b' } } }, range(0, 35, 5)],
    [{ tags: { $allMatch: { $eq: 'c' } }, n: { $lt: 4 } }, ['d01', 'd02', 'd03']],
    [{ owner: { $keyMapMatch: { $eq: 'age' } }, n: { $lt: 9 } }, ['d00', 'd04', 'd08']],
    [{ 'owner.name': 'ann' }, range(0, 32, 8)],
    [{ owner: { name: 'ann', age: { $gt: 8 } } }, ['d16', 'd24', 'd32']],
    [{ $and: [{ n: { $gt: 30 } }, { type: 'visit' }] }, ['d33', 'd36', 'd39']],
    [{ $or: [{ n: 1 }, { n: 38 }] }, ['d01', 'd38']],
    [{ $nor: [{ type: 'note' }, { n: { $lt: 30 } }] }, ['d30', 'd33', 'd36', 'd39']],
    [{ n: { $not: { $lt: 38 } } }, ['d38', 'd39']],
    [{ $not: { n: { $lt: 38 } } }, ['d38', 'd39']],
  ];
  for (const [selector, expected] of cases) {
    assert.deepEqual((await ids(db, { selector })).sort(), expected, JSON.stringify(selector));
  }
  // Design documents are never answered, even by a selector every document matches.
  assert.equal((await find(db, { selector: {}, limit: 1000 })).docs.length, 40);
  assert.equal((await find(db, { selector: { _id: { $gt: null } }, limit: 1000 })).docs.length, 40);
  assert.equal((await find(db, { selector: {} })).docs.length, 25, 'limit defaults to 25');
});

test('_find: sort with an index, no_usable_index without, projection, skip, limit 0, conflicts', async () => {
  const db = await fixture();
  await expectError(`/${db}/_find`, { selector: { n: { $gt: 0 } }, sort: ['n'] }, 400, 'no_usable_index', 'No index exists for this sort, try indexing by the sort fields.');
  // _all_docs serves a sort on _id only when the selector bounds _id.
  await expectError(`/${db}/_find`, { selector: {}, sort: ['_id'] }, 400, 'no_usable_index');
  assert.deepEqual(await ids(db, { selector: { _id: { $gt: 'd35' } }, sort: [{ _id: 'desc' }] }), ['d39', 'd38', 'd37', 'd36']);

  await post(`/${db}/_index`, { index: { fields: ['type', 'n'] }, name: 'type-n', ddoc: 'idx' });
  const asc = await ids(db, { selector: { type: 'visit', n: { $gt: 20 } }, sort: [{ type: 'asc' }, { n: 'asc' }] });
  assert.deepEqual(asc, range(21, 39, 3));
  // The equality on the leading field lets the index sort by its second field alone.
  assert.deepEqual(await ids(db, { selector: { type: 'visit' }, sort: [{ n: 'desc' }], limit: 3 }), ['d39', 'd36', 'd33']);
  await expectError(`/${db}/_find`, { selector: { type: { $gt: 'a' } }, sort: ['n'] }, 400, 'no_usable_index');
  assert.deepEqual(await ids(db, { selector: { type: 'visit' }, sort: ['type', 'n'], skip: 2, limit: 2 }), ['d06', 'd09']);

  const projected = await find(db, { selector: { type: 'visit', n: { $lt: 9 } }, fields: ['n', 'owner.name', 'missing'], sort: ['type', 'n'] });
  assert.deepEqual(projected.docs, [{ n: 0, owner: { name: 'ann' } }, { n: 3 }, { n: 6 }]);
  assert.deepEqual(await find(db, { selector: { type: 'visit', n: { $gt: 1 } }, limit: 0 }), { docs: [], bookmark: 'nil' });

  // A conflicted document shows _conflicts when asked.
  await post(`/${db}/_bulk_docs`, { docs: [{ _id: 'd00', _rev: '1-ffff', type: 'visit', n: 0, date: 'x', tags: [] }], new_edits: false }, 201);
  const plain = await find(db, { selector: { _id: 'd00' } });
  assert.equal(plain.docs[0]._conflicts, undefined);
  const withConflicts = await find(db, { selector: { _id: 'd00' }, conflicts: true });
  assert.equal(withConflicts.docs[0]._conflicts.length, 1);

  // An attachment stored gzip-encoded shows as a GET shows it: no storage encoding in the stub.
  const gz = gzipSync(Buffer.from('hello hello hello hello'));
  const att = await request(node, 'PUT', `/${db}/with-att/a.txt`, { raw: gz, headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' } });
  assert.equal(att.status, 201, att.text);
  const got = (await request(node, 'GET', `/${db}/with-att`)).body._attachments['a.txt'];
  for (const query of [{ selector: { _id: 'with-att' } }, { selector: { _id: 'with-att' }, r: 2 }]) {
    const stub = (await find(db, query)).docs[0]._attachments['a.txt'];
    assert.deepEqual(stub, got, JSON.stringify(query));
    assert.equal(stub.encoding, undefined);
  }

  // r > 1 reads every candidate again with that quorum, then matches and projects it.
  const quorum = await find(db, { selector: { type: 'visit', n: { $lt: 9 } }, fields: ['n'], sort: ['type', 'n'], r: 2, skip: 1, execution_stats: true });
  assert.deepEqual(quorum.docs, [{ n: 3 }, { n: 6 }]);
  assert.ok(quorum.execution_stats.total_quorum_docs_examined >= 3, JSON.stringify(quorum.execution_stats));
});

test('_find: the index follows writes and deletions; update=false reads it as it is', async () => {
  const db = await fixture(2);
  await post(`/${db}/_index`, { index: { fields: ['n'] }, ddoc: 'n', name: 'n' });
  assert.deepEqual(await ids(db, { selector: { n: { $gte: 38 } } }), ['d38', 'd39']);
  const doc = (await request(node, 'GET', `/${db}/d39`)).body;
  await request(node, 'PUT', `/${db}/d39`, { body: { ...doc, n: 1000 } });
  await request(node, 'DELETE', `/${db}/d38?rev=${(await request(node, 'GET', `/${db}/d38`)).body._rev}`);
  await request(node, 'PUT', `/${db}/late`, { body: { n: 500 } });
  assert.deepEqual(await ids(db, { selector: { n: { $gte: 38 } }, sort: ['n'] }), ['late', 'd39']);
  const stale = await find(db, { selector: { n: { $gte: 38 } }, update: false });
  assert.ok(Array.isArray(stale.docs));
  // Removing an index's definition and running _view_cleanup drops its rows.
  assert.equal((await request(node, 'DELETE', `/${db}/_index/n/json/n`)).status, 200);
  assert.equal((await post(`/${db}/_view_cleanup`, {}, 202)).ok, true);
});

test('_find: bookmarks page through every match exactly once, both directions and on _all_docs', async () => {
  const db = await fixture(4);
  await post(`/${db}/_index`, { index: { fields: ['type'] }, ddoc: 't', name: 't' });
  for (const query of [
    { selector: { type: 'note' }, sort: ['type'] },
    { selector: { type: 'note' }, sort: [{ type: 'desc' }] },
    { selector: { n: { $gt: 3 } } },
  ]) {
    const all = await ids(db, query);
    const paged: string[] = [];
    let bookmark: string | undefined;
    for (let page = 0; page < 100; page++) {
      const answer = await find(db, { ...query, limit: 4, ...(bookmark ? { bookmark } : {}) });
      if (answer.docs.length === 0) {
        assert.equal(answer.bookmark, bookmark ?? 'nil');
        break;
      }
      paged.push(...answer.docs.map((d: Json) => d._id));
      bookmark = answer.bookmark;
    }
    assert.deepEqual(paged, all, JSON.stringify(query));
    assert.equal(new Set(paged).size, paged.length);
  }
  await expectError(`/${db}/_find`, { selector: {}, bookmark: 'not a bookmark' }, 400, 'invalid_bookmark');
  // Operators see full scans apart from indexed queries.
  const metrics = (await request(node, 'GET', '/_node/_local/_prometheus')).text;
  assert.match(metrics, /divan_find_queries_total\{[^}]*index="json"[^}]*\} [1-9]/);
  assert.match(metrics, /divan_find_docs_examined_total\{[^}]*index="_all_docs"[^}]*\} [1-9]/);
});

test('_find: partial indexes serve only when named; $in is read from the index; covering answers read no document', async () => {
  const db = await fixture(4);
  await post(`/${db}/_index`, { index: { fields: ['n'], partial_filter_selector: { type: 'visit' } }, ddoc: 'p', name: 'visits' });
  const automatic = await find(db, { selector: { type: 'visit', n: { $gt: 30 } } });
  assert.match(automatic.warning, /No matching index found/);
  const named = await find(db, { selector: { type: 'visit', n: { $gt: 30 } }, use_index: ['p', 'visits'] });
  assert.equal(named.warning, undefined);
  assert.deepEqual(named.docs.map((d: Json) => d._id), ['d33', 'd36', 'd39']);
  const missing = await find(db, { selector: { n: { $gt: 38 } }, use_index: 'nothing/here' });
  assert.match(missing.warning, /^_design\/nothing, here was not used because it is not a valid index for this query\./);
  await expectError(`/${db}/_find`, { selector: { n: { $gt: 38 } }, use_index: 'nothing', allow_fallback: false }, 400, 'no_usable_index');

  await post(`/${db}/_index`, { index: { fields: ['tags'] }, ddoc: 'tags', name: 'tags' });
  await post(`/${db}/_index`, { index: { fields: ['n', 'type'] }, ddoc: 'nt', name: 'nt' });
  await post(`/${db}/_index`, { index: { fields: ['n'] }, ddoc: 'n', name: 'n' });
  const explain = await post(`/${db}/_explain`, { selector: { n: { $in: [4, 8, 15] } } });
  assert.equal(explain.index.name, 'n');
  assert.equal(explain.ranges.length, 4, JSON.stringify(explain.ranges)); // three values, and every array
  const inAnswer = await find(db, { selector: { n: { $in: [4, 8, 15] } }, execution_stats: true });
  assert.deepEqual(inAnswer.docs.map((d: Json) => d._id).sort(), ['d04', 'd08', 'd15']);
  assert.equal(inAnswer.execution_stats.total_keys_examined, 3);
  // An $in on an array field also matches arrays that hold one of the values.
  assert.deepEqual((await ids(db, { selector: { tags: { $in: ['a'] } } })).sort(), range(0, 35, 5));

  // Every index field must be required by the selector for the index to be usable at all.
  const covered = await find(db, { selector: { n: { $gt: 35 }, type: { $exists: true } }, fields: ['_id', 'type'], execution_stats: true, use_index: 'nt' });
  assert.equal(covered.warning, undefined);
  assert.deepEqual(covered.docs, [{ _id: 'd36', type: 'visit' }, { _id: 'd37', type: 'note' }, { _id: 'd38', type: 'note' }, { _id: 'd39', type: 'visit' }]);
  assert.equal(covered.execution_stats.total_docs_examined, 0);
  assert.equal((await post(`/${db}/_explain`, { selector: { n: { $gt: 35 }, type: { $exists: true } }, fields: ['_id', 'type'], use_index: 'nt' })).covering, true);
  assert.equal((await post(`/${db}/_explain`, { selector: { n: { $gt: 35 }, type: { $exists: true } }, fields: ['_id', 'date'], use_index: 'nt' })).covering, false);
});

test('_explain: CouchDB fields, normalized selector, options with defaults', async () => {
  const db = await fixture(1);
  await post(`/${db}/_index`, { index: { fields: ['type', 'n'] }, ddoc: 'tn', name: 'tn' });
  const explain = await post(`/${db}/_explain`, { selector: { type: 'visit', n: { $gt: 3, $lt: 9 } }, limit: 2 });
  assert.equal(explain.dbname, db);
  assert.deepEqual(explain.index, { ddoc: '_design/tn', name: 'tn', type: 'json', partitioned: false, def: { fields: [{ type: 'asc' }, { n: 'asc' }] } });
  assert.deepEqual(explain.selector, { $and: [{ type: { $eq: 'visit' } }, { n: { $gt: 3 } }, { n: { $lt: 9 } }] });
  assert.deepEqual(explain.opts, { use_index: [], bookmark: 'nil', limit: 2, skip: 0, sort: {}, fields: [], partition: '', r: 1, conflicts: false, stale: false, update: true, stable: false, execution_stats: false, allow_fallback: true });
  assert.equal(explain.limit, 2);
  assert.deepEqual(explain.fields, []);
  assert.deepEqual(explain.mrargs.start_key, ['visit', 3, '<MAX>']);
  assert.deepEqual(explain.mrargs.end_key, ['visit', 9]);
  assert.equal(explain.mrargs.direction, 'fwd');
  assert.equal(explain.covering, false);
  assert.ok(explain.index_candidates.some((c: Json) => c.index.name === '_all_docs' && c.analysis.reasons[0].name === 'unfavored_type'));
  assert.deepEqual(explain.selector_hints[0].indexable_fields, ['n', 'type']);
  const fallback = await post(`/${db}/_explain`, { selector: { word: 'x' } });
  assert.equal(fallback.index.name, '_all_docs');
});

test('_find request errors: CouchDB tokens and reasons', async () => {
  const db = await fixture(1);
  await expectError(`/${db}/_find`, {}, 400, 'missing_required_key', 'Missing required key: selector');
  await expectError(`/${db}/_find`, { selector: [] }, 400, 'invalid_selector_json');
  await expectError(`/${db}/_find`, { selector: {}, colour: 1 }, 400, 'invalid_key', 'Invalid key colour for this request.');
  await expectError(`/${db}/_find`, { selector: { a: { $foo: 1 } } }, 400, 'invalid_operator', 'Invalid operator: $foo');
  await expectError(`/${db}/_find`, { selector: { a: { $where: 1 } } }, 400, 'not_supported');
  await expectError(`/${db}/_find`, { selector: { a: { $in: 1 } } }, 400, 'bad_arg', /^Bad argument for operator \$in/);
  await expectError(`/${db}/_find`, { selector: { $gt: 1 } }, 400, 'invalid_selector', 'One or more conditions is missing a field name.');
  await expectError(`/${db}/_find`, { selector: {}, limit: -1 }, 400, 'invalid_non_neg_integer');
  await expectError(`/${db}/_find`, { selector: {}, r: 0 }, 400, 'invalid_pos_integer');
  await expectError(`/${db}/_find`, { selector: {}, conflicts: 'yes' }, 400, 'invalid_boolean');
  await expectError(`/${db}/_find`, { selector: {}, fields: 'a' }, 400, 'invalid_fields');
  await expectError(`/${db}/_find`, { selector: {}, fields: [1] }, 400, 'invalid_field');
  await expectError(`/${db}/_find`, { selector: {}, use_index: 5 }, 400, 'invalid_index_name');
  await expectError(`/${db}/_find`, { selector: {}, sort: [{ a: 'asc' }, { b: 'desc' }] }, 400, 'unsupported_mixed_sort');
  await expectError(`/${db}/_find`, undefined, 405, 'method_not_allowed', undefined, 'GET');
  await expectError(`/nope-${Date.now()}/_find`, { selector: {} }, 404, 'not_found');
  const wrongType = await request(node, 'POST', `/${db}/_find`, { body: { selector: {} }, headers: { 'Content-Type': 'text/plain' } });
  assert.equal(wrongType.status, 415);
});

test('clients: pouchdb-find over http and nano db.find, unmodified', async () => {
  const db = await fixture(2);
  const pouch = remoteDb(node, db) as Json;
  const created = await pouch.createIndex({ index: { fields: ['type', 'n'] }, ddoc: 'pouch', name: 'type-n' });
  assert.equal(created.result, 'created');
  const found = await pouch.find({ selector: { type: 'visit', n: { $gte: 30 } }, sort: [{ type: 'desc' }, { n: 'desc' }], fields: ['_id', 'n'] });
  assert.deepEqual(found.docs, [{ _id: 'd39', n: 39 }, { _id: 'd36', n: 36 }, { _id: 'd33', n: 33 }, { _id: 'd30', n: 30 }]);
  const explained = await pouch.explain({ selector: { type: 'visit', n: { $gt: 0 } } });
  assert.equal(explained.index.name, 'type-n');
  const indexes = await pouch.getIndexes();
  assert.deepEqual(indexes.indexes.map((i: Json) => i.name), ['_all_docs', 'type-n']);
  assert.deepEqual(await pouch.deleteIndex({ ddoc: '_design/pouch', name: 'type-n' }), { ok: true });
  assert.equal((await pouch.getIndexes()).total_rows, 1);
  await assert.rejects(pouch.find({ selector: { n: 1 }, sort: ['n'] }), (err: Json) => err.status === 400 && err.error === 'no_usable_index');

  const nano = Nano(node.authUrl).use<Json>(db);
  await nano.createIndex({ index: { fields: ['n'] }, name: 'n', ddoc: 'nano' });
  const answer = await nano.find({ selector: { n: { $lt: 3 } }, sort: ['n'], fields: ['_id'] });
  assert.deepEqual(answer.docs, [{ _id: 'd00' }, { _id: 'd01' }, { _id: 'd02' }]);
});
