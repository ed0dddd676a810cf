/**
 * The cluster test harness itself: the TCP fault proxy (against a real echo server on
 * loopback), the convergence and acknowledged-write checkers (against scripted fake
 * nodes speaking the few HTTP answers they read). `startCluster` itself runs against
 * real nodes in test/cluster.
 *
 * "Nothing arrives" is necessarily checked with a deadline (a read that gets nothing in
 * 300 ms); every positive condition is awaited as an event, with a deadline.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { FaultProxy } from '../helpers/fault-proxy';
import { ackedWriteChecker, checkConverged, eventually } from '../helpers/cluster';

/** How long a stalled read waits to conclude that nothing arrives. */
const SILENCE_MS = 300;
/** Deadline for things that should happen promptly. */
const PROMPT_MS = 5_000;

/** A client socket that records what it receives and how it ends. */
class Conn {
  data = Buffer.alloc(0);
  ended = false;
  closed = false;
  errorCode: string | undefined;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      this.notify();
    });
    socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.errorCode = err.code ?? err.message;
      this.notify();
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  /** Connect (allowing half-open, so the test decides when to end its side). */
  static async open(port: number): Promise<Conn> {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const conn = new Conn(socket);
    await conn.until(() => socket.readyState === 'open' || conn.closed, PROMPT_MS);
    return conn;
  }

  get text(): string {
    return this.data.toString('utf8');
  }

  /** Resolves true once `condition` holds, false if it still does not after `ms`. */
  until(condition: () => boolean, ms: number): Promise<boolean> {
    if (condition()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!condition()) return;
        finish(true);
      };
      const finish = (value: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      const timer = setTimeout(() => finish(false), ms);
      this.waiters.add(check);
      // A socket in 'opening' state changes without data; poll that one cheaply.
      this.socket.once('connect', check);
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** An echo server (FIN echoed too), counting connections and watching each one. */
class EchoServer {
  readonly sockets: { socket: net.Socket; closed: boolean }[] = [];
  private readonly server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const entry = { socket, closed: false };
    this.sockets.push(entry);
    socket.on('error', () => {});
    socket.on('close', () => (entry.closed = true));
    socket.pipe(socket);
  });
  port = 0;

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const { socket } of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function echoes(conn: Conn, message: string): Promise<boolean> {
  const before = conn.data.length;
  conn.socket.write(message);
  return conn.until(() => conn.data.length >= before + Buffer.byteLength(message), PROMPT_MS).then(
    (ok) => ok && conn.data.subarray(before).toString() === message,
  );
}

describe('FaultProxy', () => {
  let echo: EchoServer;
  let proxy: FaultProxy;
  const conns: Conn[] = [];
  const open = async () => {
    const conn = await Conn.open(proxy.port);
    conns.push(conn);
    return conn;
  };

  before(async () => {
    echo = new EchoServer();
    await echo.listen();
  });
  after(async () => {
    await echo.close();
  });

  const withProxy = (name: string, body: () => Promise<void>) =>
    test(name, async () => {
      proxy = new FaultProxy({ host: '127.0.0.1', port: echo.port });
      await proxy.listen();
      try {
        await body();
      } finally {
        for (const conn of conns.splice(0)) conn.destroy();
        await proxy.close();
      }
    });

  withProxy('pass forwards bytes both ways', async () => {
    assert.ok(proxy.port > 0);
    assert.equal(proxy.address, `127.0.0.1:${proxy.port}`);
    const conn = await open();
    assert.ok(await echoes(conn, 'hello'), 'echo through the proxy');
    assert.ok(await echoes(conn, 'again'), 'and again on the same connection');
    assert.equal(proxy.stats.open, 1);
  });

  withProxy('drop stalls current and new connections without closing anything', async () => {
    const serverSidesAtStart = echo.sockets.length;
    const busy = await open();
    assert.ok(await echoes(busy, 'before'));
    const serverSidesBefore = echo.sockets.length;
    proxy.drop();
    assert.equal(proxy.mode, 'drop');

    busy.socket.write('lost');
    assert.equal(await busy.until(() => busy.data.length > 'before'.length, SILENCE_MS), false, 'nothing comes back');
    const fresh = await open();
    assert.equal(fresh.socket.readyState, 'open', 'a new connection is still accepted');
    fresh.socket.write('also lost');
    assert.equal(await fresh.until(() => fresh.data.length > 0, SILENCE_MS), false, 'nothing comes back');

    // A blackhole, not a reset: no end, no error, no close, on either side.
    for (const conn of [busy, fresh]) {
      assert.equal(conn.ended, false);
      assert.equal(conn.closed, false);
      assert.equal(conn.errorCode, undefined);
    }
    assert.equal(echo.sockets.length, serverSidesBefore, 'no onward connection during the drop');
    assert.ok(echo.sockets.slice(serverSidesAtStart).every((s) => !s.closed), 'the target saw no close');
    assert.ok(proxy.stats.droppedBytes >= 'lost'.length + 'also lost'.length);
  });

  withProxy('pass after drop: new connections flow, idle ones resume, severed ones are reset', async () => {
    const idle = await open();
    assert.ok(await echoes(idle, 'idle-before'));
    const severed = await open();
    proxy.drop();
    severed.socket.write('lost');
    const bornInDrop = await open();
    assert.equal(await severed.until(() => severed.data.length > 0, SILENCE_MS), false);

    proxy.pass();
    assert.equal(proxy.mode, 'pass');
    const fresh = await open();
    assert.ok(await echoes(fresh, 'after heal'), 'a new connection works');
    assert.ok(await echoes(idle, 'idle-after'), 'a connection that lost nothing resumes');
    for (const conn of [severed, bornInDrop]) {
      assert.ok(await conn.until(() => conn.closed, PROMPT_MS), 'a severed connection is closed on heal');
      assert.equal(conn.errorCode, 'ECONNRESET', 'by a reset');
      assert.equal(conn.data.length, 0, 'and never delivered a byte');
    }
    assert.equal(proxy.stats.severed, 2);
  });

  withProxy('reset destroys current connections and refuses new ones', async () => {
    const current = await open();
    assert.ok(await echoes(current, 'x'));
    proxy.reset();
    assert.ok(await current.until(() => current.closed, PROMPT_MS), 'current connection closed');
    assert.equal(current.errorCode, 'ECONNRESET');
    const serverSidesBefore = echo.sockets.length;
    const refused = await open();
    assert.ok(await refused.until(() => refused.closed, PROMPT_MS), 'new connection closed at once');
    assert.equal(refused.data.length, 0);
    assert.equal(echo.sockets.length, serverSidesBefore, 'never forwarded');

    proxy.pass();
    assert.ok(await echoes(await open(), 'back'), 'pass after reset accepts again');
  });

  withProxy('delay adds latency per chunk in each direction, keeping order and the FIN', async () => {
    const delayMs = 150;
    proxy.delay(delayMs);
    assert.equal(proxy.delayMs, delayMs);
    const conn = await open();
    const startedMs = performance.now();
    assert.ok(await echoes(conn, 'ping'));
    const roundTripMs = performance.now() - startedMs;
    // Held once each way. Timers are ms-granular, so allow a millisecond per hop.
    assert.ok(roundTripMs >= 2 * delayMs - 2, `round trip ${roundTripMs.toFixed(1)} ms under a ${delayMs} ms delay`);

    proxy.delay(5);
    const parts = Array.from({ length: 200 }, (_, i) => `<${i}>`);
    for (const part of parts) conn.socket.write(part);
    conn.socket.end();
    assert.ok(await conn.until(() => conn.ended, PROMPT_MS), 'the FIN comes back after the bytes');
    assert.equal(conn.text, 'ping' + parts.join(''), 'every chunk, in order');
  });

  withProxy('pass after delay forwards at once', async () => {
    proxy.delay(10_000);
    proxy.pass();
    assert.equal(proxy.delayMs, 0);
    const conn = await open();
    assert.ok(await echoes(conn, 'quick'));
  });

  test('a refused onward connection is reset towards the dialler', async () => {
    const gone = new EchoServer();
    const port = await gone.listen();
    await gone.close(); // nothing listens on `port` now
    const deadProxy = new FaultProxy({ host: '127.0.0.1', port });
    await deadProxy.listen();
    try {
      const conn = await Conn.open(deadProxy.port);
      assert.ok(await conn.until(() => conn.closed, PROMPT_MS), 'closed when the target refuses');
      assert.equal(conn.errorCode, 'ECONNRESET');
    } finally {
      await deadProxy.close();
    }
  });

  test('close() destroys every connection, including stalled ones', async () => {
    const local = new FaultProxy({ host: '127.0.0.1', port: echo.port });
    await local.listen();
    const flowing = await Conn.open(local.port);
    assert.ok(await echoes(flowing, 'hi'));
    local.drop();
    const stalled = await Conn.open(local.port);
    await local.close();
    // A FIN: these clients allow half-open sockets, so they see the end rather than a close.
    for (const conn of [flowing, stalled]) assert.ok(await conn.until(() => conn.ended || conn.closed, PROMPT_MS), 'ended by close()');
    assert.equal(local.stats.open, 0);
    await local.close(); // idempotent
  });
});

/* ------------------------------------------------------------------ checkers */

interface FakeRev {
  rev: string;
  deleted?: boolean;
  /** Ancestors, newest first, after the leaf itself. */
  ancestors?: string[];
}

/**
 * A node that answers only what the checkers read: `_all_docs` (paged by limit,
 * startkey and skip=1) and `open_revs=all&revs=true`. `docs[db][id]` lists its leaves.
 */
class FakeNode {
  readonly docs = new Map<string, Map<string, FakeRev[]>>();
  url = '';
  private readonly server = http.createServer((req, res) => this.answer(req, res));

  async listen(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
    return this;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  set(db: string, id: string, leaves: FakeRev[]): void {
    if (!this.docs.has(db)) this.docs.set(db, new Map());
    this.docs.get(db)!.set(id, leaves);
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url!, 'http://x');
    const [, dbName, ...rest] = url.pathname.split('/');
    const db = this.docs.get(decodeURIComponent(dbName!));
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (!db) return send(404, { error: 'not_found', reason: 'Database does not exist.' });
    if (rest[0] === '_all_docs') {
      const limit = Number(url.searchParams.get('limit') ?? 1e9);
      const startkey = url.searchParams.get('startkey');
      let ids = [...db.entries()].filter(([, leaves]) => leaves.some((l) => !l.deleted)).map(([id]) => id).sort();
      if (startkey !== null) ids = ids.filter((id) => id >= JSON.parse(startkey));
      if (url.searchParams.get('skip') === '1') ids = ids.slice(1);
      return send(200, { total_rows: db.size, offset: 0, rows: ids.slice(0, limit).map((id) => ({ id, key: id, value: {} })) });
    }
    const id = rest.map(decodeURIComponent).join('/');
    assert.equal(url.searchParams.get('open_revs'), 'all');
    assert.equal(url.searchParams.get('revs'), 'true');
    assert.equal(req.headers.accept, 'application/json');
    const leaves = db.get(id);
    if (!leaves) return send(404, { error: 'not_found', reason: 'missing' });
    send(
      200,
      leaves.map((leaf) => {
        const revs = [leaf.rev, ...(leaf.ancestors ?? [])];
        const doc: Record<string, unknown> = {
          _id: id,
          _rev: leaf.rev,
          _revisions: { start: Number(leaf.rev.split('-')[0]), ids: revs.map((r) => r.split('-')[1]) },
        };
        if (leaf.deleted) doc._deleted = true;
        return { ok: doc };
      }),
    );
  }
}

describe('checkConverged and ackedWriteChecker', () => {
  const fakes: FakeNode[] = [];
  before(async () => {
    for (let i = 0; i < 3; i++) fakes.push(await new FakeNode().listen());
  });
  after(async () => {
    await Promise.all(fakes.map((fake) => fake.close()));
  });
  const everywhere = (db: string, id: string, leaves: FakeRev[]) => fakes.forEach((fake) => fake.set(db, id, leaves));

  test('identical leaves everywhere: a summary, conflicts and deletions counted', async () => {
    const db = 'same';
    everywhere(db, 'a', [{ rev: '1-a' }]);
    everywhere(db, 'b', [{ rev: '2-b', ancestors: ['1-b'] }, { rev: '2-c', ancestors: ['1-b'] }]);
    everywhere(db, 'gone', [{ rev: '2-d', deleted: true, ancestors: ['1-d'] }]);
    everywhere(db, '_design/ddoc', [{ rev: '1-e' }]);
    // `gone` is in no `_all_docs`: it is checked only when named.
    assert.deepEqual(await checkConverged(fakes, db), { docs: 3, nodes: 3, conflicted: 1, deleted: 0 });
    assert.deepEqual(await checkConverged(fakes, db, ['a', 'b', 'gone', 'no-such-doc']), { docs: 4, nodes: 3, conflicted: 1, deleted: 1 });
  });

  test('pages through _all_docs', async () => {
    const db = 'paged';
    // More than one page (1,000 rows).
    for (let i = 0; i < 1_010; i++) everywhere(db, `doc-${String(i).padStart(5, '0')}`, [{ rev: '1-x' }]);
    assert.equal((await checkConverged(fakes, db)).docs, 1_010);
  });

  test('unions _all_docs across nodes: a doc on one node only is a difference', async () => {
    const db = 'union';
    everywhere(db, 'common', [{ rev: '1-x' }]);
    fakes[2]!.set(db, 'only-here', [{ rev: '1-y' }]);
    await assert.rejects(checkConverged(fakes, db), /doc "only-here": .* has \[\] \(no such doc\), .* has \[1-y\]/);
    fakes[0]!.set(db, 'only-here', [{ rev: '1-y' }]);
    fakes[1]!.set(db, 'only-here', [{ rev: '1-y' }]);
    assert.equal((await checkConverged(fakes, db)).docs, 2);
  });

  test('a different leaf or deleted flag on one node fails, naming the doc and both views', async () => {
    const db = 'differ';
    everywhere(db, 'x', [{ rev: '1-a' }]);
    fakes[1]!.set(db, 'x', [{ rev: '1-a' }, { rev: '1-b' }]);
    await assert.rejects(checkConverged(fakes, db), (err: Error) => {
      assert.match(err.message, /1 difference/);
      assert.match(err.message, /doc "x".*\[1-a\].*\[1-a, 1-b\]/);
      return true;
    });
    everywhere(db, 'x', [{ rev: '2-a', ancestors: ['1-a'] }]);
    fakes[2]!.set(db, 'x', [{ rev: '2-a', deleted: true, ancestors: ['1-a'] }]);
    await assert.rejects(checkConverged(fakes, db, ['x']), /2-a \(deleted\)/);
  });

  test('eventually retries a check until it passes', async () => {
    const db = 'later';
    everywhere(db, 'x', [{ rev: '1-a' }]);
    fakes[0]!.set(db, 'x', [{ rev: '2-a', ancestors: ['1-a'] }]);
    setTimeout(() => everywhere(db, 'x', [{ rev: '2-a', ancestors: ['1-a'] }]), 200);
    assert.equal((await eventually(() => checkConverged(fakes, db), PROMPT_MS)).docs, 1);
    await assert.rejects(eventually(() => checkConverged(fakes, 'no-such-db'), 100), /404/);
  });

  test('ackedWriteChecker records 201/202 answers and finds acked revs as leaves or ancestors', async () => {
    const db = 'acked';
    const checker = ackedWriteChecker();
    assert.equal(checker.record({ status: 201, body: { ok: true, id: 'a', rev: '1-a' } }), 1);
    assert.equal(checker.record({ status: 202, body: { ok: true, id: 'a', rev: '2-a' } }), 1);
    assert.equal(checker.record({ status: 200, body: { ok: true, id: 'd', rev: '2-d' } }), 1, 'DELETE answers 200');
    assert.equal(
      checker.record({
        status: 201,
        body: [
          { ok: true, id: 'b', rev: '1-b' },
          { id: 'c', error: 'conflict', reason: 'Document update conflict.' },
        ],
      }),
      1,
    );
    assert.equal(checker.record({ status: 409, body: { error: 'conflict' } }), 0);
    assert.equal(checker.record({ status: 500, body: [{ id: 'z', rev: '1-z' }] }), 0);
    assert.equal(checker.size, 4);
    assert.deepEqual(checker.ids().sort(), ['a', 'b', 'd']);

    everywhere(db, 'a', [{ rev: '3-a', ancestors: ['2-a', '1-a'] }]);
    everywhere(db, 'b', [{ rev: '1-b' }]);
    everywhere(db, 'd', [{ rev: '2-d', deleted: true, ancestors: ['1-d'] }]);
    assert.deepEqual(await checker.verify(fakes, db), { docs: 3, revs: 4, nodes: 3 });

    // Node 2 lost the branch that held 2-a; node 1 never got b.
    fakes[2]!.set(db, 'a', [{ rev: '2-x', ancestors: ['1-a'] }]);
    fakes[1]!.docs.get(db)!.delete('b');
    await assert.rejects(checker.verify(fakes, db), (err: Error) => {
      assert.match(err.message, /2 acknowledged revision\(s\) lost/);
      assert.match(err.message, new RegExp(`doc "a" rev 2-a is lost on ${fakes[2]!.url}`));
      assert.match(err.message, new RegExp(`doc "b" rev 1-b is lost on ${fakes[1]!.url}`));
      return true;
    });
  });

  test('exited nodes are skipped; a node that does not answer fails the check', async () => {
    const db = 'liveness';
    everywhere(db, 'a', [{ rev: '1-a' }]);
    const dead = { url: 'http://127.0.0.1:1', proc: { exitCode: null, signalCode: 'SIGKILL' as NodeJS.Signals } };
    assert.equal((await checkConverged([...fakes, dead], db)).nodes, 3);
    const unreachable = { url: 'http://127.0.0.1:1' };
    await assert.rejects(checkConverged([...fakes, unreachable], db));
  });
});
