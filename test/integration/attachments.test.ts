/**
 * Attachments against a live node, with the exact requests real clients send:
 * CouchDB's replicator pushing gzip-encoded attachments (`PUT ?new_edits=false` as
 * multipart/related) and pulling documents with attachments (`_bulk_get?attachments=false`,
 * then `GET ?open_revs=[...]&revs=true&latest=true` with `Accept: multipart/mixed`),
 * PouchDB reading them back, `attachments=true` on `_all_docs` and `_changes`, revpos of
 * replaced inline attachments, `_bulk_get` without rev, `open_revs=[]`, and content
 * types that cannot be header values.
 *
 * Raw bytes and headers are read with node:http, not fetch: fetch decodes
 * `Content-Encoding: gzip` on its own and would hide what the node sent.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { gunzipSync, gzipSync } from 'node:zlib';
import { ADMIN, rawRequest, request, startNode, TestNode, createDb } from '../helpers/node-process';
import { localDb, PouchDB, remoteDb, withDeadline } from '../helpers/pouch';
import { parseContentType, parseMultipart } from '../../src/api/http/multipart';
import { readOpenRevsMultipart } from '../helpers/multipart';

let node: TestNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.destroy();
});

const AUTH = 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');

/** One HTTP exchange with this file's node, the bytes exactly as sent (no decoding of any kind). */
const raw = (method: string, path: string, options?: { headers?: Record<string, string>; body?: Buffer | string }) => rawRequest(node, method, path, options);

const newDb = (): Promise<string> => createDb(node, 'att');

function md5(data: Buffer): string {
  return 'md5-' + createHash('md5').update(data).digest('base64');
}

const PLAIN = Buffer.from('abcdefgh');
const GZ = gzipSync(PLAIN);

/**
 * What CouchDB's replicator sends to push a document whose attachment it stores gzip
 * (couch_doc:doc_to_multi_part_stream with encoded attachments): the JSON part with
 * `follows`, `encoding`, `encoded_length`, `length`, then the gzip bytes as a part with
 * Content-Disposition, Content-Type, Content-Length and Content-Encoding.
 */
function replicatorPush(id: string, rev: string, atts: { name: string; type: string; plain: Buffer; gz: Buffer }[]): { body: Buffer; contentType: string } {
  const boundary = 'e4d7b5a0c3f2419b8c6d5e4f3a2b1c0d';
  const [pos, hash] = rev.split('-') as [string, string];
  const stubs: Record<string, unknown> = {};
  for (const att of atts) {
    stubs[att.name] = {
      content_type: att.type,
      revpos: Number(pos),
      digest: md5(att.gz),
      length: att.plain.length,
      follows: true,
      encoding: 'gzip',
      encoded_length: att.gz.length,
    };
  }
  const doc = { _id: id, _rev: rev, _revisions: { start: Number(pos), ids: [hash] }, value: 1, _attachments: stubs };
  const chunks: Buffer[] = [Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(doc)}`)];
  for (const att of atts) {
    chunks.push(
      Buffer.from(
        `\r\n--${boundary}\r\nContent-Disposition: attachment; filename="${att.name}"\r\nContent-Type: ${att.type}\r\n` +
          `Content-Length: ${att.gz.length}\r\nContent-Encoding: gzip\r\n\r\n`,
      ),
      att.gz,
    );
  }
  chunks.push(Buffer.from(`\r\n--${boundary}--`));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; boundary="${boundary}"` };
}

async function pushReplicated(db: string, id: string, rev: string, atts = [{ name: 'a.txt', type: 'text/plain', plain: PLAIN, gz: GZ }]): Promise<void> {
  const push = replicatorPush(id, rev, atts);
  const put = await raw('PUT', `/${db}/${id}?new_edits=false`, {
    headers: { 'content-type': push.contentType, accept: 'application/json', 'content-length': String(push.body.length) },
    body: push.body,
  });
  assert.equal(put.status, 201, put.body.toString());
}


describe('A0: gzip attachments pushed by CouchDB’s replicator', () => {
  test('kept encoded: identity to plain clients, gzip to clients that accept it, stubs as CouchDB keeps them', async () => {
    const db = await newDb();
    await pushReplicated(db, 'doc', '1-0123456789abcdef0123456789abcdef');

    const plain = await raw('GET', `/${db}/doc/a.txt`);
    assert.equal(plain.status, 200);
    assert.deepEqual(plain.body, PLAIN);
    assert.equal(plain.headers['content-length'], String(PLAIN.length));
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(plain.headers['content-type'], 'text/plain');

    const gz = await raw('GET', `/${db}/doc/a.txt`, { headers: { 'accept-encoding': 'gzip, deflate' } });
    assert.equal(gz.status, 200);
    assert.deepEqual(gz.body, GZ);
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers['content-length'], String(GZ.length));

    const refused = await raw('GET', `/${db}/doc/a.txt`, { headers: { 'accept-encoding': 'gzip;q=0, identity' } });
    assert.deepEqual(refused.body, PLAIN);
    assert.equal(refused.headers['content-encoding'], undefined);

    const head = await raw('HEAD', `/${db}/doc/a.txt`);
    assert.equal(head.headers['content-length'], String(PLAIN.length));

    // Stubs: identity length and the digest of the stored bytes; encoding shown on request.
    const stub = (await request(node, 'GET', `/${db}/doc`)).body._attachments['a.txt'];
    assert.equal(stub.length, PLAIN.length);
    assert.equal(stub.digest, md5(GZ));
    assert.equal(stub.encoding, undefined);
    const info = (await request(node, 'GET', `/${db}/doc?att_encoding_info=true`)).body._attachments['a.txt'];
    assert.equal(info.encoding, 'gzip');
    assert.equal(info.encoded_length, GZ.length);
    assert.equal(info.length, PLAIN.length);
    assert.equal(info.digest, md5(GZ));

    // Inline data is the identity bytes.
    const inline = (await request(node, 'GET', `/${db}/doc?attachments=true`)).body._attachments['a.txt'];
    assert.deepEqual(Buffer.from(inline.data, 'base64'), PLAIN);

    // A COPY keeps the stored form too.
    const copy = await raw('COPY', `/${db}/doc`, { headers: { destination: 'copied' } });
    assert.equal(copy.status, 201, copy.body.toString());
    assert.deepEqual((await raw('GET', `/${db}/copied/a.txt`)).body, PLAIN);
    assert.deepEqual((await raw('GET', `/${db}/copied/a.txt`, { headers: { 'accept-encoding': 'gzip' } })).body, GZ);
  });

  test('handed on encoded in multipart: open_revs and multipart/related reads carry the gzip part', async () => {
    const db = await newDb();
    const rev = '1-00112233445566778899aabbccddeeff';
    await pushReplicated(db, 'doc', rev);
    const mixed = await raw('GET', `/${db}/doc?open_revs=${encodeURIComponent(JSON.stringify([rev]))}&revs=true&latest=true`, {
      headers: { accept: 'multipart/mixed' },
    });
    assert.equal(mixed.status, 200);
    const [entry] = readOpenRevsMultipart(mixed);
    const stub = entry!.doc._attachments['a.txt'];
    assert.equal(stub.follows, true);
    assert.equal(stub.encoding, 'gzip');
    assert.equal(stub.encoded_length, GZ.length);
    assert.equal(stub.length, PLAIN.length);
    assert.equal(stub.digest, md5(GZ));
    assert.equal(entry!.parts.length, 1);
    assert.deepEqual(entry!.parts[0]!.body, GZ);
    assert.equal(entry!.parts[0]!.headers['content-encoding'], 'gzip');

    const related = await raw('GET', `/${db}/doc?attachments=true`, { headers: { accept: 'multipart/related' } });
    const type = parseContentType(String(related.headers['content-type']));
    assert.equal(type.type, 'multipart/related');
    const [json, part] = parseMultipart(related.body, type.params['boundary']!, { partsMax: 10 });
    assert.equal(JSON.parse(json!.body.toString())._attachments['a.txt'].encoding, 'gzip');
    assert.deepEqual(part!.body, GZ);

    // Pushed back into a second database the same way, it stays intact.
    const copy = await newDb();
    const put = await raw('PUT', `/${copy}/doc?new_edits=false`, {
      headers: { 'content-type': String(related.headers['content-type']) },
      body: related.body,
    });
    assert.equal(put.status, 201, put.body.toString());
    assert.deepEqual((await raw('GET', `/${copy}/doc/a.txt`)).body, PLAIN);
  });

  test('PouchDB reads the attachment correctly, directly and after replicating', async () => {
    const db = await newDb();
    await pushReplicated(db, 'doc', '1-ffeeddccbbaa99887766554433221100');
    const remote = remoteDb(node, db);
    const direct = await remote.getAttachment('doc', 'a.txt');
    assert.equal(Buffer.from(direct as unknown as ArrayBuffer).toString(), PLAIN.toString());
    const local = localDb();
    try {
      const result = await withDeadline(PouchDB.replicate(remote, local), 30_000, 'replication to PouchDB');
      assert.equal(result.doc_write_failures, 0);
      const fetched = await local.getAttachment('doc', 'a.txt');
      assert.equal(Buffer.from(fetched as unknown as ArrayBuffer).toString(), PLAIN.toString());
      const doc = await local.get('doc');
      assert.equal(doc._attachments['a.txt'].length, PLAIN.length);
    } finally {
      await local.destroy();
      await remote.close();
    }
  });

  test('standalone PUT with Content-Encoding: gzip is kept encoded, not stored as identity', async () => {
    const db = await newDb();
    const put = await raw('PUT', `/${db}/s/a.txt`, {
      headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'content-length': String(GZ.length) },
      body: GZ,
    });
    assert.equal(put.status, 201, put.body.toString());
    const plain = await raw('GET', `/${db}/s/a.txt`);
    assert.deepEqual(plain.body, PLAIN);
    const stub = (await request(node, 'GET', `/${db}/s?att_encoding_info=true`)).body._attachments['a.txt'];
    assert.equal(stub.length, PLAIN.length);
    assert.equal(stub.encoded_length, GZ.length);
    const bad = await raw('PUT', `/${db}/t/a.txt`, { headers: { 'content-type': 'text/plain', 'content-encoding': 'br' }, body: 'x' });
    assert.equal(bad.status, 415);
  });
});

describe('A1: CouchDB’s replicator pulls documents with attachments', () => {
  test('_bulk_get?attachments=false answers stubs; open_revs multipart sends every body', async () => {
    const db = await newDb();
    const first = await request(node, 'PUT', `/${db}/doc`, {
      body: { v: 1, _attachments: { 'one.bin': { content_type: 'application/octet-stream', data: Buffer.from('first').toString('base64') } } },
    });
    assert.equal(first.status, 201);
    const second = await request(node, 'PUT', `/${db}/doc`, {
      body: {
        v: 2,
        _rev: first.body.rev,
        _attachments: {
          'one.bin': { stub: true },
          'two.txt': { content_type: 'text/plain', data: Buffer.from('second').toString('base64') },
        },
      },
    });
    assert.equal(second.status, 201);
    const rev = second.body.rev as string;

    // The replicator's _bulk_get: attachments=false, with atts_since per document.
    const bulk = await request(node, 'POST', `/${db}/_bulk_get?revs=true&attachments=false&latest=true`, {
      body: { docs: [{ id: 'doc', rev, atts_since: ['1-0000'] }] },
    });
    assert.equal(bulk.status, 200);
    const got = bulk.body.results[0].docs[0].ok;
    assert.equal(got._attachments['one.bin'].stub, true);
    assert.equal(got._attachments['two.txt'].stub, true);
    assert.equal(got._attachments['two.txt'].data, undefined);

    // Then open_revs as multipart/mixed without attachments=true.
    const mixed = await raw('GET', `/${db}/doc?revs=true&open_revs=${encodeURIComponent(JSON.stringify([rev]))}&latest=true`, {
      headers: { accept: 'multipart/mixed' },
    });
    assert.equal(mixed.status, 200);
    const [entry] = readOpenRevsMultipart(mixed);
    assert.equal(entry!.doc._rev, rev);
    assert.deepEqual(entry!.doc._revisions.start, 2);
    assert.equal(entry!.doc._attachments['one.bin'].follows, true);
    assert.equal(entry!.doc._attachments['two.txt'].follows, true);
    // Parts go as stored: text is kept gzip (compressible_types), and its stub says so.
    assert.equal(entry!.doc._attachments['two.txt'].encoding, 'gzip');
    const bodies = new Map(
      entry!.parts.map((p) => {
        const name = /filename="([^"]+)"/.exec(p.headers['content-disposition']!)![1]!;
        return [name, (entry!.doc._attachments[name].encoding === 'gzip' ? gunzipSync(p.body) : p.body).toString()];
      }),
    );
    assert.deepEqual(Object.fromEntries(bodies), { 'one.bin': 'first', 'two.txt': 'second' });

    // atts_since still trims: what the target has at rev 1 comes as a stub.
    const since = await raw(
      'GET',
      `/${db}/doc?revs=true&open_revs=${encodeURIComponent(JSON.stringify([rev]))}&latest=true&atts_since=${encodeURIComponent(JSON.stringify([first.body.rev]))}`,
      { headers: { accept: 'multipart/mixed' } },
    );
    const [trimmed] = readOpenRevsMultipart(since);
    assert.equal(trimmed!.doc._attachments['one.bin'].stub, true);
    assert.equal(trimmed!.doc._attachments['two.txt'].follows, true);
    assert.equal(trimmed!.parts.length, 1);

    // What the replicator then writes to its target: the multipart body, as is.
    const target = await newDb();
    const inner = parseMultipart(mixed.body, parseContentType(String(mixed.headers['content-type'])).params['boundary']!, { partsMax: 10 })[0]!;
    const put = await raw('PUT', `/${target}/doc?new_edits=false`, { headers: { 'content-type': inner.headers['content-type']! }, body: inner.body });
    assert.equal(put.status, 201, put.body.toString());
    assert.equal((await raw('GET', `/${target}/doc/two.txt`)).body.toString(), 'second');
  });
});

describe('4: attachments=true on _all_docs and _changes', () => {
  test('data inline with include_docs, through HTTP and PouchDB', async () => {
    const db = await newDb();
    for (const id of ['a', 'b']) {
      const put = await request(node, 'PUT', `/${db}/${id}`, {
        body: { _attachments: { 'f.txt': { content_type: 'text/plain', data: Buffer.from(`data-${id}`).toString('base64') } } },
      });
      assert.equal(put.status, 201);
    }
    await pushReplicated(db, 'z', '1-0a0b0c0d0e0f00112233445566778899');
    const expected: Record<string, string> = { a: 'data-a', b: 'data-b', z: PLAIN.toString() };
    const dataOf = (doc: any) => Buffer.from(doc._attachments[doc._id === 'z' ? 'a.txt' : 'f.txt'].data, 'base64').toString();

    const all = await request(node, 'GET', `/${db}/_all_docs?include_docs=true&attachments=true`);
    assert.equal(all.body.rows.length, 3);
    for (const row of all.body.rows) assert.equal(dataOf(row.doc), expected[row.id]);
    const keys = await request(node, 'POST', `/${db}/_all_docs?include_docs=true&attachments=true`, { body: { keys: ['b', 'z'] } });
    for (const row of keys.body.rows) assert.equal(dataOf(row.doc), expected[row.id]);
    const stubs = await request(node, 'GET', `/${db}/_all_docs?include_docs=true`);
    for (const row of stubs.body.rows) assert.equal(Object.values<any>(row.doc._attachments)[0].stub, true);
    // Encoding fields only on request, as on a document read.
    const zStub = stubs.body.rows.find((r: any) => r.id === 'z').doc._attachments['a.txt'];
    assert.equal(zStub.encoding, undefined);
    assert.equal(zStub.length, PLAIN.length);
    const zInfo = (await request(node, 'GET', `/${db}/_all_docs?include_docs=true&att_encoding_info=true`)).body.rows.find((r: any) => r.id === 'z');
    assert.equal(zInfo.doc._attachments['a.txt'].encoding, 'gzip');
    const zKeys = await request(node, 'POST', `/${db}/_all_docs?include_docs=true`, { body: { keys: ['z'] } });
    assert.equal(zKeys.body.rows[0].doc._attachments['a.txt'].encoding, undefined);
    const zChanges = await request(node, 'GET', `/${db}/_changes?include_docs=true`);
    assert.equal(zChanges.body.results.find((r: any) => r.id === 'z').doc._attachments['a.txt'].encoding, undefined);

    const changes = await request(node, 'GET', `/${db}/_changes?include_docs=true&attachments=true`);
    assert.equal(changes.body.results.length, 3);
    for (const row of changes.body.results) assert.equal(dataOf(row.doc), expected[row.id]);
    const continuous = await request(node, 'GET', `/${db}/_changes?feed=continuous&include_docs=true&attachments=true&timeout=1`);
    const lines = continuous.text.split('\n').filter((l) => l.startsWith('{"seq"')).map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    for (const row of lines) assert.equal(dataOf(row.doc), expected[row.id]);

    const remote = remoteDb(node, db);
    try {
      const viaPouch = await remote.allDocs({ include_docs: true, attachments: true });
      for (const row of viaPouch.rows) assert.equal(dataOf(row.doc), expected[row.id]);
      const binary = await remote.allDocs({ include_docs: true, attachments: true, binary: true, keys: ['a'] });
      assert.equal(Buffer.from(binary.rows[0].doc._attachments['f.txt'].data).toString(), 'data-a');
      const feed = await (remote as any).changes({ include_docs: true, attachments: true, binary: true });
      assert.equal(feed.results.length, 3);
      for (const row of feed.results) {
        const att = row.doc._attachments[row.id === 'z' ? 'a.txt' : 'f.txt'];
        assert.equal(Buffer.from(att.data).toString(), expected[row.id]);
      }
    } finally {
      await remote.close();
    }
  });
});

describe('PouchDB: attachments replicate back and forth', () => {
  test('a local attachment goes to Divan, is replaced there, and comes back; gzip ones too', async () => {
    const db = await newDb();
    await pushReplicated(db, 'gz', '1-9f8e7d6c5b4a39281706f5e4d3c2b1a0');
    const remote = remoteDb(node, db);
    const local = localDb();
    try {
      await local.put({ _id: 'p', _attachments: { 'p.txt': { content_type: 'text/plain', data: Buffer.from('from pouch').toString('base64') } } });
      const up = await withDeadline(PouchDB.replicate(local, remote), 30_000, 'push');
      assert.equal(up.doc_write_failures, 0);
      assert.equal((await raw('GET', `/${db}/p/p.txt`)).body.toString(), 'from pouch');
      const onDivan = await request(node, 'GET', `/${db}/p`);
      const replaced = await raw('PUT', `/${db}/p/p.txt?rev=${onDivan.body._rev}`, { headers: { 'content-type': 'text/plain' }, body: 'from divan' });
      assert.equal(replaced.status, 201);
      const down = await withDeadline(PouchDB.replicate(remote, local), 30_000, 'pull');
      assert.equal(down.doc_write_failures, 0);
      assert.equal(Buffer.from((await local.getAttachment('p', 'p.txt')) as unknown as ArrayBuffer).toString(), 'from divan');
      assert.equal(Buffer.from((await local.getAttachment('gz', 'a.txt')) as unknown as ArrayBuffer).toString(), PLAIN.toString());
      // And the same documents, same attachments, replicate again as a no-op.
      const again = await withDeadline(PouchDB.replicate(local, remote), 30_000, 'push again');
      assert.equal(again.doc_write_failures, 0);
      assert.deepEqual((await raw('GET', `/${db}/gz/a.txt`)).body, PLAIN);
    } finally {
      await local.destroy();
      await remote.close();
    }
  });
});

describe('11: revpos of a replaced inline attachment', () => {
  test('is the new revision’s position, whatever revpos the client sends', async () => {
    const db = await newDb();
    const first = await request(node, 'PUT', `/${db}/d`, {
      body: { _attachments: { 'a.txt': { content_type: 'text/plain', data: Buffer.from('one').toString('base64') } } },
    });
    const second = await request(node, 'PUT', `/${db}/d`, {
      body: { _rev: first.body.rev, _attachments: { 'a.txt': { content_type: 'text/plain', revpos: 1, data: Buffer.from('two').toString('base64') } } },
    });
    assert.equal(second.status, 201);
    const doc = (await request(node, 'GET', `/${db}/d`)).body;
    assert.equal(doc._attachments['a.txt'].revpos, 2);
    // A replicator must not be told it already has the new bytes (atts_since of rev 1).
    const since = await request(node, 'GET', `/${db}/d?atts_since=${encodeURIComponent(JSON.stringify([first.body.rev]))}`);
    assert.equal(Buffer.from(since.body._attachments['a.txt'].data, 'base64').toString(), 'two');
  });
});

describe('12: _bulk_get without rev', () => {
  test('returns every leaf, conflicts and deleted leaves included', async () => {
    const db = await newDb();
    const docs = [
      { _id: 'c', _rev: '1-aaaa', v: 'a' },
      { _id: 'c', _rev: '1-bbbb', v: 'b' },
      { _id: 'c', _rev: '2-cccc', _revisions: { start: 2, ids: ['cccc', 'aaaa'] }, _deleted: true },
    ];
    assert.equal((await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs, new_edits: false } })).status, 201);
    const bulk = await request(node, 'POST', `/${db}/_bulk_get`, { body: { docs: [{ id: 'c' }, { id: 'nope' }] } });
    const revs = bulk.body.results[0].docs.map((d: any) => d.ok._rev).sort();
    assert.deepEqual(revs, ['1-bbbb', '2-cccc']);
    assert.equal(bulk.body.results[1].docs[0].error.error, 'not_found');
  });
});

describe('issue 8 item 13: open_revs=[] and content types', () => {
  test('open_revs=[] reads like a plain GET (as CouchDB), never a 500', async () => {
    const db = await newDb();
    const put = await request(node, 'PUT', `/${db}/d`, { body: { v: 1 } });
    for (const accept of [undefined, '*/*', 'multipart/mixed', 'application/json']) {
      const headers: Record<string, string> = accept ? { accept } : {};
      const get = await raw('GET', `/${db}/d?open_revs=[]`, { headers });
      assert.equal(get.status, 200, `accept ${accept}: ${get.body.toString()}`);
      assert.equal(JSON.parse(get.body.toString())._rev, put.body.rev);
      const head = await raw('HEAD', `/${db}/d?open_revs=[]`, { headers });
      assert.equal(head.status, 200);
      assert.equal((await raw('GET', `/${db}/missing?open_revs=[]`, { headers })).status, 404);
    }
  });

  test('a content type that cannot be a header value is refused on every write path', async () => {
    const db = await newDb();
    const data = Buffer.from('x').toString('base64');
    for (const type of ['text/plain\r\nX-Evil: 1', 'text/plain\n', 'text/\u0101plain', 'text/plain\u0000']) {
      const inline = await request(node, 'PUT', `/${db}/i`, { body: { _attachments: { 'a.txt': { content_type: type, data } } } });
      assert.equal(inline.status, 400, JSON.stringify(type));
      assert.equal(inline.body.error, 'bad_request');
      const bulk = await request(node, 'POST', `/${db}/_bulk_docs`, {
        body: { docs: [{ _id: 'r', _rev: '1-abcd', _attachments: { 'a.txt': { content_type: type, data } } }], new_edits: false },
      });
      assert.equal(bulk.status, 400, JSON.stringify(type));
      const boundary = 'b0undary';
      const json = JSON.stringify({ _attachments: { 'a.txt': { content_type: type, follows: true, length: 1 } } });
      const body = `--${boundary}\r\nContent-Type: application/json\r\n\r\n${json}\r\n--${boundary}\r\n\r\nx\r\n--${boundary}--`;
      const multipart = await raw('PUT', `/${db}/m`, { headers: { 'content-type': `multipart/related; boundary="${boundary}"` }, body: Buffer.from(body, 'utf8') });
      assert.equal(multipart.status, 400, JSON.stringify(type));
    }
    // Standalone PUT: a header value Node's client refuses to send, written on a raw socket.
    const status = await rawSocketPut(`/${db}/s/a.txt`, 'text/pl\u007fain');
    assert.ok(status >= 400 && status < 500, `status ${status}`);
    for (const id of ['i', 'r', 'm', 's']) assert.equal((await request(node, 'GET', `/${db}/${id}`)).status, 404);
  });
});

/** A PUT with a Content-Type carrying a raw control byte; returns the status. */
function rawSocketPut(path: string, contentType: string): Promise<number> {
  const url = new URL(node.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(
        Buffer.from(
          `PUT ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: ${AUTH}\r\nContent-Type: ${contentType}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx`,
          'latin1',
        ),
      );
    });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw PUT timed out')));
  });
}
