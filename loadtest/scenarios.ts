/**
 * The scenarios of the load test, each run once per server, each on its own database.
 *
 * A scenario names its metrics (with unit and which direction is better) and has one
 * `run` that does its untimed setup (create the database, load documents through
 * `_bulk_docs`), its timed part, and its cleanup (delete the database it no longer
 * needs), and returns the metric values plus details for the JSON report.
 * Timed parts are bounded by `durationMs` and `opsMax` (see driver.ts); setup loads
 * are bounded by `loadDeadlineMs`; replication by `replicateTimeoutMs`.
 * The `_all_docs` and `_changes` scenarios share one database of `scanDocsCount`
 * documents per server, kept in that server's `ServerState`; so do the four view
 * scenarios, with `viewDocsCount` documents and the design doc `_design/load`, whose
 * index `view_build` builds (timed) and the query scenarios then read; so do the five
 * `_find` scenarios, with `findDocsCount` documents, each indexed scenario adding its
 * own Mango index (in its own design doc) whose build it times apart from its queries.
 * The two compaction scenarios live in compaction.ts and use the helpers exported here;
 * all-scenarios.ts lists them all in order.
 */
import { randomBytes } from 'node:crypto';
import { HttpClient } from './client';
import {
  findDateFirstMs,
  findDateSpanSeconds,
  findFields,
  findTagsCount,
  findTypesCount,
  makeDoc,
  makeFindDoc,
  makeViewDoc,
  newDocId,
  viewTypesCount,
  type LoadDoc,
} from './docs';
import { drive, summarizeLatencies, type DriveResult } from './driver';
import { sampleRss, type ServerHandle } from './servers';

export interface RunContext {
  concurrency: number;
  durationMs: number;
  /** Cap per timed scenario on operations (requests; documents for `_bulk_docs`). */
  opsMax: number;
  scanDocsCount: number;
  replicateDocsCount: number;
  replicateTimeoutMs: number;
  /** Documents in the view scenarios' database (separate from `scanDocsCount`). */
  viewDocsCount: number;
  /** Deadline of a view's first query, the one that builds its index. */
  viewBuildTimeoutMs: number;
  /** Documents in the `_find` scenarios' database (separate from the others). */
  findDocsCount: number;
  /** Deadline of a Mango index's build: `POST _index` plus the first `_find` that uses it. */
  findBuildTimeoutMs: number;
  /** Documents of the compaction-under-load database (each updated 5 times before the timed load). */
  compactDocsCount: number;
  /** Cap on waiting for one compaction to finish (the load during it stops then too). */
  compactTimeoutMs: number;
  /** Documents of the compaction-space database. */
  spaceDocsCount: number;
  signal: AbortSignal;
  log: (line: string) => void;
}

/** What one server keeps between scenarios. */
export interface ServerState {
  /** The database of `scanDocsCount` docs that `_all_docs` and `_changes` read. */
  scanDb: string | null;
  /** The view scenarios' database once its index is built, or why it could not be; null before. */
  view: ViewDb | { failed: string } | null;
  /** The `_find` scenarios' database once loaded, or why it could not be; null before. */
  find: FindDb | { failed: string } | null;
}

export interface ViewDb {
  db: string;
  /** `ids[n]` is the id of the doc whose `n` is n. */
  ids: string[];
}

/** The `_find` database and, recomputed from each doc's `n`, what its queries must answer. */
export interface FindDb {
  db: string;
  docsCount: number;
  /** Docs per `type` value. */
  typeCounts: Map<string, number>;
  /** The `date` of every doc of each `type`, ascending. */
  datesByType: Map<string, string[]>;
  /** Docs per `tag` value, and per `tag2` value. */
  tagCounts: Map<string, number>;
  tag2Counts: Map<string, number>;
}

export function newServerState(): ServerState {
  return { scanDb: null, view: null, find: null };
}

export type MetricValues = Record<string, number | null>;

export interface MetricSpec {
  key: string;
  label: string;
  better: 'higher' | 'lower';
}

export interface ScenarioOutcome {
  metrics: MetricValues;
  errors: number;
  errorSamples: string[];
  details: Record<string, unknown>;
}

export interface Scenario {
  key: string;
  title: string;
  metrics: MetricSpec[];
  run(server: ServerHandle, state: ServerState, ctx: RunContext): Promise<ScenarioOutcome>;
}

/** Documents per `_bulk_docs` request, for the bulk scenario and for every load. */
export const bulkBatchDocs = 1000;
/** Concurrent `_bulk_docs` requests while loading (untimed); more only queues on 2 cores. */
const loadConcurrency = 4;
/** A load of `scanDocsCount` docs must finish within this. */
const loadDeadlineMs = 10 * 60 * 1000;
/** Documents read by id are drawn from this many. */
const readDocsCount = 10_000;
/** Documents the update scenario cycles through (at least one per worker). */
const updateDocsCount = 1_000;
/** Full scans per scan scenario at most; at least one always runs. */
const scansMax = 5;
/** Deadline of one full `_all_docs` / `_changes` scan. */
const scanTimeoutMs = 5 * 60 * 1000;
/** A timed scenario stops after this many failed operations. */
const errorsMax = 100;
/** The design doc of the view scenarios, `_design/load`. */
const viewDesignDoc = {
  _id: '_design/load',
  language: 'javascript',
  views: {
    by_type: { map: 'function(doc){ emit(doc.type, 1) }', reduce: '_count' },
    by_n: { map: 'function(doc){ emit(doc.n, null) }' },
  },
};
/**
 * Deadline of one view query after the build. Long: without stored reductions (PouchDB)
 * a reduce reads the whole index, about 300 ms per 5,000 docs, times the concurrency.
 */
const viewQueryTimeoutMs = 5 * 60 * 1000;
/** How often the server's VmRSS is read while a view index builds. */
const buildRssSampleMs = 200;
/** Cap on by-id probes during one view build (their latencies are kept: 8 bytes each). */
const buildProbesMax = 1_000_000;
/** `limit` of every `_find` query. */
const findLimit = 25;
/** Width of the `n` window of the unindexed query: fewer matches than the limit, so a server reads every doc. */
const findUnindexedWindow = 10;
/** Tags in each `$in` query. */
const findInTagsCount = 5;
/**
 * Deadline of one `_find` after its index is built. Long: PouchDB Server answers an
 * unindexed query by reading every doc (about 0.4 s per 10,000 docs) and a `$in` on an
 * indexed field by reading the whole index with its docs (about 2 s per 10,000), and
 * the concurrency multiplies that: at 100,000 docs and 10 clients, minutes per reply.
 */
const findQueryTimeoutMs = 10 * 60 * 1000;

export const higher = (key: string, label: string): MetricSpec => ({ key, label, better: 'higher' });
export const lower = (key: string, label: string): MetricSpec => ({ key, label, better: 'lower' });

/** Every scenario but the last (memory): all-scenarios.ts puts the list together. */
export const coreScenarios: readonly Scenario[] = [
  {
    key: 'create',
    title: '1. create (PUT /db/{id})',
    metrics: [higher('docsPerSecond', 'docs/s'), lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')],
    async run(server, _state, ctx) {
      const { client } = server;
      const db = await createDb(client, 'create');
      let n = 0;
      const result = await drive({
        ...timedBounds(ctx),
        op: async () => {
          const doc = makeDoc(newDocId(), n++);
          await expectStatus(client, 'PUT', docPath(db, doc._id), doc, [201, 202]);
          return 1;
        },
      });
      await deleteDb(client, db, ctx);
      return requestOutcome(result, 'docsPerSecond');
    },
  },
  {
    key: 'read',
    title: '2. read by id (GET /db/{id})',
    metrics: [higher('requestsPerSecond', 'req/s'), lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')],
    async run(server, _state, ctx) {
      const { client } = server;
      const db = await createDb(client, 'read');
      const { ids } = await loadDocs(client, db, Math.min(readDocsCount, ctx.scanDocsCount), ctx);
      const result = await readAtRandom(client, db, ids, ctx);
      await deleteDb(client, db, ctx);
      return requestOutcome(result, 'requestsPerSecond', { docsInDb: ids.length });
    },
  },
  {
    key: 'read_member',
    title: '2b. read by id as a _users member (Basic, member by role)',
    metrics: [higher('requestsPerSecond', 'req/s'), lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')],
    async run(server, _state, ctx) {
      const { client } = server;
      const db = await createDb(client, 'member');
      const { ids } = await loadDocs(client, db, Math.min(readDocsCount, ctx.scanDocsCount), ctx);
      // A user who reaches the database through a role in its _security, as an end user's PouchDB does.
      const name = `reader-${Date.now().toString(36)}`;
      const password = 'loadtest-reader';
      await expectStatus(client, 'PUT', `/_users/${encodeURIComponent('org.couchdb.user:' + name)}`, { name, password, roles: ['reader'], type: 'user' }, [201, 202]);
      await expectStatus(client, 'PUT', `/${db}/_security`, { admins: { names: [], roles: [] }, members: { names: [], roles: ['reader'] } }, [200]);
      const member = new HttpClient({ ...client.options, auth: { username: name, password } });
      try {
        const result = await readAtRandom(member, db, ids, ctx);
        return requestOutcome(result, 'requestsPerSecond', { docsInDb: ids.length });
      } finally {
        member.agent.destroy();
        await expectStatus(client, 'DELETE', `/_users/${encodeURIComponent('org.couchdb.user:' + name)}?rev=${await userRev(client, name)}`, undefined, [200, 202]).catch(() => undefined);
        await deleteDb(client, db, ctx);
      }
    },
  },
  {
    key: 'update',
    title: '3. update (PUT with _rev)',
    metrics: [higher('requestsPerSecond', 'req/s'), lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')],
    async run(server, _state, ctx) {
      const { client } = server;
      const db = await createDb(client, 'update');
      const docsCount = Math.max(updateDocsCount, ctx.concurrency);
      const { ids, revs } = await loadDocs(client, db, docsCount, ctx);
      const result = await drive({ ...timedBounds(ctx), op: updateOp(client, db, ids, revs, ctx.concurrency) });
      await deleteDb(client, db, ctx);
      return requestOutcome(result, 'requestsPerSecond', { docsInDb: docsCount });
    },
  },
  {
    key: 'bulk',
    title: `4. _bulk_docs (${bulkBatchDocs} docs/request)`,
    metrics: [higher('docsPerSecond', 'docs/s'), lower('p50Ms', 'p50 ms/request')],
    async run(server, _state, ctx) {
      const { client } = server;
      const db = await createDb(client, 'bulk');
      let n = 0;
      const result = await drive({
        ...timedBounds(ctx),
        opsMax: Math.max(1, Math.ceil(ctx.opsMax / bulkBatchDocs)),
        op: async () => {
          const docs = Array.from({ length: bulkBatchDocs }, () => makeDoc(newDocId(), n++));
          const written = await bulkWrite(client, db, docs);
          if (written.failures > 0) throw new Error(`_bulk_docs: ${written.failures} of ${docs.length} docs failed (${written.firstError})`);
          return written.revsById.size;
        },
      });
      await deleteDb(client, db, ctx);
      return requestOutcome(result, 'docsPerSecond', { batchDocs: bulkBatchDocs });
    },
  },
  {
    key: 'all_docs',
    title: '5. _all_docs full scan',
    metrics: [higher('rowsPerSecond', 'rows/s'), lower('scanMs', 'ms/scan (p50)')],
    async run(server, state, ctx) {
      const db = await ensureScanDb(server, state, ctx);
      return scanOutcome(await scan(server.client, `/${db}/_all_docs`, ctx));
    },
  },
  {
    key: 'changes',
    title: '6. _changes?since=0 full scan',
    metrics: [higher('rowsPerSecond', 'rows/s'), lower('scanMs', 'ms/scan (p50)')],
    async run(server, state, ctx) {
      const db = await ensureScanDb(server, state, ctx);
      const outcome = scanOutcome(await scan(server.client, `/${db}/_changes?since=0`, ctx));
      await deleteDb(server.client, db, ctx);
      state.scanDb = null;
      return outcome;
    },
  },
  {
    key: 'replicate',
    title: '7. PouchDB pull replication',
    metrics: [higher('docsPerSecond', 'docs/s'), lower('seconds', 'seconds')],
    async run(server, _state, ctx) {
      const { client } = server;
      const db = await createDb(client, 'replicate');
      await loadDocs(client, db, ctx.replicateDocsCount, ctx);
      const outcome = await pullReplicate(server, db, ctx);
      await deleteDb(client, db, ctx);
      return outcome;
    },
  },
  {
    key: 'replicate_server',
    title: '7b. server-side one-shot _replicate (local source → the same server by URL)',
    metrics: [higher('docsPerSecond', 'docs/s'), lower('seconds', 'seconds')],
    async run(server, _state, ctx) {
      const { client } = server;
      const source = await createDb(client, 'repl_src');
      const target = `lt_repl_dst_${randomBytes(4).toString('hex')}`;
      await loadDocs(client, source, ctx.replicateDocsCount, ctx);
      try {
        const startNs = process.hrtime.bigint();
        const reply = await client.request('POST', '/_replicate', { source, target: targetUrl(server, target), create_target: true }, { timeoutMs: ctx.replicateTimeoutMs });
        const elapsedMs = Number(process.hrtime.bigint() - startNs) / 1e6;
        const body = reply.body as { ok?: boolean; history?: { docs_written?: number }[] };
        const written = body.history?.[0]?.docs_written ?? 0;
        const complete = reply.status === 200 && body.ok === true && written === ctx.replicateDocsCount;
        return {
          metrics: { docsPerSecond: complete ? (written * 1000) / elapsedMs : null, seconds: complete ? elapsedMs / 1000 : null },
          errors: complete ? 0 : 1,
          errorSamples: complete ? [] : [`_replicate answered ${reply.status}: ${truncate(JSON.stringify(reply.body), 300)}`],
          details: { elapsedMs, docsWritten: written },
        };
      } finally {
        await deleteDb(client, source, ctx);
        await deleteDb(client, target, ctx);
      }
    },
  },
  {
    key: 'replicate_live',
    title: '7c. continuous _replicate latency (write on source → readable on target, 200 writes)',
    metrics: [lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')],
    async run(server, _state, ctx) {
      const { client } = server;
      const source = await createDb(client, 'live_src');
      const target = `lt_live_dst_${randomBytes(4).toString('hex')}`;
      const body = { source, target: targetUrl(server, target), create_target: true, continuous: true };
      await expectStatus(client, 'POST', '/_replicate', body, [200, 202]);
      const latencies = new Float64Array(liveWrites);
      let errors = 0;
      const errorSamples: string[] = [];
      try {
        // The replication is running once a first document arrives.
        await expectStatus(client, 'PUT', docPath(source, 'warmup'), { w: 1 }, [201, 202]);
        await waitUntilReadable(client, target, 'warmup', liveDeadlineMs * 10);
        for (let i = 0; i < liveWrites && !ctx.signal.aborted; i++) {
          const id = `live-${i}`;
          const startNs = process.hrtime.bigint();
          await expectStatus(client, 'PUT', docPath(source, id), { i }, [201, 202]);
          if (await waitUntilReadable(client, target, id, liveDeadlineMs)) latencies[i] = Number(process.hrtime.bigint() - startNs) / 1e6;
          else {
            errors++;
            latencies[i] = liveDeadlineMs;
            if (errorSamples.length < 3) errorSamples.push(`${id} not on the target within ${liveDeadlineMs} ms`);
          }
        }
      } finally {
        await client.request('POST', '/_replicate', { ...body, cancel: true }).catch(() => undefined);
        await deleteDb(client, source, ctx);
        await deleteDb(client, target, ctx);
      }
      const summary = summarizeLatencies(latencies);
      return { metrics: { p50Ms: summary.p50Ms, p99Ms: summary.p99Ms }, errors, errorSamples, details: { writes: liveWrites, meanMs: summary.meanMs, maxMs: summary.maxMs } };
    },
  },
  {
    key: 'view_build',
    title: '8. view build (first GET _view/by_type)',
    metrics: [
      higher('docsPerSecond', 'docs/s'),
      lower('seconds', 'seconds'),
      lower('peakRssMiB', 'peak RSS MiB during build'),
      lower('probeP50Ms', 'GET by id p50 ms during build'),
      lower('probeP99Ms', 'GET by id p99 ms during build'),
      lower('byNSeconds', 'then by_n first query, seconds'),
    ],
    async run(server, state, ctx) {
      state.view = null;
      const { db, ids } = await loadViewDb(server, ctx);
      try {
        const outcome = await measureViewBuild(server, db, ids, ctx);
        state.view = { db, ids };
        return outcome;
      } catch (err) {
        state.view = { failed: `view_build: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}` };
        await deleteDb(server.client, db, ctx);
        throw err;
      }
    },
  },
  {
    key: 'view_key',
    title: '9. view key lookup (_view/by_n?key=)',
    metrics: [higher('requestsPerSecond', 'req/s'), lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')],
    async run(server, state, ctx) {
      const { db, ids } = await ensureViewDb(server, state, ctx);
      const result = await drive({
        ...timedBounds(ctx),
        op: async () => {
          const n = Math.floor(Math.random() * ids.length);
          const { rows } = await queryView(server.client, db, 'by_n', `key=${n}&include_docs=false`);
          const row = rows[0];
          if (rows.length !== 1 || row.key !== n || row.id !== ids[n]) {
            throw new Error(`by_n key=${n}: ${rows.length} rows (first ${truncate(JSON.stringify(row) ?? 'none', 100)}), expected 1 with id ${ids[n]}`);
          }
          return 1;
        },
      });
      return requestOutcome(result, 'requestsPerSecond', { docsInDb: ids.length });
    },
  },
  {
    key: 'view_group',
    title: '10. view grouped reduce (_view/by_type?group=true)',
    metrics: [higher('requestsPerSecond', 'req/s'), lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')],
    async run(server, state, ctx) {
      const { db, ids } = await ensureViewDb(server, state, ctx);
      const groupsCount = Math.min(viewTypesCount, ids.length);
      const result = await drive({
        ...timedBounds(ctx),
        op: async () => {
          const { rows } = await queryView(server.client, db, 'by_type', 'group=true');
          const sum = rows.reduce((total, row) => total + (typeof row.value === 'number' ? row.value : NaN), 0);
          if (rows.length !== groupsCount || sum !== ids.length) {
            throw new Error(`by_type?group=true: ${rows.length} rows summing to ${sum}, expected ${groupsCount} summing to ${ids.length}`);
          }
          return 1;
        },
      });
      return requestOutcome(result, 'requestsPerSecond', { docsInDb: ids.length, groups: groupsCount });
    },
  },
  {
    key: 'view_reduce',
    title: '11. view full reduce (_view/by_type)',
    metrics: [higher('requestsPerSecond', 'req/s'), lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')],
    async run(server, state, ctx) {
      const view = await ensureViewDb(server, state, ctx);
      const result = await drive({
        ...timedBounds(ctx),
        op: async () => {
          expectCount(await queryView(server.client, view.db, 'by_type', ''), 'by_type', view.ids.length);
          return 1;
        },
      });
      // The last view scenario: the database goes, so the server stops tending its index.
      await deleteDb(server.client, view.db, ctx);
      state.view = null;
      return requestOutcome(result, 'requestsPerSecond', { docsInDb: view.ids.length });
    },
  },
  findScenario({
    key: 'find_eq',
    title: '12. _find equality ({type}, index [type])',
    index: { name: 'by-type', fields: ['type'] },
    makeQuery: (find) => {
      const type = randomFindType();
      const expected = Math.min(findLimit, find.typeCounts.get(type) ?? 0);
      const body = { selector: { type }, limit: findLimit };
      return {
        body,
        check(docs) {
          expectDocsCount(docs, expected, body);
          for (const doc of docs) expectField(doc, 'type', (value) => value === type, body);
        },
      };
    },
  }),
  findScenario({
    key: 'find_range_sort',
    title: '13. _find range + sort ({type, date $gt}, index [type, date])',
    index: { name: 'by-type-date', fields: ['type', 'date'] },
    makeQuery: (find) => {
      const type = randomFindType();
      const after = new Date(findDateFirstMs + Math.floor(Math.random() * findDateSpanSeconds) * 1000).toISOString();
      const dates = find.datesByType.get(type) ?? [];
      const first = firstAbove(dates, after);
      const expected = dates.slice(first, first + findLimit);
      const body = { selector: { type, date: { $gt: after } }, sort: [{ type: 'asc' }, { date: 'asc' }], limit: findLimit };
      return {
        body,
        check(docs) {
          expectDocsCount(docs, expected.length, body);
          docs.forEach((doc, i) => {
            expectField(doc, 'type', (value) => value === type, body);
            expectField(doc, 'date', (value) => value === expected[i], body, `date number ${i + 1} after ${after}, ${expected[i]}`);
          });
        },
      };
    },
  }),
  findScenario({
    key: 'find_unindexed',
    title: `14. _find unindexed ({n} window of ${findUnindexedWindow}, full scan)`,
    index: null,
    makeQuery: (find) => {
      const low = Math.floor(Math.random() * Math.max(1, find.docsCount - findUnindexedWindow + 1));
      const high = low + findUnindexedWindow;
      const expected = Math.min(high, find.docsCount) - low;
      const body = { selector: { n: { $gte: low, $lt: high } }, limit: findLimit };
      return {
        body,
        check(docs) {
          expectDocsCount(docs, expected, body);
          const seen = new Set<unknown>();
          for (const doc of docs) {
            expectField(doc, 'n', (value) => typeof value === 'number' && value >= low && value < high && !seen.has(value), body, 'distinct, in the window');
            seen.add((doc as { n?: unknown }).n);
          }
        },
      };
    },
  }),
  findScenario({
    key: 'find_in5_indexed',
    title: `15. _find $in of ${findInTagsCount} tags (index [tag])`,
    index: { name: 'by-tag', fields: ['tag'] },
    explain: true,
    makeQuery: (find) => inTagsQuery('tag', find.tagCounts),
  }),
  findScenario({
    key: 'find_in5_scan',
    title: `16. _find $in of ${findInTagsCount} tags, unindexed (tag2)`,
    index: null,
    explain: true,
    deletesDb: true,
    makeQuery: (find) => inTagsQuery('tag2', find.tag2Counts),
  }),
];

/** Last, so its peak covers every scenario before it. */
export const memoryScenario: Scenario = {
  key: 'memory',
  title: '19. server memory (RSS)',
  metrics: [lower('idleRssMiB', 'idle RSS MiB'), lower('peakRssMiB', 'peak RSS MiB')],
  async run(server) {
    const now = sampleRss(server.pid);
    return {
      metrics: { idleRssMiB: server.idleRss.rssMiB, peakRssMiB: now.peakRssMiB },
      errors: 0,
      errorSamples: [],
      details: { idle: server.idleRss, end: now },
    };
  },
};

function timedBounds(ctx: RunContext): { concurrency: number; durationMs: number; opsMax: number; errorsMax: number; signal: AbortSignal } {
  return { concurrency: ctx.concurrency, durationMs: ctx.durationMs, opsMax: ctx.opsMax, errorsMax, signal: ctx.signal };
}

function requestOutcome(result: DriveResult, rateKey: string, details: Record<string, unknown> = {}): ScenarioOutcome {
  return {
    metrics: { [rateKey]: result.itemsPerSecond, p50Ms: result.latency.p50Ms, p99Ms: result.latency.p99Ms },
    errors: result.errors,
    errorSamples: result.errorSamples,
    details: { ...details, ops: result.ops, items: result.items, elapsedMs: result.elapsedMs, stoppedBy: result.stoppedBy, latency: result.latency },
  };
}

function scanOutcome(result: DriveResult): ScenarioOutcome {
  return {
    metrics: { rowsPerSecond: result.itemsPerSecond, scanMs: result.latency.p50Ms },
    errors: result.errors,
    errorSamples: result.errorSamples,
    details: { scans: result.ops, rows: result.items, elapsedMs: result.elapsedMs, stoppedBy: result.stoppedBy, latency: result.latency },
  };
}

/** Sequential full scans (one client) until the scenario's time is up, at least one. */
function scan(client: HttpClient, feedPath: string, ctx: RunContext): Promise<DriveResult> {
  return drive({
    concurrency: 1,
    durationMs: ctx.durationMs,
    opsMax: scansMax,
    errorsMax: 1,
    signal: ctx.signal,
    op: async () => {
      const reply = await client.scan(feedPath, { timeoutMs: scanTimeoutMs });
      if (reply.status !== 200) throw new Error(`GET ${feedPath}: ${reply.status}`);
      if (reply.rowsCount !== ctx.scanDocsCount) {
        throw new Error(`GET ${feedPath}: ${reply.rowsCount} rows, expected ${ctx.scanDocsCount}`);
      }
      return reply.rowsCount;
    },
  });
}

async function ensureScanDb(server: ServerHandle, state: ServerState, ctx: RunContext): Promise<string> {
  if (state.scanDb !== null) return state.scanDb;
  const db = await createDb(server.client, 'scan');
  const startMs = Date.now();
  await loadDocs(server.client, db, ctx.scanDocsCount, ctx);
  const seconds = (Date.now() - startMs) / 1000;
  ctx.log(`  ${server.label}: loaded ${ctx.scanDocsCount} docs in ${seconds.toFixed(1)} s (untimed setup)`);
  state.scanDb = db;
  return db;
}

/** A fresh database of `viewDocsCount` view docs, loaded untimed; no design doc yet. */
async function loadViewDb(server: ServerHandle, ctx: RunContext): Promise<ViewDb> {
  const db = await createDb(server.client, 'view');
  const ids = await loadUntimed(server, ctx, db, ctx.viewDocsCount, makeViewDoc, 'view');
  return { db, ids };
}

/**
 * The view database with its index built: the one `view_build` left, else (when that
 * scenario was not selected) a new one, built untimed. Throws when `view_build` failed,
 * so the query scenarios fail at once instead of waiting for a second build.
 */
async function ensureViewDb(server: ServerHandle, state: ServerState, ctx: RunContext): Promise<ViewDb> {
  if (state.view !== null) {
    if ('failed' in state.view) throw new Error(`no view index (${state.view.failed})`);
    return state.view;
  }
  const view = await loadViewDb(server, ctx);
  try {
    await expectStatus(server.client, 'PUT', `/${view.db}/${viewDesignDoc._id}`, viewDesignDoc, [201, 202]);
    const startMs = Date.now();
    expectCount(await queryView(server.client, view.db, 'by_type', 'limit=1', ctx.viewBuildTimeoutMs), 'by_type', view.ids.length);
    await queryView(server.client, view.db, 'by_n', 'limit=1', ctx.viewBuildTimeoutMs);
    ctx.log(`  ${server.label}: built the views in ${((Date.now() - startMs) / 1000).toFixed(1)} s (untimed setup)`);
  } catch (err) {
    state.view = { failed: `untimed view build: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}` };
    await deleteDb(server.client, view.db, ctx);
    throw err;
  }
  state.view = view;
  return view;
}

/**
 * PUTs the design doc, then times the first `by_type?limit=1` query, which builds the
 * index. Meanwhile the server's VmRSS is read every `buildRssSampleMs` and one client
 * GETs random docs by id back to back (latency of ordinary reads during a build).
 * Afterwards, untimed by the main figure, the first `by_n` query: a server that builds
 * one view at a time (PouchDB) builds it then, one that builds the design doc's views
 * together (CouchDB) answers at once; `view_key` then measures queries, not a build.
 */
async function measureViewBuild(server: ServerHandle, db: string, ids: string[], ctx: RunContext): Promise<ScenarioOutcome> {
  const { client } = server;
  await expectStatus(client, 'PUT', `/${db}/${viewDesignDoc._id}`, viewDesignDoc, [201, 202]);

  const rss = startRssSampler(server.pid);
  const buildDone = new AbortController();
  const probing = drive({
    concurrency: 1,
    durationMs: ctx.viewBuildTimeoutMs,
    opsMax: buildProbesMax,
    errorsMax: buildProbesMax,
    signal: AbortSignal.any([ctx.signal, buildDone.signal]),
    op: async () => {
      const id = ids[Math.floor(Math.random() * ids.length)];
      const reply = await expectStatus(client, 'GET', docPath(db, id), undefined, [200]);
      if ((reply as { _id?: unknown })._id !== id) throw new Error(`GET ${id}: wrong document`);
      return 1;
    },
  });
  const startNs = process.hrtime.bigint();
  let buildMs: number;
  let reply: ViewReply;
  let rssPeak: RssPeak;
  let probes: DriveResult;
  try {
    reply = await queryView(client, db, 'by_type', 'limit=1', ctx.viewBuildTimeoutMs);
  } finally {
    buildMs = Number(process.hrtime.bigint() - startNs) / 1e6;
    buildDone.abort();
    rssPeak = rss.stop();
    probes = await probing;
  }
  expectCount(reply, 'by_type', ids.length);

  const byNStartNs = process.hrtime.bigint();
  const byN = await queryView(client, db, 'by_n', 'limit=1', ctx.viewBuildTimeoutMs);
  const byNMs = Number(process.hrtime.bigint() - byNStartNs) / 1e6;
  if (byN.rows.length !== Math.min(1, ids.length)) throw new Error(`by_n?limit=1: ${byN.rows.length} rows`);

  return {
    metrics: {
      docsPerSecond: (ids.length * 1000) / buildMs,
      seconds: buildMs / 1000,
      peakRssMiB: rssPeak.peakRssMiB,
      probeP50Ms: probes.latency.p50Ms,
      probeP99Ms: probes.latency.p99Ms,
      byNSeconds: byNMs / 1000,
    },
    errors: probes.errors,
    errorSamples: probes.errorSamples.map((message) => `probe during build: ${message}`),
    details: {
      docsInDb: ids.length,
      buildMs,
      rss: rssPeak,
      probes: { ops: probes.ops, errors: probes.errors, elapsedMs: probes.elapsedMs, stoppedBy: probes.stoppedBy, latency: probes.latency },
      byNMs,
    },
  };
}

interface RssPeak {
  /** Highest VmRSS read while the sampler ran; null when /proc could not be read. */
  peakRssMiB: number | null;
  startRssMiB: number | null;
  endRssMiB: number | null;
  samples: number;
}

/** Reads the process's VmRSS now and every `buildRssSampleMs` until `stop`. */
function startRssSampler(pid: number): { stop(): RssPeak } {
  const startRssMiB = sampleRss(pid).rssMiB;
  let peakRssMiB = startRssMiB;
  let samples = startRssMiB === null ? 0 : 1;
  const read = (): number | null => {
    const { rssMiB } = sampleRss(pid);
    if (rssMiB !== null) {
      samples++;
      peakRssMiB = Math.max(peakRssMiB ?? 0, rssMiB);
    }
    return rssMiB;
  };
  const timer = setInterval(read, buildRssSampleMs);
  return {
    stop() {
      clearInterval(timer);
      const endRssMiB = read();
      return { peakRssMiB, startRssMiB, endRssMiB, samples };
    },
  };
}

interface ViewRow {
  id?: unknown;
  key?: unknown;
  value?: unknown;
}
interface ViewReply {
  rows: ViewRow[];
}

/** GET `/db/_design/load/_view/{view}?{query}`; throws unless 200 with a `rows` array. */
async function queryView(client: HttpClient, db: string, view: string, query: string, timeoutMs = viewQueryTimeoutMs): Promise<ViewReply> {
  const viewPath = `/${db}/${viewDesignDoc._id}/_view/${view}${query === '' ? '' : `?${query}`}`;
  const reply = await client.request('GET', viewPath, undefined, { timeoutMs });
  const rows = (reply.body as { rows?: unknown } | null)?.rows;
  if (reply.status !== 200 || !Array.isArray(rows)) {
    throw new Error(`GET ${viewPath}: ${reply.status} ${truncate(String(JSON.stringify(reply.body)), 200)}`);
  }
  return { rows: rows as ViewRow[] };
}

/** A reduced `_count` answer without grouping: one row whose value is every doc. */
function expectCount(reply: ViewReply, view: string, docsCount: number): void {
  const value = reply.rows[0]?.value;
  if (reply.rows.length !== 1 || value !== docsCount) {
    throw new Error(`${view} reduced: ${reply.rows.length} rows, value ${String(value)}, expected one row of ${docsCount}`);
  }
}

/** One `_find` query and how to judge its `docs`: throws when they are not the answer. */
interface FindQuery {
  body: Record<string, unknown>;
  check(docs: unknown[]): void;
}

interface FindScenarioDef {
  key: string;
  title: string;
  /** The json index this scenario creates and builds (untimed, but measured); null for none. */
  index: { name: string; fields: string[] } | null;
  /** A fresh random query over the database. */
  makeQuery(find: FindDb): FindQuery;
  /** Also ask `_explain` once, untimed, which index answers the query (recorded in details). */
  explain?: boolean;
  /** The last `_find` scenario: deletes the database afterwards. */
  deletesDb?: boolean;
}

/**
 * A `_find` scenario on the shared database. Untimed: the load (first scenario only),
 * then either the index build (`POST _index` and the first query that uses it, within
 * `findBuildTimeoutMs`, its time the `indexBuildSeconds` metric) or, without an index,
 * one first query. Either must answer right, else the scenario fails (a server that
 * answers `_find` with errors gets no figures). Timed: random queries of the same
 * shape, each reply checked; a wrong one counts as an error.
 */
function findScenario(def: FindScenarioDef): Scenario {
  const metrics = [higher('requestsPerSecond', 'req/s'), lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms')];
  if (def.index !== null) metrics.push(lower('indexBuildSeconds', 'find_index_build s'));
  return {
    key: def.key,
    title: def.title,
    metrics,
    async run(server, state, ctx) {
      const { client } = server;
      const find = await ensureFindDb(server, state, ctx);
      try {
        const details: Record<string, unknown> = { docsInDb: find.docsCount, query: def.makeQuery(find).body };
        let buildMs: number | null = null;
        if (def.index !== null) {
          const build = await buildFindIndex(client, find.db, def.index, def.makeQuery(find), ctx);
          buildMs = build.buildMs;
          details.indexBuild = build;
          ctx.log(`  ${server.label}: index [${def.index.fields.join(', ')}] built in ${(build.buildMs / 1000).toFixed(2)} s (untimed setup)`);
        } else {
          const startNs = process.hrtime.bigint();
          await runFind(client, find.db, def.makeQuery(find), findQueryTimeoutMs);
          details.firstQueryMs = Number(process.hrtime.bigint() - startNs) / 1e6;
        }
        const result = await drive({
          ...timedBounds(ctx),
          op: async () => {
            await runFind(client, find.db, def.makeQuery(find), findQueryTimeoutMs);
            return 1;
          },
        });
        if (result.items === 0) throw new Error(`no _find answered right (stopped by ${result.stoppedBy}): ${result.errorSamples[0] ?? 'no sample'}`);
        if (def.explain === true) {
          const explained = await explainFind(client, find.db, def.makeQuery(find).body);
          details.explain = explained;
          const said = 'error' in explained ? `failed: ${String(explained.error)}` : `index ${String(explained.name)} (${String(explained.ddoc)}, ${String(explained.type)})`;
          ctx.log(`  ${server.label}: _explain ${said}`);
        }
        const outcome = requestOutcome(result, 'requestsPerSecond', details);
        if (buildMs !== null) outcome.metrics.indexBuildSeconds = buildMs / 1000;
        return outcome;
      } finally {
        if (def.deletesDb === true) {
          // The last `_find` scenario: the database goes, with its indexes.
          await deleteDb(client, find.db, ctx);
          state.find = null;
        }
      }
    },
  };
}

/** The `_find` database: the one loaded for an earlier scenario, else a new one (untimed). */
async function ensureFindDb(server: ServerHandle, state: ServerState, ctx: RunContext): Promise<FindDb> {
  if (state.find !== null) {
    if ('failed' in state.find) throw new Error(`no _find database (${state.find.failed})`);
    return state.find;
  }
  const db = await createDb(server.client, 'find');
  try {
    await loadUntimed(server, ctx, db, ctx.findDocsCount, makeFindDoc, '_find');
  } catch (err) {
    state.find = { failed: `loading: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}` };
    await deleteDb(server.client, db, ctx);
    throw err;
  }
  state.find = { db, ...findAnswers(ctx.findDocsCount) };
  return state.find;
}

/** What the queries over docs 0..count-1 must answer, from the fields each doc's `n` gives. */
function findAnswers(count: number): Omit<FindDb, 'db'> {
  const typeCounts = new Map<string, number>();
  const datesByType = new Map<string, string[]>();
  const tagCounts = new Map<string, number>();
  const tag2Counts = new Map<string, number>();
  for (let n = 0; n < count; n++) {
    const { type, date, tag, tag2 } = findFields(n);
    typeCounts.set(type, (typeCounts.get(type) ?? 0) + 1);
    const dates = datesByType.get(type);
    if (dates === undefined) datesByType.set(type, [date]);
    else dates.push(date);
    tagCounts.set(tag, (tagCounts.get(tag) ?? 0) + 1);
    tag2Counts.set(tag2, (tag2Counts.get(tag2) ?? 0) + 1);
  }
  // ISO strings of one format sort as their instants do, by code point and by ICU collation alike.
  for (const dates of datesByType.values()) dates.sort();
  return { docsCount: count, typeCounts, datesByType, tagCounts, tag2Counts };
}

/**
 * `POST /db/_index` (a json index in its own design doc, `lt-find-{name}`), then the
 * first query that uses it, both within `findBuildTimeoutMs`. CouchDB builds a Mango
 * index on its first query, PouchDB while answering `_index`: the build is the sum.
 */
async function buildFindIndex(
  client: HttpClient,
  db: string,
  index: { name: string; fields: string[] },
  query: FindQuery,
  ctx: RunContext,
): Promise<{ buildMs: number; indexMs: number; firstQueryMs: number; result: unknown }> {
  const body = { index: { fields: index.fields }, ddoc: `lt-find-${index.name}`, name: index.name, type: 'json' };
  const startNs = process.hrtime.bigint();
  const reply = await client.request('POST', `/${db}/_index`, body, { timeoutMs: ctx.findBuildTimeoutMs });
  if (reply.status !== 200 && reply.status !== 201) {
    throw new Error(`POST /${db}/_index ${JSON.stringify(index.fields)}: ${reply.status} ${truncate(String(JSON.stringify(reply.body)), 200)}`);
  }
  const indexMs = Number(process.hrtime.bigint() - startNs) / 1e6;
  await runFind(client, db, query, Math.max(1, Math.ceil(ctx.findBuildTimeoutMs - indexMs)));
  const buildMs = Number(process.hrtime.bigint() - startNs) / 1e6;
  return { buildMs, indexMs, firstQueryMs: buildMs - indexMs, result: (reply.body as { result?: unknown } | null)?.result };
}

/** `POST /db/_find`; throws unless 200 with a `docs` array that passes the query's check. */
async function runFind(client: HttpClient, db: string, query: FindQuery, timeoutMs: number): Promise<void> {
  const reply = await client.request('POST', `/${db}/_find`, query.body, { timeoutMs });
  const docs = (reply.body as { docs?: unknown } | null)?.docs;
  if (reply.status !== 200 || !Array.isArray(docs)) {
    throw new Error(`POST /${db}/_find ${describeFind(query.body)}: ${reply.status} ${truncate(String(JSON.stringify(reply.body)), 200)}`);
  }
  query.check(docs);
}

/** Which index `_explain` says answers `body`; the error text instead when it cannot say (never throws). */
async function explainFind(client: HttpClient, db: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  try {
    const reply = await client.request('POST', `/${db}/_explain`, body);
    const index = (reply.body as { index?: unknown } | null)?.index;
    if (reply.status !== 200 || typeof index !== 'object' || index === null) {
      return { error: `${reply.status} ${truncate(String(JSON.stringify(reply.body)), 300)}` };
    }
    const { ddoc, name, type, def } = index as { ddoc?: unknown; name?: unknown; type?: unknown; def?: unknown };
    return { ddoc, name, type, def };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** `{field: {$in: [5 distinct random tags]}}`; every doc must carry one of them, and as many as there are (to the limit). */
function inTagsQuery(field: 'tag' | 'tag2', counts: Map<string, number>): FindQuery {
  const tags = new Set<string>();
  while (tags.size < Math.min(findInTagsCount, findTagsCount)) tags.add(`tag-${Math.floor(Math.random() * findTagsCount)}`);
  let matches = 0;
  for (const tag of tags) matches += counts.get(tag) ?? 0;
  const expected = Math.min(findLimit, matches);
  const body = { selector: { [field]: { $in: [...tags] } }, limit: findLimit };
  return {
    body,
    check(docs) {
      expectDocsCount(docs, expected, body);
      for (const doc of docs) expectField(doc, field, (value) => typeof value === 'string' && tags.has(value), body);
    },
  };
}

function randomFindType(): string {
  return `type-${Math.floor(Math.random() * findTypesCount)}`;
}

/** Index of the first of the ascending `sorted` above `value` (its length if none). */
function firstAbove(sorted: string[], value: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle] <= value) low = middle + 1;
    else high = middle;
  }
  return low;
}

function expectDocsCount(docs: unknown[], expected: number, body: Record<string, unknown>): void {
  if (docs.length !== expected) throw new Error(`_find ${describeFind(body)}: ${docs.length} docs, expected ${expected}`);
}

function expectField(doc: unknown, field: string, ok: (value: unknown) => boolean, body: Record<string, unknown>, wanted = 'the selector'): void {
  const value = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>)[field] : undefined;
  if (!ok(value)) throw new Error(`_find ${describeFind(body)}: a doc with ${field} ${truncate(String(JSON.stringify(value)), 60)}, expected ${wanted}`);
}

function describeFind(body: Record<string, unknown>): string {
  return truncate(JSON.stringify(body), 160);
}

interface PouchReplicationResult {
  ok: boolean;
  status: string;
  docs_read: number;
  docs_written: number;
  doc_write_failures: number;
  errors: unknown[];
}
export interface PouchReplication extends Promise<PouchReplicationResult> {
  cancel(): void;
  on(event: string, listener: (info: unknown) => void): PouchReplication;
}
export interface PouchDb {
  /** `source`: another PouchDB, or a server database's URL (`options.live` for a continuous pull). */
  replicate: { from(source: PouchDb | unknown, options?: Record<string, unknown>): PouchReplication };
  destroy(): Promise<unknown>;
  close(): Promise<unknown>;
}
export interface PouchDbConstructor {
  new (name: string, options?: Record<string, unknown>): PouchDb;
  plugin(plugin: unknown): PouchDbConstructor;
}

let memoryPouchDb: PouchDbConstructor | null = null;

/** PouchDB with the memory adapter, loaded on first use so other scenarios run without it. */
export function loadPouchDb(): PouchDbConstructor {
  memoryPouchDb ??= (require('pouchdb') as PouchDbConstructor).plugin(require('pouchdb-adapter-memory'));
  return memoryPouchDb;
}

async function pullReplicate(server: ServerHandle, db: string, ctx: RunContext): Promise<ScenarioOutcome> {
  const PouchDB = loadPouchDb();
  const suffix = randomBytes(4).toString('hex');
  const local = new PouchDB(`lt-local-${server.kind}-${suffix}`, { adapter: 'memory' });
  const remote = new PouchDB(`${server.client.origin}/${db}`, { auth: server.auth, skip_setup: true });
  const startNs = process.hrtime.bigint();
  const replication = local.replicate.from(remote);
  const cancel = (): void => replication.cancel();
  const timer = setTimeout(cancel, ctx.replicateTimeoutMs);
  ctx.signal.addEventListener('abort', cancel, { once: true });
  try {
    const result = await replication;
    const elapsedMs = Number(process.hrtime.bigint() - startNs) / 1e6;
    const complete = result.status === 'complete' && result.docs_written === ctx.replicateDocsCount;
    const errorSamples = complete
      ? []
      : [`replication ${result.status}: ${result.docs_written} of ${ctx.replicateDocsCount} docs written, ${result.doc_write_failures} failures`];
    return {
      metrics: { docsPerSecond: complete ? (result.docs_written * 1000) / elapsedMs : null, seconds: complete ? elapsedMs / 1000 : null },
      errors: complete ? 0 : 1,
      errorSamples,
      details: { elapsedMs, status: result.status, docsRead: result.docs_read, docsWritten: result.docs_written, docWriteFailures: result.doc_write_failures },
    };
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', cancel);
    await remote.close().catch(() => undefined);
    await local.destroy().catch(() => undefined);
  }
}

/**
 * The update scenario's operation: PUT of a loaded doc with its current `_rev`. Worker w
 * owns docs w, w + c, w + 2c, ...: no two requests race for one doc, so a conflict is a
 * server error, not a property of the test. `revs` is kept current.
 */
export function updateOp(client: HttpClient, db: string, ids: readonly string[], revs: string[], concurrency: number): (worker: number, opIndex: number) => Promise<number> {
  const docsPerWorker = Math.floor(ids.length / concurrency);
  const nextSlot = new Array<number>(concurrency).fill(0);
  return async (worker, opIndex) => {
    const index = worker + (nextSlot[worker]!++ % docsPerWorker) * concurrency;
    const doc = { ...makeDoc(ids[index]!, opIndex), _rev: revs[index] };
    const reply = await expectStatus(client, 'PUT', docPath(db, doc._id), doc, [201, 202]);
    const rev = (reply as { rev?: unknown }).rev;
    if (typeof rev !== 'string') throw new Error(`PUT ${doc._id}: no rev in reply`);
    revs[index] = rev;
    return 1;
  };
}

export async function createDb(client: HttpClient, purpose: string): Promise<string> {
  const db = `lt_${purpose}_${randomBytes(4).toString('hex')}`;
  await expectStatus(client, 'PUT', `/${db}`, undefined, [201, 202]);
  return db;
}

export async function deleteDb(client: HttpClient, db: string, ctx: RunContext): Promise<void> {
  try {
    await expectStatus(client, 'DELETE', `/${db}`, undefined, [200, 202]);
  } catch (err) {
    ctx.log(`  (could not delete ${db}: ${err instanceof Error ? err.message : String(err)})`);
  }
}

/** Loads `count` new docs through `_bulk_docs` (untimed setup); throws unless all were written. */
async function loadDocs(client: HttpClient, db: string, count: number, ctx: RunContext): Promise<{ ids: string[]; revs: string[] }> {
  const { ids, revs } = await loadDocsWith({ db, count, concurrency: ctx.concurrency, signal: ctx.signal, write: (_batch, docs) => bulkWrite(client, db, docs) });
  return { ids, revs };
}

export interface BulkWritten {
  revsById: Map<string, string>;
  failures: number;
  firstError: string;
}

/**
 * Load `count` new docs in `_bulk_docs` batches of `bulkBatchDocs` (untimed setup,
 * shared by both load tests); `write` sends one batch. Throws unless all were written.
 */
/** Load `count` docs made by `make` into `db` (untimed setup), logging how long it took; their ids. */
async function loadUntimed(server: ServerHandle, ctx: RunContext, db: string, count: number, make: (id: string, n: number) => LoadDoc, what: string): Promise<string[]> {
  const startMs = Date.now();
  const { ids } = await loadDocsWith({ db, count, concurrency: ctx.concurrency, signal: ctx.signal, make, write: (_batch, docs) => bulkWrite(server.client, db, docs) });
  ctx.log(`  ${server.label}: loaded ${count} ${what} docs in ${((Date.now() - startMs) / 1000).toFixed(1)} s (untimed setup)`);
  return ids;
}

export async function loadDocsWith(options: {
  db: string;
  count: number;
  concurrency: number;
  signal: AbortSignal;
  /** Builds doc number n; `makeDoc` unless given. */
  make?: (id: string, n: number) => LoadDoc;
  write: (batch: number, docs: LoadDoc[]) => Promise<BulkWritten>;
}): Promise<{ ids: string[]; revs: string[]; result: DriveResult }> {
  const make = options.make ?? makeDoc;
  const { db, count } = options;
  const ids = new Array<string>(count);
  const revs = new Array<string>(count);
  const result = await drive({
    concurrency: Math.min(loadConcurrency, options.concurrency),
    durationMs: loadDeadlineMs,
    opsMax: Math.ceil(count / bulkBatchDocs),
    errorsMax: 1,
    signal: options.signal,
    op: async (_worker, batch) => {
      const first = batch * bulkBatchDocs;
      const docs: LoadDoc[] = [];
      for (let i = first; i < Math.min(first + bulkBatchDocs, count); i++) {
        ids[i] = newDocId();
        docs.push(make(ids[i], i));
      }
      const written = await options.write(batch, docs);
      if (written.failures > 0) throw new Error(`loading ${db}: ${written.failures} docs failed (${written.firstError})`);
      docs.forEach((doc, offset) => (revs[first + offset] = written.revsById.get(doc._id) ?? ''));
      return docs.length;
    },
  });
  if (result.errors > 0 || result.items !== count) {
    throw new Error(`loading ${count} docs into ${db} stopped (${result.stoppedBy}) after ${result.items}: ${result.errorSamples.join('; ')}`);
  }
  return { ids, revs, result };
}

/**
 * POST `_bulk_docs`; returns the new rev of each written doc by id, and how many docs
 * failed. Matched by id, not position: PouchDB Server 4.2 answers out of request order.
 */
export async function bulkWrite(client: HttpClient, db: string, docs: LoadDoc[]): Promise<BulkWritten> {
  return readBulkReply(await expectStatus(client, 'POST', `/${db}/_bulk_docs`, { docs }, [201, 202]), docs);
}

/** A `_bulk_docs` answer as the new rev of each written doc by id, and how many failed. */
export function readBulkReply(reply: unknown, docs: LoadDoc[]): BulkWritten {
  if (!Array.isArray(reply) || reply.length !== docs.length) throw new Error(`_bulk_docs: reply is not ${docs.length} results`);
  const revsById = new Map<string, string>();
  let firstError = '';
  for (const item of reply as { id?: unknown; rev?: unknown; error?: unknown; reason?: unknown }[]) {
    if (typeof item.id === 'string' && typeof item.rev === 'string' && item.error === undefined) {
      revsById.set(item.id, item.rev);
      continue;
    }
    firstError ||= `${String(item.error)}: ${String(item.reason)}`;
  }
  const failures = docs.filter((doc) => !revsById.has(doc._id)).length;
  return { revsById, failures, firstError: firstError || 'ids missing from the reply' };
}

export async function expectStatus(client: HttpClient, method: string, path: string, body: unknown, statuses: number[]): Promise<unknown> {
  const reply = await client.request(method, path, body);
  if (!statuses.includes(reply.status)) {
    throw new Error(`${method} ${path}: ${reply.status} ${truncate(String(JSON.stringify(reply.body)), 200)}`);
  }
  return reply.body;
}

export function docPath(db: string, id: string): string {
  return `/${db}/${encodeURIComponent(id)}`;
}

export function truncate(text: string, charsMax: number): string {
  return text.length <= charsMax ? text : `${text.slice(0, charsMax)}…`;
}

async function userRev(client: HttpClient, name: string): Promise<string> {
  const reply = await expectStatus(client, 'GET', `/_users/${encodeURIComponent('org.couchdb.user:' + name)}`, undefined, [200]);
  return String((reply as { _rev?: unknown })._rev);
}

/** The read scenarios' timed loop: GET a random one of `ids`, checking it is that document. */
function readAtRandom(client: HttpClient, db: string, ids: readonly string[], ctx: RunContext): Promise<DriveResult> {
  return drive({
    ...timedBounds(ctx),
    op: async () => {
      const id = ids[Math.floor(Math.random() * ids.length)]!;
      const reply = await expectStatus(client, 'GET', docPath(db, id), undefined, [200]);
      if ((reply as { _id?: unknown })._id !== id) throw new Error(`GET ${id}: wrong document`);
      return 1;
    },
  });
}

/** Writes the live replication scenario times, one after another. */
const liveWrites = 200;
/** A write not on the target within this long counts as an error (and at this latency). */
const liveDeadlineMs = 10_000;

/** The target database as a URL on the same server, with the run's credentials (both servers replicate over HTTP). */
function targetUrl(server: ServerHandle, db: string): string {
  const { username, password } = server.auth;
  return `http://${encodeURIComponent(username)}:${encodeURIComponent(password)}@127.0.0.1:${server.client.options.port}/${db}`;
}

/** Poll the target for a document, without sleeping (loopback GETs take well under a millisecond); false at the deadline. */
async function waitUntilReadable(client: HttpClient, db: string, id: string, deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    const reply = await client.request('GET', docPath(db, id));
    if (reply.status === 200) return true;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return false;
}
