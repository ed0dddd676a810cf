/**
 * One sandbox worker thread: a QuickJS runtime (WebAssembly) with a memory limit and
 * an interrupt deadline, and one QuickJS context per compiled design document. User
 * code sees only what src/shard/js/prelude.ts defines: no host function is exposed, so
 * nothing in the guest can reach Node, the file system, timers or the network.
 *
 * Protocol (messages from src/shard/js/sandbox.ts, one at a time):
 * - `{ id, op: 'compile', handle, json }` → `{ id, ok: infoJson, logs }` or an error
 * - `{ id, op: 'map' | 'reduce' | 'filter' | 'validate' | 'validateMany', handle, json }` → `{ id, ok: resultJson, logs }`
 * - `{ op: 'release', handle }` → no answer
 * Errors: `{ id, error: 'compile' | 'exception' | 'timeout' | 'memory' | 'crash', reason, recycle }`;
 * `recycle` asks the pool to replace this worker (after a timeout, memory exhaustion
 * or an engine failure the runtime is not trusted again).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { getQuickJS, QuickJSContext, QuickJSHandle, QuickJSRuntime } from 'quickjs-emscripten';
import { prelude } from './prelude';

export interface WorkerOptions {
  timeoutMs: number;
  memoryBytesMax: number;
  stackBytesMax: number;
}

export type WorkerRequest =
  | { id: number; op: 'compile' | 'map' | 'reduce' | 'filter' | 'validate' | 'validateMany'; handle: number; json: string }
  | { op: 'release'; handle: number };

export type WorkerReply =
  | { id: number; ok: string; logs: string[] }
  | { id: number; error: 'compile' | 'exception' | 'timeout' | 'memory' | 'crash'; reason: string; logs: string[]; recycle: boolean };

interface Sandbox {
  vm: QuickJSContext;
  dispatch: QuickJSHandle;
}

const port = parentPort;
if (port === null) throw new Error('src/shard/js/worker.ts must run as a worker thread');
const options = workerData as WorkerOptions;
const contexts = new Map<number, Sandbox>();
let deadline = 0;
let runtime: QuickJSRuntime;

function newSandbox(): Sandbox {
  const vm = runtime.newContext();
  const result = vm.evalCode(prelude, 'divan-prelude.js');
  if (result.error) {
    const reason = String(vm.dump(result.error));
    result.error.dispose();
    vm.dispose();
    throw new Error(`sandbox prelude failed: ${reason}`);
  }
  return { vm, dispatch: result.value };
}

function dispose(sandbox: Sandbox): void {
  sandbox.dispatch.dispose();
  sandbox.vm.dispose();
}

function run(msg: Exclude<WorkerRequest, { op: 'release' }>): WorkerReply {
  let sandbox = contexts.get(msg.handle);
  if (msg.op === 'compile') {
    if (sandbox) {
      contexts.delete(msg.handle);
      dispose(sandbox);
    }
    sandbox = newSandbox();
    contexts.set(msg.handle, sandbox);
  } else if (!sandbox) {
    return { id: msg.id, error: 'crash', reason: `design document ${msg.handle} is not compiled in this worker`, logs: [], recycle: false };
  }
  const { vm, dispatch } = sandbox;
  deadline = Date.now() + options.timeoutMs;
  const op = vm.newString(msg.op);
  const json = vm.newString(msg.json);
  const result = vm.callFunction(dispatch, vm.undefined, op, json);
  op.dispose();
  json.dispose();
  deadline = 0;
  if (result.error) {
    let text: string;
    try {
      const dumped: unknown = vm.dump(result.error);
      text = dumped && typeof dumped === 'object' ? `${String((dumped as { name?: unknown }).name)}: ${String((dumped as { message?: unknown }).message)}` : String(dumped);
    } catch {
      text = 'unknown error';
    }
    result.error.dispose();
    if (/interrupted/.test(text)) {
      return { id: msg.id, error: 'timeout', reason: `the JavaScript call ran past its deadline of ${options.timeoutMs} ms`, logs: [], recycle: true };
    }
    if (/out of memory/.test(text)) {
      return { id: msg.id, error: 'memory', reason: `the JavaScript call ran out of memory (limit ${options.memoryBytesMax} bytes)`, logs: [], recycle: true };
    }
    return { id: msg.id, error: 'crash', reason: `the JavaScript engine failed: ${text}`, logs: [], recycle: true };
  }
  const answer = vm.getString(result.value);
  result.value.dispose();
  const first = answer.indexOf('\n');
  const second = answer.indexOf('\n', first + 1);
  const kind = answer.slice(0, first);
  const logs = JSON.parse(answer.slice(first + 1, second)) as string[];
  const payload = answer.slice(second + 1);
  if (kind === 'compile') {
    contexts.delete(msg.handle);
    dispose(sandbox);
    return { id: msg.id, error: 'compile', reason: payload, logs, recycle: false };
  }
  if (kind === 'exception') return { id: msg.id, error: 'exception', reason: payload, logs, recycle: false };
  // The result stays JSON text: the main thread parses it once.
  return { id: msg.id, ok: payload, logs };
}

async function main(): Promise<void> {
  const quickjs = await getQuickJS();
  runtime = quickjs.newRuntime();
  runtime.setMemoryLimit(options.memoryBytesMax);
  runtime.setMaxStackSize(options.stackBytesMax);
  runtime.setInterruptHandler(() => deadline !== 0 && Date.now() > deadline);
  port!.on('message', (msg: WorkerRequest) => {
    if (msg.op === 'release') {
      const sandbox = contexts.get(msg.handle);
      if (sandbox) {
        contexts.delete(msg.handle);
        dispose(sandbox);
      }
      return;
    }
    let reply: WorkerReply;
    try {
      reply = run(msg);
    } catch (err) {
      reply = { id: msg.id, error: 'crash', reason: `the JavaScript engine failed: ${err instanceof Error ? err.message : String(err)}`, logs: [], recycle: true };
    }
    port!.postMessage(reply);
  });
  port!.postMessage({ ready: true });
}

void main();
