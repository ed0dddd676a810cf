/**
 * The per-copy change pipeline: how anything derived from a copy's documents (view
 * and Mango indexes) follows the copy, purges included.
 *
 * A consumer has a checkpoint (the copy sequence it has absorbed). `catchUp` reads the
 * copy's changes after it in batches (the winning revision of each changed document,
 * with `_conflicts`, deleted ones flagged), hands each batch to the consumer, and
 * writes what the consumer answers together with its new checkpoint in ONE durable
 * write: after a crash (even kill -9) a consumer's rows and checkpoint always agree,
 * and it resumes from that checkpoint with no repair step.
 *
 * A batch goes through two steps: `prepare` (the expensive part that reads nothing
 * the consumer writes: map functions in the sandbox) and `absorb` (reads the consumer's
 * own records, makes the writes). The next batch is read and prepared while the
 * current one is absorbed and written, so the sandbox and the store work at once;
 * absorbing stays strictly in order, after the previous batch is durable.
 *
 * Concurrent callers of one consumer share one run: a query arriving during a build
 * waits for that build (and one more pass, if the copy moved past what the build will
 * read) instead of starting its own.
 */
import type { Cursor, WriteOp } from '../../storage/store';
import type { ChangeRow, ChangesOptions } from '../types';

/** One changed document, as consumers receive it. */
export interface ChangedDoc {
  id: string;
  seq: number;
  deleted: boolean;
  /** The winning revision's body, rendered with `_id`, `_rev` (and `_conflicts`, `_deleted`). */
  json: string;
}

export interface ChangeConsumer {
  /** For logs, tasks and metrics. */
  readonly name: string;
  /** The copy sequence absorbed so far. */
  checkpoint(): number;
  /** Work on a batch that needs none of the consumer's stored state (may run ahead of `absorb`). */
  prepare(docs: ChangedDoc[]): Promise<unknown>;
  /**
   * The writes that absorb `docs` (sequence order, with what `prepare` answered), plus
   * the consumer's checkpoint record set to `toSeq`. Must not write anything itself.
   */
  absorb(docs: ChangedDoc[], toSeq: number, prepared: unknown): Promise<WriteOp[]>;
  /** Called after the writes of `absorb` are durable. */
  absorbed(toSeq: number): void;
  /** True once the consumer is dropped: runs stop before their next write. */
  isDropped?(): boolean;
}

interface ReadBatch {
  since: number;
  docs: ChangedDoc[];
  toSeq: number;
  /** Whether the batch was cut at the size limit (more may follow). */
  full: boolean;
  prepared: Promise<unknown>;
}

/** What the pipeline needs of a copy. */
export interface PipelineSource {
  changes(options: ChangesOptions): Cursor<ChangeRow>;
  currentSeq(): number;
  write(ops: WriteOp[]): Promise<void>;
  /** Documents a purge removed whole at a copy seq in (since, upTo] (they have no by-seq row). */
  purgedBetween?(since: number, upTo: number): Promise<{ id: string; seq: number }[]>;
}

export interface Progress {
  /** Changes absorbed in this run. */
  done: number;
  /** Changes this run expects to absorb (the copy's seq at start minus the checkpoint; an estimate). */
  total: number;
}

export interface CatchUpOptions {
  /** Documents per batch. */
  batchDocsMax: number;
  /** Called after each durable batch. */
  onProgress?: (consumer: ChangeConsumer, progress: Progress, batchDocs: number) => void;
  /** Stop between batches (shutdown, the index was dropped). */
  isCancelled?: () => boolean;
}

/** Runs consumers of one copy; one run per consumer at a time. */
export class Pipeline {
  private readonly running = new Map<ChangeConsumer, Promise<void>>();

  constructor(
    private readonly source: PipelineSource,
    private readonly options: CatchUpOptions,
  ) {}

  /** Resolves when no run of `consumer` is in progress. */
  async settled(consumer: ChangeConsumer): Promise<void> {
    await this.running.get(consumer)?.catch(() => undefined);
  }

  /** Whether `consumer` is being brought up to date now. */
  isRunning(consumer: ChangeConsumer): boolean {
    return this.running.has(consumer);
  }

  /** Bring `consumer` up to at least `target` (default: the copy's current sequence). */
  async catchUp(consumer: ChangeConsumer, target = this.source.currentSeq()): Promise<void> {
    while (consumer.checkpoint() < target) {
      const current = this.running.get(consumer);
      if (current) {
        await current;
        continue;
      }
      const run = this.run(consumer).finally(() => this.running.delete(consumer));
      this.running.set(consumer, run);
      await run;
      if (this.options.isCancelled?.() || consumer.isDropped?.()) return;
    }
  }

  private async run(consumer: ChangeConsumer): Promise<void> {
    const start = consumer.checkpoint();
    // A run ends once it reaches the copy's sequence at its start: under a stream of
    // writes, callers waiting for it are not held up by writes that came after them.
    const stopAt = this.source.currentSeq();
    const progress: Progress = { done: 0, total: Math.max(0, stopAt - start) };
    let next: Promise<ReadBatch> | undefined = this.readBatch(consumer, start);
    while (next) {
      const batch = await next;
      next = undefined;
      if (this.options.isCancelled?.() || consumer.isDropped?.()) return;
      // Read and prepare the next batch while this one is absorbed and written.
      if (batch.full && batch.toSeq < stopAt) next = this.readBatch(consumer, batch.toSeq);
      next?.catch(() => undefined);
      if (batch.toSeq > batch.since) {
        await this.source.write(await consumer.absorb(batch.docs, batch.toSeq, await batch.prepared));
        consumer.absorbed(batch.toSeq);
      }
      if (batch.docs.length > 0) {
        progress.done += batch.docs.length;
        progress.total = Math.max(progress.total, progress.done);
        this.options.onProgress?.(consumer, progress, batch.docs.length);
      }
    }
  }

  /** The changes after `since` (one batch), with their `prepare` under way. */
  private async readBatch(consumer: ChangeConsumer, since: number): Promise<ReadBatch> {
    // Read before the scan opens: every change up to `head` is in the scan's snapshot.
    const head = this.source.currentSeq();
    const cursor = this.source.changes({
      since,
      descending: false,
      limit: this.options.batchDocsMax,
      allLeaves: false,
      includeDocs: true,
      conflicts: true,
      filter: { kind: 'none' },
    });
    const docs: ChangedDoc[] = [];
    try {
      for (let batch = await cursor.next(); batch !== null; batch = await cursor.next()) {
        for (const row of batch) docs.push({ id: row.id, seq: row.seq, deleted: row.deleted, json: row.doc ?? '{}' });
      }
    } finally {
      await cursor.close();
    }
    const full = docs.length >= this.options.batchDocsMax;
    // A short batch read all there was up to `head`: sequences without a by-seq row
    // (a document edited again keeps only its last) are absorbed too.
    const toSeq = full ? docs[docs.length - 1]!.seq : Math.max(head, docs.length > 0 ? docs[docs.length - 1]!.seq : since);
    await this.addPurged(docs, since, toSeq);
    const prepared = consumer.prepare(docs);
    prepared.catch(() => undefined);
    return { since, docs, toSeq, full, prepared };
  }

  /**
   * A document purged whole reaches consumers as a deletion at the seq of its purge, so
   * its rows go; one changed again after the purge is already in `docs` at a later seq.
   */
  private async addPurged(docs: ChangedDoc[], since: number, toSeq: number): Promise<void> {
    const purged = (await this.source.purgedBetween?.(since, toSeq)) ?? [];
    if (purged.length === 0) return;
    const present = new Set(docs.map((doc) => doc.id));
    for (const { id, seq } of purged) {
      if (!present.has(id)) docs.push({ id, seq, deleted: true, json: JSON.stringify({ _id: id, _deleted: true }) });
    }
    docs.sort((a, b) => a.seq - b.seq);
  }
}
