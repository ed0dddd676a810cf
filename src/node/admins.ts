/**
 * The node's identity and admins, kept in node metadata: a uuid made at first start
 * (CouchDB's welcome `uuid`), the secret that signs session cookies when no cluster
 * secret is configured (with one, every node derives the same), and the admin
 * password hashes. There is no admin party: with no COUCHDB_USER/COUCHDB_PASSWORD and
 * no stored admin, an `admin` account with a random password is created and the
 * password printed once.
 */
import { randomBytes } from 'node:crypto';
import { hashPassword, verifyPasswordSync } from '../api/http/auth/password';
import { nodeMetaKey } from '../storage/keys';
import type { Store } from '../storage/store';

export interface Identity {
  uuid: string;
  sessionSecret: Buffer;
  admins: Map<string, string>;
  /** Set when this start created a password the operator has not seen yet. */
  generatedPassword?: { user: string; password: string };
}

export async function loadIdentity(
  store: Store,
  options: { adminUser: string | undefined; adminPassword: string | undefined; pbkdf2Iterations: number },
): Promise<Identity> {
  const writes: { key: string; value: string }[] = [];
  let uuid = (await store.get(nodeMetaKey('uuid')))?.toString('utf8');
  if (!uuid) {
    uuid = randomBytes(16).toString('hex');
    writes.push({ key: 'uuid', value: uuid });
  }
  let secretHex = (await store.get(nodeMetaKey('session_secret')))?.toString('utf8');
  if (!secretHex) {
    secretHex = randomBytes(32).toString('hex');
    writes.push({ key: 'session_secret', value: secretHex });
  }
  const stored = (await store.get(nodeMetaKey('admins')))?.toString('utf8');
  const admins = new Map<string, string>(Object.entries(stored ? (JSON.parse(stored) as Record<string, string>) : {}));
  let generatedPassword: Identity['generatedPassword'];
  if (options.adminUser !== undefined && options.adminPassword !== undefined) {
    const current = admins.get(options.adminUser);
    if (!current || !verifyPasswordSync(options.adminPassword, current)) {
      admins.set(options.adminUser, hashPassword(options.adminPassword, options.pbkdf2Iterations));
      writes.push({ key: 'admins', value: JSON.stringify(Object.fromEntries(admins)) });
    }
  } else if (admins.size === 0) {
    const password = randomBytes(12).toString('base64url');
    admins.set('admin', hashPassword(password, options.pbkdf2Iterations));
    writes.push({ key: 'admins', value: JSON.stringify(Object.fromEntries(admins)) });
    generatedPassword = { user: 'admin', password };
  }
  if (writes.length > 0) await store.write(writes.map((w) => ({ type: 'put' as const, key: nodeMetaKey(w.key), value: w.value })));
  const identity: Identity = { uuid, sessionSecret: Buffer.from(secretHex, 'hex'), admins };
  if (generatedPassword) identity.generatedPassword = generatedPassword;
  return identity;
}
