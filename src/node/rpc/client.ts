/**
 * Calls to other nodes. One gRPC channel per peer address (dialled through
 * `dialOverrides` when an address must be reached another way), every call with a
 * deadline and an auth token bound to the peer's address, a fresh nonce and the
 * request's bytes; Multiplex frames sealed under the stream's session key
 * (rpc/auth.ts). Transport failures become typed errors: NodeDownError
 * (unreachable), TimeoutError (deadline); a peer's operating error comes back as the
 * same DivanError it threw.
 */
import * as grpc from '@grpc/grpc-js';
import { plaintext, type Transport } from './tls';
import { DivanError, ErrorKind, NodeDownError, TimeoutError, UnauthorizedError } from '../../errors';
import { AUTH_HEADER, callToken, FrameOpener, FrameSealer, MUX_NONCE_HEADER, newMuxNonce, sessionKey } from './auth';
import { Message, MethodCodec, methodCodec, requestCodec, serviceDefinition } from './proto';
import { ERROR_HEADER } from './server';

export interface PeerClientsOptions {
  secret: string;
  /** Advertised address → address to dial (fault proxies in tests, NAT). */
  dialOverrides: Readonly<Record<string, string>>;
  /** Plain text or mutual TLS (rpc/tls.ts); plain text when absent. */
  transport?: Transport;
  /** Largest message sent or received, bytes (default 80 MiB, the config default). */
  messageBytesMax?: number;
  /** Accepted clock difference on Multiplex reply frames, ms (default 30 s). */
  authSkewMs?: number;
}

type ClientCtor = ReturnType<typeof grpc.makeGenericClientConstructor>;

const SERVICES = ['Membership', 'Catalog', 'Shard'] as const;
export type ServiceName = (typeof SERVICES)[number];

export class PeerClients {
  private readonly options: PeerClientsOptions;
  private readonly ctors = new Map<ServiceName, ClientCtor>();
  private readonly clients = new Map<string, grpc.Client>();
  private readonly muxes = new Map<string, Multiplexer>();
  private readonly codecs = new Map<string, MethodCodec>();
  private readonly requestCodecs = new Map<string, ReturnType<typeof requestCodec>>();
  private closed = false;

  constructor(options: PeerClientsOptions) {
    this.options = options;
    for (const name of SERVICES) this.ctors.set(name, grpc.makeGenericClientConstructor(serviceDefinition(name, 'client'), name));
  }

  private client(service: ServiceName, address: string): grpc.Client {
    if (this.closed) throw new NodeDownError(address, 'this node is shutting down');
    const key = service + ' ' + address;
    let client = this.clients.get(key);
    if (!client) {
      const target = this.options.dialOverrides[address] ?? address;
      const Ctor = this.ctors.get(service)!;
      const transport = this.options.transport ?? plaintext;
      client = new Ctor(target, transport.client, {
        ...transport.clientOptions,
        'grpc.max_receive_message_length': this.options.messageBytesMax ?? DEFAULT_MESSAGE_BYTES_MAX,
        'grpc.max_send_message_length': this.options.messageBytesMax ?? DEFAULT_MESSAGE_BYTES_MAX,
        'grpc.keepalive_time_ms': 30_000,
        // Fail fast while a peer is down instead of queueing calls for reconnection.
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 2000,
      });
      this.clients.set(key, client);
    }
    return client;
  }

  /** The request's bytes and the metadata whose token signs them for `address`. */
  private signed(address: string, service: ServiceName, method: string, request: Message): { bytes: Uint8Array; metadata: grpc.Metadata } {
    const path = `/divan.v1.${service}/${method}`;
    let codec = this.requestCodecs.get(path);
    if (!codec) {
      codec = requestCodec(path);
      this.requestCodecs.set(path, codec);
    }
    const bytes = codec.encode(request);
    const metadata = new grpc.Metadata();
    metadata.set(AUTH_HEADER, callToken(this.options.secret, path, address, bytes, Date.now()));
    return { bytes, metadata };
  }

  unary(address: string, service: ServiceName, method: string, request: Message, timeoutMs: number): Promise<Message> {
    return new Promise((resolve, reject) => {
      let client: grpc.Client;
      try {
        client = this.client(service, address);
      } catch (err) {
        return reject(err);
      }
      const fn = (client as unknown as Record<string, Function>)[method]!;
      const { bytes, metadata } = this.signed(address, service, method, request);
      fn.call(
        client,
        bytes,
        metadata,
        { deadline: Date.now() + timeoutMs, waitForReady: false },
        (err: grpc.ServiceError | null, reply: Message) => (err ? reject(toError(address, err)) : resolve(reply)),
      );
    });
  }

  /**
   * A unary Shard call carried as a frame on this peer's long-lived Multiplex stream
   * (opened on first use, authenticated once). Same typed errors as `unary`. A call
   * that times out closes the stream (a peer that stopped answering must not keep a
   * stalled stream); the next call opens a new one.
   */
  multiplexed(address: string, method: string, request: Message, timeoutMs: number): Promise<Message> {
    let mux = this.muxes.get(address);
    if (!mux) {
      const client = this.client('Shard', address);
      const open = (client as unknown as Record<string, Function>).Multiplex!;
      const clientNonce = newMuxNonce();
      const metadata = new grpc.Metadata();
      metadata.set(AUTH_HEADER, callToken(this.options.secret, '/divan.v1.Shard/Multiplex', address, new Uint8Array(0), Date.now(), clientNonce));
      const call = open.call(client, metadata, {}) as grpc.ClientDuplexStream<Message, Message>;
      const secret = this.options.secret;
      mux = new Multiplexer(address, call, (serverNonce) => sessionKey(secret, clientNonce, serverNonce, address), this.options.authSkewMs ?? DEFAULT_AUTH_SKEW_MS, () => {
        if (this.muxes.get(address) === mux) this.muxes.delete(address);
      });
      this.muxes.set(address, mux);
    }
    let codec = this.codecs.get(method);
    if (!codec) {
      codec = methodCodec('Shard', method);
      this.codecs.set(method, codec);
    }
    return mux.call(method, codec, request, timeoutMs);
  }

  /** A server stream as a pull cursor of messages; `close()` cancels the call. */
  /**
   * A server stream. It has no overall deadline (a slow consumer may take as long as it
   * likes); `idleTimeoutMs` bounds how long `next()` waits for the peer's next message
   * (0: forever, for update signals).
   */
  stream(address: string, service: ServiceName, method: string, request: Message, idleTimeoutMs: number): MessageStream {
    const client = this.client(service, address);
    const fn = (client as unknown as Record<string, Function>)[method]!;
    const { bytes, metadata } = this.signed(address, service, method, request);
    const call = fn.call(client, bytes, metadata, {}) as grpc.ClientReadableStream<Message>;
    return new MessageStream(address, call, idleTimeoutMs);
  }

  /** Drop the channels to an address (the next call dials afresh, no reconnect backoff). */
  reset(address: string): void {
    this.muxes.get(address)?.close(new NodeDownError(address, 'reconnecting'));
    for (const [key, client] of this.clients) {
      if (key.endsWith(' ' + address)) {
        client.close();
        this.clients.delete(key);
      }
    }
  }

  close(): void {
    this.closed = true;
    for (const mux of [...this.muxes.values()]) mux.close(new NodeDownError('peer', 'this node is shutting down'));
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

const DEFAULT_MESSAGE_BYTES_MAX = 80 * 1024 * 1024;
const DEFAULT_AUTH_SKEW_MS = 30_000;

/**
 * Calls in flight on one Multiplex stream, matched to their replies by frame id. Frames
 * wait until the server's nonce arrives in its response headers (one round trip when
 * the stream opens); from then on every frame is sealed under the session key, and
 * every reply frame must pass the same check the server applies (rpc/auth.ts).
 */
class Multiplexer {
  private nextId = 1;
  private readonly pending = new Map<number, { codec: MethodCodec; resolve(m: Message): void; reject(e: unknown): void; timer: NodeJS.Timeout }>();
  private closed = false;
  private sealer: FrameSealer | undefined;
  private opener: FrameOpener | undefined;
  /** Frames written before the session key is known. */
  private waiting: Message[] = [];

  constructor(
    private readonly address: string,
    private readonly stream: grpc.ClientDuplexStream<Message, Message>,
    keyFor: (serverNonce: string) => Buffer,
    skewMs: number,
    private readonly onClosed: () => void,
  ) {
    stream.on('metadata', (metadata: grpc.Metadata) => {
      const nonce = metadata.get(MUX_NONCE_HEADER)[0];
      if (this.sealer || typeof nonce !== 'string' || nonce.length < 16 || nonce.length > 64) {
        if (!this.sealer) this.close(new UnauthorizedError(`${address} opened a stream without a session nonce`));
        return;
      }
      const key = keyFor(nonce);
      this.sealer = new FrameSealer(key, 'c');
      this.opener = new FrameOpener(key, 's', skewMs);
      const waiting = this.waiting;
      this.waiting = [];
      for (const frame of waiting) this.stream.write(this.sealer.seal(frame as never, Date.now()));
    });
    stream.on('data', (frame: Message) => {
      const why = this.opener ? this.opener.check(frame as never, Date.now()) : 'frame before the session nonce';
      if (why !== undefined) {
        this.close(new UnauthorizedError(`${address} sent a frame that fails authentication: ${why}`));
        return;
      }
      const waiter = this.pending.get(Number(frame.id));
      if (!waiter) return; // timed out already
      this.pending.delete(Number(frame.id));
      clearTimeout(waiter.timer);
      if (frame.errorJson) {
        const e = JSON.parse(frame.errorJson as string) as { kind: ErrorKind; token: string; reason: string };
        waiter.reject(new DivanError(e.kind, e.token, e.reason));
      } else {
        try {
          waiter.resolve(waiter.codec.decodeResponse(frame.payload as Buffer));
        } catch (err) {
          waiter.reject(err);
        }
      }
    });
    stream.on('error', (err: grpc.ServiceError) => this.close(toError(address, err)));
    stream.on('end', () => this.close(new NodeDownError(address, 'stream ended')));
  }

  call(method: string, codec: MethodCodec, request: Message, timeoutMs: number): Promise<Message> {
    if (this.closed) return Promise.reject(new NodeDownError(this.address, 'stream closed'));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new TimeoutError(`${this.address} did not answer in time`));
        this.close(new TimeoutError(`${this.address} stream stalled`));
      }, timeoutMs);
      this.pending.set(id, { codec, resolve, reject, timer });
      const frame = { id, method, payload: Buffer.from(codec.encodeRequest(request)), errorJson: '' };
      if (this.sealer) this.stream.write(this.sealer.seal(frame, Date.now()));
      else this.waiting.push(frame);
    });
  }

  close(reason: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.waiting = [];
    this.onClosed();
    for (const waiter of this.pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(reason);
    }
    this.pending.clear();
    this.stream.cancel();
  }
}

/** Pull-based reading of a gRPC server stream, with backpressure (pauses when unread). */
export class MessageStream {
  private readonly queue: Message[] = [];
  private ended = false;
  private error: Error | undefined;
  private waiter: (() => void) | undefined;

  constructor(
    private readonly address: string,
    private readonly call: grpc.ClientReadableStream<Message>,
    private readonly idleTimeoutMs: number,
  ) {
    call.on('data', (message: Message) => {
      this.queue.push(message);
      if (this.queue.length >= 4) call.pause();
      this.wake();
    });
    call.on('end', () => {
      this.ended = true;
      this.wake();
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) this.error = toError(address, err);
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  async next(): Promise<Message | null> {
    for (;;) {
      const message = this.queue.shift();
      if (message !== undefined) {
        if (this.queue.length < 2) this.call.resume();
        return message;
      }
      if (this.error) throw this.error;
      if (this.ended) return null;
      await new Promise<void>((resolve) => {
        if (this.idleTimeoutMs <= 0) {
          this.waiter = resolve;
          return;
        }
        const timer = setTimeout(() => {
          this.error = new TimeoutError(`${this.address} sent nothing for ${this.idleTimeoutMs} ms`);
          this.close();
        }, this.idleTimeoutMs);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  close(): void {
    this.ended = true;
    this.call.cancel();
    this.wake();
  }
}

function toError(address: string, err: grpc.ServiceError): Error {
  switch (err.code) {
    case grpc.status.FAILED_PRECONDITION: {
      const raw = err.metadata?.get(ERROR_HEADER)[0];
      if (typeof raw === 'string') {
        const parsed = JSON.parse(raw) as { kind: ErrorKind; token: string; reason: string };
        return new DivanError(parsed.kind, parsed.token, parsed.reason);
      }
      return new DivanError('internal', 'unknown_error', err.details);
    }
    case grpc.status.DEADLINE_EXCEEDED:
      return new TimeoutError(`${address} did not answer in time`);
    case grpc.status.UNAUTHENTICATED:
      return new UnauthorizedError(`${address} refused the cluster credentials`);
    case grpc.status.UNAVAILABLE:
    case grpc.status.CANCELLED:
      return new NodeDownError(address, err.details || 'unavailable');
    default:
      return new DivanError('internal', 'unknown_error', `${address}: ${err.details}`);
  }
}
