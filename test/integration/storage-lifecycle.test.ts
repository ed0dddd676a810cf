/**
 * The storage lifecycle of issue 13 on a real node process: older revisions stay
 * readable until compaction and are gone after it; `_compact` runs online (a write and
 * read load keeps answering, nothing acknowledged is lost) and frees space, also
 * attachments no revision refers to any more, but never one a revision still refers
 * to; a compaction killed with kill -9 resumes on restart; the automatic policy
 * compacts on its own; `_purge` removes revisions for good (counts, `_changes`, views,
 * Mango indexes, `purge_seq`, `_purged_infos_limit`), and a purged revision replicated
 * back by a client is accepted again, as in CouchDB; sizes are true for a 1-doc database.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDb, request, startNode, TestNode, waitFor } from '../helpers/node-process';

let node: TestNode;

function configFile(settings: Record<string, unknown>): string {
  const file = path.join(os.tmpdir(), `divan-lifecycle-${process.pid}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(settings));
  return file;
}

before(async () => {
  // The automatic policy stays off here: compactions happen when a test asks.
  node = await startNode({ args: ['--config', configFile({ compactionAuto: 0 })] });
});
after(async () => {
  await node?.destroy();
});

async function compacted(target: TestNode, db: string): Promise<void> {
  const started = await request(target, 'POST', `/${db}/_compact`, { body: {} });
  assert.equal(started.status, 202);
  assert.deepEqual(started.body, { ok: true });
  await waitFor(async () => (await request(target, 'GET', `/${db}`)).body.compact_running === false, 60_000, 'compaction to finish');
}

async function edit(db: string, id: string, times: number, extra: Record<string, unknown> = {}): Promise<string[]> {
  const revs: string[] = [];
  let rev: string | undefined;
  for (let i = 0; i < times; i++) {
    const reply = await request(node, 'PUT', `/${db}/${id}`, { body: { ...(rev ? { _rev: rev } : {}), step: i, ...extra } });
    assert.equal(reply.status, 201, JSON.stringify(reply.body));
    rev = reply.body.rev as string;
    revs.push(rev);
  }
  return revs;
}

describe('older revisions until compaction', () => {
  test('?rev= of an older revision answers its body, revs_info says available; after _compact: missing', async () => {
    const db = await createDb(node, 'old-revs');
    const revs = await edit(db, 'doc', 3);
    const first = await request(node, 'GET', `/${db}/doc?rev=${revs[0]}`);
    assert.equal(first.status, 200);
    assert.equal(first.body.step, 0);
    assert.equal(first.body._rev, revs[0]);
    const info = await request(node, 'GET', `/${db}/doc?revs_info=true`);
    assert.deepEqual(
      info.body._revs_info.map((r: { status: string }) => r.status),
      ['available', 'available', 'available'],
    );
    const openRevs = await request(node, 'GET', `/${db}/doc?open_revs=${encodeURIComponent(JSON.stringify([revs[1]]))}`, { headers: { accept: 'application/json' } });
    assert.equal(openRevs.body[0].ok.step, 1);

    const before = (await request(node, 'GET', `/${db}`)).body;
    await compacted(node, db);
    const afterInfo = (await request(node, 'GET', `/${db}`)).body;
    assert.equal(afterInfo.update_seq, before.update_seq, 'compaction leaves update_seq as it was');
    assert.equal(afterInfo.doc_count, 1);

    const gone = await request(node, 'GET', `/${db}/doc?rev=${revs[0]}`);
    assert.equal(gone.status, 404);
    assert.deepEqual(gone.body, { error: 'not_found', reason: 'missing' });
    const statuses = (await request(node, 'GET', `/${db}/doc?revs_info=true`)).body._revs_info.map((r: { status: string }) => r.status);
    assert.deepEqual(statuses, ['available', 'missing', 'missing']);
    const latest = await request(node, 'GET', `/${db}/doc`);
    assert.equal(latest.body._rev, revs[2]);
    assert.equal(latest.body.step, 2);
    // Both branches of a conflict are leaves: compaction keeps both bodies.
    const conflict = await request(node, 'POST', `/${db}/_bulk_docs`, {
      body: {
        new_edits: false,
        docs: [
          { _id: 'c', _rev: '2-aa', v: 'a', _revisions: { start: 2, ids: ['aa', 'root'] } },
          { _id: 'c', _rev: '2-bb', v: 'b', _revisions: { start: 2, ids: ['bb', 'root'] } },
        ],
      },
    });
    assert.equal(conflict.status, 201);
    await compacted(node, db);
    assert.equal((await request(node, 'GET', `/${db}/c?rev=2-aa`)).body.v, 'a');
    assert.equal((await request(node, 'GET', `/${db}/c?rev=2-bb`)).body.v, 'b');
  });

  test('an attachment of an older revision is served until compaction, then freed; one still referenced stays', async () => {
    const db = await createDb(node, 'old-atts');
    const one = await request(node, 'PUT', `/${db}/doc`, {
      body: {
        _attachments: {
          'old.bin': { content_type: 'application/octet-stream', data: Buffer.from('first bytes').toString('base64') },
          'kept.bin': { content_type: 'application/octet-stream', data: Buffer.from('kept bytes').toString('base64') },
        },
      },
    });
    assert.equal(one.status, 201);
    const current = (await request(node, 'GET', `/${db}/doc`)).body;
    // The second revision drops old.bin and keeps kept.bin as a stub.
    const two = await request(node, 'PUT', `/${db}/doc`, { body: { _rev: one.body.rev, _attachments: { 'kept.bin': current._attachments['kept.bin'] } } });
    assert.equal(two.status, 201);
    const oldAtt = await request(node, 'GET', `/${db}/doc/old.bin?rev=${one.body.rev}`);
    assert.equal(oldAtt.status, 200);
    assert.equal(oldAtt.text, 'first bytes');
    await compacted(node, db);
    assert.equal((await request(node, 'GET', `/${db}/doc/old.bin?rev=${one.body.rev}`)).status, 404);
    const kept = await request(node, 'GET', `/${db}/doc/kept.bin`);
    assert.equal(kept.status, 200);
    assert.equal(kept.text, 'kept bytes');
  });
});

describe('compaction online', () => {
  test('under a write and read load: no failed request, no lost write, disk use goes down', async () => {
    const db = await createDb(node, 'online', 2);
    const filler = 'x'.repeat(1000);
    const ids = Array.from({ length: 400 }, (_, i) => `d${String(i).padStart(4, '0')}`);
    const revs = new Map<string, string>();
    for (let round = 0; round < 5; round++) {
      const docs = ids.map((id) => ({ _id: id, ...(revs.has(id) ? { _rev: revs.get(id) } : {}), round, filler }));
      const reply = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
      assert.equal(reply.status, 201);
      for (const row of reply.body as { id: string; rev: string }[]) revs.set(row.id, row.rev);
    }
    const sizesBefore = (await request(node, 'GET', `/${db}`)).body.sizes;
    assert.ok(sizesBefore.file > sizesBefore.active * 3, `before: ${JSON.stringify(sizesBefore)}`);

    let stop = false;
    let failures = 0;
    let reads = 0;
    let writes = 0;
    const worker = async (w: number) => {
      for (let i = w; !stop; i += 4) {
        const id = ids[i % ids.length]!;
        if (i % 2 === 0) {
          const got = await request(node, 'GET', `/${db}/${id}`);
          if (got.status !== 200) failures++;
          reads++;
        } else {
          const put = await request(node, 'PUT', `/${db}/${id}`, { body: { _rev: revs.get(id), round: 'load', filler } });
          if (put.status !== 201) failures++;
          else revs.set(id, put.body.rev as string);
          writes++;
        }
      }
    };
    const load = [0, 1, 2, 3].map(worker);
    await compacted(node, db);
    stop = true;
    await Promise.all(load);
    assert.equal(failures, 0);
    assert.ok(reads > 0 && writes > 0);
    // Every acknowledged write is the document's current revision.
    const all = await request(node, 'GET', `/${db}/_all_docs`);
    for (const row of all.body.rows as { id: string; value: { rev: string } }[]) assert.equal(row.value.rev, revs.get(row.id), row.id);
    await compacted(node, db);
    const sizesAfter = (await request(node, 'GET', `/${db}`)).body.sizes;
    assert.ok(sizesAfter.file < sizesBefore.file / 2, `after ${JSON.stringify(sizesAfter)} vs before ${JSON.stringify(sizesBefore)}`);
    assert.ok(sizesAfter.active <= sizesAfter.file);
  });

  test('attachments referenced by revisions written during compaction are never freed', async () => {
    const db = await createDb(node, 'att-race');
    const ids = Array.from({ length: 60 }, (_, i) => `a${i}`);
    const revs = new Map<string, string>();
    for (const id of ids) {
      const put = await request(node, 'PUT', `/${db}/${id}`, {
        body: { _attachments: { 'f.txt': { content_type: 'application/octet-stream', data: Buffer.from(`bytes of ${id}`).toString('base64') } } },
      });
      revs.set(id, put.body.rev as string);
    }
    let stop = false;
    const churn = (async () => {
      for (let i = 0; !stop; i++) {
        const id = ids[i % ids.length]!;
        const doc = (await request(node, 'GET', `/${db}/${id}`)).body;
        // Keep the attachment as a stub, and add a new one each time (old ones become garbage).
        const put = await request(node, 'PUT', `/${db}/${id}`, {
          body: {
            _rev: doc._rev,
            _attachments: {
              'f.txt': doc._attachments['f.txt'],
              'n.txt': { content_type: 'application/octet-stream', data: Buffer.from(`n${i}`).toString('base64') },
            },
          },
        });
        assert.equal(put.status, 201);
      }
    })();
    for (let i = 0; i < 3; i++) await compacted(node, db);
    stop = true;
    await churn;
    await compacted(node, db);
    for (const id of ids) {
      const doc = (await request(node, 'GET', `/${db}/${id}?attachments=true`)).body;
      assert.equal(Buffer.from(doc._attachments['f.txt'].data, 'base64').toString(), `bytes of ${id}`);
      if (doc._attachments['n.txt']) assert.ok(Buffer.from(doc._attachments['n.txt'].data, 'base64').length > 0);
    }
  });

  test('_active_tasks shows a running compaction; a compaction killed with kill -9 resumes on restart', async () => {
    const dataNode = await startNode({ args: ['--config', configFile({ compactionAuto: 0, compactionBatchDocs: 1, compactionCheckIntervalMs: 200 })] });
    try {
      const db = await createDb(dataNode, 'resume');
      const docs = Array.from({ length: 3000 }, (_, i) => ({ _id: `r${String(i).padStart(5, '0')}`, v: 0 }));
      let reply = await request(dataNode, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
      const updated = (reply.body as { id: string; rev: string }[]).map((r) => ({ _id: r.id, _rev: r.rev, v: 1 }));
      reply = await request(dataNode, 'POST', `/${db}/_bulk_docs`, { body: { docs: updated } });
      const latest = new Map((reply.body as { id: string; rev: string }[]).map((r) => [r.id, r.rev]));
      assert.equal((await request(dataNode, 'POST', `/${db}/_compact`, { body: {} })).status, 202);
      const task = await waitFor(async () => {
        const tasks = (await request(dataNode, 'GET', '/_active_tasks')).body as { type: string; changes_done: number }[];
        return tasks.find((t) => t.type === 'database_compaction' && t.changes_done > 100);
      }, 30_000, 'a compaction task');
      assert.ok(task);
      // The walk goes in id order: the last document still has its old body, so the kill lands mid-way.
      const last = await request(dataNode, 'GET', `/${db}/r02999?revs_info=true`);
      await dataNode.kill9();
      assert.equal(last.body._revs_info[1].status, 'available', 'the compaction finished before the kill: the test proves nothing');
      const again = await dataNode.restart();
      try {
        // No _compact was posted: the interrupted one resumes by itself and finishes.
        await waitFor(async () => {
          const info = await request(again, 'GET', `/${db}/r02999?revs_info=true`);
          return info.body._revs_info?.[1]?.status === 'missing' && (await request(again, 'GET', `/${db}`)).body.compact_running === false;
        }, 60_000, 'the resumed compaction to finish');
        for (const [id, rev] of [...latest].slice(0, 50)) assert.equal((await request(again, 'GET', `/${db}/${id}`)).body._rev, rev);
        const info = (await request(again, 'GET', `/${db}`)).body;
        assert.equal(info.doc_count, 3000);
      } finally {
        await again.destroy();
      }
    } finally {
      await dataNode.destroy().catch(() => undefined);
    }
  });

  test('the automatic policy compacts a copy that passes its thresholds, with no request', async () => {
    const auto = await startNode({ args: ['--config', configFile({ compactionAuto: 1, compactionCheckIntervalMs: 200, compactionSizeBytesMin: 0, compactionRatioPercentMin: 200 })] });
    try {
      const db = await createDb(auto, 'auto');
      let rev: string | undefined;
      const revs: string[] = [];
      for (let i = 0; i < 6; i++) {
        const put = await request(auto, 'PUT', `/${db}/doc`, { body: { ...(rev ? { _rev: rev } : {}), filler: 'y'.repeat(2000), i } });
        rev = put.body.rev as string;
        revs.push(rev);
      }
      await waitFor(async () => (await request(auto, 'GET', `/${db}/doc?rev=${revs[0]}`)).status === 404, 20_000, 'the policy to compact');
      assert.equal((await request(auto, 'GET', `/${db}/doc`)).body.i, 5);
    } finally {
      await auto.destroy();
    }
  });
});

describe('purge', () => {
  test('purging one leaf of a conflict keeps the other; purging the last removes the document everywhere', async () => {
    const db = await createDb(node, 'purge', 2);
    const put = await request(node, 'POST', `/${db}/_bulk_docs`, {
      body: {
        new_edits: false,
        docs: [
          { _id: 'p', _rev: '2-aa', v: 'a', _revisions: { start: 2, ids: ['aa', 'root'] } },
          { _id: 'p', _rev: '2-bb', v: 'b', _revisions: { start: 2, ids: ['bb', 'root'] } },
          { _id: 'other', _rev: '1-cc', v: 'c' },
        ],
      },
    });
    assert.equal(put.status, 201);
    const ddoc = { views: { byV: { map: 'function (doc) { emit(doc.v, null); }' } } };
    assert.equal((await request(node, 'PUT', `/${db}/_design/v`, { body: ddoc })).status, 201);
    assert.equal((await request(node, 'POST', `/${db}/_index`, { body: { index: { fields: ['v'] }, name: 'by-v' } })).status, 200);
    assert.equal((await request(node, 'GET', `/${db}/_design/v/_view/byV`)).body.rows.length, 2);
    const infoBefore = (await request(node, 'GET', `/${db}`)).body;
    assert.equal(Number(String(infoBefore.purge_seq).split('-')[0]), 0);

    const first = await request(node, 'POST', `/${db}/_purge`, { body: { p: ['2-bb', '1-root', '9-nothere'] } });
    assert.equal(first.status, 201);
    assert.deepEqual(first.body, { purge_seq: null, purged: { p: ['2-bb'] } });
    const left = await request(node, 'GET', `/${db}/p?conflicts=true`);
    assert.equal(left.body._rev, '2-aa');
    assert.equal(left.body._conflicts, undefined);
    assert.equal((await request(node, 'GET', `/${db}/p?rev=2-bb`)).status, 404);

    const second = await request(node, 'POST', `/${db}/_purge`, { body: { p: ['2-aa'] } });
    assert.deepEqual(second.body.purged, { p: ['2-aa'] });
    const history = (await request(node, 'GET', `/${db}/_purged_infos`)).body;
    assert.deepEqual(history, { purged_infos: [{ id: 'p', revs: ['2-bb', '1-root', '9-nothere'] }, { id: 'p', revs: ['2-aa'] }] });
    assert.deepEqual((await request(node, 'GET', `/${db}/p`)).body, { error: 'not_found', reason: 'missing' });
    const infoAfter = (await request(node, 'GET', `/${db}`)).body;
    assert.equal(infoAfter.doc_count, infoBefore.doc_count - 1);
    assert.equal(Number(String(infoAfter.purge_seq).split('-')[0]), 2);
    const changes = (await request(node, 'GET', `/${db}/_changes`)).body.results.map((r: { id: string }) => r.id);
    assert.ok(!changes.includes('p'));
    assert.ok(changes.includes('other'));
    const view = (await request(node, 'GET', `/${db}/_design/v/_view/byV`)).body;
    assert.deepEqual(view.rows.map((r: { id: string }) => r.id), ['other']);
    const found = (await request(node, 'POST', `/${db}/_find`, { body: { selector: { v: { $gt: null } }, use_index: 'by-v' } })).body;
    assert.deepEqual(found.docs.map((d: { _id: string }) => d._id), ['other']);
    // Compaction after a purge keeps everything consistent.
    await compacted(node, db);
    assert.equal((await request(node, 'GET', `/${db}`)).body.doc_count, infoAfter.doc_count);
    const metrics = (await request(node, 'GET', '/_node/_local/_prometheus')).text;
    assert.match(metrics, /divan_purged_revisions_total(\{[^}]*\})? [1-9]/);
    assert.match(metrics, /divan_compactions_total\{result="completed"[^}]*\} [1-9]/);
    assert.match(metrics, /divan_compaction_dropped_total\{kind="body"[^}]*\} [1-9]/);
    assert.match(metrics, /divan_compactions_running(\{[^}]*\})? 0/);

    // A client replicating the purged revision back is accepted (CouchDB's behaviour).
    const back = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { new_edits: false, docs: [{ _id: 'p', _rev: '2-aa', v: 'a', _revisions: { start: 2, ids: ['aa', 'root'] } }] } });
    assert.equal(back.status, 201);
    assert.equal((await request(node, 'GET', `/${db}/p`)).body.v, 'a');
    assert.deepEqual((await request(node, 'GET', `/${db}/_design/v/_view/byV`)).body.rows.map((r: { id: string }) => r.id).sort(), ['other', 'p']);
  });

  test('bad requests get CouchDB errors; _purged_infos_limit reads and sets; purge needs an admin', async () => {
    const db = await createDb(node, 'purge-errors');
    assert.equal((await request(node, 'POST', `/${db}/_purge`, { body: { x: 'not-an-array' } })).status, 400);
    assert.equal((await request(node, 'POST', `/${db}/_purge`, { body: { x: ['bad rev'] } })).status, 400);
    assert.equal((await request(node, 'POST', `/${db}/_purge`, { body: [] })).status, 400);
    const many: Record<string, string[]> = {};
    for (let i = 0; i < 101; i++) many[`id${i}`] = ['1-a'];
    const tooMany = await request(node, 'POST', `/${db}/_purge`, { body: many });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.reason, 'Exceeded maximum number of documents.');
    const empty = await request(node, 'POST', `/${db}/_purge`, { body: {} });
    assert.equal(empty.status, 201);
    assert.deepEqual(empty.body, { purge_seq: null, purged: {} });
    assert.equal((await request(node, 'POST', `/${db}/_purge`, { body: '{}', headers: { 'content-type': 'text/plain' } })).status, 415);
    assert.equal((await request(node, 'POST', `/${db}/_compact`, { body: '{}', headers: { 'content-type': 'text/plain' } })).status, 415);

    assert.equal((await request(node, 'GET', `/${db}/_purged_infos_limit`)).body, 1000);
    assert.equal((await request(node, 'PUT', `/${db}/_purged_infos_limit`, { body: 5 })).status, 200);
    assert.equal((await request(node, 'GET', `/${db}/_purged_infos_limit`)).body, 5);
    assert.equal((await request(node, 'PUT', `/${db}/_purged_infos_limit`, { body: 0 })).status, 400);
    assert.equal((await request(node, 'PUT', `/${db}/_purged_infos_limit`, { body: 'x' })).status, 400);
    const anonymous = await request(node, 'POST', `/${db}/_purge`, { body: {}, auth: false });
    assert.equal(anonymous.status, 401);
    assert.equal((await request(node, 'POST', `/${db}/_compact`, { body: {}, auth: false })).status, 401);
  });

  test('purge history beyond _purged_infos_limit is trimmed by compaction; purge_seq keeps counting', async () => {
    const db = await createDb(node, 'purge-trim');
    assert.equal((await request(node, 'PUT', `/${db}/_purged_infos_limit`, { body: 3 })).status, 200);
    for (let i = 0; i < 8; i++) {
      const put = await request(node, 'PUT', `/${db}/t${i}`, { body: { i } });
      assert.equal((await request(node, 'POST', `/${db}/_purge`, { body: { [`t${i}`]: [put.body.rev] } })).status, 201);
    }
    await compacted(node, db);
    const info = (await request(node, 'GET', `/${db}`)).body;
    assert.equal(Number(String(info.purge_seq).split('-')[0]), 8);
    assert.equal(info.doc_count, 0);
  });
});

describe('sizes', () => {
  test('a 1-doc database reports true sizes; external counts the body and attachments', async () => {
    const db = await createDb(node, 'sizes');
    const empty = (await request(node, 'GET', `/${db}`)).body.sizes;
    assert.deepEqual({ active: empty.active, external: empty.external }, { active: 0, external: 0 });
    const body = { text: 'z'.repeat(500) };
    assert.equal((await request(node, 'PUT', `/${db}/one`, { body: { ...body, _attachments: { 'a.bin': { content_type: 'application/octet-stream', data: Buffer.alloc(300, 7).toString('base64') } } } })).status, 201);
    const sizes = (await request(node, 'GET', `/${db}`)).body.sizes;
    assert.ok(sizes.external >= 800 && sizes.external < 1200, JSON.stringify(sizes));
    assert.ok(sizes.active >= sizes.external, JSON.stringify(sizes));
    assert.ok(sizes.file >= sizes.active, JSON.stringify(sizes));
  });
});
