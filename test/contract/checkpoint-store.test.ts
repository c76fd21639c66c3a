import { describe, expect, it } from 'vitest';
import { ConcurrentStepError } from '../../shared/core/errors.js';
import type { CheckpointAck, CheckpointRecord, JobRecord } from '../../shared/core/ports.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { ackOf, InstanceDriver, startJob } from './fixtures.js';
import { implementationsOf, withResource, type StoreFamily } from './implementations.js';
import { describeWhen, itWhen } from './implementations.js';

function checkpoint(id: number, extra: Partial<CheckpointRecord> = {}): CheckpointRecord {
  return { id, generation: 1, status: 'PENDING', trigger: 'time', triggeredAt: 1_000 + id, barriersInjected: false, ...extra };
}

const byInstance = (acks: CheckpointAck[]): CheckpointAck[] => [...acks].sort((a, b) => (a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0));

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe.each(implementationsOf('store-family'))('CheckpointStore contract: $name', (impl) => {
  const run = (body: (family: StoreFamily, reopen: () => Promise<StoreFamily>) => Promise<void>) => () => withResource(impl, body);

  describe('job record', () => {
    it(
      'getJob is undefined until putJob(job, undefined) creates it; the record round-trips exactly',
      run(async ({ checkpoints }) => {
        expect(await checkpoints.getJob()).toBeUndefined();
        const job: JobRecord = {
          ...initialJob(1_000),
          recovery: { toCheckpoint: 3, reason: 'checkpoint 4 timed out' },
          restarts: [{ at: 900, toCheckpoint: 2, reason: 'manual' }],
          failure: 'none yet',
        };
        await checkpoints.putJob(job, undefined);
        expect(await checkpoints.getJob()).toEqual(job);
      }),
    );

    it(
      'putJob is conditional on the stored version: a mismatch throws ConcurrentStepError and changes nothing',
      run(async ({ checkpoints }) => {
        // Expecting a version of a job that does not exist.
        expect(await rejection(checkpoints.putJob(initialJob(1), 0))).toBeInstanceOf(ConcurrentStepError);
        expect(await checkpoints.getJob()).toBeUndefined();

        const v0 = await startJob(checkpoints);
        // Creating it twice.
        expect(await rejection(checkpoints.putJob({ ...v0, lastTriggerAt: 5 }, undefined))).toBeInstanceOf(ConcurrentStepError);
        const v1: JobRecord = { ...v0, version: 1, nextCheckpointId: 2 };
        await checkpoints.putJob(v1, 0);
        expect(await checkpoints.getJob()).toEqual(v1);
        // A stale writer (still at version 0) and a writer from the future both lose.
        for (const expected of [0, 2, undefined]) {
          expect(await rejection(checkpoints.putJob({ ...v1, version: 9, status: 'FAILED' }, expected))).toBeInstanceOf(ConcurrentStepError);
        }
        expect(await checkpoints.getJob()).toEqual(v1);
        const v2: JobRecord = { ...v1, version: 2, generation: 2, status: 'RECOVERING' };
        await checkpoints.putJob(v2, 1);
        expect(await checkpoints.getJob()).toEqual(v2);
      }),
    );

    it(
      'of two coordinators racing from the same job version, exactly one wins',
      run(async ({ checkpoints }) => {
        const v0 = await startJob(checkpoints);
        const results = await Promise.allSettled([checkpoints.putJob({ ...v0, version: 1, nextCheckpointId: 2 }, 0), checkpoints.putJob({ ...v0, version: 1, nextCheckpointId: 3 }, 0)]);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        expect(results.find((r) => r.status === 'rejected')?.reason).toBeInstanceOf(ConcurrentStepError);
        const won = results.findIndex((r) => r.status === 'fulfilled');
        expect((await checkpoints.getJob())?.nextCheckpointId).toBe(won === 0 ? 2 : 3);
      }),
    );
  });

  describe('checkpoint records', () => {
    it(
      'putCheckpoint/getCheckpoint round-trip every field; a later put overwrites; unknown ids are undefined',
      run(async ({ checkpoints }) => {
        expect(await checkpoints.getCheckpoint(1)).toBeUndefined();
        const pending = checkpoint(1);
        await checkpoints.putCheckpoint(pending);
        expect(await checkpoints.getCheckpoint(1)).toEqual(pending);
        const done = checkpoint(1, {
          status: 'COMPLETED',
          barriersInjected: true,
          finishedAt: 1_500,
          sourceOffsets: { 'src#0': 10, 'src#1': 0 },
          alignmentMs: 12,
          stateKeys: 1_000,
          stateWrites: 10,
          channelStateRecords: 3,
        });
        await checkpoints.putCheckpoint(done);
        expect(await checkpoints.getCheckpoint(1)).toEqual(done);
        const abortedOne = checkpoint(2, { status: 'ABORTED', trigger: 'manual', finishedAt: 2_000, abortReason: 'timeout after 60000 ms' });
        await checkpoints.putCheckpoint(abortedOne);
        expect(await checkpoints.getCheckpoint(2)).toEqual(abortedOne);
        expect(await checkpoints.getCheckpoint(3)).toBeUndefined();
      }),
    );

    it(
      'putCheckpointIfPending writes over a PENDING checkpoint only: a finished one stays finished',
      run(async ({ checkpoints }) => {
        expect(await checkpoints.putCheckpointIfPending(checkpoint(1))).toBe(false); // none stored
        expect(await checkpoints.getCheckpoint(1)).toBeUndefined();
        await checkpoints.putCheckpoint(checkpoint(1));
        const withToken = { ...checkpoint(1), taskToken: 'token-1' } as CheckpointRecord;
        expect(await checkpoints.putCheckpointIfPending(withToken)).toBe(true);
        expect(await checkpoints.getCheckpoint(1)).toEqual(withToken);
        const done = checkpoint(1, { status: 'COMPLETED', finishedAt: 9 });
        await checkpoints.putCheckpoint(done);
        expect(await checkpoints.putCheckpointIfPending(withToken)).toBe(false);
        expect(await checkpoints.getCheckpoint(1)).toEqual(done);
      }),
    );

    it(
      'listCheckpoints lists every checkpoint once, ascending by id (numerically)',
      run(async ({ checkpoints }) => {
        expect(await checkpoints.listCheckpoints()).toEqual([]);
        for (const id of [3, 10, 1, 2, 100, 9]) await checkpoints.putCheckpoint(checkpoint(id));
        await checkpoints.putCheckpoint(checkpoint(3, { status: 'COMPLETED', finishedAt: 7 }));
        const list = await checkpoints.listCheckpoints();
        expect(list.map((c) => c.id)).toEqual([1, 2, 3, 9, 10, 100]);
        expect(list[2]).toEqual(checkpoint(3, { status: 'COMPLETED', finishedAt: 7 }));
      }),
    );
  });

  describe('acks', () => {
    it(
      'listAcks sees exactly the acks committed by StateStore.commitStep for that checkpoint',
      run(async (family) => {
        await startJob(family.checkpoints);
        await family.checkpoints.putCheckpoint(checkpoint(1));
        await family.checkpoints.putCheckpoint(checkpoint(2));
        expect(await family.checkpoints.listAcks(1)).toEqual([]);
        const src = await new InstanceDriver(family.stateStore, 'src', 0).init();
        const op0 = await new InstanceDriver(family.stateStore, 'op', 0).init();
        const op1 = await new InstanceDriver(family.stateStore, 'op', 1).init();
        const srcAck = ackOf(1, src.instance, 1, { sourceOffset: 42, alignmentMs: 0 });
        await src.commit({ acks: [srcAck] });
        const op1Ack = ackOf(1, op1.instance, 1, { unaligned: true, channelStateRecords: 4 });
        // An unaligned barrier inside one step can ack two checkpoints at once.
        await op1.commit({ acks: [op1Ack, ackOf(2, op1.instance)] });
        await op0.commit({ acks: [ackOf(1, op0.instance)] });
        expect(byInstance(await family.checkpoints.listAcks(1))).toEqual([ackOf(1, op0.instance), op1Ack, srcAck]);
        expect(await family.checkpoints.listAcks(2)).toEqual([ackOf(2, op1.instance)]);
        expect(await family.checkpoints.listAcks(3)).toEqual([]);
      }),
    );

    it(
      'a checkpoint put as COMPLETED or ABORTED drops its acks (unless the store lets acks expire); other checkpoints keep theirs',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, 'op', 0).init();
        const e = await new InstanceDriver(family.stateStore, 'op', 1).init();
        for (const id of [1, 2, 3]) await family.checkpoints.putCheckpoint(checkpoint(id));
        await d.commit({ acks: [ackOf(1, d.instance), ackOf(2, d.instance)] });
        await e.commit({ acks: [ackOf(1, e.instance), ackOf(2, e.instance), ackOf(3, e.instance)] });
        // Still PENDING: a re-put (barriersInjected) keeps the acks.
        await family.checkpoints.putCheckpoint(checkpoint(2, { barriersInjected: true }));
        expect(await family.checkpoints.listAcks(2)).toHaveLength(2);

        await family.checkpoints.putCheckpoint(checkpoint(1, { status: 'COMPLETED', finishedAt: 9 }));
        await family.checkpoints.putCheckpoint(checkpoint(2, { status: 'ABORTED', finishedAt: 9, abortReason: 'timeout' }));
        // DynamoDB: a finished checkpoint's acks wait for their TTL (no one reads them: the record holds their summary).
        const expire = impl.capabilities.acksExpire === true;
        expect(byInstance(await family.checkpoints.listAcks(1))).toEqual(expire ? [ackOf(1, d.instance), ackOf(1, e.instance)] : []);
        expect(byInstance(await family.checkpoints.listAcks(2))).toEqual(expire ? [ackOf(2, d.instance), ackOf(2, e.instance)] : []);
        expect(await family.checkpoints.listAcks(3)).toEqual([ackOf(3, e.instance)]);
        expect((await family.checkpoints.getCheckpoint(1))?.status).toBe('COMPLETED');
      }),
    );
  });

  describe('retention', () => {
    it(
      'forgetBelow(id) deletes the records below id and the acks under them; the rest stays as it was',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, 'op', 0).init();
        for (const id of [1, 2, 3, 4]) await family.checkpoints.putCheckpoint(checkpoint(id, { status: 'COMPLETED', finishedAt: 9 }));
        await family.checkpoints.putCheckpoint(checkpoint(5));
        // Acks that arrived after their checkpoint finished (checkpoints 2 and 3), and a pending one's.
        await d.commit({ acks: [ackOf(2, d.instance), ackOf(3, d.instance), ackOf(5, d.instance)] });
        expect(await family.checkpoints.listAcks(2)).toEqual([ackOf(2, d.instance)]);

        await family.checkpoints.forgetBelow(3);
        expect((await family.checkpoints.listCheckpoints()).map((c) => c.id)).toEqual([3, 4, 5]);
        expect(await family.checkpoints.getCheckpoint(1)).toBeUndefined();
        expect(await family.checkpoints.getCheckpoint(2)).toBeUndefined();
        expect(await family.checkpoints.listAcks(2)).toEqual([]);
        expect(await family.checkpoints.listAcks(3)).toEqual([ackOf(3, d.instance)]);
        expect(await family.checkpoints.listAcks(5)).toEqual([ackOf(5, d.instance)]);
        expect(await family.checkpoints.getCheckpoint(4)).toEqual(checkpoint(4, { status: 'COMPLETED', finishedAt: 9 }));

        // Idempotent; 0 forgets nothing.
        await family.checkpoints.forgetBelow(3);
        await family.checkpoints.forgetBelow(0);
        expect((await family.checkpoints.listCheckpoints()).map((c) => c.id)).toEqual([3, 4, 5]);
        await family.checkpoints.forgetBelow(5);
        expect((await family.checkpoints.listCheckpoints()).map((c) => c.id)).toEqual([5]);
        expect(await family.checkpoints.listAcks(3)).toEqual([]);
        expect(await family.checkpoints.listAcks(5)).toEqual([ackOf(5, d.instance)]);
      }),
    );
  });

  describeWhen(impl.capabilities.reopen)('durability', () => {
    itWhen(impl.capabilities.reopen)(
      'job, checkpoints and acks survive a reopen; the job version condition still holds',
      run(async (first, reopen) => {
        const job = await startJob(first.checkpoints);
        await first.checkpoints.putCheckpoint(checkpoint(2));
        await first.checkpoints.putCheckpoint(checkpoint(1, { status: 'COMPLETED', finishedAt: 3, sourceOffsets: { 'src#0': 5 } }));
        const d = await new InstanceDriver(first.stateStore, 'op').init();
        await d.commit({ acks: [ackOf(2, d.instance)] });

        const family = await reopen();
        expect(await family.checkpoints.getJob()).toEqual(job);
        expect(await family.checkpoints.listCheckpoints()).toEqual([checkpoint(1, { status: 'COMPLETED', finishedAt: 3, sourceOffsets: { 'src#0': 5 } }), checkpoint(2)]);
        expect(await family.checkpoints.listAcks(2)).toEqual([ackOf(2, d.instance)]);
        expect(await rejection(family.checkpoints.putJob({ ...job, version: 1 }, undefined))).toBeInstanceOf(ConcurrentStepError);
        await family.checkpoints.putJob({ ...job, version: 1 }, 0);
        expect((await family.checkpoints.getJob())?.version).toBe(1);
      }),
    );
  });
});
