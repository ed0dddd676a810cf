/**
 * Mutual TLS between nodes: a two-node cluster whose gRPC port takes only callers
 * with a certificate from the cluster CA (and the secret), and still works as a
 * cluster: a database made on one node is written and read through the other.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Cluster, eventually, startCluster } from '../helpers/cluster';
import { request, uniqueDb } from '../helpers/node-process';
import { PeerClients } from '../../src/node/rpc/client';
import { transportFor } from '../../src/node/rpc/tls';

// Compiled tests run from dist/test/cluster; the fixtures stay in the source tree.
const fixtures = path.resolve(__dirname, '../../../test/fixtures/tls');
const file = (name: string) => path.join(fixtures, name);

let cluster: Cluster;
before(async () => {
  cluster = await startCluster({
    nodes: 2,
    env: { DIVAN_GRPC_TLS_CERT: file('node.pem'), DIVAN_GRPC_TLS_KEY: file('node.key'), DIVAN_GRPC_TLS_CA: file('ca.pem') },
  });
});
after(async () => {
  await cluster?.destroy();
});

test('nodes with certificates from the cluster CA form a cluster and replicate', async () => {
  const db = uniqueDb('tls');
  assert.equal((await request(cluster.nodes[0]!, 'PUT', `/${db}?n=2`)).status, 201);
  const written = await request(cluster.nodes[1]!, 'PUT', `/${db}/doc`, { body: { over: 'tls' } });
  assert.equal(written.status, 201, 'both copies took the write (w=2 of 2)');
  await eventually(async () => {
    for (const i of [0, 1]) {
      const copy = await request(cluster.nodes[i]!, 'GET', `/_node/_local/_copy/${db}/doc`);
      assert.equal(copy.status, 200, `node ${i} holds its own copy`);
      assert.equal(copy.body.winner, written.body.rev);
    }
  }, 10_000);
});

test('the gRPC port refuses plain text and certificates from another CA, even with the secret', async () => {
  const attempts = {
    plaintext: new PeerClients({ secret: cluster.secret, dialOverrides: {} }),
    stranger: new PeerClients({
      secret: cluster.secret,
      dialOverrides: {},
      transport: transportFor({ certFile: file('stranger.pem'), keyFile: file('stranger.key'), caFile: file('ca.pem'), serverName: '' }),
    }),
  };
  try {
    for (const [what, peers] of Object.entries(attempts)) {
      await assert.rejects(peers.unary(cluster.grpcAddress(0), 'Membership', 'PushPull', { members: [] }, 3000), (err: any) => {
        assert.ok(['nodedown', 'timeout'].includes(err.token), `${what}: ${err.token} ${err.message}`);
        return true;
      });
    }
  } finally {
    for (const peers of Object.values(attempts)) peers.close();
  }
  const member = new PeerClients({
    secret: cluster.secret,
    dialOverrides: {},
    transport: transportFor({ certFile: file('node.pem'), keyFile: file('node.key'), caFile: file('ca.pem'), serverName: '' }),
  });
  try {
    const reply = await member.unary(cluster.grpcAddress(0), 'Membership', 'PushPull', { members: [] }, 5000);
    assert.equal(reply.members.length, 2);
  } finally {
    member.close();
  }
});
