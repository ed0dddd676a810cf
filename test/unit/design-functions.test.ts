/**
 * The validation step's cache of compiled VDUs (src/api/coordinator/validate.ts) and
 * the shard copy's `designSeq` it compares: recorded on `_design/` edits only,
 * persisted with the copy's state; a copy of this node is compared on every write, a
 * remote one only once `recheckMs` has passed; a design document written through the
 * coordinator with validation drops the entry at once. Real RocksDB, real sandbox.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../../src/storage/store';
import { ShardCopy } from '../../src/shard/shard-copy';
import { SandboxPool } from '../../src/shard/js/sandbox';
import { DesignFunctions, validateEdits } from '../../src/api/coordinator/validate';
import { updateDocs } from '../../src/api/coordinator/doc-update';
import type { DbHandle, ShardClient } from '../../src/api/coordinator/shard-client';

let dir: string;
let store: Store;
let pool: SandboxPool;
let nextCopyId = 1;
const limits = { updateBatchDocsMax: 1000, updateQueueDocsMax: 10_000 };
const admin = { name: 'admin', roles: ['_admin'] };

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'divan-designfns-'));
  store = await Store.open(dir, { cacheBytes: 8 << 20, writeBufferBytes: 4 << 20, batchOpsMax: 10_000 });
  pool = new SandboxPool({ timeoutMs: 2000, memoryBytesMax: 16 * 1024 * 1024, workers: 1 });
});
after(async () => {
  await pool.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function handle(copy: ShardClient): DbHandle {
  return {
    name: 'db',
    uuid: 'u' + nextCopyId.toString().padStart(15, '0'),
    q: 1,
    n: 1,
    createdAt: 0,
    revsLimit: 1000,
    security: {},
    ranges: [{ index: 0, name: '00000000-ffffffff', copies: [copy], nodes: [copy.node] }],
  };
}

const vdu = (word: string) => ({
  id: '_design/v',
  deleted: false,
  body: { validate_doc_update: `function (d) { if (d.word !== '${word}') throw({ forbidden: 'say ${word}' }); }` },
  attachments: null,
});

test('designSeq follows _design/ edits only and survives reopening the copy', async () => {
  const copyId = nextCopyId++;
  const copy = await ShardCopy.open(store, { copyId, node: 'n1', revsLimit: 1000, limits });
  assert.equal(copy.getState().designSeq ?? 0, 0);
  await copy.updateDocs([{ id: 'a', deleted: false, body: {}, attachments: null }]);
  assert.equal(copy.getState().designSeq ?? 0, 0);
  await copy.updateDocs([{ id: 'b', deleted: false, body: {}, attachments: null }, { id: '_design/x', deleted: false, body: {}, attachments: null }]);
  assert.equal(copy.getState().designSeq, 3);
  await copy.updateDocs([{ id: 'c', deleted: false, body: {}, attachments: null }]);
  assert.equal(copy.getState().designSeq, 3);
  const reopened = await ShardCopy.open(store, { copyId, node: 'n1', revsLimit: 1000, limits });
  assert.equal(reopened.getState().designSeq, 3);
});

test('a local copy is compared on every write; a remote one after recheckMs; a write through the step drops the entry', async () => {
  const copy = await ShardCopy.open(store, { copyId: nextCopyId++, node: 'n1', revsLimit: 1000, limits });
  const db = handle(copy);
  const check = async (functions: DesignFunctions, word: string) =>
    (await validateEdits(db, [{ id: 'doc', deleted: false, body: { word }, attachments: null }], { functions, user: admin, dbAdmin: true }, 5000))[0]?.reason;

  // As this node's copy: a design document written straight to the copy is seen at once.
  const local = new DesignFunctions(pool, 'n1', 1e9);
  assert.equal(await check(local, 'x'), undefined);
  await copy.updateDocs([vdu('red')]);
  assert.equal(await check(local, 'blue'), 'say red');

  // As another node's copy: the cached answer stands until recheckMs has passed...
  const remote = new DesignFunctions(pool, 'elsewhere', 1e9);
  assert.equal(await check(remote, 'blue'), 'say red');
  const info = await copy.getDocInfo('_design/v');
  await copy.updateDocs([{ ...vdu('blue'), baseRev: info!.winner.rev }]);
  assert.equal(await check(remote, 'blue'), 'say red', 'cached within recheckMs');
  // ...and with recheckMs 0 the copy is asked on every write.
  const eager = new DesignFunctions(pool, 'elsewhere', 0);
  assert.equal(await check(eager, 'red'), 'say blue');

  // A design document written through the validation step is seen at once, even for a remote copy.
  const info2 = await copy.getDocInfo('_design/v');
  const [outcome] = await updateDocs(db, [{ ...vdu('green'), baseRev: info2!.winner.rev }], { timeoutMs: 5000, validate: { functions: remote, user: admin, dbAdmin: true } });
  assert.equal(outcome!.kind, 'ok');
  assert.equal(await check(remote, 'blue'), 'say green');
});

test('design documents need a db admin (403 for a user, 401 for anonymous); VDUs do not run on them', async () => {
  const copy = await ShardCopy.open(store, { copyId: nextCopyId++, node: 'n1', revsLimit: 1000, limits });
  const db = handle(copy);
  const functions = new DesignFunctions(pool, 'n1', 1000);
  await copy.updateDocs([vdu('red')]);
  const edits = [{ id: '_design/other', deleted: false, body: {}, attachments: null }];
  const [asUser] = await validateEdits(db, edits, { functions, user: { name: 'bob', roles: [] }, dbAdmin: false }, 5000);
  assert.equal(asUser?.token, 'forbidden');
  const [asAnonymous] = await validateEdits(db, edits, { functions, user: { name: null, roles: [] }, dbAdmin: false }, 5000);
  assert.equal(asAnonymous?.token, 'unauthorized');
  const [asAdmin] = await validateEdits(db, edits, { functions, user: admin, dbAdmin: true }, 5000);
  assert.equal(asAdmin, undefined);
});
