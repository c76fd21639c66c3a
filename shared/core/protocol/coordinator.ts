import type { CheckpointConfig } from '../config.js';
import type { CheckpointRecord, JobRecord, JobRequests, TriggerKind } from '../ports.js';
import { decideRestart, DEFAULT_RESTART_STRATEGY, failureRestarts, RESTART_HISTORY, type RestartStrategy } from './restart-strategy.js';

/**
 * The checkpoint coordinator as a pure state machine (the shape of Flink's
 * CheckpointCoordinator, with I/O taken out). `decideNext` looks at facts already read and
 * names exactly one next transition; the driver (embedded loop or a Step Functions task)
 * executes it, persists, and asks again. Every transition is idempotent, so a driver that
 * crashes between two decisions resumes by asking again.
 */

export interface CoordinatorFacts {
  readonly now: number;
  readonly job: JobRecord;
  /** The job's pending checkpoints' records, ascending id. */
  readonly pending: readonly CheckpointRecord[];
  /**
   * Checkpoints the job record still lists as pending whose own record says they ended
   * (COMPLETED or ABORTED): the transition's job-record write was lost to a concurrent writer
   * (an operator request landing between the checkpoint write and the job write).
   */
  readonly finished?: readonly CheckpointRecord[];
  /** Acks received per pending checkpoint id (current generation only). */
  readonly acks: ReadonlyMap<number, number>;
  /** Instances that must ack a checkpoint (all instances of all vertices). */
  readonly expectedAcks: number;
  /** Events ingested into the source log so far (for the count trigger). */
  readonly ingestedTotal: number;
  readonly manualTriggerRequested: boolean;
  /** Every source reached the end of a bounded input. */
  readonly sourcesFinished: boolean;
  /** Every source partition's log is sealed (the input is bounded and complete). Unknown = not sealed. */
  readonly inputSealed?: boolean;
  /** Nothing queued or in flight anywhere. */
  readonly idle: boolean;
  /** Trigger of the last completed checkpoint, if any. */
  readonly lastCompletedTrigger: TriggerKind | undefined;
  /** The last completed checkpoint's record (its source offsets and channel state tell whether anything changed since). */
  readonly lastCompleted?: CheckpointRecord;
  /** An operator works on processing time (its state changes with no input). Unknown = assumed. */
  readonly timeDriven?: boolean;
  /** Set when an operator failed past retries (a message reached its dead-letter queue). */
  readonly failureSignal: string | undefined;
}

export type CoordinatorDecision =
  /** A recovery is under way (or was interrupted): run a new attempt of it, in a new generation. */
  | { readonly type: 'continue-recovery' }
  /** Roll back to `toCheckpoint`; the restore itself starts `delayMs` later (the restart strategy's delay). */
  | { readonly type: 'start-recovery'; readonly toCheckpoint: number; readonly reason: string; readonly delayMs?: number }
  /** The restart strategy is exhausted: the job ends FAILED with the reason. */
  | { readonly type: 'fail'; readonly reason: string }
  | { readonly type: 'inject-barriers'; readonly checkpointId: number }
  | { readonly type: 'complete'; readonly checkpointId: number }
  | { readonly type: 'abort'; readonly checkpointId: number; readonly reason: string }
  | { readonly type: 'commit-sinks'; readonly throughCheckpoint: number }
  | { readonly type: 'trigger'; readonly checkpointId: number; readonly trigger: TriggerKind }
  | { readonly type: 'finish' }
  | { readonly type: 'wait'; readonly until: number | undefined };

/** A failure reported on the job record (a lost message of the running generation), not yet served by a rollback. */
export function reportedFailure(job: JobRecord): JobRequests['failure'] {
  const reported = job.requests?.failure;
  return reported && reported.generation >= job.generation ? reported : undefined;
}

/**
 * Whether the job record asks for a rollback (an operator's, or a reported failure): a
 * coordinator waiting for a checkpoint's acknowledgements stops waiting and decides, since a
 * lost message means that checkpoint's barriers may never arrive.
 */
export function rollbackRequested(job: JobRecord): boolean {
  return job.status === 'RUNNING' && job.recovery === undefined && (job.requests?.rollback !== undefined || reportedFailure(job) !== undefined);
}

export function decideNext(config: CheckpointConfig, facts: CoordinatorFacts, restartStrategy: RestartStrategy = DEFAULT_RESTART_STRATEGY): CoordinatorDecision {
  const { job, now } = facts;
  if (job.status === 'FAILED' || job.status === 'FINISHED') return { type: 'wait', until: undefined };
  if (job.recovery) {
    const notBefore = job.recovery.notBefore ?? 0;
    return now < notBefore ? { type: 'wait', until: notBefore } : { type: 'continue-recovery' };
  }
  const rollback = job.requests?.rollback;
  if (rollback) return { type: 'start-recovery', ...rollbackTarget(job, rollback) };
  if (facts.failureSignal) return restartOrFail(restartStrategy, job, now, facts.failureSignal);
  const reported = reportedFailure(job);
  if (reported) return restartOrFail(restartStrategy, job, now, reported.reason);

  // A transition half done: the checkpoint record ended, the job record missed it. Finish it
  // (the execution reuses the stored record), or the job would list the checkpoint forever.
  for (const checkpoint of facts.finished ?? []) {
    return checkpoint.status === 'COMPLETED' ? { type: 'complete', checkpointId: checkpoint.id } : { type: 'abort', checkpointId: checkpoint.id, reason: checkpoint.abortReason ?? 'aborted' };
  }

  for (const checkpoint of facts.pending) {
    if (!checkpoint.barriersInjected) return { type: 'inject-barriers', checkpointId: checkpoint.id };
    if ((facts.acks.get(checkpoint.id) ?? 0) >= facts.expectedAcks) return { type: 'complete', checkpointId: checkpoint.id };
    if (now - checkpoint.triggeredAt >= config.timeoutMs) {
      return { type: 'abort', checkpointId: checkpoint.id, reason: `timed out after ${config.timeoutMs} ms` };
    }
  }

  if (job.sinksCommittedThrough < job.lastCompletedId) {
    return { type: 'commit-sinks', throughCheckpoint: job.lastCompletedId };
  }
  if (job.consecutiveFailures > config.tolerableFailures) {
    return restartOrFail(restartStrategy, job, now, `${job.consecutiveFailures} consecutive checkpoint failures (tolerable: ${config.tolerableFailures})`);
  }

  // Paused: triggers stop, but pending checkpoints above may still complete or time out.
  if (job.paused) return { type: 'wait', until: earliestTimeout(config, facts.pending) };

  if (facts.sourcesFinished) {
    // Bounded input fully read: no more periodic checkpoints (their barriers would keep the
    // pipeline busy forever); once it drains, one final checkpoint commits the rest.
    if (facts.pending.length > 0 || !facts.idle) return { type: 'wait', until: earliestTimeout(config, facts.pending) };
    if (facts.lastCompletedTrigger === 'final') return { type: 'finish' };
    return { type: 'trigger', checkpointId: job.nextCheckpointId, trigger: 'final' };
  }
  return decideTrigger(config, facts);
}

/**
 * Whether decideNext can use the input facts (the log's heads and seals, the sources' finish, the
 * queues' idleness, the last completed checkpoint): not while `pending` checkpoints are as many as
 * may run at once. Then every path of decideNext ends in one of theirs (inject, complete, abort),
 * an earlier request, commit-sinks, or a wait until their earliest timeout (the finished-input
 * branch waits while any is pending; decideTrigger waits at maxConcurrent), whatever those facts
 * say. A driver skips reading them then (at a 1 s interval most decisions fall inside a round).
 */
export function needsInputFacts(config: CheckpointConfig, pending: number): boolean {
  return pending === 0 || pending < config.maxConcurrent;
}

/** When checkpoint N+1 starts (time, count, continuous, manual), respecting min pause and max concurrent. */
export function decideTrigger(config: CheckpointConfig, facts: CoordinatorFacts): CoordinatorDecision {
  const { job, now } = facts;
  const nextTimeout = earliestTimeout(config, facts.pending);
  if (facts.pending.length >= config.maxConcurrent) return { type: 'wait', until: nextTimeout };
  const pauseOver = job.lastCompletedAt + config.minPauseMs;
  if (job.lastCompletedId > 0 && now < pauseOver) return { type: 'wait', until: min(pauseOver, nextTimeout) };

  const trigger = (kind: TriggerKind): CoordinatorDecision => ({ type: 'trigger', checkpointId: job.nextCheckpointId, trigger: kind });
  if (facts.manualTriggerRequested || job.requests?.checkpoint === true) return trigger('manual');
  if (!config.enabled) return { type: 'wait', until: nextTimeout };
  switch (config.trigger) {
    case 'time': {
      const due = job.lastTriggerAt + config.intervalMs;
      if (now < due) return { type: 'wait', until: min(due, nextTimeout) };
      // An idle job takes no checkpoints: look again an interval later (new input ends the wait).
      return unchangedSinceLastCheckpoint(facts) ? { type: 'wait', until: min(now + config.intervalMs, nextTimeout) } : trigger('time');
    }
    case 'count':
      return facts.ingestedTotal - job.ingestedAtLastTrigger >= config.everyRecords ? trigger('count') : { type: 'wait', until: nextTimeout };
    case 'continuous':
      if (facts.pending.length > 0) return { type: 'wait', until: nextTimeout };
      return unchangedSinceLastCheckpoint(facts) ? { type: 'wait', until: min(now + Math.max(config.intervalMs, 100), nextTimeout) } : trigger('continuous');
    case 'manual':
      return { type: 'wait', until: nextTimeout };
  }
}

/**
 * Nothing changed since the last completed checkpoint, so another would snapshot the same state:
 * every event ingested so far was read before its barriers, it took no channel state (every
 * record was processed before the barrier, so its effects are in that checkpoint), and no
 * operator works on processing time. A periodic trigger then waits: an idle job schedules no
 * checkpoints (no barriers, no steps, no commits). Anything unknown counts as a change, and so
 * does a sealed input that a source has not seen end yet: a barrier is what wakes a source
 * whose poll was lost, and after the seal no other poll may come.
 */
export function unchangedSinceLastCheckpoint(facts: CoordinatorFacts): boolean {
  const last = facts.lastCompleted;
  if (!last?.sourceOffsets || facts.timeDriven !== false || (last.channelStateRecords ?? 0) > 0) return false;
  if (facts.inputSealed === true && !facts.sourcesFinished) return false;
  const read = Object.values(last.sourceOffsets).reduce((sum, offset) => sum + offset, 0);
  return read === facts.ingestedTotal;
}

/**
 * A failure (not an operator's rollback): the restart strategy decides whether the job rolls
 * back to its last completed checkpoint, and after which delay, or ends FAILED.
 */
export function restartOrFail(strategy: RestartStrategy, job: JobRecord, now: number, reason: string): CoordinatorDecision {
  const decision = decideRestart(strategy, failureRestarts(job), now);
  if (!decision.restart) return { type: 'fail', reason: `${reason}; ${decision.reason}` };
  return { type: 'start-recovery', toCheckpoint: job.lastCompletedId, reason, ...(decision.delaySeconds > 0 ? { delayMs: decision.delaySeconds * 1000 } : {}) };
}

/** A rollback request whose checkpoint was pruned meanwhile falls back to the last completed one, and says so. */
export function rollbackTarget(job: JobRecord, request: NonNullable<JobRequests['rollback']>): { toCheckpoint: number; reason: string } {
  if (request.toCheckpoint === 0 || job.retainedCheckpoints.includes(request.toCheckpoint)) return request;
  return {
    toCheckpoint: job.lastCompletedId,
    reason: `${request.reason} (checkpoint ${request.toCheckpoint} is no longer retained: rolled back to ${job.lastCompletedId})`,
  };
}

function earliestTimeout(config: CheckpointConfig, pending: readonly CheckpointRecord[]): number | undefined {
  return pending.reduce<number | undefined>((acc, c) => min(acc, c.triggeredAt + config.timeoutMs), undefined);
}

function min(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

// ---------- transitions: pure functions from the old records to the new ones ----------

export function initialJob(now: number): JobRecord {
  return {
    version: 0,
    generation: 1,
    status: 'RUNNING',
    nextCheckpointId: 1,
    consecutiveFailures: 0,
    lastTriggerAt: now,
    lastCompletedId: 0,
    lastCompletedAt: 0,
    ingestedAtLastTrigger: 0,
    recovery: undefined,
    restarts: [],
    sinksCommittedThrough: 0,
    pendingCheckpoints: [],
    retainedCheckpoints: [],
  };
}

export function triggered(
  job: JobRecord,
  decision: { checkpointId: number; trigger: TriggerKind },
  now: number,
  ingestedTotal: number,
): {
  job: JobRecord;
  checkpoint: CheckpointRecord;
} {
  return {
    job: {
      ...job,
      version: job.version + 1,
      nextCheckpointId: decision.checkpointId + 1,
      lastTriggerAt: now,
      ingestedAtLastTrigger: ingestedTotal,
      requests: withoutRequest(job.requests, 'checkpoint'),
      pendingCheckpoints: [...job.pendingCheckpoints.filter((id) => id !== decision.checkpointId), decision.checkpointId],
    },
    checkpoint: {
      id: decision.checkpointId,
      generation: job.generation,
      status: 'PENDING',
      trigger: decision.trigger,
      triggeredAt: now,
      barriersInjected: false,
    },
  };
}

/** Checkpoint N completed: it joins the retained set; the oldest beyond `retained` leave it (to be pruned). */
export function completed(job: JobRecord, checkpoint: CheckpointRecord, now: number, retained: number): JobRecord {
  return {
    ...job,
    version: job.version + 1,
    lastCompletedId: Math.max(job.lastCompletedId, checkpoint.id),
    lastCompletedAt: now,
    consecutiveFailures: 0,
    pendingCheckpoints: job.pendingCheckpoints.filter((id) => id !== checkpoint.id),
    retainedCheckpoints: retainedCheckpoints([...job.retainedCheckpoints, checkpoint.id], retained),
  };
}

export function aborted(job: JobRecord, checkpointId: number): JobRecord {
  return {
    ...job,
    version: job.version + 1,
    // A checkpoint lost to a pause (its operators were stopped) is not a failure of the job,
    // as in Flink, where aborts on coordinator suspension do not count against the tolerance.
    consecutiveFailures: job.paused ? job.consecutiveFailures : job.consecutiveFailures + 1,
    pendingCheckpoints: job.pendingCheckpoints.filter((id) => id !== checkpointId),
  };
}

export { RESTART_HISTORY };

/**
 * Rollback begins: generation + 1 fences off every message and commit of the old one. The
 * restore itself waits until `now + delayMs` (the restart strategy's delay; the old generation
 * is fenced meanwhile, as Flink cancels the tasks before the delay).
 */
export function recoveryStarted(job: JobRecord, toCheckpoint: number, reason: string, now: number, delayMs = 0): JobRecord {
  return {
    ...job,
    version: job.version + 1,
    generation: job.generation + 1,
    status: 'RECOVERING',
    recovery: { toCheckpoint, reason, attempts: 0, ...(delayMs > 0 ? { notBefore: now + delayMs } : {}) },
    requests: withoutRequest(withoutRequest(job.requests, 'rollback'), 'failure'),
    // Bounded: the job record is rewritten at every transition and must stay far below 400 KB.
    restarts: [...job.restarts, { at: now, toCheckpoint, reason, ...(job.requests?.rollback ? { byOperator: true } : {}) }].slice(-RESTART_HISTORY),
  };
}

/**
 * One attempt of the recovery begins. The first attempt runs in the generation that
 * `recoveryStarted` opened; every later one (the previous attempt crashed, timed out, or runs
 * concurrently elsewhere) opens a generation of its own first. So a restore never runs in a
 * generation whose instances may already be live: the previous attempt's rewritten instances
 * and everything they commit are fenced off before this attempt touches any state.
 */
export function recoveryAttemptStarted(job: JobRecord): JobRecord {
  const recovery = job.recovery;
  if (!recovery) throw new Error('recoveryAttemptStarted: no recovery in progress');
  const attempts = recovery.attempts ?? 1;
  return {
    ...job,
    version: job.version + 1,
    generation: attempts > 0 ? job.generation + 1 : job.generation,
    recovery: { toCheckpoint: recovery.toCheckpoint, reason: recovery.reason, attempts: attempts + 1 },
  };
}

/** The restart strategy is exhausted (or the recovery cannot be done): the job ends FAILED. */
export function failed(job: JobRecord, reason: string): JobRecord {
  return { ...job, version: job.version + 1, status: 'FAILED', failure: reason, recovery: undefined, pendingCheckpoints: [], requests: withoutRequest(job.requests, 'failure') };
}

/** Rollback done: nothing pending; checkpoints newer than the restored one are no longer restorable. */
export function recoveryFinished(job: JobRecord, now: number): JobRecord {
  const target = job.recovery?.toCheckpoint ?? job.lastCompletedId;
  return {
    ...job,
    version: job.version + 1,
    status: 'RUNNING',
    recovery: undefined,
    consecutiveFailures: 0,
    lastTriggerAt: now,
    pendingCheckpoints: [],
    retainedCheckpoints: job.retainedCheckpoints.filter((id) => id <= target),
  };
}

/** Completed checkpoints to keep restorable: the newest `retained`; never the latest. */
export function retainedCheckpoints(completedIds: readonly number[], retained: number): number[] {
  return [...completedIds].sort((a, b) => a - b).slice(-Math.max(1, retained));
}

function withoutRequest(requests: JobRequests | undefined, served: keyof JobRequests): JobRequests | undefined {
  if (requests?.[served] === undefined) return requests;
  const { [served]: _served, ...rest } = requests;
  return Object.keys(rest).length > 0 ? rest : undefined;
}
