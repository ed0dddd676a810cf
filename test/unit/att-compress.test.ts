/**
 * The compressible-types matcher (CouchDB's `compressible_types` rules as a table),
 * the per-attachment decision, gzip on the thread pool with its size bound, the
 * `compressAttachments` step of doc-input (digests of identity bytes, checked claims
 * for gzip parts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  attachmentCompression,
  compressAttachment,
  decompressAttachment,
  parseCompressibleTypes,
  shouldCompress,
} from '../../src/api/http/att-compress';
import { compressAttachments, parseDoc } from '../../src/api/http/doc-input';
import { defaults, loadConfig } from '../../src/node/config';
import type { AttachmentInput } from '../../src/shard/types';

const COMPRESSIBLE_TYPES_DEFAULT = defaults.attachmentCompressibleTypes;
const md5 = (data: Buffer) => 'md5-' + createHash('md5').update(data).digest('base64');

test('the default list (CouchDB’s) matches as CouchDB does', () => {
  assert.equal(COMPRESSIBLE_TYPES_DEFAULT, 'text/*, application/javascript, application/json, application/xml');
  assert.equal(defaults.attachmentCompressionLevel, 8);
  const types = parseCompressibleTypes(COMPRESSIBLE_TYPES_DEFAULT);
  const cases: [string, boolean][] = [
    ['text/plain', true],
    ['text/html; charset=utf-8', true],
    ['TEXT/CSS', true],
    ['  text/plain  ', true],
    ['text/plain;charset=utf-8;format=flowed', true],
    ['application/json', true],
    ['Application/JSON ; charset=utf-8', true],
    ['application/javascript', true],
    ['application/xml', true],
    ['application/jsonx', false],
    ['application/json-patch+json', false],
    ['xapplication/json', false],
    ['image/png', false],
    ['application/octet-stream', false],
    ['texts/plain', false],
    ['text', false],
    ['', false],
    [';charset=utf-8', false],
  ];
  for (const [type, expected] of cases) assert.equal(types.matches(type), expected, type);
});

test('patterns: wildcards anywhere, case and blanks ignored, empty entries skipped, no regexp injection', () => {
  const types = parseCompressibleTypes(' Image/SVG+XML ,, */*+json , application/vnd.*, a.b/c ');
  assert.deepEqual(types.patterns, ['image/svg+xml', '*/*+json', 'application/vnd.*', 'a.b/c']);
  assert.equal(types.matches('image/svg+xml'), true);
  assert.equal(types.matches('application/ld+json'), true);
  assert.equal(types.matches('application/json'), false);
  assert.equal(types.matches('application/vnd.api+json'), true);
  assert.equal(types.matches('application/vnd'), false);
  assert.equal(types.matches('a.b/c'), true);
  assert.equal(types.matches('aXb/c'), false, 'a dot is a dot, not any character');
  assert.equal(parseCompressibleTypes('').matches('text/plain'), false);
  assert.equal(parseCompressibleTypes('*').matches('image/png'), true);
});

test('decision: type and level', () => {
  const on = attachmentCompression({ types: COMPRESSIBLE_TYPES_DEFAULT, level: 8 });
  const off = attachmentCompression({ types: COMPRESSIBLE_TYPES_DEFAULT, level: 0 });
  assert.equal(shouldCompress(on, 'text/plain'), true);
  assert.equal(shouldCompress(on, 'image/png'), false);
  assert.equal(shouldCompress(off, 'text/plain'), false);
  assert.throws(() => attachmentCompression({ types: '', level: 10 }), RangeError);
  assert.throws(() => attachmentCompression({ types: '', level: -1 }), RangeError);
});

test('compressAttachment gzips on the thread pool; a result past bytesMax is refused', async () => {
  const plain = Buffer.from('hello hello hello hello hello '.repeat(100));
  const gz = (await compressAttachment(plain, 8))!;
  assert.ok(gz.length < plain.length);
  assert.deepEqual(gunzipSync(gz), plain);
  assert.deepEqual(await decompressAttachment(gz, plain.length), plain);
  assert.equal(await decompressAttachment(gz, plain.length - 1), undefined);
  assert.equal(await decompressAttachment(plain, 1 << 20), undefined);
  const noise = randomBytes(4096);
  assert.equal(await compressAttachment(noise, 8, noise.length), undefined, 'incompressible: gzip is larger than the data');
  assert.ok((await compressAttachment(noise, 8, noise.length + 1024))!.length > noise.length, 'compressed whatever the ratio');
});

const limits = { docBytesMax: 1 << 20, docIdBytesMax: 512, attachmentBytesMax: 1 << 20 };
const settings = { compression: attachmentCompression({ types: COMPRESSIBLE_TYPES_DEFAULT, level: 8 }), attachmentBytesMax: 1 << 20 };
const dataOf = (att: AttachmentInput | undefined) => {
  assert.equal(att?.kind, 'data');
  return att as Extract<AttachmentInput, { kind: 'data' }>;
};

test('compressAttachments: text becomes gzip with the identity digest; png and stubs stay', async () => {
  const text = Buffer.from('some text, some text, some text');
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
  const parsed = parseDoc(
    {
      _id: 'd',
      _attachments: {
        'a.txt': { content_type: 'text/plain; charset=utf-8', data: text.toString('base64') },
        'b.png': { content_type: 'image/png', data: png.toString('base64') },
        'c.txt': { stub: true, digest: 'md5-x', content_type: 'text/plain', length: 3 },
      },
    },
    { newEdits: true, limits },
  );
  await compressAttachments(parsed, settings);
  const [a, b, c] = parsed.edit.attachments!;
  assert.equal(dataOf(a).encoding, 'gzip');
  assert.equal(dataOf(a).length, text.length);
  assert.equal(dataOf(a).digest, md5(text));
  assert.deepEqual(gunzipSync(dataOf(a).data), text);
  assert.equal(dataOf(b).encoding, undefined);
  assert.equal(dataOf(b).digest, undefined);
  assert.deepEqual(dataOf(b).data, png);
  assert.equal(c!.kind, 'stub');

  const off = parseDoc({ _id: 'd', _attachments: { 'a.txt': { content_type: 'text/plain', data: text.toString('base64') } } }, { newEdits: true, limits });
  await compressAttachments(off, { ...settings, compression: attachmentCompression({ types: COMPRESSIBLE_TYPES_DEFAULT, level: 0 }) });
  assert.equal(dataOf(off.edit.attachments![0]).encoding, undefined);
});

test('compressAttachments: a gzip part keeps a claimed identity digest only when it checks out', async () => {
  const plain = Buffer.from('the identity bytes of a gzip part');
  const gz = gzipSync(plain);
  const doc = (digest: string, length = plain.length) => ({
    _id: 'd',
    _attachments: { 'a.txt': { content_type: 'text/plain', follows: true, encoding: 'gzip', length, digest } },
  });
  const run = async (json: Record<string, unknown>) => {
    const parsed = parseDoc(json, { newEdits: true, limits, followed: new Map([['a.txt', gz]]) });
    await compressAttachments(parsed, settings);
    return dataOf(parsed.edit.attachments![0]);
  };
  assert.equal((await run(doc(md5(plain)))).digest, md5(plain), 'identity digest, as this server hands on what it compressed');
  assert.equal((await run(doc(md5(gz)))).digest, undefined, 'CouchDB-style: the digest of the stored bytes, computed on write');
  assert.equal((await run(doc(md5(Buffer.from('other'))))).digest, undefined, 'a false claim is ignored');
  assert.equal((await run(doc(md5(plain), plain.length + 1))).digest, undefined, 'a wrong identity length voids the claim');
  assert.deepEqual((await run(doc(md5(plain)))).data, gz, 'stored as sent, never compressed twice');
});

test('config: both settings from the environment, the level checked', () => {
  const config = loadConfig({ env: { DIVAN_ATTACHMENT_COMPRESSIBLE_TYPES: 'text/csv', DIVAN_ATTACHMENT_COMPRESSION_LEVEL: '0' } });
  assert.equal(config.attachmentCompressibleTypes, 'text/csv');
  assert.equal(config.attachmentCompressionLevel, 0);
  assert.equal(loadConfig({ flags: { attachmentCompressionLevel: 9 } }).attachmentCompressionLevel, 9);
  assert.throws(() => loadConfig({ env: { DIVAN_ATTACHMENT_COMPRESSION_LEVEL: '10' } }), /attachmentCompressionLevel must be in 0\.\.9/);
  assert.throws(() => loadConfig({ flags: { attachmentCompressibleTypes: 5 } }), /must be a string/);
});
