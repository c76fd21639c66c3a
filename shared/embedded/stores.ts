import { ConcurrentStepError, GenerationFencedError, SourceLogTruncatedError } from '../core/errors.js';
import type {
  AppendEntry,
  AppendResult,
  BlobStore,
  ChannelStateEntry,
  CheckpointAck,
  CheckpointRecord,
  CheckpointStore,
  Clock,
  DeadLetter,
  DeadLetterStore,
  InstanceId,
  InstanceRecord,
  JobRecord,
  LogEntry,
  OperatorSnapshot,
  OperatorSnapshotState,
  SinkStore,
  SourceLog,
  StagedBatch,
  StateKeyRef,
  StateStore,
  StepCommit,
  StoredItem,
} from '../core/ports.js';
import { eventsOfEntry } from '../core/ports.js';
import { DEFAULT_DEDUP_WINDOW_MS, checkpointDataExpired, dedupExpired, dedupExpiresAt, tombstoneExpired, versionsToKeep } from '../core/retention.js';
import type { EmbeddedDb, WriteOp } from './db.js';

/**
 * The embedded implementations of the engine's ports, all on one EmbeddedDb so that a step
 * commit (state, instance record, acks, staged sink output, dead letters) is one atomic write,
 * as it is one TransactWriteItems on DynamoDB.
 */

const pad = (n: number): string => String(n).padStart(12, '0');
const itemKey = (op: string, ref: StateKeyRef): string => `${op}|${ref.keyGroup}|${ref.key}`;

interface Version {
  readonly epoch: number;
  readonly value: Readonly<Record<string, unknown>> | null;
}

export class EmbeddedStateStore implements StateStore {
  /** (operator, epoch) -> item keys first written in that epoch: restore and prune touch only these. */
  private changes: Map<string, Map<number, Set<string>>> | undefined;
  /** Live keys per operator, kept current on every write so the timeline's state size is O(1). */
  private liveKeys: Map<string, number> | undefined;

  constructor(private readonly db: EmbeddedDb) {
    this.live();
  }

  loadInstance(instance: string): Promise<InstanceRecord | undefined> {
    return Promise.resolve(this.db.get<InstanceRecord>('inst', instance));
  }

  putInstance(record: InstanceRecord, options: { readonly onlyOverOlderGeneration?: boolean } = {}): Promise<boolean> {
    const stored = this.db.get<InstanceRecord>('inst', record.instance);
    if (options.onlyOverOlderGeneration && stored && stored.generation >= record.generation) return Promise.resolve(false);
    this.db.write([['inst', record.instance, record]]);
    return Promise.resolve(true);
  }

  fenceInstances(instances: readonly InstanceId[], generation: number): Promise<void> {
    const raised = instances.filter((instance) => (this.db.get<number>('fence', instance) ?? 0) < generation);
    if (raised.length > 0) this.db.write(raised.map((instance): WriteOp => ['fence', instance, generation]));
    return Promise.resolve();
  }

  getItems(operator: string, keys: readonly StateKeyRef[]): Promise<Map<string, StoredItem>> {
    const out = new Map<string, StoredItem>();
    for (const ref of keys) {
      const item = this.db.get<StoredItem>('item', itemKey(operator, ref));
      if (item) out.set(`${ref.keyGroup}|${ref.key}`, item);
    }
    return Promise.resolve(out);
  }

  commitStep(commit: StepCommit): Promise<void> {
    // The same conditions, in the same order, as DynamoStateStore's: the instance's fence, its record's generation, its version.
    const fence = this.db.get<number>('fence', commit.instance) ?? 0;
    if (fence > commit.generation) return Promise.reject(new GenerationFencedError(commit.generation, fence));
    const current = this.db.get<InstanceRecord>('inst', commit.instance);
    if (current && current.generation !== commit.generation) {
      return Promise.reject(new GenerationFencedError(commit.generation, current.generation));
    }
    const version = current?.version ?? 0;
    if (version !== commit.expectedVersion) {
      return Promise.reject(new ConcurrentStepError(commit.instance, commit.expectedVersion, version));
    }

    const ops: WriteOp[] = [['inst', commit.instance, commit.record]];
    const indexed: Array<{ epoch: number; key: string }> = [];
    const versions = new Map<string, Version[]>();
    let liveDelta = 0;
    for (const write of commit.stateWrites) {
      const key = itemKey(commit.operator, write);
      const previous = write.previous;
      if (!previous || previous.epoch < write.epoch) {
        // First write of this key in this epoch: keep the value it closes as a version record.
        if (previous) {
          const list = versions.get(key) ?? [...(this.db.get<Version[]>('ver', key) ?? [])];
          list.push({ epoch: previous.epoch, value: previous.value });
          versions.set(key, list);
        }
        ops.push(['chg', `${commit.operator}|${pad(write.epoch)}|${write.keyGroup}|${write.key}`, 1]);
        indexed.push({ epoch: write.epoch, key: `${write.keyGroup}|${write.key}` });
      }
      ops.push(['item', key, { value: write.value, epoch: write.epoch } satisfies StoredItem]);
      liveDelta += (write.value !== null ? 1 : 0) - (previous && previous.value !== null ? 1 : 0);
    }
    for (const [key, list] of versions) ops.push(['ver', key, list]);
    for (const snapshot of commit.snapshots ?? []) ops.push(['snap', `${commit.instance}|${pad(snapshot.checkpointId)}`, snapshot.state]);
    for (const part of commit.channelState) {
      ops.push(['chst', `${commit.instance}|${pad(part.checkpointId)}|${pad(commit.record.version)}`, part.entries]);
    }
    for (const ack of commit.acks) ops.push(['ack', `${pad(ack.checkpointId)}|${ack.instance}`, ack]);
    for (const staged of commit.staged) {
      ops.push(['stg', `${staged.sink}|${pad(staged.epoch)}|${commit.instance}|${pad(commit.record.version)}`, staged.records]);
    }
    for (const upsert of commit.upserts) ops.push(['sinku', `${upsert.sink}|${upsert.key}`, upsert.value]);
    for (const letter of commit.deadLetters) ops.push(['dlq', letter.id, letter]);
    this.db.write(ops);
    for (const { epoch, key } of indexed) this.changedIn(commit.operator, epoch).add(key);
    this.addLive(commit.operator, liveDelta);
    return Promise.resolve();
  }

  loadSnapshot(instance: string, checkpointId: number): Promise<OperatorSnapshot | undefined> {
    const state = this.db.get<OperatorSnapshotState>('snap', `${instance}|${pad(checkpointId)}`);
    if (!state) return Promise.resolve(undefined);
    const channelState: ChannelStateEntry[] = [];
    const parts = [...this.db.scan<ChannelStateEntry[]>('chst', `${instance}|${pad(checkpointId)}|`)].sort(([a], [b]) => a.localeCompare(b));
    for (const [, entries] of parts) channelState.push(...entries);
    return Promise.resolve({ state, channelState });
  }

  /** Inspection (`cairn checkpoints`): checkpoint id -> instance -> its snapshotted operator state (present while restorable). */
  listSnapshots(): Map<number, Map<string, OperatorSnapshotState>> {
    const snapshots = new Map<number, Map<string, OperatorSnapshotState>>();
    for (const [key, state] of this.db.table<OperatorSnapshotState>('snap')) {
      const split = key.lastIndexOf('|');
      const id = Number(key.slice(split + 1));
      const byInstance = snapshots.get(id) ?? new Map<string, OperatorSnapshotState>();
      byInstance.set(key.slice(0, split), state);
      snapshots.set(id, byInstance);
    }
    return snapshots;
  }

  /** Inspection: checkpoint id -> channel-state records stored for it. */
  channelStateCounts(): Map<number, number> {
    const counts = new Map<number, number>();
    for (const [key, entries] of this.db.table<ChannelStateEntry[]>('chst')) {
      const id = Number(key.split('|')[1]);
      counts.set(id, (counts.get(id) ?? 0) + entries.length);
    }
    return counts;
  }

  restoreOperator(operator: string, checkpointId: number, fence?: { readonly generation: number }): Promise<{ keysRestored: number }> {
    // Checked and written in one synchronous run: nothing can move the generation in between.
    const generation = this.db.get<JobRecord>('job', 'job')?.generation;
    if (fence && generation !== undefined && generation !== fence.generation) return Promise.reject(new GenerationFencedError(fence.generation, generation));
    const byEpoch = this.operatorChanges(operator);
    const ops: WriteOp[] = [];
    const keys = new Set<string>();
    let liveDelta = 0;
    for (const [epoch, set] of byEpoch) {
      if (epoch <= checkpointId) continue;
      for (const key of set) {
        keys.add(key);
        ops.push(['chg', `${operator}|${pad(epoch)}|${key}`, undefined]);
      }
    }
    for (const key of keys) {
      const full = `${operator}|${key}`;
      const versions = (this.db.get<Version[]>('ver', full) ?? []).filter((v) => v.epoch <= checkpointId);
      const newest = versions.reduce<Version | undefined>((acc, v) => (!acc || v.epoch > acc.epoch ? v : acc), undefined);
      const wasLive = (this.db.get<StoredItem>('item', full)?.value ?? null) !== null;
      liveDelta += (newest && newest.value !== null ? 1 : 0) - (wasLive ? 1 : 0);
      ops.push(['item', full, newest && newest.value !== null ? ({ value: newest.value, epoch: newest.epoch } satisfies StoredItem) : undefined]);
      ops.push(['ver', full, versions.length > 0 ? versions : undefined]);
    }
    this.db.write(ops);
    for (const epoch of [...byEpoch.keys()]) if (epoch > checkpointId) byEpoch.delete(epoch);
    this.addLive(operator, liveDelta);
    return Promise.resolve({ keysRestored: keys.size });
  }

  prune(operator: string, keepFrom: number): Promise<void> {
    const byEpoch = this.operatorChanges(operator);
    const ops: WriteOp[] = [];
    const keys = new Set<string>();
    for (const [epoch, set] of byEpoch) {
      if (epoch > keepFrom) continue;
      for (const key of set) {
        keys.add(key);
        ops.push(['chg', `${operator}|${pad(epoch)}|${key}`, undefined]);
      }
    }
    for (const key of keys) {
      const full = `${operator}|${key}`;
      const item = this.db.get<StoredItem>('item', full);
      const versions = this.db.get<Version[]>('ver', full) ?? [];
      const keep = versionsToKeep(item, versions, keepFrom);
      if (keep.length !== versions.length) ops.push(['ver', full, keep.length > 0 ? keep : undefined]);
      if (tombstoneExpired(item, keepFrom)) ops.push(['item', full, undefined]);
    }
    for (const [key] of this.db.scan('snap', `${operator}#`)) {
      if (checkpointDataExpired(Number(key.slice(key.lastIndexOf('|') + 1)), keepFrom)) ops.push(['snap', key, undefined]);
    }
    for (const [key] of this.db.scan('chst', `${operator}#`)) {
      if (checkpointDataExpired(Number(key.split('|')[1]), keepFrom)) ops.push(['chst', key, undefined]);
    }
    this.db.write(ops);
    for (const epoch of [...byEpoch.keys()]) if (epoch <= keepFrom) byEpoch.delete(epoch);
    return Promise.resolve();
  }

  readStaged(sink: string, throughEpoch: number): Promise<StagedBatch[]> {
    // Keys sort as epoch, instance, step version: one pass merges each (epoch, instance)'s parts in step order.
    const parts = [...this.db.scan<unknown[]>('stg', `${sink}|`)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const merged = new Map<string, { instance: string; epoch: number; records: unknown[] }>();
    for (const [key, records] of parts) {
      const [, epoch, instance] = key.split('|') as [string, string, string];
      if (Number(epoch) > throughEpoch) continue;
      const id = `${epoch}|${instance}`;
      let batch = merged.get(id);
      if (!batch) {
        batch = { instance, epoch: Number(epoch), records: [] };
        merged.set(id, batch);
      }
      for (const record of records) batch.records.push(record);
    }
    return Promise.resolve([...merged.values()]);
  }

  dropStaged(sink: string, batches: readonly { instance: string; epoch: number }[]): Promise<void> {
    const wanted = new Set(batches.map((b) => `${pad(b.epoch)}|${b.instance}`));
    const ops: WriteOp[] = [];
    for (const [key] of this.db.scan('stg', `${sink}|`)) {
      const [, epoch, instance] = key.split('|') as [string, string, string];
      if (wanted.has(`${epoch}|${instance}`)) ops.push(['stg', key, undefined]);
    }
    this.db.write(ops);
    return Promise.resolve();
  }

  discardStagedAfter(sink: string, epoch: number): Promise<number> {
    const ops: WriteOp[] = [];
    for (const [key] of this.db.scan('stg', `${sink}|`)) {
      if (Number(key.split('|')[1]) > epoch) ops.push(['stg', key, undefined]);
    }
    this.db.write(ops);
    return Promise.resolve(ops.length);
  }

  countKeys(operator: string): Promise<number> {
    return Promise.resolve(this.live().get(operator) ?? 0);
  }

  private live(): Map<string, number> {
    if (!this.liveKeys) {
      this.liveKeys = new Map();
      for (const [key, item] of this.db.table<StoredItem>('item')) {
        if (item.value === null) continue;
        const op = key.slice(0, key.indexOf('|'));
        this.liveKeys.set(op, (this.liveKeys.get(op) ?? 0) + 1);
      }
    }
    return this.liveKeys;
  }

  private addLive(operator: string, delta: number): void {
    if (delta === 0) return;
    const live = this.live();
    live.set(operator, (live.get(operator) ?? 0) + delta);
  }

  private operatorChanges(operator: string): Map<number, Set<string>> {
    this.buildChangeIndex();
    const changes = this.changes as Map<string, Map<number, Set<string>>>;
    let byEpoch = changes.get(operator);
    if (!byEpoch) {
      byEpoch = new Map();
      changes.set(operator, byEpoch);
    }
    return byEpoch;
  }

  private changedIn(operator: string, epoch: number): Set<string> {
    const byEpoch = this.operatorChanges(operator);
    let set = byEpoch.get(epoch);
    if (!set) {
      set = new Set();
      byEpoch.set(epoch, set);
    }
    return set;
  }

  private buildChangeIndex(): void {
    if (this.changes) return;
    this.changes = new Map();
    for (const [key] of this.db.table('chg')) {
      const [op, epoch, kg, ...rest] = key.split('|') as [string, string, string, ...string[]];
      let byEpoch = this.changes.get(op);
      if (!byEpoch) {
        byEpoch = new Map();
        this.changes.set(op, byEpoch);
      }
      let set = byEpoch.get(Number(epoch));
      if (!set) {
        set = new Set();
        byEpoch.set(Number(epoch), set);
      }
      set.add(`${kg}|${rest.join('|')}`);
    }
  }
}

export class EmbeddedCheckpointStore implements CheckpointStore {
  constructor(private readonly db: EmbeddedDb) {}

  getJob(): Promise<JobRecord | undefined> {
    return Promise.resolve(this.db.get<JobRecord>('job', 'job'));
  }

  putJob(job: JobRecord, expectedVersion: number | undefined): Promise<void> {
    const current = this.db.get<JobRecord>('job', 'job');
    if (current?.version !== expectedVersion) {
      return Promise.reject(new ConcurrentStepError('job', expectedVersion ?? -1, current?.version ?? -1));
    }
    this.db.write([['job', 'job', job]]);
    return Promise.resolve();
  }

  getCheckpoint(id: number): Promise<CheckpointRecord | undefined> {
    return Promise.resolve(this.db.get<CheckpointRecord>('cp', pad(id)));
  }

  putCheckpoint(record: CheckpointRecord): Promise<void> {
    const ops: WriteOp[] = [['cp', pad(record.id), record]];
    // Acks of a finished checkpoint are folded into its record; drop them.
    if (record.status !== 'PENDING') for (const [key] of this.db.scan('ack', `${pad(record.id)}|`)) ops.push(['ack', key, undefined]);
    this.db.write(ops);
    return Promise.resolve();
  }

  putCheckpointIfPending(record: CheckpointRecord): Promise<boolean> {
    if (this.db.get<CheckpointRecord>('cp', pad(record.id))?.status !== 'PENDING') return Promise.resolve(false);
    this.db.write([['cp', pad(record.id), record]]);
    return Promise.resolve(true);
  }

  listCheckpoints(): Promise<CheckpointRecord[]> {
    return Promise.resolve([...this.db.table<CheckpointRecord>('cp').values()].sort((a, b) => a.id - b.id));
  }

  listAcks(checkpointId: number): Promise<CheckpointAck[]> {
    return Promise.resolve([...this.db.scan<CheckpointAck>('ack', `${pad(checkpointId)}|`)].map(([, ack]) => ack));
  }

  forgetBelow(id: number): Promise<void> {
    const ops: WriteOp[] = [];
    for (const [key] of this.db.table('cp')) if (Number(key) < id) ops.push(['cp', key, undefined]);
    for (const [key] of this.db.table('ack')) if (Number(key.slice(0, key.indexOf('|'))) < id) ops.push(['ack', key, undefined]);
    this.db.write(ops);
    return Promise.resolve();
  }
}

interface PartitionHead {
  readonly head: number;
  readonly sealed: boolean;
  /** Entries below this offset were removed by retention (absent: none). */
  readonly low?: number;
}

/** An ingest id's dedup record: its offset and when its dedup window ends (a bare offset: written before retention, never expires). */
type DedupRecord = number | { readonly o: number; readonly x: number };

export interface EmbeddedSourceLogOptions {
  /** Time of appends and of dedup expiry (the runtime's clock; default wall time). */
  readonly clock?: Clock;
  readonly dedupWindowMs?: number;
}

/**
 * Tables: `log` (partition|offset -> event), `logid` (partition|id -> DedupRecord), `loghead`
 * (partition -> PartitionHead) and `logexp`, the dedup records by expiry: one row per append,
 * `pad(expiresAt)|partition|pad(first offset)` -> ids, inserted in time order, so that a sweep
 * reads only the expired rows at the front.
 */
export class EmbeddedSourceLog implements SourceLog {
  private readonly clock: Clock;
  private readonly dedupWindowMs: number;

  constructor(
    private readonly db: EmbeddedDb,
    options: EmbeddedSourceLogOptions = {},
  ) {
    this.clock = options.clock ?? { now: () => Date.now() };
    this.dedupWindowMs = options.dedupWindowMs ?? DEFAULT_DEDUP_WINDOW_MS;
  }

  append(partition: number, entries: readonly AppendEntry[]): Promise<AppendResult> {
    const state = this.db.get<PartitionHead>('loghead', String(partition)) ?? { head: 0, sealed: false };
    const now = this.clock.now();
    const expiresAt = dedupExpiresAt(now, this.dedupWindowMs);
    let head = state.head;
    let duplicates = 0;
    const ops: WriteOp[] = [];
    const seen = new Set<string>();
    for (const entry of entries) {
      const events = eventsOfEntry(entry);
      const stored = this.db.get<DedupRecord>('logid', `${partition}|${entry.id}`);
      if (seen.has(entry.id) || (stored !== undefined && !dedupExpired(typeof stored === 'number' ? undefined : stored.x, now))) {
        duplicates += events.length;
        continue;
      }
      if (events.length === 0) continue;
      seen.add(entry.id);
      // Delete first: a re-set key would keep its old place in the table's order.
      if (stored !== undefined) ops.push(['logid', `${partition}|${entry.id}`, undefined]);
      ops.push(['logid', `${partition}|${entry.id}`, { o: head, x: expiresAt } satisfies DedupRecord]);
      for (const event of events) ops.push(['log', `${partition}|${pad(head++)}`, event]);
    }
    if (seen.size > 0) ops.push(['logexp', `${pad(expiresAt)}|${partition}|${pad(state.head)}`, [...seen]]);
    ops.push(['loghead', String(partition), { ...state, head } satisfies PartitionHead]);
    this.db.write(ops);
    return Promise.resolve({ appended: head - state.head, duplicates, head });
  }

  read(partition: number, from: number, max: number): Promise<LogEntry[]> {
    const state = this.db.get<PartitionHead>('loghead', String(partition));
    const head = state?.head ?? 0;
    const low = state?.low ?? 0;
    if (from < low && max > 0) return Promise.reject(new SourceLogTruncatedError(partition, from, low));
    const out: LogEntry[] = [];
    for (let offset = from; offset < head && out.length < max; offset++) {
      out.push({ offset, event: this.db.get('log', `${partition}|${pad(offset)}`) });
    }
    return Promise.resolve(out);
  }

  head(partition: number): Promise<number> {
    return Promise.resolve(this.db.get<PartitionHead>('loghead', String(partition))?.head ?? 0);
  }

  seal(partition: number): Promise<void> {
    const state = this.db.get<PartitionHead>('loghead', String(partition)) ?? { head: 0, sealed: false };
    this.db.write([['loghead', String(partition), { ...state, sealed: true }]]);
    return Promise.resolve();
  }

  isSealed(partition: number): Promise<boolean> {
    return Promise.resolve(this.db.get<PartitionHead>('loghead', String(partition))?.sealed ?? false);
  }

  status(partition: number): Promise<{ head: number; sealed: boolean }> {
    const state = this.db.get<PartitionHead>('loghead', String(partition));
    return Promise.resolve({ head: state?.head ?? 0, sealed: state?.sealed ?? false });
  }

  truncate(partition: number, below: number): Promise<void> {
    const state = this.db.get<PartitionHead>('loghead', String(partition)) ?? { head: 0, sealed: false };
    const low = state.low ?? 0;
    const cut = Math.min(below, state.head);
    const ops: WriteOp[] = [];
    if (cut > low) {
      for (let offset = low; offset < cut; offset++) ops.push(['log', `${partition}|${pad(offset)}`, undefined]);
      ops.push(['loghead', String(partition), { ...state, low: cut } satisfies PartitionHead]);
    }
    // Expired dedup records, of every partition: the rows at the front of `logexp`.
    const now = this.clock.now();
    for (const [key, ids] of this.db.table<string[]>('logexp')) {
      const [x, p] = key.split('|') as [string, string];
      if (!dedupExpired(Number(x), now)) break;
      for (const id of ids) {
        const stored = this.db.get<DedupRecord>('logid', `${p}|${id}`);
        // Re-appended after it expired: the newer record stays (its own row expires it).
        if (stored !== undefined && typeof stored !== 'number' && stored.x === Number(x)) ops.push(['logid', `${p}|${id}`, undefined]);
      }
      ops.push(['logexp', key, undefined]);
    }
    this.db.write(ops);
    return Promise.resolve();
  }

  /** Inspection: every partition written so far, ascending. */
  partitions(): { partition: number; head: number; sealed: boolean }[] {
    return [...this.db.table<PartitionHead>('loghead')].map(([partition, h]) => ({ partition: Number(partition), head: h.head, sealed: h.sealed })).sort((a, b) => a.partition - b.partition);
  }
}

export class EmbeddedSinkStore implements SinkStore {
  constructor(private readonly db: EmbeddedDb) {}

  publish(sink: string, batchId: string, records: readonly unknown[]): Promise<void> {
    this.db.write([['sinkb', `${sink}|${batchId}`, records]]);
    return Promise.resolve();
  }

  upsert(sink: string, entries: readonly { key: string; value: unknown }[]): Promise<void> {
    this.db.write(entries.map((e) => ['sinku', `${sink}|${e.key}`, e.value] as const));
    return Promise.resolve();
  }

  retractFrom(sink: string, fromBatchId: string): Promise<void> {
    const doomed = [...this.db.scan<unknown[]>('sinkb', `${sink}|`)].filter(([key]) => key.slice(sink.length + 1) >= fromBatchId);
    if (doomed.length > 0) this.db.write(doomed.map(([key]) => ['sinkb', key, undefined] as const));
    return Promise.resolve();
  }

  read(sink: string): Promise<unknown[]> {
    return Promise.resolve(committedOutput(this.db.scan<unknown[]>('sinkb', `${sink}|`), this.db.scan<unknown>('sinku', `${sink}|`)));
  }

  /** Inspection: the sinks with committed output, sorted. */
  sinks(): string[] {
    const sinkOf = (key: string): string => key.slice(0, key.indexOf('|'));
    return [...new Set([...this.db.table('sinkb').keys(), ...this.db.table('sinku').keys()].map(sinkOf))].sort();
  }
}

/**
 * A sink's committed output from its stored entries: transactional batches in batch id order,
 * then upserted values by key. Plain code-unit order (as a DynamoDB sort key orders), never
 * localeCompare: locale-dependent.
 */
function committedOutput(batches: Iterable<[string, unknown[]]>, upserts: Iterable<[string, unknown]>): unknown[] {
  const byKey = ([a]: [string, unknown], [b]: [string, unknown]): number => (a < b ? -1 : a > b ? 1 : 0);
  return [...[...batches].sort(byKey).flatMap(([, records]) => records), ...[...upserts].sort(byKey).map(([, value]) => value)];
}

export class EmbeddedDeadLetterStore implements DeadLetterStore {
  constructor(private readonly db: EmbeddedDb) {}

  put(letters: readonly DeadLetter[]): Promise<void> {
    this.db.write(letters.map((l) => ['dlq', l.id, l] as const));
    return Promise.resolve();
  }

  list(): Promise<DeadLetter[]> {
    return Promise.resolve([...this.db.table<DeadLetter>('dlq').values()].sort((a, b) => a.at - b.at || a.id.localeCompare(b.id)));
  }

  remove(ids: readonly string[]): Promise<void> {
    this.db.write(ids.filter((id) => this.db.get('dlq', id) !== undefined).map((id): WriteOp => ['dlq', id, undefined]));
    return Promise.resolve();
  }
}

/** Blobs as base64 values of the same journal (embedded use is rare: values over the item limit). */
export class EmbeddedBlobStore implements BlobStore {
  constructor(private readonly db: EmbeddedDb) {}

  put(key: string, bytes: Uint8Array): Promise<void> {
    this.db.write([['blob', key, Buffer.from(bytes).toString('base64')]]);
    return Promise.resolve();
  }

  get(key: string): Promise<Uint8Array | undefined> {
    const value = this.db.get<string>('blob', key);
    return Promise.resolve(value === undefined ? undefined : new Uint8Array(Buffer.from(value, 'base64')));
  }

  delete(key: string): Promise<void> {
    this.db.write([['blob', key, undefined]]);
    return Promise.resolve();
  }
}
