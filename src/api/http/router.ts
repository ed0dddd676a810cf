/**
 * CouchDB's URL grammar → route handlers. Paths are split on `/` first and each
 * segment percent-decoded after, so `%2F` stays inside its segment (a database named
 * `a/b`, a doc id `_design%2Fx`), which generic pattern routers cannot express.
 * Handlers parse, call the coordinator, and render; they hold no cluster logic.
 */
import { BadRequestError, NotFoundError } from '../../errors';
import type { Ctx } from './context';
import { SYSTEM_DBS } from './auth/policy';
import { allDocs, allDocsQueries } from './routes/all-docs';
import { attachment } from './routes/attachment';
import { bulkDocs, bulkGet, revsDiffRoute } from './routes/bulk';
import { changes } from './routes/changes';
import { database, dbNotBuilt, ensureFullCommit, revsLimit, security } from './routes/db';
import { designResourceNotBuilt } from './routes/design';
import { compactDesign, designInfo, view, viewCleanupRoute } from './routes/view';
import { compactDb, purge, purgedInfos, purgedInfosLimit } from './routes/maintenance';
import { doc } from './routes/doc';
import { findRoute, indexRoute } from './routes/find';
import { localAttachment, localDoc } from './routes/local';
import { activeTasks, allDbs, dbsInfo, node, notBuilt, up, uuids, welcome } from './routes/server';
import { session } from './routes/session';
import { replicate, scheduler } from './routes/replicate';
import { membership, rebalance, shards, syncShards } from './routes/cluster';

type Handler = (ctx: Ctx) => Promise<void>;

// Maps, not object literals: path segments are user input, and a plain object would
// "have" `constructor`, `toString` or `__proto__` (ids and names clients do use).
const serverRoutes = new Map<string, Handler>([
  ['_up', up],
  ['_all_dbs', allDbs],
  ['_dbs_info', dbsInfo],
  ['_uuids', uuids],
  ['_session', session],
  ['_node', node],
  ['_active_tasks', activeTasks],
  ['_membership', membership],
  ['_replicate', replicate],
  ['_scheduler', scheduler],
]);

/** Server endpoints of CouchDB that later issues build. */
const serverNotBuilt = new Set(['_cluster_setup', '_reshard', '_db_updates', '_utils', '_search_analyze']);

/** Database endpoints of CouchDB that later issues build. */
const dbNotBuiltNames = new Map<string, string>([
  ['_partition', 'Partitioned databases'],
  ['_auto_purge', 'Automatic purge of deleted documents (CouchDB 3.5)'],
]);

const designNotBuilt = new Set(['_show', '_list', '_update', '_rewrite', '_search', '_search_info', '_nouveau']);

export function splitPath(rawPath: string): string[] {
  const parts = rawPath.split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === '' && i === parts.length - 1) break; // trailing slash
    try {
      out.push(decodeURIComponent(part));
    } catch {
      throw new BadRequestError('Malformed percent-encoding in the URL path');
    }
  }
  return out;
}

export async function route(ctx: Ctx): Promise<void> {
  const s = ctx.segments;
  if (s.length === 0) return welcome(ctx);
  const first = s[0]!;
  if (first.startsWith('_') && !SYSTEM_DBS.has(first)) {
    const handler = serverRoutes.get(first);
    if (handler) return handler(ctx);
    if (serverNotBuilt.has(first)) return notBuilt(ctx);
    throw new BadRequestError(`Unknown endpoint ${first}`, 'illegal_database_name');
  }
  if (s.length === 1) return database(ctx, first);
  return dbRoute(ctx, first, s.slice(1));
}

async function dbRoute(ctx: Ctx, db: string, rest: string[]): Promise<void> {
  const head = rest[0]!;
  switch (head) {
    case '_all_docs':
    case '_design_docs':
    case '_local_docs': {
      const which = head === '_all_docs' ? 'all' : head === '_design_docs' ? 'design' : 'local';
      if (rest.length === 1) return allDocs(ctx, db, which);
      if (rest.length === 2 && rest[1] === 'queries') return allDocsQueries(ctx, db, which);
      // CouchDB reads anything deeper as an attachment of a document that cannot exist.
      throw new NotFoundError('missing');
    }
    case '_bulk_docs':
      return bulkDocs(ctx, db);
    case '_bulk_get':
      return bulkGet(ctx, db);
    case '_changes':
      return changes(ctx, db);
    case '_revs_diff':
      return revsDiffRoute(ctx, db, 'revs_diff');
    case '_missing_revs':
      return revsDiffRoute(ctx, db, 'missing_revs');
    case '_revs_limit':
      return revsLimit(ctx, db);
    case '_security':
      return security(ctx, db);
    case '_ensure_full_commit':
      return ensureFullCommit(ctx, db);
    case '_shards':
      return shards(ctx, db, rest.length > 1 ? rest.slice(1).join('/') : undefined);
    case '_sync_shards':
      return syncShards(ctx, db);
    case '_rebalance':
      return rebalance(ctx, db);
    case '_find':
    case '_explain':
      if (rest.length === 1) return findRoute(ctx, db, head === '_explain');
      break;
    case '_index':
      return indexRoute(ctx, db, rest.slice(1));
    case '_view_cleanup':
      return viewCleanupRoute(ctx, db);
    case '_compact':
      if (rest.length === 1) return compactDb(ctx, db);
      if (rest.length === 2) return compactDesign(ctx, db, rest[1]!);
      break;
    case '_purge':
      if (rest.length === 1) return purge(ctx, db);
      break;
    case '_purged_infos_limit':
      if (rest.length === 1) return purgedInfosLimit(ctx, db);
      break;
    case '_purged_infos':
      if (rest.length === 1) return purgedInfos(ctx, db);
      break;
    case '_local':
      if (rest.length < 2) throw new BadRequestError('Missing local document id', 'illegal_docid');
      // As in CouchDB, a further segment names an attachment, which local docs refuse.
      if (rest.length > 2) return localAttachment(ctx, db);
      return localDoc(ctx, db, rest[1]!);
    case '_design': {
      if (rest.length < 2 || rest[1] === '') throw new BadRequestError('Missing design document name', 'illegal_docid');
      const id = '_design/' + rest[1];
      if (rest.length === 2) return doc(ctx, db, id);
      if (rest[2] === '_view') return view(ctx, db, id, rest[3], rest.slice(4));
      if (rest[2] === '_info' && rest.length === 3) return designInfo(ctx, db, id);
      if (designNotBuilt.has(rest[2]!)) return designResourceNotBuilt(ctx, db, id, rest[2]!, rest[3]);
      return attachment(ctx, db, id, rest.slice(2).join('/'));
    }
  }
  const notBuiltName = dbNotBuiltNames.get(head);
  if (notBuiltName) return dbNotBuilt(ctx, db, notBuiltName);
  if (head.startsWith('_local/')) return rest.length === 1 ? localDoc(ctx, db, head.slice(7)) : localAttachment(ctx, db);
  if (head.startsWith('_') && !head.startsWith('_design/')) {
    throw new BadRequestError('Only reserved document ids may start with underscore.', 'illegal_docid');
  }
  if (rest.length === 1) return doc(ctx, db, head);
  return attachment(ctx, db, head, rest.slice(1).join('/'));
}
