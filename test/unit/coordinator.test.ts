/**
 * The coordinator against shard copies in one process: real copies on a temporary
 * RocksDB, plus scripted copies that fail, to check quorum folding (201/202/error)
 * and read repair without any network.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NodeDownError } from '../../src/errors';
import { Store } from '../../src/storage/store';
import { ShardCopy } from '../../src/shard/shard-copy';
import { updateDocs } from '../../src/api/coordinator/doc-update';
import { readDocInfo } from '../../src/api/coordinator/doc-open';
import type { DbHandle, ShardClient } from '../../src/api/coordinator/shard-client';
import { decodeSince, readChanges, type ChangesRequest } from '../../src/api/coordinator/changes';
import type { ChangesOptions } from '../../src/shard/types';

let dir: string;
let store: Store;
let nextCopyId = 1;
before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'divan-coord-'));
  store = await Store.open(dir, { cacheBytes: 8 << 20, writeBufferBytes: 4 << 20, batchOpsMax: 10_000 });
});
after(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const limits = { updateBatchDocsMax: 1000, updateQueueDocsMax: 10_000 };

async function copies(count: number): Promise<ShardCopy[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) => ShardCopy.open(store, { copyId: nextCopyId++, node: `n${i + 1}`, revsLimit: 1000, limits })),
  );
}

/** A copy whose node is down: every call fails like an unreachable peer. */
function downCopy(node: string): ShardClient {
  const fail = () => Promise.reject(new NodeDownError(node, 'down'));
  return new Proxy({ node } as ShardClient, {
    get: (target, prop) => (prop === 'node' ? target.node : fail),
  });
}

function handle(list: readonly ShardClient[]): DbHandle {
  return {
    name: 'db',
    uuid: 'u'.repeat(16),
    q: 1,
    n: list.length,
    createdAt: 0,
    revsLimit: 1000,
    security: {},
    ranges: [{ index: 0, name: '00000000-ffffffff', copies: list, nodes: list.map((c) => c.node) }],
  };
}

const edit = (id: string) => ({ id, deleted: false, body: { v: 1 }, attachments: null });

test('a write acknowledged by w=2 of 3 copies is ok; by 1 is accepted; by none is an error', async () => {
  const [a, b, c] = await copies(3);
  assert.equal((await updateDocs(handle([a!, b!, c!]), [edit('all')], { timeoutMs: 2000 }))[0]!.kind, 'ok');
  assert.equal((await updateDocs(handle([a!, b!, downCopy('n3')]), [edit('two')], { timeoutMs: 2000 }))[0]!.kind, 'ok');
  assert.equal((await updateDocs(handle([a!, downCopy('n2'), downCopy('n3')]), [edit('one')], { timeoutMs: 2000 }))[0]!.kind, 'accepted');
  await assert.rejects(updateDocs(handle([downCopy('n1'), downCopy('n2'), downCopy('n3')]), [edit('none')], { timeoutMs: 2000 }), NodeDownError);
  // An explicit w=3 with one copy down is only accepted.
  assert.equal((await updateDocs(handle([a!, b!, downCopy('n3')]), [edit('w3')], { timeoutMs: 2000, w: 3 }))[0]!.kind, 'accepted');
});

test('a conflict on every copy is the document outcome, per document', async () => {
  const [a, b] = await copies(2);
  const db = handle([a!, b!]);
  await updateDocs(db, [edit('x')], { timeoutMs: 2000 });
  const [first, second] = await updateDocs(db, [edit('x'), edit('y')], { timeoutMs: 2000 });
  assert.equal(first!.kind, 'error');
  assert.equal(first!.kind === 'error' && first!.error.token, 'conflict');
  assert.equal(second!.kind, 'ok');
});

test('a read merges the copies it asked and repairs the stale ones', async () => {
  const [a, b, c] = await copies(3);
  // Only copy a has the document (as after a write that reached one copy).
  const [written] = await a!.updateDocs([edit('lonely')]);
  assert.equal(written!.kind, 'ok');
  const info = await readDocInfo(handle([a!, b!, c!]), 'lonely', { timeoutMs: 2000, r: 3 });
  assert.equal(info?.winner.rev, written!.kind === 'ok' ? written!.rev : '');
  for (const copy of [b!, c!]) {
    const deadline = Date.now() + 5000;
    while (!(await copy.getDocInfo('lonely')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const repaired = await copy.getDocInfo('lonely');
    assert.ok(repaired, `${copy.node} was repaired`);
    assert.equal(repaired!.winner.rev, info!.winner.rev);
    assert.equal(await copy.readBody('lonely', info!.winner.rev), await a!.readBody('lonely', info!.winner.rev));
  }
});

test('_changes: a copy lost in the middle of a range is replaced by the next, read from its start', async () => {
  const [a, b] = await copies(2);
  const ids = Array.from({ length: 700 }, (_, i) => `c${String(i).padStart(4, '0')}`);
  for (const copy of [a!, b!]) await copy.updateDocs(ids.map(edit));
  // Copy a hands out its first batch, then its node dies.
  let batches = 0;
  const dying: ShardClient = new Proxy(a!, {
    get: (target, prop) =>
      prop === 'changes'
        ? (options: ChangesOptions) => {
            const cursor = target.changes(options);
            return {
              next: async () => {
                if (++batches > 1) throw new NodeDownError('n1', 'killed');
                return cursor.next();
              },
              close: () => cursor.close(),
            };
          }
        : (target as unknown as Record<string | symbol, unknown>)[prop] instanceof Function
          ? ((target as unknown as Record<string | symbol, Function>)[prop] as Function).bind(target)
          : (target as unknown as Record<string | symbol, unknown>)[prop],
  });
  const db = handle([dying, b!]);
  const seen: string[] = [];
  const request: ChangesRequest = {
    since: await decodeSince(db, 0),
    descending: false,
    limit: Number.MAX_SAFE_INTEGER,
    allLeaves: false,
    includeDocs: false,
    conflicts: false,
    filter: { kind: 'none' },
    seqInterval: 1,
  };
  const pass = await readChanges(db, request, request.limit, ({ row }) => void seen.push(row.id));
  assert.ok(batches > 1, 'the first copy failed after delivering rows');
  assert.ok(seen.length > ids.length, 'rows already sent are sent again (at least once, never skipped)');
  assert.deepEqual([...new Set(seen)].sort(), ids);
  assert.equal(pass.position[0]!.node, 'n2', 'the position now names the copy read to the end');
  assert.equal(pass.position[0]!.seq, (await b!.readState()).updateSeq);
});
