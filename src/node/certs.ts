/**
 * `divan certs`: the TLS material for mutual TLS between the nodes of a cluster. A
 * cluster CA (made once, its key kept next to it so more node certificates can be
 * signed later) and node certificates it signs, each valid as server and client, for
 * the DNS names and IP addresses given. Keys are RSA 2048 from node:crypto; the
 * certificates are built and signed with node-forge (SHA-256).
 *
 * Files in the output directory: `ca.pem`, `ca.key` (keep it offline once every node
 * has its certificate), and `<node>.pem` / `<node>.key` per node. Existing CA files
 * are reused, never overwritten; an existing node certificate is replaced.
 *
 * One certificate may serve every node: give it a fixed name (`--hosts divan-node`) and
 * set `grpcTlsServerName` to that name on every node, so peers check that name instead
 * of the host they dial (what deploy/k8s does).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import forge from 'node-forge';

export interface CertsOptions {
  /** Directory written (created if missing). */
  dir: string;
  /** File stems of the node certificates to make; each also its certificate's common name. */
  nodes: string[];
  /** DNS names and IP addresses every node certificate is valid for. */
  hosts: string[];
  /** Validity of the CA and of node certificates, days. */
  caDays: number;
  nodeDays: number;
}

export interface CertsResult {
  ca: string;
  caKey: string;
  caCreated: boolean;
  nodes: { name: string; cert: string; key: string }[];
}

const DAY_MS = 86_400_000;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function newKey(): { pem: string; key: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { pem: privateKey, key: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, publicKey: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey };
}

function baseCertificate(publicKey: forge.pki.rsa.PublicKey, days: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  // Positive 128-bit serial (a leading 0 bit keeps the DER integer positive).
  cert.serialNumber = '0' + randomBytes(16).toString('hex').slice(1);
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 5 * 60_000); // tolerate a little clock skew between nodes
  cert.validity.notAfter = new Date(now + days * DAY_MS);
  return cert;
}

function writePrivate(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** Make (or reuse) the CA and make the node certificates; returns the files written. */
export function makeCerts(options: CertsOptions): CertsResult {
  if (options.nodes.length === 0) throw new Error('name at least one node certificate to make');
  for (const name of options.nodes) if (!NAME_RE.test(name) || name === 'ca') throw new Error(`invalid node file name ${JSON.stringify(name)}`);
  if (options.hosts.length === 0) throw new Error('give at least one host name or IP address for the certificates');
  mkdirSync(options.dir, { recursive: true });
  const caFile = path.join(options.dir, 'ca.pem');
  const caKeyFile = path.join(options.dir, 'ca.key');
  let caCert: forge.pki.Certificate;
  let caKey: forge.pki.rsa.PrivateKey;
  const caCreated = !existsSync(caFile);
  if (!caCreated) {
    if (!existsSync(caKeyFile)) throw new Error(`${caFile} exists without ${caKeyFile}: cannot sign node certificates with it`);
    caCert = forge.pki.certificateFromPem(readFileSync(caFile, 'utf8'));
    caKey = forge.pki.privateKeyFromPem(readFileSync(caKeyFile, 'utf8')) as forge.pki.rsa.PrivateKey;
  } else {
    const key = newKey();
    caKey = key.key;
    caCert = baseCertificate(key.publicKey, options.caDays);
    const subject = [
      { name: 'commonName', value: `Divan cluster CA ${randomBytes(4).toString('hex')}` },
      { name: 'organizationName', value: 'Divan' },
    ];
    caCert.setSubject(subject);
    caCert.setIssuer(subject);
    caCert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    caCert.sign(caKey, forge.md.sha256.create());
    writePrivate(caKeyFile, key.pem);
    writeFileSync(caFile, forge.pki.certificateToPem(caCert));
  }
  const altNames = options.hosts.map((host) => (isIP(host) ? { type: 7, ip: host } : { type: 2, value: host }));
  const nodes: CertsResult['nodes'] = [];
  for (const name of options.nodes) {
    const key = newKey();
    const cert = baseCertificate(key.publicKey, options.nodeDays);
    cert.setSubject([
      { name: 'commonName', value: name },
      { name: 'organizationName', value: 'Divan' },
    ]);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
    ]);
    cert.sign(caKey, forge.md.sha256.create());
    const certFile = path.join(options.dir, `${name}.pem`);
    const keyFile = path.join(options.dir, `${name}.key`);
    writePrivate(keyFile, key.pem);
    writeFileSync(certFile, forge.pki.certificateToPem(cert));
    nodes.push({ name, cert: certFile, key: keyFile });
  }
  return { ca: caFile, caKey: caKeyFile, caCreated, nodes };
}
