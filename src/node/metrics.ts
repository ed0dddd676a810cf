/**
 * Every Prometheus metric of a node, declared here with help text and units in the
 * name, on the node's own registry (several nodes can share one test process).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'status'>;
  readonly httpDuration: Histogram<'method'>;
  readonly databases: Gauge;
  readonly viewDocsIndexed: Counter;
  readonly findQueries: Counter<'index'>;
  readonly findDocsExamined: Counter<'index'>;
  readonly authentications: Counter<'handler' | 'result'>;
  readonly refusals: Counter<'need'>;
  /** Set once the cluster is open: changes not yet in this node's view indexes. */
  indexLag: () => Promise<number> = async () => 0;
  /** Set once the cluster is open: view index builds running now. */
  indexBuilds: () => number = () => 0;

  readonly compactions: Counter<'result'>;
  readonly compactionDropped: Counter<'kind'>;
  readonly purgedRevisions: Counter;
  compactionsRunning: () => number = () => 0;
  /** Set once the cluster is open: the doc-info cache's figures. */
  docInfoCache: () => { entries: number; bytes: number; hits: number; misses: number } = () => ({ entries: 0, bytes: 0, hits: 0, misses: 0 });
  constructor(nodeName: string, countDatabases: () => number) {
    this.registry.setDefaultLabels({ node: nodeName });
    this.httpRequests = new Counter({
      name: 'divan_http_requests_total',
      help: 'HTTP requests answered, by method and status code',
      labelNames: ['method', 'status'],
      registers: [this.registry],
    });
    this.httpDuration = new Histogram({
      name: 'divan_http_request_duration_seconds',
      help: 'Time from request start to the last byte of the response, by method',
      labelNames: ['method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [this.registry],
    });
    this.databases = new Gauge({
      name: 'divan_databases',
      help: 'Databases in the catalog',
      registers: [this.registry],
      collect() {
        this.set(countDatabases());
      },
    });
    this.viewDocsIndexed = new Counter({
      name: 'divan_view_docs_indexed_total',
      help: 'Document changes absorbed by view index builds on this node (its rate is the build speed)',
      registers: [this.registry],
    });
    this.findQueries = new Counter({
      name: 'divan_find_queries_total',
      help: 'Mango _find queries answered, by the kind of index read (json, or _all_docs: a full scan)',
      labelNames: ['index'],
      registers: [this.registry],
    });
    this.findDocsExamined = new Counter({
      name: 'divan_find_docs_examined_total',
      help: 'Documents _find read to match its selector (against results, a high rate means a missing index)',
      labelNames: ['index'],
      registers: [this.registry],
    });
    this.authentications = new Counter({
      name: 'divan_auth_requests_total',
      help: 'Requests by how they authenticated (handler cookie, default, jwt, proxy, or none) and the result (ok, failed: 401, locked: lockout 403)',
      labelNames: ['handler', 'result'],
      registers: [this.registry],
    });
    this.refusals = new Counter({
      name: 'divan_authz_refused_total',
      help: 'Requests refused by the policy table, by the access they needed (db_member, db_admin, server_admin, ...)',
      labelNames: ['need'],
      registers: [this.registry],
    });
    this.compactions = new Counter({
      name: 'divan_compactions_total',
      help: 'Copy compactions that ended on this node, by result (completed; stopped: failed, or cancelled by shutdown or the copy being dropped)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.compactionDropped = new Counter({
      name: 'divan_compaction_dropped_total',
      help: 'What compactions freed: revision bodies (kind=body) and attachments (kind=attachment)',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    this.purgedRevisions = new Counter({
      name: 'divan_purged_revisions_total',
      help: 'Revisions removed by _purge requests through this node',
      registers: [this.registry],
    });
    const metrics = this;
    new Gauge({
      name: 'divan_compactions_running',
      help: 'Copy compactions running or waiting on this node',
      registers: [this.registry],
      collect() {
        this.set(metrics.compactionsRunning());
      },
    });
    new Gauge({
      name: 'divan_doc_info_cache_bytes',
      help: 'Estimated memory held by the decoded doc-info cache (docInfoCacheBytes bounds it)',
      registers: [this.registry],
      collect() {
        this.set(metrics.docInfoCache().bytes);
      },
    });
    new Gauge({
      name: 'divan_doc_info_cache_entries',
      help: 'Doc infos held by the decoded doc-info cache',
      registers: [this.registry],
      collect() {
        this.set(metrics.docInfoCache().entries);
      },
    });
    new Counter({
      name: 'divan_doc_info_cache_lookups_total',
      help: 'Doc-info cache lookups by result (hit: no RocksDB read, no decode)',
      labelNames: ['result'],
      registers: [this.registry],
      collect() {
        const { hits, misses } = metrics.docInfoCache();
        this.reset();
        this.inc({ result: 'hit' }, hits);
        this.inc({ result: 'miss' }, misses);
      },
    });
    new Gauge({
      name: 'divan_view_index_lag_changes',
      help: 'Changes of local copies not yet absorbed by the view indexes opened on them',
      registers: [this.registry],
      async collect() {
        this.set(await metrics.indexLag());
      },
    });
    new Gauge({
      name: 'divan_view_index_builds',
      help: 'View index builds running on this node',
      registers: [this.registry],
      collect() {
        this.set(metrics.indexBuilds());
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'divan_process_' });
  }

  observeFind(index: 'json' | '_all_docs', docsExamined: number): void {
    this.findQueries.inc({ index });
    this.findDocsExamined.inc({ index }, docsExamined);
  }

  observeRequest(method: string, status: number, seconds: number): void {
    this.httpRequests.inc({ method, status: String(status) });
    this.httpDuration.observe({ method }, seconds);
  }
}
