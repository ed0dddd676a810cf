/**
 * The benchmark programs keep working: each runs briefly and prints its table. No
 * figure is judged (timings are never asserted), only that every row ran and counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const distLoadtest = path.join(__dirname, '..', '..', 'loadtest');

function run(script: string, args: string[]): string {
  const result = spawnSync(process.execPath, [path.join(distLoadtest, script), ...args], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(result.status, 0, `${script} exited with ${result.status}: ${result.stderr}`);
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
