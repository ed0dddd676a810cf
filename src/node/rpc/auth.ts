/**
 * Inter-node authentication. Every call carries `x-divan-auth: <unix ms>.<hmac>`,
 * the HMAC-SHA256 of the time and the method path under the cluster secret. The
 * secret never crosses the wire and is never logged; a token is accepted within
 * `skewMs` of the receiver's clock (replay is bounded to that window, and only to
 * the same method). Callers without a valid token get UNAUTHENTICATED.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const AUTH_HEADER = 'x-divan-auth';

export function authToken(secret: string, methodPath: string, nowMs: number): string {
  return `${nowMs}.${createHmac('sha256', secret).update(`${nowMs}\n${methodPath}`).digest('base64url')}`;
}

export function checkToken(secret: string, methodPath: string, token: unknown, nowMs: number, skewMs: number): boolean {
  if (typeof token !== 'string') return false;
  const dot = token.indexOf('.');
  if (dot <= 0) return false;
  const sentMs = Number(token.slice(0, dot));
  if (!Number.isSafeInteger(sentMs) || Math.abs(nowMs - sentMs) > skewMs) return false;
  const expected = Buffer.from(authToken(secret, methodPath, sentMs));
  const actual = Buffer.from(token);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
