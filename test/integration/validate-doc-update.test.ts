/**
 * validate_doc_update and design-document checks against a live node: every client
 * write path runs the VDUs (PUT, POST, DELETE, _bulk_docs with and without
 * new_edits, attachment PUT/DELETE, COPY), with CouchDB's arguments and answers;
 * several VDUs all run; edits and removals take effect on the next write; a VDU
 * that loops forever fails the write and the node keeps serving; escapes from the
 * sandbox are contained; broken design documents are refused with
 * invalid_design_doc or compilation_error.
 */
import { escapeAttempts } from '../helpers/sandbox-escapes';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDb, request, startNode, TestNode } from '../helpers/node-process';

let node: TestNode;
let configDir: string;

before(async () => {
  configDir = mkdtempSync(path.join(os.tmpdir(), 'divan-vdu-'));
  const configFile = path.join(configDir, 'config.json');
  writeFileSync(configFile, JSON.stringify({ jsTimeoutMs: 500 }));
  node = await startNode({ args: ['-c', configFile] });
});
after(async () => {
  await node.destroy();
  rmSync(configDir, { recursive: true, force: true });
});

/** A VDU that refuses `bad: true`, asks for authentication on `auth: true`, and records what it saw in `log`. */
const guard = `function (newDoc, oldDoc, userCtx, secObj) {
  if (newDoc.bad) throw({ forbidden: 'bad doc ' + newDoc._id });
  if (newDoc.auth) throw({ unauthorized: 'who are you' });
  if (newDoc.spy) throw({ forbidden: JSON.stringify({ newDoc: newDoc, oldDoc: oldDoc, userCtx: userCtx, secObj: secObj }) });
  if (newDoc._deleted && oldDoc && oldDoc.keep) throw({ forbidden: 'keep ' + newDoc._id });
}`;

async function put(db: string, id: string, body: unknown, query = ''): Promise<{ status: number; body: any }> {
  const res = await request(node, 'PUT', `/${db}/${id}${query}`, { body });
  return { status: res.status, body: res.body };
}

async function withGuard(): Promise<string> {
  const db = await createDb(node, 'vdu');
  const res = await put(db, '_design/guard', { validate_doc_update: guard });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return db;
}

/** The arguments the VDU saw, from its `spy` refusal. */
function spied(reply: { status: number; body: any }): any {
  assert.equal(reply.status, 403, JSON.stringify(reply.body));
  assert.equal(reply.body.error, 'forbidden');
  return JSON.parse(reply.body.reason);
}

describe('validate_doc_update on every write path', () => {
  test('PUT: forbidden → 403, unauthorized → 401, passing docs are written', async () => {
    const db = await withGuard();
    assert.equal((await put(db, 'ok', { a: 1 })).status, 201);
    const bad = await put(db, 'b', { bad: true });
    assert.deepEqual([bad.status, bad.body], [403, { error: 'forbidden', reason: 'bad doc b' }]);
    const auth = await put(db, 'c', { auth: true });
    assert.deepEqual([auth.status, auth.body], [401, { error: 'unauthorized', reason: 'who are you' }]);
    assert.equal((await request(node, 'GET', `/${db}/b`)).status, 404);
  });

  test('newDoc, oldDoc, userCtx and secObj are what CouchDB passes', async () => {
    const db = await withGuard();
    const sec = { admins: { names: ['boss'], roles: [] }, members: { names: [], roles: ['staff'] } };
    assert.equal((await request(node, 'PUT', `/${db}/_security`, { body: sec })).status, 200);
    // A new document: no _rev, oldDoc null.
    let seen = spied(await put(db, 'n', { spy: true, x: 1 }));
    assert.deepEqual(seen.newDoc, { _id: 'n', spy: true, x: 1 });
    assert.equal(seen.oldDoc, null);
    assert.deepEqual(seen.userCtx, { db, name: 'admin', roles: ['_admin'] });
    assert.deepEqual(seen.secObj, sec);
    // An update: newDoc carries the rev it replaces, oldDoc is that revision.
    const first = await put(db, 'u', { v: 1 });
    seen = spied(await put(db, 'u', { _rev: first.body.rev, spy: true }));
    const [pos, hash] = first.body.rev.split('-');
    assert.deepEqual(seen.newDoc, { _id: 'u', _rev: first.body.rev, spy: true, _revisions: { start: Number(pos), ids: [hash] } });
    assert.deepEqual(seen.oldDoc, { _id: 'u', _rev: first.body.rev, v: 1, _revisions: { start: Number(pos), ids: [hash] } });
  });

  test('DELETE: newDoc has _deleted: true and oldDoc the current revision', async () => {
    const db = await withGuard();
    const kept = await put(db, 'k', { keep: true });
    const del = await request(node, 'DELETE', `/${db}/k?rev=${kept.body.rev}`);
    assert.deepEqual([del.status, del.body], [403, { error: 'forbidden', reason: 'keep k' }]);
    const plain = await put(db, 'p', { keep: false });
    assert.equal((await request(node, 'DELETE', `/${db}/p?rev=${plain.body.rev}`)).status, 200);
  });

  test('POST /db', async () => {
    const db = await withGuard();
    const bad = await request(node, 'POST', `/${db}`, { body: { _id: 'pb', bad: true } });
    assert.deepEqual([bad.status, bad.body], [403, { error: 'forbidden', reason: 'bad doc pb' }]);
    assert.equal((await request(node, 'POST', `/${db}`, { body: { fine: true } })).status, 201);
  });

  test('_bulk_docs: refused docs get per-doc errors, the others are written', async () => {
    const db = await withGuard();
    const docs = [{ _id: 'a' }, { _id: 'b', bad: true }, { _id: 'c' }, { _id: 'd', auth: true }, { _id: '_local/l', bad: true }];
    const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body[0].ok, true);
    assert.deepEqual(res.body[1], { id: 'b', error: 'forbidden', reason: 'bad doc b' });
    assert.equal(res.body[2].ok, true);
    assert.deepEqual(res.body[3], { id: 'd', error: 'unauthorized', reason: 'who are you' });
    assert.equal(res.body[4].ok, true, 'VDUs do not run on _local docs');
    const all = await request(node, 'GET', `/${db}/_all_docs`);
    assert.deepEqual(all.body.rows.map((r: { id: string }) => r.id), ['_design/guard', 'a', 'c']);
  });

  test('_bulk_docs new_edits=false: refused revisions are reported, newDoc has the new rev, oldDoc its stored ancestor', async () => {
    const db = await withGuard();
    const base = await put(db, 'r', { v: 1 });
    const [, hash] = base.body.rev.split('-');
    const docs = [
      { _id: 'r', _rev: '2-bbbb', _revisions: { start: 2, ids: ['bbbb', hash] }, spy: true },
      { _id: 'x', _rev: '1-aaaa', bad: true },
      { _id: 'y', _rev: '1-cccc' },
    ];
    const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs, new_edits: false } });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.length, 2);
    const seen = JSON.parse(res.body[0].reason);
    assert.equal(res.body[0].id, 'r');
    assert.deepEqual(seen.newDoc, { _id: 'r', _rev: '2-bbbb', spy: true, _revisions: { start: 2, ids: ['bbbb', hash] } });
    assert.deepEqual(seen.oldDoc, { _id: 'r', _rev: base.body.rev, v: 1, _revisions: { start: 1, ids: [hash] } });
    assert.deepEqual(res.body[1], { id: 'x', error: 'forbidden', reason: 'bad doc x' });
    assert.equal((await request(node, 'GET', `/${db}/y`)).status, 200);
  });

  test('attachment PUT and DELETE run the VDUs', async () => {
    const db = await createDb(node, 'vdu');
    const noAtts = `function (newDoc) {
      var atts = newDoc._attachments || {};
      if (atts['no.txt']) throw({ forbidden: 'no attachment named no.txt' });
      if (newDoc.sealed && !atts['seal.txt']) throw({ forbidden: 'the seal stays' });
    }`;
    assert.equal((await put(db, '_design/atts', { validate_doc_update: noAtts })).status, 201);
    const doc = await put(db, 'd', { sealed: false });
    const refused = await request(node, 'PUT', `/${db}/d/no.txt?rev=${doc.body.rev}`, { raw: 'x', headers: { 'content-type': 'text/plain' } });
    assert.deepEqual([refused.status, refused.body], [403, { error: 'forbidden', reason: 'no attachment named no.txt' }]);
    const sealed = await put(db, 's', { sealed: true, _attachments: { 'seal.txt': { content_type: 'text/plain', data: 'eA==' } } });
    assert.equal(sealed.status, 201, JSON.stringify(sealed.body));
    const unseal = await request(node, 'DELETE', `/${db}/s/seal.txt?rev=${sealed.body.rev}`);
    assert.deepEqual([unseal.status, unseal.body], [403, { error: 'forbidden', reason: 'the seal stays' }]);
    const ok = await request(node, 'PUT', `/${db}/d/yes.txt?rev=${doc.body.rev}`, { raw: 'y', headers: { 'content-type': 'text/plain' } });
    assert.equal(ok.status, 201, ok.text);
  });

  test('COPY runs the VDUs on the copy', async () => {
    const db = await createDb(node, 'vdu');
    const noCopies = `function (newDoc) { if (newDoc._id.indexOf('copy-') === 0) throw({ forbidden: 'no copies' }); }`;
    assert.equal((await put(db, '_design/nc', { validate_doc_update: noCopies })).status, 201);
    assert.equal((await put(db, 'src', { a: 1 })).status, 201);
    const refused = await request(node, 'COPY', `/${db}/src`, { headers: { destination: 'copy-1' } });
    assert.deepEqual([refused.status, refused.body], [403, { error: 'forbidden', reason: 'no copies' }]);
    assert.equal((await request(node, 'COPY', `/${db}/src`, { headers: { destination: 'other' } })).status, 201);
  });
});

describe('several VDUs, edits and removals', () => {
  test('every VDU runs, in design document id order; the first refusal decides', async () => {
    const db = await createDb(node, 'vdu');
    await put(db, '_design/b', { validate_doc_update: `function (d) { if (d.n > 10) throw({ forbidden: 'b: too big' }); }` });
    await put(db, '_design/a', { validate_doc_update: `function (d) { if (d.n > 5) throw({ forbidden: 'a: too big' }); }` });
    await put(db, '_design/c', { validate_doc_update: `function (d) { if (d.n < 0) throw({ forbidden: 'c: negative' }); }` });
    await put(db, '_design/nofn', { views: { v: { map: 'function (d) { emit(d._id) }' } } });
    assert.equal((await put(db, 'one', { n: 1 })).status, 201);
    assert.equal((await put(db, 'six', { n: 6 })).body.reason, 'a: too big');
    assert.equal((await put(db, 'big', { n: 11 })).body.reason, 'a: too big');
    assert.equal((await put(db, 'neg', { n: -1 })).body.reason, 'c: negative');
  });

  test('a VDU edited or removed takes effect on the next write', async () => {
    const db = await createDb(node, 'vdu');
    const v1 = await put(db, '_design/v', { validate_doc_update: `function (d) { if (d.color !== 'red') throw({ forbidden: 'red only' }); }` });
    assert.equal((await put(db, 'a', { color: 'blue' })).status, 403);
    const v2 = await put(db, '_design/v', { _rev: v1.body.rev, validate_doc_update: `function (d) { if (d.color !== 'blue') throw({ forbidden: 'blue only' }); }` });
    assert.equal(v2.status, 201);
    assert.equal((await put(db, 'a', { color: 'blue' })).status, 201);
    assert.equal((await put(db, 'b', { color: 'red' })).body.reason, 'blue only');
    assert.equal((await request(node, 'DELETE', `/${db}/_design/v?rev=${v2.body.rev}`)).status, 200);
    assert.equal((await put(db, 'b', { color: 'red' })).status, 201);
  });

  test('a VDU that loops forever fails the write with the sandbox error; the node keeps serving', async () => {
    const db = await createDb(node, 'vdu');
    await put(db, '_design/loop', { validate_doc_update: `function (d) { if (d.loop) for (;;) {} }` });
    const [looped, up] = await Promise.all([put(db, 'l', { loop: true }), request(node, 'GET', '/_up')]);
    assert.equal(up.status, 200);
    assert.equal(looped.status, 500);
    assert.equal(looped.body.error, 'os_process_error');
    assert.match(looped.body.reason, /deadline/);
    assert.equal((await put(db, 'fine', { loop: false })).status, 201);
    const bulk = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs: [{ _id: 'x' }, { _id: 'y', loop: true }] } });
    assert.equal(bulk.status, 201);
    assert.equal(bulk.body[0].error, 'os_process_error', 'a timeout fails the whole sandbox call');
  });

  test('a VDU throwing something other than forbidden/unauthorized fails that document only', async () => {
    const db = await createDb(node, 'vdu');
    await put(db, '_design/t', { validate_doc_update: `function (d) { if (d.boom) null.x; if (d.str) throw 'nope'; if (d.zig) throw { zig: 'blah' }; }` });
    const docs = [{ _id: 'x' }, { _id: 'y', boom: true }, { _id: 's', str: true }, { _id: 'z', zig: true }];
    const bulk = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
    assert.equal(bulk.body[0].ok, true);
    assert.equal(bulk.body[1].error, 'os_process_error');
    assert.match(bulk.body[1].reason, /TypeError/);
    assert.deepEqual(bulk.body.slice(2), [{ id: 's', error: 'unknown_error', reason: 'nope' }, { id: 'z', error: 'unknown_error', reason: 'blah' }]);
    const single = await put(db, 's', { str: true });
    assert.deepEqual([single.status, single.body], [500, { error: 'unknown_error', reason: 'nope' }]);
  });
});

describe('sandbox escapes through a VDU are contained', () => {
  for (const [what, code] of escapeAttempts) {
    test(what, async () => {
      const db = await createDb(node, 'vdu');
      const vdu = `function (d) { var r; try { r = ${code}; } catch (e) { throw({ forbidden: 'contained: ' + e }); } throw({ forbidden: 'escaped: ' + typeof r }); }`;
      const created = await put(db, '_design/esc', { validate_doc_update: vdu });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const res = await put(db, 'x', {});
      assert.equal(res.status, 403, JSON.stringify(res.body));
      // A dynamic import answers a promise (rejected in the guest); nothing else may get past the try.
      if (what === 'dynamic import') assert.match(res.body.reason, /contained|escaped: object/);
      else assert.match(res.body.reason, /^contained: /);
      assert.equal((await request(node, 'GET', '/_up')).status, 200);
    });
  }
});

describe('design documents are checked on write', () => {
  const invalid: [string, unknown][] = [
    ['views not an object', { views: 'x' }],
    ['a view without a map', { views: { v: { reduce: '_count' } } }],
    ['a map that is not a string', { views: { v: { map: 1 } } }],
    ['filters not an object', { filters: ['function () {}'] }],
    ['a filter not a string', { filters: { f: 1 } }],
    ['validate_doc_update not a string', { validate_doc_update: { a: 1 } }],
    ['an unknown language', { language: 'cobol' }],
    ['a language that is not a string', { language: 1 }],
    ['shows not an object', { shows: 1 }],
    ['options not an object', { options: [] }],
    ['an unknown built-in reduce', { views: { v: { map: 'function (doc) {}', reduce: '_median' } } }],
    ['a reduce that is not a string', { views: { v: { map: 'function (doc) {}', reduce: 1 } } }],
    ['a view that is not an object', { views: { v: 'function (doc) {}' } }],
    ['a show that is neither a string nor an object', { shows: { s: 1 } }],
    ['rewrites neither a string nor an array', { rewrites: 42 }],
    ['a query view whose map is a string', { language: 'query', views: { v: { map: 'function (d) {}' } } }],
  ];
  for (const [what, ddoc] of invalid) {
    test(`invalid_design_doc: ${what}`, async () => {
      const db = await createDb(node, 'ddoc');
      const res = await put(db, '_design/x', ddoc);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error, 'invalid_design_doc');
      const bulk = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs: [{ _id: '_design/y', ...(ddoc as object) }, { _id: 'plain' }] } });
      assert.equal(bulk.body[0].error, 'invalid_design_doc');
      assert.equal(bulk.body[1].ok, true);
    });
  }

  const uncompilable: [string, unknown][] = [
    ['a map', { views: { v: { map: 'function (doc) { emit(' } } }],
    ['a reduce', { views: { v: { map: 'function (doc) {}', reduce: 'function (k, v) { return }}' } } }],
    ['a filter', { filters: { f: 'function (doc, req) { return doc. }' } }],
    ['validate_doc_update', { validate_doc_update: 'function (newDoc) { if ( }' }],
    ['not a function', { validate_doc_update: '42' }],
  ];
  for (const [what, ddoc] of uncompilable) {
    test(`compilation_error: ${what}`, async () => {
      const db = await createDb(node, 'ddoc');
      const res = await put(db, '_design/x', ddoc);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error, 'compilation_error');
    });
  }

  test('language "query" design documents are accepted without compiling; VDUs do not run on design documents', async () => {
    const db = await withGuard();
    const mango = { language: 'query', views: { byName: { map: { fields: { name: 'asc' } }, reduce: '_count', options: { def: { fields: ['name'] } } } } };
    assert.equal((await put(db, '_design/mango', mango)).status, 201);
    assert.equal((await put(db, '_design/bad-but-design', { bad: true })).status, 201);
    const good = {
      views: { v: { map: 'function (doc) { emit(doc._id, 1) }', reduce: '_sum' }, lib: { x: 'exports.y = 1' } },
      filters: { f: 'function (doc, req) { return require("filters/mylib/lib1").ok }', mylib: { lib1: 'exports.ok = true' } },
      shows: { mylib: { lib1: 'x=42' } },
      options: { anything: true },
      rewrites: 'function (req) {}',
    };
    assert.equal((await put(db, '_design/good', good)).status, 201);
  });
});
