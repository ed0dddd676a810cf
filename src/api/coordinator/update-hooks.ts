/**
 * What a system database adds to the client-write path (validate.ts runs it), by
 * database name. Today `_users` (users-db.ts); `_replicator` brings its own later.
 *
 * For each client edit of such a database, in this order:
 * 1. `check`: built-in rules, with the same arguments as a validate_doc_update
 *    (new document, old document, userCtx, security object). A refusal stops the edit
 *    before anything costly runs.
 * 2. `prepare`: rewrite the accepted edit before it is stored (hash a password). The
 *    database's own validate_doc_update functions then see the rewritten document.
 * 3. `written`: told the ids that were written, once the write is answered (caches).
 */
import type { DivanError } from '../../errors';
import type { DocEdit } from '../../shard/types';

export interface HookUserCtx {
  db: string;
  name: string | null;
  roles: string[];
}

export interface UpdateHook {
  /** The error that refuses the edit, or undefined. */
  check(newDoc: Record<string, unknown>, oldDoc: Record<string, unknown> | null, userCtx: HookUserCtx, secObj: Record<string, unknown>): DivanError | undefined;
  prepare(edit: DocEdit): Promise<void>;
  written(ids: readonly string[]): void;
}

export type UpdateHooks = ReadonlyMap<string, UpdateHook>;
