/**
 * Throughput of the user-JavaScript sandbox: a one-line map function over 10,000
 * small documents in batches of 1,000, one worker, default limits. Prints docs/s for
 * a cold pass (compile and first use included) and a warm one.
 * Run after `npx tsc -p .`: `node dist/loadtest/js-sandbox.js [docs] [batch]`.
 */
import { SandboxPool } from '../src/shard/js/sandbox';

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 10_000);
  const batch = Number(process.argv[3] ?? 1_000);
  const docs = Array.from({ length: total }, (_, n) => ({ _id: `doc-${String(n).padStart(6, '0')}`, _rev: '1-abc', type: n % 3 === 0 ? 'a' : 'b', n, tags: ['x', 'y'] }));
  const pool = new SandboxPool({ timeoutMs: 5000, memoryBytesMax: 64 * 1024 * 1024, workers: 1 });
  try {
    const ddoc = await pool.compile({ views: { v: { map: 'function (doc) { if (doc.type === "a") emit(doc.n, null) }' } } });
    for (const pass of ['first', 'second', 'third']) {
      const start = process.hrtime.bigint();
      let rows = 0;
      for (let i = 0; i < total; i += batch) {
        const result = await pool.mapDocs(ddoc, ['v'], docs.slice(i, i + batch));
        for (const doc of result.docs) rows += (doc[0] as unknown[]).length;
      }
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      console.log(`${pass} pass: ${total} docs in batches of ${batch}: ${seconds.toFixed(3)} s, ${Math.round(total / seconds)} docs/s (${rows} rows)`);
    }
  } finally {
    await pool.close();
  }
}

void main();
