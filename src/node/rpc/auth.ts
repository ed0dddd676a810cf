/**
 * Inter-node authentication: what the cluster secret proves, call by call and frame by
 * frame. Transport security (mutual TLS, rpc/tls.ts) authenticates the connection and
 * is the default for clusters; this layer is checked on top of it, and is all there is
 * when an operator chose plain text (`grpcPlaintext`). The secret never crosses the
 * wire and is never logged.
 *
 * Calls (unary and server-streaming): metadata `x-divan-auth` carries
 * `2.<sent ms>.<nonce>.<digest>.<mac>`, where `digest` is the SHA-256 of the request
 * message's bytes exactly as sent and
 * `mac = HMAC-SHA256(secret, "divan-rpc-2" | method path | target address | sent ms | nonce | digest)`.
 * The target is the address the caller dials (the callee's advertised address), so a
 * token made for one node is refused by another. The receiver checks the metadata
 * before it reads any message (a caller without the secret cannot make it allocate,
 * see server.ts): the time must be within `skewMs` of its clock and the nonce must be
 * new (remembered until it expires, in a bounded cache: a full cache refuses calls
 * rather than forget nonces that could then be replayed). Then, before decoding, the
 * message's bytes must match the digest: a captured token is good for exactly one
 * delivery of exactly the message it was made for.
 *
 * The Multiplex stream (many calls as frames on one long-lived stream): the opening
 * token is a call token over an empty message, its nonce `Nc`. The server answers
 * with a fresh random `Ns` in its response headers, and both ends derive a session key
 * `K = HMAC(secret, "divan-mux-1" | Nc | Ns | target)`. Every frame, both ways, carries
 * a sequence number (1, 2, 3... per direction), the sender's clock, and
 * `HMAC(K, direction | seq | sent ms | id | method | error | payload)`. A receiver
 * takes only the next sequence number, a time within `skewMs`, and a valid MAC, and
 * ends the stream on anything else. A frame cannot be replayed (its seq is used),
 * reordered, reflected (direction), moved to another stream (another K) or held back
 * past the window; a sniffed opening token is worth nothing without the secret,
 * because K depends on the server's nonce.
 *
 * Not covered under plain text: the replies of unary and server-streaming calls are
 * not MAC'd (an active man in the middle could alter what a read returns); use TLS.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const AUTH_HEADER = 'x-divan-auth';
/** Response header of a Multiplex stream: the server's nonce. */
export const MUX_NONCE_HEADER = 'x-divan-mux-nonce';

const VERSION = '2';

export interface CallToken {
  sentMs: number;
  nonce: string;
  digest: string;
}

export function digestOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64url');
}

function callMac(secret: string, methodPath: string, target: string, sentMs: number, nonce: string, digest: string): string {
  return createHmac('sha256', secret).update(`divan-rpc-2\n${methodPath}\n${target}\n${sentMs}\n${nonce}\n${digest}`).digest('base64url');
}

/** The token of one call of `methodPath` to `target` carrying `message` (its encoded bytes). */
export function callToken(secret: string, methodPath: string, target: string, message: Uint8Array, nowMs: number, nonce = randomBytes(16).toString('base64url')): string {
  const digest = digestOf(message);
  return `${VERSION}.${nowMs}.${nonce}.${digest}.${callMac(secret, methodPath, target, nowMs, nonce, digest)}`;
}

/**
 * Check a call token's MAC and time (not the nonce's freshness, not the message):
 * the parsed token when valid for one of `targets`, else undefined.
 */
export function checkCallToken(secret: string, methodPath: string, targets: readonly string[], token: unknown, nowMs: number, skewMs: number): CallToken | undefined {
  const parsed = parseCallToken(token);
  if (!parsed || Math.abs(nowMs - parsed.sentMs) > skewMs) return undefined;
  const actual = Buffer.from(parsed.mac);
  for (const target of targets) {
    const expected = Buffer.from(callMac(secret, methodPath, target, parsed.sentMs, parsed.nonce, parsed.digest));
    if (expected.length === actual.length && timingSafeEqual(expected, actual)) return { sentMs: parsed.sentMs, nonce: parsed.nonce, digest: parsed.digest };
  }
  return undefined;
}

export function parseCallToken(token: unknown): (CallToken & { mac: string }) | undefined {
  if (typeof token !== 'string' || token.length > 256) return undefined;
  const parts = token.split('.');
  if (parts.length !== 5 || parts[0] !== VERSION) return undefined;
  const sentMs = Number(parts[1]);
  if (!Number.isSafeInteger(sentMs) || parts[2]!.length < 16 || parts[3]!.length !== 43) return undefined;
  return { sentMs, nonce: parts[2]!, digest: parts[3]!, mac: parts[4]! };
}

/**
 * Nonces of accepted call tokens, each kept until its token expires. Bounded: when
 * full of unexpired nonces, `admit` refuses (the caller retries later) instead of
 * evicting one that could then be replayed.
 */
export class NonceCache {
  private readonly expiries = new Map<string, number>();
  private admitted = 0;

  constructor(
    private readonly skewMs: number,
    private readonly entriesMax: number,
  ) {}

  /** 'ok' (new, now remembered), 'replayed' (seen before) or 'full'. */
  admit(nonce: string, sentMs: number, nowMs: number): 'ok' | 'replayed' | 'full' {
    if (this.expiries.has(nonce)) return 'replayed';
    if (this.expiries.size >= this.entriesMax || ++this.admitted % 1024 === 0) this.sweep(nowMs);
    if (this.expiries.size >= this.entriesMax) return 'full';
    this.expiries.set(nonce, sentMs + this.skewMs);
    return 'ok';
  }

  get size(): number {
    return this.expiries.size;
  }

  /** Drop expired entries (insertion order is near expiry order; the loop stops at the first live one past a few). */
  sweep(nowMs: number): void {
    let live = 0;
    for (const [nonce, expiry] of this.expiries) {
      if (expiry < nowMs) this.expiries.delete(nonce);
      else if (++live > 1000) break;
    }
  }
}

// ---- Multiplex sessions ------------------------------------------------------------

export function newMuxNonce(): string {
  return randomBytes(16).toString('base64url');
}

export function sessionKey(secret: string, clientNonce: string, serverNonce: string, target: string): Buffer {
  return createHmac('sha256', secret).update(`divan-mux-1\n${clientNonce}\n${serverNonce}\n${target}`).digest();
}

export interface FrameFields {
  id: number;
  method: string;
  payload: Uint8Array;
  errorJson: string;
}

export type Direction = 'c' | 's';

export function frameMac(key: Buffer, direction: Direction, seq: number, sentMs: number, frame: FrameFields): Buffer {
  return createHmac('sha256', key)
    .update(`${direction}\n${seq}\n${sentMs}\n${frame.id}\n${frame.method}\n${frame.errorJson}\n`)
    .update(frame.payload)
    .digest();
}

/**
 * One direction of a Multiplex session: `seal` numbers, dates and MACs outgoing frames;
 * `open` checks an incoming one. The two ends hold one `FrameSealer` each for their
 * sending direction and one `FrameOpener` for the other.
 */
export class FrameSealer {
  private seq = 0;
  constructor(
    private readonly key: Buffer,
    private readonly direction: Direction,
  ) {}

  /** Sets `seq`, `sentMs` and `mac` on the frame (in place: frames are built per call) and returns it. */
  seal<F extends FrameFields>(frame: F, nowMs: number): F & { seq: number; sentMs: number; mac: Buffer } {
    const seq = ++this.seq;
    const sealed = frame as F & { seq: number; sentMs: number; mac: Buffer };
    sealed.mac = frameMac(this.key, this.direction, seq, nowMs, frame);
    sealed.seq = seq;
    sealed.sentMs = nowMs;
    return sealed;
  }
}

export class FrameOpener {
  private seq = 0;
  constructor(
    private readonly key: Buffer,
    private readonly direction: Direction,
    private readonly skewMs: number,
  ) {}

  /** Undefined when the frame is the expected next one, else why it is refused. */
  check(frame: FrameFields & { seq: unknown; sentMs: unknown; mac: unknown }, nowMs: number): string | undefined {
    const seq = Number(frame.seq);
    if (seq !== this.seq + 1) return `frame sequence ${seq} where ${this.seq + 1} was due`;
    const sentMs = Number(frame.sentMs);
    if (!Number.isSafeInteger(sentMs) || Math.abs(nowMs - sentMs) > this.skewMs) return 'frame outside the validity window';
    const mac = frame.mac;
    const expected = frameMac(this.key, this.direction, seq, sentMs, frame);
    if (!(mac instanceof Uint8Array) || mac.length !== expected.length || !timingSafeEqual(expected, mac)) return 'frame authentication failed';
    this.seq = seq;
    return undefined;
  }
}
