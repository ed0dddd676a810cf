/**
 * A gzip-encoded attachment (as CouchDB's replicator pushes it) in a three-node
 * cluster: written through one node (edits reach the other copies over gRPC), synced to
 * a copy that was down during the write (shard sync), and read back from that copy
 * alone, still encoded: identity bytes to a plain client, the stored gzip bytes with
 * `Content-Encoding: gzip` to one that accepts it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { clusterPerSuite, eventually } from '../helpers/cluster';
import { ADMIN, request, TestNode, uniqueDb } from '../helpers/node-process';

const PLAIN = Buffer.from('hello, encoded world; hello, encoded world');
const GZ = gzipSync(PLAIN);
const AUTH = 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');

function md5(data: Buffer): string {
  return 'md5-' + createHash('md5').update(data).digest('base64');
}

async function push(node: TestNode, db: string, id: string, rev: string): Promise<number> {
  const boundary = '7d1c0f3e9b2a4c5d8e6f1a2b3c4d5e6f';
  const [pos, hash] = rev.split('-') as [string, string];
  const doc = {
    _id: id,
    _rev: rev,
    _revisions: { start: Number(pos), ids: [hash] },
    _attachments: {
      'a.txt': { content_type: 'text/plain', revpos: 1, digest: md5(GZ), length: PLAIN.length, follows: true, encoding: 'gzip', encoded_length: GZ.length },
    },
  };
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(doc)}\r\n--${boundary}\r\n`),
    Buffer.from(`Content-Disposition: attachment; filename="a.txt"\r\nContent-Type: text/plain\r\nContent-Length: ${GZ.length}\r\nContent-Encoding: gzip\r\n\r\n`),
    GZ,
    Buffer.from(`\r\n--${boundary}--`),
  ]);
  const res = await fetch(`${node.url}/${db}/${id}?new_edits=false`, {
    method: 'PUT',
    headers: { authorization: AUTH, 'content-type': `multipart/related; boundary="${boundary}"`, accept: 'application/json' },
    body,
  });
  await res.text();
  return res.status;
}

describe('gzip attachments in a three-node cluster', () => {
  const cluster = clusterPerSuite({ nodes: 3 });

  test('the encoding survives gRPC edits and shard sync', async () => {
    const db = uniqueDb('gz');
    assert.equal((await request(cluster().nodes[0]!, 'PUT', `/${db}?n=3`)).status, 201);
    await cluster().kill9(2);
    const rev = '1-5a5b5c5d5e5f60616263646566676869';
    assert.ok([201, 202].includes(await push(cluster().nodes[0]!, db, 'doc', rev)));
    await cluster().restart(2);
    await cluster().waitForAllAlive();
    const third = () => cluster().nodes[2]!;
    await eventually(async () => {
      const copy = await request(third(), 'GET', `/_node/_local/_copy/${db}/doc`);
      assert.equal(copy.status, 200);
      assert.ok(copy.body.revs.some((r: any) => r.rev === rev && r.body), JSON.stringify(copy.body));
    }, 30_000, 200);
    // Only the synced copy is left to answer.
    await cluster().kill9(0);
    await cluster().kill9(1);
    const stub = await eventually(async () => {
      const res = await request(third(), 'GET', `/${db}/doc?r=1&att_encoding_info=true`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body._attachments['a.txt'];
    }, 30_000, 200);
    assert.equal(stub.encoding, 'gzip');
    assert.equal(stub.encoded_length, GZ.length);
    assert.equal(stub.length, PLAIN.length);
    assert.equal(stub.digest, md5(GZ));

    const plain = await fetch(`${third().url}/${db}/doc/a.txt?r=1`, { headers: { authorization: AUTH, 'accept-encoding': 'identity' } });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get('content-encoding'), null);
    assert.deepEqual(Buffer.from(await plain.arrayBuffer()), PLAIN);
    // fetch would decode gzip itself: read the raw answer with node:http instead.
    const raw = await rawGet(`${third().url}/${db}/doc/a.txt?r=1`, { authorization: AUTH, 'accept-encoding': 'gzip' });
    assert.equal(raw.headers['content-encoding'], 'gzip');
    assert.equal(raw.headers['content-length'], String(GZ.length));
    assert.deepEqual(raw.body, GZ);
  });
});

async function rawGet(url: string, headers: Record<string, string>): Promise<{ headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('GET timed out')));
    req.on('error', reject);
  });
}
