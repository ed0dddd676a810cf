/**
 * The HTTP front door: one `node:http` server, one pipeline per request — split the
 * path, authenticate, authorize, route, and turn any error into CouchDB's error body
 * exactly once. Streaming handlers stop when the client goes away (`ctx.signal`).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { ClientGoneError, UnauthorizedError } from '../../errors';
import { Ctx, Services, standardHeaders } from './context';
import { ConnectionGuard } from './connections';
import { Cors, CorsOptions } from './cors';
import { mapError } from './error-map';
import { isPublic, route, splitPath } from './router';

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
      const session = await this.services.sessions.authenticate({
        authorization: req.headers.authorization,
        cookie: req.headers.cookie,
        peer: req.socket.remoteAddress ?? '',
      });
      ctx.user = session.user;
      if (session.renewCookie) res.setHeader('Set-Cookie', session.renewCookie);
      if (!isPublic(segments) && !ctx.user.roles.includes('_admin')) {
        throw new UnauthorizedError(ctx.user.name ? 'You are not a server admin.' : 'Authentication required.');
      }
      await route(ctx);
    } catch (err) {
      this.fail(req, res, reqId, err);
    }
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
    res.writeHead(mapped.status, {
      ...standardHeaders(reqId),
      'Content-Type': 'application/json',
      'Content-Length': payload.length,
      ...mapped.headers,
    });
    res.end(req.method === 'HEAD' ? undefined : payload);
    // An unread request body would otherwise stall the keep-alive connection.
    if (!req.complete) req.resume();
  }
}
