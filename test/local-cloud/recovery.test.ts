/**
 * The exactly-once holes of issue #10 on the local cloud (DynamoDB Local, ElasticMQ, the local
 * runner's concurrent event sources): an operator rollback that lands while commit-sinks
 * publishes, a recovery that runs again while the instances its first run rewrote are live and
 * busy, and a checkpoint that keeps failing until the restart strategy gives up.
 */
import { expect, it } from 'vitest';
import { requestRollback, updateJob } from '../../shared/core/control.js';
import { InjectedFault } from '../../shared/core/errors.js';
import type { LocalCloudJob } from '../../shared/aws/runner/index.js';
import { canonical, sequenceEvents, sequenceJob, sequenceOracle, violations } from '../faults/sequence-job.js';
import { Topology } from '../../shared/core/topology.js';
import { localJob } from './helpers.js';

const KEYS = 4;
const PER_KEY = 20;
const limits = { maxReceiveCount: 6, isolatePoisonAfterReceives: 3, sourceReadBatch: 5 };
const restartStrategy = { kind: 'fixed-delay', attempts: 20, delaySeconds: 0 } as const;

async function finishExactly(job: LocalCloudJob, perKey = PER_KEY): Promise<void> {
  const record = await job.run({ stallMs: 30_000 });
  const output = canonical(await job.results('validated'));
  const context = `counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
  expect(record.status, context).toBe('FINISHED');
  expect(violations(output, KEYS, perKey, 'exactly-once'), context).toEqual([]);
  expect(output, context).toEqual(sequenceOracle(KEYS, perKey));
}

it('`cairn rollback --to <sinksCommittedThrough>` landing while commit-sinks publishes two epochs publishes nothing twice', async () => {
  // first: wait for checkpoint N+1 to have every ack when N completes (so that one CommitSinks
  // pass publishes both epochs); two: that pass is under way; done: the rollback landed in it.
  let stage: 'first' | 'two' | 'done' = 'first';
  const ref: { job?: LocalCloudJob } = {};
  const expectedAcks = new Topology(sequenceJob()).allInstances().length;
  const job = await localJob({
    job: sequenceJob(),
    checkpoint: { intervalMs: 20, maxConcurrent: 3 },
    limits,
    restartStrategy,
    faults: {
      coordinator: {
        afterDecision: async (decision) => {
          const job = ref.job;
          // A CommitSinks pass that ended without publishing two epochs (one of them had no sink
          // output): the scenario is armed again on a later checkpoint.
          if (stage === 'two' && decision.type === 'commit-sinks') stage = 'first';
          if (!job || stage !== 'first' || decision.type !== 'complete') return;
          const current = await job.job();
          const committed = current.sinksCommittedThrough;
          // (`cairn rollback` takes a retained checkpoint, never 0 once one completed.)
          if (committed < 1 || decision.checkpointId !== committed + 1 || !current.retainedCheckpoints.includes(committed)) return;
          const next = current.pendingCheckpoints[0];
          if (next === undefined || !(await job.checkpoints.getCheckpoint(next))?.barriersInjected) return;
          // The coordinator decides the pending checkpoints before CommitSinks: once N+1 has every
          // ack, its next decision completes it, and the one after publishes epochs N+1 and N+2.
          for (let i = 0; i < 400; i++) {
            const acks = (await job.checkpoints.listAcks(next)).filter((a) => a.generation === current.generation);
            if (acks.length >= expectedAcks) {
              stage = 'two';
              return;
            }
            await new Promise((r) => setTimeout(r, 25));
          }
        },
        afterSinkPublish: async (_sink, batchId) => {
          const job = ref.job;
          if (!job || stage !== 'two') return;
          const current = await job.job();
          const committed = current.sinksCommittedThrough;
          if (Number(batchId.split('|')[0]) < committed + 2) return;
          // Under load more checkpoints completed before this pass than are retained: the epoch the
          // job record says is committed is no longer restorable. Armed again on a later checkpoint.
          if (!current.retainedCheckpoints.includes(committed)) {
            stage = 'first';
            return;
          }
          // The operator's request reaches the job record between two publishes; the
          // coordinator's own write of sinksCommittedThrough then loses, and it serves the
          // rollback first (to the epoch the job record says is committed).
          await updateJob(job.checkpoints, (j) => requestRollback(j, committed));
          stage = 'done';
          throw new InjectedFault('coordinator lost its job-record write inside commit-sinks');
        },
      },
    },
  });
  ref.job = job;
  try {
    // A steady trickle, so that consecutive epochs all carry sink output, for as long as the
    // window has not been hit (a loaded machine needs more epochs); then the rest at once.
    // (400 per key: on a loaded machine the window may take a while; the rest goes at once once hit.)
    const perKey = 400;
    const events = sequenceEvents(KEYS, perKey);
    const trickle = (async () => {
      let i = 0;
      // (Read through a function: the hooks change `stage`, which the compiler cannot see.)
      const hit = (): boolean => (stage as string) === 'done';
      for (; i < events.length && !hit(); i += 4) {
        await job.push(events.slice(i, i + 4));
        await new Promise((r) => setTimeout(r, 60));
      }
      await job.push(events.slice(i));
      job.closeInput();
    })();
    await finishExactly(job, perKey);
    await trickle;
    expect(stage).toBe('done');
    const record = await job.job();
    expect(record.restarts.map((r) => r.byOperator)).toEqual([true]);
  } finally {
    await job.destroy();
  }
});

it('a recovery that runs again while the instances of its first run are live and busy applies every record once', async () => {
  const ref: { job?: LocalCloudJob } = {};
  let stage: 'first' | 'second' | 'done' = 'first';
  const lastInstance = new Topology(sequenceJob()).allInstances().at(-1);
  let completed = 0;
  const events = sequenceEvents(KEYS, PER_KEY);
  const half = (e: { id: string }): boolean => Number(e.id.split('-')[1]) <= PER_KEY / 2;
  const late = events.filter((e) => !half(e));
  const job = await localJob({
    job: sequenceJob(),
    checkpoint: { intervalMs: 150 },
    limits,
    restartStrategy,
    onTransition: (decision) => {
      if (decision.type === 'complete') completed++;
    },
    faults: {
      coordinator: {
        afterRecoveryPhase: async (phase, detail) => {
          const job = ref.job;
          if (!job) return;
          if (stage === 'first' && phase === 'restore-instance' && detail === lastInstance) {
            // Every instance record is rewritten: all of them are live in this generation. The
            // coordinator dies here; the next one runs the recovery again.
            stage = 'second';
            throw new InjectedFault('coordinator died inside the recovery');
          }
          if (stage === 'second' && phase === 'restore-operator' && detail === 'count') {
            // The second run has restored the keyed state and not yet rewritten the instances:
            // new events reach the live instances (ingest polls with the job's generation).
            stage = 'done';
            const before = job.counters.ingested;
            await job.push(late);
            for (let i = 0; i < 400 && job.counters.ingested < before + late.length; i++) await new Promise((r) => setTimeout(r, 25));
            await new Promise((r) => setTimeout(r, 1500));
          }
        },
      },
    },
  });
  ref.job = job;
  try {
    await job.push(events.filter(half));
    await job.run({ until: () => completed > 0, stallMs: 30_000 });
    expect(completed).toBeGreaterThan(0);
    const target = (await job.job()).lastCompletedId;
    await updateJob(job.checkpoints, (j) => requestRollback(j, target));
    await job.run({ until: () => stage === 'done' && job.counters.ingested === KEYS * PER_KEY, stallMs: 30_000 });
    job.closeInput();
    await finishExactly(job);
    expect(stage).toBe('done');
    // And without a detour: the records applied in the window did not break a channel or a
    // sequence check that a further rollback had to heal (on the old code: a redrive to the
    // validate DLQ and a second rollback).
    expect((await job.job()).restarts.map((r) => r.reason)).toEqual([`rollback to checkpoint ${target} requested by the operator`]);
    expect(job.counters.redriven).toBe(0);
  } finally {
    await job.destroy();
  }
});

it('a checkpoint that always times out ends the job FAILED when the restart strategy is exhausted', async () => {
  const job = await localJob({
    job: sequenceJob(),
    // No checkpoint of this job completes within 1 ms.
    checkpoint: { intervalMs: 50, timeoutMs: 1, tolerableFailures: 0 },
    limits,
    restartStrategy: { kind: 'fixed-delay', attempts: 2, delaySeconds: 0 },
  });
  try {
    await job.push(sequenceEvents(KEYS, PER_KEY));
    const record = await job.run({ stallMs: 30_000 });
    expect(record.status).toBe('FAILED');
    expect(record.failure).toBe('1 consecutive checkpoint failures (tolerable: 0); fixed-delay restart strategy exhausted (2 attempts)');
    expect(record.restarts.map((r) => r.reason)).toEqual(['1 consecutive checkpoint failures (tolerable: 0)', '1 consecutive checkpoint failures (tolerable: 0)']);
  } finally {
    await job.destroy();
  }
});
