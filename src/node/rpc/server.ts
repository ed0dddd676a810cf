/**
 * The node's gRPC server: membership, catalog and shard services behind one
 * authentication check (rpc/auth.ts). Operating errors (not found, conflict...) travel
 * as a FAILED_PRECONDITION status with the error's kind, token and reason in trailing
 * metadata, so the caller rebuilds the same typed error; anything else is INTERNAL.
 *
 * Authentication comes before any message is read: a server interceptor checks the
 * call token in the request headers and answers UNAUTHENTICATED without starting the
 * handler, so grpc-js never reads (let alone decodes) the body of a call without
 * valid credentials. Messages of authenticated peers are bounded by
 * `messageBytesMax` (grpc-js refuses a longer one from its length prefix), and a
 * request is decoded only after its bytes match the digest its token signs.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { plaintext, type Transport } from './tls';
import { DivanError } from '../../errors';
import {
  AUTH_HEADER,
  checkCallToken,
  digestOf,
  FrameOpener,
  FrameSealer,
  MUX_NONCE_HEADER,
  newMuxNonce,
  NonceCache,
  parseCallToken,
  sessionKey,
} from './auth';
import { Message, requestCodec, serviceDefinition } from './proto';

export const ERROR_HEADER = 'x-divan-error';

export type UnaryHandler = (request: Message) => Promise<Message> | Message;
/** Bidirectional-stream handler: owns the call until it ends. */
export type BidiHandler = (call: grpc.ServerDuplexStream<Message, Message>) => void;
/** Server-streaming handler: write each message with `send` (awaits backpressure); resolves at the end. */
export type StreamHandler = (request: Message, send: (message: Message) => Promise<void>, signal: AbortSignal) => Promise<void>;

export interface RpcServerOptions {
  bindAddress: string;
  port: number;
  secret: string;
  /** Accepted clock difference between nodes for auth tokens and frames, ms. */
  authSkewMs: number;
  /** Largest message received or sent, bytes. */
  messageBytesMax: number;
  /** Call nonces remembered at most (replay protection within `authSkewMs`). */
  noncesMax: number;
  /** Plain text or mutual TLS (rpc/tls.ts); plain text when absent. */
  transport?: Transport;
  log: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

const EMPTY_DIGEST = digestOf(new Uint8Array(0));

export class RpcServer {
  private readonly server: grpc.Server;
  private readonly options: RpcServerOptions;
  private readonly nonces: NonceCache;
  /** Addresses a call token may name as its target: this node's advertised address (set after listen). */
  private targets: string[] = [];
  private rejectedCalls = 0;

  constructor(options: RpcServerOptions) {
    this.options = options;
    this.nonces = new NonceCache(options.authSkewMs, options.noncesMax);
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': options.messageBytesMax,
      'grpc.max_send_message_length': options.messageBytesMax,
      'grpc.keepalive_time_ms': 30_000,
      interceptors: [this.authenticate],
    });
  }

  /** The addresses peers dial this node at (its advertised address first). */
  setTargets(addresses: string[]): void {
    this.targets = [...new Set(addresses)];
  }

  /** Register a service's handlers; every method of the service must be given. */
  add(service: string, handlers: Record<string, UnaryHandler | StreamHandler | BidiHandler>): void {
    const definition = serviceDefinition(service, 'server');
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const [method, spec] of Object.entries(definition)) {
      const handler = handlers[method];
      if (!handler) throw new Error(`no handler for ${service}.${method}`);
      implementation[method] =
        spec.requestStream && spec.responseStream
          ? this.wrapBidi(spec.path, handler as BidiHandler)
          : spec.responseStream
            ? this.wrapStream(spec.path, handler as StreamHandler)
            : this.wrapUnary(spec.path, handler as UnaryHandler);
    }
    this.server.addService(definition, implementation);
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.server.bindAsync(`${this.options.bindAddress}:${this.options.port}`, (this.options.transport ?? plaintext).server, (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  get rejected(): number {
    return this.rejectedCalls;
  }

  /** Server interceptor: the call token is checked on the headers, before any message is read. */
  private readonly authenticate: grpc.ServerInterceptor = (descriptor, call) =>
    new grpc.ServerInterceptingCall(
      call,
      new grpc.ResponderBuilder()
        .withStart((next) =>
          next(
            new grpc.ServerListenerBuilder()
              .withOnReceiveMetadata((metadata, pass) => {
                const now = Date.now();
                const token = checkCallToken(this.options.secret, descriptor.path, this.targets, metadata.get(AUTH_HEADER)[0], now, this.options.authSkewMs);
                const admitted = token ? this.nonces.admit(token.nonce, token.sentMs, now) : 'unauthenticated';
                if (admitted === 'ok') return pass(metadata);
                this.rejectedCalls++;
                call.sendStatus(
                  admitted === 'full'
                    ? { code: grpc.status.RESOURCE_EXHAUSTED, details: 'too many calls in the authentication window', metadata: new grpc.Metadata() }
                    : {
                        code: grpc.status.UNAUTHENTICATED,
                        details: admitted === 'replayed' ? 'cluster authentication failed: token already used' : 'cluster authentication failed',
                        metadata: new grpc.Metadata(),
                      },
                );
              })
              .build(),
          ),
        )
        .build(),
    );

  /** The request decoded, once its bytes match the digest in its (already checked) token; a status otherwise. */
  private decodeRequest(path: string, metadata: grpc.Metadata, bytes: Buffer, decode: (b: Uint8Array) => Message): Message | Partial<grpc.StatusObject> {
    const token = parseCallToken(metadata.get(AUTH_HEADER)[0]);
    if (!token || token.digest !== digestOf(bytes)) {
      this.rejectedCalls++;
      return { code: grpc.status.UNAUTHENTICATED, details: 'cluster authentication failed: the message is not the one its token signs' };
    }
    try {
      return { request: decode(bytes) };
    } catch (err) {
      this.options.log.warn({ component: 'rpc', path, err: (err as Error).message }, 'undecodable request');
      return { code: grpc.status.INVALID_ARGUMENT, details: 'undecodable request' };
    }
  }

  private wrapUnary(path: string, handler: UnaryHandler): grpc.handleUnaryCall<Buffer, Message> {
    const codec = requestCodec(path);
    return (call, callback) => {
      const decoded = this.decodeRequest(path, call.metadata, call.request, codec.decode);
      if (!('request' in decoded)) return callback(decoded);
      Promise.resolve()
        .then(() => handler(decoded.request as Message))
        .then(
          (reply) => callback(null, reply),
          (err: unknown) => callback(this.toStatus(path, err)),
        );
    };
  }

  private wrapStream(path: string, handler: StreamHandler): grpc.handleServerStreamingCall<Buffer, Message> {
    const codec = requestCodec(path);
    return (call) => {
      const decoded = this.decodeRequest(path, call.metadata, call.request, codec.decode);
      if (!('request' in decoded)) {
        call.emit('error', decoded);
        return;
      }
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      call.on('close', () => abort.abort());
      const send = (message: Message) =>
        new Promise<void>((resolve) => {
          if (abort.signal.aborted) return resolve();
          if (call.write(message)) resolve();
          else call.once('drain', () => resolve());
        });
      handler(decoded.request as Message, send, abort.signal).then(
        () => {
          if (!abort.signal.aborted) call.end();
        },
        (err: unknown) => {
          if (!abort.signal.aborted) call.emit('error', this.toStatus(path, err));
        },
      );
    };
  }

  /**
   * A long-lived stream of frames: its opening token (over an empty message) was checked
   * by the interceptor; the server's nonce goes back in the response headers, and every
   * frame both ways is sealed under the session key (rpc/auth.ts). The handler sees
   * only frames that passed; the first that does not ends the stream UNAUTHENTICATED.
   */
  private wrapBidi(path: string, handler: BidiHandler): grpc.handleBidiStreamingCall<Message, Message> {
    return (call) => {
      const raw = call.metadata.get(AUTH_HEADER)[0];
      const token = parseCallToken(raw);
      const now = Date.now();
      const target = token && token.digest === EMPTY_DIGEST ? this.targets.find((t) => checkCallToken(this.options.secret, path, [t], raw, now, this.options.authSkewMs)) : undefined;
      if (!token || target === undefined) {
        this.rejectedCalls++;
        call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'cluster authentication failed' });
        return;
      }
      const serverNonce = newMuxNonce();
      const headers = new grpc.Metadata();
      headers.set(MUX_NONCE_HEADER, serverNonce);
      call.sendMetadata(headers);
      const key = sessionKey(this.options.secret, token.nonce, serverNonce, target);
      handler(new SealedFrames(call, new FrameOpener(key, 'c', this.options.authSkewMs), new FrameSealer(key, 's'), () => this.rejectedCalls++) as never);
    };
  }

  private toStatus(path: string, err: unknown): Partial<grpc.StatusObject> {
    if (err instanceof DivanError) {
      const metadata = new grpc.Metadata();
      metadata.set(ERROR_HEADER, JSON.stringify({ kind: err.kind, token: err.token, reason: err.reason }));
      return { code: grpc.status.FAILED_PRECONDITION, details: err.reason, metadata };
    }
    this.options.log.error({ component: 'rpc', path, err: err instanceof Error ? err.stack : String(err) }, 'rpc handler failed');
    return { code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * The handler's view of a Multiplex call: only frames that pass the session check come
 * out as 'data'; frames written are sealed. Enough of a duplex for the Shard service's
 * frame loop (on, write, end).
 */
class SealedFrames extends EventEmitter {
  private refused = false;

  constructor(
    private readonly call: grpc.ServerDuplexStream<Message, Message>,
    opener: FrameOpener,
    private readonly sealer: FrameSealer,
    onRefused: () => void,
  ) {
    super();
    call.on('data', (frame: Message) => {
      if (this.refused) return;
      const why = opener.check(frame as never, Date.now());
      if (why === undefined) {
        this.emit('data', frame);
        return;
      }
      this.refused = true;
      onRefused();
      call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: `cluster authentication failed: ${why}` });
    });
    for (const event of ['end', 'error', 'cancelled', 'close']) {
      call.on(event, (...args: unknown[]) => {
        if (event !== 'error' || this.listenerCount('error') > 0) this.emit(event, ...args);
      });
    }
  }

  write(frame: Message): boolean {
    if (this.refused) return false;
    return this.call.write(this.sealer.seal(frame as never, Date.now()));
  }

  end(): void {
    this.call.end();
  }
}
