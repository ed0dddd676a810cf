/**
 * Documents for the load test: CouchDB-style 32-hex ids and bodies of about
 * `docBytesTarget` bytes of JSON (including `_id`), with random filler text so that
 * a compressing store does not get an unfair advantage from repeated bytes.
 * Pure apart from the random source; no I/O.
 */
import { randomBytes, randomUUID } from 'node:crypto';

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
