/**
 * This node as a member of a cluster: the gRPC server and peer clients, SWIM
 * membership over them, the catalog's view of the cluster (where new databases go,
 * how to reach a remote copy, how to tell the others about a catalog change),
 * catalog anti-entropy, the shard sync scheduler, and the adoption of orphan copies
 * (instances that lost a creation race: see catalog.ts).
 *
 * A single node is a cluster of one: the same code runs with no seeds.
 *
 * Timers are owned here and all stopped by `stop()`.
 */
import { DocInfoCache } from '../shard/doc-info-cache';
import { CompactionScheduler } from './compaction';
import type { CompactionProgress } from '../shard/compaction';
import { rangeName, ranges } from '../ring/ranges';
import type { SandboxPool } from '../shard/js/sandbox';
import { randomBytes } from 'node:crypto';
import { NotFoundError, UnavailableError } from '../errors';
import { placeDatabase, type RingMember } from '../ring/placement';
import { copyCheckpoint, pushToSibling, SyncTarget } from '../shard/sync';
import { nodeMetaKey } from '../storage/keys';
import type { Store } from '../storage/store';
import type { Logger } from '../api/http/context';
import type { DbHandle, ShardClient } from '../api/coordinator/shard-client';
import { readDocInfos } from '../api/coordinator/doc-infos';
import { updateDocs } from '../api/coordinator/doc-update';
import { copyLocalDocs } from '../api/coordinator/local-docs';
import { Catalog, CatalogEntry, ClusterView, holders, OrphanCopy, SyncedEntry } from './catalog';
import type { Config } from './config';
import { lanProfile, loopbackProfile } from './membership/config';
import { Membership } from './membership/membership';
import type { AckMessage, Member, MemberUpdate, MembershipTransport, PingMessage } from './membership/types';
import { PeerClients } from './rpc/client';
import type { Message } from './rpc/proto';
import { RpcServer } from './rpc/server';
import { transportFor } from './rpc/tls';
import { RemoteShardClient, shardHandlers } from './rpc/shard-service';

export interface MemberView {
  name: string;
  state: string;
  incarnation: number;
  address: string;
  httpAddress: string;
  zone?: string;
}

export class Cluster {
  readonly self: string;
  readonly address: string;
  readonly catalog: Catalog;
  private readonly compaction: CompactionScheduler;
  private readonly docInfoCache: DocInfoCache;
  /** Made by `join()`, once this node's HTTP address is known. */
  private membershipOrUndefined: Membership | undefined;
  private readonly rpc: RpcServer;
  private readonly peers: PeerClients;
  private readonly config: Readonly<Config>;
  private readonly log: Logger;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly syncing = new Map<string, { running: boolean; again: boolean }>();
  private joined = false;
  private stopped = false;

  private constructor(init: {
    self: string;
    address: string;
    catalog: Catalog;
    rpc: RpcServer;
    peers: PeerClients;
    config: Readonly<Config>;
    log: Logger;
    compaction: CompactionScheduler;
    docInfoCache: DocInfoCache;
  }) {
    this.compaction = init.compaction;
    this.docInfoCache = init.docInfoCache;
    this.self = init.self;
    this.address = init.address;
    this.catalog = init.catalog;
    this.rpc = init.rpc;
    this.peers = init.peers;
    this.config = init.config;
    this.log = init.log;
  }

  private get membership(): Membership {
    if (!this.membershipOrUndefined) throw new NotFoundError('node is starting', 'not_ready');
    return this.membershipOrUndefined;
  }

  /**
   * Bind the gRPC server and load the catalog; membership starts with `join()`, once
   * the HTTP address is known.
   */
  static async open(options: {
    config: Readonly<Config>;
    store: Store;
    log: Logger;
    js: SandboxPool;
    onIndexed?: (docs: number) => void;
    onCompacted?: (ok: boolean, progress: CompactionProgress) => void;
  }): Promise<Cluster> {
    const { config, store, log } = options;
    const secret = config.clusterSecret || (await storedSecret(store));
    const transport = transportFor(
      config.grpcTlsCert ? { certFile: config.grpcTlsCert, keyFile: config.grpcTlsKey, caFile: config.grpcTlsCa, serverName: config.grpcTlsServerName } : undefined,
    );
    const dialOverrides = config.dialOverrides ? (JSON.parse(config.dialOverrides) as Record<string, string>) : {};
    const peers = new PeerClients({ secret, dialOverrides, transport, messageBytesMax: config.grpcMessageBytesMax, authSkewMs: config.grpcAuthSkewMs });
    const rpc = new RpcServer({
      bindAddress: config.grpcBindAddress,
      port: config.grpcPort,
      secret,
      authSkewMs: config.grpcAuthSkewMs,
      messageBytesMax: config.grpcMessageBytesMax,
      noncesMax: config.grpcNoncesMax,
      log,
      transport,
    });
    // Handlers are bound before the objects they use exist; calls that arrive during
    // start-up are refused as unavailable and retried by the caller.
    let cluster: Cluster | undefined;
    const need = () => {
      if (!cluster) throw new NotFoundError('node is starting', 'not_ready');
      return cluster;
    };
    rpc.add('Membership', {
      Ping: (req: Message) => toProtoGossip(need().membership.handlePing(fromProtoGossip(req))),
      PingReq: async (req: Message) => ({
        acked: await need().membership.handlePingReq({ name: req.targetName, address: req.targetAddress }, fromProtoGossip(req.message)),
      }),
      PushPull: (req: Message) => ({ members: need().membership.handlePushPull((req.members as Message[]).map(fromProtoMember)).map(toProtoMember) }),
    });
    rpc.add('Catalog', {
      Sync: async (req: Message) => {
        const c = need();
        await c.catalog.merge(JSON.parse((req.entriesJson as Buffer).toString('utf8')) as SyncedEntry[]);
        return { entriesJson: Buffer.from(JSON.stringify(c.catalog.allEntries()), 'utf8') };
      },
    });
    rpc.add('Shard', shardHandlers((ref) => need().catalog.localCopy(ref.dbUuid, ref.range)));
    const port = await rpc.listen();
    const address = config.advertiseAddress || `${config.grpcBindAddress}:${port}`;
    // Call tokens name the address they were made for: peers dial the advertised one.
    rpc.setTargets([address, `${config.grpcBindAddress}:${port}`]);
    const self = config.nodeName || (await storedName(store, `divan@${address}`));
    log.info({ component: 'rpc', address, port, node: self, tls: transport.tls }, 'listening');
    if (!transport.tls && config.grpcPlaintext === 1) log.warn({ component: 'rpc' }, 'inter-node traffic is plain text (grpcPlaintext=1): use it only on a trusted network');

    const membershipOf = () => cluster?.membershipOrUndefined;
    const view: ClusterView = {
      self,
      placementMembers: () => placementMembers(membershipOf(), self, config.zone),
      remoteCopy: (node, entry, range): ShardClient =>
        new RemoteShardClient({
          node,
          copy: { db: entry.name, dbUuid: entry.uuid, range },
          peers,
          addressOf: (name) => membershipOf()?.member(name)?.address,
          isReachable: (name) => {
            const state = membershipOf()?.member(name)?.state;
            return state !== 'dead' && state !== 'left';
          },
          timeoutMs: config.rpcTimeoutMs,
          updateBytesMax: config.requestBytesMax,
          onWriteFailed: (node) => cluster?.syncSoon(entry, range, node),
        }),
      broadcast: async (entries) => {
        const membership = membershipOf();
        if (!membership) return;
        const others = membership.members().filter((m) => m.name !== self && (m.state === 'alive' || m.state === 'suspect'));
        await Promise.allSettled(
          others.map((m) =>
            peers.unary(m.address, 'Catalog', 'Sync', { entriesJson: Buffer.from(JSON.stringify(entries), 'utf8') }, 2000),
          ),
        );
      },
    };
    const compaction = new CompactionScheduler(config, log, options.onCompacted);
    const docInfoCache = new DocInfoCache(config.docInfoCacheBytes);
    const catalog = await Catalog.load(store, {
      maintenance: compaction,
      docInfoCache,
      limits: { updateBatchDocsMax: config.updateBatchDocsMax, updateQueueDocsMax: config.updateQueueDocsMax },
      defaultRevsLimit: config.revsLimit,
      cluster: view,
      indexing: {
        js: options.js,
        batchDocsMax: config.viewBatchDocsMax,
        mapBatchBytesMax: config.viewMapBatchBytesMax,
        sideGroupRowsMax: config.viewSideGroupRowsMax,
        warmDelayMs: config.viewWarmDelayMs,
        warmIdleMs: config.viewWarmIdleMs,
        reduceLimitBytes: config.viewReduceLimitBytes,
        log: (event) => log.info({ component: 'views', ...event }, 'view index'),
        ...(options.onIndexed ? { onIndexed: options.onIndexed } : {}),
      },
      onCorrupt: ({ copyId, docId, error }) =>
        log.error({ component: 'shard', copyId, docId, err: error instanceof Error ? error.stack : String(error) }, 'stored record is corrupt'),
    });
    cluster = new Cluster({ self, address, catalog, rpc, peers, config, log, compaction, docInfoCache });
    compaction.start(catalog);
    return cluster;
  }


  private readonly memberListeners = new Set<() => void>();

  /** Called whenever a member changes state (joins, is suspected, dies, leaves). */
  onMembersChange(listener: () => void): () => void {
    this.memberListeners.add(listener);
    return () => this.memberListeners.delete(listener);
  }

  /** Names of the members that are alive or suspect (owners of background jobs are chosen among them). */
  liveMemberNames(): string[] {
    if (!this.membershipOrUndefined) return [this.self];
    return this.membership
      .members()
      .filter((m) => m.state === 'alive' || m.state === 'suspect')
      .map((m) => m.name);
  }

  /** Start membership and join the seeds; catalog and shard sync follow. Resolves when ready. */
  async join(httpAddress: string): Promise<void> {
    this.membershipOrUndefined = new Membership({
      self: { name: this.self, address: this.address, httpAddress, ...(this.config.zone ? { zone: this.config.zone } : {}) },
      transport: grpcTransport(this.peers),
      config: this.config.membershipProfile === 'loopback' ? loopbackProfile : lanProfile,
      log: this.log,
    });
    this.membership.on('change', (member: Member, previous: string | undefined) => {
      this.catalog.refresh();
      for (const listener of this.memberListeners) listener();
      if (member.name !== this.self && member.state === 'alive' && previous !== 'alive') {
        // A channel to a node that was down may sit in reconnect backoff: start afresh.
        if (previous === 'dead' || previous === 'left') this.peers.reset(member.address);
        void this.syncCatalogWith(member.address);
        this.syncAll(member.name);
      }
    });
    this.membership.start();
    const seeds = this.config.seeds
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s && s !== this.address);
    if (seeds.length > 0) {
      const answered = await this.membership.join(seeds);
      if (answered > 0) {
        for (const seed of seeds) await this.syncCatalogWith(seed);
      }
    }
    this.joined = true;
    this.every(this.config.catalogSyncIntervalMs, () => this.antiEntropy());
    this.every(this.config.syncIntervalMs, () => this.syncAll());
    this.catalog.onChange(() => this.adoptOrphans());
    this.every(ADOPT_RETRY_MS, () => this.adoptOrphans());
    this.adoptOrphans();
  }

  /** /_up: joined the cluster and holds the catalog. */
  ready(): boolean {
    return this.joined && !this.stopped;
  }

  members(): MemberView[] {
    if (!this.membershipOrUndefined) return [];
    return this.membership.members().map((m) => ({
      name: m.name,
      state: m.state,
      incarnation: m.incarnation,
      address: m.address,
      httpAddress: m.httpAddress,
      ...(m.zone ? { zone: m.zone } : {}),
    }));
  }

  httpAddressOfMember(name: string): string | undefined {
    const member = this.membershipOrUndefined?.member(name);
    return member && member.state !== 'dead' && member.state !== 'left' ? member.httpAddress : undefined;
  }

  /** Copy compactions running or waiting on this node. */
  /** The node's doc-info cache figures (metrics). */
  docInfoCacheStats(): ReturnType<DocInfoCache['stats']> {
    return this.docInfoCache.stats();
  }

  compactionCount(): number {
    return this.compaction.count();
  }

  /** Compactions of this node's copies, as `_active_tasks` shows them. */
  compactionTasks(): Record<string, unknown>[] {
    return this.compaction.tasks(this.self);
  }

  /** View index builds running on this node's copies, as `_active_tasks` shows them. */
  indexTasks(): Record<string, unknown>[] {
    const tasks: Record<string, unknown>[] = [];
    for (const { entry, range, copy } of this.catalog.copies()) {
      const shard = `shards/${rangeName(ranges(entry.q)[range]!)}/${entry.name}`;
      for (const task of copy.indexTasks()) {
        tasks.push({
          type: 'indexer',
          node: this.self,
          pid: `<${copy.copyId}.${task.signature.slice(0, 8)}>`,
          database: shard,
          design_document: task.ddocId,
          changes_done: task.changesDone,
          total_changes: task.totalChanges,
          progress: task.totalChanges > 0 ? Math.min(100, Math.floor((100 * task.changesDone) / task.totalChanges)) : 0,
          started_on: task.startedOnSec,
          updated_on: task.updatedOnSec,
        });
      }
    }
    return tasks;
  }

  /** Changes not yet in this node's view indexes, over all local copies. */
  async indexLag(): Promise<number> {
    let lag = 0;
    for (const { copy } of this.catalog.copies()) lag += await copy.indexLag();
    return lag;
  }

  /** Push every local copy of `db` to its siblings now; resolves when done. */
  async syncDatabase(db: string): Promise<void> {
    const entry = this.catalog.entry(db);
    if (!entry) throw new NotFoundError('Database does not exist.');
    await Promise.all(
      this.catalog
        .copies()
        .filter((c) => c.entry.uuid === entry.uuid)
        .flatMap((c) => siblingsOf(c.entry, c.range, this.self).map((sibling) => this.syncCopy(c.entry, c.range, sibling))),
    );
  }

  private readonly rebalancing = new Map<string, Promise<RebalanceResult>>();

  /**
   * Move a database's copies to the placement its name calls for over the members
   * alive now: a node that joined gets its share of ranges, a dead node's ranges get
   * another holder. Two steps through the catalog, so no write is lost on the way:
   * 1. `next` is set: the new holders open empty copies and every write from then on
   *    reaches them too; each new copy is filled from every live established copy
   *    (revs_diff and replicated edits, the shard sync push).
   * 2. The placement becomes `next`. Holders left out adopt their copies into the new
   *    ones (writing anything only they have) and clear them; a dead holder does so
   *    when it comes back.
   * A failure leaves step 1 in place (writes still reach every copy); running the
   * rebalance again goes on from there. One rebalance per database at a time here.
   */
  rebalance(name: string): Promise<RebalanceResult> {
    const running = this.rebalancing.get(name);
    if (running) return running;
    const run = this.runRebalance(name).finally(() => this.rebalancing.delete(name));
    this.rebalancing.set(name, run);
    return run;
  }

  private async runRebalance(name: string): Promise<RebalanceResult> {
    const entry = this.catalog.entry(name);
    if (!entry) throw new NotFoundError('Database does not exist.');
    const members = placementMembers(this.membershipOrUndefined, this.self, this.config.zone);
    if (members.length < entry.n) {
      throw new UnavailableError(
        `${members.length} live node(s) cannot hold n=${entry.n} copies of each range; bring nodes back or add some first`,
        'insufficient_nodes',
      );
    }
    const target = placeDatabase(name, entry.q, entry.n, members);
    const moved = target.flatMap((nodes, range) => {
      const before = entry.placement[range]!;
      const added = nodes.filter((node) => !before.includes(node));
      const removed = before.filter((node) => !nodes.includes(node));
      return added.length > 0 || removed.length > 0 ? [{ range, added, removed }] : [];
    });
    if (moved.length === 0) {
      if (entry.next) await this.catalog.setPlacement(name, entry.placement, undefined);
      return { moved: [] };
    }
    if (!samePlacement(entry.next, target)) await this.catalog.setPlacement(name, entry.placement, target);
    const db = await this.catalog.open(name);
    if (!db) throw new NotFoundError('Database does not exist.');
    for (const { range, added } of moved) {
      const copies = new Map(db.ranges[range]!.copies.map((copy) => [copy.node, copy]));
      const sources = entry.placement[range]!.filter((node) => {
        const state = node === this.self ? 'alive' : this.membership.member(node)?.state;
        return state === 'alive' || state === 'suspect';
      });
      if (sources.length === 0) throw new UnavailableError(`No live copy of range ${db.ranges[range]!.name} to copy from`, 'insufficient_nodes');
      for (const source of sources) {
        for (const node of added) {
          await pushToSibling(copies.get(source)!, copies.get(node)!, { batchDocsMax: this.config.syncBatchDocsMax, isCancelled: () => this.stopped, purges: {} });
        }
      }
      // Replication checkpoints (_local docs) are not in the changes feed: copy them too.
      for (const node of added) await copyLocalDocs(copies.get(sources[0]!)!, copies.get(node)!);
    }
    if (this.stopped) throw new UnavailableError('This node is shutting down', 'service_unavailable');
    await this.catalog.setPlacement(name, target, undefined);
    this.log.info({ component: 'catalog', db: name, moved: moved.length }, 'rebalanced');
    return { moved: moved.map(({ range, added, removed }) => ({ range: db.ranges[range]!.name, added, removed })) };
  }

  get rejectedCalls(): number {
    return this.rpc.rejected;
  }

  async stop(graceful: boolean): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const timer of this.syncTimers.values()) clearTimeout(timer);
    await this.compaction.close();
    if (graceful) await this.membershipOrUndefined?.leave(1000).catch(() => undefined);
    this.membershipOrUndefined?.stop();
    await this.rpc.close();
    this.peers.close();
  }

  // ---- internals ---------------------------------------------------------------------

  private every(ms: number, work: () => void): void {
    const timer = setInterval(work, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private async syncCatalogWith(address: string): Promise<void> {
    try {
      const reply = await this.peers.unary(
        address,
        'Catalog',
        'Sync',
        { entriesJson: Buffer.from(JSON.stringify(this.catalog.allEntries()), 'utf8') },
        5000,
      );
      await this.catalog.merge(JSON.parse((reply.entriesJson as Buffer).toString('utf8')) as SyncedEntry[]);
    } catch (err) {
      this.log.debug({ component: 'catalog', address, err: String(err) }, 'catalog sync failed');
    }
  }

  private antiEntropy(): void {
    const others = this.membership.members().filter((m) => m.name !== this.self && m.state === 'alive');
    const pick = others[Math.floor(Math.random() * others.length)];
    if (pick) void this.syncCatalogWith(pick.address);
  }

  private readonly adopting = new Set<OrphanCopy>();

  /**
   * Write every revision of each orphan copy into the winning instance of its name
   * (through the coordinator, so into all its copies), then clear the orphan. Runs on
   * catalog changes and every ADOPT_RETRY_MS until done; progress is checkpointed in
   * the orphan, so a retry or a restart goes on where it stopped.
   */
  private adoptOrphans(): void {
    for (const orphan of this.catalog.orphans()) {
      if (this.stopped || this.adopting.has(orphan)) continue;
      this.adopting.add(orphan);
      void this.adopt(orphan).finally(() => this.adopting.delete(orphan));
    }
  }

  private async adopt(orphan: OrphanCopy): Promise<void> {
    const cancelled = () => this.stopped || !this.catalog.orphans().includes(orphan);
    try {
      const plan = this.catalog.adoptionTarget(orphan);
      if (plan.kind === 'wait') return;
      if (plan.kind === 'adopt') {
        const target = plan.db;
        const options = { checkpoint: copyCheckpoint(orphan.copy, `adopt/${target.uuid}`), batchDocsMax: this.config.syncBatchDocsMax, isCancelled: cancelled };
        let result = await pushToSibling(orphan.copy, databaseTarget(target, this.config.writeQuorumTimeoutMs), options);
        // Writes that were queued in the copy when it was orphaned: one more pass after them.
        await orphan.copy.idle();
        const last = await pushToSibling(orphan.copy, databaseTarget(target, this.config.writeQuorumTimeoutMs), options);
        if (cancelled()) return;
        result = { ...result, revisionsSent: result.revisionsSent + last.revisionsSent };
        await this.catalog.finishOrphan(orphan);
        this.log.info(
          { component: 'catalog', db: orphan.name, from: orphan.uuid, into: target.uuid, range: orphan.range, revisions: result.revisionsSent },
          'handed over the revisions of a copy no longer placed here, and cleared it',
        );
        return;
      }
      await this.catalog.finishOrphan(orphan);
    } catch (err) {
      this.log.warn({ component: 'catalog', db: orphan.name, from: orphan.uuid, err: String(err) }, 'adopting an orphan copy failed; will retry');
    }
  }

  private readonly syncTimers = new Map<string, NodeJS.Timeout>();

  /**
   * A write did not reach a sibling's copy: push to it soon (or, while it is down,
   * when it comes back: `syncAll` runs on every member that turns alive). Writes that
   * reach every copy need no sync, so nothing is scheduled after ordinary updates.
   */
  syncSoon(entry: CatalogEntry, range: number, node: string, delayMs = SYNC_AFTER_FAILURE_MS): void {
    const key = `${entry.uuid}/${range}/${node}`;
    if (this.stopped || this.syncTimers.has(key) || !this.catalog.copies().some((c) => c.entry.uuid === entry.uuid && c.range === range)) return;
    const timer = setTimeout(() => {
      this.syncTimers.delete(key);
      void this.syncCopy(entry, range, node);
    }, delayMs);
    timer.unref();
    this.syncTimers.set(key, timer);
  }

  /** Consecutive failed pushes per (copy, sibling), for the retry backoff. */
  private readonly syncFailures = new Map<string, number>();

  /**
   * A push failed (the sibling restarted and our channel is reconnecting, or it has not
   * yet heard of the database): try again with doubling delays up to syncIntervalMs,
   * instead of leaving the sibling behind until the next periodic pass.
   */
  private retrySyncLater(entry: CatalogEntry, range: number, sibling: string): void {
    const key = `${entry.uuid}/${range}/${sibling}`;
    const failures = Math.min((this.syncFailures.get(key) ?? 0) + 1, SYNC_RETRY_DOUBLINGS_MAX);
    this.syncFailures.set(key, failures);
    this.syncSoon(entry, range, sibling, Math.min(SYNC_AFTER_FAILURE_MS * 2 ** (failures - 1), this.config.syncIntervalMs));
  }

  private syncAll(onlyNode?: string): void {
    for (const { entry, range } of this.catalog.copies()) {
      for (const sibling of siblingsOf(entry, range, this.self)) {
        if (!onlyNode || sibling === onlyNode) void this.syncCopy(entry, range, sibling);
      }
    }
  }

  /** One push from this node's copy to a sibling; concurrent requests coalesce into a rerun. */
  private async syncCopy(entry: CatalogEntry, range: number, sibling: string): Promise<void> {
    if (this.stopped) return;
    const member = this.membership.member(sibling);
    if (!member || member.state === 'dead' || member.state === 'left') return;
    const key = `${entry.uuid}/${range}/${sibling}`;
    const state = this.syncing.get(key) ?? { running: false, again: false };
    this.syncing.set(key, state);
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    try {
      do {
        state.again = false;
        let copy;
        try {
          copy = this.catalog.localCopy(entry.uuid, range);
        } catch {
          return;
        }
        const target = this.catalog.entry(entry.name)?.uuid === entry.uuid ? new RemoteShardClient({
          node: sibling,
          copy: { db: entry.name, dbUuid: entry.uuid, range },
          peers: this.peers,
          addressOf: (name) => this.membership.member(name)?.address,
          isReachable: () => true,
          timeoutMs: this.config.rpcTimeoutMs,
          updateBytesMax: this.config.requestBytesMax,
        }) : undefined;
        if (!target) return;
        const result = await pushToSibling(copy, target, {
          checkpoint: copyCheckpoint(copy, `sync/${sibling}/${entry.uuid}`),
          batchDocsMax: this.config.syncBatchDocsMax,
          isCancelled: () => this.stopped,
          purges: { pull: copyCheckpoint(copy, `purge-pull/${sibling}/${entry.uuid}`), push: copyCheckpoint(copy, `purge-push/${sibling}/${entry.uuid}`) },
        });
        if (result.revisionsSent > 0) {
          this.log.info(
            { component: 'sync', db: entry.name, range, to: sibling, revisions: result.revisionsSent, checkpoint: result.checkpoint },
            'shard sync pushed revisions',
          );
        }
      } while (state.again && !this.stopped);
      this.syncFailures.delete(key);
    } catch (err) {
      this.log.debug({ component: 'sync', db: entry.name, range, to: sibling, err: String(err) }, 'shard sync failed; will retry');
      this.retrySyncLater(entry, range, sibling);
    } finally {
      state.running = false;
    }
  }
}

export interface RebalanceResult {
  moved: { range: string; added: string[]; removed: string[] }[];
}

function samePlacement(a: string[][] | undefined, b: string[][]): boolean {
  return a !== undefined && a.length === b.length && a.every((nodes, i) => nodes.length === b[i]!.length && nodes.every((node) => b[i]!.includes(node)));
}

/** How often orphan copies not yet adopted are tried again. */
const ADOPT_RETRY_MS = 2000;

/** The whole winning database as a sync target: writes and reads go through the coordinator. */
function databaseTarget(db: DbHandle, timeoutMs: number): SyncTarget {
  return {
    getDocInfos: (ids) => readDocInfos(db, ids, { timeoutMs }),
    updateDocs: async (edits) =>
      (await updateDocs(db, edits, { timeoutMs })).map((outcome) =>
        outcome.kind === 'error' ? { kind: 'error', id: outcome.id, error: outcome.error } : { kind: 'ok', id: outcome.id, rev: outcome.rev },
      ),
  };
}

/** Delay before pushing to a copy that missed a write (lets a burst of failures coalesce). */
const SYNC_AFTER_FAILURE_MS = 500;
/** Retries of a failed push double their delay this many times at most (then syncIntervalMs caps it). */
const SYNC_RETRY_DOUBLINGS_MAX = 16;

function siblingsOf(entry: CatalogEntry, range: number, self: string): string[] {
  return holders(entry, range).filter((node) => node !== self);
}

function placementMembers(membership: Membership | undefined, self: string, zone: string): RingMember[] {
  const members = membership?.members().filter((m) => m.state === 'alive' || m.state === 'suspect') ?? [];
  const out: RingMember[] = members.map((m) => ({ name: m.name, ...(m.zone ? { zone: m.zone } : {}) }));
  if (!out.some((m) => m.name === self)) out.push({ name: self, ...(zone ? { zone } : {}) });
  return out;
}

/**
 * A node's name must survive restarts (placements name it). Without a configured
 * name, the first start derives one from its address and keeps it.
 */
async function storedName(store: Store, derived: string): Promise<string> {
  const key = nodeMetaKey('node_name');
  const stored = await store.get(key);
  if (stored) return stored.toString('utf8');
  await store.write([{ type: 'put', key, value: derived }]);
  return derived;
}

async function storedSecret(store: Store): Promise<string> {
  const key = nodeMetaKey('cluster_secret');
  const stored = await store.get(key);
  if (stored) return stored.toString('utf8');
  const secret = randomBytes(32).toString('base64url');
  await store.write([{ type: 'put', key, value: secret }]);
  return secret;
}

// ---- membership over gRPC ---------------------------------------------------------------

function toProtoMember(m: MemberUpdate): Message {
  return {
    name: m.name,
    address: m.address,
    httpAddress: m.httpAddress,
    zone: m.zone ?? '',
    incarnation: m.incarnation,
    state: m.state,
    suspectedBy: m.suspectedBy ?? '',
  };
}

function fromProtoMember(m: Message): MemberUpdate {
  const info: MemberUpdate = {
    name: m.name,
    address: m.address,
    httpAddress: m.httpAddress,
    incarnation: Number(m.incarnation),
    state: m.state,
  };
  if (m.zone) info.zone = m.zone;
  if (m.suspectedBy) info.suspectedBy = m.suspectedBy;
  return info;
}

function toProtoGossip(m: PingMessage | AckMessage): Message {
  return { from: m.from, seqNo: m.seqNo, updates: m.updates.map(toProtoMember), target: ('target' in m && m.target) || '' };
}

function fromProtoGossip(m: Message): PingMessage {
  const message: PingMessage = { from: m.from, seqNo: Number(m.seqNo), updates: (m.updates as Message[]).map(fromProtoMember) };
  if (m.target) message.target = m.target;
  return message;
}

function grpcTransport(peers: PeerClients): MembershipTransport {
  return {
    ping: async (address, message, timeoutMs) => fromProtoGossip(await peers.unary(address, 'Membership', 'Ping', toProtoGossip(message), timeoutMs)),
    pingReq: async (via, target, message, timeoutMs) =>
      !!(
        await peers.unary(
          via,
          'Membership',
          'PingReq',
          { targetName: target.name, targetAddress: target.address, message: toProtoGossip(message) },
          timeoutMs,
        )
      ).acked,
    pushPull: async (address, state, timeoutMs) =>
      ((await peers.unary(address, 'Membership', 'PushPull', { members: state.map(toProtoMember) }, timeoutMs)).members as Message[]).map(
        fromProtoMember,
      ),
  };
}
