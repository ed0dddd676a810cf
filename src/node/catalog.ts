/**
 * The catalog of databases: every node holds all of it and keeps it in sync.
 *
 * An entry names a database instance (`uuid`), its q and n, the placement of each
 * range on nodes (fixed at creation: liveness is not ownership), its security object
 * and revs_limit, and a version. Every change bumps the version; between nodes the
 * newer entry wins (version, then the name of the node that wrote it), so pushes and
 * periodic anti-entropy converge whatever order they arrive in. Deletion leaves a
 * tombstone, so a dropped database is not resurrected by a node that missed it.
 *
 * Applying an entry opens this node's copies of the ranges placed on it (allocating
 * node-local copy ids, never reused) and drops copies of instances that are gone.
 * Entries live under node metadata `catalog/<name>`; copy ids under
 * `copy/<uuid>/<range>`.
 *
 * Two nodes may create the same name at once (each unaware of the other, or across a
 * partition), and clients may write to both instances. The newer entry wins, but the
 * other instance was never deleted by anyone, so its copies are not dropped: they
 * become orphans (`orphan/<copyId>`), which the cluster adopts into the winning
 * instance (every revision written into it as replicated edits) before clearing them.
 * What tells a deliberate deletion from a lost race is the winner's `buried` list: the
 * instances of that name whose tombstone its creator had seen.
 */
import { randomBytes } from 'node:crypto';
import { FileExistsError, NotFoundError } from '../errors';
import { placeDatabase, RingMember } from '../ring/placement';
import { rangeName, ranges } from '../ring/ranges';
import { CopyMaintenance, CorruptRecordReporter, IndexingOptions, ShardCopy, ShardCopyLimits } from '../shard/shard-copy';
import { DocInfoCache } from '../shard/doc-info-cache';
import { copyRange, nodeMetaKey } from '../storage/keys';
import { adminOnlySecurity } from '../api/coordinator/security';
import type { Store, WriteOp } from '../storage/store';
import type { DbDirectory, DbHandle, ShardClient } from '../api/coordinator/shard-client';

export interface CatalogEntry {
  name: string;
  uuid: string;
  q: number;
  n: number;
  /** Per range, the nodes holding its copies. */
  placement: string[][];
  createdAt: number;
  revsLimit: number;
  /** Purge requests each copy remembers (`_purged_infos_limit`); absent: the node's default. */
  purgedInfosLimit?: number;
  security: Record<string, unknown>;
  /** 2 once the security object was written by a version that knows `admin_only` (see security-object.ts). */
  securityVersion?: number;
  version: number;
  updatedBy: string;
  deleted: boolean;
  /** Earlier instances of this name that were deleted before this one was created (newest last). */
  buried?: string[];
  /**
   * During a rebalance, per range, the placement being moved to. Until it becomes the
   * placement, the range's copies are those of both (writes reach new copies at once
   * while they are filled); reads and range reads prefer the established ones.
   */
  next?: string[][];
}

/**
 * A cluster-wide setting (runtime admins: `admins/<name>`), synced with the catalog
 * under the same rule: the newer version wins, then the writer's name. A null value is
 * a tombstone (the setting was removed), kept so a node that missed it cannot bring
 * it back.
 */
export interface SettingEntry {
  kind: 'setting';
  name: string;
  value: string | null;
  version: number;
  updatedBy: string;
}

/** What anti-entropy and pushes carry: database entries and settings. */
export type SyncedEntry = CatalogEntry | SettingEntry;

/** Every node holding a copy of the range: the placement, then nodes only in `next`. */
export function holders(entry: CatalogEntry, range: number): string[] {
  const placed = entry.placement[range] ?? [];
  const incoming = (entry.next?.[range] ?? []).filter((node) => !placed.includes(node));
  return [...placed, ...incoming];
}

/** A copy of an instance that lost a creation race, kept until its revisions are adopted. */
export interface OrphanCopy {
  copyId: number;
  name: string;
  /** The lost instance and the range of it this copy holds. */
  uuid: string;
  range: number;
  copy: ShardCopy;
}

/** What the catalog needs from the cluster (provided by the node's wiring). */
export interface ClusterView {
  readonly self: string;
  /** Nodes new databases may be placed on (not dead, not left). */
  placementMembers(): RingMember[];
  /** A client for the copy of (db uuid, range) on another node. */
  remoteCopy(node: string, entry: CatalogEntry, range: number): ShardClient;
  /** Push changed entries to the other live members; resolves when they answered or timed out. */
  broadcast(entries: SyncedEntry[]): Promise<void>;
}

const ENTRY_PREFIX = 'catalog/';
const SETTING_PREFIX = 'setting/';
const COPY_PREFIX = 'copy/';
const NEXT_COPY_KEY = 'next_copy_id';
const ORPHAN_PREFIX = 'orphan/';
/** Per `${uuid}/${range}`: the last sequence of a copy this node cleared; a new copy starts above it. */
const SEQ_FLOOR_PREFIX = 'seqfloor/';
/** Deleted instances remembered per name (a chain of deletes and re-creates longer than this may resurrect data). */
const BURIED_MAX = 64;

export interface CatalogOptions {
  limits: ShardCopyLimits;
  defaultRevsLimit: number;
  cluster: ClusterView;
  /** Told about stored records of local copies that fail the read check. */
  onCorrupt?: CorruptRecordReporter;
  /** How local copies build their view indexes. */
  indexing?: IndexingOptions;
  /** Who runs local copies' compactions. */
  maintenance?: CopyMaintenance;
  /** Decoded doc infos shared by every local copy (absent: each copy keeps a small one). */
  docInfoCache?: DocInfoCache;
}

export class Catalog implements DbDirectory {
  private readonly store: Store;
  private readonly limits: ShardCopyLimits;
  private readonly defaultRevsLimit: number;
  private readonly cluster: ClusterView;
  private readonly onCorrupt: CorruptRecordReporter | undefined;
  private readonly indexing: IndexingOptions | undefined;
  private readonly maintenance: CopyMaintenance | undefined;
  private readonly docInfoCache: DocInfoCache | undefined;
  private readonly entries = new Map<string, CatalogEntry>();
  private readonly settingEntries = new Map<string, SettingEntry>();
  private readonly settingListeners = new Set<(setting: SettingEntry) => void>();
  private readonly handles = new Map<string, DbHandle>();
  /** Local copies by `${uuid}/${range}`. */
  private readonly localCopies = new Map<string, { entry: CatalogEntry; range: number; copy: ShardCopy }>();
  /** Copies of instances that lost a creation race, by `${uuid}/${range}`. */
  private readonly orphanCopies = new Map<string, OrphanCopy>();
  private nextCopyId = 1;
  /** Catalog changes run one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<() => void>();

  private constructor(store: Store, options: CatalogOptions) {
    this.store = store;
    this.onCorrupt = options.onCorrupt;
    this.indexing = options.indexing;
    this.maintenance = options.maintenance;
    this.docInfoCache = options.docInfoCache;
    this.limits = options.limits;
    this.defaultRevsLimit = options.defaultRevsLimit;
    this.cluster = options.cluster;
  }

  static async load(store: Store, options: CatalogOptions): Promise<Catalog> {
    const catalog = new Catalog(store, options);
    const next = await store.get(nodeMetaKey(NEXT_COPY_KEY));
    if (next) catalog.nextCopyId = Number(next.toString('utf8'));
    for (const [, value] of await readPrefix(store, ENTRY_PREFIX)) {
      const entry = catalog.upgrade(JSON.parse(value.toString('utf8')) as Partial<CatalogEntry> & { copies?: number[] });
      catalog.entries.set(entry.name, entry);
    }
    for (const [, value] of await readPrefix(store, SETTING_PREFIX)) {
      const setting = JSON.parse(value.toString('utf8')) as SettingEntry;
      if (isSetting(setting)) catalog.settingEntries.set(setting.name, setting);
    }
    for (const [, value] of await readPrefix(store, ORPHAN_PREFIX)) {
      const { copyId, name, uuid, range } = JSON.parse(value.toString('utf8')) as Omit<OrphanCopy, 'copy'>;
      const copy = await ShardCopy.open(store, {
        copyId,
        node: options.cluster.self,
        revsLimit: catalog.defaultRevsLimit,
        ...catalog.copyOptions(),
      });
      catalog.orphanCopies.set(`${uuid}/${range}`, { copyId, name, uuid, range, copy });
    }
    for (const entry of catalog.entries.values()) await catalog.openEntry(entry);
    return catalog;
  }

  /** What every local copy is opened with. */
  private copyOptions(): Pick<Parameters<typeof ShardCopy.open>[1], 'limits' | 'onCorrupt' | 'indexing' | 'maintenance' | 'docInfoCache'> {
    return {
      limits: this.limits,
      ...(this.onCorrupt ? { onCorrupt: this.onCorrupt } : {}),
      ...(this.indexing ? { indexing: this.indexing } : {}),
      ...(this.maintenance ? { maintenance: this.maintenance } : {}),
      ...(this.docInfoCache ? { docInfoCache: this.docInfoCache } : {}),
    };
  }

  /** Entries written by the single-node version had no uuid or placement: all ranges here. */
  private upgrade(raw: Partial<CatalogEntry> & { copies?: number[] }): CatalogEntry {
    if (raw.uuid && raw.placement) return raw as CatalogEntry;
    const entry: CatalogEntry = {
      name: raw.name!,
      uuid: 'local' + (raw.copies ?? []).join('-'),
      q: raw.q!,
      n: 1,
      placement: ranges(raw.q!).map(() => [this.cluster.self]),
      createdAt: raw.createdAt ?? 0,
      revsLimit: raw.revsLimit ?? this.defaultRevsLimit,
      security: raw.security ?? {},
      version: 1,
      updatedBy: this.cluster.self,
      deleted: false,
    };
    (raw.copies ?? []).forEach((copyId, range) => this.pendingCopyIds.set(`${entry.uuid}/${range}`, copyId));
    return entry;
  }

  private readonly pendingCopyIds = new Map<string, number>();

  // ---- DbDirectory -----------------------------------------------------------------

  async open(name: string): Promise<DbHandle | undefined> {
    return this.handles.get(name);
  }

  async list(): Promise<string[]> {
    return [...this.handles.keys()].sort();
  }

  create(name: string, options: { q: number; n: number }): Promise<DbHandle> {
    return this.change(async () => {
      const current = this.entries.get(name);
      if (current && !current.deleted) throw new FileExistsError();
      const members = this.cluster.placementMembers();
      const entry: CatalogEntry = {
        name,
        uuid: randomBytes(16).toString('hex'),
        q: options.q,
        n: Math.min(options.n, members.length),
        placement: placeDatabase(name, options.q, options.n, members),
        createdAt: Date.now() * 1000,
        revsLimit: this.defaultRevsLimit,
        security: adminOnlySecurity(),
        securityVersion: 2,
        version: (current?.version ?? 0) + 1,
        updatedBy: this.cluster.self,
        deleted: false,
        buried: current ? [...(current.buried ?? []), current.uuid].slice(-BURIED_MAX) : [],
      };
      await this.apply(entry);
      return entry;
    }).then(() => this.handles.get(name)!);
  }

  delete(name: string): Promise<void> {
    return this.update(name, (entry) => {
      entry.deleted = true;
    });
  }

  setRevsLimit(name: string, revsLimit: number): Promise<void> {
    return this.update(name, (entry) => {
      entry.revsLimit = revsLimit;
    });
  }

  setPurgedInfosLimit(name: string, limit: number): Promise<void> {
    return this.update(name, (entry) => {
      entry.purgedInfosLimit = limit;
    });
  }

  setSecurity(name: string, security: Record<string, unknown>): Promise<void> {
    return this.update(name, (entry) => {
      entry.security = security;
      entry.securityVersion = 2;
    });
  }

  /** Start (`next` given) or finish (`next` undefined) moving a database's ranges. */
  setPlacement(name: string, placement: string[][], next: string[][] | undefined): Promise<void> {
    return this.update(name, (entry) => {
      entry.placement = placement;
      if (next) entry.next = next;
      else delete entry.next;
    });
  }

  private update(name: string, edit: (entry: CatalogEntry) => void): Promise<void> {
    return this.change(async () => {
      const current = this.entries.get(name);
      if (!current || current.deleted) throw new NotFoundError('Database does not exist.');
      const entry = { ...current, version: current.version + 1, updatedBy: this.cluster.self };
      edit(entry);
      await this.apply(entry);
      return entry;
    }).then(() => undefined);
  }

  /** Run a local change, then push it to the other members before answering. */
  private async change(work: () => Promise<CatalogEntry>): Promise<void> {
    const entry = await this.serialize(work);
    await this.cluster.broadcast([entry]);
  }

  // ---- sync --------------------------------------------------------------------------

  /** Every entry and setting, tombstones included (what anti-entropy sends). */
  allEntries(): SyncedEntry[] {
    return [...this.entries.values(), ...this.settingEntries.values()];
  }

  /** Merge entries from another node; returns how many were newer here after. */
  merge(incoming: SyncedEntry[]): Promise<number> {
    return this.serialize(async () => {
      let applied = 0;
      for (const entry of incoming) {
        if (isSetting(entry)) {
          const current = this.settingEntries.get(entry.name);
          if (current && !newer(entry, current)) continue;
          await this.applySetting(entry);
          applied++;
          continue;
        }
        if (!isEntry(entry)) continue;
        const current = this.entries.get(entry.name);
        if (current && !newer(entry, current)) continue;
        await this.apply(entry);
        applied++;
      }
      return applied;
    });
  }

  // ---- settings ----------------------------------------------------------------------

  /** The live settings whose names start with `prefix`, without it (`admins/` → name → value). */
  settings(prefix: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const s of this.settingEntries.values()) if (s.value !== null && s.name.startsWith(prefix)) out.set(s.name.slice(prefix.length), s.value);
    return out;
  }

  /** A setting's tombstone-aware state: undefined when never set here. */
  setting(name: string): SettingEntry | undefined {
    return this.settingEntries.get(name);
  }

  /** Set (or, with null, remove) a setting cluster-wide; resolves once pushed to the live members. */
  async putSetting(name: string, value: string | null): Promise<void> {
    const entry = await this.serialize(async () => {
      const current = this.settingEntries.get(name);
      const next: SettingEntry = { kind: 'setting', name, value, version: (current?.version ?? 0) + 1, updatedBy: this.cluster.self };
      await this.applySetting(next);
      return next;
    });
    await this.cluster.broadcast([entry]);
  }

  /** Called with every setting applied here, local or from another node. */
  onSetting(listener: (setting: SettingEntry) => void): () => void {
    this.settingListeners.add(listener);
    return () => this.settingListeners.delete(listener);
  }

  private async applySetting(entry: SettingEntry): Promise<void> {
    await this.store.write([{ type: 'put', key: nodeMetaKey(SETTING_PREFIX + entry.name), value: JSON.stringify(entry) }]);
    this.settingEntries.set(entry.name, entry);
    for (const listener of this.settingListeners) listener(entry);
  }

  /** Called after any change to the set of databases or their copies. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- copies ------------------------------------------------------------------------

  /** This node's copy of (db uuid, range), for RPC calls from other nodes. */
  localCopy(uuid: string, range: number): ShardCopy {
    const found = this.localCopies.get(`${uuid}/${range}`);
    if (!found) throw new NotFoundError(`No copy of ${uuid} range ${range} on this node`, 'not_found');
    return found.copy;
  }

  /** Every local copy with its database entry (shard sync walks these). */
  copies(): { entry: CatalogEntry; range: number; copy: ShardCopy }[] {
    return [...this.localCopies.values()];
  }

  entry(name: string): CatalogEntry | undefined {
    const entry = this.entries.get(name);
    return entry && !entry.deleted ? entry : undefined;
  }

  /** Rebuild handles (copy order follows liveness: call when members change state). */
  refresh(): void {
    for (const entry of this.entries.values()) {
      // A database whose local copies are still opening is skipped: the code opening
      // them builds its handle when they are open (a membership change can land in
      // between, and the handle needs every local copy).
      if (!entry.deleted && this.localCopiesOpen(entry)) this.handles.set(entry.name, this.buildHandle(entry));
    }
  }

  private localCopiesOpen(entry: CatalogEntry): boolean {
    for (let index = 0; index < entry.q; index++) {
      if (holders(entry, index).includes(this.cluster.self) && !this.localCopies.has(`${entry.uuid}/${index}`)) return false;
    }
    return true;
  }

  /** Wait for every copy's queued updates (shutdown). */
  async idle(): Promise<void> {
    for (const { copy } of this.localCopies.values()) copy.closeIndexes();
    for (const { copy } of this.localCopies.values()) await copy.idle();
  }

  // ---- internals ---------------------------------------------------------------------

  private async apply(entry: CatalogEntry): Promise<void> {
    const current = this.entries.get(entry.name);
    const ops: WriteOp[] = [{ type: 'put', key: nodeMetaKey(ENTRY_PREFIX + entry.name), value: JSON.stringify(entry) }];
    const drop: { key: string; copy: ShardCopy }[] = [];
    const orphaned: OrphanCopy[] = [];
    if (current && (current.uuid !== entry.uuid || entry.deleted)) {
      // A live instance replaced by one whose creator never saw it deleted lost a
      // creation race: its revisions are adopted, not dropped.
      const lostRace = !current.deleted && !entry.deleted && current.uuid !== entry.uuid && !(entry.buried ?? []).includes(current.uuid);
      for (let range = 0; range < current.q; range++) {
        const key = `${current.uuid}/${range}`;
        const local = this.localCopies.get(key);
        if (local && lostRace) {
          const orphan = { copyId: local.copy.copyId, name: current.name, uuid: current.uuid, range, copy: local.copy };
          orphaned.push(orphan);
          ops.push({ type: 'put', key: nodeMetaKey(ORPHAN_PREFIX + orphan.copyId), value: JSON.stringify({ ...orphan, copy: undefined }) });
          continue;
        }
        if (local) drop.push({ key, copy: local.copy });
        ops.push({ type: 'del', key: nodeMetaKey(COPY_PREFIX + key) });
      }
    }
    if (current && current.uuid === entry.uuid && !current.deleted && !entry.deleted) {
      // A rebalance moved ranges off this node: their copies are adopted into the
      // database (anything only they hold is written to the new holders), then cleared.
      for (let range = 0; range < current.q; range++) {
        const local = this.localCopies.get(`${current.uuid}/${range}`);
        if (!local || holders(entry, range).includes(this.cluster.self)) continue;
        const orphan = { copyId: local.copy.copyId, name: current.name, uuid: current.uuid, range, copy: local.copy };
        orphaned.push(orphan);
        ops.push({ type: 'put', key: nodeMetaKey(ORPHAN_PREFIX + orphan.copyId), value: JSON.stringify({ ...orphan, copy: undefined }) });
      }
    }
    // Orphans of an instance the user has since deleted are dropped with it.
    for (const [key, orphan] of this.orphanCopies) {
      if (orphan.name === entry.name && (entry.buried ?? []).includes(orphan.uuid)) {
        this.orphanCopies.delete(key);
        drop.push({ key, copy: orphan.copy });
        ops.push({ type: 'del', key: nodeMetaKey(ORPHAN_PREFIX + orphan.copyId) }, { type: 'del', key: nodeMetaKey(COPY_PREFIX + key) });
      }
    }
    await this.store.write(ops);
    this.entries.set(entry.name, entry);
    for (const orphan of orphaned) {
      this.localCopies.delete(`${orphan.uuid}/${orphan.range}`);
      this.orphanCopies.set(`${orphan.uuid}/${orphan.range}`, orphan);
    }
    for (const { key, copy } of drop) {
      this.localCopies.delete(key);
      await copy.retire();
      await this.store.clear(copyRange(copy.copyId));
    }
    if (entry.deleted) this.handles.delete(entry.name);
    else await this.openEntry(entry);
    for (const listener of this.listeners) listener();
  }

  /** Copies waiting to be adopted into the winning instance of their name. */
  orphans(): OrphanCopy[] {
    return [...this.orphanCopies.values()];
  }

  /**
   * What to do with an orphan: adopt its revisions into the live instance of its
   * name; drop it when that name was deleted or its instance's deletion was seen by
   * the winner's creator; wait while its own instance is current again (being
   * reclaimed).
   */
  adoptionTarget(orphan: OrphanCopy): { kind: 'adopt'; db: DbHandle } | { kind: 'drop' } | { kind: 'wait' } {
    const entry = this.entries.get(orphan.name);
    if (entry && entry.uuid === orphan.uuid) {
      // Its own instance: moved off this node (adopt into the new holders), or placed
      // here again (being reclaimed).
      if (entry.deleted) return { kind: 'drop' };
      const db = this.handles.get(orphan.name);
      return holders(entry, orphan.range).includes(this.cluster.self) || !db ? { kind: 'wait' } : { kind: 'adopt', db };
    }
    const db = this.handles.get(orphan.name);
    if (!entry || entry.deleted || (entry.buried ?? []).includes(orphan.uuid) || !db) return { kind: 'drop' };
    return { kind: 'adopt', db };
  }

  /** The orphan's revisions are in the winner (or it is moot): clear it for good. */
  finishOrphan(orphan: OrphanCopy): Promise<void> {
    return this.serialize(async () => {
      const key = `${orphan.uuid}/${orphan.range}`;
      if (this.orphanCopies.get(key) !== orphan) return;
      this.orphanCopies.delete(key);
      await orphan.copy.retire();
      // If this node holds the range again later, its new copy's sequence starts above this one's.
      const floor = Number((await this.store.get(nodeMetaKey(SEQ_FLOOR_PREFIX + key)))?.toString('utf8') ?? '0');
      await this.store.write([
        { type: 'del', key: nodeMetaKey(ORPHAN_PREFIX + orphan.copyId) },
        { type: 'del', key: nodeMetaKey(COPY_PREFIX + key) },
        { type: 'put', key: nodeMetaKey(SEQ_FLOOR_PREFIX + key), value: String(Math.max(floor, orphan.copy.getState().updateSeq)) },
      ]);
      await this.store.clear(copyRange(orphan.copyId));
    });
  }

  private async openEntry(entry: CatalogEntry): Promise<void> {
    if (entry.deleted) return;
    for (let range = 0; range < entry.q; range++) {
      if (!holders(entry, range).includes(this.cluster.self)) continue;
      const key = `${entry.uuid}/${range}`;
      // An orphan whose instance won after all (a later entry of it arrived) is live again.
      const reclaimed = this.orphanCopies.get(key);
      if (reclaimed) {
        this.orphanCopies.delete(key);
        await this.store.write([{ type: 'del', key: nodeMetaKey(ORPHAN_PREFIX + reclaimed.copyId) }]);
        this.localCopies.set(key, { entry, range, copy: reclaimed.copy });
      }
      const existing = this.localCopies.get(key);
      if (existing) {
        existing.copy.setRevsLimit(entry.revsLimit);
        this.localCopies.set(key, { ...existing, entry });
        continue;
      }
      const copyId = await this.copyIdFor(key);
      const floor = await this.store.get(nodeMetaKey(SEQ_FLOOR_PREFIX + key));
      const copy = await ShardCopy.open(this.store, {
        copyId,
        node: this.cluster.self,
        revsLimit: entry.revsLimit,
        seqFloor: floor ? Number(floor.toString('utf8')) : 0,
        ...this.copyOptions(),
      });
      this.localCopies.set(key, { entry, range, copy });
    }
    this.handles.set(entry.name, this.buildHandle(entry));
  }

  private async copyIdFor(key: string): Promise<number> {
    const pending = this.pendingCopyIds.get(key);
    const stored = await this.store.get(nodeMetaKey(COPY_PREFIX + key));
    if (stored) return Number(stored.toString('utf8'));
    const copyId = pending ?? this.nextCopyId++;
    this.pendingCopyIds.delete(key);
    await this.store.write([
      { type: 'put', key: nodeMetaKey(NEXT_COPY_KEY), value: String(this.nextCopyId) },
      { type: 'put', key: nodeMetaKey(COPY_PREFIX + key), value: String(copyId) },
    ]);
    return copyId;
  }

  private buildHandle(entry: CatalogEntry): DbHandle {
    return {
      name: entry.name,
      uuid: entry.uuid,
      q: entry.q,
      n: entry.n,
      createdAt: entry.createdAt,
      revsLimit: entry.revsLimit,
      ...(entry.purgedInfosLimit !== undefined ? { purgedInfosLimit: entry.purgedInfosLimit } : {}),
      security: entry.securityVersion === undefined && Object.keys(entry.security).length === 0 ? adminOnlySecurity() : entry.security,
      ranges: ranges(entry.q).map((bounds, index) => {
        const nodes = holders(entry, index);
        // Established copies first (a copy being filled by a rebalance may lack
        // documents), this node's own first among them: range reads prefer it and it
        // never waits on the network.
        const placed = entry.placement[index]!;
        const rank = (node: string) => (placed.includes(node) ? (node === this.cluster.self ? 0 : 1) : 2);
        const ordered = [...nodes].sort((a, b) => rank(a) - rank(b));
        const copies: ShardClient[] = ordered.map((node) =>
          node === this.cluster.self ? this.localCopies.get(`${entry.uuid}/${index}`)!.copy : this.cluster.remoteCopy(node, entry, index),
        );
        return { index, name: rangeName(bounds), copies, nodes, established: ordered.filter((node) => placed.includes(node)).length };
      }),
    };
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work, work);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

function newer(a: SyncedEntry, b: SyncedEntry): boolean {
  return a.version > b.version || (a.version === b.version && a.updatedBy > b.updatedBy);
}

function isSetting(value: unknown): value is SettingEntry {
  const e = value as SettingEntry;
  return (
    typeof e === 'object' &&
    e !== null &&
    e.kind === 'setting' &&
    typeof e.name === 'string' &&
    (e.value === null || typeof e.value === 'string') &&
    Number.isInteger(e.version) &&
    typeof e.updatedBy === 'string'
  );
}

function isEntry(value: unknown): value is CatalogEntry {
  const e = value as CatalogEntry;
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.name === 'string' &&
    typeof e.uuid === 'string' &&
    Number.isInteger(e.q) &&
    Array.isArray(e.placement) &&
    e.placement.length === e.q &&
    (e.next === undefined || (Array.isArray(e.next) && e.next.length === e.q)) &&
    Number.isInteger(e.version) &&
    typeof e.updatedBy === 'string'
  );
}

async function readPrefix(store: Store, prefix: string): Promise<[Buffer, Buffer][]> {
  const start = nodeMetaKey(prefix);
  const end = nodeMetaKey(prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1));
  const cursor = store.cursor({ gte: start, lt: end });
  const out: [Buffer, Buffer][] = [];
  try {
    for (let batch = await cursor.next(); batch; batch = await cursor.next()) out.push(...batch);
  } finally {
    await cursor.close();
  }
  return out;
}
