/**
 * The node's long-running background jobs (replications today; compaction and
 * resharding later): one registry that starts them, bounds how many run at once,
 * takes turns among them, cancels them, and reports them to `_active_tasks` and
 * `_scheduler/jobs`.
 *
 * - A job has an id unique on this node; starting an id that is already known
 *   returns the known job (a replication posted twice runs once).
 * - At most `runningMax` jobs run; later ones wait in order (`pending`) and start
 *   as running ones end, as CouchDB's scheduler bounds `max_jobs`.
 * - Turns: a job that may be paused (`rotatable`: a continuous replication resumes
 *   from its checkpoint) is stopped after running `rotateIntervalMs` while others
 *   wait, and goes to the back of the queue; at most `churnMax` per interval, as
 *   CouchDB's scheduler rotates with `interval` and `max_churn`. So every job makes
 *   progress however many there are.
 * - Each run gets an AbortSignal: it fires on `cancel` (the job ends) or on a turn
 *   ending (the job waits and runs again). `close` (node shutdown) cancels every job.
 * - A job's `task()` is read on demand, so reporting costs nothing between requests.
 * - Jobs that ended are kept (bounded, newest first) with how they ended.
 */
export type JobState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface JobSpec<T> {
  id: string;
  kind: string;
  /** The job's live fields for `_active_tasks` (type, progress, ...). */
  task(): Record<string, unknown>;
  /** Run until done or until `signal` fires; may be called again after a turn ended. */
  run(signal: AbortSignal): Promise<T>;
  /** The job can be stopped and run again later without loss (it takes turns). */
  rotatable?: boolean;
}

export interface JobInfo {
  id: string;
  kind: string;
  state: JobState;
  /** Seconds since the epoch, as CouchDB's `started_on`. */
  startedOn: number;
  updatedOn: number;
  error?: string;
  task: Record<string, unknown>;
}

export interface JobRegistryOptions {
  runningMax: number;
  /** How long a rotatable job runs before it yields to waiting ones, ms (CouchDB's `interval`). */
  rotateIntervalMs: number;
  /** Jobs rotated out per interval at most (CouchDB's `max_churn`). */
  churnMax: number;
}

interface Entry {
  spec: JobSpec<unknown>;
  state: JobState;
  cancelled: boolean;
  /** The current run's controller (turns end by aborting it). */
  run: AbortController | undefined;
  /** This run was stopped for another job's turn: it runs again later. */
  yielded: boolean;
  runStartedMs: number;
  startedOn: number;
  updatedOn: number;
  error?: string;
  done: Promise<unknown>;
  settle: { resolve(value: unknown): void; reject(err: unknown): void };
}

/** Ended jobs remembered at most. */
const ENDED_MAX = 100;

export class JobRegistry {
  private readonly jobs = new Map<string, Entry>();
  private readonly ended: JobInfo[] = [];
  private readonly queue: Entry[] = [];
  private running = 0;
  private closed = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: JobRegistryOptions) {
    this.timer = setInterval(() => this.rotate(), Math.max(1, Math.floor(options.rotateIntervalMs / 4)));
    this.timer.unref();
  }

  /** Start (or find) a job; `done` settles with its result or error (a cancelled job's rejects). */
  start<T>(spec: JobSpec<T>): { started: boolean; done: Promise<T> } {
    const known = this.jobs.get(spec.id);
    if (known) return { started: false, done: known.done as Promise<T> };
    if (this.closed) return { started: false, done: Promise.reject(new Error('the node is stopping')) };
    const now = nowSec();
    let settle!: Entry['settle'];
    const done = new Promise<unknown>((resolve, reject) => (settle = { resolve, reject }));
    // A caller that does not wait (continuous jobs) must not leave an unhandled rejection.
    done.catch(() => undefined);
    const entry: Entry = { spec: spec as JobSpec<unknown>, state: 'pending', cancelled: false, run: undefined, yielded: false, runStartedMs: 0, startedOn: now, updatedOn: now, done, settle };
    this.jobs.set(spec.id, entry);
    this.queue.push(entry);
    this.pump();
    return { started: true, done: done as Promise<T> };
  }

  /** Cancel a job; false when no such job is known. */
  cancel(id: string): boolean {
    const entry = this.jobs.get(id);
    if (!entry) return false;
    entry.cancelled = true;
    this.jobs.delete(id);
    const queued = this.queue.indexOf(entry);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      this.finish(entry, 'cancelled', undefined, new Error('cancelled'));
    } else entry.run?.abort();
    return true;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  /** Jobs pending or running. */
  list(kind?: string): JobInfo[] {
    return [...this.jobs.values()].filter((e) => kind === undefined || e.spec.kind === kind).map((e) => this.info(e));
  }

  /** Jobs that ended, newest first. */
  history(kind?: string): JobInfo[] {
    return this.ended.filter((j) => kind === undefined || j.kind === kind);
  }

  /** Cancel every job and wait for them to end (node shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const all = [...this.jobs.values()];
    for (const entry of all) this.cancel(entry.spec.id);
    await Promise.allSettled(all.map((e) => e.done));
  }

  private pump(): void {
    while (this.running < this.options.runningMax && this.queue.length > 0) this.begin(this.queue.shift()!);
  }

  private begin(entry: Entry): void {
    this.running++;
    entry.state = 'running';
    entry.yielded = false;
    entry.runStartedMs = Date.now();
    entry.updatedOn = nowSec();
    const run = new AbortController();
    entry.run = run;
    Promise.resolve()
      .then(() => entry.spec.run(run.signal))
      .then(
        (value) => this.ran(entry, { ok: true, value }),
        (err: unknown) => this.ran(entry, { ok: false, err }),
      );
  }

  private ran(entry: Entry, outcome: { ok: true; value: unknown } | { ok: false; err: unknown }): void {
    this.running--;
    entry.run = undefined;
    if (entry.yielded && !entry.cancelled && !this.closed) {
      // Its turn ended: to the back of the queue, to run again from its checkpoint.
      entry.state = 'pending';
      entry.updatedOn = nowSec();
      this.queue.push(entry);
      this.pump();
      return;
    }
    if (outcome.ok) this.finish(entry, entry.cancelled ? 'cancelled' : 'completed', outcome.value);
    else {
      const err = outcome.err;
      this.finish(entry, entry.cancelled ? 'cancelled' : 'failed', undefined, err, err instanceof Error ? err.message : String(err));
    }
    this.pump();
  }

  /** Give waiting jobs a turn: stop the rotatable jobs that have run longest (past the interval). */
  private rotate(): void {
    if (this.queue.length === 0) return;
    const now = Date.now();
    const due = [...this.jobs.values()]
      .filter((e) => e.state === 'running' && e.spec.rotatable && !e.yielded && now - e.runStartedMs >= this.options.rotateIntervalMs)
      .sort((a, b) => a.runStartedMs - b.runStartedMs)
      .slice(0, Math.min(this.options.churnMax, this.queue.length));
    for (const entry of due) {
      entry.yielded = true;
      entry.run?.abort();
    }
  }

  private finish(entry: Entry, state: JobState, value?: unknown, err?: unknown, error?: string): void {
    entry.state = state;
    entry.updatedOn = nowSec();
    if (error !== undefined) entry.error = error;
    if (this.jobs.get(entry.spec.id) === entry) this.jobs.delete(entry.spec.id);
    this.ended.unshift(this.info(entry));
    if (this.ended.length > ENDED_MAX) this.ended.length = ENDED_MAX;
    if (err !== undefined || state === 'cancelled') entry.settle.reject(err ?? new Error('cancelled'));
    else entry.settle.resolve(value);
  }

  private info(entry: Entry): JobInfo {
    let task: Record<string, unknown>;
    try {
      task = entry.spec.task();
    } catch {
      task = {};
    }
    return {
      id: entry.spec.id,
      kind: entry.spec.kind,
      state: entry.state,
      startedOn: entry.startedOn,
      updatedOn: entry.updatedOn,
      ...(entry.error !== undefined ? { error: entry.error } : {}),
      task,
    };
  }
}

function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}
