import { CheckpointNotFoundError, GenerationFencedError, RecoverySupersededError } from './errors.js';
import { initialInstanceRecord } from './instance/step.js';
import type { CheckpointStore, Clock, JobRecord, OutboundMessage, QueueTransport, SinkStore, StateStore } from './ports.js';
import { recoveryAttemptStarted, recoveryFinished } from './protocol/coordinator.js';
import type { VertexDef } from './job.js';
import type { Topology } from './topology.js';

/**
 * Rollback-replay, written once: the embedded runtime and the local cloud run it through
 * CoordinatorDriver (`run`), the Step Functions recovery workflow runs the same phases as its
 * states (BumpGeneration = `begin`, RestoreOperators = `restoreOperator`, RestoreInstances =
 * `restoreInstance`, Resume = `finish`).
 *
 * The rule that makes it safe to repeat: every attempt runs in a generation of its own
 * (`begin`, see recoveryAttemptStarted). Instances become live the moment their record is
 * rewritten in the attempt's generation, so redoing a restore in the same generation would
 * wipe or double-apply what they committed meanwhile. A later attempt fences the earlier one
 * off first; each phase refuses to run for an attempt that is no longer current
 * (RecoverySupersededError), and an instance record is only ever replaced by one of a newer
 * generation, so a lagging attempt cannot reset a live instance.
 */

export type RecoveryPhase = 'begin' | 'purge' | 'restore-operator' | 'restore-instance' | 'finish';

export interface RecoveryFaults {
  /** Called after each phase step (a test's crash point inside a recovery). */
  afterRecoveryPhase?(phase: RecoveryPhase, detail: string): void | Promise<void>;
}

export interface RecoveryDeps {
  readonly topology: Topology;
  readonly checkpoints: CheckpointStore;
  readonly state: StateStore;
  readonly sinks: SinkStore;
  readonly transport: QueueTransport;
  readonly clock: Clock;
  /** Optimization only (fencing is what makes the rollback correct): drop queued operator messages. */
  readonly purgeOperatorQueues?: () => void | Promise<void>;
  readonly faults?: RecoveryFaults;
}

/** Batch ids of transactional sinks: epoch first, so that "epochs after N" is a key range. */
export function sinkBatchId(epoch: number, instance: string): string {
  return `${pad(epoch)}|${instance}`;
}

const pad = (n: number): string => String(n).padStart(12, '0');

/** Operators whose keyed state a restore rewinds. */
export function hasKeyedState(vertex: VertexDef): boolean {
  const head = vertex.head.kind;
  return head === 'process' || head === 'reduce' || head === 'window';
}

/** One poll per source instance: they read the log from their (restored) offsets. */
export function sourcePolls(topology: Topology, generation: number, reason: 'start' | 'recovered'): OutboundMessage[] {
  return topology
    .sources()
    .flatMap((source) =>
      topology.instancesOf(source).map((to) => ({ queue: source.id, groupId: to, dedupId: `g${generation}:${reason}:${to}`, body: { type: 'poll' as const, gen: generation, to } })),
    );
}

export class Recovery {
  constructor(private readonly deps: RecoveryDeps) {}

  /** Every phase of one attempt, in order (the embedded runtime and the local cloud). */
  async run(job: JobRecord): Promise<JobRecord> {
    const attempt = await this.begin(job);
    const { generation } = attempt;
    const target = attempt.recovery?.toCheckpoint ?? 0;
    await this.deps.purgeOperatorQueues?.();
    await this.after('purge', `generation ${generation}`);
    for (const vertex of this.deps.topology.vertices) await this.restoreOperator(vertex.id, target, generation);
    for (const id of this.deps.topology.allInstances()) await this.restoreInstance(id, target, generation);
    return this.finish(generation);
  }

  /**
   * A new attempt: claims it on the job record (conditional on its version, so two
   * coordinators cannot both begin one), in a new generation unless it is the recovery's first
   * attempt, fences every instance at that generation (from here no step of an older one
   * commits: nothing is restored before this), and marks the checkpoints it makes
   * unrestorable. Returns the job in the attempt's generation.
   */
  async begin(job: JobRecord): Promise<JobRecord> {
    const { checkpoints, clock, state, topology } = this.deps;
    const next = recoveryAttemptStarted(job);
    await checkpoints.putJob(next, job.version);
    await state.fenceInstances(topology.allInstances(), next.generation);
    const target = next.recovery?.toCheckpoint ?? 0;
    for (const id of [...job.pendingCheckpoints, ...job.retainedCheckpoints.filter((c) => c > target)]) {
      const checkpoint = await checkpoints.getCheckpoint(id);
      if (checkpoint?.status === 'PENDING') {
        await checkpoints.putCheckpoint({ ...checkpoint, status: 'ABORTED', finishedAt: clock.now(), abortReason: 'rollback' });
      } else if (checkpoint?.status === 'COMPLETED' && checkpoint.id > target) {
        // Restoring an older checkpoint discards the newer ones' versions: no longer restorable.
        await checkpoints.putCheckpoint({ ...checkpoint, status: 'ABORTED', abortReason: `discarded by restore to ${target}` });
      }
    }
    await this.after('begin', `generation ${next.generation}, attempt ${next.recovery?.attempts ?? 0}`);
    return next;
  }

  /**
   * Keyed state back to the checkpoint, staged sink output of later epochs discarded, and the
   * published sink batches of later epochs withdrawn. The withdrawal is unconditional: a
   * commit-sinks interrupted between its publishes and the job record's `sinksCommittedThrough`
   * leaves batches of epochs above it, which the replay would publish again.
   */
  async restoreOperator(vertexId: string, target: number, generation: number): Promise<{ keysRestored: number }> {
    await this.current(generation);
    const vertex = this.deps.topology.vertex(vertexId);
    if (!vertex) throw new Error(`unknown vertex ${vertexId}`);
    let keysRestored = 0;
    if (hasKeyedState(vertex)) {
      try {
        keysRestored = (await this.deps.state.restoreOperator(vertex.id, target, { generation })).keysRestored;
      } catch (error) {
        if (error instanceof GenerationFencedError) throw new RecoverySupersededError(generation, error.actual);
        throw error;
      }
    }
    if (vertex.sink?.mode === 'transactional') {
      await this.deps.state.discardStagedAfter(vertex.sink.uid, target);
      await this.deps.sinks.retractFrom(vertex.sink.uid, pad(target + 1));
    }
    await this.after('restore-operator', vertex.id);
    return { keysRestored };
  }

  /** The instance record as of the checkpoint, in the attempt's generation (never over a newer one). */
  async restoreInstance(id: string, target: number, generation: number): Promise<{ restored: boolean }> {
    await this.current(generation);
    const { state } = this.deps;
    const old = await state.loadInstance(id);
    if (old && old.generation >= generation) return { restored: false };
    const snapshot = target > 0 ? await state.loadSnapshot(id, target) : undefined;
    if (target > 0 && !snapshot) throw new CheckpointNotFoundError(`checkpoint ${target} has no snapshot for ${id}`);
    const restored = await state.putInstance(
      {
        ...initialInstanceRecord(id, generation),
        ...(snapshot?.state ?? {}),
        version: (old?.version ?? 0) + 1,
        epoch: target + 1,
        lastBarrier: target,
        replay: snapshot?.channelState ?? [],
      },
      { onlyOverOlderGeneration: true },
    );
    await this.after('restore-instance', id);
    return { restored };
  }

  /** The job RUNNING again; sources polled (they read from their restored offsets); replay ticks to start restored channel state. */
  async finish(generation: number): Promise<JobRecord> {
    const job = await this.current(generation);
    const { checkpoints, topology, clock } = this.deps;
    const target = job.recovery?.toCheckpoint ?? 0;
    const lastCompletedAt = target > 0 ? ((await checkpoints.getCheckpoint(target))?.finishedAt ?? 0) : 0;
    const restored = { ...job, lastCompletedId: target, lastCompletedAt, sinksCommittedThrough: Math.min(job.sinksCommittedThrough, target) };
    const running = recoveryFinished(restored, clock.now());
    await checkpoints.putJob(running, job.version);
    await this.after('finish', `generation ${generation}`);
    await this.deps.transport.send(sourcePolls(topology, generation, 'recovered'));
    await this.deps.transport.send(
      topology.vertices
        .filter((v) => v.head.kind !== 'source')
        .flatMap((v) => topology.instancesOf(v).map((to) => ({ queue: v.id, groupId: to, dedupId: `g${generation}:replay:${to}`, body: { type: 'tick' as const, gen: generation, to } }))),
    );
    return running;
  }

  /** The job, if `generation` is still the current attempt's; otherwise the attempt is over. */
  private async current(generation: number): Promise<JobRecord> {
    const job = await this.deps.checkpoints.getJob();
    if (!job?.recovery || job.generation !== generation) throw new RecoverySupersededError(generation, job?.generation);
    return job;
  }

  private async after(phase: RecoveryPhase, detail: string): Promise<void> {
    await this.deps.faults?.afterRecoveryPhase?.(phase, detail);
  }
}
