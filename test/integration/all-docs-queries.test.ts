/**
 * POST /{db}/_all_docs/queries and /{db}/_design_docs/queries against a live node:
 * each entry answers what the same query answers on its own, in order, inside
 * `{"results":[...]}`; entries sit on top of the request's query string; bad entries,
 * too many entries or keys, and other methods get CouchDB's errors before any
 * result is sent. The node runs with small limits (queriesMax 3, keysMax 6).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDb, request, startNode, TestNode } from '../helpers/node-process';

const limits = { queriesMax: 3, keysMax: 6 };
let node: TestNode;
let configDir: string;
let db: string;

before(async () => {
  configDir = mkdtempSync(path.join(os.tmpdir(), 'divan-queries-'));
  const configFile = path.join(configDir, 'config.json');
  writeFileSync(configFile, JSON.stringify(limits));
  node = await startNode({ args: ['-c', configFile] });
  db = await createDb(node, 'queries', 2);
  const docs = [
    ...['a', 'b', 'c', 'd', 'e'].map((id) => ({ _id: id, n: id.charCodeAt(0) })),
    { _id: '_design/one', views: {} },
    { _id: '_design/two', views: {} },
    { _id: 'gone' },
  ];
  const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
  assert.equal(res.status, 201, res.text);
  const gone = (res.body as { id: string; rev: string }[]).find((r) => r.id === 'gone')!;
  assert.equal((await request(node, 'DELETE', `/${db}/gone?rev=${gone.rev}`)).status, 200);
});
after(async () => {
  await node.destroy();
  rmSync(configDir, { recursive: true, force: true });
});

type Result = { total_rows: number; offset: number | null; rows: { id?: string; key: string; value?: unknown; doc?: Record<string, unknown> | null; error?: string }[] };

async function queries(which: string, entries: unknown[], qs = ''): Promise<Result[]> {
  const res = await request(node, 'POST', `/${db}/${which}/queries${qs}`, { body: { queries: entries } });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(Object.keys(res.body as object), ['results']);
  return (res.body as { results: Result[] }).results;
}

/** What the plain route answers for the same query (GET, or POST when it has keys). */
async function single(which: string, entry: Record<string, unknown>): Promise<Result> {
  const { keys, ...rest } = entry;
  const qs = new URLSearchParams(Object.entries(rest).map(([k, v]): [string, string] => [k, typeof v === 'string' && !k.endsWith('docid') ? JSON.stringify(v) : String(v)]));
  const url = `/${db}/${which}?${qs}`;
  const res = keys === undefined ? await request(node, 'GET', url) : await request(node, 'POST', url, { body: { keys } });
  assert.equal(res.status, 200, res.text);
  return res.body as Result;
}

const ids = (result: Result) => result.rows.map((r) => r.id ?? r.key);

describe('_all_docs/queries', () => {
  test('each entry answers as the same query alone, in order', async () => {
    const entries: Record<string, unknown>[] = [
      { keys: ['c', 'a', 'nope', 'gone'] },
      { startkey: 'b', endkey: 'd', include_docs: true },
      { limit: 2, skip: 1, descending: true },
    ];
    const results = await queries('_all_docs', entries);
    assert.equal(results.length, 3);
    for (let i = 0; i < entries.length; i++) assert.deepEqual(results[i], await single('_all_docs', entries[i]!), `entry ${i}`);
    assert.deepEqual(ids(results[0]!), ['c', 'a', 'nope', 'gone']);
    assert.equal(results[0]!.rows[2]!.error, 'not_found');
    assert.deepEqual(results[0]!.rows[3]!.value, { rev: (results[0]!.rows[3]!.value as { rev: string }).rev, deleted: true });
    assert.deepEqual(ids(results[1]!), ['b', 'c', 'd']);
    assert.equal(results[1]!.rows[0]!.doc!.n, 98);
    assert.deepEqual(ids(results[2]!), ['d', 'c']);
    assert.equal(results[2]!.offset, 1);
    assert.equal(results[2]!.total_rows, 7);
  });

  test('keys with include_docs, limit and skip', async () => {
    const [result] = await queries('_all_docs', [{ keys: ['e', 'd', 'c', 'b'], include_docs: true, skip: 1, limit: 2 }]);
    assert.deepEqual(ids(result!), ['d', 'c']);
    assert.deepEqual(result!.rows.map((r) => r.doc!._id), ['d', 'c']);
  });

  test('entries sit on top of the query string; keys come from the entry alone', async () => {
    const results = await queries('_all_docs', [{}, { limit: 1 }, { keys: ['a'] }], '?limit=2&include_docs=true&keys=%5B%22e%22%5D');
    assert.deepEqual(ids(results[0]!), ['_design/one', '_design/two']);
    assert.ok(results[0]!.rows.every((r) => r.doc));
    assert.deepEqual(ids(results[1]!), ['_design/one']);
    assert.deepEqual(ids(results[2]!), ['a']);
    assert.equal(results[2]!.rows[0]!.doc!._id, 'a');
  });

  test('no entries: no results', async () => {
    assert.deepEqual(await queries('_all_docs', []), []);
  });

  test('the body streams in CouchDB\'s layout', async () => {
    const res = await request(node, 'POST', `/${db}/_all_docs/queries`, { body: { queries: [{ keys: ['a'] }, { limit: 0 }] } });
    assert.equal(res.headers.get('transfer-encoding'), 'chunked');
    assert.match(res.text, /^\{"results":\[\r\n\{"total_rows":7,"offset":0,"rows":\[\r\n\{"id":"a",.*\}\r\n\]\},\r\n\{"total_rows":7,"offset":0,"rows":\[\r\n\]\}\r\n\]\}\n$/s);
  });
});

describe('_design_docs/queries', () => {
  test('only design documents, per entry, either direction', async () => {
    const entries: Record<string, unknown>[] = [{}, { descending: true }, { startkey: '_design/p' }, { include_docs: true, limit: 1 }];
    const results = await queries('_design_docs', entries.slice(0, 3));
    assert.deepEqual(ids(results[0]!), ['_design/one', '_design/two']);
    assert.deepEqual(ids(results[1]!), ['_design/two', '_design/one']);
    assert.deepEqual(ids(results[2]!), ['_design/two']);
    for (let i = 0; i < 3; i++) assert.deepEqual(results[i], await single('_design_docs', entries[i]!), `entry ${i}`);
    const [withDocs, descendingFrom, descendingTo] = await queries('_design_docs', [
      entries[3],
      { descending: true, startkey: '_design/p' },
      { descending: true, endkey: '_design/p' },
    ]);
    assert.deepEqual(withDocs!.rows.map((r) => r.doc!._id), ['_design/one']);
    assert.deepEqual(ids(descendingFrom!), ['_design/one']);
    assert.deepEqual(ids(descendingTo!), ['_design/two']);
    assert.deepEqual(descendingFrom, await single('_design_docs', { descending: true, startkey: '_design/p' }));
  });
});

describe('the plain routes parse as the entries do', () => {
  test('doc-id bounds are plain text, booleans any case, reasons show the value', async () => {
    const from = await request(node, 'GET', `/${db}/_all_docs?startkey_docid=c&limit=2`);
    assert.equal(from.status, 200, from.text);
    assert.deepEqual(ids(from.body as Result), ['c', 'd']);
    const [entry] = await queries('_all_docs', [{ startkey_docid: 'c', limit: 2 }]);
    assert.deepEqual(entry, from.body);
    const upper = await request(node, 'GET', `/${db}/_all_docs?descending=TRUE&limit=1`);
    assert.deepEqual(ids(upper.body as Result), ['e']);
    const bad = await request(node, 'GET', `/${db}/_all_docs?include_docs=yes`);
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body, { error: 'query_parse_error', reason: 'Invalid boolean parameter: "yes"' });
    const negative = await request(node, 'GET', `/${db}/_design_docs?skip=-1`);
    assert.deepEqual(negative.body, { error: 'query_parse_error', reason: 'Invalid value for positive integer: "-1"' });
  });
});

describe('refusals', () => {
  const cases: [string, string, unknown, number, string, string][] = [
    ['no queries member', '_all_docs', {}, 400, 'bad_request', 'POST body must include `queries` parameter.'],
    ['queries not an array', '_all_docs', { queries: { a: 1 } }, 400, 'bad_request', '`queries` member must be an array.'],
    ['an entry that is not an object', '_design_docs', { queries: [{}, 3] }, 400, 'bad_request', 'Each member of `queries` must be a JSON object.'],
    ['more entries than queriesMax', '_all_docs', { queries: [{}, {}, {}, {}] }, 400, 'bad_request', 'At most 3 queries per request'],
    ['one entry with more keys than keysMax', '_all_docs', { queries: [{ keys: ['1', '2', '3', '4', '5', '6', '7'] }] }, 400, 'bad_request', 'At most 6 keys per request'],
    ['more keys than keysMax over all entries', '_all_docs', { queries: [{ keys: ['1', '2', '3', '4'] }, { keys: ['5', '6', '7'] }] }, 400, 'bad_request', 'At most 6 keys per request'],
    ['keys beside startkey', '_all_docs', { queries: [{}, { keys: ['a'], startkey: 'a' }] }, 400, 'query_parse_error', '`keys` is incompatible with `key`, `start_key` and `end_key`'],
    ['keys not strings', '_all_docs', { queries: [{ keys: [1] }] }, 400, 'bad_request', '`keys` must be an array of strings'],
    ['a bad limit', '_all_docs', { queries: [{ limit: -1 }] }, 400, 'query_parse_error', 'Invalid value for positive integer: -1'],
    ['a bad boolean', '_all_docs', { queries: [{ include_docs: 'yes' }] }, 400, 'query_parse_error', 'Invalid boolean parameter: "yes"'],
  ];
  for (const [name, which, body, status, error, reason] of cases) {
    test(name, async () => {
      const res = await request(node, 'POST', `/${db}/${which}/queries`, { body });
      assert.equal(res.status, status, res.text);
      assert.deepEqual(res.body, { error, reason });
    });
  }

  test('a body that is not JSON', async () => {
    const res = await request(node, 'POST', `/${db}/_all_docs/queries`, { raw: '{"queries":[', headers: { 'content-type': 'application/json' } });
    assert.equal(res.status, 400);
    assert.equal((res.body as { error: string }).error, 'bad_request');
  });

  test('GET, PUT, HEAD: 405 with Allow: POST', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const res = await request(node, method, `/${db}/_all_docs/queries`);
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'POST');
      assert.equal((res.body as { error: string }).error, 'method_not_allowed');
    }
    const head = await request(node, 'HEAD', `/${db}/_design_docs/queries`);
    assert.equal(head.status, 405);
  });

  test('a database that does not exist: 404', async () => {
    const res = await request(node, 'POST', `/nope-${db}/_all_docs/queries`, { body: { queries: [] } });
    assert.equal(res.status, 404);
    assert.equal((res.body as { error: string }).error, 'not_found');
  });

  test('deeper paths under _all_docs are not found', async () => {
    const res = await request(node, 'GET', `/${db}/_all_docs/other`);
    assert.equal(res.status, 404);
  });
});
