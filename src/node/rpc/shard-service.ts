/**
 * The Shard service, both ends: server handlers that run an operation on one of this
 * node's copies, and `RemoteShardClient`, the coordinator's `ShardClient` for a copy
 * on another node. Documents cross as JSON bytes, many per message; doc infos in
 * their stored text form; per-document outcomes as a oneof.
 */
import type { DesignDocRef, FindStreamItem, IndexInfo, ReducedRow, ShardFindRequest, ShardReduceRequest, ShardViewRequest, ViewRow, ViewStreamItem } from '../../shard/index/types';
import { BadRequestError, DivanError, ErrorKind, NodeDownError } from '../../errors';
import { stringifyJson } from '../../json';
import { decodeDocInfo, encodeDocInfo } from '../../shard/doc-info';
import type { ShardCopy } from '../../shard/shard-copy';
import type { PurgeInfo, PurgeRequest } from '../../shard/purge';
import type {
  AllDocsOptions,
  AllDocsRow,
  ChangeRow,
  ChangesOptions,
  CopyState,
  DocEdit,
  DocInfo,
  EditResult,
  LocalDoc,
  RevId,
} from '../../shard/types';
import type { Cursor, ShardClient } from '../../api/coordinator/shard-client';
import type { PeerClients } from './client';
import type { Message } from './proto';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { methodCodec, MethodCodec } from './proto';
import type { BidiHandler, StreamHandler, UnaryHandler } from './server';

export interface CopyRef {
  db: string;
  dbUuid: string;
  range: number;
}

// ---- codecs ---------------------------------------------------------------------------

export function encodeEdit(edit: DocEdit): Message {
  return {
    id: edit.id,
    deleted: edit.deleted,
    bodyJson: Buffer.from(edit.bodyJson ?? stringifyJson(edit.body), 'utf8'),
    baseRev: edit.baseRev ?? '',
    revs: edit.revs ?? [],
    hasAttachments: edit.attachments !== null,
    internal: edit.internal === true,
    attachments: (edit.attachments ?? []).map((att) =>
      att.kind === 'data'
        ? {
            name: att.name,
            stub: false,
            contentType: att.contentType,
            data: att.data,
            digest: att.digest ?? '',
            revpos: att.revpos ?? 0,
            length: att.encoding !== undefined ? att.length ?? -1 : -1,
            encoding: att.encoding ?? '',
            encodedLength: -1,
          }
        : {
            name: att.name,
            stub: true,
            contentType: att.contentType ?? '',
            data: Buffer.alloc(0),
            digest: att.digest ?? '',
            revpos: att.revpos ?? 0,
            length: att.length ?? -1,
            encoding: att.encoding ?? '',
            encodedLength: att.encodedLength ?? -1,
          },
    ),
  };
}

export function decodeEdit(m: Message): DocEdit {
  const bodyJson = (m.bodyJson as Buffer).toString('utf8');
  const edit: DocEdit = {
    id: m.id,
    deleted: m.deleted,
    body: JSON.parse(bodyJson) as Record<string, unknown>,
    bodyJson,
    ...(m.internal ? { internal: true } : {}),
    attachments: m.hasAttachments
      ? (m.attachments as Message[]).map((a) =>
          a.stub
            ? {
                kind: 'stub' as const,
                name: a.name,
                ...(a.digest ? { digest: a.digest } : {}),
                ...(a.revpos ? { revpos: a.revpos } : {}),
                ...(a.contentType ? { contentType: a.contentType } : {}),
                ...(a.length >= 0 ? { length: a.length } : {}),
                ...(a.encoding ? { encoding: a.encoding } : {}),
                ...(a.encoding && a.encodedLength > 0 ? { encodedLength: a.encodedLength } : {}),
              }
            : {
                kind: 'data' as const,
                name: a.name,
                contentType: a.contentType,
                data: a.data as Buffer,
                ...(a.digest ? { digest: a.digest } : {}),
                ...(a.revpos ? { revpos: a.revpos } : {}),
                ...(a.encoding ? { encoding: a.encoding, length: a.length } : {}),
              },
        )
      : null,
  };
  if (m.baseRev) edit.baseRev = m.baseRev;
  if ((m.revs as string[]).length > 0) edit.revs = m.revs;
  return edit;
}

function encodeResult(result: EditResult): Message {
  return result.kind === 'ok'
    ? { id: result.id, rev: result.rev }
    : { id: result.id, error: { kind: result.error.kind, token: result.error.token, reason: result.error.reason } };
}

function decodeResult(m: Message): EditResult {
  if (m.outcome === 'error' || m.error) {
    const e = m.error as { kind: ErrorKind; token: string; reason: string };
    return { kind: 'error', id: m.id, error: new DivanError(e.kind, e.token, e.reason) };
  }
  return { kind: 'ok', id: m.id, rev: m.rev };
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8');
const parse = <T>(bytes: Buffer) => JSON.parse(bytes.toString('utf8')) as T;

// ---- server ----------------------------------------------------------------------------

/** Handlers for this node's copies; `resolve` finds the local copy or throws NotFoundError. */
export function shardHandlers(resolve: (copy: Message) => ShardCopy): Record<string, UnaryHandler | StreamHandler | BidiHandler> {
  const streamCursor = async <T>(cursor: Cursor<T>, send: (m: Message) => Promise<void>, signal: AbortSignal) => {
    try {
      for (let batch = await cursor.next(); batch && !signal.aborted; batch = await cursor.next()) {
        await send({ rowsJson: json(batch) });
      }
    } finally {
      await cursor.close();
    }
  };
  /** As streamCursor, with an empty chunk every `heartbeatMs` while the copy prepares its answer (a view build). */
  const streamWithHeartbeat = async <T>(cursor: Cursor<T>, send: (m: Message) => Promise<void>, signal: AbortSignal) => {
    let waiting = true;
    const beat = setInterval(() => {
      if (waiting && !signal.aborted) void send({ rowsJson: json([]) }).catch(() => undefined);
    }, VIEW_HEARTBEAT_MS);
    try {
      const first = await cursor.next().finally(() => {
        waiting = false;
        clearInterval(beat);
      });
      for (let batch = first; batch && !signal.aborted; batch = await cursor.next()) await send({ rowsJson: json(batch) });
    } finally {
      clearInterval(beat);
      await cursor.close();
    }
  };
  const unary: Record<string, UnaryHandler> = {
    IndexCall: async (req: Message) => {
      const copy = resolve(req.copy);
      const args = parse<unknown>(req.json);
      const calls: Record<string, () => Promise<unknown>> = {
        info: () => copy.indexInfo(args as DesignDocRef),
        cleanup: () => copy.cleanupIndexes(args as string[]),
        compact: () => copy.compactIndex(args as DesignDocRef).then(() => true),
        'compact-copy': () => copy.compact().then(() => true),
        purge: () => copy.purge(args as PurgeRequest[]),
        'purge-infos': () => copy.purgeInfos((args as { since: number }).since, (args as { limit: number }).limit),
        sizes: () => copy.sizes(),
      };
      const answer = Object.hasOwn(calls, String(req.op)) ? await calls[String(req.op)]!() : undefined;
      if (answer === undefined) throw new BadRequestError(`unknown index call ${String(req.op)}`);
      return { json: json(answer) };
    },
    UpdateDocs: async (req: Message) => ({ results: (await resolve(req.copy).updateDocs((req.edits as Message[]).map(decodeEdit))).map(encodeResult) }),
    GetDocInfos: async (req: Message) => ({
      infos: (await resolve(req.copy).getDocInfos(req.ids)).map((info) => (info ? Buffer.from(encodeDocInfo(info), 'utf8') : Buffer.alloc(0))),
    }),
    ReadBodies: async (req: Message) => ({
      bodies: (await resolve(req.copy).readBodies(req.refs)).map((body) =>
        body === undefined ? { present: false, value: Buffer.alloc(0) } : { present: true, value: Buffer.from(body, 'utf8') },
      ),
    }),
    Winners: async (req: Message) => ({
      docs: (await resolve(req.copy).winners(req.ids, req.conflicts === true)).map((doc) =>
        doc === null ? { present: false, value: Buffer.alloc(0) } : { present: true, value: Buffer.from(doc, 'utf8') },
      ),
    }),
    ReadAttachment: async (req: Message) => {
      const data = await resolve(req.copy).readAttachment(req.digest, req.encoding || undefined);
      return data ? { present: true, value: data } : { present: false, value: Buffer.alloc(0) };
    },
    GetLocal: async (req: Message) => {
      const doc = await resolve(req.copy).getLocal(req.id);
      return doc ? { present: true, value: json(doc) } : { present: false, value: Buffer.alloc(0) };
    },
    PutLocal: async (req: Message) => {
      const body = req.delete ? null : (req.bodyJson as Buffer).toString('utf8');
      const result = await resolve(req.copy).putLocal(req.id, body, req.rev || undefined, req.setRev || undefined);
      return result.kind === 'ok' ? { conflict: false, rev: result.rev } : { conflict: true, rev: '' };
    },
    CopyState: async (req: Message) => {
      const copy = resolve(req);
      const state = await copy.readState();
      return {
        updateSeq: state.updateSeq,
        docCount: state.docCount,
        docDelCount: state.docDelCount,
        designSeq: state.designSeq ?? 0,
        sizeBytes: await copy.sizeBytes(),
        purgeSeq: state.purgeSeq ?? 0,
        compactRunning: state.compactRunning === true,
        activeBytes: state.activeBytes ?? 0,
        externalBytes: state.externalBytes ?? 0,
        staleBytes: state.staleBytes ?? 0,
      };
    },
  };
  const codecs = new Map(Object.keys(unary).map((method) => [method, methodCodec('Shard', method)]));
  return {
    ...unary,
    Multiplex: ((call) => serveMultiplex(call, unary, codecs)) as BidiHandler,
    AllDocs: ((req, send, signal) => streamCursor(resolve(req.copy).allDocs(parse<AllDocsOptions>(req.optionsJson)), send, signal)) as StreamHandler,
    Changes: ((req, send, signal) => streamCursor(resolve(req.copy).changes(parse<ChangesOptions>(req.optionsJson)), send, signal)) as StreamHandler,
    LocalDocs: ((req, send, signal) => streamCursor(resolve(req.copy).localDocs(parse<AllDocsOptions>(req.optionsJson)), send, signal)) as StreamHandler,
    ViewRows: ((req, send, signal) => streamWithHeartbeat(resolve(req.copy).viewRows(parse<ShardViewRequest>(req.optionsJson)), send, signal)) as StreamHandler,
    ViewReduce: ((req, send, signal) => streamWithHeartbeat(resolve(req.copy).viewReduce(parse<ShardReduceRequest>(req.optionsJson)), send, signal)) as StreamHandler,
    FindRows: ((req, send, signal) => streamWithHeartbeat(resolve(req.copy).findRows(parse<ShardFindRequest>(req.optionsJson)), send, signal)) as StreamHandler,
    WatchUpdates: (async (req, send, signal) => {
      const copy = resolve(req);
      await new Promise<void>((done) => {
        let pending: Promise<void> = Promise.resolve();
        const unsubscribe = copy.onUpdate((seq) => {
          pending = pending.then(() => send({ updateSeq: seq }));
        });
        signal.addEventListener('abort', () => {
          unsubscribe();
          done();
        });
      });
    }) as StreamHandler,
  };
}

/** Run each frame's unary call and answer with a frame of the same id. */
function serveMultiplex(call: ServerDuplexStream<Message, Message>, unary: Record<string, UnaryHandler>, codecs: Map<string, MethodCodec>): void {
  let open = true;
  call.on('data', (frame: Message) => {
    const handler = unary[frame.method];
    const codec = codecs.get(frame.method);
    const answer = (payload: Uint8Array, errorJson: string) => {
      if (open) call.write({ id: frame.id, method: frame.method, payload: Buffer.from(payload), errorJson });
    };
    if (!handler || !codec) {
      answer(new Uint8Array(0), JSON.stringify({ kind: 'bad_request', token: 'bad_request', reason: `unknown method ${frame.method}` }));
      return;
    }
    Promise.resolve()
      .then(() => handler(codec.decodeRequest(frame.payload as Buffer)))
      .then(
        (reply) => answer(codec.encodeResponse(reply), ''),
        (err: unknown) =>
          answer(
            new Uint8Array(0),
            JSON.stringify(
              err instanceof DivanError
                ? { kind: err.kind, token: err.token, reason: err.reason }
                : { kind: 'internal', token: 'unknown_error', reason: err instanceof Error ? err.message : String(err) },
            ),
          ),
      );
  });
  const close = () => {
    if (!open) return;
    open = false;
    call.end();
  };
  call.on('end', close);
  call.on('error', close);
  call.on('cancelled', () => (open = false));
}

/** How often a view stream that has no rows yet says it is alive, ms (well inside any idle timeout). */
const VIEW_HEARTBEAT_MS = 2000;

// ---- client ----------------------------------------------------------------------------

export interface RemoteCopyOptions {
  node: string;
  copy: CopyRef;
  peers: PeerClients;
  /** The node's current gRPC address, or undefined when unknown. */
  addressOf: (node: string) => string | undefined;
  /** False when membership knows the node is dead: fail fast instead of waiting. */
  isReachable: (node: string) => boolean;
  timeoutMs: number;
  /**
   * Estimated bytes of edits one UpdateDocs message carries at most (bodies and
   * attachment data); bigger batches (sync, coalesced writes) go as several messages,
   * so each stays under the gRPC message limit. Default: no split.
   */
  updateBytesMax?: number;
  /** Called when edits could not be delivered to this copy (it needs a sync later). */
  onWriteFailed?: (node: string) => void;
}

/**
 * Coalesces concurrent calls into one RPC: while a call is in flight, new requests
 * wait and go together in the next one (group commit at the RPC level), so N
 * concurrent single-document writes to a copy cost about two messages, not N.
 */
class Coalescer<Item, Result> {
  private queue: { items: Item[]; bytes: number; resolve(results: Result[]): void; reject(err: unknown): void }[] = [];
  private inFlight = false;

  constructor(
    private readonly send: (items: Item[]) => Promise<Result[]>,
    private readonly itemsMax: number,
    private readonly bytesMax = Infinity,
  ) {}

  /** `bytes`: the items' estimated size, for the `bytesMax` cap on one merged call. */
  run(items: Item[], bytes = 0): Promise<Result[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ items, bytes, resolve, reject });
      if (!this.inFlight) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.inFlight = true;
    while (this.queue.length > 0) {
      const batch: typeof this.queue = [];
      let count = 0;
      let bytes = 0;
      while (
        this.queue.length > 0 &&
        (batch.length === 0 || (count + this.queue[0]!.items.length <= this.itemsMax && bytes + this.queue[0]!.bytes <= this.bytesMax))
      ) {
        const next = this.queue.shift()!;
        batch.push(next);
        count += next.items.length;
        bytes += next.bytes;
      }
      try {
        const results = await this.send(batch.flatMap((b) => b.items));
        let at = 0;
        for (const waiter of batch) {
          waiter.resolve(results.slice(at, at + waiter.items.length));
          at += waiter.items.length;
        }
      } catch (err) {
        for (const waiter of batch) waiter.reject(err);
      }
    }
    this.inFlight = false;
  }
}

/** Items one coalesced RPC carries at most. */
const COALESCE_ITEMS_MAX = 2000;

/** An edit's size in an UpdateDocs message, about: body, attachment data, revs and id. */
function editBytes(edit: DocEdit): number {
  edit.bodyJson ??= stringifyJson(edit.body); // encodeEdit uses it: stringified once
  let bytes = 64 + Buffer.byteLength(edit.bodyJson, 'utf8') + edit.id.length * 3;
  for (const rev of edit.revs ?? []) bytes += rev.length + 2;
  for (const att of edit.attachments ?? []) bytes += 64 + att.name.length * 3 + (att.kind === 'data' ? att.data.length : 0);
  return bytes;
}

/** A shard copy on another node, behind the same interface as a local one. */
export class RemoteShardClient implements ShardClient {
  readonly node: string;
  private readonly options: RemoteCopyOptions;
  private readonly listeners = new Set<(seq: number) => void>();
  private readonly lostListeners = new Set<() => void>();
  private watch: { close(): void } | undefined;

  private readonly updates: Coalescer<DocEdit, EditResult>;
  private readonly infoReads: Coalescer<string, DocInfo | undefined>;

  constructor(options: RemoteCopyOptions) {
    this.options = options;
    this.node = options.node;
    this.updates = new Coalescer(async (edits) => {
      const reply = await this.call('UpdateDocs', { edits: edits.map(encodeEdit) });
      return (reply.results as Message[]).map(decodeResult);
    }, COALESCE_ITEMS_MAX, options.updateBytesMax);
    this.infoReads = new Coalescer(async (ids) => {
      const reply = await this.call('GetDocInfos', { ids });
      return (reply.infos as Buffer[]).map((bytes) => (bytes.length === 0 ? undefined : decodeDocInfo(bytes)));
    }, COALESCE_ITEMS_MAX);
  }

  private address(): string {
    const address = this.options.addressOf(this.node);
    if (!address) throw new NodeDownError(this.node, 'address unknown');
    if (!this.options.isReachable(this.node)) throw new NodeDownError(this.node, 'node is down');
    return address;
  }

  /** Unary Shard calls travel as frames on the peer's Multiplex stream. */
  private call(method: string, request: Message): Promise<Message> {
    try {
      return this.options.peers.multiplexed(this.address(), method, { copy: this.options.copy, ...request }, this.options.timeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async updateDocs(edits: DocEdit[]): Promise<EditResult[]> {
    try {
      const bytesMax = this.options.updateBytesMax;
      if (bytesMax === undefined) return await this.updates.run(edits);
      // Split into runs of at most bytesMax (a single bigger edit goes alone).
      const runs: Promise<EditResult[]>[] = [];
      let start = 0;
      let bytes = 0;
      for (let i = 0; i < edits.length; i++) {
        const size = editBytes(edits[i]!);
        if (i > start && bytes + size > bytesMax) {
          runs.push(this.updates.run(edits.slice(start, i), bytes));
          start = i;
          bytes = 0;
        }
        bytes += size;
      }
      runs.push(this.updates.run(edits.slice(start), bytes));
      return (await Promise.all(runs)).flat();
    } catch (err) {
      this.options.onWriteFailed?.(this.node);
      throw err;
    }
  }

  async getDocInfo(id: string): Promise<DocInfo | undefined> {
    return (await this.getDocInfos([id]))[0];
  }

  getDocInfos(ids: string[]): Promise<(DocInfo | undefined)[]> {
    return this.infoReads.run(ids);
  }

  async readBody(id: string, rev: RevId): Promise<string | undefined> {
    return (await this.readBodies([{ id, rev }]))[0];
  }

  async readBodies(refs: { id: string; rev: RevId }[]): Promise<(string | undefined)[]> {
    const reply = await this.call('ReadBodies', { refs });
    return (reply.bodies as Message[]).map((b) => (b.present ? (b.value as Buffer).toString('utf8') : undefined));
  }

  async winners(ids: string[], conflicts: boolean): Promise<(string | null)[]> {
    const reply = await this.call('Winners', { ids, conflicts });
    return (reply.docs as Message[]).map((d) => (d.present ? (d.value as Buffer).toString('utf8') : null));
  }

  async readAttachment(digest: string, encoding?: string): Promise<Buffer | undefined> {
    const reply = await this.call('ReadAttachment', { digest, encoding: encoding ?? '' });
    return reply.present ? (reply.value as Buffer) : undefined;
  }

  allDocs(options: AllDocsOptions): Cursor<AllDocsRow> {
    return this.rows<AllDocsRow>('AllDocs', options);
  }

  changes(options: ChangesOptions): Cursor<ChangeRow> {
    return this.rows<ChangeRow>('Changes', options);
  }

  localDocs(options: AllDocsOptions): Cursor<LocalDoc> {
    return this.rows<LocalDoc>('LocalDocs', options);
  }

  viewRows(req: ShardViewRequest): Cursor<ViewStreamItem<ViewRow>> {
    return this.rows<ViewStreamItem<ViewRow>>('ViewRows', req);
  }

  viewReduce(req: ShardReduceRequest): Cursor<ViewStreamItem<ReducedRow>> {
    return this.rows<ViewStreamItem<ReducedRow>>('ViewReduce', req);
  }

  findRows(req: ShardFindRequest): Cursor<FindStreamItem> {
    return this.rows<FindStreamItem>('FindRows', req);
  }

  async indexInfo(ddoc: DesignDocRef): Promise<IndexInfo> {
    return parse<IndexInfo>((await this.call('IndexCall', { op: 'info', json: json(ddoc) })).json as Buffer);
  }

  async compactIndex(ddoc: DesignDocRef): Promise<void> {
    await this.call('IndexCall', { op: 'compact', json: json(ddoc) });
  }

  async cleanupIndexes(keep: string[]): Promise<number> {
    return parse<number>((await this.call('IndexCall', { op: 'cleanup', json: json(keep) })).json as Buffer);
  }

  private rows<T>(method: string, options: unknown): Cursor<T> {
    let stream: ReturnType<PeerClients['stream']> | undefined;
    let failure: unknown;
    try {
      stream = this.options.peers.stream(this.address(), 'Shard', method, { copy: this.options.copy, optionsJson: json(options) }, this.options.timeoutMs);
    } catch (err) {
      failure = err;
    }
    return {
      next: async () => {
        if (!stream) throw failure;
        const message = await stream.next();
        return message === null ? null : parse<T[]>(message.rowsJson as Buffer);
      },
      close: async () => stream?.close(),
    };
  }

  async getLocal(id: string): Promise<LocalDoc | undefined> {
    const reply = await this.call('GetLocal', { id });
    return reply.present ? parse<LocalDoc>(reply.value as Buffer) : undefined;
  }

  async putLocal(id: string, body: string | null, rev: RevId | undefined, setRev?: RevId): Promise<{ kind: 'ok'; rev: RevId } | { kind: 'conflict' }> {
    const reply = await this.call('PutLocal', { id, delete: body === null, bodyJson: Buffer.from(body ?? '', 'utf8'), rev: rev ?? '', setRev: setRev ?? '' });
    return reply.conflict ? { kind: 'conflict' } : { kind: 'ok', rev: reply.rev };
  }

  async readState(): Promise<CopyState> {
    const reply = await this.stateCall();
    return {
      updateSeq: reply.updateSeq,
      docCount: reply.docCount,
      docDelCount: reply.docDelCount,
      designSeq: reply.designSeq,
      purgeSeq: reply.purgeSeq,
      compactRunning: reply.compactRunning === true,
      activeBytes: reply.activeBytes,
      externalBytes: reply.externalBytes,
      staleBytes: reply.staleBytes,
    };
  }

  async compact(): Promise<void> {
    await this.call('IndexCall', { op: 'compact-copy', json: json(null) });
  }

  async purge(requests: PurgeRequest[]): Promise<PurgeInfo[]> {
    return parse<PurgeInfo[]>((await this.call('IndexCall', { op: 'purge', json: json(requests) })).json as Buffer);
  }

  async purgeInfos(since: number, limit: number): Promise<PurgeInfo[]> {
    return parse<PurgeInfo[]>((await this.call('IndexCall', { op: 'purge-infos', json: json({ since, limit }) })).json as Buffer);
  }

  async sizes(): Promise<{ file: number; active: number; external: number }> {
    return parse<{ file: number; active: number; external: number }>((await this.call('IndexCall', { op: 'sizes', json: json(null) })).json as Buffer);
  }

  async sizeBytes(): Promise<number> {
    return (await this.stateCall()).sizeBytes;
  }

  private stateCall(): Promise<Message> {
    try {
      return this.options.peers.multiplexed(this.address(), 'CopyState', this.options.copy, this.options.timeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Update signals over a stream opened on first subscription and closed after the
   * last. When the stream breaks (the node died or restarts), `onLost` is called so
   * the subscriber can watch another copy; this one keeps retrying every second.
   */
  onUpdate(listener: (seq: number) => void, onLost?: () => void): () => void {
    this.listeners.add(listener);
    if (onLost) this.lostListeners.add(onLost);
    if (!this.watch) this.startWatch();
    return () => {
      this.listeners.delete(listener);
      if (onLost) this.lostListeners.delete(onLost);
      if (this.listeners.size === 0) {
        this.watch?.close();
        this.watch = undefined;
      }
    };
  }

  private startWatch(): void {
    let stopped = false;
    let stream: ReturnType<PeerClients['stream']> | undefined;
    this.watch = {
      close: () => {
        stopped = true;
        stream?.close();
      },
    };
    const loop = async () => {
      while (!stopped) {
        try {
          stream = this.options.peers.stream(this.address(), 'Shard', 'WatchUpdates', this.options.copy, 0);
          for (let m = await stream.next(); m && !stopped; m = await stream.next()) {
            for (const listener of this.listeners) listener(m.updateSeq as number);
          }
        } catch {
          // The node is down or restarting: retried below.
        }
        if (stopped) break;
        for (const lost of [...this.lostListeners]) lost();
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    void loop();
  }
}
