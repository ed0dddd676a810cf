/**
 * The two servers under test, started as child processes on loopback.
 *
 * Divan: `node dist/src/node/main.js --port 0 --bind 127.0.0.1 --data-dir TMP` with
 * COUCHDB_USER/COUCHDB_PASSWORD in its environment; it prints one JSON line with
 * `"msg":"listening"` and the port it bound, then the harness waits for
 * `GET /_up` → 200.
 * Peer: PouchDB Server 4.2.0, installed on first use into `loadtest/.peer/`, started
 * on a free port with its data in a temp dir; the harness waits for `GET /` → 200,
 * then leaves admin party with `PUT /_config/admins/admin`.
 * Both are then used with Basic auth. A `ChildSet`, owned by the run, stops every
 * child it started (SIGTERM, then SIGKILL after a grace period) and removes their
 * temp dirs, also synchronously on exit.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { HttpClient, type BasicAuth } from './client';

export type ServerKind = 'divan' | 'peer';

export const peerVersion = '4.2.0';

export interface RssSample {
  /** VmRSS: resident set now. */
  rssMiB: number | null;
  /** VmHWM: peak resident set since the process started. */
  peakRssMiB: number | null;
}

export interface ServerHandle {
  kind: ServerKind;
  label: string;
  pid: number;
  port: number;
  auth: BasicAuth;
  client: HttpClient;
  /** Sampled right after the server answered its readiness probe. */
  idleRss: RssSample;
  /** The temp dir the server keeps its data in (Divan's --data-dir, the peer's -d), for disk-use figures. */
  dataDir: string;
  /** Exit code or signal once the process is gone; null while it runs. */
  exited(): string | null;
}

export interface StartOptions {
  /** Client sockets to the server (the load test's concurrency). */
  socketsMax: number;
  requestTimeoutMs: number;
  /** Deadline for the server to start and answer its readiness probe. */
  startTimeoutMs: number;
  signal: AbortSignal;
  /** Flags for the Node.js runtime before the entry point (profile.ts: `--cpu-prof ...`). */
  nodeArgs?: string[];
}

/** Lines of a child's output kept for error messages. */
const outputLinesMax = 40;
/** Time a child gets between SIGTERM and SIGKILL. */
const stopGraceMs = 5000;
const readinessPollMs = 100;
const adminUser = 'admin';

interface OwnedChild {
  child: ChildProcess;
  label: string;
  tmpDir: string;
  output: string[];
}

/** Every process and temp dir the run created; stops and removes them all. */
export class ChildSet {
  private readonly children: OwnedChild[] = [];

  add(owned: OwnedChild): void {
    this.children.push(owned);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.children.map((owned) => stopChild(owned.child)));
    for (const owned of this.children) removeDir(owned.tmpDir);
    this.children.length = 0;
  }

  /** For `process.on('exit')`, where nothing asynchronous runs any more. */
  stopAllSync(): void {
    for (const owned of this.children) {
      if (isRunning(owned.child)) owned.child.kill('SIGKILL');
      removeDir(owned.tmpDir);
    }
    this.children.length = 0;
  }
}

export async function startDivan(mainPath: string, children: ChildSet, options: StartOptions): Promise<ServerHandle> {
  if (!fs.existsSync(mainPath)) {
    throw new Error(`Divan entry point ${mainPath} not found: build it with \`npx tsc -p .\`, or run with --only peer`);
  }
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'divan-lt-divan-'));
  const auth: BasicAuth = { username: adminUser, password: randomBytes(12).toString('hex') };
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), mainPath, '--port', '0', '--grpc-port', '0', '--bind', '127.0.0.1', '--data-dir', tmpDir], {
    env: { ...process.env, COUCHDB_USER: auth.username, COUCHDB_PASSWORD: auth.password },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const owned: OwnedChild = { child, label: 'Divan', tmpDir, output: [] };
  children.add(owned);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(startError(owned, `no "listening" line within ${options.startTimeoutMs} ms`)), options.startTimeoutMs);
    const onExit = (): void => reject(startError(owned, 'exited before listening'));
    child.once('exit', onExit);
    captureOutput(owned, (line) => {
      const port = listeningPort(line);
      if (port === null) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve(port);
    });
  });
  const client = new HttpClient({ host: '127.0.0.1', port, auth, socketsMax: options.socketsMax, requestTimeoutMs: options.requestTimeoutMs, signal: options.signal });
  await waitForStatus(owned, client, '/_up', options);
  return handleFor('divan', 'Divan', owned, port, auth, client);
}

export async function startPeer(peerDir: string, children: ChildSet, options: StartOptions): Promise<ServerHandle> {
  const bin = ensurePeerInstalled(peerDir);
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'divan-lt-peer-'));
  const port = await findFreePort();
  const args = [
    '--unhandled-rejections=warn', // without it PouchDB Server 4.2 exits on some requests under Node 20
    bin,
    '-p', String(port),
    '-o', '127.0.0.1',
    '-d', tmpDir + path.sep,
    '-c', path.join(tmpDir, 'config.json'),
    '-n',
  ];
  const child = spawn(process.execPath, args, { cwd: tmpDir, stdio: ['ignore', 'pipe', 'pipe'] });
  const owned: OwnedChild = { child, label: `PouchDB Server ${peerVersion}`, tmpDir, output: [] };
  children.add(owned);
  captureOutput(owned, () => undefined);

  const party = new HttpClient({ host: '127.0.0.1', port, auth: null, socketsMax: 1, requestTimeoutMs: options.requestTimeoutMs, signal: options.signal });
  const auth: BasicAuth = { username: adminUser, password: randomBytes(12).toString('hex') };
  try {
    await waitForStatus(owned, party, '/', options);
    const reply = await party.request('PUT', `/_config/admins/${adminUser}`, JSON.stringify(auth.password));
    if (reply.status !== 200) throw startError(owned, `setting the admin answered ${reply.status} ${JSON.stringify(reply.body)}`);
  } finally {
    party.close();
  }
  const client = new HttpClient({ host: '127.0.0.1', port, auth, socketsMax: options.socketsMax, requestTimeoutMs: options.requestTimeoutMs, signal: options.signal });
  const session = await client.request('GET', '/_session');
  const userName = (session.body as { userCtx?: { name?: unknown } } | null)?.userCtx?.name;
  if (session.status !== 200 || userName !== adminUser) {
    throw startError(owned, `GET /_session with Basic auth answered ${session.status} ${JSON.stringify(session.body)}`);
  }
  return handleFor('peer', owned.label, owned, port, auth, client);
}

/** Reads VmRSS and VmHWM of a live process from /proc (Linux only; null elsewhere). */
export function sampleRss(pid: number): RssSample {
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return { rssMiB: null, peakRssMiB: null };
  }
  return { rssMiB: statusKiB(status, 'VmRSS'), peakRssMiB: statusKiB(status, 'VmHWM') };
}

function statusKiB(status: string, field: string): number | null {
  const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
  return match === null ? null : Number(match[1]) / 1024;
}

function handleFor(kind: ServerKind, label: string, owned: OwnedChild, port: number, auth: BasicAuth, client: HttpClient): ServerHandle {
  const pid = owned.child.pid;
  if (pid === undefined) throw startError(owned, 'no pid');
  return {
    kind,
    label,
    pid,
    port,
    auth,
    client,
    idleRss: sampleRss(pid),
    dataDir: owned.tmpDir,
    exited: () => exitDescription(owned.child),
  };
}

/** Installs PouchDB Server into `peerDir` unless it is there; returns its bin script. */
function ensurePeerInstalled(peerDir: string): string {
  const bin = path.join(peerDir, 'node_modules', 'pouchdb-server', 'bin', 'pouchdb-server');
  if (fs.existsSync(bin) && installedPeerVersion(peerDir) === peerVersion) return bin;
  fs.mkdirSync(peerDir, { recursive: true });
  process.stderr.write(`installing pouchdb-server@${peerVersion} into ${peerDir} (once)...\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(npm, ['install', '--prefix', peerDir, `pouchdb-server@${peerVersion}`, '--no-audit', '--no-fund'], {
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 10 * 60 * 1000,
  });
  if (result.status !== 0 || !fs.existsSync(bin)) {
    throw new Error(`npm install pouchdb-server@${peerVersion} failed (status ${result.status}, ${result.error?.message ?? 'no error'})`);
  }
  return bin;
}

function installedPeerVersion(peerDir: string): string | null {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(peerDir, 'node_modules', 'pouchdb-server', 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : null;
  } catch {
    return null;
  }
}

/** A port that was free a moment ago: listen on port 0, read it, close. */
function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('no port from listen(0)'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

/** Polls `path` until it answers 200, the child exits, or the start deadline passes. */
async function waitForStatus(owned: OwnedChild, client: HttpClient, probePath: string, options: StartOptions): Promise<void> {
  const deadline = Date.now() + options.startTimeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (options.signal.aborted) throw new Error('aborted');
    const exit = exitDescription(owned.child);
    if (exit !== null) throw startError(owned, `exited (${exit}) before answering ${probePath}`);
    try {
      const reply = await client.request('GET', probePath, undefined, { timeoutMs: 2000 });
      if (reply.status === 200) return;
      last = `${reply.status} ${JSON.stringify(reply.body)}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, readinessPollMs));
  }
  throw startError(owned, `GET ${probePath} not 200 within ${options.startTimeoutMs} ms (last: ${last})`);
}

/** Keeps the tail of stdout and stderr and hands each stdout line to `onLine`. */
function captureOutput(owned: OwnedChild, onLine: (line: string) => void): void {
  const keep = (line: string): void => {
    owned.output.push(line);
    if (owned.output.length > outputLinesMax) owned.output.shift();
  };
  owned.child.on('error', (err) => keep(`spawn error: ${err.message}`));
  const { stdout, stderr } = owned.child;
  if (stdout !== null) {
    readline.createInterface({ input: stdout }).on('line', (line) => {
      keep(line);
      onLine(line);
    });
  }
  if (stderr !== null) readline.createInterface({ input: stderr }).on('line', keep);
}

function listeningPort(line: string): number | null {
  let event: unknown;
  try {
    event = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof event !== 'object' || event === null) return null;
  // The gRPC and metrics servers log `listening` too: only the HTTP one counts.
  const { msg, port, component } = event as { msg?: unknown; port?: unknown; component?: unknown };
  return msg === 'listening' && (component === undefined || component === 'http') && typeof port === 'number' && port > 0 ? port : null;
}

function startError(owned: OwnedChild, what: string): Error {
  const tail = owned.output.length === 0 ? '(no output)' : owned.output.join('\n');
  return new Error(`${owned.label}: ${what}\n--- last output ---\n${tail}`);
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function exitDescription(child: ChildProcess): string | null {
  if (child.exitCode !== null) return `exit code ${child.exitCode}`;
  if (child.signalCode !== null) return `signal ${child.signalCode}`;
  return null;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (isRunning(child)) child.kill('SIGKILL');
  }, stopGraceMs);
  await exited;
  clearTimeout(timer);
}

function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
