/**
 * Membership settings: every timer and limit of the SWIM protocol, with its unit and
 * what turning it up costs, plus two profiles (LAN, loopback tests) and the
 * dead-detection bound they promise.
 *
 * `validateMembershipConfig` fills the optional fields with their defaults, rejects
 * unknown keys and impossible combinations, and returns a frozen copy; the protocol
 * only ever sees a validated config.
 */

export interface MembershipConfig {
  /**
   * Time between failure-detection probes, ms. Each member pings one other member per
   * period (round-robin), so a failure is noticed within about two rounds of N − 1
   * periods. Lower detects sooner; costs one ping per member per period, and on a
   * failed ping up to `indirectChecks` ping-reqs.
   */
  probeIntervalMs: number;
  /**
   * How long a direct ping waits for its ack, ms; at most half of `probeIntervalMs`,
   * the rest of the period is the window of the indirect probe. Lower detects no
   * sooner (suspicion dominates) but calls a slow node (GC pause, busy event loop)
   * suspect more often.
   */
  probeTimeoutMs: number;
  /**
   * Members asked to ping a target that missed its direct ack (SWIM's k). More
   * shields a node from one bad link between it and the prober; costs up to k ping-req
   * calls, each one ping more, per failed probe.
   */
  indirectChecks: number;
  /**
   * A suspicion lasts at least suspicionMultiplier × max(1, log10(N)) × probeIntervalMs
   * before the suspect is declared dead (memberlist's SuspicionMult). Higher gives a
   * paused or overloaded node longer to refute; costs slower dead detection, linearly.
   */
  suspicionMultiplier: number;
  /**
   * Lifeguard: a suspicion starts at this multiple of the minimum timeout and shrinks
   * toward the minimum as other members confirm it independently (suspicionMultiplier
   * − 2 confirmations reach the minimum; clusters too small for that use the minimum).
   * Default 6 (memberlist). Higher protects a node that only one prober cannot reach;
   * costs up to this factor slower detection when few members confirm.
   */
  suspicionMaxTimeoutMultiplier?: number;
  /**
   * Period of full state exchange, ms: push-pull with one random live member (repairs
   * missed gossip) and one random dead member (reconnects healed partitions and
   * restarted nodes). Lower heals sooner; costs two exchanges of the whole member list
   * (about 150 bytes per member) per node per period.
   */
  pushPullIntervalMs: number;
  /**
   * Deadline of one push-pull (join, anti-entropy, reconnect, leave), ms. Default
   * 10 × probeTimeoutMs. Higher tolerates slow peers with big states; costs a longer
   * wait in `join` for a seed that does not answer.
   */
  pushPullTimeoutMs?: number;
  /**
   * Period of the gossip timer, ms: while updates are queued, they are sent to
   * `gossipFanout` random live members. Default probeIntervalMs / 5. Lower spreads news
   * faster; costs up to gossipFanout pings per period while news is queued (none idle).
   */
  gossipIntervalMs?: number;
  /**
   * Members sent queued updates per gossip period. Default 3 (memberlist). 0 spreads
   * news only on probes and push-pull. Also the number of members told of a graceful
   * leave (at least 1). More spreads faster; costs that many pings per period.
   */
  gossipFanout?: number;
  /**
   * An update is piggybacked at most retransmitMultiplier × ceil(log10(N + 1)) times.
   * Higher survives more message loss; costs fuller messages for longer.
   */
  retransmitMultiplier: number;
  /**
   * Updates piggybacked on one ping or ack at most. Bounds a message at roughly
   * 150 bytes × this; news beyond it waits for the next message (or push-pull).
   */
  gossipUpdatesMax: number;
  /**
   * Seeds that did not answer `join` are retried in the background, the delay doubling
   * from probeIntervalMs up to this, ms. Lower finds late seeds sooner; costs one
   * push-pull attempt per unreached seed per delay.
   */
  joinRetryMaxMs: number;
  /**
   * Members known at most, self, dead and left included (liveness is not ownership, so
   * nothing is forgotten). Default 1024. News of members beyond it is dropped with a
   * warning. Bounds memory and the push-pull message (about 150 bytes per member).
   */
  membersMax?: number;
}

/** A validated config: every optional field filled in, frozen. */
export type ResolvedMembershipConfig = Readonly<Required<MembershipConfig>>;

/** memberlist's DefaultLANConfig, trimmed to what Divan uses. */
export const lanProfile: Readonly<MembershipConfig> = Object.freeze({
  probeIntervalMs: 1000,
  probeTimeoutMs: 500,
  indirectChecks: 3,
  suspicionMultiplier: 4,
  suspicionMaxTimeoutMultiplier: 6,
  pushPullIntervalMs: 30_000,
  // gRPC on a LAN answers in milliseconds; 5 s rides out a GC pause or a cold channel.
  pushPullTimeoutMs: 5000,
  gossipIntervalMs: 200,
  gossipFanout: 3,
  retransmitMultiplier: 4,
  gossipUpdatesMax: 32,
  // Pods of a StatefulSet start minutes apart at worst; a 15 s retry is cheap.
  joinRetryMaxMs: 15_000,
  membersMax: 1024,
});

/**
 * Short timers for several nodes on one machine (tests): about three times faster than LAN.
 * The probe timeout stays well above a loaded 2-core machine's scheduling hiccups
 * (three node processes and a test runner share it), or live nodes get suspected.
 */
export const loopbackProfile: Readonly<MembershipConfig> = Object.freeze({
  probeIntervalMs: 300,
  probeTimeoutMs: 150,
  indirectChecks: 3,
  suspicionMultiplier: 4,
  // Smaller than LAN's 6 so that tests of five nodes detect a death within ~2 s.
  suspicionMaxTimeoutMultiplier: 3,
  pushPullIntervalMs: 1000,
  pushPullTimeoutMs: 500,
  gossipIntervalMs: 20,
  gossipFanout: 3,
  retransmitMultiplier: 4,
  gossipUpdatesMax: 32,
  joinRetryMaxMs: 500,
  membersMax: 1024,
});

const KEYS: readonly (keyof MembershipConfig)[] = [
  'probeIntervalMs',
  'probeTimeoutMs',
  'indirectChecks',
  'suspicionMultiplier',
  'suspicionMaxTimeoutMultiplier',
  'pushPullIntervalMs',
  'pushPullTimeoutMs',
  'gossipIntervalMs',
  'gossipFanout',
  'retransmitMultiplier',
  'gossipUpdatesMax',
  'joinRetryMaxMs',
  'membersMax',
];

/** Fills defaults, checks every field and their relations, returns a frozen copy. */
export function validateMembershipConfig(config: MembershipConfig): ResolvedMembershipConfig {
  for (const key of Object.keys(config)) {
    if (!(KEYS as readonly string[]).includes(key)) fail(`unknown key ${key}`);
  }
  const resolved: Required<MembershipConfig> = {
    probeIntervalMs: config.probeIntervalMs,
    probeTimeoutMs: config.probeTimeoutMs,
    indirectChecks: config.indirectChecks,
    suspicionMultiplier: config.suspicionMultiplier,
    suspicionMaxTimeoutMultiplier: config.suspicionMaxTimeoutMultiplier ?? 6,
    pushPullIntervalMs: config.pushPullIntervalMs,
    pushPullTimeoutMs: config.pushPullTimeoutMs ?? 10 * config.probeTimeoutMs,
    gossipIntervalMs: config.gossipIntervalMs ?? Math.max(1, Math.floor(config.probeIntervalMs / 5)),
    gossipFanout: config.gossipFanout ?? 3,
    retransmitMultiplier: config.retransmitMultiplier,
    gossipUpdatesMax: config.gossipUpdatesMax,
    joinRetryMaxMs: config.joinRetryMaxMs,
    membersMax: config.membersMax ?? 1024,
  };
  for (const key of KEYS) {
    const value = resolved[key];
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) fail(`${key} must be an integer, got ${String(value)}`);
  }
  const r = resolved;
  if (r.probeIntervalMs < 1) fail('probeIntervalMs must be at least 1');
  if (r.probeTimeoutMs < 1) fail('probeTimeoutMs must be at least 1');
  // The indirect probe needs the rest of the period: ping-reqs wait probeIntervalMs − probeTimeoutMs.
  if (2 * r.probeTimeoutMs > r.probeIntervalMs) fail('probeTimeoutMs must be at most half of probeIntervalMs');
  if (r.indirectChecks < 0 || r.indirectChecks > 16) fail('indirectChecks must be within 0..16');
  if (r.suspicionMultiplier < 1) fail('suspicionMultiplier must be at least 1');
  if (r.suspicionMaxTimeoutMultiplier < 1) fail('suspicionMaxTimeoutMultiplier must be at least 1');
  if (r.pushPullIntervalMs < r.probeIntervalMs) fail('pushPullIntervalMs must be at least probeIntervalMs');
  if (r.pushPullTimeoutMs < 1) fail('pushPullTimeoutMs must be at least 1');
  if (r.gossipIntervalMs < 1) fail('gossipIntervalMs must be at least 1');
  if (r.gossipFanout < 0 || r.gossipFanout > 16) fail('gossipFanout must be within 0..16');
  if (r.retransmitMultiplier < 1) fail('retransmitMultiplier must be at least 1');
  if (r.gossipUpdatesMax < 1) fail('gossipUpdatesMax must be at least 1');
  if (r.joinRetryMaxMs < r.probeIntervalMs) fail('joinRetryMaxMs must be at least probeIntervalMs');
  if (r.membersMax < 2) fail('membersMax must be at least 2');
  return Object.freeze(resolved);
}

function fail(reason: string): never {
  throw new RangeError(`membership config: ${reason}`);
}

/** The suspicion timeouts for a cluster of `memberCount` live members (self included). */
export interface SuspicionTimeouts {
  /** Timeout once enough members confirmed (or always, with none expected), ms. */
  minMs: number;
  /** Timeout of a suspicion nobody else has confirmed, ms. */
  maxMs: number;
  /** Independent confirmations that bring the timeout down to minMs. */
  confirmationsExpected: number;
}

/** memberlist's suspicionTimeout and its Lifeguard parameters (state.go, suspectNode). */
export function suspicionTimeouts(config: ResolvedMembershipConfig, memberCount: number): SuspicionTimeouts {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, memberCount)));
  const minMs = Math.floor(config.suspicionMultiplier * nodeScale * config.probeIntervalMs);
  // Confirmations can only come from members other than the suspect and the first suspector.
  let confirmationsExpected = Math.max(0, config.suspicionMultiplier - 2);
  if (memberCount - 2 < confirmationsExpected) confirmationsExpected = 0;
  const maxMs = confirmationsExpected === 0 ? minMs : config.suspicionMaxTimeoutMultiplier * minMs;
  return { minMs, maxMs, confirmationsExpected };
}

/**
 * Documented bound: a killed node is marked dead by every other member within this many
 * ms of its death, in a stable cluster of `memberCount` members (the dead one included):
 *
 *   (2N − 2) × probeIntervalMs   each live member probes every other once per shuffled
 *                                round of N − 1 periods; across two rounds the target can
 *                                come first then last, so a member's own probe of it has
 *                                failed (indirect checks included) 2N − 2 periods after
 *                                the death at the latest; gossip usually tells it sooner
 * + 1 × probeIntervalMs          allowance for late timers and round trips
 * + the longest suspicion        maxMs of `suspicionTimeouts` (its own, or one heard
 *                                earlier, which ends no later)
 *
 * Hearing "dead" from another member only makes it sooner.
 */
export function deadDetectionBoundMs(config: MembershipConfig, memberCount: number): number {
  if (!Number.isSafeInteger(memberCount) || memberCount < 1) throw new RangeError('memberCount must be a positive integer');
  const resolved = validateMembershipConfig(config);
  const probePhaseMs = (2 * memberCount - 1) * resolved.probeIntervalMs;
  return probePhaseMs + suspicionTimeouts(resolved, memberCount).maxMs;
}

/** Sends of one update: retransmitMultiplier × ceil(log10(N + 1)) (memberlist's retransmitLimit). */
export function retransmitLimit(config: ResolvedMembershipConfig, memberCount: number): number {
  return config.retransmitMultiplier * Math.max(1, Math.ceil(Math.log10(Math.max(0, memberCount) + 1)));
}
