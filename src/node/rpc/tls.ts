/**
 * Transport security of the gRPC port. Without TLS files, calls travel in clear text
 * and are authenticated by the cluster secret alone (fine on loopback or a private
 * network). With them, both ends present a certificate signed by the cluster CA
 * (mutual TLS): traffic is encrypted and a caller without such a certificate cannot
 * even open a connection; the secret is still checked on every call.
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** Name to verify in peer certificates instead of the dialled host; empty: the host. */
  serverName: string;
}

export interface Transport {
  server: grpc.ServerCredentials;
  client: grpc.ChannelCredentials;
  /** Extra channel options for clients (the name override). */
  clientOptions: grpc.ChannelOptions;
  tls: boolean;
}

export const plaintext: Transport = {
  server: grpc.ServerCredentials.createInsecure(),
  client: grpc.credentials.createInsecure(),
  clientOptions: {},
  tls: false,
};

/** Credentials from PEM files, read once at start-up (a restart picks up rotated files). */
export function transportFor(files: TlsFiles | undefined): Transport {
  if (!files) return plaintext;
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read the gRPC TLS ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const cert = read(files.certFile, 'certificate');
  const key = read(files.keyFile, 'key');
  const ca = read(files.caFile, 'CA');
  return {
    server: grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true),
    client: grpc.credentials.createSsl(ca, key, cert),
    clientOptions: files.serverName ? { 'grpc.ssl_target_name_override': files.serverName, 'grpc.default_authority': files.serverName } : {},
    tls: true,
  };
}
