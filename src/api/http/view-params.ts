/**
 * CouchDB's view query parameters → a validated `ViewQuery` (src/shard/index/types.ts).
 *
 * Sources. A GET passes its query string (`key="a"`, `startkey=["a",1]`: JSON text
 * for keys, plain text for doc ids and flags); a POST `_view` passes its JSON body
 * too, where every parameter may appear as a JSON value (`{"keys":[...],
 * "group":true}`); one object of a `.../queries` body is parsed the same way, on top
 * of the request's query string. Parameters are applied in order, the later winning,
 * as CouchDB folds them: for a POST `_view` the body first, then the query string
 * (CouchDB's parse_body_and_query); for a `queries` entry the query string first, then
 * the entry (`precedence: 'body'`). Unknown parameters are ignored, as CouchDB does.
 *
 * Ranges. CouchDB swaps nothing for `descending=true`: `startkey` is where the scan
 * begins, in the direction asked. So `ViewKeyRange.startKey` is the first key the
 * scan meets and `endKey` the last, in the query's direction; with
 * `descending=true` the start key is the higher one. `key=k` is the range k..k;
 * `keys=[...]` one such range per key, in the order given (`fromKeys`), each keeping
 * `inclusive_end` and any doc-id bounds, as CouchDB's key_opts does.
 *
 * Two steps, because some rules depend on the view. `parseViewQuery` needs only the
 * request; `checkAgainstView` then applies what needs to know whether the view has a
 * reduce function (grouping, include_docs on a reduce, reduce=true on a map view)
 * and resolves `reduce`.
 *
 * Errors are CouchDB's, token and reason: 400 query_parse_error for a bad value or a
 * contradiction, 400 bad_request "invalid UTF-8 JSON" for a key that is not JSON.
 */
import { BadRequestError } from '../../errors';
import { INVALID_JSON, parseJsonText } from '../../json';
import { collate } from '../../shard/query/collate';
import type { ViewKeyRange, ViewQuery } from '../../shard/index/types';
import { rawQueryValueIsUtf8 } from './context';
import { parseBooleanParam, parseNonNegIntParam, rowLimit } from './routes/common';

export interface ViewParamSource {
  /** Query-string parameters: text, JSON text for keys. */
  query?: URLSearchParams;
  /**
   * The request URL, when `query` came from one: a percent-encoded value that is not
   * UTF-8 turns into U+FFFD in URLSearchParams, and is refused, not read as U+FFFD.
   */
  url?: string;
  /** A JSON body (POST `_view`) or one `queries` entry: values already decoded. */
  body?: Record<string, unknown>;
  /**
   * Which source is applied last, so wins: 'query' (default) for a POST `_view`,
   * 'body' for an entry of `queries`, whose base is the request's query string.
   */
  precedence?: 'query' | 'body';
}

export interface ViewParamLimits {
  /** Keys in one `keys` at most (config `keysMax`); more is 400. */
  keysMax: number;
  /** Rows a query returns at most (config `rowsMax`); `limit` is clamped to it. */
  rowsMax?: number;
  /** Deepest JSON accepted in a key given as query-string text (config `jsonDepthMax`). */
  jsonDepthMax?: number;
}

/** Whether a value came as query-string text or as a decoded JSON value. */
type Origin = 'text' | 'json';

/** The parameters as CouchDB's #mrargs holds them while folding, before validation. */
interface Args {
  startKey?: unknown;
  endKey?: unknown;
  startKeyDocId?: string;
  endKeyDocId?: string;
  keys?: unknown;
  keysFromBody: boolean;
  inclusiveEnd: boolean;
  descending: boolean;
  limit?: number;
  skip: number;
  reduce?: boolean;
  group?: boolean;
  groupLevel?: number;
  includeDocs: boolean;
  conflicts: boolean;
  attachments: boolean;
  attEncodingInfo: boolean;
  update: ViewQuery['update'];
  updateSeq: boolean;
  sorted: boolean;
}

function queryParseError(reason: string): BadRequestError {
  return new BadRequestError(reason, 'query_parse_error');
}

/** Parse and validate what a view query asks, before the view is known. */
export function parseViewQuery(source: ViewParamSource, limits: ViewParamLimits): ViewQuery {
  const args: Args = {
    keysFromBody: false,
    inclusiveEnd: true,
    descending: false,
    skip: 0,
    includeDocs: false,
    conflicts: false,
    attachments: false,
    attEncodingInfo: false,
    update: 'true',
    updateSeq: false,
    sorted: true,
  };
  const fromQuery = () => {
    if (!source.query) return;
    for (const [name, value] of source.query) {
      if (value.includes('\uFFFD') && source.url !== undefined && !rawQueryValueIsUtf8(source.url, name)) {
        throw new BadRequestError(INVALID_JSON);
      }
      applyParam(args, name, value, 'text', limits);
    }
  };
  const fromBody = () => {
    if (!source.body) return;
    for (const [name, value] of Object.entries(source.body)) {
      applyParam(args, name, value, 'json', limits);
      if (name === 'keys') args.keysFromBody = source.precedence !== 'body';
    }
  };
  if (source.precedence === 'body') {
    fromQuery();
    // As CouchDB parses a `queries` entry: the query string's keys and grouping do not
    // carry over into it, its other parameters do.
    delete args.keys;
    delete args.group;
    delete args.groupLevel;
    fromBody();
  } else {
    fromBody();
    fromQuery();
  }
  return validate(args, limits);
}

function applyParam(args: Args, name: string, value: unknown, origin: Origin, limits: ViewParamLimits): void {
  const json = () => (origin === 'text' ? parseJsonText(value as string, { depthMax: limits.jsonDepthMax ?? 64 }) : value);
  switch (name) {
    case 'key': {
      const key = json();
      args.startKey = key;
      args.endKey = key;
      return;
    }
    case 'keys':
      args.keys = json();
      args.keysFromBody = false;
      return;
    case 'startkey':
    case 'start_key':
      args.startKey = json();
      return;
    case 'endkey':
    case 'end_key':
      args.endKey = json();
      return;
    case 'startkey_docid':
    case 'start_key_doc_id':
      if (typeof value !== 'string') throw queryParseError('`start_key_docid` must be a string.');
      args.startKeyDocId = value;
      return;
    case 'endkey_docid':
    case 'end_key_doc_id':
      if (typeof value !== 'string') throw queryParseError('`end_key_docid` must be a string.');
      args.endKeyDocId = value;
      return;
    case 'limit':
      args.limit = parseNonNegIntParam(value);
      return;
    case 'skip':
      args.skip = parseNonNegIntParam(value);
      return;
    case 'group_level':
      args.groupLevel = parseNonNegIntParam(value);
      return;
    case 'group':
      args.group = parseBooleanParam(value);
      return;
    case 'reduce':
      args.reduce = parseBooleanParam(value);
      return;
    case 'descending':
      args.descending = parseBooleanParam(value);
      return;
    case 'inclusive_end':
      args.inclusiveEnd = parseBooleanParam(value);
      return;
    case 'include_docs':
      args.includeDocs = parseBooleanParam(value);
      return;
    case 'conflicts':
      args.conflicts = parseBooleanParam(value);
      return;
    case 'attachments':
      // CouchDB only ever adds these document options: a later `false` does not take
      // back an earlier `true`.
      if (parseBooleanParam(value)) args.attachments = true;
      return;
    case 'att_encoding_info':
      if (parseBooleanParam(value)) args.attEncodingInfo = true;
      return;
    case 'update_seq':
      args.updateSeq = parseBooleanParam(value);
      return;
    case 'sorted':
      args.sorted = parseBooleanParam(value);
      return;
    case 'stale':
      if (value === 'ok') args.update = 'false';
      else if (value === 'update_after') args.update = 'lazy';
      else throw queryParseError('Invalid value for `stale`.');
      return;
    case 'stable':
      // Accepted and checked; every read here is as stable as it gets (one copy per range).
      if (value !== 'true' && value !== 'false' && value !== true && value !== false) throw queryParseError('Invalid value for `stable`.');
      return;
    case 'update':
      if (value === 'true' || value === true) args.update = 'true';
      else if (value === 'false' || value === false) args.update = 'false';
      else if (value === 'lazy') args.update = 'lazy';
      else throw queryParseError('Invalid value for `update`.');
      return;
    case 'partition':
      // No database here is partitioned; CouchDB answers this for unpartitioned ones.
      throw queryParseError('`partition` parameter is not supported in this database.');
    default:
      // `callback`, `queries`, and anything unknown: ignored, as CouchDB does.
      return;
  }
}

function validate(args: Args, limits: ViewParamLimits): ViewQuery {
  const groupLevel = determineGroupLevel(args);
  const docIds = (range: ViewKeyRange): ViewKeyRange => {
    if (args.startKeyDocId !== undefined) range.startKeyDocId = args.startKeyDocId;
    if (args.endKeyDocId !== undefined) range.endKeyDocId = args.endKeyDocId;
    return range;
  };
  let ranges: ViewKeyRange[];
  const fromKeys = args.keys !== undefined;
  if (fromKeys) {
    const keys = args.keys;
    if (!Array.isArray(keys)) {
      // A POST `_view` body is checked before parsing (couch_mrview_util:get_view_keys).
      if (args.keysFromBody) throw new BadRequestError('`keys` member must be an array.');
      throw queryParseError('`keys` must be an array of strings.');
    }
    if (keys.length > 0 && (args.startKey !== undefined || args.endKey !== undefined)) {
      throw queryParseError('`keys` is incompatible with `key`, `start_key` and `end_key`');
    }
    if (keys.length > limits.keysMax) throw new BadRequestError(`At most ${limits.keysMax} keys per request`);
    ranges = keys.map((key) => docIds({ startKey: key, endKey: key, inclusiveEnd: args.inclusiveEnd }));
  } else {
    const range: ViewKeyRange = { inclusiveEnd: args.inclusiveEnd };
    if (args.startKey !== undefined) range.startKey = args.startKey;
    if (args.endKey !== undefined) range.endKey = args.endKey;
    checkRange(range, args.descending);
    ranges = [docIds(range)];
  }
  const query: ViewQuery = {
    ranges,
    fromKeys,
    descending: args.descending,
    limit: rowLimit(args.limit, limits.rowsMax),
    skip: args.skip,
    groupLevel,
    includeDocs: args.includeDocs,
    conflicts: args.conflicts,
    attachments: args.attachments,
    attEncodingInfo: args.attEncodingInfo,
    update: args.update,
    updateSeq: args.updateSeq,
    sorted: args.sorted,
  };
  if (args.reduce !== undefined) query.reduce = args.reduce;
  return query;
}

/** CouchDB's determine_group_level: group_level wins over group=true; 0 means one row. */
function determineGroupLevel(args: Args): number | 'exact' {
  if (args.groupLevel === undefined) return args.group === true ? 'exact' : 0;
  if (args.group === false && args.groupLevel > 0) {
    throw queryParseError("Can't specify group=false and group_level>0 at the same time");
  }
  return args.groupLevel;
}

/**
 * A range whose start lies past its end in the scan's direction can match nothing;
 * CouchDB refuses it (couch_mrview_util:check_range). Identical keys pass whatever
 * their doc ids (so do keys that collate equal: `collate` is 0 only for identical
 * values, so the doc-id tie-break CouchDB applies to equal-but-distinct keys never
 * arises here).
 */
function checkRange(range: ViewKeyRange, descending: boolean): void {
  if (range.startKey === undefined || range.endKey === undefined) return;
  const order = collate(range.startKey, range.endKey);
  if (!descending && order > 0) {
    throw queryParseError('No rows can match your key range, reverse your start_key and end_key or set descending=true');
  }
  if (descending && order < 0) {
    throw queryParseError('No rows can match your key range, reverse your start_key and end_key or set descending=false');
  }
}

/**
 * The rules that depend on the view, applied once it is known (CouchDB's
 * set_view_type + validate_args): a view with a reduce function reduces unless
 * `reduce=false`; then `include_docs`, `conflicts` and multi-key fetches without
 * `group=true` are refused; on a view that does not reduce, grouping is refused, and
 * `reduce=true` on a map-only view too. Returns the query with `reduce` resolved.
 */
export function checkAgainstView(query: ViewQuery, view: { hasReduce: boolean }): ViewQuery {
  if (query.reduce === true && !view.hasReduce) throw queryParseError('Reduce is invalid for map-only views.');
  const reduces = view.hasReduce && query.reduce !== false;
  if (reduces) {
    // CouchDB's wording, its spelling included.
    if (query.fromKeys && query.groupLevel !== 'exact') throw queryParseError('Multi-key fetchs for reduce views must use `group=true`');
    if (query.includeDocs) throw queryParseError('`include_docs` is invalid for reduce');
    if (query.conflicts) throw queryParseError('`conflicts` is invalid for reduce views.');
  } else if (query.groupLevel !== 0) {
    throw queryParseError('Invalid use of grouping on a map view.');
  }
  return { ...query, reduce: reduces };
}
