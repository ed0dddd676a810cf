/**
 * Mango `_find` across a 3-node cluster (q=4, n=2): an index made through one node is
 * used by the others once their design-document cache has it; every copy answers its
 * part and the coordinator merges by index key then doc id, so bookmark paging (one
 * position for every range) neither skips nor repeats a row, ascending, descending, on
 * the `_all_docs` fallback and over the several ranges of a `$in`; with one node killed
 * every range still has a live copy, and paging continues across the kill on another
 * node. Execution stats count what the copies examined.
 *
 * The references are computed here from the documents written, in the order the
 * index defines: (index key, doc id), ids in code-point order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterPerSuite } from '../helpers/cluster';
import { request, uniqueDb, waitFor, type TestNode } from '../helpers/node-process';
import { mulberry32 } from '../helpers/random';

const cluster = clusterPerSuite({ nodes: 3 });

const SEED = Number(process.env.FIND_CLUSTER_SEED ?? Date.now() % 1_000_000);
console.log(`find-cluster seed: ${SEED} (set FIND_CLUSTER_SEED to replay)`);

/** Documents generated (plus a few with odd ids). */
const DOC_COUNT = 600;
const PAGE = 7;
/** More than any answer here, so one query returns everything. */
const BIG_LIMIT = 10_000;
/** Pages at most before a paging loop is called runaway. */
const PAGES_MAX = 400;
/** Deadline for a node's design-document cache to show an index made elsewhere. */
const CACHE_WAIT_MS = 15_000;

interface Doc {
  _id: string;
  /**
   * 0..9: many equal values, so the doc id breaks ties. Absent on every 30th doc; on
   * another 20 docs a value of another JSON type, so the merge must collate across types.
   */
  group?: unknown;
  score: number;
  kind: string;
  /** Never indexed. */
  tag: string;
  n: number;
}

/** Group values of other types (kind 'y' docs, so the paging selector sees them). */
const OTHER_GROUPS: unknown[] = [null, false, true, '', '5', 'a', 'ab', 'b', 'B', [], [1], [2, 3], [4, 9], {}, { x: 1 }, 2.5, -1];

const random = mulberry32(SEED);
const docs: Doc[] = (() => {
  const seen = new Set<string>();
  const out: Doc[] = [];
  for (let i = 0; i < DOC_COUNT; i++) {
    let id: string;
    do id = Math.floor(random() * 0xffffffffff).toString(16).padStart(10, '0');
    while (seen.has(id));
    seen.add(id);
    const doc: Doc = { _id: id, score: Math.floor(random() * 100), kind: ['x', 'y', 'z'][i % 3]!, tag: `t${i % 5}`, n: i };
    if (i % 30 === 10) doc.group = OTHER_GROUPS[Math.floor(i / 30) % OTHER_GROUPS.length];
    else if (i % 30 !== 29) doc.group = Math.floor(random() * 10);
    out.push(doc);
  }
  // Ids whose UTF-16 order differs from code-point order (what _all_docs and the merge use), tied on group 4.
  const odd = ['ff\u00e9x', 'ff\ufffdx', 'ff\u{1F600}x', 'ff\u{1F600}y', 'ffZ', 'ff~'];
  odd.forEach((id, k) => out.push({ _id: id, group: 4, score: Math.floor(random() * 100), kind: 'x', tag: 't1', n: DOC_COUNT + k }));
  return out;
})();

/** Code-point order of ids (UTF-8 byte order). */
const byId = (a: Doc, b: Doc) => Buffer.compare(Buffer.from(a._id, 'utf8'), Buffer.from(b._id, 'utf8'));
const icu = new Intl.Collator('und');
/** CouchDB view collation for the values used here: null < false < true < numbers < strings < arrays < objects. */
function collate(a: unknown, b: unknown): number {
  const rank = (v: unknown) => (v === null ? 0 : v === false ? 1 : v === true ? 2 : typeof v === 'number' ? 3 : typeof v === 'string' ? 4 : Array.isArray(v) ? 5 : 6);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 3) return (a as number) - (b as number);
  if (ra === 4) return icu.compare(a as string, b as string) || ((a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0);
  if (ra === 5 || ra === 6) {
    const x = ra === 5 ? (a as unknown[]) : Object.entries(a as object).flat();
    const y = ra === 5 ? (b as unknown[]) : Object.entries(b as object).flat();
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      const d = collate(x[i], y[i]);
      if (d !== 0) return d;
    }
    return x.length - y.length;
  }
  return 0;
}
/** Index order on (fields..., _id). */
const order =
  (fields: (keyof Doc)[], dir: 1 | -1 = 1) =>
  (a: Doc, b: Doc): number => {
    for (const f of fields) {
      const d = collate(a[f], b[f]);
      if (d !== 0) return dir * d;
    }
    return dir * byId(a, b);
  };
/** Mango's $in: the value equals one of `args`, or is an array holding one. */
const inList = (value: unknown, args: unknown[]) =>
  Array.isArray(value) ? value.some((v) => args.some((a) => collate(v, a) === 0)) : args.some((a) => collate(value, a) === 0);
const isNum = (v: unknown): v is number => typeof v === 'number';
const ids = (list: readonly object[]): string[] => list.map((d) => (d as { _id: string })._id);

/** One database for every test, with the docs written through n2 and two indexes made through n1. */
let dbName: string | undefined;
async function db(): Promise<string> {
  if (dbName) return dbName;
  const name = uniqueDb('fclu');
  const nodes = cluster().nodes;
  const created = await request(nodes[0]!, 'PUT', `/${name}?q=4&n=2`);
  assert.equal(created.status, 201, created.text);
  const bulk = await request(nodes[1]!, 'POST', `/${name}/_bulk_docs`, { body: { docs } });
  assert.equal(bulk.status, 201, bulk.text);
  assert.ok((bulk.body as { ok?: boolean }[]).every((r) => r.ok), bulk.text.slice(0, 500));
  dbName = name;
  return name;
}

async function find(node: TestNode, body: Record<string, unknown>, path = '_find') {
  const reply = await request(node, 'POST', `/${await db()}/${path}`, { body, timeoutMs: 30_000 });
  assert.equal(reply.status, 200, `${path} ${JSON.stringify(body)} on ${node.url}: ${reply.status} ${reply.text.slice(0, 500)}`);
  return reply.body as { docs: Record<string, unknown>[]; bookmark: string; execution_stats?: Record<string, number>; warning?: string };
}

async function explain(node: TestNode, body: Record<string, unknown>) {
  const reply = await request(node, 'POST', `/${await db()}/_explain`, { body, timeoutMs: 30_000 });
  assert.equal(reply.status, 200, reply.text);
  return reply.body as { index: { ddoc: string | null; name: string; type: string }; ranges: unknown[]; covering: boolean };
}

/** Wait until node `i` lists index `name` in `GET /{db}/_index` (its design-document cache has it). */
async function awaitIndex(i: number, name: string): Promise<void> {
  const d = await db();
  await waitFor(
    async () => {
      const reply = await request(cluster().nodes[i]!, 'GET', `/${d}/_index`, { timeoutMs: 10_000 });
      return reply.status === 200 && (reply.body.indexes as { name: string }[]).some((x) => x.name === name);
    },
    CACHE_WAIT_MS,
    `index ${name} listed on ${cluster().name(i)}`,
  );
}

/** Make index `name` through n1 (idempotent: later tests may run alone) and wait until every node lists it. */
async function makeIndex(name: string, fields: string[]): Promise<void> {
  const reply = await request(cluster().nodes[0]!, 'POST', `/${await db()}/_index`, { body: { index: { fields }, ddoc: 'idx', name, type: 'json' } });
  assert.equal(reply.status, 200, reply.text);
  assert.ok(reply.body.result === 'created' || reply.body.result === 'exists', reply.text);
  for (const i of [0, 1, 2]) await awaitIndex(i, name);
}

/**
 * Every page of `body` (limit 7), the node of each page chosen by `nodeFor(page)`, until
 * a page comes back empty; `onPage` runs after each page (to kill a node mid-way).
 */
async function pageAll(nodeFor: (page: number) => TestNode, body: Record<string, unknown>, onPage?: (page: number) => Promise<void>): Promise<string[]> {
  const out: string[] = [];
  let bookmark: string | undefined;
  for (let page = 0; ; page++) {
    assert.ok(page < PAGES_MAX, `more than ${PAGES_MAX} pages`);
    const pageBody = { ...body, limit: PAGE, execution_stats: true, ...(bookmark ? { bookmark } : {}) };
    const reply = await find(nodeFor(page), pageBody);
    assert.ok(reply.docs.length <= PAGE);
    out.push(...ids(reply.docs));
    if (reply.docs.length === 0) {
      // Seen once in a full run (not reproduced in 13 looped runs under CPU load): the
      // first page empty. The message carries what a next occurrence needs to explain it.
      const seen = `page ${page} of ${JSON.stringify(pageBody)} after ${out.length} ids: ${JSON.stringify(reply)}`;
      assert.equal(reply.bookmark, bookmark, `an empty page hands back the bookmark it was given (${seen})`);
      break;
    }
    assert.equal(typeof reply.bookmark, 'string');
    assert.notEqual(reply.bookmark, bookmark, 'a page with rows moves the bookmark');
    bookmark = reply.bookmark;
    await onPage?.(page);
  }
  return out;
}

function assertSameIds(got: string[], want: string[], what: string): void {
  const seen = new Set<string>();
  const twice = got.filter((id) => (seen.has(id) ? true : (seen.add(id), false)));
  assert.deepEqual(twice, [], `${what}: ids answered twice`);
  const missing = want.filter((id) => !seen.has(id));
  assert.deepEqual(missing, [], `${what}: ids missing`);
  assert.deepEqual(got, want, `${what}: order`);
}

const strip = (doc: Record<string, unknown>) => {
  const { _rev, ...rest } = doc;
  assert.equal(typeof _rev, 'string');
  return rest;
};

/* The queries, and their references. */
const PAGING_SELECTOR = { group: { $gte: 0 }, kind: { $ne: 'z' } };
const pagingExpected = docs.filter((d) => d.group !== undefined && collate(d.group, 0) >= 0 && d.kind !== 'z');
const FALLBACK_SELECTOR = { tag: { $nin: ['t0', 't3'] } };
const fallbackExpected = docs.filter((d) => d.tag !== 't0' && d.tag !== 't3').sort(byId);
const IN_VALUES = [7, 1, 4];
const inExpected = docs.filter((d) => d.group !== undefined && inList(d.group, IN_VALUES));

test('an index made through n1 is used through n2 and n3, answers sorted by its fields', async () => {
  const d = await db();
  const nodes = cluster().nodes;
  assert.ok(pagingExpected.length > 350 && pagingExpected.length < 450, `${pagingExpected.length} docs match the paging selector`);
  const made = await request(nodes[0]!, 'POST', `/${d}/_index`, { body: { index: { fields: ['group', 'score'] }, ddoc: 'idx', name: 'by-group-score', type: 'json' } });
  assert.equal(made.status, 200, made.text);
  assert.deepEqual(made.body, { result: 'created', id: '_design/idx', name: 'by-group-score' });
  const selector = { group: { $gte: 3, $lt: 8 }, score: { $gt: 20 } };
  const expected = docs.filter((x) => isNum(x.group) && x.group >= 3 && x.group < 8 && x.score > 20).sort(order(['group', 'score']));
  assert.ok(expected.length > 50);
  for (const i of [1, 2]) {
    await awaitIndex(i, 'by-group-score');
    const node = nodes[i]!;
    const plan = await explain(node, { selector, sort: [{ group: 'asc' }] });
    assert.equal(plan.index.name, 'by-group-score', JSON.stringify(plan.index));
    assert.equal(plan.index.ddoc, '_design/idx');
    assert.equal(plan.index.type, 'json');
    const reply = await find(node, { selector, sort: [{ group: 'asc' }], limit: BIG_LIMIT });
    assert.equal(reply.warning, undefined, reply.warning);
    assert.deepEqual(reply.docs.map(strip), expected, `through ${cluster().name(i)}`);
    const groups = reply.docs.map((x) => x.group as number);
    assert.deepEqual(groups, [...groups].sort((a, b) => a - b));
    // Both sort fields, descending: the reverse of the index order.
    const desc = await find(node, { selector, sort: [{ group: 'desc' }, { score: 'desc' }], limit: BIG_LIMIT });
    assertSameIds(ids(desc.docs), ids([...expected].reverse()), 'descending');
  }
});

test('bookmark paging through n2: ascending, descending, and the _all_docs fallback', async () => {
  await makeIndex('by-group', ['group']);
  const n2 = () => cluster().nodes[1]!;
  const useIndex = ['idx', 'by-group'];

  for (const [dir, sign] of [['asc', 1], ['desc', -1]] as const) {
    const body = { selector: PAGING_SELECTOR, sort: [{ group: dir }], use_index: useIndex };
    const plan = await explain(n2(), body);
    assert.equal(plan.index.name, 'by-group');
    const want = ids([...pagingExpected].sort(order(['group'], sign)));
    const whole = await find(n2(), { ...body, limit: BIG_LIMIT });
    assertSameIds(ids(whole.docs), want, `one query, ${dir}`);
    assertSameIds(await pageAll(n2, body), want, `pages of ${PAGE}, ${dir}`);
  }

  const plan = await explain(n2(), { selector: FALLBACK_SELECTOR });
  assert.equal(plan.index.name, '_all_docs');
  assert.equal(plan.index.type, 'special');
  const want = ids(fallbackExpected);
  const whole = await find(n2(), { selector: FALLBACK_SELECTOR, limit: BIG_LIMIT });
  assert.match(whole.warning ?? '', /No matching index found/);
  assertSameIds(ids(whole.docs), want, 'fallback, one query');
  assertSameIds(await pageAll(n2, { selector: FALLBACK_SELECTOR }), want, 'fallback, pages');
  // The fallback read backwards: a sort on _id with the selector bounding _id.
  const descBody = { selector: { ...FALLBACK_SELECTOR, _id: { $gt: null } }, sort: [{ _id: 'desc' }] };
  assert.equal((await explain(n2(), descBody)).index.name, '_all_docs');
  assertSameIds(await pageAll(n2, descBody), [...want].reverse(), 'fallback, pages, descending');
  // An _id interval, read backwards and paged: the bookmark resumes inside the bounds.
  const bounded = { selector: { _id: { $gte: '4', $lt: 'c' }, tag: { $ne: 't2' } }, sort: [{ _id: 'desc' }] };
  const wantBounded = ids(docs.filter((x) => x._id >= '4' && x._id < 'c' && x.tag !== 't2').sort(byId).reverse());
  assert.ok(wantBounded.length > 100);
  assertSameIds(await pageAll(n2, bounded), wantBounded, 'fallback, _id bounds, pages, descending');
  const bad = await request(n2(), 'POST', `/${await db()}/_find`, { body: { selector: PAGING_SELECTOR, bookmark: 'not a bookmark' } });
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.body.error, 'invalid_bookmark');

  // Every document, never a design document.
  const every = await find(n2(), { selector: { _id: { $gt: null } }, limit: BIG_LIMIT });
  assertSameIds(ids(every.docs), ids([...docs].sort(byId)), 'every document');

  // skip with a bookmark: skipped after the bookmark's row, on every range.
  const asc = ids([...pagingExpected].sort(order(['group'])));
  const body = { selector: PAGING_SELECTOR, sort: [{ group: 'asc' }], use_index: useIndex };
  const first = await find(n2(), { ...body, limit: 50 });
  assertSameIds(ids(first.docs), asc.slice(0, 50), 'first 50');
  const skipped = await find(n2(), { ...body, limit: 20, skip: 30, bookmark: first.bookmark });
  assertSameIds(ids(skipped.docs), asc.slice(80, 100), 'skip 30 after the bookmark');
  const deep = await find(n2(), { ...body, limit: 20, skip: asc.length - 10 });
  assertSameIds(ids(deep.docs), asc.slice(asc.length - 10), 'skip near the end');
});

test('execution_stats through a node: returned, examined, covering', async () => {
  await makeIndex('by-group', ['group']);
  const node = cluster().nodes[2]!;
  const scan = await find(node, { selector: FALLBACK_SELECTOR, limit: BIG_LIMIT, execution_stats: true });
  const stats = scan.execution_stats!;
  assert.ok(stats, 'execution_stats present');
  assert.equal(stats.results_returned, scan.docs.length);
  assert.equal(scan.docs.length, fallbackExpected.length);
  assert.ok(stats.total_docs_examined! > 0, JSON.stringify(stats));
  // Every range is read on one copy: each document examined once.
  assert.equal(stats.total_docs_examined, docs.length, JSON.stringify(stats));

  const limited = await find(node, { selector: FALLBACK_SELECTOR, limit: 5, execution_stats: true });
  assert.equal(limited.execution_stats!.results_returned, 5);
  assert.equal(limited.docs.length, 5);

  // Usable only when the selector requires every index field, score too.
  const coveringBody = { selector: { group: { $gte: 5 }, score: { $gte: 0 } }, fields: ['_id', 'group', 'score'], use_index: ['idx', 'by-group-score'], limit: BIG_LIMIT };
  const plan = await explain(node, coveringBody);
  assert.equal(plan.index.name, 'by-group-score');
  assert.equal(plan.covering, true);
  const covered = await find(node, { ...coveringBody, execution_stats: true });
  const want = docs.filter((d) => d.group !== undefined && collate(d.group, 5) >= 0).sort(order(['group', 'score']));
  assert.deepEqual(covered.docs, want.map((d) => ({ _id: d._id, group: d.group, score: d.score })));
  assert.equal(covered.execution_stats!.results_returned, covered.docs.length);
  assert.equal(covered.execution_stats!.total_docs_examined, 0, JSON.stringify(covered.execution_stats));
  assert.ok(covered.execution_stats!.total_keys_examined! >= covered.docs.length, JSON.stringify(covered.execution_stats));
  // Covering rows page like the others.
  const { limit: _l, ...coveringPaged } = coveringBody;
  void _l;
  assertSameIds(await pageAll(() => node, coveringPaged), ids(want), 'covering, pages');
});

test('$in on an indexed field: several ranges, merged in index order, paged', async () => {
  await makeIndex('by-group', ['group']);
  const node = cluster().nodes[1]!;
  const selector = { group: { $in: IN_VALUES } };
  const body = { selector, use_index: ['idx', 'by-group'] };
  const plan = await explain(node, body);
  assert.equal(plan.index.type, 'json');
  assert.equal(plan.index.name, 'by-group');
  // One range per value, and (Mango's $in also matches an array holding a value) one for array keys.
  assert.ok(plan.ranges.length >= IN_VALUES.length, JSON.stringify(plan.ranges));
  const want = ids([...inExpected].sort(order(['group'])));
  const whole = await find(node, { ...body, limit: BIG_LIMIT });
  assertSameIds(ids(whole.docs), want, '$in, one query');
  assertSameIds(await pageAll(() => node, body), want, '$in, pages');
  // Without use_index the planner picks a json index too.
  const free = await explain(node, { selector });
  assert.equal(free.index.type, 'json');
  assert.ok(free.ranges.length > 1, JSON.stringify(free.ranges));
  // Descending over several ranges.
  const descBody = { ...body, sort: [{ group: 'desc' }] };
  const wantDesc = ids([...inExpected].sort(order(['group'], -1)));
  assertSameIds(ids((await find(node, { ...descBody, limit: BIG_LIMIT })).docs), wantDesc, '$in, descending');
  assertSameIds(await pageAll(() => node, descBody), wantDesc, '$in, pages, descending');

  // Two $in fields on a two-field index: the product of their values as ranges, paged.
  const scores = [10, 50, 51, 99];
  const twoBody = { selector: { group: { $in: [2, 5, 8] }, score: { $in: scores } }, use_index: ['idx', 'by-group-score'] };
  const two = await explain(node, twoBody);
  assert.equal(two.index.name, 'by-group-score');
  assert.ok(two.ranges.length > 3, JSON.stringify(two.ranges));
  const wantTwo = ids(docs.filter((x) => x.group !== undefined && inList(x.group, [2, 5, 8]) && scores.includes(x.score)).sort(order(['group', 'score'])));
  assertSameIds(await pageAll((p) => cluster().nodes[p % 3]!, twoBody), wantTwo, 'two $in fields, pages through every node');
  // An $or of equalities reads as ranges too.
  const orBody = { selector: { $or: [{ group: 6 }, { group: 0 }] }, use_index: ['idx', 'by-group'] };
  const or = await explain(node, orBody);
  assert.equal(or.index.name, 'by-group');
  assert.equal(or.ranges.length, 2, JSON.stringify(or.ranges));
  const wantOr = ids(docs.filter((x) => x.group === 6 || x.group === 0).sort(order(['group'])));
  assertSameIds(await pageAll(() => node, orBody), wantOr, '$or, pages');
  // More values than findRangesMax (256): one conservative range, the same answer.
  const many = Array.from({ length: 300 }, (_, k) => k - 290); // -290..9
  const manyBody = { selector: { group: { $in: many } }, sort: [{ group: 'desc' }], use_index: ['idx', 'by-group'] };
  const wide = await explain(node, manyBody);
  assert.ok(wide.ranges.length <= 256, `${wide.ranges.length} ranges`);
  const wantMany = ids(docs.filter((x) => x.group !== undefined && inList(x.group, many)).sort(order(['group'], -1)));
  assertSameIds(ids((await find(node, { ...manyBody, limit: BIG_LIMIT })).docs), wantMany, 'more $in values than ranges');
});

test('use_index names an index made through n1 a moment ago on n3; a deleted index stops being used', async () => {
  const d = await db();
  const nodes = cluster().nodes;
  // n3's cache is loaded (and, for remote copies, trusted for a second) before the index exists.
  await find(nodes[2]!, { selector: PAGING_SELECTOR, limit: 1 });
  const made = await request(nodes[0]!, 'POST', `/${d}/_index`, { body: { index: { fields: ['score'] }, ddoc: 'tmp', name: 'by-score', type: 'json' } });
  assert.equal(made.status, 200, made.text);
  const body = { selector: { score: { $gte: 90 } }, use_index: ['tmp', 'by-score'], limit: BIG_LIMIT };
  const want = docs.filter((x) => x.score >= 90);
  const plan = await explain(nodes[2]!, body);
  assert.equal(plan.index.name, 'by-score', 'use_index rereads the design documents when it names one the cache lacks');
  const reply = await find(nodes[2]!, body);
  assert.equal(reply.warning, undefined, reply.warning);
  assertSameIds(ids(reply.docs), ids([...want].sort(order(['score']))), 'new index through n3');

  const deleted = await request(nodes[0]!, 'DELETE', `/${d}/_index/tmp/json/by-score`);
  assert.equal(deleted.status, 200, deleted.text);
  // At once through n2 (its cache may still hold the index): right documents either way.
  const soon = await find(nodes[1]!, body);
  assertSameIds(ids(soon.docs).sort(), ids(want).sort(), 'just after the delete, through n2');
  await waitFor(
    async () => {
      const list = await request(nodes[1]!, 'GET', `/${d}/_index`, { timeoutMs: 10_000 });
      return list.status === 200 && !(list.body.indexes as { name: string }[]).some((x) => x.name === 'by-score');
    },
    CACHE_WAIT_MS,
    'by-score gone from n2',
  );
  const later = await find(nodes[1]!, body);
  assert.match(later.warning ?? '', /_design\/tmp|use_index|No matching index/, `warning: ${later.warning}`);
  assertSameIds(ids(later.docs), ids([...want].sort(byId)), 'after the delete, the _all_docs fallback');
});

test('with a node killed: answers through the survivors, and paging continues across the kill', async () => {
  await makeIndex('by-group', ['group']);
  const body = { selector: PAGING_SELECTOR, sort: [{ group: 'asc' }], use_index: ['idx', 'by-group'] };
  const want = ids([...pagingExpected].sort(order(['group'])));
  // Pages 0..4 through n2, then n3 is killed, the rest alternates n1 and n2.
  let killed = false;
  const nodeFor = (page: number) => (!killed ? cluster().nodes[1]! : cluster().nodes[page % 2]!);
  const paged = await pageAll(nodeFor, body, async (page) => {
    if (page === 4) {
      await cluster().kill9(2);
      killed = true;
    }
  });
  assert.ok(killed);
  assertSameIds(paged, want, 'pages across the kill');

  for (const i of [0, 1]) {
    const node = cluster().nodes[i]!;
    const what = `through ${cluster().name(i)} with n3 down`;
    assertSameIds(ids((await find(node, { ...body, limit: BIG_LIMIT })).docs), want, what);
    const desc = { ...body, sort: [{ group: 'desc' }] };
    assertSameIds(ids((await find(node, { ...desc, limit: BIG_LIMIT })).docs), ids([...pagingExpected].sort(order(['group'], -1))), `${what}, descending`);
    const fallback = await find(node, { selector: FALLBACK_SELECTOR, limit: BIG_LIMIT, execution_stats: true });
    assertSameIds(ids(fallback.docs), ids(fallbackExpected), `${what}, fallback`);
    assert.equal(fallback.execution_stats!.total_docs_examined, docs.length);
    const inBody = { selector: { group: { $in: IN_VALUES } }, use_index: ['idx', 'by-group'] };
    assertSameIds(ids((await find(node, { ...inBody, limit: BIG_LIMIT })).docs), ids([...inExpected].sort(order(['group']))), `${what}, $in`);
  }
  // Writes with n3 down reach every survivor's answers; an index made now is used at once.
  const moved = pagingExpected.find((x) => isNum(x.group))!;
  const gone = pagingExpected.find((x) => x !== moved && isNum(x.group))!;
  const current = await request(cluster().nodes[0]!, 'GET', `/${await db()}/${encodeURIComponent(moved._id)}`);
  assert.equal(current.status, 200, current.text);
  const put = await request(cluster().nodes[0]!, 'PUT', `/${await db()}/${encodeURIComponent(moved._id)}`, { body: { ...current.body, group: 100, kind: 'x' } });
  assert.ok(put.status === 201 || put.status === 202, put.text);
  const head = await request(cluster().nodes[1]!, 'GET', `/${await db()}/${encodeURIComponent(gone._id)}`);
  const del = await request(cluster().nodes[1]!, 'DELETE', `/${await db()}/${encodeURIComponent(gone._id)}?rev=${head.body._rev}`);
  assert.ok(del.status === 200 || del.status === 202, del.text);
  const after = pagingExpected.filter((x) => x !== moved && x !== gone).concat([{ ...moved, group: 100 }]);
  for (const i of [0, 1]) {
    const got = await find(cluster().nodes[i]!, { ...body, limit: BIG_LIMIT });
    assertSameIds(ids(got.docs), ids([...after].sort(order(['group']))), `after writes with n3 down, through ${cluster().name(i)}`);
  }
  const made = await request(cluster().nodes[1]!, 'POST', `/${await db()}/_index`, { body: { index: { fields: ['n'] }, ddoc: 'late', name: 'by-n', type: 'json' } });
  assert.equal(made.status, 200, made.text);
  await awaitIndex(0, 'by-n');
  const byN = { selector: { n: { $lt: 50 } }, sort: [{ n: 'desc' }] };
  assert.equal((await explain(cluster().nodes[0]!, byN)).index.name, 'by-n');
  const wantN = docs.filter((x) => x.n < 50 && x !== gone).sort((a, b) => b.n - a.n);
  assertSameIds(await pageAll((p) => cluster().nodes[p % 2]!, byN), ids(wantN), 'index made with n3 down, paged');

  // The fallback paged across survivors too.
  assertSameIds(await pageAll((p) => cluster().nodes[p % 2]!, { selector: FALLBACK_SELECTOR }), ids(fallbackExpected.filter((x) => x !== gone)), 'fallback pages with n3 down');
});
