import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { ConcurrentStepError } from '../../core/errors.js';
import type { CheckpointAck, CheckpointRecord, CheckpointStore, JobRecord } from '../../core/ports.js';
import { cancellationReasons, mapLimit, type DynamoIo } from './dynamo-io.js';
import { Keys, pad, type CheckpointEntry } from './table-layout.js';

/** Checkpoints whose snapshots and acks forgetBelow deletes at once. */
const FORGET_CONCURRENCY = 8;

/**
 * CheckpointStore on the job table: the job record, its generation fence (the item every step
 * commit checks, see table-layout.ts), one item per checkpoint in partition `CP` (sorted by id),
 * and the snapshots and acks that step commits write under `A#<checkpoint>`.
 */
export class DynamoCheckpointStore implements CheckpointStore {
  /**
   * Version and generation of the job record as last read or written here. A put that expects
   * this version and keeps this generation leaves the fence as it is; any other put (a new
   * generation, or one this store has not seen) rewrites the fence in the same transaction.
   */
  private known: { version: number; generation: number } | undefined;

  constructor(private readonly io: DynamoIo) {}

  async getJob(): Promise<JobRecord | undefined> {
    const raw = await this.io.get(Keys.job());
    if (raw?.d === undefined) return undefined;
    this.known = { version: raw.ver as number, generation: raw.gen as number };
    return this.io.decode<JobRecord>(raw.d as string);
  }

  async putJob(job: JobRecord, expectedVersion: number | undefined): Promise<void> {
    const d = await this.io.encode(job);
    const put = {
      TableName: this.io.table,
      Item: { ...Keys.job(), d, ver: job.version, gen: job.generation },
      ConditionExpression: expectedVersion === undefined ? 'attribute_not_exists(pk)' : '#ver = :ev',
      ...(expectedVersion === undefined ? {} : { ExpressionAttributeNames: { '#ver': 'ver' }, ExpressionAttributeValues: { ':ev': expectedVersion } }),
    };
    const keepsFence = expectedVersion !== undefined && this.known?.version === expectedVersion && this.known.generation === job.generation;
    this.known = undefined;
    try {
      if (keepsFence) {
        await this.io.retrying(() => this.io.doc.send(new PutCommand(put)));
      } else {
        await this.io.transact([{ Put: put }, { Put: { TableName: this.io.table, Item: { ...Keys.generationFence(), gen: job.generation } } }]);
      }
    } catch (error) {
      const failedCondition = (error as Error).name === 'ConditionalCheckFailedException' || cancellationReasons(error)?.[0]?.Code === 'ConditionalCheckFailed';
      if (!failedCondition) throw error;
      await this.io.dropBlob(d);
      const current = await this.io.get(Keys.job());
      throw new ConcurrentStepError('job', expectedVersion ?? -1, (current?.ver as number | undefined) ?? -1);
    }
    this.known = { version: job.version, generation: job.generation };
  }

  async getCheckpoint(id: number): Promise<CheckpointRecord | undefined> {
    const raw = await this.io.get(Keys.checkpoint(id));
    return raw?.d === undefined ? undefined : this.io.decode<CheckpointRecord>(raw.d as string);
  }

  async putCheckpoint(record: CheckpointRecord): Promise<void> {
    // `st`: the status, for putCheckpointIfPending's condition (the record itself is encoded in `d`).
    await this.io.batchWrite([{ put: { ...Keys.checkpoint(record.id), d: await this.io.encode(record), st: record.status } }]);
  }

  async putCheckpointIfPending(record: CheckpointRecord): Promise<boolean> {
    const d = await this.io.encode(record);
    try {
      await this.io.retrying(() =>
        this.io.doc.send(
          new PutCommand({
            TableName: this.io.table,
            Item: { ...Keys.checkpoint(record.id), d, st: record.status },
            ConditionExpression: '#st = :pending',
            ExpressionAttributeNames: { '#st': 'st' },
            ExpressionAttributeValues: { ':pending': 'PENDING' },
          }),
        ),
      );
      return true;
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
      await this.io.dropBlob(d);
      return false;
    }
  }

  async listCheckpoints(): Promise<CheckpointRecord[]> {
    const raws = await this.io.queryPartition(Keys.checkpointPk);
    const values = await Promise.all(raws.map((r) => this.io.decode<CheckpointRecord>(r.d as string)));
    return values.sort((a, b) => a.id - b.id);
  }

  async forgetBelow(id: number): Promise<void> {
    if (id <= 0) return;
    // In steady state one record per completed checkpoint falls out of the history here, and
    // with it the instances' snapshots and acks under `A#<id>` (table-layout.ts): first those,
    // then the record, so a crash in between leaves a record the next run finds again.
    const records = await this.io.queryRange(Keys.checkpointPk, pad(0), pad(id - 1));
    await mapLimit(records, FORGET_CONCURRENCY, async (r) => {
      const entries = await this.io.query({
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': Keys.ackPk(Number(r.sk)) },
        ProjectionExpression: 'pk, sk, d',
        ConsistentRead: false,
      });
      await this.io.batchWrite(entries.map((e) => ({ delete: { pk: e.pk, sk: e.sk } })));
      await Promise.all(entries.map((e) => this.io.dropBlob(e.d)));
    });
    await this.io.batchWrite(records.map((r) => ({ delete: { pk: r.pk, sk: r.sk } })));
    await Promise.all(records.map((r) => this.io.dropBlob(r.d)));
  }

  async listAcks(checkpointId: number): Promise<CheckpointAck[]> {
    const raws = await this.io.queryPartition(Keys.ackPk(checkpointId));
    const values = await this.io.readValues<CheckpointEntry>(raws);
    return values.flatMap((v) => (v?.ack ? [v.ack] : []));
  }
}
