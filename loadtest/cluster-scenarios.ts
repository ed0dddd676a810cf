/**
 * The timed parts of the cluster load test, written against a `Target`: the list of
 * node clients requests are spread over, round-robin by operation index (one client
 * for the single node; the live nodes of the cluster).
 *
 * Each function does its own untimed setup where it has one (creating a database,
 * loading documents 1000 per `_bulk_docs`, batches round-robin over the target's
 * nodes), runs its timed part through `drive` (bounded by time, operation count,
 * error count and the run's abort signal), and returns metrics plus the HTTP status
 * mix of the timed requests. Deleting databases is the caller's business, because
 * some databases outlive one scenario (the degraded phase loads before a node dies).
 */
import { randomBytes } from 'node:crypto';
import type { HttpClient } from './client';
import { makeDoc, newDocId, type LoadDoc } from './docs';
import { drive, type DriveResult } from './driver';
import { bulkBatchDocs, loadDocsWith, readBulkReply, type BulkWritten } from './scenarios';

export interface Target {
  label: string;
  clients: HttpClient[];
  /** CPU seconds the target's server processes have used so far (null when unknown). */
  cpuSeconds?: () => number | null;
}

export interface Bounds {
  concurrency: number;
  durationMs: number;
  opsMax: number;
  signal: AbortSignal;
  log: (line: string) => void;
}

export interface Outcome {
  metrics: Record<string, number | null>;
  errors: number;
  errorSamples: string[];
  /** HTTP status → count over the timed requests (and `error` for transport failures). */
  statuses: Record<string, number>;
  details: Record<string, unknown>;
}

/** Documents per `_bulk_docs` request in the bulk scenario (loads use the same size, in scenarios.ts). */
export { bulkBatchDocs } from './scenarios';
/** Documents read by id are drawn from this many. */
export const readDocsCount = 10_000;
/** Documents the update scenario cycles through (at least one per worker). */
export const updateDocsCount = 1_000;
/** Full scans per scan scenario at most; at least one always runs. */
const scansMax = 5;
const scanTimeoutMs = 3 * 60 * 1000;
/** A timed scenario stops after this many failed operations. */
const errorsMax = 100;

/** Counts HTTP statuses; `expect` throws on an unexpected one, after counting it. */
export class StatusMix {
  readonly counts: Record<string, number> = {};

  note(status: number | string): void {
    const key = String(status);
    this.counts[key] = (this.counts[key] ?? 0) + 1;
  }

  async request(client: HttpClient, method: string, path: string, body: unknown, expected: number[]): Promise<unknown> {
    let reply;
    try {
      reply = await client.request(method, path, body);
    } catch (err) {
      this.note('error');
      throw err;
    }
    this.note(reply.status);
    if (!expected.includes(reply.status)) {
      throw new Error(`${method} ${path} on :${client.options.port}: ${reply.status} ${truncate(String(JSON.stringify(reply.body)), 200)}`);
    }
    return reply.body;
  }
}

function pick(target: Target, index: number): HttpClient {
  if (target.clients.length === 0) throw new Error(`${target.label}: no live node`);
  return target.clients[index % target.clients.length];
}

export async function createDb(target: Target, purpose: string): Promise<string> {
  const db = `lt_${purpose}_${randomBytes(4).toString('hex')}`;
  await new StatusMix().request(pick(target, 0), 'PUT', `/${db}`, undefined, [201, 202]);
  return db;
}

export async function deleteDb(target: Target, db: string, log: (line: string) => void): Promise<void> {
  try {
    await new StatusMix().request(pick(target, 0), 'DELETE', `/${db}`, undefined, [200, 202]);
  } catch (err) {
    log(`  (could not delete ${db}: ${err instanceof Error ? err.message : String(err)})`);
  }
}

export interface Loaded {
  ids: string[];
  revs: string[];
  elapsedMs: number;
  statuses: Record<string, number>;
}

/** Loads `count` new docs through `_bulk_docs`, batches round-robin over the target; throws unless all were written. */
export async function loadDocs(target: Target, db: string, count: number, bounds: Bounds): Promise<Loaded> {
  const mix = new StatusMix();
  const { ids, revs, result } = await loadDocsWith({
    db,
    count,
    concurrency: bounds.concurrency,
    signal: bounds.signal,
    write: (batch, docs) => bulkWrite(pick(target, batch), db, docs, mix),
  });
  return { ids, revs, elapsedMs: result.elapsedMs, statuses: mix.counts };
}

/** Timed: `PUT /db/{new id}`, one doc per request. */
export async function timedCreate(target: Target, db: string, bounds: Bounds): Promise<Outcome> {
  const mix = new StatusMix();
  let n = 0;
  const { result, cpu } = await measured(target, bounds, () => drive({
    ...timed(bounds),
    op: async (_worker, opIndex) => {
      const doc = makeDoc(newDocId(), n++);
      await mix.request(pick(target, opIndex), 'PUT', docPath(db, doc._id), doc, [201, 202]);
      return 1;
    },
  }));
  return requestOutcome(result, 'docsPerSecond', mix, cpu);
}

/** Timed: `GET /db/{id}` of random loaded ids; checks the body's `_id`. */
export async function timedRead(target: Target, db: string, ids: string[], bounds: Bounds, query = ''): Promise<Outcome> {
  const mix = new StatusMix();
  const { result, cpu } = await measured(target, bounds, () => drive({
    ...timed(bounds),
    op: async (_worker, opIndex) => {
      const id = ids[Math.floor(Math.random() * ids.length)];
      const body = await mix.request(pick(target, opIndex), 'GET', docPath(db, id) + query, undefined, [200]);
      if ((body as { _id?: unknown } | null)?._id !== id) throw new Error(`GET ${id}: wrong document`);
      return 1;
    },
  }));
  return requestOutcome(result, 'requestsPerSecond', mix, cpu, { docsInDb: ids.length });
}

/**
 * Timed: `PUT /db/{id}` with the current `_rev`. Worker w owns docs w, w + c, ...: no
 * two requests race for one doc, so a 409 is a server fault, not the test's. `revs`
 * is updated in place.
 */
export async function timedUpdate(target: Target, db: string, ids: string[], revs: string[], bounds: Bounds): Promise<Outcome> {
  const mix = new StatusMix();
  const docsPerWorker = Math.floor(ids.length / bounds.concurrency);
  if (docsPerWorker < 1) throw new Error(`update: ${ids.length} docs for ${bounds.concurrency} workers`);
  const nextSlot = new Array<number>(bounds.concurrency).fill(0);
  const { result, cpu } = await measured(target, bounds, () => drive({
    ...timed(bounds),
    op: async (worker, opIndex) => {
      const index = worker + (nextSlot[worker]++ % docsPerWorker) * bounds.concurrency;
      const doc = { ...makeDoc(ids[index], opIndex), _rev: revs[index] };
      const body = await mix.request(pick(target, opIndex), 'PUT', docPath(db, doc._id), doc, [201, 202]);
      const rev = (body as { rev?: unknown } | null)?.rev;
      if (typeof rev !== 'string') throw new Error(`PUT ${doc._id}: no rev in reply`);
      revs[index] = rev;
      return 1;
    },
  }));
  return requestOutcome(result, 'requestsPerSecond', mix, cpu, { docsInDb: ids.length });
}

/** Timed: `POST /db/_bulk_docs` of 1000 new docs per request. */
export async function timedBulk(target: Target, db: string, bounds: Bounds): Promise<Outcome> {
  const mix = new StatusMix();
  let n = 0;
  const { result, cpu } = await measured(target, bounds, () => drive({
    ...timed(bounds),
    opsMax: Math.max(1, Math.ceil(bounds.opsMax / bulkBatchDocs)),
    op: async (_worker, opIndex) => {
      const docs = Array.from({ length: bulkBatchDocs }, () => makeDoc(newDocId(), n++));
      const written = await bulkWrite(pick(target, opIndex), db, docs, mix);
      if (written.failures > 0) throw new Error(`_bulk_docs: ${written.failures} of ${docs.length} docs failed (${written.firstError})`);
      return written.revsById.size;
    },
  }));
  return requestOutcome(result, 'docsPerSecond', mix, cpu, { batchDocs: bulkBatchDocs });
}

/**
 * Timed: sequential full scans of `feedPath` (one client; scans rotate over the
 * target's nodes), until the time is up, at least one, at most five. Each must count
 * `expectedRows` rows.
 */
export async function timedScan(target: Target, feedPath: string, expectedRows: number, bounds: Bounds): Promise<Outcome> {
  const mix = new StatusMix();
  const { result, cpu } = await measured(target, bounds, () => drive({
    concurrency: 1,
    durationMs: bounds.durationMs,
    opsMax: scansMax,
    errorsMax: 1,
    signal: bounds.signal,
    op: async (_worker, opIndex) => {
      const client = pick(target, opIndex);
      let reply;
      try {
        reply = await client.scan(feedPath, { timeoutMs: scanTimeoutMs });
      } catch (err) {
        mix.note('error');
        throw err;
      }
      mix.note(reply.status);
      if (reply.status !== 200) throw new Error(`GET ${feedPath} on :${client.options.port}: ${reply.status}`);
      if (reply.rowsCount !== expectedRows) throw new Error(`GET ${feedPath} on :${client.options.port}: ${reply.rowsCount} rows, expected ${expectedRows}`);
      return reply.rowsCount;
    },
  }));
  return {
    metrics: { rowsPerSecond: result.itemsPerSecond, scanMs: result.latency.p50Ms },
    errors: result.errors,
    errorSamples: result.errorSamples,
    statuses: mix.counts,
    details: { scans: result.ops, rows: result.items, elapsedMs: result.elapsedMs, stoppedBy: result.stoppedBy, latency: result.latency, cpu },
  };
}

/**
 * POST `_bulk_docs`; returns the new rev of each written doc by id, and how many docs
 * failed (matched by id, not position).
 */
export async function bulkWrite(client: HttpClient, db: string, docs: LoadDoc[], mix: StatusMix): Promise<BulkWritten> {
  return readBulkReply(await mix.request(client, 'POST', `/${db}/_bulk_docs`, { docs }, [201, 202]), docs);
}

export function docPath(db: string, id: string): string {
  return `/${db}/${encodeURIComponent(id)}`;
}

/** Below this many cores of server CPU over a window, the servers count as settled. */
const settledCores = 0.15;
const settleWindowMs = 250;
const settleMaxMs = 15_000;

/**
 * Waits until the target's servers are idle (under `settledCores` over a 250 ms
 * window; at most 15 s): after a load, cluster nodes spend about a second pushing the
 * new revisions to their siblings (shard sync), which would otherwise land in the
 * first second of the timed part. Resolves to the milliseconds waited.
 */
export async function settle(target: Target, signal: AbortSignal): Promise<number> {
  const startMs = performance.now();
  if (target.cpuSeconds === undefined) return 0;
  let before = target.cpuSeconds();
  while (before !== null && !signal.aborted && performance.now() - startMs < settleMaxMs) {
    await new Promise((resolve) => setTimeout(resolve, settleWindowMs));
    const now = target.cpuSeconds();
    if (now === null || (now - before) / (settleWindowMs / 1000) < settledCores) break;
    before = now;
  }
  return performance.now() - startMs;
}

/**
 * Runs a timed drive once the servers settled, and notes the CPU the server processes
 * (and this client) used during it: `serverCpuMsPerOp` is server CPU over successful
 * operations, `serverCores` / `clientCores` CPU seconds per wall second.
 */
async function measured(target: Target, bounds: Bounds, run: () => Promise<DriveResult>): Promise<{ result: DriveResult; cpu: Record<string, number | null> }> {
  const settleMs = await settle(target, bounds.signal);
  const serverBefore = target.cpuSeconds?.() ?? null;
  const clientBefore = process.cpuUsage();
  const result = await run();
  const serverAfter = target.cpuSeconds?.() ?? null;
  const client = process.cpuUsage(clientBefore);
  const wallSeconds = result.elapsedMs / 1000;
  const server = serverBefore === null || serverAfter === null ? null : serverAfter - serverBefore;
  const okOps = result.ops - result.errors;
  return {
    result,
    cpu: {
      settleMs,
      serverCpuMsPerOp: server === null || okOps <= 0 ? null : (server * 1000) / okOps,
      serverCores: server === null || wallSeconds <= 0 ? null : server / wallSeconds,
      clientCores: wallSeconds <= 0 ? null : (client.user + client.system) / 1e6 / wallSeconds,
    },
  };
}

function timed(bounds: Bounds): { concurrency: number; durationMs: number; opsMax: number; errorsMax: number; signal: AbortSignal } {
  return { concurrency: bounds.concurrency, durationMs: bounds.durationMs, opsMax: bounds.opsMax, errorsMax, signal: bounds.signal };
}

function requestOutcome(result: DriveResult, rateKey: string, mix: StatusMix, cpu: Record<string, number | null>, details: Record<string, unknown> = {}): Outcome {
  return {
    metrics: { [rateKey]: result.itemsPerSecond, p50Ms: result.latency.p50Ms, p99Ms: result.latency.p99Ms, serverCpuMsPerOp: cpu.serverCpuMsPerOp },
    errors: result.errors,
    errorSamples: result.errorSamples,
    statuses: mix.counts,
    details: { ...details, ops: result.ops, items: result.items, elapsedMs: result.elapsedMs, stoppedBy: result.stoppedBy, latency: result.latency, cpu },
  };
}

function truncate(text: string, charsMax: number): string {
  return text.length <= charsMax ? text : `${text.slice(0, charsMax)}…`;
}
