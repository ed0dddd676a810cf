/**
 * A client's data is never silently changed (issue 8, item 12): what CouchDB refuses
 * (invalid UTF-8, lone surrogates, numbers that overflow a double) is refused with 400
 * bad_request "invalid UTF-8 JSON" on every way in, and integers beyond 2^53 are stored
 * and returned exactly on every way out. Also: COPY with a Destination that is not
 * valid percent-encoding is a 400, not a 500.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, request, startNode, TestNode, createDb } from '../helpers/node-process';

let node: TestNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.destroy();
});

const newDb = (): Promise<string> => createDb(node, 'fid');

const auth = () => 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');
const json = { 'content-type': 'application/json' };

function assertInvalidJson(res: { status: number; body: any; text: string }, what: string): void {
  assert.equal(res.status, 400, `${what}: ${res.status} ${res.text}`);
  assert.deepEqual(res.body, { error: 'bad_request', reason: 'invalid UTF-8 JSON' }, what);
}

const BIG = '9007199254740993';
const BIG_NEG = '-123456789012345678901234567890';
const bigDoc = (id: string) => `{"_id":"${id}","n":${BIG},"m":[${BIG_NEG},1.5],"o":{"k":18446744073709551616},"s":"${BIG}"}`;
/** The fields of `bigDoc` as they must come back, in order. */
const BIG_FIELDS = `"n":${BIG},"m":[${BIG_NEG},1.5],"o":{"k":18446744073709551616},"s":"${BIG}"`;

describe('refused like CouchDB: 400 invalid UTF-8 JSON', () => {
  const bad: [string, Buffer][] = [
    ['1e400', Buffer.from('{"x":1e400}')],
    ['-1e400', Buffer.from('{"x":-1e400}')],
    ['raw 0xFF', Buffer.concat([Buffer.from('{"x":"a'), Buffer.from([0xff]), Buffer.from('"}')])],
    ['overlong "/"', Buffer.concat([Buffer.from('{"x":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])],
    ['encoded surrogate', Buffer.concat([Buffer.from('{"x":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])],
    ['escaped lone surrogate', Buffer.from('{"x":"\\ud800"}')],
    ['escaped lone surrogate in a key', Buffer.from('{"\\udc00":1}')],
    ['escaped lone surrogate deep', Buffer.from('{"a":[{"b":"ok \\udbff"}]}')],
  ];

  test('PUT /db/doc, POST /db, _bulk_docs, _local, multipart/related', async () => {
    const db = await newDb();
    for (const [what, body] of bad) {
      assertInvalidJson(await request(node, 'PUT', `/${db}/doc`, { raw: body, headers: json }), `PUT ${what}`);
      assertInvalidJson(await request(node, 'POST', `/${db}`, { raw: body, headers: json }), `POST ${what}`);
      const bulk = Buffer.concat([Buffer.from('{"docs":['), body, Buffer.from(']}')]);
      assertInvalidJson(await request(node, 'POST', `/${db}/_bulk_docs`, { raw: bulk, headers: json }), `_bulk_docs ${what}`);
      assertInvalidJson(await request(node, 'PUT', `/${db}/_local/l`, { raw: body, headers: json }), `_local ${what}`);
      const boundary = 'b0undary';
      const related = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n`), body, Buffer.from(`\r\n--${boundary}--`)]);
      assertInvalidJson(
        await request(node, 'PUT', `/${db}/mp`, { raw: related, headers: { 'content-type': `multipart/related; boundary="${boundary}"` } }),
        `multipart ${what}`,
      );
    }
    // Nothing was stored.
    const all = await request(node, 'GET', `/${db}/_all_docs`);
    assert.equal(all.body.total_rows, 0);
  });

  test('JSON query parameters get the same checks', async () => {
    const db = await newDb();
    const cases = [['startkey', '1e400'], ['endkey', '"\\ud800"'], ['keys', '["a","\\udfff"]'], ['keys', '[-1e400]']].map(([n, v]) => `${n}=${encodeURIComponent(v!)}`);
    // Percent-encoded bytes that are not UTF-8 (0xFF, an encoded surrogate), not U+FFFD.
    cases.push('startkey=%22%FF%22', 'keys=%5B%22%ED%A0%80%22%5D');
    for (const query of cases) {
      const res = await request(node, 'GET', `/${db}/_all_docs?${query}`);
      assert.equal(res.status, 400, `${query}: ${res.text}`);
      assert.equal(res.body.error, 'query_parse_error');
    }
    assert.equal((await request(node, 'GET', `/${db}/_all_docs?startkey=${encodeURIComponent('"\\ud83d\\ude00"')}`)).status, 200);
    // U+FFFD itself, properly encoded, is text like any other.
    assert.equal((await request(node, 'GET', `/${db}/_all_docs?startkey=%22%EF%BF%BD%22&skip=0`)).status, 200);
  });
});

describe('integers beyond 2^53 are kept exactly', () => {
  test('PUT then GET, POST, _bulk_docs, _all_docs and _changes with include_docs', async () => {
    const db = await newDb();
    const put = await request(node, 'PUT', `/${db}/a`, { raw: bigDoc('a'), headers: json });
    assert.equal(put.status, 201, put.text);
    const rev = put.body.rev;
    const got = await request(node, 'GET', `/${db}/a`);
    assert.equal(got.text.trim(), `{"_id":"a","_rev":"${rev}",${BIG_FIELDS}}`);

    const posted = await request(node, 'POST', `/${db}`, { raw: bigDoc('b'), headers: json });
    assert.equal(posted.status, 201, posted.text);
    assert.ok((await request(node, 'GET', `/${db}/b`)).text.includes(BIG_FIELDS));

    const bulk = await request(node, 'POST', `/${db}/_bulk_docs`, { raw: `{"docs":[${bigDoc('c')}]}`, headers: json });
    assert.equal(bulk.status, 201, bulk.text);
    assert.ok((await request(node, 'GET', `/${db}/c`)).text.includes(BIG_FIELDS));

    const replicated = `{"docs":[{"_id":"r","_rev":"3-abc","_revisions":{"start":3,"ids":["abc","def","123"]},"n":${BIG}}],"new_edits":false}`;
    assert.equal((await request(node, 'POST', `/${db}/_bulk_docs`, { raw: replicated, headers: json })).status, 201);
    assert.equal((await request(node, 'GET', `/${db}/r`)).text.trim(), `{"_id":"r","_rev":"3-abc","n":${BIG}}`);

    const all = await request(node, 'GET', `/${db}/_all_docs?include_docs=true`);
    assert.equal(all.text.split(BIG_FIELDS).length - 1, 3, all.text);
    const changes = await request(node, 'GET', `/${db}/_changes?include_docs=true`);
    assert.equal(changes.text.split(BIG_FIELDS).length - 1, 3, changes.text);
    // The same body gives the same rev whatever the path in: the rev hash saw the digits.
    const again = await request(node, 'PUT', `/${db}/a2`, { raw: bigDoc('a2'), headers: json });
    assert.equal(again.body.rev, rev);
  });

  test('paths that re-serialise a stored body: attachments inline, attachment PUT, COPY, _revisions', async () => {
    const db = await newDb();
    const withAtt = `{"n":${BIG},"_attachments":{"t.txt":{"content_type":"text/plain","data":"aGVsbG8="}}}`;
    const put = await request(node, 'PUT', `/${db}/d`, { raw: withAtt, headers: json });
    assert.equal(put.status, 201, put.text);
    const inline = await request(node, 'GET', `/${db}/d?attachments=true&revs=true`);
    assert.ok(inline.text.includes(`"n":${BIG}`), inline.text);
    assert.ok(inline.text.includes('"data":"aGVsbG8="'), inline.text);

    const att = await fetch(`${node.url}/${db}/d/u.txt?rev=${put.body.rev}`, {
      method: 'PUT',
      headers: { authorization: auth(), 'content-type': 'text/plain' },
      body: 'more',
    });
    assert.equal(att.status, 201);
    const afterAtt = await request(node, 'GET', `/${db}/d`);
    assert.ok(afterAtt.text.includes(`"n":${BIG}`), afterAtt.text);

    // The replicator's reads: multipart/related for one revision, open_revs as multipart/mixed.
    for (const [query, accept] of [['attachments=true', 'multipart/related'], ['open_revs=all&attachments=true', 'multipart/mixed']]) {
      const res = await fetch(`${node.url}/${db}/d?${query}`, { headers: { authorization: auth(), accept: accept! } });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type')!, /^multipart\//);
      const text = await res.text();
      assert.ok(text.includes(`"n":${BIG}`), `${query}: ${text}`);
    }
    const copy = await request(node, 'COPY', `/${db}/d`, { headers: { destination: 'copied' } });
    assert.equal(copy.status, 201, copy.text);
    const copied = await request(node, 'GET', `/${db}/copied`);
    assert.ok(copied.text.includes(`"n":${BIG}`), copied.text);
  });

  test('_local documents', async () => {
    const db = await newDb();
    assert.equal((await request(node, 'PUT', `/${db}/_local/l`, { raw: `{"n":${BIG}}`, headers: json })).status, 201);
    const got = await request(node, 'GET', `/${db}/_local/l`);
    assert.ok(got.text.includes(`"n":${BIG}`), got.text);
  });
});

describe('COPY Destination', () => {
  test('not valid percent-encoding is a 400 bad_request, and the node keeps serving', async () => {
    const db = await newDb();
    assert.equal((await request(node, 'PUT', `/${db}/src`, { body: { v: 1 } })).status, 201);
    for (const destination of ['%', 'a%zz', '%E0%A4%A', '%FF', 'x%C0%AF']) {
      const res = await request(node, 'COPY', `/${db}/src`, { headers: { destination } });
      assert.equal(res.status, 400, `${destination}: ${res.status} ${res.text}`);
      assert.equal(res.body.error, 'bad_request');
    }
    const ok = await request(node, 'COPY', `/${db}/src`, { headers: { destination: 'with%20space' } });
    assert.equal(ok.status, 201);
    assert.equal((await request(node, 'GET', `/${db}/with%20space`)).body.v, 1);
  });
});
