/**
 * Attachment stubs made by a shard edit (src/shard/edit.ts): encoded attachments keep
 * their stored form (digest of the stored bytes, identity `length`, `encoded_length`),
 * and new bytes in an interactive edit take the new revision's position as revpos.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { applyEdit, EditContext } from '../../src/shard/edit';
import type { AttachmentStub, DocEdit, DocInfo } from '../../src/shard/types';
import { winner } from '../../src/shard/rev-tree';

function context(bodies = new Map<string, string>()): EditContext {
  return { revsLimit: 1000, readBody: async (_id, rev) => bodies.get(rev), hasAttachment: async () => false };
}

function stubsOf(body: string): Record<string, AttachmentStub> {
  return (JSON.parse(body) as { _attachments: Record<string, AttachmentStub> })._attachments;
}

test('an encoded attachment is stored as sent: digest of the gzip bytes, identity length, encoded_length', async () => {
  const plain = Buffer.from('some text to compress');
  const gz = gzipSync(plain);
  const edit: DocEdit = {
    id: 'd',
    deleted: false,
    body: {},
    attachments: [{ kind: 'data', name: 'a.txt', contentType: 'text/plain', data: gz, encoding: 'gzip', length: plain.length, revpos: 1 }],
    revs: ['1-abc'],
  };
  const outcome = await applyEdit(undefined, edit, context());
  assert.equal(outcome.kind, 'write');
  if (outcome.kind !== 'write') return;
  const stub = stubsOf(outcome.body)['a.txt']!;
  assert.equal(stub.digest, 'md5-' + createHash('md5').update(gz).digest('base64'));
  assert.equal(stub.length, plain.length);
  assert.equal(stub.encoding, 'gzip');
  assert.equal(stub.encoded_length, gz.length);
  assert.deepEqual(outcome.newAttachments[0]!.data, gz);
});

test('interactive edits give new bytes the new revpos; replicated edits keep theirs', async () => {
  const first = await applyEdit(undefined, { id: 'd', deleted: false, body: {}, attachments: [{ kind: 'data', name: 'a', contentType: 'x/y', data: Buffer.from('1') }] }, context());
  assert.equal(first.kind, 'write');
  if (first.kind !== 'write') return;
  const info: DocInfo = { id: 'd', seq: 1, tree: first.tree, winner: winner(first.tree)! };
  const replace: DocEdit = {
    id: 'd',
    deleted: false,
    body: {},
    baseRev: first.rev,
    attachments: [{ kind: 'data', name: 'a', contentType: 'x/y', data: Buffer.from('2'), revpos: 1 }],
  };
  const second = await applyEdit(info, replace, context(new Map([[first.rev, first.body]])));
  assert.equal(second.kind, 'write');
  if (second.kind !== 'write') return;
  assert.equal(stubsOf(second.body)['a']!.revpos, 2);

  const replicated: DocEdit = {
    id: 'r',
    deleted: false,
    body: {},
    revs: ['3-ccc', '2-bbb'],
    attachments: [{ kind: 'data', name: 'a', contentType: 'x/y', data: Buffer.from('3'), revpos: 2 }],
  };
  const third = await applyEdit(undefined, replicated, context());
  assert.equal(third.kind === 'write' && stubsOf(third.body)['a']!.revpos, 2);
});
