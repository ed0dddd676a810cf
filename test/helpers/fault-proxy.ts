/**
 * A TCP proxy that injects network faults into one directed link between two nodes.
 *
 * It listens on 127.0.0.1, port 0, and forwards every accepted connection to one
 * target `host:port` (a node's gRPC listener). It knows nothing of HTTP/2 or gRPC: it
 * moves bytes, so faults look to both ends like faults of the network.
 *
 * Modes, switchable at any time, apply to every connection, current and new:
 * - `pass()`: forward bytes unchanged (the default).
 * - `delay(ms)`: forward, each chunk held `ms` longer in each direction; order kept.
 * - `drop()`: a blackhole, like a partition. New connections are accepted but never
 *   connected onward; bytes in either direction (including those still in flight under
 *   `delay`) are read and discarded; no FIN or RST crosses. Nothing is closed, so
 *   each end sees silence and times out — it never sees a reset.
 * - `reset()`: destroy every connection with a TCP RST and answer each new one with an
 *   immediate RST (accepted, then reset: to the dialler this is a refused connection).
 *
 * A connection that lost bytes (or a FIN) to `drop()` is *severed*: resuming it would
 * hand the far end a byte stream with a hole in it. When the link heals (`pass()` or
 * `delay()`), severed connections are reset, as a real peer that gave up on the
 * connection during the partition would answer the first packet after it; connections
 * that stayed idle through the drop simply resume. A connection onward to a target
 * that refuses it is reset towards the dialler.
 *
 * Limits: at most `QUEUED_BYTES_MAX` bytes queued per direction before the source is
 * paused (TCP back-pressure). Used by the cluster test harness (`cluster.ts`), one
 * proxy per ordered pair of nodes. Not for production traffic.
 */
import net from 'node:net';
import assert from 'node:assert/strict';
import { once } from 'node:events';

/** Bytes held per direction (delayed or waiting for the onward connection) before the source is paused. */
const QUEUED_BYTES_MAX = 4 * 1024 * 1024;

export type FaultMode = 'pass' | 'drop' | 'reset';

export interface FaultProxyStats {
  /** Connections currently open through the proxy. */
  open: number;
  /** Connections accepted since the proxy started. */
  accepted: number;
  /** Connections that lost bytes to `drop()` (and were or will be reset on heal). */
  severed: number;
  /** Bytes discarded by `drop()`, both directions. */
  droppedBytes: number;
}

export class FaultProxy {
  // Half-open allowed: a FIN is forwarded like bytes (after them), not acted on at once.
  private readonly server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  private readonly links = new Set<Link>();
  private currentMode: FaultMode = 'pass';
  private currentDelayMs = 0;
  private listeningPort = 0;
  private closed = false;
  /** Counters for tests and diagnostics. */
  readonly stats: FaultProxyStats = { open: 0, accepted: 0, severed: 0, droppedBytes: 0 };

  constructor(
    readonly target: { host: string; port: number },
    /** A label for error messages, e.g. `n1->n2`. */
    readonly label = `->${target.host}:${target.port}`,
  ) {}

  /** Start listening on 127.0.0.1 port 0; resolves to the chosen port. */
  async listen(): Promise<number> {
    assert.ok(!this.closed, 'FaultProxy.listen after close');
    assert.equal(this.listeningPort, 0, 'FaultProxy.listen called twice');
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.listeningPort = (this.server.address() as net.AddressInfo).port;
    return this.listeningPort;
  }

  /** The listening port (0 before `listen()`). */
  get port(): number {
    return this.listeningPort;
  }

  /** `127.0.0.1:PORT`, the address to dial instead of the target. */
  get address(): string {
    assert.ok(this.listeningPort > 0, 'FaultProxy.address before listen');
    return `127.0.0.1:${this.listeningPort}`;
  }

  get mode(): FaultMode {
    return this.currentMode;
  }

  get delayMs(): number {
    return this.currentDelayMs;
  }

  /** Forward unchanged. Heals a drop: severed connections are reset, idle ones resume. */
  pass(): void {
    this.heal(0);
  }

  /** Forward with `ms` of added latency per chunk, each direction. Also heals a drop. */
  delay(ms: number): void {
    assert.ok(Number.isFinite(ms) && ms >= 0, `delay must be a non-negative number of ms, got ${ms}`);
    this.heal(ms);
  }

  /** Blackhole: accept, discard, never close. See the module header. */
  drop(): void {
    this.currentMode = 'drop';
    for (const link of [...this.links]) link.kick(); // discard what is in flight now
  }

  /** Reset every connection now, and every new one on arrival. */
  reset(): void {
    this.currentMode = 'reset';
    for (const link of [...this.links]) link.destroy(true);
  }

  /** Stop listening and destroy every connection and timer. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const link of [...this.links]) link.destroy(false);
    if (this.listeningPort === 0) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private heal(delayMs: number): void {
    this.currentDelayMs = delayMs;
    const wasDown = this.currentMode !== 'pass';
    this.currentMode = 'pass';
    if (!wasDown) return;
    for (const link of [...this.links]) link.heal();
  }

  private accept(client: net.Socket): void {
    this.stats.accepted++;
    if (this.closed || this.currentMode === 'reset') {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const link = new Link(this, client);
    this.links.add(link);
    this.stats.open = this.links.size;
  }

  /** @internal Link bookkeeping. */
  forget(link: Link): void {
    this.links.delete(link);
    this.stats.open = this.links.size;
  }
}

/**
 * One proxied connection: the dialler's socket, the onward socket, two directions.
 * While the link is up, an error or reset on either socket resets the other; a clean
 * close needs both sockets closed. While it is down (`drop`), nothing crosses: a socket
 * that closes or errors only severs the link, and the other side learns of it on heal.
 */
class Link {
  private upstream: net.Socket | undefined;
  private upstreamConnected = false;
  private severed = false;
  private destroyed = false;
  private readonly closedSockets = new Set<net.Socket>();
  private readonly toTarget: Direction;
  private readonly toClient: Direction;

  constructor(
    readonly proxy: FaultProxy,
    readonly client: net.Socket,
  ) {
    client.setNoDelay(true);
    this.toTarget = new Direction(this, client, () => (this.upstreamConnected ? this.upstream : undefined));
    this.toClient = new Direction(this, undefined, () => client);
    this.watch(client);
    if (proxy.mode === 'drop') this.sever(); // the handshake itself was lost in the partition
    else this.connect();
  }

  get isSevered(): boolean {
    return this.severed;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Bytes, a FIN or a reset were lost: this connection can never forward again. */
  sever(): void {
    if (this.severed) return;
    this.severed = true;
    this.proxy.stats.severed++;
  }

  countDropped(bytes: number): void {
    this.proxy.stats.droppedBytes += bytes;
  }

  /** The mode changed: move or discard what is queued. */
  kick(): void {
    this.toTarget.pump();
    this.toClient.pump();
  }

  /** The link came back: reset what was severed, resume what was not. */
  heal(): void {
    if (this.destroyed) return;
    if (this.severed) return this.destroy(true);
    if (!this.upstream) this.connect();
    this.kick();
  }

  /** Both sockets gone, timers cleared. `rst` sends a TCP reset rather than a FIN. */
  destroy(rst: boolean): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.toTarget.dispose();
    this.toClient.dispose();
    for (const socket of [this.client, this.upstream]) {
      if (!socket || socket.destroyed) continue;
      if (rst && socket.readyState !== 'opening') socket.resetAndDestroy();
      else socket.destroy();
    }
    this.proxy.forget(this);
  }

  /** Half-close propagation: a FIN from one side, once its bytes are delivered, goes on. */
  endTowards(socket: net.Socket): void {
    if (!socket.destroyed && socket.writable) socket.end();
  }

  private connect(): void {
    const upstream = net.connect({ host: this.proxy.target.host, port: this.proxy.target.port, allowHalfOpen: true });
    this.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('connect', () => {
      this.upstreamConnected = true;
      this.toTarget.pump();
    });
    this.watch(upstream);
    this.toClient.attachSource(upstream);
  }

  private watch(socket: net.Socket): void {
    socket.on('error', () => this.onSocketGone(socket, true));
    socket.on('close', (hadError: boolean) => this.onSocketGone(socket, hadError));
  }

  private onSocketGone(socket: net.Socket, failed: boolean): void {
    if (this.destroyed) return;
    this.closedSockets.add(socket);
    if (this.proxy.mode === 'drop' || this.severed) return this.sever(); // the news is lost in the partition
    // A refused onward connection, or a reset on either side, is passed on as a reset.
    if (failed) return this.destroy(true);
    const expected = this.upstream ? 2 : 1;
    if (this.closedSockets.size >= expected) this.destroy(false);
  }
}

/** Bytes flowing one way through a link: read, maybe delayed or discarded, written. */
class Direction {
  private readonly queue: { chunk: Buffer | null; dueMs: number }[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingForDrain = false;
  private source: net.Socket | undefined;

  constructor(
    private readonly link: Link,
    source: net.Socket | undefined,
    private readonly destination: () => net.Socket | undefined,
  ) {
    if (source) this.attachSource(source);
  }

  attachSource(source: net.Socket): void {
    this.source = source;
    source.on('data', (chunk: Buffer) => this.onChunk(chunk));
    // `null` marks the FIN: it travels through the same queue, after the bytes before it.
    source.on('end', () => this.onChunk(null));
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  /** Move queued chunks that are due; called on every state change. */
  pump(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const proxy = this.link.proxy;
    while (this.queue.length > 0 && !this.link.isDestroyed) {
      if (proxy.mode === 'drop' || this.link.isSevered) {
        // In flight when the partition began: lost with it.
        for (const entry of this.queue.splice(0)) this.discard(entry.chunk);
        this.queuedBytes = 0;
        break;
      }
      const destination = this.destination();
      if (!destination || this.waitingForDrain) return;
      const head = this.queue[0]!;
      const waitMs = head.dueMs - Date.now();
      if (waitMs > 0) {
        this.timer = setTimeout(() => this.pump(), waitMs);
        return;
      }
      this.queue.shift();
      if (head.chunk === null) {
        this.link.endTowards(destination);
        continue;
      }
      this.queuedBytes -= head.chunk.length;
      if (!destination.write(head.chunk)) {
        this.waitingForDrain = true;
        destination.once('drain', () => {
          this.waitingForDrain = false;
          this.pump();
        });
      }
    }
    if (this.source && this.source.isPaused() && this.queuedBytes < QUEUED_BYTES_MAX / 2) this.source.resume();
  }

  private onChunk(chunk: Buffer | null): void {
    const proxy = this.link.proxy;
    if (this.link.isDestroyed) return;
    if (proxy.mode === 'drop' || this.link.isSevered) return this.discard(chunk);
    this.queue.push({ chunk, dueMs: Date.now() + proxy.delayMs });
    if (chunk) this.queuedBytes += chunk.length;
    if (this.queuedBytes > QUEUED_BYTES_MAX) this.source?.pause();
    if (!this.timer) this.pump();
  }

  private discard(chunk: Buffer | null): void {
    this.link.sever();
    if (chunk) this.link.countDropped(chunk.length);
  }
}
