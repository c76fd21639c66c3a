import { describe, expect, it } from 'vitest';
import { parseCheckpointConfig } from '../../shared/core/config.js';
import { pauseJob, requestCheckpoint, requestRollback, resumeJob, updateJob } from '../../shared/core/control.js';
import { CheckpointNotFoundError, JobNotControllableError, JobUpdateConflictError } from '../../shared/core/errors.js';
import type { CheckpointRecord, CheckpointStore, JobRecord } from '../../shared/core/ports.js';
import { completed, decideNext, initialJob, recoveryStarted, RESTART_HISTORY, triggered } from '../../shared/core/protocol/coordinator.js';
import { facts, T0 } from './facts.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedCheckpointStore } from '../../shared/embedded/stores.js';

const config = parseCheckpointConfig({ intervalMs: 100, retained: 2 });

const done = (id: number): CheckpointRecord => ({ id, generation: 1, status: 'COMPLETED', trigger: 'time', triggeredAt: T0, barriersInjected: true });

/** A job with checkpoints 1..n completed (the last two retained). */
function jobWithCompleted(n: number): JobRecord {
  let job = initialJob(T0);
  for (let id = 1; id <= n; id++) job = completed({ ...job, nextCheckpointId: id + 1 }, done(id), T0, config.retained);
  return { ...job, sinksCommittedThrough: n };
}

describe('operator requests on the job record (cairn trigger | pause | resume | rollback)', () => {
  it('a requested checkpoint is triggered as manual at the next decision, even in time mode before the interval, and the request is cleared by it', () => {
    const job = requestCheckpoint(initialJob(T0));
    expect(job.requests).toEqual({ checkpoint: true });
    const decision = decideNext(config, facts({ job, now: T0 + 1 }));
    expect(decision).toEqual({ type: 'trigger', checkpointId: 1, trigger: 'manual' });
    const after = triggered(job, { checkpointId: 1, trigger: 'manual' }, T0 + 1, 0).job;
    expect(after.requests).toBeUndefined();
    expect(decideNext(config, facts({ job: after, now: T0 + 2, pending: [] }))).toEqual({ type: 'wait', until: T0 + 101 });
  });

  it('a requested checkpoint still respects max concurrent: it waits, and is not lost', () => {
    const job = requestCheckpoint(triggered(initialJob(T0), { checkpointId: 1, trigger: 'time' }, T0, 0).job);
    const pending: CheckpointRecord = { id: 1, generation: 1, status: 'PENDING', trigger: 'time', triggeredAt: T0, barriersInjected: true };
    expect(decideNext(config, facts({ job, now: T0 + 5, pending: [pending] }))).toEqual({ type: 'wait', until: T0 + config.timeoutMs });
    expect(job.requests?.checkpoint).toBe(true);
  });

  it('a paused job triggers nothing, not even due time triggers or requested ones; pending checkpoints still complete; resume restores triggering', () => {
    const paused = pauseJob(jobWithCompleted(1));
    expect(paused.paused).toBe(true);
    expect(decideNext(config, facts({ job: paused, now: T0 + 10_000 }))).toEqual({ type: 'wait', until: undefined });
    expect(() => requestCheckpoint(paused)).toThrow(new JobNotControllableError('cannot trigger a checkpoint: the job is paused (resume it first)'));
    const pending: CheckpointRecord = { id: 2, generation: 1, status: 'PENDING', trigger: 'time', triggeredAt: T0, barriersInjected: true };
    expect(decideNext(config, facts({ job: { ...paused, pendingCheckpoints: [2] }, now: T0 + 10, pending: [pending], acks: new Map([[2, 4]]) }))).toEqual({ type: 'complete', checkpointId: 2 });
    expect(decideNext(config, facts({ job: { ...paused, pendingCheckpoints: [2] }, now: T0 + 10, pending: [pending] }))).toEqual({ type: 'wait', until: T0 + config.timeoutMs });
    const resumed = resumeJob(paused);
    expect(resumed.paused).toBe(false);
    expect(decideNext(config, facts({ job: resumed, now: T0 + 10_000 }))).toEqual({ type: 'trigger', checkpointId: 2, trigger: 'time' });
  });

  it('a paused job whose bounded input is finished does not take its final checkpoint until resumed', () => {
    const paused = pauseJob(jobWithCompleted(1));
    const f = facts({ job: paused, sourcesFinished: true, idle: true, lastCompletedTrigger: 'time' });
    expect(decideNext(config, f).type).toBe('wait');
    expect(decideNext(config, { ...f, job: resumeJob(paused) })).toEqual({ type: 'trigger', checkpointId: 2, trigger: 'final' });
  });

  it('a rollback request to a retained checkpoint starts a recovery to it, before any trigger, and is cleared when the recovery starts', () => {
    const job = requestRollback(jobWithCompleted(3), 2);
    expect(job.requests).toEqual({ rollback: { toCheckpoint: 2, reason: 'rollback to checkpoint 2 requested by the operator' } });
    const decision = decideNext(config, facts({ job, now: T0 + 10_000 }));
    expect(decision).toEqual({ type: 'start-recovery', toCheckpoint: 2, reason: 'rollback to checkpoint 2 requested by the operator' });
    const recovering = recoveryStarted(job, 2, 'rollback to checkpoint 2 requested by the operator', T0);
    expect(recovering.requests).toBeUndefined();
    expect(recovering.generation).toBe(job.generation + 1);
    expect(decideNext(config, facts({ job: recovering }))).toEqual({ type: 'continue-recovery' });
  });

  it("the restart a rollback request starts is marked as the operator's; the restart history stays bounded", () => {
    const requested = recoveryStarted(requestRollback(jobWithCompleted(2), 1, 'user'), 1, 'user', T0);
    expect(requested.restarts).toEqual([{ at: T0, toCheckpoint: 1, reason: 'user', byOperator: true }]);
    expect(recoveryStarted(jobWithCompleted(2), 2, 'dead letter', T0).restarts).toEqual([{ at: T0, toCheckpoint: 2, reason: 'dead letter' }]);
    let job = jobWithCompleted(1);
    for (let i = 0; i < RESTART_HISTORY + 5; i++) job = recoveryStarted({ ...job, recovery: undefined }, 1, `failure ${i}`, T0 + i);
    expect(job.restarts).toHaveLength(RESTART_HISTORY);
    expect(job.restarts.at(-1)?.reason).toBe(`failure ${RESTART_HISTORY + 4}`);
    expect(job.restarts[0]?.reason).toBe('failure 5');
  });

  it('a rollback request keeps the other pending request', () => {
    const job = requestRollback(requestCheckpoint(jobWithCompleted(2)), 2);
    expect(recoveryStarted(job, 2, 'r', T0).requests).toEqual({ checkpoint: true });
  });

  it('a rollback to a checkpoint that is not retained is refused with the retained ids', () => {
    const job = jobWithCompleted(3);
    expect(() => requestRollback(job, 1)).toThrow(new CheckpointNotFoundError('checkpoint 1 is not a retained completed checkpoint (retained: 2, 3)'));
    expect(() => requestRollback(job, 7)).toThrow(CheckpointNotFoundError);
    expect(() => requestRollback(initialJob(T0), 0)).not.toThrow();
  });

  it('a rollback request whose checkpoint was pruned before it was served falls back to the last completed one and says so', () => {
    const requested = requestRollback(jobWithCompleted(3), 2, 'user');
    const pruned = completed({ ...requested, nextCheckpointId: 5 }, done(4), T0, config.retained);
    expect(decideNext(config, facts({ job: pruned }))).toEqual({
      type: 'start-recovery',
      toCheckpoint: 4,
      reason: 'user (checkpoint 2 is no longer retained: rolled back to 4)',
    });
  });

  it('requests on a finished or failed job are refused with its status', () => {
    const failed: JobRecord = { ...initialJob(T0), status: 'FAILED', failure: 'restart strategy exhausted' };
    expect(() => pauseJob(failed)).toThrow(new JobNotControllableError('cannot pause: the job is FAILED (restart strategy exhausted)'));
    expect(() => requestCheckpoint({ ...initialJob(T0), status: 'FINISHED' })).toThrow(new JobNotControllableError('cannot trigger a checkpoint: the job is FINISHED'));
  });
});

describe('updateJob: optimistic writes of operator requests', () => {
  function storeWith(job: JobRecord | undefined): EmbeddedCheckpointStore {
    const store = new EmbeddedCheckpointStore(EmbeddedDb.memory());
    if (job) void store.putJob(job, undefined);
    return store;
  }

  it('applies the change with a version-conditional write', async () => {
    const store = storeWith(initialJob(T0));
    const next = await updateJob(store, pauseJob);
    expect(next.version).toBe(1);
    expect(await store.getJob()).toEqual(next);
  });

  it('re-reads and re-applies when a coordinator wrote in between', async () => {
    const store = storeWith(initialJob(T0));
    let interfered = false;
    const racing: CheckpointStore = {
      ...bind(store),
      async putJob(job, expected) {
        if (!interfered) {
          interfered = true;
          const current = (await store.getJob()) as JobRecord;
          await store.putJob({ ...current, version: current.version + 1, lastCompletedId: 9 }, current.version);
        }
        return store.putJob(job, expected);
      },
    };
    const next = await updateJob(racing, pauseJob);
    expect(next).toMatchObject({ version: 2, paused: true, lastCompletedId: 9 });
    expect(await store.getJob()).toEqual(next);
  });

  it('gives up after the attempts with a named error, and refuses a job that has not started', async () => {
    const store = storeWith(initialJob(T0));
    const alwaysRacing: CheckpointStore = {
      ...bind(store),
      async putJob(job, expected) {
        const current = (await store.getJob()) as JobRecord;
        await store.putJob({ ...current, version: current.version + 1 }, current.version);
        return store.putJob(job, expected);
      },
    };
    await expect(updateJob(alwaysRacing, pauseJob, 3)).rejects.toThrow(new JobUpdateConflictError('the job record changed 3 times during the request; try again'));
    await expect(updateJob(storeWith(undefined), pauseJob)).rejects.toThrow(new JobNotControllableError('the job has not started yet (no job record)'));
  });
});

function bind(store: CheckpointStore): CheckpointStore {
  return {
    getJob: () => store.getJob(),
    putJob: (job, expected) => store.putJob(job, expected),
    getCheckpoint: (id) => store.getCheckpoint(id),
    putCheckpoint: (record) => store.putCheckpoint(record),
    putCheckpointIfPending: (record) => store.putCheckpointIfPending(record),
    listCheckpoints: () => store.listCheckpoints(),
    listAcks: (id) => store.listAcks(id),
    forgetBelow: (id) => store.forgetBelow(id),
  };
}
