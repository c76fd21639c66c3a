import { CheckpointNotFoundError, ConcurrentStepError, JobNotControllableError, JobUpdateConflictError } from './errors.js';
import type { CheckpointStore, JobRecord } from './ports.js';

/**
 * Operator requests on a running job (`cairn trigger | pause | resume | rollback`). Each is a
 * pure update of the job record; the coordinator that decides next serves it (decideNext reads
 * `paused` and `requests`), whether that is the Step Functions workflow or an in-process loop.
 * Writing the request into the job record, rather than only poking a running coordinator,
 * makes it durable: a request that meets a busy or restarting coordinator waits, it is not lost.
 */

function requireActive(job: JobRecord, what: string): void {
  if (job.status === 'FINISHED' || job.status === 'FAILED') {
    throw new JobNotControllableError(`cannot ${what}: the job is ${job.status}${job.failure ? ` (${job.failure})` : ''}`);
  }
}

export function requestCheckpoint(job: JobRecord): JobRecord {
  requireActive(job, 'trigger a checkpoint');
  if (job.paused) throw new JobNotControllableError('cannot trigger a checkpoint: the job is paused (resume it first)');
  return { ...job, version: job.version + 1, requests: { ...job.requests, checkpoint: true } };
}

export function pauseJob(job: JobRecord): JobRecord {
  requireActive(job, 'pause');
  return { ...job, version: job.version + 1, paused: true };
}

export function resumeJob(job: JobRecord): JobRecord {
  requireActive(job, 'resume');
  return { ...job, version: job.version + 1, paused: false };
}

/** Rollback to a retained completed checkpoint (0 = from the beginning, only before any completed). */
export function requestRollback(job: JobRecord, toCheckpoint: number, reason = `rollback to checkpoint ${toCheckpoint} requested by the operator`): JobRecord {
  requireActive(job, 'roll back');
  const restorable = job.retainedCheckpoints.includes(toCheckpoint) || (toCheckpoint === 0 && job.lastCompletedId === 0);
  if (!restorable) {
    throw new CheckpointNotFoundError(`checkpoint ${toCheckpoint} is not a retained completed checkpoint (retained: ${job.retainedCheckpoints.join(', ') || 'none'})`);
  }
  return { ...job, version: job.version + 1, requests: { ...job.requests, rollback: { toCheckpoint, reason } } };
}

/**
 * Applies `change` to the stored job record with an optimistic (version-conditional) write,
 * re-reading and re-applying when a coordinator wrote in between. `change` may throw to refuse.
 */
export async function updateJob(store: CheckpointStore, change: (job: JobRecord) => JobRecord, attempts = 20): Promise<JobRecord> {
  for (let attempt = 1; ; attempt++) {
    const job = await store.getJob();
    if (!job) throw new JobNotControllableError('the job has not started yet (no job record)');
    const next = change(job);
    try {
      await store.putJob(next, job.version);
      return next;
    } catch (error) {
      if (!(error instanceof ConcurrentStepError) || attempt >= attempts) {
        if (error instanceof ConcurrentStepError) throw new JobUpdateConflictError(`the job record changed ${attempts} times during the request; try again`, { cause: error });
        throw error;
      }
    }
  }
}
