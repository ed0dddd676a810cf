/**
 * Every setting of a Divan node, with its default, unit and reason, in one place.
 *
 * Sources, later ones winning: defaults → config file (JSON, `--config`) → environment
 * variables → command-line flags. The result is validated (unknown keys rejected,
 * relations between limits asserted) and frozen; each layer receives only its slice.
 * Nothing reads `process.env` after start-up.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

export interface Config {
  /** HTTP port for the CouchDB API. 5984 like CouchDB; 0 picks a free port (tests). */
  httpPort: number;
  /** Address the HTTP API binds. Loopback by default; 0.0.0.0 in containers. */
  bindAddress: string;
  /** Where the node keeps its RocksDB. Relative paths are from the working directory. */
  dataDir: string;
  /** This node's name in the cluster and in `/_node/{name}`; empty: `divan@<advertiseAddress>`. */
  nodeName: string;
  /** gRPC port for other nodes (membership, catalog, shard calls); 0 picks a free one. */
  grpcPort: number;
  /** Address the gRPC server binds. */
  grpcBindAddress: string;
  /** host:port other nodes dial to reach this one; empty: grpcBindAddress:grpcPort. */
  advertiseAddress: string;
  /** host:port of this node's HTTP API as other nodes reach it; empty: derived from bind address and port. */
  httpAdvertiseAddress: string;
  /** gRPC addresses of nodes to join, comma-separated; empty: a cluster of one until others join it. */
  seeds: string;
  /**
   * Shared secret that authenticates inter-node calls (HMAC; never sent or logged).
   * Required with seeds; without, a random one is made and kept, so no other node can join.
   */
  clusterSecret: string;
  /** Failure zone of this node (rack, availability zone); copies of a range go to distinct zones. */
  zone: string;
  /** JSON object: advertised gRPC address → address to dial (NAT, test fault proxies). */
  dialOverrides: string;
  /**
   * Mutual TLS on the gRPC port: PEM files of this node's certificate (chain), its
   * private key, and the CA that signs every node's certificate. All three or none.
   * With TLS a peer must also present a certificate from that CA (and the secret).
   */
  grpcTlsCert: string;
  grpcTlsKey: string;
  grpcTlsCa: string;
  /** Name checked against a peer's certificate instead of the host it is dialled at (one certificate for all nodes). */
  grpcTlsServerName: string;
  /**
   * 1: inter-node traffic in plain text, authenticated by the secret alone. A clustered
   * node (seeds or a configured clusterSecret) without TLS files refuses to start
   * unless this says plain text is intended (`divan certs` makes the files).
   */
  grpcPlaintext: number;
  /**
   * Largest gRPC message received or sent, bytes. Must hold one HTTP request's
   * documents (requestBytesMax) plus one document of protobuf framing; larger writes and
   * sync batches are split to fit. Callers without credentials are refused before any
   * message is read, whatever this is.
   */
  grpcMessageBytesMax: number;
  /** Accepted clock difference between nodes for call tokens and stream frames, ms (replay window). */
  grpcAuthSkewMs: number;
  /** Call nonces a node remembers within the replay window; beyond, calls are refused until older ones expire. */
  grpcNoncesMax: number;
  /** Membership timers: `lan` (probe 1 s) or `loopback` (short timers for tests on one machine). */
  membershipProfile: string;
  /** Deadline of one inter-node shard call, ms. */
  rpcTimeoutMs: number;
  /** How long a write waits for copies beyond the first w to answer before it is answered, ms. */
  writeQuorumTimeoutMs: number;
  /**
   * Shard sync: periodic pass over all local copies, ms. Writes reach every live copy
   * directly; a copy that missed one is pushed to soon after the failed write or when
   * its node comes back, so this pass only catches writes whose coordinator died midway.
   * Each pass re-checks every document changed since the last, on every copy pair:
   * turning it down costs CPU in proportion to the write rate.
   */
  syncIntervalMs: number;
  /** Shard sync: documents per batch pushed to a sibling. */
  syncBatchDocsMax: number;
  /** Catalog anti-entropy with a random live member, ms. */
  catalogSyncIntervalMs: number;
  /** First admin, as the CouchDB image takes it (COUCHDB_USER / COUCHDB_PASSWORD). */
  adminUser: string | undefined;
  adminPassword: string | undefined;
  /** Ranges per new database. CouchDB 3's default q is 2. */
  q: number;
  /** Copies per range, capped at the cluster size (one node: 1). */
  n: number;
  /** Revisions kept per document path; CouchDB's default. */
  revsLimit: number;
  /** Largest JSON document body accepted, bytes (CouchDB's max_document_size: 8 MB). */
  docBytesMax: number;
  /** Largest request body, bytes. CouchDB allows 4 GiB; we keep memory bounded. */
  requestBytesMax: number;
  /** Largest single attachment, bytes. */
  attachmentBytesMax: number;
  /**
   * Content types of attachments stored gzip-compressed, comma-separated, `type/*`
   * wildcards, case-insensitive, parameters ignored (CouchDB's `[attachments]
   * compressible_types`). Identity uploads of these types are compressed on write and
   * served decoded to clients that do not accept gzip; the digest stays the md5 of
   * the identity bytes.
   */
  attachmentCompressibleTypes: string;
  /**
   * zlib level of that compression, 1 (fastest) to 9 (smallest); 0 turns it off
   * (CouchDB's `compression_level`, default 8). Higher costs write CPU on the thread pool.
   */
  attachmentCompressionLevel: number;
  /** Deepest JSON nesting accepted in a request body. */
  jsonDepthMax: number;
  /**
   * Longest document id a write may store, bytes of UTF-8 (CouchDB sets none; clients
   * such as PouchDB's tests use ids of about 1,400 bytes); it bounds keys in storage.
   */
  docIdBytesMax: number;
  /** Documents in one `_bulk_docs` or `_bulk_get` request at most. */
  bulkDocsMax: number;
  /**
   * Keys in one `_all_docs` POST or `_dbs_info`, revs in one `open_revs`, ids in one
   * `_changes` doc_ids filter or one `_revs_diff` / `_missing_revs` request.
   */
  keysMax: number;
  /** Revisions in one `_revs_diff` / `_missing_revs` request, over all its ids. */
  revsDiffRevsMax: number;
  /**
   * Queries in one `_all_docs/queries` or `_design_docs/queries` request at most
   * (CouchDB sets none, only its request size); their keys together stay within keysMax.
   */
  queriesMax: number;
  /** `_find`'s `limit` when the request gives none (CouchDB's `[mango] default_limit`). */
  findLimitDefault: number;
  /**
   * Index ranges one `_find` reads at most: each value of an `$in` (or an `$or` of
   * equalities) on a leading index field is a range; beyond this the field is scanned.
   */
  findRangesMax: number;
  /**
   * `_find` warns when it examined more than this many documents per result (CouchDB's
   * `[mango] index_scan_warning_threshold`); 0 turns the warning off.
   */
  findScanWarningRatio: number;
  /** UUIDs per `/_uuids` call at most (CouchDB: 1000). */
  uuidsCountMax: number;
  /** Deadline for a request's shard calls, ms. */
  requestTimeoutMs: number;
  /** Longpoll/continuous `_changes` default timeout when no heartbeat, ms (CouchDB: 60 s). */
  changesTimeoutMs: number;
  /**
   * Longest `timeout` or `heartbeat` a `_changes` request may ask for, ms; longer ones
   * are clamped to it, as CouchDB clamps both to its changes_timeout (60 s). At most
   * 2^31-1: beyond, Node's setTimeout fires at once and a feed would spin.
   */
  changesTimeoutMsMax: number;
  /** Rows a `_changes` or `_all_docs` request returns when it sets no limit. */
  rowsMax: number;
  /**
   * Concurrent HTTP connections at most. When full, the connection idle the longest
   * (no request in progress) is closed to make room; with none idle, the new one is
   * answered 503 and closed.
   */
  connectionsMax: number;
  /**
   * Concurrent HTTP connections from one client address at most; beyond, 503 and
   * closed. Keeps one client from taking every slot; raise it behind a reverse proxy.
   */
  connectionsPerAddressMax: number;
  /** Idle keep-alive connections are closed after this, ms. */
  keepAliveTimeoutMs: number;
  /**
   * A request's headers must arrive within this of its first byte (or of connecting),
   * ms; else 408 and closed. Also ends connections that never send a request.
   */
  headersTimeoutMs: number;
  /**
   * Window over which a request body's progress is checked, ms: a body that delivers
   * less than `bodyBytesPerSecMin` over a window (or nothing) is cut, before
   * authentication too. Responses (long `_changes` feeds) are not affected.
   */
  bodyIdleTimeoutMs: number;
  /** Slowest request body accepted, bytes per second averaged over `bodyIdleTimeoutMs`; 0: any progress will do. */
  bodyBytesPerSecMin: number;
  /**
   * Request-body bytes held by all requests in flight at most (taken as they arrive; a
   * declared Content-Length that does not fit is refused up front), so a few huge
   * bodies cannot take all memory; beyond, 503 with Retry-After.
   */
  requestBytesInFlightMax: number;
  /** Cookie session lifetime, seconds (CouchDB: 600). */
  sessionTimeoutSec: number;
  /** PBKDF2-SHA256 iterations for stored admin passwords. */
  pbkdf2Iterations: number;
  /**
   * Password checks (PBKDF2, tens of ms each) running at once at most. They run on
   * libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE), which RocksDB reads and
   * writes share: keeping this below the pool size leaves threads for the store while
   * hostile clients send wrong passwords.
   */
  authHashConcurrencyMax: number;
  /** Password checks waiting for a thread at most; beyond, 503 at once (nothing was checked, nothing counted). */
  authHashQueueMax: number;
  /** Successful Basic credentials remembered (keyed by an HMAC of them, never the password), so a hash runs once. */
  authCacheEntriesMax: number;
  /** How long a remembered credential is trusted, ms; a changed password is honoured at once regardless. */
  authCacheTtlMs: number;
  /**
   * Lockout after repeated wrong passwords for one (user, client address), as CouchDB's
   * `[chttpd_auth_lockout]`: `enforce` answers 403 once `authLockoutThreshold` failures
   * are counted, `warn` only logs, `off` counts nothing.
   */
  authLockoutMode: string;
  /** Failures per (user, address) before the lockout (CouchDB's threshold: 5). */
  authLockoutThreshold: number;
  /** A (user, address) failure count is forgotten this long after its first failure, ms (CouchDB's max_lifetime: 300000). */
  authLockoutLifetimeMs: number;
  /** (user, address) pairs tracked at most; the oldest is dropped beyond (CouchDB's max_objects: 10000). */
  authLockoutEntriesMax: number;
  /**
   * Authentication handlers, in the order they are tried, comma-separated (CouchDB's
   * `[chttpd] authentication_handlers`): `cookie` (AuthSession), `default` (Basic),
   * `jwt` (Bearer tokens, needs `jwtKeys`), `proxy` (a trusted reverse proxy's
   * X-Auth-CouchDB-* headers).
   */
  authHandlers: string;
  /** 1: anonymous requests are refused with 401 everywhere (CouchDB's `require_valid_user`). */
  requireValidUser: number;
  /** 1: anonymous requests are refused everywhere but `/_up` (CouchDB's `require_valid_user_except_for_up`, which needs no requireValidUser). */
  requireValidUserExceptForUp: number;
  /** Sent as `WWW-Authenticate` on 401 answers when set (e.g. `Basic realm="server"`); browsers then show a login box. */
  wwwAuthenticate: string;
  /** 1: session cookies carry Expires/Max-Age and outlive the browser session (CouchDB's allow_persistent_cookies). */
  sessionPersistentCookies: number;
  /**
   * JWT verification keys as a JSON object, CouchDB's `[jwt_keys]` names and values:
   * `{"hmac:_default": "<base64 secret>", "rsa:kid1": "-----BEGIN PUBLIC KEY-----\n…"}`.
   */
  jwtKeys: string;
  /** Claims every JWT must carry (CouchDB's `required_claims`): `exp, iat, {iss, "https://issuer"}`. */
  jwtRequiredClaims: string;
  /** Dotted path of the roles claim (CouchDB's `roles_claim_path`; default: the top-level `_couchdb.roles`). */
  jwtRolesClaimPath: string;
  /** A top-level roles claim name (CouchDB's older `roles_claim_name`), used when jwtRolesClaimPath is empty. */
  jwtRolesClaimName: string;
  /** The secret proxy tokens are signed with (X-Auth-CouchDB-Token = hex HMAC-SHA256 of the user name). */
  proxySecret: string;
  /** 1: proxy authentication needs a valid token (CouchDB's proxy_use_secret, there off by default). */
  proxyUseSecret: number;
  /** 1: server admins may change `_users/_security` (CouchDB's users_db_security_editable); 0 refuses with 403. */
  usersDbSecurityEditable: number;
  /** `_users` principals cached per node at most (LRU). */
  usersCacheEntriesMax: number;
  /**
   * How long a node trusts a cached `_users` document, ms: a password or role change made
   * through another node takes effect here within this time (through this node: at once).
   */
  usersCacheTtlMs: number;
  /** Replications running at once on this node; more wait their turn (CouchDB's `[replicator] max_jobs`). */
  replicationJobsMax: number;
  /** Past replicationJobsMax, a continuous replication yields its turn to a waiting one after running this long, ms (CouchDB's `[replicator] interval`). */
  replicationRotateIntervalMs: number;
  /** Replications rotated out per interval at most (CouchDB's `max_churn`). */
  replicationChurnMax: number;
  /** How often a replication records its position on both sides, ms (CouchDB's checkpoint_interval). */
  replicationCheckpointIntervalMs: number;
  /** Changes per replication batch (CouchDB's worker_batch_size); memory per job is about this many documents. */
  replicationBatchSize: number;
  /** How long a continuous replication's `_changes` call waits for news before asking again, ms (at most changesTimeoutMsMax). */
  replicationLongpollMs: number;
  /** Longest wait between retries of a failing replication, ms (backoff doubles from 250 ms). */
  replicationRetryBackoffMaxMs: number;
  /** Consecutive retryable failures a one-shot `_replicate` survives before it answers the error. */
  replicationOneShotRetriesMax: number;
  /** Deadline of one request to a remote endpoint, ms (CouchDB's connection_timeout). */
  replicationConnectionTimeoutMs: number;
  /** Retries of one request to a remote endpoint (CouchDB's retries_per_request). */
  replicationRetriesPerRequest: number;
  /** Sockets per remote endpoint (CouchDB's http_connections). */
  replicationHttpConnections: number;
  /** 1: compact copies on their own when they pass the thresholds below (CouchDB's smoosh); 0: only on `POST /{db}/_compact`. */
  compactionAuto: number;
  /** How often the automatic policy looks at this node's copies, ms. */
  compactionCheckIntervalMs: number;
  /** A copy is compacted once its file size is this percentage of its live data or more (smoosh's ratio channel, min_priority 2.0 = 200). */
  compactionRatioPercentMin: number;
  /** ...and it is at least this big, bytes (smaller copies are never compacted automatically). */
  compactionSizeBytesMin: number;
  /** A copy with this much reclaimable space is compacted whatever its ratio, bytes (smoosh's slack channel). */
  compactionSlackBytesMin: number;
  /** Copy compactions running at once on this node; others wait their turn. */
  compactionJobsMax: number;
  /** Documents one compaction step rewrites at most: an edit waits for one step at most. */
  compactionBatchDocs: number;
  /** Share of wall time a compaction works, percent: it rests between steps for the rest (100: never rests). */
  compactionDutyPercent: number;
  /** `_purged_infos_limit` of new databases: purge requests each copy remembers (CouchDB's purged_infos_limit). */
  purgedInfosLimit: number;
  /** Document ids in one `_purge` request at most (CouchDB's max_document_id_number). */
  purgeDocsMax: number;
  /** Revisions in one `_purge` request at most (CouchDB's max_revisions_number). */
  purgeRevsMax: number;
  /** RocksDB block cache, bytes. */
  cacheBytes: number;
  /**
   * Decoded doc infos kept in memory, node-wide, bytes (src/shard/doc-info-cache.ts):
   * a read by id or an update of a cached document skips a RocksDB round trip and the
   * tree decode. 0 turns it off.
   */
  docInfoCacheBytes: number;
  /**
   * RocksDB memtable size, bytes. Larger means fewer, bigger L0 files after bulk
   * loads (less compaction competing with reads on a small machine) at the cost of
   * up to twice this in memory while a memtable is being flushed.
   */
  writeBufferBytes: number;
  /** Ops in one group-committed RocksDB batch at most. */
  storeBatchOpsMax: number;
  /** Edits one shard updater applies in one batch at most. */
  updateBatchDocsMax: number;
  /** Edits waiting for one shard's updater at most; beyond, 503. */
  updateQueueDocsMax: number;
  /**
   * Port of a separate, unauthenticated `/metrics` endpoint for Prometheus scrapers
   * (CouchDB's `prometheus.additional_port`); 0 turns it off. Bound to `metricsBindAddress`.
   */
  metricsPort: number;
  metricsBindAddress: string;
  /** CORS origins, comma-separated (`*` for any); empty turns CORS off (CouchDB's default). */
  corsOrigins: string;
  /** 1 to allow credentials (cookies, Authorization) on cross-origin requests. */
  corsCredentials: number;
  /** Log level: debug, info, warn, error. */
  logLevel: string;
  /** Deadline of one call into the user-JavaScript sandbox, ms (CouchDB's os_process_timeout: 5 s); beyond, the call fails and its worker is replaced. */
  jsTimeoutMs: number;
  /** Memory one sandbox worker's QuickJS runtime may allocate, bytes; bounds what a runaway map or a huge batch can take. */
  jsMemoryBytesMax: number;
  /** Worker threads running user JavaScript; each holds one QuickJS runtime and runs one call at a time. */
  jsWorkers: number;
  /** Calls waiting for a sandbox worker at most; beyond, 503 at once instead of an ever longer wait. */
  jsQueueCallsMax: number;
  /** Changes a view index absorbs per durable write while building: its checkpoint granularity. */
  viewBatchDocsMax: number;
  /** Document JSON sent to the sandbox in one map call at most, bytes (keeps a batch well inside jsMemoryBytesMax). */
  viewMapBatchBytesMax: number;
  /** Recently queried view indexes catch up this long after a write, ms, so queries find them warm; 0 turns it off. */
  viewWarmDelayMs: number;
  /** A view index not queried for this long is no longer caught up in the background, ms. */
  viewWarmIdleMs: number;
  /** Rows sharing one collation group (keys the codec cannot order exactly) that a view read sorts in memory at most; beyond, the read fails (500) instead of taking unbounded memory. */
  viewSideGroupRowsMax: number;
  /** CouchDB's reduce_limit: a JavaScript reduce whose output passes this size and does not shrink its input fails, bytes; 0 turns it off. */
  viewReduceLimitBytes: number;
  /**
   * How long a node may use its cached validate_doc_update functions of a database
   * before it asks a remote copy whether a design document changed, ms; a design
   * document written through another node takes effect here within this bound.
   */
  designDocsRecheckMs: number;
}

export const defaults: Readonly<Config> = Object.freeze({
  httpPort: 5984,
  bindAddress: '127.0.0.1',
  dataDir: './data',
  nodeName: '',
  grpcPort: 7984,
  grpcBindAddress: '127.0.0.1',
  advertiseAddress: '',
  httpAdvertiseAddress: '',
  seeds: '',
  clusterSecret: '',
  zone: '',
  dialOverrides: '',
  grpcTlsCert: '',
  grpcTlsKey: '',
  grpcTlsCa: '',
  grpcTlsServerName: '',
  grpcPlaintext: 0,
  grpcMessageBytesMax: 80 * 1024 * 1024,
  grpcAuthSkewMs: 30_000,
  grpcNoncesMax: 200_000,
  membershipProfile: 'lan',
  rpcTimeoutMs: 10_000,
  writeQuorumTimeoutMs: 5_000,
  syncIntervalMs: 60_000,
  syncBatchDocsMax: 500,
  catalogSyncIntervalMs: 5_000,
  adminUser: undefined,
  adminPassword: undefined,
  q: 2,
  n: 3,
  revsLimit: 1000,
  docBytesMax: 8_000_000,
  requestBytesMax: 64 * 1024 * 1024,
  attachmentBytesMax: 64 * 1024 * 1024,
  attachmentCompressibleTypes: 'text/*, application/javascript, application/json, application/xml',
  attachmentCompressionLevel: 8,
  jsonDepthMax: 64,
  docIdBytesMax: 8192,
  bulkDocsMax: 10_000,
  keysMax: 10_000,
  revsDiffRevsMax: 100_000,
  queriesMax: 100,
  findLimitDefault: 25,
  findRangesMax: 256,
  findScanWarningRatio: 10,
  uuidsCountMax: 1000,
  requestTimeoutMs: 60_000,
  changesTimeoutMs: 60_000,
  changesTimeoutMsMax: 60_000,
  rowsMax: Number.MAX_SAFE_INTEGER,
  connectionsMax: 4096,
  connectionsPerAddressMax: 1024,
  keepAliveTimeoutMs: 65_000,
  headersTimeoutMs: 20_000,
  bodyIdleTimeoutMs: 20_000,
  bodyBytesPerSecMin: 512,
  requestBytesInFlightMax: 128 * 1024 * 1024,
  sessionTimeoutSec: 600,
  pbkdf2Iterations: 100_000,
  authHashConcurrencyMax: 2,
  authHashQueueMax: 64,
  authCacheEntriesMax: 1024,
  authCacheTtlMs: 60_000,
  authLockoutMode: 'enforce',
  authLockoutThreshold: 5,
  authLockoutLifetimeMs: 300_000,
  authLockoutEntriesMax: 10_000,
  authHandlers: 'cookie,default',
  requireValidUser: 0,
  requireValidUserExceptForUp: 0,
  wwwAuthenticate: '',
  sessionPersistentCookies: 1,
  jwtKeys: '',
  jwtRequiredClaims: '',
  jwtRolesClaimPath: '',
  jwtRolesClaimName: '',
  proxySecret: '',
  proxyUseSecret: 1,
  usersDbSecurityEditable: 0,
  replicationJobsMax: 500,
  replicationRotateIntervalMs: 60_000,
  replicationChurnMax: 20,
  replicationCheckpointIntervalMs: 30_000,
  replicationBatchSize: 500,
  replicationLongpollMs: 10_000,
  replicationRetryBackoffMaxMs: 60_000,
  replicationOneShotRetriesMax: 5,
  replicationConnectionTimeoutMs: 30_000,
  replicationRetriesPerRequest: 5,
  replicationHttpConnections: 20,
  compactionAuto: 1,
  compactionCheckIntervalMs: 60_000,
  compactionRatioPercentMin: 200,
  compactionSizeBytesMin: 1024 * 1024,
  compactionSlackBytesMin: 512 * 1024 * 1024,
  compactionJobsMax: 1,
  compactionBatchDocs: 500,
  compactionDutyPercent: 25,
  purgedInfosLimit: 1000,
  purgeDocsMax: 100,
  purgeRevsMax: 1000,
  usersCacheEntriesMax: 10_000,
  usersCacheTtlMs: 5_000,
  cacheBytes: 64 * 1024 * 1024,
  docInfoCacheBytes: 16 * 1024 * 1024,
  writeBufferBytes: 32 * 1024 * 1024,
  storeBatchOpsMax: 200_000,
  updateBatchDocsMax: 2_000,
  updateQueueDocsMax: 200_000,
  metricsPort: 0,
  metricsBindAddress: '127.0.0.1',
  corsOrigins: '',
  corsCredentials: 0,
  logLevel: 'info',
  jsTimeoutMs: 5_000,
  jsMemoryBytesMax: 64 * 1024 * 1024,
  jsWorkers: 1,
  jsQueueCallsMax: 1024,
  viewBatchDocsMax: 1000,
  viewMapBatchBytesMax: 4 * 1024 * 1024,
  viewWarmDelayMs: 500,
  viewWarmIdleMs: 3_600_000,
  viewReduceLimitBytes: 5000,
  viewSideGroupRowsMax: 250_000,
  designDocsRecheckMs: 1_000,
});

/** Environment variables and the keys they set. */
export const envNames: Readonly<Record<string, keyof Config>> = Object.freeze({
  DIVAN_PORT: 'httpPort',
  DIVAN_BIND_ADDRESS: 'bindAddress',
  DIVAN_DATA_DIR: 'dataDir',
  DIVAN_NODE_NAME: 'nodeName',
  DIVAN_GRPC_PORT: 'grpcPort',
  DIVAN_GRPC_BIND_ADDRESS: 'grpcBindAddress',
  DIVAN_ADVERTISE_ADDRESS: 'advertiseAddress',
  DIVAN_HTTP_ADVERTISE_ADDRESS: 'httpAdvertiseAddress',
  DIVAN_SEEDS: 'seeds',
  DIVAN_CLUSTER_SECRET: 'clusterSecret',
  DIVAN_ZONE: 'zone',
  DIVAN_DIAL_OVERRIDES: 'dialOverrides',
  DIVAN_GRPC_TLS_CERT: 'grpcTlsCert',
  DIVAN_GRPC_TLS_KEY: 'grpcTlsKey',
  DIVAN_GRPC_TLS_CA: 'grpcTlsCa',
  DIVAN_GRPC_TLS_SERVER_NAME: 'grpcTlsServerName',
  DIVAN_GRPC_PLAINTEXT: 'grpcPlaintext',
  DIVAN_GRPC_MESSAGE_BYTES_MAX: 'grpcMessageBytesMax',
  DIVAN_MEMBERSHIP_PROFILE: 'membershipProfile',
  DIVAN_LOG_LEVEL: 'logLevel',
  DIVAN_ATTACHMENT_COMPRESSIBLE_TYPES: 'attachmentCompressibleTypes',
  DIVAN_ATTACHMENT_COMPRESSION_LEVEL: 'attachmentCompressionLevel',
  DIVAN_Q: 'q',
  DIVAN_N: 'n',
  DIVAN_METRICS_PORT: 'metricsPort',
  DIVAN_METRICS_BIND_ADDRESS: 'metricsBindAddress',
  DIVAN_CORS_ORIGINS: 'corsOrigins',
  DIVAN_CORS_CREDENTIALS: 'corsCredentials',
  DIVAN_AUTH_LOCKOUT_MODE: 'authLockoutMode',
  DIVAN_AUTH_LOCKOUT_THRESHOLD: 'authLockoutThreshold',
  DIVAN_AUTH_HANDLERS: 'authHandlers',
  DIVAN_REQUIRE_VALID_USER: 'requireValidUser',
  DIVAN_JWT_KEYS: 'jwtKeys',
  DIVAN_JWT_REQUIRED_CLAIMS: 'jwtRequiredClaims',
  DIVAN_PROXY_SECRET: 'proxySecret',
  COUCHDB_USER: 'adminUser',
  COUCHDB_PASSWORD: 'adminPassword',
});

type Raw = Record<string, unknown>;

/** Build the frozen config from a file, the environment and flags (each optional). */
export function loadConfig(sources: { file?: string; env?: NodeJS.ProcessEnv; flags?: Raw }): Readonly<Config> {
  const merged: Raw = { ...defaults };
  // Not Object.assign: a `__proto__` key in the file would set merged's prototype.
  if (sources.file) {
    for (const [key, value] of Object.entries(parseFile(sources.file))) {
      if (!Object.hasOwn(defaults, key)) throw new Error(`unknown config key: ${key}`);
      merged[key] = value;
    }
  }
  for (const [name, key] of Object.entries(envNames)) {
    const value = sources.env?.[name];
    if (value !== undefined && value !== '') merged[key] = value;
  }
  for (const [key, value] of Object.entries(sources.flags ?? {})) if (value !== undefined) merged[key] = value;
  return validate(merged);
}

function parseFile(file: string): Raw {
  const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
  assert.ok(parsed && typeof parsed === 'object' && !Array.isArray(parsed), `config file ${file} must hold a JSON object`);
  return parsed as Raw;
}

const stringKeys = new Set<keyof Config>([
  'bindAddress',
  'dataDir',
  'nodeName',
  'adminUser',
  'adminPassword',
  'logLevel',
  'corsOrigins',
  'grpcBindAddress',
  'advertiseAddress',
  'httpAdvertiseAddress',
  'seeds',
  'clusterSecret',
  'zone',
  'dialOverrides',
  'grpcTlsCert',
  'grpcTlsKey',
  'grpcTlsCa',
  'grpcTlsServerName',
  'membershipProfile',
  'metricsBindAddress',
  'authLockoutMode',
  'authHandlers',
  'wwwAuthenticate',
  'jwtKeys',
  'jwtRequiredClaims',
  'jwtRolesClaimPath',
  'jwtRolesClaimName',
  'proxySecret',
  'attachmentCompressibleTypes',
]);

export function validate(raw: Raw): Readonly<Config> {
  const out: Raw = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!Object.hasOwn(defaults, key)) throw new Error(`unknown config key: ${key}`);
    if (stringKeys.has(key as keyof Config)) {
      if (value !== undefined && typeof value !== 'string') throw new Error(`config ${key} must be a string`);
      out[key] = value;
      continue;
    }
    const number = typeof value === 'string' ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 0) {
      throw new Error(`config ${key} must be a non-negative integer, got ${JSON.stringify(value)}`);
    }
    out[key] = number;
  }
  const config = out as unknown as Config;
  config.dataDir = path.resolve(config.dataDir);
  checkRelations(config);
  return Object.freeze(config);
}

function checkRelations(c: Config): void {
  const fail = (why: string) => {
    throw new Error(`invalid config: ${why}`);
  };
  if (c.httpPort > 65535) fail('httpPort must be at most 65535');
  if (c.q < 1 || c.q > 256) fail('q must be in 1..256');
  if (c.n < 1) fail('n must be at least 1');
  if (c.revsLimit < 1) fail('revsLimit must be at least 1');
  if (c.docBytesMax > c.requestBytesMax) fail('docBytesMax must not exceed requestBytesMax');
  if (c.attachmentBytesMax > c.requestBytesMax) fail('attachmentBytesMax must not exceed requestBytesMax');
  if (c.attachmentCompressionLevel > 9) fail('attachmentCompressionLevel must be in 0..9');
  if (c.jsonDepthMax < 2) fail('jsonDepthMax must be at least 2');
  if (c.changesTimeoutMsMax < 1 || c.changesTimeoutMsMax > 2 ** 31 - 1) fail('changesTimeoutMsMax must be in 1..2147483647');
  if (c.changesTimeoutMs > c.changesTimeoutMsMax) fail('changesTimeoutMs must not exceed changesTimeoutMsMax');
  if (c.requestBytesInFlightMax < c.requestBytesMax) fail('requestBytesInFlightMax must be at least requestBytesMax');
  if (c.connectionsMax < 1) fail('connectionsMax must be at least 1');
  if (c.connectionsPerAddressMax < 1 || c.connectionsPerAddressMax > c.connectionsMax) {
    fail('connectionsPerAddressMax must be in 1..connectionsMax');
  }
  if (c.headersTimeoutMs < 1 || c.bodyIdleTimeoutMs < 1) fail('headersTimeoutMs and bodyIdleTimeoutMs must be at least 1');
  if (c.keysMax < 1 || c.revsDiffRevsMax < 1) fail('keysMax and revsDiffRevsMax must be at least 1');
  if (c.queriesMax < 1) fail('queriesMax must be at least 1');
  if (c.findLimitDefault < 0) fail('findLimitDefault must not be negative');
  if (c.findRangesMax < 1) fail('findRangesMax must be at least 1');
  if (c.findScanWarningRatio < 0) fail('findScanWarningRatio must not be negative');
  if (c.updateBatchDocsMax > c.updateQueueDocsMax) fail('updateBatchDocsMax must not exceed updateQueueDocsMax');
  if (c.bulkDocsMax > c.updateQueueDocsMax) fail('bulkDocsMax must not exceed updateQueueDocsMax');
  if (c.grpcPort > 65535) fail('grpcPort must be at most 65535');
  if (c.seeds.trim() !== '' && c.clusterSecret === '') fail('clusterSecret (DIVAN_CLUSTER_SECRET) is required to join seeds');
  if (c.clusterSecret !== '' && c.clusterSecret.length < 16) fail('clusterSecret must be at least 16 characters');
  if (!['lan', 'loopback'].includes(c.membershipProfile)) fail('membershipProfile must be lan or loopback');
  if (c.dialOverrides !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(c.dialOverrides);
    } catch {
      fail('dialOverrides must be a JSON object of address → address');
    }
    if (typeof parsed !== 'object' || parsed === null || Object.values(parsed).some((v) => typeof v !== 'string')) {
      fail('dialOverrides must be a JSON object of address → address');
    }
  }
  const tlsFiles = [c.grpcTlsCert, c.grpcTlsKey, c.grpcTlsCa].filter((f) => f !== '').length;
  if (tlsFiles !== 0 && tlsFiles !== 3) fail('grpcTlsCert, grpcTlsKey and grpcTlsCa must be given together');
  if (c.grpcTlsServerName !== '' && tlsFiles === 0) fail('grpcTlsServerName needs grpcTlsCert, grpcTlsKey and grpcTlsCa');
  if (c.grpcPlaintext > 1) fail('grpcPlaintext must be 0 or 1');
  if (c.grpcPlaintext === 1 && tlsFiles !== 0) fail('grpcPlaintext contradicts grpcTlsCert/grpcTlsKey/grpcTlsCa: give one or the other');
  if (tlsFiles === 0 && c.grpcPlaintext === 0 && (c.seeds.trim() !== '' || c.clusterSecret !== '')) {
    fail(
      'a clustered node (seeds or clusterSecret) needs mutual TLS between nodes: give grpcTlsCert, grpcTlsKey and grpcTlsCa ' +
        '(make them with `divan certs`), or set grpcPlaintext=1 (--grpc-plaintext) if plain text on a trusted network is intended',
    );
  }
  // One HTTP request's documents travel as one UpdateDocs message (bigger batches are
  // split by bytes); a document's worth of room covers the protobuf framing around them.
  if (c.grpcMessageBytesMax < c.requestBytesMax + c.docBytesMax) fail('grpcMessageBytesMax must be at least requestBytesMax + docBytesMax');
  if (c.grpcMessageBytesMax > 2 ** 31 - 1) fail('grpcMessageBytesMax must be below 2 GiB');
  if (c.grpcAuthSkewMs < 1000) fail('grpcAuthSkewMs must be at least 1000');
  if (c.grpcNoncesMax < 1000) fail('grpcNoncesMax must be at least 1000');
  if (c.corsCredentials > 1) fail('corsCredentials must be 0 or 1');
  if (c.corsCredentials === 1 && c.corsOrigins.split(',').map((o) => o.trim()).includes('*')) {
    fail('corsCredentials cannot be combined with corsOrigins "*" (browsers refuse it): list the origins');
  }
  if (c.authHashConcurrencyMax < 1) fail('authHashConcurrencyMax must be at least 1');
  if (c.authCacheEntriesMax < 1) fail('authCacheEntriesMax must be at least 1');
  if (c.authLockoutEntriesMax < 1) fail('authLockoutEntriesMax must be at least 1');
  if (!['enforce', 'warn', 'off'].includes(c.authLockoutMode)) fail('authLockoutMode must be enforce, warn or off');
  if (c.authLockoutThreshold < 1) fail('authLockoutThreshold must be at least 1');
  const handlers = c.authHandlers.split(',').map((h) => h.trim());
  for (const h of handlers) if (!['cookie', 'default', 'jwt', 'proxy'].includes(h)) fail(`authHandlers: unknown handler ${JSON.stringify(h)} (cookie, default, jwt, proxy)`);
  if (handlers.includes('jwt') && c.jwtKeys === '') fail('authHandlers includes jwt but jwtKeys is empty');
  if (handlers.includes('proxy') && c.proxyUseSecret === 1 && c.proxySecret === '') fail('authHandlers includes proxy with proxyUseSecret=1 but proxySecret is empty');
  if (c.usersCacheEntriesMax < 1) fail('usersCacheEntriesMax must be at least 1');
  if (c.replicationJobsMax < 1) fail('replicationJobsMax must be at least 1');
  if (c.replicationRotateIntervalMs < 100) fail('replicationRotateIntervalMs must be at least 100');
  if (c.replicationChurnMax < 1) fail('replicationChurnMax must be at least 1');
  if (c.replicationBatchSize < 1) fail('replicationBatchSize must be at least 1');
  if (c.replicationHttpConnections < 1) fail('replicationHttpConnections must be at least 1');
  if (c.compactionAuto > 1) fail('compactionAuto must be 0 or 1');
  if (c.compactionCheckIntervalMs < 100) fail('compactionCheckIntervalMs must be at least 100');
  if (c.compactionRatioPercentMin < 100) fail('compactionRatioPercentMin must be at least 100');
  if (c.compactionJobsMax < 1) fail('compactionJobsMax must be at least 1');
  if (c.compactionBatchDocs < 1) fail('compactionBatchDocs must be at least 1');
  if (c.compactionDutyPercent < 1 || c.compactionDutyPercent > 100) fail('compactionDutyPercent must be in 1..100');
  if (c.purgedInfosLimit < 1) fail('purgedInfosLimit must be at least 1');
  if (c.purgeDocsMax < 1 || c.purgeRevsMax < 1) fail('purgeDocsMax and purgeRevsMax must be at least 1');
  if (c.replicationLongpollMs < 1) fail('replicationLongpollMs must be at least 1');
  if (c.jsTimeoutMs < 10 || c.jsTimeoutMs > 2 ** 31 - 1) fail('jsTimeoutMs must be in 10..2147483647');
  if (c.jsMemoryBytesMax < 1024 * 1024 || c.jsMemoryBytesMax > 1024 * 1024 * 1024) fail('jsMemoryBytesMax must be in 1 MiB..1 GiB');
  if (c.jsWorkers < 1 || c.jsWorkers > 64) fail('jsWorkers must be in 1..64');
  if (c.jsQueueCallsMax < 1) fail('jsQueueCallsMax must be at least 1');
  if (c.designDocsRecheckMs > 2 ** 31 - 1) fail('designDocsRecheckMs must be at most 2147483647');
  if (!['debug', 'info', 'warn', 'error'].includes(c.logLevel)) fail('logLevel must be debug, info, warn or error');
  if ((c.adminUser === undefined) !== (c.adminPassword === undefined)) {
    fail('COUCHDB_USER and COUCHDB_PASSWORD must be given together');
  }
}
