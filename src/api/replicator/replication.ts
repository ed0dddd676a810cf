/**
 * One replication, as CouchDB's replicator runs it (the protocol of
 * docs.couchdb.org "Replication Protocol"):
 *
 * 1. `create_target` makes the target; both sides' info proves they exist.
 * 2. The checkpoint `_local/<replication id>` is read on both sides; the newest
 *    session both histories share gives the sequence to start after (or `since_seq`,
 *    or the beginning). A replication posted again, or restarted elsewhere, resumes.
 * 3. Batch after batch of the source's `_changes` (style=all_docs, the filter applied
 *    by the source): `_revs_diff` on the target says which revisions it lacks; those
 *    are fetched from the source with their `_revisions` and the attachments changed
 *    since the target's nearest ancestors, and written with `new_edits: false`, so
 *    every revision, conflict and deletion arrives as it is.
 * 4. The position is checkpointed on both sides every `checkpointIntervalMs` and at
 *    the end; a one-shot replication ends when a batch comes back empty; a continuous
 *    one waits on the source's feed (longpoll) and goes on until cancelled.
 *
 * Retryable failures (an endpoint down, 5xx, timeouts) restart the loop from the last
 * position after a backoff that doubles up to `retryBackoffMaxMs`, as CouchDB's
 * scheduler restarts a crashing job; anything else fails the replication with the
 * endpoint's reason. Memory is bounded by the batch: at most `batchSize` changes and
 * their fetched revisions are held at once, whatever the size of the source.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Endpoint, FetchedRev } from './endpoint';
import { ReplicationError } from './endpoint';

export interface ReplicationOptions {
  source: Endpoint;
  target: Endpoint;
  /** Stable id of this replication (`replicationId`): its checkpoint document's name. */
  id: string;
  continuous: boolean;
  createTarget: boolean;
  createTargetParams: Record<string, unknown>;
  filter?: string;
  docIds?: string[];
  selector?: unknown;
  queryParams?: Record<string, unknown>;
  /** Start after this source sequence instead of the checkpoint's. */
  sinceSeq?: string;
  useCheckpoints: boolean;
  checkpointIntervalMs: number;
  /** Changes per batch (CouchDB's worker_batch_size). */
  batchSize: number;
  /** Only each document's winning revision (CouchDB's winning_revs_only). */
  winningRevsOnly: boolean;
  /** How long a continuous replication's `_changes` waits for news per call. */
  longpollMs: number;
  retryBackoffMaxMs: number;
  /** Consecutive retryable failures before giving up (one-shot replications); none: retry until cancelled. */
  retriesMax?: number;
  signal: AbortSignal;
  /** Called after each batch and checkpoint (for `_active_tasks`). */
  onProgress?: (stats: ReplicationStats) => void;
  /** Called when a retryable failure restarts the loop. */
  onRetry?: (error: ReplicationError, delayMs: number) => void;
}

export interface ReplicationStats {
  docsRead: number;
  docsWritten: number;
  docWriteFailures: number;
  revisionsChecked: number;
  missingRevisionsFound: number;
  /** Source sequence of the last batch written. */
  sourceSeq: string;
  checkpointedSourceSeq: string;
  changesPending: number | null;
}

interface HistoryEntry {
  session_id: string;
  start_time: string;
  end_time: string;
  start_last_seq: string;
  end_last_seq: string;
  recorded_seq: string;
  missing_checked: number;
  missing_found: number;
  docs_read: number;
  docs_written: number;
  doc_write_failures: number;
}

/** What `POST /_replicate` answers for a one-shot replication (CouchDB's body). */
export interface ReplicationResult {
  ok: true;
  no_changes?: true;
  session_id: string;
  source_last_seq: string;
  replication_id_version: number;
  history: HistoryEntry[];
}

const HISTORY_MAX = 50;
/** Revisions fetched per call to the source. */
const FETCH_REVS_MAX = 100;
/** Documents (and about this many bytes) per write to the target. */
const WRITE_DOCS_MAX = 500;
const WRITE_BYTES_MAX = 8 * 1024 * 1024;

/**
 * A stable id for what is replicated, from where to where and how (CouchDB's
 * replication id: the same request gives the same id, so it finds its checkpoint).
 */
export function replicationId(parts: {
  source: string;
  target: string;
  filter?: string | undefined;
  docIds?: string[] | undefined;
  selector?: unknown;
  queryParams?: Record<string, unknown> | undefined;
  winningRevsOnly: boolean;
  /** Whose it is, for replications of callers who are not server admins (two users' jobs never merge). */
  owner?: string | undefined;
}): string {
  const canonical = JSON.stringify([
    ...(parts.owner !== undefined ? [parts.owner] : []),
    'divan-replication-1',
    parts.source,
    parts.target,
    parts.filter ?? null,
    parts.docIds ?? null,
    parts.selector ?? null,
    parts.queryParams ?? null,
    parts.winningRevsOnly,
  ]);
  return createHash('md5').update(canonical).digest('hex');
}

export class Replication {
  readonly stats: ReplicationStats = {
    docsRead: 0,
    docsWritten: 0,
    docWriteFailures: 0,
    revisionsChecked: 0,
    missingRevisionsFound: 0,
    sourceSeq: '0',
    checkpointedSourceSeq: '0',
    changesPending: null,
  };
  private readonly sessionId = randomBytes(16).toString('hex');
  private readonly startTime = new Date().toUTCString();
  private startSeq = '0';
  private history: HistoryEntry[] = [];
  private sourceRev: string | undefined;
  private targetRev: string | undefined;
  private lastCheckpointMs = Date.now();

  constructor(private readonly options: ReplicationOptions) {}

  /** Run until done (one-shot), cancelled or failed for good. */
  async run(): Promise<ReplicationResult> {
    let backoffMs = 250;
    let prepared = false;
    let failures = 0;
    for (;;) {
      try {
        if (!prepared) {
          await this.prepare();
          prepared = true;
        }
        const result = await this.loop();
        return result;
      } catch (err) {
        if (this.options.signal.aborted) throw new ReplicationError('protocol', 'cancelled', false);
        if (!(err instanceof ReplicationError) || !err.retryable) throw err;
        if (this.options.retriesMax !== undefined && ++failures > this.options.retriesMax) throw err;
        this.options.onRetry?.(err, backoffMs);
        await sleep(backoffMs, this.options.signal);
        backoffMs = Math.min(backoffMs * 2, this.options.retryBackoffMaxMs);
      }
    }
  }

  private async prepare(): Promise<void> {
    const { source, target } = this.options;
    if (this.options.createTarget) await target.create(this.options.createTargetParams);
    await source.info();
    await target.info();
    const since = this.options.useCheckpoints ? await this.findCheckpoint() : undefined;
    this.startSeq = this.options.sinceSeq ?? since ?? '0';
    this.stats.sourceSeq = this.startSeq;
    this.stats.checkpointedSourceSeq = this.startSeq;
  }

  /** The newest session both checkpoints share: its recorded sequence. */
  private async findCheckpoint(): Promise<string | undefined> {
    const [onSource, onTarget] = await Promise.all([this.options.source.getLocal(this.options.id), this.options.target.getLocal(this.options.id)]);
    this.sourceRev = typeof onSource?._rev === 'string' ? onSource._rev : undefined;
    this.targetRev = typeof onTarget?._rev === 'string' ? onTarget._rev : undefined;
    if (!onSource || !onTarget) return undefined;
    const sourceHistory = historyOf(onSource);
    const targetSessions = new Set(historyOf(onTarget).map((h) => h.session_id));
    this.history = sourceHistory;
    for (const entry of sourceHistory) if (targetSessions.has(entry.session_id)) return entry.recorded_seq;
    return undefined;
  }

  private async loop(): Promise<ReplicationResult> {
    const o = this.options;
    let since = this.stats.sourceSeq;
    let anyChange = false;
    for (;;) {
      if (o.signal.aborted) throw new ReplicationError('protocol', 'cancelled', false);
      const page = await o.source.changes({
        since,
        limit: o.batchSize,
        longpollMs: o.continuous ? o.longpollMs : 0,
        ...(o.filter !== undefined ? { filter: o.filter } : {}),
        ...(o.docIds !== undefined ? { docIds: o.docIds } : {}),
        ...(o.selector !== undefined ? { selector: o.selector } : {}),
        ...(o.queryParams !== undefined ? { queryParams: o.queryParams } : {}),
        signal: o.signal,
      });
      this.stats.changesPending = page.pending ?? null;
      if (page.rows.length > 0) {
        anyChange = true;
        await this.replicateBatch(page.rows);
        since = page.rows[page.rows.length - 1]!.seq;
        this.stats.sourceSeq = since;
        o.onProgress?.(this.stats);
      } else if (page.lastSeq && page.lastSeq !== since && !o.continuous) {
        since = page.lastSeq;
        this.stats.sourceSeq = since;
      }
      const done = page.rows.length === 0 && !o.continuous;
      if (o.useCheckpoints && this.stats.sourceSeq !== this.stats.checkpointedSourceSeq && (done || Date.now() - this.lastCheckpointMs >= o.checkpointIntervalMs)) {
        await this.checkpoint();
      }
      if (done) return this.result(!anyChange);
      if (page.rows.length === 0) since = page.lastSeq || since;
    }
  }

  private async replicateBatch(rows: { id: string; revs: string[] }[]): Promise<void> {
    const o = this.options;
    const wanted = new Map<string, string[]>();
    for (const row of rows) {
      const revs = o.winningRevsOnly ? row.revs.slice(0, 1) : row.revs;
      const known = wanted.get(row.id);
      wanted.set(row.id, known ? [...new Set([...known, ...revs])] : revs);
      this.stats.revisionsChecked += revs.length;
    }
    const missing = await o.target.revsDiff(wanted);
    const requests = [...missing].map(([id, m]) => ({ id, revs: m.missing, attsSince: m.possibleAncestors }));
    for (const m of missing.values()) this.stats.missingRevisionsFound += m.missing.length;
    // Fetch in slices of about FETCH_REVS_MAX revisions, write what each slice brought.
    let slice: typeof requests = [];
    let sliceRevs = 0;
    const flush = async () => {
      if (slice.length === 0) return;
      const fetched = await o.source.fetch(slice);
      await this.writeFetched(fetched);
      slice = [];
      sliceRevs = 0;
    };
    for (const request of requests) {
      slice.push(request);
      sliceRevs += request.revs.length;
      if (sliceRevs >= FETCH_REVS_MAX) await flush();
    }
    await flush();
  }

  private async writeFetched(fetched: FetchedRev[]): Promise<void> {
    const docs: string[] = [];
    let bytes = 0;
    const write = async () => {
      if (docs.length === 0) return;
      const failures = await this.options.target.write(docs);
      this.stats.docWriteFailures += failures.length;
      this.stats.docsWritten += docs.length - failures.length;
      docs.length = 0;
      bytes = 0;
    };
    for (const rev of fetched) {
      if (rev.kind !== 'ok') continue;
      this.stats.docsRead++;
      docs.push(rev.json);
      bytes += rev.json.length;
      if (docs.length >= WRITE_DOCS_MAX || bytes >= WRITE_BYTES_MAX) await write();
    }
    await write();
  }

  /** Record the position on both sides (the source may refuse a read-only user: then only the target keeps it). */
  private async checkpoint(): Promise<void> {
    const seq = this.stats.sourceSeq;
    const entry: HistoryEntry = {
      session_id: this.sessionId,
      start_time: this.startTime,
      end_time: new Date().toUTCString(),
      start_last_seq: this.startSeq,
      end_last_seq: seq,
      recorded_seq: seq,
      missing_checked: this.stats.revisionsChecked,
      missing_found: this.stats.missingRevisionsFound,
      docs_read: this.stats.docsRead,
      docs_written: this.stats.docsWritten,
      doc_write_failures: this.stats.docWriteFailures,
    };
    this.history = [entry, ...this.history.filter((h) => h.session_id !== this.sessionId)].slice(0, HISTORY_MAX);
    const doc = { session_id: this.sessionId, source_last_seq: seq, replication_id_version: 4, history: this.history };
    this.targetRev = await this.putCheckpoint(this.options.target, this.targetRev, doc, true);
    this.sourceRev = await this.putCheckpoint(this.options.source, this.sourceRev, doc, false);
    this.stats.checkpointedSourceSeq = seq;
    this.lastCheckpointMs = Date.now();
    this.options.onProgress?.(this.stats);
  }

  private async putCheckpoint(side: Endpoint, rev: string | undefined, doc: Record<string, unknown>, required: boolean): Promise<string | undefined> {
    try {
      return await side.putLocal(this.options.id, { ...doc, ...(rev ? { _rev: rev } : {}) });
    } catch (err) {
      // A checkpoint written by another run of this replication meanwhile: take its rev, write again.
      if (err instanceof ReplicationError && err.kind === 'bad_request' && /conflict/i.test(err.reason)) {
        const current = await side.getLocal(this.options.id);
        return side.putLocal(this.options.id, { ...doc, ...(typeof current?._rev === 'string' ? { _rev: current._rev } : {}) });
      }
      if (!required && err instanceof ReplicationError && (err.kind === 'forbidden' || err.kind === 'unauthorized')) return rev;
      throw err;
    }
  }

  private result(noChanges: boolean): ReplicationResult {
    return {
      ok: true,
      ...(noChanges ? { no_changes: true as const } : {}),
      session_id: this.sessionId,
      source_last_seq: this.stats.sourceSeq,
      replication_id_version: 4,
      history: this.history,
    };
  }
}

function historyOf(doc: Record<string, unknown>): HistoryEntry[] {
  return Array.isArray(doc.history) ? (doc.history as HistoryEntry[]).filter((h) => h && typeof h.session_id === 'string') : [];
}

/** Wait `ms`, or less when `signal` fires. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
