/**
 * PouchDB 9 replicating with one live Divan node, as CouchDB 3 users expect: push and
 * pull of thousands of documents with deletions, conflicts and attachments; resuming
 * from checkpoints kept in `_local/` documents; live two-way sync; live pull; and a
 * pull that resumes after the node is killed with SIGKILL and restarted.
 *
 * One node for the file, one database per test. Local databases are PouchDB's
 * in-memory adapter. Divan's side is read over plain HTTP where the test is about what
 * the server stored, so a PouchDB quirk cannot hide a server fault.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request, startNode, uniqueDb, waitFor, type TestNode } from '../helpers/node-process';
import {
  bulkWrite,
  cancelAndWait,
  diffSnapshots,
  divanAttachment,
  localDb,
  mapLimit,
  muteInfoFailures,
  md5Digest,
  nextEvent,
  PouchDB,
  remoteDb,
  replicateOnce,
  snapshotDivan,
  snapshotPouch,
  withDeadline,
  type DocState,
  type Pouch,
  type ReplicationResult,
} from '../helpers/pouch';

let node: TestNode;

before(async () => {
  node = await startNode();
});

after(async () => {
  await node?.destroy();
});

// ---------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------

/** A 32-hex revision id whose first character is `first`, so tests control the order. */
function revHash(label: string, first: string): string {
  return first + createHash('md5').update(label).digest('hex').slice(1);
}

/** Small binary payload for doc `i`: every byte value appears across the set, NUL included. */
function attachmentBytes(i: number): Buffer {
  return Buffer.from(Array.from({ length: 1 + (i % 97) * 3 }, (_, k) => (i * 31 + k * 7) & 0xff));
}

const ATT_NAME = 'blob.bin';
const CONFLICT_ATT_NAME = 'branch.bin';

interface Leaf {
  /** Characters that order this leaf's hash among its siblings. */
  label: string;
  pos: number;
  first: string;
  deleted?: boolean;
  /** Hash prefix of the intermediate revision, for leaves deeper than 2. */
  viaFirst?: string;
  attachment?: boolean;
}

interface ConflictShape {
  name: string;
  leaves: Leaf[];
  /** Label of the leaf CouchDB picks as winner. */
  winner: string;
}

/**
 * CouchDB's winner rule as cases: a live leaf beats a deleted one, then the higher
 * `pos`, then the greater revision id compared as a string. All leaves hang off one
 * root `1-…`.
 */
const CONFLICT_SHAPES: ConflictShape[] = [
  { name: 'same pos, greater rev id wins', leaves: [{ label: 'a', pos: 2, first: 'a' }, { label: 'b', pos: 2, first: 'b' }], winner: 'b' },
  {
    name: 'higher pos wins over a greater rev id',
    leaves: [{ label: 'deep', pos: 3, first: '1', viaFirst: '0' }, { label: 'f', pos: 2, first: 'f' }],
    winner: 'deep',
  },
  {
    name: 'live leaf wins over a deleted one with a greater rev id',
    leaves: [{ label: 'dead', pos: 2, first: 'f', deleted: true }, { label: 'live', pos: 2, first: 'a' }],
    winner: 'live',
  },
  {
    name: 'all leaves deleted: greater rev id wins, document deleted',
    leaves: [{ label: 'x', pos: 2, first: 'a', deleted: true }, { label: 'y', pos: 2, first: 'b', deleted: true }],
    winner: 'y',
  },
  {
    name: 'three live branches, attachments on two',
    leaves: [
      { label: 'a', pos: 2, first: 'a' },
      { label: 'c', pos: 2, first: 'c', attachment: true },
      { label: 'e', pos: 2, first: 'e', attachment: true },
    ],
    winner: 'e',
  },
];

function leafRev(id: string, leaf: Leaf): string {
  return `${leaf.pos}-${revHash(`${id}:${leaf.label}`, leaf.first)}`;
}

function branchBytes(id: string, leaf: Leaf): Buffer {
  return Buffer.from(`${id} branch ${leaf.label} \u0000\u00ff`, 'latin1');
}

/** The `new_edits: false` documents that build one conflicted document. */
function conflictDocs(id: string, shape: ConflictShape): Record<string, unknown>[] {
  const root = revHash(`${id}:root`, '5');
  return shape.leaves.map((leaf) => {
    const hash = revHash(`${id}:${leaf.label}`, leaf.first);
    const ids = leaf.pos === 3 ? [hash, revHash(`${id}:${leaf.label}:via`, leaf.viaFirst!), root] : [hash, root];
    const doc: Record<string, unknown> = { _id: id, _rev: `${leaf.pos}-${hash}`, _revisions: { start: leaf.pos, ids }, branch: leaf.label };
    if (leaf.deleted) doc._deleted = true;
    if (leaf.attachment) {
      doc._attachments = { [CONFLICT_ATT_NAME]: { content_type: 'application/octet-stream', data: branchBytes(id, leaf).toString('base64') } };
    }
    return doc;
  });
}

/** What a correct server reports for a conflicted document of `shape`. */
function expectedConflictState(id: string, shape: ConflictShape): Pick<DocState, 'rev' | 'deleted' | 'conflicts'> {
  const winner = shape.leaves.find((leaf) => leaf.label === shape.winner)!;
  return {
    rev: leafRev(id, winner),
    deleted: winner.deleted === true,
    conflicts: shape.leaves
      .filter((leaf) => leaf !== winner && !leaf.deleted)
      .map((leaf) => leafRev(id, leaf))
      .sort(),
  };
}

interface Corpus {
  ids: string[];
  attachments: Map<string, Buffer>;
  conflicted: Map<string, ConflictShape>;
}

/**
 * Fill `db` with `total` documents: every 10th (from 3) deleted, and of those every
 * 10th recreated; every 10th (from 5) edited once more, every 20th twice; every 10th
 * (from 7) with a binary attachment, given as a Buffer or as base64; every 25th built
 * from conflicting branches with `new_edits: false`, cycling through CONFLICT_SHAPES.
 */
async function fillCorpus(db: Pouch, total: number): Promise<Corpus> {
  const corpus: Corpus = { ids: [], attachments: new Map(), conflicted: new Map() };
  const plain: Record<string, unknown>[] = [];
  const conflicts: Record<string, unknown>[] = [];
  for (let i = 0; i < total; i++) {
    const id = `doc-${String(i).padStart(5, '0')}`;
    corpus.ids.push(id);
    if (i % 25 === 0) {
      const shape = CONFLICT_SHAPES[(i / 25) % CONFLICT_SHAPES.length]!;
      corpus.conflicted.set(id, shape);
      conflicts.push(...conflictDocs(id, shape));
      continue;
    }
    const doc: Record<string, unknown> = { _id: id, n: i, text: `document ${i}`, nested: { even: i % 2 === 0, list: [i, String(i)] } };
    if (i % 10 === 7) {
      const data = attachmentBytes(i);
      corpus.attachments.set(id, data);
      doc._attachments = { [ATT_NAME]: { content_type: 'application/octet-stream', data: i % 20 === 7 ? data : data.toString('base64') } };
    }
    plain.push(doc);
  }

  const revs = new Map<string, string>();
  const write = async (docs: Record<string, unknown>[]) => {
    for (let i = 0; i < docs.length; i += 1000) {
      const results = await db.bulkDocs(docs.slice(i, i + 1000));
      for (const r of results) {
        assert.equal(r.error, undefined, `local write of ${r.id} failed: ${JSON.stringify(r)}`);
        revs.set(r.id, r.rev);
      }
    }
  };
  const index = (id: string) => Number(id.slice(4));
  await write(plain);
  const edit = (keep: (i: number) => boolean, change: (doc: Record<string, unknown>) => void) =>
    write(
      plain
        .filter((doc) => keep(index(doc._id as string)))
        .map((doc) => {
          const next: Record<string, unknown> = { _id: doc._id, _rev: revs.get(doc._id as string), n: doc.n, edited: true };
          change(next);
          return next;
        }),
    );
  await edit((i) => i % 10 === 5, () => {});
  await edit((i) => i % 20 === 5, (doc) => (doc.edited = 2));
  await edit((i) => i % 10 === 3, (doc) => (doc._deleted = true));
  // Recreating a deleted document extends the deleted branch.
  await write(plain.filter((doc) => index(doc._id as string) % 100 === 13).map((doc) => ({ _id: doc._id, _rev: revs.get(doc._id as string), recreated: true })));

  const results = await db.bulkDocs(conflicts, { new_edits: false });
  // new_edits:false answers only failures.
  assert.deepEqual(results.filter((r) => r.error), [], 'local new_edits:false writes failed');
  return corpus;
}

function assertSameSnapshot(actual: Map<string, DocState>, expected: Map<string, DocState>, what: string): void {
  assert.equal(actual.size, expected.size, `${what}: ${actual.size} documents, expected ${expected.size}`);
  assert.deepEqual(diffSnapshots(actual, expected), [], `${what}: documents differ (actual ≠ expected)`);
}

/** Every leaf revision (deleted ones too) of `id`, sorted, read from Divan with `open_revs=all`. */
async function divanLeaves(dbName: string, id: string): Promise<string[]> {
  const reply = await request(node, 'GET', `/${dbName}/${encodeURIComponent(id)}?open_revs=all`, { headers: { accept: 'application/json' } });
  assert.equal(reply.status, 200, `open_revs=all for ${id}: ${reply.text}`);
  return (reply.body as { ok?: { _rev: string } }[]).map((entry) => entry.ok!._rev).sort();
}

async function pouchLeaves(db: Pouch, id: string): Promise<string[]> {
  const entries = (await db.get(id, { open_revs: 'all' })) as { ok?: { _rev: string } }[];
  return entries.map((entry) => entry.ok!._rev).sort();
}

function assertCleanResult(result: ReplicationResult, what: string): void {
  assert.equal(result.ok, true, `${what}: not ok: ${JSON.stringify(result.errors)}`);
  assert.equal(result.status, 'complete', `${what}: status ${result.status}`);
  assert.equal(result.doc_write_failures, 0, `${what}: write failures: ${JSON.stringify(result.errors)}`);
}

async function createDb(dbName: string): Promise<void> {
  const reply = await request(node, 'PUT', `/${dbName}`);
  assert.equal(reply.status, 201, `PUT /${dbName}: ${reply.text}`);
}

async function localCheckpoints(dbName: string): Promise<{ id: string; doc: Record<string, unknown> }[]> {
  const reply = await request(node, 'GET', `/${dbName}/_local_docs?include_docs=true`);
  assert.equal(reply.status, 200, `_local_docs: ${reply.text}`);
  return (reply.body.rows as { id: string; doc: Record<string, unknown> }[]).map((row) => ({ id: row.id, doc: row.doc }));
}

function simpleDocs(prefix: string, from: number, to: number): Record<string, unknown>[] {
  const docs: Record<string, unknown>[] = [];
  for (let i = from; i < to; i++) docs.push({ _id: `${prefix}-${String(i).padStart(5, '0')}`, n: i });
  return docs;
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

test('push then pull 5,000 documents with deletions, conflicts and attachments', async (t) => {
  const DOCS = 5000;
  const dbName = uniqueDb('pouch-full');
  const source = localDb('source');
  const copy = localDb('copy');
  // PouchDB creates the remote database on first use, as it does against CouchDB.
  const remote = remoteDb(node, dbName);
  try {
    const corpus = await fillCorpus(source, DOCS);
    const expected = await snapshotPouch(source, corpus.ids);
    assert.equal(expected.size, DOCS);
    const deletedCount = [...expected.values()].filter((s) => s.deleted).length;
    assert.ok(deletedCount > 400, `corpus has ${deletedCount} deleted documents`);
    assert.ok([...expected.values()].some((s) => s.conflicts.length > 0), 'corpus has conflicts');
    for (const [id, data] of corpus.attachments) assert.equal(expected.get(id)!.digests[ATT_NAME], md5Digest(data), `source digest of ${id}`);

    let started = Date.now();
    const pushed = await replicateOnce(source, remote, {}, 60_000);
    t.diagnostic(`push: ${Date.now() - started} ms, docs_read ${pushed.docs_read}, docs_written ${pushed.docs_written}`);
    assertCleanResult(pushed, 'push');

    started = Date.now();
    const onDivan = await snapshotDivan(node, dbName, corpus.ids);
    t.diagnostic(`HTTP snapshot of ${DOCS} docs: ${Date.now() - started} ms`);
    assertSameSnapshot(onDivan, expected, 'Divan after push vs source');

    // Winners by CouchDB's rule, and every leaf (deleted ones too) kept.
    for (const [id, shape] of corpus.conflicted) {
      const state = onDivan.get(id)!;
      assert.deepEqual(
        { rev: state.rev, deleted: state.deleted, conflicts: state.conflicts },
        expectedConflictState(id, shape),
        `${id} (${shape.name})`,
      );
    }
    const conflictedIds = [...corpus.conflicted.keys()];
    const divanLeafSets = await mapLimit(conflictedIds, 8, (id) => divanLeaves(dbName, id));
    conflictedIds.forEach((id, i) => {
      const shape = corpus.conflicted.get(id)!;
      assert.deepEqual(divanLeafSets[i], shape.leaves.map((leaf) => leafRev(id, leaf)).sort(), `leaves of ${id} on Divan`);
    });

    const info = await request(node, 'GET', `/${dbName}`);
    assert.equal(info.status, 200);
    assert.equal(info.body.doc_count, DOCS - deletedCount, 'doc_count counts documents whose winner is live');
    assert.equal(info.body.doc_del_count, deletedCount, 'doc_del_count counts documents whose winner is deleted');

    const sampleIds = [...corpus.attachments.keys()].filter((_, i) => i % 12 === 0);
    for (const id of sampleIds) {
      assert.deepEqual(await divanAttachment(node, dbName, id, ATT_NAME), corpus.attachments.get(id), `attachment bytes of ${id} on Divan`);
    }

    started = Date.now();
    const pulled = await replicateOnce(remote, copy, {}, 60_000);
    t.diagnostic(`pull: ${Date.now() - started} ms, docs_read ${pulled.docs_read}, docs_written ${pulled.docs_written}`);
    assertCleanResult(pulled, 'pull');

    assertSameSnapshot(await snapshotPouch(copy, corpus.ids), expected, 'fresh copy vs source');
    for (const id of conflictedIds) {
      assert.deepEqual(await pouchLeaves(copy, id), await pouchLeaves(source, id), `leaves of ${id} in the fresh copy`);
    }
    // PouchDB hangs a `type` property on the Buffers it returns: compare bytes only.
    for (const [id, data] of corpus.attachments) {
      assert.deepEqual(Buffer.from(await copy.getAttachment(id, ATT_NAME)), data, `attachment bytes of ${id} in the fresh copy`);
    }
    // Attachments on losing branches travel too.
    for (const [id, shape] of corpus.conflicted) {
      for (const leaf of shape.leaves.filter((l) => l.attachment)) {
        const bytes = await copy.getAttachment(id, CONFLICT_ATT_NAME, { rev: leafRev(id, leaf) });
        assert.deepEqual(Buffer.from(bytes), branchBytes(id, leaf), `attachment of ${id} on branch ${leaf.label} in the fresh copy`);
      }
    }
  } finally {
    await remote.close();
    await source.destroy();
    await copy.destroy();
  }
});

test('replication resumes from its checkpoint', async (t) => {
  const FIRST = 600;
  const SECOND = 150;
  const TOTAL = FIRST + SECOND;
  const dbName = uniqueDb('pouch-resume');
  await createDb(dbName);
  const source = localDb('resume-source');
  const sink = localDb('resume-sink');
  const remote = remoteDb(node, dbName);
  try {
    // Push in two phases: the second run reads only what is new.
    await source.bulkDocs(simpleDocs('r', 0, FIRST));
    const first = await replicateOnce(source, remote);
    assertCleanResult(first, 'first push');
    assert.equal(first.docs_read, FIRST);
    await source.bulkDocs(simpleDocs('r', FIRST, TOTAL));
    const second = await replicateOnce(source, remote);
    assertCleanResult(second, 'second push');
    t.diagnostic(`second push docs_read ${second.docs_read} of ${TOTAL}`);
    assert.equal(second.docs_read, SECOND, 'second push read only the new documents');
    assert.equal(second.docs_written, SECOND);

    const pushCheckpoints = await localCheckpoints(dbName);
    assert.equal(pushCheckpoints.length, 1, `one push checkpoint on Divan: ${JSON.stringify(pushCheckpoints)}`);
    assert.match(pushCheckpoints[0]!.id, /^_local\//);
    assert.equal(typeof pushCheckpoints[0]!.doc.session_id, 'string', 'checkpoint has a session_id');
    assert.ok(Array.isArray(pushCheckpoints[0]!.doc.history), 'checkpoint has a history');
    const direct = await request(node, 'GET', `/${dbName}/${pushCheckpoints[0]!.id}`);
    assert.equal(direct.status, 200, `GET ${pushCheckpoints[0]!.id}: ${direct.text}`);
    assert.deepEqual(direct.body.last_seq, pushCheckpoints[0]!.doc.last_seq);

    // Pull, cancelled after some batches; the rerun starts from the checkpoint.
    const partial = PouchDB.replicate(remote, sink, { batch_size: 50, batches_limit: 1 });
    let writtenAtCancel = 0;
    partial.on('change', (info: ReplicationResult) => {
      if (writtenAtCancel === 0 && info.docs_written >= 200) {
        writtenAtCancel = info.docs_written;
        partial.cancel();
      }
    });
    const partialResult = await withDeadline(partial, 30_000, 'partial pull');
    t.diagnostic(`partial pull: cancelled at ${writtenAtCancel}, docs_written ${partialResult.docs_written}`);
    assert.ok(writtenAtCancel > 0 && partialResult.docs_written < TOTAL, `the first pull stopped early (wrote ${partialResult.docs_written})`);

    const rest = await replicateOnce(remote, sink);
    assertCleanResult(rest, 'resumed pull');
    t.diagnostic(`resumed pull docs_read ${rest.docs_read} of ${TOTAL}`);
    assert.ok(rest.docs_read < TOTAL, `resumed pull read ${rest.docs_read} of ${TOTAL}: it started over`);
    assert.ok(partialResult.docs_written + rest.docs_read >= TOTAL, 'the two pulls together read everything');

    const ids = simpleDocs('r', 0, TOTAL).map((d) => d._id as string);
    const inSink = await snapshotPouch(sink, ids);
    assertSameSnapshot(inSink, await snapshotPouch(source, ids), 'pulled copy vs source');

    const checkpoints = await localCheckpoints(dbName);
    assert.equal(checkpoints.length, 2, `push and pull checkpoints on Divan: ${checkpoints.map((c) => c.id).join(', ')}`);
  } finally {
    await remote.close();
    await source.destroy();
    await sink.destroy();
  }
});

test('live two-way sync carries writes both ways', async () => {
  const dbName = uniqueDb('pouch-sync');
  await createDb(dbName);
  const local = localDb('sync');
  const remote = remoteDb(node, dbName);
  const sync = local.sync(remote, { live: true, retry: true });
  const errors: unknown[] = [];
  sync.on('error', (err: unknown) => errors.push(err));
  sync.on('denied', (err: unknown) => errors.push(err));
  try {
    const fromLocal = await local.put({ _id: 'from-local', side: 'pouch' });
    await waitFor(
      async () => {
        const reply = await request(node, 'GET', `/${dbName}/from-local`);
        return reply.status === 200 && reply.body._rev === fromLocal.rev;
      },
      10_000,
      'local write on Divan',
    );

    const fromServer = await request(node, 'PUT', `/${dbName}/from-server`, { body: { side: 'divan' } });
    assert.equal(fromServer.status, 201, fromServer.text);
    const seenLocally = await waitFor(
      () => local.get('from-server').then((doc) => (doc._rev === fromServer.body.rev ? doc : undefined), () => undefined),
      10_000,
      'server write in PouchDB',
    );
    assert.equal(seenLocally.side, 'divan');

    // An edit of the server's document made locally, and a deletion made on the server.
    const edited = await local.put({ ...seenLocally, side: 'edited locally' });
    await waitFor(
      async () => (await request(node, 'GET', `/${dbName}/from-server`)).body?._rev === edited.rev,
      10_000,
      'local edit on Divan',
    );
    const deleted = await request(node, 'DELETE', `/${dbName}/from-local?rev=${fromLocal.rev}`);
    assert.equal(deleted.status, 200, deleted.text);
    await waitFor(
      () => local.get('from-local').then(() => false, (err: { status?: number }) => err.status === 404),
      10_000,
      'server deletion in PouchDB',
    );
    const [row] = (await local.allDocs({ keys: ['from-local'] })).rows;
    assert.deepEqual(row.value, { rev: deleted.body.rev, deleted: true });
    assert.deepEqual(errors, []);
  } finally {
    await cancelAndWait(sync);
    await remote.close();
    await local.destroy();
  }
});

test('live pull sees a server write', async (t) => {
  const dbName = uniqueDb('pouch-live');
  await createDb(dbName);
  await bulkWrite(node, dbName, simpleDocs('seed', 0, 20));
  const local = localDb('live');
  const remote = remoteDb(node, dbName);
  const pull = PouchDB.replicate(remote, local, { live: true });
  const errors: unknown[] = [];
  pull.on('error', (err: unknown) => errors.push(err));
  try {
    await nextEvent(pull, 'paused', 10_000); // caught up with the seed
    assert.equal((await local.info()).doc_count, 20);

    const written = await request(node, 'PUT', `/${dbName}/late`, { body: { late: true } });
    assert.equal(written.status, 201, written.text);
    const started = Date.now();
    await waitFor(
      () => local.get('late').then((doc) => doc._rev === written.body.rev, () => false),
      10_000,
      'server write in the live pull',
    );
    t.diagnostic(`live pull latency ${Date.now() - started} ms`);
    assert.deepEqual(errors, []);
  } finally {
    await cancelAndWait(pull);
    await remote.close();
    await local.destroy();
  }
});

test('pull interrupted by kill -9 resumes after restart', async (t) => {
  const DOCS = 3000;
  const dbName = uniqueDb('pouch-kill');
  await createDb(dbName);
  const docs = simpleDocs('k', 0, DOCS);
  const written = await bulkWrite(node, dbName, docs);
  // Give some documents a second revision.
  await bulkWrite(
    node,
    dbName,
    written.filter((_, i) => i % 7 === 0).map((r) => ({ _id: r.id, _rev: r.rev, n: -1, edited: true })),
  );
  const ids = docs.map((d) => d._id as string);
  const local = localDb('kill');
  let remote = remoteDb(node, dbName);
  muteInfoFailures(remote);
  try {
    const interrupted = PouchDB.replicate(remote, local, { batch_size: 100, batches_limit: 1 });
    let killing: Promise<void> | undefined;
    let writtenAtKill = 0;
    interrupted.on('change', (info: ReplicationResult) => {
      if (!killing && info.docs_written >= 900) {
        writtenAtKill = info.docs_written;
        killing = node.kill9();
      }
    });
    const outcome = await withDeadline(
      Promise.resolve(interrupted).then(
        (result) => ({ kind: 'completed' as const, result }),
        (error: unknown) => ({ kind: 'failed' as const, error }),
      ),
      60_000,
      'interrupted pull',
    );
    assert.ok(killing, 'the node was killed during the pull');
    await killing;
    t.diagnostic(`killed at docs_written ${writtenAtKill}; first pull ${outcome.kind}`);
    assert.ok(
      outcome.kind === 'failed' || outcome.result.docs_written < DOCS,
      'the first pull did not finish: the kill landed mid-replication',
    );

    node = await node.restart();
    await remote.close();
    remote = remoteDb(node, dbName);
    const info = await request(node, 'GET', `/${dbName}`);
    assert.equal(info.status, 200, info.text);
    assert.equal(info.body.doc_count, DOCS, 'acknowledged writes survived kill -9');
    const checkpoints = await localCheckpoints(dbName);
    assert.equal(checkpoints.length, 1, 'the acknowledged checkpoint survived kill -9');

    const resumed = await replicateOnce(remote, local, { batch_size: 100 });
    assertCleanResult(resumed, 'pull after restart');
    t.diagnostic(`pull after restart docs_read ${resumed.docs_read} of ${DOCS}`);
    assert.ok(resumed.docs_read < DOCS, `pull after restart read ${resumed.docs_read} of ${DOCS}: it started over`);

    const onDivan = await snapshotPouch(remote, ids);
    assert.equal(onDivan.size, DOCS);
    assertSameSnapshot(await snapshotPouch(local, ids), onDivan, 'local copy vs Divan');
  } finally {
    await remote.close();
    await local.destroy();
  }
});
