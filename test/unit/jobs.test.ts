/**
 * The job registry (src/node/jobs.ts): dedupe by id, the running bound with a queue,
 * cancel (running or waiting), turns for rotatable jobs past the bound, close.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobRegistry } from '../../src/node/jobs';
import { waitFor } from '../helpers/node-process';

/** A job that runs until its signal fires (then rejects), counting its runs. */
function untilAborted(id: string, runs: Map<string, number>, rotatable = false) {
  return {
    id,
    kind: 'test',
    rotatable,
    task: () => ({ runs: runs.get(id) ?? 0 }),
    run: (signal: AbortSignal) =>
      new Promise<never>((_, reject) => {
        runs.set(id, (runs.get(id) ?? 0) + 1);
        signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true });
      }),
  };
}

test('one job per id; at most runningMax run, the rest wait in order; cancel ends running and waiting jobs', async () => {
  const registry = new JobRegistry({ runningMax: 1, rotateIntervalMs: 60_000, churnMax: 1 });
  const runs = new Map<string, number>();
  const a = registry.start(untilAborted('a', runs));
  assert.equal(registry.start(untilAborted('a', runs)).started, false, 'the same id runs once');
  const b = registry.start(untilAborted('b', runs));
  await waitFor(async () => runs.get('a') === 1, 2000, 'a running');
  assert.deepEqual(registry.list().map((j) => [j.id, j.state]), [['a', 'running'], ['b', 'pending']]);
  assert.ok(registry.cancel('b'));
  await assert.rejects(b.done);
  assert.equal(runs.get('b'), undefined, 'a waiting job cancelled never ran');
  assert.ok(registry.cancel('a'));
  await assert.rejects(a.done, /stopped/);
  assert.equal(registry.cancel('a'), false);
  assert.deepEqual(registry.history().map((j) => [j.id, j.state]), [['a', 'cancelled'], ['b', 'cancelled']]);
  const c = registry.start({ id: 'c', kind: 'test', task: () => ({}), run: async () => 42 });
  assert.equal(await c.done, 42);
  await registry.close();
});

test('past runningMax, rotatable jobs take turns and every one makes progress; a job that is not rotatable keeps its slot', async () => {
  const registry = new JobRegistry({ runningMax: 1, rotateIntervalMs: 100, churnMax: 1 });
  const runs = new Map<string, number>();
  registry.start(untilAborted('x', runs, true));
  registry.start(untilAborted('y', runs, true));
  await waitFor(async () => (runs.get('x') ?? 0) >= 2 && (runs.get('y') ?? 0) >= 2, 10_000, 'both ran twice');
  assert.ok(registry.has('x') && registry.has('y'), 'turns do not end jobs');
  await registry.close();
  const fixed = new JobRegistry({ runningMax: 1, rotateIntervalMs: 100, churnMax: 1 });
  const runs2 = new Map<string, number>();
  fixed.start(untilAborted('p', runs2, false));
  fixed.start(untilAborted('q', runs2, true));
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(runs2.get('q'), undefined, 'q waits: p is not rotatable');
  await fixed.close();
  assert.deepEqual(fixed.list(), []);
});
