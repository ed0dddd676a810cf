/**
 * Divan node processes for the cluster load test: one single node, and a cluster of
 * N nodes on loopback that can lose a node (SIGKILL) and get it back (restart on the
 * same data directory, HTTP port and gRPC port).
 *
 * Every node runs `node MAIN --port P --bind 127.0.0.1 --data-dir DIR --grpc-port G`
 * with COUCHDB_USER/COUCHDB_PASSWORD in its environment; cluster nodes add
 * `--node-name nI --advertise-address 127.0.0.1:G --membership-profile PROFILE` and
 * `--seeds`, with DIVAN_CLUSTER_SECRET in the environment (not on the command line,
 * where `ps` shows it), and mutual TLS between nodes (the default for clusters) with
 * one node certificate made by `makeCerts` (`divan certs`) in a temp directory. gRPC ports are picked before the start from below the
 * kernel's ephemeral range and held until just before the nodes bind them. A node's
 * HTTP port is read from its `{"component":"http","msg":"listening","port":N}` line:
 * the gRPC server logs `listening` too, and first.
 *
 * All processes and data directories are registered in the run's `ChildSet`
 * (servers.ts), which stops them and removes the directories at the end, on error,
 * on SIGINT and synchronously on exit. Each node's log is watched: warn/error lines
 * are counted by message, with a few samples kept, for the report.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { holdFreePorts } from '../test/helpers/ports';
import { makeCerts } from '../src/node/certs';
import { HttpClient, type BasicAuth } from './client';
import { sampleRss, type ChildSet, type RssSample } from './servers';

type OwnedChild = Parameters<ChildSet['add']>[0];

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left';

export interface MemberView {
  name: string;
  state: MemberState;
  incarnation: number;
  address: string;
}

export interface LauncherOptions {
  mainPath: string;
  children: ChildSet;
  /** Client sockets per node (the load test's concurrency). */
  socketsMax: number;
  requestTimeoutMs: number;
  /** Deadline for a node to print its HTTP `listening` line and answer `/_up`. */
  startTimeoutMs: number;
  signal: AbortSignal;
}

/** Warn/error lines of one node's log, by message. */
export interface LogStats {
  warnings: number;
  errors: number;
  byMessage: Record<string, number>;
  /** The first few warn/error lines, cut to 400 characters. */
  samples: string[];
  /** Membership state changes this node logged (at most 200): epoch ms, member, from → to. */
  memberChanges: { timeMs: number; member: string; incarnation: number | null; previous: string | null; state: string }[];
}

/** Lines of output kept for start-up error messages. */
const outputLinesMax = 40;
const logSamplesMax = 24;
const readinessPollMs = 100;
const adminUser = 'admin';

/** Shared by every node of one run: the entry point, the admin, the child registry. */
export class Launcher {
  readonly auth: BasicAuth = { username: adminUser, password: randomBytes(12).toString('hex') };

  constructor(readonly options: LauncherOptions) {
    if (!fs.existsSync(options.mainPath)) {
      throw new Error(`Divan entry point ${options.mainPath} not found: build it with \`npx tsc -p .\``);
    }
  }

  /** A client for one node's HTTP port, Basic auth, `socketsMax` keep-alive sockets. */
  client(port: number): HttpClient {
    const { socketsMax, requestTimeoutMs, signal } = this.options;
    return new HttpClient({ host: '127.0.0.1', port, auth: this.auth, socketsMax, requestTimeoutMs, signal });
  }
}

/** One Divan process slot: started, killed and restarted on the same data directory. */
export class NodeProcess {
  httpPort = 0;
  /** Client of the current process; replaced on restart (the old sockets are dead). */
  client: HttpClient | null = null;
  readonly logStats: LogStats = { warnings: 0, errors: 0, byMessage: {}, samples: [], memberChanges: [] };
  /** Highest VmHWM sampled over every process this slot ran, MiB (sampled at kill and by `sampleRss`). */
  peakRssMiB: number | null = null;
  private child: ChildProcess | null = null;
  private output: string[] = [];
  private starts = 0;

  constructor(
    private readonly launcher: Launcher,
    readonly label: string,
    readonly dataDir: string,
    private readonly args: string[],
    private readonly env: Record<string, string>,
  ) {}

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Exit code or signal of the current process; null while it runs (or before the first start). */
  exited(): string | null {
    if (this.child === null) return 'not started';
    return exitDescription(this.child);
  }

  get running(): boolean {
    return this.child !== null && exitDescription(this.child) === null;
  }

  /**
   * Spawn the process (with `extraArgs` after the fixed ones) on `httpPort` (0: any),
   * resolve once it printed its HTTP `listening` line. Does not wait for `/_up`.
   */
  async spawn(extraArgs: string[] = [], httpPort = 0): Promise<void> {
    if (this.running) throw new Error(`${this.label} is already running`);
    const { options, auth } = this.launcher;
    this.client?.close();
    this.client = null;
    const args = [options.mainPath, '--port', String(httpPort), '--bind', '127.0.0.1', '--data-dir', this.dataDir, ...this.args, ...extraArgs];
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...this.env, COUCHDB_USER: auth.username, COUCHDB_PASSWORD: auth.password },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.output = [];
    this.starts++;
    const owned: OwnedChild = { child, label: this.label, tmpDir: this.dataDir, output: this.output };
    options.children.add(owned);
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(this.startError(`no HTTP "listening" line within ${options.startTimeoutMs} ms`)), options.startTimeoutMs);
      const onExit = (): void => {
        clearTimeout(timer);
        reject(this.startError('exited before listening'));
      };
      child.once('exit', onExit);
      this.capture(child, (event) => {
        if (event.msg === 'listening' && event.component === 'http' && typeof event.port === 'number' && event.port > 0) {
          clearTimeout(timer);
          child.off('exit', onExit);
          resolve(event.port);
        }
      });
    });
    this.httpPort = port;
    this.client = this.launcher.client(port);
  }

  /** Poll `GET /_up` until 200; throws if the process exits or the start deadline passes. */
  async waitUp(timeoutMs = this.launcher.options.startTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (this.launcher.options.signal.aborted) throw new Error('aborted');
      const exit = this.exited();
      if (exit !== null) throw this.startError(`exited (${exit}) before answering /_up`);
      try {
        const reply = await this.http().request('GET', '/_up', undefined, { timeoutMs: 2000 });
        if (reply.status === 200) return;
        last = `${reply.status} ${JSON.stringify(reply.body)}`;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await sleep(readinessPollMs, this.launcher.options.signal);
    }
    throw this.startError(`GET /_up not 200 within ${timeoutMs} ms (last: ${last})`);
  }

  /** SIGKILL and wait for the exit. */
  async kill9(): Promise<void> {
    const child = this.child;
    if (child === null || exitDescription(child) !== null) return;
    this.notePeak(sampleRss(child.pid ?? -1));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    this.client?.close();
    this.client = null;
  }

  /** The current client; throws when the process is not running. */
  http(): HttpClient {
    if (this.client === null) throw new Error(`${this.label} is not running`);
    return this.client;
  }

  /** VmRSS/VmHWM of the current process (also remembered for the report). */
  sampleRss(): RssSample {
    if (this.child === null || !this.running || this.child.pid === undefined) return { rssMiB: null, peakRssMiB: null };
    return this.notePeak(sampleRss(this.child.pid));
  }

  private notePeak(sample: RssSample): RssSample {
    if (sample.peakRssMiB !== null) this.peakRssMiB = Math.max(this.peakRssMiB ?? 0, sample.peakRssMiB);
    return sample;
  }

  /** User + system CPU seconds of the current process so far (Linux /proc); null when not running. */
  cpuSeconds(): number | null {
    if (this.child === null || !this.running || this.child.pid === undefined) return null;
    return processCpuSeconds(this.child.pid);
  }

  /** How many times this slot was started. */
  get startsCount(): number {
    return this.starts;
  }

  private capture(child: ChildProcess, onEvent: (event: LogEvent) => void): void {
    const keep = (line: string): void => {
      this.output.push(line);
      if (this.output.length > outputLinesMax) this.output.shift();
    };
    child.on('error', (err) => keep(`spawn error: ${err.message}`));
    if (child.stdout !== null) {
      readline.createInterface({ input: child.stdout }).on('line', (line) => {
        keep(line);
        const event = parseEvent(line);
        if (event === null) return;
        this.countLog(event, line);
        onEvent(event);
      });
    }
    if (child.stderr !== null) {
      readline.createInterface({ input: child.stderr }).on('line', (line) => {
        keep(line);
        this.logStats.errors++;
        this.logStats.byMessage['(stderr)'] = (this.logStats.byMessage['(stderr)'] ?? 0) + 1;
        if (this.logStats.samples.length < logSamplesMax) this.logStats.samples.push(`stderr: ${line.slice(0, 400)}`);
      });
    }
  }

  private countLog(event: LogEvent, line: string): void {
    if (event.component === 'membership' && typeof event.state === 'string' && typeof event.member === 'string' && this.logStats.memberChanges.length < 200) {
      this.logStats.memberChanges.push({
        timeMs: typeof event.time === 'string' ? Date.parse(event.time) : Date.now(),
        member: event.member,
        incarnation: typeof event.incarnation === 'number' ? event.incarnation : null,
        previous: typeof event.previous === 'string' ? event.previous : null,
        state: event.state,
      });
    }
    const level = typeof event.level === 'number' ? event.level : levelNumber(event.level);
    if (level < 40) return;
    if (level >= 50) this.logStats.errors++;
    else this.logStats.warnings++;
    const key = `${level >= 50 ? 'error' : 'warn'}: ${String(event.msg ?? '?')}`;
    this.logStats.byMessage[key] = (this.logStats.byMessage[key] ?? 0) + 1;
    if (this.logStats.samples.length < logSamplesMax) this.logStats.samples.push(line.slice(0, 400));
  }

  private startError(what: string): Error {
    const tail = this.output.length === 0 ? '(no output)' : this.output.join('\n');
    return new Error(`${this.label}: ${what}\n--- last output ---\n${tail}`);
  }
}

/** One node alone (no seeds; `q` ranges per database, n capped at 1 by Divan). */
export async function startSingle(launcher: Launcher, q: number): Promise<NodeProcess> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'divan-lt-single-'));
  const node = new NodeProcess(launcher, 'single node', dataDir, ['--grpc-port', '0', '--q', String(q)], {});
  try {
    await node.spawn();
  } catch (err) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  await node.waitUp();
  return node;
}

export interface ClusterStartOptions {
  nodes: number;
  q: number;
  n: number;
  membershipProfile: 'lan' | 'loopback';
  /** Plain text between the nodes (`--grpc-plaintext`) instead of mutual TLS: shows what TLS costs. */
  grpcPlaintext?: boolean;
}

/** N nodes named n1..nN; n1 starts alone, the others seed from it. */
export class DivanCluster {
  readonly secret = randomBytes(18).toString('base64url');

  private constructor(
    readonly launcher: Launcher,
    readonly options: ClusterStartOptions,
    readonly names: string[],
    readonly grpcPorts: number[],
    readonly nodes: NodeProcess[],
  ) {}

  static async start(launcher: Launcher, options: ClusterStartOptions): Promise<DivanCluster> {
    const held = await holdFreePorts(options.nodes);
    const names = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
    const nodes: NodeProcess[] = [];
    let cluster: DivanCluster;
    try {
      cluster = new DivanCluster(launcher, options, names, held.ports, nodes);
      const tls = options.grpcPlaintext ? { DIVAN_GRPC_PLAINTEXT: '1' } : makeTlsEnv(launcher);
      for (let i = 0; i < options.nodes; i++) {
        const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `divan-lt-cluster-${names[i]}-`));
        const args = [
          '--grpc-port', String(held.ports[i]),
          '--advertise-address', `127.0.0.1:${held.ports[i]}`,
          '--node-name', names[i],
          '--membership-profile', options.membershipProfile,
          '--q', String(options.q),
          '--n', String(options.n),
        ];
        nodes.push(new NodeProcess(launcher, `cluster ${names[i]}`, dataDir, args, { DIVAN_CLUSTER_SECRET: cluster.secret, ...tls }));
        // Registered before the start, so a failed start still gets its directory removed.
        launcher.options.children.add({ child: deadChild, label: names[i], tmpDir: dataDir, output: [] });
      }
    } finally {
      await held.release(); // just before the nodes bind them
    }
    const [first, ...others] = nodes;
    await first.spawn();
    await Promise.all(others.map((node) => node.spawn(['--seeds', cluster.grpcAddress(0)])));
    await Promise.all(nodes.map((node) => node.waitUp()));
    await cluster.waitForStates(Object.fromEntries(names.map((name) => [name, ['alive']])), launcher.options.startTimeoutMs);
    return cluster;
  }

  grpcAddress(i: number): string {
    return `127.0.0.1:${this.grpcPorts[i]}`;
  }

  /** Nodes whose process runs now. */
  live(): NodeProcess[] {
    return this.nodes.filter((node) => node.running);
  }

  liveClients(): HttpClient[] {
    return this.live().map((node) => node.http());
  }

  async kill9(i: number): Promise<void> {
    await this.nodes[i].kill9();
  }

  /**
   * Start node `i` again on its data directory and ports, with every other node as a
   * seed. Resolves with the milliseconds until its `listening` line and its `/_up`.
   */
  async restart(i: number): Promise<{ listeningMs: number; upMs: number }> {
    const node = this.nodes[i];
    const startMs = performance.now();
    const seeds = this.nodes.map((_, j) => j).filter((j) => j !== i).map((j) => this.grpcAddress(j)).join(',');
    await node.spawn(['--seeds', seeds], node.httpPort);
    const listeningMs = performance.now() - startMs;
    await node.waitUp();
    return { listeningMs, upMs: performance.now() - startMs };
  }

  /** `GET /_membership` on node `i`: its `members` list. */
  async members(i: number): Promise<MemberView[]> {
    const reply = await this.nodes[i].http().request('GET', '/_membership', undefined, { timeoutMs: 5000 });
    const members = (reply.body as { members?: MemberView[] } | null)?.members;
    if (reply.status !== 200 || !Array.isArray(members)) throw new Error(`GET /_membership on ${this.names[i]}: ${reply.status} ${JSON.stringify(reply.body)}`);
    return members;
  }

  /** What every live node says of each member: `{ n1: { n3: 'dead', ... }, ... }`. */
  async views(): Promise<Record<string, Record<string, string>>> {
    const out: Record<string, Record<string, string>> = {};
    for (let i = 0; i < this.nodes.length; i++) {
      if (!this.nodes[i].running) continue;
      try {
        out[this.names[i]] = Object.fromEntries((await this.members(i)).map((m) => [m.name, `${m.state}/${m.incarnation}`]));
      } catch (err) {
        out[this.names[i]] = { error: err instanceof Error ? err.message : String(err) };
      }
    }
    return out;
  }

  /**
   * Poll `/_membership` on every live node until each shows every listed member in one
   * of its listed states; throws after `timeoutMs` with the last views.
   */
  async waitForStates(expected: Record<string, MemberState[]>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown = null;
    while (Date.now() < deadline) {
      let all = true;
      const seen: Record<string, unknown> = {};
      for (let i = 0; i < this.nodes.length && all; i++) {
        if (!this.nodes[i].running) continue;
        try {
          const members = await this.members(i);
          seen[this.names[i]] = members.map((m) => `${m.name}:${m.state}`);
          all = Object.entries(expected).every(([name, states]) => members.some((m) => m.name === name && states.includes(m.state)));
        } catch (err) {
          seen[this.names[i]] = err instanceof Error ? err.message : String(err);
          all = false;
        }
      }
      if (all) return;
      last = seen;
      await sleep(100, this.launcher.options.signal);
    }
    throw new Error(`membership ${JSON.stringify(expected)} not reached within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
  }
}

/* ------------------------------------------------------------------ internals */

interface LogEvent {
  level?: number | string;
  time?: unknown;
  member?: unknown;
  state?: unknown;
  previous?: unknown;
  incarnation?: unknown;
  msg?: unknown;
  component?: unknown;
  port?: unknown;
}

function parseEvent(line: string): LogEvent | null {
  if (!line.startsWith('{')) return null;
  try {
    const event = JSON.parse(line) as unknown;
    return typeof event === 'object' && event !== null ? (event as LogEvent) : null;
  } catch {
    return null;
  }
}

function levelNumber(level: unknown): number {
  switch (level) {
    case 'warn':
      return 40;
    case 'error':
      return 50;
    case 'fatal':
      return 60;
    default:
      return 30;
  }
}

/** Clock ticks per second of /proc/PID/stat's utime and stime: USER_HZ, 100 on Linux. */
const clockTicksPerSecond = 100;

export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which is in parentheses and may hold spaces).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond; // utime, stime (fields 14, 15)
  } catch {
    return null;
  }
}

/** A stand-in child for a data directory registered before its process exists. */
const deadChild = { exitCode: 0, signalCode: null, kill: () => false, once: () => undefined } as unknown as ChildProcess;

function exitDescription(child: ChildProcess): string | null {
  if (child.exitCode !== null) return `exit code ${child.exitCode}`;
  if (child.signalCode !== null) return `signal ${child.signalCode}`;
  return null;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Mutual TLS for every node: one CA and one node certificate in a temp directory (removed with the run). */
function makeTlsEnv(launcher: Launcher): Record<string, string> {
  const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'divan-lt-certs-'));
  launcher.options.children.add({ child: deadChild, label: 'certs', tmpDir: certDir, output: [] });
  const certs = makeCerts({ dir: certDir, nodes: ['node'], hosts: ['127.0.0.1', 'localhost'], caDays: 2, nodeDays: 1 });
  return { DIVAN_GRPC_TLS_CA: certs.ca, DIVAN_GRPC_TLS_CERT: certs.nodes[0]!.cert, DIVAN_GRPC_TLS_KEY: certs.nodes[0]!.key };
}
