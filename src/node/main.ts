#!/usr/bin/env node
/**
 * The `divan` command: start a node. Flags map one-to-one onto config keys (see
 * config.ts); environment variables and a JSON config file feed the same settings.
 */
import { Command } from 'commander';
import { makeCerts } from './certs';
import { loadConfig } from './config';
import { DivanNode, version } from './node';

function main(): void {
  const program = new Command()
    .name('divan')
    .description('Start a Divan node: a CouchDB-compatible document database')
    // Options after a subcommand belong to it (`divan members -p ...` is not --port).
    .enablePositionalOptions()
    .version(version)
    .option('-p, --port <port>', 'HTTP port (env DIVAN_PORT; default 5984; 0 = any free port)')
    .option('-b, --bind <address>', 'HTTP bind address (env DIVAN_BIND_ADDRESS; default 127.0.0.1)')
    .option('-d, --data-dir <dir>', 'data directory (env DIVAN_DATA_DIR; default ./data)')
    .option('--node-name <name>', 'node name (env DIVAN_NODE_NAME; default divan@127.0.0.1)')
    .option('--q <ranges>', 'shard ranges per new database (env DIVAN_Q; default 2)')
    .option('--n <copies>', 'copies per range (env DIVAN_N; default 3, capped at cluster size)')
    .option('--grpc-port <port>', 'gRPC port for other nodes (env DIVAN_GRPC_PORT; default 7984; 0 = any free port)')
    .option('--grpc-bind <address>', 'gRPC bind address (env DIVAN_GRPC_BIND_ADDRESS; default 127.0.0.1)')
    .option('--advertise-address <host:port>', 'gRPC address other nodes dial (env DIVAN_ADVERTISE_ADDRESS)')
    .option('--http-advertise-address <host:port>', 'HTTP address other nodes use (env DIVAN_HTTP_ADVERTISE_ADDRESS)')
    .option('--seeds <list>', 'gRPC addresses of nodes to join, comma-separated (env DIVAN_SEEDS)')
    .option('--cluster-secret <secret>', 'shared inter-node secret (env DIVAN_CLUSTER_SECRET; prefer the env var)')
    .option('--zone <zone>', 'failure zone of this node (env DIVAN_ZONE)')
    .option('--dial-overrides <json>', 'JSON map: advertised address -> address to dial (env DIVAN_DIAL_OVERRIDES)')
    .option('--grpc-tls-cert <file>', "PEM certificate of this node for mutual TLS between nodes (env DIVAN_GRPC_TLS_CERT)")
    .option('--grpc-tls-key <file>', 'PEM private key of that certificate (env DIVAN_GRPC_TLS_KEY)')
    .option('--grpc-tls-ca <file>', "PEM CA that signs every node's certificate (env DIVAN_GRPC_TLS_CA)")
    .option('--grpc-tls-server-name <name>', 'name to verify in peer certificates instead of their host (env DIVAN_GRPC_TLS_SERVER_NAME)')
    .option('--grpc-plaintext', 'allow plain text between clustered nodes, without TLS files (env DIVAN_GRPC_PLAINTEXT=1; trusted networks only)')
    .option('--grpc-message-bytes-max <bytes>', 'largest inter-node gRPC message (env DIVAN_GRPC_MESSAGE_BYTES_MAX; default 80 MiB)')
    .option('--membership-profile <profile>', 'lan | loopback (env DIVAN_MEMBERSHIP_PROFILE; default lan)')
    .option('--cors-origins <list>', 'CORS origins, comma-separated, * for any (env DIVAN_CORS_ORIGINS; default off)')
    .option('--log-level <level>', 'debug | info | warn | error (env DIVAN_LOG_LEVEL; default info)')
    .option('-c, --config <file>', 'JSON file of config keys (see README)')
    .action(() => start(program.opts<Record<string, string | undefined>>()));
  program
    .command('members')
    .description("Show a node's view of the cluster: every member, its state and address")
    .option('--url <url>', 'HTTP address of any node', 'http://127.0.0.1:5984')
    .option('-u, --user <user>', 'admin name (env COUCHDB_USER)', process.env.COUCHDB_USER ?? 'admin')
    .option('-p, --password <password>', 'admin password (env COUCHDB_PASSWORD)', process.env.COUCHDB_PASSWORD)
    .action((opts: { url: string; user: string; password?: string }) => void showMembers(opts));
  program
    .command('certs')
    .description('Make a cluster CA (or reuse the one in --dir) and node certificates for mutual TLS between nodes')
    .option('--dir <dir>', 'output directory', './certs')
    .option('--nodes <names>', 'node certificate file names, comma-separated (<name>.pem, <name>.key)', 'node')
    .option('--hosts <names>', 'DNS names and IP addresses the certificates are valid for, comma-separated', 'divan-node,localhost,127.0.0.1')
    .option('--ca-days <days>', 'validity of a new CA, days', '3650')
    .option('--days <days>', 'validity of the node certificates, days', '825')
    .action((opts: { dir: string; nodes: string; hosts: string; caDays: string; days: string }) => certs(opts));
  program
    .command('rebalance')
    .description('Move the copies of databases (all when none is named) to the placement the live nodes call for')
    .argument('[databases...]', 'database names; default: every database')
    .option('--url <url>', 'HTTP address of any node', 'http://127.0.0.1:5984')
    .option('-u, --user <user>', 'admin name (env COUCHDB_USER)', process.env.COUCHDB_USER ?? 'admin')
    .option('-p, --password <password>', 'admin password (env COUCHDB_PASSWORD)', process.env.COUCHDB_PASSWORD)
    .action((databases: string[], opts: { url: string; user: string; password?: string }) => void rebalanceAll(databases, opts));
  program.parse();
}

function certs(opts: { dir: string; nodes: string; hosts: string; caDays: string; days: string }): void {
  const list = (text: string) => text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const days = (text: string, what: string) => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 1 || n > 36_500) throw new Error(`${what} must be a number of days in 1..36500`);
    return n;
  };
  try {
    const made = makeCerts({ dir: opts.dir, nodes: list(opts.nodes), hosts: list(opts.hosts), caDays: days(opts.caDays, '--ca-days'), nodeDays: days(opts.days, '--days') });
    process.stdout.write(`${made.caCreated ? 'made' : 'reused'} CA ${made.ca} (key ${made.caKey}: keep it safe, it signs new nodes)\n`);
    for (const node of made.nodes) process.stdout.write(`made ${node.cert} and ${node.key} for ${opts.hosts}\n`);
    const first = made.nodes[0]!;
    process.stdout.write(
      `\nOn each node:\n  DIVAN_GRPC_TLS_CA=${made.ca}\n  DIVAN_GRPC_TLS_CERT=${first.cert}\n  DIVAN_GRPC_TLS_KEY=${first.key}\n` +
        `  (and DIVAN_GRPC_TLS_SERVER_NAME=<one of the hosts> when nodes are dialled at names not in the certificate)\n`,
    );
  } catch (err) {
    process.stderr.write(`divan certs: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

async function rebalanceAll(databases: string[], opts: { url: string; user: string; password?: string }): Promise<void> {
  const headers = { authorization: 'Basic ' + Buffer.from(`${opts.user}:${opts.password ?? ''}`).toString('base64') };
  const call = async (method: string, path: string) => {
    const res = await fetch(new URL(path, opts.url), { method, headers });
    const body = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${String(body.reason ?? body.error ?? '')}`);
    return body;
  };
  try {
    const names = databases.length > 0 ? databases : ((await call('GET', '/_all_dbs')) as unknown as string[]);
    for (const name of names) {
      const result = (await call('POST', `/${encodeURIComponent(name)}/_rebalance`)) as { moved: { range: string; added: string[]; removed: string[] }[] };
      const moves = result.moved.map((m) => `${m.range}: +${m.added.join(',') || '-'} -${m.removed.join(',') || '-'}`);
      process.stdout.write(`${name}: ${moves.length === 0 ? 'in place' : moves.join('; ')}\n`);
    }
  } catch (err) {
    process.stderr.write(`divan: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

async function showMembers(opts: { url: string; user: string; password?: string }): Promise<void> {
  const auth = 'Basic ' + Buffer.from(`${opts.user}:${opts.password ?? ''}`).toString('base64');
  try {
    const res = await fetch(new URL('/_membership', opts.url), { headers: { authorization: auth } });
    const body = (await res.json()) as { members?: { name: string; state: string; incarnation: number; address: string; httpAddress: string; zone?: string }[]; reason?: string };
    if (!res.ok || !body.members) {
      process.stderr.write(`divan: ${res.status} ${body.reason ?? ''}\n`);
      process.exit(1);
    }
    const rows = [['NAME', 'STATE', 'INCARNATION', 'GRPC', 'HTTP', 'ZONE'], ...body.members.map((m) => [m.name, m.state, String(m.incarnation), m.address, m.httpAddress, m.zone ?? ''])];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const row of rows) process.stdout.write(row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd() + '\n');
  } catch (err) {
    process.stderr.write(`divan: cannot reach ${opts.url}: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

function start(opts: Record<string, string | undefined>): void {
  let config;
  try {
    config = loadConfig({
      env: process.env,
      ...(opts.config ? { file: opts.config } : {}),
      flags: {
        httpPort: opts.port,
        bindAddress: opts.bind,
        dataDir: opts.dataDir,
        nodeName: opts.nodeName,
        q: opts.q,
        n: opts.n,
        logLevel: opts.logLevel,
        corsOrigins: opts.corsOrigins,
        grpcPort: opts.grpcPort,
        grpcBindAddress: opts.grpcBind,
        advertiseAddress: opts.advertiseAddress,
        httpAdvertiseAddress: opts.httpAdvertiseAddress,
        seeds: opts.seeds,
        clusterSecret: opts.clusterSecret,
        zone: opts.zone,
        dialOverrides: opts.dialOverrides,
        grpcTlsCert: opts.grpcTlsCert,
        grpcTlsKey: opts.grpcTlsKey,
        grpcTlsCa: opts.grpcTlsCa,
        grpcTlsServerName: opts.grpcTlsServerName,
        grpcPlaintext: (opts.grpcPlaintext as unknown) === true ? 1 : undefined,
        grpcMessageBytesMax: opts.grpcMessageBytesMax,
        membershipProfile: opts.membershipProfile,
      },
    });
  } catch (err) {
    process.stderr.write(`divan: ${(err as Error).message}\n`);
    process.exit(2);
  }
  DivanNode.start(config).then(
    (node) => {
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        node.stop().then(
          () => process.exit(0),
          (err) => {
            process.stderr.write(`divan: error while stopping: ${(err as Error).stack}\n`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    },
    (err) => {
      process.stderr.write(`divan: could not start: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}

main();
