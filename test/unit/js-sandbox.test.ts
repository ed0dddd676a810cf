/**
 * The user-JavaScript sandbox (src/shard/js/sandbox.ts) with real worker threads and
 * real QuickJS: CouchDB's map/reduce/filter/validate API, compile errors, and that a
 * map function which loops, allocates without end or reaches for Node is contained
 * while the main event loop keeps running.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CompilationError, OsProcessError, UnavailableError } from '../../src/errors';
import { SandboxPool } from '../../src/shard/js/sandbox';
import { defaults, loadConfig } from '../../src/node/config';

let pool: SandboxPool;

before(() => {
  pool = new SandboxPool({ timeoutMs: 1000, memoryBytesMax: 16 * 1024 * 1024, workers: 1 });
});

after(async () => {
  await pool.close();
});

const isOsProcessError = (failure: OsProcessError['failure'], pattern: RegExp) => (err: unknown) =>
  err instanceof OsProcessError && err.token === 'os_process_error' && err.kind === 'internal' && err.failure === failure && pattern.test(err.reason);

test('a batch of documents is mapped in one call: several emits per doc, keys and values of every JSON type', async () => {
  const ddoc = await pool.compile({
    _id: '_design/t',
    views: {
      types: {
        map: `function (doc) {
          emit(null, doc._id); emit(true, 1); emit(false, 1.5); emit(-2, 'x'); emit('s', [1, 'a']);
          emit([doc._id, 2, [null]], { o: { p: true } }); emit({ k: doc.n }, null); emit(undefined);
        }`,
      },
      byN: { map: 'function (doc) { if (doc.n % 2 === 0) emit(doc.n, doc.n * 10) }' },
    },
  });
  assert.deepEqual([...ddoc.views.keys()], ['types', 'byN']);
  const docs = Array.from({ length: 50 }, (_, n) => ({ _id: `d${n}`, n }));
  const result = await pool.mapDocs(ddoc, ['byN', 'types'], docs);
  assert.equal(result.docs.length, 50);
  assert.deepEqual(result.docs[0]![0], [[0, 0]]);
  assert.deepEqual(result.docs[1]![0], []);
  assert.deepEqual(result.docs[7]![1], [
    [null, 'd7'],
    [true, 1],
    [false, 1.5],
    [-2, 'x'],
    ['s', [1, 'a']],
    [['d7', 2, [null]], { o: { p: true } }],
    [{ k: 7 }, null],
    [null, null],
  ]);
  assert.deepEqual(result.logs, []);
});

test('a map function that throws on one document: that document gets an error, the others are mapped', async () => {
  const ddoc = await pool.compile({
    views: {
      v: { map: 'function (doc) { if (doc.bad) throw new TypeError("bad doc " + doc._id); emit(doc._id, null) }' },
      w: { map: 'function (doc) { emit("w", doc._id) }' },
    },
  });
  const result = await pool.mapDocs(ddoc, ['v', 'w'], [{ _id: 'a' }, { _id: 'b', bad: true }, { _id: 'c' }]);
  assert.deepEqual(result.docs, [
    [[['a', null]], [['w', 'a']]],
    [{ error: 'TypeError: bad doc b' }, [['w', 'b']]],
    [[['c', null]], [['w', 'c']]],
  ]);
});

test('documents are frozen: one view cannot change what the next one sees', async () => {
  const ddoc = await pool.compile({
    views: {
      a: { map: 'function (doc) { doc.x = 2; doc.nested.y = 3; emit(doc.x, doc.nested.y) }' },
      b: { map: 'function (doc) { emit(doc.x, doc.nested.y) }' },
    },
  });
  const result = await pool.mapDocs(ddoc, ['a', 'b'], [{ x: 1, nested: { y: 1 } }]);
  // Strict-mode functions throw on writes to frozen objects; sloppy ones ignore them.
  const first = result.docs[0]![0]!;
  assert.ok(Array.isArray(first) ? first[0]![0] === 1 : /read-only|not extensible/.test(first.error), JSON.stringify(first));
  assert.deepEqual(result.docs[0]![1], [[1, 1]]);
});

test('reduce and rereduce with a JavaScript reduce function; sum, toJSON and isArray are defined', async () => {
  const ddoc = await pool.compile({
    views: {
      v: {
        map: 'function (doc) { emit(doc._id, doc.n) }',
        reduce: `function (keys, values, rereduce) {
          if (rereduce) return { re: true, keys: keys, total: sum(values.map(function (v) { return v.total; })) };
          return { re: false, ids: keys.map(function (k) { return k[1]; }), total: sum(values), arr: isArray(values), json: toJSON({ a: [1] }) };
        }`,
      },
      builtin: { map: 'function (doc) { emit(null, 1) }', reduce: '_count' },
    },
  });
  assert.deepEqual(ddoc.views.get('v'), { reduce: 'js' });
  assert.deepEqual(ddoc.views.get('builtin'), { reduce: '_count' });
  const reduced = await pool.reduce(ddoc, 'v', [[['k1', 'id1'], 2], [['k2', 'id2'], 5]], false);
  assert.deepEqual(reduced.value, { re: false, ids: ['id1', 'id2'], total: 7, arr: true, json: '{"a":[1]}' });
  const rereduced = await pool.reduce(ddoc, 'v', [[null, { total: 7 }], [null, { total: 4 }]], true);
  assert.deepEqual(rereduced.value, { re: true, keys: null, total: 11 });
  // A built-in reduce is the view engine's job: asking the sandbox is a programmer error.
  await assert.rejects(pool.reduce(ddoc, 'builtin', [], false), (err: unknown) => err instanceof assert.AssertionError);
});

test('a reduce function that throws fails the call with os_process_error', async () => {
  const ddoc = await pool.compile({ views: { v: { map: 'function (doc) {}', reduce: 'function (k, v) { return v[0].missing.field }' } } });
  await assert.rejects(pool.reduce(ddoc, 'v', [[['k', 'id'], 1]], false), isOsProcessError('exception', /TypeError/));
});

test("require('views/lib/...') loads CommonJS modules from views.lib, with relative paths and one evaluation per module", async () => {
  const ddoc = await pool.compile({
    views: {
      lib: {
        math: 'var helper = require("./helper"); exports.triple = function (x) { return helper.times(x, 3) };',
        helper: 'log("helper evaluated"); exports.times = function (a, b) { return a * b };',
        nested: { deep: 'module.exports = { up: require("../math").triple(2) };' },
      },
      v: { map: 'function (doc) { emit(require("views/lib/math").triple(doc.n), require("views/lib/nested/deep").up) }' },
      missing: { map: 'function (doc) { require("views/lib/nope") }' },
    },
  });
  const result = await pool.mapDocs(ddoc, ['v', 'missing'], [{ n: 1 }, { n: 2 }]);
  assert.deepEqual(result.docs.map((d) => d[0]), [[[3, 6]], [[6, 6]]]);
  assert.deepEqual(result.docs[0]![1], { error: 'Error: require: module not found: views/lib/nope' });
  assert.deepEqual(result.logs, ['helper evaluated']);
});

test('log() lines are collected and returned with the result (objects as JSON), never printed', async () => {
  const ddoc = await pool.compile({ views: { v: { map: 'function (doc) { log("doc " + doc._id); log({ n: doc.n }) }' } } });
  const result = await pool.mapDocs(ddoc, ['v'], [{ _id: 'a', n: 1 }, { _id: 'b', n: 2 }]);
  assert.deepEqual(result.logs, ['doc a', '{"n":1}', 'doc b', '{"n":2}']);
});

test('a design document that does not compile is refused with compilation_error', async () => {
  const cases: unknown[] = [
    { views: { v: { map: 'function (doc) { emit(' } } },
    { views: { v: { map: '42' } } },
    { views: { v: { map: 'function (doc) {}', reduce: '_median' } } },
    { views: { v: { map: 'function (doc) {}', reduce: 'function (' } } },
    { filters: { f: 'not javascript at all(' } },
    { validate_doc_update: 'function (newDoc) { if ( }' },
  ];
  for (const ddoc of cases) {
    await assert.rejects(pool.compile(ddoc), (err: unknown) => err instanceof CompilationError && err.token === 'compilation_error' && err.kind === 'bad_request', JSON.stringify(ddoc));
  }
});

test('a map function that loops forever times out with os_process_error, and the next call works', async () => {
  const ddoc = await pool.compile({
    views: {
      loop: { map: 'function (doc) { while (true) {} }' },
      // Catching the interrupt does not help: it is not catchable.
      stubborn: { map: 'function (doc) { for (;;) { try { while (true) {} } catch (e) {} } }' },
      ok: { map: 'function (doc) { emit(doc._id, 1) }' },
    },
  });
  await assert.rejects(pool.mapDocs(ddoc, ['loop'], [{ _id: 'a' }]), isOsProcessError('timeout', /deadline of 1000 ms/));
  await assert.rejects(pool.mapDocs(ddoc, ['stubborn'], [{ _id: 'a' }]), isOsProcessError('timeout', /deadline/));
  assert.deepEqual((await pool.mapDocs(ddoc, ['ok'], [{ _id: 'b' }])).docs, [[[['b', 1]]]]);
});

test('a map function that allocates without end fails with a memory error, and the next call works', async () => {
  const ddoc = await pool.compile({
    views: {
      grow: { map: 'function (doc) { var a = []; for (;;) a.push({ s: "some text " + a.length, n: a.length }) }' },
      // Catching the out-of-memory error and carrying on is contained too.
      stubborn: { map: 'function (doc) { var a = []; for (;;) { try { a.push(new Array(1e5).fill(1)) } catch (e) {} } }' },
      ok: { map: 'function (doc) { emit(doc._id, 1) }' },
    },
  });
  await assert.rejects(pool.mapDocs(ddoc, ['grow'], [{ _id: 'a' }]), isOsProcessError('memory', /out of memory/));
  await assert.rejects(pool.mapDocs(ddoc, ['stubborn'], [{ _id: 'a' }]), (err: unknown) => err instanceof OsProcessError && ['memory', 'timeout'].includes(err.failure));
  assert.deepEqual((await pool.mapDocs(ddoc, ['ok'], [{ _id: 'b' }])).docs, [[[['b', 1]]]]);
});

test('the watchdog terminates a worker that does not answer, and the next call works', async () => {
  // The watchdog fires 300 ms into a call, long before QuickJS's own 5 s interrupt, so
  // an endless loop stands for a worker stuck where the interrupt cannot reach (native
  // code): only the main thread's watchdog ends it. Nothing here depends on how fast
  // the machine is, and 300 ms leaves a fresh worker ample time to compile.
  const stuck = new SandboxPool({ timeoutMs: 5000, memoryBytesMax: 64 * 1024 * 1024, workers: 1, watchdogMarginMs: -4700 });
  try {
    const ddoc = await stuck.compile({ views: { v: { map: 'function (doc) { if (doc.spin) for (;;) {} emit(doc._id, 1) }' } } });
    await assert.rejects(stuck.mapDocs(ddoc, ['v'], [{ _id: 'a', spin: true }]), isOsProcessError('timeout', /watchdog stopped its worker/));
    assert.deepEqual((await stuck.mapDocs(ddoc, ['v'], [{ _id: 'b' }])).docs, [[[['b', 1]]]]);
  } finally {
    await stuck.close();
  }
});

test('deep recursion is contained: in user code a per-document error, in the engine a failed call; the next call works', async () => {
  const ddoc = await pool.compile({
    views: {
      recurse: { map: 'function (doc) { function f(n) { return f(n + 1) + 1 } f(0) }' },
      deepValue: { map: 'function (doc) { var o = {}; for (var i = 0; i < 100000; i++) o = { o: o }; emit(1, o) }' },
      ok: { map: 'function (doc) { emit(doc._id, 1) }' },
    },
  });
  assert.deepEqual((await pool.mapDocs(ddoc, ['recurse'], [{}])).docs, [[{ error: 'InternalError: stack overflow' }]]);
  // Serialising a 100,000-deep value overflows the engine's own stack: the worker is replaced.
  await assert.rejects(pool.mapDocs(ddoc, ['deepValue'], [{}]), (err: unknown) => err instanceof OsProcessError);
  assert.deepEqual((await pool.mapDocs(ddoc, ['ok'], [{ _id: 'b' }])).docs, [[[['b', 1]]]]);
});

test('attempts to reach Node are contained: require, process, the Function constructor, import(), timers, network', async () => {
  const probe = (expr: string) => `function (doc) {
    try { var r = (${expr}); emit('value', typeof r === 'object' && r !== null ? Object.keys(r) : typeof r); }
    catch (e) { emit('threw', e.name + ': ' + e.message); }
  }`;
  const ddoc = await pool.compile({
    views: {
      requireFs: { map: probe('require("fs")') },
      requireChild: { map: probe('require("child_process").execSync("touch /tmp/divan-escaped")') },
      process: { map: probe('process.exit(1)') },
      ctor: { map: probe('globalThis.constructor.constructor("return process")().exit(1)') },
      fnCtor: { map: probe('emit.constructor("return this")().process') },
      types: { map: "function (doc) { emit('types', [typeof setTimeout, typeof setInterval, typeof setImmediate, typeof fetch, typeof XMLHttpRequest, typeof WebSocket, typeof queueMicrotask, typeof std, typeof os]) }" },
      dynImport: { map: "function (doc) { import('fs').then(function (m) { emit('imported', Object.keys(m)) }, function (e) { emit('import-failed', String(e)) }); globalThis.divanEscaped = true; emit('done', null) }" },
    },
  });
  const names = ['requireFs', 'requireChild', 'process', 'ctor', 'fnCtor', 'types', 'dynImport'];
  const [rows] = (await pool.mapDocs(ddoc, names, [{ _id: 'x' }])).docs;
  const byView = new Map(names.map((name, i) => [name, rows![i]]));
  assert.deepEqual(byView.get('requireFs'), [['threw', 'Error: require: module not found: fs']]);
  assert.deepEqual(byView.get('requireChild'), [['threw', 'Error: require: module not found: child_process']]);
  assert.deepEqual(byView.get('process'), [['threw', "ReferenceError: 'process' is not defined"]]);
  assert.deepEqual(byView.get('ctor'), [['threw', "ReferenceError: 'process' is not defined"]]);
  assert.deepEqual(byView.get('fnCtor'), [['value', 'undefined']]);
  assert.deepEqual(byView.get('types'), [['types', Array(9).fill('undefined')]]);
  // import() never yields a module (no loader exists, no job queue runs); the function ends normally.
  assert.deepEqual(byView.get('dynImport'), [['done', null]]);
  // The main process is untouched.
  assert.equal((globalThis as Record<string, unknown>)['divanEscaped'], undefined);
  assert.equal(typeof process.exit, 'function');
  const { existsSync } = await import('node:fs');
  assert.equal(existsSync('/tmp/divan-escaped'), false);
  // And the sandbox keeps serving.
  assert.deepEqual((await pool.mapDocs(ddoc, ['fnCtor'], [{}])).docs, [[[['value', 'undefined']]]]);
});

test('filters: a batch of documents in, one boolean per document out, with the request', async () => {
  const ddoc = await pool.compile({
    filters: {
      byType: 'function (doc, req) { return doc.type === req.query.type }',
      lib: 'function (doc) { return require("lib/check").ok(doc) }',
      throws: 'function (doc) { throw new Error("nope") }',
      nested: 'function (doc) { return require("filters/mods/t").isB(doc) }',
      // An object beside the filters is a module tree, not a filter (CouchDB accepts it).
      mods: { t: 'exports.isB = function (doc) { return doc.type === "b" }' },
    },
    lib: { check: 'exports.ok = function (doc) { return !!doc.keep }' },
  });
  assert.deepEqual(ddoc.filters, ['byType', 'lib', 'throws', 'nested']);
  const docs = [{ type: 'a', keep: 1 }, { type: 'b' }, { type: 'a' }];
  assert.deepEqual((await pool.filterDocs(ddoc, 'byType', docs, { query: { type: 'a' } })).pass, [true, false, true]);
  assert.deepEqual((await pool.filterDocs(ddoc, 'lib', docs, {})).pass, [true, false, false]);
  assert.deepEqual((await pool.filterDocs(ddoc, 'nested', docs, {})).pass, [false, true, false]);
  await assert.rejects(pool.filterDocs(ddoc, 'mods', docs, {}), isOsProcessError('exception', /no filter mods/));
  await assert.rejects(pool.filterDocs(ddoc, 'throws', docs, {}), isOsProcessError('exception', /Error: nope/));
  await assert.rejects(pool.filterDocs(ddoc, 'absent', docs, {}), isOsProcessError('exception', /no filter absent/));
});

test('validate_doc_update: ok, {forbidden}, {unauthorized}, and anything else thrown fails the call', async () => {
  const ddoc = await pool.compile({
    validate_doc_update: `function (newDoc, oldDoc, userCtx, secObj) {
      if (newDoc.crash) null.x;
      if (!userCtx.name) throw { unauthorized: 'log in first' };
      if (newDoc.owner !== userCtx.name && secObj.admins.names.indexOf(userCtx.name) < 0) throw { forbidden: 'not yours' };
      if (oldDoc && oldDoc.locked) throw { forbidden: 'locked' };
      log('accepted ' + newDoc._id);
    }`,
  });
  assert.equal(ddoc.validates, true);
  const secObj = { admins: { names: ['boss'], roles: [] }, members: { names: [], roles: [] } };
  const bob = { db: 'd', name: 'bob', roles: [] };
  assert.deepEqual(await pool.validate(ddoc, { _id: 'x', owner: 'bob' }, null, bob, secObj), { ok: true, logs: ['accepted x'] });
  assert.deepEqual(await pool.validate(ddoc, { _id: 'x', owner: 'ann' }, null, bob, secObj), { forbidden: 'not yours', logs: [] });
  assert.deepEqual(await pool.validate(ddoc, { _id: 'x', owner: 'ann' }, null, { db: 'd', name: 'boss', roles: [] }, secObj), { ok: true, logs: ['accepted x'] });
  assert.deepEqual(await pool.validate(ddoc, { _id: 'x', owner: 'bob' }, { _id: 'x', locked: true }, bob, secObj), { forbidden: 'locked', logs: [] });
  assert.deepEqual(await pool.validate(ddoc, { _id: 'x' }, null, { db: 'd', name: null, roles: [] }, secObj), { unauthorized: 'log in first', logs: [] });
  await assert.rejects(pool.validate(ddoc, { crash: true }, null, bob, secObj), isOsProcessError('exception', /TypeError/));
});

test('validateDocs: a batch of documents in one call, each with its own answer; a loop fails the whole call', async () => {
  const ddoc = await pool.compile({
    validate_doc_update: `function (newDoc, oldDoc, userCtx, secObj) {
      if (newDoc.loop) for (;;) {}
      if (newDoc.crash) null.x;
      if (newDoc.str) throw 'just a string';
      if (newDoc.obj) throw { zig: 'blah' };
      if (!userCtx.name) throw { unauthorized: 'log in first' };
      if (oldDoc && oldDoc.locked) throw { forbidden: 'locked ' + oldDoc._id };
      if (newDoc.n % 2) throw { forbidden: 'odd ' + newDoc.n + ' in ' + userCtx.db + ' ' + secObj.admins.names[0] };
      log('ok ' + newDoc._id);
    }`,
  });
  const secObj = { admins: { names: ['boss'], roles: [] } };
  const bob = { db: 'd', name: 'bob', roles: [] };
  const pairs: [unknown, unknown][] = [
    [{ _id: 'a', n: 2 }, null],
    [{ _id: 'b', n: 3 }, null],
    [{ _id: 'c', n: 4 }, { _id: 'c', locked: true }],
    [{ _id: 'd', crash: true }, null],
    [{ _id: 'e', str: true }, null],
    [{ _id: 'f', n: 0 }, { _id: 'f' }],
    [{ _id: 'g', obj: true }, null],
  ];
  const { results, logs } = await pool.validateDocs(ddoc, pairs, bob, secObj);
  assert.deepEqual(results.slice(0, 3), [{ ok: true }, { forbidden: 'odd 3 in d boss' }, { forbidden: 'locked c' }]);
  assert.match((results[3] as { error: string }).error, /TypeError/);
  assert.deepEqual(results.slice(4), [{ unknown: 'just a string' }, { ok: true }, { unknown: 'blah' }]);
  assert.deepEqual(logs, ['ok a', 'ok f']);
  assert.deepEqual((await pool.validateDocs(ddoc, [[{ _id: 'x' }, null]], { db: 'd', name: null, roles: [] }, secObj)).results, [{ unauthorized: 'log in first' }]);
  const many = Array.from({ length: 1000 }, (_, i) => [{ _id: 'm' + i, n: i }, null] as [unknown, unknown]);
  const big = await pool.validateDocs(ddoc, many, bob, secObj);
  assert.equal(big.results.length, 1000);
  assert.equal(big.results.filter((r) => 'ok' in r).length, 500);
  await assert.rejects(pool.validateDocs(ddoc, [[{ _id: 'a' }, null], [{ _id: 'l', loop: true }, null]], bob, secObj), isOsProcessError('timeout', /deadline/));
  // The worker was replaced: the same handle works again.
  assert.deepEqual((await pool.validateDocs(ddoc, [[{ _id: 'a', n: 2 }, null]], bob, secObj)).results, [{ ok: true }]);
});

test('the main event loop keeps answering while a busy map function runs in the worker', async () => {
  const busy = new SandboxPool({ timeoutMs: 5000, memoryBytesMax: 16 * 1024 * 1024, workers: 1 });
  try {
    const ddoc = await busy.compile({ views: { v: { map: 'function (doc) { var t = Date.now(); while (Date.now() - t < 300) {} emit(doc._id, 1) }' } } });
    let ticks = 0;
    let running = true;
    const tick = () => {
      ticks++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    const result = await busy.mapDocs(ddoc, ['v'], [{ _id: 'a' }]);
    running = false;
    assert.deepEqual(result.docs, [[[['a', 1]]]]);
    assert.ok(ticks > 10, `the event loop turned ${ticks} times while the map ran`);
  } finally {
    await busy.close();
  }
});

test('calls beyond the queue cap are refused at once; a released or closed sandbox refuses calls', async () => {
  const small = new SandboxPool({ timeoutMs: 1000, memoryBytesMax: 16 * 1024 * 1024, workers: 1, queueMax: 1 });
  // The worker is not ready yet, so the first compile waits in the queue.
  const first = small.compile({ views: { v: { map: 'function (doc) { emit(1, 2) }' } } });
  await assert.rejects(small.compile({}), (err: unknown) => err instanceof UnavailableError);
  const ddoc = await first;
  assert.deepEqual((await small.mapDocs(ddoc, ['v'], [{}])).docs, [[[[1, 2]]]]);
  small.release(ddoc);
  await assert.rejects(small.mapDocs(ddoc, ['v'], [{}]), (err: unknown) => err instanceof CompilationError);
  await small.close();
  await assert.rejects(small.compile({}), (err: unknown) => err instanceof UnavailableError);
});

test('with several workers each compiles a design document on first use', async () => {
  const multi = new SandboxPool({ timeoutMs: 1000, memoryBytesMax: 16 * 1024 * 1024, workers: 2 });
  try {
    const ddoc = await multi.compile({ views: { v: { map: 'function (doc) { emit(doc.n, null) }' } } });
    const results = await Promise.all(Array.from({ length: 6 }, (_, n) => multi.mapDocs(ddoc, ['v'], [{ n }])));
    assert.deepEqual(results.map((r) => r.docs), Array.from({ length: 6 }, (_, n) => [[[[n, null]]]]));
  } finally {
    await multi.close();
  }
});

test('config: jsTimeoutMs, jsMemoryBytesMax and jsWorkers have CouchDB-like defaults and are validated', () => {
  assert.equal(defaults.jsTimeoutMs, 5000);
  assert.equal(defaults.jsMemoryBytesMax, 64 * 1024 * 1024);
  assert.equal(defaults.jsWorkers, 1);
  assert.equal(loadConfig({ flags: { jsTimeoutMs: '250', jsWorkers: 2 } }).jsTimeoutMs, 250);
  assert.throws(() => loadConfig({ flags: { jsWorkers: 0 } }), /jsWorkers/);
  assert.throws(() => loadConfig({ flags: { jsMemoryBytesMax: 1000 } }), /jsMemoryBytesMax/);
  assert.throws(() => loadConfig({ flags: { jsTimeoutMs: 0 } }), /jsTimeoutMs/);
  assert.equal(defaults.designDocsRecheckMs, 1000);
  assert.equal(loadConfig({ flags: { designDocsRecheckMs: '0' } }).designDocsRecheckMs, 0);
  assert.throws(() => loadConfig({ flags: { designDocsRecheckMs: 2 ** 31 } }), /designDocsRecheckMs/);
});
