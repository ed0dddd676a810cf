/**
 * The sandbox for all user JavaScript (map and reduce functions, filters,
 * validate_doc_update, CommonJS modules in `views.lib`): the one module through which
 * the rest of Divan runs code from design documents.
 *
 * Isolation. User code runs in QuickJS compiled to WebAssembly (quickjs-emscripten),
 * inside `node:worker_threads` workers, never on the main event loop and never in
 * `node:vm` (which is not a security boundary). The guest has no host functions at
 * all: CouchDB's API (`emit`, `log`, `sum`, `toJSON`, `isArray`, `require`) is
 * written in JavaScript inside the guest (src/shard/js/prelude.ts), so there is no
 * path from user code to `process`, `require('fs')`, `import()`, timers or the
 * network; they are simply not defined. Syntax is what QuickJS accepts (ES2020+).
 *
 * Limits (src/node/config.ts: jsTimeoutMs, jsMemoryBytesMax, jsWorkers):
 * - time: every call has a deadline of `timeoutMs` (CouchDB's os_process_timeout,
 *   5 s), enforced inside QuickJS by its interrupt handler (the interrupt cannot be
 *   caught by user code) and, as a backstop, by a watchdog here that terminates the
 *   worker if it has not answered `timeoutMs + watchdogMarginMs` after the call left.
 * - memory: each worker's QuickJS runtime may allocate `memoryBytesMax` (documents
 *   of a batch included: size batches by bytes well below it); the worker's V8 heap
 *   is capped too (`resourceLimits`).
 * - after a timeout, memory exhaustion or an engine failure the call fails with
 *   `OsProcessError` and its worker is replaced by a fresh one; design documents are
 *   recompiled there on their next call, so the next call works.
 * - calls wait in one FIFO of at most `queueMax` calls; beyond, `UnavailableError`.
 *
 * Interface. `compile(ddoc)` evaluates a design document's functions in a fresh
 * QuickJS context and answers a handle (errors: `CompilationError`); `mapDocs`,
 * `reduce`, `filterDocs`, `validate` and `validateDocs` (a batch) take the handle and JSON-able data, and each
 * sends one message per call (a batch of documents crosses as one JSON text). Every
 * answer carries the lines user code passed to `log()` (at most 1000 per call, each
 * cut at 10,000 characters) for the caller to log; nothing is printed. `release`
 * forgets a handle. A handle's context lives in each worker that ran it; a worker
 * compiles it on first use from the design document kept here.
 *
 * Semantics, as CouchDB's query server:
 * - map: per document, per view, the emitted `[key, value]` pairs (`undefined`
 *   becomes `null`), or `{ error }` when that map function threw on that document
 *   (CouchDB logs and skips it; the other documents and views are still mapped).
 *   Documents are deep-frozen, so one view cannot change what the next one sees.
 * - `require('views/lib/foo')` in map and reduce functions resolves in `views.lib`;
 *   in filters and validate_doc_update, anywhere in the design document. Modules are
 *   CommonJS (`module`, `exports`, relative `./` and `../` paths), evaluated once per
 *   context.
 * - reduce: JavaScript reduce functions only. Built-in reduces (`_sum`, `_count`,
 *   `_stats`, `_approx_count_distinct`) are recognised by `compile` (an unknown `_x`
 *   is a CompilationError) and reported in `CompiledDdoc.views`, but they are not run
 *   here: the view engine computes them in plain JavaScript, outside the sandbox.
 * - a reduce or filter that throws fails the call (`OsProcessError`, failure
 *   `exception`); validate_doc_update throwing `{forbidden}` or `{unauthorized}` is
 *   an answer, anything else it throws fails the call.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CompilationError, OsProcessError, UnavailableError } from '../../errors';
import type { WorkerOptions, WorkerReply, WorkerRequest } from './worker';

export interface SandboxOptions {
  /** Deadline of one call, ms (config jsTimeoutMs). */
  timeoutMs: number;
  /** QuickJS heap of one worker, bytes (config jsMemoryBytesMax). */
  memoryBytesMax: number;
  /** Worker threads (config jsWorkers). */
  workers: number;
  /** Calls waiting for a worker at most; default 1024. */
  queueMax?: number;
  /**
   * Extra time the watchdog grants beyond timeoutMs before it terminates a worker, ms;
   * default 1000. Tests set it negative (the watchdog then fires before QuickJS's own
   * interrupt) to exercise the watchdog with a plain endless loop.
   */
  watchdogMarginMs?: number;
}

/** A compiled design document. */
export interface CompiledDdoc {
  readonly id: number;
  /** View name → its reduce: null (none), 'js', or the name of a built-in (`_sum`...). */
  readonly views: ReadonlyMap<string, { reduce: string | null }>;
  readonly filters: readonly string[];
  readonly validates: boolean;
}

/** Per view: the emitted pairs, or the error the map function threw on this document. */
export type MapViewResult = Array<[unknown, unknown]> | { error: string };

export interface MapResult {
  /** Per document (same order), per view (order of `viewNames`). */
  docs: MapViewResult[][];
  logs: string[];
}

/**
 * One document's answer from `validateDocs`: `error` describes an Error it threw,
 * `unknown` is the message of any other value it threw (a string, or an object's first
 * member) when not `{forbidden}` / `{unauthorized}`.
 */
export type ValidateDocResult = { ok: true } | { forbidden: string } | { unauthorized: string } | { error: string } | { unknown: string };

export type ValidateResult = ({ ok: true } | { forbidden: string } | { unauthorized: string }) & { logs: string[] };

interface Job {
  ddoc: number;
  /** compile: the design document's JSON text is sent (`json` is empty). */
  op: 'compile' | 'map' | 'reduce' | 'filter' | 'validate' | 'validateMany';
  json: string;
  resolve: (reply: { ok: string; logs: string[] }) => void;
  reject: (err: unknown) => void;
}

interface Pending {
  resolve: (reply: WorkerReply) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

class Slot {
  readonly worker: Worker;
  /** Handles compiled in this worker. */
  readonly compiled = new Set<number>();
  ready = false;
  busy = false;
  dead = false;
  pending: Pending | null = null;

  constructor(options: WorkerOptions, heapMb: number, onReady: () => void, onDeath: (slot: Slot, err: Error) => void) {
    this.worker = new Worker(path.join(__dirname, 'worker.js'), {
      workerData: options,
      resourceLimits: { maxOldGenerationSizeMb: heapMb },
    });
    this.worker.on('message', (msg: WorkerReply | { ready: true }) => {
      if ('ready' in msg) {
        this.ready = true;
        onReady();
        return;
      }
      const pending = this.pending;
      if (!pending) return;
      this.pending = null;
      clearTimeout(pending.timer);
      pending.resolve(msg);
    });
    this.onDeath = onDeath;
    this.worker.on('error', (err) => this.die(new OsProcessError('crash', `the JavaScript worker died: ${err.message}`)));
    this.worker.on('exit', (code) => this.die(new OsProcessError('crash', `the JavaScript worker exited with code ${code}`)));
  }

  private readonly onDeath: (slot: Slot, err: Error) => void;

  /** The worker is gone or given up on: fail the call in flight, and tell the pool (once). */
  die(err: OsProcessError): void {
    if (this.dead) return;
    this.dead = true;
    const pending = this.pending;
    this.pending = null;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(err);
    }
    void this.worker.terminate();
    this.onDeath(this, err);
  }

  send(msg: WorkerRequest & { id: number }, watchdogMs: number, timeoutMs: number): Promise<WorkerReply> {
    assert.ok(this.pending === null && !this.dead, 'one call at a time per live worker');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.die(new OsProcessError('timeout', `the JavaScript call ran past its deadline of ${timeoutMs} ms (the watchdog stopped its worker)`));
      }, watchdogMs);
      this.pending = { resolve, reject, timer };
      this.worker.postMessage(msg);
    });
  }
}

export class SandboxPool {
  private readonly workerOptions: WorkerOptions;
  private readonly workers: number;
  private readonly queueMax: number;
  private readonly watchdogMs: number;
  private readonly heapMb: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  /** Handle → the design document's JSON text, to compile it in workers that have not seen it. */
  private readonly ddocs = new Map<number, string>();
  private nextHandle = 1;
  private nextCall = 1;
  private closed = false;

  constructor(options: SandboxOptions) {
    assert.ok(options.timeoutMs >= 1 && options.memoryBytesMax >= 1024 * 1024 && options.workers >= 1, 'sandbox options out of range');
    this.workerOptions = { timeoutMs: options.timeoutMs, memoryBytesMax: options.memoryBytesMax, stackBytesMax: 512 * 1024 };
    this.workers = options.workers;
    this.queueMax = options.queueMax ?? 1024;
    this.watchdogMs = options.timeoutMs + (options.watchdogMarginMs ?? 1000);
    assert.ok(this.watchdogMs >= 1, 'the watchdog needs a positive deadline');
    // The batch's JSON text and the answer live in the worker's V8 heap beside QuickJS.
    this.heapMb = Math.max(64, Math.ceil((4 * options.memoryBytesMax) / (1024 * 1024)));
    // Workers start on the first call: a node whose databases hold no JavaScript never pays for them.
  }

  /** Compile a design document; answers its handle, or throws CompilationError. */
  async compile(ddoc: unknown): Promise<CompiledDdoc> {
    const json = JSON.stringify(ddoc);
    const id = this.nextHandle++;
    this.ddocs.set(id, json);
    let reply: { ok: string; logs: string[] };
    try {
      reply = await this.enqueue(id, null, json);
    } catch (err) {
      this.ddocs.delete(id);
      throw err;
    }
    const info = JSON.parse(reply.ok) as { views: Record<string, { reduce: string | null }>; filters: string[]; validate: boolean };
    return { id, views: new Map(Object.entries(info.views)), filters: info.filters, validates: info.validate };
  }

  /** Forget a compiled design document in every worker. */
  release(ddoc: CompiledDdoc): void {
    this.ddocs.delete(ddoc.id);
    for (const slot of this.slots) {
      if (slot.compiled.delete(ddoc.id) && !slot.dead) slot.worker.postMessage({ op: 'release', handle: ddoc.id } satisfies WorkerRequest);
    }
  }

  /** Run the map functions of `viewNames` over a batch of documents, in one call. */
  async mapDocs(ddoc: CompiledDdoc, viewNames: readonly string[], docs: readonly unknown[]): Promise<MapResult> {
    const reply = await this.enqueue(ddoc.id, 'map', JSON.stringify({ views: viewNames, docs }));
    return { docs: JSON.parse(reply.ok) as MapViewResult[][], logs: reply.logs };
  }

  /** As mapDocs, with each document already JSON text (as stored): no parse and re-serialize on the way in. */
  async mapDocTexts(ddoc: CompiledDdoc, viewNames: readonly string[], docTexts: readonly string[]): Promise<MapResult> {
    const reply = await this.enqueue(ddoc.id, 'map', '{"views":' + JSON.stringify(viewNames) + ',"docs":[' + docTexts.join(',') + ']}');
    return { docs: JSON.parse(reply.ok) as MapViewResult[][], logs: reply.logs };
  }

  /**
   * Run a view's JavaScript reduce function. `keysAndValues` holds `[[key, docId], value]`
   * rows when reducing, and `[null, reduction]` pairs when rereducing (keys are then null,
   * as CouchDB passes them).
   */
  async reduce(ddoc: CompiledDdoc, view: string, keysAndValues: ReadonlyArray<readonly [unknown, unknown]>, rereduce: boolean): Promise<{ value: unknown; logs: string[] }> {
    const builtin = ddoc.views.get(view)?.reduce;
    assert.ok(builtin === undefined || builtin === 'js', `reduce ${builtin} is a built-in: the view engine runs it, not the sandbox`);
    const input = {
      view,
      keys: rereduce ? null : keysAndValues.map((kv) => kv[0]),
      values: keysAndValues.map((kv) => kv[1]),
      rereduce,
    };
    const reply = await this.enqueue(ddoc.id, 'reduce', JSON.stringify(input));
    return { value: JSON.parse(reply.ok), logs: reply.logs };
  }

  /** Run a filter function over a batch of documents: whether each passes. */
  async filterDocs(ddoc: CompiledDdoc, name: string, docs: readonly unknown[], req: unknown): Promise<{ pass: boolean[]; logs: string[] }> {
    const reply = await this.enqueue(ddoc.id, 'filter', JSON.stringify({ name, docs, req }));
    return { pass: JSON.parse(reply.ok) as boolean[], logs: reply.logs };
  }

  /** Run validate_doc_update: ok, or the `{forbidden}` / `{unauthorized}` it threw. */
  async validate(ddoc: CompiledDdoc, newDoc: unknown, oldDoc: unknown, userCtx: unknown, secObj: unknown): Promise<ValidateResult> {
    const input = { newDoc, oldDoc: oldDoc ?? null, userCtx, secObj };
    const reply = await this.enqueue(ddoc.id, 'validate', JSON.stringify(input));
    return { ...(JSON.parse(reply.ok) as { ok: true } | { forbidden: string } | { unauthorized: string }), logs: reply.logs };
  }

  /**
   * Run validate_doc_update over many `[newDoc, oldDoc]` pairs in one call (one message,
   * one JSON text). Per document: ok, `{forbidden}`, `{unauthorized}`, `{error}` (an
   * Error) or `{unknown}` (anything else thrown); a timeout or memory exhaustion fails
   * the whole call.
   */
  async validateDocs(
    ddoc: CompiledDdoc,
    docs: ReadonlyArray<readonly [unknown, unknown]>,
    userCtx: unknown,
    secObj: unknown,
  ): Promise<{ results: ValidateDocResult[]; logs: string[] }> {
    const reply = await this.enqueue(ddoc.id, 'validateMany', JSON.stringify({ docs, userCtx, secObj }));
    return { results: JSON.parse(reply.ok) as ValidateDocResult[], logs: reply.logs };
  }

  /** Terminate every worker; calls in flight or queued fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new UnavailableError('the JavaScript sandbox is closed'));
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((slot) => {
      slot.dead = true;
      return slot.worker.terminate();
    }));
  }

  /** `op` null: compile `json` (the design document) for handle `ddoc`. */
  private enqueue(ddoc: number, op: Job['op'] | null, json: string): Promise<{ ok: string; logs: string[] }> {
    if (this.closed) return Promise.reject(new UnavailableError('the JavaScript sandbox is closed'));
    if (this.queue.length >= this.queueMax) return Promise.reject(new UnavailableError('too many JavaScript calls waiting for a worker'));
    if (op !== null && !this.ddocs.has(ddoc)) return Promise.reject(new CompilationError('this design document was released from the sandbox'));
    this.fill();
    return new Promise((resolve, reject) => {
      this.queue.push({ ddoc, op: op ?? 'compile', json: op === null ? '' : json, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (!slot.ready || slot.busy || slot.dead) continue;
      const job = this.queue.shift()!;
      slot.busy = true;
      this.runOn(slot, job).then(job.resolve, job.reject).finally(() => {
        slot.busy = false;
        this.pump();
      });
    }
  }

  private async runOn(slot: Slot, job: Job): Promise<{ ok: string; logs: string[] }> {
    // A worker compiles a design document on its first call for it (or when asked to).
    const compileOnly = job.op === 'compile';
    if (compileOnly || !slot.compiled.has(job.ddoc)) {
      const ddocJson = this.ddocs.get(job.ddoc);
      if (ddocJson === undefined) throw new CompilationError('this design document was released from the sandbox');
      const reply = await this.call(slot, { id: this.nextCall++, op: 'compile', handle: job.ddoc, json: ddocJson });
      slot.compiled.add(job.ddoc);
      if (compileOnly) return reply;
    }
    return this.call(slot, { id: this.nextCall++, op: job.op as Exclude<Job['op'], 'compile'>, handle: job.ddoc, json: job.json });
  }

  private async call(slot: Slot, msg: WorkerRequest & { id: number }): Promise<{ ok: string; logs: string[] }> {
    const reply = await slot.send(msg, this.watchdogMs, this.workerOptions.timeoutMs);
    if ('ok' in reply) return reply;
    if (reply.recycle) this.replace(slot);
    switch (reply.error) {
      case 'compile':
        throw new CompilationError(reply.reason);
      case 'exception':
        throw new OsProcessError('exception', reply.reason);
      default:
        throw new OsProcessError(reply.error, reply.reason);
    }
  }

  /** Start workers up to the configured count. */
  private fill(): void {
    while (!this.closed && this.slots.length < this.workers) {
      const slot = new Slot(this.workerOptions, this.heapMb, () => this.pump(), (dead) => {
        this.replace(dead);
        this.pump();
      });
      this.slots.push(slot);
    }
  }

  /**
   * Terminate a worker (if alive) and start a fresh one in its place. A worker that
   * died before it was ready is not replaced at once (that could loop forever): the
   * calls waiting fail, and the next call starts a new worker.
   */
  private replace(slot: Slot): void {
    const index = this.slots.indexOf(slot);
    if (index < 0) return;
    this.slots.splice(index, 1);
    if (!slot.dead) slot.die(new OsProcessError('crash', 'the JavaScript worker was replaced'));
    if (slot.ready) {
      this.fill();
    } else if (!this.slots.some((s) => s.ready)) {
      for (const job of this.queue.splice(0)) job.reject(new OsProcessError('crash', 'the JavaScript worker failed to start'));
    }
  }
}
