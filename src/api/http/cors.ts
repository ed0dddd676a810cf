/**
 * CORS, as CouchDB's `[cors]` section does it: off unless origins are configured;
 * preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered before
 * authentication; actual responses to an allowed origin carry the allow and expose
 * headers browsers need (PouchDB in a browser reads ETag and X-Couch-Update-NewRev).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface CorsOptions {
  /** Allowed origins; `*` allows any. Empty: CORS off. */
  origins: readonly string[];
  /** Allow cookies and Authorization on cross-origin requests (never with `*`). */
  credentials: boolean;
  /** Preflight cache lifetime, seconds. */
  maxAgeSec: number;
}

const ALLOW_METHODS = 'GET, HEAD, POST, PUT, DELETE, COPY, OPTIONS';
const ALLOW_HEADERS = 'accept, authorization, content-type, origin, referer, x-csrf-token, if-match, if-none-match, destination, range';
const EXPOSE_HEADERS = 'content-type, cache-control, accept-ranges, etag, server, x-couch-request-id, x-couch-update-newrev, x-couchdb-body-time, location, content-range';

export class Cors {
  private readonly options: CorsOptions;
  private readonly any: boolean;

  constructor(options: CorsOptions) {
    this.options = options;
    this.any = options.origins.includes('*');
  }

  get enabled(): boolean {
    return this.options.origins.length > 0;
  }

  /**
   * Handles a preflight completely (returns true), or adds the headers an actual
   * cross-origin response needs (returns false).
   */
  apply(req: IncomingMessage, res: ServerResponse): boolean {
    const origin = req.headers.origin;
    if (!this.enabled || !origin) return false;
    const allowed = this.any || this.options.origins.includes(origin);
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!allowed) {
      if (!preflight) return false;
      res.writeHead(403, { 'Content-Length': 0 }).end();
      return true;
    }
    const allowOrigin = this.any && !this.options.credentials ? '*' : origin;
    res.setHeader('Access-Control-Allow-Origin', allowOrigin);
    if (allowOrigin !== '*') res.setHeader('Vary', 'Origin');
    if (this.options.credentials) res.setHeader('Access-Control-Allow-Credentials', 'true');
    if (!preflight) {
      res.setHeader('Access-Control-Expose-Headers', EXPOSE_HEADERS);
      return false;
    }
    res.writeHead(204, {
      'Access-Control-Allow-Methods': ALLOW_METHODS,
      'Access-Control-Allow-Headers': ALLOW_HEADERS,
      'Access-Control-Max-Age': String(this.options.maxAgeSec),
      'Content-Length': 0,
    });
    res.end();
    return true;
  }
}
