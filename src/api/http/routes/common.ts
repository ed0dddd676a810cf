/**
 * Small helpers every route uses: method checks, opening a database, the standard
 * write answers and CouchDB's range-query parameters.
 */
import { BadRequestError, MethodNotAllowedError, NotFoundError } from '../../../errors';
import type { DbHandle } from '../../coordinator/shard-client';
import type { DocOutcome } from '../../coordinator/doc-update';
import type { Ctx } from '../context';
import { AUTO_SYSTEM_DBS, openSystemDb } from '../../coordinator/db-admin';

/** Refuse any method not in `methods` with 405 and an Allow header. */
export function allow(ctx: Ctx, methods: readonly string[]): void {
  if (!methods.includes(ctx.method)) throw new MethodNotAllowedError(methods);
}

export async function openDb(ctx: Ctx, name: string): Promise<DbHandle> {
  const db = await ctx.services.directory.open(name);
  if (db) return db;
  // `_users` and `_replicator` always exist as clients see them (made on first use).
  if (AUTO_SYSTEM_DBS.has(name)) return openSystemDb(ctx.services.directory, name, ctx.services.node.n);
  throw new NotFoundError('Database does not exist.');
}

/** 201 when the quorum was met, 202 when fewer copies acknowledged; errors throw. */
export function sendWrite(ctx: Ctx, outcome: DocOutcome, extraHeaders: Record<string, string> = {}): void {
  if (outcome.kind === 'error') throw outcome.error;
  const status = outcome.kind === 'ok' ? 201 : 202;
  ctx.send(status, { ok: true, id: outcome.id, rev: outcome.rev }, { ETag: `"${outcome.rev}"`, ...extraHeaders });
}

export interface KeyRangeParams {
  startKey?: string;
  endKey?: string;
  /** `key`, `startkey` or `endkey` (or their aliases) was given: CouchDB refuses them with `keys`. */
  keyBounded: boolean;
  inclusiveEnd: boolean;
  descending: boolean;
  limit: number;
  skip: number;
}

/**
 * key, startkey/endkey (and their docid and snake_case aliases), inclusive_end, limit,
 * skip, descending. `key` is CouchDB's shorthand for startkey = endkey = key; an
 * explicit startkey or endkey beside it wins (CouchDB leaves that mix undefined).
 */
export function keyRangeParams(ctx: Ctx, body: Record<string, unknown> = {}): KeyRangeParams {
  // Keys are JSON in a query string (`startkey="a"`), doc-id bounds plain text (`startkey_docid=a`).
  const pick = (json: boolean, ...names: string[]): string | undefined => {
    for (const name of names) {
      const value = Object.hasOwn(body, name) ? body[name] : json ? ctx.qJson(name) : ctx.qString(name);
      if (value === undefined) continue;
      if (typeof value !== 'string') throw new BadRequestError(`${name} must be a string`, 'query_parse_error');
      return value;
    }
    return undefined;
  };
  const key = pick(true, 'key');
  const startKeyOnly = pick(true, 'startkey', 'start_key');
  const endKeyOnly = pick(true, 'endkey', 'end_key');
  const startKey = startKeyOnly ?? pick(false, 'startkey_docid', 'start_key_doc_id') ?? key;
  const endKey = endKeyOnly ?? pick(false, 'endkey_docid', 'end_key_doc_id') ?? key;
  const skip = intParam(ctx, body, 'skip');
  const params: KeyRangeParams = {
    keyBounded: key !== undefined || startKeyOnly !== undefined || endKeyOnly !== undefined,
    inclusiveEnd: boolParam(ctx, body, 'inclusive_end', true),
    descending: boolParam(ctx, body, 'descending', false),
    limit: rowLimit(intParam(ctx, body, 'limit'), ctx.limits.rowsMax),
    skip: skip ?? 0,
  };
  if (startKey !== undefined) params.startKey = startKey;
  if (endKey !== undefined) params.endKey = endKey;
  return params;
}

/** A parameter: the body's member when it has one (a JSON value), else the query string's text. */
export function paramValue(ctx: Ctx, body: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(body, name) ? body[name] : (ctx.query.get(name) ?? undefined);
}

/** A boolean parameter from the body or the query string (see parseBooleanParam). */
export function boolParam(ctx: Ctx, body: Record<string, unknown>, name: string, fallback: boolean): boolean {
  const value = paramValue(ctx, body, name);
  return value === undefined ? fallback : parseBooleanParam(value);
}

/** A non-negative integer parameter from the body or the query string, or undefined (see parseNonNegIntParam). */
export function intParam(ctx: Ctx, body: Record<string, unknown>, name: string): number | undefined {
  const value = paramValue(ctx, body, name);
  return value === undefined ? undefined : parseNonNegIntParam(value);
}

// ---- parameter values, as CouchDB's couch_mrview_http parses them ----------------------
// A value is either query-string text or a member of a JSON body (already decoded);
// both the `_all_docs` parameters above and the view parser (../view-params.ts) use these.

/** How CouchDB prints a refused value in a reason: text quoted, JSON values as JSON. */
export function showParam(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

/** `true` / `false` (any letter case, as text or JSON booleans); else 400 query_parse_error. */
export function parseBooleanParam(value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const lower = value.toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
  }
  throw new BadRequestError(`Invalid boolean parameter: ${showParam(value)}`, 'query_parse_error');
}

/**
 * A non-negative integer (`limit`, `skip`, `group_level`): decimal text with an
 * optional sign, or a JSON integer. Beyond 2^53 it is clamped to
 * Number.MAX_SAFE_INTEGER (CouchDB has bignums; no count here gets that far).
 */
export function parseNonNegIntParam(value: unknown): number {
  let n: number;
  if (typeof value === 'number' && Number.isInteger(value)) n = value;
  else if (typeof value === 'string' && /^[+-]?[0-9]+$/.test(value)) n = Number(value);
  else throw new BadRequestError(`Invalid value for integer: ${showParam(value)}`, 'query_parse_error');
  if (n < 0) throw new BadRequestError(`Invalid value for positive integer: ${showParam(value)}`, 'query_parse_error');
  return n === 0 ? 0 : Math.min(n, Number.MAX_SAFE_INTEGER); // "-0" is 0
}

/**
 * The rows a query returns at most: what it asked for, never more than `rowsMax`
 * (the operator's cap, `rowsMax` in src/node/config.ts); "all" (no `limit`) is
 * `rowsMax`, or Number.MAX_SAFE_INTEGER when there is no cap.
 */
export function rowLimit(requested: number | undefined, rowsMax: number | undefined): number {
  const cap = rowsMax ?? Number.MAX_SAFE_INTEGER;
  return requested === undefined ? cap : Math.min(requested, cap);
}
