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
import { ConflictError, NodeDownError } from '../../src/errors';
import { Store } from '../../src/storage/store';
import { ShardCopy } from '../../src/shard/shard-copy';
import { updateDocs } from '../../src/api/coordinator/doc-update';
import { readDocInfo } from '../../src/api/coordinator/doc-open';
import type { DbHandle, ShardClient } from '../../src/api/coordinator/shard-client';
import { decodeSince, readChanges, type ChangesRequest } from '../../src/api/coordinator/changes';
import type { ChangesOptions, DocEdit, EditResult } from '../../src/shard/types';
import { majority, writeVerdict, type WriteVerdict } from '../../src/api/coordinator/quorum';
import { streamAllDocs, totalRows } from '../../src/api/coordinator/all-docs';
import { putLocal } from '../../src/api/coordinator/local-docs';

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

// ---- write races: the quorum fold -------------------------------------------------

test('writeVerdict: w oks win, a majority of refusals loses even if a copy took it, a split with a copy down loses', () => {
  const v = (ok: number, refused: number, final: boolean, w = 2, copies = 3, n = 3) => writeVerdict({ ok, refused }, copies, n, w, final);
  assert.equal(v(2, 0, false), 'ok');
  assert.equal(v(2, 1, false), 'ok');
  assert.equal(v(1, 2, false), 'refused', 'one copy took it, a majority refused: 409');
  assert.equal(v(0, 2, false), 'refused');
  assert.equal(v(1, 1, false), 'pending', 'the third copy decides');
  assert.equal(v(1, 1, true), 'refused', 'a split with the third copy down: nobody won');
  assert.equal(v(1, 0, true), 'accepted', 'uncontested, two copies down: 202');
  assert.equal(v(0, 1, true), 'refused');
  assert.equal(v(0, 0, true), 'failed');
  assert.equal(v(2, 1, true, 3), 'accepted', 'w=3: a majority took it, not all');
  assert.equal(v(2, 0, false, 3), 'pending');
  assert.equal(v(1, 0, false, 1), 'ok', 'w=1 answers at the first ok (no single-winner guarantee)');
  // A rebalance adds a fourth copy: winning needs a majority of the four.
  assert.equal(v(2, 0, false, 2, 4), 'pending');
  assert.equal(v(3, 1, false, 2, 4), 'ok');
  assert.equal(v(2, 2, true, 2, 4), 'refused');
});

test('writeVerdict: of two writers racing over the same live copies, at most one is told it won (exhaustive)', () => {
  const won = (v: WriteVerdict) => v === 'ok' || v === 'accepted';
  let cases = 0;
  for (let copies = 1; copies <= 5; copies++) {
    for (const n of new Set([copies, Math.max(1, copies - 1)])) {
      for (let w = majority(Math.min(n, copies)); w <= copies; w++) {
        // Each copy took writer A (0), took writer B (1), or is down (2).
        for (let code = 0; code < 3 ** copies; code++) {
          let a = 0;
          let b = 0;
          for (let c = 0, x = code; c < copies; c++, x = Math.floor(x / 3)) {
            if (x % 3 === 0) a++;
            else if (x % 3 === 1) b++;
          }
          const va = writeVerdict({ ok: a, refused: b }, copies, n, w, true);
          const vb = writeVerdict({ ok: b, refused: a }, copies, n, w, true);
          assert.ok(!(won(va) && won(vb)), `copies=${copies} n=${n} w=${w} A=${a} B=${b}: ${va}/${vb}`);
          if (a + b === copies && copies > 0) assert.ok(won(va) || won(vb) || a === b, 'with every copy up and no tie, one wins');
          cases++;
        }
      }
    }
  }
  assert.ok(cases > 500);
});

/** A copy that answers each call with `script(edits)` (results or a failure). */
function scripted(node: string, script: (edits: DocEdit[]) => Promise<EditResult[]>): ShardClient {
  return new Proxy({ node } as ShardClient, {
    get: (target, prop) => (prop === 'node' ? target.node : prop === 'updateDocs' ? script : () => Promise.reject(new Error(`not scripted: ${String(prop)}`))),
  });
}
const conflictAll = (edits: DocEdit[]) => Promise.resolve(edits.map((e): EditResult => ({ kind: 'error', id: e.id, error: new ConflictError() })));

test('updateDocs: a write one copy took and two refused is a conflict', async () => {
  const [a] = await copies(1);
  const [outcome] = await updateDocs(handle([a!, scripted('n2', conflictAll), scripted('n3', conflictAll)]), [edit('lost')], { timeoutMs: 2000 });
  assert.equal(outcome!.kind, 'error');
  assert.equal(outcome!.kind === 'error' && outcome!.error.token, 'conflict');
  // The answer came with the two refusals; the copy that took it still applies it and
  // keeps that branch (shard sync spreads it as a conflict).
  const deadline = Date.now() + 5000;
  while (!(await a!.getDocInfo('lost')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.ok(await a!.getDocInfo('lost'), 'the copy that took it keeps its branch');
});

test('updateDocs: with one ok and one refusal in, the third copy decides', async () => {
  for (const third of ['ok', 'conflict'] as const) {
    const [a, c] = await copies(2);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = scripted('n3', async (edits) => {
      await gate;
      return third === 'ok' ? c!.updateDocs(edits) : conflictAll(edits);
    });
    let settled = false;
    const pending = updateDocs(handle([a!, scripted('n2', conflictAll), slow]), [edit(`third-${third}`)], { timeoutMs: 5000 }).then((o) => {
      settled = true;
      return o;
    });
    await new Promise((r) => setImmediate(r));
    await a!.getDocInfo(`third-${third}`);
    assert.equal(settled, false, 'no answer on a 1-1 split while a copy may still answer');
    release();
    const [outcome] = await pending;
    assert.equal(outcome!.kind, third === 'ok' ? 'ok' : 'error');
  }
});

test('updateDocs: a split with the third copy down is a conflict (for both writers, by symmetry)', async () => {
  const [a] = await copies(1);
  // This writer reached copy a first; copy b took the other writer; copy c is down.
  const [outcome] = await updateDocs(handle([a!, scripted('n2', conflictAll), downCopy('n3')]), [edit('split')], { timeoutMs: 2000 });
  assert.equal(outcome!.kind, 'error');
  assert.equal(outcome!.kind === 'error' && outcome!.error.token, 'conflict');
});

test('updateDocs: a copy a rebalance is still filling gets the edit but does not vote', async () => {
  const [a, b, filling] = await copies(3);
  const list = [a!, b!, downCopy('n3'), filling!];
  const db: DbHandle = { ...handle(list), n: 3, ranges: [{ ...handle(list).ranges[0]!, established: 3 }] };
  const [created] = await updateDocs(db, [edit('moving')], { timeoutMs: 2000 });
  assert.equal(created!.kind, 'ok');
  // The filling copy lacks the document's history (as before its fill reaches it) and
  // refuses the update; the established copies decide.
  const rev = created!.kind === 'ok' ? created!.rev : '';
  const refusing: ShardClient = scripted('n4', conflictAll);
  const db2: DbHandle = { ...db, ranges: [{ ...db.ranges[0]!, copies: [a!, b!, downCopy('n3'), refusing] }] };
  const [updated] = await updateDocs(db2, [{ ...edit('moving'), baseRev: rev }], { timeoutMs: 2000 });
  assert.equal(updated!.kind, 'ok');
});

// ---- read-your-writes: range reads wait for this node's copy -------------------------

test('a range read waits for the write its first copy was still applying when the client was answered', async () => {
  const [local, b, c] = await copies(3);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  // This node's own copy (first in order) is busy: the two others answer first.
  const busyLocal: ShardClient = new Proxy(local!, {
    get: (target, prop) => {
      if (prop === 'updateDocs') return async (edits: DocEdit[]) => (await gate, target.updateDocs(edits));
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return value instanceof Function ? value.bind(target) : value;
    },
  });
  const db = handle([busyLocal, b!, c!]);
  const [outcome] = await updateDocs(db, [edit('fresh')], { timeoutMs: 5000 });
  assert.equal(outcome!.kind, 'ok', 'acknowledged by the two other copies');
  assert.equal(await local!.getDocInfo('fresh'), undefined, 'the local copy has not applied it yet');
  const rows: string[] = [];
  const read = streamAllDocs(db, { limit: 10, skip: 0, descending: false, inclusiveEnd: true, includeDocs: false, conflicts: false }, async (batch) => {
    rows.push(...batch.map((r) => r.id));
  });
  const count = totalRows(db);
  setImmediate(release);
  await read;
  assert.deepEqual(rows, ['fresh']);
  assert.equal(await count, 1);
});

test('a range read sees a write its first copy refused while the others took it', async () => {
  const [local, b, c] = await copies(3);
  // The two others have the document (written through another node); this node's own
  // copy has not heard of it yet, so it refuses the update the others take.
  const [first] = await b!.updateDocs([edit('behind')]);
  await c!.updateDocs([{ ...edit('behind'), revs: [first!.kind === 'ok' ? first!.rev : ''] }]);
  const db = handle([local!, b!, c!]);
  const base = first!.kind === 'ok' ? first!.rev : '';
  const [outcome] = await updateDocs(db, [{ ...edit('behind'), body: { v: 2 }, baseRev: base }], { timeoutMs: 5000 });
  assert.equal(outcome!.kind, 'ok');
  const rows: { id: string; rev: string }[] = [];
  await streamAllDocs(db, { limit: 10, skip: 0, descending: false, inclusiveEnd: true, includeDocs: false, conflicts: false }, async (batch) => {
    rows.push(...batch.map((r) => ({ id: r.id, rev: r.rev })));
  });
  assert.deepEqual(rows, [{ id: 'behind', rev: outcome!.kind === 'ok' ? outcome!.rev : '' }]);
});

test('a _local write answers once a majority (the checked copy among them) took it; the slowest copy follows', async () => {
  const [local, b, c] = await copies(3);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow: ShardClient = new Proxy(c!, {
    get: (target, prop) => {
      if (prop === 'putLocal') return async (...args: Parameters<ShardClient['putLocal']>) => (await gate, target.putLocal(...args));
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return value instanceof Function ? value.bind(target) : value;
    },
  });
  const db = handle([local!, b!, slow]);
  assert.equal(await putLocal(db, '_local/ck', '{"seq":1}', undefined), '0-1', 'answered without the slow copy');
  assert.equal(await c!.getLocal('_local/ck'), undefined, 'the slow copy has not applied it yet');
  release();
  assert.equal(await putLocal(db, '_local/ck', '{"seq":2}', '0-1'), '0-2');
  for (let i = 0; i < 100 && (await c!.getLocal('_local/ck'))?.rev !== '0-2'; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal((await c!.getLocal('_local/ck'))?.rev, '0-2', 'the slow copy caught up after answering');
  // With the checked (first) copy slow, the write waits for it even though two others took it.
  let answered = false;
  let releaseFirst!: () => void;
  const firstGate = new Promise<void>((r) => (releaseFirst = r));
  const slowFirst: ShardClient = new Proxy(local!, {
    get: (target, prop) => {
      if (prop === 'putLocal') return async (...args: Parameters<ShardClient['putLocal']>) => (await firstGate, target.putLocal(...args));
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return value instanceof Function ? value.bind(target) : value;
    },
  });
  const write = putLocal(handle([slowFirst, b!, c!]), '_local/ck', '{"seq":3}', '0-2').then((rev) => ((answered = true), rev));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(answered, false, 'waits for the checked copy');
  releaseFirst();
  assert.equal(await write, '0-3');
});
