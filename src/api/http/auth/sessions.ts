/**
 * Cookie sessions (`AuthSession`), as CouchDB 3 makes them: the cookie holds the
 * name and the time it was made (hex seconds), signed with HMAC-SHA256 under the
 * server secret joined with the user's password salt. So a password change ends
 * every session of that user on every node, and no node needs to remember sessions.
 *
 * Valid `timeoutSec` after it was made; like CouchDB, a fresh cookie is sent once a
 * tenth of that has passed (a client in use never sees its session end). With
 * persistent cookies (CouchDB's `allow_persistent_cookies`, on by default) the cookie
 * carries `Expires`/`Max-Age`; without, it ends with the browser session.
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

/** A cookie's claims, before its signature is checked against the user's salt. */
export interface CookieClaims {
  name: string;
  timeHex: string;
  mac: Buffer;
}

export interface CookieOptions {
  timeoutSec: number;
  persistent: boolean;
}

export class CookieSessions {
  constructor(
    private readonly secret: Buffer,
    private readonly options: CookieOptions,
  ) {}

  cookieFor(name: string, salt: string): string {
    const timeHex = Math.floor(Date.now() / 1000).toString(16).toUpperCase();
    const payload = `${name}:${timeHex}`;
    const value = Buffer.from(`${payload}:${this.mac(payload, salt)}`, 'utf8').toString('base64url');
    const { timeoutSec, persistent } = this.options;
    // Expires as well as Max-Age: CouchDB sends both, and some clients (nano) read only Expires.
    const lifetime = persistent ? `; Expires=${new Date(Date.now() + timeoutSec * 1000).toUTCString()}; Max-Age=${timeoutSec}` : '';
    return `AuthSession=${value}; Version=1${lifetime}; Path=/; HttpOnly; SameSite=Lax`;
  }

  clearCookie(): string {
    return 'AuthSession=; Version=1; Path=/; HttpOnly; SameSite=Lax; Max-Age=0';
  }

  /** The claims of a cookie value, or undefined when it is not one of ours in shape. */
  parse(token: string): CookieClaims | undefined {
    const decoded = Buffer.from(token, 'base64url').toString('utf8');
    const last = decoded.lastIndexOf(':');
    const middle = decoded.lastIndexOf(':', last - 1);
    if (last < 0 || middle < 0) return undefined;
    const timeHex = decoded.slice(middle + 1, last);
    if (!/^[0-9A-Fa-f]{1,12}$/.test(timeHex)) return undefined;
    return { name: decoded.slice(0, middle), timeHex, mac: Buffer.from(decoded.slice(last + 1), 'utf8') };
  }

  /** Whether the claims are signed for this salt and unexpired; `renew` once a tenth of the lifetime has passed. */
  check(claims: CookieClaims, salt: string): { renew: boolean } | undefined {
    const expected = Buffer.from(this.mac(`${claims.name}:${claims.timeHex}`, salt), 'utf8');
    if (claims.mac.length !== expected.length || !timingSafeEqual(claims.mac, expected)) return undefined;
    const ageSec = Math.floor(Date.now() / 1000) - parseInt(claims.timeHex, 16);
    const { timeoutSec } = this.options;
    if (!(ageSec >= 0 && ageSec < timeoutSec)) return undefined;
    return { renew: ageSec >= timeoutSec / 10 };
  }

  private mac(payload: string, salt: string): string {
    return createHmac('sha256', this.secret).update(salt).update('\0').update(payload).digest('base64url');
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
