import type { CoordinatorFacts, CoordinatorDecision } from './coordinator.js';
import { unchangedSinceLastCheckpoint } from './coordinator.js';
import type { JobRecord } from '../ports.js';

/**
 * Pure rules of the deployed coordinator's lease and sleep (the record is JobRecord.coordinator).
 * One Step Functions execution at a time runs the coordinator loop: an execution started while
 * another holds a live lease ends at once, leaving any request it carries on the job record. A
 * coordinator with nothing to do until new input arrives sleeps: its execution ends, and nothing
 * is billed until ingest, a dead letter or the CLI wakes it with a new execution.
 */

/** Why a run of the coordinator loop ended (the checkpoint workflow routes on it). */
export enum RunEnd {
  /** Its time budget is spent: the workflow runs it again. */
  Continue = 'continue',
  /** The next decision is far off: the workflow waits (a Wait state bills no compute), then runs it again. */
  Wait = 'wait',
  /** A rollback is due: the workflow runs the recovery workflow, then the loop again. */
  Recover = 'recover',
  /** Nothing to do until something wakes it: the execution ends. */
  Sleep = 'sleep',
  /** Another execution holds the lease, or this one's lifetime is over and a successor was started. */
  Handoff = 'handoff',
  Finished = 'finished',
  Failed = 'failed',
}

/** Another execution runs the loop (its lease has not run out). */
export function leaseHeldByOther(job: JobRecord, owner: string, now: number): boolean {
  const lease = job.coordinator;
  return lease?.owner !== undefined && lease.owner !== owner && (lease.until ?? 0) > now;
}

/** `owner` runs the loop until `until` (a new version; wakes a sleeping coordinator). */
export function withLease(job: JobRecord, owner: string, until: number): JobRecord {
  return { ...job, version: job.version + 1, coordinator: { owner, until } };
}

/** The lease is given up, and the coordinator sleeps from `now` unless `asleep` is false (a handoff). */
export function released(job: JobRecord, now: number, asleep: boolean): JobRecord {
  return { ...job, version: job.version + 1, coordinator: asleep ? { asleepSince: now } : {} };
}

export function isAsleep(job: JobRecord): boolean {
  return job.coordinator?.asleepSince !== undefined && job.coordinator.owner === undefined;
}

/** The name of the execution that wakes the coordinator from this sleep: one per sleep, however many callers wake it. */
export function wakeExecutionName(job: JobRecord): string {
  return `wake-${job.coordinator?.asleepSince ?? 0}-v${job.version}`;
}

/**
 * The coordinator may sleep: it waits, and nothing but new input or a request can give it
 * something to do. No checkpoint is pending, no rollback is under way or delayed, the input is
 * not sealed (a bounded input waits for its pipeline to drain), and either the job is paused
 * (`cairn resume` wakes it), the decision waits for no time (count or manual triggers, disabled
 * checkpoints: input or a request ends the wait), or nothing changed since the last completed
 * checkpoint (a periodic trigger would take none; no operator works on processing time).
 */
export function mayHibernate(facts: CoordinatorFacts, decision: CoordinatorDecision): boolean {
  if (decision.type !== 'wait' || facts.pending.length > 0 || facts.job.recovery || facts.sourcesFinished || facts.failureSignal !== undefined) return false;
  if (facts.job.status !== 'RUNNING') return false;
  return facts.job.paused === true || decision.until === undefined || unchangedSinceLastCheckpoint(facts);
}
