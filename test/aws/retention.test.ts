/**
 * Retention on DynamoDB as stored (the contract suites check the behaviour, this the items): dedup
 * items carry the table's TTL attribute at the end of their window, the table has TTL enabled on
 * it, truncated log entries and forgotten checkpoint records are deleted items.
 */
import { DescribeTimeToLiveCommand } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import { DynamoSinkStore, DynamoSourceLog } from '../../shared/aws/index.js';
import { Keys, TTL_ATTRIBUTE } from '../../shared/aws/adapters/table-layout.js';
import { ACK_RETENTION_MS, DEFAULT_DEDUP_WINDOW_MS } from '../../shared/core/retention.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { initialInstanceRecord, snapshotStateOf } from '../../shared/core/instance/step.js';
import { INSTANCE, commitOf, freshStores } from './helpers.js';

describe('retention on DynamoDB', () => {
  it('the job table has TTL enabled on the `exp` attribute (as infra/cairn-job.ts deploys it)', async () => {
    const s = await freshStores();
    try {
      const { TimeToLiveDescription } = await s.clients.dynamo.send(new DescribeTimeToLiveCommand({ TableName: s.table }));
      expect(TimeToLiveDescription).toMatchObject({ AttributeName: 'exp' });
      expect(['ENABLED', 'ENABLING']).toContain(TimeToLiveDescription?.TimeToLiveStatus);
      expect(TTL_ATTRIBUTE).toBe('exp');
    } finally {
      await s.done();
    }
  });

  it('a dedup item expires (TTL, epoch seconds rounded up) at the end of its dedup window; log segments carry no TTL', async () => {
    const s = await freshStores();
    try {
      // Real time (an emulator deleting by TTL must not delete what the test reads), at .400 s.
      const t0 = Math.floor(Date.now() / 1000) * 1000 + 400;
      let now = t0;
      const log = new DynamoSourceLog(s.io, { clock: { now: () => now } });
      await log.append(0, [{ id: 'a', event: 1 }]);
      now += 5_000;
      const short = new DynamoSourceLog(s.io, { clock: { now: () => now }, dedupWindowMs: 60_000 });
      await short.append(0, [{ id: 'b', event: 2 }]);
      // An append indexes the one before it: a's window runs from a's append, not from its indexing.
      expect(await s.io.get(Keys.logDedup(0, 'a'))).toMatchObject({ o: 0, exp: Math.ceil((t0 + DEFAULT_DEDUP_WINDOW_MS) / 1000) });
      now += 1_000;
      await short.append(0, [{ id: 'c', event: 3 }]);
      expect(await s.io.get(Keys.logDedup(0, 'b'))).toMatchObject({ o: 1, exp: (t0 - 400) / 1000 + 66 });
      expect((await s.io.get(Keys.logSegment(0, 0)))?.[TTL_ATTRIBUTE]).toBeUndefined();
      // Past its TTL (DynamoDB Local never deletes it): absent for append, which appends it again; the next append indexes it anew.
      now += 60_000;
      expect(await short.append(0, [{ id: 'b', event: 4 }])).toEqual({ appended: 1, duplicates: 0, head: 4 });
      await short.append(0, [{ id: 'd', event: 5 }]);
      expect(await s.io.get(Keys.logDedup(0, 'b'))).toMatchObject({ o: 3, exp: (t0 - 400) / 1000 + 127 });
    } finally {
      await s.done();
    }
  });

  it('the log is one segment item per appended chunk; truncate deletes the segments wholly below the cut (a straddling one stays) and records where the kept log starts; forgetBelow deletes records, not ack items (their TTL does)', async () => {
    const s = await freshStores();
    try {
      const batch = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ id: `e${from + i}`, event: from + i }));
      for (const [from, n] of [
        [0, 3],
        [3, 2],
        [5, 3],
      ] as const)
        await s.sourceLog.append(0, batch(from, n));
      const segments = async () => (await s.io.queryRange(Keys.logPk(0), 'E#', 'E#\uffff')).map((r) => ({ sk: r.sk, f: r.f, es: r.es }));
      expect(await segments()).toEqual([
        { sk: Keys.logSegment(0, 2).sk, f: 0, es: ['0', '1', '2'] },
        { sk: Keys.logSegment(0, 4).sk, f: 3, es: ['3', '4'] },
        { sk: Keys.logSegment(0, 7).sk, f: 5, es: ['5', '6', '7'] },
      ]);
      // Cut 4 falls inside the second segment: only the first goes; offsets 3 and 4 stay readable.
      await s.sourceLog.truncate(0, 4);
      expect((await segments()).map((r) => r.sk)).toEqual([Keys.logSegment(0, 4).sk, Keys.logSegment(0, 7).sk]);
      expect(await s.io.get(Keys.logTruncation(0))).toMatchObject({ low: 3 });
      expect(await s.sourceLog.read(0, 3, 2)).toEqual([
        { offset: 3, event: 3 },
        { offset: 4, event: 4 },
      ]);
      await expect(s.sourceLog.read(0, 2, 2)).rejects.toMatchObject({ name: 'SourceLogTruncatedError', from: 2, retainedFrom: 3 });
      await s.sourceLog.truncate(0, 6);
      expect((await segments()).map((r) => r.sk)).toEqual([Keys.logSegment(0, 7).sk]);
      expect(await s.io.get(Keys.logTruncation(0))).toMatchObject({ low: 5 });
      // Dedup items stay (until their TTL).
      expect(await s.io.get(Keys.logDedup(0, 'e0'))).toMatchObject({ o: 0 });

      for (const id of [1, 2, 3]) await s.checkpoints.putCheckpoint({ id, generation: 1, status: 'COMPLETED', trigger: 'time', triggeredAt: id, barriersInjected: true });
      // The snapshots and acks under a forgotten record go with it; a kept record keeps its own.
      await s.io.batchWrite([1, 2, 3].flatMap((id) => [{ put: { ...Keys.ack(id, 'op#0'), d: '{}' } }, { put: { ...Keys.lateAck(id, 'op#1'), d: '{}' } }]));
      await s.checkpoints.forgetBelow(3);
      expect((await s.io.queryPartition(Keys.checkpointPk)).map((r) => r.sk)).toEqual([Keys.checkpoint(3).sk]);
      for (const id of [1, 2]) expect(await s.io.queryPartition(Keys.ackPk(id))).toEqual([]);
      expect((await s.io.queryPartition(Keys.ackPk(3))).map((r) => r.sk)).toEqual(['op#0', 'op#1~ack']);
    } finally {
      await s.done();
    }
  });
  it('a snapshot and the ack of the same step are one item without TTL; a late ack expires two days after the step wrote it (TTL, seconds rounded up)', async () => {
    const s = await freshStores();
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
      const at = Math.floor(Date.now() / 1000) * 1000 + 400;
      const ack = { checkpointId: 4, instance: INSTANCE, generation: 1, alignmentMs: 0, unaligned: false, channelStateRecords: 0, stateWrites: 0, at };
      await s.stateStore.commitStep(commitOf(0, [], { acks: [ack] }));
      expect(ACK_RETENTION_MS).toBe(2 * 86_400_000);
      expect(await s.io.get(Keys.ack(4, INSTANCE))).toBeUndefined();
      expect((await s.io.get(Keys.lateAck(4, INSTANCE)))?.[TTL_ATTRIBUTE]).toBe((at - 400) / 1000 + 2 * 86_400 + 1);
      expect(await s.checkpoints.listAcks(4)).toEqual([ack]);

      const state = snapshotStateOf(initialInstanceRecord(INSTANCE, 1));
      const ack5 = { ...ack, checkpointId: 5 };
      await s.stateStore.commitStep(commitOf(1, [], { acks: [ack5], snapshots: [{ checkpointId: 5, state }] }));
      const item = await s.io.get(Keys.ack(5, INSTANCE));
      expect(item?.[TTL_ATTRIBUTE]).toBeUndefined();
      expect(JSON.parse(item?.d as string)).toEqual({ snapshot: state, ack: ack5 });
      expect(await s.io.get(Keys.lateAck(5, INSTANCE))).toBeUndefined();
      expect(await s.checkpoints.listAcks(5)).toEqual([ack5]);
      expect(await s.stateStore.loadSnapshot(INSTANCE, 5)).toEqual({ state, channelState: [] });
    } finally {
      await s.done();
    }
  });

  it('with outputRetentionMs a published sink batch expires that long after its publication (TTL, seconds rounded up); without, it carries no TTL', async () => {
    const s = await freshStores();
    try {
      const t0 = Math.floor(Date.now() / 1000) * 1000 + 400;
      const retained = new DynamoSinkStore(s.io, s.table, { outputRetentionMs: 86_400_000, clock: { now: () => t0 } });
      await retained.publish('out', 'b1', [{ n: 1 }]);
      await s.sinks.publish('out', 'b2', [{ n: 2 }]);
      expect((await s.io.get(Keys.sinkBatch('out', 'b1')))?.[TTL_ATTRIBUTE]).toBe((t0 - 400) / 1000 + 86_401);
      expect((await s.io.get(Keys.sinkBatch('out', 'b2')))?.[TTL_ATTRIBUTE]).toBeUndefined();
      expect(await retained.read('out')).toEqual([{ n: 1 }, { n: 2 }]);
    } finally {
      await s.done();
    }
  });
});
