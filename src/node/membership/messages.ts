/**
 * Checking what arrives from the network before the protocol looks at it.
 *
 * Whole messages with the wrong shape are refused (a TypeError: the caller's fault);
 * single malformed updates inside a good message are skipped, so one bad entry cannot
 * hide the rest. Proto3 defaults are normalised: an empty zone or suspector is absent.
 */
import { MEMBER_STATES, type AckMessage, type MemberInfo, type MemberUpdate, type PingMessage } from './types';

const NAME_CHARS_MAX = 512;

function isName(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= NAME_CHARS_MAX;
}

/** A well-formed copy of one update, or undefined. Extra fields are dropped. */
export function parseUpdate(raw: unknown): MemberUpdate | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const u = raw as Record<string, unknown>;
  if (!isName(u.name) || !isName(u.address) || typeof u.httpAddress !== 'string') return undefined;
  const incarnation = typeof u.incarnation === 'string' ? Number(u.incarnation) : u.incarnation;
  if (typeof incarnation !== 'number' || !Number.isSafeInteger(incarnation) || incarnation < 0) return undefined;
  if (!MEMBER_STATES.includes(u.state as never)) return undefined;
  if (u.zone !== undefined && u.zone !== null && typeof u.zone !== 'string') return undefined;
  if (u.suspectedBy !== undefined && u.suspectedBy !== null && typeof u.suspectedBy !== 'string') return undefined;
  const update: MemberUpdate = {
    name: u.name,
    address: u.address,
    httpAddress: u.httpAddress,
    incarnation,
    state: u.state as MemberUpdate['state'],
  };
  if (typeof u.zone === 'string' && u.zone !== '') update.zone = u.zone;
  if (typeof u.suspectedBy === 'string' && u.suspectedBy !== '' && update.state === 'suspect') {
    update.suspectedBy = u.suspectedBy;
  }
  return update;
}

export function checkPing(raw: unknown): PingMessage {
  if (typeof raw !== 'object' || raw === null) throw new TypeError('ping: not an object');
  const m = raw as Record<string, unknown>;
  if (!isName(m.from)) throw new TypeError('ping: from must be a node name');
  const seqNo = typeof m.seqNo === 'string' ? Number(m.seqNo) : m.seqNo;
  if (typeof seqNo !== 'number' || !Number.isSafeInteger(seqNo)) throw new TypeError('ping: seqNo must be an integer');
  if (!Array.isArray(m.updates)) throw new TypeError('ping: updates must be an array');
  if (m.target !== undefined && m.target !== '' && !isName(m.target)) throw new TypeError('ping: bad target');
  const message: PingMessage = { from: m.from, seqNo, updates: m.updates as MemberUpdate[] };
  if (typeof m.target === 'string' && m.target !== '') message.target = m.target;
  return message;
}

export function checkAck(raw: unknown): AckMessage {
  const { from, seqNo, updates } = checkPing(raw);
  return { from, seqNo, updates };
}

export function checkTarget(raw: unknown): { name: string; address: string } {
  if (typeof raw !== 'object' || raw === null) throw new TypeError('ping-req: target must be an object');
  const t = raw as Record<string, unknown>;
  if (!isName(t.name) || !isName(t.address)) throw new TypeError('ping-req: target needs a name and an address');
  return { name: t.name, address: t.address };
}

export function checkState(raw: unknown): unknown[] {
  if (!Array.isArray(raw)) throw new TypeError('push-pull: state must be an array');
  return raw;
}

/** The gossiped part of a member (no local bookkeeping), zone only when known. */
export function toInfo(member: MemberInfo): MemberInfo {
  const info: MemberInfo = {
    name: member.name,
    address: member.address,
    httpAddress: member.httpAddress,
    incarnation: member.incarnation,
    state: member.state,
  };
  if (member.zone !== undefined) info.zone = member.zone;
  return info;
}
