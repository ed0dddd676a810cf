/**
 * Attachments the server compresses itself (CouchDB's `[attachments] compressible_types`
 * and `compression_level`), against live nodes: text uploaded identity through a
 * standalone PUT, inline JSON, `_bulk_docs` and multipart/related is stored gzip
 * (`att_encoding_info` shows it) with the md5 of its identity bytes as digest, and is
 * served gzip or plain by `Accept-Encoding`, whole under `Range`, plain inline; other
 * types stay identity; level 0 turns it off; PouchDB pushes and pulls it with the
 * digest it computed; a multipart `open_revs` read pushed back with `new_edits=false`
 * keeps the digest; the same bytes stored identity and gzip in one shard both read back;
 * in a two-node cluster the digest survives gRPC edits and shard sync.
 *
 * Raw bytes and headers are read with node:http, not fetch: fetch decodes
 * `Content-Encoding: gzip` on its own and would hide what the node sent.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { clusterPerSuite, eventually } from '../helpers/cluster';
import { createDb, rawRequest, request, startNode, type TestNode, uniqueDb } from '../helpers/node-process';
import { localDb, PouchDB, remoteDb, withDeadline } from '../helpers/pouch';
import { readOpenRevsMultipart } from '../helpers/multipart';


/** One HTTP exchange with the bytes exactly as sent (no decoding of any kind). */
const raw = rawRequest;

const md5 = (data: Buffer): string => 'md5-' + createHash('md5').update(data).digest('base64');
const md5Base64 = (data: Buffer): string => md5(data).slice(4);

/** Compressible text, long enough for gzip to be clearly smaller. */
const TEXT = Buffer.from('Divan stores this text attachment gzip-compressed. '.repeat(40));
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('not really an image, '.repeat(20))]);

/** A multipart/related document write: the JSON part, then one part per `follows` attachment. */
function related(doc: Record<string, unknown>, parts: { name: string; type: string; body: Buffer; encoding?: string }[]): { body: Buffer; contentType: string } {
  const boundary = '6f1a2b3c4d5e6f708192a3b4c5d6e7f8';
  const chunks: Buffer[] = [Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(doc)}`)];
  for (const part of parts) {
    chunks.push(
      Buffer.from(
        `\r\n--${boundary}\r\nContent-Disposition: attachment; filename="${part.name}"\r\nContent-Type: ${part.type}\r\n` +
          `Content-Length: ${part.body.length}\r\n${part.encoding ? `Content-Encoding: ${part.encoding}\r\n` : ''}\r\n`,
      ),
      part.body,
    );
  }
  chunks.push(Buffer.from(`\r\n--${boundary}--`));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; boundary="${boundary}"` };
}


/**
 * Everything a client can see of a compressed attachment: the stub with and without
 * encoding info, inline data, GET with and without Accept-Encoding, a Range request.
 */
async function assertStoredGzip(node: TestNode, db: string, doc: string, name: string, plain: Buffer, type = 'text/plain'): Promise<void> {
  const where = `${db}/${doc}/${name}`;
  const stub = (await request(node, 'GET', `/${db}/${doc}`)).body._attachments[name];
  assert.equal(stub.digest, md5(plain), `${where}: digest of the identity bytes`);
  assert.equal(stub.length, plain.length);
  assert.equal(stub.encoding, undefined, `${where}: encoding shown only on request`);
  assert.equal(stub.encoded_length, undefined);
  const info = (await request(node, 'GET', `/${db}/${doc}?att_encoding_info=true`)).body._attachments[name];
  assert.equal(info.encoding, 'gzip', `${where}: stored gzip`);
  assert.equal(info.digest, md5(plain));
  assert.equal(info.length, plain.length);
  assert.ok(info.encoded_length > 0 && info.encoded_length < plain.length, `${where}: encoded_length ${info.encoded_length}`);

  const inline = (await request(node, 'GET', `/${db}/${doc}?attachments=true`)).body._attachments[name];
  assert.deepEqual(Buffer.from(inline.data, 'base64'), plain, `${where}: inline data is the identity bytes`);
  assert.equal(inline.digest, md5(plain));
  const inlineInfo = (await request(node, 'GET', `/${db}/${doc}?attachments=true&att_encoding_info=true`)).body._attachments[name];
  assert.deepEqual(Buffer.from(inlineInfo.data, 'base64'), plain);
  assert.equal(inlineInfo.encoding, 'gzip');

  const etag = `"${md5Base64(plain)}"`;
  const gz = await raw(node, 'GET', `/${where}`, { headers: { 'accept-encoding': 'gzip, deflate, br' } });
  assert.equal(gz.status, 200);
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assert.equal(gz.headers['content-type'], type);
  assert.equal(gz.headers['content-length'], String(info.encoded_length));
  assert.equal(gz.headers['accept-ranges'], 'none');
  assert.equal(gz.headers['etag'], etag);
  assert.equal(gz.headers['content-md5'], md5Base64(gz.body), `${where}: Content-MD5 of the bytes sent`);
  assert.deepEqual(gunzipSync(gz.body), plain);

  const identity = await raw(node, 'GET', `/${where}`);
  assert.equal(identity.status, 200);
  assert.equal(identity.headers['content-encoding'], undefined);
  assert.equal(identity.headers['content-length'], String(plain.length));
  assert.equal(identity.headers['etag'], etag);
  assert.equal(identity.headers['content-md5'], undefined, 'none when decoded on the fly, as CouchDB');
  assert.deepEqual(identity.body, plain);

  // Ranges on an encoded attachment: the whole body, as CouchDB answers them.
  const ranged = await raw(node, 'GET', `/${where}`, { headers: { range: 'bytes=0-9' } });
  assert.equal(ranged.status, 200);
  assert.equal(ranged.headers['accept-ranges'], 'none');
  assert.equal(ranged.headers['content-range'], undefined);
  assert.deepEqual(ranged.body, plain);

  assert.equal((await raw(node, 'GET', `/${where}`, { headers: { 'if-none-match': etag } })).status, 304);
}

async function assertIdentity(node: TestNode, db: string, doc: string, name: string, bytes: Buffer): Promise<void> {
  const info = (await request(node, 'GET', `/${db}/${doc}?att_encoding_info=true`)).body._attachments[name];
  assert.equal(info.encoding, undefined, `${db}/${doc}/${name}: stored identity`);
  assert.equal(info.digest, md5(bytes));
  const got = await raw(node, 'GET', `/${db}/${doc}/${name}`, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(got.headers['content-encoding'], undefined);
  assert.equal(got.headers['accept-ranges'], 'bytes');
  assert.equal(got.headers['content-md5'], md5Base64(bytes));
  assert.deepEqual(got.body, bytes);
  const ranged = await raw(node, 'GET', `/${db}/${doc}/${name}`, { headers: { range: 'bytes=0-3' } });
  assert.equal(ranged.status, 206);
  assert.deepEqual(ranged.body, bytes.subarray(0, 4));
}

describe('compression on (CouchDB defaults)', () => {
  let node: TestNode;
  before(async () => {
    node = await startNode();
  });
  after(async () => {
    await node.destroy();
  });

  test('the settings are visible as CouchDB names them', async () => {
    const config = await request(node, 'GET', '/_node/_local/_config');
    assert.equal(config.status, 200, config.text);
    assert.equal(config.body.attachments.compression_level, '8');
    assert.equal(config.body.attachments.compressible_types, 'text/*, application/javascript, application/json, application/xml');
  });

  test('standalone PUT of text is stored gzip and served both ways', async () => {
    const db = await createDb(node, 'attgz');
    const put = await raw(node, 'PUT', `/${db}/d/a.txt`, { headers: { 'content-type': 'text/plain' }, body: TEXT });
    assert.equal(put.status, 201, put.body.toString());
    await assertStoredGzip(node, db, 'd', 'a.txt', TEXT);
    // Type parameters and case do not matter; the type is kept as given.
    const rev = (await request(node, 'GET', `/${db}/d`)).body._rev;
    const json = Buffer.from(JSON.stringify({ text: TEXT.toString() }));
    const put2 = await raw(node, 'PUT', `/${db}/d/b.json?rev=${rev}`, { headers: { 'content-type': 'Application/JSON; charset=utf-8' }, body: json });
    assert.equal(put2.status, 201, put2.body.toString());
    await assertStoredGzip(node, db, 'd', 'b.json', json, 'Application/JSON; charset=utf-8');
    // The first attachment, now a stub of the new revision, is untouched.
    await assertStoredGzip(node, db, 'd', 'a.txt', TEXT);
  });

  test('inline JSON, _bulk_docs and multipart/related text is stored gzip; png stays identity', async () => {
    const db = await createDb(node, 'attgz');
    const put = await request(node, 'PUT', `/${db}/inline`, {
      body: {
        _attachments: {
          'a.txt': { content_type: 'text/plain', data: TEXT.toString('base64') },
          'p.png': { content_type: 'image/png', data: PNG.toString('base64') },
        },
      },
    });
    assert.equal(put.status, 201, put.text);
    await assertStoredGzip(node, db, 'inline', 'a.txt', TEXT);
    await assertIdentity(node, db, 'inline', 'p.png', PNG);

    const bulk = await request(node, 'POST', `/${db}/_bulk_docs`, {
      body: { docs: [{ _id: 'bulk', _attachments: { 'a.txt': { content_type: 'text/html', data: TEXT.toString('base64') } } }] },
    });
    assert.equal(bulk.status, 201, bulk.text);
    await assertStoredGzip(node, db, 'bulk', 'a.txt', TEXT, 'text/html');

    const multi = related(
      {
        _id: 'multi',
        _attachments: {
          'a.txt': { content_type: 'text/plain', length: TEXT.length, follows: true },
          'p.png': { content_type: 'image/png', length: PNG.length, follows: true },
        },
      },
      [
        { name: 'a.txt', type: 'text/plain', body: TEXT },
        { name: 'p.png', type: 'image/png', body: PNG },
      ],
    );
    const mput = await raw(node, 'PUT', `/${db}/multi`, { headers: { 'content-type': multi.contentType, accept: 'application/json' }, body: multi.body });
    assert.equal(mput.status, 201, mput.body.toString());
    await assertStoredGzip(node, db, 'multi', 'a.txt', TEXT);
    await assertIdentity(node, db, 'multi', 'p.png', PNG);
  });

  test('a standalone PUT of image/png is not compressed', async () => {
    const db = await createDb(node, 'attgz');
    const put = await raw(node, 'PUT', `/${db}/d/p.png`, { headers: { 'content-type': 'image/png' }, body: PNG });
    assert.equal(put.status, 201, put.body.toString());
    await assertIdentity(node, db, 'd', 'p.png', PNG);
  });

  test('multipart open_revs sends the gzip bytes with the encoding; pushed back with new_edits=false the digest stays', async () => {
    const db = await createDb(node, 'attgz');
    const put = await raw(node, 'PUT', `/${db}/doc/a.txt`, { headers: { 'content-type': 'text/plain' }, body: TEXT });
    assert.equal(put.status, 201, put.body.toString());
    const mixed = await raw(node, 'GET', `/${db}/doc?open_revs=all&revs=true&attachments=true&att_encoding_info=true`, {
      headers: { accept: 'multipart/mixed' },
    });
    assert.equal(mixed.status, 200, mixed.body.toString());
    const [entry] = readOpenRevsMultipart(mixed);
    const stub = entry!.doc._attachments['a.txt'];
    assert.equal(stub.follows, true);
    assert.equal(stub.encoding, 'gzip');
    assert.equal(stub.digest, md5(TEXT));
    assert.equal(stub.length, TEXT.length);
    assert.equal(entry!.parts.length, 1);
    const part = entry!.parts[0]!;
    assert.equal(part.headers['content-encoding'], 'gzip');
    assert.equal(part.body.length, stub.encoded_length);
    assert.deepEqual(gunzipSync(part.body), TEXT);

    // What CouchDB's replicator does with it: the same JSON and gzip part, as multipart/related.
    const target = await createDb(node, 'attgz');
    const push = related(entry!.doc, [{ name: 'a.txt', type: 'text/plain', body: part.body, encoding: 'gzip' }]);
    const pushed = await raw(node, 'PUT', `/${target}/doc?new_edits=false`, {
      headers: { 'content-type': push.contentType, accept: 'application/json' },
      body: push.body,
    });
    assert.equal(pushed.status, 201, pushed.body.toString());
    await assertStoredGzip(node, target, 'doc', 'a.txt', TEXT);
    const a = (await request(node, 'GET', `/${db}/doc?att_encoding_info=true`)).body;
    const b = (await request(node, 'GET', `/${target}/doc?att_encoding_info=true`)).body;
    assert.deepEqual(b, a, 'the same revision, the same stub');
  });

  test('PouchDB pushes a text attachment and a second PouchDB pulls it: same digest, same bytes', async () => {
    const db = await createDb(node, 'attgz');
    const remote = remoteDb(node, db);
    const first = localDb();
    const second = localDb();
    try {
      await first.put({ _id: 'p', _attachments: { 'p.txt': { content_type: 'text/plain', data: TEXT.toString('base64') } } });
      const digest = (await first.get('p'))._attachments['p.txt'].digest;
      assert.equal(digest, md5(TEXT), 'PouchDB computes the md5 of the identity bytes');
      const up = await withDeadline(PouchDB.replicate(first, remote), 30_000, 'push');
      assert.equal(up.doc_write_failures, 0);
      await assertStoredGzip(node, db, 'p', 'p.txt', TEXT);

      const down = await withDeadline(PouchDB.replicate(remote, second), 30_000, 'pull');
      assert.equal(down.doc_write_failures, 0);
      const pulled = await second.get('p');
      assert.equal(pulled._attachments['p.txt'].digest, digest);
      assert.equal(pulled._attachments['p.txt'].length, TEXT.length);
      assert.equal(pulled._rev, (await first.get('p'))._rev);
      assert.deepEqual(Buffer.from((await second.getAttachment('p', 'p.txt')) as unknown as ArrayBuffer), TEXT);

      // Pushed again from the second copy: nothing to write, nothing fails.
      const again = await withDeadline(PouchDB.replicate(second, remote), 30_000, 'push again');
      assert.equal(again.doc_write_failures, 0);
      await assertStoredGzip(node, db, 'p', 'p.txt', TEXT);
    } finally {
      await first.destroy();
      await second.destroy();
      await remote.close();
    }
  });

  test('the same bytes stored identity and gzip in one shard both read back', async () => {
    // One range, so both documents' attachments are stored under the same digest key.
    const db = await createDb(node, 'attgz', 1);
    let copies = 0;
    const putAs = async (doc: string, type: string) => {
      const put = await raw(node, 'PUT', `/${db}/${doc}/a`, { headers: { 'content-type': type }, body: TEXT });
      assert.equal(put.status, 201, put.body.toString());
    };
    const readsBack = async (doc: string) => {
      assert.deepEqual((await raw(node, 'GET', `/${db}/${doc}/a`)).body, TEXT, doc);
      const gz = await raw(node, 'GET', `/${db}/${doc}/a`, { headers: { 'accept-encoding': 'gzip' } });
      assert.deepEqual(gz.headers['content-encoding'] === 'gzip' ? gunzipSync(gz.body) : gz.body, TEXT, doc);
      const inline = (await request(node, 'GET', `/${db}/${doc}?attachments=true`)).body._attachments.a;
      assert.deepEqual(Buffer.from(inline.data, 'base64'), TEXT, doc);
      assert.equal(inline.digest, md5(TEXT));
      // Multipart reads (what CouchDB's replicator pulls): the stub says how the part is encoded.
      const mixed = await raw(node, 'GET', `/${db}/${doc}?open_revs=all&attachments=true`, { headers: { accept: 'multipart/mixed' } });
      const [entry] = readOpenRevsMultipart(mixed);
      const stub = entry!.doc._attachments.a;
      const part = entry!.parts[0]!;
      assert.equal(part.headers['content-encoding'], stub.encoding, doc);
      assert.deepEqual(stub.encoding === 'gzip' ? gunzipSync(part.body) : part.body, TEXT, doc);
      if (stub.encoding === 'gzip') assert.equal(stub.encoded_length, part.body.length);
      // COPY keeps what it reads.
      const copy = await raw(node, 'COPY', `/${db}/${doc}`, { headers: { destination: `${doc}-copy-${copies++}` } });
      assert.equal(copy.status, 201, copy.body.toString());
      assert.deepEqual((await raw(node, 'GET', `/${db}/${doc}-copy-${copies - 1}/a`)).body, TEXT, `${doc} copied`);
    };
    await putAs('gz1', 'text/plain');
    await putAs('plain', 'application/octet-stream');
    await readsBack('gz1');
    await readsBack('plain');
    await putAs('gz2', 'text/plain');
    await readsBack('gz1');
    await readsBack('plain');
    await readsBack('gz2');
  });
});

describe('compression off (attachmentCompressionLevel 0)', () => {
  let node: TestNode;
  before(async () => {
    node = await startNode({ env: { DIVAN_ATTACHMENT_COMPRESSION_LEVEL: '0' } });
  });
  after(async () => {
    await node.destroy();
  });

  test('text is stored identity, inline and standalone', async () => {
    const db = await createDb(node, 'attgz');
    const put = await raw(node, 'PUT', `/${db}/d/a.txt`, { headers: { 'content-type': 'text/plain' }, body: TEXT });
    assert.equal(put.status, 201, put.body.toString());
    await assertIdentity(node, db, 'd', 'a.txt', TEXT);
    const inline = await request(node, 'PUT', `/${db}/i`, { body: { _attachments: { 'a.txt': { content_type: 'text/plain', data: TEXT.toString('base64') } } } });
    assert.equal(inline.status, 201, inline.text);
    await assertIdentity(node, db, 'i', 'a.txt', TEXT);
    assert.equal((await request(node, 'GET', '/_node/_local/_config')).body.attachments.compression_level, '0');
  });
});

describe('compressed attachments in a two-node cluster', () => {
  const cluster = clusterPerSuite({ nodes: 2 });

  test('the identity digest survives gRPC edits and shard sync', async () => {
    const db = uniqueDb('attgz');
    assert.equal((await request(cluster().nodes[0]!, 'PUT', `/${db}?n=2`)).status, 201);
    // Through node 1: its copy by a local call, node 2's by gRPC.
    const live = await raw(cluster().nodes[0]!, 'PUT', `/${db}/live/a.txt`, { headers: { 'content-type': 'text/plain' }, body: TEXT });
    assert.equal(live.status, 201, live.body.toString());
    // Node 2 down: it gets the next document from shard sync when it is back.
    await cluster().kill9(1);
    const synced = await request(cluster().nodes[0]!, 'PUT', `/${db}/synced`, {
      body: { _attachments: { 'a.txt': { content_type: 'text/plain', data: TEXT.toString('base64') } } },
    });
    assert.ok([201, 202].includes(synced.status), synced.text);
    await cluster().restart(1);
    await cluster().waitForAllAlive();
    const second = () => cluster().nodes[1]!;
    await eventually(async () => {
      const copy = await request(second(), 'GET', `/_node/_local/_copy/${db}/synced`);
      assert.equal(copy.status, 200);
      assert.ok(copy.body.revs.some((r: any) => r.rev === synced.body.rev && r.body), JSON.stringify(copy.body));
    }, 30_000, 200);
    // Only node 2's copies are left to answer.
    await cluster().kill9(0);
    for (const doc of ['live', 'synced']) {
      const stub = await eventually(async () => {
        const res = await request(second(), 'GET', `/${db}/${doc}?r=1&att_encoding_info=true`);
        assert.equal(res.status, 200, res.text);
        return res.body._attachments['a.txt'];
      }, 30_000, 200);
      assert.equal(stub.digest, md5(TEXT), `${doc}: digest on the second node`);
      assert.equal(stub.encoding, 'gzip');
      assert.equal(stub.length, TEXT.length);
      assert.deepEqual((await raw(second(), 'GET', `/${db}/${doc}/a.txt?r=1`)).body, TEXT);
      const gz = await raw(second(), 'GET', `/${db}/${doc}/a.txt?r=1`, { headers: { 'accept-encoding': 'gzip' } });
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.deepEqual(gunzipSync(gz.body), TEXT);
    }
  });
});
