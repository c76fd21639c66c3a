import { parseCheckpointConfig } from '../../shared/core/config.js';
import { checkpointsPerPrune } from '../../shared/core/retention.js';
import { DEFAULT_RUN_OPTIONS, type RunOptions } from '../../shared/lambda/coordinator-tasks.js';
import { AWS_PRICES, SECONDS_PER_MONTH } from '../aws-prices.js';
import { dynamoUsd, lambdaUsd, logsIngestionUsd, PLATFORM_LOG_BYTES_PER_INVOCATION, stepFunctionsUsd } from './bill.js';
import { tasksOn, transitionsPerDecision, type DeployedJob } from './deployed.js';

/**
 * The deployed coordinator (infra/coordinator.ts, shared/lambda/coordinator-tasks.ts `run`) as a
 * bill: the checkpoint workflow's one task, `Run`, runs the coordinator loop in process for up
 * to `budgetMs`; waits up to `maxInvocationWaitMs` are slept inside the invocation (until the decision's
 * time or the next tick, then decide again), longer ones go through the WaitForNext state (no compute billed); an idle
 * job sleeps and only the watchdog schedule starts an execution that finds nothing to do.
 *
 * Inputs: the synthesized template (`DeployedJob`: the ASL's paths, the function's memory,
 * the schedule's rate, the mappings), the run options the task uses (`DEFAULT_RUN_OPTIONS`) and
 * what the in-process coordinator measurably does per checkpoint on the local cloud
 * (`CoordinatorMeasured`). Everything else is an assumption, stated in `COORDINATOR_ASSUMPTIONS`.
 */

export const COORDINATOR_ASSUMPTIONS = {
  /** A watchdog invocation after 10 idle minutes is a cold start: its INIT (billed since Aug 2025) plus a few reads and two writes. */
  watchdogInvocationMs: 400,
  /** The acknowledgement Query of a checkpoint (`A#<cp>`, one small item per instance, strongly consistent): under 4 KB. */
  ackQueryReadUnits: 1,
  /** What the Run task logs per checkpoint (the CheckpointDuration EMF line). Not measured: the local cloud runs JobHost, not the task. */
  coordinatorLogBytesPerCheckpoint: 400,
  sfnLogBytesPerHistoryEvent: 700,
  /** History events: a Task logs entered, scheduled, started, succeeded, exited; other states entered and exited; an execution started and succeeded. */
  sfnHistoryEventsPerTask: 5,
  sfnHistoryEventsPerOtherState: 2,
  sfnHistoryEventsPerExecution: 2,
  /** An SQS event source mapping's idle long polling. */
  esmIdlePollers: 5,
  esmLongPollSeconds: 20,
} as const;

const A = COORDINATOR_ASSUMPTIONS;

/** What the in-process coordinator did per checkpoint on the local cloud (CoordinatorDriver: the same transitions and fact reads as the Run task). */
export interface CoordinatorMeasured {
  /** DynamoDB units of one checkpoint's transitions (trigger, inject-barriers, complete, commit-sinks) and their decisions' fact reads, without the turns the local host spent waiting. */
  readonly transitionUnits: { readonly read: number; readonly write: number };
  readonly transitionRequests: number;
  /**
   * What one retention run costs besides what it deletes (its Queries of the log heads and cuts, the
   * change-record and checkpoint-record ranges, the job's checkpoints), included in
   * `transitionUnits`/`transitionRequests`, which are measured pruning on every checkpoint: the
   * plan puts it back once per `checkpointsPerPrune`. What a run deletes scales with the events
   * and checkpoints since the last run and stays per checkpoint.
   */
  readonly retentionRun: { readonly read: number; readonly write: number; readonly requests: number };
  /** Read units and requests of one decide (the facts: job record, log heads, source instance records, pending checkpoints), from the idle window's turns. */
  readonly readUnitsPerDecide: number;
  readonly requestsPerDecide: number;
  /** Executed decisions per checkpoint (4: trigger, inject-barriers, complete, commit-sinks). */
  readonly decisionsPerCheckpoint: number;
  /** SQS requests billed per checkpoint (barriers to every source instance), FIFO. */
  readonly sqsBilled: number;
  /** Mean trigger -> complete (ms) measured on the local cloud: the Run invocation's length through the Wait state, and the ack latency the Query polls span (an upper bound). */
  readonly roundMs: number;
  readonly ackLatencyMs: number;
  /** The job record's size (bytes): each lease write is a conditional update billed by it. */
  readonly jobRecordBytes: number;
  /** The timer service's tick interval (tickIntervalFor), if anything waits on time. */
  readonly tickEveryMs: number | undefined;
}

type Usd = Record<'dynamodb' | 'sqs' | 'lambda' | 'logs' | 'stepFunctions' | 'scheduler', number>;
const noUsd = (): Usd => ({ dynamodb: 0, sqs: 0, lambda: 0, logs: 0, stepFunctions: 0, scheduler: 0 });
export const usdTotal = (u: Usd): number => Object.values(u).reduce((a, b) => a + b, 0);

export interface CoordinatorPlan {
  readonly intervalMs: number;
  /** `in-process`: every wait is slept inside a Run invocation (the function runs all month); `wait-state`: each checkpoint's wait goes through WaitForNext. */
  readonly mode: 'in-process' | 'wait-state';
  readonly checkpointsPerMonth: number;
  readonly waitMsPerCheckpoint: number;
  readonly decidesPerCheckpoint: number;
  /** Retention runs on every n-th checkpoint (its fixed part billed once per n). */
  readonly checkpointsPerPrune: number;
  readonly ackPollsPerCheckpoint: number;
  /** Per checkpoint: transitions (wait-state only; in-process: none), DynamoDB units and requests. */
  readonly transitionsPerCheckpoint: number;
  readonly pathPerCheckpoint: readonly string[];
  readonly unitsPerCheckpoint: { readonly read: number; readonly write: number };
  readonly invocationsPerMonth: number;
  readonly invocationMs: number;
  readonly gbSecondsPerMonth: number;
  readonly transitionsPerMonth: number;
  readonly historyEventsPerMonth: number;
  readonly requestsPerMonth: number;
  readonly usd: Usd;
}

/** Query polls of awaitAcks for acknowledgements that take `latencyMs`: at 0, then after 50, 100, 200, ... ms, capped at `pollMs`. */
export function ackPolls(latencyMs: number, pollMs: number): number {
  let polls = 1;
  let t = 0;
  for (let delay = 50; t < latencyMs; delay = Math.min(delay * 2, pollMs)) {
    t += delay;
    polls++;
  }
  return polls;
}

const jobReadUnits = (m: CoordinatorMeasured): number => Math.max(1, Math.ceil(m.jobRecordBytes / 4096));
const jobWriteUnits = (m: CoordinatorMeasured): number => Math.max(1, Math.ceil(m.jobRecordBytes / 1024));

function historyEvents(deployed: DeployedJob, path: readonly string[]): number {
  const tasks = tasksOn(deployed.checkpointAsl, path);
  return tasks * A.sfnHistoryEventsPerTask + (path.length - tasks) * A.sfnHistoryEventsPerOtherState;
}

function coordinatorFn(deployed: DeployedJob): { memoryMb: number; architecture: 'arm64' | 'x86_64' } {
  return deployed.functions.find((f) => f.role === 'coordinator') ?? { memoryMb: 256, architecture: 'arm64' };
}

/**
 * A month of checkpointing under load at `intervalMs`: one checkpoint per interval. In process (the wait until the next trigger is at most
 * `maxInvocationWaitMs`, or ticks are due that often): one Run invocation per `budgetMs`, the
 * function billed every second of the month, Route + Run per invocation, a lease write per
 * invocation, and one decide per wait (one per tick interval when ticks are due). Through the Wait state: one Run
 * invocation per checkpoint lasting the round, Run + Route + WaitForNext, and the lease
 * extended before the wait and taken again after it. Both: the measured transitions' units,
 * the ack polls, barrier sends, a successor execution every `lifetimeMs` (Init, HandedOver).
 */
export function coordinatorPlan(deployed: DeployedJob, m: CoordinatorMeasured, intervalMs: number, run: RunOptions = DEFAULT_RUN_OPTIONS): CoordinatorPlan {
  const asl = deployed.checkpointAsl;
  // Retention runs on every n-th checkpoint (shared/core/retention.ts checkpointsPerPrune, the deployed default pruneIntervalMs).
  const perPrune = checkpointsPerPrune(parseCheckpointConfig({ intervalMs }));
  const retentionSaved = 1 - 1 / perPrune;
  const fn = coordinatorFn(deployed);
  // One checkpoint per interval, the pace the job is configured for (the local round, on 2 shared cores, may take longer than AWS's).
  const checkpointsPerMonth = (SECONDS_PER_MONTH * 1000) / intervalMs;
  const waitMs = Math.max(0, intervalMs - m.roundMs);
  const ticksInProcess = m.tickEveryMs !== undefined && m.tickEveryMs <= run.maxInvocationWaitMs;
  const mode = waitMs <= run.maxInvocationWaitMs || ticksInProcess ? 'in-process' : 'wait-state';
  const polls = ackPolls(m.ackLatencyMs, run.ackPollMs);
  // The decide that returns `wait`: Run pauses until the decision's time (or the next tick, when ticks are due sooner), then decides again.
  const waitDecides = mode === 'in-process' && m.tickEveryMs !== undefined ? Math.max(1, Math.ceil(waitMs / m.tickEveryMs)) : 1;
  const decides = m.decisionsPerCheckpoint + waitDecides;
  // The getCheckpoint of awaitAcks and its Query polls.
  const ackReads = (1 + polls) * A.ackQueryReadUnits;
  const leasePerCheckpoint = mode === 'wait-state' ? 2 : 0;
  const unitsPerCheckpoint = {
    read: m.transitionUnits.read - retentionSaved * m.retentionRun.read + decides * m.readUnitsPerDecide + ackReads + leasePerCheckpoint * jobReadUnits(m),
    write: m.transitionUnits.write - retentionSaved * m.retentionRun.write + leasePerCheckpoint * jobWriteUnits(m),
  };
  const requestsPerCheckpoint = m.transitionRequests - retentionSaved * m.retentionRun.requests + decides * m.requestsPerDecide + 1 + polls + 2 * leasePerCheckpoint + m.sqsBilled;
  const budgetS = run.budgetMs / 1000;
  const continuePath = transitionsPerDecision(asl, 'continue').path;
  const waitPath = transitionsPerDecision(asl, 'wait').path;
  const invocationsPerMonth = mode === 'in-process' ? SECONDS_PER_MONTH / budgetS : checkpointsPerMonth;
  const invocationMs = mode === 'in-process' ? run.budgetMs : m.roundMs;
  // A successor every lifetime: the old execution's HandedOver, the new one's Init (and both executions' start/end events).
  const successorsPerMonth = SECONDS_PER_MONTH / (run.lifetimeMs / 1000);
  const successorPath = ['HandedOver', asl.StartAt];
  const pathPerInvocation = mode === 'in-process' ? continuePath : waitPath;
  const transitionsPerMonth = invocationsPerMonth * pathPerInvocation.length + successorsPerMonth * successorPath.length;
  const historyEventsPerMonth = invocationsPerMonth * historyEvents(deployed, pathPerInvocation) + successorsPerMonth * (historyEvents(deployed, successorPath) + 2 * A.sfnHistoryEventsPerExecution);
  const gbSecondsPerMonth = ((invocationsPerMonth * invocationMs) / 1000) * (fn.memoryMb / 1024);
  const usd = noUsd();
  usd.lambda = lambdaUsd(invocationsPerMonth, invocationsPerMonth * invocationMs, fn.memoryMb, fn.architecture);
  usd.stepFunctions = stepFunctionsUsd(transitionsPerMonth);
  // In process: the lease is taken once per invocation (a read and a conditional write of the job record).
  const leaseUnits = mode === 'in-process' ? { read: invocationsPerMonth * jobReadUnits(m), write: invocationsPerMonth * jobWriteUnits(m) } : { read: 0, write: 0 };
  usd.dynamodb = dynamoUsd({ read: checkpointsPerMonth * unitsPerCheckpoint.read + leaseUnits.read, write: checkpointsPerMonth * unitsPerCheckpoint.write + leaseUnits.write });
  usd.sqs = checkpointsPerMonth * m.sqsBilled * (deployed.operatorQueuesFifo ? AWS_PRICES.sqsFifoPerRequest : AWS_PRICES.sqsStandardPerRequest);
  usd.logs = logsIngestionUsd(
    (deployed.sfnLogLevel === 'ALL' ? historyEventsPerMonth * A.sfnLogBytesPerHistoryEvent : 0) +
      invocationsPerMonth * PLATFORM_LOG_BYTES_PER_INVOCATION +
      checkpointsPerMonth * A.coordinatorLogBytesPerCheckpoint,
  );
  const requestsPerMonth =
    checkpointsPerMonth * requestsPerCheckpoint + invocationsPerMonth * (1 + pathPerInvocation.length + (mode === 'in-process' ? 2 : 0)) + successorsPerMonth * successorPath.length;
  return {
    intervalMs,
    mode,
    checkpointsPerMonth,
    waitMsPerCheckpoint: waitMs,
    decidesPerCheckpoint: decides,
    checkpointsPerPrune: perPrune,
    ackPollsPerCheckpoint: polls,
    transitionsPerCheckpoint: mode === 'wait-state' ? waitPath.length : 0,
    pathPerCheckpoint: mode === 'wait-state' ? waitPath : [],
    unitsPerCheckpoint,
    invocationsPerMonth,
    invocationMs,
    gbSecondsPerMonth,
    transitionsPerMonth,
    historyEventsPerMonth,
    requestsPerMonth,
    usd,
  };
}

/** The coordinator's month under load at `intervalMs` ($). */
export function coordinatorMonthly(deployed: DeployedJob, m: CoordinatorMeasured, intervalMs: number, run: RunOptions = DEFAULT_RUN_OPTIONS): number {
  return usdTotal(coordinatorPlan(deployed, m, intervalMs, run).usd);
}

export interface WatchdogPlan {
  readonly rateMinutes: number;
  readonly executionsPerMonth: number;
  readonly path: readonly string[];
  readonly unitsPerExecution: { readonly read: number; readonly write: number };
  /** EventBridge Scheduler invocations: list price (`usd.scheduler`), and with its free tier (14 M a month). */
  readonly schedulerInvocationsPerMonth: number;
  readonly schedulerUsdWithFreeTier: number;
  readonly usd: Usd;
}

/**
 * The watchdog of an idle (sleeping) job: every `scheduleRateMinutes` an execution that finds
 * nothing to do: Init, Run (one short invocation: the lease taken, a decide, the sleep mark, a
 * decide again), Route, Asleep. Its reads are two decides' facts and two job record reads; its
 * writes the lease and the sleep mark (conditional updates of the job record).
 */
export function watchdogMonthly(deployed: DeployedJob, m: CoordinatorMeasured): WatchdogPlan {
  const asl = deployed.checkpointAsl;
  const fn = coordinatorFn(deployed);
  const rateMinutes = deployed.scheduleRateMinutes ?? 0;
  const executionsPerMonth = rateMinutes > 0 ? SECONDS_PER_MONTH / (rateMinutes * 60) : 0;
  const path = transitionsPerDecision(asl, 'sleep', { from: asl.StartAt }).path;
  const unitsPerExecution = { read: 2 * m.readUnitsPerDecide + 2 * jobReadUnits(m), write: 2 * jobWriteUnits(m) };
  const usd = noUsd();
  usd.stepFunctions = stepFunctionsUsd(executionsPerMonth * path.length);
  usd.lambda = lambdaUsd(executionsPerMonth, executionsPerMonth * A.watchdogInvocationMs, fn.memoryMb, fn.architecture);
  usd.dynamodb = dynamoUsd({ read: executionsPerMonth * unitsPerExecution.read, write: executionsPerMonth * unitsPerExecution.write });
  const events = historyEvents(deployed, path) + A.sfnHistoryEventsPerExecution;
  usd.logs = logsIngestionUsd(executionsPerMonth * ((deployed.sfnLogLevel === 'ALL' ? events * A.sfnLogBytesPerHistoryEvent : 0) + PLATFORM_LOG_BYTES_PER_INVOCATION));
  usd.scheduler = executionsPerMonth * AWS_PRICES.schedulerPerInvocation;
  return {
    rateMinutes,
    executionsPerMonth,
    path,
    unitsPerExecution,
    schedulerInvocationsPerMonth: executionsPerMonth,
    schedulerUsdWithFreeTier: Math.max(0, executionsPerMonth - AWS_PRICES.schedulerFreeInvocationsPerMonth) * AWS_PRICES.schedulerPerInvocation,
    usd,
  };
}

/** What the SQS event source mappings in the template cost with nothing to deliver: their pollers' long polls. */
export function idleMappingsMonthly(deployed: DeployedJob): number {
  const pollsPerMapping = A.esmIdlePollers * (SECONDS_PER_MONTH / A.esmLongPollSeconds);
  return deployed.eventSourceMappings.reduce((n, esm) => n + pollsPerMapping * (esm.fifo ? AWS_PRICES.sqsFifoPerRequest : AWS_PRICES.sqsStandardPerRequest), 0);
}
