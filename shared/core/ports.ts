import type { ChannelMessage, ControlMessage, InstanceId, InstanceMessage, RecordEnvelope } from './messages.js';
import type { DeadLetterReason } from './errors.js';

/**
 * The ports the engine talks to. The embedded runtime implements each in-process (durable
 * files); the AWS adapters implement them on SQS FIFO, DynamoDB and S3. Every port has one
 * contract suite in test/contract that both implementations must pass unchanged.
 *
 * Shapes follow the AWS services' limits: a step commit maps onto TransactWriteItems (the
 * adapter splits it where it exceeds 100 actions / 4 MB), reads are batched like
 * BatchGetItem, messages are bounded by the SQS body limit.
 */

// ---------- queue transport ----------

export interface OutboundMessage {
  /** The receiving vertex's queue. */
  readonly queue: string;
  /** FIFO message group = receiving instance. */
  readonly groupId: InstanceId;
  readonly dedupId: string;
  readonly body: InstanceMessage;
}

export interface QueueTransport {
  /** Sends in order; messages of one group arrive in the order given. At-least-once. */
  send(messages: readonly OutboundMessage[]): Promise<void>;
}

// ---------- instance state (non-keyed, the instance's "operator state") ----------

/** The part of an instance's control state that a checkpoint captures. */
export interface OperatorSnapshotState {
  /** Last watermark per input channel. */
  readonly watermarks: Readonly<Record<InstanceId, number>>;
  /** Watermark last sent downstream. */
  readonly emittedWatermark: number;
  /** Window timers: window end (ms, as string) -> keys with an open window ending there. */
  readonly timers: Readonly<Record<string, readonly string[]>>;
  /** Source instances: next log offset to read, highest event time seen, end of input reached. */
  readonly sourceOffset: number;
  readonly sourceMaxEventTime: number;
  readonly sourceFinished: boolean;
  /** Rebalance edges: next target index. */
  readonly rebalanceCursor: number;
}

export interface ChannelStateEntry {
  readonly from: InstanceId;
  readonly record: RecordEnvelope;
}

export interface AlignmentState {
  readonly checkpointId: number;
  readonly startedAt: number;
  /** Input channels that have delivered the barrier. */
  readonly barriered: readonly InstanceId[];
  /** 'aligned': waiting, records of barriered channels are held in `held`. 'unaligned': snapshot taken, recording in-flight data. */
  readonly phase: 'aligning' | 'unaligned';
  readonly held: readonly ChannelMessage[];
  /** The final checkpoint of a bounded run: aligned in every mode, never switched to unaligned. */
  readonly final?: boolean;
}

export interface InstanceRecord extends OperatorSnapshotState {
  readonly instance: InstanceId;
  readonly generation: number;
  /** Increments with every committed step: the optimistic-concurrency token. */
  readonly version: number;
  /** Epoch that writes belong to: last snapshotted checkpoint + 1. */
  readonly epoch: number;
  /** Last consumed sequence number per input channel (this generation). */
  readonly consumed: Readonly<Record<InstanceId, number>>;
  /** Last produced sequence number per output channel (this generation). */
  readonly produced: Readonly<Record<InstanceId, number>>;
  readonly alignment: AlignmentState | undefined;
  /** The outbox committed by the last step, re-sent when that step's batch is redelivered. */
  readonly lastOutbox: readonly OutboundMessage[];
  /** Output held back until it fills a message or the flush timeout passes. */
  readonly outputBuffer: Readonly<Record<InstanceId, readonly RecordEnvelope[]>>;
  readonly outputBufferSince: number | undefined;
  /** Channel state of the restored checkpoint, processed before any new input. */
  readonly replay: readonly ChannelStateEntry[];
  /** Highest checkpoint snapshotted here. */
  readonly lastBarrier: number;
  /** Queue message ids consumed by the last committed step: their redelivery means "re-send lastOutbox". */
  readonly lastMessageIds: readonly string[];
}

// ---------- keyed state ----------

/** A stored keyed-state item: all named states of one key of one operator. */
export interface StoredItem {
  readonly value: Readonly<Record<string, unknown>> | null;
  /** Epoch of the last write. */
  readonly epoch: number;
}

export interface StateKeyRef {
  readonly keyGroup: number;
  readonly key: string;
}

export interface StateWrite extends StateKeyRef {
  /** null deletes the key. */
  readonly value: Readonly<Record<string, unknown>> | null;
  readonly epoch: number;
  /**
   * The item as read before this step (absent if the key was new). When its epoch is older
   * than `epoch`, this is the key's first write in `epoch`, and the store keeps the value it
   * closes for a restore to a checkpoint before `epoch` (copy-on-write: the embedded store as a
   * version record of the key, DynamoDB in the step's change record of `epoch`).
   */
  readonly previous: StoredItem | undefined;
}

export interface CheckpointAck {
  readonly checkpointId: number;
  readonly instance: InstanceId;
  readonly generation: number;
  readonly alignmentMs: number;
  readonly unaligned: boolean;
  readonly channelStateRecords: number;
  readonly stateWrites: number;
  /** Source instances: log offset at the barrier. */
  readonly sourceOffset?: number;
  readonly at: number;
}

export interface DeadLetter {
  /** Deterministic: the same bad input dead-lettered twice (replay) is one letter. */
  readonly id: string;
  readonly reason: DeadLetterReason;
  readonly message: string;
  readonly vertex: string;
  readonly payload: string;
  readonly at: number;
  /**
   * An ingress message that reached its dead-letter queue: the event id it carried (producer's
   * CairnEventId, else its SQS message id), so that `cairn dead-letters --redrive` sends it again
   * under that id and an event that was appended after all stays one event.
   */
  readonly eventId?: string;
}

export interface StepCommit {
  readonly instance: InstanceId;
  readonly operator: string;
  readonly generation: number;
  /** The commit applies only if the stored record still has this version. */
  readonly expectedVersion: number;
  readonly record: InstanceRecord;
  readonly stateWrites: readonly StateWrite[];
  /**
   * One snapshot per checkpoint whose barrier completed in this step, in order: with concurrent
   * checkpoints one batch can complete two (each must stay restorable).
   */
  readonly snapshots?: readonly { readonly checkpointId: number; readonly state: OperatorSnapshotState }[];
  readonly channelState: readonly { readonly checkpointId: number; readonly entries: readonly ChannelStateEntry[] }[];
  readonly acks: readonly CheckpointAck[];
  /** Transactional sink output of this step, staged under its epoch (two epochs if a snapshot fell inside the step). */
  readonly staged: readonly { readonly sink: string; readonly epoch: number; readonly records: readonly unknown[] }[];
  /** Idempotent sink output: upserts by deterministic key, visible at once. */
  readonly upserts: readonly { readonly sink: string; readonly key: string; readonly value: unknown }[];
  readonly deadLetters: readonly DeadLetter[];
}

export interface OperatorSnapshot {
  readonly state: OperatorSnapshotState;
  readonly channelState: readonly ChannelStateEntry[];
}

export interface StagedBatch {
  readonly instance: InstanceId;
  readonly epoch: number;
  readonly records: readonly unknown[];
}

export interface StateStore {
  loadInstance(instance: InstanceId): Promise<InstanceRecord | undefined>;
  /**
   * Overwrites an instance record (creation, restore). Bumps nothing: the caller sets version.
   * With `onlyOverOlderGeneration`, writes only if no record exists or the stored one is of an
   * older generation (atomically: a lagging recovery attempt never resets a live instance).
   * Returns whether it wrote.
   */
  putInstance(record: InstanceRecord, options?: { readonly onlyOverOlderGeneration?: boolean }): Promise<boolean>;
  /**
   * From its return on, no step of a generation below `generation` commits on these instances
   * (commitStep throws GenerationFencedError), whatever their records say. A recovery attempt
   * fences every instance before it restores anything, so a step still running in the old
   * generation cannot write over restored state. Idempotent; a fence never goes down, and
   * putInstance keeps it.
   */
  fenceInstances(instances: readonly InstanceId[], generation: number): Promise<void>;
  getItems(operator: string, keys: readonly StateKeyRef[]): Promise<Map<string, StoredItem>>;
  /**
   * Atomically: instance record (conditional on expectedVersion, on the record's generation and
   * on the instance's fence), keyed state with what a restore needs of the values it replaces, snapshot, channel state, acks,
   * staged sink output, dead letters. Throws ConcurrentStepError or GenerationFencedError.
   */
  commitStep(commit: StepCommit): Promise<void>;
  loadSnapshot(instance: InstanceId, checkpointId: number): Promise<OperatorSnapshot | undefined>;
  /**
   * Makes the newest version <= checkpointId current for every key changed after it (0 = empty).
   * With `fence`, its writes are conditional on the job still being in that generation
   * (GenerationFencedError otherwise): a superseded recovery attempt cannot restore over the
   * instances of a newer one.
   */
  restoreOperator(operator: string, checkpointId: number, fence?: { readonly generation: number }): Promise<{ keysRestored: number }>;
  /**
   * Drops what no restore to a retained checkpoint >= keepFrom reads (replaced values, expired
   * tombstones, channel state before it). Snapshots before keepFrom go here or, at the latest,
   * with their checkpoint records (CheckpointStore.forgetBelow, never above keepFrom).
   */
  prune(operator: string, keepFrom: number): Promise<void>;
  readStaged(sink: string, throughEpoch: number): Promise<StagedBatch[]>;
  dropStaged(sink: string, batches: readonly { instance: InstanceId; epoch: number }[]): Promise<void>;
  discardStagedAfter(sink: string, epoch: number): Promise<number>;
  /** Number of live keys (for the timeline's state size). */
  countKeys(operator: string): Promise<number>;
}

// ---------- source log ----------

export interface LogEntry {
  readonly offset: number;
  readonly event: unknown;
}

/**
 * What ingest appends under one id: one event, or the events of one ingress batch message that
 * fall in this partition (`events`, in the message's order). An entry is appended whole, in
 * one piece (its events at consecutive offsets, in one segment of a segmented store), or found
 * whole as a duplicate: a store keeps one dedup record per entry, not per event.
 */
export type AppendEntry = { readonly id: string; readonly event: unknown } | { readonly id: string; readonly events: readonly unknown[] };

/** The events of an entry, in order. */
export function eventsOfEntry(entry: AppendEntry): readonly unknown[] {
  return 'events' in entry ? entry.events : [entry.event];
}

export interface AppendResult {
  /** Events appended (an entry of n events counts n). */
  readonly appended: number;
  /** Events skipped as already appended. */
  readonly duplicates: number;
  readonly head: number;
}

export interface SourceLog {
  /**
   * Appends in order, without holes; entries whose id was appended before are skipped
   * (exactly-once ingestion of at-least-once deliveries). Each entry is atomic (AppendEntry); a
   * crash may leave a prefix of the entries appended. `head` is the partition's head right
   * after this append (with concurrent appenders, possibly beyond its own entries).
   */
  append(partition: number, entries: readonly AppendEntry[]): Promise<AppendResult>;
  /**
   * Entries with offset >= from, in offset order, at most `max`. Offsets start at 0. Throws
   * SourceLogTruncatedError when `from` is below what `truncate` kept.
   */
  read(partition: number, from: number, max: number): Promise<LogEntry[]>;
  /** Next offset to be written (= number of entries). */
  head(partition: number): Promise<number>;
  /** Marks the end of a bounded input. */
  seal(partition: number): Promise<void>;
  isSealed(partition: number): Promise<boolean>;
  /** `head` and `isSealed` in one read. */
  status(partition: number): Promise<{ readonly head: number; readonly sealed: boolean }>;
  /**
   * Retention (shared/core/retention.ts decides `below`): removes the entries with offset <
   * `below`, which no retained checkpoint replays, and the dedup records whose window has passed
   * (a store may do the latter by itself, e.g. DynamoDB's TTL). A store that keeps the log in
   * segments removes whole segments, as Kafka's log retention does: the entries of a segment
   * that straddles `below` stay readable until a later cut passes its end, and reads below what
   * it kept throw. Head and seal are unchanged. Idempotent; `below` never moves back.
   */
  truncate(partition: number, below: number): Promise<void>;
}

// ---------- checkpoint metadata ----------

export type CheckpointStatus = 'PENDING' | 'COMPLETED' | 'ABORTED';
export type TriggerKind = 'time' | 'count' | 'continuous' | 'manual' | 'final';

export interface CheckpointRecord {
  readonly id: number;
  readonly generation: number;
  readonly status: CheckpointStatus;
  readonly trigger: TriggerKind;
  readonly triggeredAt: number;
  readonly barriersInjected: boolean;
  readonly finishedAt?: number;
  readonly abortReason?: string;
  /** Set by earlier versions on checkpoints that left the retained set; the job record's `retainedCheckpoints` says which are restorable. */
  readonly pruned?: boolean;
  readonly sourceOffsets?: Readonly<Record<string, number>>;
  readonly alignmentMs?: number;
  readonly stateKeys?: number;
  readonly stateWrites?: number;
  readonly channelStateRecords?: number;
}

export type JobStatus = 'RUNNING' | 'RECOVERING' | 'FINISHED' | 'FAILED';

export interface JobRecord {
  readonly version: number;
  readonly generation: number;
  readonly status: JobStatus;
  readonly nextCheckpointId: number;
  readonly consecutiveFailures: number;
  readonly lastTriggerAt: number;
  readonly lastCompletedId: number;
  readonly lastCompletedAt: number;
  readonly ingestedAtLastTrigger: number;
  /**
   * Set while a rollback is in progress. `attempts` counts the restore attempts begun (each
   * after the first in a generation of its own: see recoveryAttemptStarted); `notBefore` is
   * when the restore may start (the restart strategy's delay). Records written before these
   * fields existed have neither: treated as an attempt already begun.
   */
  readonly recovery: { readonly toCheckpoint: number; readonly reason: string; readonly attempts?: number; readonly notBefore?: number } | undefined;
  /** Recent restarts, newest last (at most RESTART_HISTORY); `byOperator` marks rollbacks asked for with `cairn rollback`. */
  readonly restarts: readonly { readonly at: number; readonly toCheckpoint: number; readonly reason: string; readonly byOperator?: boolean }[];
  readonly sinksCommittedThrough: number;
  /** Checkpoints in progress (ascending): the coordinator reads these, never the whole history. */
  readonly pendingCheckpoints: readonly number[];
  /** Completed checkpoints still restorable (ascending; the newest `retained`). */
  readonly retainedCheckpoints: readonly number[];
  readonly failure?: string;
  /**
   * Paused by the operator (`cairn pause`): no new checkpoint is triggered (Flink's
   * stopCheckpointScheduler); pending ones still complete or time out. Whoever runs the
   * operators stops feeding them (event source mappings disabled, local event sources stopped).
   */
  readonly paused?: boolean;
  /** Operator requests, served by whichever coordinator decides next (Step Functions or in-process). */
  readonly requests?: JobRequests;
  /** Who runs the deployed coordinator loop, and whether it sleeps (shared/core/protocol/coordinator-lease.ts). */
  readonly coordinator?: CoordinatorLease;
}

/**
 * The deployed coordinator's lease: one Step Functions execution at a time runs the loop (others
 * that start meanwhile, from the schedule or a wake-up, end at once), and a coordinator with
 * nothing to do sleeps: no execution runs until new input, a dead letter or a request wakes it.
 */
export interface CoordinatorLease {
  /** The execution running the loop; none while it sleeps or between executions. */
  readonly owner?: string;
  /** The owner's lease runs out then (a crashed owner's lease expires; another takes over). */
  readonly until?: number;
  /** Set when the coordinator went to sleep: whoever appends input wakes it (once per sleep). */
  readonly asleepSince?: number;
}

export interface JobRequests {
  /** `cairn trigger`: a checkpoint now; cleared by the next trigger of any kind. */
  readonly checkpoint?: boolean;
  /** `cairn rollback --to N`: roll back to a retained checkpoint; not subject to the restart strategy. */
  readonly rollback?: { readonly toCheckpoint: number; readonly reason: string };
  /**
   * A failure seen outside the coordinator (a message of `generation` redriven to a dead-letter
   * queue: input the running job lost): a rollback to the last completed checkpoint, subject to
   * the restart strategy. Served once; a rollback into a later generation covers it.
   */
  readonly failure?: { readonly reason: string; readonly at: number; readonly generation: number };
}

export interface CheckpointStore {
  getJob(): Promise<JobRecord | undefined>;
  /** Conditional on the stored version being `expectedVersion` (undefined = must not exist). */
  putJob(job: JobRecord, expectedVersion: number | undefined): Promise<void>;
  getCheckpoint(id: number): Promise<CheckpointRecord | undefined>;
  putCheckpoint(record: CheckpointRecord): Promise<void>;
  /**
   * Writes `record` only if the stored checkpoint is still PENDING (atomically); returns whether
   * it wrote. For writers that are not the coordinator's transitions (the workflow storing its
   * task token), which must never turn a finished checkpoint back into a pending one.
   */
  putCheckpointIfPending(record: CheckpointRecord): Promise<boolean>;
  listCheckpoints(): Promise<CheckpointRecord[]>;
  listAcks(checkpointId: number): Promise<CheckpointAck[]>;
  /**
   * Retention (shared/core/retention.ts decides `id`): deletes the checkpoint records with an id
   * below `id` and every ack stored under them (acks that arrived after their checkpoint
   * finished), and the snapshots a store keeps with its acks. Idempotent.
   */
  forgetBelow(id: number): Promise<void>;
}

// ---------- blobs, sinks, dead letters ----------

export interface BlobStore {
  put(key: string, bytes: Uint8Array): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  delete(key: string): Promise<void>;
}

export interface SinkStore {
  /** Transactional sinks: publishes one committed batch; idempotent by (sink, batchId). */
  publish(sink: string, batchId: string, records: readonly unknown[]): Promise<void>;
  /** Idempotent sinks: upsert by deterministic key. */
  upsert(sink: string, entries: readonly { key: string; value: unknown }[]): Promise<void>;
  /** Committed output: transactional batches in batchId order, then upserted values by key. */
  read(sink: string): Promise<unknown[]>;
  /**
   * Transactional sinks: withdraws the published batches whose id sorts at or after `fromBatchId`
   * (plain code-unit order). A rollback to a checkpoint older than the last committed epoch
   * takes those epochs back, so that their replay does not publish the same records twice.
   */
  retractFrom(sink: string, fromBatchId: string): Promise<void>;
}

export interface DeadLetterStore {
  put(letters: readonly DeadLetter[]): Promise<void>;
  list(): Promise<DeadLetter[]>;
  /** Deletes these letters (absent ids are fine): after a redrive sent them back. */
  remove(ids: readonly string[]): Promise<void>;
}

export interface Clock {
  now(): number;
}

export type { ChannelMessage, ControlMessage, InstanceMessage, RecordEnvelope, InstanceId };
