/**
 * Real Divan node processes for tests: started on port 0 in a temp data directory,
 * port learned from the node's `listening` log line, stopped (SIGTERM) or killed
 * (SIGKILL) and restarted on the same data. Requests go over real HTTP on loopback.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import http from 'node:http';

const MAIN = path.join(__dirname, '..', '..', 'src', 'node', 'main.js');
export const ADMIN = { user: 'admin', password: 'test-password' };

export interface TestNode {
  /** http://127.0.0.1:PORT */
  url: string;
  /** http://admin:pw@127.0.0.1:PORT (for clients that take credentials in the URL) */
  authUrl: string;
  port: number;
  dataDir: string;
  proc: ChildProcess;
  /** Lines the node wrote to stderr (for diagnosing failures). */
  stderr: string[];
  stop(): Promise<void>;
  kill9(): Promise<void>;
  /** Start again on the same data directory (and the same port when possible). */
  restart(): Promise<TestNode>;
  /** Stop and remove the data directory. */
  destroy(): Promise<void>;
}

export interface StartNodeOptions {
  dataDir?: string;
  port?: number;
  env?: Record<string, string>;
  /** Flags for the Node.js runtime, before the script (e.g. `--inspect`). */
  nodeArgs?: string[];
  /** Extra Divan CLI flags, after the standard ones (e.g. `['--node-name', 'n1']`). Kept on restart. */
  args?: string[];
  /** Called with every line the node writes to stdout (its JSON log), e.g. to keep a tail for diagnostics. */
  onStdoutLine?: (line: string) => void;
}

/**
 * Every node process a test file started and has not seen exit. A test process that
 * ends early (a failed `before`, a timeout, Ctrl-C) must not leave nodes running: they
 * hold ports and data directories and skew the next measurement.
 */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startNode(options: StartNodeOptions = {}): Promise<TestNode> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'divan-test-'));
  const cliArgs = ['--port', String(options.port ?? 0), '--bind', '127.0.0.1', '--data-dir', dataDir, '--grpc-port', '0', ...(options.args ?? [])];
  const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), MAIN, ...cliArgs], {
    env: { ...process.env, COUCHDB_USER: ADMIN.user, COUCHDB_PASSWORD: ADMIN.password, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  const stderr: string[] = [];
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL'); // not left running (holding its ports and data directory) after the failure
      reject(new Error('node did not start within 30 s: ' + stderr.join('')));
    }, 30_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before listening: ${stderr.join('')}`));
    });
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        options.onStdoutLine?.(line);
        try {
          const event = JSON.parse(line) as { msg?: string; port?: number; component?: string };
          // Only the HTTP listener's line: other components (the RPC server) log 'listening' too.
          const http = event.component === undefined || event.component === 'http';
          if (event.msg === 'listening' && event.port && http) {
            clearTimeout(timer);
            resolve(event.port);
          }
        } catch {
          // not a log line
        }
      }
    });
  });
  const exited = once(proc, 'exit');
  const node: TestNode = {
    url: `http://127.0.0.1:${port}`,
    authUrl: `http://${ADMIN.user}:${ADMIN.password}@127.0.0.1:${port}`,
    port,
    dataDir,
    proc,
    stderr,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await exited;
    },
    kill9: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
    restart: async () => {
      await node.stop();
      return startNode({ ...options, dataDir, port });
    },
    destroy: async () => {
      await node.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return node;
}

export interface Reply {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

/** One HTTP request as admin (unless `auth: false`), JSON in and out. */
export async function request(
  node: { url: string },
  method: string,
  urlPath: string,
  options: { body?: unknown; headers?: Record<string, string>; auth?: boolean; raw?: Buffer | string; timeoutMs?: number } = {},
): Promise<Reply> {
  // Like the JSON clients (nano, PouchDB): without it CouchDB (and Divan) may answer multipart.
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  if (options.auth !== false) headers.authorization = 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');
  let body: Buffer | string | undefined = options.raw;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const signal = options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
  const res = await fetch(node.url + urlPath, { method, headers, ...(signal ? { signal } : {}), ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text.length ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** Poll `check` until it returns a truthy value, or fail after `timeoutMs`. */
export async function waitFor<T>(check: () => Promise<T | undefined | false>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A database name no other test uses. */
let dbCounter = 0;
export function uniqueDb(prefix = 'db'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${(dbCounter++).toString(36)}`;
}

/** Create a database with a fresh name (`uniqueDb(prefix)`, `?q=` when given) on `node`; fails the test unless 201. */
export async function createDb(node: TestNode, prefix = 'db', q?: number): Promise<string> {
  const name = uniqueDb(prefix);
  const res = await request(node, 'PUT', `/${name}${q ? `?q=${q}` : ''}`);
  assert.equal(res.status, 201, res.text);
  return name;
}

export interface RawReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP exchange as admin with the bytes exactly as sent and received (no decoding of any kind: fetch would gunzip). */
export function rawRequest(node: { url: string }, method: string, urlPath: string, options: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<RawReply> {
  const url = new URL(node.url + urlPath);
  const authorization = 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');
  return new Promise((resolve, reject) => {
    const req = http.request({ method, host: url.hostname, port: url.port, path: url.pathname + url.search, headers: { authorization, ...options.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on('error', reject);
    req.end(options.body);
  });
}
