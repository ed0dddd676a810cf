/**
 * Server-level resources: `/`, `/_up`, `/_all_dbs`, `/_dbs_info`, `/_uuids`,
 * `/_node/_local/...`, and honest answers for what is not built yet.
 */
import { randomBytes } from 'node:crypto';
import { BadRequestError, NotFoundError, NotImplementedError } from '../../../errors';
import { dbInfo } from '../../coordinator/db-admin';
import { compareRaw } from '../../../shard/query/collate';
import type { Ctx } from '../context';
import { readJsonObjectCapped } from '../json-scan';
import { allow } from './common';
import { forwardToNode, localCopyDoc } from './cluster';
import { formatHash, KEY_BYTES, parseHash } from '../auth/password';
import { nodeScheduler, replicationTasks } from './replicate';

export async function welcome(ctx: Ctx): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  ctx.send(200, {
    couchdb: 'Welcome',
    version: '3.5.0',
    git_sha: 'divan',
    uuid: ctx.services.node.uuid,
    features: [],
    vendor: { name: 'Divan', version: ctx.services.node.version },
  });
}

export async function up(ctx: Ctx): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  if (!ctx.services.cluster.ready()) return ctx.send(503, { status: 'starting', reason: 'joining the cluster' });
  ctx.send(200, { status: 'ok', seeds: {} });
}

export async function allDbs(ctx: Ctx): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  const names = selectNames(ctx, await ctx.services.directory.list());
  ctx.send(200, names);
}

/** `_all_dbs` and `_dbs_info` paging: startkey/endkey (JSON strings), limit, skip, descending. */
function selectNames(ctx: Ctx, all: string[]): string[] {
  const descending = ctx.qBool('descending', false);
  const key = jsonString(ctx, 'key');
  const startKey = jsonString(ctx, 'startkey') ?? jsonString(ctx, 'start_key') ?? key;
  const endKey = jsonString(ctx, 'endkey') ?? jsonString(ctx, 'end_key') ?? key;
  const inclusiveEnd = ctx.qBool('inclusive_end', true);
  const limit = ctx.qInt('limit', Number.MAX_SAFE_INTEGER);
  const skip = ctx.qInt('skip', 0);
  let names = [...all].sort(compareRaw);
  if (descending) names.reverse();
  const sign = descending ? -1 : 1;
  names = names.filter((name) => {
    if (startKey !== undefined && sign * compareRaw(name, startKey) < 0) return false;
    if (endKey !== undefined) {
      const c = sign * compareRaw(name, endKey);
      if (c > 0 || (c === 0 && !inclusiveEnd)) return false;
    }
    return true;
  });
  return names.slice(skip, skip + limit);
}

function jsonString(ctx: Ctx, name: string): string | undefined {
  const value = ctx.qJson(name);
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new BadRequestError(`${name} must be a JSON string`, 'query_parse_error');
  return value;
}

export async function dbsInfo(ctx: Ctx): Promise<void> {
  if (ctx.method === 'GET') {
    const names = selectNames(ctx, await ctx.services.directory.list());
    const infos = [];
    for (const name of names) {
      const db = await ctx.services.directory.open(name);
      if (db) infos.push({ key: name, info: await dbInfo(db) });
    }
    return ctx.send(200, infos);
  }
  allow(ctx, ['GET', 'POST']);
  const tooMany = () => new BadRequestError(`At most ${ctx.limits.keysMax} keys per request`);
  const body = await readJsonObjectCapped(ctx, { depth: 2, max: ctx.limits.keysMax, tooMany });
  if (!Array.isArray(body.keys) || body.keys.some((k) => typeof k !== 'string')) {
    throw new BadRequestError('`keys` must be an array of database names');
  }
  if (body.keys.length > ctx.limits.keysMax) throw tooMany();
  const out = [];
  for (const name of body.keys as string[]) {
    const db = await ctx.services.directory.open(name);
    out.push(db ? { key: name, info: await dbInfo(db) } : { key: name, error: 'not_found' });
  }
  ctx.send(200, out);
}

export async function uuids(ctx: Ctx): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  const count = ctx.qInt('count', 1);
  if (count > ctx.limits.uuidsCountMax) throw new BadRequestError(`count parameter too large (max ${ctx.limits.uuidsCountMax})`, 'bad_request');
  const list: string[] = [];
  for (let i = 0; i < count; i++) list.push(randomBytes(16).toString('hex'));
  ctx.send(200, { uuids: list }, { 'Cache-Control': 'must-revalidate, no-cache', Pragma: 'no-cache' });
}

/** `/_node/{name}/...`: only this node (`_local` or its own name) until the cluster lands. */
export async function node(ctx: Ctx): Promise<void> {
  const [, nodeName, section, ...rest] = ctx.segments;
  if (nodeName === undefined) throw new NotFoundError('missing');
  if (nodeName !== '_local' && nodeName !== ctx.services.node.name) return forwardToNode(ctx, nodeName, ctx.segments.slice(2));
  if (section === undefined) {
    allow(ctx, ['GET', 'HEAD']);
    return ctx.send(200, { name: ctx.services.node.name });
  }
  if (section === '_prometheus') {
    allow(ctx, ['GET', 'HEAD']);
    const text = await ctx.services.metricsText();
    return ctx.sendBytes(200, Buffer.from(text, 'utf8'), { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
  }
  if (section === '_config') return config(ctx, rest);
  if (section === '_scheduler') return nodeScheduler(ctx, rest[0]);
  if (section === '_copy') return localCopyDoc(ctx, rest[0], rest.length > 1 ? rest.slice(1).join('/') : undefined);
  if (section === '_stats' || section === '_system') {
    allow(ctx, ['GET', 'HEAD']);
    const memory = process.memoryUsage();
    return ctx.send(200, {
      uptime: Math.round(process.uptime()),
      memory: { rss: memory.rss, heap_total: memory.heapTotal, heap_used: memory.heapUsed, external: memory.external },
      node_version: process.version,
    });
  }
  throw new NotFoundError(`Unknown node resource ${section}`);
}

async function config(ctx: Ctx, path: string[]): Promise<void> {
  const [section, key] = path;
  if (section === 'admins') return adminsConfig(ctx, key, path.length);
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
    throw new NotImplementedError('Runtime configuration changes are not supported (except admins); restart the node with new settings');
  }
  const all: Record<string, Record<string, string>> = { ...ctx.services.node.publicConfig, admins: Object.fromEntries(ctx.services.admins.all()) };
  if (section === undefined) return ctx.send(200, all);
  // Own members only: `/_config/constructor` must not find Object.prototype's.
  const values = Object.hasOwn(all, section) ? all[section] : undefined;
  if (!values) throw new NotFoundError('unknown_config_value');
  if (key === undefined) return ctx.send(200, values);
  if (!Object.hasOwn(values, key)) throw new NotFoundError('unknown_config_value');
  ctx.send(200, JSON.stringify(values[key]));
}

/**
 * `/_node/{node}/_config/admins[/{name}]`: server admins, shared by every node of the
 * cluster (a change made through one node is pushed to the others and kept by
 * catalog anti-entropy). A PUT body is the password as a JSON string, stored hashed
 * (a value already in the stored notation is kept as given); PUT and DELETE answer
 * the previous stored value, `""` when there was none, as CouchDB does.
 */
async function adminsConfig(ctx: Ctx, name: string | undefined, depth: number): Promise<void> {
  const admins = ctx.services.admins;
  if (name === undefined || depth > 2) {
    allow(ctx, ['GET', 'HEAD']);
    if (depth > 2) throw new NotFoundError('unknown_config_value');
    return ctx.send(200, Object.fromEntries(admins.all()));
  }
  allow(ctx, ['GET', 'HEAD', 'PUT', 'DELETE']);
  const current = admins.get(name);
  if (ctx.method === 'GET' || ctx.method === 'HEAD') {
    if (current === undefined) throw new NotFoundError('unknown_config_value');
    return ctx.send(200, JSON.stringify(current));
  }
  if (ctx.method === 'DELETE') {
    if (current === undefined) throw new NotFoundError('unknown_config_value');
    if (admins.all().size <= 1) throw new BadRequestError('Refusing to remove the last server admin', 'bad_request');
    await admins.remove(name);
    ctx.services.sessions.changed(name);
    return ctx.send(200, JSON.stringify(current));
  }
  if (name === '' || name.startsWith('_')) throw new BadRequestError('Admin names may not be empty or start with an underscore');
  const value = await ctx.readJson(64 * 1024);
  if (typeof value !== 'string' || value === '') throw new BadRequestError('The value must be a non-empty JSON string (the password)');
  const hash = parseHash(value) ? value : await hashAdminPassword(ctx, value);
  await admins.set(name, hash);
  ctx.services.sessions.changed(name);
  ctx.send(200, JSON.stringify(current ?? ''));
}

async function hashAdminPassword(ctx: Ctx, password: string): Promise<string> {
  const salt = randomBytes(16).toString('hex');
  const iterations = ctx.services.node.pbkdf2Iterations;
  const key = await ctx.services.sessions.derive(password, salt, iterations, KEY_BYTES);
  return formatHash(key, salt, iterations);
}

export async function activeTasks(ctx: Ctx): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  ctx.send(200, [...ctx.services.cluster.indexTasks(), ...ctx.services.cluster.compactionTasks(), ...replicationTasks(ctx)]);
}

export async function notBuilt(ctx: Ctx): Promise<void> {
  const what = ctx.segments[0] ?? '';
  throw new NotImplementedError(`${what} is not available in this version of Divan`);
}
