/**
 * Free TCP ports picked in advance and held (listening) until released, for nodes
 * that must know each other's ports before they start (cluster tests, the cluster
 * loadtest). Ports come from below the kernel's ephemeral range when it is known, so
 * no bind to port 0 (another node's HTTP listener, an outgoing connection) can take
 * one between release and the node binding it.
 */
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';

export async function holdFreePorts(count: number): Promise<{ ports: number[]; release(): Promise<void> }> {
  const servers: net.Server[] = [];
  const release = async (): Promise<void> => {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  };
  const low = ephemeralLow();
  const range = low !== undefined && low > 12_000 ? { min: 10_000, max: low - 1 } : undefined;
  for (let attempt = 0; servers.length < count; attempt++) {
    if (attempt >= count * 50) {
      await release();
      throw new Error('could not find free ports');
    }
    const server = await listenOn(range ? randomInt(range.min, range.max + 1) : 0);
    if (server) servers.push(server);
  }
  return { ports: servers.map((server) => (server.address() as net.AddressInfo).port), release };
}

function ephemeralLow(): number | undefined {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : undefined;
  } catch {
    return undefined;
  }
}

function listenOn(port: number): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(undefined));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve(server));
  });
}
