/**
 * Compaction scenarios: what a database compaction costs a server under load, and
 * how much space it gives back.
 *
 * Both make garbage the same way (untimed): docs loaded with `_bulk_docs`, then every
 * doc updated `updateRounds` times, `bulkBatchDocs` per request, so each doc carries
 * that many dead revision bodies for compaction to drop.
 * - compact_load: a mixed load (per worker, a GET by id then a PUT with the current
 *   `_rev`, alternately; worker w alone updates docs w, w + c, w + 2c, ..., so a 409
 *   is a server fault) for `durationMs` without compaction, then the same load from
 *   `POST _compact` until the server says compaction is over. Reads and writes are
 *   timed apart; the figures that matter are during ÷ before.
 * - compact_space: GET /db `sizes` and the server's data directory on disk before
 *   and after compaction, beside a fresh database holding the same winning bodies
 *   (same ids and contents, new revs): what a compacted database should come near.
 *
 * When a compaction is over: a server whose GET /db has a boolean `compact_running`
 * (CouchDB, Divan) answers `POST _compact` with 202 at once and is polled every
 * `pollIntervalMs` until it says false; one without it (PouchDB Server 4.2, whose
 * `_compact` answers only when done) is timed by the POST's reply. Either way the wait
 * is capped by `compactTimeoutMs`, and `GET /_active_tasks` is sampled alongside (its
 * `database_compaction` entry is recorded, never required). Each scenario first
 * compacts its empty database, so a server that refuses `_compact` fails at once with
 * its answer, not after minutes of loading.
 * Listed by scenarios.ts, whose helpers (database, request and `_bulk_docs` plumbing)
 * it requires at run time.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HttpClient, JsonReply } from './client';
import { makeDoc, type LoadDoc } from './docs';
import { drive, summarizeLatencies, type LatencySummary, type StopReason } from './driver';
import type { ServerHandle } from './servers';
import { bulkBatchDocs, bulkWrite, createDb, deleteDb, docPath, expectStatus, higher, loadDocsWith, lower, truncate, type RunContext, type Scenario, type ScenarioOutcome } from './scenarios';

/** Updates of every doc before anything is measured: the garbage compaction drops. */
const updateRounds = 5;
/** How often GET /db (and /_active_tasks) is read while a compaction runs. */
const pollIntervalMs = 100;
/** A compaction shorter than this leaves the "during" figures little to stand on; it is recorded. */
const shortCompactionMs = 1000;
/** Extra wait before sizes and disk are read a second time (files the store deletes late). */
const settleMs = 2000;
/** Cap on compacting the empty database that each scenario starts with. */
const probeTimeoutMs = 30_000;
/** Concurrent `_bulk_docs` requests in the untimed setup. */
const setupConcurrencyMax = 4;
/** One round of updates (or the fresh load) must finish within this. */
const setupRoundDeadlineMs = 10 * 60 * 1000;
/** A timed phase stops after this many failed requests. */
const errorsMax = 100;
/** The disk walk gives up beyond this many files rather than grow without bound. */
const diskFilesMax = 1_000_000;
/** Targets printed beside the figures. */
const loadRatioTarget = 0.7;
const spaceRatioTarget = 1.5;
const bytesPerMiB = 1024 * 1024;


export const compactionScenarios: readonly Scenario[] = [
  {
    key: 'compact_load',
    title: '17. compaction under load (GET by id + PUT with _rev, half each)',
    metrics: [
      higher('readsBeforePerSecond', 'reads/s before'),
      higher('readsDuringPerSecond', 'reads/s during compaction'),
      higher('readsRatio', `reads during ÷ before (target ≥ ${loadRatioTarget.toFixed(2)})`),
      lower('readP50BeforeMs', 'read p50 ms before'),
      lower('readP50DuringMs', 'read p50 ms during'),
      lower('readP99BeforeMs', 'read p99 ms before'),
      lower('readP99DuringMs', 'read p99 ms during'),
      higher('writesBeforePerSecond', 'writes/s before'),
      higher('writesDuringPerSecond', 'writes/s during compaction'),
      higher('writesRatio', `writes during ÷ before (target ≥ ${loadRatioTarget.toFixed(2)})`),
      lower('writeP50BeforeMs', 'write p50 ms before'),
      lower('writeP50DuringMs', 'write p50 ms during'),
      lower('writeP99BeforeMs', 'write p99 ms before'),
      lower('writeP99DuringMs', 'write p99 ms during'),
      lower('failedRequests', 'failed requests (must be 0)'),
      lower('compactionSeconds', 'compaction wall seconds'),
    ],
    run: (server, _state, ctx) => runCompactLoad(server, ctx),
  },
  {
    key: 'compact_space',
    title: '18. compaction space (compacted vs a fresh copy of the same docs)',
    metrics: [
      lower('fileBeforeMiB', 'sizes.file MiB before'),
      lower('fileAfterMiB', 'sizes.file MiB after'),
      lower('fileFreshMiB', 'sizes.file MiB of the fresh copy'),
      lower('fileAfterFreshRatio', `sizes.file after ÷ fresh (target ≤ ${spaceRatioTarget.toFixed(1)})`),
      higher('reclaimedMiB', 'reclaimed MiB (sizes.file before − after)'),
      lower('compactionSeconds', 'compaction wall seconds'),
      lower('diskBeforeMiB', 'data dir MiB before'),
      lower('diskAfterMiB', 'data dir MiB after'),
      lower('diskFreshMiB', 'data dir MiB the fresh copy added'),
      lower('diskAfterFreshRatio', 'data dir: compacted db ÷ fresh copy'),
    ],
    run: (server, _state, ctx) => runCompactSpace(server, ctx),
  },
];

async function runCompactLoad(server: ServerHandle, ctx: RunContext): Promise<ScenarioOutcome> {
  const { client } = server;
  const db = await createDb(client, 'compact');
  try {
    const probe = await compactEmpty(client, db, ctx);
    const docsCount = Math.max(ctx.compactDocsCount, ctx.concurrency);
    const docs = await loadGarbage(server, db, docsCount, ctx);

    const before = await mixedLoad(client, db, docs, ctx, { durationMs: ctx.durationMs, signal: ctx.signal });
    const started = await startCompaction(client, db, ctx.compactTimeoutMs);
    const loadStop = new AbortController();
    const duringLoad = mixedLoad(client, db, docs, ctx, { durationMs: ctx.compactTimeoutMs, signal: AbortSignal.any([ctx.signal, loadStop.signal]) });
    let end: CompactionEnd;
    let during: MixedResult;
    try {
      end = await waitForCompaction(client, db, started, ctx.compactTimeoutMs, ctx.signal);
    } finally {
      loadStop.abort();
      during = await duringLoad;
    }

    const readsRatio = rateRatio(during.reads, before.reads);
    const writesRatio = rateRatio(during.writes, before.writes);
    const failedRequests = before.errors + during.errors;
    const errorSamples = [...before.errorSamples.map((m) => `before: ${m}`), ...during.errorSamples.map((m) => `during: ${m}`)];
    if (end.timedOut) errorSamples.unshift(`compaction still running after ${ctx.compactTimeoutMs / 1000} s (--compact-timeout): load stopped there`);
    const short = !end.timedOut && end.elapsedMs < shortCompactionMs;
    ctx.log(
      `  ${server.label}: compaction took ${(end.elapsedMs / 1000).toFixed(2)} s (${end.watch === 'polled' ? 'compact_running polled' : 'timed by the POST reply'})` +
        `${short ? ', under 1 s: the "during" figures cover only that' : ''}${end.timedOut ? ', NOT finished (cap reached)' : ''}` +
        `${end.watch === 'polled' && end.runningPolls === 0 ? ', compact_running never seen true' : ''}; ` +
        `reads during ÷ before ${formatRatio(readsRatio)} ${targetNote(readsRatio, loadRatioTarget, 'higher')}, ` +
        `writes ${formatRatio(writesRatio)} ${targetNote(writesRatio, loadRatioTarget, 'higher')}, ${failedRequests} failed requests`,
    );
    if (during.stoppedBy === 'count') ctx.log(`  ${server.label}: the load during compaction reached --max-ops before compaction ended`);
    return {
      metrics: {
        readsBeforePerSecond: before.reads.perSecond,
        readsDuringPerSecond: during.reads.perSecond,
        readsRatio,
        readP50BeforeMs: before.reads.latency.p50Ms,
        readP50DuringMs: during.reads.latency.p50Ms,
        readP99BeforeMs: before.reads.latency.p99Ms,
        readP99DuringMs: during.reads.latency.p99Ms,
        writesBeforePerSecond: before.writes.perSecond,
        writesDuringPerSecond: during.writes.perSecond,
        writesRatio,
        writeP50BeforeMs: before.writes.latency.p50Ms,
        writeP50DuringMs: during.writes.latency.p50Ms,
        writeP99BeforeMs: before.writes.latency.p99Ms,
        writeP99DuringMs: during.writes.latency.p99Ms,
        failedRequests,
        compactionSeconds: end.elapsedMs / 1000,
      },
      errors: failedRequests + (end.timedOut ? 1 : 0),
      errorSamples,
      details: {
        docsInDb: docsCount,
        updateRounds,
        compactionUnderOneSecond: short,
        compaction: end,
        emptyDbCompaction: probe,
        targets: { readsRatioMin: loadRatioTarget, writesRatioMin: loadRatioTarget },
        before: phaseDetails(before),
        during: phaseDetails(during),
      },
    };
  } finally {
    await deleteDb(client, db, ctx);
  }
}

async function runCompactSpace(server: ServerHandle, ctx: RunContext): Promise<ScenarioOutcome> {
  const { client } = server;
  const diskStartBytes = diskBytes(server.dataDir);
  const db = await createDb(client, 'space');
  let freshDb: string | null = null;
  try {
    const probe = await compactEmpty(client, db, ctx);
    const { bodies } = await loadGarbage(server, db, ctx.spaceDocsCount, ctx);

    const before = await readDbInfo(client, db);
    const diskBeforeBytes = diskBytes(server.dataDir);
    const started = await startCompaction(client, db, ctx.compactTimeoutMs);
    const end = await waitForCompaction(client, db, started, ctx.compactTimeoutMs, ctx.signal);
    if (end.timedOut) throw new Error(`compaction of ${db} still running after ${ctx.compactTimeoutMs / 1000} s (--compact-timeout)`);
    const after = await readDbInfo(client, db);
    const diskAfterBytes = diskBytes(server.dataDir);
    await sleep(settleMs);
    const afterSettled = await readDbInfo(client, db);
    const diskAfterSettledBytes = diskBytes(server.dataDir);

    freshDb = await createDb(client, 'space_fresh');
    await loadBodies(client, freshDb, bodies, ctx);
    const fresh = await readDbInfo(client, freshDb);
    const diskWithFreshBytes = diskBytes(server.dataDir);
    await sleep(settleMs);
    const freshSettled = await readDbInfo(client, freshDb);
    const diskWithFreshSettledBytes = diskBytes(server.dataDir);

    const fileBefore = before.sizes?.file ?? null;
    const fileAfter = afterSettled.sizes?.file ?? null;
    const fileFresh = freshSettled.sizes?.file ?? null;
    const fileAfterFreshRatio = fileAfter !== null && fileFresh !== null && fileFresh > 0 ? fileAfter / fileFresh : null;
    const reclaimedBytes = fileBefore !== null && fileAfter !== null ? fileBefore - fileAfter : null;
    // One store holds every database of a node: the compacted db's share is what the
    // directory grew by since the scenario began, the fresh copy's what its load added.
    const diskDbBytes = diskAfterSettledBytes - diskStartBytes;
    const diskFreshBytes = diskWithFreshSettledBytes - diskAfterSettledBytes;
    const diskAfterFreshRatio = diskFreshBytes > 0 ? diskDbBytes / diskFreshBytes : null;

    if (fileBefore === null) {
      ctx.log(`  ${server.label}: GET /db reports no sizes: the sizes.* figures are for the servers that do (Divan), the data dir figures for both`);
    }
    ctx.log(
      `  ${server.label}: compaction took ${(end.elapsedMs / 1000).toFixed(2)} s; sizes.file ${mib(fileBefore)} → ${mib(fileAfter)} MiB, fresh ${mib(fileFresh)} MiB, ` +
        `after ÷ fresh ${formatRatio(fileAfterFreshRatio)} ${targetNote(fileAfterFreshRatio, spaceRatioTarget, 'lower')}; ` +
        `data dir ${mib(diskBeforeBytes)} → ${mib(diskAfterSettledBytes)} MiB, compacted db ÷ fresh copy on disk ${formatRatio(diskAfterFreshRatio)} (estimate)`,
    );
    return {
      metrics: {
        fileBeforeMiB: toMiB(fileBefore),
        fileAfterMiB: toMiB(fileAfter),
        fileFreshMiB: toMiB(fileFresh),
        fileAfterFreshRatio,
        reclaimedMiB: toMiB(reclaimedBytes),
        compactionSeconds: end.elapsedMs / 1000,
        diskBeforeMiB: toMiB(diskBeforeBytes),
        diskAfterMiB: toMiB(diskAfterSettledBytes),
        diskFreshMiB: toMiB(diskFreshBytes),
        diskAfterFreshRatio,
      },
      errors: 0,
      errorSamples: [],
      details: {
        docsInDb: bodies.length,
        updateRounds,
        sizesReported: fileBefore !== null,
        compactionUnderOneSecond: end.elapsedMs < shortCompactionMs,
        compaction: end,
        emptyDbCompaction: probe,
        targets: { fileAfterFreshRatioMax: spaceRatioTarget },
        reclaimedBytes,
        info: { before, after, afterSettled, fresh, freshSettled },
        settleMs,
        dataDir: {
          path: server.dataDir,
          startBytes: diskStartBytes,
          beforeBytes: diskBeforeBytes,
          afterBytes: diskAfterBytes,
          afterSettledBytes: diskAfterSettledBytes,
          withFreshBytes: diskWithFreshBytes,
          withFreshSettledBytes: diskWithFreshSettledBytes,
          compactedDbBytes: diskDbBytes,
          freshDbBytes: diskFreshBytes,
        },
      },
    };
  } finally {
    await deleteDb(client, db, ctx);
    if (freshDb !== null) await deleteDb(client, freshDb, ctx);
  }
}

// --- Garbage: docs loaded, then each updated `updateRounds` times -----------------------

interface GarbageDocs {
  ids: string[];
  /** Current rev of each doc; the mixed load keeps it up to date. */
  revs: string[];
  /** The winning body of each doc after the last round (with the `_rev` it was written over). */
  bodies: LoadDoc[];
}

async function loadGarbage(server: ServerHandle, db: string, count: number, ctx: RunContext): Promise<GarbageDocs> {
  const startMs = Date.now();
  const concurrency = Math.min(setupConcurrencyMax, ctx.concurrency);
  const { ids, revs } = await loadDocsWith({ db, count, concurrency, signal: ctx.signal, write: (_batch, docs) => bulkWrite(server.client, db, docs) });
  const bodies = new Array<LoadDoc>(count);
  for (let round = 1; round <= updateRounds; round++) await updateEveryDoc(server.client, db, { ids, revs, bodies }, ctx);
  ctx.log(`  ${server.label}: loaded ${count} docs and updated each ${updateRounds} times in ${((Date.now() - startMs) / 1000).toFixed(1)} s (untimed setup)`);
  return { ids, revs, bodies };
}

/** One round: every doc rewritten (new filler) over its current rev, `bulkBatchDocs` per request. */
async function updateEveryDoc(client: HttpClient, db: string, docs: GarbageDocs, ctx: RunContext): Promise<void> {
  const { ids, revs, bodies } = docs;
  await writeInBatches(client, db, ids.length, ctx, 'updating', (first, end) => {
    const updates: LoadDoc[] = [];
    for (let i = first; i < end; i++) updates.push({ ...makeDoc(ids[i], i), _rev: revs[i] });
    return updates;
  }, (first, updates, written) => {
    updates.forEach((doc, offset) => {
      revs[first + offset] = written.revsById.get(doc._id) ?? '';
      bodies[first + offset] = doc;
    });
  });
}

/** A fresh database of the same winning bodies: same ids and contents, no `_rev`, so new revs. */
async function loadBodies(client: HttpClient, db: string, bodies: LoadDoc[], ctx: RunContext): Promise<void> {
  await writeInBatches(client, db, bodies.length, ctx, 'loading', (first, end) => bodies.slice(first, end).map((body) => ({ ...body, _rev: undefined })));
}

/** `count` docs written with `_bulk_docs`, `bulkBatchDocs` per request, a few requests at once; any failure stops it. */
async function writeInBatches(
  client: HttpClient,
  db: string,
  count: number,
  ctx: RunContext,
  verb: string,
  batchOf: (first: number, end: number) => LoadDoc[],
  onWritten?: (first: number, docs: LoadDoc[], written: Awaited<ReturnType<typeof bulkWrite>>) => void,
): Promise<void> {
  const result = await drive({
    concurrency: Math.min(setupConcurrencyMax, ctx.concurrency),
    durationMs: setupRoundDeadlineMs,
    opsMax: Math.ceil(count / bulkBatchDocs),
    errorsMax: 1,
    signal: ctx.signal,
    op: async (_worker, batch) => {
      const first = batch * bulkBatchDocs;
      const docs = batchOf(first, Math.min(first + bulkBatchDocs, count));
      const written = await bulkWrite(client, db, docs);
      if (written.failures > 0) throw new Error(`${verb} ${db}: ${written.failures} docs failed (${written.firstError})`);
      onWritten?.(first, docs, written);
      return docs.length;
    },
  });
  if (result.errors > 0 || result.items !== count) {
    throw new Error(`${verb} ${count} docs of ${db} stopped (${result.stoppedBy}) after ${result.items}: ${result.errorSamples.join('; ')}`);
  }
}

// --- The mixed load: reads by id and updates with the current rev, half each -----------

interface KindFigures {
  ok: number;
  failures: number;
  perSecond: number;
  latency: LatencySummary;
}

interface MixedResult {
  elapsedMs: number;
  stoppedBy: StopReason;
  reads: KindFigures;
  writes: KindFigures;
  errors: number;
  errorSamples: string[];
}

/**
 * `ctx.concurrency` workers, each alternating a GET of a random doc and a PUT of the
 * next of its own docs over the rev in `docs.revs` (which it then advances), until
 * `durationMs`, `ctx.opsMax` requests, `errorsMax` failures or the signal.
 */
async function mixedLoad(
  client: HttpClient,
  db: string,
  docs: GarbageDocs,
  ctx: RunContext,
  bounds: { durationMs: number; signal: AbortSignal },
): Promise<MixedResult> {
  const { ids, revs } = docs;
  const workers = ctx.concurrency;
  const docsPerWorker = Math.floor(ids.length / workers);
  const turns = new Array<number>(workers).fill(0);
  const nextSlot = new Array<number>(workers).fill(0);
  const readMs = new Float64Array(ctx.opsMax);
  const writeMs = new Float64Array(ctx.opsMax);
  let reads = 0;
  let writes = 0;
  let readFailures = 0;
  let writeFailures = 0;

  const read = async (): Promise<void> => {
    const id = ids[Math.floor(Math.random() * ids.length)];
    const body = await expectStatus(client, 'GET', docPath(db, id), undefined, [200]);
    if ((body as { _id?: unknown } | null)?._id !== id) throw new Error(`GET ${id}: wrong document`);
  };
  const write = async (worker: number, opIndex: number): Promise<void> => {
    const index = worker + (nextSlot[worker]++ % docsPerWorker) * workers;
    const doc = { ...makeDoc(ids[index], opIndex), _rev: revs[index] };
    const body = await expectStatus(client, 'PUT', docPath(db, doc._id), doc, [201, 202]);
    const rev = (body as { rev?: unknown } | null)?.rev;
    if (typeof rev !== 'string') throw new Error(`PUT ${doc._id}: no rev in reply`);
    revs[index] = rev;
  };

  const result = await drive({
    concurrency: workers,
    durationMs: bounds.durationMs,
    opsMax: ctx.opsMax,
    errorsMax,
    signal: bounds.signal,
    op: async (worker, opIndex) => {
      const isRead = turns[worker]++ % 2 === 0;
      const startNs = process.hrtime.bigint();
      try {
        if (isRead) await read();
        else await write(worker, opIndex);
      } catch (err) {
        if (isRead) readFailures++;
        else writeFailures++;
        throw err;
      }
      const ms = Number(process.hrtime.bigint() - startNs) / 1e6;
      if (isRead) readMs[reads++] = ms;
      else writeMs[writes++] = ms;
      return 1;
    },
  });
  const figures = (ok: number, failures: number, latenciesMs: Float64Array): KindFigures => ({
    ok,
    failures,
    perSecond: result.elapsedMs > 0 ? (ok * 1000) / result.elapsedMs : 0,
    latency: summarizeLatencies(latenciesMs.subarray(0, ok)),
  });
  return {
    elapsedMs: result.elapsedMs,
    stoppedBy: result.stoppedBy,
    reads: figures(reads, readFailures, readMs),
    writes: figures(writes, writeFailures, writeMs),
    errors: result.errors,
    errorSamples: result.errorSamples,
  };
}

function rateRatio(during: KindFigures, before: KindFigures): number | null {
  return before.perSecond > 0 && during.ok > 0 ? during.perSecond / before.perSecond : null;
}

function phaseDetails(phase: MixedResult): Record<string, unknown> {
  return { elapsedMs: phase.elapsedMs, stoppedBy: phase.stoppedBy, errors: phase.errors, reads: phase.reads, writes: phase.writes };
}

// --- Compaction: start it, know when it is over -----------------------------------------

interface DbSizes {
  file: number | null;
  active: number | null;
  external: number | null;
}

interface DbInfo {
  /** null when GET /db has no boolean `compact_running` (PouchDB Server). */
  compactRunning: boolean | null;
  /** null when GET /db has no `sizes` object. */
  sizes: DbSizes | null;
  docCount: number | null;
  updateSeq: unknown;
}

async function readDbInfo(client: HttpClient, db: string): Promise<DbInfo> {
  const body = (await expectStatus(client, 'GET', `/${db}`, undefined, [200])) as Record<string, unknown> | null;
  const sizes = body?.sizes;
  const numberOrNull = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) ? value : null);
  return {
    compactRunning: typeof body?.compact_running === 'boolean' ? body.compact_running : null,
    sizes:
      typeof sizes === 'object' && sizes !== null
        ? {
            file: numberOrNull((sizes as Record<string, unknown>).file),
            active: numberOrNull((sizes as Record<string, unknown>).active),
            external: numberOrNull((sizes as Record<string, unknown>).external),
          }
        : null,
    docCount: numberOrNull(body?.doc_count),
    updateSeq: body?.update_seq,
  };
}

/** How the end of a compaction is known: `compact_running` polled, or the POST's reply. */
type CompactionWatch = 'polled' | 'reply';

interface StartedCompaction {
  watch: CompactionWatch;
  startNs: bigint;
  /** Filled in when the POST answers (at once when polled, at the end otherwise). */
  replied: { reply?: JsonReply; error?: unknown; atNs?: bigint };
  settled: Promise<void>;
}

/** What `/_active_tasks` said about this database's compaction while it was watched. */
interface TaskSeen {
  /** Samples that listed a `database_compaction` task for the database. */
  samples: number;
  progressMax: number | null;
  changesDone: number | null;
  totalChanges: number | null;
  /** The first failed sample's answer, if any (recorded, never fatal). */
  error: string | null;
}

interface CompactionEnd {
  watch: CompactionWatch;
  /** From sending `POST _compact` to the poll that saw `compact_running: false`, or to the reply. */
  elapsedMs: number;
  timedOut: boolean;
  postStatus: number | null;
  polls: number;
  /** Polls that saw `compact_running: true`. */
  runningPolls: number;
  task: TaskSeen;
}

/**
 * Sends `POST /db/_compact`. Polled: waits for its answer (202) and throws unless it
 * is 2xx. By reply: returns at once; `waitForCompaction` judges the answer when it comes.
 */
async function startCompaction(client: HttpClient, db: string, capMs: number): Promise<StartedCompaction> {
  const info = await readDbInfo(client, db);
  const watch: CompactionWatch = info.compactRunning === null ? 'reply' : 'polled';
  const startNs = process.hrtime.bigint();
  // By reply the answer is the end of the compaction: its deadline is the cap (and a little).
  const post = client.request('POST', `/${db}/_compact`, {}, watch === 'reply' ? { timeoutMs: capMs + 5000 } : {});
  const replied: StartedCompaction['replied'] = {};
  const settled = post.then(
    (reply) => {
      replied.reply = reply;
      replied.atNs = process.hrtime.bigint();
    },
    (err: unknown) => {
      replied.error = err;
      replied.atNs = process.hrtime.bigint();
    },
  );
  if (watch === 'polled') {
    await settled;
    checkCompactReply(db, replied);
  }
  return { watch, startNs, replied, settled };
}

function checkCompactReply(db: string, replied: StartedCompaction['replied']): void {
  if (replied.error !== undefined) throw replied.error instanceof Error ? replied.error : new Error(String(replied.error));
  const reply = replied.reply;
  if (reply === undefined || ![200, 201, 202].includes(reply.status)) {
    throw new Error(
      `POST /${db}/_compact answered ${reply?.status ?? 'nothing'} ${truncate(String(JSON.stringify(reply?.body)), 200)}: ` +
        `this server does not compact databases (the compaction scenarios need POST /{db}/_compact → 202)`,
    );
  }
}

/** Polls every `pollIntervalMs` until the compaction is over or `capMs` passed since the POST. */
async function waitForCompaction(client: HttpClient, db: string, started: StartedCompaction, capMs: number, signal: AbortSignal): Promise<CompactionEnd> {
  const { watch, startNs, replied } = started;
  const deadlineNs = startNs + BigInt(Math.round(capMs * 1e6));
  const task: TaskSeen = { samples: 0, progressMax: null, changesDone: null, totalChanges: null, error: null };
  let polls = 0;
  let runningPolls = 0;
  const end = (atNs: bigint, timedOut: boolean): CompactionEnd => ({
    watch,
    elapsedMs: Number(atNs - startNs) / 1e6,
    timedOut,
    postStatus: replied.reply?.status ?? null,
    polls,
    runningPolls,
    task,
  });
  for (;;) {
    if (signal.aborted) throw new Error('interrupted while waiting for compaction');
    await sampleTask(client, db, task);
    if (watch === 'reply') {
      if (replied.atNs !== undefined) {
        checkCompactReply(db, replied);
        return end(replied.atNs, false);
      }
    } else {
      const info = await readDbInfo(client, db);
      polls++;
      if (info.compactRunning === null) throw new Error(`GET /${db} stopped reporting compact_running during compaction`);
      if (!info.compactRunning) return end(process.hrtime.bigint(), false);
      runningPolls++;
    }
    const nowNs = process.hrtime.bigint();
    if (nowNs >= deadlineNs) return end(nowNs, true);
    await sleep(pollIntervalMs, watch === 'reply' ? started.settled : null);
  }
}

/** Compacts the new, empty database: a server that refuses `_compact` fails here, before any load. */
async function compactEmpty(client: HttpClient, db: string, ctx: RunContext): Promise<CompactionEnd> {
  const started = await startCompaction(client, db, probeTimeoutMs);
  const end = await waitForCompaction(client, db, started, probeTimeoutMs, ctx.signal);
  if (end.timedOut) throw new Error(`compaction of the empty database ${db} still running after ${probeTimeoutMs / 1000} s`);
  return end;
}

/** One `GET /_active_tasks`, folded into `task`; a failure is recorded once, never thrown. */
async function sampleTask(client: HttpClient, db: string, task: TaskSeen): Promise<void> {
  let reply: JsonReply;
  try {
    reply = await client.request('GET', '/_active_tasks');
  } catch (err) {
    task.error ??= err instanceof Error ? err.message : String(err);
    return;
  }
  if (reply.status !== 200 || !Array.isArray(reply.body)) {
    task.error ??= `${reply.status} ${truncate(String(JSON.stringify(reply.body)), 200)}`;
    return;
  }
  for (const entry of reply.body as Record<string, unknown>[]) {
    const database = entry?.database;
    // CouchDB names a shard file (`shards/00000000-1fffffff/db.1234`); the name is random, so containing it is enough.
    if (entry?.type !== 'database_compaction' || typeof database !== 'string' || !database.includes(db)) continue;
    task.samples++;
    if (typeof entry.progress === 'number') task.progressMax = Math.max(task.progressMax ?? 0, entry.progress);
    if (typeof entry.changes_done === 'number') task.changesDone = entry.changes_done;
    if (typeof entry.total_changes === 'number') task.totalChanges = entry.total_changes;
  }
}

// --- Small helpers ----------------------------------------------------------------------

/**
 * Bytes in the regular files under `dir` (apparent sizes, like `du -b`), walked with an
 * explicit stack; a file the store deletes mid-walk counts 0.
 */
function diskBytes(dir: string): number {
  let bytes = 0;
  let files = 0;
  const stack = [dir];
  for (let current = stack.pop(); current !== undefined; current = stack.pop()) {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(current, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) continue;
      throw err;
    }
    for (const entry of entries) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        stack.push(full);
        continue;
      }
      if (!entry.isFile()) continue;
      if (++files > diskFilesMax) throw new Error(`${dir}: more than ${diskFilesMax} files, not measured`);
      try {
        bytes += fs.statSync(full).size;
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    }
  }
  return bytes;
}

function isMissing(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}

/** Waits `ms`, or less if `until` settles first; the timer never outlives the wait. */
function sleep(ms: number, until: Promise<void> | null = null): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    until?.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      () => undefined,
    );
  });
}

function toMiB(bytes: number | null): number | null {
  return bytes === null ? null : bytes / bytesPerMiB;
}

function mib(bytes: number | null): string {
  return bytes === null ? 'n/a' : (bytes / bytesPerMiB).toFixed(1);
}

function formatRatio(ratio: number | null): string {
  return ratio === null ? 'n/a' : ratio.toFixed(2);
}

function targetNote(ratio: number | null, target: number, better: 'higher' | 'lower'): string {
  if (ratio === null) return '(target: no figure)';
  const met = better === 'higher' ? ratio >= target : ratio <= target;
  return `(target ${better === 'higher' ? '≥' : '≤'} ${target}: ${met ? 'met' : 'NOT met'})`;
}
