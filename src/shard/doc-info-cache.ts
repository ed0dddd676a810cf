/**
 * Decoded doc infos kept in memory, node-wide, least recently used first out.
 *
 * Why: a read by id costs two RocksDB round trips (the doc info, then the winner's
 * body) and an update one before its write; each round trip is a hand-off to the
 * libuv pool that the profile (loadtest/PROFILE.md) showed as the largest share of a
 * GET. The tree decode is the largest share of an update. A cache hit skips both.
 * An entry may also hold its winner's body (small bodies only): a read by id of such
 * a document makes no RocksDB call at all. A body is keyed by its revision, whose
 * body never changes while it is the winner, so it is never stale.
 *
 * Correctness rests on two rules, both kept by ShardCopy:
 * - Only a copy's updater writes its doc infos, one batch at a time. It stores what
 *   it wrote here after the write is durable (`set`), and drops what a maintenance
 *   step rewrote (`delete`).
 * - A reader that read from the store may store what it read only if no batch of
 *   that copy committed since its read began (`epoch`): otherwise it could put back
 *   a value older than the updater's.
 *
 * Entries are shared: a cached DocInfo and its tree are never mutated (edit.ts builds
 * new ones). The budget is in bytes of the stored record, times a factor for the
 * decoded objects; 0 turns the cache off.
 */
import type { DocInfo } from './types';

interface Entry {
  info: DocInfo;
  /** The stored record's length (copy-maintenance's byte counters need it). */
  recordBytes: number;
  cost: number;
  /** The winner's body, when known and small. */
  body?: string;
}

/** Decoded objects take several times their JSON's bytes; this keeps the budget honest. */
const DECODED_FACTOR = 3;
const ENTRY_OVERHEAD = 160;
/** Winner bodies longer than this are not kept (a few big documents would push out many small ones). */
const BODY_CHARS_MAX = 4096;

export class DocInfoCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  /** Per copy: commits so far (see the class comment). */
  private readonly epochs = new Map<number, number>();

  constructor(private readonly budgetBytes: number) {}

  get enabled(): boolean {
    return this.budgetBytes > 0;
  }

  get(copyId: number, id: string): Entry | undefined {
    if (!this.enabled) return undefined;
    const key = keyOf(copyId, id);
    const entry = this.entries.get(key);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Most recently used goes last: re-insert.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry;
  }

  /** The updater's write, after it is durable; always wins. `body`: the winner's, if the edit wrote it. */
  set(copyId: number, info: DocInfo, recordBytes: number, body?: string): void {
    if (!this.enabled) return;
    const key = keyOf(copyId, info.id);
    this.remove(key);
    const cost = recordBytes * DECODED_FACTOR + ENTRY_OVERHEAD + key.length * 2;
    if (cost > this.budgetBytes / 8) return;
    const entry: Entry = { info, recordBytes, cost };
    this.entries.set(key, entry);
    this.bytes += cost;
    if (body !== undefined) this.keepBody(entry, body);
    this.trim();
  }

  /** The winner's body at `rev`, if cached. */
  body(copyId: number, id: string, rev: string): string | undefined {
    const entry = this.entries.get(keyOf(copyId, id));
    return entry && entry.info.winner.rev === rev ? entry.body : undefined;
  }

  /** A reader read `rev`'s body: keep it if `rev` is the cached winner. */
  fillBody(copyId: number, id: string, rev: string, body: string): void {
    const entry = this.entries.get(keyOf(copyId, id));
    if (entry && entry.body === undefined && entry.info.winner.rev === rev) {
      this.keepBody(entry, body);
      this.trim();
    }
  }

  private keepBody(entry: Entry, body: string): void {
    if (body.length > BODY_CHARS_MAX || entry.info.winner.deleted) return;
    entry.body = body;
    const extra = body.length * 2;
    entry.cost += extra;
    this.bytes += extra;
  }

  private trim(): void {
    while (this.bytes > this.budgetBytes) {
      const oldest = this.entries.keys().next().value as string;
      this.remove(oldest);
    }
  }

  /** A reader's fill: kept only if `epoch` (taken before its store read) is still current. */
  fill(copyId: number, epoch: number, info: DocInfo, recordBytes: number): void {
    if (this.epoch(copyId) !== epoch || this.entries.has(keyOf(copyId, info.id))) return;
    this.set(copyId, info, recordBytes);
  }

  epoch(copyId: number): number {
    return this.epochs.get(copyId) ?? 0;
  }

  /** Called by the updater as it commits a batch (before the cache sees the new values). */
  bump(copyId: number): void {
    if (this.enabled) this.epochs.set(copyId, this.epoch(copyId) + 1);
  }

  delete(copyId: number, id: string): void {
    this.remove(keyOf(copyId, id));
  }

  /** Forget a copy entirely (dropped, or rewritten by something other than its updater). */
  dropCopy(copyId: number): void {
    if (!this.enabled) return;
    this.bump(copyId);
    const prefix = copyId + '\u0000';
    for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.remove(key);
  }

  stats(): { entries: number; bytes: number; budgetBytes: number; hits: number; misses: number } {
    return { entries: this.entries.size, bytes: this.bytes, budgetBytes: this.budgetBytes, hits: this.hits, misses: this.misses };
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.cost;
  }
}

function keyOf(copyId: number, id: string): string {
  return copyId + '\u0000' + id;
}
