/**
 * The `_bulk_docs` parsing path (src/api/http/doc-input.ts `parseDoc` on bodies parsed
 * as routes/bulk.ts parses them): the stored body text, hence the revision, is pinned
 * byte for byte against the output of the code before its fast paths, so that no
 * optimisation can change a key order or a rev; and `readBulkDocsBody` answers what
 * parsing each document alone answered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError } from '../../src/errors';
import { ExactInteger, parseJsonBytes, stringifyJson } from '../../src/json';
import type { Ctx } from '../../src/api/http/context';
import { parseDoc } from '../../src/api/http/doc-input';
import { readBulkDocsBody } from '../../src/api/http/routes/bulk';
import { revHash } from '../../src/shard/render';

const limits = { docBytesMax: 8_000_000, docIdBytesMax: 512, attachmentBytesMax: 8_000_000 };

/** [document as sent, stored body text, rev hash], captured from the code before the fast paths. */
const PINNED: [string, string, string][] = [
  ['{"_id":"a","n":1,"s":"x"}', '{"n":1,"s":"x"}', '8d8258891f9f8635b94177d870d56019'],
  ['{"n":1,"_id":"b","s":"x","_rev":"1-967a00dff5e02add41819138abb3284d","t":[1,2,{"u":null}]}', '{"n":1,"s":"x","t":[1,2,{"u":null}]}', '9697c96342ab14f0507fd9ba2bc8b0fd'],
  ['{"_id":"c","_rev":"2-7051cbe5c8faecd085a3fa619e6e6337","_deleted":true,"z":false}', '{"z":false}', 'ea06b7accf0d28c1f2ed60072bd7ccba'],
  ['{"_id":"d","10":"ten","2":"two","b":1,"a":2,"_replication_state":"completed"}', '{"2":"two","10":"ten","b":1,"a":2,"_replication_state":"completed"}', 'd129a3eb947ad7e6240ecccc832dc3de'],
  ['{"_id":"e","big":12345678901234567890,"f":1.5e3,"neg":-0,"uni":"café ☃ 😀 \\u00e9"}', '{"big":12345678901234567890,"f":1500,"neg":0,"uni":"café ☃ 😀 é"}', '5691272f40de26bdfd82f50e4a459cf4'],
  ['{"_id":"f","_attachments":{"a.txt":{"content_type":"text/plain","data":"aGVsbG8="}},"x":1}', '{"x":1}', 'f5733128590ff7a2f4249cf34479025a'],
  ['{"q":2,"_local_seq":1,"_revs_info":[]}', '{"q":2}', '720e29ac3834a15a293ed1f23dc5a8d4'],
  ['{"_id":"i","a":1,"b":0,"a":2,"_id":"i2"}', '{"a":2,"b":0}', 'ab05758426a74e78846ec1d2b9534653'],
  ['{"_id":"h","_conflicts":[],"nested":{"_id":"inner","_rev":"x"}}', '{"nested":{"_id":"inner","_rev":"x"}}', 'e5bc4361b4e827ce4e8aad3ad17c6ee9'],
];
const PINNED_IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'generated', 'i2', 'h'];

test('parseDoc keeps the body text and the rev of documents as they were before its fast paths', () => {
  PINNED.forEach(([text, bodyJson, rev], i) => {
    const json = parseJsonBytes(Buffer.from(text, 'utf8'), { depthMax: 64, exact: true });
    const parsed = parseDoc(json, { newEdits: true, limits, generateId: () => 'generated' });
    assert.equal(parsed.edit.id, PINNED_IDS[i], text);
    assert.equal(parsed.edit.bodyJson, bodyJson, text);
    assert.equal(revHash({ deleted: parsed.edit.deleted, parent: parsed.edit.baseRev ?? null, body: parsed.edit.bodyJson }), rev, text);
  });
});

const bulkLimits = { ...limits, jsonDepthMax: 8, bulkDocsMax: 100 };
const readBulk = (text: string | Buffer) =>
  readBulkDocsBody({ readBody: async () => (typeof text === 'string' ? Buffer.from(text, 'utf8') : text), limits: bulkLimits } as unknown as Ctx);

async function refusedBulk(text: string | Buffer, reason: string): Promise<void> {
  await assert.rejects(readBulk(text), (err: unknown) => err instanceof BadRequestError && err.reason === reason);
}

test('_bulk_docs bodies parse to the docs JSON.parse gives, big integers kept exact, repeated keys keeping the last value', async () => {
  const docs = PINNED.map(([text]) => text).join(' ,\n');
  const body = await readBulk(`{"new_edits":true, "docs": [ ${docs} ]}`);
  assert.equal(body.new_edits, true);
  assert.deepEqual(
    (body.docs as unknown[]).map((doc) => stringifyJson(doc)),
    PINNED.map(([text]) => stringifyJson(parseJsonBytes(Buffer.from(text, 'utf8'), { exact: true }))),
  );
  const exact = (await readBulk('{"docs":[{"a":1},{"big":12345678901234567890}]}')).docs as Record<string, unknown>[];
  assert.ok(exact[1]!.big instanceof ExactInteger);
  assert.deepEqual(await readBulk('{"docs":[]}'), Object.assign(Object.create(null), { docs: [] }));
});

test('_bulk_docs bodies answer the first bad document\'s own error, as when each doc was parsed alone', async () => {
  const deep = '{"a":' + '['.repeat(6) + ']'.repeat(6) + '}'; // 7 levels: over jsonDepthMax - 2
  await refusedBulk(`{"docs":[{"a":1},${deep}]}`, 'JSON nesting deeper than 6 levels');
  await refusedBulk(`{"docs":[{"a":tru},${deep}]}`, 'invalid UTF-8 JSON');
  await refusedBulk(`{"docs":[${deep},{"a":tru}]}`, 'JSON nesting deeper than 6 levels');
  await refusedBulk(Buffer.concat([Buffer.from(`{"docs":[${deep},{"a":"`), Buffer.from([0xff]), Buffer.from('"}]}')]), 'JSON nesting deeper than 6 levels');
  await refusedBulk(Buffer.concat([Buffer.from('{"docs":[{"a":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(`"},${deep}]}`)]), 'invalid UTF-8 JSON');
  await refusedBulk('{"docs":[{"a":1},{"a":"\\ud800"}]}', 'invalid UTF-8 JSON');
  await refusedBulk('{"docs":[{"a":1},{"a":1e400}]}', 'invalid UTF-8 JSON');
  await refusedBulk('{"docs":[{"a":1} {"a":2}]}', 'invalid UTF-8 JSON');
  await assert.rejects(readBulk(`{"docs":[${'{},'.repeat(100)}{}]}`), (err: unknown) => err instanceof BadRequestError && err.token === 'too_many_docs');
});
