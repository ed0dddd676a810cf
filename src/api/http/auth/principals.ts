/**
 * Who may log in, and how their password is checked: server admins (configured, or
 * set at runtime through `/_node/…/_config/admins`, see admins-config) and the users of
 * `_users`. Both become a `Principal`: a name, its roles, and a `PasswordCheck`.
 *
 * Admins come first, as in CouchDB: a `_users` document cannot shadow an admin.
 *
 * User documents are read through `UsersCache`: bounded (LRU), each entry kept at most
 * `ttlMs`, so a password or role change made through another node takes effect here
 * within `ttlMs`; one written through this node takes effect at once (`forget`).
 * Unknown names are cached too (an attacker's guesses do not each cost a read), and
 * concurrent lookups of one name share one read.
 */
import { parseHash } from './password';

/** How a stored password is checked. `fingerprint` changes whenever the password does. */
export interface PasswordCheck {
  kind: 'pbkdf2';
  salt: string;
  iterations: number;
  /** Node's digest name: sha1, sha256, sha512. */
  digest: string;
  key: Buffer;
  fingerprint: string;
}

export interface Principal {
  name: string;
  roles: string[];
  /** Undefined: the principal has no usable password (it cannot log in). */
  password: PasswordCheck | undefined;
  /** A user document with conflicting live revisions: refused until resolved, as CouchDB does. */
  conflicted?: boolean;
}

export const CONFLICTED_USER_REASON = 'User document conflicts must be resolved before the document is used for authentication purposes.';

export function adminPrincipal(name: string, stored: string): Principal {
  const parsed = parseHash(stored);
  return {
    name,
    roles: ['_admin'],
    password: parsed ? { kind: 'pbkdf2', salt: parsed.salt, iterations: parsed.iterations, digest: 'sha256', key: parsed.key, fingerprint: stored } : undefined,
  };
}

const PRF_DIGESTS: Readonly<Record<string, string>> = { sha: 'sha1', sha1: 'sha1', sha224: 'sha224', sha256: 'sha256', sha384: 'sha384', sha512: 'sha512' };
/** Iterations a stored user hash may ask for at most (a document could otherwise make each login cost minutes). */
export const USER_ITERATIONS_MAX = 10_000_000;

/** A `_users` document as a principal (CouchDB's pbkdf2 scheme; the PRF defaults to sha1, as CouchDB 2 wrote it). */
export function userPrincipal(name: string, doc: Record<string, unknown>): Principal {
  // A system role in a user document (one replicated in, say) grants nothing, but `_metrics`.
  const roles = Array.isArray(doc.roles) ? doc.roles.filter((r): r is string => typeof r === 'string' && (!r.startsWith('_') || r === '_metrics')) : [];
  return { name, roles, password: passwordOf(doc) };
}

function passwordOf(doc: Record<string, unknown>): PasswordCheck | undefined {
  if (doc.password_scheme !== 'pbkdf2') return undefined;
  const { salt, derived_key: derivedKey, iterations } = doc;
  const digest = PRF_DIGESTS[typeof doc.pbkdf2_prf === 'string' ? doc.pbkdf2_prf : 'sha'];
  if (typeof salt !== 'string' || typeof derivedKey !== 'string' || !/^[0-9a-f]+$/i.test(derivedKey) || !digest) return undefined;
  const count = Number(iterations);
  if (!Number.isSafeInteger(count) || count < 1 || count > USER_ITERATIONS_MAX) return undefined;
  return { kind: 'pbkdf2', salt, iterations: count, digest, key: Buffer.from(derivedKey, 'hex'), fingerprint: `${derivedKey}:${salt}:${count}` };
}


interface CacheEntry {
  principal: Principal | undefined;
  expiresMs: number;
}

export class UsersCache {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly reading = new Map<string, Promise<Principal | undefined>>();
  /** Bumped by `forget`: a read that began before does not store its (maybe stale) answer. */
  private generation = 0;

  constructor(
    /** Reads a user's document (undefined: no such user). */
    private readonly read: (name: string) => Promise<{ doc: Record<string, unknown>; conflicted: boolean } | undefined>,
    private readonly entriesMax: number,
    private readonly ttlMs: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  async get(name: string): Promise<Principal | undefined> {
    const entry = this.entries.get(name);
    if (entry && entry.expiresMs > Date.now()) return entry.principal;
    let pending = this.reading.get(name);
    if (!pending) {
      const generation = this.generation;
      pending = this.read(name)
        .then((found) => (found ? { ...userPrincipal(name, found.doc), ...(found.conflicted ? { conflicted: true } : {}) } : undefined))
        .then(
          (principal) => {
            this.reading.delete(name);
            if (generation === this.generation) this.store(name, principal);
            return principal;
          },
          (err: unknown) => {
            this.reading.delete(name);
            throw err;
          },
        );
      this.reading.set(name, pending);
    }
    return pending;
  }

  /** The user's document changed through this node: read it again on next use. */
  forget(name: string): void {
    this.generation++;
    this.entries.delete(name);
  }

  private store(name: string, principal: Principal | undefined): void {
    this.entries.delete(name);
    while (this.entries.size >= this.entriesMax) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(name, { principal, expiresMs: Date.now() + this.ttlMs });
  }
}
