/**
 * The parts of inter-node authentication (src/node/rpc/auth.ts) and its settings, in
 * isolation: call tokens bound to method, target, time and message; the bounded nonce
 * cache; frame sealing with sequence numbers, direction and a validity window; and the
 * config relations that make mutual TLS the default for clusters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { callToken, checkCallToken, digestOf, FrameOpener, FrameSealer, NonceCache, parseCallToken, sessionKey } from '../../src/node/rpc/auth';
import { loadConfig } from '../../src/node/config';

const SECRET = 'unit-test-cluster-secret';
const PATH = '/divan.v1.Shard/UpdateDocs';
const message = Buffer.from('the request');

test('a call token holds only for its method, target, time and message', () => {
  const now = 1_700_000_000_000;
  const token = callToken(SECRET, PATH, 'a:1', message, now);
  const ok = checkCallToken(SECRET, PATH, ['b:2', 'a:1'], token, now + 1000, 30_000);
  assert.ok(ok);
  assert.equal(ok.digest, digestOf(message));
  assert.equal(checkCallToken(SECRET, '/divan.v1.Shard/PutLocal', ['a:1'], token, now, 30_000), undefined, 'another method');
  assert.equal(checkCallToken(SECRET, PATH, ['b:2'], token, now, 30_000), undefined, 'another node');
  assert.equal(checkCallToken(SECRET, PATH, ['a:1'], token, now + 30_001, 30_000), undefined, 'too late');
  assert.equal(checkCallToken('another-secret-0123456', PATH, ['a:1'], token, now, 30_000), undefined, 'another secret');
  const parts = token.split('.');
  parts[3] = digestOf(Buffer.from('another request'));
  assert.equal(checkCallToken(SECRET, PATH, ['a:1'], parts.join('.'), now, 30_000), undefined, 'digest swapped');
  for (const junk of [undefined, '', 'x', '1.2.3', `${now}.abc`, 'a'.repeat(300)]) assert.equal(parseCallToken(junk), undefined);
});

test('the nonce cache refuses a nonce twice, forgets expired ones, and refuses when full of live ones', () => {
  const cache = new NonceCache(1000, 1000);
  assert.equal(cache.admit('n0', 0, 0), 'ok');
  assert.equal(cache.admit('n0', 0, 10), 'replayed');
  for (let i = 1; i < 1000; i++) assert.equal(cache.admit(`n${i}`, 0, 10), 'ok');
  assert.equal(cache.admit('late', 0, 500), 'full', 'every entry still live');
  assert.equal(cache.admit('later', 0, 1001), 'ok', 'expired entries make room');
  assert.ok(cache.size < 1000);
});

test('frames: only the next sequence number, in time, in its direction, under its session key', () => {
  const key = sessionKey(SECRET, 'client-nonce-0123456789', 'server-nonce-0123456789', 'a:1');
  const other = sessionKey(SECRET, 'client-nonce-0123456789', 'server-nonce-9876543210', 'a:1');
  const frame = (id: number) => ({ id, method: 'UpdateDocs', payload: Buffer.from(`doc ${id}`), errorJson: '' });
  const now = 1_700_000_000_000;
  const sealer = new FrameSealer(key, 'c');
  const opener = new FrameOpener(key, 'c', 30_000);
  const f1 = sealer.seal(frame(1), now);
  const f2 = sealer.seal(frame(2), now);
  const f3 = sealer.seal(frame(3), now - 40_000);
  assert.match(opener.check(f2, now) ?? '', /sequence/, 'out of order');
  assert.equal(opener.check(f1, now), undefined);
  assert.match(opener.check(f1, now) ?? '', /sequence/, 'repeated');
  assert.match(opener.check({ ...f2, payload: Buffer.from('spliced') }, now) ?? '', /authentication/, 'payload changed');
  assert.equal(opener.check(f2, now), undefined);
  assert.match(opener.check(f3, now) ?? '', /window/, 'late');
  assert.match(new FrameOpener(key, 's', 30_000).check(f1, now) ?? '', /authentication/, 'reflected to the other direction');
  assert.match(new FrameOpener(other, 'c', 30_000).check(f1, now) ?? '', /authentication/, 'moved to another stream');
});

test('config: a clustered node needs TLS files or an explicit grpcPlaintext; the message limit holds a request', () => {
  const secret = { clusterSecret: 'a-cluster-secret-for-tests' };
  assert.throws(() => loadConfig({ flags: { ...secret, seeds: 'h:1' } }), /mutual TLS.*divan certs/);
  assert.throws(() => loadConfig({ flags: secret }), /mutual TLS/);
  assert.equal(loadConfig({ flags: { ...secret, seeds: 'h:1', grpcPlaintext: 1 } }).grpcPlaintext, 1);
  assert.equal(loadConfig({ flags: { ...secret, grpcTlsCert: 'c', grpcTlsKey: 'k', grpcTlsCa: 'a' } }).grpcPlaintext, 0);
  assert.throws(() => loadConfig({ flags: { ...secret, grpcPlaintext: 1, grpcTlsCert: 'c', grpcTlsKey: 'k', grpcTlsCa: 'a' } }), /contradicts/);
  assert.equal(loadConfig({}).grpcPlaintext, 0, 'a lone node with no secret stays as it was');
  assert.throws(() => loadConfig({ flags: { grpcMessageBytesMax: 64 * 1024 * 1024 } }), /grpcMessageBytesMax must be at least requestBytesMax \+ docBytesMax/);
  const c = loadConfig({ env: { DIVAN_GRPC_MESSAGE_BYTES_MAX: String(100 << 20) } });
  assert.equal(c.grpcMessageBytesMax, 100 << 20);
});
