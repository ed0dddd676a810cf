/**
 * parseViewQuery / checkAgainstView: every view parameter from a query string and from
 * a JSON body, the aliases, the order in which sources apply, and each of CouchDB's
 * refusals with its token and reason (couch_mrview_http parse_params, couch_mrview_util
 * validate_args / check_range).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkAgainstView, parseViewQuery, type ViewParamSource } from '../../src/api/http/view-params';
import type { ViewQuery } from '../../src/shard/index/types';
import { DivanError } from '../../src/errors';

const limits = { keysMax: 5, rowsMax: 1000 };
const get = (qs: string): ViewParamSource => ({ query: new URLSearchParams(qs) });
const post = (body: Record<string, unknown>, qs = ''): ViewParamSource => ({ body, query: new URLSearchParams(qs) });
const parse = (source: ViewParamSource) => parseViewQuery(source, limits);

const defaults: ViewQuery = {
  ranges: [{ inclusiveEnd: true }],
  fromKeys: false,
  descending: false,
  limit: 1000,
  skip: 0,
  groupLevel: 0,
  includeDocs: false,
  conflicts: false,
  attachments: false,
  attEncodingInfo: false,
  update: 'true',
  updateSeq: false,
  sorted: true,
};

/** Parsing `source` gives the defaults with `changes` applied. */
const accepted: [string, ViewParamSource, Partial<ViewQuery>][] = [
  ['nothing', get(''), {}],
  ['key (text JSON)', get('key="a"'), { ranges: [{ startKey: 'a', endKey: 'a', inclusiveEnd: true }] }],
  ['key (body)', post({ key: ['a', 1] }), { ranges: [{ startKey: ['a', 1], endKey: ['a', 1], inclusiveEnd: true }] }],
  ['startkey/endkey', get('startkey=["a",1]&endkey=["a",{}]'), { ranges: [{ startKey: ['a', 1], endKey: ['a', {}], inclusiveEnd: true }] }],
  ['start_key/end_key aliases', get('start_key=1&end_key=2'), { ranges: [{ startKey: 1, endKey: 2, inclusiveEnd: true }] }],
  ['startkey null is a bound', get('startkey=null'), { ranges: [{ startKey: null, inclusiveEnd: true }] }],
  ['docid bounds are plain text', get('startkey="a"&startkey_docid=x1&endkey="b"&endkey_docid=y"2'), {
    ranges: [{ startKey: 'a', startKeyDocId: 'x1', endKey: 'b', endKeyDocId: 'y"2', inclusiveEnd: true }],
  }],
  ['docid aliases', get('start_key_doc_id=a&end_key_doc_id=b'), { ranges: [{ startKeyDocId: 'a', endKeyDocId: 'b', inclusiveEnd: true }] }],
  ['inclusive_end=false', get('endkey="b"&inclusive_end=false'), { ranges: [{ endKey: 'b', inclusiveEnd: false }] }],
  ['keys (text)', get('keys=["b","a",1]'), {
    fromKeys: true,
    ranges: [
      { startKey: 'b', endKey: 'b', inclusiveEnd: true },
      { startKey: 'a', endKey: 'a', inclusiveEnd: true },
      { startKey: 1, endKey: 1, inclusiveEnd: true },
    ],
  }],
  ['keys (body) keep docid bounds and inclusive_end', post({ keys: [null], startkey_docid: 'd', inclusive_end: false }), {
    fromKeys: true,
    ranges: [{ startKey: null, endKey: null, startKeyDocId: 'd', inclusiveEnd: false }],
  }],
  ['keys=[] reads nothing, even beside startkey', get('keys=[]&startkey="a"'), { fromKeys: true, ranges: [] }],
  ['keys at keysMax', post({ keys: [1, 2, 3, 4, 5] }), {
    fromKeys: true,
    ranges: [1, 2, 3, 4, 5].map((k) => ({ startKey: k, endKey: k, inclusiveEnd: true })),
  }],
  ['descending keeps startkey first', get('descending=true&startkey="z"&endkey="a"'), {
    descending: true,
    ranges: [{ startKey: 'z', endKey: 'a', inclusiveEnd: true }],
  }],
  ['identical keys pass whatever the doc ids', get('startkey="a"&endkey="a"&startkey_docid=z&endkey_docid=a'), {
    ranges: [{ startKey: 'a', endKey: 'a', startKeyDocId: 'z', endKeyDocId: 'a', inclusiveEnd: true }],
  }],
  ['limit and skip', get('limit=10&skip=3'), { limit: 10, skip: 3 }],
  ['limit is clamped to rowsMax', get('limit=5000'), { limit: 1000 }],
  ['limit=0', get('limit=0'), { limit: 0 }],
  ['signed and body integers', post({ skip: 2 }, 'limit=%2B7'), { limit: 7, skip: 2 }],
  ['group=true is exact', get('group=true'), { groupLevel: 'exact' }],
  ['group=false', get('group=false'), { groupLevel: 0 }],
  ['group_level', get('group_level=2'), { groupLevel: 2 }],
  ['group_level wins over group=true', get('group=true&group_level=1'), { groupLevel: 1 }],
  ['group=false with group_level=0', get('group=false&group_level=0'), { groupLevel: 0 }],
  ['reduce=false', get('reduce=false'), { reduce: false }],
  ['reduce=true (body)', post({ reduce: true }), { reduce: true }],
  ['booleans in any case', get('include_docs=TRUE&conflicts=True&descending=FALSE'), { includeDocs: true, conflicts: true }],
  ['booleans as body strings', post({ include_docs: 'true' }), { includeDocs: true }],
  ['attachments, att_encoding_info', get('attachments=true&att_encoding_info=true'), { attachments: true, attEncodingInfo: true }],
  ['attachments: a later false does not take it back', get('attachments=true&attachments=false'), { attachments: true }],
  ['update_seq', get('update_seq=true'), { updateSeq: true }],
  ['sorted=false', get('sorted=false'), { sorted: false }],
  ['update=false', get('update=false'), { update: 'false' }],
  ['update=lazy', get('update=lazy'), { update: 'lazy' }],
  ['update (body boolean)', post({ update: false }), { update: 'false' }],
  ['stale=ok', get('stale=ok'), { update: 'false' }],
  ['stale=update_after', get('stale=update_after'), { update: 'lazy' }],
  ['stable is accepted and ignored', get('stable=true&stable=false'), {}],
  ['the later parameter wins', get('stale=ok&update=true&limit=1&limit=2'), { update: 'true', limit: 2 }],
  ['unknown parameters are ignored', get('foo=bar&callback=x&=1&page_size=-1'), {}],
  ['POST: the query string wins over the body', post({ limit: 1, key: 'a' }, 'limit=2'), {
    limit: 2,
    ranges: [{ startKey: 'a', endKey: 'a', inclusiveEnd: true }],
  }],
  ['POST: body keys plus query-string options', post({ keys: ['k'] }, 'include_docs=true&limit=3'), {
    fromKeys: true,
    ranges: [{ startKey: 'k', endKey: 'k', inclusiveEnd: true }],
    includeDocs: true,
    limit: 3,
  }],
  ['queries entry: the entry wins over the query string', { query: new URLSearchParams('limit=2&skip=1'), body: { limit: 1 }, precedence: 'body' }, {
    limit: 1,
    skip: 1,
  }],
  ['queries entry: query-string keys and grouping do not carry over', {
    query: new URLSearchParams('keys=["a"]&group=true'),
    body: { startkey: 'b' },
    precedence: 'body',
  }, { ranges: [{ startKey: 'b', inclusiveEnd: true }] }],
  ['key then startkey: the later one wins for the start', get('key="m"&startkey="a"'), { ranges: [{ startKey: 'a', endKey: 'm', inclusiveEnd: true }] }],
];

describe('parseViewQuery accepts', () => {
  for (const [name, source, changes] of accepted) {
    test(name, () => assert.deepEqual(parse(source), { ...defaults, ...changes }));
  }
  test('no rowsMax: limit defaults to Number.MAX_SAFE_INTEGER', () => {
    assert.equal(parseViewQuery(get(''), { keysMax: 5 }).limit, Number.MAX_SAFE_INTEGER);
    assert.equal(parseViewQuery(get('skip=99999999999999999999'), { keysMax: 5 }).skip, Number.MAX_SAFE_INTEGER);
  });
});

const qpe = 'query_parse_error';
const invalidRange = 'No rows can match your key range, reverse your start_key and end_key or set descending=true';
/** Parsing `source` throws this token and reason. */
const refused: [string, ViewParamSource, string, string][] = [
  ['limit=x', get('limit=x'), qpe, 'Invalid value for integer: "x"'],
  ['limit=1.5', get('limit=1.5'), qpe, 'Invalid value for integer: "1.5"'],
  ['limit empty', get('limit='), qpe, 'Invalid value for integer: ""'],
  ['limit=-1', get('limit=-1'), qpe, 'Invalid value for positive integer: "-1"'],
  ['skip=-2', get('skip=-2'), qpe, 'Invalid value for positive integer: "-2"'],
  ['skip (body string)', post({ skip: 'x' }), qpe, 'Invalid value for integer: "x"'],
  ['limit (body negative)', post({ limit: -3 }), qpe, 'Invalid value for positive integer: -3'],
  ['group_level=-1', get('group_level=-1'), qpe, 'Invalid value for positive integer: "-1"'],
  ['group_level=a', get('group_level=a'), qpe, 'Invalid value for integer: "a"'],
  ['descending=yes', get('descending=yes'), qpe, 'Invalid boolean parameter: "yes"'],
  ['include_docs=1', get('include_docs=1'), qpe, 'Invalid boolean parameter: "1"'],
  ['group (body number)', post({ group: 1 }), qpe, 'Invalid boolean parameter: 1'],
  ['reduce=maybe', get('reduce=maybe'), qpe, 'Invalid boolean parameter: "maybe"'],
  ['inclusive_end=no', get('inclusive_end=no'), qpe, 'Invalid boolean parameter: "no"'],
  ['stale=later', get('stale=later'), qpe, 'Invalid value for `stale`.'],
  ['stable=TRUE', get('stable=TRUE'), qpe, 'Invalid value for `stable`.'],
  ['update=sometimes', get('update=sometimes'), qpe, 'Invalid value for `update`.'],
  ['group=false with group_level>0', get('group=false&group_level=2'), qpe, "Can't specify group=false and group_level>0 at the same time"],
  ['keys with key', get('keys=["a"]&key="a"'), qpe, '`keys` is incompatible with `key`, `start_key` and `end_key`'],
  ['keys with startkey', post({ keys: ['a'] }, 'startkey="a"'), qpe, '`keys` is incompatible with `key`, `start_key` and `end_key`'],
  ['keys with end_key', get('end_key="a"&keys=["a"]'), qpe, '`keys` is incompatible with `key`, `start_key` and `end_key`'],
  ['keys not an array (text)', get('keys={"a":1}'), qpe, '`keys` must be an array of strings.'],
  ['keys not an array (POST body)', post({ keys: 'a' }), 'bad_request', '`keys` member must be an array.'],
  ['keys not an array (queries entry)', { body: { keys: 1 }, precedence: 'body' }, qpe, '`keys` must be an array of strings.'],
  ['more keys than keysMax', post({ keys: [1, 2, 3, 4, 5, 6] }), 'bad_request', 'At most 5 keys per request'],
  ['startkey_docid not a string (body)', post({ startkey_docid: 1 }), qpe, '`start_key_docid` must be a string.'],
  ['endkey_docid not a string (body)', post({ end_key_doc_id: null }), qpe, '`end_key_docid` must be a string.'],
  ['key=abc is not JSON', get('key=abc'), 'bad_request', 'invalid UTF-8 JSON'],
  ['startkey not JSON', get('startkey=[1,'), 'bad_request', 'invalid UTF-8 JSON'],
  ['keys not JSON', get('keys=a,b'), 'bad_request', 'invalid UTF-8 JSON'],
  ['endkey overflows a double', get('endkey=1e400'), 'bad_request', 'invalid UTF-8 JSON'],
  ['startkey past endkey', get('startkey="b"&endkey="a"'), qpe, invalidRange],
  ['startkey past endkey by collation (numbers before strings)', get('startkey="0"&endkey=9'), qpe, invalidRange],
  ['startkey past endkey by collation (a < A < b)', get('startkey="A"&endkey="a"'), qpe, invalidRange],
  ['descending with startkey before endkey', get('descending=true&startkey="a"&endkey="b"'), qpe,
    'No rows can match your key range, reverse your start_key and end_key or set descending=false'],
  ['key then endkey below it', get('key="m"&endkey="a"'), qpe, invalidRange],
  ['partition', get('partition=p'), qpe, '`partition` parameter is not supported in this database.'],
];

function refusal(fn: () => unknown): { token: string; reason: string; kind: string } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof DivanError, `not a DivanError: ${String(err)}`);
    return { token: err.token, reason: err.reason, kind: err.kind };
  }
  assert.fail('accepted');
}

describe('parseViewQuery refuses', () => {
  for (const [name, source, token, reason] of refused) {
    test(name, () => assert.deepEqual(refusal(() => parse(source)), { token, reason, kind: 'bad_request' }));
  }
  test('a percent-encoded value that is not UTF-8 is not read as U+FFFD', () => {
    const url = '/db/_design/d/_view/v?startkey=%22%FF%22';
    const source = { query: new URLSearchParams(url.slice(url.indexOf('?'))), url };
    assert.deepEqual(refusal(() => parse(source)), { token: 'bad_request', reason: 'invalid UTF-8 JSON', kind: 'bad_request' });
    const fine = '/db/_design/d/_view/v?startkey=%22%EF%BF%BD%22';
    assert.deepEqual(parse({ query: new URLSearchParams(fine.slice(fine.indexOf('?'))), url: fine }).ranges, [{ startKey: '\uFFFD', inclusiveEnd: true }]);
  });
});

const mapView = { hasReduce: false };
const reduceView = { hasReduce: true };
describe('checkAgainstView', () => {
  const ok: [string, string, { hasReduce: boolean }, Partial<ViewQuery>][] = [
    ['map view: reduce resolves to false', '', mapView, { reduce: false }],
    ['map view: reduce=false', 'reduce=false', mapView, { reduce: false }],
    ['map view: group_level=0 is no grouping', 'group_level=0', mapView, { reduce: false }],
    ['map view: include_docs', 'include_docs=true&conflicts=true', mapView, { reduce: false, includeDocs: true, conflicts: true }],
    ['reduce view: reduces by default', '', reduceView, { reduce: true }],
    ['reduce view: group=true', 'group=true', reduceView, { reduce: true, groupLevel: 'exact' }],
    ['reduce view: group_level', 'group_level=3', reduceView, { reduce: true, groupLevel: 3 }],
    ['reduce view: keys with group=true', 'keys=["a"]&group=true', reduceView, {
      reduce: true, groupLevel: 'exact', fromKeys: true, ranges: [{ startKey: 'a', endKey: 'a', inclusiveEnd: true }],
    }],
    ['reduce view read as a map: include_docs', 'reduce=false&include_docs=true', reduceView, { reduce: false, includeDocs: true }],
    ['reduce view read as a map: keys', 'reduce=false&keys=[1]', reduceView, {
      reduce: false, fromKeys: true, ranges: [{ startKey: 1, endKey: 1, inclusiveEnd: true }],
    }],
  ];
  for (const [name, qs, view, changes] of ok) {
    test(name, () => assert.deepEqual(checkAgainstView(parse(get(qs)), view), { ...defaults, ...changes }));
  }
  const bad: [string, string, { hasReduce: boolean }, string][] = [
    ['reduce=true on a map view', 'reduce=true', mapView, 'Reduce is invalid for map-only views.'],
    ['group=true on a map view', 'group=true', mapView, 'Invalid use of grouping on a map view.'],
    ['group_level on a map view', 'group_level=1', mapView, 'Invalid use of grouping on a map view.'],
    ['grouping with reduce=false', 'reduce=false&group=true', reduceView, 'Invalid use of grouping on a map view.'],
    ['include_docs on a reduce', 'include_docs=true', reduceView, '`include_docs` is invalid for reduce'],
    ['conflicts on a reduce', 'conflicts=true', reduceView, '`conflicts` is invalid for reduce views.'],
    ['keys on a reduce without group=true', 'keys=["a","b"]', reduceView, 'Multi-key fetchs for reduce views must use `group=true`'],
    ['keys on a reduce with a group_level', 'keys=["a"]&group_level=1', reduceView, 'Multi-key fetchs for reduce views must use `group=true`'],
  ];
  for (const [name, qs, view, reason] of bad) {
    test(name, () => assert.deepEqual(refusal(() => checkAgainstView(parse(get(qs)), view)), { token: qpe, reason, kind: 'bad_request' }));
  }
  test('does not change the query it was given', () => {
    const query = parse(get(''));
    checkAgainstView(query, reduceView);
    assert.equal(query.reduce, undefined);
  });
});
