/**
 * The one place where an error becomes an HTTP status and a CouchDB error body.
 * Operating errors map by kind; anything else is a bug: 500 unknown_error, logged
 * with its stack by the caller.
 */
import { DivanError, ErrorKind, MethodNotAllowedError, UnavailableError } from '../../errors';

const statusByKind: Readonly<Record<ErrorKind, number>> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  not_acceptable: 406,
  conflict: 409,
  file_exists: 412,
  precondition_failed: 412,
  too_large: 413,
  bad_content_type: 415,
  range_not_satisfiable: 416,
  internal: 500,
  not_implemented: 501,
  unavailable: 503,
  timeout: 500,
};

export interface MappedError {
  status: number;
  body: { error: string; reason: string };
  headers: Record<string, string>;
  /** True for errors that are bugs and deserve a stack in the log. */
  unexpected: boolean;
}

export function mapError(err: unknown): MappedError {
  if (err instanceof DivanError) {
    const headers: Record<string, string> = {};
    if (err instanceof MethodNotAllowedError) headers.Allow = err.allow.join(',');
    if (err instanceof UnavailableError && err.retryAfterSec !== undefined) headers['Retry-After'] = String(err.retryAfterSec);
    return { status: statusByKind[err.kind], body: { error: err.token, reason: err.reason }, headers, unexpected: false };
  }
  const reason = err instanceof Error ? err.message : String(err);
  return { status: 500, body: { error: 'unknown_error', reason }, headers: {}, unexpected: true };
}
