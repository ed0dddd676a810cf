/**
 * `_changes`: one by-seq cursor per range, interleaved, with an opaque sequence.
 *
 * A database sequence is a vector: for each range, the copy read and that copy's
 * local seq. Encoded as `<sum>-<base64url of "copy.seq" pairs>` (the sum only makes it
 * readable and roughly monotonic; the rest is what resumes). Every row carries the
 * vector as it stands after that row, so `since=<any row's seq>` resumes exactly after
 * it: a range's position only moves past rows already sent. A position whose copy is
 * not the one read now (another copy, or a recreated database) restarts that range
 * from 0: a replay, never a skip.
 *
 * Live feeds (longpoll, continuous, eventsource) subscribe to each copy's update
 * signal before reading, so an update between the read and the wait is never missed.
 */
import { BadRequestError } from '../../errors';
import type { CompiledDdoc, SandboxPool } from '../../shard/js/sandbox';
import type { ChangeRow, ChangesFilter } from '../../shard/types';
import { firstLiveCursor, firstLiveState } from './range-read';
import type { Cursor, DbHandle, ShardClient } from './shard-client';

export interface SeqPosition {
  /** The node whose copy of the range was read. */
  node: string;
  /** That copy's local sequence. */
  seq: number;
}

export type SeqVector = SeqPosition[];

const nodeJsonCache = new Map<string, string>();
function nodeJson(node: string): string {
  let json = nodeJsonCache.get(node);
  if (json === undefined) {
    json = JSON.stringify(node);
    if (nodeJsonCache.size < 10_000) nodeJsonCache.set(node, json);
  }
  return json;
}

/** `<sum>-<base64url of ["<db uuid prefix>", [[node, seq], ...]]>`, one pair per range. */
export function encodeSeq(db: DbHandle, vector: SeqVector): string {
  let sum = 0;
  let text = '["' + db.uuid.slice(0, 8) + '",[';
  for (let i = 0; i < vector.length; i++) {
    const p = vector[i]!;
    sum += p.seq;
    text += (i === 0 ? '[' : ',[') + nodeJson(p.node) + ',' + p.seq + ']';
  }
  return sum + '-' + Buffer.from(text + ']]', 'utf8').toString('base64url');
}

/** Parse `since`: 0, "0", "now", or a sequence this database gave out. */
export async function decodeSince(db: DbHandle, since: unknown): Promise<SeqVector> {
  const zero = () => db.ranges.map((r) => ({ node: r.copies[0]!.node, seq: 0 }));
  if (since === undefined || since === null || since === 0 || since === '0') return zero();
  if (since === 'now') return currentSeq(db);
  if (typeof since === 'number' && Number.isSafeInteger(since) && since >= 0) return zero();
  if (typeof since !== 'string') throw malformed();
  const dash = since.indexOf('-');
  if (dash < 1) {
    if (/^[0-9]+$/.test(since)) return zero();
    throw malformed();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(since.slice(dash + 1), 'base64url').toString('utf8'));
  } catch {
    throw malformed();
  }
  if (!Array.isArray(parsed) || typeof parsed[0] !== 'string' || !Array.isArray(parsed[1])) throw malformed();
  const pairs = parsed[1] as unknown[];
  if (pairs.length !== db.ranges.length) throw malformed();
  // A sequence from another instance of this database (dropped and created again)
  // means nothing here: start over rather than skip.
  if (parsed[0] !== db.uuid.slice(0, 8)) return zero();
  return db.ranges.map((range, i) => {
    const pair = pairs[i];
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || !Number.isSafeInteger(pair[1]) || (pair[1] as number) < 0) throw malformed();
    const node = pair[0] as string;
    // Another copy's sequence says nothing about this one: replay the range (never skip).
    return range.copies.some((c) => c.node === node) ? { node, seq: pair[1] as number } : { node: range.copies[0]!.node, seq: 0 };
  });
}

function malformed(): BadRequestError {
  return new BadRequestError("Malformed sequence supplied in 'since' parameter.");
}

function copyAt(db: DbHandle, index: number, node: string) {
  const range = db.ranges[index]!;
  return range.copies.find((c) => c.node === node) ?? range.copies[0]!;
}

export async function currentSeq(db: DbHandle): Promise<SeqVector> {
  return Promise.all(
    db.ranges.map((r) => firstLiveState(r.copies, async (copy) => ({ node: copy.node, seq: (await copy.readState()).updateSeq }))),
  );
}

export interface ChangesRequest {
  since: SeqVector;
  descending: boolean;
  limit: number;
  allLeaves: boolean;
  includeDocs: boolean;
  conflicts: boolean;
  filter: ChangesFilter;
  /** Only every Nth row carries its seq (CouchDB's seq_interval); 1 = all. */
  seqInterval: number;
  /**
   * Where CouchDB's seq_interval count stands at this pass's first row: its remaining
   * `limit` (10^15 when none was set). A row carries its seq when the countdown at that
   * row is a multiple of seqInterval, exactly as CouchDB picks them. Default 10^15.
   */
  seqCountdown?: number;
  /** A design document's filter or view map: run here, on each batch of changes read. */
  js?: JsChangesFilter;
}

/**
 * `filter=ddoc/name` (`filters[name](doc, req)`, truthy passes) or `filter=_view`
 * (passes when the view's map function emits at least one row for the doc). Run by
 * this coordinator after reading, one sandbox call per batch of rows; the copies are
 * read with their documents.
 */
export interface JsChangesFilter {
  pool: SandboxPool;
  ddoc: CompiledDdoc;
  kind: 'filter' | 'view';
  /** The filter's or the view's name. */
  name: string;
  /** CouchDB's request object, passed to filter functions. */
  req: unknown;
  /** Where the lines the function passes to `log()` go. */
  onLog?: (lines: string[]) => void;
}

/** Documents' JSON bytes per sandbox call at most (a cursor batch may be cut in several calls). */
const FILTER_CALL_BYTES_MAX = 4 * 1024 * 1024;

/** Which rows pass the filter; the rows carry their winning documents. */
async function passing(js: JsChangesFilter, rows: readonly ChangeRow[]): Promise<boolean[]> {
  const out: boolean[] = [];
  let start = 0;
  while (start < rows.length) {
    let end = start;
    let bytes = 0;
    while (end < rows.length && (end === start || bytes + rows[end]!.doc!.length <= FILTER_CALL_BYTES_MAX)) bytes += rows[end++]!.doc!.length;
    const docs = rows.slice(start, end).map((row) => JSON.parse(row.doc!) as unknown);
    if (js.kind === 'filter') {
      const answer = await js.pool.filterDocs(js.ddoc, js.name, docs, js.req);
      if (answer.logs.length > 0) js.onLog?.(answer.logs);
      out.push(...answer.pass);
    } else {
      const mapped = await js.pool.mapDocs(js.ddoc, [js.name], docs);
      if (mapped.logs.length > 0) js.onLog?.(mapped.logs);
      for (const perView of mapped.docs) {
        const emitted = perView[0];
        out.push(Array.isArray(emitted) && emitted.length > 0);
      }
    }
    start = end;
  }
  return out;
}

export interface ChangeEvent {
  row: ChangeRow;
  /** Encoded vector after this row, or null when seq_interval omits it. */
  seq: string | null;
}

export interface PassResult {
  count: number;
  position: SeqVector;
}

/**
 * One pass over the ranges from `request.since` (or `position`), emitting rows until
 * the limit or the end. `emit` may return a promise to apply backpressure.
 */
export async function readChanges(
  db: DbHandle,
  request: ChangesRequest,
  limit: number,
  emit: (event: ChangeEvent) => void | Promise<void>,
  isCancelled: () => boolean = () => false,
): Promise<PassResult> {
  const position = request.since.map((p) => ({ ...p }));
  const cursors: (Cursor<ChangeRow> | null)[] = db.ranges.map((range, i) => {
    // The position's own copy first; any other copy restarts the range from 0 (its
    // sequence numbers mean nothing here): a replay, never a skip.
    const preferred = range.copies.find((c) => c.node === position[i]!.node);
    const ordered = preferred ? [preferred, ...range.copies.filter((c) => c !== preferred)] : [...range.copies];
    const open = (copy: ShardClient) =>
      copy.changes({
        since: request.descending || copy.node !== position[i]!.node ? 0 : position[i]!.seq,
        descending: request.descending,
        // A JavaScript filter drops rows here: the copy cannot stop at the limit.
        limit: request.js ? 2 ** 31 - 1 : limit,
        allLeaves: request.allLeaves,
        includeDocs: request.includeDocs || request.js !== undefined,
        conflicts: request.conflicts,
        filter: request.filter,
      });
    // A copy lost mid-range is replaced by the next, read from its start.
    return firstLiveCursor(
      ordered,
      open,
      (copy) => {
        position[i] = { node: copy.node, seq: 0 };
      },
      true,
    );
  });
  let count = 0;
  try {
    let open = cursors.length;
    while (open > 0 && count < limit && !isCancelled()) {
      for (let i = 0; i < cursors.length && count < limit; i++) {
        const cursor = cursors[i];
        if (!cursor) continue;
        const batch = await cursor.next();
        if (batch === null) {
          await cursor.close();
          cursors[i] = null;
          open--;
          continue;
        }
        const keep = request.js ? await passing(request.js, batch) : undefined;
        for (let k = 0; k < batch.length; k++) {
          const row = batch[k]!;
          if (count >= limit) break;
          if (!request.descending) position[i]!.seq = row.seq;
          if (keep) {
            if (!keep[k]) continue;
            if (!request.includeDocs) delete row.doc;
          }
          const withSeq = request.seqInterval <= 1 || ((request.seqCountdown ?? 1e15) - count) % request.seqInterval === 0;
          count++;
          const seq = withSeq ? encodeSeq(db, request.descending ? withRange(position, i, row.seq) : position) : null;
          const pending = emit({ row, seq });
          if (pending) await pending;
        }
      }
    }
  } finally {
    await Promise.all(cursors.map((c) => c?.close().catch(() => undefined)));
  }
  return { count, position };
}

function withRange(vector: SeqVector, index: number, seq: number): SeqVector {
  return vector.map((p, i) => (i === index ? { ...p, seq } : p));
}

/** Rows after `position` not yet sent: an upper bound (superseded updates count once). */
export async function pendingAfter(db: DbHandle, position: SeqVector): Promise<number> {
  const states = await Promise.all(position.map((p, i) => copyAt(db, i, p.node).readState().catch(() => ({ updateSeq: p.seq }))));
  return states.reduce((sum, state, i) => sum + Math.max(0, state.updateSeq - position[i]!.seq), 0);
}

/**
 * Resolves when any copy of the database records an update, the timeout passes, or
 * the signal aborts. Subscribe first (`watchUpdates`), then read, then `wait()`.
 * Each range is watched on one copy (this node's own when it has one); if that copy's
 * node goes away the watch moves to the next copy and the feed is woken to read again,
 * so a live feed keeps running through the loss of a node.
 */
export function watchUpdates(db: DbHandle): { wait(timeoutMs: number, signal: AbortSignal): Promise<void>; stop(): void } {
  let dirty = false;
  let stopped = false;
  let wake: (() => void) | null = null;
  const poke = () => {
    dirty = true;
    wake?.();
  };
  const unsubscribes = db.ranges.map((range, i) => {
    const watchCopy = (index: number) => {
      const copy = range.copies[index % range.copies.length]!;
      return copy.onUpdate(poke, () => {
        if (stopped) return;
        // Unsubscribing from inside the lost signal is safe: the copy iterates a snapshot.
        unsubscribes[i]!();
        unsubscribes[i] = watchCopy(index + 1);
        poke();
      });
    };
    return watchCopy(0);
  });
  return {
    wait: (timeoutMs, signal) =>
      new Promise<void>((resolve) => {
        if (dirty || signal.aborted) {
          dirty = false;
          return resolve();
        }
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          wake = null;
          dirty = false;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener('abort', done);
        wake = done;
      }),
    stop: () => {
      stopped = true;
      unsubscribes.forEach((u) => u());
    },
  };
}
