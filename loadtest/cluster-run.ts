/**
 * Divan cluster load test: a single Divan node and a 3-node Divan cluster (q=2, n=3,
 * loopback) measured in one run, scenario by scenario, single node first.
 *
 * Scenarios (`--scenarios`, in this order):
 * - create, read, update: single-document requests at `--concurrency`; cluster requests
 *   round-robin over the three nodes.
 * - read-r1: reads with `?r=1`, which every cluster node answers from its own copy
 *   with no inter-node call: the same work per read as the single node, spread over
 *   three processes. What the cluster reaches here bounds any r=2 read on this machine.
 * - bulk: `_bulk_docs`, 1000 docs per request. changes: `_changes?since=0` full scans
 *   over `--changes-docs` docs (loaded untimed).
 * - live-pull: a live PouchDB pull through one node, writes through the others, ms from
 *   a write's ack to PouchDB's 'change' (see cluster-live-pull.ts; target p99 < 50 ms).
 * - degraded: the cluster loads its databases with every node up, then its last node is
 *   SIGKILLed and create/read/update run against the two live nodes only (with the
 *   status mix, 201 vs 202); the single node runs the same three again beside it.
 * - catchup: the cluster only (see cluster-catchup.ts).
 * Prints a Markdown table (absolute figures, cluster ÷ single, the issue's targets) on
 * stdout, progress on stderr, and writes JSON to `--json-out`. Every timed part is
 * bounded by `--seconds` and `--max-ops`, the whole run by `--run-timeout`; processes
 * and temp dirs are removed at the end, on error and on SIGINT.
 * See loadtest/CLUSTER.md.
 */
import { Command, Option } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCatchup, victimIndex } from './cluster-catchup';
import { livePullWrites, runLivePull } from './cluster-live-pull';
import { floatIn, intIn, machineInfo, projectRoot } from './common';
import {
  createDb,
  deleteDb,
  loadDocs,
  readDocsCount,
  settle,
  timedBulk,
  timedCreate,
  timedRead,
  timedScan,
  timedUpdate,
  updateDocsCount,
  type Bounds,
  type Outcome,
  type Target,
} from './cluster-scenarios';
import { DivanCluster, Launcher, startSingle, type LogStats, type NodeProcess } from './cluster';
import { formatNumber } from './report';
import { ChildSet } from './servers';

interface CliOptions {
  concurrency: number;
  seconds: number;
  maxOps: number;
  changesDocs: number;
  catchupDocs: number;
  catchupSample: number;
  catchupTimeout: number;
  membershipProfile: 'lan' | 'loopback';
  grpcPlaintext: boolean;
  q: number;
  n: number;
  scenarios: string;
  runTimeout: number;
  jsonOut: string;
  divanMain: string;
}

const scenarioKeys = ['create', 'read', 'read-r1', 'update', 'bulk', 'changes', 'live-pull', 'degraded', 'catchup'] as const;
type ScenarioKey = (typeof scenarioKeys)[number];

const clusterNodes = 3;
const requestTimeoutMs = 60_000;
const startTimeoutMs = 60_000;

interface MetricSpec {
  key: string;
  label: string;
  better: 'higher' | 'lower';
}

type SideOutcome = ({ kind: 'done' } & Outcome) | { kind: 'failed'; error: string };
type Side = 'single' | 'cluster';

interface Section {
  key: string;
  title: string;
  metrics: MetricSpec[];
  /** Show the HTTP status mix as a row. */
  statusesRow: boolean;
  outcomes: Partial<Record<Side, SideOutcome>>;
}

interface TargetSpec {
  section: string;
  metric: string;
  /** cluster ÷ single must be ≥ (higher is better) or ≤ (lower is better) this. */
  bound: number;
  what: string;
  /** The bound is on the cluster's own figure (e.g. ms), not on cluster ÷ single; it must be below it. */
  absolute?: boolean;
}

/** The issue's targets, for the healthy cluster. */
const targets: TargetSpec[] = [
  { section: 'create', metric: 'docsPerSecond', bound: 0.4, what: 'single-document writes ≥ 40% of single node' },
  { section: 'update', metric: 'requestsPerSecond', bound: 0.4, what: 'single-document writes ≥ 40% of single node' },
  { section: 'read', metric: 'requestsPerSecond', bound: 0.6, what: 'reads ≥ 60% of single node' },
  { section: 'create', metric: 'p99Ms', bound: 3, what: 'p99 write latency ≤ 3× single node' },
  { section: 'update', metric: 'p99Ms', bound: 3, what: 'p99 write latency ≤ 3× single node' },
  { section: 'live-pull', metric: 'p99Ms', bound: 50, what: 'a live PouchDB pull through any node sees a write at p99 < 50 ms', absolute: true },
];

const higher = (key: string, label: string): MetricSpec => ({ key, label, better: 'higher' });
const lower = (key: string, label: string): MetricSpec => ({ key, label, better: 'lower' });
const cpuMetric = (per: string): MetricSpec => lower('serverCpuMsPerOp', `server CPU ms/${per}`);
const requestMetrics = (rateKey: string, rateLabel: string): MetricSpec[] => [
  higher(rateKey, rateLabel),
  lower('p50Ms', 'p50 ms'),
  lower('p99Ms', 'p99 ms'),
  cpuMetric('request'),
];

function main(): void {
  const root = projectRoot();
  const program = new Command()
    .name('loadtest-cluster')
    .description('Measure a single Divan node and a 3-node Divan cluster on loopback, scenario by scenario.')
    .option('--concurrency <n>', 'client workers per timed scenario', intIn(1, 1000), 10)
    .option('--seconds <s>', 'time limit of each timed scenario, seconds', floatIn(0.1, 3600), 5)
    .option('--max-ops <n>', 'cap per timed scenario on requests (documents for _bulk_docs)', intIn(1, 10_000_000), 200_000)
    .option('--changes-docs <n>', 'documents in the database _changes scans', intIn(1, 10_000_000), 50_000)
    .option('--catchup-docs <n>', 'documents written while a node is down (catch-up scenario)', intIn(1, 10_000_000), 10_000)
    .option('--catchup-sample <n>', 'random ids polled on the restarted node (plus the last 5 written)', intIn(1, 100_000), 50)
    .option('--catchup-timeout <s>', 'catch-up must complete within this after the restart', floatIn(1, 3600), 120)
    .addOption(new Option('--membership-profile <profile>', 'cluster membership timers').choices(['lan', 'loopback']).default('lan'))
    .option('--grpc-plaintext', 'plain text between the cluster nodes instead of mutual TLS (to see what TLS costs)', false)
    .option('--q <n>', 'shard ranges per database (both servers)', intIn(1, 64), 2)
    .option('--n <n>', 'copies per range in the cluster', intIn(1, clusterNodes), 3)
    .option('--scenarios <keys>', `comma-separated subset of: ${scenarioKeys.join(', ')}`, scenarioKeys.join(','))
    .option('--run-timeout <s>', 'the whole run is aborted after this', floatIn(10, 24 * 3600), 900)
    .option('--json-out <file>', 'where to write the JSON results', path.join(root, 'loadtest', 'results', 'cluster-latest.json'))
    .option('--divan-main <file>', "Divan's compiled entry point", path.join(root, 'dist', 'src', 'node', 'main.js'))
    .showHelpAfterError('(add --help for usage)');
  program.parse();
  const options = program.opts<CliOptions>();
  const wanted = options.scenarios.split(',').map((k) => k.trim()).filter((k) => k.length > 0);
  const unknown = wanted.filter((k) => !(scenarioKeys as readonly string[]).includes(k));
  if (unknown.length > 0) program.error(`unknown scenario(s): ${unknown.join(', ')}`);
  run(options, new Set(wanted as ScenarioKey[])).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`cluster load test failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

interface Report {
  generatedAt: string;
  interrupted: boolean;
  abortReason: string | null;
  wallSeconds: number;
  machine: { cpusCount: number; cpuModel: string; totalMemoryMiB: number; platform: string; node: string };
  options: Record<string, unknown>;
  servers: Record<string, unknown>;
  sections: Section[];
  events: { atSeconds: number; what: string; data?: unknown }[];
  nodeLogs: Record<string, LogStats>;
  peakRssMiB: Record<string, number | null>;
  /** Epoch ms of the run's start, for the log times. */
  startEpochMs: number;
}

async function run(options: CliOptions, selected: Set<ScenarioKey>): Promise<number> {
  const runStartMs = performance.now();
  const runStartEpochMs = Date.now();
  const abort = new AbortController();
  let abortReason: string | null = null;
  const children = new ChildSet();
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130); // the 'exit' hook below still kills the children
    process.stderr.write('\ninterrupted: stopping scenarios and servers (Ctrl-C again to force)\n');
    abortReason ??= 'SIGINT';
    abort.abort();
  };
  const onExit = (): void => children.stopAllSync();
  process.on('SIGINT', onSigint);
  process.on('exit', onExit);
  const runTimer = setTimeout(() => {
    process.stderr.write(`\nrun timeout (${options.runTimeout} s): stopping\n`);
    abortReason ??= 'run timeout';
    abort.abort();
  }, options.runTimeout * 1000);
  runTimer.unref();

  const log = (line: string): void => {
    process.stderr.write(line + '\n');
  };
  const at = (): number => (performance.now() - runStartMs) / 1000;
  const bounds: Bounds = {
    concurrency: options.concurrency,
    durationMs: options.seconds * 1000,
    opsMax: options.maxOps,
    signal: abort.signal,
    log,
  };
  const report: Report = {
    generatedAt: new Date().toISOString(),
    interrupted: false,
    abortReason: null,
    wallSeconds: 0,
    machine: machineInfo(),
    options: { ...options, clusterNodes },
    servers: {},
    sections: [],
    events: [],
    nodeLogs: {},
    peakRssMiB: {},
    startEpochMs: runStartEpochMs,
  };
  const event = (what: string, data?: unknown): void => {
    report.events.push({ atSeconds: Number(at().toFixed(2)), what, ...(data === undefined ? {} : { data }) });
  };

  let single: NodeProcess | null = null;
  let cluster: DivanCluster | null = null;
  try {
    const launcher = new Launcher({ mainPath: options.divanMain, children, socketsMax: options.concurrency, requestTimeoutMs, startTimeoutMs, signal: abort.signal });
    log('starting the single node...');
    single = await startSingle(launcher, options.q);
    log(`  single node pid ${single.pid} on 127.0.0.1:${single.httpPort}`);
    log(`starting a ${clusterNodes}-node cluster (q=${options.q}, n=${options.n}, ${options.membershipProfile} membership)...`);
    const clusterStartMs = performance.now();
    cluster = await DivanCluster.start(launcher, { nodes: clusterNodes, q: options.q, n: options.n, membershipProfile: options.membershipProfile, grpcPlaintext: options.grpcPlaintext });
    const clusterUpSeconds = (performance.now() - clusterStartMs) / 1000;
    log(`  cluster up in ${clusterUpSeconds.toFixed(1)} s: ${cluster.nodes.map((node, i) => `${cluster!.names[i]} pid ${node.pid} :${node.httpPort}`).join(', ')}`);
    event('cluster up', { seconds: clusterUpSeconds });
    report.servers = {
      single: { port: single.httpPort, pid: single.pid, version: await version(single), q: options.q, n: 1 },
      cluster: {
        nodes: cluster.nodes.map((node, i) => ({ name: cluster!.names[i], port: node.httpPort, grpc: cluster!.grpcAddress(i), pid: node.pid })),
        version: await version(cluster.nodes[0]),
        q: options.q,
        n: options.n,
        membershipProfile: options.membershipProfile,
        startSeconds: clusterUpSeconds,
      },
    };
    const singleNode = single;
    const theCluster = cluster;
    const singleTarget = (): Target => ({ label: 'single', clients: [singleNode.http()], cpuSeconds: () => singleNode.cpuSeconds() });
    const clusterTarget = (): Target => {
      const live = theCluster.live();
      return { label: 'cluster', clients: live.map((node) => node.http()), cpuSeconds: () => sumOrNull(live.map((node) => node.cpuSeconds())) };
    };
    const both = async (section: Section, perSide: (target: Target, side: Side) => Promise<Outcome>): Promise<void> => {
      log(section.title);
      report.sections.push(section);
      for (const [side, target, node] of [
        ['single', singleTarget, singleNode],
        ['cluster', clusterTarget, null],
      ] as const) {
        if (abort.signal.aborted) return;
        const startedAt = at();
        section.outcomes[side] = await attempt(abort.signal, () => perSide(target(), side), node);
        const outcome = section.outcomes[side]!;
        if (outcome.kind === 'done') outcome.details.runSeconds = [Number(startedAt.toFixed(2)), Number(at().toFixed(2))];
        log(`  ${side}: ${describe(section, section.outcomes[side]!)}`);
      }
    };

    // 1. Healthy single-document requests.
    for (const key of ['create', 'read', 'read-r1', 'update'] as const) {
      if (!selected.has(key) || abort.signal.aborted) continue;
      if (key === 'read-r1') {
        const section = singleDocSection(key, 'read', 'read by id with ?r=1 (no inter-node call: the ceiling for reads here)');
        await both(section, (target) => freshSingleDoc('read', target, bounds, '?r=1'));
        continue;
      }
      await both(singleDocSection(key, key, titleOf(key, '')), (target) => freshSingleDoc(key, target, bounds));
    }
    // 3. Bulk writes and the changes feed.
    if (selected.has('bulk') && !abort.signal.aborted) {
      await both(
        { key: 'bulk', title: '_bulk_docs (1000 docs/request)', metrics: [higher('docsPerSecond', 'docs/s'), lower('p50Ms', 'p50 ms/request'), cpuMetric('request')], statusesRow: false, outcomes: {} },
        async (target) => {
          const db = await createDb(target, 'bulk');
          try {
            return await timedBulk(target, db, bounds);
          } finally {
            await deleteDb(target, db, log);
          }
        },
      );
    }
    if (selected.has('changes') && !abort.signal.aborted) {
      await both(
        {
          key: 'changes',
          title: `_changes?since=0 over ${options.changesDocs.toLocaleString('en-US')} docs`,
          metrics: [higher('rowsPerSecond', 'rows/s'), lower('scanMs', 'ms/scan (p50)')],
          statusesRow: false,
          outcomes: {},
        },
        async (target, side) => {
          const db = await createDb(target, 'changes');
          try {
            const loaded = await loadDocs(target, db, options.changesDocs, bounds);
            log(`  ${side}: loaded ${options.changesDocs} docs in ${(loaded.elapsedMs / 1000).toFixed(1)} s (untimed setup, ${((options.changesDocs * 1000) / loaded.elapsedMs).toFixed(0)} docs/s)`);
            const outcome = await timedScan(target, `/${db}/_changes?since=0`, options.changesDocs, bounds);
            outcome.details.loadDocsPerSecond = (options.changesDocs * 1000) / loaded.elapsedMs;
            outcome.details.loadStatuses = loaded.statuses;
            return outcome;
          } finally {
            await deleteDb(target, db, log);
          }
        },
      );
    }

    // 3b. A live PouchDB pull: a write seen by the puller.
    if (selected.has('live-pull') && !abort.signal.aborted) {
      await both(
        {
          key: 'live-pull',
          title: `live PouchDB pull (replicate.from, live): ${livePullWrites} writes one at a time, ack → PouchDB 'change' (cluster: pull from one node, write through the others)`,
          metrics: [lower('p50Ms', 'p50 ms'), lower('p99Ms', 'p99 ms'), lower('maxMs', 'max ms'), lower('p99FromStartMs', 'p99 ms from the write start')],
          statusesRow: false,
          outcomes: {},
        },
        (target) => runLivePull(target, bounds),
      );
    }

    // 2. The same single-document requests with one cluster node down.
    const victim = victimIndex(cluster);
    if (selected.has('degraded') && !abort.signal.aborted) {
            let prepared: Prepared | null = null;
      let prepareError: string | null = null;
      log(`degraded: loading the cluster's databases, then SIGKILL ${cluster.names[victim]}`);
      try {
        prepared = await prepareDegraded(clusterTarget(), bounds);
        await cluster.kill9(victim);
        event(`SIGKILL ${cluster.names[victim]}`, await cluster.views());
      } catch (err) {
        prepareError = err instanceof Error ? err.message : String(err);
        log(`  cluster preparation failed: ${prepareError.split('\n')[0]}`);
      }
      for (const key of ['create', 'read', 'update'] as const) {
        if (abort.signal.aborted) break;
        await both(singleDocSection(`degraded_${key}`, key, titleOf(key, `, ${cluster.names[victim]} down`)), async (target, side) => {
          if (side === 'single') return freshSingleDoc(key, target, bounds);
          if (prepared === null) throw new Error(`preparation failed: ${prepareError ?? 'unknown'}`);
          if (target.clients.length !== clusterNodes - 1) throw new Error(`expected ${clusterNodes - 1} live nodes, have ${target.clients.length}`);
          const before = await theCluster.views();
          const outcome = await preparedSingleDoc(key, prepared, target, bounds);
          outcome.details.membershipBefore = before;
          outcome.details.membershipAfter = await theCluster.views();
          return outcome;
        });
      }
      if (prepared !== null) for (const db of prepared.dbs) await deleteDb(clusterTarget(), db, log);
    }

    // 4. Catch-up of a restarted node.
    if (selected.has('catchup') && !abort.signal.aborted) {
      const section: Section = {
        key: 'catchup',
        title: `catch-up: ${options.catchupDocs.toLocaleString('en-US')} docs written with ${cluster.names[victim]} down, then it restarts`,
        metrics: [
          higher('writeDocsPerSecond', 'bulk docs/s while down'),
          lower('upSeconds', 's restart → /_up'),
          lower('firstSeconds', 's restart → first sampled doc on its copy'),
          lower('sampleSeconds', 's restart → whole sample on its copy'),
          lower('allSeconds', 's restart → check of every doc passed'),
          higher('syncDocsPerSecond', 'docs/s copied once started'),
        ],
        statusesRow: true,
        outcomes: {},
      };
      log(section.title);
      report.sections.push(section);
      const catchupStartedAt = at();
      section.outcomes.cluster = await attempt(abort.signal, async () => {
        if (!cluster!.nodes[victim].running) {
          log(`  restarting ${cluster!.names[victim]} (down since the degraded scenarios) and waiting until every node sees all alive`);
          const restart = await cluster!.restart(victim);
          await cluster!.waitForStates(Object.fromEntries(cluster!.names.map((name) => [name, ['alive' as const]])), 60_000);
          event(`${cluster!.names[victim]} back after the degraded scenarios`, { restart, views: await cluster!.views() });
          const stale = await staleDbs(cluster!, victim, 10_000);
          if (stale.length > 0) event(`databases deleted while ${cluster!.names[victim]} was down still listed by it after 10 s`, stale);
        }
        return runCatchup(cluster!, bounds, { docs: options.catchupDocs, sampleSize: options.catchupSample, timeoutMs: options.catchupTimeout * 1000 });
      }, null);
      if (section.outcomes.cluster.kind === 'done') section.outcomes.cluster.details.runSeconds = [Number(catchupStartedAt.toFixed(2)), Number(at().toFixed(2))];
      log(`  cluster: ${describe(section, section.outcomes.cluster)}`);
    }
  } finally {
    if (single !== null) report.peakRssMiB['single'] = single.sampleRss().peakRssMiB ?? single.peakRssMiB;
    if (single !== null) report.nodeLogs['single'] = single.logStats;
    if (cluster !== null) {
      cluster.nodes.forEach((node, i) => {
        node.sampleRss();
        report.peakRssMiB[cluster!.names[i]] = node.peakRssMiB;
        report.nodeLogs[cluster!.names[i]] = node.logStats;
      });
    }
    await children.stopAll();
    clearTimeout(runTimer);
    process.off('SIGINT', onSigint);
    process.off('exit', onExit);
  }

  report.interrupted = abort.signal.aborted;
  report.abortReason = abortReason;
  report.wallSeconds = at();
  process.stdout.write(renderMarkdown(report));
  if (report.interrupted) {
    log(`interrupted (${abortReason}): ${options.jsonOut} left as it was`);
    return 130;
  }
  fs.mkdirSync(path.dirname(options.jsonOut), { recursive: true });
  fs.writeFileSync(options.jsonOut, renderJson(report));
  log(`results written to ${options.jsonOut} (${report.wallSeconds.toFixed(0)} s)`);
  const failed = report.sections.some((s) => Object.values(s.outcomes).some((o) => o?.kind === 'failed'));
  return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ scenarios */

type SingleDocKey = 'create' | 'read' | 'update';

function titleOf(key: SingleDocKey, suffix: string): string {
  const what = { create: 'create (PUT /db/{id})', read: 'read by id (GET /db/{id})', update: 'update (PUT with _rev)' }[key];
  return what + suffix;
}

function singleDocSection(sectionKey: string, key: SingleDocKey, title: string): Section {
  const metrics = key === 'create' ? requestMetrics('docsPerSecond', 'docs/s') : requestMetrics('requestsPerSecond', 'req/s');
  return { key: sectionKey, title, metrics, statusesRow: sectionKey.startsWith('degraded') || key !== 'read', outcomes: {} };
}

/** Create a database, load what the scenario needs (untimed), run it, delete the database. */
async function freshSingleDoc(key: SingleDocKey, target: Target, bounds: Bounds, readQuery = ''): Promise<Outcome> {
  const db = await createDb(target, key);
  try {
    if (key === 'create') return await timedCreate(target, db, bounds);
    if (key === 'read') {
      const { ids } = await loadDocs(target, db, readDocsCount, bounds);
      return await timedRead(target, db, ids, bounds, readQuery);
    }
    const { ids, revs } = await loadDocs(target, db, Math.max(updateDocsCount, bounds.concurrency), bounds);
    return await timedUpdate(target, db, ids, revs, bounds);
  } finally {
    await deleteDb(target, db, bounds.log);
  }
}

interface Prepared {
  dbs: string[];
  createDb: string;
  readDb: string;
  readIds: string[];
  updateDb: string;
  updateIds: string[];
  updateRevs: string[];
}

/** The degraded scenarios' databases, loaded while every node is up. */
async function prepareDegraded(target: Target, bounds: Bounds): Promise<Prepared> {
  const dbs: string[] = [];
  try {
    const createDb_ = await createDb(target, 'dcreate');
    dbs.push(createDb_);
    const readDb = await createDb(target, 'dread');
    dbs.push(readDb);
    const updateDb = await createDb(target, 'dupdate');
    dbs.push(updateDb);
    const read = await loadDocs(target, readDb, readDocsCount, bounds);
    const update = await loadDocs(target, updateDb, Math.max(updateDocsCount, bounds.concurrency), bounds);
    await settle(target, bounds.signal); // every copy, the victim's too, holds the loads before it dies
    return { dbs, createDb: createDb_, readDb, readIds: read.ids, updateDb, updateIds: update.ids, updateRevs: update.revs };
  } catch (err) {
    for (const db of dbs) await deleteDb(target, db, bounds.log);
    throw err;
  }
}

function preparedSingleDoc(key: SingleDocKey, prepared: Prepared, target: Target, bounds: Bounds): Promise<Outcome> {
  if (key === 'create') return timedCreate(target, prepared.createDb, bounds);
  if (key === 'read') return timedRead(target, prepared.readDb, prepared.readIds, bounds);
  return timedUpdate(target, prepared.updateDb, prepared.updateIds, prepared.updateRevs, bounds);
}

/** `lt_d*` databases (deleted while the node was down) the node still lists, polled up to `timeoutMs`. */
async function staleDbs(cluster: DivanCluster, index: number, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let stale: string[] = [];
  while (Date.now() < deadline) {
    const reply = await cluster.nodes[index].http().request('GET', '/_all_dbs');
    stale = Array.isArray(reply.body) ? (reply.body as string[]).filter((name) => /^lt_d(create|read|update)_/.test(name)) : [`GET /_all_dbs: ${reply.status}`];
    if (stale.length === 0) return [];
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return stale;
}

function sumOrNull(values: (number | null)[]): number | null {
  return values.some((v) => v === null) ? null : values.reduce<number>((a, b) => a + (b ?? 0), 0);
}

/** One side of one scenario; a failure is recorded, not thrown, so the run goes on. */
async function attempt(signal: AbortSignal, work: () => Promise<Outcome>, node: NodeProcess | null): Promise<SideOutcome> {
  try {
    return { kind: 'done', ...(await work()) };
  } catch (err) {
    if (signal.aborted) return { kind: 'failed', error: 'interrupted' };
    const message = err instanceof Error ? err.message : String(err);
    const exited = node?.exited() ?? null;
    return { kind: 'failed', error: exited === null ? message : `${message} (server ${exited})` };
  }
}

async function version(node: NodeProcess): Promise<string | null> {
  try {
    const body = (await node.http().request('GET', '/')).body as { version?: unknown; vendor?: { version?: unknown } } | null;
    return typeof body?.vendor?.version === 'string' ? `Divan ${body.vendor.version}` : typeof body?.version === 'string' ? body.version : null;
  } catch {
    return null;
  }
}

/* ------------------------------------------------------------------ report */

function metricValue(outcome: SideOutcome | undefined, key: string): number | null {
  if (outcome === undefined || outcome.kind !== 'done') return null;
  return outcome.metrics[key] ?? null;
}

function ratio(section: Section, key: string): number | null {
  const cluster = metricValue(section.outcomes.cluster, key);
  const single = metricValue(section.outcomes.single, key);
  if (cluster === null || single === null || single === 0) return null;
  return cluster / single;
}

function targetOf(section: Section, metric: MetricSpec): { target: TargetSpec; ratio: number | null; met: boolean | null } | null {
  const target = targets.find((t) => t.section === section.key && t.metric === metric.key);
  if (target === undefined) return null;
  if (target.absolute === true) {
    const value = metricValue(section.outcomes.cluster, metric.key);
    return { target, ratio: ratio(section, metric.key), met: value === null ? null : value < target.bound };
  }
  const r = ratio(section, metric.key);
  return { target, ratio: r, met: r === null ? null : metric.better === 'higher' ? r >= target.bound : r <= target.bound };
}

function describe(section: Section, outcome: SideOutcome): string {
  if (outcome.kind === 'failed') return `FAILED: ${outcome.error.split('\n')[0]}`;
  const figures = section.metrics
    .filter((metric) => outcome.metrics[metric.key] !== undefined)
    .map((metric) => {
      const value = outcome.metrics[metric.key];
      return `${value === null || value === undefined ? 'n/a' : formatNumber(value)} ${metric.label}`;
    });
  const statuses = section.statusesRow ? `; statuses ${statusText(outcome.statuses)}` : '';
  const errors = outcome.errors > 0 ? `; ${outcome.errors} errors, e.g. ${outcome.errorSamples[0] ?? ''}` : '';
  return figures.join(', ') + statuses + errors;
}

function statusText(statuses: Record<string, number>): string {
  const entries = Object.entries(statuses).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? '–' : entries.map(([status, count]) => `${status}: ${count.toLocaleString('en-US')}`).join(', ');
}

function renderMarkdown(report: Report): string {
  const { machine, options } = report;
  const lines: string[] = [
    `Cluster load test, ${report.generatedAt.slice(0, 10)}${report.interrupted ? ` (interrupted: ${report.abortReason ?? ''}; partial)` : ''}: ` +
      `${machine.cpusCount} × ${machine.cpuModel}, ${machine.totalMemoryMiB.toFixed(0)} MiB, Node ${machine.node}; ` +
      `single Divan node vs ${clusterNodes}-node Divan cluster (q=${String(options.q)}, n=${String(options.n)}, ${String(options.membershipProfile)} membership, ${options.grpcPlaintext ? 'plain text' : 'mutual TLS'} between nodes), ` +
      `all on loopback with the client on the same machine; client concurrency ${String(options.concurrency)}, ${String(options.seconds)} s per timed scenario; ` +
      `cluster requests round-robin over the live nodes; Basic auth. Run took ${report.wallSeconds.toFixed(0)} s.`,
    '',
    '| Scenario | Metric | Single node | 3-node cluster | Cluster/single | Target |',
    '|---|---|--:|--:|--:|---|',
  ];
  const notes: string[] = [];
  for (const section of report.sections) {
    let first = true;
    const title = (): string => {
      const t = first ? section.title : '';
      first = false;
      return t;
    };
    for (const metric of section.metrics) {
      const arrow = metric.better === 'higher' ? '↑' : '↓';
      const r = ratio(section, metric.key);
      const t = targetOf(section, metric);
      const bound = t === null ? '' : t.target.absolute === true ? `cluster < ${String(t.target.bound)}` : `${metric.better === 'higher' ? '≥' : '≤'} ${t.target.bound.toFixed(2)}`;
      const targetCell = t === null ? '' : `${bound}: ${t.met === null ? 'n/a' : t.met ? '**met**' : '**missed**'}`;
      lines.push(`| ${title()} | ${metric.label} ${arrow} | ${cell(section.outcomes.single, metric.key)} | ${cell(section.outcomes.cluster, metric.key)} | ${r === null ? '–' : r.toFixed(2)} | ${targetCell} |`);
    }
    if (section.statusesRow) {
      const statuses = (side: Side): string => {
        const o = section.outcomes[side];
        return o === undefined ? '–' : o.kind === 'failed' ? 'failed' : statusText(o.statuses);
      };
      lines.push(`| ${title()} | HTTP statuses | ${statuses('single')} | ${statuses('cluster')} | | |`);
    }
    for (const side of ['single', 'cluster'] as const) {
      const outcome = section.outcomes[side];
      if (outcome === undefined) continue;
      if (outcome.kind === 'failed') notes.push(`${section.title}, ${side}: failed: ${oneLine(outcome.error)}`);
      else if (outcome.errors > 0) notes.push(`${section.title}, ${side}: ${outcome.errors} errors, e.g. ${oneLine(outcome.errorSamples[0] ?? '')}`);
    }
  }
  lines.push('', '↑ higher is better, ↓ lower is better; the ratio is cluster ÷ single node. Targets (from the issue) apply to the healthy cluster.');
  const judged = report.sections.flatMap((section) => section.metrics.map((metric) => targetOf(section, metric))).filter((t) => t !== null);
  if (judged.length > 0) {
    lines.push(`Targets met: ${judged.filter((t) => t!.met === true).length} of ${judged.length}.`);
  }
  for (const [node, stats] of Object.entries(report.nodeLogs)) {
    if (stats.warnings + stats.errors === 0) continue;
    const top = Object.entries(stats.byMessage)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4)
      .map(([msg, count]) => `${count}× ${msg}`)
      .join('; ');
    notes.push(`log of ${node}: ${stats.warnings} warn, ${stats.errors} error lines (${top})`);
  }
  const catchup = report.sections.find((section) => section.key === 'catchup')?.outcomes.cluster;
  if (catchup?.kind === 'done') {
    const d = catchup.details as { victim?: string; probeCopiedMs?: number; fullCheckMs?: number; membershipBeforeRestart?: Record<string, Record<string, string>>; missingAtFirstFullCheck?: number; sampleSize?: number };
    const seen = Object.entries(d.membershipBeforeRestart ?? {})
      .map(([node, view]) => `${node} saw ${d.victim} as ${view[d.victim ?? ''] ?? '?'}`)
      .join(', ');
    notes.push(
      `catch-up: a probe doc written with all nodes up reached ${d.victim}'s own copy after ${((d.probeCopiedMs ?? NaN) / 1000).toFixed(2)} s; ` +
        `just before the restart ${seen || 'no view'}; sample of ${d.sampleSize ?? '?'} ids; ${d.missingAtFirstFullCheck ?? '?'} docs missing at the first full check ` +
        `after the sample was complete (that check itself took ${((d.fullCheckMs ?? NaN) / 1000).toFixed(2)} s).`,
    );
  }
  for (const [node, stats] of Object.entries(report.nodeLogs)) {
    for (const change of stats.memberChanges) {
      if (change.state !== 'suspect' && change.state !== 'dead') continue;
      const seconds = (change.timeMs - report.startEpochMs) / 1000;
      notes.push(`${node} at ${seconds.toFixed(1)} s (${sectionAt(report, seconds)}): ${change.member} ${change.previous ?? '?'} → ${change.state} (incarnation ${change.incarnation ?? '?'})`);
    }
  }
  if (notes.length > 0) lines.push('', ...notes.map((note) => `- ${note}`));
  return lines.join('\n') + '\n';
}

/** Which scenario side ran at `seconds` into the run (from the outcomes' runSeconds). */
function sectionAt(report: Report, seconds: number): string {
  let best = 'between scenarios';
  for (const section of report.sections) {
    for (const side of ['single', 'cluster'] as const) {
      const outcome = section.outcomes[side];
      const span = outcome?.kind === 'done' ? (outcome.details.runSeconds as [number, number] | undefined) : undefined;
      if (span !== undefined && seconds >= span[0] && seconds <= span[1] + 0.5) best = `during ${section.title}, ${side}`;
    }
  }
  return best;
}

function cell(outcome: SideOutcome | undefined, key: string): string {
  if (outcome === undefined) return '–';
  if (outcome.kind === 'failed') return 'failed';
  const value = metricValue(outcome, key);
  return value === null ? 'n/a' : formatNumber(value);
}

function renderJson(report: Report): string {
  const sections = report.sections.map((section) => ({
    ...section,
    metrics: section.metrics.map((metric) => {
      const t = targetOf(section, metric);
      return {
        ...metric,
        single: metricValue(section.outcomes.single, metric.key),
        cluster: metricValue(section.outcomes.cluster, metric.key),
        ratio: ratio(section, metric.key),
        ...(t === null ? {} : { target: { bound: t.target.bound, what: t.target.what, met: t.met } }),
      };
    }),
  }));
  return JSON.stringify({ ...report, sections }, null, 2) + '\n';
}

function oneLine(text: string): string {
  const line = text.split('\n')[0];
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/* ------------------------------------------------------------------ plumbing */


main();
