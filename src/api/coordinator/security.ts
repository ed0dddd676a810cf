/**
 * A database's security object, as CouchDB reads it:
 *
 *     { "admins":  { "names": [...], "roles": [...] },
 *       "members": { "names": [...], "roles": [...] } }
 *
 * - A **database admin** is a server admin (role `_admin`), or a user named in
 *   `admins.names`, or holding a role of `admins.roles`.
 * - A **member** is a database admin, or named in `members.names`, or holding a role
 *   of `members.roles`. When `members` lists neither names nor roles, everyone is a
 *   member, anonymous callers included: the database is public.
 *
 * New databases start admin-only, as CouchDB 3's `default_security = admin_only`
 * writes it: `_admin` is the only role in both lists, so only server admins get in
 * until someone sets `_security`. Databases made before this rule existed carry `{}`
 * and no `securityVersion`; they are read as admin-only too (before it, every
 * endpoint needed a server admin), so an upgrade never opens a database to the world.
 */
import { BadRequestError } from '../../errors';
import type { UserCtx } from './validate';

export interface SecurityList {
  names: readonly string[];
  roles: readonly string[];
}

export interface SecurityObject {
  admins: SecurityList;
  members: SecurityList;
}

/** What a new database's `_security` holds (CouchDB's `admin_only`). */
export function adminOnlySecurity(): Record<string, unknown> {
  return { members: { roles: ['_admin'] }, admins: { roles: ['_admin'] } };
}

/** The lists of a stored object; missing or malformed parts read as empty. */
export function readSecurity(stored: Record<string, unknown>): SecurityObject {
  return { admins: readList(stored.admins), members: readList(stored.members) };
}

function readList(part: unknown): SecurityList {
  const p = typeof part === 'object' && part !== null ? (part as Record<string, unknown>) : {};
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  return { names: strings(p.names), roles: strings(p.roles) };
}

export function isServerAdmin(user: UserCtx): boolean {
  return user.roles.includes('_admin');
}

export function isDbAdmin(user: UserCtx, security: SecurityObject): boolean {
  return isServerAdmin(user) || listed(user, security.admins);
}

export function isMember(user: UserCtx, security: SecurityObject): boolean {
  if (isDbAdmin(user, security)) return true;
  const { names, roles } = security.members;
  if (names.length === 0 && roles.length === 0) return true;
  return listed(user, security.members);
}

function listed(user: UserCtx, list: SecurityList): boolean {
  if (user.name !== null && list.names.includes(user.name)) return true;
  return user.roles.some((role) => list.roles.includes(role));
}

/**
 * Check a `PUT /{db}/_security` body: each of `admins` and `members`, when present,
 * an object whose `names` and `roles`, when present, are arrays of strings.
 */
export function checkSecurityBody(value: Record<string, unknown>): void {
  for (const section of ['admins', 'members']) {
    const part = value[section];
    if (part === undefined) continue;
    if (typeof part !== 'object' || part === null || Array.isArray(part)) throw new BadRequestError(`${section} must be a JSON object`);
    for (const field of ['names', 'roles']) {
      const list = (part as Record<string, unknown>)[field];
      if (list !== undefined && (!Array.isArray(list) || list.some((x) => typeof x !== 'string'))) {
        throw new BadRequestError(`${section}.${field} must be a JSON list of strings`);
      }
    }
  }
}
