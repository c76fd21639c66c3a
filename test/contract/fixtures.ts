import { keyGroupOf } from '../../shared/core/hashing.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import { instanceId } from '../../shared/core/messages.js';
import type {
  ChannelStateEntry,
  CheckpointAck,
  CheckpointStore,
  DeadLetter,
  InstanceRecord,
  JobRecord,
  OperatorSnapshotState,
  StateKeyRef,
  StateStore,
  StateWrite,
  StepCommit,
  StoredItem,
} from '../../shared/core/ports.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';

/** Builders shared by the contract suites. They shape inputs exactly as the engine does. */

export type Value = Readonly<Record<string, unknown>>;

const MAX_PARALLELISM = 128;

export function refOf(key: string): StateKeyRef {
  return { keyGroup: keyGroupOf(key, MAX_PARALLELISM), key };
}

/** The map key getItems uses (what the engine's keyed state looks items up by). */
export function itemId(ref: StateKeyRef): string {
  return `${ref.keyGroup}|${ref.key}`;
}

/** Creates the job (generation 1 unless given), as CoordinatorDriver.initialize does. */
export async function startJob(checkpoints: CheckpointStore, generation = 1): Promise<JobRecord> {
  const job: JobRecord = { ...initialJob(1_000), generation };
  await checkpoints.putJob(job, undefined);
  return job;
}

/** A rollback: the job moves to the next generation (the coordinator's recoveryStarted). */
export async function bumpGeneration(checkpoints: CheckpointStore): Promise<JobRecord> {
  const job = await checkpoints.getJob();
  if (!job) throw new Error('no job');
  const next: JobRecord = { ...job, version: job.version + 1, generation: job.generation + 1 };
  await checkpoints.putJob(next, job.version);
  return next;
}

export function ackOf(checkpointId: number, instance: string, generation = 1, extra: Partial<CheckpointAck> = {}): CheckpointAck {
  return {
    checkpointId,
    instance,
    generation,
    alignmentMs: 3,
    unaligned: false,
    channelStateRecords: 0,
    stateWrites: 2,
    at: 5_000 + checkpointId,
    ...extra,
  };
}

export function letterOf(id: string, extra: Partial<DeadLetter> = {}): DeadLetter {
  return { id, reason: 'operator-error', message: `operator 'op' threw: bad ${id}`, vertex: 'op', payload: JSON.stringify({ id }), at: 7_000, ...extra };
}

export function snapshotState(sourceOffset: number): OperatorSnapshotState {
  return {
    watermarks: { 'up#0': 40 + sourceOffset, 'up#1': 38 },
    emittedWatermark: 38,
    timers: { '1000': ['a', 'b'], '2000': ['c'] },
    sourceOffset,
    sourceMaxEventTime: 99,
    sourceFinished: false,
    rebalanceCursor: 2,
  };
}

export function channelEntries(from: string, ...values: number[]): ChannelStateEntry[] {
  return values.map((v) => ({ from, record: { v: { n: v }, o: `0:${v}`, k: `k${v}`, t: 1_000 + v } }));
}

export type CommitParts = Partial<Omit<StepCommit, 'instance' | 'operator' | 'generation' | 'expectedVersion' | 'record'>> & {
  readonly record?: Partial<InstanceRecord>;
  readonly expectedVersion?: number;
};

/**
 * Drives the commits of one operator instance the way InstanceStep does: records built from
 * initialInstanceRecord, versions incremented by one per committed step, keyed-state writes
 * carrying as `previous` the item read before the step.
 */
export class InstanceDriver {
  readonly instance: string;
  version = 0;
  /** Epoch of the record: last snapshotted checkpoint + 1 (bookkeeping only). */
  epoch = 1;

  constructor(
    private readonly store: StateStore,
    readonly operator: string,
    readonly index = 0,
    public generation = 1,
  ) {
    this.instance = instanceId(operator, index);
  }

  /** putInstance of the initial record, as the coordinator does on first start. */
  async init(): Promise<this> {
    await this.store.putInstance(initialInstanceRecord(this.instance, this.generation));
    return this;
  }

  commitOf(parts: CommitParts = {}): StepCommit {
    const expectedVersion = parts.expectedVersion ?? this.version;
    const { record, expectedVersion: _ignored, ...rest } = parts;
    return {
      instance: this.instance,
      operator: this.operator,
      generation: this.generation,
      expectedVersion,
      record: { ...initialInstanceRecord(this.instance, this.generation), epoch: this.epoch, ...record, version: expectedVersion + 1 },
      stateWrites: [],
      channelState: [],
      acks: [],
      staged: [],
      upserts: [],
      deadLetters: [],
      ...rest,
    };
  }

  async commit(parts: CommitParts = {}): Promise<StepCommit> {
    const commit = this.commitOf(parts);
    await this.store.commitStep(commit);
    this.version = commit.record.version;
    return commit;
  }

  /** Builds the writes of `values` in `epoch`, reading `previous` from the store like the engine. */
  async writesOf(epoch: number, values: Readonly<Record<string, Value | null>>): Promise<StateWrite[]> {
    const refs = Object.keys(values).map(refOf);
    const stored = await this.store.getItems(this.operator, refs);
    return refs.map((ref) => ({ ...ref, value: values[ref.key] ?? null, epoch, previous: stored.get(itemId(ref)) }));
  }

  /** One step writing `values` in `epoch`; with `snapshot`, the step ends with checkpoint `epoch`'s barrier. */
  async write(epoch: number, values: Readonly<Record<string, Value | null>>, options: { snapshot?: boolean } = {}): Promise<StepCommit> {
    const stateWrites = await this.writesOf(epoch, values);
    const commit = await this.commit({
      stateWrites,
      ...(options.snapshot ? { snapshots: [{ checkpointId: epoch, state: snapshotState(epoch) }] } : {}),
      record: { epoch: options.snapshot ? epoch + 1 : epoch, lastBarrier: options.snapshot ? epoch : epoch - 1 },
    });
    if (options.snapshot) this.epoch = epoch + 1;
    return commit;
  }

  /**
   * One step inside which the barrier of checkpoint `epoch` falls: the keys get `before` in
   * `epoch`, then `after` in `epoch + 1`, exactly as StepKeyedState.seal shapes the writes.
   */
  async writeAcrossSnapshot(epoch: number, before: Readonly<Record<string, Value | null>>, after: Readonly<Record<string, Value | null>>): Promise<StepCommit> {
    const first = await this.writesOf(epoch, before);
    const second: StateWrite[] = Object.keys(after).map((key) => {
      const ref = refOf(key);
      const sealed = first.find((w) => w.key === key);
      const previous: StoredItem | undefined = sealed ? { value: sealed.value, epoch } : undefined;
      return { ...ref, value: after[key] ?? null, epoch: epoch + 1, previous };
    });
    const missing = Object.keys(after).filter((key) => !(key in before));
    if (missing.length > 0) throw new Error(`writeAcrossSnapshot: ${missing.join(', ')} must be written before the barrier too`);
    const commit = await this.commit({
      stateWrites: [...first, ...second],
      snapshots: [{ checkpointId: epoch, state: snapshotState(epoch) }],
      record: { epoch: epoch + 1, lastBarrier: epoch },
    });
    this.epoch = epoch + 1;
    return commit;
  }

  /** Live values: absent keys and tombstones both read as null. */
  async read(keys: readonly string[]): Promise<Record<string, Value | null>> {
    const refs = keys.map(refOf);
    const stored = await this.store.getItems(this.operator, refs);
    return Object.fromEntries(refs.map((ref) => [ref.key, stored.get(itemId(ref))?.value ?? null]));
  }
}

export const v = (n: number): Value => ({ n });

export function keys(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i}`);
}
