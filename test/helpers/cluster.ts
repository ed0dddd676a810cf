/**
 * Real Divan clusters for tests: N node processes on loopback, each in its own temp
 * data directory, joined through gossip, optionally with a fault proxy on every
 * directed link so partitions can be cut and healed at the TCP level.
 *
 * Shape: node `i` (0-based index into `cluster.nodes`) is named `n{i+1}`. Every node
 * gets `--grpc-port P --advertise-address 127.0.0.1:P` with P picked before start (a
 * free port below the kernel's ephemeral range, so no port-0 bind can take it between
 * the pick and the start), one shared random `--cluster-secret`, and the loopback
 * membership profile, and `--grpc-plaintext` unless TLS files are given. Node n1 starts first without seeds; the others start with
 * `--seeds` = n1's advertised address. Proxied clusters add a `FaultProxy` per ordered
 * pair (A→B) in front of B's gRPC port and hand A `--dial-overrides` mapping B's
 * advertised address to that proxy, so each directed link can be cut by itself.
 *
 * Checkers: `checkConverged` (every live node shows the same leaf revisions of every
 * document) and `ackedWriteChecker` (no acknowledged revision is lost). Both check once
 * and throw an AssertionError listing what differs; wrap them in `eventually` to wait
 * for convergence with a deadline.
 *
 * Every HTTP call here carries a deadline, so a paused or partitioned node makes a
 * check fail, not hang. No fixed sleeps: everything waits for a condition.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { FaultProxy } from './fault-proxy';
import { Reply, request, startNode, TestNode, waitFor } from './node-process';
import { holdFreePorts } from './ports';

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left';

/** One entry of `GET /_membership`'s `members` (Divan's addition to CouchDB's format). */
export interface Member {
  name: string;
  state: MemberState;
  incarnation: number;
  address: string;
}

export interface MembershipReply {
  all_nodes: string[];
  cluster_nodes: string[];
  members?: Member[];
}

export interface ClusterOptions {
  /** How many nodes (≥ 1). */
  nodes: number;
  /** A FaultProxy on every directed link, for `partition`/`heal`/`link`. Default false. */
  proxied?: boolean;
  /** Extra environment for every node. */
  env?: Record<string, string>;
  /** Extra Divan CLI flags for every node, after the cluster flags. */
  args?: string[];
  /** Wait until every node sees every node alive before returning. Default true. */
  awaitMembers?: boolean;
  /** Deadline for the whole start, including `awaitMembers`. Default 60 s. */
  startTimeoutMs?: number;
}

/** What `checkConverged`, `ackedWriteChecker` and `request`-like helpers need of a node. */
export interface NodeLike {
  url: string;
  /** When present and exited, the node is skipped as not live. */
  proc?: { exitCode: number | null; signalCode: NodeJS.Signals | null };
}

/** Per-request deadline of the checkers and membership polls. */
const CALL_TIMEOUT_MS = 10_000;
/** Stdout lines kept per node for failure messages. */
const LOG_TAIL_LINES_MAX = 200;
/** Graceful stop allowed before SIGKILL in `stop`/`destroy`. */
const STOP_TIMEOUT_MS = 10_000;

type RunState = 'running' | 'paused' | 'stopped';

interface Slot {
  index: number;
  name: string;
  grpcPort: number;
  dataDir: string;
  /** The Divan cluster flags (plus the caller's `args`), reused on restart. */
  args: string[];
  node: TestNode | undefined;
  state: RunState;
  logTail: string[];
}

export class Cluster {
  /** Random, shared by every node. */
  readonly secret = randomBytes(16).toString('hex');
  private readonly slots: Slot[] = [];
  /** `links[a][b]`: the proxy node a dials to reach node b (proxied clusters only). */
  private readonly links: (FaultProxy | undefined)[][] = [];
  private destroyed = false;

  /** Use `startCluster`. */
  constructor(readonly options: Readonly<ClusterOptions>) {
    assert.ok(Number.isInteger(options.nodes) && options.nodes >= 1, 'a cluster has at least one node');
  }

  get proxied(): boolean {
    return this.options.proxied === true;
  }

  get size(): number {
    return this.slots.length;
  }

  /**
   * The current process of each node, by index. After `restart(i)` the entry is the new
   * process: read `cluster.nodes[i]` again rather than keeping an old reference.
   */
  get nodes(): TestNode[] {
    return this.slots.map((slot) => {
      assert.ok(slot.node, `node ${slot.name} was never started`);
      return slot.node;
    });
  }

  /** `n1`, `n2`, ... by index. */
  get names(): string[] {
    return this.slots.map((slot) => slot.name);
  }

  name(i: number): string {
    return this.slot(i).name;
  }

  /** The gRPC address node `i` advertises (and peers dial, unless overridden). */
  grpcAddress(i: number): string {
    return `127.0.0.1:${this.slot(i).grpcPort}`;
  }

  /** Running and not paused. */
  isUp(i: number): boolean {
    return this.slot(i).state === 'running';
  }

  /** Nodes that can answer now (not stopped, killed or paused): what the checkers should see. */
  liveNodes(): TestNode[] {
    return this.slots.filter((slot) => slot.state === 'running').map((slot) => slot.node!);
  }

  /** The last stdout lines (JSON log) of node `i`, oldest first. */
  logs(i: number): string[] {
    return [...this.slot(i).logTail];
  }

  /** The proxy on the directed link a→b (a dials b through it). Proxied clusters only. */
  link(a: number, b: number): FaultProxy {
    assert.ok(this.proxied, 'link() needs startCluster({ proxied: true })');
    assert.notEqual(a, b, 'a node has no link to itself');
    this.slot(a);
    this.slot(b);
    const proxy = this.links[a]![b];
    assert.ok(proxy, `no link ${a}->${b}`);
    return proxy;
  }

  /**
   * Cut every link between nodes of different groups, both directions, and heal every
   * link inside a group. Groups list node indexes; nodes listed nowhere form one more
   * group together, so `partition([[0]])` isolates n1 from the rest.
   */
  partition(groups: number[][]): void {
    const groupOf = new Map<number, number>();
    groups.forEach((group, g) => {
      for (const i of group) {
        this.slot(i);
        assert.ok(!groupOf.has(i), `node ${i} is in two groups`);
        groupOf.set(i, g);
      }
    });
    const rest = groups.length;
    for (let a = 0; a < this.size; a++) {
      for (let b = 0; b < this.size; b++) {
        if (a === b) continue;
        const together = (groupOf.get(a) ?? rest) === (groupOf.get(b) ?? rest);
        if (together) this.link(a, b).pass();
        else this.link(a, b).drop();
      }
    }
  }

  /** Every link back to `pass()` (no drop, no delay, no reset). */
  heal(): void {
    assert.ok(this.proxied, 'heal() needs startCluster({ proxied: true })');
    for (let a = 0; a < this.size; a++) for (let b = 0; b < this.size; b++) if (a !== b) this.link(a, b).pass();
  }

  /** SIGKILL node `i` and wait for it to exit (works on a paused node too). */
  async kill9(i: number): Promise<void> {
    const slot = this.slot(i);
    if (slot.node) await slot.node.kill9();
    slot.state = 'stopped';
  }

  /** SIGTERM node `i` (resuming it first if paused); SIGKILL if it has not exited in 10 s. */
  async stop(i: number): Promise<void> {
    const slot = this.slot(i);
    if (slot.node) await stopWithin(slot.node, slot.state === 'paused', STOP_TIMEOUT_MS);
    slot.state = 'stopped';
  }

  /**
   * Start node `i` again on the same data directory, HTTP and gRPC ports and flags
   * (stopping it first if it runs), with every other node as its seeds, as a
   * Kubernetes pod restarts with the whole peer list: the others never contact a
   * member that left gracefully (SIGTERM), nor n1, which first started with no seeds.
   * Resolves once its gRPC port accepts.
   */
  async restart(i: number): Promise<TestNode> {
    const slot = this.slot(i);
    if (slot.state !== 'stopped') await this.stop(i);
    const others = this.slots.filter((s) => s.index !== i).map((s) => this.grpcAddress(s.index));
    const seeds = others.length > 0 ? ['--seeds', others.join(',')] : [];
    await this.launch(slot, [...seeds], slot.node?.port ?? 0, Date.now() + 30_000);
    return slot.node!;
  }

  /** SIGSTOP node `i`: it keeps its sockets but answers nothing (peers see timeouts). */
  pause(i: number): void {
    const slot = this.slot(i);
    assert.equal(slot.state, 'running', `pause: node ${slot.name} is ${slot.state}`);
    slot.node!.proc.kill('SIGSTOP');
    slot.state = 'paused';
  }

  /** SIGCONT node `i`. */
  resume(i: number): void {
    const slot = this.slot(i);
    assert.equal(slot.state, 'paused', `resume: node ${slot.name} is ${slot.state}`);
    slot.node!.proc.kill('SIGCONT');
    slot.state = 'running';
  }

  /** `GET /_membership` on node `i`, with a deadline. */
  async membership(i: number): Promise<MembershipReply> {
    const reply = await call(this.slot(i).node!, 'GET', '/_membership');
    assert.equal(reply.status, 200, `GET /_membership on ${this.name(i)}: ${reply.status} ${reply.text}`);
    return reply.body as MembershipReply;
  }

  /**
   * Poll `GET /_membership` on node `i` until, for every name in `expected`, its
   * `members` entry exists with that state (or one of the listed states). Names not in
   * `expected` are not checked; a missing entry never matches, not even `dead`.
   * Resolves to the matching `members`; on timeout, throws with the last answer and
   * the node's recent log.
   */
  async waitForMembers(
    i: number,
    expected: Record<string, MemberState | readonly MemberState[]>,
    timeoutMs = 30_000,
  ): Promise<Member[]> {
    const slot = this.slot(i);
    let last = 'no answer yet';
    try {
      return await waitFor(
        async () => {
          try {
            const reply = await call(slot.node!, 'GET', '/_membership', { timeoutMs: 2_000 });
            last = `${reply.status} ${reply.text}`;
            const members = (reply.body as MembershipReply | undefined)?.members;
            if (reply.status !== 200 || !Array.isArray(members)) return undefined;
            return membersMatch(members, expected) ? members : undefined;
          } catch (err) {
            last = `request failed: ${(err as Error).message}`;
            return undefined;
          }
        },
        timeoutMs,
        `members ${JSON.stringify(expected)} on ${slot.name}`,
      );
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\nlast /_membership answer: ${last}\nlast log lines of ${slot.name}:\n${slot.logTail.slice(-30).join('\n')}`,
      );
    }
  }

  /** Wait until every running node sees every node in `alive` (default: all) as alive. */
  async waitForAllAlive(alive: number[] = this.slots.map((s) => s.index), timeoutMs = 30_000): Promise<void> {
    const expected = Object.fromEntries(alive.map((i) => [this.name(i), 'alive' as const]));
    const deadline = Date.now() + timeoutMs;
    for (const slot of this.slots) {
      if (slot.state !== 'running') continue;
      await this.waitForMembers(slot.index, expected, Math.max(1, deadline - Date.now()));
    }
  }

  /** Stop every node (SIGKILL after 10 s), close every proxy, remove every data directory. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.allSettled(this.slots.map((slot) => (slot.node ? stopWithin(slot.node, slot.state === 'paused', STOP_TIMEOUT_MS) : undefined)));
    for (const slot of this.slots) slot.state = 'stopped';
    await Promise.allSettled(this.links.flat().map((proxy) => proxy?.close()));
    for (const slot of this.slots) rmSync(slot.dataDir, { recursive: true, force: true });
  }

  /** @internal The body of `startCluster`. */
  async start(): Promise<void> {
    const count = this.options.nodes;
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 60_000);
    const held = await holdFreePorts(count);
    try {
      for (let i = 0; i < count; i++) {
        this.slots.push({
          index: i,
          name: `n${i + 1}`,
          grpcPort: held.ports[i]!,
          dataDir: mkdtempSync(path.join(os.tmpdir(), `divan-cluster-n${i + 1}-`)),
          args: [],
          node: undefined,
          state: 'stopped',
          logTail: [],
        });
      }
      if (this.proxied) await this.startProxies();
    } finally {
      await held.release(); // just before the nodes bind them
    }
    for (const slot of this.slots) slot.args = this.clusterArgs(slot);
    const [first, ...others] = this.slots;
    await this.launch(first!, [], 0, deadline);
    const seeds = ['--seeds', this.grpcAddress(0)];
    const started = await Promise.allSettled(others.map((slot) => this.launch(slot, seeds, 0, deadline)));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    if (this.options.awaitMembers !== false && count > 1) await this.waitForAllAlive(undefined, Math.max(1, deadline - Date.now()));
  }

  private slot(i: number): Slot {
    const slot = this.slots[i];
    assert.ok(slot, `no node ${i} (the cluster has ${this.slots.length}; indexes are 0-based)`);
    return slot;
  }

  private async startProxies(): Promise<void> {
    for (let a = 0; a < this.slots.length; a++) {
      const row: (FaultProxy | undefined)[] = [];
      for (let b = 0; b < this.slots.length; b++) {
        if (a === b) {
          row.push(undefined);
          continue;
        }
        const proxy = new FaultProxy({ host: '127.0.0.1', port: this.slots[b]!.grpcPort }, `n${a + 1}->n${b + 1}`);
        row.push(proxy);
        await proxy.listen();
      }
      this.links.push(row);
    }
  }

  private clusterArgs(slot: Slot): string[] {
    const args = [
      '--grpc-port',
      String(slot.grpcPort),
      '--advertise-address',
      this.grpcAddress(slot.index),
      '--node-name',
      slot.name,
      '--cluster-secret',
      this.secret,
      '--membership-profile',
      'loopback',
    ];
    // Clustered nodes refuse plain text unless told: tests that want TLS pass its files.
    const tls = this.options.env?.DIVAN_GRPC_TLS_CERT !== undefined || (this.options.args ?? []).includes('--grpc-tls-cert');
    if (!tls) args.push('--grpc-plaintext');
    if (this.proxied) {
      const overrides: Record<string, string> = {};
      for (const peer of this.slots) {
        if (peer.index !== slot.index) overrides[this.grpcAddress(peer.index)] = this.links[slot.index]![peer.index]!.address;
      }
      args.push('--dial-overrides', JSON.stringify(overrides));
    }
    return args;
  }

  /** Start one node with its flags plus `extra` (seeds), then wait until its gRPC port accepts. */
  private async launch(slot: Slot, extra: string[], httpPort: number, deadline: number): Promise<void> {
    const node = await startNode({
      dataDir: slot.dataDir,
      port: httpPort,
      ...(this.options.env ? { env: this.options.env } : {}),
      args: [...slot.args, ...extra, ...(this.options.args ?? [])],
      onStdoutLine: (line) => {
        slot.logTail.push(line);
        if (slot.logTail.length > LOG_TAIL_LINES_MAX) slot.logTail.splice(0, slot.logTail.length - LOG_TAIL_LINES_MAX);
      },
    });
    slot.node = node;
    slot.state = 'running';
    await waitFor(
      async () => {
        if (node.proc.exitCode !== null || node.proc.signalCode !== null) {
          throw new Error(`node ${slot.name} exited (${node.proc.exitCode ?? node.proc.signalCode}): ${node.stderr.join('')}`);
        }
        return canConnect(slot.grpcPort);
      },
      Math.max(1, deadline - Date.now()),
      `gRPC port ${slot.grpcPort} of ${slot.name} to accept connections`,
    );
  }
}

/**
 * Start `options.nodes` Divan nodes as one cluster (see the module header). On any
 * failure everything started so far is destroyed before the error is thrown.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const cluster = new Cluster(options);
  try {
    await cluster.start();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}

function membersMatch(members: Member[], expected: Record<string, MemberState | readonly MemberState[]>): boolean {
  for (const [name, want] of Object.entries(expected)) {
    const member = members.find((m) => m.name === name);
    if (!member) return false;
    const allowed: readonly MemberState[] = typeof want === 'string' ? [want] : want;
    if (!allowed.includes(member.state)) return false;
  }
  return true;
}

async function stopWithin(node: TestNode, paused: boolean, timeoutMs: number): Promise<void> {
  if (node.proc.exitCode !== null || node.proc.signalCode !== null) return;
  if (paused) node.proc.kill('SIGCONT'); // a stopped process never handles SIGTERM
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const outcome = await Promise.race([node.stop().then(() => 'stopped' as const), timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') await node.kill9();
}


function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/* ------------------------------------------------------------------ HTTP with a deadline */

/** One admin JSON request (`request()` of node-process.ts) that fails after `timeoutMs`. */
export function call(
  node: { url: string },
  method: string,
  urlPath: string,
  options: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Reply> {
  return request(node, method, urlPath, {
    ...options,
    headers: { accept: 'application/json', ...options.headers },
    timeoutMs: options.timeoutMs ?? CALL_TIMEOUT_MS,
  });
}

/* ------------------------------------------------------------------ checkers */

/** One leaf revision as a node reports it, with its ancestry (`_revisions`), newest first. */
interface Leaf {
  rev: string;
  deleted: boolean;
  /** The leaf itself and every ancestor the node still knows. */
  path: string[];
}

export interface ConvergenceSummary {
  /** Documents compared. */
  docs: number;
  /** Live nodes compared. */
  nodes: number;
  /** Documents with more than one non-deleted leaf (conflicts, identical everywhere). */
  conflicted: number;
  /** Documents whose every leaf is deleted. */
  deleted: number;
}

export interface CheckOptions {
  /** Extra query string for the open_revs reads, e.g. `r=3`. */
  query?: string;
  /** Reads in flight at once. Default 8. */
  concurrency?: number;
  /** Deadline per request. Default 10 s. */
  timeoutMs?: number;
}

/** Differences listed in one failure message at most. */
const DIFFS_SHOWN_MAX = 20;
/** `_all_docs` rows per page, and pages at most (1,000,000 ids). */
const ALL_DOCS_PAGE_ROWS = 1_000;
const ALL_DOCS_PAGES_MAX = 1_000;

/**
 * Assert that every live node reports the same leaf revisions (and deleted flags) for
 * every document: the ids given, or else the union of `_all_docs` over the live nodes.
 * Reads `GET /{db}/{id}?open_revs=all&revs=true` on each node. Throws an AssertionError
 * listing up to 20 differences; resolves to a summary when all agree.
 */
export async function checkConverged(
  nodes: readonly NodeLike[],
  db: string,
  ids?: Iterable<string>,
  options: CheckOptions = {},
): Promise<ConvergenceSummary> {
  const live = liveOnly(nodes);
  assert.ok(live.length > 0, 'checkConverged: no live node');
  const docIds = ids ? [...new Set(ids)] : await allDocIds(live, db, options);
  const diffs: string[] = [];
  let conflicted = 0;
  let deleted = 0;
  await mapLimit(docIds, options.concurrency ?? 8, async (id) => {
    const views = await Promise.all(live.map(async (node) => ({ node, leaves: await readLeaves(node, db, id, options) })));
    const reference = describeLeaves(views[0]!.leaves);
    for (const view of views.slice(1)) {
      const described = describeLeaves(view.leaves);
      if (described !== reference) diffs.push(`doc ${JSON.stringify(id)}: ${views[0]!.node.url} has ${reference}, ${view.node.url} has ${described}`);
    }
    const leaves = views[0]!.leaves;
    if (leaves.filter((leaf) => !leaf.deleted).length > 1) conflicted++;
    if (leaves.length > 0 && leaves.every((leaf) => leaf.deleted)) deleted++;
  });
  if (diffs.length > 0) {
    diffs.sort();
    assert.fail(
      `${diffs.length} difference(s) between ${live.length} nodes in ${db} over ${docIds.length} docs:\n` +
        diffs.slice(0, DIFFS_SHOWN_MAX).join('\n') +
        (diffs.length > DIFFS_SHOWN_MAX ? `\n... and ${diffs.length - DIFFS_SHOWN_MAX} more` : ''),
    );
  }
  return { docs: docIds.length, nodes: live.length, conflicted, deleted };
}

export interface AckedWriteChecker {
  /**
   * Record the acknowledged writes in one answer: a single-document write (200/201/202
   * with `ok`, `id`, `rev`: PUT, POST, DELETE, COPY) or a `_bulk_docs` answer (201/202,
   * every row with an `id` and `rev` and no `error`). Anything else records nothing.
   * Returns how many revisions it recorded.
   */
  record(reply: { status: number; body: unknown }): number;
  /** Record one acknowledged revision by hand. */
  recordRev(id: string, rev: string): void;
  /** Acknowledged revisions by document id. */
  readonly acked: ReadonlyMap<string, ReadonlySet<string>>;
  /** Acknowledged revisions, all documents. */
  readonly size: number;
  ids(): string[];
  /**
   * Assert that on every live node each acknowledged revision is a leaf or an ancestor of
   * a leaf of its document. Throws an AssertionError listing up to 20 lost revisions.
   */
  verify(nodes: readonly NodeLike[], db: string, options?: CheckOptions): Promise<{ docs: number; revs: number; nodes: number }>;
}

/** A recorder of acknowledged writes, and the check that none was lost. */
export function ackedWriteChecker(): AckedWriteChecker {
  const acked = new Map<string, Set<string>>();
  let size = 0;
  const recordRev = (id: string, rev: string) => {
    assert.ok(typeof id === 'string' && typeof rev === 'string' && /^\d+-/.test(rev), `not a doc id and rev: ${id} ${rev}`);
    let revs = acked.get(id);
    if (!revs) acked.set(id, (revs = new Set()));
    if (!revs.has(rev)) size++;
    revs.add(rev);
  };
  return {
    acked,
    get size() {
      return size;
    },
    ids: () => [...acked.keys()],
    recordRev,
    record(reply) {
      if (reply.status !== 200 && reply.status !== 201 && reply.status !== 202) return 0;
      const body = reply.body as any; // eslint-disable-line @typescript-eslint/no-explicit-any
      if (Array.isArray(body)) {
        let recorded = 0;
        for (const row of body) {
          if (row && typeof row.id === 'string' && typeof row.rev === 'string' && row.error === undefined) {
            recordRev(row.id, row.rev);
            recorded++;
          }
        }
        return recorded;
      }
      if (body && body.ok === true && typeof body.id === 'string' && typeof body.rev === 'string') {
        recordRev(body.id, body.rev);
        return 1;
      }
      return 0;
    },
    async verify(nodes, db, options = {}) {
      const live = liveOnly(nodes);
      assert.ok(live.length > 0, 'ackedWriteChecker.verify: no live node');
      const lost: string[] = [];
      const ids = [...acked.keys()];
      await mapLimit(ids, options.concurrency ?? 8, async (id) => {
        for (const node of live) {
          const leaves = await readLeaves(node, db, id, options);
          const known = new Set(leaves.flatMap((leaf) => leaf.path));
          for (const rev of acked.get(id)!) {
            if (!known.has(rev)) lost.push(`doc ${JSON.stringify(id)} rev ${rev} is lost on ${node.url} (leaves: ${describeLeaves(leaves)})`);
          }
        }
      });
      if (lost.length > 0) {
        lost.sort();
        assert.fail(
          `${lost.length} acknowledged revision(s) lost in ${db}:\n` +
            lost.slice(0, DIFFS_SHOWN_MAX).join('\n') +
            (lost.length > DIFFS_SHOWN_MAX ? `\n... and ${lost.length - DIFFS_SHOWN_MAX} more` : ''),
        );
      }
      return { docs: ids.length, revs: size, nodes: live.length };
    },
  };
}

/**
 * Retry an async check (one that throws when not yet true) until it passes, or throw its
 * last failure after `timeoutMs`. For eventual properties: `eventually(() =>
 * checkConverged(cluster.liveNodes(), db), 30_000)`.
 */
export async function eventually<T>(check: () => Promise<T>, timeoutMs: number, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function liveOnly<N extends NodeLike>(nodes: readonly N[]): N[] {
  return nodes.filter((node) => !node.proc || (node.proc.exitCode === null && node.proc.signalCode === null));
}

/** The path of a document: `_design/x` keeps its slash, everything else is one segment. */
function docPath(db: string, id: string): string {
  const doc = id.startsWith('_design/') ? '_design/' + encodeURIComponent(id.slice('_design/'.length)) : encodeURIComponent(id);
  return `/${encodeURIComponent(db)}/${doc}`;
}

/** Every leaf of `id` on `node`; none when the node does not know the document (404). */
async function readLeaves(node: NodeLike, db: string, id: string, options: CheckOptions): Promise<Leaf[]> {
  const query = 'open_revs=all&revs=true' + (options.query ? '&' + options.query : '');
  const reply = await call(node, 'GET', `${docPath(db, id)}?${query}`, { timeoutMs: options.timeoutMs ?? CALL_TIMEOUT_MS });
  if (reply.status === 404) return [];
  assert.equal(reply.status, 200, `GET ${db}/${id} open_revs=all on ${node.url}: ${reply.status} ${reply.text}`);
  assert.ok(Array.isArray(reply.body), `open_revs answer is not a JSON array on ${node.url}: ${reply.text.slice(0, 200)}`);
  const leaves: Leaf[] = [];
  for (const entry of reply.body as { ok?: Record<string, unknown>; missing?: string }[]) {
    if (!entry.ok) continue; // `missing` cannot answer open_revs=all; nothing to compare
    const doc = entry.ok;
    const rev = doc._rev as string;
    assert.ok(typeof rev === 'string', `open_revs entry without _rev on ${node.url}`);
    leaves.push({ rev, deleted: doc._deleted === true, path: revisionPath(rev, doc._revisions) });
  }
  leaves.sort((a, b) => (a.rev < b.rev ? -1 : a.rev > b.rev ? 1 : 0));
  return leaves;
}

/** `_revisions: {start, ids}` as full revs, newest first; just the leaf when absent. */
function revisionPath(rev: string, revisions: unknown): string[] {
  const r = revisions as { start?: unknown; ids?: unknown } | undefined;
  if (!r || typeof r.start !== 'number' || !Array.isArray(r.ids)) return [rev];
  const start = r.start;
  const path = (r.ids as string[]).map((hash, k) => `${start - k}-${hash}`);
  assert.equal(path[0], rev, `_revisions does not start at its leaf ${rev}`);
  return path;
}

function describeLeaves(leaves: readonly Leaf[]): string {
  if (leaves.length === 0) return '[] (no such doc)';
  return '[' + leaves.map((leaf) => leaf.rev + (leaf.deleted ? ' (deleted)' : '')).join(', ') + ']';
}

/** The union of `_all_docs` ids over `nodes`, paged. */
async function allDocIds(nodes: readonly NodeLike[], db: string, options: CheckOptions): Promise<string[]> {
  const ids = new Set<string>();
  for (const node of nodes) {
    let startkey: string | undefined;
    for (let page = 0; ; page++) {
      assert.ok(page < ALL_DOCS_PAGES_MAX, `_all_docs of ${db} on ${node.url} has more than ${ALL_DOCS_PAGES_MAX} pages`);
      const from = startkey === undefined ? '' : `&startkey=${encodeURIComponent(JSON.stringify(startkey))}&skip=1`;
      const reply = await call(node, 'GET', `/${encodeURIComponent(db)}/_all_docs?limit=${ALL_DOCS_PAGE_ROWS}${from}`, {
        timeoutMs: options.timeoutMs ?? CALL_TIMEOUT_MS,
      });
      assert.equal(reply.status, 200, `GET ${db}/_all_docs on ${node.url}: ${reply.status} ${reply.text}`);
      const rows = (reply.body as { rows: { id: string }[] }).rows;
      for (const row of rows) ids.add(row.id);
      if (rows.length < ALL_DOCS_PAGE_ROWS) break;
      startkey = rows[rows.length - 1]!.id;
    }
  }
  return [...ids].sort();
}

/** `fn` over `items`, at most `limit` at once; the first failure fails the whole and stops new work. */
async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < items.length && !failed) {
      try {
        await fn(items[next++]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * One cluster for the enclosing suite (or the whole file, at top level): started in a
 * `before` hook, destroyed in an `after` hook. Call the returned accessor inside tests.
 */
export function clusterPerSuite(options: ClusterOptions): () => Cluster {
  let cluster: Cluster | undefined;
  before(async () => {
    cluster = await startCluster(options);
  });
  after(async () => {
    await cluster?.destroy();
  });
  return () => {
    assert.ok(cluster, 'the cluster did not start');
    return cluster;
  };
}
