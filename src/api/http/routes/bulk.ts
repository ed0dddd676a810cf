/**
 * Batch resources: `_bulk_docs`, `_bulk_get`, `_revs_diff`, `_missing_revs`.
 */
import { randomBytes } from 'node:crypto';
import { BadRequestError, ConflictError, DivanError } from '../../../errors';
import { updateDocs } from '../../coordinator/doc-update';
import { openRevsMany, OpenRevsItem } from '../../coordinator/doc-open';
import { readDocInfos } from '../../coordinator/doc-infos';
import { putLocal } from '../../coordinator/local-docs';
import { revsDiff } from '../../coordinator/revs-diff';
import type { DbHandle } from '../../coordinator/shard-client';
import { isPlainObject, parseJsonBody, type Ctx } from '../context';
import { parseJsonElementsFast } from '../../../json';
import { arrayElementSpans, objectMemberSpans, readJsonObjectCapped, startsWithObject, type Span } from '../json-scan';
import { checkRev, compressAttachments, parseDoc, ParsedDoc, parseLocalDoc, ParsedLocalDoc, validateDocId } from '../doc-input';
import { allow, openDb } from './common';
import { renderOptions } from './doc';

export async function bulkDocs(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['POST']);
  const db = await openDb(ctx, dbName);
  ctx.requireJsonType();
  const body = await readBulkDocsBody(ctx);
  if (!Array.isArray(body.docs)) throw new BadRequestError('POST body must include `docs` parameter.');
  if (body.docs.length > ctx.limits.bulkDocsMax) {
    throw new BadRequestError(`At most ${ctx.limits.bulkDocsMax} documents per _bulk_docs request`, 'too_many_docs');
  }
  const newEdits = body.new_edits === undefined ? true : body.new_edits === true;
  if (body.new_edits !== undefined && typeof body.new_edits !== 'boolean') throw new BadRequestError('new_edits must be a boolean');
  // `_local/` documents go to the local-doc store, as CouchDB does; the rest are edits.
  // Every document is parsed before anything is written (a bad one fails the request),
  // yielding to the event loop every `docsPerYield` documents.
  const isLocal = (doc: unknown) => isPlainObject(doc) && typeof doc._id === 'string' && doc._id.startsWith('_local/') && doc._id.length > 7;
  const locals = new Map<number, { id: string; doc: ParsedLocalDoc }>();
  const parsed: ParsedDoc[] = [];
  for (let i = 0; i < body.docs.length; i++) {
    if (i > 0 && i % docsPerYield === 0) await new Promise((resolve) => setImmediate(resolve));
    const doc: unknown = body.docs[i];
    if (isLocal(doc)) {
      const json = doc as Record<string, unknown>;
      locals.set(i, { id: json._id as string, doc: parseLocalDoc(json, ctx.limits) });
    } else parsed.push(parseDoc(doc, { newEdits, limits: ctx.limits, generateId: () => randomBytes(16).toString('hex') }));
  }
  const compression = { compression: ctx.services.attachmentCompression, attachmentBytesMax: ctx.limits.attachmentBytesMax };
  for (const p of parsed) await compressAttachments(p, compression);
  const w = ctx.qInt('w', 0) || undefined;
  const outcomes = await updateDocs(
    db,
    parsed.map((p) => p.edit),
    { timeoutMs: ctx.limits.quorumTimeoutMs, validate: ctx.validation, ...(w ? { w } : {}) },
  );
  const rows: unknown[] = [];
  let accepted = false;
  let at = 0;
  for (let i = 0; i < body.docs.length; i++) {
    const local = locals.get(i);
    if (local) {
      // As for other documents, new_edits=false reports only failures.
      const row = await writeLocal(db, local.id, local.doc);
      if (newEdits || row.error !== undefined) rows.push(row);
      continue;
    }
    const outcome = outcomes[at++]!;
    if (outcome.kind === 'error') rows.push(errorRow(outcome.id, outcome.error, outcome.rev));
    else {
      accepted ||= outcome.kind === 'accepted';
      if (newEdits) rows.push({ ok: true, id: outcome.id, rev: outcome.rev });
    }
  }
  ctx.send(accepted ? 202 : 201, rows);
}

/** One local doc of a `_bulk_docs` request; its failure is its row's, as for other documents. */
async function writeLocal(db: DbHandle, id: string, doc: ParsedLocalDoc): Promise<Record<string, unknown>> {
  try {
    if (doc.body === null && doc.rev === undefined) throw new ConflictError();
    return { ok: true, id, rev: await putLocal(db, id, doc.body, doc.rev) };
  } catch (err) {
    if (!(err instanceof DivanError)) throw err;
    return errorRow(id, err);
  }
}

/** Body bytes parsed between yields to the event loop. */
const parseBytesPerYield = 1024 * 1024;

/**
 * The `_bulk_docs` body, its `docs` parsed in runs of about a megabyte, yielding
 * between runs (JSON.parse of a 55 MB body at once held the event loop for most of a
 * second), and refused with `too_many_docs` before any of them is parsed.
 */
export async function readBulkDocsBody(ctx: Ctx): Promise<Record<string, unknown>> {
  const raw = await ctx.readBody();
  const depthMax = ctx.limits.jsonDepthMax;
  if (!startsWithObject(raw)) {
    parseJsonBody(raw, depthMax); // the parser's own error for malformed bodies
    throw new BadRequestError('Request body must be a JSON object');
  }
  const body: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [key, span] of objectMemberSpans(raw)) {
    if (key !== 'docs' || raw[span[0]] !== 0x5b) {
      body[key] = parseJsonBody(raw.subarray(span[0], span[1]), depthMax - 1, true);
      continue;
    }
    const spans = arrayElementSpans(raw, span);
    if (spans.length > ctx.limits.bulkDocsMax) {
      throw new BadRequestError(`At most ${ctx.limits.bulkDocsMax} documents per _bulk_docs request`, 'too_many_docs');
    }
    const docs: unknown[] = [];
    for (let first = 0; first < spans.length; ) {
      if (first > 0) await new Promise((resolve) => setImmediate(resolve));
      let last = first;
      while (last + 1 < spans.length && spans[last + 1]![1] - spans[first]![0] <= parseBytesPerYield) last++;
      parseDocsRun(raw, spans.slice(first, last + 1), depthMax - 2, docs);
      first = last + 1;
    }
    body[key] = docs;
  }
  return body;
}

/**
 * The docs spanning `spans` (consecutive elements of one array), appended to `docs`:
 * in one parse when none needs a closer look, else one by one, which gives the exact
 * error of the first bad document (exact: documents keep big integers).
 */
function parseDocsRun(raw: Buffer, spans: Span[], depthMax: number, docs: unknown[]): void {
  const fast = parseJsonElementsFast(raw.subarray(spans[0]![0], spans[spans.length - 1]![1]), depthMax);
  if (fast !== undefined && fast.length === spans.length) {
    for (const doc of fast) docs.push(doc);
    return;
  }
  for (const [start, stop] of spans) docs.push(parseJsonBody(raw.subarray(start, stop), depthMax, true));
}

/** Docs validated between yields to the event loop: a big `_bulk_docs` must not hold it for its whole body. */
const docsPerYield = 500;

function bulkGetError(id: string, rev: string, error: string, reason: string): string {
  return JSON.stringify({ error: { id, rev, error, reason } });
}

function errorRow(id: string, error: DivanError, rev?: string): Record<string, unknown> {
  return { id, ...(rev ? { rev } : {}), error: error.token, reason: error.reason };
}

export async function bulkGet(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['POST']);
  const db = await openDb(ctx, dbName);
  const tooMany = () => new BadRequestError(`At most ${ctx.limits.bulkDocsMax} documents per _bulk_get request`);
  const body = await readJsonObjectCapped(ctx, { depth: 2, max: ctx.limits.bulkDocsMax, tooMany });
  if (!Array.isArray(body.docs)) throw new BadRequestError('Missing JSON list of `docs`.');
  if (body.docs.length > ctx.limits.bulkDocsMax) throw tooMany();
  const options = renderOptions(ctx);
  const latest = ctx.qBool('latest', false);
  const requests = body.docs.map((item) => {
    if (!isPlainObject(item) || typeof item.id !== 'string') throw new BadRequestError('Each entry of docs needs an id');
    return item;
  });
  const infos = await readDocInfos(db, requests.map((r) => r.id as string), { timeoutMs: ctx.limits.quorumTimeoutMs });
  // Decide each entry first (errors need no read), then read every body in one pass.
  type Entry = { id: string; errors: string[]; item?: OpenRevsItem };
  const entries: Entry[] = requests.map((item, i) => {
    const id = item.id as string;
    const info = infos[i];
    const itemOptions = { ...options };
    // A per-document atts_since trims inline data; it does not ask for it (CouchDB's
    // replicator sends `attachments=false` with atts_since and expects stubs).
    if (Array.isArray(item.atts_since) && options.attachments) {
      itemOptions.attsSince = (item.atts_since as unknown[]).filter((r): r is string => typeof r === 'string');
      itemOptions.attachments = true;
    }
    try {
      validateDocId(id, ctx.limits);
      const revs = item.rev === undefined ? undefined : [checkRev(String(item.rev))];
      if (!info && revs === undefined) return { id, errors: [bulkGetError(id, 'undefined', 'not_found', 'missing')] };
      // No rev: every leaf, deleted ones included, as open_revs=all (replicators find conflicts this way).
      return { id, errors: [], item: { info, revs: revs ?? 'all', latest, options: itemOptions } };
    } catch (err) {
      if (!(err instanceof DivanError)) throw err;
      return { id, errors: [bulkGetError(id, String(item.rev ?? 'undefined'), err.token, err.reason)] };
    }
  });
  const opened = await openRevsMany(db, entries.flatMap((e) => (e.item ? [e.item] : [])));
  let at = 0;
  const results: string[] = entries.map((entry) => {
    const docs = entry.item
      ? opened[at++]!.map((r) => (r.kind === 'ok' ? '{"ok":' + r.doc + '}' : bulkGetError(entry.id, r.rev, 'not_found', 'missing')))
      : entry.errors;
    return '{"id":' + JSON.stringify(entry.id) + ',"docs":[' + docs.join(',') + ']}';
  });
  ctx.send(200, '{"results":[' + results.join(',') + ']}');
}

export async function revsDiffRoute(ctx: Ctx, dbName: string, style: 'revs_diff' | 'missing_revs'): Promise<void> {
  allow(ctx, ['POST']);
  const db = await openDb(ctx, dbName);
  // Ids and revisions are counted on the raw bytes: parsing millions of them is itself the cost.
  const tooMany = () => new BadRequestError(`At most ${ctx.limits.keysMax} document ids per _revs_diff or _missing_revs request`);
  const tooManyRevs = () => new BadRequestError(`At most ${ctx.limits.revsDiffRevsMax} revisions per _revs_diff or _missing_revs request`);
  const body = await readJsonObjectCapped(
    ctx,
    { depth: 1, max: ctx.limits.keysMax, tooMany },
    { depth: 2, max: ctx.limits.revsDiffRevsMax, tooMany: tooManyRevs },
  );
  const ids = Object.keys(body);
  if (ids.length > ctx.limits.keysMax) throw tooMany();
  const request = new Map<string, string[]>();
  let total = 0;
  for (const id of ids) {
    const revs = body[id];
    if (!Array.isArray(revs) || revs.some((r) => typeof r !== 'string')) {
      throw new BadRequestError(`Revisions of ${JSON.stringify(id)} must be a list of strings`);
    }
    total += revs.length;
    request.set(id, (revs as string[]).map(checkRev));
  }
  if (total > ctx.limits.revsDiffRevsMax) throw tooManyRevs();
  const diff = await revsDiff(db, request, { timeoutMs: ctx.limits.quorumTimeoutMs });
  // Null-prototype objects: ids are user input, and `out['__proto__'] = …` on a plain
  // object would set its prototype instead of adding the member.
  if (style === 'revs_diff') {
    const out: Record<string, unknown> = Object.create(null);
    for (const [id, entry] of diff) {
      out[id] = entry.possibleAncestors.length > 0 ? { missing: entry.missing, possible_ancestors: entry.possibleAncestors } : { missing: entry.missing };
    }
    return ctx.send(200, out);
  }
  const missing: Record<string, string[]> = Object.create(null);
  for (const [id, entry] of diff) missing[id] = entry.missing;
  ctx.send(200, { missing_revs: missing });
}
