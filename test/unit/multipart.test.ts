/**
 * MIME multipart: header parsing, framing round trips, CouchDB's document and
 * open_revs shapes, malformed input, and fast-check properties (seed printed as a
 * diagnostic; rerun with MULTIPART_SEED=<seed>).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BadContentTypeError, BadRequestError } from '../../src/errors';
import {
  encodeMultipart,
  encodeOpenRevs,
  encodeRelatedDocument,
  parseContentType,
  parseMultipart,
  parseRelatedDocument,
} from '../../src/api/http/multipart';
import { checkContentType, parseDoc } from '../../src/api/http/doc-input';

const limits = { partsMax: 100 };

function crlf(lines: string[]): Buffer {
  return Buffer.from(lines.join('\r\n'), 'utf8');
}

function isBadRequest(err: unknown): boolean {
  return err instanceof BadRequestError && err.kind === 'bad_request';
}

function boundaryOf(contentType: string): string {
  const boundary = parseContentType(contentType).params['boundary'];
  assert.ok(boundary !== undefined);
  return boundary;
}

// ---------------------------------------------------------------------------
// parseContentType
// ---------------------------------------------------------------------------

test('parseContentType: lowercases type and names, keeps value case', () => {
  assert.deepEqual(parseContentType('Multipart/Related; Boundary=AbC123'), {
    type: 'multipart/related',
    params: { boundary: 'AbC123' },
  });
  assert.deepEqual(parseContentType('application/json'), { type: 'application/json', params: {} });
});

test('parseContentType: quoted values, escapes, spaces and several params', () => {
  const parsed = parseContentType('multipart/related ;  boundary="a b;c\\"d" ; type=application/json;charset = utf-8');
  assert.equal(parsed.type, 'multipart/related');
  assert.deepEqual(parsed.params, { boundary: 'a b;c"d', type: 'application/json', charset: 'utf-8' });
});

test('parseContentType: first repeated param wins, bare words and empty params ignored', () => {
  assert.deepEqual(parseContentType('text/plain;; flag; a=1; a=2').params, { a: '1' });
});

test('parseContentType: malformed headers are BadRequestError', () => {
  for (const header of ['', 'json', '/x', 'text/', 'te xt/plain', 'text/plain; boundary="open', 'text/plain; a="x"y']) {
    assert.throws(() => parseContentType(header), isBadRequest, header);
  }
});

// ---------------------------------------------------------------------------
// Framing round trips
// ---------------------------------------------------------------------------

test('encodeMultipart then parseMultipart gives back binary parts with CRLF and boundary-like bytes', () => {
  const boundary = 'XyZ-boundary';
  const bodies = [
    Buffer.from('{"_id":"a"}'),
    Buffer.from([0, 255, 13, 10, 13, 10, 45, 45, 13, 10, 0x2d]),
    Buffer.from('x--XyZ-boundary--\n--XyZ-boundary\r--XyZ-boundary (not after CRLF)'),
    Buffer.from('\r\n--XyZ-boundar'), // a prefix of the delimiter, cut short
    Buffer.from('\r\n-XyZ-boundary\r\n--'),
    Buffer.alloc(0),
    Buffer.from('ends with CR\r'),
  ];
  const parts = bodies.map((body, index) => ({ headers: { 'X-Index': String(index), 'Content-Type': 'application/octet-stream' }, body }));
  const encoded = encodeMultipart('mixed', parts, boundary);
  assert.equal(encoded.contentType, 'multipart/mixed; boundary="XyZ-boundary"');
  const parsed = parseMultipart(encoded.body, boundary, limits);
  assert.equal(parsed.length, bodies.length);
  parsed.forEach((part, index) => {
    assert.deepEqual(part.headers, { 'x-index': String(index), 'content-type': 'application/octet-stream' });
    assert.ok(part.body.equals(bodies[index] as Buffer), `part ${index}`);
  });
});

test('encodeMultipart: default boundary is random hex, quoted, and different each time', () => {
  const a = encodeMultipart('related', [{ headers: {}, body: 'x' }]);
  const b = encodeMultipart('related', [{ headers: {}, body: 'x' }]);
  assert.match(a.contentType, /^multipart\/related; boundary="[0-9a-f]{32}"$/);
  assert.notEqual(a.contentType, b.contentType);
  const parsed = parseMultipart(a.body, boundaryOf(a.contentType), limits);
  assert.deepEqual(parsed.map((p) => [p.headers, p.body.toString()]), [[{}, 'x']]);
});

test('encodeMultipart writes CouchDB framing: no preamble, no trailing CRLF', () => {
  const encoded = encodeMultipart('related', [{ headers: { 'Content-Type': 'application/json' }, body: '{}' }, { headers: {}, body: 'a' }], 'b');
  assert.equal(encoded.body.toString(), '--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n\r\na\r\n--b--');
});

test('encodeMultipart: a given boundary found inside a part is a programmer error', () => {
  assert.throws(
    () => encodeMultipart('mixed', [{ headers: {}, body: 'x\r\n--abc\r\n' }], 'abc'),
    (err: unknown) => err instanceof assert.AssertionError,
  );
  // A headerless part starting with the dash-boundary would join the blank line.
  assert.throws(
    () => encodeMultipart('mixed', [{ headers: {}, body: '--abc' }], 'abc'),
    (err: unknown) => err instanceof assert.AssertionError,
  );
  assert.throws(
    () => encodeMultipart('mixed', [{ headers: { 'X-Evil': 'a\r\nInjected: 1' }, body: '' }], 'abc'),
    (err: unknown) => err instanceof assert.AssertionError,
  );
});

// ---------------------------------------------------------------------------
// parseMultipart tolerance
// ---------------------------------------------------------------------------

test('parseMultipart tolerates preamble, transport padding and epilogue', () => {
  const body = crlf([
    'This is a preamble, ignored.',
    '--sep  \t',
    'Content-Type: text/plain',
    '',
    'one',
    '--sep',
    'content-type: text/plain',
    'X-Folded: first',
    '  second',
    '',
    'two',
    '--sep-- ',
    'epilogue, ignored',
    '--sep',
  ]);
  const parts = parseMultipart(body, 'sep', limits);
  assert.deepEqual(
    parts.map((p) => [p.headers, p.body.toString()]),
    [
      [{ 'content-type': 'text/plain' }, 'one'],
      [{ 'content-type': 'text/plain', 'x-folded': 'first second' }, 'two'],
    ],
  );
});

test('parseMultipart: parts without headers, empty parts, headers without body', () => {
  // RFC 2046 body-part := MIME-part-headers [CRLF *OCTET]
  const body = Buffer.from('--b\r\n\r\nno headers\r\n--b\r\n\r\n--b\r\nX-A: 1\r\n\r\n--b\r\n\r\n\r\n--b--');
  const parts = parseMultipart(body, 'b', limits);
  assert.deepEqual(
    parts.map((p) => [p.headers, p.body.toString()]),
    [
      [{}, 'no headers'],
      [{}, ''],
      [{ 'x-a': '1' }, ''],
      [{}, ''],
    ],
  );
});

test('parseMultipart: a leading CRLF before the first boundary is an empty preamble', () => {
  const parts = parseMultipart(Buffer.from('\r\n--b\r\n\r\nx\r\n--b--'), 'b', limits);
  assert.deepEqual(parts.map((p) => p.body.toString()), ['x']);
});

test('parseMultipart: repeated headers are joined, odd header names are safe', () => {
  const body = crlf(['--b', 'Accept: a', 'accept: b', 'constructor: c', '__proto__: d', '', 'x', '--b--']);
  const [part] = parseMultipart(body, 'b', limits);
  assert.deepEqual(part?.headers, { accept: 'a, b', constructor: 'c' });
});

// ---------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------

test('parseMultipart: malformed bodies are BadRequestError', () => {
  const cases: Array<[string, string]> = [
    ['no closing boundary', '--b\r\n\r\nbody without end'],
    ['closing boundary missing after last part', '--b\r\n\r\none\r\n--b\r\n\r\ntwo'],
    ['truncated right after a boundary', '--b\r\n\r\none\r\n--b'],
    ['no boundary at all', 'just some garbage \x00\xff'],
    ['empty body', ''],
    ['no parts', '--b--'],
    ['junk after boundary', '--b\r\n\r\none\r\n--bX\r\n\r\ntwo\r\n--b--'],
    ['boundary line without CRLF', '--b junk\r\n\r\nx\r\n--b--'],
    ['header line without colon', '--b\r\nnot a header\r\n\r\nx\r\n--b--'],
    ['continuation line first', '--b\r\n folded\r\n\r\nx\r\n--b--'],
    ['headers not terminated', '--b\r\nX-A: 1\r\n--b--'],
    ['bare LF line endings', '--b\n\nx\n--b--'],
  ];
  for (const [name, text] of cases) {
    assert.throws(() => parseMultipart(Buffer.from(text, 'latin1'), 'b', limits), isBadRequest, name);
  }
});

test('parseMultipart: unterminated header block is BadRequestError', () => {
  assert.throws(() => parseMultipart(Buffer.from('--b\r\nX-A: 1\r\n--b--'), 'b', limits), isBadRequest);
  // Header fields without the blank line but with the delimiter's CRLF: empty body.
  const [part] = parseMultipart(Buffer.from('--b\r\nX-A: 1\r\n\r\n--b--'), 'b', limits);
  assert.deepEqual(part?.headers, { 'x-a': '1' });
  assert.equal(part?.body.length, 0);
});

test('parseMultipart: invalid boundaries are BadRequestError', () => {
  for (const boundary of ['', 'x'.repeat(71), 'ends with space ', 'has\r\nnewline', 'tab\there']) {
    assert.throws(() => parseMultipart(Buffer.from('--b\r\n\r\nx\r\n--b--'), boundary, limits), isBadRequest, JSON.stringify(boundary));
  }
  assert.equal(parseMultipart(Buffer.from(`--${'x'.repeat(70)}\r\n\r\nx\r\n--${'x'.repeat(70)}--`), 'x'.repeat(70), limits).length, 1);
});

test('parseMultipart: partsMax bounds the number of parts', () => {
  const parts = Array.from({ length: 5 }, (_, i) => ({ headers: {}, body: `p${i}` }));
  const encoded = encodeMultipart('mixed', parts, 'b');
  assert.equal(parseMultipart(encoded.body, 'b', { partsMax: 5 }).length, 5);
  assert.throws(() => parseMultipart(encoded.body, 'b', { partsMax: 4 }), (err: unknown) => isBadRequest(err) && /more than 4 parts/.test((err as Error).message));
});

test('parseMultipart: many tiny parts are bounded and linear', () => {
  const body = Buffer.from('--b\r\n\r\n' + '\r\n--b\r\n\r\n'.repeat(50_000) + '\r\n--b--');
  assert.throws(() => parseMultipart(body, 'b', { partsMax: 1000 }), isBadRequest);
  assert.equal(parseMultipart(body, 'b', { partsMax: 50_001 }).length, 50_001);
});

// ---------------------------------------------------------------------------
// multipart/related documents
// ---------------------------------------------------------------------------

/** What the CouchDB replicator sends for `PUT /db/doc?new_edits=false` (couch_httpd_multipart framing). */
const replicatorBoundary = '4e6e3a7b0d1f8e9c2a5b6c7d8e9f0a1b';
const replicatorDoc = {
  _id: 'doc1',
  _rev: '2-7051cbe5c8faecd085a3fa619e6e6337',
  _revisions: { start: 2, ids: ['7051cbe5c8faecd085a3fa619e6e6337', '967a00dff5e02add41819138abb3284d'] },
  value: 42,
  _attachments: {
    'foo.txt': { content_type: 'text/plain', revpos: 2, digest: 'md5-AAAAAAAAAAAAAAAAAAAAAA==', length: 5, follows: true },
    'old.bin': { content_type: 'application/octet-stream', revpos: 1, digest: 'md5-BBBBBBBBBBBBBBBBBBBBBB==', length: 9, stub: true },
    'img.gz': {
      content_type: 'image/png',
      revpos: 2,
      digest: 'md5-CCCCCCCCCCCCCCCCCCCCCC==',
      length: 100,
      follows: true,
      encoding: 'gzip',
      encoded_length: 4,
    },
  },
};

function replicatorRequest(): Buffer {
  return Buffer.concat([
    Buffer.from(`--${replicatorBoundary}\r\nContent-Type: application/json\r\n\r\n`),
    Buffer.from(JSON.stringify(replicatorDoc)),
    Buffer.from(`\r\n--${replicatorBoundary}`),
    Buffer.from('\r\nContent-Disposition: attachment; filename="foo.txt"\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n'),
    Buffer.from('hello'),
    Buffer.from(`\r\n--${replicatorBoundary}`),
    Buffer.from('\r\nContent-Disposition: attachment; filename="img.gz"\r\nContent-Type: image/png\r\nContent-Length: 4\r\nContent-Encoding: gzip\r\n\r\n'),
    Buffer.from([0x1f, 0x8b, 0x0d, 0x0a]),
    Buffer.from(`\r\n--${replicatorBoundary}--`),
  ]);
}

test('parseRelatedDocument reads a CouchDB replicator request', () => {
  const { doc, attachments } = parseRelatedDocument(
    replicatorRequest(),
    `multipart/related; boundary="${replicatorBoundary}"`,
    limits,
  );
  assert.deepEqual(doc, replicatorDoc);
  assert.deepEqual([...attachments.keys()], ['foo.txt', 'img.gz']);
  assert.equal(attachments.get('foo.txt')?.toString(), 'hello');
  assert.deepEqual([...(attachments.get('img.gz') ?? [])], [0x1f, 0x8b, 0x0d, 0x0a]);
});

const inputLimits = { docBytesMax: 1 << 20, docIdBytesMax: 512, attachmentBytesMax: 1 << 20 };

test('a replicator request becomes an edit that keeps the gzip part encoded, with its identity length', () => {
  const { doc, attachments } = parseRelatedDocument(replicatorRequest(), `multipart/related; boundary="${replicatorBoundary}"`, limits);
  const { edit } = parseDoc(doc, { id: 'doc1', newEdits: false, limits: inputLimits, followed: attachments });
  const byName = new Map((edit.attachments ?? []).map((att) => [att.name, att]));
  const gz = byName.get('img.gz');
  assert.equal(gz?.kind, 'data');
  assert.equal(gz?.kind === 'data' && gz.encoding, 'gzip');
  assert.equal(gz?.kind === 'data' && gz.length, 100);
  assert.deepEqual(gz?.kind === 'data' && [...gz.data], [0x1f, 0x8b, 0x0d, 0x0a]);
  const plain = byName.get('foo.txt');
  assert.equal(plain?.kind === 'data' && plain.encoding, undefined);
  const stub = byName.get('old.bin');
  assert.equal(stub?.kind, 'stub');
});

test('encoded parts: unknown encodings, non-gzip bytes and a missing identity length are refused', () => {
  const part = (spec: Record<string, unknown>, bytes: Buffer) =>
    parseDoc({ _attachments: { a: { follows: true, ...spec } } }, { id: 'd', newEdits: true, limits: inputLimits, followed: new Map([['a', bytes]]) });
  const gz = Buffer.from([0x1f, 0x8b, 1, 2]);
  assert.throws(() => part({ encoding: 'br', length: 3 }, gz), isBadRequest);
  assert.throws(() => part({ encoding: 'gzip', length: 3 }, Buffer.from('abcd')), isBadRequest);
  assert.throws(() => part({ encoding: 'gzip' }, gz), isBadRequest);
  const ok = part({ encoding: 'identity' }, Buffer.from('abcd')).edit.attachments![0]!;
  assert.equal(ok.kind === 'data' && ok.encoding, undefined);
  // Inline data is always identity, whatever `encoding` it claims (as CouchDB reads it).
  const inline = parseDoc({ _attachments: { a: { data: 'YWJj', encoding: 'gzip' } } }, { id: 'd', newEdits: true, limits: inputLimits }).edit.attachments![0]!;
  assert.equal(inline.kind === 'data' && inline.encoding, undefined);
});

test('content types that are not valid header values are refused in every attachment form', () => {
  for (const type of ['a/b\r\nX: y', 'a/b\n', 'a/\u0100', 'a/\u0000', 'a/\u007f']) {
    for (const spec of [{ data: 'YQ==' }, { follows: true, length: 1 }, { stub: true, digest: 'md5-x' }]) {
      assert.throws(
        () => parseDoc({ _attachments: { a: { content_type: type, ...spec } } }, { id: 'd', newEdits: true, limits: inputLimits, followed: new Map([['a', Buffer.from('a')]]) }),
        isBadRequest,
        JSON.stringify([type, spec]),
      );
    }
  }
  assert.equal(checkContentType('text/plain; charset=\u00e9'), 'text/plain; charset=\u00e9');
});

test('parseRelatedDocument: filenames win over order; unnamed parts follow JSON text order', () => {
  const json = '{"_id":"d","_attachments":{"b":{"follows":true},"10":{"follows":true},"a":{"follows":true},"2":{"follows":true},"s":{"stub":true}}}';
  // JavaScript would order these keys 2, 10, b, a; the text says b, 10, a, 2.
  const body = crlf([
    '--B',
    'Content-Type: application/json; charset=utf-8',
    '',
    json,
    '--B',
    'Content-Disposition: attachment; filename="a"',
    '',
    'A-bytes',
    '--B',
    '',
    'first unnamed',
    '--B',
    'Content-Disposition: attachment; filename="not-a-follows-stub"',
    '',
    'second unnamed',
    '--B',
    'Content-Disposition: attachment; filename*=UTF-8\'\'%32',
    '',
    'two',
    '--B--',
  ]);
  const { attachments } = parseRelatedDocument(body, 'multipart/related; boundary=B', limits);
  assert.deepEqual(Object.fromEntries([...attachments].map(([k, v]) => [k, v.toString()])), {
    b: 'first unnamed',
    '10': 'second unnamed',
    a: 'A-bytes',
    '2': 'two',
  });
  assert.deepEqual([...attachments.keys()], ['b', '10', 'a', '2']);
});

test('parseRelatedDocument: an unreadable Content-Disposition falls back to order', () => {
  // CouchDB writes names unescaped: a name with a quote yields an invalid header.
  const json = '{"_attachments":{"say \\"hi\\"":{"follows":true}}}';
  const body = crlf(['--B', 'Content-Type: application/json', '', json, '--B', 'Content-Disposition: attachment; filename="say "hi""', '', 'x', '--B--']);
  const { attachments } = parseRelatedDocument(body, 'multipart/related; boundary="B"', limits);
  assert.equal(attachments.get('say "hi"')?.toString(), 'x');
});

test('parseRelatedDocument: a document without attachments is one part', () => {
  const body = crlf(['--B', 'Content-Type: application/json', '', '{"_id":"x"}', '--B--']);
  const parsed = parseRelatedDocument(body, 'multipart/related; boundary=B', limits);
  assert.deepEqual(parsed.doc, { _id: 'x' });
  assert.equal(parsed.attachments.size, 0);
});

test('parseRelatedDocument: errors', () => {
  const ct = 'multipart/related; boundary=B';
  const doc = (json: string, ...atts: string[]): Buffer =>
    crlf(['--B', 'Content-Type: application/json', '', json, ...atts.flatMap((a) => ['--B', '', a]), '--B--']);
  const follows1 = '{"_attachments":{"a":{"follows":true,"length":3}}}';

  const badJson = (err: unknown): boolean => isBadRequest(err) && (err as BadRequestError).token === 'bad_request';
  assert.throws(() => parseRelatedDocument(doc('{"_id":'), ct, limits), badJson, 'invalid JSON');
  assert.throws(() => parseRelatedDocument(doc('[1,2]'), ct, limits), badJson, 'not an object');
  const badUtf8 = Buffer.concat([Buffer.from('--B\r\n\r\n{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\r\n--B--')]);
  assert.throws(() => parseRelatedDocument(badUtf8, ct, limits), badJson, 'bad UTF-8');
  assert.throws(() => parseRelatedDocument(doc(follows1), ct, limits), isBadRequest, 'too few parts');
  assert.throws(() => parseRelatedDocument(doc(follows1, 'abc', 'def'), ct, limits), isBadRequest, 'too many parts');
  assert.throws(() => parseRelatedDocument(doc('{"_id":"x"}', 'stray'), ct, limits), isBadRequest, 'part without stub');
  assert.throws(
    () => parseRelatedDocument(doc(follows1, 'abcd'), ct, limits),
    (err: unknown) => isBadRequest(err) && (err as BadRequestError).reason === 'attachment longer than expected',
  );
  assert.throws(
    () => parseRelatedDocument(doc(follows1, 'ab'), ct, limits),
    (err: unknown) => isBadRequest(err) && (err as BadRequestError).reason === 'attachment shorter than expected',
  );
  assert.throws(() => parseRelatedDocument(doc(follows1, 'abc'), 'multipart/related', limits), isBadRequest, 'no boundary');
  assert.throws(() => parseRelatedDocument(doc(follows1, 'abc'), 'multipart/related; boundary=C', limits), isBadRequest, 'wrong boundary');
  assert.throws(() => parseRelatedDocument(doc(follows1, 'abc'), 'multipart/mixed; boundary=B', limits), BadContentTypeError);
  const textFirst = crlf(['--B', 'Content-Type: text/plain', '', '{}', '--B--']);
  assert.throws(() => parseRelatedDocument(textFirst, ct, limits), BadContentTypeError);
  const twoNamed = crlf([
    '--B', '', '{"_attachments":{"a":{"follows":true},"b":{"follows":true}}}',
    '--B', 'Content-Disposition: attachment; filename="a"', '', '1',
    '--B', 'Content-Disposition: attachment; filename="a"', '', '2',
    '--B--',
  ]);
  assert.throws(() => parseRelatedDocument(twoNamed, ct, limits), isBadRequest, 'two parts for one name');
  assert.equal(parseRelatedDocument(doc(follows1, 'abc'), ct, limits).attachments.get('a')?.toString(), 'abc');
});

test('encodeRelatedDocument then parseRelatedDocument round trips, awkward names included', () => {
  const names = ['plain.txt', 'say "hi".txt', 'back\\slash', 'new\r\nline', 'ünïcødé ✓', '7', 'a;b=c'];
  const docJson = {
    _id: 'doc',
    _rev: '1-abc',
    _attachments: Object.fromEntries(names.map((name, i) => [name, { content_type: 'application/octet-stream', length: i * 3, follows: true }])),
  };
  const attachments = names
    .map((name, i) => ({ name, contentType: 'application/octet-stream', data: Buffer.alloc(i * 3, i + 0x0d) }))
    .reverse(); // any order in; the JSON order out
  const encoded = encodeRelatedDocument(docJson, attachments);
  assert.match(encoded.contentType, /^multipart\/related; boundary="[0-9a-f]{32}"$/);

  const parts = parseMultipart(encoded.body, boundaryOf(encoded.contentType), limits);
  assert.equal(parts[0]?.headers['content-type'], 'application/json');
  assert.equal(parts[1]?.headers['content-disposition'], 'attachment; filename="7"', 'integer-like key first, as JSON.stringify writes it');
  assert.equal(parts[1]?.headers['content-length'], String(names.indexOf('7') * 3));

  const parsed = parseRelatedDocument(encoded.body, encoded.contentType, limits);
  assert.deepEqual(parsed.doc, docJson);
  for (const att of attachments) assert.ok(parsed.attachments.get(att.name)?.equals(att.data), att.name);
});

test('encodeRelatedDocument: headers as CouchDB writes them, Content-Encoding for stored gzip', () => {
  const docJson = { _id: 'd', _attachments: { 'z.gz': { content_type: 'text/plain', length: 10, encoding: 'gzip', encoded_length: 3, follows: true } } };
  const encoded = encodeRelatedDocument(docJson, [{ name: 'z.gz', contentType: 'text/plain', data: Buffer.from('abc'), encoding: 'gzip' }]);
  const [, att] = parseMultipart(encoded.body, boundaryOf(encoded.contentType), limits);
  assert.deepEqual(att?.headers, {
    'content-disposition': 'attachment; filename="z.gz"',
    'content-type': 'text/plain',
    'content-length': '3',
    'content-encoding': 'gzip',
  });
});

test('encodeRelatedDocument: a content type unfit for a header becomes octet-stream', () => {
  const docJson = { _attachments: { a: { follows: true } } };
  const encoded = encodeRelatedDocument(docJson, [{ name: 'a', contentType: 'text/plain\r\nX-Injected: 1', data: Buffer.from('x') }]);
  const [, att] = parseMultipart(encoded.body, boundaryOf(encoded.contentType), limits);
  assert.equal(att?.headers['content-type'], 'application/octet-stream');
  assert.equal(att?.headers['x-injected'], undefined);
});

test('encodeRelatedDocument: no attachments is plain JSON; mismatches are programmer errors', () => {
  const plain = encodeRelatedDocument({ _id: 'x', _attachments: { s: { stub: true } } }, []);
  assert.equal(plain.contentType, 'application/json');
  assert.deepEqual(JSON.parse(plain.body.toString()), { _id: 'x', _attachments: { s: { stub: true } } });

  const isAssertion = (err: unknown): boolean => err instanceof assert.AssertionError;
  assert.throws(() => encodeRelatedDocument({ _attachments: { a: { follows: true } } }, []), isAssertion);
  assert.throws(() => encodeRelatedDocument({}, [{ name: 'a', contentType: 'x/y', data: Buffer.alloc(0) }]), isAssertion);
  assert.throws(
    () => encodeRelatedDocument({ _attachments: { a: { follows: true, length: 2 } } }, [{ name: 'a', contentType: 'x/y', data: Buffer.alloc(3) }]),
    isAssertion,
  );
});

// ---------------------------------------------------------------------------
// open_revs multipart/mixed
// ---------------------------------------------------------------------------

test('encodeOpenRevs: JSON, nested multipart/related and missing parts', () => {
  const withAtt = { _id: 'd', _rev: '2-b', _attachments: { 'a.txt': { content_type: 'text/plain', length: 2, follows: true } } };
  const encoded = encodeOpenRevs([
    { kind: 'ok', doc: { _id: 'd', _rev: '1-a' }, attachments: [] },
    { kind: 'ok', doc: withAtt, attachments: [{ name: 'a.txt', contentType: 'text/plain', data: Buffer.from('hi') }] },
    { kind: 'missing', rev: '3-c' },
  ]);
  assert.match(encoded.contentType, /^multipart\/mixed; boundary="[0-9a-f]{32}"$/);
  const outer = parseMultipart(encoded.body, boundaryOf(encoded.contentType), limits);
  assert.equal(outer.length, 3);

  assert.equal(outer[0]?.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(outer[0]?.body.toString() ?? ''), { _id: 'd', _rev: '1-a' });

  const innerType = outer[1]?.headers['content-type'] ?? '';
  assert.equal(parseContentType(innerType).type, 'multipart/related');
  assert.notEqual(boundaryOf(innerType), boundaryOf(encoded.contentType));
  const inner = parseRelatedDocument(outer[1]?.body ?? Buffer.alloc(0), innerType, limits);
  assert.deepEqual(inner.doc, withAtt);
  assert.equal(inner.attachments.get('a.txt')?.toString(), 'hi');

  assert.deepEqual(parseContentType(outer[2]?.headers['content-type'] ?? ''), { type: 'application/json', params: { error: 'true' } });
  assert.deepEqual(JSON.parse(outer[2]?.body.toString() ?? ''), { missing: '3-c' });
});

test('parses a CouchDB open_revs answer with an unquoted nested boundary', () => {
  const body = crlf([
    '--outer',
    'Content-Type: multipart/related; boundary=inner',
    '',
    '--inner',
    'Content-Type: application/json',
    '',
    '{"_id":"d","_rev":"1-a","_attachments":{"f":{"content_type":"text/plain","revpos":1,"length":3,"follows":true}}}',
    '--inner',
    'Content-Disposition: attachment; filename="f"',
    'Content-Type: text/plain',
    'Content-Length: 3',
    '',
    'abc',
    '--inner--',
    '--outer',
    'Content-Type: application/json; error="true"',
    '',
    '{"missing":"2-b"}',
    '--outer--',
  ]);
  const [first, second] = parseMultipart(body, 'outer', limits);
  assert.ok(first !== undefined && second !== undefined);
  const inner = parseRelatedDocument(first.body, first.headers['content-type'] ?? '', limits);
  assert.equal(inner.attachments.get('f')?.toString(), 'abc');
  assert.deepEqual(JSON.parse(second.body.toString()), { missing: '2-b' });
});

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const seed = Number(process.env['MULTIPART_SEED'] ?? Date.now() % 2_147_483_647);

/** Bytes biased towards what breaks framing: CR, LF, dashes and boundary fragments. */
function trickyBytes(boundary: string): fc.Arbitrary<Uint8Array> {
  const fragments = ['\r\n', '\r', '\n', '-', '--', `--${boundary}`, `\r\n--${boundary.slice(0, -1)}`, `${boundary}--`, '\r\n\r\n'];
  const chunk = fc.oneof(
    fc.uint8Array({ maxLength: 24 }),
    fc.constantFrom(...fragments).map((s) => new Uint8Array(Buffer.from(s, 'latin1'))),
  );
  return fc.array(chunk, { maxLength: 8 }).map((chunks) => new Uint8Array(Buffer.concat(chunks)));
}

const headerName = fc.stringMatching(/^[a-z][a-z0-9-]{0,11}$/);
const headerValue = fc.stringMatching(/^[!-~]([ -~]{0,20}[!-~])?$/);

test('property: encodeMultipart then parseMultipart is the identity on random parts', (t) => {
  t.diagnostic(`seed ${seed}`);
  const part = fc.record({
    headers: fc.dictionary(headerName, headerValue, { maxKeys: 4 }),
    body: trickyBytes('0123456789abcdef'),
  });
  fc.assert(
    fc.property(fc.array(part, { minLength: 1, maxLength: 6 }), fc.constantFrom('mixed', 'related') as fc.Arbitrary<'mixed' | 'related'>, (parts, subtype) => {
      const input = parts.map((p) => ({ headers: p.headers, body: Buffer.from(p.body) }));
      const encoded = encodeMultipart(subtype, input);
      const parsed = parseMultipart(encoded.body, boundaryOf(encoded.contentType), { partsMax: input.length });
      assert.equal(parsed.length, input.length);
      parsed.forEach((got, i) => {
        assert.deepEqual(got.headers, input[i]?.headers);
        assert.ok(got.body.equals(input[i]?.body as Buffer));
      });
    }),
    { seed, numRuns: 300 },
  );
});

test('property: a fixed boundary round trips, or the encoder refuses it', (t) => {
  t.diagnostic(`seed ${seed}`);
  const boundary = 'fixed';
  fc.assert(
    fc.property(fc.array(trickyBytes(boundary), { minLength: 1, maxLength: 5 }), (bodies) => {
      const input = bodies.map((b) => ({ headers: {}, body: Buffer.from(b) }));
      let encoded;
      try {
        encoded = encodeMultipart('mixed', input, boundary);
      } catch (err) {
        assert.ok(err instanceof assert.AssertionError);
        return;
      }
      const parsed = parseMultipart(encoded.body, boundary, limits);
      assert.deepEqual(parsed.map((p) => p.body.toString('hex')), input.map((p) => p.body.toString('hex')));
    }),
    { seed, numRuns: 300 },
  );
});

test('property: parseMultipart on arbitrary bytes returns or throws BadRequestError, never hangs', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(trickyBytes('b'), fc.integer({ min: 1, max: 4 }), (bytes, partsMax) => {
      try {
        const parts = parseMultipart(Buffer.from(bytes), 'b', { partsMax });
        assert.ok(parts.length >= 1 && parts.length <= partsMax);
      } catch (err) {
        assert.ok(isBadRequest(err), String(err));
      }
    }),
    { seed, numRuns: 1000 },
  );
});

test('property: related documents round trip with random names and bytes', (t) => {
  t.diagnostic(`seed ${seed}`);
  const attachment = fc.record({ name: fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }), data: trickyBytes('x') });
  fc.assert(
    fc.property(fc.uniqueArray(attachment, { selector: (a) => a.name, maxLength: 5 }), (atts) => {
      const docJson = {
        _id: 'doc',
        _attachments: Object.fromEntries(atts.map((a) => [a.name, { content_type: 'application/octet-stream', length: a.data.length, follows: true }])),
      };
      const input = atts.map((a) => ({ name: a.name, contentType: 'application/octet-stream', data: Buffer.from(a.data) }));
      const encoded = encodeRelatedDocument(docJson, input);
      if (input.length === 0) {
        assert.equal(encoded.contentType, 'application/json');
        return;
      }
      const parsed = parseRelatedDocument(encoded.body, encoded.contentType, limits);
      assert.deepEqual(parsed.doc, docJson);
      assert.equal(parsed.attachments.size, input.length);
      for (const att of input) assert.ok(parsed.attachments.get(att.name)?.equals(att.data), JSON.stringify(att.name));
    }),
    { seed, numRuns: 200 },
  );
});
