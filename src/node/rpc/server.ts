/**
 * The node's gRPC server: membership, catalog and shard services behind one
 * authentication check. Operating errors (not found, conflict...) travel as a
 * FAILED_PRECONDITION status with the error's kind, token and reason in trailing
 * metadata, so the caller rebuilds the same typed error; anything else is INTERNAL.
 */
import * as grpc from '@grpc/grpc-js';
import { plaintext, type Transport } from './tls';
import { DivanError } from '../../errors';
import { AUTH_HEADER, checkToken } from './auth';
import { Message, serviceDefinition } from './proto';

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
  /** Accepted clock difference between nodes for auth tokens, ms. */
  authSkewMs: number;
  /** Plain text or mutual TLS (rpc/tls.ts); plain text when absent. */
  transport?: Transport;
  log: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export class RpcServer {
  private readonly server = new grpc.Server({
    'grpc.max_receive_message_length': 128 * 1024 * 1024,
    'grpc.max_send_message_length': 128 * 1024 * 1024,
    'grpc.keepalive_time_ms': 30_000,
  });
  private readonly options: RpcServerOptions;
  private rejectedCalls = 0;

  constructor(options: RpcServerOptions) {
    this.options = options;
  }

  /** Register a service's handlers; every method of the service must be given. */
  add(service: string, handlers: Record<string, UnaryHandler | StreamHandler | BidiHandler>): void {
    const definition = serviceDefinition(service);
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

  private authorized(path: string, metadata: grpc.Metadata): boolean {
    const ok = checkToken(this.options.secret, path, metadata.get(AUTH_HEADER)[0], Date.now(), this.options.authSkewMs);
    if (!ok) this.rejectedCalls++;
    return ok;
  }

  private wrapUnary(path: string, handler: UnaryHandler): grpc.handleUnaryCall<Message, Message> {
    return (call, callback) => {
      if (!this.authorized(path, call.metadata)) {
        callback({ code: grpc.status.UNAUTHENTICATED, details: 'cluster authentication failed' });
        return;
      }
      Promise.resolve()
        .then(() => handler(call.request))
        .then(
          (reply) => callback(null, reply),
          (err: unknown) => callback(this.toStatus(path, err)),
        );
    };
  }

  private wrapStream(path: string, handler: StreamHandler): grpc.handleServerStreamingCall<Message, Message> {
    return (call) => {
      if (!this.authorized(path, call.metadata)) {
        call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'cluster authentication failed' });
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
      handler(call.request, send, abort.signal).then(
        () => {
          if (!abort.signal.aborted) call.end();
        },
        (err: unknown) => {
          if (!abort.signal.aborted) call.emit('error', this.toStatus(path, err));
        },
      );
    };
  }

  /** A long-lived stream is authenticated once, when it opens. */
  private wrapBidi(path: string, handler: BidiHandler): grpc.handleBidiStreamingCall<Message, Message> {
    return (call) => {
      if (!this.authorized(path, call.metadata)) {
        call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'cluster authentication failed' });
        return;
      }
      handler(call);
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
