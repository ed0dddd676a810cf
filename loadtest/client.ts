/**
 * HTTP client for the load test: one keep-alive agent per server, JSON in and out.
 *
 * `request` sends one JSON request and returns `{ status, headers, body }` with the
 * body parsed (or the raw text when it is not JSON); it never throws on an HTTP
 * status, only on a transport failure, a deadline or a reply over `replyBytesMax`.
 * `scan` streams a `_all_docs` / `_changes` reply and counts its rows without
 * keeping the body, so a 100k-row feed costs the client O(1) memory.
 * Every call has a deadline (`requestTimeoutMs`) joined with the run's abort signal.
 * Loopback only: the host is fixed to 127.0.0.1 by the callers.
 */
import * as http from 'node:http';

export interface BasicAuth {
  username: string;
  password: string;
}

export interface ClientOptions {
  host: string;
  port: number;
  auth: BasicAuth | null;
  /** Sockets kept open to the server; the load test sets it to the client concurrency. */
  socketsMax: number;
  /** Deadline of one request, from send to the last body byte. */
  requestTimeoutMs: number;
  /** Aborts every request in flight when the run is interrupted. */
  signal: AbortSignal;
}

export interface JsonReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

export interface ScanReply {
  status: number;
  /** Objects directly inside a top-level array (`rows` or `results`). */
  rowsCount: number;
  bodyBytes: number;
}

export interface CallOptions {
  timeoutMs?: number;
}

/** A JSON reply larger than this is an error: no scenario expects one. */
const replyBytesMax = 64 * 1024 * 1024;

interface BodySink {
  write(chunk: Buffer): void;
}

export class HttpClient {
  readonly agent: http.Agent;
  private readonly authHeader: string | null;

  constructor(readonly options: ClientOptions) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: options.socketsMax });
    this.authHeader =
      options.auth === null
        ? null
        : 'Basic ' + Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64');
  }

  /** `http://127.0.0.1:port`, without credentials: for clients (PouchDB) that take their own auth option. */
  get origin(): string {
    return `http://${this.options.host}:${this.options.port}`;
  }

  async request(method: string, path: string, body?: unknown, call: CallOptions = {}): Promise<JsonReply> {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const sink: BodySink = {
      write(chunk) {
        bytes += chunk.length;
        if (bytes > replyBytesMax) throw new Error(`${method} ${path}: reply over ${replyBytesMax} bytes`);
        chunks.push(chunk);
      },
    };
    const { status, headers } = await this.exchange(method, path, body, sink, call);
    const text = Buffer.concat(chunks, bytes).toString('utf8');
    return { status, headers, body: parseJsonOrText(text) };
  }

  /** GET a feed and count its rows while streaming; the body is never held whole. */
  async scan(path: string, call: CallOptions = {}): Promise<ScanReply> {
    const counter = new RowCounter();
    let bodyBytes = 0;
    const sink: BodySink = {
      write(chunk) {
        bodyBytes += chunk.length;
        counter.feed(chunk);
      },
    };
    const { status } = await this.exchange('GET', path, undefined, sink, call);
    return { status, rowsCount: counter.rowsCount, bodyBytes };
  }

  close(): void {
    this.agent.destroy();
  }

  private exchange(
    method: string,
    path: string,
    body: unknown,
    sink: BodySink,
    call: CallOptions,
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
    const payload = body === undefined ? null : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
    if (this.authHeader !== null) headers.authorization = this.authHeader;
    if (payload !== null) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    const timeoutMs = call.timeoutMs ?? this.options.requestTimeoutMs;
    const signal = AbortSignal.any([this.options.signal, AbortSignal.timeout(timeoutMs)]);

    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        const reason = signal.aborted && this.options.signal.aborted ? 'aborted' : signal.aborted ? `timed out after ${timeoutMs} ms` : String(err);
        reject(new Error(`${method} ${path}: ${reason}`));
      };
      const req = http.request(
        { host: this.options.host, port: this.options.port, method, path, headers, agent: this.agent, signal },
        (res) => {
          res.on('data', (chunk: Buffer) => {
            try {
              sink.write(chunk);
            } catch (err) {
              res.destroy();
              fail(err);
            }
          });
          res.on('error', fail);
          res.on('end', () => {
            if (settled) return;
            settled = true;
            resolve({ status: res.statusCode ?? 0, headers: res.headers });
          });
          res.on('close', () => {
            if (!res.complete) fail(new Error('connection closed before the reply ended'));
          });
        },
      );
      req.on('error', fail);
      req.end(payload ?? undefined);
    });
  }
}

function parseJsonOrText(text: string): unknown {
  if (text.length === 0) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Counts objects that sit directly inside an array at depth 2 of a JSON stream:
 * the rows of `{"total_rows":..,"rows":[{..},{..}]}` and the results of
 * `{"results":[{..}],"last_seq":..}`. Tracks only string/escape state and depth, so
 * it works across chunk boundaries and costs one pass over the bytes.
 */
export class RowCounter {
  rowsCount = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;

  feed(chunk: Buffer): void {
    let { depth, inString, escaped, rowsCount } = this;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (byte === 0x5c) escaped = true;
        else if (byte === 0x22) inString = false;
        continue;
      }
      if (byte === 0x22) {
        inString = true;
      } else if (byte === 0x7b || byte === 0x5b) {
        if (byte === 0x7b && depth === 2) rowsCount++;
        depth++;
      } else if (byte === 0x7d || byte === 0x5d) {
        depth--;
      }
    }
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
    this.rowsCount = rowsCount;
  }
}
