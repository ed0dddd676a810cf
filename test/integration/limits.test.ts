/**
 * Resource limits against a live node (issue 8: what a hostile client found), with
 * small configured limits so that each attack shows within a second or two:
 * slow bodies cut, idle connections unable to lock clients out, a per-address cap,
 * a linear-time `$regex`, a cap on ids per `_revs_diff`, a node-wide budget of body
 * bytes in flight, and a client hang-up logged at debug. No timing assertions: each
 * test waits for an outcome with a deadline.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ADMIN, request, startNode, TestNode, createDb, waitFor } from '../helpers/node-process';

const limits = {
  connectionsMax: 20,
  connectionsPerAddressMax: 8,
  bodyIdleTimeoutMs: 1000,
  bodyBytesPerSecMin: 100,
  headersTimeoutMs: 30_000,
  keysMax: 2000,
  bulkDocsMax: 1000,
  revsDiffRevsMax: 5000,
  requestBytesMax: 1_000_000,
  docBytesMax: 1_000_000,
  attachmentBytesMax: 1_000_000,
  requestBytesInFlightMax: 1_500_000,
  logLevel: 'debug',
};

const auth = 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64');
let node: TestNode;
let configDir: string;
const logLines: string[] = [];
const clients: net.Socket[] = [];

before(async () => {
  configDir = mkdtempSync(path.join(os.tmpdir(), 'divan-limits-'));
  const configFile = path.join(configDir, 'config.json');
  writeFileSync(configFile, JSON.stringify(limits));
  node = await startNode({ args: ['-c', configFile], onStdoutLine: (line) => logLines.push(line) });
});
after(async () => {
  for (const socket of clients) socket.destroy();
  await node.destroy();
  rmSync(configDir, { recursive: true, force: true });
});

interface Client {
  socket: net.Socket;
  received: () => string;
  closed: () => boolean;
}

/** A raw TCP connection from a chosen loopback address (all of 127/8 is local on Linux), with what it received. */
async function connect(localAddress = '127.0.0.1'): Promise<Client> {
  const socket = net.connect({ host: '127.0.0.1', port: node.port, localAddress });
  clients.push(socket);
  let data = '';
  let closed = false;
  socket.setEncoding('utf8').on('data', (chunk: string) => (data += chunk));
  socket.on('error', () => {});
  socket.on('close', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => data, closed: () => closed };
}

/** One request on a fresh connection (no pooled sockets that would count against an address). */
function freshGet(urlPath: string, localAddress = '127.0.0.1'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: node.port, path: urlPath, localAddress, agent: false, headers: { authorization: auth } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

const newDb = (): Promise<string> => createDb(node, 'limits');

describe('connections', () => {
  test('past connectionsPerAddressMax, a connection from that address is answered 503 and closed', async () => {
    const held: Client[] = [];
    for (let i = 0; i < limits.connectionsPerAddressMax; i++) held.push(await connect('127.0.0.9'));
    const extra = await connect('127.0.0.9');
    await waitFor(async () => extra.closed(), 10_000, 'the extra connection to be closed');
    assert.match(extra.received(), /^HTTP\/1\.1 503 /);
    assert.match(extra.received(), /"error":"service_unavailable"/);
    // Another address is not affected, and the held ones still work.
    assert.equal((await freshGet('/_up', '127.0.0.10')).status, 200);
    held[0]!.socket.write('GET /_up HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(async () => held[0]!.received().startsWith('HTTP/1.1 200'), 10_000, 'a held connection to answer');
    for (const h of held) h.socket.destroy();
  });

  test('connectionsMax idle connections do not lock out a new client: the longest-idle one makes room', async () => {
    const idle: Client[] = [];
    // Spread over addresses so the per-address cap is not what bites.
    for (let i = 0; i < limits.connectionsMax; i++) idle.push(await connect(`127.0.0.${20 + (i % 4)}`));
    const fresh = await freshGet('/_up', '127.0.0.30');
    assert.equal(fresh.status, 200);
    await waitFor(async () => idle.some((c) => c.closed()), 10_000, 'an idle connection to be closed');
    assert.equal(idle[0]!.closed(), true, 'the oldest idle connection is the one closed');
    for (const c of idle) c.socket.destroy();
  });
});

describe('slow request bodies', () => {
  async function drip(withAuth: boolean): Promise<{ received: string }> {
    const db = await newDb();
    const c = await connect('127.0.0.40');
    c.socket.write(
      `PUT /${db}/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500000\r\n` +
        (withAuth ? `Authorization: ${auth}\r\n` : '') +
        '\r\n{"a":"',
    );
    // One byte every 200 ms: 5 bytes/s, under the 100 bytes/s minimum.
    const dripper = setInterval(() => c.socket.writable && c.socket.write('x'), 200);
    try {
      await waitFor(async () => c.closed(), 15_000, 'the dripping connection to be cut');
    } finally {
      clearInterval(dripper);
    }
    return { received: c.received() };
  }

  test('a body dripping under bodyBytesPerSecMin is cut (authenticated: 408)', async () => {
    const { received } = await drip(true);
    assert.match(received, /^HTTP\/1\.1 408 /);
  });

  test('a body dripping under bodyBytesPerSecMin is cut before authentication too', async () => {
    const { received } = await drip(false);
    assert.match(received, /^HTTP\/1\.1 401 /);
  });

  test('a long response is not a slow body: a longpoll feed with a POST body outlives the body window', async () => {
    const db = await newDb();
    // Open for 2.5 s (over two body windows) with no change, then answered as CouchDB does.
    const res = await request(node, 'POST', `/${db}/_changes?feed=longpoll&since=now&timeout=2500&filter=_selector`, {
      body: { selector: { a: 1 } },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.results, []);
  });
});

describe('$regex', () => {
  test('a catastrophic-backtracking pattern answers, with the right result, while other requests are served', async () => {
    const db = await newDb();
    const evil = 'a'.repeat(37) + '!';
    assert.equal((await request(node, 'PUT', `/${db}/evil`, { body: { s: evil } })).status, 201);
    assert.equal((await request(node, 'PUT', `/${db}/good`, { body: { s: 'aaaa' } })).status, 201);
    const [changes, up] = await Promise.all([
      request(node, 'POST', `/${db}/_changes?filter=_selector`, { body: { selector: { s: { $regex: '^(a+)+$' } } } }),
      request(node, 'GET', '/_up', { auth: false }),
    ]);
    assert.equal(changes.status, 200);
    assert.deepEqual(changes.body.results.map((r: { id: string }) => r.id), ['good']);
    assert.equal(up.status, 200);
  });

  test('a backreference or lookaround is refused with 400 at parse time', async () => {
    const db = await newDb();
    for (const pattern of ['(a)\\1', 'a(?=b)', '(?<!a)b']) {
      const res = await request(node, 'POST', `/${db}/_changes?filter=_selector`, { body: { selector: { s: { $regex: pattern } } } });
      assert.equal(res.status, 400, pattern);
      assert.equal(res.body.error, 'bad_arg');
      assert.match(res.body.reason, /\$regex/);
    }
  });
});

describe('_revs_diff', () => {
  test('more ids than keysMax answers 400; /_up answers while a large allowed one runs', async () => {
    const db = await newDb();
    const body = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [`doc-${i}`, ['1-0123456789abcdef0123456789abcdef']]));
    const over = await request(node, 'POST', `/${db}/_revs_diff`, { body: body(limits.keysMax + 1) });
    assert.equal(over.status, 400);
    assert.match(over.body.reason, /document ids/);
    const missingOver = await request(node, 'POST', `/${db}/_missing_revs`, { body: body(limits.keysMax + 1) });
    assert.equal(missingOver.status, 400);
    const revs = Array.from({ length: limits.revsDiffRevsMax + 1 }, (_, i) => `${i + 1}-0123456789abcdef0123456789abcdef`);
    const revsOver = await request(node, 'POST', `/${db}/_revs_diff`, { body: { one: revs } });
    assert.equal(revsOver.status, 400);
    assert.match(revsOver.body.reason, /revisions/);
    const big = request(node, 'POST', `/${db}/_revs_diff`, { body: body(limits.keysMax) });
    const up = await request(node, 'GET', '/_up', { auth: false });
    assert.equal(up.status, 200);
    const res = await big;
    assert.equal(res.status, 200);
    assert.equal(Object.keys(res.body).length, limits.keysMax);
  });
});

describe('fan-out caps, counted before the body is parsed', () => {
  test('_all_docs keys, _dbs_info keys, _changes doc_ids, _bulk_get and _bulk_docs docs past their caps answer 400', async () => {
    const db = await newDb();
    const keys = Array.from({ length: limits.keysMax + 1 }, (_, i) => `k${i}`);
    const allDocs = await request(node, 'POST', `/${db}/_all_docs`, { body: { keys } });
    assert.equal(allDocs.status, 400);
    assert.match(allDocs.body.reason, /keys/);
    const dbsInfo = await request(node, 'POST', '/_dbs_info', { body: { keys } });
    assert.equal(dbsInfo.status, 400);
    const changes = await request(node, 'POST', `/${db}/_changes?filter=_doc_ids`, { body: { doc_ids: keys } });
    assert.equal(changes.status, 400);
    assert.match(changes.body.reason, /doc_ids/);
    const changesAtCap = await request(node, 'POST', `/${db}/_changes?filter=_doc_ids`, { body: { doc_ids: keys.slice(1) } });
    assert.equal(changesAtCap.status, 200);
    const docs = Array.from({ length: limits.bulkDocsMax + 1 }, (_, i) => ({ id: `d${i}` }));
    const bulkGet = await request(node, 'POST', `/${db}/_bulk_get`, { body: { docs } });
    assert.equal(bulkGet.status, 400);
    const bulkDocs = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs: docs.map((d) => ({ _id: d.id })) } });
    assert.equal(bulkDocs.status, 400);
    assert.equal(bulkDocs.body.error, 'too_many_docs');
    // At the cap, all of them work; the _bulk_docs docs are parsed piece by piece.
    const written = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { new_edits: true, docs: docs.slice(1).map((d) => ({ _id: d.id, n: [1, { x: 'y' }] })) } });
    assert.equal(written.status, 201);
    assert.equal(written.body.length, limits.bulkDocsMax);
    assert.ok(written.body.every((row: { ok?: boolean }) => row.ok));
    const read = await request(node, 'POST', `/${db}/_all_docs?include_docs=true`, { body: { keys: keys.slice(0, 3).concat(['d1']) } });
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.rows[3].doc.n, [1, { x: 'y' }]);
    const got = await request(node, 'POST', `/${db}/_bulk_get`, { body: { docs: docs.slice(1) } });
    assert.equal(got.status, 200);
    assert.equal(got.body.results.length, limits.bulkDocsMax);
  });
});

describe('request bytes in flight', () => {
  test('past requestBytesInFlightMax a request is answered 503 with Retry-After, and the budget comes back', async () => {
    const db = await newDb();
    // Hold 850 kB of a 900 kB body: sent at once, then the rest trickled fast enough
    // not to be cut as slow (the budget counts bytes received, not bytes declared).
    const holder = await connect('127.0.0.50');
    const holdBytes = 900_000;
    holder.socket.write(
      `POST /${db}/_bulk_docs HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nContent-Type: application/json\r\nContent-Length: ${holdBytes}\r\n\r\n` +
        ' '.repeat(850_000),
    );
    let sent = 850_000;
    const feeder = setInterval(() => {
      if (sent + 1000 < holdBytes) {
        holder.socket.write(' '.repeat(1000));
        sent += 1000;
      }
    }, 50);
    const doc = { docs: [{ pad: 'p'.repeat(700_000) }] };
    try {
      const refused = await waitFor(
        async () => {
          const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: doc });
          return res.status === 503 ? res : undefined;
        },
        10_000,
        'a 503 while the budget is held',
      );
      assert.equal(refused.body.error, 'service_unavailable');
      assert.equal(refused.headers.get('retry-after'), '1');
    } finally {
      clearInterval(feeder);
      holder.socket.destroy();
    }
    // The hung-up holder gave its bytes back.
    const accepted = await waitFor(
      async () => {
        const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: doc });
        return res.status === 201 ? res : undefined;
      },
      10_000,
      'the budget to come back',
    );
    assert.equal(accepted.body[0].ok, true);
  });
});

describe('request bytes in flight: declared is not held', () => {
  test('a client declaring a big body and sending it slowly does not hold the budget', async () => {
    const db = await newDb();
    const slow = await connect('127.0.0.51');
    slow.socket.write(
      `POST /${db}/_bulk_docs HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nContent-Type: application/json\r\nContent-Length: ${limits.requestBytesMax}\r\n\r\n`,
    );
    // 2 kB/s: above bodyBytesPerSecMin, so it is not cut while the other request runs.
    const feeder = setInterval(() => slow.socket.write(' '.repeat(200)), 100);
    try {
      await waitFor(async () => slow.socket.bytesWritten > 2000, 10_000, 'the slow body to be under way');
      // 1 MB declared + 700 kB would exceed the 1.5 MB budget; the bytes actually received do not.
      const res = await request(node, 'POST', `/${db}/_bulk_docs`, { body: { docs: [{ pad: 'p'.repeat(700_000) }] } });
      assert.equal(res.status, 201);
    } finally {
      clearInterval(feeder);
      slow.socket.destroy();
    }
  });
});

describe('logging', () => {
  test('a client hanging up mid-body is logged at debug, not as an error', async () => {
    const db = await newDb();
    const from = logLines.length;
    const c = await connect('127.0.0.60');
    // Headers and the start of a body, then a hang-up once they are on the wire.
    c.socket.write(`PUT /${db}/gone HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a":`, () =>
      c.socket.destroy(),
    );
    const line = await waitFor(
      async () => logLines.slice(from).find((l) => l.includes('client closed the connection mid-body')),
      10_000,
      'the hang-up to be logged',
    );
    assert.equal(JSON.parse(line).level, 'debug');
  });

  test('none of the attacks above was logged as an error', () => {
    // Runs last: cut bodies, refused connections, hang-ups and 503s are all routine.
    const errors = logLines.filter((l) => l.startsWith('{') && JSON.parse(l).level === 'error');
    assert.deepEqual(errors, []);
  });
});
