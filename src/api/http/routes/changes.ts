/**
 * `_changes` over HTTP: feeds normal, longpoll, continuous and eventsource; GET and
 * POST (filter bodies); heartbeat and timeout; stops when the client goes away.
 * Rows are written as they are read: nothing buffers the feed.
 */
import { BadRequestError } from '../../../errors';
import {
  ChangeEvent,
  ChangesRequest,
  JsChangesFilter,
  decodeSince,
  encodeSeq,
  pendingAfter,
  readChanges,
  SeqVector,
  watchUpdates,
} from '../../coordinator/changes';
import type { DbHandle } from '../../coordinator/shard-client';
import { renderRowDoc } from '../../coordinator/doc-open';
import type { ChangesFilter } from '../../../shard/types';
import { compileChangesFilter } from '../../coordinator/changes-filter';
import type { Ctx } from '../context';
import { readJsonObjectCapped } from '../json-scan';
import { allow, openDb } from './common';

type Feed = 'normal' | 'longpoll' | 'continuous' | 'eventsource';

export async function changes(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'POST']);
  const db = await openDb(ctx, dbName);
  // `doc_ids` (or a selector's members) counted on the raw bytes, before parsing.
  const tooMany = () => new BadRequestError(`At most ${ctx.limits.keysMax} doc_ids`);
  const body = ctx.method === 'POST' ? await readJsonObjectCapped(ctx, { depth: 2, max: ctx.limits.keysMax, tooMany }) : {};
  const feedParam = ctx.qString('feed') ?? 'normal';
  const feed = (feedParam === 'live' ? 'continuous' : feedParam) as Feed; // `live`: CouchDB's alias
  if (!['normal', 'longpoll', 'continuous', 'eventsource'].includes(feed)) {
    throw new BadRequestError('Supported `feed` types: normal, continuous, live, longpoll, eventsource', 'bad_request');
  }
  rowDocOptions(ctx); // a bad attachments/att_encoding_info value is a 400 before the feed starts
  const heartbeatMs = heartbeat(ctx);
  // Clamped as CouchDB clamps it (to its changes_timeout), which also keeps it within
  // what setTimeout can wait: beyond 2^31-1 ms it fires at once, and a feed would spin.
  const timeoutMs = Math.min(ctx.qInt('timeout', ctx.limits.changesTimeoutMs), ctx.limits.changesTimeoutMsMax);
  // Last: a design document filter comes back compiled, released when the feed is over.
  const request = await parseRequest(ctx, db, body);

  try {
    if (feed === 'normal' || feed === 'longpoll') return await normalFeed(ctx, db, request, feed, heartbeatMs, timeoutMs);
    return await streamingFeed(ctx, new LiveDb(ctx, db), request, feed, heartbeatMs, timeoutMs);
  } finally {
    if (request.js) request.js.pool.release(request.js.ddoc);
  }
}

/**
 * A live feed's view of its database, kept current: when the catalog gives the
 * database a new handle (copies moved by a rebalance, members changed) the feed reads
 * and watches the new copies from its next pass, so it never reads a copy that was
 * let go. Each refresh subscribes before the pass reads, so no update falls between.
 */
class LiveDb {
  watcher: ReturnType<typeof watchUpdates>;

  constructor(
    private readonly ctx: Ctx,
    public db: DbHandle,
  ) {
    this.watcher = watchUpdates(db);
  }

  /** False when the database was deleted (or made again): the feed ends. */
  async refresh(): Promise<boolean> {
    const fresh = await this.ctx.services.directory.open(this.db.name);
    if (!fresh || fresh.uuid !== this.db.uuid) return false;
    if (fresh !== this.db) {
      this.watcher.stop();
      this.db = fresh;
      this.watcher = watchUpdates(fresh);
    }
    return true;
  }

  stop(): void {
    this.watcher.stop();
  }
}

/** `heartbeat`: ms, or `true` for the default timeout; clamped to changesTimeoutMsMax as CouchDB clamps it. */
function heartbeat(ctx: Ctx): number | undefined {
  const raw = ctx.qString('heartbeat');
  if (raw === undefined) return undefined;
  if (raw === 'true') return ctx.limits.changesTimeoutMs;
  if (!/^-?[0-9]+$/.test(raw.trim())) {
    throw new BadRequestError('Invalid heartbeat value. Expecting a positive integer value (in milliseconds).', 'bad_request');
  }
  const ms = Number(raw);
  if (!(ms > 0)) throw new BadRequestError('The heartbeat value should be a positive integer (in milliseconds).', 'bad_request');
  return Math.min(Math.max(ms, 100), ctx.limits.changesTimeoutMsMax);
}

/** CouchDB's `limit` when a request sets none: seq_interval counts down from it. */
const COUCH_DEFAULT_LIMIT = 1e15;

function seqInterval(ctx: Ctx): number {
  const raw = ctx.qString('seq_interval');
  if (raw === undefined) return 1;
  const value = Number(raw);
  if (!/^[0-9]+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < 1) {
    throw new BadRequestError('invalid_seq_interval', 'bad_request');
  }
  return value;
}

async function parseRequest(ctx: Ctx, db: DbHandle, body: Record<string, unknown>): Promise<ChangesRequest> {
  const sinceParam = ctx.qString('since');
  const since = sinceParam === undefined ? (body.since as unknown) : sinceParam === 'now' ? 'now' : sinceParam;
  const descending = ctx.qBool('descending', false);
  const limit = ctx.query.has('limit') ? ctx.qInt('limit', 0) : ctx.limits.rowsMax;
  const style = ctx.qString('style') ?? 'main_only';
  if (style !== 'main_only' && style !== 'all_docs') throw new BadRequestError('Supported `style` values: main_only, all_docs', 'bad_request');
  const request: ChangesRequest = {
    since: await decodeSince(db, since),
    descending,
    limit: limit === 0 ? 1 : limit,
    allLeaves: style === 'all_docs',
    includeDocs: ctx.qBool('include_docs', false),
    conflicts: ctx.qBool('conflicts', false),
    filter: { kind: 'none' },
    seqInterval: seqInterval(ctx),
    seqCountdown: ctx.query.has('limit') ? limit : COUCH_DEFAULT_LIMIT,
  };
  // Last: a compiled filter must be released by the caller once the feed is over.
  const filter = await parseFilter(ctx, db, body);
  if ('js' in filter) request.js = { ...filter.js, onLog: (lines) => ctx.services.log.info({ db: db.name, filter: ctx.qString('filter'), lines }, '_changes filter log') };
  else request.filter = filter;
  return request;
}

/** The `filter` parameter and its companions, compiled by the coordinator (changes-filter.ts). */
function parseFilter(ctx: Ctx, db: DbHandle, body: Record<string, unknown>): Promise<ChangesFilter | { js: JsChangesFilter }> {
  return compileChangesFilter(db, {
    filter: ctx.qString('filter'),
    docIds: ctx.qJson('doc_ids') ?? body.doc_ids,
    selector: body.selector,
    view: ctx.qString('view'),
    isPost: ctx.method === 'POST',
    keysMax: ctx.limits.keysMax,
    timeoutMs: ctx.limits.quorumTimeoutMs,
    js: ctx.services.js,
    request: () => filterRequest(ctx, db, body),
  });
}

/**
 * CouchDB's request object as filter functions see it: `info` (`db_name`), `id` null,
 * `method`, `path` segments, `raw_path`, `query` (every parameter, the last value of a
 * repeated one), `headers` (without Authorization and Cookie: credentials are not
 * handed to user code), `body` (the POST body as JSON text, or "undefined" as
 * CouchDB sends it for GET), `peer`, `form`, `cookie` (empty), `userCtx` and `secObj`.
 */
function filterRequest(ctx: Ctx, db: DbHandle, body: Record<string, unknown>): unknown {
  const query: Record<string, string> = Object.create(null);
  for (const [key, value] of ctx.query) query[key] = value;
  const headers: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(ctx.req.headers)) {
    if (name === 'authorization' || name === 'cookie' || value === undefined) continue;
    headers[name.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase())] = Array.isArray(value) ? value.join(', ') : value;
  }
  return {
    info: { db_name: db.name },
    id: null,
    uuid: null,
    method: ctx.method,
    path: ctx.segments,
    requested_path: ctx.segments,
    raw_path: ctx.req.url ?? '',
    query,
    headers,
    body: ctx.method === 'POST' ? JSON.stringify(body) : 'undefined',
    peer: ctx.req.socket.remoteAddress ?? null,
    form: {},
    cookie: {},
    userCtx: { db: db.name, name: ctx.user.name, roles: ctx.user.roles },
    secObj: db.security,
  };
}

function rowDocOptions(ctx: Ctx): { attachments: boolean; attEncodingInfo: boolean } {
  return { attachments: ctx.qBool('attachments', false), attEncodingInfo: ctx.qBool('att_encoding_info', false) };
}

/**
 * Writes a row after re-rendering its doc when it has attachments (`attachments=true`
 * inlines their data, one row at a time so a feed never holds a batch of them).
 */
function withRowDoc(ctx: Ctx, db: DbHandle, event: ChangeEvent, write: () => Promise<void> | undefined): Promise<void> | undefined {
  const doc = event.row.doc;
  if (doc === undefined || !doc.includes('"_attachments"')) return write();
  return renderRowDoc(db, doc, rowDocOptions(ctx)).then((rendered) => {
    event.row.doc = rendered;
    return write();
  });
}

function rowJson(event: ChangeEvent): string {
  const row = event.row;
  let out = '{"seq":' + (event.seq === null ? 'null' : '"' + event.seq + '"') + ',"id":' + row.idJson + ',"changes":[';
  for (let i = 0; i < row.changes.length; i++) out += (i ? ',' : '') + '{"rev":"' + row.changes[i] + '"}';
  out += ']';
  if (row.deleted) out += ',"deleted":true';
  if (row.doc !== undefined) out += ',"doc":' + row.doc;
  return out + '}';
}

async function normalFeed(
  ctx: Ctx,
  initial: DbHandle,
  request: ChangesRequest,
  feed: 'normal' | 'longpoll',
  heartbeatMs: number | undefined,
  timeoutMs: number,
): Promise<void> {
  ctx.startStream(200);
  const out = ctx.chunker();
  out.add('{"results":[\n');
  let first = true;
  let db = initial;
  const emit = (event: ChangeEvent) =>
    withRowDoc(ctx, db, event, () => {
      const chunk = (first ? '' : ',\n') + rowJson(event);
      first = false;
      return out.add(chunk);
    });
  const live = feed === 'longpoll' ? new LiveDb(ctx, db) : undefined;
  let position: SeqVector = request.since;
  try {
    let pass = await readChanges(db, request, request.limit, emit, () => ctx.signal.aborted);
    position = pass.position;
    if (live && pass.count === 0 && !request.descending) {
      // As CouchDB when it starts waiting with nothing sent: a newline, so the status,
      // headers and the opening of the object reach the client now.
      await out.add('\n');
      await out.flush();
      const deadline = Date.now() + (heartbeatMs !== undefined ? Number.MAX_SAFE_INTEGER / 2 : timeoutMs);
      while (pass.count === 0 && !ctx.signal.aborted && Date.now() < deadline) {
        await live.watcher.wait(Math.min(heartbeatMs ?? timeoutMs, deadline - Date.now()), ctx.signal);
        if (!(await live.refresh())) break;
        db = live.db;
        pass = await readChanges(db, { ...request, since: position }, request.limit, emit, () => ctx.signal.aborted);
        position = pass.position;
        if (pass.count === 0 && heartbeatMs !== undefined) await out.add('\n');
        await out.flush();
      }
    }
  } finally {
    live?.stop();
  }
  await out.flush();
  ctx.end('\n],\n"last_seq":"' + encodeSeq(db, position) + '","pending":' + (await pendingAfter(db, position)) + '}\n');
}

async function streamingFeed(
  ctx: Ctx,
  live: LiveDb,
  request: ChangesRequest,
  feed: 'continuous' | 'eventsource',
  heartbeatMs: number | undefined,
  timeoutMs: number,
): Promise<void> {
  const eventsource = feed === 'eventsource';
  ctx.startStream(200, eventsource ? { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' } : {});
  // The status and headers go out now, not with the first row: many clients write only
  // once the feed is open, and would wait for each other forever.
  ctx.res.flushHeaders();
  const out = ctx.chunker();
  const emit = (event: ChangeEvent) =>
    withRowDoc(ctx, live.db, event, () =>
      out.add(eventsource ? 'data: ' + rowJson(event) + '\nid: ' + (event.seq ?? '') + '\n\n' : rowJson(event) + '\n'),
    );
  let position = request.since;
  let sent = 0;
  let wroteAny = false;
  let lastActivity = Date.now();
  try {
    while (!ctx.signal.aborted && sent < request.limit) {
      if (!(await live.refresh())) break;
      const pass = await readChanges(
        live.db,
        { ...request, since: position, seqCountdown: request.seqCountdown! - sent },
        request.limit - sent,
        emit,
        () => ctx.signal.aborted,
      );
      position = pass.position;
      sent += pass.count;
      // As CouchDB when it first waits with nothing sent: a newline (the feed is alive).
      if (!wroteAny && pass.count === 0 && !request.descending) await out.add('\n');
      wroteAny = true;
      await out.flush();
      if (pass.count > 0) lastActivity = Date.now();
      if (sent >= request.limit || request.descending) break;
      const idleMs = Date.now() - lastActivity;
      if (heartbeatMs === undefined && idleMs >= timeoutMs) break;
      await live.watcher.wait(heartbeatMs ?? timeoutMs - idleMs, ctx.signal);
      if (heartbeatMs !== undefined && Date.now() - lastActivity >= heartbeatMs) {
        await ctx.write(eventsource ? 'event: heartbeat\ndata: \n\n' : '\n');
        lastActivity = Date.now();
      }
    }
  } finally {
    live.stop();
  }
  if (!eventsource) ctx.end('{"last_seq":"' + encodeSeq(live.db, position) + '","pending":' + (await pendingAfter(live.db, position)) + '}\n');
  else ctx.end();
}
