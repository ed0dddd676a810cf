/**
 * CouchDB 3.x's built-in reduce functions, in plain JavaScript (they never enter the
 * user-JavaScript sandbox). Pure: no I/O, no clock.
 *
 * Every reducer has three steps, so that the view engine can keep partial reductions
 * per key range (or b-tree node) and combine them later:
 *   reduce(rows)        rows `[key, value]` of one range -> a partial
 *   rereduce(partials)  partials of adjacent or disjoint ranges -> one partial
 *   finish(partial)     the partial -> the value a client sees
 * Reducing all rows gives the same partial as rereducing the reductions of any
 * partition of them (tested as a property); partials are plain JSON, safe to store.
 *
 * - `_count`: the number of rows; rereduce sums the counts.
 * - `_sum`: numbers add; arrays of numbers add element-wise (the shorter padded, a
 *   number meets an array as its first element); objects add member-wise, recursively
 *   (a member on one side only is kept as is; members sorted by code point, as CouchDB
 *   sorts them). Anything else does not fail the request: as in CouchDB the reduction
 *   becomes `{"error":"builtin_reduce_error","reason":...,"caused_by":<value>}`, and a
 *   partial in that shape wins every later rereduce. CouchDB's quirks are kept: an
 *   object added to a running sum of exactly 0 replaces it, unchecked.
 * - `_stats`: `{sum, count, min, max, sumsqr}` over numbers; an array of numbers gives an
 *   array of stats, element by element; a value may be a precomputed stats object (all
 *   five members numbers). Anything else fails the whole reduction with
 *   `BuiltinReduceError` (500 `invalid_value`, CouchDB's token). No rows give all zeros.
 * - `_approx_count_distinct`: a HyperLogLog sketch of the keys (precision 11, 2048
 *   one-byte registers, as CouchDB's `hyper` uses), over SHA-256 of the key's JSON text
 *   (member order counts, as it does for CouchDB's binary form of the key). Standard
 *   error 1.04/sqrt(2048) ~ 2.3%; small cardinalities use linear counting and are
 *   nearly exact. The partial is `{"hll": <base64 of the registers>}`; rereduce takes
 *   the register-wise maximum (the sketch of the union); finish gives the rounded
 *   estimate. Duplicated keys never count twice.
 *
 * Not done here: CouchDB's `reduce_limit` check on `_sum` output size, and the
 * `_first`/`_last`/`_top_N`/`_bottom_N` reduces of CouchDB 3.4+.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { BuiltinReduceError } from '../../errors';
import { ExactInteger, stringifyJson } from '../../json';

export type BuiltinReduceName = '_count' | '_sum' | '_stats' | '_approx_count_distinct';

/**
 * One view row as the reducer sees it: the emitted key (not `[key, docid]`: CouchDB's
 * _approx_count_distinct hashes the key alone) and the emitted value.
 */
export type ReduceRow = readonly [key: unknown, value: unknown];

export interface BuiltinReducer {
  readonly name: BuiltinReduceName;
  reduce(rows: readonly ReduceRow[]): unknown;
  rereduce(partials: readonly unknown[]): unknown;
  finish(partial: unknown): unknown;
}

/** The reducer for a view's `reduce` member, or undefined when it is not a built-in one. */
export function builtinReducer(name: string): BuiltinReducer | undefined {
  return reducers.get(name);
}

// ---------------------------------------------------------------------------------
// shared

function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (v instanceof ExactInteger) return Number(v.raw);
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof ExactInteger);
}

function json(v: unknown): string {
  return stringifyJson(v) ?? 'undefined';
}

// ---------------------------------------------------------------------------------
// _count

const count: BuiltinReducer = {
  name: '_count',
  reduce: (rows) => rows.length,
  rereduce: (partials) => {
    let total = 0;
    for (const p of partials) {
      assert(typeof p === 'number', '_count partials are numbers');
      total += p;
    }
    return total;
  },
  finish: (partial) => partial,
};

// ---------------------------------------------------------------------------------
// _sum

export const SUM_ERROR_REASON =
  'The _sum function requires that map values be numbers, arrays of numbers, or objects. ' +
  'Objects cannot be mixed with other data structures. Objects can be arbitrarily nested, ' +
  'provided that the values for all fields are themselves numbers, arrays of numbers, or objects.';

/** A value _sum cannot add; `cause` is what CouchDB reports as `caused_by`. */
class SumInvalid {
  constructor(readonly cause: unknown) {}
}
/** An earlier in-band error object met again: it becomes the result. */
class SumCarried {
  constructor(readonly error: Record<string, unknown>) {}
}

function addValue(value: unknown, acc: unknown): unknown {
  const v = numberOf(value);
  const a = numberOf(acc);
  if (v !== undefined && a !== undefined) return a + v;
  if (Array.isArray(value) && Array.isArray(acc)) return addArrays(acc, value);
  if (v !== undefined && Array.isArray(acc)) return addArrays(acc, [v]);
  if (Array.isArray(value) && a !== undefined) return addArrays([a], value);
  if (isObject(value)) {
    if (Object.hasOwn(value, 'error') && value.error === 'builtin_reduce_error') throw new SumCarried(value);
    if (a === 0) return value;
    if (isObject(acc)) return addObjects(value, acc);
    throw new SumInvalid(value);
  }
  throw new SumInvalid(value);
}

/** Element-wise; a tail on one side only is kept unchanged (as CouchDB does). */
function addArrays(xs: readonly unknown[], ys: readonly unknown[]): unknown[] {
  const out: unknown[] = [];
  const n = Math.max(xs.length, ys.length);
  for (let i = 0; i < n; i++) {
    if (i >= xs.length) out.push(ys[i]);
    else if (i >= ys.length) out.push(xs[i]);
    else {
      const x = numberOf(xs[i]);
      const y = numberOf(ys[i]);
      if (x === undefined || y === undefined) throw new SumInvalid(xs.slice(i));
      out.push(x + y);
    }
  }
  return out;
}

function byCodePoint(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function addObjects(value: Record<string, unknown>, acc: Record<string, unknown>): Record<string, unknown> {
  const keys = new Set([...Object.keys(value), ...Object.keys(acc)]);
  const entries: [string, unknown][] = [];
  for (const k of [...keys].sort(byCodePoint)) {
    const inValue = Object.hasOwn(value, k);
    const inAcc = Object.hasOwn(acc, k);
    entries.push([k, inValue && inAcc ? addValue(value[k], acc[k]) : inValue ? value[k] : acc[k]]);
  }
  // fromEntries defines own properties, so a member named "__proto__" stays data.
  return Object.fromEntries(entries);
}

function sumAll(values: Iterable<unknown>): unknown {
  let acc: unknown = 0;
  try {
    for (const v of values) acc = addValue(v, acc);
    return acc;
  } catch (err) {
    if (err instanceof SumCarried) return err.error;
    if (err instanceof SumInvalid) {
      return { error: 'builtin_reduce_error', reason: SUM_ERROR_REASON, caused_by: err.cause };
    }
    throw err;
  }
}

/**
 * A reducer whose reduce and rereduce are the same fold: over the rows' values, then
 * over the partials (`_sum`, `_stats`: a partial has the shape of a value).
 */
function foldReducer(name: BuiltinReduceName, fold: (values: readonly unknown[]) => unknown): BuiltinReducer {
  return {
    name,
    reduce: (rows) => fold(rows.map((r) => r[1])),
    rereduce: (partials) => fold(partials),
    finish: (partial) => partial,
  };
}

const sum = foldReducer('_sum', sumAll);

// ---------------------------------------------------------------------------------
// _stats

export interface Stats {
  sum: number;
  count: number;
  min: number;
  max: number;
  sumsqr: number;
}
type StatsAcc = Stats | StatsAcc[];

const STATS_FIELDS = ['sum', 'count', 'min', 'max', 'sumsqr'] as const;

function single(x: number): Stats {
  return { sum: x, count: 1, min: x, max: x, sumsqr: x * x };
}

function statsError(value: unknown): BuiltinReduceError {
  return new BuiltinReduceError(
    `The _stats function requires that map values be numbers or arrays of numbers, not '${json(value)}'`,
  );
}

/** A precomputed stats object (a map may emit one; partials are in this shape too). */
function unpack(obj: Record<string, unknown>): Stats {
  const out = { sum: 0, count: 0, min: 0, max: 0, sumsqr: 0 };
  for (const f of STATS_FIELDS) {
    if (!Object.hasOwn(obj, f)) {
      throw new BuiltinReduceError(`user _stats input missing required field ${f} (${json(obj)})`);
    }
    const n = numberOf(obj[f]);
    if (n === undefined) throw new BuiltinReduceError(`non-numeric _stats input received for ${f}: ${json(obj[f])}`);
    out[f] = n;
  }
  return out;
}

function initial(value: unknown): StatsAcc {
  if (Array.isArray(value)) return value.map(initial);
  const n = numberOf(value);
  if (n !== undefined) return single(n);
  if (isObject(value)) return unpack(value);
  throw new BuiltinReduceError(`non-numeric _stats input: ${json(value)}`);
}

function step(value: unknown, acc: StatsAcc): StatsAcc {
  if (Array.isArray(value)) {
    if (!Array.isArray(acc)) throw statsError(value);
    // CouchDB crashes on arrays of different lengths; we refuse them the same way as other bad input.
    if (value.length !== acc.length) throw statsError(value);
    return value.map((v, i) => step(v, acc[i]!));
  }
  const n = numberOf(value);
  let s: Stats;
  if (n !== undefined) s = single(n);
  else if (isObject(value)) s = unpack(value);
  else throw statsError(value);
  if (Array.isArray(acc)) throw statsError(value);
  return {
    sum: s.sum + acc.sum,
    count: s.count + acc.count,
    min: Math.min(s.min, acc.min),
    max: Math.max(s.max, acc.max),
    sumsqr: s.sumsqr + acc.sumsqr,
  };
}

function statsAll(values: readonly unknown[]): StatsAcc {
  if (values.length === 0) return { sum: 0, count: 0, min: 0, max: 0, sumsqr: 0 };
  let acc = initial(values[0]);
  for (let i = 1; i < values.length; i++) acc = step(values[i], acc);
  return acc;
}

const stats = foldReducer('_stats', statsAll);

// ---------------------------------------------------------------------------------
// _approx_count_distinct

/** CouchDB's precision: 2^11 registers. */
export const HLL_PRECISION = 11;
const M = 1 << HLL_PRECISION;
const ALPHA = 0.7213 / (1 + 1.079 / M);

/** The stored shape of an _approx_count_distinct partial. */
export interface HllPartial {
  hll: string;
}

function registersOf(partial: unknown): Uint8Array {
  assert(isObject(partial) && typeof partial.hll === 'string', '_approx_count_distinct partials are {hll}');
  const bytes = Buffer.from(partial.hll, 'base64');
  assert.equal(bytes.length, M, '_approx_count_distinct partial has 2^11 registers');
  return bytes;
}

function partialOf(registers: Uint8Array): HllPartial {
  return { hll: Buffer.from(registers.buffer, registers.byteOffset, registers.byteLength).toString('base64') };
}

/** Adds one key: the top 11 bits of its hash pick a register, the rest give a rank. */
function insert(registers: Uint8Array, key: unknown): void {
  const digest = createHash('sha256').update(json(key === undefined ? null : key), 'utf8').digest();
  const hi = digest.readUInt32BE(0);
  const lo = digest.readUInt32BE(4);
  const index = hi >>> (32 - HLL_PRECISION);
  const rest = hi & ((1 << (32 - HLL_PRECISION)) - 1); // 21 bits, then 32 more in lo
  let rank: number;
  if (rest !== 0) rank = Math.clz32(rest) - HLL_PRECISION + 1;
  else if (lo !== 0) rank = 32 - HLL_PRECISION + Math.clz32(lo) + 1;
  else rank = 64 - HLL_PRECISION + 1;
  if (rank > registers[index]!) registers[index] = rank;
}

/** The HyperLogLog estimate, with linear counting for small cardinalities. */
export function hllEstimate(registers: Uint8Array): number {
  let harmonic = 0;
  let zeros = 0;
  for (const r of registers) {
    harmonic += 2 ** -r;
    if (r === 0) zeros++;
  }
  const raw = (ALPHA * M * M) / harmonic;
  if (raw <= 2.5 * M && zeros > 0) return M * Math.log(M / zeros);
  return raw; // 64-bit hashes: no large-range correction needed
}

const approxCountDistinct: BuiltinReducer = {
  name: '_approx_count_distinct',
  reduce: (rows) => {
    const registers = new Uint8Array(M);
    for (const row of rows) insert(registers, row[0]);
    return partialOf(registers);
  },
  rereduce: (partials) => {
    const out = new Uint8Array(M);
    for (const p of partials) {
      const r = registersOf(p);
      for (let i = 0; i < M; i++) if (r[i]! > out[i]!) out[i] = r[i]!;
    }
    return partialOf(out);
  },
  finish: (partial) => Math.round(hllEstimate(registersOf(partial))),
};

const reducers: ReadonlyMap<string, BuiltinReducer> = new Map(
  [count, sum, stats, approxCountDistinct].map((r) => [r.name, r] as const),
);
