/**
 * The live-pull scenario of the cluster load test: a PouchDB (memory adapter) runs
 * `replicate.from(<node>, {live: true, retry: true})`; the harness writes docs one at a
 * time (`PUT /db/{id}`) and times each from the write's acknowledgement until
 * PouchDB's `change` event delivers it. On the cluster PouchDB pulls from the first
 * live node and the writes rotate over the others, so every write reaches the
 * pulling coordinator through its copies.
 *
 * Every HTTP request PouchDB makes goes through a wrapped `fetch` that notes its
 * kind (`_changes` feed, `_revs_diff`, `_bulk_get`, `_local` checkpoint, ...), start
 * and duration; a write slower than `slowMs` is reported with the requests that ran
 * between its acknowledgement and its delivery, to show where a tail comes from.
 * See loadtest/CLUSTER.md.
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { createDb, deleteDb, docPath, settle, StatusMix, type Bounds, type Outcome, type Target } from './cluster-scenarios';
import { summarizeLatencies } from './driver';
import { loadPouchDb } from './scenarios';


/** Writes timed per run. */
export const livePullWrites = 200;
/** A write not delivered within this counts as an error (at this latency). */
const deliveryDeadlineMs = 10_000;
/** Writes slower than this are reported with the PouchDB requests around them. */
const slowMs = 50;

interface PouchRequest {
  kind: string;
  startMs: number;
  endMs: number | null;
  status: number | null;
}

function requestKind(method: string, url: string): string {
  const u = new URL(url);
  const last = u.pathname.split('/').filter((s) => s.length > 0);
  const tail = last[last.length - 1] ?? '';
  if (tail === '_changes') return `_changes ${u.searchParams.get('feed') ?? 'normal'}`;
  if (last.includes('_local')) return `${method} _local`;
  if (tail.startsWith('_')) return `${method} ${tail}`;
  if (last.length === 1) return `${method} /db`;
  return `${method} doc`;
}

export async function runLivePull(target: Target, bounds: Bounds, writes = livePullWrites): Promise<Outcome> {
  const PouchDB = loadPouchDb();
  const pullClient = target.clients[0];
  const writers = target.clients.length > 1 && process.env.LIVEPULL_SAME_NODE !== '1' ? target.clients.slice(1) : [pullClient];
  const db = await createDb(target, 'livepull');
  const mix = new StatusMix();
  const requests: PouchRequest[] = [];
  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  const trackedFetch = async (url: string | URL, opts?: RequestInit): Promise<Response> => {
    const entry: PouchRequest = { kind: requestKind(opts?.method ?? 'GET', String(url)), startMs: now(), endMs: null, status: null };
    requests.push(entry);
    const reply = await fetch(url, opts);
    entry.status = reply.status;
    // The body is what PouchDB waits for: note its end when it has been read.
    const text = await reply.text();
    entry.endMs = now();
    return new Response(text, { status: reply.status, statusText: reply.statusText, headers: reply.headers });
  };
  const local = new PouchDB(`lt-livepull-${randomBytes(4).toString('hex')}`, { adapter: 'memory' });
  const remote = new PouchDB(`${pullClient.origin}/${db}`, { auth: pullClient.options.auth, skip_setup: true, fetch: trackedFetch });
  const arrived = new Map<string, number>();
  const waiters = new Map<string, () => void>();
  const replication = local.replicate.from(remote, { live: true, retry: true });
  let replicationError: string | null = null;
  replication.on('change', (info) => {
    const at = now();
    for (const doc of (info as { docs?: { _id: string }[] }).docs ?? []) {
      if (!arrived.has(doc._id)) arrived.set(doc._id, at);
      waiters.get(doc._id)?.();
    }
  });
  replication.on('error', (err) => {
    replicationError = err instanceof Error ? err.message : String(err);
  });
  const delivered = (id: string, timeoutMs: number): Promise<boolean> =>
    arrived.has(id)
      ? Promise.resolve(true)
      : new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => {
            waiters.delete(id);
            resolve(false);
          }, timeoutMs);
          waiters.set(id, () => {
            clearTimeout(timer);
            waiters.delete(id);
            resolve(true);
          });
        });

  const fromAck = new Float64Array(writes);
  const fromStart = new Float64Array(writes);
  const ackMs = new Float64Array(writes);
  const slow: { id: string; writer: number; ackMs: number; latencyMs: number; requests: string[] }[] = [];
  let errors = 0;
  const errorSamples: string[] = [];
  let done = 0;
  try {
    // The replication is running once a first document arrived.
    await mix.request(writers[0], 'PUT', docPath(db, 'warmup'), { warmup: true }, [201, 202]);
    if (!(await delivered('warmup', deliveryDeadlineMs * 3))) throw new Error(`warmup doc not pulled within ${deliveryDeadlineMs * 3} ms (${replicationError ?? 'no error event'})`);
    await settle(target, bounds.signal);
    const firstRequest = requests.length;
    for (let i = 0; i < writes && !bounds.signal.aborted; i++) {
      const id = `lp-${String(i).padStart(4, '0')}`;
      const writer = i % writers.length;
      const start = now();
      await mix.request(writers[writer], 'PUT', docPath(db, id), { i }, [201, 202]);
      const ack = now();
      ackMs[i] = ack;
      const ok = await delivered(id, deliveryDeadlineMs);
      const at = ok ? arrived.get(id)! : now();
      fromAck[i] = Math.max(0, at - ack);
      fromStart[i] = at - start;
      done++;
      if (!ok) {
        errors++;
        if (errorSamples.length < 3) errorSamples.push(`${id} not delivered within ${deliveryDeadlineMs} ms${replicationError ? ` (${replicationError})` : ''}`);
      }
      if (fromAck[i] > slowMs && slow.length < 20) {
        const around = requests
          .filter((r) => r.startMs <= at && (r.endMs ?? Infinity) >= start - 5)
          .map((r) => `${r.kind} ${(r.startMs - ack).toFixed(0)}→${r.endMs === null ? '…' : (r.endMs - ack).toFixed(0)} (${r.status ?? '…'})`);
        slow.push({ id, writer, ackMs: ack, latencyMs: fromAck[i], requests: around });
      }
      // Writes are spaced a little so each is a separate wakeup of the feed, as a user's would be.
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const timed = requests.slice(firstRequest);
    const byKind: Record<string, { count: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null }> = {};
    for (const kind of new Set(timed.map((r) => r.kind))) {
      const durations = Float64Array.from(timed.filter((r) => r.kind === kind && r.endMs !== null).map((r) => r.endMs! - r.startMs));
      const s = summarizeLatencies(durations);
      byKind[kind] = { count: timed.filter((r) => r.kind === kind).length, p50Ms: s.p50Ms, p99Ms: s.p99Ms, maxMs: s.maxMs };
    }
    const ack = summarizeLatencies(fromAck.subarray(0, done));
    const start = summarizeLatencies(fromStart.subarray(0, done));
    bounds.log(`  live-pull ${target.label} (load average ${os.loadavg()[0].toFixed(2)}): requests by kind ${JSON.stringify(byKind)}`);
    for (const s of slow.slice(0, 5)) bounds.log(`  slow ${s.id} via writer ${s.writer}: ${s.latencyMs.toFixed(0)} ms after ack; requests (ms from ack): ${s.requests.join('; ')}`);
    return {
      metrics: { p50Ms: ack.p50Ms, p99Ms: ack.p99Ms, maxMs: ack.maxMs, p99FromStartMs: start.p99Ms },
      errors,
      errorSamples,
      statuses: mix.counts,
      details: {
        writes: done,
        // The tail moves with the machine's load (other jobs on the same cores): note it.
        loadAverage1m: os.loadavg()[0],
        pullNode: pullClient.options.port,
        writerNodes: writers.map((w) => w.options.port),
        fromAck: ack,
        fromStart: start,
        pouchRequests: byKind,
        slowWrites: slow,
      },
    };
  } finally {
    replication.cancel();
    await local.destroy().catch(() => undefined);
    await deleteDb(target, db, bounds.log);
  }
}
