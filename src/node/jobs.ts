/**
 * The node's long-running background jobs (replications today; compaction and
 * resharding later): one registry that starts them, bounds how many run at once,
 * cancels them, and reports them to `_active_tasks` and `_scheduler/jobs`.
 *
 * - A job has an id unique on this node; starting an id that is already known
 *   returns the known job (a replication posted twice runs once).
 * - At most `runningMax` jobs run; later ones wait in order (`pending`) and start
 *   as running ones end, as CouchDB's scheduler bounds `max_jobs`.
 * - Each job gets an AbortSignal; `cancel` fires it and forgets the job at once.
 *   `close` (node shutdown) cancels every job.
 * - A job's `task()` is read on demand, so reporting costs nothing between requests.
 * - Jobs that ended are kept (bounded, newest first) with how they ended, so
 *   `_scheduler/jobs` and a one-shot caller can tell what happened.
 */
export type JobState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface JobSpec<T> {
  id: string;
  kind: string;
  /** The job's live fields for `_active_tasks` (type, progress, ...). */
  task(): Record<string, unknown>;
  run(signal: AbortSignal): Promise<T>;
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

interface Entry {
  spec: JobSpec<unknown>;
  state: JobState;
  abort: AbortController;
  startedOn: number;
  updatedOn: number;
  error?: string;
  done: Promise<unknown>;
  begin: () => void;
}

/** Ended jobs remembered at most. */
const ENDED_MAX = 100;

export class JobRegistry {
  private readonly jobs = new Map<string, Entry>();
  private readonly ended: JobInfo[] = [];
  private readonly queue: Entry[] = [];
  private running = 0;
  private closed = false;

  constructor(private readonly runningMax: number) {}

  /**
   * Start (or find) a job; `done` settles with its result or error. A cancelled job's
   * `done` rejects with the abort reason.
   */
  start<T>(spec: JobSpec<T>): { started: boolean; done: Promise<T> } {
    const known = this.jobs.get(spec.id);
    if (known) return { started: false, done: known.done as Promise<T> };
    if (this.closed) return { started: false, done: Promise.reject(new Error('the node is stopping')) };
    const abort = new AbortController();
    let begin!: () => void;
    const gate = new Promise<void>((resolve) => (begin = resolve));
    const now = nowSec();
    const entry: Entry = { spec: spec as JobSpec<unknown>, state: 'pending', abort, startedOn: now, updatedOn: now, done: Promise.resolve(), begin };
    entry.done = gate.then(() => spec.run(abort.signal)).then(
      (value) => {
        this.finish(entry, abort.signal.aborted ? 'cancelled' : 'completed');
        return value;
      },
      (err: unknown) => {
        this.finish(entry, abort.signal.aborted ? 'cancelled' : 'failed', err instanceof Error ? err.message : String(err));
        throw err;
      },
    );
    // A caller that does not wait (continuous jobs) must not leave an unhandled rejection.
    entry.done.catch(() => undefined);
    this.jobs.set(spec.id, entry);
    this.queue.push(entry);
    this.pump();
    return { started: true, done: entry.done as Promise<T> };
  }

  /** Cancel a job; false when no such job is known. */
  cancel(id: string): boolean {
    const entry = this.jobs.get(id);
    if (!entry) return false;
    entry.abort.abort();
    this.jobs.delete(id);
    const queued = this.queue.indexOf(entry);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      entry.begin(); // runs at once, sees the aborted signal and ends
    }
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

  /** Note progress (for `updated_on`). */
  touch(id: string): void {
    const entry = this.jobs.get(id);
    if (entry) entry.updatedOn = nowSec();
  }

  /** Cancel every job and wait for them to end (node shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.jobs.values()];
    for (const entry of all) this.cancel(entry.spec.id);
    await Promise.allSettled(all.map((e) => e.done));
  }

  private pump(): void {
    while (this.running < this.runningMax && this.queue.length > 0) {
      const entry = this.queue.shift()!;
      this.running++;
      entry.state = 'running';
      entry.updatedOn = nowSec();
      entry.begin();
    }
  }

  private finish(entry: Entry, state: JobState, error?: string): void {
    if (entry.state === 'running') this.running--;
    entry.state = state;
    entry.updatedOn = nowSec();
    if (error !== undefined) entry.error = error;
    if (this.jobs.get(entry.spec.id) === entry) this.jobs.delete(entry.spec.id);
    this.ended.unshift(this.info(entry));
    if (this.ended.length > ENDED_MAX) this.ended.length = ENDED_MAX;
    this.pump();
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
