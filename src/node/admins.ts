/**
 * The node's identity and admins, kept in node metadata: a uuid made at first start
 * (CouchDB's welcome `uuid`), the secret that signs session cookies when no cluster
 * secret is configured (with one, every node derives the same), and the admin
 * password hashes. There is no admin party: with no COUCHDB_USER/COUCHDB_PASSWORD and
 * no stored admin, an `admin` account with a random password is created and the
 * password printed once.
 */
import { randomBytes } from 'node:crypto';
import { createHmac } from 'node:crypto';
import { hashPassword, parseHash, verifyPasswordSync } from '../api/http/auth/password';
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
  options: { adminUser: string | undefined; adminPassword: string | undefined; pbkdf2Iterations: number; clusterSecret?: string },
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
    // In a cluster, every node given the same first admin stores the same hash (the salt
    // comes from the cluster secret): session cookies, signed with the user's salt, then
    // hold on every node.
    const salt = options.clusterSecret ? clusterSalt(options.clusterSecret, options.adminUser) : undefined;
    const stale = !current || !verifyPasswordSync(options.adminPassword, current) || (salt !== undefined && parseHash(current)?.salt !== salt);
    if (stale) {
      admins.set(options.adminUser, hashPassword(options.adminPassword, options.pbkdf2Iterations, salt));
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

/** The salt every node of a cluster uses for a configured admin's hash. */
function clusterSalt(clusterSecret: string, name: string): string {
  return createHmac('sha256', clusterSecret).update(`divan admin salt v1\0${name}`).digest('hex').slice(0, 32);
}

/**
 * Server admins as a node sees them: those of its own metadata (the configured first
 * admin), overlaid by the runtime admins every node shares through catalog settings
 * (`PUT /_node/…/_config/admins/NAME`). A runtime entry for a configured name replaces
 * its hash on every node; a runtime removal hides it.
 */
export class AdminDirectory {
  constructor(
    private readonly configured: ReadonlyMap<string, string>,
    private readonly settings: {
      setting(name: string): { value: string | null } | undefined;
      settings(prefix: string): Map<string, string>;
      putSetting(name: string, value: string | null): Promise<void>;
    },
  ) {}

  get(name: string): string | undefined {
    const runtime = this.settings.setting(ADMIN_SETTING_PREFIX + name);
    if (runtime) return runtime.value ?? undefined;
    return this.configured.get(name);
  }

  /** Every admin name with its stored hash. */
  all(): Map<string, string> {
    const out = new Map(this.configured);
    for (const name of [...out.keys()]) if (this.settings.setting(ADMIN_SETTING_PREFIX + name)?.value === null) out.delete(name);
    for (const [name, hash] of this.settings.settings(ADMIN_SETTING_PREFIX)) out.set(name, hash);
    return out;
  }

  /** Store a hash for `name` on every node (resolves once pushed to the live members). */
  set(name: string, hash: string): Promise<void> {
    return this.settings.putSetting(ADMIN_SETTING_PREFIX + name, hash);
  }

  remove(name: string): Promise<void> {
    return this.settings.putSetting(ADMIN_SETTING_PREFIX + name, null);
  }
}

export const ADMIN_SETTING_PREFIX = 'admins/';
