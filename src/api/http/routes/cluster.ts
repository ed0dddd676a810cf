/**
 * Cluster resources: `/_membership`, `/{db}/_shards`, `/{db}/_shards/{docid}`,
 * `POST /{db}/_sync_shards`, `POST /{db}/_rebalance`, and `/_node/{name}/...`
 * forwarded to that node.
 */
import http from 'node:http';
import { NotFoundError, UnavailableError } from '../../../errors';
import { rangeFor } from '../../coordinator/doc-open';
import type { Ctx } from '../context';
import { allow, openDb } from './common';

export async function membership(ctx: Ctx): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  const members = ctx.services.cluster.members();
  ctx.send(200, {
    all_nodes: members.filter((m) => m.state === 'alive').map((m) => m.name),
    cluster_nodes: members.filter((m) => m.state !== 'left').map((m) => m.name),
    members,
  });
}

export async function shards(ctx: Ctx, dbName: string, docId: string | undefined): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  const db = await openDb(ctx, dbName);
  if (docId !== undefined) {
    const range = rangeFor(db, docId);
    return ctx.send(200, { range: range.name, nodes: range.nodes });
  }
  const map: Record<string, readonly string[]> = {};
  for (const range of db.ranges) map[range.name] = range.nodes;
  ctx.send(200, { shards: map });
}

export async function syncShards(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['POST']);
  await openDb(ctx, dbName);
  await ctx.services.cluster.syncDatabase(dbName);
  ctx.send(202, { ok: true });
}

/**
 * `POST /{db}/_rebalance`: place the database's ranges on the members alive now (a
 * node that joined gets its share, a dead one is replaced). New copies are filled
 * before the old ones are let go; answers once the move is complete.
 */
export async function rebalance(ctx: Ctx, dbName: string): Promise<void> {
  allow(ctx, ['POST']);
  await openDb(ctx, dbName);
  const result = await ctx.services.cluster.rebalance(dbName);
  ctx.send(200, { ok: true, moved: result.moved });
}

/**
 * `GET /_node/_local/_copy/{db}/{docid}`: this node's own copy of a document's
 * revision tree (not the merged view a normal read gives): for operators and
 * convergence checks. 404 when this node holds no copy of the doc's range.
 */
export async function localCopyDoc(ctx: Ctx, dbName: string | undefined, docId: string | undefined): Promise<void> {
  allow(ctx, ['GET', 'HEAD']);
  if (dbName === undefined || docId === undefined) throw new NotFoundError('Use /_node/_local/_copy/{db}/{docid}');
  const db = await openDb(ctx, dbName);
  const range = rangeFor(db, docId);
  const copy = range.copies.find((c) => c.node === ctx.services.cluster.self);
  if (!copy) throw new NotFoundError(`This node holds no copy of range ${range.name}`, 'not_found');
  const info = await copy.getDocInfo(docId);
  if (!info) throw new NotFoundError('missing');
  const revs = [...info.tree.values()]
    .sort((a, b) => a.pos - b.pos || (a.rev < b.rev ? -1 : 1))
    .map((n) => ({ rev: n.rev, parent: n.parent, deleted: n.deleted, body: n.hasBody }));
  ctx.send(200, { node: copy.node, range: range.name, id: info.id, winner: info.winner.rev, revs });
}

/** Forward `/_node/{name}/rest` to that node as `/_node/_local/rest`, streaming both ways. */
export async function forwardToNode(ctx: Ctx, name: string, rest: string[]): Promise<void> {
  const target = ctx.services.cluster.httpAddressOfMember(name);
  if (!target) throw new NotFoundError(`Node ${name} is unknown or down`, 'nodedown');
  const [host, port] = splitHostPort(target);
  const url = ctx.req.url ?? '';
  const query = url.includes('?') ? url.slice(url.indexOf('?')) : '';
  const path = '/_node/_local' + (rest.length ? '/' + rest.map(encodeURIComponent).join('/') : '') + query;
  await new Promise<void>((resolve, reject) => {
    const upstream = http.request(
      { host, port, method: ctx.method, path, headers: { ...ctx.req.headers, host: target }, timeout: ctx.limits.requestTimeoutMs },
      (res) => {
        ctx.res.writeHead(res.statusCode ?? 502, res.headers);
        res.pipe(ctx.res);
        res.on('end', resolve);
        res.on('error', reject);
      },
    );
    upstream.on('timeout', () => upstream.destroy(new UnavailableError(`Node ${name} did not answer`, 'nodedown')));
    upstream.on('error', (err) => reject(err instanceof UnavailableError ? err : new UnavailableError(`Node ${name}: ${err.message}`, 'nodedown')));
    ctx.req.pipe(upstream);
  });
}

/**
 * GET `/_node/_local/{rest}` on another member with the caller's credentials, and its
 * JSON answer (cluster-wide lists gathered node by node).
 */
export async function askNode(ctx: Ctx, name: string, rest: string[]): Promise<unknown> {
  const target = ctx.services.cluster.httpAddressOfMember(name);
  if (!target) throw new NotFoundError(`Node ${name} is unknown or down`, 'nodedown');
  const [host, port] = splitHostPort(target);
  const headers: Record<string, string> = { accept: 'application/json', host: target };
  for (const h of ['authorization', 'cookie']) {
    const value = ctx.req.headers[h];
    if (typeof value === 'string') headers[h] = value;
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method: 'GET', path: '/_node/_local/' + rest.map(encodeURIComponent).join('/'), headers, timeout: ctx.limits.requestTimeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new UnavailableError(`Node ${name} answered ${res.statusCode}`, 'nodedown'));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new UnavailableError(`Node ${name} did not answer`, 'nodedown')));
    req.on('error', reject);
    req.end();
  });
}

function splitHostPort(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon).replace(/^\[|\]$/g, ''), Number(address.slice(colon + 1))];
}
