import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultInjector, planFor } from '../faults/fault-schedule.js';
import { sequenceOracle, violations } from '../faults/sequence-job.js';
import { KEYS, PER_KEY, POISON, Throttler, expectSameDeadLetters, realTime, runOnce, type FaultRun } from './fault-run.js';

/**
 * The fault suite on the local cloud: seeded schedules end exactly like the fault-free run
 * (output, keyed state, dead letters). Seeds FIRST..LAST of CAIRN_CLOUD_FAULT_SEEDS (default 1-20).
 */

const [FIRST, LAST] = (process.env.CAIRN_CLOUD_FAULT_SEEDS ?? '1-20').split('-').map(Number) as [number, number];
const seeds = Array.from({ length: LAST - FIRST + 1 }, (_, i) => FIRST + i);

describe('fault suite (local cloud): seeded schedules end exactly like the fault-free run', () => {
  let reference: FaultRun;
  const totals: Record<string, number> = {};
  const timings: number[] = [];

  beforeAll(async () => {
    reference = await runOnce({ intervalMs: 200 });
  });

  it('the fault-free run passes the ITCase checks', () => {
    expect(reference.status).toBe('FINISHED');
    expect(reference.output).toEqual(sequenceOracle(KEYS, PER_KEY));
    expect(reference.deadLetterReasons).toEqual(Array.from({ length: POISON }, () => 'operator-error'));
    expect(reference.deadLetterIds.every((id) => id.startsWith('validate:'))).toBe(true);
  });

  it.each(seeds)('seed %i', async (seed) => {
    const plan = planFor(seed, realTime(seed));
    // Every third seed: payloads over 16 bytes spill to S3 (state values, version records,
    // instance records, snapshots, staged sink output, log entries), and the faults wait for a
    // completed checkpoint (then the job is paused, rolled back to it and resumed), so that
    // rollbacks restore spilled version records.
    const late = seed % 3 === 0;
    const injector = late ? new FaultInjector(plan).holdUntilCheckpoint(1) : new FaultInjector(plan);
    // Every other seed: one DynamoDB call in 40 is throttled.
    const throttler = seed % 2 === 0 ? new Throttler(40) : undefined;
    const run = await runOnce(plan.checkpoint, { injector, sourceReads: plan.sourceReads, ...(throttler ? { throttler } : {}), ...(late ? { spillThresholdBytes: 16 } : {}) });
    timings.push(run.ms);
    for (const [kind, n] of Object.entries(injector.injected)) totals[kind] = (totals[kind] ?? 0) + n;
    for (const [kind, n] of Object.entries(injector.requests)) totals[`request:${kind}`] = (totals[`request:${kind}`] ?? 0) + n;
    totals.throttled = (totals.throttled ?? 0) + (throttler?.throttled ?? 0);
    totals.redeliveries = (totals.redeliveries ?? 0) + run.counters.redeliveries;
    totals.restarts = (totals.restarts ?? 0) + run.restarts;
    totals.restartsToLaterCheckpoint = (totals.restartsToLaterCheckpoint ?? 0) + run.restartsToLaterCheckpoint;
    totals.coordinatorCrashes = (totals.coordinatorCrashes ?? 0) + run.counters.coordinatorCrashes;
    if (late) totals.spilledPayloads = (totals.spilledPayloads ?? 0) + run.s3Puts;
    if (injector.held) totals.heldNeverArmed = (totals.heldNeverArmed ?? 0) + 1;
    const context = `seed ${seed} plan ${JSON.stringify(plan)} injected ${JSON.stringify(injector.injected)} throttled ${throttler?.throttled ?? 0} counters ${JSON.stringify(run.counters)} errors ${run.errors.slice(-3).join(' | ')}`;
    expect(run.status, context).toBe('FINISHED');
    expect(violations(run.output, KEYS, PER_KEY, 'exactly-once'), context).toEqual([]);
    expect(run.output, context).toEqual(reference.output);
    expect(run.state, context).toEqual(reference.state);
    expectSameDeadLetters(run, reference, context);
  });

  afterAll(() => {
    const total = timings.reduce((a, b) => a + b, 0);
    console.log(`local-cloud fault seeds ${FIRST}-${LAST}: ${timings.length} runs in ${total} ms (max ${Math.max(...timings)} ms); totals ${JSON.stringify(totals)}`);
    if (timings.length < seeds.length || seeds.length < 10) return;
    // The schedules really exercised the faults this suite is about.
    const kinds = [
      'crash-between-commit-and-send',
      'crash-before-commit',
      'redeliveries',
      'throttled',
      'duplicate-delivery',
      'request:pause',
      'request:rollback',
      'spilledPayloads',
      'restartsToLaterCheckpoint',
    ];
    // The windows of #10: a death or an operator rollback inside commit-sinks, a death inside a recovery (which then runs again).
    kinds.push('crash-in-commit-sinks', 'rollback-in-commit-sinks', 'crash-in-recovery');
    for (const kind of kinds) {
      expect(totals[kind] ?? 0, kind).toBeGreaterThan(0);
    }
  });
});
