/**
 * Mango's `fields` projection and the documents a covering index answers with.
 *
 * `project(doc, fields)` keeps, for each dotted path in `fields` (parsed as selector
 * field names are), the value found there, rebuilt at the same nesting; a path the
 * document lacks is left out, and nothing else is added (not even `_id`), as CouchDB
 * does. `fromColumns` builds the same shape from an index row (its doc id and column
 * values), so an answer read from the index alone cannot differ from one read from
 * the document. Pure.
 */
import { fieldValue, parseField } from './mango';

/** Parsed projection paths, checked once per query (an invalid name is a 400). */
export function parseFields(fields: readonly string[]): string[][] {
  return fields.map(parseField);
}

export function project(doc: Record<string, unknown>, paths: readonly (readonly string[])[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const path of paths) {
    const value = fieldValue(doc, path);
    if (value !== undefined) place(out, path, value);
  }
  return out;
}

/** The document as far as an index row knows it: `_id` and each column at its path. */
export function fromColumns(id: string, paths: readonly (readonly string[])[], values: readonly unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = { _id: id };
  paths.forEach((path, i) => place(out, path, values[i]));
  return out;
}

/** Set `value` at `path`, making the objects on the way (own properties only). */
function place(out: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let at = out;
  for (let i = 0; i < path.length - 1; i++) {
    const name = path[i]!;
    const next = Object.hasOwn(at, name) ? at[name] : undefined;
    if (next === null || typeof next !== 'object' || Array.isArray(next)) {
      const made: Record<string, unknown> = {};
      define(at, name, made);
      at = made;
    } else {
      at = next as Record<string, unknown>;
    }
  }
  define(at, path[path.length - 1]!, value);
}

/** A plain assignment would run the `__proto__` setter; define the property instead. */
function define(target: Record<string, unknown>, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}
