/**
 * Documents for the load test: CouchDB-style 32-hex ids and bodies of about
 * `docBytesTarget` bytes of JSON (including `_id`), with random filler text so that
 * a compressing store does not get an unfair advantage from repeated bytes.
 * Pure apart from the random source; no I/O.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { fmix32 } from '../src/ring/placement';

export const docBytesTarget = 300;

/** Random text the filler is sliced from, so no doc costs a random-source call for its body. */
const fillerPool = randomBytes(48 * 1024).toString('base64url');
const tags = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];
/** Distinct `type` values of the view scenarios' docs (`type-0` .. `type-9`). */
export const viewTypesCount = 10;

export function newDocId(): string {
  return randomUUID().replaceAll('-', '');
}

export interface LoadDoc {
  _id: string;
  _rev?: string;
  type: string;
  n: number;
  name: string;
  tags: string[];
  score: number;
  text: string;
}

export function makeDoc(id: string, n: number, type = 'loadtest'): LoadDoc {
  const doc: LoadDoc = {
    _id: id,
    type,
    n,
    name: `user-${n}`,
    tags: [tags[n % tags.length], tags[(n + 2) % tags.length]],
    score: (n % 1000) / 10,
    text: '',
  };
  const fillerLength = Math.max(0, docBytesTarget - JSON.stringify(doc).length);
  const start = Math.floor(Math.random() * (fillerPool.length - fillerLength));
  doc.text = fillerPool.slice(start, start + fillerLength);
  return doc;
}

/** A doc of the view scenarios: `type` is one of `viewTypesCount` values, `n` its load index. */
export function makeViewDoc(id: string, n: number): LoadDoc {
  return makeDoc(id, n, viewDocType(n));
}

export function viewDocType(n: number): string {
  return `type-${n % viewTypesCount}`;
}

/** Distinct `type` values of the `_find` scenarios' docs (`type-0` .. `type-19`). */
export const findTypesCount = 20;
/** Distinct `tag` (and `tag2`) values of the `_find` scenarios' docs (`tag-0` .. `tag-999`). */
export const findTagsCount = 1000;
/** `date` of the `_find` docs: a second in the five years from 2020-01-01T00:00:00Z. */
export const findDateFirstMs = Date.UTC(2020, 0, 1);
export const findDateSpanSeconds = 5 * 365 * 24 * 3600;

/** A doc of the `_find` scenarios: the fields below, drawn from `n` (its load index) by a hash. */
export interface FindDoc extends LoadDoc {
  date: string;
  tag: string;
  tag2: string;
}

export interface FindFields {
  type: string;
  date: string;
  tag: string;
  tag2: string;
}

/**
 * The queried fields of `_find` doc number n. Each is a hash of n, so they are
 * independent of each other and of the doc id (whose order `_all_docs` follows), and
 * the harness recomputes them from n to know every query's answer. `tag2` has the
 * same distribution as `tag` but is never indexed.
 */
export function findFields(n: number): FindFields {
  return {
    type: `type-${mix32(n * 4 + 1) % findTypesCount}`,
    date: new Date(findDateFirstMs + (mix32(n * 4 + 2) % findDateSpanSeconds) * 1000).toISOString(),
    tag: `tag-${mix32(n * 4 + 3) % findTagsCount}`,
    tag2: `tag-${mix32(n * 4 + 4) % findTagsCount}`,
  };
}

export function makeFindDoc(id: string, n: number): FindDoc {
  const { type, date, tag, tag2 } = findFields(n);
  const doc: FindDoc = { ...makeDoc(id, n, type), date, tag, tag2 };
  // makeDoc sized the filler without the three extra fields: take their bytes back off.
  const overBytes = JSON.stringify(doc).length - docBytesTarget;
  if (overBytes > 0) doc.text = doc.text.slice(0, Math.max(0, doc.text.length - overBytes));
  return doc;
}

/** A cheap, well-spread hash of an integer (murmur3's finalizer, as the ring uses it). */
const mix32 = fmix32;
