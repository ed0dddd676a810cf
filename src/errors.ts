/**
 * The catalogue of operating errors: everything a request can fail with that is not
 * a bug. Each class carries CouchDB's error token (`error` in the JSON body) and a
 * human reason. No layer below src/api/http knows HTTP statuses: the HTTP layer maps
 * `kind` to a status in exactly one table (src/api/http/error-map.ts).
 *
 * Programmer errors are not here: they are failed assertions (`AssertionError`),
 * answered as 500 unknown_error and logged with a stack.
 */

export type ErrorKind =
  | 'bad_request'
  | 'not_found'
  | 'conflict'
  | 'file_exists'
  | 'precondition_failed'
  | 'unauthorized'
  | 'forbidden'
  | 'method_not_allowed'
  | 'too_large'
  | 'bad_content_type'
  | 'not_acceptable'
  | 'range_not_satisfiable'
  | 'not_implemented'
  | 'timeout'
  | 'unavailable'
  | 'internal';

export class DivanError extends Error {
  /** Discriminant for the HTTP error map. */
  readonly kind: ErrorKind;
  /** CouchDB's error token, e.g. `conflict`, `not_found`, `illegal_database_name`. */
  readonly token: string;
  /** Human-readable reason, sent to clients: never include secrets. */
  readonly reason: string;

  constructor(kind: ErrorKind, token: string, reason: string) {
    super(`${token}: ${reason}`);
    this.kind = kind;
    this.token = token;
    this.reason = reason;
  }
}

export class BadRequestError extends DivanError {
  constructor(reason: string, token = 'bad_request') {
    super('bad_request', token, reason);
  }
}

export class NotFoundError extends DivanError {
  constructor(reason = 'missing', token = 'not_found') {
    super('not_found', token, reason);
  }
}

export class ConflictError extends DivanError {
  constructor(reason = 'Document update conflict.') {
    super('conflict', 'conflict', reason);
  }
}

export class FileExistsError extends DivanError {
  constructor(reason = 'The database could not be created, the file already exists.') {
    super('file_exists', 'file_exists', reason);
  }
}

export class PreconditionFailedError extends DivanError {
  constructor(reason: string, token = 'precondition_failed') {
    super('precondition_failed', token, reason);
  }
}

export class UnauthorizedError extends DivanError {
  constructor(reason = 'You are not authorized to access this db.') {
    super('unauthorized', 'unauthorized', reason);
  }
}

export class ForbiddenError extends DivanError {
  constructor(reason: string) {
    super('forbidden', 'forbidden', reason);
  }
}

export class MethodNotAllowedError extends DivanError {
  /** Methods the resource does accept, for the `Allow` header. */
  readonly allow: readonly string[];
  constructor(allow: readonly string[]) {
    super('method_not_allowed', 'method_not_allowed', `Only ${allow.join(',')} allowed`);
    this.allow = allow;
  }
}

export class TooLargeError extends DivanError {
  constructor(reason: string, token = 'too_large') {
    super('too_large', token, reason);
  }
}

export class BadContentTypeError extends DivanError {
  constructor(reason = 'Content-Type must be application/json') {
    super('bad_content_type', 'bad_content_type', reason);
  }
}

export class NotImplementedError extends DivanError {
  constructor(reason: string) {
    super('not_implemented', 'not_implemented', reason);
  }
}

export class TimeoutError extends DivanError {
  constructor(reason: string) {
    super('timeout', 'timeout', reason);
  }
}

export class UnavailableError extends DivanError {
  /** Seconds after which a retry may succeed (`Retry-After`), when known. */
  readonly retryAfterSec: number | undefined;
  constructor(reason: string, token = 'unavailable', retryAfterSec?: number) {
    super('unavailable', token, reason);
    this.retryAfterSec = retryAfterSec;
  }
}

/** The client hung up before its request body ended: routine, nobody is left to answer. */
export class ClientGoneError extends BadRequestError {
  constructor() {
    super('The client closed the connection before the body ended');
  }
}

export class RangeNotSatisfiableError extends DivanError {
  constructor(reason = 'Requested range not satisfiable') {
    super('range_not_satisfiable', 'requested_range_not_satisfiable', reason);
  }
}

/** A peer node cannot be reached (connection refused, reset, or known dead). */
export class NodeDownError extends DivanError {
  readonly node: string;
  constructor(node: string, reason: string) {
    super('unavailable', 'nodedown', `${node}: ${reason}`);
    this.node = node;
  }
}

/** Mango selector or query errors: CouchDB answers 400 with these tokens. */
/** A Mango selector that does not parse: CouchDB's tokens (`invalid_operator`, `bad_arg`...). */
export class InvalidSelectorError extends BadRequestError {
  constructor(reason: string, token = 'invalid_selector') {
    super(reason, token);
  }
}

/** A design document's function or CommonJS module does not compile (CouchDB: 400 compilation_error). */
export class CompilationError extends BadRequestError {
  constructor(reason: string) {
    super(reason, 'compilation_error');
  }
}

/**
 * A call into the user-JavaScript sandbox failed as a whole: it ran past its deadline,
 * past its memory limit, its worker died, or the function threw where CouchDB fails
 * the request (reduce, filter, a validate_doc_update throwing something other than
 * `{forbidden}` / `{unauthorized}`). CouchDB answers 500 `os_process_error`.
 */
export class OsProcessError extends DivanError {
  /** What went wrong, for logs and metrics. */
  readonly failure: 'timeout' | 'memory' | 'crash' | 'exception';
  constructor(failure: 'timeout' | 'memory' | 'crash' | 'exception', reason: string) {
    super('internal', 'os_process_error', reason);
    this.failure = failure;
  }
}

/**
 * A built-in reduce (`_stats`, or a partial that is not what it should be) refused its
 * input as a whole. CouchDB answers 500 with the token it throws: `invalid_value` for
 * `_stats` input that is not numbers, arrays of numbers or stats objects. (`_sum`
 * does not throw: like CouchDB it returns an in-band `{"error":"builtin_reduce_error",
 * "reason","caused_by"}` object as the reduction; see src/shard/index/builtin-reduce.ts.)
 */
export class BuiltinReduceError extends DivanError {
  constructor(reason: string, token = 'invalid_value') {
    super('internal', token, reason);
  }
}
