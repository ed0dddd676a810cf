/**
 * `/_session`: who am I (GET), log in with a form or JSON body (POST), log out
 * (DELETE). A successful login sets the `AuthSession` cookie.
 */
import { BadContentTypeError, BadRequestError, UnauthorizedError } from '../../../errors';
import type { Ctx } from '../context';
import { allow } from './common';

export async function session(ctx: Ctx): Promise<void> {
  allow(ctx, ['GET', 'HEAD', 'POST', 'DELETE']);
  const auth = ctx.services.sessions;
  if (ctx.method === 'DELETE') return ctx.send(200, { ok: true }, { 'Set-Cookie': auth.clearCookie() });
  if (ctx.method === 'POST') {
    // Checked before the password: a bad `next` costs no hash and counts no failure.
    const next = ctx.qString('next');
    if (next !== undefined) checkNext(next);
    const { name, password } = await readCredentials(ctx);
    const principal = await auth.login(name, password, ctx.req.socket.remoteAddress ?? '').catch((err: unknown) => {
      // A failed login also clears any cookie the client holds, as CouchDB does.
      if (err instanceof UnauthorizedError) ctx.res.setHeader('Set-Cookie', auth.clearCookie());
      throw err;
    });
    const headers: Record<string, string> = { 'Set-Cookie': auth.cookieFor(principal) };
    const body = { ok: true, name, roles: principal.roles };
    if (next !== undefined) {
      headers.Location = next;
      return ctx.send(302, body, headers);
    }
    return ctx.send(200, body, headers);
  }
  if (ctx.user.name === null && ctx.qBool('basic', false)) throw new UnauthorizedError('Please login.');
  ctx.send(200, {
    ok: true,
    userCtx: ctx.user,
    info: {
      authentication_handlers: auth.handlers,
      ...(ctx.authenticatedBy ? { authenticated: ctx.authenticatedBy } : {}),
      authentication_db: '_users',
    },
  });
}

async function readCredentials(ctx: Ctx): Promise<{ name: string; password: string }> {
  const type = (ctx.header('content-type') ?? '').toLowerCase();
  let name: unknown;
  let password: unknown;
  if (type.startsWith('application/x-www-form-urlencoded')) {
    const form = new URLSearchParams((await ctx.readBody(64 * 1024)).toString('utf8'));
    name = oneName(form.get('name') ?? undefined, form.get('username') ?? undefined);
    password = form.get('password');
  } else if (type.startsWith('application/json')) {
    const body = await ctx.readJsonObject(64 * 1024);
    name = oneName(body.name, body.username);
    password = body.password;
  } else {
    throw new BadContentTypeError("Content-Type must be 'application/x-www-form-urlencoded' or 'application/json'");
  }
  if (typeof name !== 'string' || name === '') throw new BadRequestError('request body must contain a username');
  if (typeof password !== 'string') throw new BadRequestError('request body must contain a password');
  return { name, password };
}

/** `name` or `username`; both, differing, is refused as CouchDB refuses it. */
function oneName(name: unknown, username: unknown): unknown {
  if (name !== undefined && username !== undefined && name !== username) throw new BadRequestError('request body contains different usernames');
  return name ?? username;
}

/**
 * `next` must stay on this origin: a path that starts with one `/` followed by
 * neither `/` nor `\` (browsers read `//host` and `/\host` as another host), made of
 * printable ASCII without backslashes (browsers turn `\` into `/` and drop tabs and
 * newlines, so `/%09/evil.example` is `//evil.example`; CR/LF would also split the header).
 */
export function checkNext(next: string): void {
  // CouchDB's own answer when next is not a path.
  if (!next.startsWith('/')) throw new BadRequestError('path must begin with a /.');
  const ok = /^\/(?![/\\])[\x21-\x7e]*$/.test(next) && !next.includes('\\') && sameOrigin(next);
  if (!ok) throw new BadRequestError('next must be a path on this server, starting with a single /');
}

function sameOrigin(path: string): boolean {
  const base = 'http://divan.invalid';
  try {
    return new URL(path, base).origin === base;
  } catch {
    return false;
  }
}
