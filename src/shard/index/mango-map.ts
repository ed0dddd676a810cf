/**
 * The map step of Mango JSON indexes, without JavaScript: a document's row in an index
 * on fields [f1, ..., fn] has the key [doc.f1, ..., doc.fn] and the value null, as
 * CouchDB's native Mango indexer emits. A document that lacks any of the fields, or
 * that fails the index's `partial_filter_selector`, has no row. Deleted documents and
 * design documents have none either (CouchDB's views skip design documents too).
 *
 * The rows come out in the shape the sandbox's map step gives (per document, per view,
 * `[key, value]` pairs), so the index engine stores both kinds the same way. Pure.
 */
import { compileSelector, fieldValue, type DocPredicate } from '../query/mango';
import type { ViewDef } from './design';
import type { ChangedDoc } from './pipeline';

/** Per document, per view: the emitted `[key, value]` pairs. */
export type MappedDocs = [unknown, unknown][][][];

export class MangoMapper {
  private readonly partials: (DocPredicate | undefined)[];

  constructor(private readonly views: readonly ViewDef[]) {
    // Design documents are validated on write; a replicated one with a bad selector indexes nothing.
    this.partials = views.map((v) => {
      const partial = v.mango?.partialFilter;
      if (partial === undefined) return undefined;
      try {
        return compileSelector(partial);
      } catch {
        return () => false;
      }
    });
  }

  map(docs: readonly ChangedDoc[]): MappedDocs {
    return docs.map((doc) => {
      if (doc.deleted || doc.id.startsWith('_design/')) return this.views.map(() => []);
      const body = JSON.parse(doc.json) as Record<string, unknown>;
      return this.views.map((view, i) => {
        const partial = this.partials[i];
        if (partial && !partial(body)) return [];
        const key: unknown[] = [];
        for (const path of view.mango!.paths) {
          const value = fieldValue(body, path);
          if (value === undefined) return [];
          key.push(value);
        }
        return [[key, null]];
      });
    });
  }
}
