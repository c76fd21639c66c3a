import { parseRuntimeLimits, type RuntimeLimits } from '../core/config.js';
import { requestCheckpoint, updateJob } from '../core/control.js';
import { CoordinatorDriver, type CoordinatorDeps, type CoordinatorEnvironment, type ExecutableDecision } from '../core/coordinator-driver.js';
import { ConcurrentStepError } from '../core/errors.js';
import type { JobGraph } from '../core/job.js';
import type { CheckpointRecord, JobRecord } from '../core/ports.js';
import { decideNext, restartOrFail, rollbackRequested, rollbackTarget } from '../core/protocol/coordinator.js';
import { isAsleep, leaseHeldByOther, mayHibernate, released, RunEnd, wakeExecutionName, withLease } from '../core/protocol/coordinator-lease.js';
import type { RestartStrategy } from '../core/protocol/restart-strategy.js';
import { tickIntervalFor, tickMessages } from '../core/timer-service.js';
import { Topology } from '../core/topology.js';

/**
 * The task functions of the coordinator state machines (infra/coordinator.ts). The checkpoint
 * workflow's one task is `run`: the coordinator loop in one invocation (decide with the engine's
 * `decideNext`, execute with CoordinatorDriver, the same code the embedded runtime runs; wait
 * for acknowledgements by reading them; send the timer service's ticks) until its time budget
 * is spent, a long wait (a Wait state, which bills no compute), a rollback (the recovery
 * workflow), or nothing to do (it sleeps: the execution ends until something wakes it). The
 * recovery workflow's tasks are one state each. Every task is idempotent or guarded by the job
 * record's version, so Step Functions' retries and overlapping executions are harmless; a lease
 * on the job record keeps overlapping executions from running the loop twice.
 */

/** The driver's ports and config (CoordinatorDeps), plus what the workflow's tasks need around them. */
export interface CoordinatorTaskDeps extends Pick<CoordinatorDeps, 'config' | 'checkpoints' | 'state' | 'log' | 'sinks' | 'transport' | 'clock'> {
  readonly graph: JobGraph;
  readonly restartStrategy: RestartStrategy;
  /** Vertex id -> queue URL (sends, and the idle check before each decision). */
  readonly queueUrls: Readonly<Record<string, string>>;
  /** Nothing queued or in flight on any vertex queue (asked only once every source finished its input). */
  readonly queuesIdle: () => Promise<boolean>;
  /** Starts an execution of the checkpoint workflow with this name (CoordinatorWaker): a successor, or a wake-up after a recovery. */
  readonly wake?: (name: string) => Promise<void>;
  /** Waits `ms` (real time in Lambda; tests play the operators meanwhile). */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly limits?: RuntimeLimits;
  readonly run?: Partial<RunOptions>;
  readonly metric?: (name: string, value: number, unit?: 'Count' | 'Milliseconds') => void;
}

/** How the `run` task spends an invocation. */
export interface RunOptions {
  /** One invocation runs the loop this long at most (the function's timeout is 15 min). */
  readonly budgetMs: number;
  /** Waits up to this long are spent in the invocation; longer ones in a Wait state (a Wait's transitions cost about as much as 20 s of a 256 MB function). */
  readonly maxInvocationWaitMs: number;
  /** Acknowledgements are read this often at most while a checkpoint is in flight (backing off from 50 ms). */
  readonly ackPollMs: number;
  /** While a checkpoint is in flight, the job record is read this often for a rollback request (a dead letter's reported failure). */
  readonly requestPollMs: number;
  /** An execution older than this starts its successor and ends. */
  readonly lifetimeMs: number;
  /** History events at which Step Functions fails an execution (Standard: 25,000): one that would reach it hands over first. */
  readonly historyLimit: number;
}

export const DEFAULT_RUN_OPTIONS: RunOptions = { budgetMs: 10 * 60_000, maxInvocationWaitMs: 20_000, ackPollMs: 500, requestPollMs: 2_000, lifetimeMs: 6 * 3_600_000, historyLimit: 25_000 };

/**
 * The history events of the checkpoint workflow as built (infra/coordinator.ts), counted as
 * Step Functions writes them. The `run` task carries the count from one invocation to the next
 * (`$.run.history`) and hands over to a successor before a round could reach the limit: an
 * execution that loops (waits, recoveries, retried invocations) never fails for its history.
 */
export const WORKFLOW_HISTORY = {
  /** ExecutionStarted; Init's PassStateEntered and PassStateExited. */
  start: 3,
  /** Run's TaskStateEntered. */
  runEntered: 1,
  /** One invocation: scheduled, started, and its outcome (succeeded, failed, timed out). */
  attempt: 3,
  /** Run's TaskStateExited; Route's ChoiceStateEntered and ChoiceStateExited. */
  routed: 3,
  /** Between Route and the next Run: WaitStateEntered/Exited; Recover's entered, scheduled, started, submitted, succeeded, exited. */
  next: { [RunEnd.Continue]: 0, [RunEnd.Wait]: 2, [RunEnd.Recover]: 6 } as Partial<Record<RunEnd, number>>,
  /** Run's retries of a failed invocation (infra/coordinator.ts RUN_RETRY). */
  runRetries: 5,
  /** The most one round can add: every retry of Run failed but the last, then a recovery. */
  maxRound: 1 + (1 + 5) * 3 + 3 + 6,
  /** After Route, an ending: SucceedStateEntered, SucceedStateExited, ExecutionSucceeded. */
  end: 3,
} as const;

/** Events in the history while invocation `retryCount` of the Run state entered after `history` events runs. */
export function historyDuringRun(history: number, retryCount: number): number {
  return history + WORKFLOW_HISTORY.runEntered + WORKFLOW_HISTORY.attempt * retryCount + WORKFLOW_HISTORY.attempt - 1;
}

/** Events in the history when the next Run state is entered, after a round that ended `type`. */
export function historyAfterRound(history: number, retryCount: number, type: RunEnd): number {
  return historyDuringRun(history, retryCount) + 1 + WORKFLOW_HISTORY.routed + (WORKFLOW_HISTORY.next[type] ?? 0);
}
/** A lease outlives the invocation that took it by this much (a crashed owner is replaced after it). */
const LEASE_SLACK_MS = 60_000;

/** One decision's input: the execution's input and which of its requests were served already. */
export interface DecideInput {
  readonly input?: {
    /** Request a manual checkpoint (`cairn trigger`: StartExecution with {"manual": true}). */
    readonly manual?: boolean;
    /** A failure that needs a rollback (a fatal error, a user's restart). */
    readonly restart?: string | null;
  } | null;
  /** What the execution served already (carried from one `run` invocation to the next). */
  readonly consumed?: { readonly manual?: boolean; readonly restart?: boolean };
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
  /** Milliseconds until the decision's time (wait; Infinity when it waits for input or a request). */
  readonly waitMs: number;
  /** Nothing can happen until input or a request arrives: the coordinator may sleep (mayHibernate). */
  readonly hibernate: boolean;
  readonly decision: ExecutableDecision | null;
}

/** What the `run` task gets: the execution's name (the lease owner), input and start time, and what it already served. */
export interface RunInput {
  readonly execution: string;
  readonly input?: DecideInput['input'];
  readonly consumed?: DecideInput['consumed'];
  /** `$$.Execution.StartTime` (an execution hands over to a successor after its lifetime). */
  readonly startedAt?: string;
  /** Events in the execution's history before this Run state (`$.run.history`; WORKFLOW_HISTORY). */
  readonly history?: number;
  /** `$$.State.RetryCount`: invocations of this Run state that failed before this one. */
  readonly retryCount?: number;
  /** The invocation's remaining time (context.getRemainingTimeInMillis()). */
  readonly remainingMs?: number;
}

export interface RunOutput {
  readonly type: RunEnd;
  /** Wait: seconds to wait before running again. */
  readonly waitSeconds: number;
  /** Recover: why; Failed: the job's failure. */
  readonly reason: string;
  readonly consumed: { readonly manual: boolean; readonly restart: boolean };
  /** Transitions executed in this invocation. */
  readonly transitions: number;
  /** Events in the history when the next Run state is entered (WORKFLOW_HISTORY). */
  readonly history: number;
}

/** The decision is older than the job record: go back to Decide. Step Functions catches it by name. */
export class StaleDecisionError extends Error {
  override readonly name = 'StaleDecisionError';
}

export interface RecoveryPlan {
  readonly action: 'recover' | 'fail';
  readonly delaySeconds: number;
  readonly reason: string;
  readonly toCheckpoint: number;
}

/**
 * Instances restored by one RestoreInstances task. The Map iterates over batches, not instances:
 * an iteration costs about 7 history events and its item travels in the state's payload, so a
 * Map over every instance would reach Standard's 25,000 events (and 256 KB) at ~3,500 instances.
 */
export const INSTANCES_PER_RESTORE_TASK = 50;
/** Instance records a RestoreInstances task writes at once. */
const RESTORE_CONCURRENCY = 10;

/** What BumpGeneration hands to the Map states: the attempt's generation travels with every item. */
export interface RecoveryTargets {
  readonly toCheckpoint: number;
  readonly generation: number;
  readonly vertices: { vertex: string; toCheckpoint: number; generation: number }[];
  /** Batch `b` is the instances [b * INSTANCES_PER_RESTORE_TASK, (b + 1) * ...) of the topology's order. */
  readonly instanceBatches: { batch: number; toCheckpoint: number; generation: number }[];
}

export class CoordinatorTasks {
  readonly topology: Topology;
  /** Completed checkpoint records, read once per warm container (CoordinatorDeps.completedCache). */
  private readonly completedCache = new Map<number, CheckpointRecord>();

  constructor(private readonly deps: CoordinatorTaskDeps) {
    this.topology = new Topology(deps.graph);
  }

  private driver(env: Partial<{ restart: string | undefined; manual: boolean }> = {}): CoordinatorDriver {
    let restart = env.restart;
    let manual = env.manual ?? false;
    const environment: CoordinatorEnvironment = {
      isIdle: () => this.deps.queuesIdle(),
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
      completedCache: this.completedCache,
    });
  }

  /** Decide: read the facts, run `decideNext`, say what comes next. Creates the job on first run. */
  async decide(input: DecideInput = {}): Promise<DecideOutput> {
    const now = this.deps.clock.now();
    const request = input.input ?? {};
    const restart = input.consumed?.restart ? undefined : (request.restart ?? undefined);
    const manual = input.consumed?.manual ? false : request.manual === true;
    const driver = this.driver({ restart, manual });
    const job = (await this.deps.checkpoints.getJob()) ?? (await driver.initialize());
    const base = { checkpointId: 0, reason: '', trigger: '', toCheckpoint: job.lastCompletedId, jobVersion: job.version, waitMs: 0, hibernate: false, decision: null };
    if (job.status === 'FAILED') return { ...base, type: 'failed', reason: job.failure ?? 'job failed' };
    if (job.status === 'FINISHED') return { ...base, type: 'finished' };

    const facts = await driver.readFacts(job);
    const decision = decideNext(this.deps.config, facts, this.deps.restartStrategy);
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
    const waitMs = decision.until === undefined ? Number.POSITIVE_INFINITY : Math.max(0, decision.until - now);
    return { ...base, type: 'wait', waitMs, hibernate: mayHibernate(facts, decision) };
  }

  /**
   * The checkpoint workflow's task: the coordinator loop for one invocation. Takes the lease (or
   * ends at once if another execution holds it, leaving its requests on the job record), then
   * decides and executes until the budget is spent, a long wait, a rollback, the end of the job,
   * or nothing to do (it sleeps, and ends).
   */
  async run(input: RunInput): Promise<RunOutput> {
    const options = { ...DEFAULT_RUN_OPTIONS, ...this.deps.run };
    const { clock } = this.deps;
    const started = clock.now();
    const budget = Math.max(1_000, Math.min(options.budgetMs, (input.remainingMs ?? Number.POSITIVE_INFINITY) - 30_000));
    const deadline = started + budget;
    const executionStart = input.startedAt ? Date.parse(input.startedAt) : started;
    const consumed = { manual: input.consumed?.manual === true, restart: input.consumed?.restart === true };
    let transitions = 0;
    const history = input.history ?? WORKFLOW_HISTORY.start;
    const retryCount = input.retryCount ?? 0;
    const end = (type: RunEnd, extra: Partial<Pick<RunOutput, 'waitSeconds' | 'reason'>> = {}): RunOutput => ({
      type,
      waitSeconds: 0,
      reason: '',
      consumed,
      transitions,
      history: historyAfterRound(history, retryCount, type),
      ...extra,
    });

    if (!(await this.acquire(input.execution, deadline + LEASE_SLACK_MS))) {
      await this.leaveRequests(input, consumed);
      return end(RunEnd.Handoff);
    }
    // Standard's history limit: hand over while this round and the next one's ending still fit.
    if (historyDuringRun(history, retryCount) + 2 * WORKFLOW_HISTORY.maxRound + WORKFLOW_HISTORY.end > options.historyLimit && (await this.handOver(input.execution))) {
      return end(RunEnd.Handoff);
    }
    const tickEvery = tickIntervalFor(this.topology, this.deps.config, this.deps.limits ?? parseRuntimeLimits());
    let nextTickAt = started;
    for (;;) {
      let now = clock.now();
      if (now >= deadline) return this.endOfBudget(input.execution, executionStart, options, end);
      if (tickEvery !== undefined && now >= nextTickAt) {
        nextTickAt = now + tickEvery;
        await this.sendTicks(now);
      }
      const step = await this.decide({ input: input.input ?? null, consumed });
      switch (step.type) {
        case 'failed':
          return end(RunEnd.Failed, { reason: step.reason });
        case 'finished':
          return end(RunEnd.Finished);
        case 'start-recovery':
        case 'continue-recovery':
          if (input.input?.restart) consumed.restart = true;
          return end(RunEnd.Recover, { reason: step.reason });
        case 'wait': {
          if (step.hibernate) {
            if (await this.fallAsleep(input.execution)) return end(RunEnd.Sleep);
            continue;
          }
          now = clock.now();
          const untilTick = tickEvery === undefined ? Number.POSITIVE_INFINITY : nextTickAt - now;
          // Waiting for nothing in particular but not allowed to sleep (a bounded input draining): look again in a second.
          const stepWait = Number.isFinite(step.waitMs) ? step.waitMs : 1_000;
          if (stepWait > options.maxInvocationWaitMs && untilTick > options.maxInvocationWaitMs) {
            if (now - executionStart > options.lifetimeMs && (await this.handOver(input.execution))) return end(RunEnd.Handoff);
            const waitMs = Math.min(stepWait, untilTick);
            await this.acquire(input.execution, now + waitMs + LEASE_SLACK_MS);
            return end(RunEnd.Wait, { waitSeconds: Math.ceil(waitMs / 1000) });
          }
          // Until the decision's time: every decision reads the facts again (a request is served at the next one, at most 20 s away).
          await this.pause(Math.max(0, Math.min(stepWait, untilTick, deadline - now)));
          continue;
        }
        default: {
          if (!step.decision) throw new Error(`run: decision ${step.type} without its transition`);
          try {
            await this.apply({ decision: step.decision, jobVersion: step.jobVersion });
          } catch (error) {
            // The facts moved on since the decision (a request, an operator's write): decide again.
            if (error instanceof StaleDecisionError || error instanceof ConcurrentStepError) continue;
            throw error;
          }
          transitions++;
          if (step.type === 'trigger' && input.input?.manual === true) consumed.manual = true;
          if (step.type === 'inject-barriers') await this.awaitAcks(step.checkpointId, deadline, options);
        }
      }
    }
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
   * Reads the acknowledgements of checkpoint `id` (backing off from 50 ms) until every instance
   * acknowledged, its timeout or the invocation's deadline comes, or the job record asks for a
   * rollback (a message lost to a dead-letter queue: the barriers behind it may never come):
   * then the loop decides again (complete, abort on the timeout, or recover).
   */
  private async awaitAcks(id: number, deadline: number, options: Pick<RunOptions, 'ackPollMs' | 'requestPollMs'>): Promise<void> {
    const checkpoint = await this.deps.checkpoints.getCheckpoint(id);
    if (checkpoint?.status !== 'PENDING') return;
    const driver = this.driver();
    const expected = this.topology.allInstances().length;
    const timeoutAt = checkpoint.triggeredAt + this.deps.config.timeoutMs;
    let requestsReadAt = this.deps.clock.now();
    for (let delay = 50; ; delay = Math.min(delay * 2, options.ackPollMs)) {
      if ((await driver.acksOf(checkpoint)) >= expected) return;
      const now = this.deps.clock.now();
      if (now >= timeoutAt || now >= deadline) return;
      if (now - requestsReadAt >= options.requestPollMs) {
        requestsReadAt = now;
        const job = await this.deps.checkpoints.getJob();
        if (job && rollbackRequested(job)) return;
      }
      await this.pause(Math.min(delay, timeoutAt - now, deadline - now));
    }
  }

  /** AbortCheckpoint (the embedded harness's and the CLI's way to give up a checkpoint). */
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
      instanceBatches: Array.from({ length: Math.ceil(this.topology.allInstances().length / INSTANCES_PER_RESTORE_TASK) }, (_, batch) => ({ batch, toCheckpoint, generation })),
    };
  }

  /** RestoreOperators (Map over vertices): keyed state back to the checkpoint, later sink epochs discarded and withdrawn. */
  async restoreOperator(input: { readonly vertex: string; readonly toCheckpoint: number; readonly generation: number }): Promise<{ keysRestored: number }> {
    return this.driver().recovery().restoreOperator(input.vertex, input.toCheckpoint, input.generation);
  }

  /**
   * RestoreInstances (Map over batches of instances): each instance record of the batch as of the
   * checkpoint, in the attempt's generation. Returns how many it wrote (a retried task finds the
   * records already in the attempt's generation and writes none).
   */
  async restoreInstances(input: { readonly batch: number; readonly toCheckpoint: number; readonly generation: number }): Promise<{ restored: number }> {
    const from = input.batch * INSTANCES_PER_RESTORE_TASK;
    const instances = this.topology.allInstances().slice(from, from + INSTANCES_PER_RESTORE_TASK);
    if (instances.length === 0) throw new RangeError(`restore-instances: batch ${input.batch} is past the job's ${this.topology.allInstances().length} instances`);
    const recovery = this.driver().recovery();
    let restored = 0;
    for (let i = 0; i < instances.length; i += RESTORE_CONCURRENCY) {
      const done = await Promise.all(instances.slice(i, i + RESTORE_CONCURRENCY).map((instance) => recovery.restoreInstance(instance, input.toCheckpoint, input.generation)));
      restored += done.filter((d) => d.restored).length;
    }
    return { restored };
  }

  /** Resume: only finishes the attempt (job RUNNING, sources polled, replay ticks); it never restores again. */
  async resume(input: { readonly generation: number }): Promise<{ generation: number; restoredTo: number }> {
    const after = await this.driver().recovery().finish(input.generation);
    // The replay has output to commit at the next checkpoint: a sleeping coordinator must wake for it.
    if (isAsleep(after)) await this.deps.wake?.(wakeExecutionName(after));
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

  /** Takes or extends the lease for `owner` until `until`; false if another execution holds a live one. */
  private async acquire(owner: string, until: number): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        // Two first executions at once (a wake-up and the watchdog): one creates the job, the other reads it next time round.
        const job = (await this.deps.checkpoints.getJob()) ?? (await this.driver().initialize());
        if (leaseHeldByOther(job, owner, this.deps.clock.now())) return false;
        if (job.coordinator?.owner === owner && (job.coordinator.until ?? 0) >= until) return true;
        await this.deps.checkpoints.putJob(withLease(job, owner, until), job.version);
        return true;
      } catch (error) {
        if (!(error instanceof ConcurrentStepError) || attempt >= 20) throw error;
      }
    }
  }

  /**
   * Gives up the lease and marks the coordinator asleep, then decides once more: input appended
   * before the mark was read by its ingest before the mark existed, so that ingest did not wake
   * anyone; this read sees it (strongly consistent), and the loop carries on. True: asleep.
   */
  private async fallAsleep(owner: string): Promise<boolean> {
    const job = await this.requireJob();
    if (job.coordinator?.owner !== owner) return true;
    try {
      await this.deps.checkpoints.putJob(released(job, this.deps.clock.now(), true), job.version);
    } catch (error) {
      if (error instanceof ConcurrentStepError) return false;
      throw error;
    }
    const again = await this.decide({});
    if (again.type === 'wait' && again.hibernate) return true;
    return this.acquire(owner, this.deps.clock.now() + LEASE_SLACK_MS).then((held) => !held);
  }

  /** The execution's lifetime is over: give up the lease and start a successor. False without a way to start one. */
  private async handOver(owner: string): Promise<boolean> {
    if (!this.deps.wake) return false;
    const job = await this.requireJob();
    if (job.coordinator?.owner !== owner) return true;
    const next = released(job, this.deps.clock.now(), false);
    await this.deps.checkpoints.putJob(next, job.version);
    await this.deps.wake(`next-v${next.version}`);
    return true;
  }

  private async endOfBudget(owner: string, executionStart: number, options: RunOptions, end: (type: RunEnd) => RunOutput): Promise<RunOutput> {
    if (this.deps.clock.now() - executionStart > options.lifetimeMs && (await this.handOver(owner))) return end(RunEnd.Handoff);
    return end(RunEnd.Continue);
  }

  /** An execution that does not run the loop leaves what its input asked for on the job record, for the one that does. */
  private async leaveRequests(input: RunInput, consumed: RunOutput['consumed']): Promise<void> {
    if (input.input?.manual === true && !consumed.manual) await updateJob(this.deps.checkpoints, requestCheckpoint);
    const restart = input.input?.restart;
    if (restart && !consumed.restart) {
      const now = this.deps.clock.now();
      await updateJob(this.deps.checkpoints, (job) => ({
        ...job,
        version: job.version + 1,
        requests: { ...job.requests, failure: job.requests?.failure ?? { reason: restart, at: now, generation: job.generation } },
      }));
    }
  }

  private async sendTicks(now: number): Promise<void> {
    const job = await this.requireJob();
    if (job.status === 'RUNNING') await this.deps.transport.send(tickMessages(this.topology, job.generation, now));
  }

  private pause(ms: number): Promise<void> {
    return this.deps.sleep ? this.deps.sleep(ms) : new Promise((resolve) => setTimeout(resolve, ms));
  }

  private async requireJob(): Promise<JobRecord> {
    const job = await this.deps.checkpoints.getJob();
    if (!job) throw new Error('job not initialized');
    return job;
  }
}
