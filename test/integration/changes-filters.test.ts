/**
 * `_changes` with design-document filters (`filter=ddoc/name`) and `filter=_view`
 * against a live node (q=4, so rows come from several ranges): every feed type,
 * `limit` counting passing rows, `since`, `include_docs`, POST bodies, query
 * parameters reaching `req.query`, errors before the feed starts, a filter that throws,
 * sandbox escapes through a filter, and PouchDB filtered replication with
 * `query_params`.
 */
import { escapeAttempts } from '../helpers/sandbox-escapes';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { ADMIN, createDb, request, startNode, waitFor, type TestNode } from '../helpers/node-process';
import { continuousFeed } from '../helpers/feed';
import { localDb, remoteDb, replicateOnce } from '../helpers/pouch';

let node: TestNode;

before(async () => {
  node = await startNode();
});
after(async () => {
  await node?.destroy();
});

const app = {
  filters: {
    mine: `function (doc, req) { return doc.owner === req.query.owner; }`,
    truthy: `function (doc, req) { return doc.n; }`,
    deleted: `function (doc) { return doc._deleted === true; }`,
    throws: `function (doc) { if (doc.n === 3) throw new Error('three'); return true; }`,
    lib: `function (doc) { return require('lib/owners').good(doc.owner); }`,
    nested: `function (doc) { return require('filters/mods/owner').good(doc.owner); }`,
    mods: { owner: `exports.good = function (o) { return o === 'ann'; };` },
  },
  lib: { owners: `exports.good = function (o) { return o === 'ann'; };` },
  views: {
    byOwner: { map: `function (doc) { if (doc.owner === 'bob') emit(doc.owner, 1); }` },
    other: { map: `function (doc) { emit(doc._id, 1); }`, reduce: '_count' },
  },
};

/** A q=4 database with `app` and docs 0..n-1, owner ann (even) or bob (odd). */
async function seeded(n = 20): Promise<string> {
  const db = await createDb(node, 'filters', 4);
  const res = await request(node, 'PUT', `/${db}/_design/app`, { body: app });
  assert.equal(res.status, 201, res.text);
  const docs = Array.from({ length: n }, (_, i) => ({ _id: `d${String(i).padStart(3, '0')}`, n: i, owner: i % 2 ? 'bob' : 'ann' }));
  assert.equal((await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } })).status, 201);
  return db;
}

const ids = (body: { results: { id: string }[] }) => body.results.map((r) => r.id).sort();
const evenIds = (n: number) => Array.from({ length: n }, (_, i) => i).filter((i) => i % 2 === 0).map((i) => `d${String(i).padStart(3, '0')}`);

describe('filter=ddoc/name', () => {
  test('normal feed: only rows the filter passes, with req.query from the URL', async () => {
    const db = await seeded();
    const res = await request(node, 'GET', `/${db}/_changes?filter=app/mine&owner=ann`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(ids(res.body), evenIds(20));
    assert.equal(res.body.results[0].doc, undefined, 'no doc without include_docs');
    const libRes = await request(node, 'GET', `/${db}/_changes?filter=app/lib`);
    assert.deepEqual(ids(libRes.body), evenIds(20), 'require() of a module elsewhere in the design document');
    const nested = await request(node, 'GET', `/${db}/_changes?filter=app/nested`);
    assert.deepEqual(ids(nested.body), evenIds(20), 'require() of a module tree beside the filters');
  });

  test('a truthy result passes, a falsy one does not', async () => {
    const db = await seeded(5);
    const res = await request(node, 'GET', `/${db}/_changes?filter=app/truthy`);
    assert.deepEqual(ids(res.body), ['d001', 'd002', 'd003', 'd004']);
  });

  test('limit counts passing rows; since resumes after them; last_seq moves past rows filtered out', async () => {
    const db = await seeded();
    const first = await request(node, 'GET', `/${db}/_changes?filter=app/mine&owner=ann&limit=3`);
    assert.equal(first.body.results.length, 3);
    const rest = await request(node, 'GET', `/${db}/_changes?filter=app/mine&owner=ann&since=${encodeURIComponent(first.body.last_seq)}`);
    assert.deepEqual([...ids(first.body), ...ids(rest.body)].sort(), evenIds(20));
    const after = await request(node, 'GET', `/${db}/_changes?filter=app/mine&owner=nobody&since=${encodeURIComponent(rest.body.last_seq)}`);
    assert.deepEqual(after.body.results, []);
  });

  test('include_docs, and deletions reach the filter with _deleted', async () => {
    const db = await seeded(4);
    const got = await request(node, 'GET', `/${db}/d000`);
    assert.equal((await request(node, 'DELETE', `/${db}/d000?rev=${got.body._rev}`)).status, 200);
    const res = await request(node, 'GET', `/${db}/_changes?filter=app/mine&owner=bob&include_docs=true`);
    assert.deepEqual(ids(res.body), ['d001', 'd003']);
    assert.equal(res.body.results[0].doc.owner, 'bob');
    const deleted = await request(node, 'GET', `/${db}/_changes?filter=app/deleted`);
    assert.deepEqual(ids(deleted.body), ['d000']);
    assert.equal(deleted.body.results[0].deleted, true);
  });

  test('POST: the body reaches req.body, the query req.query; req has method, userCtx, info and no credentials', async () => {
    const db = await createDb(node, 'filters');
    await request(node, 'PUT', `/${db}/a`, { body: {} });
    const spy = `function (doc, req) { return req.method === 'POST' && req.query.x === '1' && JSON.parse(req.body).y === 2 && req.userCtx.name === '${ADMIN.user}' && req.userCtx.roles.indexOf('_admin') >= 0 && req.info.db_name === '${db}' && !('Authorization' in req.headers) && !('authorization' in req.headers); }`;
    assert.equal((await request(node, 'PUT', `/${db}/_design/check`, { body: { filters: { f: spy } } })).status, 201);
    const ok = await request(node, 'POST', `/${db}/_changes?filter=check/f&x=1`, { body: { y: 2 } });
    assert.deepEqual(ids(ok.body), ['_design/check', 'a']);
    const get = await request(node, 'GET', `/${db}/_changes?filter=check/f&x=1`);
    assert.deepEqual(get.body.results, [], 'GET: method GET and body "undefined"');
  });

  test('longpoll waits for a passing change; a change filtered out does not end it', async () => {
    const db = await seeded(4);
    const now = await request(node, 'GET', `/${db}/_changes?since=now`);
    const since = encodeURIComponent(now.body.last_seq);
    const poll = request(node, 'GET', `/${db}/_changes?feed=longpoll&filter=app/mine&owner=ann&since=${since}&timeout=20000`);
    await request(node, 'PUT', `/${db}/bob1`, { body: { owner: 'bob' } });
    await request(node, 'PUT', `/${db}/ann1`, { body: { owner: 'ann' } });
    const res = await poll;
    assert.deepEqual(ids(res.body), ['ann1']);
  });

  test('continuous and eventsource feeds filter live changes', async () => {
    const db = await seeded(4);
    const feed = continuousFeed(node.port, db, 'filter=app/mine&owner=bob&heartbeat=500');
    try {
      assert.equal(await feed.status, 200);
      await waitFor(async () => feed.ids.has('d003'), 10_000, 'the seeded bob rows');
      await request(node, 'PUT', `/${db}/ann2`, { body: { owner: 'ann' } });
      await request(node, 'PUT', `/${db}/bob2`, { body: { owner: 'bob' } });
      await waitFor(async () => feed.ids.has('bob2'), 10_000, 'bob2 on the continuous feed');
      assert.deepEqual([...feed.ids].sort(), ['bob2', 'd001', 'd003']);
    } finally {
      feed.close();
    }
    const text = await new Promise<string>((resolve, reject) => {
      const req = http.get(`${node.url}/${db}/_changes?feed=eventsource&filter=app/mine&owner=bob&limit=3`, {
        headers: { authorization: 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64') },
      });
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve(body));
      });
      req.on('error', reject);
    });
    const seen = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)).id as string).sort();
    assert.deepEqual(seen, ['bob2', 'd001', 'd003']);
  });

  test('errors before the feed starts: 404 missing ddoc, filter or view', async () => {
    const db = await seeded(2);
    const missing = await request(node, 'GET', `/${db}/_changes?filter=nope/mine`);
    assert.deepEqual([missing.status, missing.body.error, missing.body.reason], [404, 'not_found', 'missing']);
    const noFilter = await request(node, 'GET', `/${db}/_changes?filter=app/nope`);
    assert.deepEqual([noFilter.status, noFilter.body.reason], [404, 'missing json key: nope']);
    const noView = await request(node, 'GET', `/${db}/_changes?filter=_view&view=app/nope`);
    assert.deepEqual([noView.status, noView.body.reason], [404, 'missing json key: nope']);
  });

  test('a filter that throws ends the feed (as CouchDB, after the rows already sent); the node keeps serving', async () => {
    const db = await seeded(6);
    // The status went out with the first rows: the response is cut, never completed with a last_seq.
    const res = await request(node, 'GET', `/${db}/_changes?filter=app/throws`).catch((err: Error) => err);
    if (!(res instanceof Error)) assert.ok(!res.text.includes('"last_seq"'), res.text);
    assert.equal((await request(node, 'GET', '/_up')).status, 200);
  });
});

describe('filter=_view', () => {
  test('a change passes when the map function emits for it', async () => {
    const db = await seeded(6);
    const res = await request(node, 'GET', `/${db}/_changes?filter=_view&view=app/byOwner&include_docs=true`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(ids(res.body), ['d001', 'd003', 'd005']);
    assert.equal(res.body.results[0].doc.owner, 'bob');
    const limited = await request(node, 'GET', `/${db}/_changes?filter=_view&view=app/byOwner&limit=1`);
    assert.equal(limited.body.results.length, 1);
    const all = await request(node, 'GET', `/${db}/_changes?filter=_view&view=app/other`);
    assert.equal(all.body.results.length, 7, 'every doc and the design doc itself');
  });
});

describe('sandbox escapes through a filter are contained', () => {
  // import() answers a promise without throwing, so a filter cannot tell it apart by catching.
  for (const [what, code] of escapeAttempts.filter(([name]) => name !== 'dynamic import')) {
    test(what, async () => {
      const db = await createDb(node, 'filters');
      const filter = `function (doc) { try { ${code}; } catch (e) { return doc._id === 'x' && String(e).length > 0; } return true; }`;
      assert.equal((await request(node, 'PUT', `/${db}/_design/esc`, { body: { filters: { f: filter } } })).status, 201);
      await request(node, 'PUT', `/${db}/x`, { body: {} });
      const res = await request(node, 'GET', `/${db}/_changes?filter=esc/f`);
      assert.deepEqual(ids(res.body), ['x'], 'the call failed inside the guest for every doc, and only x passed');
      assert.equal((await request(node, 'GET', '/_up')).status, 200);
    });
  }
});

describe('PouchDB', () => {
  test('filtered replication from Divan through a design document filter with query_params', async () => {
    const db = await seeded(30);
    const local = localDb('filtered');
    try {
      const result = await replicateOnce(remoteDb(node, db), local, { filter: 'app/mine', query_params: { owner: 'bob' } });
      assert.equal(result.ok, true);
      const all = await local.allDocs();
      assert.deepEqual(all.rows.map((r: { id: string }) => r.id).sort(), Array.from({ length: 15 }, (_, i) => `d${String(2 * i + 1).padStart(3, '0')}`));
      // Live changes after the first replication arrive in the next one, still filtered.
      await request(node, 'PUT', `/${db}/bob-late`, { body: { owner: 'bob' } });
      await request(node, 'PUT', `/${db}/ann-late`, { body: { owner: 'ann' } });
      await replicateOnce(remoteDb(node, db), local, { filter: 'app/mine', query_params: { owner: 'bob' } });
      const ids2 = (await local.allDocs()).rows.map((r: { id: string }) => r.id);
      assert.ok(ids2.includes('bob-late') && !ids2.includes('ann-late'), ids2.join(','));
    } finally {
      await local.destroy();
    }
  });
});
