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
 * index `view_build` builds (timed) and the query scenarios then read.
 */
import { randomBytes } from 'node:crypto';
import type { HttpClient } from './client';
import { makeDoc, makeViewDoc, newDocId, viewTypesCount, type LoadDoc } from './docs';
import { drive, type DriveResult } from './driver';
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
  signal: AbortSignal;
  log: (line: string) => void;
}

/** What one server keeps between scenarios. */
export interface ServerState {
  /** The database of `scanDocsCount` docs that `_all_docs` and `_changes` read. */
  scanDb: string | null;
  /** The view scenarios' database once its index is built, or why it could not be; null before. */
  view: ViewDb | { failed: string } | null;
}

export interface ViewDb {
  db: string;
  /** `ids[n]` is the id of the doc whose `n` is n. */
  ids: string[];
}

export function newServerState(): ServerState {
  return { scanDb: null, view: null };
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

const higher = (key: string, label: string): MetricSpec => ({ key, label, better: 'higher' });
const lower = (key: string, label: string): MetricSpec => ({ key, label, better: 'lower' });

export const scenarios: readonly Scenario[] = [
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
      const result = await drive({
        ...timedBounds(ctx),
        op: async () => {
          const id = ids[Math.floor(Math.random() * ids.length)];
          const reply = await expectStatus(client, 'GET', docPath(db, id), undefined, [200]);
          if ((reply as { _id?: unknown })._id !== id) throw new Error(`GET ${id}: wrong document`);
          return 1;
        },
      });
      await deleteDb(client, db, ctx);
      return requestOutcome(result, 'requestsPerSecond', { docsInDb: ids.length });
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
      // Worker w owns docs w, w + c, w + 2c, ...: no two requests race for one doc, so
      // a conflict is a server error, not a property of the test.
      const docsPerWorker = Math.floor(docsCount / ctx.concurrency);
      const nextSlot = new Array<number>(ctx.concurrency).fill(0);
      const result = await drive({
        ...timedBounds(ctx),
        op: async (worker, opIndex) => {
          const index = worker + (nextSlot[worker]++ % docsPerWorker) * ctx.concurrency;
          const doc = { ...makeDoc(ids[index], opIndex), _rev: revs[index] };
          const reply = await expectStatus(client, 'PUT', docPath(db, doc._id), doc, [201, 202]);
          const rev = (reply as { rev?: unknown }).rev;
          if (typeof rev !== 'string') throw new Error(`PUT ${doc._id}: no rev in reply`);
          revs[index] = rev;
          return 1;
        },
      });
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
  {
    key: 'memory',
    title: '12. server memory (RSS)',
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
  },
];

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
  const startMs = Date.now();
  const { ids } = await loadDocsWith({
    db,
    count: ctx.viewDocsCount,
    concurrency: ctx.concurrency,
    signal: ctx.signal,
    make: makeViewDoc,
    write: (_batch, docs) => bulkWrite(server.client, db, docs),
  });
  ctx.log(`  ${server.label}: loaded ${ctx.viewDocsCount} view docs in ${((Date.now() - startMs) / 1000).toFixed(1)} s (untimed setup)`);
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

interface PouchReplicationResult {
  ok: boolean;
  status: string;
  docs_read: number;
  docs_written: number;
  doc_write_failures: number;
  errors: unknown[];
}
interface PouchReplication extends Promise<PouchReplicationResult> {
  cancel(): void;
}
interface PouchDb {
  replicate: { from(source: PouchDb): PouchReplication };
  destroy(): Promise<unknown>;
  close(): Promise<unknown>;
}
interface PouchDbConstructor {
  new (name: string, options?: Record<string, unknown>): PouchDb;
  plugin(plugin: unknown): PouchDbConstructor;
}

let memoryPouchDb: PouchDbConstructor | null = null;

/** PouchDB with the memory adapter, loaded on first use so other scenarios run without it. */
function loadPouchDb(): PouchDbConstructor {
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

async function createDb(client: HttpClient, purpose: string): Promise<string> {
  const db = `lt_${purpose}_${randomBytes(4).toString('hex')}`;
  await expectStatus(client, 'PUT', `/${db}`, undefined, [201, 202]);
  return db;
}

async function deleteDb(client: HttpClient, db: string, ctx: RunContext): Promise<void> {
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
async function bulkWrite(client: HttpClient, db: string, docs: LoadDoc[]): Promise<BulkWritten> {
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

async function expectStatus(client: HttpClient, method: string, path: string, body: unknown, statuses: number[]): Promise<unknown> {
  const reply = await client.request(method, path, body);
  if (!statuses.includes(reply.status)) {
    throw new Error(`${method} ${path}: ${reply.status} ${truncate(String(JSON.stringify(reply.body)), 200)}`);
  }
  return reply.body;
}

function docPath(db: string, id: string): string {
  return `/${db}/${encodeURIComponent(id)}`;
}

function truncate(text: string, charsMax: number): string {
  return text.length <= charsMax ? text : `${text.slice(0, charsMax)}…`;
}
