/**
 * Running a planned `_find` across the cluster: every range of the database is read on
 * one live copy (falling over like `_all_docs`), each copy hands over its matching
 * documents in index order, and the coordinator merge-sorts them by index key then doc
 * id (by doc id for `_all_docs`), applies `skip` and `limit` after the merge, and
 * answers with a bookmark naming the last row sent.
 *
 * The bookmark is one position in that total order (key and doc id), so it is the same
 * for every range: each copy resumes after it. Opaque to clients: base64url of JSON.
 */
import { BadRequestError } from '../../../errors';
import { isFindStats, isHeader, type FindRow, type FindStats, type FindStreamItem, type ShardFindRequest } from '../../../shard/index/types';
import { collate, compareRaw } from '../../../shard/query/collate';
import { compileSelector } from '../../../shard/query/mango';
import { parseFields, project } from '../../../shard/query/mango-fields';
import { readDocInfos } from '../doc-infos';
import { plainRender, readBody, renderRevision } from '../doc-open';
import { mergeCursors } from '../merge';
import { firstLiveCursor } from '../range-read';
import type { Cursor, DbHandle } from '../shard-client';
import type { FindPlan } from './plan';

export interface FindRun {
  selector: Record<string, unknown>;
  fields: string[] | undefined;
  limit: number;
  skip: number;
  /** As the client sent it (undefined: none). */
  bookmark: string | undefined;
  conflicts: boolean;
  update: 'true' | 'false' | 'lazy';
  /** Copies that must agree on each document: above 1, every candidate is read again with that quorum. */
  r: number;
  /** Deadline of the quorum reads, ms. */
  timeoutMs: number;
}

export interface FindOutcome {
  bookmark: string;
  keysExamined: number;
  docsExamined: number;
  /** Documents read again with quorum `r` (r > 1). */
  quorumDocsExamined: number;
  resultsReturned: number;
}

/** A bookmark's position: the last row's key (JSON) and doc id. */
export function decodeBookmark(bookmark: string): { keyJson: string; id: string } {
  const invalid = () => new BadRequestError(`Invalid bookmark value: ${JSON.stringify(bookmark)}`, 'invalid_bookmark');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bookmark, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[1] !== 'string') throw invalid();
  return { keyJson: JSON.stringify(parsed[0]), id: parsed[1] };
}

export function encodeBookmark(row: { keyJson: string; id: string }): string {
  return Buffer.from(`[${row.keyJson},${JSON.stringify(row.id)}]`, 'utf8').toString('base64url');
}

type Keyed = FindRow & { key: unknown };

/** Stream the answer's documents (JSON texts) to `onDocs`, in order. */
export async function runFind(db: DbHandle, plan: FindPlan, run: FindRun, onDocs: (docs: string[]) => Promise<void>): Promise<FindOutcome> {
  const outcome: FindOutcome = { bookmark: run.bookmark ?? 'nil', keysExamined: 0, docsExamined: 0, quorumDocsExamined: 0, resultsReturned: 0 };
  if (plan.nothing || run.limit === 0) return outcome;
  const after = run.bookmark !== undefined ? decodeBookmark(run.bookmark) : undefined;
  const quorum = run.r > 1;
  const source: ShardFindRequest['source'] = plan.index.type === 'special' ? { kind: 'all_docs' } : { kind: 'view', ddoc: plan.index.ref!, view: plan.index.name };
  const request: ShardFindRequest = {
    source,
    ranges: plan.ranges,
    descending: plan.descending,
    selector: run.selector,
    // With a quorum the coordinator reads each document again, whole, and projects it itself.
    covering: plan.covering && !quorum,
    limit: run.skip + run.limit,
    // Each range's share of the answer, with a margin: the merge pulls more where needed.
    firstSlice: Math.ceil(((run.skip + run.limit) / db.ranges.length) * 1.25) + 2,
    conflicts: run.conflicts,
    update: run.update,
    ...(run.fields && run.fields.length > 0 && !quorum ? { fields: run.fields } : {}),
    ...(after ? { after } : {}),
  };
  const stats: FindStats[] = db.ranges.map(() => ({ stats: true, keysExamined: 0, docsExamined: 0 }));
  const byId = plan.index.type === 'special';
  const cursors = db.ranges.map((range, i) => rowsOf(firstLiveCursor(range.copies, (copy) => copy.findRows(request)), byId, (s) => (stats[i] = s)));
  let last: Keyed | undefined;
  const compare = byId ? (a: Keyed, b: Keyed) => compareRaw(a.id, b.id) : (a: Keyed, b: Keyed) => collate(a.key, b.key) || compareRaw(a.id, b.id);
  if (!quorum) {
    await mergeCursors(cursors, compare, { descending: plan.descending, skip: run.skip, limit: run.limit }, async (rows) => {
      last = rows[rows.length - 1];
      outcome.resultsReturned += rows.length;
      await onDocs(rows.map((r) => r.doc));
    });
  } else {
    // Skip and limit count documents that still match once read with the quorum.
    const requorum = quorumReader(db, run);
    let skip = run.skip;
    try {
      await mergeCursors(cursors, compare, { descending: plan.descending, skip: 0, limit: Number.MAX_SAFE_INTEGER }, async (rows) => {
        outcome.quorumDocsExamined += rows.length;
        const kept = await requorum(rows);
        const from = Math.min(skip, kept.length);
        skip -= from;
        const take = kept.slice(from, from + run.limit - outcome.resultsReturned);
        if (take.length > 0) {
          last = take[take.length - 1];
          outcome.resultsReturned += take.length;
          await onDocs(take.map((r) => r.doc));
        }
        if (outcome.resultsReturned >= run.limit) throw enough;
      });
    } catch (err) {
      if (err !== enough) throw err;
    }
  }
  if (last) outcome.bookmark = encodeBookmark(last);
  for (const s of stats) {
    outcome.keysExamined += s.keysExamined;
    outcome.docsExamined += s.docsExamined;
  }
  return outcome;
}

/** Thrown through the merge to end it once the limit is reached. */
const enough = Symbol('limit reached');

/**
 * Rows read again with quorum `r`: each document's winner as `r` copies agree on it,
 * kept when it still matches the selector, then projected.
 */
function quorumReader(db: DbHandle, run: FindRun): (rows: Keyed[]) => Promise<Keyed[]> {
  const matches = compileSelector(run.selector);
  const paths = run.fields && run.fields.length > 0 ? parseFields(run.fields) : undefined;
  return async (rows) => {
    const infos = await readDocInfos(db, rows.map((r) => r.id), { r: run.r, timeoutMs: run.timeoutMs });
    const kept: Keyed[] = [];
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      const info = infos[i];
      if (!info || info.winner.deleted) continue;
      let text = row.doc;
      if ((JSON.parse(text) as { _rev?: unknown })._rev !== info.winner.rev) {
        const body = await readBody(db, row.id, info.winner.rev);
        if (body === undefined) continue;
        text = await renderRevision(db, info, info.winner, body, { ...plainRender, conflicts: run.conflicts });
      }
      const doc = JSON.parse(text) as Record<string, unknown>;
      if (!matches(doc)) continue;
      kept.push({ ...row, doc: paths ? JSON.stringify(project(doc, paths)) : text });
    }
    return kept;
  };
}

/** A copy's find stream as rows with parsed keys; headers dropped, stats handed to `onStats`. */
function rowsOf(inner: Cursor<FindStreamItem>, byId: boolean, onStats: (s: FindStats) => void): Cursor<Keyed> {
  return {
    next: async () => {
      for (;;) {
        const batch = await inner.next();
        if (batch === null) return null;
        const rows: Keyed[] = [];
        for (const item of batch) {
          if (isHeader(item)) continue;
          if (isFindStats(item)) onStats(item);
          else rows.push(Object.assign(item, { key: byId ? item.id : (JSON.parse(item.keyJson) as unknown) }));
        }
        if (rows.length > 0) return rows;
      }
    },
    close: () => inner.close(),
  };
}
