/**
 * The validation step of document writes that come from clients (PUT/POST/DELETE,
 * `_bulk_docs` with or without new_edits, attachment writes, COPY): the one place
 * where CouchDB's `validate_doc_update` functions run and design documents are checked.
 * Internal writes (shard sync, adoption, read repair) do not come through here.
 *
 * - `_design/` documents: the writer must be a database admin (401 anonymous, 403 otherwise); a non-deleted design document
 *   must have CouchDB's structure (400 `invalid_design_doc`) and its functions must
 *   compile in the sandbox (400 `compilation_error`); `language: "query"` (Mango)
 *   documents are checked but not compiled. VDUs do not run on design documents.
 * - other documents: every design document of the database with a
 *   `validate_doc_update` runs on each edit, in id order; the first refusal decides.
 *   `throw({forbidden})` → 403 forbidden, `throw({unauthorized})` → 401 unauthorized;
 *   a thrown Error → 500 os_process_error, any other value thrown (a string, another
 *   object) → 500 unknown_error with its message, as CouchDB; for that document only. A sandbox failure
 *   of the whole call (timeout, memory) fails every document of the call with it.
 *   The arguments are CouchDB's: `newDoc` as written (`_id`, the `_rev` being replaced
 *   for interactive edits, the new rev for replicated ones, `_revisions`,
 *   `_deleted: true` for deletions, attachments as stubs), `oldDoc` (the revision
 *   being replaced: for interactive edits the base revision (null when none was
 *   given: the edit creates the document, or it conflicts anyway); for replicated edits the newest ancestor of the new revision that the
 *   document holds; null when there is none, it is deleted or its body is not
 *   stored), `userCtx` (`{db, name, roles}`) and `secObj` (the database's security object).
 *
 * - system databases (`_users`): their built-in rules (update-hooks.ts) run first, then
 *   rewrite what they accept (a password becomes its hash) before the database's own
 *   validators see it.
 *
 * The compiled validators of each database are cached (`DesignFunctions`), keyed by
 * the database's uuid and checked against the design seqs of its ranges' first live
 * copies: a local copy answers from memory on every write; a remote copy is asked
 * again at most every `recheckMs`. A design document written through this node drops
 * the entry at once. A database without validators costs one cache lookup per write
 * (plus, for ranges whose first copy is local, an in-memory state read).
 */
import { isPlainObject } from '../../json';
import { BadRequestError, DivanError, ForbiddenError, OsProcessError, UnauthorizedError } from '../../errors';
import type { CompiledDdoc, SandboxPool, ValidateDocResult } from '../../shard/js/sandbox';
import type { DocEdit, DocInfo, RevNode } from '../../shard/types';
import type { DesignDocRef } from '../../shard/index/types';
import { streamDesignDocs } from './all-docs';
import { readDocInfos } from './doc-infos';
import { rangeFor, revisionsOf } from './doc-open';
import { firstLiveState } from './range-read';
import type { DbHandle } from './shard-client';
import type { UpdateHooks } from './update-hooks';

/** Who is writing, as CouchDB's `userCtx` shows it (without `db`, added per database). */
export interface UserCtx {
  name: string | null;
  roles: string[];
}

/** What a client write carries into `updateDocs` to be validated. */
export interface Validation {
  functions: DesignFunctions;
  user: UserCtx;
  /** The writer is an admin of the database (security.ts): design documents need it. */
  dbAdmin: boolean;
  /** Built-in rules of system databases (`_users`), by database name. */
  hooks?: UpdateHooks;
}

interface Validator {
  id: string;
  rev: string;
  compiled: CompiledDdoc;
}

interface Entry {
  /** Per range: `node:designSeq` of the copy read. */
  seqs: string[];
  /** When remote copies were last asked. */
  checkedAt: number;
  validators: Validator[];
  /** Every design document of the database (id → rev and body), for view queries. */
  ddocs: Map<string, { rev: string; body: Record<string, unknown> }>;
}

/** Databases whose validators are cached at most; the oldest entry goes first. */
const ENTRIES_MAX = 1000;
/** Documents per sandbox call at most, and their JSON bytes (roughly) per call. */
const DOCS_PER_CALL_MAX = 1000;
const BYTES_PER_CALL_MAX = 4 * 1024 * 1024;

export class DesignFunctions {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Pick<Entry, 'validators' | 'ddocs'>>>();
  /** Bumped by `forget`: a load that started before does not store its result. */
  private generation = 0;

  constructor(
    readonly js: SandboxPool,
    /** This node's name: its copies answer their state from memory. */
    private readonly self: string,
    private readonly recheckMs: number,
    /** Where the lines VDUs pass to `log()` go (CouchDB logs them at info). */
    readonly onLog: (entry: { db: string; ddoc: string; lines: string[] }) => void = () => undefined,
  ) {}

  /** The database's validate_doc_update functions, in design document id order. */
  async validators(db: DbHandle, timeoutMs: number): Promise<readonly Validator[]> {
    return (await this.current(db, timeoutMs)).validators;
  }

  /**
   * A design document as the cache holds it (current under the same rules as the
   * validators: at once for writes through this node, within `recheckMs` otherwise),
   * or undefined when the database has no such (live) design document.
   */
  async designDoc(db: DbHandle, id: string, timeoutMs: number): Promise<{ rev: string; body: Record<string, unknown> } | undefined> {
    return (await this.current(db, timeoutMs)).ddocs.get(id);
  }

  /** Every live design document of the database, current under the same rules. */
  async designDocRefs(db: DbHandle, timeoutMs: number): Promise<DesignDocRef[]> {
    const { ddocs } = await this.current(db, timeoutMs);
    return [...ddocs].map(([id, d]) => ({ id, rev: d.rev, body: d.body }));
  }

  private async current(db: DbHandle, timeoutMs: number): Promise<Pick<Entry, 'validators' | 'ddocs'>> {
    void timeoutMs;
    const entry = this.entries.get(db.uuid);
    const now = Date.now();
    const askRemote = !entry || now - entry.checkedAt >= this.recheckMs;
    let askedRemote = false;
    const seqs = await Promise.all(
      db.ranges.map(async (range, i) => {
        if (!askRemote && range.copies[0]!.node !== this.self) return entry!.seqs[i]!;
        if (range.copies[0]!.node !== this.self) askedRemote = true;
        return firstLiveState(range.copies, async (copy) => copy.node + ':' + ((await copy.readState()).designSeq ?? 0));
      }),
    );
    if (entry && seqs.every((s, i) => s === entry.seqs[i])) {
      if (askedRemote) entry.checkedAt = now;
      return entry;
    }
    let pending = this.loading.get(db.uuid);
    if (!pending) {
      const generation = this.generation;
      pending = this.load(db, entry).then(
        (loaded) => {
          this.loading.delete(db.uuid);
          if (generation === this.generation) this.store(db.uuid, { seqs, checkedAt: now, ...loaded });
          return loaded;
        },
        (err: unknown) => {
          this.loading.delete(db.uuid);
          throw err;
        },
      );
      this.loading.set(db.uuid, pending);
    }
    return pending;
  }

  /**
   * Ask the copies for their design sequences on next use, whatever `recheckMs` says
   * (a design document made through another node a moment ago); reloads only if one moved.
   */
  recheck(uuid: string): void {
    const entry = this.entries.get(uuid);
    if (entry) entry.checkedAt = 0;
  }

  /** A design document of the database was written through this node: reload on next use. */
  forget(uuid: string): void {
    this.generation++;
    const entry = this.entries.get(uuid);
    if (!entry) return;
    this.entries.delete(uuid);
    for (const v of entry.validators) this.js.release(v.compiled);
  }

  private store(uuid: string, entry: Entry): void {
    const old = this.entries.get(uuid);
    if (old) {
      const kept = new Set(entry.validators.map((v) => v.compiled));
      for (const v of old.validators) if (!kept.has(v.compiled)) this.js.release(v.compiled);
      this.entries.delete(uuid);
    }
    this.entries.set(uuid, entry);
    while (this.entries.size > ENTRIES_MAX) {
      const [oldest, evicted] = this.entries.entries().next().value as [string, Entry];
      this.entries.delete(oldest);
      for (const v of evicted.validators) this.js.release(v.compiled);
    }
  }

  private async load(db: DbHandle, previous: Entry | undefined): Promise<Pick<Entry, 'validators' | 'ddocs'>> {
    const ddocs: Record<string, unknown>[] = [];
    const all = new Map<string, { rev: string; body: Record<string, unknown> }>();
    await streamDesignDocs(db, (row) => {
      const doc = JSON.parse(row.doc) as Record<string, unknown>;
      const { _id: _i, _rev: _r, ...body } = doc;
      void _i, _r;
      all.set(row.id, { rev: row.rev, body });
      if (doc.validate_doc_update !== undefined) ddocs.push(doc);
    });
    ddocs.sort((a, b) => ((a._id as string) < (b._id as string) ? -1 : (a._id as string) > (b._id as string) ? 1 : 0));
    const out: Validator[] = [];
    for (const doc of ddocs) {
      const id = doc._id as string;
      const rev = doc._rev as string;
      const same = previous?.validators.find((v) => v.id === id && v.rev === rev);
      if (same) {
        out.push(same);
        continue;
      }
      // Only what validate_doc_update can reach: views and filters are not compiled (a
      // broken view must not stop writes), `views.lib` stays for require().
      const { views, filters: _filters, ...rest } = doc;
      void _filters;
      const lib = isPlainObject(views) && Object.hasOwn(views, 'lib') ? { views: { lib: views.lib } } : {};
      try {
        out.push({ id, rev, compiled: await this.js.compile({ ...rest, ...lib }) });
      } catch (err) {
        for (const v of out) if (!previous?.validators.includes(v)) this.js.release(v.compiled);
        throw err;
      }
    }
    return { validators: out, ddocs: all };
  }
}

/**
 * Validate client edits before they are written: per edit, the error that refuses it,
 * or undefined. Throws only when validation cannot run at all (design documents
 * unreadable): the write then fails as a whole, never unchecked.
 */
export async function validateEdits(db: DbHandle, edits: readonly DocEdit[], validation: Validation, timeoutMs: number): Promise<(DivanError | undefined)[]> {
  const refused: (DivanError | undefined)[] = new Array(edits.length).fill(undefined);
  const docPositions: number[] = [];
  for (let i = 0; i < edits.length; i++) {
    const edit = edits[i]!;
    if (!edit.id.startsWith('_design/')) {
      docPositions.push(i);
      continue;
    }
    try {
      if (!validation.dbAdmin) {
        const reason = 'You are not a db or server admin.';
        throw validation.user.name === null ? new UnauthorizedError(reason) : new ForbiddenError(reason);
      }
      if (!edit.deleted) await checkDesignDoc(validation.functions.js, edit);
    } catch (err) {
      if (!(err instanceof DivanError)) throw err;
      refused[i] = err;
    }
  }
  if (docPositions.length === 0) return refused;
  const hook = validation.hooks?.get(db.name);
  const validators = await validation.functions.validators(db, timeoutMs);
  if (validators.length === 0 && !hook) return refused;

  const docEdits = docPositions.map((i) => edits[i]!);
  // An interactive edit without a base revision creates the document (or recreates a
  // deleted one): oldDoc is null, and no read is needed. Were the document alive, the
  // write would be a conflict whatever the VDU says.
  const needInfo = docEdits.flatMap((e, j) => (e.revs || e.baseRev !== undefined ? [j] : []));
  const infos: (DocInfo | undefined)[] = new Array(docEdits.length).fill(undefined);
  if (needInfo.length > 0) {
    const read = await readDocInfos(
      db,
      needInfo.map((j) => docEdits[j]!.id),
      { timeoutMs },
    );
    needInfo.forEach((j, k) => (infos[j] = read[k]));
  }
  const oldNodes = docEdits.map((edit, j) => oldRevision(edit, infos[j]));
  const oldBodies = await readBodiesMany(
    db,
    docEdits.map((edit, j) => (oldNodes[j] ? { id: edit.id, rev: oldNodes[j]!.rev } : undefined)),
  );
  const pairs: [Record<string, unknown>, Record<string, unknown> | null][] = docEdits.map((edit, j) => {
    const node = oldNodes[j];
    const body = oldBodies[j];
    const oldDoc =
      node && body !== undefined ? { _id: edit.id, _rev: node.rev, ...(JSON.parse(body) as Record<string, unknown>), _revisions: revisionsOf(infos[j]!, node.rev) } : null;
    return [newDocOf(edit), oldDoc];
  });
  const userCtx = { db: db.name, name: validation.user.name, roles: validation.user.roles };
  // Positions (into docEdits) still passing, validator after validator.
  let passing = docEdits.map((_, j) => j);
  if (hook) {
    passing = passing.filter((j) => {
      const error = hook.check(pairs[j]![0], pairs[j]![1], userCtx, db.security);
      if (!error) return true;
      refused[docPositions[j]!] = error;
      return false;
    });
    // The built-in rewrite (a password hashed) comes before the database's own validators, which see its result.
    const prepared = await Promise.all(
      passing.map((j) =>
        hook.prepare(docEdits[j]!).then(
          () => undefined,
          (err: unknown) => {
            if (!(err instanceof DivanError)) throw err;
            return err;
          },
        ),
      ),
    );
    passing = passing.filter((j, k) => {
      if (prepared[k]) refused[docPositions[j]!] = prepared[k];
      else pairs[j]![0] = newDocOf(docEdits[j]!);
      return !prepared[k];
    });
  }
  for (const validator of validators) {
    const next: number[] = [];
    for (const chunk of chunks(passing, pairs)) {
      let results: ValidateDocResult[];
      try {
        const answer = await validation.functions.js.validateDocs(
          validator.compiled,
          chunk.map((j) => pairs[j]!),
          userCtx,
          db.security,
        );
        results = answer.results;
        if (answer.logs.length > 0) validation.functions.onLog({ db: db.name, ddoc: validator.id, lines: answer.logs });
      } catch (err) {
        if (!(err instanceof DivanError)) throw err;
        for (const j of chunk) refused[docPositions[j]!] = err;
        continue;
      }
      chunk.forEach((j, k) => {
        const result = results[k]!;
        if ('ok' in result) next.push(j);
        else refused[docPositions[j]!] = refusal(result);
      });
    }
    passing = next;
    if (passing.length === 0) break;
  }
  return refused;
}

function refusal(result: Exclude<ValidateDocResult, { ok: true }>): DivanError {
  if ('forbidden' in result) return new ForbiddenError(result.forbidden);
  if ('unauthorized' in result) return new UnauthorizedError(result.unauthorized);
  // CouchDB: a thrown string or other object is 500 unknown_error with its message.
  if ('unknown' in result) return new DivanError('internal', 'unknown_error', result.unknown);
  return new OsProcessError('exception', `validate_doc_update threw: ${result.error}`);
}

/** Batches of positions for one sandbox call each: by count, and by the documents' approximate bytes. */
function* chunks(positions: number[], pairs: readonly [Record<string, unknown>, unknown][]): Generator<number[]> {
  let chunk: number[] = [];
  let bytes = 0;
  for (const j of positions) {
    const size = approxBytes(pairs[j]![0]) + approxBytes(pairs[j]![1]);
    if (chunk.length > 0 && (chunk.length >= DOCS_PER_CALL_MAX || bytes + size > BYTES_PER_CALL_MAX)) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(j);
    bytes += size;
  }
  if (chunk.length > 0) yield chunk;
}

/** A cheap size estimate: the number of top-level members, strings by length. */
function approxBytes(doc: unknown): number {
  if (!isPlainObject(doc)) return 16;
  let bytes = 2;
  for (const key in doc) {
    const value = doc[key];
    bytes += key.length + 4 + (typeof value === 'string' ? value.length : typeof value === 'object' && value !== null ? 256 : 16);
  }
  return bytes;
}

/** The revision an edit replaces, as CouchDB picks oldDoc (see the module comment). */
function oldRevision(edit: DocEdit, info: DocInfo | undefined): RevNode | undefined {
  if (!info) return undefined;
  let node: RevNode | undefined;
  if (edit.revs) {
    for (let i = 1; i < edit.revs.length && !node; i++) node = info.tree.get(edit.revs[i]!);
  } else {
    node = edit.baseRev !== undefined ? info.tree.get(edit.baseRev) ?? info.winner : undefined;
  }
  return node && !node.deleted && node.hasBody ? node : undefined;
}

function newDocOf(edit: DocEdit): Record<string, unknown> {
  const doc: Record<string, unknown> = { _id: edit.id };
  const rev = edit.revs ? edit.revs[0] : edit.baseRev;
  if (rev !== undefined) doc._rev = rev;
  Object.assign(doc, edit.body);
  if (edit.attachments) {
    const atts: Record<string, unknown> = {};
    for (const att of edit.attachments) {
      if (att.kind === 'data') {
        atts[att.name] = { content_type: att.contentType, length: att.encoding !== undefined ? att.length ?? att.data.length : att.data.length, stub: true };
      } else {
        atts[att.name] = {
          ...(att.contentType !== undefined ? { content_type: att.contentType } : {}),
          ...(att.revpos !== undefined ? { revpos: att.revpos } : {}),
          ...(att.digest !== undefined ? { digest: att.digest } : {}),
          ...(att.length !== undefined ? { length: att.length } : {}),
          stub: true,
        };
      }
    }
    doc._attachments = atts;
  }
  if (edit.deleted) doc._deleted = true;
  const revs = edit.revs ?? (edit.baseRev !== undefined ? [edit.baseRev] : []);
  if (revs.length > 0) {
    doc._revisions = { start: Number(revs[0]!.slice(0, revs[0]!.indexOf('-'))), ids: revs.map((r) => r.slice(r.indexOf('-') + 1)) };
  }
  return doc;
}

/** Bodies of many revisions: one multi-get per range on its first live copy, the next copies for what it lacks. */
async function readBodiesMany(db: DbHandle, refs: readonly ({ id: string; rev: string } | undefined)[]): Promise<(string | undefined)[]> {
  const out: (string | undefined)[] = new Array(refs.length).fill(undefined);
  const byRange = new Map<number, number[]>();
  refs.forEach((ref, i) => {
    if (!ref) return;
    const index = rangeFor(db, ref.id).index;
    const list = byRange.get(index);
    if (list) list.push(i);
    else byRange.set(index, [i]);
  });
  await Promise.all(
    [...byRange].map(async ([index, positions]) => {
      let missing = positions;
      for (const copy of db.ranges[index]!.copies) {
        if (missing.length === 0) break;
        const bodies = await copy.readBodies(missing.map((i) => refs[i]!)).catch(() => undefined);
        if (!bodies) continue;
        missing = missing.filter((i, k) => {
          out[i] = bodies[k];
          return bodies[k] === undefined;
        });
      }
    }),
  );
  return out;
}

// ---- design documents ------------------------------------------------------------

function invalid(reason: string): BadRequestError {
  return new BadRequestError(reason, 'invalid_design_doc');
}

const BUILTIN_REDUCES = new Set(['_sum', '_count', '_stats', '_approx_count_distinct']);

/** Members that are objects of functions (source strings), as couch_mrview checks them. */
const FUNCTION_MAPS = ['filters', 'lists', 'shows', 'updates'] as const;

/**
 * A design document's structure as CouchDB checks it (couch_mrview's ddoc field
 * checks), then its functions compiled in the sandbox (released at once).
 */
async function checkDesignDoc(js: SandboxPool, edit: DocEdit): Promise<void> {
  const doc = edit.body;
  const language = doc.language ?? 'javascript';
  if (typeof language !== 'string') throw invalid('`language` must be a string');
  if (language !== 'javascript' && language !== 'query') throw invalid(`language ${JSON.stringify(language)} is not supported (javascript or query)`);
  if (doc.options !== undefined && !isPlainObject(doc.options)) throw invalid('`options` is not an object');
  if (doc.autoupdate !== undefined && typeof doc.autoupdate !== 'boolean') throw invalid('`autoupdate` must be a boolean');
  if (doc.rewrites !== undefined && typeof doc.rewrites !== 'string' && !Array.isArray(doc.rewrites)) throw invalid('`rewrites` is not a string or an array');
  if (doc.validate_doc_update !== undefined && typeof doc.validate_doc_update !== 'string') throw invalid('`validate_doc_update` is not a string');
  for (const field of FUNCTION_MAPS) {
    const value = doc[field];
    if (value === undefined) continue;
    if (!isPlainObject(value)) throw invalid(`\`${field}\` is not an object`);
    for (const [name, fn] of Object.entries(value)) {
      // Objects (CommonJS module trees for require) are allowed beside functions, as in CouchDB.
      if (typeof fn !== 'string' && !isPlainObject(fn)) throw invalid(`\`${field}.${name}\` is not a string or an object`);
    }
  }
  const views = doc.views;
  if (views !== undefined) {
    if (!isPlainObject(views)) throw invalid('`views` is not an object');
    for (const [name, view] of Object.entries(views)) {
      if (name === 'lib') {
        if (!isPlainObject(view)) throw invalid('`views.lib` is not an object');
        continue;
      }
      if (!isPlainObject(view)) throw invalid(`\`views.${name}\` is not an object`);
      if (language === 'query') {
        if (!isPlainObject(view.map)) throw invalid(`\`views.${name}.map\` is not an object`);
      } else if (typeof view.map !== 'string') throw invalid(`View ${name} must have a map function (a string)`);
      if (view.reduce !== undefined && typeof view.reduce !== 'string') throw invalid(`\`views.${name}.reduce\` is not a string`);
      const reduce = typeof view.reduce === 'string' ? view.reduce.trim() : '';
      if (reduce.startsWith('_') && !BUILTIN_REDUCES.has(reduce)) throw invalid(`Unknown built-in reduce function \`${reduce}\` in view ${name}`);
      if (view.options !== undefined && !isPlainObject(view.options)) throw invalid(`\`views.${name}.options\` is not an object`);
    }
  }
  if (language === 'query') return;
  // CompilationError (400 compilation_error) when a function does not compile.
  js.release(await js.compile({ _id: edit.id, ...doc }));
}
