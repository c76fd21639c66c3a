import { join } from 'node:path';
import type { CheckpointRecord, DeadLetter, JobRecord, OperatorSnapshotState } from '../core/ports.js';
import { EmbeddedDb } from '../embedded/db.js';
import { durableDeadLetterMessages } from '../embedded/fifo-queue.js';
import { isAlive, StateDirLock } from '../embedded/lock.js';
import { EmbeddedCheckpointStore, EmbeddedDeadLetterStore, EmbeddedSinkStore, EmbeddedSourceLog, EmbeddedStateStore } from '../embedded/stores.js';

/**
 * A read-only view of a state directory, for `cairn checkpoints|output|dead-letters` while a run
 * may hold the lock: the embedded stores over a read-only database (EmbeddedDb.readOnly never
 * compacts or writes), so the CLI reads what the runtime's own ports read.
 */

export interface StateView {
  readonly dir: string;
  readonly job: JobRecord | undefined;
  /** Ascending id. */
  readonly checkpoints: readonly CheckpointRecord[];
  /** Checkpoint id -> instance -> snapshotted operator state (present only while restorable). */
  readonly snapshots: ReadonlyMap<number, ReadonlyMap<string, OperatorSnapshotState>>;
  /** Checkpoint id -> channel-state records stored for it. */
  readonly channelState: ReadonlyMap<number, number>;
  readonly partitions: readonly { readonly partition: number; readonly head: number; readonly sealed: boolean }[];
  readonly deadLetters: readonly DeadLetter[];
  /** Sink uid -> its committed output, in commit order. */
  readonly sinkOutput: ReadonlyMap<string, readonly unknown[]>;
  /** Messages redriven to a dead-letter queue after max receive count, with the reason. */
  readonly redriven: readonly { readonly queue: string; readonly reason: string; readonly body: unknown }[];
  /** Pid of the live process holding the directory's lock, if any. */
  readonly runningPid: number | undefined;
}

export type CheckpointState = 'retained' | 'pruned' | 'discarded' | 'pending' | 'aborted';

export class NoStateError extends Error {
  override readonly name = 'NoStateError';
}

export async function readState(stateDir: string): Promise<StateView> {
  const dbDir = join(stateDir, 'db');
  if (!EmbeddedDb.exists(dbDir)) {
    throw new NoStateError(`no job state in ${stateDir} (run \`cairn run <job> --state-dir ${stateDir}\` first)`);
  }
  const db = EmbeddedDb.readOnly(dbDir);
  const state = new EmbeddedStateStore(db);
  const checkpoints = new EmbeddedCheckpointStore(db);
  const sinks = new EmbeddedSinkStore(db);
  const sinkOutput = new Map<string, readonly unknown[]>();
  for (const sink of sinks.sinks()) sinkOutput.set(sink, await sinks.read(sink));
  const owner = StateDirLock.owner(stateDir);
  return {
    dir: stateDir,
    job: await checkpoints.getJob(),
    checkpoints: await checkpoints.listCheckpoints(),
    snapshots: state.listSnapshots(),
    channelState: state.channelStateCounts(),
    partitions: new EmbeddedSourceLog(db).partitions(),
    deadLetters: await new EmbeddedDeadLetterStore(db).list(),
    sinkOutput,
    redriven: durableDeadLetterMessages(db),
    runningPid: owner !== undefined && owner !== process.pid && isAlive(owner) ? owner : undefined,
  };
}

/** Restorable = completed and its snapshots not yet pruned. */
export function checkpointState(c: { status: CheckpointRecord['status']; abortReason?: string | undefined; snapshotted: boolean }): CheckpointState {
  if (c.status === 'PENDING') return 'pending';
  // Pruned: older than every retained checkpoint. Discarded: newer than a checkpoint restored later.
  if (c.status === 'COMPLETED') return c.snapshotted ? 'retained' : 'pruned';
  return c.abortReason?.startsWith('discarded by restore') ? 'discarded' : 'aborted';
}

/**
 * Retained = one of the job's retained checkpoints with its snapshots present. Retention runs
 * about once per `pruneIntervalMs`, so a checkpoint that has dropped out of the retained ones
 * may keep its snapshots a while: it is pruned already (no restore takes it).
 */
export function stateOf(view: StateView, checkpoint: CheckpointRecord): CheckpointState {
  const retained = view.snapshots.has(checkpoint.id) && (view.job?.retainedCheckpoints.includes(checkpoint.id) ?? true);
  return checkpointState({ status: checkpoint.status, abortReason: checkpoint.abortReason, snapshotted: retained });
}
