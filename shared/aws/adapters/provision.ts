import { CreateTableCommand, DeleteTableCommand, DescribeTableCommand, DescribeTimeToLiveCommand, UpdateTimeToLiveCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { TTL_ATTRIBUTE } from './table-layout.js';

/**
 * Creates what the adapters need, for tests and the local-cloud run (the deployed stack
 * creates them with CDK). All idempotent.
 */

/** The job table: `pk` + `sk` strings, on-demand billing, TTL on `exp`. Waits until ACTIVE. */
export async function ensureJobTable(client: DynamoDBClient, tableName: string, options: { stream?: boolean } = {}): Promise<void> {
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        // As deployed: the ack listener consumes the table's key-only stream.
        ...(options.stream ? { StreamSpecification: { StreamEnabled: true, StreamViewType: 'KEYS_ONLY' } } : {}),
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
      }),
    );
  } catch (error) {
    if ((error as Error).name !== 'ResourceInUseException') throw error;
  }
  for (let i = 0; ; i++) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    if (Table?.TableStatus === 'ACTIVE') break;
    if (i >= 600) throw new Error(`table ${tableName} did not become ACTIVE`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // As deployed: DynamoDB deletes items past their TTL attribute (retention: dedup items) for free.
  const { TimeToLiveDescription } = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
  if (TimeToLiveDescription?.TimeToLiveStatus !== 'ENABLED' && TimeToLiveDescription?.TimeToLiveStatus !== 'ENABLING') {
    await client.send(new UpdateTimeToLiveCommand({ TableName: tableName, TimeToLiveSpecification: { Enabled: true, AttributeName: TTL_ATTRIBUTE } }));
  }
}

export async function deleteJobTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(new DeleteTableCommand({ TableName: tableName }));
  } catch (error) {
    if ((error as Error).name !== 'ResourceNotFoundException') throw error;
  }
}

export async function ensureBucket(s3: S3Client, bucket: string): Promise<void> {
  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (error) {
    const name = (error as Error).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw error;
  }
}

/** Empties the bucket (every object version: a versioned bucket keeps them) and deletes it. */
export async function deleteBucket(s3: S3Client, bucket: string): Promise<void> {
  try {
    for (;;) {
      const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
      const objects = [...(listed.Versions ?? []), ...(listed.DeleteMarkers ?? [])].flatMap((v) => (v.Key ? [{ Key: v.Key, ...(v.VersionId ? { VersionId: v.VersionId } : {}) }] : []));
      if (objects.length === 0) break;
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }));
      if (!listed.IsTruncated) break;
    }
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  } catch (error) {
    if ((error as Error).name !== 'NoSuchBucket') throw error;
  }
}

/** FIFO queues named `<prefix><name>.fifo`; returns name -> URL for SqsFifoTransport. */
export async function ensureFifoQueues(sqs: SQSClient, names: readonly string[], prefix = ''): Promise<Record<string, string>> {
  const urls: Record<string, string> = {};
  for (const name of names) {
    const queueName = `${prefix}${name}`.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 75) + '.fifo';
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: queueName, Attributes: { FifoQueue: 'true', ContentBasedDeduplication: 'false' } }));
    if (!QueueUrl) throw new Error(`CreateQueue ${queueName} returned no URL`);
    urls[name] = QueueUrl;
  }
  return urls;
}
