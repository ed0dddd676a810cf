/**
 * Views against a live node: map and reduce queries with CouchDB's parameters,
 * collation order, incremental updates checked against a from-scratch map, stale
 * reads, errors, sandbox containment, and real clients (nano's db.view, PouchDB's
 * http query).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Nano from 'nano';
import { collate, compareRaw } from '../../src/shard/query/collate';
import { createDb, request, startNode, TestNode, waitFor } from '../helpers/node-process';
import { remoteDb } from '../helpers/pouch';
import { mulberry32 } from '../helpers/random';
import { escapeAttempts } from '../helpers/sandbox-escapes';

let node: TestNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.destroy();
});

const show = (v: unknown): string => JSON.stringify(v);

async function put(db: string, id: string, body: unknown): Promise<string> {
  const res = await request(node, 'PUT', `/${db}/${encodeURIComponent(id)}`, { body });
  assert.ok(res.status === 201 || res.status === 202, res.text);
  return res.body.rev as string;
}

async function bulk(db: string, docs: unknown[], newEdits = true): Promise<void> {
  const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs, ...(newEdits ? {} : { new_edits: false }) } });
  assert.equal(res.status, 201, res.text);
}

async function view(db: string, path: string): Promise<any> {
  const res = await request(node, 'GET', `/${db}/_design/${path}`);
  assert.equal(res.status, 200, res.text);
  return res.body;
}

const ddoc = {
  views: {
    by_type: { map: 'function(doc){ if (doc.type) emit(doc.type, doc.n); }', reduce: '_sum' },
    by_n: { map: 'function(doc){ if (typeof doc.n === "number") emit(doc.n, null); }' },
    count: { map: 'function(doc){ if (doc.type) emit([doc.type, doc.n % 3], 1); }', reduce: '_count' },
    stats: { map: 'function(doc){ if (doc.type) emit(doc.type, doc.n); }', reduce: '_stats' },
    distinct: { map: 'function(doc){ if (doc.type) emit(doc.type, null); }', reduce: '_approx_count_distinct' },
    js_sum: { map: 'function(doc){ if (doc.type) emit(doc.type, doc.n); }', reduce: 'function(keys, values, rereduce){ return sum(values); }' },
    multi: { map: 'function(doc){ if (doc.tags) doc.tags.forEach(function(t){ emit(t, doc._id); }); }' },
    linked: { map: 'function(doc){ if (doc.owner) emit(doc._id, {_id: doc.owner}); }' },
  },
};

async function fixture(q = 4): Promise<string> {
  const db = await createDb(node, 'views', q);
  const docs = [];
  for (let n = 1; n <= 30; n++) docs.push({ _id: `d${String(n).padStart(2, '0')}`, type: n % 2 ? 'odd' : 'even', n });
  docs.push({ _id: 'tagged', tags: ['x', 'y', 'x'] });
  docs.push({ _id: 'owned', owner: 'd01' });
  await bulk(db, docs);
  await put(db, '_design/app', ddoc);
  return db;
}

test('map queries: key, keys, ranges with doc ids, inclusive_end, limit, skip, descending, include_docs', async () => {
  const db = await fixture();
  const all = await view(db, 'app/_view/by_n');
  assert.equal(all.total_rows, 30);
  assert.deepEqual(all.rows.map((r: any) => r.key), Array.from({ length: 30 }, (_, i) => i + 1));
  assert.deepEqual((await view(db, 'app/_view/by_n?key=7')).rows, [{ id: 'd07', key: 7, value: null }]);
  const keys = await request(node, 'POST', `/${db}/_design/app/_view/by_n`, { body: { keys: [9, 2, 99, 2] } });
  assert.deepEqual(keys.body.rows.map((r: any) => r.id), ['d09', 'd02', 'd02']);
  assert.deepEqual((await view(db, 'app/_view/by_n?keys=[3,1]')).rows.map((r: any) => r.key), [3, 1]);
  assert.deepEqual((await view(db, 'app/_view/by_n?startkey=5&endkey=8')).rows.map((r: any) => r.key), [5, 6, 7, 8]);
  assert.deepEqual((await view(db, 'app/_view/by_n?startkey=5&endkey=8&inclusive_end=false')).rows.map((r: any) => r.key), [5, 6, 7]);
  assert.deepEqual((await view(db, 'app/_view/by_n?startkey=8&endkey=5&descending=true')).rows.map((r: any) => r.key), [8, 7, 6, 5]);
  assert.deepEqual((await view(db, 'app/_view/by_n?startkey=8&endkey=5&descending=true&inclusive_end=false')).rows.map((r: any) => r.key), [8, 7, 6]);
  assert.deepEqual((await view(db, 'app/_view/by_n?limit=3&skip=2')).rows.map((r: any) => r.key), [3, 4, 5]);
  assert.deepEqual((await view(db, 'app/_view/by_n?descending=true&limit=2')).rows.map((r: any) => r.key), [30, 29]);
  const withDocs = await view(db, 'app/_view/by_n?key=4&include_docs=true');
  assert.equal(withDocs.rows[0].doc._id, 'd04');
  assert.equal(withDocs.rows[0].doc.n, 4);
  assert.match(withDocs.rows[0].doc._rev, /^1-/);

  // Equal keys sort by doc id; startkey_docid / endkey_docid cut inside them.
  const odd = await view(db, 'app/_view/by_type?reduce=false&key="odd"');
  assert.deepEqual(odd.rows.map((r: any) => r.id), [...odd.rows.map((r: any) => r.id)].sort());
  const cut = await view(db, 'app/_view/by_type?reduce=false&startkey="odd"&startkey_docid=d25&endkey="odd"');
  assert.deepEqual(cut.rows.map((r: any) => r.id), ['d25', 'd27', 'd29']);
  const cutEnd = await view(db, 'app/_view/by_type?reduce=false&startkey="odd"&endkey="odd"&endkey_docid=d05');
  assert.deepEqual(cutEnd.rows.map((r: any) => r.id), ['d01', 'd03', 'd05']);

  // One doc emitting the same key twice gives two rows; linked documents.
  assert.deepEqual((await view(db, 'app/_view/multi')).rows.map((r: any) => r.key), ['x', 'x', 'y']);
  const linked = await view(db, 'app/_view/linked?include_docs=true');
  assert.equal(linked.rows[0].doc._id, 'd01');

  const seq = await view(db, 'app/_view/by_n?limit=0&update_seq=true');
  assert.equal(typeof seq.update_seq, 'string');
  assert.deepEqual(seq.rows, []);
});

test('reduce queries: built-ins, JavaScript with rereduce across ranges, group and group_level', async () => {
  const db = await fixture(4);
  const oddSum = Array.from({ length: 15 }, (_, i) => 2 * i + 1).reduce((a, b) => a + b, 0);
  const evenSum = Array.from({ length: 15 }, (_, i) => 2 * i + 2).reduce((a, b) => a + b, 0);
  assert.deepEqual((await view(db, 'app/_view/by_type')).rows, [{ key: null, value: oddSum + evenSum }]);
  assert.deepEqual((await view(db, 'app/_view/by_type?group=true')).rows, [
    { key: 'even', value: evenSum },
    { key: 'odd', value: oddSum },
  ]);
  assert.deepEqual((await view(db, 'app/_view/js_sum?group=true')).rows, [
    { key: 'even', value: evenSum },
    { key: 'odd', value: oddSum },
  ]);
  assert.deepEqual((await view(db, 'app/_view/js_sum')).rows, [{ key: null, value: oddSum + evenSum }]);
  assert.deepEqual((await view(db, 'app/_view/by_type?key="odd"')).rows, [{ key: null, value: oddSum }]);
  assert.deepEqual((await view(db, 'app/_view/count?group_level=1')).rows, [
    { key: ['even'], value: 15 },
    { key: ['odd'], value: 15 },
  ]);
  const exact = await view(db, 'app/_view/count?group=true');
  assert.equal(exact.rows.length, 6);
  assert.deepEqual(exact.rows[0], { key: ['even', 0], value: 5 });
  assert.deepEqual((await view(db, 'app/_view/count?group=true&descending=true&limit=1')).rows, [{ key: ['odd', 2], value: 5 }]);
  assert.deepEqual((await view(db, 'app/_view/count?group=true&skip=5')).rows, [{ key: ['odd', 2], value: 5 }]);
  const stats = (await view(db, 'app/_view/stats?group=true')).rows[1].value;
  assert.deepEqual(stats, { sum: oddSum, count: 15, min: 1, max: 29, sumsqr: Array.from({ length: 15 }, (_, i) => (2 * i + 1) ** 2).reduce((a, b) => a + b, 0) });
  assert.deepEqual((await view(db, 'app/_view/distinct')).rows, [{ key: null, value: 2 }]);
  // Empty ranges reduce to no rows, as CouchDB answers.
  assert.deepEqual((await view(db, 'app/_view/by_type?key="none"')).rows, []);
});

test('collation: keys come out in CouchDB order (the documented table), whatever the doc ids', async () => {
  const db = await createDb(node, 'collate', 3);
  // CouchDB's "Collation Specification" examples, in order.
  const keys: unknown[] = [
    null, false, true,
    1, 2, 3.0, 4,
    'a', 'A', 'aa', 'b', 'B', 'ba', 'bb',
    ['a'], ['b'], ['b', 'c'], ['b', 'c', 'a'], ['b', 'd'], ['b', 'd', 'e'],
    { a: 1 }, { a: 2 }, { b: 1 }, { b: 2 }, { b: 2, a: 1 }, { b: 2, c: 2 },
  ];
  // Non-ASCII strings and mixed arrays, ordered by the exact comparator.
  const extra: unknown[] = ['é', 'e', 'E', 'Müller', 'muller', 'MULLER', 'mule', 'ß', 'ss', '中文', 'ä', 'z', ['é', 1], ['e', 2], ['E', 0], 'ﬁ', 'fi', '\u0301', ''];
  const all = [...keys, ...extra];
  const rng = mulberry32(7);
  const docs = all.map((key, i) => ({ _id: `k${Math.floor(rng() * 1e9)}-${i}`, key }));
  await bulk(db, docs);
  await put(db, '_design/c', { views: { k: { map: 'function(doc){ emit(doc.key, null); }' } } });
  const rows = (await view(db, 'c/_view/k')).rows;
  const expected = docs.map((d) => ({ key: d.key, id: d._id })).sort((a, b) => collate(a.key, b.key) || compareRaw(a.id, b.id));
  assert.deepEqual(rows.map((r: any) => r.key), expected.map((e) => e.key));
  // The documented table is itself in collation order.
  const table = rows.map((r: any) => r.key).filter((k: unknown) => keys.some((t) => collate(t, k) === 0));
  assert.deepEqual(table, keys);
  // Ranges honour collation, not code points: "a" ≤ k ≤ "b" takes "A" and "aa".
  const range = (await view(db, 'c/_view/k?startkey="a"&endkey="b"')).rows.map((r: any) => r.key);
  assert.deepEqual(range, ['a', 'A', 'ä', 'aa', 'b'].sort(collate));
  const desc = (await view(db, 'c/_view/k?startkey="muller"&endkey="mule"&descending=true')).rows.map((r: any) => r.key);
  assert.deepEqual(desc, expected.map((e) => e.key).filter((k) => typeof k === 'string' && collate(k, 'mule') >= 0 && collate(k, 'muller') <= 0).reverse());
});

test('collation: a view keyed on Han (CJK) names orders rows and ranges through the side codes', async () => {
  const db = await createDb(node, 'han', 2);
  const names = ['東京', '東北', '北京', '京都', '東', '東京都', '山田太郎', '山田花子', '山田はなこ', '張偉', '王芳', '\uf900', '\u8c48', '東京a', '東京A',
    '東京é', '㐀', '\u{20000}', '\u{2a6d9}', '一', '丁', 'あ', '가', 'Tokyo', '東\uffff'];
  const rng = mulberry32(11);
  const docs: { _id: string; key: unknown }[] = [];
  for (let i = 0; i < 120; i++) {
    const name = names[Math.floor(rng() * names.length)] as string;
    const roll = rng();
    docs.push({ _id: `h${i}`, key: roll < 0.4 ? name : roll < 0.8 ? [name, Math.floor(rng() * 3)] : [name, names[Math.floor(rng() * names.length)]] });
  }
  await bulk(db, docs);
  await put(db, '_design/h', { views: { k: { map: 'function(doc){ emit(doc.key, null); }' } } });
  const expected = docs.map((d) => ({ key: d.key, id: d._id })).sort((a, b) => collate(a.key, b.key) || compareRaw(a.id, b.id));
  const rows = (await view(db, 'h/_view/k')).rows;
  assert.deepEqual(rows.map((r: any) => [r.key, r.id]), expected.map((e) => [e.key, e.id]));
  const q = (v: unknown): string => encodeURIComponent(JSON.stringify(v));
  for (const [lo, hi] of [['東', '東京都'], [['東京', 1], ['東京', 2]], ['一', '東'], [['山田太郎'], ['山田花子', {}]], ['\u8c48', '\uf900'], ['あ', '東北']] as [unknown, unknown][]) {
    const want = expected.filter((e) => collate(e.key, lo) >= 0 && collate(e.key, hi) <= 0);
    const got = (await view(db, `h/_view/k?startkey=${q(lo)}&endkey=${q(hi)}`)).rows;
    assert.deepEqual(got.map((r: any) => [r.key, r.id]), want.map((e) => [e.key, e.id]), `${show(lo)}..${show(hi)}`);
    const desc = (await view(db, `h/_view/k?startkey=${q(hi)}&endkey=${q(lo)}&descending=true`)).rows;
    assert.deepEqual(desc.map((r: any) => [r.key, r.id]), [...want].reverse().map((e) => [e.key, e.id]), `desc ${show(lo)}..${show(hi)}`);
  }
  const one = (await view(db, `h/_view/k?key=${q('東京')}`)).rows;
  assert.deepEqual(one.map((r: any) => r.id), expected.filter((e) => e.key === '東京').map((e) => e.id));
});

test('incremental updates: random writes, deletes and replicated conflicts always equal a from-scratch map of the winners', async () => {
  const seed = Number(process.env.VIEW_SEED ?? 20261201);
  console.log(`view incremental seed ${seed}`);
  const rng = mulberry32(seed);
  const db = await createDb(node, 'incr', 3);
  await put(db, '_design/i', {
    views: {
      v: { map: 'function(doc){ if (doc.k !== undefined) { emit(doc.k, doc.v); if (doc.v % 5 === 0) emit([doc.k, "x"], 1); } }', reduce: '_count' },
      s: { map: 'function(doc){ if (doc.k !== undefined) emit(doc.k, doc.v); }', reduce: '_sum' },
    },
  });
  const live = new Map<string, { rev: string; k: unknown; v: number }>();
  const keysPool: unknown[] = ['a', 'B', 'b', 3, 1.5, null, true, ['a', 1], 'é', 'Zoë', { o: 1 }];
  for (let round = 0; round < 8; round++) {
    const docs: any[] = [];
    for (let i = 0; i < 40; i++) {
      const id = `doc${Math.floor(rng() * 60)}`;
      if (docs.some((d) => d._id === id)) continue;
      const current = live.get(id);
      const roll = rng();
      if (current && roll < 0.2) docs.push({ _id: id, _rev: current.rev, _deleted: true });
      else docs.push({ _id: id, ...(current ? { _rev: current.rev } : {}), k: keysPool[Math.floor(rng() * keysPool.length)], v: Math.floor(rng() * 100) });
    }
    const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
    assert.equal(res.status, 201, res.text);
    // A replicated conflicting edit on some docs: the winner may change to the branch.
    const conflicts: any[] = [];
    for (const d of docs.slice(0, 3)) {
      if (d._deleted) continue;
      conflicts.push({ _id: d._id, _rev: `9-${'f'.repeat(31)}${round}`, k: 'conflict', v: 5, _revisions: { start: 9, ids: [`${'f'.repeat(31)}${round}`] } });
    }
    if (conflicts.length > 0) await bulk(db, conflicts, false);
    // Query every other round (so some rounds are absorbed together).
    if (round % 2 === 0 && round < 7) continue;
    const winners = await request(node, 'GET', `/${db}/_all_docs?include_docs=true`);
    const expected: { key: unknown; id: string; value: unknown }[] = [];
    for (const row of winners.body.rows) {
      const doc = row.doc;
      live.set(doc._id, { rev: doc._rev, k: doc.k, v: doc.v });
      if (doc._id.startsWith('_design/') || doc.k === undefined) continue;
      expected.push({ id: doc._id, key: doc.k, value: doc.v });
      if (doc.v % 5 === 0) expected.push({ id: doc._id, key: [doc.k, 'x'], value: 1 });
    }
    for (const id of [...live.keys()]) if (!winners.body.rows.some((r: any) => r.id === id)) live.delete(id);
    expected.sort((a, b) => collate(a.key, b.key) || compareRaw(a.id, b.id));
    const got = await view(db, 'i/_view/v?reduce=false');
    assert.deepEqual(got.rows, expected, `round ${round} (seed ${seed})`);
    assert.equal(got.total_rows, expected.length);
    assert.deepEqual((await view(db, 'i/_view/v')).rows, expected.length > 0 ? [{ key: null, value: expected.length }] : []);
    // The whole-view _count and _sum are kept as the index is built: they must equal a fresh fold.
    const sum = expected.filter((e) => !Array.isArray(e.key) || e.key[1] !== 'x').reduce((a, e) => a + (e.value as number), 0);
    const sums = (await view(db, 'i/_view/s')).rows;
    assert.deepEqual(sums, expected.length > 0 ? [{ key: null, value: sum }] : [], `round ${round}`);
    const ranged = (await view(db, 'i/_view/s?startkey=null')).rows;
    assert.deepEqual(ranged, sums);
  }
});

test('incremental: after a build, ten more writes map ten more documents, not the database again', async () => {
  const db = await createDb(node, 'tenmore', 2);
  const docs = Array.from({ length: 3000 }, (_, i) => ({ _id: `t${i}`, n: i }));
  await bulk(db, docs);
  await put(db, '_design/t', { views: { n: { map: 'function(doc){ emit(doc.n, null); }' } } });
  assert.equal((await view(db, 't/_view/n?limit=1')).total_rows, 3000);
  const indexed = async () => {
    const text = (await request(node, 'GET', '/_node/_local/_prometheus')).text;
    return Number(/^divan_view_docs_indexed_total\{[^}]*\} (\d+)/m.exec(text)?.[1]);
  };
  const before = await indexed();
  await bulk(db, Array.from({ length: 10 }, (_, i) => ({ _id: `more${i}`, n: 5000 + i })));
  assert.equal((await view(db, 't/_view/n?limit=1')).total_rows, 3010);
  assert.equal((await indexed()) - before, 10);
});

test('update=false and stale=ok read the index as it is; update=lazy answers then builds', async () => {
  const db = await createDb(node, 'stale', 2);
  await put(db, '_design/s', { views: { all: { map: 'function(doc){ emit(doc._id, null); }' } } });
  await put(db, 'a', {});
  assert.equal((await view(db, 's/_view/all')).rows.length, 1);
  await put(db, 'b', {});
  // Background warming may already have caught up; what must hold is update=true sees both.
  const stale = (await view(db, 's/_view/all?stale=ok')).rows.length;
  assert.ok(stale === 1 || stale === 2);
  assert.equal((await view(db, 's/_view/all')).rows.length, 2);
  await put(db, 'c', {});
  const lazy = (await view(db, 's/_view/all?update=lazy')).rows.length;
  assert.ok(lazy === 2 || lazy === 3);
  await waitFor(async () => (await view(db, 's/_view/all?update=false')).rows.length === 3, 10_000, 'lazy update');
});

test('errors: missing design doc, missing view, bad map function, non-JavaScript views', async () => {
  const db = await createDb(node, 'verr', 1);
  assert.equal((await request(node, 'GET', `/${db}/_design/nope/_view/x`)).status, 404);
  await put(db, '_design/e', { views: { ok: { map: 'function(doc){ emit(1, 1); }' } } });
  const missing = await request(node, 'GET', `/${db}/_design/e/_view/none`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error, 'not_found');
  assert.equal(missing.body.reason, 'missing_named_view');
  // A map function throwing on one document skips that document only (CouchDB logs it).
  await put(db, '_design/t', { views: { t: { map: 'function(doc){ if (doc.bad) throw new Error("no"); emit(doc._id, 1); }' } } });
  await put(db, 'good', {});
  await put(db, 'bad', { bad: true });
  assert.deepEqual((await view(db, 't/_view/t')).rows.map((r: any) => r.id), ['_design/e', '_design/t', 'good'].filter((id) => !id.startsWith('_design/')));
});

test('sandbox: map functions cannot reach Node, loop forever or eat memory; the node keeps serving', async () => {
  const db = await createDb(node, 'escape', 1);
  await put(db, 'x', { v: 1 });
  // Each attempt runs inside a map function: it must throw there (nothing of Node exists),
  // except import(), which answers a promise (rejected in the guest).
  const views = Object.fromEntries(
    escapeAttempts.map(([name, code], i) => [
      `e${i}`,
      { map: `function(doc){ var r; try { r = ${code}; } catch (e) { emit('contained', String(e)); return; } emit('escaped: ' + typeof r, ${JSON.stringify(name)}); }` },
    ]),
  );
  await put(db, '_design/esc', { views });
  for (const [i, [name]] of escapeAttempts.entries()) {
    const res = await request(node, 'GET', `/${db}/_design/esc/_view/e${i}`);
    assert.equal(res.status, 200, res.text);
    const keys = res.body.rows.map((r: any) => r.key);
    assert.deepEqual(keys, name === 'dynamic import' ? keys.filter((k: string) => k === 'contained' || k === 'escaped: object') : ['contained'], `${name}: ${res.text}`);
    assert.equal(keys.length, 1, `${name}: ${res.text}`);
  }
  await put(db, '_design/loop', { views: { loop: { map: 'function(doc){ while (true) {} }' } } });
  await put(db, '_design/hog', { views: { hog: { map: 'function(doc){ var a = []; for (;;) a.push(new Array(100000).join("x")); }' } } });
  for (const name of ['loop', 'hog']) {
    const started = request(node, 'GET', `/${db}/_design/${name}/_view/${name}`, { timeoutMs: 60_000 });
    // The event loop keeps answering while the sandbox is busy.
    const ping = await request(node, 'GET', `/${db}/x`);
    assert.equal(ping.status, 200);
    const res = await started;
    assert.ok(res.status >= 400, `${name}: ${res.status} ${res.text}`);
    assert.equal(res.body.error, 'os_process_error', res.text);
  }
  assert.equal((await request(node, 'GET', `/${db}/x`)).status, 200);
});

test('clients: nano db.view and PouchDB http query, unmodified', async () => {
  const db = await fixture(2);
  const nano = Nano(node.authUrl).use(db);
  const grouped = await nano.view('app', 'by_type', { group: true });
  assert.deepEqual(grouped.rows.map((r) => r.key), ['even', 'odd']);
  const keyed = await nano.view('app', 'by_n', { keys: [3, 4], include_docs: true });
  assert.deepEqual(keyed.rows.map((r: any) => r.doc._id), ['d03', 'd04']);
  const pouch = remoteDb(node, db);
  const res = await pouch.query('app/by_n', { startkey: 28, include_docs: false });
  assert.deepEqual(res.rows.map((r: any) => r.key), [28, 29, 30]);
  const reduced = await pouch.query('app/by_type', { reduce: true, group: true });
  assert.equal(reduced.rows.length, 2);
});

test('_info, _view_cleanup and _active_tasks', async () => {
  const db = await fixture(2);
  await view(db, 'app/_view/by_n?limit=1');
  const info = await request(node, 'GET', `/${db}/_design/app/_info`);
  assert.equal(info.status, 200, info.text);
  assert.equal(info.body.name, 'app');
  assert.match(info.body.view_index.signature, /^[0-9a-f]{32}$/);
  assert.ok(info.body.view_index.sizes.file >= 0);
  const oldSig = info.body.view_index.signature;
  // Changing a view makes a new index; cleanup drops the old one.
  const current = await request(node, 'GET', `/${db}/_design/app`);
  await put(db, '_design/app', { ...current.body, views: { ...ddoc.views, extra: { map: 'function(doc){ emit(null, null); }' } } });
  const info2 = await request(node, 'GET', `/${db}/_design/app/_info`);
  assert.notEqual(info2.body.view_index.signature, oldSig);
  const cleanup = await request(node, 'POST', `/${db}/_view_cleanup`, { body: {} });
  assert.equal(cleanup.status, 202, cleanup.text);
  assert.deepEqual((await request(node, 'GET', '/_active_tasks')).status, 200);
  // Compacting a design document's index: 202 at once, the view keeps answering.
  assert.equal((await request(node, 'POST', `/${db}/_compact/app`, { body: {} })).status, 202);
  assert.equal((await request(node, 'POST', `/${db}/_compact/app`, { raw: '{}' })).status, 415);
  assert.equal((await request(node, 'POST', `/${db}/_compact/nope`, { body: {} })).status, 404);
  assert.equal((await view(db, 'app/_view/by_n?limit=1')).rows.length, 1);
});
