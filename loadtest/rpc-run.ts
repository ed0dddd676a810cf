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
 *
 * Two baselines, measured in the same run against the same child process, show how
 * much of a call is Divan's own: a bare grpc-js bidi stream echoing a message of the
 * request's size (no protobuf, no store), and the same echo on a plain Node http2
 * stream (no grpc-js).
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
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
/** The baselines' message size, about that of a one-id `GetDocInfos` frame and its reply. */
const ECHO_BYTES = 128;

type CpuReply = { user: number; system: number };

/** The child: one copy with DOCS docs, served on a free port; answers 'cpu' with its cpuUsage. */
async function serve(dir: string): Promise<void> {
  const store = await Store.open(dir, { cacheBytes: 8 << 20, writeBufferBytes: 4 << 20, batchOpsMax: 10_000 });
  const copy = await ShardCopy.open(store, { copyId: 1, node: 'server', revsLimit: 1000, limits: { updateBatchDocsMax: 1000, updateQueueDocsMax: 100_000 } });
  await copy.updateDocs(Array.from({ length: DOCS }, (_, i) => ({ id: `d${i}`, deleted: false, body: { i, name: 'x'.repeat(100) }, attachments: null })));
  const rpc = new RpcServer({ bindAddress: '127.0.0.1', port: 0, secret: SECRET, authSkewMs: 30_000, messageBytesMax: 80 << 20, noncesMax: 200_000, log: { warn() {}, error() {} } });
  rpc.add('Membership', { Ping: () => ({}), PingReq: () => ({}), PushPull: () => ({ members: [] }) });
  rpc.add('Catalog', { Sync: () => ({}) });
  rpc.add('Shard', shardHandlers(() => copy));
  const port = await rpc.listen();
  rpc.setTargets([`127.0.0.1:${port}`]);
  const echo = await serveEchoes();
  process.on('message', (message) => {
    if (message === 'cpu') process.send!(process.cpuUsage());
    if (message === 'stop') void rpc.close().then(() => store.close()).then(() => process.exit(0));
  });
  process.send!({ port, ...echo });
}

/** The baselines' method: bytes in, the same bytes out, no (de)serialization. */
const echoService: grpc.ServiceDefinition = {
  Echo: {
    path: '/bench.Echo/Echo',
    requestStream: true,
    responseStream: true,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};

/** A bare grpc-js server and a plain http2 server, each echoing every message of a stream. */
async function serveEchoes(): Promise<{ grpcEchoPort: number; h2EchoPort: number }> {
  const server = new grpc.Server();
  server.addService(echoService, { Echo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => call.on('data', (b: Buffer) => call.write(b)) });
  const grpcEchoPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const h2 = http2.createServer();
  h2.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.on('data', (b: Buffer) => stream.write(b));
  });
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  return { grpcEchoPort, h2EchoPort: (h2.address() as { port: number }).port };
}

/** One long-lived echo stream; `roundTrip()` sends a message and waits for it to come back (one at a time). */
function echoClient(kind: 'grpc' | 'h2', port: number): { roundTrip(payload: Buffer): Promise<void>; close(): void } {
  let waiting: (() => void) | undefined;
  const arrived = () => {
    const w = waiting;
    waiting = undefined;
    w?.();
  };
  if (kind === 'grpc') {
    const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const call = (client as unknown as { Echo(): grpc.ClientDuplexStream<Buffer, Buffer> }).Echo();
    call.on('data', arrived);
    call.on('error', () => undefined);
    return {
      roundTrip: (payload) => new Promise<void>((resolve) => ((waiting = resolve), call.write(payload))),
      close: () => (call.cancel(), client.close()),
    };
  }
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const stream = session.request({ ':method': 'POST', ':path': '/' }, { endStream: false });
  stream.on('data', arrived);
  stream.on('error', () => undefined);
  return {
    roundTrip: (payload) => new Promise<void>((resolve) => ((waiting = resolve), stream.write(payload))),
    close: () => (stream.close(), session.close()),
  };
}

async function measure(options: { calls: number; concurrency: number[] }): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'divan-rpc-bench-'));
  const child: ChildProcess = fork(__filename, ['--serve', dir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = <T>(message: string) => new Promise<T>((resolve) => (child.once('message', (reply) => resolve(reply as T)), child.send(message)));
  try {
    type Ports = { port: number; grpcEchoPort: number; h2EchoPort: number };
    const ports = await new Promise<Ports>((resolve, reject) => {
      child.once('message', (m) => resolve(m as Ports));
      child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
    const peers = new PeerClients({ secret: SECRET, dialOverrides: {} });
    const remote = new RemoteShardClient({
      node: 'server',
      copy: { db: 'bench', dbUuid: 'bench', range: 0 },
      peers,
      addressOf: () => `127.0.0.1:${ports.port}`,
      isReachable: () => true,
      timeoutMs: 10_000,
    });
    for (let i = 0; i < 2000; i++) await remote.getDocInfos([`d${i % DOCS}`]); // warm-up
    const m = machineInfo();
    process.stdout.write(`RPC benchmark: ${m.cpusCount} × ${m.cpuModel}, Node ${m.node}; ${options.calls} calls per row.\n\n`);
    process.stdout.write('| call | concurrency | calls/s | client CPU µs/call | server CPU µs/call | both, µs/call |\n|---|--:|--:|--:|--:|--:|\n');
    const row = async (label: string, concurrency: number, callOnce: (i: number) => Promise<void>): Promise<void> => {
      let started = 0;
      const server0 = await ask<CpuReply>('cpu');
      const client0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (started < options.calls) await callOnce(started++);
        }),
      );
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const client = process.cpuUsage(client0);
      const server1 = await ask<CpuReply>('cpu');
      const clientUs = (client.user + client.system) / started;
      const serverUs = (server1.user - server0.user + server1.system - server0.system) / started;
      const cells = [label, String(concurrency), Math.round(started / seconds).toLocaleString('en-US'), clientUs.toFixed(1), serverUs.toFixed(1), (clientUs + serverUs).toFixed(1)];
      process.stdout.write(`| ${cells.join(' | ')} |\n`);
    };
    for (const concurrency of options.concurrency) {
      await row('Divan `GetDocInfos`, 1 id', concurrency, async (i) => {
        const [info] = await remote.getDocInfos([`d${i % DOCS}`]);
        if (!info) throw new Error('a doc the server holds came back missing');
      });
    }
    const payload = Buffer.alloc(ECHO_BYTES, 0x61);
    for (const [kind, label, echoPort] of [
      ['grpc', `bare grpc-js bidi echo, ${ECHO_BYTES} B`, ports.grpcEchoPort],
      ['h2', `plain Node http2 echo, ${ECHO_BYTES} B`, ports.h2EchoPort],
    ] as const) {
      const echo = echoClient(kind, echoPort);
      for (let i = 0; i < 2000; i++) await echo.roundTrip(payload); // warm-up
      await row(label, 1, () => echo.roundTrip(payload));
      echo.close();
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
