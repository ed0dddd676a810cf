/**
 * Catch-up after a crash: how long a cluster node that was down while documents were
 * written takes, once restarted, until its own shard copies hold them.
 *
 * 1. With every node up, create a database and write one probe document; wait until
 *    the victim's own copy holds it (`GET /_node/_local/_copy/{db}/{id}` on the victim
 *    itself answers 200 only for its own copy, never a merged read).
 * 2. SIGKILL the victim; write `docs` new documents through the live nodes
 *    (`_bulk_docs`, 1000 per request, round-robin), noting docs/s and the status mix.
 * 3. Restart the victim on its data directory and ports; from the spawn, time its
 *    `/_up`, the first sampled document on its copy, then poll its own copies of a sample (random ids plus the last ids
 *    written) until every one is there with the revision the write returned, then
 *    check every written id the same way (repeating the missing ones) until all are.
 * Everything is bounded by `timeoutMs` from the restart; polls are 100 ms apart and
 * only ask for what is still missing.
 */
import { StatusMix, bulkBatchDocs, createDb, deleteDb, docPath, loadDocs, type Bounds, type Outcome, type Target } from './cluster-scenarios';
import { sleep, type DivanCluster } from './cluster';
import type { HttpClient } from './client';

export interface CatchupOptions {
  docs: number;
  /** Random ids in the sample, besides the last ones written. */
  sampleSize: number;
  timeoutMs: number;
}

/** Index of the node that goes down (the last one). */
export function victimIndex(cluster: DivanCluster): number {
  return cluster.nodes.length - 1;
}

const lastIdsInSample = 5;
const pollIntervalMs = 100;
const checkConcurrency = 10;

export async function runCatchup(cluster: DivanCluster, bounds: Bounds, options: CatchupOptions): Promise<Outcome> {
  const victim = victimIndex(cluster);
  const victimNode = cluster.nodes[victim];
  const all: Target = { label: 'cluster', clients: cluster.liveClients() };
  if (all.clients.length !== cluster.nodes.length) throw new Error('catch-up needs every node up at the start');
  const db = await createDb(all, 'catchup');
  const details: Record<string, unknown> = { db, victim: cluster.names[victim], docs: options.docs };
  try {
    // 1. The victim holds a copy of this database before it dies.
    const probeId = `probe-${Date.now()}`;
    const probe = (await new StatusMix().request(all.clients[0], 'PUT', docPath(db, probeId), { probe: true }, [201, 202])) as { rev: string };
    const probeWaitMs = await waitCopies(victimNode.http(), db, new Map([[probeId, probe.rev]]), 30_000, bounds.signal);
    if (probeWaitMs === null) throw new Error(`the victim's copy never got the probe doc within 30 s`);
    details.probeCopiedMs = probeWaitMs;

    // 2. Down, and writes through the survivors.
    await cluster.kill9(victim);
    const live: Target = { label: 'cluster (node down)', clients: cluster.liveClients() };
    bounds.log(`  killed ${cluster.names[victim]} (SIGKILL); writing ${options.docs} docs through ${live.clients.length} nodes`);
    const loaded = await loadDocs(live, db, options.docs, bounds);
    details.writeElapsedMs = loaded.elapsedMs;
    details.writeStatuses = loaded.statuses;
    details.membershipBeforeRestart = await cluster.views();

    // 3. Back, and timed until its copies hold everything.
    const revs = new Map(loaded.ids.map((id, i) => [id, loaded.revs[i]]));
    const sample = new Map<string, string>();
    for (const id of loaded.ids.slice(-lastIdsInSample)) sample.set(id, revs.get(id)!);
    for (let tries = 0; sample.size < Math.min(loaded.ids.length, options.sampleSize + lastIdsInSample) && tries < options.sampleSize * 10; tries++) {
      const id = loaded.ids[Math.floor(Math.random() * loaded.ids.length)];
      sample.set(id, revs.get(id)!);
    }
    const startMs = performance.now();
    const restart = await cluster.restart(victim);
    bounds.log(`  restarted ${cluster.names[victim]}: /_up after ${(restart.upMs / 1000).toFixed(2)} s; polling its own copies`);
    const deadlineMs = startMs + options.timeoutMs;
    const client = victimNode.http();
    let firstMs: number | null = null;
    const sampleMs = await waitCopies(client, db, sample, deadlineMs - performance.now(), bounds.signal, () => (firstMs = performance.now() - startMs));
    const sampleDoneMs = sampleMs === null ? null : performance.now() - startMs;
    const checkStartMs = performance.now();
    const firstPass = sampleMs === null ? null : await missingCopies(client, db, revs, bounds.signal);
    details.fullCheckMs = performance.now() - checkStartMs;
    let allDoneMs: number | null = null;
    if (firstPass !== null) {
      details.missingAtFirstFullCheck = firstPass.missing.size;
      if (firstPass.missing.size === 0) allDoneMs = performance.now() - startMs;
      else if ((await waitCopies(client, db, firstPass.missing, deadlineMs - performance.now(), bounds.signal)) !== null) allDoneMs = performance.now() - startMs;
      if (firstPass.unexpected.length > 0) details.unexpectedReplies = firstPass.unexpected;
    }
    details.restart = restart;
    details.sampleSize = sample.size;
    details.membershipAfter = await cluster.views();
    const errors = sampleDoneMs === null || allDoneMs === null ? 1 : 0;
    return {
      metrics: {
        writeDocsPerSecond: (loaded.ids.length * 1000) / loaded.elapsedMs,
        upSeconds: restart.upMs / 1000,
        firstSeconds: firstMs === null ? null : firstMs / 1000,
        sampleSeconds: sampleDoneMs === null ? null : sampleDoneMs / 1000,
        allSeconds: allDoneMs === null ? null : allDoneMs / 1000,
        // The transfer rate once documents started arriving (the first poll that saw one).
        // (up to the sample being complete when the full check then found nothing missing).
        syncDocsPerSecond: syncRate(loaded.ids.length, firstMs, firstPass?.missing.size === 0 ? sampleDoneMs : allDoneMs),
      },
      errors,
      errorSamples: errors === 0 ? [] : [`catch-up not complete within ${options.timeoutMs / 1000} s of the restart (sample ${sampleDoneMs === null ? 'incomplete' : 'complete'})`],
      statuses: loaded.statuses,
      details: { ...details, writeBatchDocs: bulkBatchDocs },
    };
  } finally {
    await deleteDb({ label: 'cluster', clients: cluster.liveClients() }, db, bounds.log);
  }
}

function syncRate(docs: number, firstMs: number | null, doneMs: number | null): number | null {
  return firstMs === null || doneMs === null || doneMs <= firstMs ? null : (docs * 1000) / (doneMs - firstMs);
}

/**
 * Poll the node's own copies of `expected` (id → rev) until each is present with that
 * revision as a leaf; resolves to the milliseconds it took, or null at the deadline.
 */
async function waitCopies(
  client: HttpClient,
  db: string,
  expected: Map<string, string>,
  timeoutMs: number,
  signal: AbortSignal,
  onFirst?: () => void,
): Promise<number | null> {
  const startMs = performance.now();
  let missing = new Map(expected);
  while (!signal.aborted) {
    missing = (await missingCopies(client, db, missing, signal)).missing;
    if (missing.size < expected.size && onFirst !== undefined) {
      onFirst();
      onFirst = undefined;
    }
    if (missing.size === 0) return performance.now() - startMs;
    if (performance.now() - startMs >= timeoutMs) return null;
    await sleep(pollIntervalMs, signal);
  }
  return null;
}

/** One pass over `expected`: which ids the node's own copy lacks (or holds without that rev). */
async function missingCopies(
  client: HttpClient,
  db: string,
  expected: Map<string, string>,
  signal: AbortSignal,
): Promise<{ missing: Map<string, string>; unexpected: string[] }> {
  const entries = [...expected];
  const missing = new Map<string, string>();
  const unexpected: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < entries.length && !signal.aborted) {
      const [id, rev] = entries[next++];
      try {
        const reply = await client.request('GET', `/_node/_local/_copy/${db}/${encodeURIComponent(id)}`, undefined, { timeoutMs: 10_000 });
        const body = reply.body as { revs?: { rev: string }[] } | null;
        if (reply.status === 200 && body?.revs?.some((r) => r.rev === rev)) continue;
        if (reply.status !== 200 && reply.status !== 404 && unexpected.length < 5) unexpected.push(`${reply.status} ${JSON.stringify(reply.body)}`);
      } catch (err) {
        if (unexpected.length < 5) unexpected.push(err instanceof Error ? err.message : String(err));
      }
      missing.set(id, rev);
    }
  };
  await Promise.all(Array.from({ length: Math.min(checkConcurrency, entries.length) }, worker));
  return { missing, unexpected };
}
