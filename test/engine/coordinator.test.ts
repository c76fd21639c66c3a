import { describe, expect, it } from 'vitest';
import { parseCheckpointConfig, type CheckpointConfigInput } from '../../shared/core/config.js';
import { CheckpointConfigError } from '../../shared/core/errors.js';
import type { CheckpointRecord } from '../../shared/core/ports.js';
import { aborted, decideNext, initialJob, needsInputFacts, recoveryAttemptStarted, recoveryStarted, retainedCheckpoints } from '../../shared/core/protocol/coordinator.js';
import { facts, T0 } from './facts.js';

const config = (input: CheckpointConfigInput = {}) => parseCheckpointConfig(input);
const pending = (id: number, triggeredAt = T0, barriersInjected = true): CheckpointRecord => ({
  id,
  generation: 1,
  status: 'PENDING',
  trigger: 'time',
  triggeredAt,
  barriersInjected,
});

describe('checkpoint coordinator decisions', () => {
  it('a time trigger fires once the interval has passed since the last trigger, not before', () => {
    expect(decideNext(config({ intervalMs: 100 }), facts({ now: T0 + 99 }))).toEqual({ type: 'wait', until: T0 + 100 });
    expect(decideNext(config({ intervalMs: 100 }), facts({ now: T0 + 100 }))).toEqual({ type: 'trigger', checkpointId: 1, trigger: 'time' });
  });

  it('an idle job takes no periodic checkpoint: nothing changed since the last completed one (every event read before its barriers, no channel state, no processing time)', () => {
    const last: CheckpointRecord = { ...pending(4), status: 'COMPLETED', finishedAt: T0 + 50, sourceOffsets: { 'in#0': 30, 'in#1': 12 }, channelStateRecords: 0 };
    const idle = { now: T0 + 100, job: { lastCompletedId: 4, sinksCommittedThrough: 4, nextCheckpointId: 5 }, lastCompleted: last, ingestedTotal: 42, timeDriven: false };
    expect(decideNext(config({ intervalMs: 100 }), facts(idle))).toEqual({ type: 'wait', until: T0 + 200 });
    expect(decideNext(config({ trigger: 'continuous', intervalMs: 100 }), facts(idle))).toEqual({ type: 'wait', until: T0 + 200 });
    // Any change, or anything unknown, takes the checkpoint.
    const due = { type: 'trigger', checkpointId: 5, trigger: 'time' };
    expect(decideNext(config({ intervalMs: 100 }), facts({ ...idle, ingestedTotal: 43 }))).toEqual(due);
    expect(decideNext(config({ intervalMs: 100 }), facts({ ...idle, lastCompleted: { ...last, channelStateRecords: 2 } }))).toEqual(due);
    expect(decideNext(config({ intervalMs: 100 }), facts({ ...idle, timeDriven: true }))).toEqual(due);
    expect(decideNext(config({ intervalMs: 100 }), facts({ ...idle, timeDriven: undefined }))).toEqual(due);
    expect(decideNext(config({ intervalMs: 100 }), facts({ ...idle, lastCompleted: { ...last, sourceOffsets: undefined } }))).toEqual(due);
    expect(decideNext(config({ intervalMs: 100 }), facts({ ...idle, manualTriggerRequested: true }))).toEqual({ type: 'trigger', checkpointId: 5, trigger: 'manual' });
    // Every event read but the input sealed since, and a source has not seen its end (its poll may be lost): the barrier wakes it.
    expect(decideNext(config({ intervalMs: 100 }), facts({ ...idle, inputSealed: true, sourcesFinished: false }))).toEqual(due);
  });

  it('a triggered checkpoint first gets its barriers injected at the sources', () => {
    expect(decideNext(config(), facts({ pending: [pending(1, T0, false)] }))).toEqual({ type: 'inject-barriers', checkpointId: 1 });
  });

  it('a checkpoint acknowledged by every instance completes', () => {
    expect(decideNext(config(), facts({ pending: [pending(1)], acks: new Map([[1, 4]]) }))).toEqual({ type: 'complete', checkpointId: 1 });
  });

  it('a checkpoint whose record ended while the job record still lists it is finished on the job record (its write was lost)', () => {
    const done: CheckpointRecord = { ...pending(1), status: 'COMPLETED', finishedAt: T0 + 5 };
    const lost: CheckpointRecord = { ...pending(2), status: 'ABORTED', finishedAt: T0 + 6, abortReason: 'timed out after 500 ms' };
    expect(decideNext(config(), facts({ job: { pendingCheckpoints: [1] }, finished: [done] }))).toEqual({ type: 'complete', checkpointId: 1 });
    expect(decideNext(config(), facts({ job: { pendingCheckpoints: [2] }, finished: [lost] }))).toEqual({ type: 'abort', checkpointId: 2, reason: 'timed out after 500 ms' });
  });

  it('a checkpoint that misses one ack past the timeout is aborted', () => {
    const f = facts({ now: T0 + 500, pending: [pending(1)], acks: new Map([[1, 3]]) });
    expect(decideNext(config({ timeoutMs: 500 }), f)).toEqual({ type: 'abort', checkpointId: 1, reason: 'timed out after 500 ms' });
    expect(decideNext(config({ timeoutMs: 500 }), { ...f, now: T0 + 499 }).type).toBe('wait');
  });

  it('failures up to the tolerance do not roll back; one more does', () => {
    const job = aborted(initialJob(T0), 1);
    expect(decideNext(config({ tolerableFailures: 1 }), facts({ job, now: T0 }))).toEqual({ type: 'wait', until: T0 + 1000 });
    expect(decideNext(config({ tolerableFailures: 0 }), facts({ job, now: T0 }))).toEqual({
      type: 'start-recovery',
      toCheckpoint: 0,
      reason: '1 consecutive checkpoint failures (tolerable: 0)',
      // The default restart strategy (exponential backoff) waits 1 s before the first restore.
      delayMs: 1000,
    });
  });

  it('max concurrent checkpoints holds the next trigger back', () => {
    expect(decideNext(config({ intervalMs: 1 }), facts({ now: T0 + 10, pending: [pending(1)] })).type).toBe('wait');
    expect(decideNext(config({ intervalMs: 1, maxConcurrent: 2 }), facts({ now: T0 + 10, pending: [pending(1)], job: { nextCheckpointId: 2 } }))).toEqual({
      type: 'trigger',
      checkpointId: 2,
      trigger: 'time',
    });
  });

  it('min pause counts from the end of the last completed checkpoint', () => {
    const f = facts({ now: T0 + 150, job: { lastCompletedId: 3, lastCompletedAt: T0 + 100, nextCheckpointId: 4, sinksCommittedThrough: 3 } });
    expect(decideNext(config({ intervalMs: 10, minPauseMs: 100 }), f)).toEqual({ type: 'wait', until: T0 + 200 });
    expect(decideNext(config({ intervalMs: 10, minPauseMs: 100 }), { ...f, now: T0 + 200 })).toEqual({ type: 'trigger', checkpointId: 4, trigger: 'time' });
  });

  it('a count trigger fires every N records ingested since the last trigger', () => {
    const cfg = config({ trigger: 'count', everyRecords: 1000 });
    expect(decideNext(cfg, facts({ ingestedTotal: 999 })).type).toBe('wait');
    expect(decideNext(cfg, facts({ ingestedTotal: 1000 }))).toEqual({ type: 'trigger', checkpointId: 1, trigger: 'count' });
  });

  it('a continuous trigger starts the next checkpoint as soon as none is pending', () => {
    expect(decideNext(config({ trigger: 'continuous' }), facts())).toEqual({ type: 'trigger', checkpointId: 1, trigger: 'continuous' });
  });

  it('manual checkpoints are taken on request only, in any trigger mode', () => {
    expect(decideNext(config({ trigger: 'manual' }), facts({ now: T0 + 10 ** 9 })).type).toBe('wait');
    expect(decideNext(config({ trigger: 'manual' }), facts({ manualTriggerRequested: true }))).toEqual({ type: 'trigger', checkpointId: 1, trigger: 'manual' });
  });

  it('a failure signal rolls back to the last completed checkpoint', () => {
    expect(decideNext(config(), facts({ failureSignal: 'operator failed', job: { lastCompletedId: 7 } }))).toEqual({
      type: 'start-recovery',
      toCheckpoint: 7,
      reason: 'operator failed',
      delayMs: 1000,
    });
  });

  it('the restart strategy is applied to failures: its delay holds the restore back, exhausted the job fails with both reasons', () => {
    const strategy = { kind: 'fixed-delay', attempts: 2, delaySeconds: 3 } as const;
    const once = recoveryStarted(initialJob(T0), 0, 'first failure', T0, 3000);
    expect(decideNext(config(), facts({ job: once, now: T0 + 2999 }), strategy)).toEqual({ type: 'wait', until: T0 + 3000 });
    expect(decideNext(config(), facts({ job: once, now: T0 + 3000 }), strategy)).toEqual({ type: 'continue-recovery' });
    const twice = { ...recoveryStarted({ ...once, recovery: undefined }, 0, 'second failure', T0 + 10, 3000), recovery: undefined, status: 'RUNNING' as const };
    expect(decideNext(config(), facts({ job: twice, failureSignal: 'third failure' }), strategy)).toEqual({
      type: 'fail',
      reason: 'third failure; fixed-delay restart strategy exhausted (2 attempts)',
    });
    // An operator's rollback is not a failure: it is served whatever the strategy says.
    const asked = { ...twice, requests: { rollback: { toCheckpoint: 0, reason: 'rollback by the operator' } } };
    expect(decideNext(config(), facts({ job: asked }), strategy)).toEqual({ type: 'start-recovery', toCheckpoint: 0, reason: 'rollback by the operator' });
  });

  it('every recovery attempt after the first runs in a generation of its own', () => {
    const started = recoveryStarted(initialJob(T0), 4, 'x', T0);
    expect(started).toMatchObject({ generation: 2, recovery: { toCheckpoint: 4, attempts: 0 } });
    const first = recoveryAttemptStarted(started);
    expect(first).toMatchObject({ generation: 2, version: started.version + 1, recovery: { toCheckpoint: 4, reason: 'x', attempts: 1 } });
    const second = recoveryAttemptStarted(first);
    expect(second).toMatchObject({ generation: 3, recovery: { toCheckpoint: 4, reason: 'x', attempts: 2 } });
    // A job record from before attempts were counted: an attempt may have begun, so a new generation.
    expect(recoveryAttemptStarted({ ...started, recovery: { toCheckpoint: 4, reason: 'x' } }).generation).toBe(3);
  });

  it('a recovery in progress is continued before anything else (a coordinator crash mid-rollback resumes it)', () => {
    const job = recoveryStarted(initialJob(T0), 0, 'x', T0);
    expect(job.generation).toBe(2);
    expect(decideNext(config(), facts({ job, pending: [pending(1)], failureSignal: 'y' }))).toEqual({ type: 'continue-recovery' });
  });

  it('sinks are committed through the last completed checkpoint before new triggers', () => {
    expect(decideNext(config({ intervalMs: 1 }), facts({ now: T0 + 10, job: { lastCompletedId: 2, sinksCommittedThrough: 1 } }))).toEqual({
      type: 'commit-sinks',
      throughCheckpoint: 2,
    });
  });

  it('a bounded input: no periodic checkpoint after the sources finish; one final checkpoint once idle; then finish', () => {
    const cfg = config({ intervalMs: 1 });
    expect(decideNext(cfg, facts({ now: T0 + 50, sourcesFinished: true, idle: false })).type).toBe('wait');
    expect(decideNext(cfg, facts({ now: T0 + 50, sourcesFinished: true, idle: true }))).toEqual({ type: 'trigger', checkpointId: 1, trigger: 'final' });
    expect(decideNext(cfg, facts({ sourcesFinished: true, idle: true, lastCompletedTrigger: 'final' }))).toEqual({ type: 'finish' });
  });

  it('the latest completed checkpoint is always retained', () => {
    expect(retainedCheckpoints([1, 2, 5, 9], 2)).toEqual([5, 9]);
    expect(retainedCheckpoints([4], 0)).toEqual([4]);
  });

  it('config errors name the problem', () => {
    expect(() => parseCheckpointConfig({ alignment: 'unaligned', maxConcurrent: 2 })).toThrow(new CheckpointConfigError('unaligned checkpoints require maxConcurrent = 1'));
    expect(() => parseCheckpointConfig({ intervalMs: -1 })).toThrow(CheckpointConfigError);
    // Acks expire two days after they were written (retention.ts ACK_RETENTION_MS): a checkpoint waits for them a day at most.
    expect(() => parseCheckpointConfig({ timeoutMs: 86_400_001 })).toThrow(new CheckpointConfigError('invalid checkpoint config: ✖ timeoutMs is at most 86400000 (a day)\n  → at timeoutMs'));
    expect(parseCheckpointConfig({ timeoutMs: 86_400_000 }).timeoutMs).toBe(86_400_000);
  });
});

describe('needsInputFacts: with as many checkpoints pending as may run, the input facts decide nothing', () => {
  it('decideNext gives the same decision whatever the log, the sources, the queues and the last checkpoint say', () => {
    const inputs = [
      { ingestedTotal: 0, sourcesFinished: false, inputSealed: false, idle: false, lastCompletedTrigger: undefined },
      { ingestedTotal: 500, sourcesFinished: true, inputSealed: true, idle: true, lastCompletedTrigger: 'final' as const },
      { ingestedTotal: 500, sourcesFinished: true, inputSealed: true, idle: false, lastCompletedTrigger: 'time' as const },
      { ingestedTotal: 7, sourcesFinished: false, inputSealed: true, idle: true, lastCompletedTrigger: 'time' as const },
    ];
    const situations = [
      { maxConcurrent: 1, pending: [pending(1)], acks: new Map([[1, 2]]), now: T0 + 50 },
      { maxConcurrent: 1, pending: [pending(1, T0, false)], acks: new Map(), now: T0 + 50 },
      { maxConcurrent: 1, pending: [pending(1)], acks: new Map([[1, 4]]), now: T0 + 50 },
      { maxConcurrent: 1, pending: [pending(1)], acks: new Map(), now: T0 + 700_000 },
      { maxConcurrent: 2, pending: [pending(1), pending(2)], acks: new Map([[2, 4]]), now: T0 + 5_000 },
      { maxConcurrent: 2, pending: [pending(1), pending(2)], acks: new Map(), now: T0 + 5_000, job: { sinksCommittedThrough: 0, lastCompletedId: 3 } },
      { maxConcurrent: 1, pending: [pending(4)], acks: new Map(), now: T0 + 5_000, job: { paused: true } },
    ];
    for (const { maxConcurrent, job, ...situation } of situations) {
      expect(needsInputFacts(config({ maxConcurrent }), situation.pending.length)).toBe(false);
      const decisions = inputs.map((input) => decideNext(config({ maxConcurrent }), facts({ ...situation, ...input, ...(job ? { job } : {}) })));
      for (const decision of decisions) expect(decision).toEqual(decisions[0]);
    }
    expect(needsInputFacts(config({ maxConcurrent: 2 }), 1)).toBe(true);
    expect(needsInputFacts(config(), 0)).toBe(true);
  });
});
