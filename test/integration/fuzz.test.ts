/**
 * A seeded HTTP fuzz run against a live node (issue 8): a few thousand hostile
 * requests (methods, paths with reserved names and broken percent-encodings, every
 * CouchDB query parameter with wrong values, hostile headers and bodies) must never
 * get a 5xx (501 "not built" excepted) and never crash the node; afterwards the node
 * still answers `/_up` and a document the fuzz never targeted reads back unchanged.
 *
 * Seed: FUZZ_SEED=<n> (printed on every run); size: FUZZ_REQUESTS (default 3000).
 * Each failure is printed as the exact request, so it replays with curl.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { ADMIN, request, startNode, TestNode, uniqueDb } from '../helpers/node-process';
import { mulberry32 } from '../helpers/random';

const seed = Number(process.env['FUZZ_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const REQUESTS = Number(process.env['FUZZ_REQUESTS'] ?? 3000);
const CONCURRENCY = 4;
/** No response headers within this long is a failure (a hung request). */
const RESPONSE_TIMEOUT_MS = 15_000;
/** Bodies are read at most this long, then dropped (continuous feeds never end). */
const BODY_READ_MS = 1_000;

let node: TestNode;
const db = uniqueDb('fuzz');
const other = uniqueDb('fuzz-other');
const keep = uniqueDb('fuzz-keep');
const KNOWN = '{"_id":"known","n":9007199254740993,"s":"caf\u00e9 \\ud83d\\ude00","a":[1,2.5,{"x":null}]}';
let knownText = '';

before(async () => {
  // Lockout warns only: the fuzz sends wrong credentials for the admin from this one
  // address, and an enforced lockout would turn the rest of the run into 403s (the
  // lockout itself is tested in auth.test.ts).
  node = await startNode({ env: { DIVAN_AUTH_LOCKOUT_MODE: 'warn' } });
  for (const name of [db, other, keep]) assert.equal((await request(node, 'PUT', `/${name}`)).status, 201);
  const put = await request(node, 'PUT', `/${keep}/known`, { raw: KNOWN, headers: { 'content-type': 'application/json' } });
  assert.equal(put.status, 201);
  knownText = (await request(node, 'GET', `/${keep}/known`)).text;
  // Something for the fuzz to hit: documents, a design doc, a local doc, attachments, conflicts.
  await request(node, 'PUT', `/${db}/doc`, { body: { v: 1 } });
  await request(node, 'PUT', `/${db}/_design/dd`, { body: { views: {} } });
  await request(node, 'PUT', `/${db}/_local/l`, { body: { v: 1 } });
  await request(node, 'PUT', `/${db}/att/file.txt`, { raw: 'hello world', headers: { 'content-type': 'text/plain' } });
  await request(node, 'POST', `/${db}/_bulk_docs`, {
    body: { new_edits: false, docs: [{ _id: 'conf', _rev: '1-aaa', v: 1 }, { _id: 'conf', _rev: '1-bbb', v: 2 }] },
  });
});
after(async () => {
  await node?.destroy();
});

type Rand = () => number;
const pick = <T>(r: Rand, items: readonly T[]): T => items[Math.floor(r() * items.length)]!;
const chance = (r: Rand, p: number) => r() < p;

const GOOD_DOC_IDS = ['doc', 'att', 'conf', 'missing', '_design/dd', '_design%2Fdd', '_local/l', 'new-doc', 'copy-target', '_design/new'];
const DOC_IDS = [
  '_design/', '_local/', '_local', '_design', '_foo', '_all_docs', '%', '%zz', '%FF', '%C0%AF', '%ED%A0%80', '%00', '%2F', 'a%2Fb', '..', '.', '%20', 'x'.repeat(600), '%F0%9F%98%80', '\u00e9', '_changes',
];
const ATT_NAMES = ['file.txt', 'missing.bin', '%', '%zz', '%FF', '_att', 'a/b', 'a%2Fb', '%ED%A0%80', 'x'.repeat(300)];
const DB_NAMES = () => [other, 'UPPER', '_bad', '%', '%zz', '%FF', 'a%2Fb', 'x'.repeat(300), '_users', '_replicator', 'no-such-db'];
const SERVER_PATHS = [
  '/', '/_up', '/_all_dbs', '/_dbs_info', '/_uuids', '/_session', '/_active_tasks', '/_membership', '/_node/_local', '/_node/_local/_config',
  '/_node/_local/_config/couchdb', '/_node/%zz/_config', '/_node/nope/_stats', '/_node/_local/_stats', '/_node/_local/_prometheus',
  '/_replicate', '/_scheduler/jobs', '/_utils', '/_nope', '//', '/%', '/_all_dbs/x',
];
const DB_ENDPOINTS = [
  '', '_all_docs', '_design_docs', '_local_docs', '_changes', '_bulk_docs', '_bulk_get', '_revs_diff', '_missing_revs', '_security', '_revs_limit',
  '_find', '_index', '_explain', '_ensure_full_commit', '_compact', '_purge', '_sync_shards', '_rebalance', '_shards', '_design/dd/_view/v',
  '_design/dd/_info', '_nope', '_all_docs/queries', '_design_docs/queries',
];
const QUERY_PARAMS = [
  'rev', 'revs', 'revs_info', 'open_revs', 'conflicts', 'deleted_conflicts', 'local_seq', 'meta', 'latest', 'attachments', 'atts_since',
  'att_encoding_info', 'new_edits', 'batch', 'w', 'r', 'n', 'q', 'startkey', 'endkey', 'start_key', 'end_key', 'startkey_docid', 'endkey_docid',
  'start_key_doc_id', 'end_key_doc_id', 'key', 'keys', 'limit', 'skip', 'descending', 'inclusive_end', 'include_docs', 'update_seq', 'since',
  'feed', 'style', 'heartbeat', 'timeout', 'filter', 'doc_ids', 'seq_interval', 'count', 'partitioned', 'selector', 'view', 'include_design',
  'stable', 'update', 'group', 'reduce',
];
const QUERY_VALUES = [
  'true', 'false', '', '0', '1', '-1', '-0', '1.5', '1e400', '-1e400', '9007199254740993', '99999999999999999999999', 'NaN', 'abc', '[', ']', '{',
  '{"a":1}', 'null', '"x"', '["a","b"]', '[1,2]', '%', '%zz', '%FF', '%22%ED%A0%80%22', '%22%5Cud800%22', '["1-abc"]', '"1-abc"', 'all',
  '1-abc', 'now', 'normal', 'longpoll', 'continuous', 'eventsource', 'main_only', 'all_docs', '_doc_ids', '_selector', '_design', '_view',
  'x'.repeat(2000), '1-' + b64('[1]'), '1-' + b64('{"x":1}'), '1-' + b64('null'), '1-' + b64('["x",[["n",1e400]]]'), '1-' + b64('["x",[[1,2]]]'),
  '-', '0-', '1-%%%', '[' .repeat(70) + ']'.repeat(70), encodeURIComponent('[' + '1e400' + ']'),
];
function b64(text: string): string {
  return Buffer.from(text).toString('base64url');
}
const STREAMING_FEEDS = new Set(['longpoll', 'continuous', 'eventsource']);
const METHODS = ['GET', 'GET', 'GET', 'HEAD', 'PUT', 'PUT', 'POST', 'POST', 'DELETE', 'COPY', 'OPTIONS', 'PATCH', 'MOVE', 'FOO'];

/** Mostly names that reach deep into the code, sometimes hostile ones. */
const docId = (r: Rand) => (chance(r, 0.75) ? pick(r, GOOD_DOC_IDS) : pick(r, DOC_IDS));
const attName = (r: Rand) => (chance(r, 0.7) ? 'file.txt' : pick(r, ATT_NAMES));

function randomPath(r: Rand): string {
  const dbName = chance(r, 0.8) ? db : pick(r, DB_NAMES());
  switch (Math.floor(r() * 6)) {
    case 0:
      return pick(r, SERVER_PATHS);
    case 1:
      return `/${dbName}/${pick(r, DB_ENDPOINTS)}`.replace(/\/$/, chance(r, 0.5) ? '/' : '');
    case 2:
    case 3:
      return `/${dbName}/${docId(r)}`;
    case 4:
      return `/${dbName}/${pick(r, ['att', 'att', 'doc', '_design/dd', '_local/l', 'missing', '%zz'])}/${attName(r)}`;
    default:
      return `/${dbName}/${docId(r)}/${attName(r)}/${pick(r, ['x', 'x', '%25', '%'])}`;
  }
}

function randomQuery(r: Rand): string {
  const n = chance(r, 0.3) ? 0 : 1 + Math.floor(r() * 4);
  const parts: string[] = [];
  let streaming = false;
  for (let i = 0; i < n; i++) {
    const name = chance(r, 0.05) ? pick(r, ['%zz', '%FF', '', 'x'.repeat(100)]) : pick(r, QUERY_PARAMS);
    const value = pick(r, QUERY_VALUES);
    if (name === 'feed' && STREAMING_FEEDS.has(value)) streaming = true;
    const encoded = /^[%\[\]{}"\w.,:-]*$/.test(value) && !value.includes('"') ? value : encodeURIComponent(value);
    parts.push(`${name}=${encoded}`);
  }
  // A streaming feed ends soon (the first `timeout` wins), so no request waits for long.
  if (streaming) parts.unshift('timeout=50');
  return parts.length ? '?' + parts.join('&') : '';
}

function randomHeaders(r: Rand, method: string): Record<string, string> {
  const headers: Record<string, string> = {};
  const auth = Math.floor(r() * 20);
  if (auth > 2) headers.authorization = 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');
  else if (auth === 1) headers.authorization = pick(r, ['Basic ###', 'Basic ' + Buffer.from('admin').toString('base64'), 'Bearer x', 'Basic', '']);
  else if (auth === 2) headers.cookie = pick(r, ['AuthSession=', 'AuthSession=%zz', 'AuthSession=YWRtaW46MTIzNDU2Nzg6YWJj', 'x=y']);
  if (chance(r, 0.6)) {
    headers['content-type'] = pick(r, [
      'application/json', 'application/json; charset=utf-8', 'text/plain', 'multipart/related', 'multipart/related; boundary=b',
      'multipart/related; boundary="b"', 'multipart/mixed; boundary=b', 'application/x-www-form-urlencoded', 'garbage', '', 'application/octet-stream',
    ]);
  }
  if (chance(r, 0.4)) headers.accept = pick(r, ['application/json', '*/*', 'multipart/related', 'multipart/mixed', 'text/plain', 'application/json;q=0', 'x']);
  if (chance(r, 0.15)) headers['if-match'] = pick(r, ['"1-abc"', '1-abc', '*', '"', 'garbage', '"99999999999999999999-x"']);
  if (chance(r, 0.1)) headers['if-none-match'] = pick(r, ['"1-abc"', '*', 'garbage']);
  if (chance(r, 0.15)) headers.range = pick(r, ['bytes=0-1', 'bytes=5-2', 'bytes=-1', 'bytes=99999999999999999999-', 'bytes=0-0,2-3', 'bytes=', 'lines=1-2', 'bytes=-', 'bytes=1e400-']);
  if (chance(r, method === 'COPY' ? 0.9 : 0.1)) {
    headers.destination = pick(r, ['copy-target', '%', '%zz', '%FF', '%ED%A0%80', '', '_design/x', '_local/x', '_bad', 'x?rev=1-abc', 'x?rev=garbage', 'x'.repeat(600), '%C0%AF']);
  }
  if (chance(r, 0.1)) headers['content-encoding'] = pick(r, ['gzip', 'deflate', 'identity', 'br', 'garbage', 'gzip, gzip']);
  if (chance(r, 0.05)) headers['x-couch-full-commit'] = pick(r, ['true', 'false', 'x']);
  return headers;
}

function nested(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

function randomBody(r: Rand, headers: Record<string, string>): Buffer | undefined {
  if (chance(r, 0.3)) return undefined;
  const kind = Math.floor(r() * 16);
  let text: string;
  switch (kind) {
    case 0:
      text = pick(r, ['[]', '"str"', '1', 'null', 'true', '{}', '', ' ', '{"a":']);
      break;
    case 1:
      text = JSON.stringify({ _id: pick(r, [1, [], null, '', '_bad', 'ok', '%zz']), _rev: pick(r, [[], 1, '1-abc', 'x', '99999999999999999999-a']), v: 1 });
      break;
    case 2:
      text = JSON.stringify({ _deleted: pick(r, ['x', 1, true]), _attachments: pick(r, ['x', { a: { data: 1 } }, { a: { data: '!!' } }, { a: { stub: true } }, { a: { follows: true } }, { _a: { data: 'aGk=' } }, { a: null }]) });
      break;
    case 3:
      text = JSON.stringify({ _revisions: pick(r, [{ start: '1', ids: [] }, { start: 1, ids: 'x' }, { start: 2, ids: ['a'] }, { start: -1, ids: ['a'] }, null]), _rev: '1-a' });
      break;
    case 4:
      text = JSON.stringify({ docs: pick(r, ['x', [1, null, []], [{ _id: 'b', _rev: 1 }], [{ _id: 'conf', _revisions: { start: 1e400 } }], {}]), new_edits: pick(r, ['no', false, 1]) });
      break;
    case 5:
      text = JSON.stringify({ keys: pick(r, [{}, [1, null], 'x', ['doc', 'missing'], [[]]]), selector: pick(r, [1, 'x', { a: { $regex: '(' } }, { $or: 'x' }]) });
      break;
    case 6:
      text = nested(pick(r, [63, 64, 65, 1000, 20000]));
      break;
    case 7:
      text = '{"v":' + nested(62) + '}';
      break;
    case 8:
      text = `{"n":${pick(r, ['1e400', '-1e400', '9007199254740993', '1' + '0'.repeat(400), '1e-400', '-0', '1E+308'])}}`;
      break;
    case 9:
      return Buffer.concat([Buffer.from('{"s":"'), Buffer.from(pick(r, [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80]])), Buffer.from('"}')]);
    case 10:
      text = pick(r, ['{"\\ud800":1}', '{"s":"\\udfff"}', '{"s":"\\u00"}', '{"s":"\\x"}', '{"a":1,"a":2}', '{"__proto__":{"x":1}}', '{"_id":"\\u0000"}']);
      break;
    case 11:
      text = JSON.stringify({
        docs: pick(r, [[{ id: pick(r, ['doc', 1, null, 'conf']), rev: pick(r, ['1-abc', 1, [], 'all']), atts_since: pick(r, ['x', [1], ['1-a']]) }], [1], [[]], [null]]),
        doc: pick(r, [{ x: 1 }, 'x', [1], ['1-abc', 2], null]),
        conf: pick(r, [['1-aaa', '2-x'], ['bad'], [], 1]),
      });
      break;
    case 12: {
      const boundary = 'b';
      headers['content-type'] = pick(r, ['multipart/related; boundary=b', 'multipart/related; boundary="b"', 'multipart/related']);
      text = pick(r, [
        `--${boundary}\r\ncontent-type: application/json\r\n\r\n{"_attachments":{"a":{"follows":true,"length":2}}}\r\n--${boundary}\r\n\r\nhi\r\n--${boundary}--`,
        `--${boundary}\r\n\r\n{"_attachments":{"a":{"follows":true}}}\r\n--${boundary}--`,
        `--${boundary}\r\n\r\n[1]\r\n--${boundary}--`,
        `--${boundary}`,
        `garbage`,
        `--${boundary}\r\ncontent-type: application/json\r\n\r\n{"n":1e400}\r\n--${boundary}--`,
      ]);
      break;
    }
    case 13:
      text = JSON.stringify({ name: pick(r, ['admin', 1, null]), password: pick(r, ['test-password', 'bad', [], 1]) });
      break;
    case 14:
      text = JSON.stringify({ admins: pick(r, ['x', { names: 'x' }, { names: [1] }, { roles: [{}] }]), members: pick(r, [null, { names: ['a'] }, 1]) });
      break;
    default:
      text = JSON.stringify({ v: 'x'.repeat(Math.floor(r() * 5000)), seq: pick(r, [1, -1, 'x']) });
  }
  const bytes = Buffer.from(text, 'utf8');
  if (headers['content-encoding'] === 'gzip' && chance(r, 0.5)) return gzipSync(bytes);
  return bytes;
}

/** Values a mutation puts in place of one JSON value, as raw JSON text. */
const HOSTILE_JSON = [
  '1e400', '-1e400', '9007199254740993', '-0', '1e-400', '[]', '{}', 'null', 'true', '"x"', '""', '"\\ud800"', '"_bad"', '"1-abc"', '-1', '0',
  '1.5', '99999999999999999999', nested(63), nested(66), '"' + 'x'.repeat(3000) + '"', '[null]', '[1]', '{"a":{"b":1}}', '"%zz"',
];

/** Write `value` as JSON, replacing a few of its values (or keys) with hostile ones. */
function mutateJson(r: Rand, value: unknown, rate: number): string {
  if (chance(r, rate)) return pick(r, HOSTILE_JSON);
  if (Array.isArray(value)) return '[' + value.map((v) => mutateJson(r, v, rate)).join(',') + ']';
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(() => !chance(r, rate / 2));
    return '{' + entries.map(([k, v]) => (chance(r, rate / 4) ? pick(r, ['"\\udc00"', '"_x"', '""', '"__proto__"']) : JSON.stringify(k)) + ':' + mutateJson(r, v, rate)).join(',') + '}';
  }
  return JSON.stringify(value);
}

interface Template {
  method: string;
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** Requests that are valid as they stand; the fuzz mutates one or two of their parts. */
function templates(): Template[] {
  const json = { 'content-type': 'application/json' };
  return [
    { method: 'GET', path: `/${db}/doc` },
    { method: 'GET', path: `/${db}/att?attachments=true`, headers: { accept: 'multipart/related' } },
    { method: 'GET', path: `/${db}/conf?open_revs=all`, headers: { accept: 'multipart/mixed' } },
    { method: 'GET', path: `/${db}/att/file.txt`, headers: { range: 'bytes=0-4' } },
    { method: 'PUT', path: `/${db}/new-doc`, body: { a: 1, b: [1, 'x', { c: null }], _attachments: { 'n.txt': { content_type: 'text/plain', data: 'aGk=' } } }, headers: json },
    { method: 'POST', path: `/${db}`, body: { _id: 'posted', v: { w: [1, 2] } }, headers: json },
    { method: 'POST', path: `/${db}/_bulk_docs`, body: { docs: [{ _id: 'b1', v: 1 }, { _id: 'conf', _rev: '2-ccc', _revisions: { start: 2, ids: ['ccc', 'aaa'] }, v: 3 }], new_edits: false }, headers: json },
    { method: 'POST', path: `/${db}/_bulk_docs`, body: { docs: [{ _id: 'b2', _attachments: { 'file.txt': { stub: true, digest: 'md5-XrY7u+Ae7tCTyyK7j1rNww==', length: 11, content_type: 'text/plain', revpos: 1 } } }] }, headers: json },
    { method: 'POST', path: `/${db}/_bulk_get?revs=true&attachments=true`, body: { docs: [{ id: 'doc' }, { id: 'conf', rev: '1-aaa' }, { id: 'att', atts_since: ['1-abc'] }] }, headers: json },
    { method: 'POST', path: `/${db}/_revs_diff`, body: { doc: ['1-abc', '2-def'], conf: ['1-aaa'] }, headers: json },
    { method: 'POST', path: `/${db}/_all_docs`, body: { keys: ['doc', 'missing', 'conf'], include_docs: true }, headers: json },
    { method: 'POST', path: `/${db}/_all_docs/queries?include_docs=true`, body: { queries: [{ keys: ['doc', 'missing'] }, { startkey: 'a', limit: 2, conflicts: true }] }, headers: json },
    { method: 'POST', path: `/${db}/_changes?filter=_selector&include_docs=true`, body: { selector: { v: { $gt: 0 }, $or: [{ a: 1 }, { b: { $in: [1, 2] } }] } }, headers: json },
    { method: 'POST', path: `/${db}/_changes?filter=_doc_ids`, body: { doc_ids: ['doc', 'conf'] }, headers: json },
    { method: 'GET', path: `/${db}/_changes?style=all_docs&include_docs=true&conflicts=true&limit=5&since=0` },
    { method: 'PUT', path: `/${db}/_local/fz`, body: { v: 1, w: [1] }, headers: json },
    { method: 'PUT', path: `/${db}/_security`, body: { admins: { names: ['a'], roles: [] }, members: { names: [], roles: ['r'] } }, headers: json },
    { method: 'PUT', path: `/${db}/_design/fz`, body: { views: { v: { map: 'function(doc){}' } }, language: 'javascript' }, headers: json },
    { method: 'POST', path: '/_session', body: { name: 'admin', password: 'wrong' }, headers: json },
    { method: 'COPY', path: `/${db}/doc`, headers: { destination: 'copy-target' } },
  ];
}

function mutatedRequest(r: Rand): { method: string; path: string; headers: Record<string, string>; body: Buffer | undefined } {
  const base = pick(r, templates());
  const headers: Record<string, string> = { authorization: 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64'), ...base.headers };
  let path = base.path;
  if (chance(r, 0.5)) {
    const param = `${pick(r, QUERY_PARAMS)}=${encodeURIComponent(pick(r, QUERY_VALUES))}`;
    path += (path.includes('?') ? '&' : '?') + (STREAMING_FEEDS.has(param.split('=')[1]!) ? 'timeout=50&' : '') + param;
  }
  if (chance(r, 0.3)) Object.assign(headers, randomHeaders(r, base.method));
  const body = base.body === undefined ? undefined : Buffer.from(mutateJson(r, base.body, chance(r, 0.2) ? 0 : 0.15), 'utf8');
  return { method: base.method, path, headers, body };
}

interface Outcome {
  status: number;
  error?: string;
}

function send(method: string, path: string, headers: Record<string, string>, body: Buffer | undefined, agent: http.Agent): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: node.port, method, path, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) }, agent });
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ status: 0, error: `no response within ${RESPONSE_TIMEOUT_MS} ms` });
    }, RESPONSE_TIMEOUT_MS);
    req.on('response', (res) => {
      clearTimeout(timer);
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      const stop = setTimeout(() => {
        res.destroy();
        resolve({ status });
      }, BODY_READ_MS);
      res.on('data', (c: Buffer) => {
        if (chunks.length < 8) chunks.push(c);
      });
      const done = () => {
        clearTimeout(stop);
        resolve(status >= 500 ? { status, error: Buffer.concat(chunks).toString('utf8').slice(0, 300) } : { status });
      };
      res.on('end', done);
      res.on('error', done);
      res.on('aborted', done);
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      resolve({ status: 0, error: `request error: ${err.message}` });
    });
    req.end(body);
  });
}

function describeRequest(method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): string {
  const shown = Object.entries(headers).filter(([k]) => k !== 'authorization').map(([k, v]) => ` -H '${k}: ${v.slice(0, 120)}'`).join('');
  const auth = headers.authorization ? ` -H 'authorization: ${headers.authorization.slice(0, 60)}'` : '';
  const data = body === undefined ? '' : ` --data-binary '${body.toString('latin1').slice(0, 300).replace(/[^\x20-\x7e]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'))}'`;
  return `curl -X ${method} 'URL${path.slice(0, 300)}'${auth}${shown}${data}`;
}

test(`HTTP fuzz: ${REQUESTS} requests, no 5xx, no crash`, async (t) => {
  t.diagnostic(`FUZZ_SEED=${seed}`);
  console.log(`fuzz: FUZZ_SEED=${seed} FUZZ_REQUESTS=${REQUESTS}`);
  const r = mulberry32(seed);
  // Generate every request first, from the seed alone, so a run replays exactly.
  const requests = Array.from({ length: REQUESTS }, () => {
    // Half mutate a valid request (to get past the first checks), half are random.
    if (chance(r, 0.5)) return mutatedRequest(r);
    const method = pick(r, METHODS);
    let path = randomPath(r);
    // Deleting the main database would leave the rest of the run hitting 404s.
    if (method === 'DELETE' && (path === `/${db}` || path === `/${db}/`)) path = `/${other}`;
    path += randomQuery(r);
    const headers = randomHeaders(r, method);
    const body = method === 'GET' || method === 'HEAD' ? (chance(r, 0.05) ? randomBody(r, headers) : undefined) : randomBody(r, headers);
    return { method, path, headers, body };
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const failures: string[] = [];
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const i = next++;
      const { method, path, headers, body } = requests[i]!;
      const outcome = await send(method, path, headers, body, agent);
      statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
      if (outcome.error !== undefined && outcome.status !== 501) {
        failures.push(`#${i} ${outcome.status} ${outcome.error.replace(/\s+/g, ' ')}\n    ${describeRequest(method, path, headers, body)}`);
      }
      if (node.proc.exitCode !== null || node.proc.signalCode !== null) {
        failures.push(`#${i} node exited (${node.proc.exitCode ?? node.proc.signalCode}) after: ${describeRequest(method, path, headers, body)}`);
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  agent.destroy();
  t.diagnostic('statuses: ' + [...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' '));
  if (failures.length > 0) {
    console.log(`fuzz failures (FUZZ_SEED=${seed}, ${failures.length}):\n` + failures.slice(0, 40).join('\n'));
    console.log('node stderr tail: ' + node.stderr.join('').slice(-2000));
  }
  assert.equal(node.proc.exitCode, null, 'the node is still running');
  const up = await request(node, 'GET', '/_up', { auth: false });
  assert.equal(up.status, 200);
  const known = await request(node, 'GET', `/${keep}/known`);
  assert.equal(known.text, knownText, 'the known document reads back unchanged');
  assert.deepEqual(failures, [], `FUZZ_SEED=${seed}: ${failures.length} requests got a 5xx or no answer`);
});
