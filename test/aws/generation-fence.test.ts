/**
 * Generation fences. A step commit reads no job item: a recovery fences each instance record
 * (`fg`) before it restores anything, so the commit's condition on its own instance record is
 * the fence. The job's generation also has an item of its own (`JOB/GEN`, rewritten only when
 * the generation changes), which a restore checks; the job record itself grows (restart
 * history, pending checkpoints) and is rewritten by the coordinator all the time.
 */
import { describe, expect, it } from 'vitest';
import { Keys } from '../../shared/aws/adapters/table-layout.js';
import { RequestCounter, createAwsStores } from '../../shared/aws/index.js';
import { ConcurrentStepError } from '../../shared/core/errors.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import type { JobRecord } from '../../shared/core/ports.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { INSTANCE, cloudEndpoint, commitOf, credentials, freshStores } from './helpers.js';

/** A job record of about 20 KB: 200 restarts with long reasons. */
function bigJob(version: number): JobRecord {
  const restarts = Array.from({ length: 200 }, (_, i) => ({ at: i, toCheckpoint: i, reason: `operator threw on record ${i}: ${'x'.repeat(60)}` }));
  return { ...initialJob(1), version, restarts };
}

describe('generation fence (DynamoDB)', () => {
  it('a step commit costs the same write units whether the job record is 1 KB or 20 KB', async () => {
    const units: number[] = [];
    for (const job of [initialJob(1), bigJob(1)]) {
      const counter = new RequestCounter({ dynamoCapacity: true });
      const s = await freshStores({ counter });
      try {
        await s.checkpoints.putJob(job, undefined);
        await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
        counter.reset();
        await s.stateStore.commitStep(commitOf(0, [{ keyGroup: 1, key: 'k', value: { n: 1 }, epoch: 1, previous: undefined }]));
        units.push(counter.capacity.write);
      } finally {
        await s.done();
      }
    }
    expect(units[1]).toBe(units[0]);
    // One new key, billed as AWS bills a transaction (2 units per KB per action): the instance
    // record, the item, the step's change record and the live-key counter. No job item.
    expect(units[0]).toBe(8);
  });

  it('a job put that keeps the generation leaves the fence alone; a new generation rewrites it in the same transaction', async () => {
    const counter = new RequestCounter();
    const s = await freshStores({ counter });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      expect((await s.io.get(Keys.generationFence()))?.gen).toBe(1);

      counter.reset();
      const job = (await s.checkpoints.getJob()) as JobRecord;
      await s.checkpoints.putJob({ ...job, version: job.version + 1, restarts: bigJob(0).restarts }, job.version);
      expect(counter.calls()).toEqual({ 'DynamoDB.GetItem': 1, 'DynamoDB.PutItem': 1 });

      counter.reset();
      await s.checkpoints.putJob({ ...job, version: job.version + 2, generation: 2 }, job.version + 1);
      expect(counter.calls()).toEqual({ 'DynamoDB.TransactWriteItems': 1 });
      expect((await s.io.get(Keys.generationFence()))?.gen).toBe(2);
      expect((await s.io.get(Keys.job()))?.gen).toBe(2);
    } finally {
      await s.done();
    }
  });

  it('a put this store has not seen the version of writes the fence too, and a stale one changes neither item', async () => {
    const s = await freshStores();
    const other = await createAwsStores({ tableName: s.table, bucket: 'cairn-aws-tests', endpoint: cloudEndpoint(), region: 'us-east-1', credentials });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      const job = (await s.checkpoints.getJob()) as JobRecord;
      // Another process moves the job to generation 2; this store still knows version 1.
      await other.checkpoints.putJob({ ...job, version: job.version + 1, generation: 2 }, job.version);
      await expect(s.checkpoints.putJob({ ...job, version: job.version + 1 }, job.version)).rejects.toBeInstanceOf(ConcurrentStepError);
      expect((await s.io.get(Keys.generationFence()))?.gen).toBe(2);
      expect(await s.io.get(Keys.job())).toMatchObject({ ver: job.version + 1, gen: 2 });
      // Read again, this store's put keeps generation 2 and the fence stays.
      const now = (await s.checkpoints.getJob()) as JobRecord;
      await s.checkpoints.putJob({ ...now, version: now.version + 1 }, now.version);
      expect((await s.io.get(Keys.generationFence()))?.gen).toBe(2);
    } finally {
      other.destroy();
      await s.done();
    }
  });
});
