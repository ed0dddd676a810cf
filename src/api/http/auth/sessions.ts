/**
 * Cookie sessions (`AuthSession`), as CouchDB: the cookie holds the name and the
 * time it was made, signed with HMAC-SHA256; valid `timeoutSec`, renewed once half
 * of it has passed.
 *
 * Every node of a cluster must sign with the same secret, or a cookie made by one
 * node is refused by the others (CouchDB asks for the same `[chttpd_auth] secret` on
 * every node). `sessionSecretFromCluster` derives it from the cluster secret, which
 * every node already shares; a node without a configured cluster secret keeps its own
 * random one.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export function sessionSecretFromCluster(clusterSecret: string): Buffer {
  return createHmac('sha256', clusterSecret).update('divan session cookie v1').digest();
}

export interface VerifiedCookie {
  name: string;
  /** Past half its life: send a fresh one. */
  renew: boolean;
}

export class CookieSessions {
  constructor(
    private readonly secret: Buffer,
    private readonly timeoutSec: number,
  ) {}

  cookieFor(name: string): string {
    const timeHex = Math.floor(Date.now() / 1000).toString(16).toUpperCase();
    const payload = `${name}:${timeHex}`;
    const value = Buffer.from(`${payload}:${this.mac(payload)}`, 'utf8').toString('base64url');
    // Expires as well as Max-Age: CouchDB sends both, and some clients (nano) read only Expires.
    const expires = new Date(Date.now() + this.timeoutSec * 1000).toUTCString();
    return `AuthSession=${value}; Version=1; Expires=${expires}; Max-Age=${this.timeoutSec}; Path=/; HttpOnly; SameSite=Lax`;
  }

  clearCookie(): string {
    return 'AuthSession=; Version=1; Path=/; HttpOnly; SameSite=Lax; Max-Age=0';
  }

  /** The name in a well-signed, unexpired cookie value; undefined otherwise. */
  verify(token: string): VerifiedCookie | undefined {
    const decoded = Buffer.from(token, 'base64url').toString('utf8');
    const last = decoded.lastIndexOf(':');
    const middle = decoded.lastIndexOf(':', last - 1);
    if (last < 0 || middle < 0) return undefined;
    const name = decoded.slice(0, middle);
    const timeHex = decoded.slice(middle + 1, last);
    const mac = Buffer.from(decoded.slice(last + 1), 'utf8');
    const expected = Buffer.from(this.mac(`${name}:${timeHex}`), 'utf8');
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return undefined;
    const ageSec = Math.floor(Date.now() / 1000) - parseInt(timeHex, 16);
    if (!(ageSec >= 0 && ageSec < this.timeoutSec)) return undefined;
    return { name, renew: ageSec > this.timeoutSec / 2 };
  }

  private mac(payload: string): string {
    return createHmac('sha256', this.secret).update(payload).digest('base64url');
  }
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}
