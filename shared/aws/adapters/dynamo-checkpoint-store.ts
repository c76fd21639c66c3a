import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { ConcurrentStepError } from '../../core/errors.js';
import type { CheckpointAck, CheckpointRecord, CheckpointStore, JobRecord } from '../../core/ports.js';
import type { DynamoIo } from './dynamo-io.js';
import { Keys } from './table-layout.js';

/**
 * CheckpointStore on the job table: the job record (whose `gen` attribute every step commit
 * checks), one item per checkpoint in partition `CP` (sorted by id), and the acks that step
 * commits write under `A#<checkpoint>`.
 */
export class DynamoCheckpointStore implements CheckpointStore {
  constructor(private readonly io: DynamoIo) {}

  async getJob(): Promise<JobRecord | undefined> {
    const raw = await this.io.get(Keys.job());
    return raw?.d === undefined ? undefined : this.io.decode<JobRecord>(raw.d as string);
  }

  async putJob(job: JobRecord, expectedVersion: number | undefined): Promise<void> {
    const d = await this.io.encode(job);
    try {
      await this.io.retrying(() =>
        this.io.doc.send(
          new PutCommand({
            TableName: this.io.table,
            Item: { ...Keys.job(), d, ver: job.version, gen: job.generation },
            ConditionExpression: expectedVersion === undefined ? 'attribute_not_exists(pk)' : '#ver = :ev',
            ...(expectedVersion === undefined ? {} : { ExpressionAttributeNames: { '#ver': 'ver' }, ExpressionAttributeValues: { ':ev': expectedVersion } }),
          }),
        ),
      );
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
      await this.io.dropBlob(d);
      const current = await this.io.get(Keys.job());
      throw new ConcurrentStepError('job', expectedVersion ?? -1, (current?.ver as number | undefined) ?? -1);
    }
  }

  async getCheckpoint(id: number): Promise<CheckpointRecord | undefined> {
    const raw = await this.io.get(Keys.checkpoint(id));
    return raw?.d === undefined ? undefined : this.io.decode<CheckpointRecord>(raw.d as string);
  }

  async putCheckpoint(record: CheckpointRecord): Promise<void> {
    await this.io.batchWrite([{ put: { ...Keys.checkpoint(record.id), d: await this.io.encode(record) } }]);
    if (record.status !== 'PENDING') {
      // Acks of a finished checkpoint are folded into its record; drop them.
      const acks = await this.io.queryPartition(Keys.ackPk(record.id));
      await this.io.batchWrite(acks.map((a) => ({ delete: { pk: a.pk, sk: a.sk } })));
    }
  }

  async listCheckpoints(): Promise<CheckpointRecord[]> {
    const raws = await this.io.queryPartition(Keys.checkpointPk);
    const values = await Promise.all(raws.map((r) => this.io.decode<CheckpointRecord>(r.d as string)));
    return values.sort((a, b) => a.id - b.id);
  }

  async listAcks(checkpointId: number): Promise<CheckpointAck[]> {
    const raws = await this.io.queryPartition(Keys.ackPk(checkpointId));
    const values = await this.io.readValues<CheckpointAck>(raws);
    return values.filter((v): v is CheckpointAck => v !== undefined);
  }
}
