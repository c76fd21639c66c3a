import { randomBytes } from 'node:crypto';
/** The request counter's exact counts for a known sequence of adapter calls; requests per step. */
import { describe, expect, it } from 'vitest';
import { RequestCounter, SqsFifoTransport, ensureFifoQueues } from '../../shared/aws/index.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { INSTANCE, OP, commitOf, freshStores, unique } from './helpers.js';

describe('RequestCounter', () => {
  it('with dynamoCapacity, bills read and write request units by AWS rules (transactions count double)', async () => {
    const counter = new RequestCounter({ dynamoCapacity: true });
    const s = await freshStores({ counter });
    try {
      counter.reset();
      await s.checkpoints.putJob(initialJob(1), undefined);
      expect(counter.capacity).toEqual({ read: 0, write: 4, byItem: { JOB: { read: 0, write: 4 } } }); // a transaction of two small items, the job record and its generation fence: 2 units each
      counter.reset();
      await s.checkpoints.getJob();
      expect(counter.capacity).toEqual({ read: 1, write: 0, byItem: { JOB: { read: 1, write: 0 } } }); // strongly consistent read of an item under 4 KB
      counter.reset();
      const job = initialJob(1);
      await s.checkpoints.putJob({ ...job, version: job.version + 1 }, job.version);
      expect(counter.capacity).toEqual({ read: 0, write: 1, byItem: { JOB: { read: 0, write: 1 } } }); // same generation: one plain write of an item under 1 KB
      counter.reset();
      await s.sourceLog.append(0, [{ id: 'a', event: randomBytes(1100).toString('base64') }]);
      // One transaction of the head (under 1 KB) and the segment (about 1.5 KB, incompressible): transactional writes cost 2 units per item-KB.
      expect(counter.capacity.write).toBe(2 + 4);
      expect(counter.capacity.write % 2).toBe(0);
    } finally {
      await s.done();
    }
  });

  it('counts every request by service and operation for a known sequence of calls', async () => {
    const counter = new RequestCounter();
    const s = await freshStores({ counter });
    try {
      const urls = await ensureFifoQueues(s.clients.sqs, ['op'], unique('rc'));
      counter.reset();
      await s.checkpoints.getJob(); // GetItem
      await s.checkpoints.putJob(initialJob(1), undefined); // TransactWriteItems (job record + generation fence)
      await s.sourceLog.append(0, [
        { id: 'a', event: 1 },
        { id: 'b', event: 2 },
      ]); // BatchGetItem (dedup ids) + GetItem (head) + TransactWriteItems
      await s.sourceLog.read(0, 0, 10); // Query
      await s.blobs.put('x', new Uint8Array([1, 2, 3])); // PutObject
      await s.blobs.get('x'); // GetObject
      await new SqsFifoTransport({ client: s.clients.sqs, queueUrls: urls }).send([{ queue: 'op', groupId: 'op#0', dedupId: 'd1', body: { type: 'tick', gen: 1, to: 'op#0' } }]); // SendMessageBatch
      expect(counter.snapshot()).toEqual({
        'DynamoDB.BatchGetItem': 1,
        'DynamoDB.GetItem': 2,
        'DynamoDB.Query': 1,
        'DynamoDB.TransactWriteItems': 2,
        'S3.GetObject': 1,
        'S3.PutObject': 1,
        'SQS.SendMessageBatch': 1,
      });
      expect(counter.count('DynamoDB')).toBe(6);
      expect(counter.total()).toBe(9);
    } finally {
      await s.done();
    }
  });

  it('a typical step (load, read 20 keys, commit 20 writes with a snapshot and an ack) costs 3 DynamoDB requests', async () => {
    const counter = new RequestCounter();
    const s = await freshStores({ counter });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
      const refs = Array.from({ length: 20 }, (_, i) => ({ keyGroup: i, key: `k${i}` }));
      await s.stateStore.commitStep(
        commitOf(
          0,
          refs.map((r) => ({ ...r, value: { n: 1 }, epoch: 1, previous: undefined })),
        ),
      );
      counter.reset();
      // Epoch 2: every key's first write in the epoch -> 20 items + one change record.
      await s.stateStore.loadInstance(INSTANCE);
      await s.stateStore.getItems(OP, refs);
      await s.stateStore.commitStep(
        commitOf(
          1,
          refs.map((r) => ({ ...r, value: { n: 2 }, epoch: 2, previous: { value: { n: 1 }, epoch: 1 } })),
          {
            snapshots: [{ checkpointId: 2, state: initialInstanceRecord(INSTANCE, 1) }],
            acks: [{ checkpointId: 2, instance: INSTANCE, generation: 1, alignmentMs: 0, unaligned: false, channelStateRecords: 0, stateWrites: 20, at: 1 }],
          },
        ),
      );
      expect(counter.calls()).toEqual({ 'DynamoDB.BatchGetItem': 1, 'DynamoDB.GetItem': 1, 'DynamoDB.TransactWriteItems': 1 });
    } finally {
      await s.done();
    }
  });
});

describe('concurrent steps of many instances', () => {
  it('40 instances commit at once: all succeed (each commit checks the one generation fence; conflicts are retried)', async () => {
    const counter = new RequestCounter();
    const s = await freshStores({ counter });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      const ids = Array.from({ length: 40 }, (_, i) => `op#${i}`);
      await Promise.all(ids.map((id) => s.stateStore.putInstance(initialInstanceRecord(id, 1))));
      counter.reset();
      await Promise.all(
        ids.map((id, i) =>
          s.stateStore.commitStep({
            ...commitOf(0, [{ keyGroup: i, key: `k${i}`, value: { n: i }, epoch: 1, previous: undefined }]),
            instance: id,
            record: { ...initialInstanceRecord(id, 1), version: 1 },
          }),
        ),
      );
      const transactions = counter.count('DynamoDB', 'TransactWriteItems');
      console.log(`[aws] 40 concurrent commits took ${transactions} TransactWriteItems requests (more than 40 = retried transaction conflicts)`);
      expect(transactions).toBeGreaterThanOrEqual(40);
      expect(await s.stateStore.countKeys(OP)).toBe(40);
    } finally {
      await s.done();
    }
  });
});
