/**
 * Mango index definitions, kept where CouchDB keeps them: as views of design documents
 * with `"language": "query"`, so they replicate with the database and `_design_docs`
 * lists them. Creating an index adds a view to its design document (made if absent);
 * deleting one removes the view, and the design document when nothing but its
 * language is left. The index rows themselves are built by each copy's index engine
 * on first query, like any view.
 */
import { isPlainObject } from '../../../json';
import { createHash } from 'node:crypto';
import { BadRequestError, DivanError, NotFoundError } from '../../../errors';
import { normalize, toJson } from '../../../shard/query/mango-normal';
import type { DocEdit } from '../../../shard/types';
import { readBody, readDocInfo } from '../doc-open';
import { updateDocs, type UpdateOptions } from '../doc-update';
import type { DbHandle } from '../shard-client';
import type { SortField } from './plan';

export interface IndexSpec {
  fields: SortField[];
  partialFilter: Record<string, unknown> | undefined;
  /** `_design/...`; undefined: derived from the definition. */
  ddoc: string | undefined;
  name: string | undefined;
  /** The `index` object as the client sent it (stored as `options.def`). */
  def: Record<string, unknown>;
}

export interface CreateResult {
  result: 'created' | 'exists';
  id: string;
  name: string;
}

/** Attempts at a design document write that races another edit of it. */
const WRITE_ATTEMPTS = 3;

/** The name (and design document) an index gets when the request names none: a digest of its definition. */
export function defaultIndexName(spec: IndexSpec): string {
  const canonical = JSON.stringify({ fields: spec.fields.map((f) => [f.field, f.dir]), partial: spec.partialFilter ?? null, type: 'json' });
  return createHash('sha1').update(canonical).digest('hex');
}

export async function createIndex(db: DbHandle, spec: IndexSpec, write: UpdateOptions): Promise<CreateResult> {
  const generated = defaultIndexName(spec);
  const id = spec.ddoc ?? `_design/${generated}`;
  const name = spec.name ?? generated;
  const view = {
    map: {
      fields: Object.fromEntries(spec.fields.map((f) => [f.field, f.dir])),
      partial_filter_selector: spec.partialFilter ? toJson(normalize(spec.partialFilter)) : {},
    },
    reduce: '_count',
    options: { def: spec.def },
  };
  for (let attempt = 1; ; attempt++) {
    const current = await readDesign(db, id, write.timeoutMs);
    if (current && current.body.language !== 'query') {
      throw new BadRequestError(`Existing design doc has an invalid language: ${JSON.stringify(current.body.language ?? null)}`, 'invalid_ddoc_lang');
    }
    const body: Record<string, unknown> = current ? structuredClone(current.body) : { language: 'query' };
    const views = isPlainObject(body.views) ? body.views : {};
    const before = JSON.stringify(views[name]);
    if (before !== undefined && before === JSON.stringify(view)) return { result: 'exists', id, name };
    body.views = { ...views, [name]: view };
    const edit: DocEdit = { id, deleted: false, body, attachments: null, ...(current ? { baseRev: current.rev } : {}) };
    const [outcome] = await updateDocs(db, [edit], write);
    if (outcome!.kind !== 'error') return { result: 'created', id, name };
    if (outcome!.error.token !== 'conflict') throw outcome!.error;
    if (attempt >= WRITE_ATTEMPTS) throw new DivanError('internal', 'error_saving_ddoc', 'Encountered a conflict while saving the design document.');
  }
}

/** Remove index `name` (every index of the design document when undefined); 404 when there is none. */
export async function deleteIndex(db: DbHandle, ddocId: string, name: string | undefined, write: UpdateOptions): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const current = await readDesign(db, ddocId, write.timeoutMs);
    const views = current && current.body.language === 'query' && isPlainObject(current.body.views) ? current.body.views : undefined;
    const names = views ? Object.keys(views).filter((n) => name === undefined || n === name) : [];
    if (!current || !views || names.length === 0) throw new NotFoundError('missing');
    const body = structuredClone(current.body);
    const left = { ...views };
    for (const n of names) delete left[n];
    if (Object.keys(left).length > 0) body.views = left;
    else delete body.views;
    const onlyLanguage = Object.keys(body).length === 1 && body.language === 'query';
    const edit: DocEdit = { id: ddocId, deleted: onlyLanguage, body: onlyLanguage ? {} : body, attachments: null, baseRev: current.rev };
    const [outcome] = await updateDocs(db, [edit], write);
    if (outcome!.kind !== 'error') return;
    if (outcome!.error.token !== 'conflict') throw outcome!.error;
    if (attempt >= WRITE_ATTEMPTS) throw new DivanError('internal', 'error_saving_ddoc', 'Encountered a conflict while saving the design document.');
  }
}

/** The live winning revision of a design document, or undefined. */
async function readDesign(db: DbHandle, id: string, timeoutMs: number): Promise<{ rev: string; body: Record<string, unknown> } | undefined> {
  const info = await readDocInfo(db, id, { timeoutMs });
  if (!info || info.winner.deleted) return undefined;
  const text = await readBody(db, id, info.winner.rev);
  if (text === undefined) return undefined;
  const body: unknown = JSON.parse(text);
  return { rev: info.winner.rev, body: isPlainObject(body) ? body : {} };
}

