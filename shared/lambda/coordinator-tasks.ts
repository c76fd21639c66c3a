import { CoordinatorDriver, type CoordinatorDeps, type CoordinatorEnvironment, type ExecutableDecision } from '../core/coordinator-driver.js';
import type { JobGraph } from '../core/job.js';
import type { CheckpointRecord, JobRecord } from '../core/ports.js';
import { decideNext, restartOrFail, rollbackTarget } from '../core/protocol/coordinator.js';
import type { RestartStrategy } from '../core/protocol/restart-strategy.js';
import { Topology } from '../core/topology.js';

/**
 * The task functions of the coordinator state machines. Each one is one state of
 * infra/coordinator.ts: the decision comes from the engine's `decideNext`, the transition is
 * executed by CoordinatorDriver (the same code the embedded runtime runs); this file only maps
 * Step Functions' JSON in and out. Every task is idempotent or guarded by the job record's
 * version, so Step Functions' retries and overlapping executions are harmless.
 */

/** The driver's ports and config (CoordinatorDeps), plus what the workflow's tasks need around them. */
export interface CoordinatorTaskDeps extends Pick<CoordinatorDeps, 'config' | 'checkpoints' | 'state' | 'log' | 'sinks' | 'transport' | 'clock'> {
  readonly graph: JobGraph;
  readonly restartStrategy: RestartStrategy;
  /** Vertex id -> queue URL (sends, and the idle check before each decision). */
  readonly queueUrls: Readonly<Record<string, string>>;
  /** Nothing queued or in flight on any vertex queue (asked before each decision). */
  readonly queuesIdle: () => Promise<boolean>;
  readonly sendTaskSuccess: (token: string, output: unknown) => Promise<void>;
  readonly metric?: (name: string, value: number, unit?: 'Count' | 'Milliseconds') => void;
  /** Wait at most this long while a pending checkpoint has no waiting task token (default 5 s). */
  readonly pollSeconds?: number;
}

/** What the Decide state passes: the execution's input, which of its requests were served, its start time. */
export interface DecideInput {
  readonly input?: {
    /** Request a manual checkpoint (`cairn trigger`: StartExecution with {"manual": true}). */
    readonly manual?: boolean;
    /** A failure that needs a rollback: message in a DLQ (alarm rule), fatal error, user restart. */
    readonly restart?: string | null;
    /** How long this execution keeps looping before it hands over to the next scheduled one (default 0: one round). */
    readonly windowSeconds?: number;
  } | null;
  /** Set by the ManualConsumed / RestartConsumed states once the request was served. */
  readonly consumed?: { readonly manual?: boolean; readonly restart?: boolean };
  /** `$$.Execution.StartTime`. */
  readonly startedAt?: string;
}

export type StepType = CheckpointDecisionType | 'wait' | 'failed' | 'finished';
type CheckpointDecisionType = ExecutableDecision['type'];

export interface DecideOutput {
  readonly type: StepType;
  /** Checkpoint of the decision (0 if none). */
  readonly checkpointId: number;
  /** Reason of abort/recovery, or the abort reason to use if the acks of `checkpointId` time out. */
  readonly reason: string;
  readonly trigger: string;
  readonly toCheckpoint: number;
  /** The job version the decision was made on: `apply` refuses to run on a newer one. */
  readonly jobVersion: number;
  readonly waitSeconds: number;
  /** The execution's window is over: end it (the next scheduled execution carries on). */
  readonly handoff: boolean;
  readonly decision: ExecutableDecision | null;
}

/** The decision is older than the job record: go back to Decide. Step Functions catches it by name. */
export class StaleDecisionError extends Error {
  override readonly name = 'StaleDecisionError';
}

type TaskTokenRecord = CheckpointRecord & { readonly taskToken?: string };

export interface RecoveryPlan {
  readonly action: 'recover' | 'fail';
  readonly delaySeconds: number;
  readonly reason: string;
  readonly toCheckpoint: number;
}

/** What BumpGeneration hands to the Map states: the attempt's generation travels with every item. */
export interface RecoveryTargets {
  readonly toCheckpoint: number;
  readonly generation: number;
  readonly vertices: { vertex: string; toCheckpoint: number; generation: number }[];
  readonly instances: { instance: string; toCheckpoint: number; generation: number }[];
}

export class CoordinatorTasks {
  readonly topology: Topology;

  constructor(private readonly deps: CoordinatorTaskDeps) {
    this.topology = new Topology(deps.graph);
  }

  private driver(env: Partial<{ idle: boolean; restart: string | undefined; manual: boolean }> = {}): CoordinatorDriver {
    let restart = env.restart;
    let manual = env.manual ?? false;
    const environment: CoordinatorEnvironment = {
      isIdle: () => env.idle ?? false,
      // The recovery state machine purges the queues in its own Map state (PurgeQueue has a
      // 60 s rate limit per queue and is only an optimization: fencing makes rollback correct).
      purgeOperatorQueues: () => undefined,
      takeFailureSignal: () => {
        const signal = restart;
        restart = undefined;
        return signal;
      },
      takeManualTrigger: () => {
        const requested = manual;
        manual = false;
        return requested;
      },
    };
    return new CoordinatorDriver({
      topology: this.topology,
      config: this.deps.config,
      checkpoints: this.deps.checkpoints,
      state: this.deps.state,
      log: this.deps.log,
      sinks: this.deps.sinks,
      transport: this.deps.transport,
      clock: this.deps.clock,
      env: environment,
      restartStrategy: this.deps.restartStrategy,
    });
  }

  /** Decide: read the facts, run `decideNext`, say which state comes next. Creates the job on first run. */
  async decide(input: DecideInput = {}): Promise<DecideOutput> {
    const now = this.deps.clock.now();
    const startedAt = input.startedAt ? Date.parse(input.startedAt) : now;
    const elapsedSeconds = Math.max(0, (now - (Number.isNaN(startedAt) ? now : startedAt)) / 1000);
    const request = input.input ?? {};
    const restart = input.consumed?.restart ? undefined : (request.restart ?? undefined);
    const manual = input.consumed?.manual ? false : request.manual === true;
    const windowSeconds = request.windowSeconds ?? 0;
    const driver = this.driver({ idle: await this.deps.queuesIdle(), restart, manual });
    const job = (await this.deps.checkpoints.getJob()) ?? (await driver.initialize());
    const base = { checkpointId: 0, reason: '', trigger: '', toCheckpoint: job.lastCompletedId, jobVersion: job.version, waitSeconds: 0, handoff: false, decision: null };
    if (job.status === 'FAILED') return { ...base, type: 'failed', reason: job.failure ?? 'job failed' };
    if (job.status === 'FINISHED') return { ...base, type: 'finished' };

    const facts = await driver.readFacts(job);
    const decision = decideNext(this.deps.config, facts, this.deps.restartStrategy);
    // A looping execution past its window starts no new round: it hands over to the next
    // scheduled one. Rounds that never wait (a continuous trigger, a trigger always due) would
    // otherwise grow its history to Standard's 25,000-event limit while the schedule starts more.
    if (decision.type === 'trigger' && windowSeconds > 0 && elapsedSeconds > windowSeconds) return { ...base, type: 'wait', waitSeconds: 0, handoff: true };
    if (decision.type !== 'wait') {
      const checkpointId = 'checkpointId' in decision ? decision.checkpointId : 'throughCheckpoint' in decision ? decision.throughCheckpoint : 0;
      const reason =
        'reason' in decision
          ? decision.reason
          : decision.type === 'continue-recovery'
            ? (job.recovery?.reason ?? 'recovery in progress')
            : `timed out after ${this.deps.config.timeoutMs} ms waiting for acknowledgements`;
      return {
        ...base,
        type: decision.type,
        checkpointId,
        reason,
        trigger: decision.type === 'trigger' ? decision.trigger : '',
        toCheckpoint: 'toCheckpoint' in decision ? decision.toCheckpoint : (job.recovery?.toCheckpoint ?? job.lastCompletedId),
        decision,
      };
    }
    // Wait until the decision's time, but poll while a pending checkpoint has barriers out and
    // no execution waits on its acks with a task token (another execution's, or a handover).
    let waitMs = decision.until === undefined ? Number.POSITIVE_INFINITY : Math.max(0, decision.until - now);
    if (decision.until === undefined || facts.pending.some((c) => c.barriersInjected)) waitMs = Math.min(waitMs, (this.deps.pollSeconds ?? 5) * 1000);
    const waitSeconds = Math.max(1, Math.ceil(waitMs / 1000));
    // A short wait (a time trigger due in a few seconds) is served even in a one-round execution.
    // A paused job's execution ends at once: `cairn resume` starts the next one.
    const handoff = (job.paused === true && facts.pending.length === 0) || elapsedSeconds + waitSeconds > Math.max(windowSeconds, 60) || (decision.until === undefined && windowSeconds === 0);
    return { ...base, type: 'wait', waitSeconds, handoff };
  }

  /** One transition (Trigger, InjectBarriers, CompleteCheckpoint, CommitSinks, AbortCheckpoint, Finish). */
  async apply(input: { readonly decision: ExecutableDecision | null; readonly jobVersion: number }): Promise<{ applied: string }> {
    const { decision } = input;
    if (!decision) throw new Error('apply: no decision');
    const job = await this.requireJob();
    if (job.version !== input.jobVersion) throw new StaleDecisionError(`job moved from version ${input.jobVersion} to ${job.version} since the decision`);
    await this.driver().execute(decision, job);
    await this.afterTransition(decision);
    return { applied: decision.type };
  }

  /**
   * AwaitAcks (`.waitForTaskToken`): stores the token on the checkpoint record, then sends it
   * back at once if every acknowledgement is already in (they can beat the token). Otherwise the
   * acknowledgement listener sends it when the last one arrives.
   */
  async awaitAcks(input: { readonly checkpointId: number; readonly token: string }): Promise<{ waiting: boolean }> {
    const checkpoint = await this.deps.checkpoints.getCheckpoint(input.checkpointId);
    if (checkpoint?.status !== 'PENDING') {
      await this.succeed(input.token, { checkpointId: input.checkpointId, status: checkpoint?.status ?? 'MISSING' });
      return { waiting: false };
    }
    // Conditional: a checkpoint completed or aborted since the read above stays so.
    if (!(await this.deps.checkpoints.putCheckpointIfPending({ ...checkpoint, taskToken: input.token } as TaskTokenRecord))) {
      const now = await this.deps.checkpoints.getCheckpoint(input.checkpointId);
      await this.succeed(input.token, { checkpointId: input.checkpointId, status: now?.status ?? 'MISSING' });
      return { waiting: false };
    }
    const done = await this.notifyIfComplete(input.checkpointId);
    return { waiting: !done };
  }

  /**
   * Sends the waiting task token of `checkpointId` if its acknowledgements are complete (or the
   * checkpoint is no longer pending). Called by AwaitAcks and by the listener on the ack items.
   */
  async notifyIfComplete(checkpointId: number): Promise<boolean> {
    const checkpoint: TaskTokenRecord | undefined = await this.deps.checkpoints.getCheckpoint(checkpointId);
    if (!checkpoint?.taskToken) return false;
    // Acks only: the acknowledgement listener's role reads the table and writes nothing (loading
    // instance records, as the full facts do, can finish a fold, which is a write).
    if (checkpoint.status === 'PENDING' && (await this.driver().acksOf(checkpoint)) < this.topology.allInstances().length) return false;
    await this.succeed(checkpoint.taskToken, { checkpointId, status: checkpoint.status });
    return true;
  }

  /** AbortCheckpoint after the task token timed out (the Step Functions timer is the checkpoint timeout). */
  async abort(input: { readonly checkpointId: number; readonly reason: string }): Promise<{ aborted: boolean }> {
    const checkpoint = await this.deps.checkpoints.getCheckpoint(input.checkpointId);
    if (checkpoint?.status !== 'PENDING') return { aborted: false };
    const job = await this.requireJob();
    const decision: ExecutableDecision = { type: 'abort', checkpointId: input.checkpointId, reason: input.reason };
    await this.driver().execute(decision, job);
    await this.afterTransition(decision);
    return { aborted: true };
  }

  // ---------- recovery state machine ----------

  /** PlanRestart: the restart strategy decides whether the job may restart, and after which delay. */
  async planRestart(input: { readonly reason: string }): Promise<RecoveryPlan> {
    const job = await this.requireJob();
    if (job.recovery) return { action: 'recover', delaySeconds: 0, reason: job.recovery.reason, toCheckpoint: job.recovery.toCheckpoint };
    // An operator's rollback is not a failure: the restart strategy does not apply to it.
    const requested = job.requests?.rollback;
    if (requested) return { action: 'recover', delaySeconds: 0, ...rollbackTarget(job, requested) };
    const decision = restartOrFail(this.deps.restartStrategy, job, this.deps.clock.now(), input.reason);
    if (decision.type === 'fail') return { action: 'fail', delaySeconds: 0, reason: decision.reason, toCheckpoint: job.lastCompletedId };
    return { action: 'recover', delaySeconds: Math.round((decision.type === 'start-recovery' ? (decision.delayMs ?? 0) : 0) / 1000), reason: input.reason, toCheckpoint: job.lastCompletedId };
  }

  /** MarkFailed: restart strategy exhausted. */
  async markFailed(input: { readonly reason: string }): Promise<{ status: 'FAILED' }> {
    const job = await this.requireJob();
    if (job.status !== 'FAILED') {
      await this.deps.checkpoints.putJob({ ...job, version: job.version + 1, status: 'FAILED', failure: input.reason }, job.version);
      this.deps.metric?.('JobFailed', 1);
    }
    return { status: 'FAILED' };
  }

  /**
   * BumpGeneration: the `start-recovery` transition if no recovery is under way (the restart
   * delay was the RestartDelay state), then a new attempt of it (Recovery.begin: its own
   * generation unless it is the first). A retried or concurrent BumpGeneration opens a newer
   * attempt, which fences the earlier one off; that one's later states end as superseded.
   */
  async startRecovery(input: { readonly reason: string }): Promise<RecoveryTargets> {
    let job = await this.requireJob();
    const driver = this.driver();
    if (!job.recovery) {
      const requested = job.requests?.rollback;
      const target = requested ? rollbackTarget(job, requested) : { toCheckpoint: job.lastCompletedId, reason: input.reason };
      await driver.execute({ type: 'start-recovery', ...target }, job);
      this.deps.metric?.('RecoveryStarted', 1);
      job = await this.requireJob();
    }
    const attempt = await driver.recovery().begin(job);
    const toCheckpoint = attempt.recovery?.toCheckpoint ?? attempt.lastCompletedId;
    const { generation } = attempt;
    return {
      toCheckpoint,
      generation,
      vertices: this.topology.vertices.map((v) => ({ vertex: v.id, toCheckpoint, generation })),
      instances: this.topology.allInstances().map((instance) => ({ instance, toCheckpoint, generation })),
    };
  }

  /** RestoreOperators (Map over vertices): keyed state back to the checkpoint, later sink epochs discarded and withdrawn. */
  async restoreOperator(input: { readonly vertex: string; readonly toCheckpoint: number; readonly generation: number }): Promise<{ keysRestored: number }> {
    return this.driver().recovery().restoreOperator(input.vertex, input.toCheckpoint, input.generation);
  }

  /** RestoreInstances (Map over instances): the instance record as of the checkpoint, in the attempt's generation. */
  async restoreInstance(input: { readonly instance: string; readonly toCheckpoint: number; readonly generation: number }): Promise<{ restored: boolean }> {
    return this.driver().recovery().restoreInstance(input.instance, input.toCheckpoint, input.generation);
  }

  /** Resume: only finishes the attempt (job RUNNING, sources polled, replay ticks); it never restores again. */
  async resume(input: { readonly generation: number }): Promise<{ generation: number; restoredTo: number }> {
    const after = await this.driver().recovery().finish(input.generation);
    return { generation: after.generation, restoredTo: after.lastCompletedId };
  }

  // ---------- helpers ----------

  /** Metrics: CheckpointCompleted with CheckpointDuration (trigger to completion, ms), CheckpointAborted. */
  private async afterTransition(decision: ExecutableDecision): Promise<void> {
    if (!this.deps.metric) return;
    if (decision.type === 'complete') {
      this.deps.metric('CheckpointCompleted', 1);
      const checkpoint = await this.deps.checkpoints.getCheckpoint(decision.checkpointId);
      if (checkpoint?.finishedAt !== undefined) this.deps.metric('CheckpointDuration', checkpoint.finishedAt - checkpoint.triggeredAt, 'Milliseconds');
    }
    if (decision.type === 'abort') this.deps.metric('CheckpointAborted', 1);
  }

  private async succeed(token: string, output: unknown): Promise<void> {
    try {
      await this.deps.sendTaskSuccess(token, output);
    } catch (error) {
      // Another path sent it first, or the wait already timed out: nothing left to tell.
      const name = (error as Error).name;
      if (name !== 'TaskTimedOut' && name !== 'InvalidToken' && name !== 'TaskDoesNotExist') throw error;
    }
  }

  private async requireJob(): Promise<JobRecord> {
    const job = await this.deps.checkpoints.getJob();
    if (!job) throw new Error('job not initialized');
    return job;
  }
}
