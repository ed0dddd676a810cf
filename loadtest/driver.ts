/**
 * Closed-loop load driver: N workers each run one operation at a time until a
 * deadline, an operation cap, an error cap or an abort, whichever comes first.
 *
 * An operation is claimed (counted against `opsMax`) before it starts, so at most
 * `opsMax` run, and none starts after `durationMs`; one in flight at the deadline
 * finishes and counts. Each successful operation's latency is recorded with
 * `process.hrtime.bigint()` into a preallocated array of `opsMax` slots, so memory is
 * bounded by the cap. An operation reports how many items it handled (1 for a
 * single-document request, the batch size for `_bulk_docs`); throughput is items
 * over the wall time from the first start to the last finish.
 */

export interface DriveOptions {
  concurrency: number;
  durationMs: number;
  opsMax: number;
  /** Stop early when this many operations failed: the figures would mean nothing. */
  errorsMax: number;
  signal: AbortSignal;
  /** Runs one operation; resolves to the items it handled, throws on failure. */
  op: (worker: number, opIndex: number) => Promise<number>;
}

export type StopReason = 'time' | 'count' | 'errors' | 'aborted';

export interface LatencySummary {
  count: number;
  p50Ms: number | null;
  p99Ms: number | null;
  meanMs: number | null;
  maxMs: number | null;
}

export interface DriveResult {
  ops: number;
  items: number;
  errors: number;
  /** First few failure messages, for the report. */
  errorSamples: string[];
  elapsedMs: number;
  itemsPerSecond: number;
  opsPerSecond: number;
  latency: LatencySummary;
  stoppedBy: StopReason;
}

const errorSamplesMax = 5;

export async function drive(options: DriveOptions): Promise<DriveResult> {
  const latenciesMs = new Float64Array(options.opsMax);
  let latenciesCount = 0;
  let claimed = 0;
  let items = 0;
  let errors = 0;
  const errorSamples: string[] = [];
  let stoppedBy: StopReason | null = null;

  const startNs = process.hrtime.bigint();
  const deadlineNs = startNs + BigInt(Math.round(options.durationMs * 1e6));

  const claim = (): number | null => {
    if (stoppedBy !== null) return null;
    if (options.signal.aborted) return stop('aborted');
    if (claimed >= options.opsMax) return stop('count');
    if (process.hrtime.bigint() >= deadlineNs) return stop('time');
    return claimed++;
  };
  const stop = (reason: StopReason): null => {
    stoppedBy ??= reason;
    return null;
  };

  const worker = async (workerIndex: number): Promise<void> => {
    for (let opIndex = claim(); opIndex !== null; opIndex = claim()) {
      const opStartNs = process.hrtime.bigint();
      try {
        const opItems = await options.op(workerIndex, opIndex);
        items += opItems; // not `items += await ...`: that adds to the value read before the await
        latenciesMs[latenciesCount++] = Number(process.hrtime.bigint() - opStartNs) / 1e6;
      } catch (err) {
        errors++;
        if (errorSamples.length < errorSamplesMax) errorSamples.push(err instanceof Error ? err.message : String(err));
        if (errors >= options.errorsMax) stop('errors');
      }
    }
  };

  const workers: Promise<void>[] = [];
  for (let i = 0; i < options.concurrency; i++) workers.push(worker(i));
  await Promise.all(workers);

  const elapsedMs = Number(process.hrtime.bigint() - startNs) / 1e6;
  const ops = claimed;
  return {
    ops,
    items,
    errors,
    errorSamples,
    elapsedMs,
    itemsPerSecond: elapsedMs > 0 ? (items * 1000) / elapsedMs : 0,
    opsPerSecond: elapsedMs > 0 ? ((ops - errors) * 1000) / elapsedMs : 0,
    latency: summarizeLatencies(latenciesMs.subarray(0, latenciesCount)),
    stoppedBy: stoppedBy ?? 'count',
  };
}

/** Nearest-rank percentiles; sorts the array in place. */
export function summarizeLatencies(latenciesMs: Float64Array): LatencySummary {
  const count = latenciesMs.length;
  if (count === 0) return { count, p50Ms: null, p99Ms: null, meanMs: null, maxMs: null };
  latenciesMs.sort();
  let sum = 0;
  for (const value of latenciesMs) sum += value;
  return {
    count,
    p50Ms: percentile(latenciesMs, 0.5),
    p99Ms: percentile(latenciesMs, 0.99),
    meanMs: sum / count,
    maxMs: latenciesMs[count - 1],
  };
}

function percentile(sortedMs: Float64Array, fraction: number): number {
  const rank = Math.max(1, Math.ceil(fraction * sortedMs.length));
  return sortedMs[rank - 1];
}
