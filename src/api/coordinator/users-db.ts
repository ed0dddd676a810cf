/**
 * The `_users` database's own rules, built in (CouchDB keeps them in a
 * `_design/_auth` validate_doc_update; here they are native code, so no sandbox call
 * and no design document an admin could break).
 *
 * A user document is `org.couchdb.user:NAME` with `type: "user"`, `name: NAME` and
 * `roles` (strings). Rules, in order, with CouchDB's messages (all 403 forbidden):
 * - a named user who is no `_users` admin writing someone else's document is told it
 *   does not exist (404, CouchDB's before_doc_update); anonymous writers go on (sign-up);
 * - a deletion is allowed to admins and to the user themself, nothing else checked;
 * - `type` must be "user", `name` present, `roles` an array of strings;
 * - the id must be `org.couchdb.user:` + name, and a name never changes;
 * - for callers who are neither server nor `_users` admins: only their own document
 *   may be updated, roles cannot change, and a new document has no roles (anyone may
 *   sign up, if `_users`' security lets them write);
 * - no role may start with `_` but `_metrics`, no name may start with `_` or contain `:`.
 *
 * A `password` in a written document is never stored: `prepare` replaces it with a
 * PBKDF2-SHA256 hash (`password_scheme: "pbkdf2"`, `pbkdf2_prf: "sha256"`,
 * `iterations`, `salt`, `derived_key`), as CouchDB 3 does, before the write. The
 * hash runs off the event loop through the same bounded gate as logins.
 */
import { randomBytes } from 'node:crypto';
import { DivanError, ForbiddenError, NotFoundError } from '../../errors';
import type { DocEdit } from '../../shard/types';
import { leaves } from '../../shard/rev-tree';
import { readBody, readDocInfo } from './doc-open';
import { isDbAdmin, readSecurity } from './security';
import type { DbDirectory } from './shard-client';
import type { HookUserCtx, UpdateHook } from './update-hooks';

export const USERS_DB = '_users';
export const USER_PREFIX = 'org.couchdb.user:';
const KEY_BYTES = 32;

export interface UsersDbOptions {
  iterations: number;
  /** PBKDF2-SHA256 off the event loop (the login hash gate). */
  derive(password: string, salt: string, iterations: number, keyBytes: number): Promise<Buffer>;
  /** Told the names whose documents were written (their cached credentials go stale). */
  onWritten(names: readonly string[]): void;
}

export function usersDbHook(options: UsersDbOptions): UpdateHook {
  return {
    check: checkUserDoc,
    async prepare(edit: DocEdit): Promise<void> {
      const password = edit.body.password;
      if (edit.deleted || typeof password !== 'string') return;
      const salt = randomBytes(16).toString('hex');
      const key = await options.derive(String(password), salt, options.iterations, KEY_BYTES);
      // Every field of an earlier hash goes with the password.
      const { password: _p, password_sha: _sha, password_scheme: _s, pbkdf2_prf: _prf, salt: _salt, iterations: _i, derived_key: _k, ...rest } = edit.body;
      void _p, _sha, _s, _prf, _salt, _i, _k;
      edit.body = {
        ...rest,
        password_scheme: 'pbkdf2',
        pbkdf2_prf: 'sha256',
        iterations: options.iterations,
        salt,
        derived_key: key.toString('hex'),
      };
      delete edit.bodyJson;
    },
    written(ids: readonly string[]): void {
      options.onWritten(ids.filter((id) => id.startsWith(USER_PREFIX)).map((id) => id.slice(USER_PREFIX.length)));
    },
  };
}

function forbidden(reason: string): DivanError {
  return new ForbiddenError(reason);
}

const PASSWORD_SCHEMES = new Set(['simple', 'pbkdf2']);

/** The `_users` rules for one edit (the module comment lists them). */
export function checkUserDoc(
  newDoc: Record<string, unknown>,
  oldDoc: Record<string, unknown> | null,
  userCtx: HookUserCtx,
  secObj: Record<string, unknown>,
): DivanError | undefined {
  const id = newDoc._id as string;
  // Design documents of _users are checked as any design document (admins only).
  if (id.startsWith('_design/')) return undefined;
  const admin = isDbAdmin(userCtx, readSecurity(secObj));
  // A named user writing someone else's document is told it does not exist (CouchDB's
  // before_doc_update); anonymous writers go on to the rules (a sign-up).
  if (!admin && userCtx.name !== null && id !== USER_PREFIX + userCtx.name) return new NotFoundError('missing');
  if (newDoc._deleted === true) {
    if (admin || (userCtx.name !== null && oldDoc !== null && userCtx.name === oldDoc.name)) return undefined;
    return forbidden('Only admins may delete other user docs.');
  }
  if (newDoc.type !== 'user') return forbidden('doc.type must be user');
  const name = newDoc.name;
  if (typeof name !== 'string' || name === '') return forbidden('doc.name is required');
  const roles = newDoc.roles;
  if (roles === undefined || roles === null) return forbidden('doc.roles must exist');
  if (!Array.isArray(roles)) return forbidden('doc.roles must be an array');
  if (roles.some((r) => typeof r !== 'string')) return forbidden('doc.roles can only contain strings');
  if (id !== USER_PREFIX + name) return forbidden('Doc ID must be of the form org.couchdb.user:name');
  if (oldDoc && oldDoc.name !== name) return forbidden('Usernames can not be changed.');
  if (newDoc.password_sha !== undefined && newDoc.salt === undefined) return forbidden('Users with password_sha must have a salt.');
  const scheme = newDoc.password_scheme;
  if (scheme !== undefined && !PASSWORD_SCHEMES.has(scheme as string)) return forbidden(`Password scheme \`${String(scheme)}\` not supported.`);
  if (newDoc.password !== undefined && newDoc.password !== null && typeof newDoc.password !== 'string') {
    return forbidden(`Password value of '${JSON.stringify(newDoc.password)}' is invalid.`);
  }
  if (scheme === 'pbkdf2' && newDoc.password === undefined) {
    if (typeof newDoc.iterations !== 'number') return forbidden('iterations must be a number.');
    if (typeof newDoc.derived_key !== 'string') return forbidden('derived_key must be a string.');
  }
  if (!admin) {
    if (oldDoc) {
      if (userCtx.name !== name) return forbidden('You may only update your own user document.');
      const before = Array.isArray(oldDoc.roles) ? [...(oldDoc.roles as unknown[])].map(String).sort() : [];
      const after = [...(roles as string[])].sort();
      if (before.length !== after.length || before.some((r, i) => r !== after[i])) return forbidden('Only _admin may edit roles');
    } else if (roles.length > 0) {
      return forbidden('Only _admin may set roles');
    }
  }
  // `_metrics` is the one system role a user may hold (it opens /_node/…/_prometheus and _stats).
  if ((roles as string[]).some((r) => r.startsWith('_') && r !== '_metrics')) return forbidden('No system roles (starting with underscore) in users db.');
  if (name.startsWith('_')) return forbidden('Username may not start with underscore.');
  if (name.includes(':')) return forbidden('Character `:` is not allowed in usernames.');
  return undefined;
}

/**
 * The current winning revision of a user's document, or undefined (no `_users`, no
 * such user, deleted). `conflicted`: the document has more than one live leaf, and
 * CouchDB refuses such a user until the conflict is resolved (two sites may have
 * changed the password differently).
 */
export async function readUserDoc(directory: DbDirectory, name: string, timeoutMs: number): Promise<{ doc: Record<string, unknown>; conflicted: boolean } | undefined> {
  const db = await directory.open(USERS_DB);
  if (!db) return undefined;
  const id = USER_PREFIX + name;
  const info = await readDocInfo(db, id, { timeoutMs });
  if (!info || info.winner.deleted) return undefined;
  const body = await readBody(db, id, info.winner.rev);
  if (body === undefined) return undefined;
  const conflicted = leaves(info.tree).filter((leaf) => !leaf.deleted).length > 1;
  return { doc: JSON.parse(body) as Record<string, unknown>, conflicted };
}
