/**
 * The HTTP front door's guard against clients that hold connections without using
 * them (issue 8, item 7). Every connection is tracked from accept to close:
 * - at most `connectionsPerAddressMax` from one client address: beyond, 503 and closed;
 * - at most `connectionsMax` in all: when full, the connection idle the longest (no
 *   request in progress: a fresh one that sent nothing yet, or a keep-alive one between
 *   requests) is closed to make room; with none idle, the new one gets 503 and is closed;
 * - a request body that delivers less than `bodyBytesPerSecMin` over a window of
 *   `bodyIdleTimeoutMs` (or nothing at all) is cut with 408, whether or not the request
 *   was authenticated. Only bodies being received are watched: responses, such as long
 *   `_changes` feeds, may last as long as they like. A body the handler has not read yet
 *   (the socket paused by backpressure) is not the client's fault and is not counted.
 * Headers that never complete are Node's `headersTimeout` (set by the server).
 *
 * All checks are O(1) per connection and per request, plus one sweep over the
 * connections receiving a body every quarter window; finding the oldest idle
 * connection scans the table, only when it is full.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from './context';
import { serverHeader } from './context';

export interface ConnectionLimits {
  connectionsMax: number;
  connectionsPerAddressMax: number;
  bodyIdleTimeoutMs: number;
  bodyBytesPerSecMin: number;
}

interface BodyWatch {
  req: IncomingMessage;
  res: ServerResponse;
  /** socket.bytesRead and the time at the start of the current window. */
  windowBytes: number;
  windowAt: number;
}

interface Conn {
  socket: Socket;
  address: string;
  /** Requests received and not yet answered. */
  active: number;
  /** When it last became idle: connected, or its last response ended (ms, monotonic). */
  idleSince: number;
  /** The request whose body is still arriving. */
  body: BodyWatch | undefined;
}

const now = (): number => performance.now();

export class ConnectionGuard {
  private readonly limits: ConnectionLimits;
  private readonly log: Logger;
  private readonly conns = new Map<Socket, Conn>();
  private readonly perAddress = new Map<string, number>();
  private readonly refused = new WeakSet<Socket>();
  private readonly watching = new Set<Conn>();
  private readonly sweeper: NodeJS.Timeout;
  private refusedSinceLog = 0;
  private refusedLoggedAt = -Infinity;

  constructor(limits: ConnectionLimits, log: Logger) {
    this.limits = limits;
    this.log = log;
    const every = Math.min(1000, Math.max(50, Math.floor(limits.bodyIdleTimeoutMs / 4)));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  /** Connections open and admitted. */
  get size(): number {
    return this.conns.size;
  }

  /** For the server's 'connection' event: admit the socket, or answer 503 and close it. */
  admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    if ((this.perAddress.get(address) ?? 0) >= this.limits.connectionsPerAddressMax) {
      this.refuse(socket, 'Too many connections from this address');
      return;
    }
    if (this.conns.size >= this.limits.connectionsMax && !this.evictOldestIdle()) {
      this.refuse(socket, 'Too many connections');
      return;
    }
    const conn: Conn = { socket, address, active: 0, idleSince: now(), body: undefined };
    this.conns.set(socket, conn);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    socket.once('close', () => this.forget(conn));
  }

  /** True for a socket answered 503 at connect: its requests get nothing more. */
  isRefused(socket: Socket): boolean {
    return this.refused.has(socket);
  }

  /** For each request: its connection is busy until the response is over; its body is watched while it arrives. */
  track(req: IncomingMessage, res: ServerResponse): void {
    const conn = this.conns.get(req.socket);
    if (!conn) return;
    conn.active++;
    if (!req.complete) {
      conn.body = { req, res, windowBytes: req.socket.bytesRead, windowAt: now() };
      this.watching.add(conn);
    }
    res.once('close', () => {
      conn.active--;
      if (conn.active === 0) conn.idleSince = now();
    });
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private forget(conn: Conn): void {
    if (this.conns.get(conn.socket) !== conn) return;
    this.conns.delete(conn.socket);
    this.watching.delete(conn);
    const left = (this.perAddress.get(conn.address) ?? 1) - 1;
    if (left === 0) this.perAddress.delete(conn.address);
    else this.perAddress.set(conn.address, left);
  }

  /** Close the connection idle the longest; false when every connection is busy. */
  private evictOldestIdle(): boolean {
    let oldest: Conn | undefined;
    for (const conn of this.conns.values()) {
      if (conn.active > 0 || conn.body !== undefined) continue;
      if (oldest === undefined || conn.idleSince < oldest.idleSince) oldest = conn;
    }
    if (oldest === undefined) return false;
    this.forget(oldest);
    oldest.socket.destroy();
    this.log.debug({ component: 'http', address: oldest.address }, 'closed the longest-idle connection to make room');
    return true;
  }

  private refuse(socket: Socket, reason: string): void {
    this.refused.add(socket);
    const body = JSON.stringify({ error: 'service_unavailable', reason }) + '\n';
    socket.on('error', () => {});
    socket.end(
      'HTTP/1.1 503 Service Unavailable\r\n' +
        `Server: ${serverHeader}\r\n` +
        'Content-Type: application/json\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Retry-After: 1\r\n' +
        'Connection: close\r\n\r\n' +
        body,
    );
    setTimeout(() => socket.destroy(), 1000).unref();
    this.refusedSinceLog++;
    const t = now();
    if (t - this.refusedLoggedAt >= 60_000) {
      this.log.warn(
        { component: 'http', address: socket.remoteAddress, refused: this.refusedSinceLog, reason, connections: this.conns.size },
        'connections refused',
      );
      this.refusedSinceLog = 0;
      this.refusedLoggedAt = t;
    }
  }

  /** Cut request bodies that made too little progress over the last window. */
  private sweep(): void {
    const t = now();
    const window = this.limits.bodyIdleTimeoutMs;
    const needed = Math.max(1, Math.ceil((this.limits.bodyBytesPerSecMin * window) / 1000));
    for (const conn of this.watching) {
      const watch = conn.body;
      if (watch === undefined || watch.req.complete || conn.socket.destroyed) {
        conn.body = undefined;
        this.watching.delete(conn);
        continue;
      }
      const bytes = conn.socket.bytesRead;
      // Unread by the handler so far: the socket is paused on our side, not the client's.
      if (watch.req.readableLength >= watch.req.readableHighWaterMark) {
        watch.windowBytes = bytes;
        watch.windowAt = t;
        continue;
      }
      if (t - watch.windowAt < window) continue;
      if (bytes - watch.windowBytes >= needed) {
        watch.windowBytes = bytes;
        watch.windowAt = t;
        continue;
      }
      this.cutSlowBody(conn, watch);
    }
  }

  private cutSlowBody(conn: Conn, watch: BodyWatch): void {
    conn.body = undefined;
    this.watching.delete(conn);
    this.log.debug({ component: 'http', address: conn.address, method: watch.req.method, url: watch.req.url }, 'request body too slow: connection closed');
    const { res, req } = watch;
    if (!res.headersSent && !res.destroyed) {
      const body = JSON.stringify({ error: 'request_timeout', reason: 'The request body arrived too slowly' }) + '\n';
      try {
        res.writeHead(408, { Server: serverHeader, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
        res.end(req.method === 'HEAD' ? undefined : body);
      } catch {
        // The handler raced us to the response; closing the socket below is enough.
      }
    }
    // The body will never end: close for sure once the 408 had its chance to leave.
    setTimeout(() => conn.socket.destroy(), 1000).unref();
  }
}
