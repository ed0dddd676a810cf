/**
 * CPU profile of one Divan node under one load-test scenario: where a request's time goes.
 *
 * Starts one node from dist/src/node/main.js the way servers.ts `startDivan` does (a
 * temp data dir, COUCHDB_USER/COUCHDB_PASSWORD, `--port 0 --grpc-port 0 --bind
 * 127.0.0.1`, the `"listening"` line, then `GET /_up` → 200), with `--cpu-prof
 * --cpu-prof-dir` before the script. `startDivan` itself cannot carry them (Node
 * refuses --cpu-prof in NODE_OPTIONS, and its argument list is fixed), so the start
 * is written here, and servers.ts's `ChildSet` owns and stops the child. The
 * untimed setup (create the database; for read and update, load docs through
 * `_bulk_docs`) runs first; then
 * the timed part drives the scenario's requests for --seconds with --concurrency
 * workers (driver.ts `drive`, docs.ts `makeDoc`, scenarios.ts `expectStatus` and
 * `bulkWrite`, exactly the load test's requests). The node is then stopped with
 * SIGTERM (main.ts stops the node and calls process.exit, which is when V8 writes
 * the .cpuprofile).
 *
 * Only the samples inside the timed window count: the profile's timestamps are V8
 * ticks in microseconds of CLOCK_MONOTONIC, the clock `process.hrtime` reads here,
 * so the window measured by this process cuts the node's profile (checked: the
 * window must fall inside the profile's start and end, else the whole profile is
 * used and the report says so). A sample's time is the gap to the next sample.
 *
 * Report: sampled ms, the idle / GC / (program) / JavaScript shares, the top
 * functions by self time (file:line in the .ts source via the compiled file's source
 * map, relative to the repo), the top src/ functions by inclusive time, and a rollup
 * by category. A frame is categorised by its file and name; a native frame without
 * a file (a binding's C++ method such as writev or llhttp's execute) takes the
 * category of its nearest caller that has a file (so the rocksdb binding's native
 * calls count as rocksdb, writev as node:http). V8 builtins (JSON.parse,
 * JSON.stringify, Array.prototype.sort) get no frame of their own: their time is the
 * self time of the JS function calling them, so the JSON category is src/json.ts
 * (the wrappers every body parse and most stringifies go through) plus any frame
 * named parse/stringify; a JSON.stringify written inline elsewhere (context.ts
 * `send`, doc-info.ts) stays in its caller's category. The profile samples wall
 * time: a thread that is runnable but waiting for a core (2 cores, the load client
 * on the same machine) is charged to the function it was in, typically one that just
 * woke another thread (a native call queuing libuv work, a socket write), so the
 * report also gives each thread's CPU time from /proc over the same window. Work on
 * libuv's thread pool (RocksDB reads and writes, the hashing pool) is not on the main
 * thread and shows only as idle there; the profiles of worker threads, if any, are
 * listed apart. See loadtest/PROFILE.md for how to read the figures.
 */
import { Command, Option } from 'commander';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { floatIn, intIn, projectRoot } from './common';
import { makeDoc, newDocId } from './docs';
import { drive, type DriveResult } from './driver';
import { bulkBatchDocs, bulkWrite, createDb, docPath, expectStatus, loadDocsWith, updateOp } from './scenarios';
import { ChildSet, startDivan, type ServerHandle } from './servers';

type ScenarioKey = 'create' | 'read' | 'update' | 'bulk';

interface CliOptions {
  scenario: ScenarioKey;
  seconds: number;
  concurrency: number;
  out: string | undefined;
  keepProfile: boolean;
  top: number;
  intervalUs: number;
  divanMain: string;
}

/** Docs the read scenario draws from, and the update scenario cycles through (as in scenarios.ts). */
const readDocsCount = 10_000;
const updateDocsCount = 1_000;
/** Cap on requests in the timed part; the time limit ends it long before. */
const opsMax = 2_000_000;
const errorsMax = 100;
const requestTimeoutMs = 60_000;
const startTimeoutMs = 60_000;
/** Concurrent `_bulk_docs` requests of the untimed load. */
const loadConcurrency = 4;
const inclusiveTopCount = 15;
/** USER_HZ of /proc's utime and stime: 100 on every Linux we run on. */
const clockTicksPerSecond = 100;

// ---------------------------------------------------------------- the .cpuprofile format

interface CallFrame {
  functionName: string;
  url: string;
  /** 0-based, in the file V8 ran (the compiled .js). */
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** Microseconds, V8 ticks. */
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

// ---------------------------------------------------------------- categories

const categories = [
  'node:http/net/streams',
  'JSON (parse/stringify)',
  'crypto/md5',
  'src/api/http',
  'src/api/http/auth',
  'src/api/coordinator',
  'src/shard rev-tree/doc-info/edit',
  'src/shard/shard-copy',
  'src/storage',
  'src (other)',
  'rocksdb binding (native)',
  'pino/logging',
  'prom-client/metrics',
  'protobuf/grpc',
  'node (other internals)',
  'GC',
  'idle',
  '(program)',
  'other',
] as const;
type Category = (typeof categories)[number];

/** The category of a frame that has a file, or null for a native frame without one. */
function categoryOfFile(frame: CallFrame, root: string): Category | null {
  const { url, functionName } = frame;
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return '(program)';
    if (functionName === '(root)') return 'other';
    return null;
  }
  const file = url.startsWith('file://') ? fileUrlPath(url) : url;
  if (/node_modules[\\/](rocksdb|abstract-leveldown|level-[^\\/]+|napi-macros|node-gyp-build)[\\/]/.test(file)) return 'rocksdb binding (native)';
  if (/node_modules[\\/](pino|pino-[^\\/]+|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|atomic-sleep|on-exit-leak-free|safe-stable-stringify)[\\/]/.test(file)) {
    return 'pino/logging';
  }
  if (/node_modules[\\/](prom-client|tdigest|bintrees)[\\/]/.test(file)) return 'prom-client/metrics';
  if (/node_modules[\\/](protobufjs|@protobufjs|@grpc|long)[\\/]/.test(file)) return 'protobuf/grpc';
  if (/^node:(internal[\\/])?crypto/.test(file) || file === 'node:crypto') return 'crypto/md5';
  if (/^node:(_http_|http$|https$|net$|stream$|_stream|internal[\\/](http|stream_base_commons|streams[\\/]|net))/.test(file)) return 'node:http/net/streams';
  if (file.startsWith('node:')) return 'node (other internals)';
  const relative = path.relative(root, file).split(path.sep).join('/');
  const src = /^dist\/src\/(.*)$/.exec(relative)?.[1];
  if (src === undefined) return 'other';
  // JSON.parse and JSON.stringify are V8 builtins: their time is the self time of the
  // function calling them, so the project's JSON wrappers stand for them.
  if (src === 'json.js') return 'JSON (parse/stringify)';
  if (src.startsWith('api/http/auth/')) return 'src/api/http/auth';
  if (src.startsWith('api/http/')) return 'src/api/http';
  if (src.startsWith('api/coordinator/')) return 'src/api/coordinator';
  if (/^shard\/(rev-tree|doc-info|edit)\.js$/.test(src)) return 'src/shard rev-tree/doc-info/edit';
  if (src === 'shard/shard-copy.js') return 'src/shard/shard-copy';
  if (src.startsWith('storage/')) return 'src/storage';
  return 'src (other)';
}

/** A path relative to the repo; a dependency as node_modules/… wherever it is installed (node_modules may be a symlink). */
function repoRelative(file: string, root: string): string {
  const inModules = /[\\/]node_modules[\\/](.*)$/.exec(file);
  if (inModules !== null) return `node_modules/${inModules[1].split(path.sep).join('/')}`;
  const relative = path.relative(root, file);
  return relative.startsWith('..') ? file : relative.split(path.sep).join('/');
}

function fileUrlPath(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

// ---------------------------------------------------------------- source maps

/** Generated line (0-based) → segments [generated column, source index, source line, source column]. */
interface SourceMapIndex {
  sources: string[];
  lines: number[][][];
}

const base64Digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function decodeMappings(mappings: string): number[][][] {
  const lines: number[][][] = [];
  const state = [0, 0, 0, 0];
  for (const lineText of mappings.split(';')) {
    state[0] = 0;
    const segments: number[][] = [];
    for (const segmentText of lineText.split(',')) {
      if (segmentText === '') continue;
      const values: number[] = [];
      let value = 0;
      let shift = 0;
      for (const char of segmentText) {
        const digit = base64Digits.indexOf(char);
        value += (digit & 31) << shift;
        if (digit & 32) {
          shift += 5;
          continue;
        }
        values.push(value & 1 ? -(value >>> 1) : value >>> 1);
        value = 0;
        shift = 0;
      }
      for (let i = 0; i < Math.min(values.length, 4); i++) state[i] += values[i];
      if (values.length >= 4) segments.push([state[0], state[1], state[2], state[3]]);
    }
    lines.push(segments);
  }
  return lines;
}

/** Reads and caches `file.map`; null when there is none. */
class SourceMaps {
  private readonly cache = new Map<string, SourceMapIndex | null>();

  /** `file`:`line0` (0-based, compiled) → source file and 1-based line, or null. */
  lookup(file: string, line0: number, column0: number): { file: string; line: number } | null {
    const index = this.load(file);
    const segments = index?.lines[line0];
    if (index === null || index === undefined || segments === undefined || segments.length === 0) return null;
    let chosen = segments[0];
    for (const segment of segments) {
      if (segment[0] > column0) break;
      chosen = segment;
    }
    const source = index.sources[chosen[1]];
    return source === undefined ? null : { file: path.resolve(path.dirname(file), source), line: chosen[2] + 1 };
  }

  private load(file: string): SourceMapIndex | null {
    const cached = this.cache.get(file);
    if (cached !== undefined) return cached;
    let index: SourceMapIndex | null = null;
    try {
      const map = JSON.parse(fs.readFileSync(file + '.map', 'utf8')) as { sources?: unknown; mappings?: unknown };
      if (Array.isArray(map.sources) && typeof map.mappings === 'string') {
        index = { sources: map.sources.map(String), lines: decodeMappings(map.mappings) };
      }
    } catch {
      index = null;
    }
    this.cache.set(file, index);
    return index;
  }
}

// ---------------------------------------------------------------- analysis

export interface FunctionFigure {
  name: string;
  /** file:line relative to the repo (the .ts source when a source map says so), or a node: / native label. */
  location: string;
  category: Category;
  ms: number;
  percent: number;
}

export interface ProfileSummary {
  file: string;
  /** Whether the timed window cut the profile (false: the whole profile was used). */
  windowed: boolean;
  sampledMs: number;
  samplesCount: number;
  shares: { idlePercent: number; gcPercent: number; programPercent: number; javascriptPercent: number };
  /** Busy (non-idle) main-thread time per operation of the timed part, microseconds. */
  busyUsPerOp: number | null;
  categories: { category: Category; ms: number; percent: number; usPerOp: number | null }[];
  topSelf: FunctionFigure[];
  topInclusiveSrc: FunctionFigure[];
}

interface Analysis {
  main: ProfileSummary;
  others: ProfileSummary[];
}

function analyzeProfile(file: string, profile: CpuProfile, window: { startUs: number; endUs: number }, ops: number, topCount: number, root: string): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) byId.set(node.id, node);
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

  const timestamps = new Array<number>(profile.samples.length);
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    timestamps[i] = t;
  }
  const windowed = window.startUs >= profile.startTime && window.endUs <= profile.endTime && window.endUs > window.startUs;

  const selfUs = new Map<number, number>();
  let sampledUs = 0;
  let samplesCount = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const ts = timestamps[i];
    if (windowed && (ts < window.startUs || ts > window.endUs)) continue;
    const next = i + 1 < timestamps.length ? timestamps[i + 1] : profile.endTime;
    const us = Math.max(0, next - ts);
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + us);
    sampledUs += us;
    samplesCount++;
  }

  const maps = new SourceMaps();
  const categoryCache = new Map<number, Category>();
  const categoryOf = (id: number): Category => {
    const cached = categoryCache.get(id);
    if (cached !== undefined) return cached;
    const node = byId.get(id);
    let category: Category = 'other';
    if (node !== undefined) {
      const own = categoryOfFile(node.callFrame, root);
      if (own !== null) category = own;
      else if (node.callFrame.functionName === 'parse' || node.callFrame.functionName === 'stringify') category = 'JSON (parse/stringify)';
      else {
        const parent = parentOf.get(id);
        category = parent === undefined ? 'other' : categoryOf(parent);
        if (category === 'idle' || category === 'GC' || category === '(program)') category = 'other';
      }
    }
    categoryCache.set(id, category);
    return category;
  };
  const locationOf = (frame: CallFrame): string => {
    if (frame.url === '') return '(native)';
    if (!frame.url.startsWith('file://')) return `${frame.url}:${frame.lineNumber + 1}`;
    const file = fileUrlPath(frame.url);
    const mapped = maps.lookup(file, frame.lineNumber, frame.columnNumber);
    const shown = mapped ?? { file, line: frame.lineNumber + 1 };
    return `${repoRelative(shown.file, root)}:${shown.line}`;
  };
  const percentOf = (us: number): number => (sampledUs > 0 ? (100 * us) / sampledUs : 0);
  const usPerOp = (us: number): number | null => (ops > 0 ? us / ops : null);

  const byCategory = new Map<Category, number>();
  for (const [id, us] of selfUs) byCategory.set(categoryOf(id), (byCategory.get(categoryOf(id)) ?? 0) + us);

  // Self time by function (name + location), summed over every node of that function.
  const byFunction = new Map<string, { frame: CallFrame; category: Category; us: number }>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const frame = node.callFrame;
    const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}|${frame.columnNumber}|${categoryOf(id)}`;
    const entry = byFunction.get(key) ?? { frame, category: categoryOf(id), us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
  }

  // Inclusive time of src/ functions: each sample counts once per distinct function on its stack.
  const inclusive = new Map<string, { frame: CallFrame; us: number }>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame === undefined || !frame.url.includes('/dist/src/')) continue;
      const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}|${frame.columnNumber}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const entry = inclusive.get(key) ?? { frame, us: 0 };
      entry.us += us;
      inclusive.set(key, entry);
    }
  }

  const figure = (frame: CallFrame, category: Category, us: number): FunctionFigure => ({
    name: frame.functionName === '' ? '(anonymous)' : frame.functionName,
    location: locationOf(frame),
    category,
    ms: us / 1000,
    percent: percentOf(us),
  });
  const idleUs = byCategory.get('idle') ?? 0;
  const gcUs = byCategory.get('GC') ?? 0;
  const programUs = byCategory.get('(program)') ?? 0;
  return {
    file,
    windowed,
    sampledMs: sampledUs / 1000,
    samplesCount,
    shares: {
      idlePercent: percentOf(idleUs),
      gcPercent: percentOf(gcUs),
      programPercent: percentOf(programUs),
      javascriptPercent: percentOf(sampledUs - idleUs - gcUs - programUs),
    },
    busyUsPerOp: usPerOp(sampledUs - idleUs),
    categories: categories
      .map((category) => ({ category, us: byCategory.get(category) ?? 0 }))
      .filter((entry) => entry.us > 0)
      .sort((a, b) => b.us - a.us)
      .map((entry) => ({ category: entry.category, ms: entry.us / 1000, percent: percentOf(entry.us), usPerOp: usPerOp(entry.us) })),
    topSelf: [...byFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topCount)
      .map((entry) => figure(entry.frame, entry.category, entry.us)),
    topInclusiveSrc: [...inclusive.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, inclusiveTopCount)
      .map((entry) => figure(entry.frame, categoryOfFile(entry.frame, root) ?? 'other', entry.us)),
  };
}

/** V8 names profiles CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is the main thread. */
function threadIdOf(file: string): number {
  const match = /\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(path.basename(file));
  return match === null ? -1 : Number(match[2]);
}

function analyzeDir(dir: string, window: { startUs: number; endUs: number }, ops: number, topCount: number, root: string): Analysis {
  const files = fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .map((name) => path.join(dir, name));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}: did the node exit through process.exit?`);
  const mainFile = files.find((file) => threadIdOf(file) === 0) ?? files[0];
  const read = (file: string): ProfileSummary => analyzeProfile(file, JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile, window, ops, topCount, root);
  return { main: read(mainFile), others: files.filter((file) => file !== mainFile).map(read) };
}

// ---------------------------------------------------------------- CPU by thread (/proc)

/** CPU ms so far of each thread of `pid`, summed by thread name (digits dropped); empty off Linux. */
function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim().replace(/[0-9]+$/, '');
      // Fields after the parenthesised name: state is field 3, utime 14 and stime 15 (clock ticks).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
      // Node 20 leaves libuv's pool threads and V8's platform workers named after the process.
      const group = tid === String(pid) ? 'main thread' : name === 'node' ? 'libuv pool + V8 workers' : name;
      out.set(group, (out.get(group) ?? 0) + ms);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/** What each thread group of the node, and this process (the load client), spent in the window. */
function cpuDuring(before: Map<string, number>, after: Map<string, number>, clientUs: NodeJS.CpuUsage): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, ms] of after) out[`node: ${name}`] = ms - (before.get(name) ?? 0);
  out['load client (this process)'] = (clientUs.user + clientUs.system) / 1000;
  return out;
}

// ---------------------------------------------------------------- the profiled node

// ---------------------------------------------------------------- the scenarios' timed parts

interface Prepared {
  /** One timed operation; resolves to the docs it handled. */
  op: (worker: number, opIndex: number) => Promise<number>;
  opsMax: number;
}

/** Untimed setup of a scenario, then its timed operation: the same requests as scenarios.ts. */
async function prepare(key: ScenarioKey, server: ServerHandle, concurrency: number, signal: AbortSignal): Promise<Prepared> {
  const { client } = server;
  const db = await createDb(client, `prof_${key}`);
  const load = (count: number): Promise<{ ids: string[]; revs: string[] }> =>
    loadDocsWith({ db, count, concurrency: Math.min(loadConcurrency, concurrency), signal, write: (_batch, docs) => bulkWrite(client, db, docs) });
  let n = 0;
  switch (key) {
    case 'create':
      return {
        opsMax,
        op: async () => {
          const doc = makeDoc(newDocId(), n++);
          await expectStatus(client, 'PUT', docPath(db, doc._id), doc, [201, 202]);
          return 1;
        },
      };
    case 'read': {
      const { ids } = await load(readDocsCount);
      return {
        opsMax,
        op: async () => {
          const id = ids[Math.floor(Math.random() * ids.length)];
          const reply = await expectStatus(client, 'GET', docPath(db, id), undefined, [200]);
          if ((reply as { _id?: unknown })._id !== id) throw new Error(`GET ${id}: wrong document`);
          return 1;
        },
      };
    }
    case 'update': {
      const docsCount = Math.max(updateDocsCount, concurrency);
      const { ids, revs } = await load(docsCount);
      return { opsMax, op: updateOp(client, db, ids, revs, concurrency) };
    }
    case 'bulk':
      return {
        opsMax: Math.ceil(opsMax / bulkBatchDocs),
        op: async () => {
          const docs = Array.from({ length: bulkBatchDocs }, () => makeDoc(newDocId(), n++));
          const written = await bulkWrite(client, db, docs);
          if (written.failures > 0) throw new Error(`_bulk_docs: ${written.failures} of ${docs.length} docs failed (${written.firstError})`);
          return written.revsById.size;
        },
      };
  }
}

// ---------------------------------------------------------------- report

function formatSummary(summary: ProfileSummary, root: string): string {
  const lines: string[] = [];
  const pct = (value: number): string => `${value.toFixed(1)}%`;
  lines.push(`profile ${repoRelative(summary.file, root)}${summary.windowed ? ' (timed window only)' : ' (WHOLE profile: the timed window did not fit it)'}`);
  lines.push(`sampled ${summary.sampledMs.toFixed(0)} ms in ${summary.samplesCount} samples: idle ${pct(summary.shares.idlePercent)}, GC ${pct(summary.shares.gcPercent)}, (program) ${pct(summary.shares.programPercent)}, JavaScript+native ${pct(summary.shares.javascriptPercent)}`);
  if (summary.busyUsPerOp !== null) lines.push(`busy main-thread time per operation: ${summary.busyUsPerOp.toFixed(1)} µs`);
  lines.push('', '| category | ms | % | µs/op |', '|---|---:|---:|---:|');
  for (const entry of summary.categories) {
    lines.push(`| ${entry.category} | ${entry.ms.toFixed(0)} | ${entry.percent.toFixed(1)} | ${entry.usPerOp === null ? '' : entry.usPerOp.toFixed(1)} |`);
  }
  const table = (title: string, figures: FunctionFigure[]): void => {
    lines.push('', title, '', '| # | function | file:line | category | ms | % |', '|---:|---|---|---|---:|---:|');
    figures.forEach((f, i) => lines.push(`| ${i + 1} | ${f.name} | ${f.location} | ${f.category} | ${f.ms.toFixed(0)} | ${f.percent.toFixed(1)} |`));
  };
  table(`top ${summary.topSelf.length} functions by self time`, summary.topSelf);
  table(`top ${summary.topInclusiveSrc.length} src/ functions by inclusive time`, summary.topInclusiveSrc);
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- run

function main(): void {
  const root = projectRoot();
  const program = new Command()
    .name('loadtest:profile')
    .description('CPU-profile one Divan node under one load-test scenario and say where the time goes.')
    .addOption(new Option('--scenario <key>', 'the load to drive').choices(['create', 'read', 'update', 'bulk']).makeOptionMandatory())
    .option('--seconds <s>', 'length of the timed part, seconds', floatIn(0.5, 3600), 10)
    .option('--concurrency <n>', 'client workers (and sockets)', intIn(1, 1000), 10)
    .option('--out <file>', 'write the aggregated figures and the run throughput as JSON here')
    .option('--keep-profile', 'keep the .cpuprofile files (their directory is printed)', false)
    .option('--top <n>', 'functions listed by self time', intIn(1, 500), 25)
    .option('--interval-us <us>', "V8's sampling interval (--cpu-prof-interval), microseconds", intIn(50, 100_000), 1000)
    .option('--divan-main <file>', "Divan's compiled entry point", path.join(root, 'dist', 'src', 'node', 'main.js'))
    .showHelpAfterError('(add --help for usage)');
  program.parse();
  run(program.opts<CliOptions>(), root).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`profile failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

async function run(options: CliOptions, root: string): Promise<number> {
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'divan-prof-'));
  try {
    return await profileOnce(options, root, profileDir);
  } finally {
    if (options.keepProfile) process.stderr.write(`profiles kept in ${profileDir}\n`);
    else fs.rmSync(profileDir, { recursive: true, force: true });
  }
}

/** Start, set up, drive, stop, analyse; the profile directory is the caller's. */
async function profileOnce(options: CliOptions, root: string, profileDir: string): Promise<number> {
  const abort = new AbortController();
  const children = new ChildSet();
  const onSigint = (): void => abort.abort();
  const onExit = (): void => children.stopAllSync();
  process.on('SIGINT', onSigint);
  process.on('exit', onExit);
  const log = (line: string): void => {
    process.stderr.write(line + '\n');
  };
  let result: DriveResult;
  let window: { startUs: number; endUs: number };
  let cpuMs: Record<string, number> = {};
  try {
    log(`starting Divan with --cpu-prof into ${profileDir}...`);
    const server = await startDivan(options.divanMain, children, {
      socketsMax: options.concurrency,
      requestTimeoutMs,
      startTimeoutMs,
      signal: abort.signal,
      nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-interval', String(options.intervalUs)],
    });
    log(`  pid ${server.pid} on 127.0.0.1:${server.port}; setting up ${options.scenario} (untimed)...`);
    const prepared = await prepare(options.scenario, server, options.concurrency, abort.signal);
    log(`  driving ${options.scenario} for ${options.seconds} s with ${options.concurrency} workers...`);
    const threadsBefore = threadCpuMs(server.pid);
    const clientBefore = process.cpuUsage();
    const startUs = Number(process.hrtime.bigint() / 1000n);
    result = await drive({ concurrency: options.concurrency, durationMs: options.seconds * 1000, opsMax: prepared.opsMax, errorsMax, signal: abort.signal, op: prepared.op });
    window = { startUs, endUs: Number(process.hrtime.bigint() / 1000n) };
    cpuMs = cpuDuring(threadsBefore, threadCpuMs(server.pid), process.cpuUsage(clientBefore));
    server.client.close();
    log(`  stopping the node (SIGTERM) so it writes its profile...`);
  } finally {
    await children.stopAll();
    process.off('SIGINT', onSigint);
    process.off('exit', onExit);
  }
  if (abort.signal.aborted) {
    log('interrupted');
    return 130;
  }

  const analysis = analyzeDir(profileDir, window, result.ops - result.errors, options.top, root);
  const throughput = {
    opsPerSecond: result.opsPerSecond,
    docsPerSecond: result.itemsPerSecond,
    ops: result.ops,
    errors: result.errors,
    p50Ms: result.latency.p50Ms,
    p99Ms: result.latency.p99Ms,
    elapsedMs: result.elapsedMs,
  };
  const head =
    `# ${options.scenario}: ${throughput.opsPerSecond.toFixed(0)} req/s, ${throughput.docsPerSecond.toFixed(0)} docs/s ` +
    `(p50 ${throughput.p50Ms?.toFixed(2) ?? '?'} ms, p99 ${throughput.p99Ms?.toFixed(2) ?? '?'} ms, ${throughput.ops} ops, ${throughput.errors} errors, ` +
    `${options.concurrency} workers, ${(throughput.elapsedMs / 1000).toFixed(1)} s)\n` +
    `load average at the end: ${os.loadavg().map((v) => v.toFixed(2)).join(' ')} on ${os.cpus().length} CPUs\n`;
  const cpuLine = Object.entries(cpuMs)
    .filter(([, ms]) => ms > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([name, ms]) => `${name} ${ms.toFixed(0)}`)
    .join(', ');
  const cpuHead = `CPU ms in the ${((window.endUs - window.startUs) / 1000).toFixed(0)} ms window (/proc, 10 ms ticks): ${cpuLine || 'n/a'}\n`;
  process.stdout.write(head + cpuHead + '\n' + formatSummary(analysis.main, root));
  for (const other of analysis.others) {
    process.stdout.write(
      `\nother thread profile ${path.basename(other.file)}: ${other.sampledMs.toFixed(0)} ms sampled, idle ${other.shares.idlePercent.toFixed(1)}%, ` +
        `top: ${other.categories.slice(0, 4).map((c) => `${c.category} ${c.percent.toFixed(1)}%`).join(', ')}\n`,
    );
  }
  if (result.errors > 0) log(`warning: ${result.errors} failed operations, e.g. ${result.errorSamples[0] ?? ''}`);
  if (options.out !== undefined) {
    fs.mkdirSync(path.dirname(path.resolve(options.out)), { recursive: true });
    const report = { generatedAt: new Date().toISOString(), scenario: options.scenario, options, loadAverage: os.loadavg(), throughput, cpuMs, main: analysis.main, otherThreads: analysis.others };
    fs.writeFileSync(options.out, JSON.stringify(report, null, 2) + '\n');
    log(`figures written to ${options.out}`);
  }
  return result.errors > 0 ? 1 : 0;
}

main();
