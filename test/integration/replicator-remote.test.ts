/**
 * `RemoteEndpoint` (the HTTP side of CouchDB's replication protocol) against a live
 * Divan node. A source database holds plain docs, an attachment, a doc with two
 * conflicting leaves (written with `new_edits: false`), a design doc, an id that needs
 * encoding and an integer beyond 2^53. The tests read it through the endpoint (info,
 * changes with paging, filters and longpoll, revs_diff, bulk_get and the per-document
 * fallback), copy it into a second database with `write`, and compare the two with
 * `open_revs=all`; then `_local` checkpoints, and failures: bad credentials, a missing
 * database, a closed port, 503s that clear up, an oversized reply, an abort.
 *
 * A small proxy in front of the node stands in for servers without `_bulk_get` and for
 * servers that fail for a while; it records the requests it sees.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { ADMIN, createDb, request, startNode, uniqueDb, type TestNode } from '../helpers/node-process';
import { RemoteEndpoint, type RemoteEndpointOptions } from '../../src/api/replicator/remote';
import { ReplicationError, type ChangeRow, type EndpointSpec, type FetchedRev } from '../../src/api/replicator/endpoint';

const OPTIONS: RemoteEndpointOptions = { timeoutMs: 10_000, retries: 2, httpConnections: 4, replyBytesMax: 16 * 1024 * 1024 };
const REV_A = '1-' + 'a'.repeat(32);
const REV_B = '1-' + 'b'.repeat(32);
const HELLO = Buffer.from('hello, attachments').toString('base64');
const BIG = '12345678901234567890123';
const PLAIN_IDS = Array.from({ length: 10 }, (_, i) => `d${String(i).padStart(2, '0')}`);
const ALL_IDS = [...PLAIN_IDS, 'att', 'conflicted', '_design/app', 'a/b c?d', 'big'].sort();

let node: TestNode;
let source: string;
const endpoints: RemoteEndpoint[] = [];

function endpoint(url: string, options: Partial<RemoteEndpointOptions> = {}, spec: Omit<EndpointSpec, 'url'> = {}): RemoteEndpoint {
  const e = new RemoteEndpoint({ url, ...spec }, { ...OPTIONS, ...options });
  endpoints.push(e);
  return e;
}
const remote = (db: string, options: Partial<RemoteEndpointOptions> = {}) => endpoint(`${node.authUrl}/${encodeURIComponent(db)}`, options);

async function rejectsWith(promise: Promise<unknown>, kind: ReplicationError['kind'], retryable?: boolean): Promise<ReplicationError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ReplicationError, `not a ReplicationError: ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (retryable !== undefined) assert.equal(err.retryable, retryable, err.message);
    return err;
  }
  assert.fail(`expected ${kind}`);
}

async function allChanges(db: RemoteEndpoint, limit = 1000): Promise<ChangeRow[]> {
  const rows: ChangeRow[] = [];
  let since = '0';
  for (let page = 0; page < 100; page++) {
    const got = await db.changes({ since, limit, longpollMs: 0 });
    assert.ok(got.rows.length <= limit);
    if (got.rows.length === 0) return rows;
    rows.push(...got.rows);
    since = got.lastSeq;
  }
  assert.fail('changes did not reach the end in 100 pages');
}

const byIdRev = (a: FetchedRev, b: FetchedRev) => (a.id + ' ' + a.rev < b.id + ' ' + b.rev ? -1 : 1);

async function leaves(db: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const row of await allChanges(remote(db))) out.set(row.id, row.revs);
  return out;
}

/** Every leaf of every document, with `_revisions` and attachments as the endpoint fetches them. */
async function fetchAll(db: RemoteEndpoint): Promise<FetchedRev[]> {
  const rows = await allChanges(db);
  return db.fetch(rows.map((r) => ({ id: r.id, revs: r.revs, attsSince: [] })));
}

const docPath = (id: string) => (id.startsWith('_design/') ? '_design/' + encodeURIComponent(id.slice(8)) : encodeURIComponent(id));

before(async () => {
  node = await startNode();
  source = await createDb(node, 'remote-src');
  const docs: unknown[] = PLAIN_IDS.map((id, n) => ({ _id: id, n }));
  docs.push({ _id: 'att', _attachments: { 'hello.txt': { content_type: 'text/plain', data: HELLO } } });
  docs.push({ _id: '_design/app', views: { all: { map: 'function (doc) { emit(doc._id, 1); }' } } });
  docs.push({ _id: 'a/b c?d', odd: true });
  let res = await request(node, 'POST', `/${source}/_bulk_docs`, { body: { docs } });
  assert.equal(res.status, 201, res.text);
  res = await request(node, 'POST', `/${source}/_bulk_docs`, {
    body: { new_edits: false, docs: [{ _id: 'conflicted', _rev: REV_A, v: 'a' }, { _id: 'conflicted', _rev: REV_B, v: 'b' }] },
  });
  assert.equal(res.status, 201, res.text);
  res = await request(node, 'PUT', `/${source}/big`, { raw: `{"n":${BIG}}`, headers: { 'content-type': 'application/json' } });
  assert.equal(res.status, 201, res.text);
});

after(async () => {
  for (const e of endpoints) e.close();
  await node?.destroy();
});

describe('database', () => {
  test('info: counts, an opaque update_seq, an instance; label without the password', async () => {
    const db = remote(source);
    const info = await db.info();
    assert.equal(info.docCount, ALL_IDS.length);
    assert.equal(typeof info.updateSeq, 'string');
    assert.ok(info.updateSeq.length > 0);
    assert.equal(typeof info.instance, 'string');
    assert.equal(db.label, `http://${ADMIN.user}@127.0.0.1:${node.port}/${source}`);
    assert.ok(!db.label.includes(ADMIN.password));
  });

  test('create, and create again (412 is fine)', async () => {
    const name = uniqueDb('remote-new');
    const db = remote(name);
    await rejectsWith(db.info(), 'db_not_found', false);
    await db.create({ q: 2 });
    const info = await db.info();
    assert.equal(info.docCount, 0);
    await db.create({ q: 2 });
  });

  test('a database name with a slash: the path is kept as given (%2F)', async () => {
    const name = uniqueDb('remote/slash');
    const db = remote(name);
    assert.ok(db.label.endsWith('/' + encodeURIComponent(name)), db.label);
    await db.create({});
    assert.equal((await request(node, 'GET', `/${encodeURIComponent(name)}`)).status, 200);
    await db.putLocal('x', { a: 1 });
    assert.equal((await db.getLocal('x'))?.a, 1);
  });

  test('credentials: percent-encoded in the URL, or as auth.basic, or as a header', async () => {
    const user = encodeURIComponent(ADMIN.user).replace('a', '%61');
    const password = ADMIN.password.replace('-', '%2D');
    const inUrl = endpoint(`http://${user}:${password}@127.0.0.1:${node.port}/${source}`);
    assert.equal((await inUrl.info()).docCount, ALL_IDS.length);
    const basic = endpoint(`${node.url}/${source}`, {}, { auth: { basic: { username: ADMIN.user, password: ADMIN.password } } });
    assert.equal((await basic.info()).docCount, ALL_IDS.length);
    const header = 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');
    const headers = endpoint(`${node.url}/${source}`, {}, { headers: { Authorization: header } });
    assert.equal((await headers.info()).docCount, ALL_IDS.length);
  });
});

describe('changes', () => {
  test('every document, with every leaf of the conflicted one', async () => {
    const page = await remote(source).changes({ since: '0', limit: 1000, longpollMs: 0 });
    assert.deepEqual(page.rows.map((r) => r.id).sort(), ALL_IDS);
    const conflicted = page.rows.find((r) => r.id === 'conflicted')!;
    assert.deepEqual([...conflicted.revs].sort(), [REV_A, REV_B]);
    for (const row of page.rows) {
      assert.equal(typeof row.seq, 'string');
      assert.equal(row.deleted, false);
    }
    assert.equal(typeof page.lastSeq, 'string');
  });

  test('limit and since page through to the end', async () => {
    const rows = await allChanges(remote(source), 3);
    assert.deepEqual([...new Set(rows.map((r) => r.id))].sort(), ALL_IDS);
  });

  test('deleted documents are flagged', async () => {
    const db = await createDb(node, 'remote-del');
    const put = await request(node, 'PUT', `/${db}/gone`, { body: { x: 1 } });
    assert.equal((await request(node, 'DELETE', `/${db}/gone?rev=${put.body.rev}`)).status, 200);
    const page = await remote(db).changes({ since: '0', limit: 10, longpollMs: 0 });
    assert.deepEqual(
      page.rows.map((r) => [r.id, r.deleted]),
      [['gone', true]],
    );
  });

  test('_doc_ids and _selector filters (POST bodies)', async () => {
    const db = remote(source);
    const byIds = await db.changes({ since: '0', limit: 100, longpollMs: 0, filter: '_doc_ids', docIds: ['d01', 'att', 'a/b c?d', 'nope'] });
    assert.deepEqual(byIds.rows.map((r) => r.id).sort(), ['a/b c?d', 'att', 'd01']);
    const bySelector = await db.changes({ since: '0', limit: 100, longpollMs: 0, filter: '_selector', selector: { n: { $gte: 7, $lt: 100 } } });
    assert.deepEqual(bySelector.rows.map((r) => r.id).sort(), ['d07', 'd08', 'd09']);
  });

  test('a design-document filter with query_params', async () => {
    const db = await createDb(node, 'remote-filter');
    const ddoc = { _id: '_design/f', filters: { owner: 'function (doc, req) { return doc.owner === req.query.owner; }' } };
    const docs = [ddoc, { _id: 'x', owner: 'ann' }, { _id: 'y', owner: 'bob' }];
    assert.equal((await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } })).status, 201);
    const page = await remote(db).changes({ since: '0', limit: 100, longpollMs: 0, filter: 'f/owner', queryParams: { owner: 'bob' } });
    assert.deepEqual(
      page.rows.map((r) => r.id),
      ['y'],
    );
  });

  test('longpoll returns once a document is written meanwhile', async () => {
    const db = await createDb(node, 'remote-longpoll');
    const endpointDb = remote(db);
    const { updateSeq } = await endpointDb.info();
    const started = Date.now();
    const waiting = endpointDb.changes({ since: updateSeq, limit: 100, longpollMs: 20_000 });
    setTimeout(() => void request(node, 'PUT', `/${db}/late`, { body: { x: 1 } }), 300);
    const page = await waiting;
    assert.deepEqual(
      page.rows.map((r) => r.id),
      ['late'],
    );
    assert.ok(Date.now() - started < 15_000, 'answered before the longpoll timeout');
  });

  test('an aborted longpoll rejects at once, not retryable', async () => {
    const db = await createDb(node, 'remote-abort');
    const endpointDb = remote(db);
    const { updateSeq } = await endpointDb.info();
    const controller = new AbortController();
    const started = Date.now();
    const waiting = endpointDb.changes({ since: updateSeq, limit: 100, longpollMs: 20_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 200);
    await rejectsWith(waiting, 'unavailable', false);
    assert.ok(Date.now() - started < 5_000);
  });
});

describe('revs_diff and fetch', () => {
  test('revsDiff: missing revisions, and ids with nothing missing left out', async () => {
    const revs = await leaves(source);
    const d01 = revs.get('d01')![0]!;
    const d02 = revs.get('d02')![0]!;
    const fake = '2-' + 'c'.repeat(32);
    const diff = await remote(source).revsDiff(
      new Map([
        ['d01', [d01, fake]],
        ['d02', [d02]],
        ['nope', [REV_A]],
      ]),
    );
    assert.deepEqual(diff.get('d01')!.missing, [fake]);
    assert.ok(Array.isArray(diff.get('d01')!.possibleAncestors));
    assert.deepEqual(diff.get('nope')!.missing, [REV_A]);
    assert.ok(!diff.has('d02') || diff.get('d02')!.missing.length === 0);
    assert.equal((await remote(source).revsDiff(new Map())).size, 0);
  });

  test('fetch: _revisions, inline attachment data, both conflicting leaves, exact big integers, missing revs', async () => {
    const revs = await leaves(source);
    const attRev = revs.get('att')![0]!;
    const got = await remote(source).fetch([
      { id: 'att', revs: [attRev], attsSince: [] },
      { id: 'conflicted', revs: [REV_A, REV_B], attsSince: [] },
      { id: 'big', revs: revs.get('big')!, attsSince: [] },
      { id: 'd03', revs: ['9-' + 'e'.repeat(32)], attsSince: [] },
    ]);
    assert.equal(got.length, 5);
    const att = got.find((f) => f.id === 'att');
    assert.ok(att && att.kind === 'ok');
    const attDoc = JSON.parse(att.json);
    assert.equal(attDoc._rev, attRev);
    assert.deepEqual(attDoc._revisions, { start: 1, ids: [attRev.slice(2)] });
    assert.equal(attDoc._attachments['hello.txt'].data, HELLO);
    const conflicted = got.filter((f) => f.id === 'conflicted').sort(byIdRev);
    assert.deepEqual(
      conflicted.map((f) => (f.kind === 'ok' ? JSON.parse(f.json).v : f.kind)),
      ['a', 'b'],
    );
    const big = got.find((f) => f.id === 'big');
    assert.ok(big && big.kind === 'ok' && big.json.includes(`"n":${BIG}`), big?.kind === 'ok' ? big.json : 'missing');
    assert.deepEqual(
      got.find((f) => f.id === 'd03'),
      { kind: 'missing', id: 'd03', rev: '9-' + 'e'.repeat(32) },
    );
  });

  test('fetch: attachments come as stubs when attsSince holds their revision', async () => {
    const attRev = (await leaves(source)).get('att')![0]!;
    const [att] = await remote(source).fetch([{ id: 'att', revs: [attRev], attsSince: [attRev] }]);
    assert.ok(att && att.kind === 'ok');
    const hello = JSON.parse(att.json)._attachments['hello.txt'];
    assert.equal(hello.stub, true);
    assert.equal(hello.data, undefined);
  });

  test('without _bulk_get: one open_revs GET per document, the same answers, remembered', async () => {
    const proxy = await startProxy(node.port, (req) => (req.url?.includes('/_bulk_get') ? 405 : undefined));
    try {
      const direct = await fetchAll(remote(source));
      const viaProxy = endpoint(`http://${ADMIN.user}:${ADMIN.password}@127.0.0.1:${proxy.port}/${source}`);
      const fallback = await fetchAll(viaProxy);
      const parsed = (list: FetchedRev[]) => list.sort(byIdRev).map((f) => (f.kind === 'ok' ? { ...f, json: JSON.parse(f.json) } : f));
      assert.deepEqual(parsed(fallback), parsed(direct));
      assert.ok(fallback.some((f) => f.id === 'big' && f.kind === 'ok' && f.json.includes(BIG)));
      assert.equal(proxy.seen.filter((s) => s.includes('/_bulk_get')).length, 1);
      assert.ok(proxy.seen.some((s) => s.startsWith(`GET /${source}/_design/app?`)));
      assert.ok(proxy.seen.some((s) => s.startsWith(`GET /${source}/a%2Fb%20c%3Fd?`)));
      await viaProxy.fetch([{ id: 'd01', revs: [REV_A], attsSince: [] }]);
      assert.equal(proxy.seen.filter((s) => s.includes('/_bulk_get')).length, 1, '_bulk_get not asked again');
    } finally {
      await proxy.close();
    }
  });
});

describe('write', () => {
  test('new_edits=false copies every leaf: open_revs=all&revs=true matches the source', async () => {
    const target = await createDb(node, 'remote-dst');
    const fetched = await fetchAll(remote(source));
    assert.ok(fetched.every((f) => f.kind === 'ok'));
    const results = await remote(target).write(fetched.flatMap((f) => (f.kind === 'ok' ? [f.json] : [])));
    assert.deepEqual(
      results.filter((r) => r.error !== undefined),
      [],
    );
    for (const id of ALL_IDS) {
      const path = `/${docPath(id)}?open_revs=all&revs=true`;
      const [a, b] = await Promise.all([request(node, 'GET', `/${source}${path}`), request(node, 'GET', `/${target}${path}`)]);
      assert.equal(a.status, 200, a.text);
      const sorted = (body: { ok: { _rev: string } }[]) => [...body].sort((x, y) => (x.ok._rev < y.ok._rev ? -1 : 1));
      assert.deepEqual(sorted(b.body), sorted(a.body), id);
    }
    const big = await request(node, 'GET', `/${target}/big`);
    assert.ok(big.text.includes(`"n":${BIG}`), big.text);
    assert.deepEqual(await remote(target).write([]), []);
  });

  test('a refused document comes back as a failed WriteResult', async () => {
    const target = await createDb(node, 'remote-vdu');
    const vdu = { _id: '_design/guard', validate_doc_update: 'function (doc) { if (doc.bad) throw({forbidden: "no bad docs"}); }' };
    assert.equal((await request(node, 'PUT', `/${target}/_design/guard`, { body: vdu })).status, 201);
    const results = await remote(target).write([
      JSON.stringify({ _id: 'ok', _rev: REV_A, _revisions: { start: 1, ids: ['a'.repeat(32)] } }),
      JSON.stringify({ _id: 'bad', _rev: REV_A, bad: true, _revisions: { start: 1, ids: ['a'.repeat(32)] } }),
    ]);
    const failed = results.filter((r) => r.error !== undefined);
    assert.deepEqual(
      failed.map((r) => [r.id, r.error]),
      [['bad', 'forbidden']],
    );
    assert.equal((await request(node, 'GET', `/${target}/ok`)).status, 200);
  });
});

describe('_local documents', () => {
  test('getLocal/putLocal round trip with rev', async () => {
    const db = remote(source);
    assert.equal(await db.getLocal('ckpt-1'), undefined);
    const rev1 = await db.putLocal('ckpt-1', { session_id: 's1', history: [{ n: 1 }] });
    const read = await db.getLocal('ckpt-1');
    assert.ok(read);
    assert.equal(read._rev, rev1);
    assert.deepEqual(read.history, [{ n: 1 }]);
    const rev2 = await db.putLocal('ckpt-1', { ...read, session_id: 's2' });
    assert.notEqual(rev2, rev1);
    assert.equal((await db.getLocal('_local/ckpt-1'))?.session_id, 's2');
  });
});

describe('errors', () => {
  test('wrong password: unauthorized', async () => {
    const db = endpoint(`http://${ADMIN.user}:wrong@127.0.0.1:${node.port}/${source}`);
    const err = await rejectsWith(db.info(), 'unauthorized', false);
    assert.ok(!err.message.includes('wrong'));
  });

  test('missing database: db_not_found, named by its label', async () => {
    const db = remote('no-such-db-here');
    const err = await rejectsWith(db.info(), 'db_not_found', false);
    assert.equal(err.reason, `Database does not exist: ${db.label}`);
    assert.ok(!err.reason.includes(ADMIN.password));
  });

  test('a closed port with retries 1: a retryable error within a few seconds', async () => {
    const port = await closedPort();
    const db = endpoint(`http://127.0.0.1:${port}/db`, { retries: 1 });
    const started = Date.now();
    await rejectsWith(db.info(), 'unavailable', true);
    assert.ok(Date.now() - started < 3_000);
  });

  test('503s are retried until the server answers', async () => {
    let failures = 2;
    const proxy = await startProxy(node.port, () => (failures-- > 0 ? 503 : undefined));
    try {
      const db = endpoint(`http://${ADMIN.user}:${ADMIN.password}@127.0.0.1:${proxy.port}/${source}`, { retries: 2 });
      assert.equal((await db.info()).docCount, ALL_IDS.length);
      assert.equal(proxy.seen.length, 3);
      failures = 10;
      await rejectsWith(db.info(), 'unavailable', true);
      assert.equal(proxy.seen.length, 6);
    } finally {
      await proxy.close();
    }
  });

  test('4xx is never retried', async () => {
    const proxy = await startProxy(node.port, () => 400);
    try {
      const db = endpoint(`http://127.0.0.1:${proxy.port}/${source}`, { retries: 3 });
      await rejectsWith(db.info(), 'bad_request', false);
      assert.equal(proxy.seen.length, 1);
    } finally {
      await proxy.close();
    }
  });

  test('a request that outlives timeoutMs: timeout, retryable', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => void sockets.push(socket)); // accepts, never answers
    silent.listen(0, '127.0.0.1');
    await new Promise((resolve) => silent.once('listening', resolve));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const db = endpoint(`http://127.0.0.1:${port}/db`, { retries: 1, timeoutMs: 300 });
      const started = Date.now();
      await rejectsWith(db.info(), 'timeout', true);
      assert.ok(Date.now() - started < 3_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('a reply larger than replyBytesMax: protocol', async () => {
    const db = remote(source, { replyBytesMax: 200 });
    await rejectsWith(db.changes({ since: '0', limit: 100, longpollMs: 0 }), 'protocol', false);
  });

  test('after close(): calls fail, not retryable', async () => {
    const db = remote(source);
    await db.info();
    db.close();
    await rejectsWith(db.info(), 'unavailable', false);
  });
});

interface Proxy {
  port: number;
  /** `METHOD url` of every request seen. */
  seen: string[];
  close(): Promise<void>;
}

/** An HTTP proxy to `targetPort` that answers `reject(req)` (a status) itself when it gives one. */
async function startProxy(targetPort: number, reject: (req: http.IncomingMessage) => number | undefined): Promise<Proxy> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const status = reject(req);
    if (status !== undefined) {
      req.resume();
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'proxy', reason: `answered ${status}` }));
      return;
    }
    const upstream = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nothing listens on (just released by a server of ours). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
