/**
 * Databases: `PUT/GET/HEAD/DELETE/POST /db`, `_revs_limit`, `_security`,
 * `_ensure_full_commit`, and honest 501s for what is not built yet.
 */
import { BadRequestError, ForbiddenError, NotImplementedError } from '../../../errors';
import { checkSecurityBody } from '../../coordinator/security';
import { USERS_DB } from '../../coordinator/users-db';
import { createDb, dbInfo, validateDbName } from '../../coordinator/db-admin';
import type { Ctx } from '../context';
import { allow, openDb } from './common';
import { postDoc } from './doc';

export async function database(ctx: Ctx, name: string): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'PUT', 'DELETE', 'POST']);
  switch (ctx.method) {
    case 'PUT': {
      const q = ctx.qInt('q', ctx.services.node.q);
      const n = ctx.qInt('n', ctx.services.node.n);
      if (q < 1 || q > 256) throw new BadRequestError('q must be between 1 and 256');
      if (n < 1) throw new BadRequestError('n must be at least 1');
      await createDb(ctx.services.directory, name, { q, n });
      return ctx.send(201, { ok: true }, { Location: `http://${ctx.header('host') ?? 'localhost'}/${encodeURIComponent(name)}` });
    }
    case 'DELETE': {
      if (ctx.query.has('rev')) {
        throw new BadRequestError(
          'You tried to DELETE a database with a ?rev= parameter. Did you mean to DELETE a document instead?',
          'bad_request',
        );
      }
      validateDbName(name);
      await openDb(ctx, name);
      await ctx.services.directory.delete(name);
      return ctx.send(200, { ok: true });
    }
    case 'POST':
      return postDoc(ctx, await openDb(ctx, name));
    default:
      return ctx.send(200, await dbInfo(await openDb(ctx, name)));
  }
}

export async function revsLimit(ctx: Ctx, name: string): Promise<void> {
  allow(ctx, ['GET', 'PUT']);
  const db = await openDb(ctx, name);
  if (ctx.method === 'GET') return ctx.send(200, String(db.revsLimit));
  const value = await ctx.readJson();
  if (!Number.isSafeInteger(value) || (value as number) < 1) throw new BadRequestError('Limit must be a positive integer');
  await ctx.services.directory.setRevsLimit(name, value as number);
  ctx.send(200, { ok: true });
}

export async function security(ctx: Ctx, name: string): Promise<void> {
  allow(ctx, ['GET', 'PUT']);
  const db = await openDb(ctx, name);
  if (ctx.method === 'GET') return ctx.send(200, db.security);
  // Who may set it is the policy table's; whether `_users`' may be set at all is this resource's rule (even for admins).
  if (name === USERS_DB && !ctx.services.node.usersDbSecurityEditable) {
    throw new ForbiddenError("You can't edit the security object of the user database.");
  }
  const value = await ctx.readJsonObject();
  checkSecurityBody(value);
  await ctx.services.directory.setSecurity(name, value);
  ctx.send(200, { ok: true });
}

export async function ensureFullCommit(ctx: Ctx, name: string): Promise<void> {
  allow(ctx, ['POST']);
  await openDb(ctx, name);
  // Every acknowledged write is already durable (group commit syncs the WAL).
  ctx.send(201, { ok: true, instance_start_time: '0' });
}

/** Database features that come with later issues: answer 501 with the reason. */
export async function dbNotBuilt(ctx: Ctx, name: string, what: string): Promise<void> {
  await openDb(ctx, name);
  throw new NotImplementedError(`${what} is not available in this version of Divan`);
}
