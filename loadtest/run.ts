/**
 * Divan load test: Divan and PouchDB Server 4.2 measured in one run, side by side.
 *
 * Starts the servers chosen with --only, then runs every scenario on each in turn
 * (Divan, then the peer, scenario by scenario, so both see the same machine noise),
 * prints a Markdown table of absolute figures and the ratio Divan/peer on stdout,
 * and writes the full results as JSON to --json-out. Progress goes to stderr, so
 * `npm run loadtest > table.md` keeps only the table.
 * Every timed scenario is bounded by --seconds and --max-ops; the servers are stopped
 * and their temp dirs removed at the end, on error and on SIGINT.
 * See loadtest/README.md.
 */
import { Command, Option } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { floatIn, intIn, machineInfo, projectRoot } from './common';
import { renderJson, renderMarkdown, type RunReport, type ScenarioReport, type ServerInfo, type ServerOutcome } from './report';
import { scenarios } from './all-scenarios';
import { newServerState, type RunContext, type Scenario, type ServerState } from './scenarios';
import { ChildSet, startDivan, startPeer, type ServerHandle, type ServerKind, type StartOptions } from './servers';

interface CliOptions {
  only: 'divan' | 'peer' | 'both';
  concurrency: number;
  seconds: number;
  maxOps: number;
  docs: number;
  replicateDocs: number;
  replicateTimeout: number;
  viewDocs: number;
  viewBuildTimeout: number;
  findDocs: number;
  findBuildTimeout: number;
  compactDocs: number;
  compactTimeout: number;
  spaceDocs: number;
  scenarios: string;
  jsonOut: string;
  divanMain: string;
  peerDir: string;
}

/** Deadline of one ordinary request (not a full scan, which has its own). */
const requestTimeoutMs = 60_000;
/** A server must start and answer its readiness probe within this. */
const startTimeoutMs = 60_000;

function main(): void {
  const root = projectRoot();
  const program = new Command()
    .name('loadtest')
    .description('Measure Divan against PouchDB Server 4.2 on loopback, scenario by scenario.')
    .addOption(new Option('--only <servers>', 'which servers to measure').choices(['divan', 'peer', 'both']).default('both'))
    .option('--concurrency <n>', 'client workers (and sockets) per timed scenario', intIn(1, 1000), 10)
    .option('--seconds <s>', 'time limit of each timed scenario, seconds', floatIn(0.1, 3600), 5)
    .option('--max-ops <n>', 'cap per timed scenario on requests (documents for _bulk_docs)', intIn(1, 10_000_000), 200_000)
    .option('--docs <n>', 'documents in the database scanned by _all_docs and _changes', intIn(1, 10_000_000), 100_000)
    .option('--replicate-docs <n>', 'documents PouchDB pulls in the replication scenario', intIn(1, 10_000_000), 20_000)
    .option('--replicate-timeout <s>', 'replication is cancelled after this many seconds', floatIn(1, 3600), 300)
    .option('--view-docs <n>', 'documents in the database the view scenarios index and query', intIn(1, 10_000_000), 100_000)
    .option('--view-build-timeout <s>', "deadline of a view's first query (the index build), seconds", floatIn(1, 24 * 3600), 1800)
    .option('--find-docs <n>', 'documents in the database the _find scenarios index and query', intIn(1, 10_000_000), 100_000)
    .option('--find-build-timeout <s>', "deadline of a Mango index's build (POST _index and the first _find), seconds", floatIn(1, 24 * 3600), 1800)
    .option('--compact-docs <n>', 'documents (each updated 5 times) in the database compacted under load', intIn(1, 10_000_000), 20_000)
    .option('--compact-timeout <s>', 'cap on waiting for one compaction to finish, seconds', floatIn(1, 24 * 3600), 600)
    .option('--space-docs <n>', 'documents (each updated 5 times) in the database whose sizes compaction should shrink', intIn(1, 10_000_000), 100_000)
    .option('--scenarios <keys>', `comma-separated subset of: ${scenarios.map((s) => s.key).join(', ')}`, scenarios.map((s) => s.key).join(','))
    .option('--json-out <file>', 'where to write the JSON results', path.join(root, 'loadtest', 'results', 'latest.json'))
    .option('--divan-main <file>', "Divan's compiled entry point", path.join(root, 'dist', 'src', 'node', 'main.js'))
    .option('--peer-dir <dir>', 'where PouchDB Server is installed (on first use)', path.join(root, 'loadtest', '.peer'))
    .showHelpAfterError('(add --help for usage)');
  program.parse();
  const options = program.opts<CliOptions>();
  const selected = selectScenarios(options.scenarios, program);
  run(options, selected).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`loadtest failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

async function run(options: CliOptions, selected: readonly Scenario[]): Promise<number> {
  const abort = new AbortController();
  const children = new ChildSet();
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130); // the 'exit' hook below still kills the children
    process.stderr.write('\ninterrupted: stopping scenarios and servers (Ctrl-C again to force)\n');
    abort.abort();
  };
  const onExit = (): void => children.stopAllSync();
  process.on('SIGINT', onSigint);
  process.on('exit', onExit);

  const log = (line: string): void => {
    process.stderr.write(line + '\n');
  };
  const startOptions: StartOptions = { socketsMax: options.concurrency, requestTimeoutMs, startTimeoutMs, signal: abort.signal };
  const ctx: RunContext = {
    concurrency: options.concurrency,
    durationMs: options.seconds * 1000,
    opsMax: options.maxOps,
    scanDocsCount: options.docs,
    replicateDocsCount: options.replicateDocs,
    replicateTimeoutMs: options.replicateTimeout * 1000,
    viewDocsCount: options.viewDocs,
    viewBuildTimeoutMs: options.viewBuildTimeout * 1000,
    findDocsCount: options.findDocs,
    findBuildTimeoutMs: options.findBuildTimeout * 1000,
    compactDocsCount: options.compactDocs,
    compactTimeoutMs: options.compactTimeout * 1000,
    spaceDocsCount: options.spaceDocs,
    signal: abort.signal,
    log,
  };

  const servers: ServerHandle[] = [];
  const report: RunReport = {
    generatedAt: new Date().toISOString(),
    interrupted: false,
    machine: machineInfo(),
    options: { ...options },
    servers: {},
    scenarios: [],
  };
  try {
    if (options.only !== 'peer') servers.push(await startLogged('Divan', () => startDivan(options.divanMain, children, startOptions), log));
    if (options.only !== 'divan') servers.push(await startLogged('PouchDB Server', () => startPeer(options.peerDir, children, startOptions), log));
    for (const server of servers) report.servers[server.kind] = await serverInfo(server);

    const states = new Map<ServerKind, ServerState>(servers.map((server) => [server.kind, newServerState()]));
    for (const scenario of selected) {
      if (abort.signal.aborted) break;
      log(`${scenario.title}`);
      const scenarioReport: ScenarioReport = { key: scenario.key, title: scenario.title, metrics: scenario.metrics, outcomes: {} };
      for (const server of servers) {
        if (abort.signal.aborted) break;
        const outcome = await runOne(scenario, server, states.get(server.kind) ?? newServerState(), ctx);
        scenarioReport.outcomes[server.kind] = outcome;
        log(`  ${server.label}: ${describe(scenario, outcome)}`);
      }
      report.scenarios.push(scenarioReport);
    }
  } finally {
    for (const server of servers) server.client.close();
    await children.stopAll();
    process.off('SIGINT', onSigint);
    process.off('exit', onExit);
  }

  report.interrupted = abort.signal.aborted;
  process.stdout.write(renderMarkdown(report));
  if (report.interrupted) {
    log(`interrupted: ${options.jsonOut} left as it was`);
    return 130;
  }
  fs.mkdirSync(path.dirname(options.jsonOut), { recursive: true });
  fs.writeFileSync(options.jsonOut, renderJson(report));
  log(`results written to ${options.jsonOut}`);
  const failed = report.scenarios.some((s) => Object.values(s.outcomes).some((o) => o?.kind === 'failed'));
  return failed ? 1 : 0;
}

/** One scenario on one server; a failure is recorded, not thrown, so the run goes on. */
async function runOne(scenario: Scenario, server: ServerHandle, state: ServerState, ctx: RunContext): Promise<ServerOutcome> {
  const exited = server.exited();
  if (exited !== null) return { kind: 'failed', error: `server not running (${exited})` };
  try {
    return { kind: 'done', ...(await scenario.run(server, state, ctx)) };
  } catch (err) {
    if (ctx.signal.aborted) return { kind: 'failed', error: 'interrupted' };
    const exitedNow = server.exited();
    const message = err instanceof Error ? err.message : String(err);
    return { kind: 'failed', error: exitedNow === null ? message : `${message} (server ${exitedNow})` };
  }
}

async function startLogged(label: string, start: () => Promise<ServerHandle>, log: (line: string) => void): Promise<ServerHandle> {
  log(`starting ${label}...`);
  const server = await start();
  log(`  ${server.label} pid ${server.pid} on 127.0.0.1:${server.port}, idle RSS ${server.idleRss.rssMiB?.toFixed(0) ?? '?'} MiB`);
  return server;
}

async function serverInfo(server: ServerHandle): Promise<ServerInfo> {
  let version: string | null = null;
  try {
    const reply = await server.client.request('GET', '/');
    const body = reply.body as { version?: unknown } | null;
    if (typeof body?.version === 'string') version = body.version;
  } catch {
    // The version is decoration: a server that cannot answer fails its scenarios instead.
  }
  return { label: server.label, version, port: server.port, pid: server.pid };
}

function describe(scenario: Scenario, outcome: ServerOutcome): string {
  if (outcome.kind === 'failed') return `FAILED: ${outcome.error.split('\n')[0]}`;
  const figures = scenario.metrics.map((metric) => {
    const value = outcome.metrics[metric.key];
    return `${value === null || value === undefined ? 'n/a' : value.toFixed(value >= 100 ? 0 : 2)} ${metric.label}`;
  });
  const errors = outcome.errors > 0 ? `; ${outcome.errors} errors, e.g. ${outcome.errorSamples[0] ?? ''}` : '';
  return figures.join(', ') + errors;
}

function selectScenarios(keys: string, program: Command): readonly Scenario[] {
  const wanted = keys.split(',').map((key) => key.trim()).filter((key) => key.length > 0);
  const unknown = wanted.filter((key) => !scenarios.some((s) => s.key === key));
  if (unknown.length > 0) program.error(`unknown scenario(s): ${unknown.join(', ')}`);
  return scenarios.filter((s) => wanted.includes(s.key));
}


main();
