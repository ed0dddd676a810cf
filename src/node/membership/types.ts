/**
 * Membership data: what nodes say about each other, and the transport boundary.
 *
 * Each member is `{name, addresses, incarnation, state}`. Only the member itself raises
 * its incarnation (to refute a suspicion, to rejoin after a restart, to leave), so a
 * higher incarnation is always newer news about it; the precedence rules between states
 * at equal incarnation live in `precedence.ts`.
 *
 * Messages are plain JSON-able data so the gRPC layer can carry them in proto messages.
 * Optional fields (`target`, `suspectedBy`) sharpen the protocol but may be dropped by a
 * transport that cannot carry them: the protocol stays correct without them.
 */

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left';

export const MEMBER_STATES: readonly MemberState[] = ['alive', 'suspect', 'dead', 'left'];

/** What nodes gossip about each other. */
export interface MemberInfo {
  /** Unique node name, e.g. "divan@127.0.0.1:7984". */
  name: string;
  /** gRPC address host:port others dial. */
  address: string;
  /** host:port of its CouchDB HTTP API (for /_node/{name} routing). */
  httpAddress: string;
  zone?: string;
  incarnation: number;
  state: MemberState;
}

/**
 * A piggybacked update. `suspectedBy` names the member whose probe raised a suspicion
 * (suspect updates only): independent suspicions shorten the suspicion timeout
 * (Lifeguard). Without it a suspicion simply runs its full timeout.
 */
export interface MemberUpdate extends MemberInfo {
  suspectedBy?: string;
}

/** A member as this node sees it. */
export interface Member extends MemberInfo {
  /** Clock time (`Clock.now()`, ms) of the last state change seen here. */
  stateChangedAtMs: number;
}

/** The node's own identity, fixed for the life of a Membership instance. */
export type SelfIdentity = Omit<MemberInfo, 'incarnation' | 'state'>;

/** Messages are plain data so the gRPC layer can serialise them. */
export interface PingMessage {
  from: string;
  seqNo: number;
  /** Piggybacked updates, at most `gossipUpdatesMax`. */
  updates: MemberUpdate[];
  /**
   * Name of the member the sender means to reach. A node that receives a ping meant
   * for another name refuses it, so an address reused by another node is not taken
   * for a live target. Optional: without it the ack's `from` is still checked.
   */
  target?: string;
}

export interface AckMessage {
  from: string;
  seqNo: number;
  updates: MemberUpdate[];
}

/**
 * How a Membership reaches other nodes. Each method is one remote call with a deadline:
 * it settles by `timeoutMs` at the latest (Membership also enforces its own deadline,
 * so a transport that hangs only wastes memory until then). Failing is normal: any
 * rejection counts as "no answer".
 */
export interface MembershipTransport {
  /** Direct probe; rejects (any error) on failure or when timeoutMs passes. */
  ping(address: string, message: PingMessage, timeoutMs: number): Promise<AckMessage>;
  /** Ask `via` to probe `target` for us; resolves true if target acked via them. */
  pingReq(
    viaAddress: string,
    target: { name: string; address: string },
    message: PingMessage,
    timeoutMs: number,
  ): Promise<boolean>;
  /** Full state exchange (join and periodic anti-entropy). */
  pushPull(address: string, state: MemberInfo[], timeoutMs: number): Promise<MemberInfo[]>;
}

/** The server side of the transport: what a gRPC service (or a test network) calls. */
export interface MembershipHandlers {
  handlePing(message: PingMessage): AckMessage;
  handlePingReq(target: { name: string; address: string }, message: PingMessage): Promise<boolean>;
  handlePushPull(state: MemberInfo[]): MemberInfo[];
}

/** Time and timers, injected so tests can run the protocol on simulated time. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The two log levels membership uses: transitions to healthy (info) and away (warn). */
export interface MembershipLog {
  info(o: object, m?: string): void;
  warn(o: object, m?: string): void;
}
