/**
 * A Divan node: opens the store, loads identity and catalog, and wires the layers
 * (storage → shards → coordinator → HTTP). `stop()` closes the front door first,
 * lets queued updates finish, then closes the store.
 */
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Auth, HandlerName, LockoutMode, sessionSecretFromCluster } from '../api/http/auth';
import { attachmentCompression } from '../api/http/att-compress';
import { ByteBudget } from '../api/http/budget';
import { HttpServer } from '../api/http/server';
import type { Services } from '../api/http/context';
import { SandboxPool } from '../shard/js/sandbox';
import { DesignFunctions } from '../api/coordinator/validate';
import { Store } from '../storage/store';
import { Cluster } from './cluster';
import type { Config } from './config';
import { ADMIN_SETTING_PREFIX, AdminDirectory, loadIdentity } from './admins';
import { JobRegistry } from './jobs';
import { REPLICATOR_DB, ReplicatorDocs } from '../api/replicator/doc-processor';
import { replicatorDbHook } from '../api/replicator/replicator-db';
import { USERS_DB, readUserDoc, usersDbHook } from '../api/coordinator/users-db';
import { openSystemDb } from '../api/coordinator/db-admin';
import { UsersCache } from '../api/http/auth/principals';
import { parseJwtKeys, parseRequiredClaims, rolesClaimFromConfig, type JwtOptions } from '../api/http/auth/jwt';
import { createLogger } from './logger';
import { Metrics } from './metrics';

export const version = '0.1.0';

export class DivanNode {
  private constructor(
    readonly config: Readonly<Config>,
    readonly address: AddressInfo,
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly http: HttpServer,
    private readonly log: ReturnType<typeof createLogger>,
    private readonly metricsServer: import('node:http').Server | undefined,
    private readonly js: SandboxPool,
    private readonly jobs: JobRegistry,
    private readonly replicatorDocs: ReplicatorDocs,
  ) {}

  static async start(config: Readonly<Config>): Promise<DivanNode> {
    const log = createLogger({ nodeName: config.nodeName, level: config.logLevel });
    mkdirSync(config.dataDir, { recursive: true });
    const store = await Store.open(path.join(config.dataDir, 'rocksdb'), {
      cacheBytes: config.cacheBytes,
      writeBufferBytes: config.writeBufferBytes,
      batchOpsMax: config.storeBatchOpsMax,
    });
    const identity = await loadIdentity(store, config);
    if (identity.generatedPassword) {
      const { user, password } = identity.generatedPassword;
      process.stderr.write(
        `\n  Divan created an admin account (shown once, stored hashed):\n    user: ${user}\n    password: ${password}\n` +
          `  Set COUCHDB_USER and COUCHDB_PASSWORD to choose your own.\n\n`,
      );
    }
    const js = new SandboxPool({
      timeoutMs: config.jsTimeoutMs,
      memoryBytesMax: config.jsMemoryBytesMax,
      workers: config.jsWorkers,
      queueMax: config.jsQueueCallsMax,
    });
    let dbCount = 0;
    const metrics = new Metrics(config.nodeName, () => dbCount);
    const cluster = await Cluster.open({
      config,
      store,
      log,
      js,
      onIndexed: (docs) => metrics.viewDocsIndexed.inc(docs),
      onCompacted: (ok, progress) => {
        metrics.compactions.inc({ result: ok ? 'completed' : 'stopped' });
        metrics.compactionDropped.inc({ kind: 'body' }, progress.bodiesDropped);
        metrics.compactionDropped.inc({ kind: 'attachment' }, progress.attachmentsDropped);
      },
    });
    metrics.compactionsRunning = () => cluster.compactionCount();
    metrics.docInfoCache = () => cluster.docInfoCacheStats();
    if (!config.nodeName) log.setBindings({ node: cluster.self });
    const catalog = cluster.catalog;
    dbCount = (await catalog.list()).length;
    metrics.indexLag = () => cluster.indexLag();
    metrics.indexBuilds = () => cluster.indexTasks().length;
    const admins = new AdminDirectory(identity.admins, catalog);
    const jobs = new JobRegistry({ runningMax: config.replicationJobsMax, rotateIntervalMs: config.replicationRotateIntervalMs, churnMax: config.replicationChurnMax });
    const auth = new Auth({
      admins,
      users: new UsersCache((name) => readUserDoc(catalog, name, config.writeQuorumTimeoutMs), config.usersCacheEntriesMax, config.usersCacheTtlMs),
      handlers: config.authHandlers.split(',').map((h) => h.trim()) as HandlerName[],
      // One secret for the whole cluster, or a cookie from one node is refused by the others.
      secret: config.clusterSecret ? sessionSecretFromCluster(config.clusterSecret) : identity.sessionSecret,
      sessionTimeoutSec: config.sessionTimeoutSec,
      persistentCookies: config.sessionPersistentCookies === 1,
      ...(config.jwtKeys ? { jwt: jwtOptions(config) } : {}),
      proxySecret: config.proxyUseSecret === 1 && config.proxySecret ? Buffer.from(config.proxySecret, 'utf8') : undefined,
      pbkdf2Iterations: config.pbkdf2Iterations,
      hashConcurrencyMax: config.authHashConcurrencyMax,
      hashQueueMax: config.authHashQueueMax,
      cacheEntriesMax: config.authCacheEntriesMax,
      cacheTtlMs: config.authCacheTtlMs,
      lockout: {
        mode: config.authLockoutMode as LockoutMode,
        threshold: config.authLockoutThreshold,
        lifetimeMs: config.authLockoutLifetimeMs,
        entriesMax: config.authLockoutEntriesMax,
      },
      log,
    });
    // A runtime admin changed (here or on another node): its remembered credentials go.
    catalog.onSetting((setting) => {
      if (setting.name.startsWith(ADMIN_SETTING_PREFIX)) auth.changed(setting.name.slice(ADMIN_SETTING_PREFIX.length));
    });
    const services: Services = {
      directory: catalog,
      limits: {
        requestBytesMax: config.requestBytesMax,
        docBytesMax: config.docBytesMax,
        attachmentBytesMax: config.attachmentBytesMax,
        jsonDepthMax: config.jsonDepthMax,
        docIdBytesMax: config.docIdBytesMax,
        bulkDocsMax: config.bulkDocsMax,
        keysMax: config.keysMax,
        queriesMax: config.queriesMax,
        findLimitDefault: config.findLimitDefault,
        findRangesMax: config.findRangesMax,
        findScanWarningRatio: config.findScanWarningRatio,
        revsDiffRevsMax: config.revsDiffRevsMax,
        uuidsCountMax: config.uuidsCountMax,
        requestTimeoutMs: config.requestTimeoutMs,
        quorumTimeoutMs: config.writeQuorumTimeoutMs,
        changesTimeoutMs: config.changesTimeoutMs,
        changesTimeoutMsMax: config.changesTimeoutMsMax,
        rowsMax: config.rowsMax,
      },
      attachmentCompression: attachmentCompression({ types: config.attachmentCompressibleTypes, level: config.attachmentCompressionLevel }),
      node: {
        name: cluster.self,
        uuid: identity.uuid,
        version,
        pbkdf2Iterations: config.pbkdf2Iterations,
        usersDbSecurityEditable: config.usersDbSecurityEditable === 1,
        purge: { docsMax: config.purgeDocsMax, revsMax: config.purgeRevsMax, infosLimit: config.purgedInfosLimit },
        q: config.q,
        n: config.n,
        publicConfig: publicConfig(config),
      },
      log,
      onFind: (index, docsExamined) => metrics.observeFind(index, docsExamined),
      onPurged: (revisions) => metrics.purgedRevisions.inc(revisions),
      metricsText: async () => {
        dbCount = (await catalog.list()).length;
        return metrics.registry.metrics();
      },
      requestBytes: new ByteBudget(config.requestBytesInFlightMax),
      sessions: auth,
      admins,
      jobs,
      replication: {
        checkpointIntervalMs: config.replicationCheckpointIntervalMs,
        batchSize: config.replicationBatchSize,
        longpollMs: Math.min(config.replicationLongpollMs, config.changesTimeoutMsMax),
        retryBackoffMaxMs: config.replicationRetryBackoffMaxMs,
        oneShotRetriesMax: config.replicationOneShotRetriesMax,
        connectionTimeoutMs: config.replicationConnectionTimeoutMs,
        retriesPerRequest: config.replicationRetriesPerRequest,
        httpConnections: config.replicationHttpConnections,
      },
      updateHooks: new Map([
        [USERS_DB, usersDbHook({ iterations: config.pbkdf2Iterations, derive: (p, salt, it, bytes) => auth.derive(p, salt, it, bytes), onWritten: (names) => names.forEach((n) => auth.changed(n)) })],
        [REPLICATOR_DB, replicatorDbHook(config.keysMax)],
      ]),
      cluster,
      js,
      designDocs: new DesignFunctions(js, cluster.self, config.designDocsRecheckMs, (entry) => log.info(entry, 'validate_doc_update log')),
    };
    const http = new HttpServer(services, {
      cors: {
        origins: config.corsOrigins.split(',').map((o) => o.trim()).filter((o) => o.length > 0),
        credentials: config.corsCredentials === 1,
        maxAgeSec: 600,
      },
      port: config.httpPort,
      bindAddress: config.bindAddress,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      connectionsMax: config.connectionsMax,
      connectionsPerAddressMax: config.connectionsPerAddressMax,
      headersTimeoutMs: config.headersTimeoutMs,
      bodyIdleTimeoutMs: config.bodyIdleTimeoutMs,
      bodyBytesPerSecMin: config.bodyBytesPerSecMin,
      // As CouchDB: except_for_up alone already requires valid users everywhere else.
      requireValidUser: config.requireValidUserExceptForUp === 1 ? 'except-up' : config.requireValidUser === 1 ? 'on' : 'off',
      wwwAuthenticate: config.wwwAuthenticate,
      onAuth: (handler, result) => metrics.authentications.inc({ handler, result }),
      onRefused: (need) => metrics.refusals.inc({ need }),
      onRequest: (method, status, seconds) => metrics.observeRequest(method, status, seconds),
    });
    // `_replicator` documents: every node follows them and runs those it owns.
    const replicatorDocs = new ReplicatorDocs({
      directory: catalog,
      self: cluster.self,
      liveMembers: () => cluster.liveMemberNames(),
      jobs,
      env: {
        directory: catalog,
        validation: { functions: services.designDocs, user: { name: null, roles: ['_admin'] }, dbAdmin: true, hooks: services.updateHooks },
        limits: services.limits,
        settings: services.replication,
        nodeName: cluster.self,
      },
      pollMs: config.replicationLongpollMs,
      log: (fields, msg) => log.info({ component: 'replicator', ...fields }, msg),
    });
    services.replicatorDocs = replicatorDocs;
    const address = await http.listen();
    const metricsServer = config.metricsPort > 0 ? await serveMetrics(config, () => metrics.registry.metrics(), log) : undefined;
    log.info({ component: 'http', address: address.address, port: address.port, dataDir: config.dataDir, node: cluster.self }, 'listening');
    const httpHost = config.bindAddress === '0.0.0.0' || config.bindAddress === '::' ? '127.0.0.1' : config.bindAddress;
    await cluster.join(config.httpAdvertiseAddress || `${httpHost}:${address.port}`);
    log.info({ component: 'cluster', node: cluster.self, members: cluster.members().length }, 'joined');
    cluster.onMembersChange(() => replicatorDocs.membersChanged());
    replicatorDocs.start();
    // A node that starts a cluster (no seeds) makes `_users` now, so `_all_dbs` shows it as CouchDB's does;
    // in a cluster joined through seeds, the first request that needs it does.
    if (config.seeds.trim() === '') {
      await openSystemDb(catalog, USERS_DB, config.n).catch((err: unknown) => log.warn({ component: 'node', err: String(err) }, 'could not create _users'));
    }
    return new DivanNode(config, address, store, cluster, http, log, metricsServer, js, jobs, replicatorDocs);
  }

  async stop(): Promise<void> {
    this.log.info({ component: 'node' }, 'stopping');
    // Replications first: they write through the cluster being stopped.
    await this.replicatorDocs.stop();
    await this.jobs.close();
    await this.cluster.stop(true);
    this.metricsServer?.close();
    await this.http.close();
    await this.cluster.catalog.idle();
    await this.js.close();
    await this.store.close();
    this.log.info({ component: 'node' }, 'stopped');
  }
}

/** `GET /metrics` on its own port, without authentication, for Prometheus. */
async function serveMetrics(config: Readonly<Config>, text: () => Promise<string>, log: ReturnType<typeof createLogger>) {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    text().then(
      (body) => res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(req.method === 'HEAD' ? undefined : body),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.metricsPort, config.metricsBindAddress, () => resolve());
  });
  log.info({ component: 'metrics', port: config.metricsPort, address: config.metricsBindAddress }, 'listening');
  return server;
}

/** The settings shown at `/_node/_local/_config`, grouped as CouchDB does; no secrets. */
function publicConfig(c: Readonly<Config>): Record<string, Record<string, string>> {
  return {
    couchdb: {
      max_document_size: String(c.docBytesMax),
      database_dir: c.dataDir,
      uuid: 'see GET /',
    },
    cluster: { q: String(c.q), n: String(c.n) },
    chttpd: {
      port: String(c.httpPort),
      bind_address: c.bindAddress,
      max_http_request_size: String(c.requestBytesMax),
      authentication_handlers: c.authHandlers,
      require_valid_user: String(c.requireValidUser === 1),
      require_valid_user_except_for_up: String(c.requireValidUserExceptForUp === 1),
    },
    chttpd_auth: {
      timeout: String(c.sessionTimeoutSec),
      allow_persistent_cookies: String(c.sessionPersistentCookies === 1),
      iterations: String(c.pbkdf2Iterations),
      proxy_use_secret: String(c.proxyUseSecret === 1),
      authentication_db: '_users',
    },
    jwt_auth: { required_claims: c.jwtRequiredClaims, roles_claim_path: c.jwtRolesClaimPath, roles_claim_name: c.jwtRolesClaimName },
    chttpd_auth_lockout: {
      mode: c.authLockoutMode,
      threshold: String(c.authLockoutThreshold),
      max_lifetime: String(c.authLockoutLifetimeMs),
      max_objects: String(c.authLockoutEntriesMax),
    },
    httpd: { enable_cors: String(c.corsOrigins.length > 0) },
    attachments: { compressible_types: c.attachmentCompressibleTypes, compression_level: String(c.attachmentCompressionLevel) },
    cors: { origins: c.corsOrigins, credentials: String(c.corsCredentials === 1) },
    divan: {
      node_name: c.nodeName,
      grpc_port: String(c.grpcPort),
      seeds: c.seeds,
      zone: c.zone,
      membership_profile: c.membershipProfile,
      revs_limit: String(c.revsLimit),
      attachment_bytes_max: String(c.attachmentBytesMax),
      json_depth_max: String(c.jsonDepthMax),
      doc_id_bytes_max: String(c.docIdBytesMax),
      bulk_docs_max: String(c.bulkDocsMax),
      keys_max: String(c.keysMax),
      queries_max: String(c.queriesMax),
      find_limit_default: String(c.findLimitDefault),
      find_ranges_max: String(c.findRangesMax),
      find_scan_warning_ratio: String(c.findScanWarningRatio),
      revs_diff_revs_max: String(c.revsDiffRevsMax),
      connections_max: String(c.connectionsMax),
      connections_per_address_max: String(c.connectionsPerAddressMax),
      headers_timeout_ms: String(c.headersTimeoutMs),
      body_idle_timeout_ms: String(c.bodyIdleTimeoutMs),
      body_bytes_per_sec_min: String(c.bodyBytesPerSecMin),
      request_bytes_in_flight_max: String(c.requestBytesInFlightMax),
      request_timeout_ms: String(c.requestTimeoutMs),
    },
  };
}

/** JWT verification settings from the config (keys checked at start-up: a bad key stops the node with a clear message). */
function jwtOptions(c: Readonly<Config>): JwtOptions {
  let entries: unknown;
  try {
    entries = JSON.parse(c.jwtKeys);
  } catch {
    throw new Error('invalid config: jwtKeys must be a JSON object of "hmac:kid"/"rsa:kid"/"ec:kid" to key');
  }
  if (typeof entries !== 'object' || entries === null || Array.isArray(entries) || Object.values(entries).some((v) => typeof v !== 'string')) {
    throw new Error('invalid config: jwtKeys must be a JSON object of strings');
  }
  return {
    keys: parseJwtKeys(entries as Record<string, string>),
    requiredClaims: parseRequiredClaims(c.jwtRequiredClaims),
    ...rolesClaimFromConfig({ roles_claim_path: c.jwtRolesClaimPath, roles_claim_name: c.jwtRolesClaimName }),
  };
}
