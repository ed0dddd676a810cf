/**
 * The node's compaction scheduler: runs compactions of its local shard copies as jobs
 * of one registry (src/node/jobs.ts), at most `compactionJobsMax` at once, and decides
 * on its own when a copy needs one, as CouchDB's smoosh does.
 *
 * - `POST /{db}/_compact` reaches every copy (ShardCopy.compact), which asks this
 *   scheduler; a copy already compacting keeps its job.
 * - The policy, every `compactionCheckIntervalMs`: a copy whose file size is at least
 *   `compactionRatioPercentMin`% of its live data and at least `compactionSizeBytesMin`,
 *   or whose reclaimable bytes reach `compactionSlackBytesMin`, is compacted. A copy's
 *   file size is as `GET /{db}` reports it (ShardCopy.sizes: documents only, not its
 *   indexes). A copy compacted less than ten checks ago is left alone.
 * - A compaction interrupted by kill -9 left its checkpoint in the copy: the first
 *   check after start resumes it, whatever the policy says.
 *
 * The rules per copy (what is dropped, why nothing referenced is) are in
 * src/shard/compaction.ts.
 */
import type { Logger } from '../api/http/context';
import { rangeName, ranges } from '../ring/ranges';
import { compactCopy, type CompactionProgress } from '../shard/compaction';
import type { CopyMaintenance, ShardCopy } from '../shard/shard-copy';
import type { CatalogEntry } from './catalog';
import type { Config } from './config';
import { JobRegistry } from './jobs';

/** The settings the scheduler reads (src/node/config.ts documents each). */
export type CompactionSettings = Pick<
  Config,
  | 'compactionAuto'
  | 'compactionCheckIntervalMs'
  | 'compactionRatioPercentMin'
  | 'compactionSizeBytesMin'
  | 'compactionSlackBytesMin'
  | 'compactionJobsMax'
  | 'compactionBatchDocs'
  | 'compactionDutyPercent'
  | 'purgedInfosLimit'
>;

/** What the scheduler needs of the catalog: this node's copies and their databases. */
export interface LocalCopies {
  copies(): { entry: CatalogEntry; range: number; copy: ShardCopy }[];
}

export class CompactionScheduler implements CopyMaintenance {
  private readonly jobs: JobRegistry;
  /** When each copy's last compaction ended (ms): the policy leaves it alone for a while after. */
  private readonly lastEndedMs = new WeakMap<ShardCopy, number>();
  /** Per copy with a compaction pending or running: settles when it ended. */
  private readonly ended = new Map<ShardCopy, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private resumed = false;
  private copiesSource: LocalCopies | undefined;

  constructor(
    private readonly settings: CompactionSettings,
    private readonly log: Logger,
    /** Told when a compaction ends (for metrics). */
    private readonly onEnded?: (ok: boolean, progress: CompactionProgress) => void,
  ) {
    // Compactions run to the end: no turns (the interval only paces the registry's check).
    this.jobs = new JobRegistry({ runningMax: settings.compactionJobsMax, rotateIntervalMs: 3_600_000, churnMax: 1 });
  }

  /** Begin the periodic check over `source`'s copies (the catalog, once loaded). */
  start(source: LocalCopies): void {
    this.copiesSource = source;
    this.timer = setInterval(() => void this.check().catch((err: unknown) => this.log.warn({ component: 'compaction', err: String(err) }, 'compaction check failed')), this.settings.compactionCheckIntervalMs);
    this.timer.unref();
    setImmediate(() => void this.check().catch(() => undefined));
  }

  requestCompaction(copy: ShardCopy): void {
    const id = `compaction/${copy.copyId}`;
    const progress: CompactionProgress = { phase: 'documents', changesDone: 0, totalChanges: 0, bodiesDropped: 0, attachmentsDropped: 0, purgesTrimmed: 0, phaseMs: {} };
    const startedMs = Date.now();
    const { started, done } = this.jobs.start({
      id,
      kind: 'database_compaction',
      task: () => this.taskOf(copy, progress),
      run: async (signal) => {
        const found = this.entryOf(copy);
        await compactCopy(
          copy,
          {
            batchDocs: this.settings.compactionBatchDocs,
            dutyPercent: this.settings.compactionDutyPercent,
            revsLimit: found?.entry.revsLimit ?? 1000,
            purgedInfosLimit: found?.entry.purgedInfosLimit ?? this.settings.purgedInfosLimit,
            indexedSeq: () => copy.indexedSeq(),
          },
          progress,
          signal,
        );
      },
    });
    if (!started) return;
    const ended = done.then(
      () => {
        this.onEnded?.(true, progress);
        this.log.info(
          { component: 'compaction', copyId: copy.copyId, ms: Date.now() - startedMs, bodies: progress.bodiesDropped, attachments: progress.attachmentsDropped, purges: progress.purgesTrimmed, phaseMs: progress.phaseMs },
          'copy compacted',
        );
      },
      (err: unknown) => {
        this.onEnded?.(false, progress);
        this.log.warn({ component: 'compaction', copyId: copy.copyId, err: err instanceof Error ? err.message : String(err) }, 'copy compaction stopped');
      },
    );
    this.ended.set(copy, ended);
    void ended.then(() => this.lastEndedMs.set(copy, Date.now()));
    void ended.then(() => this.ended.get(copy) === ended && this.ended.delete(copy));
  }

  /** Compactions running or waiting. */
  count(): number {
    return this.jobs.list('database_compaction').length;
  }

  compactionRunning(copy: ShardCopy): boolean {
    return this.jobs.has(`compaction/${copy.copyId}`);
  }

  async stopCompaction(copy: ShardCopy): Promise<void> {
    const ended = this.ended.get(copy);
    if (!ended) return;
    this.jobs.cancel(`compaction/${copy.copyId}`);
    await ended;
  }

  /** `_active_tasks` entries (CouchDB's database_compaction tasks). */
  tasks(self: string): Record<string, unknown>[] {
    return this.jobs.list('database_compaction').map((job) => ({ ...job.task, node: self, started_on: job.startedOn, updated_on: job.updatedOn }));
  }

  private taskOf(copy: ShardCopy, progress: CompactionProgress): Record<string, unknown> {
    const found = this.entryOf(copy);
    const database = found ? `shards/${rangeName(ranges(found.entry.q)[found.range]!)}/${found.entry.name}` : `copy/${copy.copyId}`;
    const total = Math.max(progress.totalChanges, progress.changesDone);
    return {
      type: 'database_compaction',
      pid: `<compaction.${copy.copyId}>`,
      database,
      phase: progress.phase,
      changes_done: progress.changesDone,
      total_changes: total,
      progress: progress.phase === 'done' ? 100 : total > 0 ? Math.min(99, Math.floor((100 * progress.changesDone) / total)) : 0,
    };
  }

  private entryOf(copy: ShardCopy): { entry: CatalogEntry; range: number } | undefined {
    return this.copiesSource?.copies().find((c) => c.copy === copy);
  }

  /** Resume interrupted compactions (first check), then apply the policy. */
  async check(): Promise<void> {
    const copies = this.copiesSource?.copies() ?? [];
    if (!this.resumed) {
      this.resumed = true;
      for (const { copy } of copies) if ((await copy.compactionCheckpoint()) !== undefined) this.requestCompaction(copy);
    }
    if (this.settings.compactionAuto !== 1) return;
    // What one compaction could not free (RocksDB's estimate lags, attachments shared by
    // revisions) must not start another at every check: wait ten checks after one ends.
    const cooldownMs = 10 * this.settings.compactionCheckIntervalMs;
    for (const { copy } of copies) {
      if (this.compactionRunning(copy)) continue;
      if (Date.now() - (this.lastEndedMs.get(copy) ?? 0) < cooldownMs) continue;
      if (this.wants(await copy.sizes())) this.requestCompaction(copy);
    }
  }

  /** The policy: smoosh's ratio and slack channels. */
  wants(sizes: { file: number; active: number }): boolean {
    const garbage = sizes.file - sizes.active;
    if (garbage <= 0) return false;
    if (garbage >= this.settings.compactionSlackBytesMin) return true;
    if (sizes.file < this.settings.compactionSizeBytesMin) return false;
    return sizes.active === 0 || (100 * sizes.file) / sizes.active >= this.settings.compactionRatioPercentMin;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.jobs.close();
  }
}
