/**
 * The cost of one inter-node shard call, apart from everything else: a copy served by
 * Divan's gRPC server in a child process, called by Divan's RemoteShardClient here
 * (one `GetDocInfos` of one id per call, on the multiplexed stream), at several
 * client concurrencies. Prints calls/s and the CPU per call of each side, measured by
 * `process.cpuUsage()` (all threads of each process). Loopback, secret auth, no TLS.
 *
 *   npm run build && node dist/loadtest/rpc-run.js [--calls 20000] [--concurrency 1,3,10]
 *
 * This is the work a cluster adds to each read (one remote doc-info read at r=2) and
 * each write (one call per remote copy), so it is the floor under the cluster ratios.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { intIn, machineInfo } from './common';
import { PeerClients } from '../src/node/rpc/client';
import { RemoteShardClient, shardHandlers } from '../src/node/rpc/shard-service';
import { RpcServer } from '../src/node/rpc/server';
import { ShardCopy } from '../src/shard/shard-copy';
import { Store } from '../src/storage/store';

const SECRET = 'rpc-benchmark-secret-0123456789';
const DOCS = 1000;

type CpuReply = { user: number; system: number };

/** The child: one copy with DOCS docs, served on a free port; answers 'cpu' with its cpuUsage. */
async function serve(dir: string): Promise<void> {
  const store = await Store.open(dir, { cacheBytes: 8 << 20, writeBufferBytes: 4 << 20, batchOpsMax: 10_000 });
  const copy = await ShardCopy.open(store, { copyId: 1, node: 'server', revsLimit: 1000, limits: { updateBatchDocsMax: 1000, updateQueueDocsMax: 100_000 } });
  await copy.updateDocs(Array.from({ length: DOCS }, (_, i) => ({ id: `d${i}`, deleted: false, body: { i, name: 'x'.repeat(100) }, attachments: null })));
  const rpc = new RpcServer({ bindAddress: '127.0.0.1', port: 0, secret: SECRET, authSkewMs: 60_000, log: { warn() {}, error() {} } });
  rpc.add('Membership', { Ping: () => ({}), PingReq: () => ({}), PushPull: () => ({ members: [] }) });
  rpc.add('Catalog', { Sync: () => ({}) });
  rpc.add('Shard', shardHandlers(() => copy));
  const port = await rpc.listen();
  process.on('message', (message) => {
    if (message === 'cpu') process.send!(process.cpuUsage());
    if (message === 'stop') void rpc.close().then(() => store.close()).then(() => process.exit(0));
  });
  process.send!({ port });
}

async function measure(options: { calls: number; concurrency: number[] }): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'divan-rpc-bench-'));
  const child: ChildProcess = fork(__filename, ['--serve', dir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = <T>(message: string) => new Promise<T>((resolve) => (child.once('message', (reply) => resolve(reply as T)), child.send(message)));
  try {
    const { port } = await new Promise<{ port: number }>((resolve, reject) => {
      child.once('message', (m) => resolve(m as { port: number }));
      child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
    const peers = new PeerClients({ secret: SECRET, dialOverrides: {} });
    const remote = new RemoteShardClient({
      node: 'server',
      copy: { db: 'bench', dbUuid: 'bench', range: 0 },
      peers,
      addressOf: () => `127.0.0.1:${port}`,
      isReachable: () => true,
      timeoutMs: 10_000,
    });
    for (let i = 0; i < 2000; i++) await remote.getDocInfos([`d${i % DOCS}`]); // warm-up
    const m = machineInfo();
    process.stdout.write(`RPC benchmark: ${m.cpusCount} × ${m.cpuModel}, Node ${m.node}; ${options.calls} GetDocInfos calls of one id per row.\n\n`);
    process.stdout.write('| concurrency | calls/s | client CPU µs/call | server CPU µs/call |\n|--:|--:|--:|--:|\n');
    for (const concurrency of options.concurrency) {
      let started = 0;
      const server0 = await ask<CpuReply>('cpu');
      const client0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (started < options.calls) {
            started++;
            const [info] = await remote.getDocInfos([`d${started % DOCS}`]);
            if (!info) throw new Error('a doc the server holds came back missing');
          }
        }),
      );
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const client = process.cpuUsage(client0);
      const server1 = await ask<CpuReply>('cpu');
      const serverUs = server1.user - server0.user + server1.system - server0.system;
      const row = [concurrency, Math.round(started / seconds), (client.user + client.system) / started, serverUs / started];
      process.stdout.write(`| ${row[0]} | ${row[1]!.toLocaleString('en-US')} | ${row[2]!.toFixed(1)} | ${row[3]!.toFixed(1)} |\n`);
    }
    peers.close();
    await new Promise<void>((resolve) => (child.once('exit', () => resolve()), child.send('stop')));
  } finally {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--serve') {
  void serve(process.argv[3]!);
} else {
  const program = new Command()
    .name('rpc-run')
    .description('CPU per inter-node shard call (see the file header)')
    .option('--calls <n>', 'calls per concurrency level', intIn(100, 10_000_000), 20_000)
    .option('--concurrency <list>', 'comma-separated client concurrencies', '1,3,10')
    .parse();
  const opts = program.opts<{ calls: number; concurrency: string }>();
  const concurrency = opts.concurrency.split(',').map((c) => intIn(1, 1000)(c.trim()));
  measure({ calls: opts.calls, concurrency }).catch((err) => {
    process.stderr.write(`rpc-run: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
