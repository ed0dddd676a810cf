/**
 * Authorization: the one table of which access each endpoint needs, and the one
 * function that enforces it before any route runs. Routes check nothing about who
 * is calling; a new endpoint gets a row here (or falls under the catch-all rows,
 * which are the strict ones: an unknown server endpoint needs a server admin, an
 * unknown database endpoint a member).
 *
 * The levels, weakest first:
 * - `anyone`: no check (the welcome, `/_up`, `/_session`, `/_uuids`).
 * - `authenticated`: any caller with a name (`POST /_replicate`: the route then checks
 *   the caller's access to each local database it names, as CouchDB 3.4+ does).
 * - `db_member`: a member of the database (security.ts): documents, queries,
 *   feeds, attachments, `_local`, reading `_security`.
 * - `db_admin`: a database admin: design documents, `_security` and `_revs_limit`
 *   writes, index creation; compaction and view cleanup check membership first and
 *   answer 401 "You are not a server or db admin." to anyone else, as CouchDB does.
 * - `metrics`: a server admin or the `_metrics` role (`/_node/…/_stats`,
 *   `_system`, `_prometheus`), so a monitoring account needs no admin rights.
 * - `server_admin`: the `_admin` role: creating and deleting databases, `_all_dbs`,
 *   `/_node/…`, cluster operations, purge, and any server endpoint not listed.
 * - `user_doc`: `_users/org.couchdb.user:NAME`. The user NAME reaches their own
 *   document without being a member of `_users`; `_users` admins reach every one.
 *   Anyone else who is a member may only write (a sign-up, which the `_users` rules in
 *   users-db.ts then check); reading another user's document answers 404, as
 *   CouchDB hides it.
 *
 * `_users` and `_replicator` hold credentials: their `_all_docs` and `_changes` need a
 * server admin, and everything else of `_users` but its info and the documents above
 * needs a `_users` admin (CouchDB filters such reads per document; refusing them is
 * simpler and leaks nothing).
 *
 * The first row that matches the method and path decides. Answers as CouchDB's: a
 * caller who presented no credentials gets 401, an authenticated one 403, with
 * CouchDB's reasons; a server-admin endpoint answers 401 to both.
 *
 * A request for a database that does not exist passes the check (the route answers
 * 404, as CouchDB does), except where the row needs a server admin.
 */
import { ForbiddenError, NotFoundError, UnauthorizedError } from '../../../errors';
import type { UserCtx } from '../context';
import { SYSTEM_DBS } from '../../coordinator/db-admin';
import { USER_PREFIX } from '../../coordinator/users-db';
import { isDbAdmin, isMember, isServerAdmin, readSecurity, SecurityObject } from '../../coordinator/security';

export type Need = 'anyone' | 'authenticated' | 'db_member' | 'db_admin' | 'compact' | 'metrics' | 'server_admin' | 'user_doc';

/** A path pattern token: a literal segment, or one of these. */
const DB = Symbol('database name');
const ANY = Symbol('one segment');
const REST = Symbol('any further segments, or none');
const SERVER = Symbol('a server endpoint: one segment starting with _, not a system database');
const USER_DOC = Symbol('org.couchdb.user:NAME');
type Token = string | typeof DB | typeof ANY | typeof REST | typeof SERVER | typeof USER_DOC;

interface Rule {
  methods?: readonly string[];
  path: readonly Token[];
  need: Need;
}

const WRITE = ['PUT', 'POST', 'DELETE', 'COPY'] as const;

export { SYSTEM_DBS };


/** The table. Read top to bottom; the first match decides. */
export const RULES: readonly Rule[] = [
  // ---- server ----
  { path: [], need: 'anyone' },
  { path: ['_up'], need: 'anyone' },
  { path: ['_session'], need: 'anyone' },
  { path: ['_uuids'], need: 'anyone' },
  { methods: ['GET', 'HEAD'], path: ['_utils', REST], need: 'anyone' },
  { methods: ['POST'], path: ['_replicate'], need: 'authenticated' },
  { methods: ['GET', 'HEAD'], path: ['_node', ANY, '_stats', REST], need: 'metrics' },
  { methods: ['GET', 'HEAD'], path: ['_node', ANY, '_system'], need: 'metrics' },
  { methods: ['GET', 'HEAD'], path: ['_node', ANY, '_prometheus'], need: 'metrics' },
  // _all_dbs, _dbs_info, _node, _active_tasks, _membership, _replicate, _scheduler,
  // _reshard, _db_updates, _cluster_setup and anything else.
  { path: [SERVER, REST], need: 'server_admin' },

  // ---- system databases ----
  { path: ['_users', USER_DOC, REST], need: 'user_doc' },
  { path: ['_users', '_all_docs', REST], need: 'server_admin' },
  { path: ['_users', '_changes'], need: 'server_admin' },
  { path: ['_replicator', '_all_docs', REST], need: 'server_admin' },
  { path: ['_replicator', '_changes'], need: 'server_admin' },
  { methods: ['GET', 'HEAD'], path: ['_users'], need: 'db_member' },
  { methods: ['PUT', 'DELETE'], path: ['_users'], need: 'server_admin' },
  { methods: ['POST'], path: ['_users'], need: 'db_member' },
  { path: ['_users', REST], need: 'db_admin' },

  // ---- databases ----
  { methods: ['PUT', 'DELETE'], path: [DB], need: 'server_admin' },
  { path: [DB], need: 'db_member' },
  { methods: ['PUT'], path: [DB, '_security'], need: 'db_admin' },
  { methods: ['PUT'], path: [DB, '_revs_limit'], need: 'db_admin' },
  { path: [DB, '_purge'], need: 'server_admin' },
  { path: [DB, '_purged_infos_limit'], need: 'server_admin' },
  { path: [DB, '_purged_infos'], need: 'server_admin' },
  { path: [DB, '_compact', REST], need: 'compact' },
  { path: [DB, '_view_cleanup'], need: 'compact' },
  { path: [DB, '_sync_shards'], need: 'server_admin' },
  { path: [DB, '_rebalance'], need: 'server_admin' },
  // Mango indexes are design documents.
  { methods: ['POST', 'DELETE'], path: [DB, '_index', REST], need: 'db_admin' },
  // View queries by POST read; everything else written under _design/ is a design document.
  { path: [DB, '_design', ANY, '_view', REST], need: 'db_member' },
  { methods: WRITE, path: [DB, '_design', REST], need: 'db_admin' },
  { path: [DB, REST], need: 'db_member' },
];

/** The row of the table that decides a request. */
export function needFor(method: string, segments: readonly string[]): Need {
  for (const rule of RULES) {
    if (rule.methods && !rule.methods.includes(method)) continue;
    if (matches(rule.path, segments)) return rule.need;
  }
  return 'server_admin';
}

function matches(pattern: readonly Token[], segments: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const token = pattern[i]!;
    if (token === REST) return true;
    const segment = segments[i];
    if (segment === undefined) return false;
    if (token === DB) {
      if (segment.startsWith('_') && !SYSTEM_DBS.has(segment)) return false;
    } else if (token === SERVER) {
      if (!segment.startsWith('_') || SYSTEM_DBS.has(segment)) return false;
    } else if (token === USER_DOC) {
      if (!segment.startsWith(USER_PREFIX)) return false;
    } else if (token !== ANY && token !== segment) return false;
  }
  return segments.length === pattern.length;
}

/** What the check found about the caller and the request's database. */
export interface Decision {
  need: Need;
  /** The caller is an admin of the request's database (design document writes need it). */
  dbAdmin: boolean;
}

/**
 * Enforce the table for one request. `security` reads the security object of a
 * database (undefined when it does not exist).
 */
export async function authorize(
  method: string,
  segments: readonly string[],
  user: UserCtx,
  security: (db: string) => Promise<SecurityObject | undefined>,
): Promise<Decision> {
  const need = needFor(method, segments);
  if (isServerAdmin(user)) return { need, dbAdmin: true };
  switch (need) {
    case 'anyone':
      return { need, dbAdmin: false };
    case 'authenticated':
      if (user.name === null) throw new UnauthorizedError('Authentication required.');
      return { need, dbAdmin: false };
    case 'metrics':
      if (user.roles.includes('_metrics')) return { need, dbAdmin: false };
      throw new UnauthorizedError('You are not a server admin.');
    case 'server_admin':
      throw new UnauthorizedError('You are not a server admin.');
  }
  const sec = await security(segments[0]!);
  if (!sec) return { need, dbAdmin: false };
  const dbAdmin = isDbAdmin(user, sec);
  if (dbAdmin) return { need, dbAdmin };
  switch (need) {
    case 'db_admin':
      throw refusal(user, 'You are not a db or server admin.');
    case 'compact':
      if (!isMember(user, sec)) throw memberRefusal(user);
      throw new UnauthorizedError('You are not a server or db admin.');
    case 'user_doc': {
      const own = user.name !== null && segments[1] === USER_PREFIX + user.name;
      if (own) return { need, dbAdmin };
      if (!isMember(user, sec)) throw memberRefusal(user);
      // Someone else's document: never shown; a write goes on to the _users rules (a sign-up).
      if (method === 'GET' || method === 'HEAD' || user.name !== null) throw new NotFoundError('missing');
      return { need, dbAdmin };
    }
    default:
      if (!isMember(user, sec)) throw memberRefusal(user);
      return { need, dbAdmin };
  }
}

/** CouchDB's answer to a caller who is not a member: 401 when anonymous, 403 otherwise. */
export function memberRefusal(user: UserCtx): Error {
  return user.name === null ? new UnauthorizedError('You are not authorized to access this db.') : new ForbiddenError('You are not allowed to access this db.');
}

function refusal(user: UserCtx, reason: string): Error {
  return user.name === null ? new UnauthorizedError(reason) : new ForbiddenError(reason);
}

export { readSecurity };
