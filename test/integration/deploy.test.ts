/**
 * The deployment artifacts: the Kubernetes manifests parse, name only real settings,
 * probe the endpoints the node serves, and the container's start-up path (main.js
 * configured by environment, as the manifest configures it) brings up a ready node.
 * No Docker engine or cluster runs here, so this is what can be checked locally.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { envNames } from '../../src/node/config';
import { request, startNode } from '../helpers/node-process';

const root = path.join(__dirname, '..', '..', '..');
const docs = parseAllDocuments(readFileSync(path.join(root, 'deploy', 'k8s', 'divan.yaml'), 'utf8')).map((d) => d.toJS());
const statefulSet = docs.find((d) => d.kind === 'StatefulSet');
const container = statefulSet.spec.template.spec.containers[0];
const env: { name: string; value?: string; valueFrom?: unknown }[] = container.env;

test('manifests: services, probes and ports agree with what the node serves', () => {
  const kinds = docs.map((d) => d.kind).sort();
  assert.deepEqual(kinds, ['PodDisruptionBudget', 'Service', 'Service', 'StatefulSet']);
  const headless = docs.find((d) => d.kind === 'Service' && d.spec.clusterIP === 'None');
  assert.equal(headless.spec.publishNotReadyAddresses, true);
  assert.equal(statefulSet.spec.serviceName, headless.metadata.name);
  assert.equal(container.readinessProbe.httpGet.path, '/_up');
  const value = (name: string) => env.find((e) => e.name === name)?.value;
  const ports = Object.fromEntries(container.ports.map((p: any) => [p.name, p.containerPort]));
  assert.equal(String(ports.http), value('DIVAN_PORT'));
  assert.equal(String(ports.grpc), value('DIVAN_GRPC_PORT'));
  assert.equal(String(ports.metrics), value('DIVAN_METRICS_PORT'));
  assert.equal(statefulSet.spec.template.metadata.annotations['prometheus.io/port'], value('DIVAN_METRICS_PORT'));
  assert.equal(statefulSet.spec.volumeClaimTemplates[0].metadata.name, container.volumeMounts[0].name);
  assert.equal(container.volumeMounts[0].mountPath, value('DIVAN_DATA_DIR'));
  // Clustered nodes need mutual TLS: the files come from the divan-tls secret's volume.
  const tls = container.volumeMounts.find((m: any) => m.name === 'tls');
  assert.ok(tls, 'the TLS secret is mounted');
  assert.equal(statefulSet.spec.template.spec.volumes.find((v: any) => v.name === 'tls').secret.secretName, 'divan-tls');
  for (const name of ['DIVAN_GRPC_TLS_CA', 'DIVAN_GRPC_TLS_CERT', 'DIVAN_GRPC_TLS_KEY']) {
    assert.ok(value(name)?.startsWith(tls.mountPath + '/'), `${name} is a file of the mounted secret`);
  }
  assert.equal(value('DIVAN_GRPC_PLAINTEXT'), undefined, 'no plain text between nodes');
});

test('manifests set only settings the node knows', () => {
  for (const { name } of env) {
    if (name === 'POD_NAME' || name === 'POD_NAMESPACE') continue;
    assert.ok(name in envNames, `${name} is not a Divan setting`);
  }
  const secrets = env.filter((e) => e.valueFrom && (e.valueFrom as any).secretKeyRef).map((e) => e.name).sort();
  assert.deepEqual(secrets, ['COUCHDB_PASSWORD', 'COUCHDB_USER', 'DIVAN_CLUSTER_SECRET']);
  const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
  assert.match(dockerfile, /CMD \["node", "dist\/src\/node\/main.js"\]/);
  assert.match(dockerfile, /COPY proto \.\/proto/);
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

test('the container start-up path: a node configured only by the manifest environment becomes ready', async () => {
  const [http, grpc, metrics] = [await freePort(), await freePort(), await freePort()];
  // The manifest's values, with pod DNS names and fixed ports swapped for loopback ones.
  const vars: Record<string, string> = { POD_NAME: 'divan-0', POD_NAMESPACE: 'test' };
  const fromManifest: Record<string, string> = {};
  for (const e of env) if (e.value !== undefined) fromManifest[e.name] = e.value.replace(/\$\((\w+)\)/g, (_, v: string) => vars[v] ?? '');
  const overrides: Record<string, string> = {
    DIVAN_BIND_ADDRESS: '127.0.0.1',
    DIVAN_GRPC_BIND_ADDRESS: '127.0.0.1',
    DIVAN_METRICS_BIND_ADDRESS: '127.0.0.1',
    DIVAN_PORT: String(http),
    DIVAN_GRPC_PORT: String(grpc),
    DIVAN_METRICS_PORT: String(metrics),
    DIVAN_ADVERTISE_ADDRESS: `127.0.0.1:${grpc}`,
    DIVAN_HTTP_ADVERTISE_ADDRESS: `127.0.0.1:${http}`,
    DIVAN_SEEDS: `127.0.0.1:${grpc}`,
    DIVAN_CLUSTER_SECRET: 'a-cluster-secret-for-tests',
    // The test CA's node certificate stands in for the divan-tls secret (it names divan-node too).
    DIVAN_GRPC_TLS_CA: path.join(root, 'test', 'fixtures', 'tls', 'ca.pem'),
    DIVAN_GRPC_TLS_CERT: path.join(root, 'test', 'fixtures', 'tls', 'node.pem'),
    DIVAN_GRPC_TLS_KEY: path.join(root, 'test', 'fixtures', 'tls', 'node.key'),
  };
  const childEnv = { ...fromManifest, ...overrides };
  delete childEnv.DIVAN_DATA_DIR; // startNode gives a temp directory
  // main.js flags would win over env: pass the manifest's ports as flags too.
  const node = await startNode({ env: childEnv, port: http, args: ['--grpc-port', String(grpc)] });
  try {
    assert.equal((await request(node, 'GET', '/_up', { auth: false })).status, 200);
    const members = await request(node, 'GET', '/_membership');
    assert.deepEqual(members.body.all_nodes, ['divan@divan-0']);
    const scrape = await fetch(`http://127.0.0.1:${metrics}/metrics`);
    assert.equal(scrape.status, 200);
    assert.match(await scrape.text(), /divan_http_requests_total/);
    assert.equal((await request(node, 'PUT', '/db')).status, 201);
    assert.deepEqual((await request(node, 'GET', '/db')).body.cluster, { q: 2, n: 1, w: 1, r: 1 });
  } finally {
    await node.destroy();
  }
});
