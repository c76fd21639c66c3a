import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoCheckpointStore } from './adapters/dynamo-checkpoint-store.js';
import { DynamoIo } from './adapters/dynamo-io.js';
import { DynamoDeadLetterStore, DynamoSinkStore } from './adapters/dynamo-sink-store.js';
import { DynamoSourceLog } from './adapters/dynamo-source-log.js';
import { DynamoStateStore } from './adapters/dynamo-state-store.js';
import { ensureBucket, ensureJobTable } from './adapters/provision.js';
import type { RequestCounter } from './adapters/request-counter.js';
import { S3BlobStore } from './adapters/s3-blob-store.js';
import { SqsFifoTransport } from './adapters/sqs-fifo-transport.js';

export { DynamoCheckpointStore } from './adapters/dynamo-checkpoint-store.js';
export { DynamoIo, DEFAULT_SPILL_THRESHOLD, MAX_INLINE_PAYLOAD_BYTES } from './adapters/dynamo-io.js';
export { DynamoDeadLetterStore, DynamoSinkStore } from './adapters/dynamo-sink-store.js';
export { DynamoSourceLog } from './adapters/dynamo-source-log.js';
export { DynamoStateStore } from './adapters/dynamo-state-store.js';
export { deleteBucket, deleteJobTable, ensureBucket, ensureFifoQueues, ensureJobTable } from './adapters/provision.js';
export { CoordinatorWaker, executionNameOf } from './adapters/coordinator-waker.js';
export { RequestCounter } from './adapters/request-counter.js';
export { S3BlobStore } from './adapters/s3-blob-store.js';
export { SqsFifoTransport, sqsId } from './adapters/sqs-fifo-transport.js';
export { DEFAULT_INGRESS_MESSAGE_BYTES, IngressProducer, IngressSendError, sendIngressMessages, type IngressMessageToSend, type IngressProducerProps } from './ingress-producer.js';
export { INGRESS_BATCH_KEY, MAX_BATCH_EVENTS, packIngressBatches, type PackedBatch } from '../core/ingress-batch.js';

export interface AwsStoresOptions {
  readonly tableName: string;
  readonly bucket: string;
  /** AWS_ENDPOINT_URL-style single endpoint (local cloud, LocalStack); undefined = real AWS. */
  readonly endpoint?: string;
  readonly region?: string;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Table of the idempotent sink (default: the job table). */
  readonly sinkTable?: string;
  /** Queue name -> FIFO queue URL; with it, `transport` is an SqsFifoTransport. */
  readonly queueUrls?: Readonly<Record<string, string>>;
  readonly spillThresholdBytes?: number;
  readonly changeShards?: number;
  /** How long an ingest id stays deduplicated (default: shared/core/retention.ts DEFAULT_DEDUP_WINDOW_MS). */
  readonly dedupWindowMs?: number;
  /** Published sink batches expire (DynamoDB TTL) this long after publication (DynamoSinkStore). @default kept */
  readonly outputRetentionMs?: number;
  /** SDK attempts per call (standard retry mode: exponential backoff with jitter on throttling). */
  readonly maxAttempts?: number;
  /** Counts every AWS request of these clients. */
  readonly counter?: RequestCounter;
  /** Creates the table and bucket if missing (tests, local cloud). */
  readonly provision?: boolean;
}

export interface AwsStores {
  readonly stateStore: DynamoStateStore;
  readonly checkpoints: DynamoCheckpointStore;
  readonly sourceLog: DynamoSourceLog;
  readonly sinks: DynamoSinkStore;
  readonly deadLetters: DynamoDeadLetterStore;
  readonly blobs: S3BlobStore;
  readonly transport: SqsFifoTransport | undefined;
  readonly io: DynamoIo;
  readonly clients: { readonly dynamo: DynamoDBClient; readonly doc: DynamoDBDocumentClient; readonly s3: S3Client; readonly sqs: SQSClient };
  destroy(): void;
}

/** The AWS implementations of the engine's ports, on one job table + one bucket. */
export async function createAwsStores(options: AwsStoresOptions): Promise<AwsStores> {
  const base = {
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
    ...(options.credentials ? { credentials: options.credentials } : {}),
    maxAttempts: options.maxAttempts ?? 8,
    retryMode: 'standard',
  };
  const dynamo = new DynamoDBClient(base);
  const s3 = new S3Client({ ...base, forcePathStyle: options.endpoint !== undefined });
  const sqs = new SQSClient(base);
  if (options.counter) for (const client of [dynamo, s3, sqs]) options.counter.attach(client);
  const doc = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });
  if (options.provision) {
    await ensureJobTable(dynamo, options.tableName);
    if (options.sinkTable && options.sinkTable !== options.tableName) await ensureJobTable(dynamo, options.sinkTable);
    await ensureBucket(s3, options.bucket);
  }
  const blobs = new S3BlobStore(s3, options.bucket);
  const io = new DynamoIo({ doc, table: options.tableName, blobs, ...(options.spillThresholdBytes ? { spillThresholdBytes: options.spillThresholdBytes } : {}) });
  return {
    stateStore: new DynamoStateStore(io, { ...(options.sinkTable ? { sinkTable: options.sinkTable } : {}), ...(options.changeShards ? { changeShards: options.changeShards } : {}) }),
    checkpoints: new DynamoCheckpointStore(io),
    sourceLog: new DynamoSourceLog(io, options.dedupWindowMs === undefined ? {} : { dedupWindowMs: options.dedupWindowMs }),
    sinks: new DynamoSinkStore(io, options.sinkTable ?? options.tableName, options.outputRetentionMs === undefined ? {} : { outputRetentionMs: options.outputRetentionMs }),
    deadLetters: new DynamoDeadLetterStore(io),
    blobs,
    transport: options.queueUrls ? new SqsFifoTransport({ client: sqs, queueUrls: options.queueUrls }) : undefined,
    io,
    clients: { dynamo, doc, s3, sqs },
    destroy: () => {
      dynamo.destroy();
      s3.destroy();
      sqs.destroy();
    },
  };
}
