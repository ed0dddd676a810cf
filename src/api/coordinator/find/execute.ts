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
import { plainRender, rangeFor, readBody, renderRevision, renderRowDoc } from '../doc-open';
import { mergeCursors } from '../merge';
import { firstLiveCursor, firstLiveState } from '../range-read';
import type { DocInfo } from '../../../shard/types';
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
  /** Deadline of the documents' reads, ms. */
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

/**
 * Stream the answer's documents (JSON texts) to `onDocs`, in order.
 *
 * Three ways to read, by what the plan allows:
 * - copies send the answer's documents, projected (and from index rows alone when the
 *   index covers the query);
 * - keys first: when the selector looks only at index fields but the answer needs the
 *   documents, copies match on index rows and send keys; after the merge, skip and limit,
 *   only the answered documents are read (one copy per range), so a limit-25 query reads
 *   25 documents whatever the number of ranges;
 * - with `r` above 1, copies send whole documents and each is read again from `r` copies.
 * Read again, a document is matched again (it may have changed since its index row was
 * read) and projected here; skip and limit count what still matches.
 */
export async function runFind(db: DbHandle, plan: FindPlan, run: FindRun, onDocs: (docs: string[]) => Promise<void>): Promise<FindOutcome> {
  const outcome: FindOutcome = { bookmark: run.bookmark ?? 'nil', keysExamined: 0, docsExamined: 0, quorumDocsExamined: 0, resultsReturned: 0 };
  if (plan.nothing || run.limit === 0) return outcome;
  const after = run.bookmark !== undefined ? decodeBookmark(run.bookmark) : undefined;
  const quorum = run.r > 1;
  const keysFirst = !quorum && plan.selectorCovered && !plan.covering;
  const direct = !quorum && !keysFirst;
  const source: ShardFindRequest['source'] = plan.index.type === 'special' ? { kind: 'all_docs' } : { kind: 'view', ddoc: plan.index.ref!, view: plan.index.name };
  const request: ShardFindRequest = {
    source,
    ranges: plan.ranges,
    descending: plan.descending,
    selector: run.selector,
    covering: (plan.covering && direct) || keysFirst,
    ...(keysFirst ? { keysOnly: true } : {}),
    limit: run.skip + run.limit,
    // Each range's share of the answer, with a margin: the merge pulls more where needed.
    firstSlice: Math.ceil(((run.skip + run.limit) / db.ranges.length) * 1.25) + 2,
    conflicts: run.conflicts,
    update: run.update,
    ...(run.fields && run.fields.length > 0 && direct ? { fields: run.fields } : {}),
    ...(after ? { after } : {}),
  };
  const stats: FindStats[] = db.ranges.map(() => ({ stats: true, keysExamined: 0, docsExamined: 0 }));
  const byId = plan.index.type === 'special';
  const cursors = db.ranges.map((range, i) => rowsOf(firstLiveCursor(range.copies, (copy) => copy.findRows(request)), byId, (s) => (stats[i] = s)));
  let last: Keyed | undefined;
  const compare = byId ? (a: Keyed, b: Keyed) => compareRaw(a.id, b.id) : (a: Keyed, b: Keyed) => collate(a.key, b.key) || compareRaw(a.id, b.id);
  if (direct) {
    await mergeCursors(cursors, compare, { descending: plan.descending, skip: run.skip, limit: run.limit }, async (rows) => {
      last = rows[rows.length - 1];
      outcome.resultsReturned += rows.length;
      await onDocs(await shown(db, rows.map((r) => r.doc)));
    });
  } else {
    const reread = rereader(db, run);
    let skip = run.skip;
    try {
      await mergeCursors(cursors, compare, { descending: plan.descending, skip: 0, limit: Number.MAX_SAFE_INTEGER }, async (rows) => {
        // Keys first: rows matched on their index keys, so read only as many as still wanted.
        const wanted = keysFirst ? rows.slice(0, skip + run.limit - outcome.resultsReturned) : rows;
        if (quorum) outcome.quorumDocsExamined += wanted.length;
        else outcome.docsExamined += wanted.length;
        const kept = await reread(wanted);
        const from = Math.min(skip, kept.length);
        skip -= from;
        const take = kept.slice(from, from + run.limit - outcome.resultsReturned);
        if (take.length > 0) {
          last = take[take.length - 1];
          outcome.resultsReturned += take.length;
          await onDocs(await shown(db, take.map((r) => r.doc)));
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

/** Documents as a reader sees them: attachment stubs without their storage encoding, as on a GET. */
async function shown(db: DbHandle, docs: string[]): Promise<string[]> {
  if (!docs.some((d) => d.includes('"_attachments"'))) return docs;
  return Promise.all(docs.map((d) => renderRowDoc(db, d, { attachments: false, attEncodingInfo: false })));
}

/** Thrown through the merge to end it once the limit is reached. */
const enough = Symbol('limit reached');

/**
 * Rows read again: each document's winner (from `r` copies that agree on it when `r` is
 * above 1, else from one live copy of its range), kept when it still matches the
 * selector, then projected.
 */
function rereader(db: DbHandle, run: FindRun): (rows: Keyed[]) => Promise<Keyed[]> {
  const matches = compileSelector(run.selector);
  const paths = run.fields && run.fields.length > 0 ? parseFields(run.fields) : undefined;
  return async (rows) => {
    const docs = await readWinners(db, rows, run);
    const kept: Keyed[] = [];
    rows.forEach((row, i) => {
      const text = docs[i];
      if (text === undefined) return;
      const doc = JSON.parse(text) as Record<string, unknown>;
      if (matches(doc)) kept.push({ ...row, doc: paths ? JSON.stringify(project(doc, paths)) : text });
    });
    return kept;
  };
}

/** The winning documents of rows, rendered (undefined for one deleted or gone meanwhile). */
async function readWinners(db: DbHandle, rows: Keyed[], run: FindRun): Promise<(string | undefined)[]> {
  const out: (string | undefined)[] = rows.map(() => undefined);
  const ids = rows.map((r) => r.id);
  const render = (info: DocInfo, body: string) => renderRevision(db, info, info.winner, body, { ...plainRender, conflicts: run.conflicts });
  if (run.r > 1) {
    const infos = await readDocInfos(db, ids, { r: run.r, timeoutMs: run.timeoutMs });
    return Promise.all(
      rows.map(async (row, i) => {
        const info = infos[i];
        if (!info || info.winner.deleted) return undefined;
        // The copy sent the revision the quorum agrees on (and no _conflicts to merge): no second read.
        if (!run.conflicts && row.doc !== '' && (JSON.parse(row.doc) as { _rev?: unknown })._rev === info.winner.rev) return row.doc;
        const body = await readBody(db, row.id, info.winner.rev);
        return body === undefined ? undefined : render(info, body);
      }),
    );
  }
  // One live copy per range: the ids of each range in one call.
  const byRange = new Map<number, number[]>();
  ids.forEach((id, i) => {
    const range = rangeFor(db, id).index;
    const positions = byRange.get(range);
    if (positions) positions.push(i);
    else byRange.set(range, [i]);
  });
  await Promise.all(
    [...byRange].map(async ([rangeIndex, positions]) => {
      const range = db.ranges[rangeIndex]!;
      const docs = await firstLiveState(range.copies, (copy) => copy.winners(positions.map((i) => ids[i]!), run.conflicts));
      positions.forEach((p, j) => (out[p] = docs[j] ?? undefined));
    }),
  );
  return out;
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
