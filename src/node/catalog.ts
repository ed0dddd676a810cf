/**
 * The catalog of databases on this node, and the shard copies that hold them.
 *
 * Each database is an entry under node metadata (`catalog/<name>`): q, n, the copy
 * id of each range, creation time, revs_limit and security object. Copy ids come from
 * a counter that never goes back, so a database dropped and created again never sees
 * the old keys even while they are still being cleared.
 *
 * With one node every range has one copy, here. The cluster issue replaces this
 * local catalog with a system database synced between nodes; the coordinator sees
 * the same `DbDirectory` either way.
 */
import { FileExistsError, NotFoundError } from '../errors';
import { rangeName, ranges } from '../ring/ranges';
import { ShardCopy, ShardCopyLimits } from '../shard/shard-copy';
import { copyRange, nodeMetaKey } from '../storage/keys';
import type { Store } from '../storage/store';
import type { DbDirectory, DbHandle } from '../api/coordinator/shard-client';

interface CatalogEntry {
  name: string;
  q: number;
  n: number;
  copies: number[];
  createdAt: number;
  revsLimit: number;
  security: Record<string, unknown>;
}

const ENTRY_PREFIX = 'catalog/';
const NEXT_COPY_KEY = 'next_copy_id';

export class Catalog implements DbDirectory {
  private readonly store: Store;
  private readonly limits: ShardCopyLimits;
  private readonly defaultRevsLimit: number;
  private readonly entries = new Map<string, CatalogEntry>();
  private readonly handles = new Map<string, DbHandle>();
  private nextCopyId = 1;
  /** Catalog changes run one at a time. */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(store: Store, limits: ShardCopyLimits, defaultRevsLimit: number) {
    this.store = store;
    this.limits = limits;
    this.defaultRevsLimit = defaultRevsLimit;
  }

  static async load(store: Store, limits: ShardCopyLimits, defaultRevsLimit: number): Promise<Catalog> {
    const catalog = new Catalog(store, limits, defaultRevsLimit);
    const next = await store.get(nodeMetaKey(NEXT_COPY_KEY));
    if (next) catalog.nextCopyId = Number(next.toString('utf8'));
    const start = nodeMetaKey(ENTRY_PREFIX);
    const end = nodeMetaKey(ENTRY_PREFIX.slice(0, -1) + '0');
    const cursor = store.cursor({ gte: start, lt: end });
    try {
      for (let batch = await cursor.next(); batch; batch = await cursor.next()) {
        for (const [, value] of batch) {
          const entry = JSON.parse(value.toString('utf8')) as CatalogEntry;
          catalog.entries.set(entry.name, entry);
        }
      }
    } finally {
      await cursor.close();
    }
    for (const entry of catalog.entries.values()) catalog.handles.set(entry.name, await catalog.openHandle(entry));
    return catalog;
  }

  async open(name: string): Promise<DbHandle | undefined> {
    return this.handles.get(name);
  }

  async list(): Promise<string[]> {
    return [...this.entries.keys()].sort();
  }

  create(name: string, options: { q: number; n: number }): Promise<DbHandle> {
    return this.serialize(async () => {
      if (this.entries.has(name)) throw new FileExistsError();
      const copies = ranges(options.q).map(() => this.nextCopyId++);
      const entry: CatalogEntry = {
        name,
        q: options.q,
        n: Math.min(options.n, 1),
        copies,
        createdAt: Date.now() * 1000,
        revsLimit: this.defaultRevsLimit,
        security: {},
      };
      await this.store.write([
        { type: 'put', key: nodeMetaKey(NEXT_COPY_KEY), value: String(this.nextCopyId) },
        { type: 'put', key: nodeMetaKey(ENTRY_PREFIX + name), value: JSON.stringify(entry) },
      ]);
      this.entries.set(name, entry);
      const handle = await this.openHandle(entry);
      this.handles.set(name, handle);
      return handle;
    });
  }

  delete(name: string): Promise<void> {
    return this.serialize(async () => {
      const entry = this.entries.get(name);
      if (!entry) throw new NotFoundError('Database does not exist.');
      await this.store.write([{ type: 'del', key: nodeMetaKey(ENTRY_PREFIX + name) }]);
      this.entries.delete(name);
      const handle = this.handles.get(name);
      this.handles.delete(name);
      // Updates already queued finish first; then the copy's keys go.
      for (const range of handle?.ranges ?? []) for (const copy of range.copies) await (copy as ShardCopy).idle();
      for (const copyId of entry.copies) await this.store.clear(copyRange(copyId));
    });
  }

  setRevsLimit(name: string, revsLimit: number): Promise<void> {
    return this.updateEntry(name, (entry) => {
      entry.revsLimit = revsLimit;
    });
  }

  setSecurity(name: string, security: Record<string, unknown>): Promise<void> {
    return this.updateEntry(name, (entry) => {
      entry.security = security;
    });
  }

  private updateEntry(name: string, change: (entry: CatalogEntry) => void): Promise<void> {
    return this.serialize(async () => {
      const current = this.entries.get(name);
      if (!current) throw new NotFoundError('Database does not exist.');
      const entry = { ...current };
      change(entry);
      await this.store.write([{ type: 'put', key: nodeMetaKey(ENTRY_PREFIX + name), value: JSON.stringify(entry) }]);
      this.entries.set(name, entry);
      const handle = this.handles.get(name)!;
      for (const range of handle.ranges) for (const copy of range.copies) (copy as ShardCopy).setRevsLimit(entry.revsLimit);
      this.handles.set(name, { ...handle, revsLimit: entry.revsLimit, security: entry.security });
    });
  }

  private async openHandle(entry: CatalogEntry): Promise<DbHandle> {
    const rangeList = ranges(entry.q);
    const copies = await Promise.all(entry.copies.map((id) => ShardCopy.open(this.store, id, entry.revsLimit, this.limits)));
    return {
      name: entry.name,
      q: entry.q,
      n: entry.n,
      createdAt: entry.createdAt,
      revsLimit: entry.revsLimit,
      security: entry.security,
      ranges: rangeList.map((range, index) => ({ index, name: rangeName(range), copies: [copies[index]!] })),
    };
  }

  /** Wait for every copy's queued updates (shutdown). */
  async idle(): Promise<void> {
    for (const handle of this.handles.values()) {
      for (const range of handle.ranges) for (const copy of range.copies) await (copy as ShardCopy).idle();
    }
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work, work);
    this.chain = run.catch(() => undefined);
    return run;
  }
}
