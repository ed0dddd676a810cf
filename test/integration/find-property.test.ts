/**
 * A seeded property test of `_find` against one live node (q=4, so every answer is a
 * merge of four shard ranges): a few hundred random documents and several JSON
 * indexes are made once, then fast-check draws random selectors (every operator,
 * implicit and nested fields), sorts on indexed fields (both directions), `fields`,
 * `limit` and `skip`, and for each query, without `use_index` and with `use_index`
 * naming each index in turn:
 *  1. the answer is exactly the reference: `compileSelector` applied to every document
 *     of `_all_docs?include_docs=true` (design documents left out), kept to the
 *     documents the chosen index holds (`_explain` says which), in the chosen index's
 *     order (its columns by `collate`, then `_id` by code point; reversed for a
 *     descending sort), then sliced by `skip` and `limit`. The index may only leave out
 *     documents that lack a sort field (or fail a named partial index's filter):
 *     otherwise the planner used an index the selector does not require.
 *  2. paging with `bookmark` and a small `limit` through the whole answer gives the
 *     same documents in the same order as one big query;
 *  3. `fields` keeps exactly each listed path's value, rebuilt nested (a reference
 *     projection written here).
 *
 * Seed: FIND_SEED=<n> (printed on every run; a fixed default so runs repeat);
 * runs: FIND_RUNS (default 200). Pin failures as regression cases below.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';

import { compileSelector, fieldValue, parseField } from '../../src/shard/query/mango';
import { collate, compareRaw } from '../../src/shard/query/collate';
import { createDb, request, startNode, TestNode } from '../helpers/node-process';
import { mulberry32 } from '../helpers/random';

const seed = Number(process.env['FIND_SEED'] ?? 20261202);
const RUNS = Number(process.env['FIND_RUNS'] ?? 200);
const DOCS = 300;
const BIG = 100_000;

type Doc = Record<string, unknown>;
type Sort = (string | Record<string, 'asc' | 'desc'>)[];

interface IndexSpec {
  ddoc: string;
  fields: Sort;
  partial?: Record<string, unknown>;
}

/** Each index in its own design document, so `use_index: ddoc` names exactly one. */
const indexSpecs: IndexSpec[] = [
  { ddoc: 'ia', fields: ['a'] },
  { ddoc: 'iab', fields: ['a', 'b'] },
  { ddoc: 'ib', fields: ['b'] },
  { ddoc: 'icd', fields: ['c.d'] },
  { ddoc: 'iba', fields: [{ b: 'desc' }, { a: 'desc' }] },
  { ddoc: 'ipart', fields: ['a'], partial: { b: { $type: 'string' } } },
  // A field whose name holds a dot ("e.f"), written escaped.
  { ddoc: 'ie', fields: ['e\\.f'] },
];

interface KnownIndex {
  ddoc: string | null;
  columns: string[][];
  partial: ((doc: Doc) => boolean) | undefined;
}

const known = new Map<string, KnownIndex>([['_all_docs', { ddoc: null, columns: [['_id']], partial: undefined }]]);
for (const spec of indexSpecs) {
  known.set(`_design/${spec.ddoc}`, {
    ddoc: `_design/${spec.ddoc}`,
    columns: spec.fields.map((f) => parseField(typeof f === 'string' ? f : Object.keys(f)[0]!)),
    partial: spec.partial ? compileSelector(spec.partial) : undefined,
  });
}

// ---- documents ------------------------------------------------------------------

const aValues: unknown[] = [0, 1, 2, 3, -1, 1.5, 10, '1', 'a', 'A', 'é', null, true, false, [1, 2], [], [3], [1, 'a'], { x: 1 }];
const longStrings = ['a'.repeat(70), 'a'.repeat(70) + 'b', 'a'.repeat(70) + 'B', 'a'.repeat(66) + 'é', 'é'.repeat(66) + 'x', '日'.repeat(65) + 'a'];
const bValues: unknown[] = ['a', 'A', 'b', 'B', 'e', 'é', 'E', 'É', 'Ä', 'ä', 'ß', 'ss', '日本', '日', 'abc', 'Abc', 'ab', '', 0, 1, 10, -2, null, true, ['a'],
  // Longer strings that collate below their own prefix: a Thai prevowel before its
  // consonant, a combining mark that reorders before the grave of "À", waw + hamza.
  'เง', 'À\u0332', '\u0648\u0654',
  // Past the key codec's 64 primaries, with differences after that point; emoji; mixed scripts.
  ...longStrings, '😀', 'a😀', 'Zürich', 'zurich', 'ä日本'];
const dValues: unknown[] = [0, 1, 2, 'x', 'X', 'é', null, false, [1], { e: 1 }];
const tagValues: unknown[] = ['x', 'y', 'z', 'X', 'é', 1, 2, null];

function makeDocs(rand: () => number): Doc[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const idPrefixes = ['d', 'd', 'd', 'D', 'é', '日本', 'z', 'a-', 'Z'];
  const docs: Doc[] = [];
  for (let i = 0; i < DOCS; i++) {
    const doc: Doc = { _id: `${pick(idPrefixes)}${String(i).padStart(3, '0')}` };
    if (rand() < 0.85) doc.a = pick(aValues);
    if (rand() < 0.8) doc.b = pick(bValues);
    const c = rand();
    if (c < 0.45) doc.c = { d: pick(dValues) };
    else if (c < 0.55) doc.c = {};
    else if (c < 0.6) doc.c = [{ d: 1 }];
    else if (c < 0.65) doc.c = 'str';
    const t = rand();
    if (t < 0.6) doc.tags = Array.from({ length: Math.floor(rand() * 4) }, () => pick(tagValues));
    else if (t < 0.65) doc.tags = 'x';
    if (rand() < 0.7) doc.n = Math.floor(rand() * 20) - 3;
    if (rand() < 0.3) doc['e.f'] = pick(dValues);
    docs.push(doc);
  }
  return docs;
}

const rawDocs = [
  '{"_id":"raw0","a":1.0,"b":"\\u00e9","c":{"d":1.0}}',
  '{"_id":"raw1","a":1e0,"b":"e\\u0301","n":4.0}',
  '{"_id":"raw2","a":-0,"b":"\\/x","tags":["\\u0078"]}',
  '{"_id":"raw3","a":2.50,"b":"A","c":{"d":"\\u0058"}}',
  '{"_id":"raw4","a":1E1,"b":"\\ud83d\\ude00"}',
  '{"_id":"raw5","a":[1.0,2],"b":"b"}',
  '{"_id":"raw6","a":0.0,"b":10.0}',
  '{"_id":"raw7","a":{"x":1.0},"b":"\\u65e5\\u672c"}',
];

// ---- selectors --------------------------------------------------------------------

const fieldNames = ['a', 'b', 'c.d', 'tags', 'n', '_id', 'c', 'tags.0', 'a.0', 'e\\.f'];
const scalar = fc.constantFrom<unknown>(0, 1, 2, 3, -1, 1.5, 10, '1', 'a', 'A', 'b', 'B', 'e', 'é', 'E', 'Ä', 'ß', 'ss', '日本', 'abc', 'x', 'X', 'd100', 'é', '', null, true, false, ...longStrings, 'a'.repeat(70) + 'a', 'a'.repeat(68), '😀', 'Zürich', 'zürich', 'ä');
const value = fc.oneof({ weight: 6, arbitrary: scalar }, { weight: 1, arbitrary: fc.constantFrom<unknown>([1, 2], [], [3], ['a'], { x: 1 }, { e: 1 }, {}) });
const values = fc.array(value, { maxLength: 4 });
const prefix = fc.constantFrom('a', 'A', 'é', 'e', 'd', 'D', '日', 'ab', '', 'x', 'z0', 'เ', 'À', '\u0648', 'a'.repeat(69), 'é'.repeat(66), 'Zü');
const pattern = fc.constantFrom('^a', '(?i)^a', 'é', '^[A-Z]', 'b$', '日', '^d0', '.', '^$', '(?i)É', '\\d');

const opCondition: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ $eq: value }),
  fc.record({ $ne: value }),
  fc.record({ $gt: value }),
  fc.record({ $gte: value }),
  fc.record({ $lt: value }),
  fc.record({ $lte: value }),
  fc.record({ $gt: scalar, $lt: scalar }),
  fc.record({ $gte: scalar, $lte: scalar }),
  fc.record({ $in: values }),
  fc.record({ $nin: values }),
  fc.record({ $exists: fc.boolean() }),
  fc.record({ $type: fc.constantFrom('null', 'boolean', 'number', 'string', 'array', 'object') }),
  fc.record({ $size: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ $mod: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: -1, max: 3 })) }),
  fc.record({ $regex: pattern }),
  fc.record({ $beginsWith: prefix }),
  fc.record({ $all: fc.array(scalar, { maxLength: 2 }) }),
  fc.record({ $keyMapMatch: fc.record({ $in: fc.constantFrom(['d'], ['x', 'd'], ['e']) }) }),
);

/** A condition on one field (or, inside $elemMatch/$allMatch, on the element). */
const { condition } = fc.letrec<{ condition: Record<string, unknown> }>((tie) => ({
  condition: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 8, arbitrary: opCondition },
    { weight: 1, arbitrary: fc.record({ $elemMatch: tie('condition') }) },
    { weight: 1, arbitrary: fc.record({ $allMatch: tie('condition') }) },
    { weight: 1, arbitrary: fc.record({ $not: tie('condition') }) },
    { weight: 1, arbitrary: fc.record({ $or: fc.array(tie('condition'), { maxLength: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ $and: fc.array(tie('condition'), { maxLength: 2 }) }) },
    { weight: 1, arbitrary: fc.record({ $nor: fc.array(tie('condition'), { maxLength: 2 }) }) },
  ),
}));

/** `{field: cond}`, `{field: scalar}` (implicit $eq), or nested `{c: {d: cond}}`. */
const fieldSelector: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(fc.constantFrom(...fieldNames), condition).map(([f, c]) => ({ [f]: c })) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...fieldNames), scalar).map(([f, v]) => ({ [f]: v })) },
  { weight: 1, arbitrary: condition.map((c) => ({ c: { d: c } })) },
  // $in/$or of equalities on leading index fields: several index ranges.
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('a', 'b', 'c.d'), fc.array(scalar, { minLength: 1, maxLength: 4 })).map(([f, vs]) => ({ [f]: { $in: vs } })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', 'b'), fc.array(scalar, { minLength: 1, maxLength: 3 })).map(([f, vs]) => ({ $or: vs.map((v) => ({ [f]: v })) })) },
);

const { selector } = fc.letrec<{ selector: Record<string, unknown> }>((tie) => ({
  selector: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 6, arbitrary: fieldSelector },
    // Implicit $and: several fields in one object (later ones win on a repeated name).
    { weight: 3, arbitrary: fc.array(fieldSelector, { minLength: 2, maxLength: 3 }).map((parts) => Object.assign({}, ...parts) as Record<string, unknown>) },
    { weight: 1, arbitrary: fc.record({ $and: fc.array(tie('selector'), { maxLength: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ $or: fc.array(tie('selector'), { maxLength: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ $nor: fc.array(tie('selector'), { maxLength: 2 }) }) },
    { weight: 1, arbitrary: fc.record({ $not: tie('selector') }) },
  ),
}));

const sorts: Sort[] = [['a'], [{ a: 'desc' }], ['a', 'b'], [{ a: 'desc' }, { b: 'desc' }], ['b'], [{ b: 'desc' }], [{ b: 'desc' }, { a: 'desc' }], ['b', 'a'], ['c.d'], [{ 'c.d': 'desc' }], ['_id'], [{ _id: 'desc' }], ['e\\.f']];
const projections: string[][] = [['_id'], ['_id', 'a'], ['a', 'b'], ['c.d'], ['_id', 'c.d', 'tags'], ['c'], ['b', '_id'], ['tags.0', 'a.0'], ['a', 'c.d', '_rev'], ['_id', 'b', 'a'], ['e\\.f'], ['_id', 'e\\.f']];

interface Query {
  selector: Record<string, unknown>;
  sort: Sort | undefined;
  fields: string[] | undefined;
  limit: number | undefined;
  skip: number | undefined;
  page: boolean;
  /** Name the index as `[ddoc, name]` rather than `ddoc`. */
  pair: boolean;
}

const query: fc.Arbitrary<Query> = fc.record({
  selector,
  sort: fc.option(fc.constantFrom(...sorts), { nil: undefined, freq: 2 }),
  fields: fc.option(fc.constantFrom(...projections), { nil: undefined, freq: 2 }),
  limit: fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined, freq: 2 }),
  skip: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined, freq: 3 }),
  page: fc.boolean(),
  pair: fc.boolean(),
});

// ---- the reference ----------------------------------------------------------------

function sortFieldOf(s: string | Record<string, string>): { path: string[]; desc: boolean } {
  if (typeof s === 'string') return { path: parseField(s), desc: false };
  const [name, dir] = Object.entries(s)[0]!;
  return { path: parseField(name), desc: dir === 'desc' };
}

/** The reference projection: each listed path's value, rebuilt nested; missing paths left out. */
function projectRef(doc: Doc, fields: string[]): Doc {
  const out: Doc = {};
  for (const f of fields) {
    const path = parseField(f);
    const v = fieldValue(doc, path);
    if (v === undefined) continue;
    let at = out;
    for (const seg of path.slice(0, -1)) {
      if (typeof at[seg] !== 'object' || at[seg] === null || Array.isArray(at[seg])) at[seg] = {};
      at = at[seg] as Doc;
    }
    at[path[path.length - 1]!] = v;
  }
  return out;
}

/** The documents `index` answers for `q`, in its order, before skip and limit. */
function reference(all: Doc[], q: Query, index: KnownIndex): Doc[] {
  const matches = compileSelector(q.selector);
  const held = (d: Doc) => index.columns.every((p) => fieldValue(d, p) !== undefined) && (!index.partial || index.partial(d));
  const keyOf = (d: Doc) => index.columns.map((p) => fieldValue(d, p));
  const out = all.filter((d) => matches(d) && held(d));
  if (index.ddoc === null) out.sort((x, y) => compareRaw(x._id as string, y._id as string));
  else out.sort((x, y) => collate(keyOf(x), keyOf(y)) || compareRaw(x._id as string, y._id as string));
  const descending = q.sort !== undefined && sortFieldOf(q.sort[0]!).desc;
  if (descending) out.reverse();
  return out;
}

/** What the index may leave out of the matching documents: those lacking a sort field, or failing a named partial filter. */
function allowedSet(all: Doc[], q: Query, index: KnownIndex): Set<string> {
  const matches = compileSelector(q.selector);
  const sortPaths = (q.sort ?? []).map((s) => sortFieldOf(s).path);
  return new Set(
    all
      .filter((d) => matches(d) && sortPaths.every((p) => fieldValue(d, p) !== undefined) && (!index.partial || index.partial(d)))
      .map((d) => d._id as string),
  );
}

// ---- the node ---------------------------------------------------------------------

let node: TestNode;
let db: string;
let allDocs: Doc[];

before(async () => {
  node = await startNode();
  db = await createDb(node, 'findprop', 4);
  const docs = makeDocs(mulberry32(seed));
  const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs } });
  assert.equal(res.status, 201, res.text);
  // A few written as raw JSON texts that JSON.stringify would spell otherwise (bookmarks carry keys as JSON).
  const raw = await request(node, 'POST', `/${db}/_bulk_docs`, { raw: `{"docs":[${rawDocs.join(',')}]}`, headers: { 'content-type': 'application/json' } });
  assert.equal(raw.status, 201, raw.text);
  for (const spec of indexSpecs) {
    const index: Record<string, unknown> = { fields: spec.fields };
    if (spec.partial) index.partial_filter_selector = spec.partial;
    const made = await request(node, 'POST', `/${db}/_index`, { body: { index, ddoc: spec.ddoc, name: spec.ddoc, type: 'json' } });
    assert.equal(made.status, 200, made.text);
  }
  // Build every index, then change documents under them: later answers need the indexes'
  // incremental updates (keys moved, rows dropped for deleted or now-unindexed documents).
  for (const spec of indexSpecs) {
    const built = await request(node, 'POST', `/${db}/_find`, { body: { selector: {}, use_index: spec.ddoc, limit: 1 } });
    assert.equal(built.status, 200, built.text);
  }
  const rand = mulberry32(seed ^ 0x5eed);
  const current = await request(node, 'GET', `/${db}/_all_docs?include_docs=true`);
  const changes: Doc[] = [];
  for (const row of current.body.rows as { id: string; doc: Doc }[]) {
    if (row.id.startsWith('_design/')) continue;
    const r = rand();
    if (r < 0.05) changes.push({ _id: row.id, _rev: row.doc._rev, _deleted: true });
    else if (r < 0.15) {
      const changed: Doc = { ...row.doc };
      if (rand() < 0.5) changed.a = aValues[Math.floor(rand() * aValues.length)];
      else delete changed.a;
      if (rand() < 0.5) changed.b = bValues[Math.floor(rand() * bValues.length)];
      if (rand() < 0.3) delete changed.c;
      changes.push(changed);
    }
  }
  changes.push(...makeDocs(mulberry32(seed + 1)).slice(0, 20).map((d) => ({ ...d, _id: `new-${d._id as string}` })));
  const updated = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs: changes } });
  assert.equal(updated.status, 201, updated.text);
  assert.ok((updated.body as { ok?: boolean }[]).every((r) => r.ok), updated.text);

  const read = await request(node, 'GET', `/${db}/_all_docs?include_docs=true`);
  assert.equal(read.status, 200, read.text);
  allDocs = (read.body.rows as { id: string; doc: Doc }[]).filter((r) => !r.id.startsWith('_design/')).map((r) => r.doc);
  assert.ok(allDocs.length > DOCS, `${allDocs.length} documents`);
});

after(async () => {
  await node?.destroy();
});

function body(q: Query, useIndex: string | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { selector: q.selector, limit: q.limit ?? BIG };
  if (q.sort) out.sort = q.sort;
  if (q.fields) out.fields = q.fields;
  if (q.skip !== undefined) out.skip = q.skip;
  if (useIndex) out.use_index = q.pair ? [useIndex, useIndex] : useIndex;
  return { ...out, ...extra };
}

const show = (v: unknown) => JSON.stringify(v);
const ids = (docs: Doc[]) => docs.map((d) => d._id ?? show(d));

/** How often each case came up, printed at the end: a property that never reaches a case tests nothing there. */
const counts = new Map<string, number>();
const tally = (what: string) => counts.set(what, (counts.get(what) ?? 0) + 1);

/** One query, with or without `use_index`, checked against the reference. */
async function check(q: Query, useIndex: string | undefined): Promise<void> {
  const label = `${show(body(q, useIndex))}`;
  const explained = await request(node, 'POST', `/${db}/_explain`, { body: body(q, useIndex) });
  if (explained.status === 400 && explained.body?.error === 'no_usable_index') {
    // Only a sort on `_id` can leave no index (`_all_docs` needs `_id` bounded): every
    // other sort here is exactly some index's columns, which is always usable.
    assert.ok(q.sort !== undefined && sortFieldOf(q.sort[0]!).path[0] === '_id', `${label}: no_usable_index`);
    tally('no_usable_index');
    const found = await request(node, 'POST', `/${db}/_find`, { body: body(q, useIndex) });
    assert.equal(found.status, 400, `${label}: _explain said no index, _find: ${found.text}`);
    return;
  }
  assert.equal(explained.status, 200, `${label}: _explain ${explained.text}`);
  const chosenId: string = explained.body.index.ddoc ?? '_all_docs';
  tally(`via ${chosenId}${useIndex && chosenId !== `_design/${useIndex}` ? ' (use_index named another)' : ''}`);
  if ((explained.body.ranges as unknown[]).length > 1) tally('several ranges');
  if (explained.body.covering) tally('covering');
  const index = known.get(chosenId);
  assert.ok(index, `${label}: unknown index ${chosenId}`);
  const found = await request(node, 'POST', `/${db}/_find`, { body: body(q, useIndex) });
  assert.equal(found.status, 200, `${label}: _find ${found.text}`);
  const docs = found.body.docs as Doc[];
  if (useIndex) {
    const fellBack = chosenId !== `_design/${useIndex}`;
    const warned = String(found.body.warning ?? '').includes('was not used');
    assert.equal(warned, fellBack, `${label}: chose ${chosenId}, warning ${show(found.body.warning)}`);
  }

  const ordered = reference(allDocs, q, index);
  // The index may only drop documents the query allows it to (sort fields, a named partial filter).
  const allowed = allowedSet(allDocs, q, index);
  assert.deepEqual(
    ordered.map((d) => d._id as string).sort(compareRaw),
    [...allowed].sort(compareRaw),
    `${label}: index ${chosenId} holds a different set than the selector allows`,
  );
  tally(ordered.length === 0 ? 'empty answer' : ordered.length < 10 ? 'answer < 10' : 'answer >= 10');
  const skip = q.skip ?? 0;
  const sliced = ordered.slice(skip, skip + (q.limit ?? BIG));
  const expected = q.fields ? sliced.map((d) => projectRef(d, q.fields!)) : sliced;
  if (q.sort === undefined && q.limit === undefined && skip === 0) {
    // Without a sort the order is not promised: compare as sets first, for a readable failure.
    const got = new Set(docs.map((d) => show(d)));
    const want = new Set(expected.map((d) => show(d)));
    const missing = [...want].filter((d) => !got.has(d));
    const extra = [...got].filter((d) => !want.has(d));
    assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${label} via ${chosenId}`);
  }
  // Divan answers in index order (key, then _id by code point), sorted or not.
  assert.deepEqual(ids(docs), ids(expected), `${label} via ${chosenId}: order`);
  assert.deepEqual(docs, expected, `${label} via ${chosenId}: documents`);

  if (q.page) {
    const whole = q.fields ? ordered.map((d) => projectRef(d, q.fields!)) : ordered;
    const pageSize = whole.length <= 30 ? 3 : Math.ceil(whole.length / 8);
    const pages: Doc[] = [];
    let bookmark: string | undefined;
    for (let i = 0; i < whole.length + 2; i++) {
      const page = await request(node, 'POST', `/${db}/_find`, { body: body({ ...q, limit: pageSize, skip: undefined }, useIndex, bookmark ? { bookmark } : {}) });
      assert.equal(page.status, 200, `${label}: page ${i}: ${page.text}`);
      pages.push(...(page.body.docs as Doc[]));
      bookmark = page.body.bookmark as string;
      if ((page.body.docs as Doc[]).length < pageSize) break;
    }
    assert.deepEqual(ids(pages), ids(whole), `${label} via ${chosenId}: paged by ${pageSize}`);
    assert.deepEqual(pages, whole, `${label} via ${chosenId}: paged documents`);
  }
}

async function checkAll(q: Query): Promise<void> {
  await check(q, undefined);
  for (const spec of indexSpecs) await check(q, spec.ddoc);
}

/** Failures found by the property, kept as fixed examples. */
const plain = { sort: undefined, fields: undefined, limit: undefined, skip: undefined, page: false, pair: false };
const regressions: Query[] = [
  // An empty $or matches everything, so this matches every document; the planner merged
  // the empty $or into the outer one, read the selector as {a: 0} and chose index ["a"].
  { ...plain, selector: { $or: [{ a: 0 }, { $or: [] }] } },
  // Negated, {a: {$and: []}} is an empty $or (still everything): the planner required c.d.
  { ...plain, selector: { $nor: [{ a: { $and: [] }, c: { d: { $elemMatch: { $gt: 0 } } } }] } },
  // "เง" collates below "เ" (and "À\u0332" below "À", "\u0648\u0654" below "\u0648"):
  // the range [prefix, end of strings] read for $beginsWith missed them.
  { ...plain, selector: { b: { $beginsWith: 'เ' } } },
  { ...plain, selector: { b: { $beginsWith: 'À' } }, sort: ['b'] },
  { ...plain, selector: { b: { $beginsWith: '\u0648' } }, sort: [{ b: 'desc' }] },
  // Fixed examples the generator does not reach: more ranges than findRangesMax (256).
  { ...plain, selector: { a: { $in: [...Array.from({ length: 300 }, (_, i) => i - 5), 'a', 'A', null, true] } }, sort: [{ a: 'desc' }], page: true },
  { ...plain, selector: { a: { $in: Array.from({ length: 20 }, (_, i) => i - 3) }, b: { $in: [...bValues.slice(0, 19), 'zz'] } }, sort: ['a', 'b'], page: true },
];

test('_find regressions', async () => {
  const failures: string[] = [];
  for (const q of regressions) {
    try {
      await checkAll(q);
    } catch (err) {
      failures.push((err as Error).message.split('\n')[0]!);
    }
  }
  assert.deepEqual(failures, []);
});

test(`_find answers as the reference matcher (FIND_SEED=${seed})`, async (t) => {
  t.diagnostic(`FIND_SEED=${seed} FIND_RUNS=${RUNS}`);
  console.log(`find-property: FIND_SEED=${seed} FIND_RUNS=${RUNS}`);
  await fc.assert(
    fc.asyncProperty(query, async (q) => {
      try {
        compileSelector(q.selector);
      } catch {
        fc.pre(false); // not a valid selector: nothing to compare (the generator aims to make only valid ones)
      }
      await checkAll(q);
    }),
    { seed, numRuns: RUNS },
  );
  const summary = [...counts].sort(([a], [b]) => compareRaw(a, b)).map(([k, n]) => `${k}: ${n}`).join(', ');
  t.diagnostic(summary);
  console.log(`find-property: ${summary}`);
});
