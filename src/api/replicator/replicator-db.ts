/**
 * The `_replicator` database's write rule (an update hook, update-hooks.ts): jobs of
 * its documents run with server-admin rights, so only server admins may write them
 * (CouchDB runs them as the writer instead; until that is built, other writers are
 * refused). A document must also describe a replication that can run: its fields are
 * checked as `POST /_replicate` checks them, and refused with the reason (403).
 */
import { DivanError, ForbiddenError } from '../../errors';
import type { UpdateHook } from '../coordinator/update-hooks';
import { parseReplication, replicationFields } from './request';

export function replicatorDbHook(keysMax: number): UpdateHook {
  return {
    check(newDoc, _oldDoc, userCtx) {
      if (!userCtx.roles.includes('_admin')) return new ForbiddenError('Only server admins may write replication documents.');
      const id = newDoc._id as string;
      if (newDoc._deleted === true || id.startsWith('_design/')) return undefined;
      try {
        parseReplication(replicationFields(newDoc), keysMax);
      } catch (err) {
        if (err instanceof DivanError) return new ForbiddenError(err.reason);
        throw err;
      }
      return undefined;
    },
    async prepare() {},
    written() {},
  };
}
