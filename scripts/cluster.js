#!/usr/bin/env node
// A local 3-node cluster for trying Divan out: HTTP on 5984, 5985, 5986, gRPC on
// 7984-7986, data in ./data/cluster/n1..n3. The admin comes from COUCHDB_USER /
// COUCHDB_PASSWORD (one is generated and printed if unset); the cluster secret from
// DIVAN_CLUSTER_SECRET (generated and kept in ./data/cluster/secret otherwise).
// Nodes talk mutual TLS, with a CA and node certificate made once by `divan certs`
// in ./data/cluster/certs. Ctrl-C stops all three.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const dataRoot = path.join(root, 'data', 'cluster');
fs.mkdirSync(dataRoot, { recursive: true });
const secretFile = path.join(dataRoot, 'secret');
const secret = process.env.DIVAN_CLUSTER_SECRET || (fs.existsSync(secretFile) ? fs.readFileSync(secretFile, 'utf8').trim() : '');
const clusterSecret = secret || randomBytes(24).toString('base64url');
if (!secret && !process.env.DIVAN_CLUSTER_SECRET) fs.writeFileSync(secretFile, clusterSecret, { mode: 0o600 });
const user = process.env.COUCHDB_USER || 'admin';
let password = process.env.COUCHDB_PASSWORD;
const passwordFile = path.join(dataRoot, 'admin-password');
if (!password) {
  password = fs.existsSync(passwordFile) ? fs.readFileSync(passwordFile, 'utf8').trim() : randomBytes(12).toString('base64url');
  fs.writeFileSync(passwordFile, password, { mode: 0o600 });
  process.stderr.write(`\n  Cluster admin: ${user} / ${password} (kept in data/cluster/admin-password)\n\n`);
}

const main = path.join(root, 'dist', 'src', 'node', 'main.js');
const certDir = path.join(dataRoot, 'certs');
if (!fs.existsSync(path.join(certDir, 'node.pem'))) {
  const made = spawnSync(process.execPath, [main, 'certs', '--dir', certDir, '--nodes', 'node', '--hosts', '127.0.0.1,localhost'], { stdio: 'inherit' });
  if (made.status !== 0) process.exit(made.status ?? 1);
}
const tls = {
  DIVAN_GRPC_TLS_CA: path.join(certDir, 'ca.pem'),
  DIVAN_GRPC_TLS_CERT: path.join(certDir, 'node.pem'),
  DIVAN_GRPC_TLS_KEY: path.join(certDir, 'node.key'),
};

const nodes = [1, 2, 3].map((i) => ({ name: `n${i}`, http: 5983 + i, grpc: 7983 + i }));
const children = nodes.map((node) => {
  const args = [
    main,
    '--port', String(node.http),
    '--grpc-port', String(node.grpc),
    '--node-name', `divan@${node.name}`,
    '--data-dir', path.join(dataRoot, node.name),
    '--seeds', nodes.filter((n) => n !== node).map((n) => `127.0.0.1:${n.grpc}`).join(','),
  ];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, COUCHDB_USER: user, COUCHDB_PASSWORD: password, DIVAN_CLUSTER_SECRET: clusterSecret, ...tls },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout.on('data', (chunk) => process.stdout.write(chunk.toString().replace(/^(?=.)/gm, `[${node.name}] `)));
  child.on('exit', (code, signal) => process.stderr.write(`[${node.name}] exited (${signal ?? code})\n`));
  return child;
});
process.stderr.write(`Divan cluster: http://127.0.0.1:5984, :5985, :5986  (Ctrl-C stops all)\n`);
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  setTimeout(() => process.exit(0), 5000).unref();
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
let alive = children.length;
for (const child of children) child.on('exit', () => (--alive === 0 ? process.exit(0) : undefined));
