/**
 * HTTP authentication against a live node (issue 8, items 3–5): wrong passwords are
 * hashed off the event loop and locked out per (user, client address) as CouchDB's
 * `[chttpd_auth_lockout]` does, unknown names cost a hash like wrong passwords, and
 * `POST /_session?next=` redirects only to paths on this server.
 *
 * Clients on other loopback addresses (127.0.0.2, ...) play other machines: Linux
 * routes all of 127/8 to the loopback interface, and the node sees each as its own peer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { ADMIN, request, startNode, TestNode } from '../helpers/node-process';

const LOCKED = 'Account is temporarily locked due to multiple authentication failures';
/** CouchDB's default threshold, and ours. */
const THRESHOLD = 5;

let node: TestNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.destroy();
});

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

const agents = new Map<string, http.Agent>();
/** One request from `from` (a loopback address), with a deadline. */
function send(
  from: string,
  method: string,
  path: string,
  options: { basic?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<Answer> {
  let agent = agents.get(from);
  if (!agent) {
    agent = new http.Agent({ keepAlive: true, localAddress: from });
    agents.set(from, agent);
  }
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  if (options.basic !== undefined) headers.authorization = 'Basic ' + Buffer.from(options.basic).toString('base64');
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  if (payload !== undefined) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: node.port, method, path, agent, headers, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = text;
        }
        resolve({ status: res.statusCode!, headers: res.headers, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} from ${from}: no answer within 30 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}
after(() => {
  for (const agent of agents.values()) agent.destroy();
});

const admin = `${ADMIN.user}:${ADMIN.password}`;

describe('lockout and the event loop under wrong passwords', () => {
  test('20 clients guessing the admin password: the admin keeps being served, guesses are locked out at the threshold', async () => {
    const attacker = '127.0.0.2';
    const guessesEach = 8;
    const guesses = Array.from({ length: 20 }, async (_, i) => {
      const answers: Answer[] = [];
      for (let k = 0; k < guessesEach; k++) answers.push(await send(attacker, 'GET', '/_all_dbs', { basic: `${ADMIN.user}:wrong-${i}-${k}` }));
      return answers;
    });
    let attacking = true;
    const attack = Promise.all(guesses).finally(() => (attacking = false));
    // The admin, from its own address, while the guesses go on.
    const served: number[] = [];
    while (attacking || served.length < 10) served.push((await send('127.0.0.1', 'GET', '/_all_dbs', { basic: admin })).status);
    const answers = (await attack).flat();

    assert.ok(served.length >= 10);
    assert.deepEqual([...new Set(served)], [200], 'every admin request answered 200 during the attack');
    const unauthorized = answers.filter((a) => a.status === 401);
    const locked = answers.filter((a) => a.status === 403);
    assert.equal(unauthorized.length, THRESHOLD, `exactly ${THRESHOLD} guesses were checked`);
    assert.equal(locked.length, answers.length - THRESHOLD, 'every later guess was refused unchecked');
    for (const a of locked) assert.deepEqual(a.body, { error: 'forbidden', reason: LOCKED });

    // Locked is locked for that address, even with the right password (as CouchDB)...
    assert.equal((await send(attacker, 'GET', '/_all_dbs', { basic: admin })).status, 403);
    // ...but not from any other address.
    assert.equal((await send('127.0.0.3', 'GET', '/_all_dbs', { basic: admin })).status, 200);
    assert.equal((await send('127.0.0.3', 'POST', '/_session', { body: { name: ADMIN.user, password: ADMIN.password } })).status, 200);
  });

  test('POST /_session and Basic count towards the same lockout', async () => {
    const from = '127.0.0.4';
    for (let k = 0; k < 3; k++) assert.equal((await send(from, 'GET', '/_all_dbs', { basic: `${ADMIN.user}:bad-${k}` })).status, 401);
    for (let k = 0; k < THRESHOLD - 3; k++) {
      assert.equal((await send(from, 'POST', '/_session', { body: { name: ADMIN.user, password: `bad-s${k}` } })).status, 401);
    }
    const session = await send(from, 'POST', '/_session', { body: { name: ADMIN.user, password: ADMIN.password } });
    assert.equal(session.status, 403);
    assert.deepEqual(session.body, { error: 'forbidden', reason: LOCKED });
    assert.equal((await send(from, 'GET', '/_all_dbs', { basic: admin })).status, 403);
  });

  test('unknown names are locked out like known ones (the 403 does not tell which names exist)', async () => {
    const from = '127.0.0.5';
    for (let k = 0; k < THRESHOLD; k++) assert.equal((await send(from, 'GET', '/_all_dbs', { basic: `nobody:bad-${k}` })).status, 401);
    assert.equal((await send(from, 'GET', '/_all_dbs', { basic: 'nobody:bad' })).status, 403);
    // The admin from the same address is another pair, and not locked.
    assert.equal((await send(from, 'GET', '/_all_dbs', { basic: admin })).status, 200);
  });

  test('parallel requests with the right password all succeed (one hash, then the cache)', async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, () => send('127.0.0.6', 'GET', '/_all_dbs', { basic: admin })));
    assert.deepEqual([...new Set(answers.map((a) => a.status))], [200]);
  });
});

describe('user enumeration by timing', () => {
  test('a wrong password and an unknown name answer alike (times are reported, not asserted)', async (t) => {
    const samples = 7;
    const time = async (i: number, basic: string): Promise<{ ms: number; answer: Answer }> => {
      // A fresh address per sample, so the lockout does not end the measurement.
      const from = `127.0.9.${i + 1}`;
      await send(from, 'GET', '/_up'); // connect first: measure the check, not the handshake
      const started = process.hrtime.bigint();
      const answer = await send(from, 'GET', '/_all_dbs', { basic });
      return { ms: Number(process.hrtime.bigint() - started) / 1e6, answer };
    };
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < samples; i++) {
      const w = await time(2 * i, `${ADMIN.user}:not-the-password`);
      const u = await time(2 * i + 1, `no-such-user-${i}:not-the-password`);
      assert.equal(w.answer.status, 401);
      assert.equal(u.answer.status, 401);
      assert.deepEqual(u.answer.body, w.answer.body, 'same error body');
      wrong.push(w.ms);
      unknown.push(u.ms);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    t.diagnostic(`median ms over ${samples}: wrong password ${median(wrong).toFixed(1)}, unknown user ${median(unknown).toFixed(1)}`);
  });
});

describe('POST /_session?next=', () => {
  const login = (next: string) =>
    request(node, 'POST', `/_session?next=${next}`, {
      auth: false,
      raw: `name=${ADMIN.user}&password=${ADMIN.password}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });

  test('a same-origin path redirects there', async () => {
    const res = await fetch(`${node.url}/_session?next=${encodeURIComponent('/_utils/#/database?x=1')}`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `name=${ADMIN.user}&password=${ADMIN.password}`,
    });
    assert.equal(res.status, 302);
    assert.equal(res.headers.get('location'), '/_utils/#/database?x=1');
    assert.match(res.headers.get('set-cookie') ?? '', /^AuthSession=/);
  });

  for (const next of ['/%5Cevil.example/x', '/%09/evil.example', '//evil.example', '/%0D%0ASet-Cookie:%20x=1', '/a%0Ab', 'http://evil.example/', 'evil', '/a%5Cb', '/%E2%82%AC']) {
    test(`next=${next} is refused with 400`, async () => {
      const res = await login(next);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.error, 'bad_request');
      assert.equal(res.headers.get('location'), null);
      assert.equal(res.headers.get('set-cookie'), null, 'no session for a refused login');
    });
  }
});
