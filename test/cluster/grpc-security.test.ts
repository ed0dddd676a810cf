/**
 * The gRPC port against a hostile client (issue 8, items 1 and 2), on live nodes,
 * called directly with @grpc/grpc-js and proto/divan.proto as an attacker would.
 *
 * Tokens and frames that an eavesdropper could capture on a plain-text link are
 * minted here with the cluster secret, exactly as a node sends them; the attacks then
 * reuse them without the secret: replayed, moved to another node, another stream or
 * another message, sent late or out of order. Every attack must be refused and must
 * not write its document. A caller without credentials must be refused before the
 * node reads its (large) message. A clustered node without TLS files must refuse to
 * start unless plain text is asked for, and `divan certs` must be enough for a
 * three-node cluster over mutual TLS.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Cluster, eventually, startCluster } from '../helpers/cluster';
import { request, uniqueDb } from '../helpers/node-process';
import { PeerClients } from '../../src/node/rpc/client';
import { transportFor } from '../../src/node/rpc/tls';
import { serviceDefinition, requestCodec, methodCodec, type Message } from '../../src/node/rpc/proto';
import { encodeEdit } from '../../src/node/rpc/shard-service';
import { AUTH_HEADER, callToken, FrameSealer, frameMac, MUX_NONCE_HEADER, newMuxNonce, sessionKey } from '../../src/node/rpc/auth';

const MAIN = path.resolve(__dirname, '../../src/node/main.js');
const UPDATE_DOCS = '/divan.v1.Shard/UpdateDocs';
const MULTIPLEX = '/divan.v1.Shard/Multiplex';

/** An attacker's generic clients: the schema from proto/divan.proto, plain text, no limits on what it sends. */
function attackerClient(address: string, transport?: ReturnType<typeof transportFor>): grpc.Client {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition('Shard'), 'Shard');
  return new Ctor(address, transport?.client ?? grpc.credentials.createInsecure(), {
    ...transport?.clientOptions,
    'grpc.max_send_message_length': -1,
    'grpc.max_receive_message_length': -1,
  });
}

function unaryCall(client: grpc.Client, method: string, request: Message, token?: string): Promise<{ code: number; details: string; reply?: Message }> {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set(AUTH_HEADER, token);
  return new Promise((resolve) => {
    (client as unknown as Record<string, Function>)[method]!.call(
      client,
      request,
      metadata,
      { deadline: Date.now() + 60_000 },
      (err: grpc.ServiceError | null, reply: Message) => resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '', reply }),
    );
  });
}

interface CopyRef {
  db: string;
  dbUuid: string;
  range: number;
}

/** The catalog entry of `db`, as a member node learns it (Catalog/Sync with the secret). */
async function copyRef(cluster: Cluster, db: string): Promise<CopyRef> {
  const member = new PeerClients({ secret: cluster.secret, dialOverrides: {} });
  try {
    const reply = await member.unary(cluster.grpcAddress(0), 'Catalog', 'Sync', { entriesJson: Buffer.from('[]') }, 5000);
    const entries = JSON.parse((reply.entriesJson as Buffer).toString('utf8')) as { name: string; uuid: string; deleted?: boolean }[];
    const entry = entries.find((e) => e.name === db && !e.deleted);
    assert.ok(entry, `catalog entry of ${db}`);
    return { db, dbUuid: entry.uuid, range: 0 };
  } finally {
    member.close();
  }
}

function updateRequest(copy: CopyRef, id: string, body: Record<string, unknown>): Message {
  return { copy, edits: [encodeEdit({ id, deleted: false, body, attachments: null })] };
}

/** Whether node `i`'s own copy holds document `id` (no inter-node call). */
async function holds(cluster: Cluster, i: number, db: string, id: string): Promise<boolean> {
  const reply = await request(cluster.nodes[i]!, 'GET', `/_node/_local/_copy/${db}/${id}`);
  assert.ok([200, 404].includes(reply.status), `copy read: ${reply.status} ${reply.text}`);
  return reply.status === 200;
}

/** Documents of range 0 on a q=1 database: every id is in range 0. */
async function freshDb(cluster: Cluster): Promise<{ db: string; copy: CopyRef }> {
  const db = uniqueDb('sec');
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?q=1&n=2`)).status, 201);
  await eventually(async () => assert.ok((await copyRef(cluster, db)).dbUuid), 10_000);
  return { db, copy: await copyRef(cluster, db) };
}

/** A raw Multiplex stream: the opening token, the server's nonce, and what the server answers. */
class RawMux {
  readonly call: grpc.ClientDuplexStream<Message, Message>;
  readonly serverNonce: Promise<string>;
  readonly frames: Message[] = [];
  readonly ended: Promise<{ code: number; details: string }>;

  constructor(client: grpc.Client, token: string) {
    const metadata = new grpc.Metadata();
    metadata.set(AUTH_HEADER, token);
    this.call = (client as unknown as { Multiplex(m: grpc.Metadata): grpc.ClientDuplexStream<Message, Message> }).Multiplex(metadata);
    this.serverNonce = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no response headers within 10 s')), 10_000);
      this.call.on('metadata', (m: grpc.Metadata) => (clearTimeout(timer), resolve(String(m.get(MUX_NONCE_HEADER)[0] ?? ''))));
      this.call.on('error', (err) => (clearTimeout(timer), reject(err)));
    });
    this.serverNonce.catch(() => undefined);
    this.call.on('data', (frame: Message) => this.frames.push(frame));
    // Deadline: a stream the server keeps open counts as accepted (code -1).
    this.ended = new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ code: -1, details: 'the stream is still open after 10 s' }), 10_000);
      const done = (code: number, details: string) => (clearTimeout(timer), resolve({ code, details }));
      this.call.on('error', (err: grpc.ServiceError) => done(err.code, err.details));
      this.call.on('status', (s: grpc.StatusObject) => done(s.code, s.details));
    });
  }

  async waitForFrames(count: number): Promise<void> {
    await eventually(async () => assert.ok(this.frames.length >= count, `${this.frames.length} reply frames of ${count}`), 10_000);
  }

  close(): void {
    this.call.cancel();
  }
}

const updateCodec = methodCodec('Shard', 'UpdateDocs');
const frameOf = (id: number, req: Message) => ({ id, method: 'UpdateDocs', payload: Buffer.from(updateCodec.encodeRequest(req)), errorJson: '' });

describe('a plain-text cluster under attack', () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ nodes: 2 });
  });
  after(async () => {
    await cluster?.destroy();
  });

  test('a captured call token is good for one delivery of its own message, to its own node', async () => {
    const { db, copy } = await freshDb(cluster);
    const to0 = attackerClient(cluster.grpcAddress(0));
    const to1 = attackerClient(cluster.grpcAddress(1));
    try {
      // What a node sends: UpdateDocs of doc "legit", its token bound to n1's address and these bytes.
      const legit = updateRequest(copy, 'legit', { v: 1 });
      const token = callToken(cluster.secret, UPDATE_DOCS, cluster.grpcAddress(0), requestCodec(UPDATE_DOCS).encode(legit), Date.now());
      const delivered = await unaryCall(to0, 'UpdateDocs', legit, token);
      assert.equal(delivered.code, grpc.status.OK, delivered.details);
      assert.ok(await holds(cluster, 0, db, 'legit'));

      // Replayed 2 s later (or at once) with another document: refused, not written.
      const forged = updateRequest(copy, 'forged', { evil: true });
      const replay = await unaryCall(to0, 'UpdateDocs', forged, token);
      assert.equal(replay.code, grpc.status.UNAUTHENTICATED, replay.details);
      // Replayed unchanged: refused too (its nonce is spent).
      const again = await unaryCall(to0, 'UpdateDocs', legit, token);
      assert.equal(again.code, grpc.status.UNAUTHENTICATED, again.details);
      // A token never used, intercepted and its message swapped (spliced): refused.
      const unused = callToken(cluster.secret, UPDATE_DOCS, cluster.grpcAddress(0), requestCodec(UPDATE_DOCS).encode(legit), Date.now());
      const spliced = await unaryCall(to0, 'UpdateDocs', forged, unused);
      assert.equal(spliced.code, grpc.status.UNAUTHENTICATED, spliced.details);
      // A token made for n1, sent to n2 with its own message: refused.
      const elsewhere = callToken(cluster.secret, UPDATE_DOCS, cluster.grpcAddress(0), requestCodec(UPDATE_DOCS).encode(forged), Date.now());
      const moved = await unaryCall(to1, 'UpdateDocs', forged, elsewhere);
      assert.equal(moved.code, grpc.status.UNAUTHENTICATED, moved.details);
      // A token older than the validity window: refused.
      const old = callToken(cluster.secret, UPDATE_DOCS, cluster.grpcAddress(0), requestCodec(UPDATE_DOCS).encode(forged), Date.now() - 65_000);
      const late = await unaryCall(to0, 'UpdateDocs', forged, old);
      assert.equal(late.code, grpc.status.UNAUTHENTICATED, late.details);

      for (const i of [0, 1]) assert.equal(await holds(cluster, i, db, 'forged'), false, `node ${i} must not hold the forged document`);
    } finally {
      to0.close();
      to1.close();
    }
  });

  test('Multiplex: a sniffed opening token gives no write access; late, repeated, reordered or moved frames are refused', async () => {
    const { db, copy } = await freshDb(cluster);
    const client = attackerClient(cluster.grpcAddress(0));
    const address = cluster.grpcAddress(0);
    const openToken = (nonce: string, sentMs = Date.now()) => callToken(cluster.secret, MULTIPLEX, address, new Uint8Array(0), sentMs, nonce);
    const streams: RawMux[] = [];
    const open = (token: string) => {
      const mux = new RawMux(client, token);
      streams.push(mux);
      return mux;
    };
    try {
      // A legitimate stream (the secret's holder): frame 1 is applied.
      const nonce = newMuxNonce();
      const legit = open(openToken(nonce));
      const key = sessionKey(cluster.secret, nonce, await legit.serverNonce, address);
      const sealer = new FrameSealer(key, 'c');
      const first = sealer.seal(frameOf(1, updateRequest(copy, 'mux-legit', { v: 1 })), Date.now());
      legit.call.write(first);
      await legit.waitForFrames(1);
      assert.equal(legit.frames[0]!.errorJson, '');
      assert.ok(await holds(cluster, 0, db, 'mux-legit'));

      // The same frame again on the same stream (its seq is spent): the stream is ended.
      legit.call.write({ ...first });
      assert.equal((await legit.ended).code, grpc.status.UNAUTHENTICATED);

      // The captured opening token, replayed: refused at once.
      const replayedOpen = open(openToken(nonce));
      assert.equal((await replayedOpen.ended).code, grpc.status.UNAUTHENTICATED);

      // An opening token the attacker got first (raced): the stream opens, but without the
      // secret its frames cannot be sealed; frames from the legitimate stream do not fit it.
      const raced = open(openToken(newMuxNonce()));
      await raced.serverNonce;
      raced.call.write(sealer.seal(frameOf(1, updateRequest(copy, 'mux-moved', { evil: true })), Date.now()));
      assert.equal((await raced.ended).code, grpc.status.UNAUTHENTICATED);
      const unsealed = open(openToken(newMuxNonce()));
      await unsealed.serverNonce;
      unsealed.call.write(frameOf(1, updateRequest(copy, 'mux-unsealed', { evil: true })));
      assert.equal((await unsealed.ended).code, grpc.status.UNAUTHENTICATED);

      // Correctly sealed but out of order (seq 2 first): refused.
      const n2 = newMuxNonce();
      const reordered = open(openToken(n2));
      const k2 = sessionKey(cluster.secret, n2, await reordered.serverNonce, address);
      const f = frameOf(1, updateRequest(copy, 'mux-reordered', { evil: true }));
      reordered.call.write({ ...f, seq: 2, sentMs: Date.now(), mac: frameMac(k2, 'c', 2, Date.now(), f) });
      assert.equal((await reordered.ended).code, grpc.status.UNAUTHENTICATED);

      // Correctly sealed, in order, but sent 65 s after it was made: refused.
      const n3 = newMuxNonce();
      const delayed = open(openToken(n3));
      const k3 = sessionKey(cluster.secret, n3, await delayed.serverNonce, address);
      const lateMs = Date.now() - 65_000;
      const g = frameOf(1, updateRequest(copy, 'mux-late', { evil: true }));
      delayed.call.write({ ...g, seq: 1, sentMs: lateMs, mac: frameMac(k3, 'c', 1, lateMs, g) });
      assert.equal((await delayed.ended).code, grpc.status.UNAUTHENTICATED);

      for (const id of ['mux-moved', 'mux-unsealed', 'mux-reordered', 'mux-late']) {
        assert.equal(await holds(cluster, 0, db, id), false, `${id} must not be written`);
      }
    } finally {
      for (const mux of streams) mux.close();
      client.close();
    }
  });

  test('a caller without credentials is refused on its headers, before the node reads its 100 MB message', async (t) => {
    const { copy } = await freshDb(cluster);
    // A byte-counting TCP relay in front of n1's gRPC port.
    let toServer = 0;
    const relay = net.createServer((socket) => {
      const upstream = net.connect(Number(cluster.grpcAddress(0).split(':')[1]), '127.0.0.1');
      socket.on('data', (chunk) => (toServer += chunk.length));
      socket.pipe(upstream).pipe(socket);
      const end = () => (socket.destroy(), upstream.destroy());
      socket.on('error', end);
      upstream.on('error', end);
      socket.on('close', end);
      upstream.on('close', end);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const client = attackerClient(`127.0.0.1:${(relay.address() as net.AddressInfo).port}`);
    const messageBytes = 100 * 1000 * 1000;
    try {
      const big = { copy, edits: [{ ...encodeEdit({ id: 'big', deleted: false, body: {}, attachments: null }), bodyJson: Buffer.alloc(messageBytes, 0x20) }] };
      for (const token of [undefined, 'not-a-token', callToken('not-the-cluster-secret-0123', UPDATE_DOCS, cluster.grpcAddress(0), new Uint8Array(0), Date.now())]) {
        const outcome = await unaryCall(client, 'UpdateDocs', big, token);
        assert.equal(outcome.code, grpc.status.UNAUTHENTICATED, `${token}: ${outcome.details}`);
      }
      // Had the node read the bodies, ≥ 300 MB would have crossed the relay; HTTP/2 flow
      // control lets a client send only a window's worth to a stream nobody reads.
      assert.ok(toServer < messageBytes / 10, `${toServer} bytes reached the node`);
      t.diagnostic(`3 refused 100 MB calls: ${toServer} bytes reached the node`);
    } finally {
      client.close();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    }
  });

  test('an authenticated message above grpcMessageBytesMax is refused from its length, not decoded', async () => {
    const { copy } = await freshDb(cluster);
    const client = attackerClient(cluster.grpcAddress(0));
    try {
      const big = { copy, edits: [{ ...encodeEdit({ id: 'big', deleted: false, body: {}, attachments: null }), bodyJson: Buffer.alloc(81 * 1024 * 1024, 0x20) }] };
      const token = callToken(cluster.secret, UPDATE_DOCS, cluster.grpcAddress(0), requestCodec(UPDATE_DOCS).encode(big), Date.now());
      const outcome = await unaryCall(client, 'UpdateDocs', big, token);
      assert.equal(outcome.code, grpc.status.RESOURCE_EXHAUSTED, outcome.details);
    } finally {
      client.close();
    }
  });
});

describe('messages stay under grpcMessageBytesMax', () => {
  let cluster: Cluster;
  let dir: string;
  before(async () => {
    // Small limits, so a sync batch of a few documents is bigger than one message may be.
    dir = mkdtempSync(path.join(os.tmpdir(), 'divan-sec-config-'));
    const config = path.join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ requestBytesMax: 1 << 20, docBytesMax: 500_000, attachmentBytesMax: 1 << 20, grpcMessageBytesMax: 2 << 20 }));
    cluster = await startCluster({ nodes: 2, args: ['--config', config] });
  });
  after(async () => {
    await cluster?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a sync batch larger than one message is sent in several', async () => {
    const db = uniqueDb('split');
    assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?q=1&n=2`)).status, 201);
    await cluster.stop(1);
    // 12 documents of 400 kB: about 4.8 MB to push to n2 when it is back, 2 MiB per message at most.
    for (let i = 0; i < 12; i++) {
      const put = await request(cluster.nodes[0]!, 'PUT', `/${db}/big-${i}`, { body: { pad: 'x'.repeat(400_000) } });
      assert.ok([201, 202].includes(put.status), `${put.status} ${put.text}`);
    }
    await cluster.restart(1);
    await eventually(async () => {
      for (let i = 0; i < 12; i++) {
        assert.ok(await holds(cluster, 1, db, `big-${i}`), `n2 holds big-${i}; n1 log:\n${cluster.logs(0).filter((l) => /warn|error|sync|member/i.test(l)).slice(-15).join("\n")}\nn2 log:\n${cluster.logs(1).slice(-15).join("\n")}`);
      }
    }, 60_000);
  });
});

describe('mutual TLS by default for clusters', () => {
  const dirs: string[] = [];
  const tmp = (prefix: string) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('a clustered node without TLS files refuses to start unless plain text is asked for', () => {
    const base = ['--port', '0', '--grpc-port', '0', '--bind', '127.0.0.1'];
    const run = (args: string[]) =>
      spawnSync(process.execPath, [MAIN, ...base, '--data-dir', tmp('divan-sec-'), ...args], {
        env: { PATH: process.env.PATH ?? '', COUCHDB_USER: 'admin', COUCHDB_PASSWORD: 'pw' },
        encoding: 'utf8',
        timeout: 30_000,
      });
    for (const args of [
      ['--seeds', '127.0.0.1:1', '--cluster-secret', 'a-cluster-secret-for-tests'],
      ['--cluster-secret', 'a-cluster-secret-for-tests'],
    ]) {
      const result = run(args);
      assert.equal(result.status, 2, `${args.join(' ')}: exit ${result.status} ${result.stderr}`);
      assert.match(result.stderr, /mutual TLS.*divan certs.*grpcPlaintext/s);
    }
    const both = run(['--cluster-secret', 'a-cluster-secret-for-tests', '--grpc-plaintext', '--grpc-tls-cert', 'x', '--grpc-tls-key', 'y', '--grpc-tls-ca', 'z']);
    assert.equal(both.status, 2, both.stderr);
  });

  test('`divan certs` output is enough for a three-node cluster over mutual TLS', async () => {
    const dir = tmp('divan-certs-');
    const made = spawnSync(process.execPath, [MAIN, 'certs', '--dir', dir, '--nodes', 'node,n4', '--hosts', 'localhost,127.0.0.1'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(made.status, 0, made.stderr);
    assert.match(made.stdout, /made CA/);
    const other = tmp('divan-certs-other-');
    assert.equal(spawnSync(process.execPath, [MAIN, 'certs', '--dir', other], { encoding: 'utf8', timeout: 60_000 }).status, 0);
    // A second run reuses the CA: a node certificate made later still joins.
    const again = spawnSync(process.execPath, [MAIN, 'certs', '--dir', dir, '--nodes', 'n5', '--hosts', '127.0.0.1'], { encoding: 'utf8', timeout: 60_000 });
    assert.match(again.stdout, /reused CA/);

    const file = (name: string) => path.join(dir, name);
    const cluster = await startCluster({
      nodes: 3,
      env: { DIVAN_GRPC_TLS_CERT: file('node.pem'), DIVAN_GRPC_TLS_KEY: file('node.key'), DIVAN_GRPC_TLS_CA: file('ca.pem') },
    });
    try {
      const db = uniqueDb('mtls');
      assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?n=3`)).status, 201);
      const written = await request(cluster.nodes[1]!, 'PUT', `/${db}/doc`, { body: { over: 'mtls' } });
      assert.equal(written.status, 201);
      await eventually(async () => {
        for (const i of [0, 1, 2]) {
          const copy = await request(cluster.nodes[i]!, 'GET', `/_node/_local/_copy/${db}/doc`);
          assert.equal(copy.status, 200, `node ${i} holds its copy`);
        }
      }, 15_000);
      const dial = (cert: string, key: string, ca: string) =>
        new PeerClients({ secret: cluster.secret, dialOverrides: {}, transport: transportFor({ certFile: cert, keyFile: key, caFile: ca, serverName: '' }) });
      const later = dial(file('n5.pem'), file('n5.key'), file('ca.pem'));
      const stranger = dial(path.join(other, 'node.pem'), path.join(other, 'node.key'), file('ca.pem'));
      const plain = new PeerClients({ secret: cluster.secret, dialOverrides: {} });
      try {
        const reply = await later.unary(cluster.grpcAddress(2), 'Membership', 'PushPull', { members: [] }, 5000);
        assert.equal(reply.members.length, 3);
        for (const [what, peers] of [['another CA', stranger], ['plain text', plain]] as const) {
          await assert.rejects(peers.unary(cluster.grpcAddress(2), 'Membership', 'PushPull', { members: [] }, 3000), (err: any) => {
            assert.ok(['nodedown', 'timeout'].includes(err.token), `${what}: ${err.token} ${err.message}`);
            return true;
          });
        }
      } finally {
        for (const p of [later, stranger, plain]) p.close();
      }
    } finally {
      await cluster.destroy();
    }
  });
});

