import { afterAll, describe, expect, it } from 'vitest';
import { FaultInjector, planFor } from '../faults/fault-schedule.js';
import { sequenceEvents } from '../faults/sequence-job.js';
import { KEYS, PER_KEY, POISON, Throttler, expectSameDeadLetters, logOrderOracle, realTime, runOnce } from './fault-run.js';

/**
 * The fault suite on the ingress the stack deploys: a standard SQS queue, which keeps no order
 * per key and no producer deduplication, and every event pushed twice (a producer's SDK retrying
 * a SendMessage that had succeeded). The order events enter the source log is then the run's
 * own, so the fault-free oracle is the job run embedded over this run's log, partition by
 * partition in log order; the log must hold every event exactly once. Seeds FIRST..LAST of
 * CAIRN_CLOUD_STANDARD_SEEDS (default 1-6).
 */

const [FIRST, LAST] = (process.env.CAIRN_CLOUD_STANDARD_SEEDS ?? '1-6').split('-').map(Number) as [number, number];
const seeds = Array.from({ length: LAST - FIRST + 1 }, (_, i) => FIRST + i);
const pushed = sequenceEvents(KEYS, PER_KEY, POISON)
  .map((e) => e.body)
  .sort();

/** Events of a key that entered the log after a later value of the same key. */
function reordered(log: ReadonlyArray<readonly unknown[]>): number {
  let n = 0;
  for (const events of log) {
    const last = new Map<string, number>();
    for (const e of events as Array<{ key: string; value: number }>) {
      if ((last.get(e.key) ?? 0) > e.value) n++;
      last.set(e.key, Math.max(last.get(e.key) ?? 0, e.value));
    }
  }
  return n;
}

describe('fault suite (local cloud, standard ingress as deployed): seeded schedules end exactly like the fault-free run over the same log', () => {
  let outOfOrder = 0;
  let runs = 0;
  it.each(seeds)('seed %i', async (seed) => {
    const plan = planFor(seed, realTime(seed));
    const injector = new FaultInjector(plan);
    const throttler = seed % 2 === 0 ? new Throttler(40) : undefined;
    // Odd seeds push ingress batch messages (a producer packing events, resending the same batches).
    const pack = seed % 2 === 1;
    const run = await runOnce(plan.checkpoint, { injector, ingress: 'standard', resend: true, keepLog: true, pack, sourceReads: plan.sourceReads, ...(throttler ? { throttler } : {}) });
    const context = `seed ${seed}${pack ? ' (batch messages)' : ''} plan ${JSON.stringify(plan)} injected ${JSON.stringify(injector.injected)} counters ${JSON.stringify(run.counters)} errors ${run.errors.slice(-3).join(' | ')}`;
    expect(run.status, context).toBe('FINISHED');
    // Nothing lost, nothing twice: the resent events were deduplicated by their ids.
    expect(
      run.log
        .flat()
        .map((e) => JSON.stringify(e))
        .sort(),
      context,
    ).toEqual(pushed);
    expect(run.counters.ingestDuplicates, context).toBeGreaterThanOrEqual(pushed.length);
    outOfOrder += reordered(run.log);
    runs++;
    const oracle = await logOrderOracle(run.log);
    expect(run.output, context).toEqual(oracle.output);
    expect(run.state, context).toEqual(oracle.state);
    expectSameDeadLetters(run, oracle, context);
  });

  afterAll(() => {
    console.log(`standard-ingress fault seeds ${FIRST}-${LAST}: ${runs} runs, ${outOfOrder} events entered the log behind a later value of their key`);
    // The runs really met an unordered ingress (else the FIFO suite's oracle would have done).
    if (runs === seeds.length && seeds.length >= 3) expect(outOfOrder).toBeGreaterThan(0);
  });
});
