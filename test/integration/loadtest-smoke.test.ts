/**
 * The benchmark programs keep working: each runs briefly and prints its table. No
 * figure is judged (timings are never asserted), only that every row ran and counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const distLoadtest = path.join(__dirname, '..', '..', 'loadtest');

/** Runs a compiled load-test program; its exit status must be one of `statuses` (0: every scenario ran). */
function run(script: string, args: string[], statuses = [0]): string {
  const result = spawnSync(process.execPath, [path.join(distLoadtest, script), ...args], { encoding: 'utf8', timeout: 120_000 });
  assert.ok(result.status !== null && statuses.includes(result.status), `${script} exited with ${result.status}: ${result.stderr}`);
  return result.stdout;
}

/** Table rows (`| a | b |`) of Markdown output, as cells, header and rule lines excluded. */
function rows(markdown: string): string[][] {
  return markdown
    .split('\n')
    .filter((line) => line.startsWith('|') && !line.startsWith('|--') && !line.startsWith('|---'))
    .slice(1)
    .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()));
}

test('loadtest:rpc measures the Divan call and both echo baselines', () => {
  const table = rows(run('rpc-run.js', ['--calls', '300', '--concurrency', '1,3']));
  assert.deepEqual(
    table.map((cells) => [cells[0], cells[1]]),
    [
      ['Divan `GetDocInfos`, 1 id', '1'],
      ['Divan `GetDocInfos`, 1 id', '3'],
      ['bare grpc-js bidi echo, 128 B', '1'],
      ['plain Node http2 echo, 128 B', '1'],
    ],
  );
  for (const cells of table) {
    const [, , callsPerSecond, client, server, both] = cells.map((c) => Number(c!.replace(/,/g, '')));
    assert.ok(callsPerSecond! > 0, `calls/s in ${cells.join(' | ')}`);
    assert.ok(client! > 0 && server! > 0, `CPU per call in ${cells.join(' | ')}`);
    assert.ok(Math.abs(both! - client! - server!) < 0.2, `both = client + server in ${cells.join(' | ')}`);
  }
});

interface SideOutcome {
  kind: string;
  errors: number;
  statuses: Record<string, number>;
}
interface Report {
  sections: { key: string; outcomes: Record<string, SideOutcome> }[];
}

test('loadtest:cluster runs the r=1 read ceiling on both sides, every read answered 200', () => {
  const jsonOut = path.join(os.tmpdir(), `divan-smoke-${process.pid}.json`);
  try {
    const out = run('cluster-run.js', ['--scenarios', 'read-r1', '--seconds', '0.5', '--json-out', jsonOut]);
    const rate = rows(out).find((cells) => cells[0]!.startsWith('read by id with ?r=1'));
    assert.ok(rate, `no r=1 read row in:\n${out}`);
    const report = JSON.parse(readFileSync(jsonOut, 'utf8')) as Report;
    const section = report.sections.find((s) => s.key === 'read-r1');
    assert.ok(section, 'no read-r1 section in the JSON report');
    for (const side of ['single', 'cluster']) {
      const outcome: SideOutcome = section.outcomes[side]!;
      assert.equal(outcome.kind, 'done', `${side}: ${JSON.stringify(outcome)}`);
      assert.equal(outcome.errors, 0, `${side}: ${JSON.stringify(outcome)}`);
      assert.deepEqual(Object.keys(outcome.statuses), ['200'], `${side}: ${JSON.stringify(outcome.statuses)}`);
      assert.ok(outcome.statuses['200']! > 0);
    }
  } finally {
    rmSync(jsonOut, { force: true });
  }
});

interface RunOutcome {
  kind: string;
  error?: string;
  errors: number;
  errorSamples: string[];
  metrics: Record<string, number | null>;
  details: Record<string, unknown>;
}
interface RunJson {
  scenarios: { key: string; outcomes: Record<string, RunOutcome> }[];
}

const viewScenarios = ['view_build', 'view_key', 'view_group', 'view_reduce'];
/** The main figure of each view scenario, which must be a positive number. */
const viewRates: Record<string, string> = {
  view_build: 'docsPerSecond',
  view_key: 'requestsPerSecond',
  view_group: 'requestsPerSecond',
  view_reduce: 'requestsPerSecond',
};

/** Runs the view scenarios of loadtest/run.js on one server over 200 docs; asserts each ran clean. */
function runViewScenarios(only: 'divan' | 'peer', extraArgs: string[]): void {
  const jsonOut = path.join(os.tmpdir(), `divan-smoke-views-${only}-${process.pid}.json`);
  try {
    const args = ['--only', only, '--scenarios', viewScenarios.join(','), '--view-docs', '200', '--seconds', '0.3', '--json-out', jsonOut];
    run('run.js', [...args, ...extraArgs]);
    const report = JSON.parse(readFileSync(jsonOut, 'utf8')) as RunJson;
    assert.deepEqual(report.scenarios.map((s) => s.key), viewScenarios);
    for (const scenario of report.scenarios) {
      const outcome = scenario.outcomes[only]!;
      assert.equal(outcome.kind, 'done', `${scenario.key}: ${outcome.error ?? ''}`);
      assert.equal(outcome.errors, 0, `${scenario.key}: ${outcome.errorSamples.join('; ')}`);
      const rate = outcome.metrics[viewRates[scenario.key]!];
      assert.ok(typeof rate === 'number' && rate > 0, `${scenario.key}: rate ${String(rate)}`);
    }
  } finally {
    rmSync(jsonOut, { force: true });
  }
}

test('loadtest: the view scenarios run on Divan, every reply with the expected rows', () => {
  runViewScenarios('divan', []);
});

// The peer is never installed from a test (it is a network install): it runs only where
// `npm run loadtest` already put it, loadtest/.peer.
const peerDir = path.join(__dirname, '..', '..', '..', 'loadtest', '.peer');
const peerInstalled = existsSync(path.join(peerDir, 'node_modules', 'pouchdb-server', 'bin', 'pouchdb-server'));
test(
  'loadtest: the view scenarios run on PouchDB Server, every reply with the expected rows',
  { skip: peerInstalled ? false : `PouchDB Server not installed in ${peerDir}` },
  () => {
    runViewScenarios('peer', ['--peer-dir', peerDir]);
  },
);

const findScenarios = ['find_eq', 'find_range_sort', 'find_unindexed', 'find_in5_indexed', 'find_in5_scan'];
const findIndexed = new Set(['find_eq', 'find_range_sort', 'find_in5_indexed']);

/**
 * Runs the `_find` scenarios of loadtest/run.js on one server over 200 docs. Each must
 * either run clean (every reply checked, a positive rate, a build time where it builds an
 * index) or, where `allowNotImplemented`, fail on the server's honest 501: never crash
 * the run or pass a wrong answer.
 */
function runFindScenarios(only: 'divan' | 'peer', extraArgs: string[], allowNotImplemented: boolean): void {
  const jsonOut = path.join(os.tmpdir(), `divan-smoke-find-${only}-${process.pid}.json`);
  try {
    const args = ['--only', only, '--scenarios', findScenarios.join(','), '--find-docs', '200', '--seconds', '0.3', '--json-out', jsonOut];
    run('run.js', [...args, ...extraArgs], allowNotImplemented ? [0, 1] : [0]);
    const report = JSON.parse(readFileSync(jsonOut, 'utf8')) as RunJson;
    assert.deepEqual(report.scenarios.map((s) => s.key), findScenarios);
    for (const scenario of report.scenarios) {
      const outcome = scenario.outcomes[only]!;
      if (outcome.kind === 'failed' && allowNotImplemented) {
        assert.match(outcome.error ?? '', /: 501 .*not_implemented/, `${scenario.key}: ${outcome.error ?? ''}`);
        continue;
      }
      assert.equal(outcome.kind, 'done', `${scenario.key}: ${outcome.error ?? ''}`);
      assert.equal(outcome.errors, 0, `${scenario.key}: ${outcome.errorSamples.join('; ')}`);
      const rate = outcome.metrics.requestsPerSecond;
      assert.ok(typeof rate === 'number' && rate > 0, `${scenario.key}: rate ${String(rate)}`);
      if (findIndexed.has(scenario.key)) {
        const build = outcome.metrics.indexBuildSeconds;
        assert.ok(typeof build === 'number' && build > 0, `${scenario.key}: index build ${String(build)}`);
      }
    }
  } finally {
    rmSync(jsonOut, { force: true });
  }
}

test('loadtest: the _find scenarios run on Divan, every reply the expected docs', () => {
  runFindScenarios('divan', [], false);
});

test(
  'loadtest: the _find scenarios run on PouchDB Server, every reply the expected docs',
  { skip: peerInstalled ? false : `PouchDB Server not installed in ${peerDir}` },
  () => {
    runFindScenarios('peer', ['--peer-dir', peerDir], false);
  },
);

/**
 * Runs `keys` of loadtest/run.js on Divan alone; asserts each ran clean and that each
 * reported the metric named beside it.
 */
function runDivanScenarios(keys: Record<string, string>, extraArgs: string[]): void {
  const jsonOut = path.join(os.tmpdir(), `divan-smoke-${Object.keys(keys).join('-')}-${process.pid}.json`);
  try {
    run('run.js', ['--only', 'divan', '--scenarios', Object.keys(keys).join(','), ...extraArgs, '--json-out', jsonOut]);
    const report = JSON.parse(readFileSync(jsonOut, 'utf8')) as RunJson;
    assert.deepEqual(report.scenarios.map((s) => s.key), Object.keys(keys));
    for (const scenario of report.scenarios) {
      const outcome = scenario.outcomes.divan!;
      assert.equal(outcome.kind, 'done', `${scenario.key}: ${outcome.error ?? ''}`);
      assert.equal(outcome.errors, 0, `${scenario.key}: ${outcome.errorSamples.join('; ')}`);
      assert.ok((outcome.metrics[keys[scenario.key]!] ?? 0) > 0, `${scenario.key}: ${keys[scenario.key]}`);
    }
  } finally {
    rmSync(jsonOut, { force: true });
  }
}

test('loadtest: the read scenarios (as the admin, and as a _users member by role) run on Divan, every reply the right document', () => {
  runDivanScenarios({ read: 'requestsPerSecond', read_member: 'requestsPerSecond' }, ['--docs', '200', '--seconds', '0.3']);
});

test('loadtest: the server-side replication scenarios run on Divan, every doc replicated', () => {
  runDivanScenarios({ replicate_server: 'docsPerSecond', replicate_live: 'p99Ms' }, ['--replicate-docs', '300']);
});

test('loadtest: the compaction scenarios run on Divan, no request failing and the space measured', () => {
  runDivanScenarios({ compact_load: 'writesDuringPerSecond', compact_space: 'reclaimedMiB' }, ['--compact-docs', '300', '--space-docs', '500', '--seconds', '0.3']);
});
