/**
 * SWIM membership: who is in the cluster and who is alive. See membership.ts for the
 * protocol, config.ts for its settings and their profiles.
 */
export * from './types';
export * from './config';
export { Membership, type MembershipOptions, type ChangeListener } from './membership';
export { supersedes } from './precedence';
export { DeadlineError, MembershipStoppedError } from './deadlines';
export { systemClock, Timer, Ticker } from './timers';
export { ManualClock } from './manual-clock';
export { MemoryNetwork, NetworkError } from './memory-network';
