/**
 * The HTTP front door: one `node:http` server, one pipeline per request — split the
 * path, authenticate (auth/authenticate.ts), authorize by the policy table
 * (auth/policy.ts), route, and turn any error into CouchDB's error body exactly once.
 * Streaming handlers stop when the client goes away (`ctx.signal`).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { ClientGoneError, ForbiddenError, UnauthorizedError } from '../../errors';
import { Ctx, Services, standardHeaders } from './context';
import { ConnectionGuard } from './connections';
import { Cors, CorsOptions } from './cors';
import { mapError } from './error-map';
import { route, splitPath } from './router';
import { authorize, needFor } from './auth/policy';
import type { Session } from './auth';
import { readSecurity, type SecurityObject } from '../coordinator/security';
import { AUTO_SYSTEM_DBS, openSystemDb } from '../coordinator/db-admin';

export interface HttpServerOptions {
  cors: CorsOptions;
  port: number;
  bindAddress: string;
  keepAliveTimeoutMs: number;
  connectionsMax: number;
  connectionsPerAddressMax: number;
  headersTimeoutMs: number;
  bodyIdleTimeoutMs: number;
  bodyBytesPerSecMin: number;
  /** Anonymous callers get 401 everywhere (CouchDB's require_valid_user); `except-up` spares `/_up`. */
  requireValidUser: 'off' | 'on' | 'except-up';
  /** `WWW-Authenticate` value sent with 401 answers; empty: none unless valid users are required (CouchDB's rule). */
  wwwAuthenticate: string;
  /** How a request authenticated (`handler` none: anonymous) and with what result (metrics). */
  onAuth?: (handler: string, result: 'ok' | 'failed' | 'locked') => void;
  /** A request the policy table refused, by the access it needed (metrics). */
  onRefused?: (need: string) => void;
  /** Called once per finished request (metrics). */
  onRequest?: (method: string, status: number, seconds: number) => void;
}

export class HttpServer {
  private readonly server: http.Server;
  private readonly services: Services;
  private readonly options: HttpServerOptions;
  private readonly cors: Cors;
  private readonly guard: ConnectionGuard;
  private readonly reqPrefix = randomBytes(3).toString('hex');
  private reqCounter = 0;
  private readonly parsedSecurity = new WeakMap<object, SecurityObject>();

  constructor(services: Services, options: HttpServerOptions) {
    this.services = services;
    this.options = options;
    this.cors = new Cors(options.cors);
    // No overall request timeout (bodies may be large, responses long feeds): slow
    // bodies and idle connections are the guard's, headers Node's headersTimeout.
    this.server = http.createServer(
      {
        keepAliveTimeout: options.keepAliveTimeoutMs,
        requestTimeout: 0,
        headersTimeout: options.headersTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, options.headersTimeoutMs),
      },
      (req, res) => {
        void this.handle(req, res);
      },
    );
    this.guard = new ConnectionGuard(options, services.log);
    this.server.on('connection', (socket: import('node:net').Socket) => this.guard.admit(socket));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.bindAddress, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.guard.close();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      // Long-lived feeds end when their sockets do.
      setTimeout(() => this.server.closeAllConnections(), 2000).unref();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (this.guard.isRefused(req.socket)) {
      res.destroy();
      return;
    }
    this.guard.track(req, res);
    const started = process.hrtime.bigint();
    const reqId = this.reqPrefix + (++this.reqCounter).toString(36);
    res.on('finish', () => {
      this.options.onRequest?.(req.method ?? 'GET', res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
    });
    if (this.cors.apply(req, res)) return;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let ctx: Ctx | undefined;
    try {
      const segments = splitPath(q < 0 ? url : url.slice(0, q));
      const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
      ctx = new Ctx({ req, res, segments, query, reqId, services: this.services });
      const session = await this.authenticate(req);
      ctx.user = session.user;
      ctx.authenticatedBy = session.method;
      if (session.renewCookie) res.setHeader('Set-Cookie', session.renewCookie);
      if (ctx.user.name === null && this.mustAuthenticate(ctx.method, segments)) throw new UnauthorizedError('Authentication required.');
      const decision = await authorize(ctx.method, segments, ctx.user, (db) => this.securityOf(db)).catch((err: unknown) => {
        this.options.onRefused?.(needFor(ctx!.method, segments));
        throw err;
      });
      ctx.dbAdmin = decision.dbAdmin;
      await route(ctx);
    } catch (err) {
      this.fail(req, res, reqId, err);
    }
  }

  private async authenticate(req: http.IncomingMessage): Promise<Session> {
    try {
      const session = await this.services.sessions.authenticate({
        authorization: req.headers.authorization,
        cookie: req.headers.cookie,
        header: (name) => {
          const value = req.headers[name];
          return Array.isArray(value) ? value[0] : value;
        },
        peer: req.socket.remoteAddress ?? '',
      });
      this.options.onAuth?.(session.method ?? 'none', 'ok');
      return session;
    } catch (err) {
      if (err instanceof UnauthorizedError || err instanceof ForbiddenError) {
        const handler = /^bearer /i.test(req.headers.authorization ?? '') ? 'jwt' : 'default';
        this.options.onAuth?.(handler, err instanceof ForbiddenError ? 'locked' : 'failed');
      }
      throw err;
    }
  }

  /** `require_valid_user`: every anonymous request is refused, but a login (`POST /_session`) and, if so configured, `/_up`. */
  private mustAuthenticate(method: string, segments: readonly string[]): boolean {
    const mode = this.options.requireValidUser;
    if (mode === 'off') return false;
    const only = segments.length === 1 ? segments[0] : undefined;
    if (only === '_session' && method === 'POST') return false;
    return !(mode === 'except-up' && only === '_up');
  }

  /** CouchDB's rules: a client's `X-CouchDB-WWW-Authenticate`, else the configured value, else a Basic realm when valid users are required. */
  private wwwAuthenticate(req: http.IncomingMessage): string | undefined {
    const asked = req.headers['x-couchdb-www-authenticate'];
    // Printable ASCII only: anything else could not be sent back as a header value.
    if (typeof asked === 'string' && /^[\x20-\x7e]+$/.test(asked)) return asked;
    if (this.options.wwwAuthenticate) return this.options.wwwAuthenticate;
    return this.options.requireValidUser === 'off' ? undefined : 'Basic realm="server"';
  }

  /** The parsed security object of a database, read once per catalog version of it. */
  private async securityOf(db: string): Promise<SecurityObject | undefined> {
    // `_users` and `_replicator` exist as clients see them from the start: made here, so their security object applies to the first request too.
    const handle = AUTO_SYSTEM_DBS.has(db) ? await openSystemDb(this.services.directory, db, this.services.node.n) : await this.services.directory.open(db);
    if (!handle) return undefined;
    let parsed = this.parsedSecurity.get(handle.security);
    if (!parsed) {
      parsed = readSecurity(handle.security);
      this.parsedSecurity.set(handle.security, parsed);
    }
    return parsed;
  }

  private fail(req: http.IncomingMessage, res: http.ServerResponse, reqId: string, err: unknown): void {
    if (err instanceof ClientGoneError) {
      // Routine (a client gave up or lost its network): nobody is left to answer.
      this.services.log.debug({ component: 'http', reqId, method: req.method, url: req.url }, 'client closed the connection mid-body');
      res.destroy();
      return;
    }
    const mapped = mapError(err);
    if (mapped.unexpected) {
      this.services.log.error({ component: 'http', reqId, method: req.method, url: req.url, err: err instanceof Error ? err.stack : String(err) }, 'request failed');
    }
    if (res.headersSent) {
      // Mid-stream: nothing valid can be said any more; cut the response.
      res.destroy();
      return;
    }
    const payload = Buffer.from(JSON.stringify(mapped.body) + '\n', 'utf8');
    const challenge = mapped.status === 401 ? this.wwwAuthenticate(req) : undefined;
    res.writeHead(mapped.status, {
      ...standardHeaders(reqId),
      'Content-Type': 'application/json',
      'Content-Length': payload.length,
      ...mapped.headers,
      ...(challenge ? { 'WWW-Authenticate': challenge } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : payload);
    // An unread request body would otherwise stall the keep-alive connection.
    if (!req.complete) req.resume();
  }
}
