/**
 * The `_replicator` database: a document is a replication that should run; deleting
 * it stops the replication. Every node follows the database's changes and runs the
 * documents it owns, so each job runs on exactly one live node:
 *
 * - The owner of a document is the rendezvous choice over the live members
 *   (`ownerOf(docId, members)`). When a member dies, its documents move to the best
 *   remaining member, which starts them from their checkpoint; when it comes back they
 *   move back. A brief overlap while members disagree is harmless: replication is
 *   idempotent and the checkpoint is written by whichever run gets there.
 * - A document is (re)started when its replication fields change (its replication
 *   id differs), and stopped when it is deleted, fails its checks, or is owned
 *   elsewhere.
 * - As CouchDB 3 writes them, a one-shot replication that finished records
 *   `_replication_state: "completed"`, `_replication_state_time` and
 *   `_replication_stats` in its document; one that cannot run records
 *   `"failed"` with `_replication_state_reason`. Such documents are not run again.
 *   Running, pending and crashing states are not written (they show in
 *   `_scheduler/docs`).
 * - Jobs run with server-admin rights (writes only server admins can make: see the
 *   `_replicator` write hook).
 */
import { DivanError } from '../../errors';
import { parseJsonText } from '../../json';
import { ownerOf } from '../../ring/placement';
import { decodeSince, readChanges, watchUpdates, type SeqVector } from '../coordinator/changes';
import { updateDocs } from '../coordinator/doc-update';
import type { DbDirectory } from '../coordinator/shard-client';
import { parseDoc } from '../http/doc-input';
import { ReplicationError } from './endpoint';
import { parseReplication, replicationFields, replicationJob, type ReplicatorEnv } from './request';
import { sleep, type ReplicationResult } from './replication';

export const REPLICATOR_DB = '_replicator';

export interface DocProcessorOptions {
  directory: DbDirectory;
  self: string;
  /** Members that are alive or suspect, this node included. */
  liveMembers(): string[];
  jobs: {
    start(spec: ReturnType<typeof replicationJob>): { started: boolean; done: Promise<ReplicationResult> };
    cancel(id: string): boolean;
    has(id: string): boolean;
  };
  /** The environment jobs of `_replicator` documents run in (server-admin rights). */
  env: ReplicatorEnv;
  /** How long to wait for news between passes, and between looks for a missing `_replicator`, ms. */
  pollMs: number;
  log: (fields: Record<string, unknown>, msg: string) => void;
}

interface DocEntry {
  rev: string;
  body: Record<string, unknown>;
}

/** What the processor knows of one document, for `_scheduler/docs`. */
export interface ReplicatorDocState {
  docId: string;
  owner: string | undefined;
  jobId: string | undefined;
  state: string;
  error?: string;
}

export class ReplicatorDocs {
  private readonly docs = new Map<string, DocEntry>();
  /** Documents whose job runs here: doc id → job id. */
  private readonly owned = new Map<string, string>();
  private readonly errors = new Map<string, string>();
  private position: SeqVector | undefined;
  private uuid: string | undefined;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly options: DocProcessorOptions) {}

  start(): void {
    this.loop ??= this.follow().catch((err: unknown) => this.options.log({ err: String(err) }, '_replicator processor stopped'));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    for (const jobId of this.owned.values()) this.options.jobs.cancel(jobId);
    this.owned.clear();
  }

  /** Members changed: documents may have new owners. */
  membersChanged(): void {
    for (const id of this.docs.keys()) this.evaluate(id);
  }

  /** Every known document with its owner and, when it runs here, its state. */
  states(): ReplicatorDocState[] {
    const members = this.options.liveMembers();
    return [...this.docs.entries()].map(([docId, entry]) => {
      const owner = ownerOf(docId, members);
      const jobId = this.owned.get(docId);
      const written = entry.body._replication_state;
      const error = this.errors.get(docId);
      const state = typeof written === 'string' ? written : jobId ? 'running' : owner === this.options.self ? 'pending' : 'running elsewhere';
      return { docId, owner, jobId, state, ...(error ? { error } : {}) };
    });
  }

  private async follow(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const db = await this.options.directory.open(REPLICATOR_DB);
      if (!db) {
        await sleep(this.options.pollMs, signal);
        continue;
      }
      if (db.uuid !== this.uuid) {
        // A new instance (made, or deleted and made again): start from its beginning.
        for (const jobId of this.owned.values()) this.options.jobs.cancel(jobId);
        this.owned.clear();
        this.docs.clear();
        this.uuid = db.uuid;
        this.position = await decodeSince(db, 0);
      }
      const watcher = watchUpdates(db);
      try {
        const changed: string[] = [];
        const pass = await readChanges(
          db,
          { since: this.position!, descending: false, limit: 1000, allLeaves: false, includeDocs: true, conflicts: false, filter: { kind: 'none' }, seqInterval: 1 },
          1000,
          ({ row }) => {
            if (row.id.startsWith('_design/')) return;
            if (row.deleted || row.doc === undefined) this.docs.delete(row.id);
            else this.docs.set(row.id, { rev: row.changes[0]!, body: parseJsonText(row.doc) as Record<string, unknown> });
            changed.push(row.id);
          },
          () => signal.aborted,
        );
        this.position = pass.position;
        for (const id of changed) this.evaluate(id);
        if (pass.count === 0) await watcher.wait(this.options.pollMs, signal);
      } catch (err) {
        this.options.log({ err: String(err) }, '_replicator changes failed; retrying');
        await sleep(this.options.pollMs, signal);
      } finally {
        watcher.stop();
      }
    }
  }

  private evaluate(docId: string): void {
    const entry = this.docs.get(docId);
    const running = this.owned.get(docId);
    const state = entry?.body._replication_state;
    const mine = entry !== undefined && ownerOf(docId, this.options.liveMembers()) === this.options.self;
    if (!entry || !mine || state === 'completed' || state === 'failed') {
      if (running) this.options.jobs.cancel(running);
      this.owned.delete(docId);
      return;
    }
    let request;
    try {
      request = parseReplication(replicationFields(entry.body), this.options.env.limits.keysMax);
    } catch (err) {
      if (running) this.options.jobs.cancel(running);
      this.owned.delete(docId);
      void this.record(docId, entry, 'failed', { _replication_state_reason: err instanceof Error ? err.message : String(err) });
      return;
    }
    if (running === request.id && this.options.jobs.has(running)) return;
    if (running) this.options.jobs.cancel(running);
    const started = this.options.jobs.start(replicationJob(this.options.env, request, docId));
    this.owned.set(docId, request.id);
    this.errors.delete(docId);
    this.options.log({ docId, replicationId: request.id }, 'replication document started');
    started.done.then(
      (result) => {
        if (this.owned.get(docId) !== request.id) return;
        this.owned.delete(docId);
        const last = result.history[0];
        const stats = {
          docs_read: last?.docs_read ?? 0,
          docs_written: last?.docs_written ?? 0,
          doc_write_failures: last?.doc_write_failures ?? 0,
          missing_revisions_found: last?.missing_found ?? 0,
          revisions_checked: last?.missing_checked ?? 0,
          checkpointed_source_seq: result.source_last_seq,
        };
        void this.record(docId, entry, 'completed', { _replication_stats: stats });
      },
      (err: unknown) => {
        if (this.owned.get(docId) !== request.id || this.abort.signal.aborted) return;
        this.owned.delete(docId);
        const reason = err instanceof ReplicationError ? err.reason : err instanceof Error ? err.message : String(err);
        this.errors.set(docId, reason);
        // Cancelled by its owner moving elsewhere: nothing to record.
        if (err instanceof ReplicationError && err.reason === 'cancelled') return;
        void this.record(docId, entry, 'failed', { _replication_state_reason: reason });
      },
    );
  }

  /** Write a final state into the document (as CouchDB 3 does), unless it changed meanwhile. */
  private async record(docId: string, entry: DocEntry, state: 'completed' | 'failed', fields: Record<string, unknown>): Promise<void> {
    try {
      const db = await this.options.directory.open(REPLICATOR_DB);
      if (!db || this.docs.get(docId)?.rev !== entry.rev) return;
      const body = { ...entry.body, _id: docId, _rev: entry.rev, _replication_state: state, _replication_state_time: new Date().toISOString(), ...fields };
      const { edit } = parseDoc(body, { newEdits: true, limits: this.options.env.limits });
      // Kept attachments as stubs would need their digests: replication documents have none worth keeping.
      await updateDocs(db, [edit], { timeoutMs: this.options.env.limits.quorumTimeoutMs });
    } catch (err) {
      if (!(err instanceof DivanError)) this.options.log({ docId, err: String(err) }, 'could not record the replication state');
    }
  }
}
