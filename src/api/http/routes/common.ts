/**
 * Small helpers every route uses: method checks, opening a database, the standard
 * write answers and CouchDB's range-query parameters.
 */
import { BadRequestError, MethodNotAllowedError, NotFoundError } from '../../../errors';
import type { DbHandle } from '../../coordinator/shard-client';
import type { DocOutcome } from '../../coordinator/doc-update';
import type { Ctx } from '../context';

/** Refuse any method not in `methods` with 405 and an Allow header. */
export function allow(ctx: Ctx, methods: readonly string[]): void {
  if (!methods.includes(ctx.method)) throw new MethodNotAllowedError(methods);
}

export async function openDb(ctx: Ctx, name: string): Promise<DbHandle> {
  const db = await ctx.services.directory.open(name);
  if (!db) throw new NotFoundError('Database does not exist.');
  return db;
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
  const pick = (...names: string[]): string | undefined => {
    for (const name of names) {
      const value = Object.hasOwn(body, name) ? body[name] : ctx.qJson(name);
      if (value === undefined) continue;
      if (typeof value !== 'string') throw new BadRequestError(`${name} must be a string`, 'query_parse_error');
      return value;
    }
    return undefined;
  };
  const key = pick('key');
  const startKeyOnly = pick('startkey', 'start_key');
  const endKeyOnly = pick('endkey', 'end_key');
  const startKey = startKeyOnly ?? pick('startkey_docid', 'start_key_doc_id') ?? key;
  const endKey = endKeyOnly ?? pick('endkey_docid', 'end_key_doc_id') ?? key;
  const bool = (name: string, fallback: boolean) => (typeof body[name] === 'boolean' ? (body[name] as boolean) : ctx.qBool(name, fallback));
  const int = (name: string, fallback: number) => {
    const value = body[name];
    if (value === undefined) return ctx.qInt(name, fallback);
    if (!Number.isSafeInteger(value) || (value as number) < 0) throw new BadRequestError(`${name} must be a non-negative integer`, 'query_parse_error');
    return value as number;
  };
  const params: KeyRangeParams = {
    keyBounded: key !== undefined || startKeyOnly !== undefined || endKeyOnly !== undefined,
    inclusiveEnd: bool('inclusive_end', true),
    descending: bool('descending', false),
    limit: Math.min(int('limit', ctx.limits.rowsMax), ctx.limits.rowsMax),
    skip: int('skip', 0),
  };
  if (startKey !== undefined) params.startKey = startKey;
  if (endKey !== undefined) params.endKey = endKey;
  return params;
}
