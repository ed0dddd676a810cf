/**
 * Which of two statements about the same member wins (SWIM's override rules, with
 * memberlist's dead ≥ and Divan's `left`).
 *
 *   alive(i)   overrides anything at j < i      only the member raises its incarnation,
 *                                               so higher means it spoke after the rest
 *   suspect(i) overrides alive(j) at j ≤ i,     a suspicion of an older suspicion
 *              suspect(j) at j < i              restarts at the newer incarnation
 *   dead(i)    overrides alive/suspect at j ≤ i, dead(j) at j < i (records the newer number)
 *   left(i)    overrides alive/suspect/dead at j ≤ i, left(j) at j < i
 *
 * Nothing but a higher alive overrides dead or left: neither suspicion nor rumour
 * revives a member, only the member itself by refuting. Pure; no I/O.
 */
import type { MemberState } from './types';

export interface Statement {
  state: MemberState;
  incarnation: number;
}

export function supersedes(incoming: Statement, current: Statement): boolean {
  const i = incoming.incarnation;
  const j = current.incarnation;
  switch (incoming.state) {
    case 'alive':
      return i > j;
    case 'suspect':
      if (current.state === 'alive') return i >= j;
      if (current.state === 'suspect') return i > j;
      return false; // a suspicion never revives the dead or the departed
    case 'dead':
      if (current.state === 'alive' || current.state === 'suspect') return i >= j;
      if (current.state === 'dead') return i > j;
      return false; // left is final for its incarnation
    case 'left':
      if (current.state === 'left') return i > j;
      return i >= j;
  }
}
