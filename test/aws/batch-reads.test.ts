/** BatchGetItem in calls of 100 keys, retrying UnprocessedKeys; SDK retries on throttling. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import type { S3BlobStore } from '../../shared/aws/index.js';
import { DynamoCheckpointStore, DynamoIo, DynamoStateStore, RequestCounter } from '../../shared/aws/index.js';
import { Keys } from '../../shared/aws/adapters/table-layout.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { OP, cloudEndpoint, credentials, freshStores, interceptingHandler } from './helpers.js';

const refs = Array.from({ length: 250 }, (_, i) => ({ keyGroup: i % 16, key: `key-${i}` }));

function storesWith(
  table: string,
  handler: ReturnType<typeof interceptingHandler>,
  counter: RequestCounter,
  blobs: S3BlobStore,
): { state: DynamoStateStore; checkpoints: DynamoCheckpointStore; dynamo: DynamoDBClient } {
  const dynamo = new DynamoDBClient({ endpoint: cloudEndpoint(), region: 'us-east-1', credentials, maxAttempts: 8, retryMode: 'standard', requestHandler: handler as never });
  counter.attach(dynamo);
  const io = new DynamoIo({ doc: DynamoDBDocumentClient.from(dynamo), table, blobs, retryBaseMs: 5 });
  return { state: new DynamoStateStore(io), checkpoints: new DynamoCheckpointStore(io), dynamo };
}

describe('batched reads and retries', () => {
  it('getItems of 250 keys: 3 BatchGetItem calls, plus one per response that left keys unprocessed; every item comes back', async () => {
    const s = await freshStores();
    try {
      await s.io.batchWrite(refs.map((r, i) => ({ put: { ...Keys.item(OP, r.keyGroup, r.key), d: JSON.stringify({ value: { i }, epoch: 1 }), e: 1 } })));
      // The emulator answers the first two BatchGetItem calls with 30 of their keys unprocessed.
      const handler = interceptingHandler((operation, call) =>
        operation === 'BatchGetItem' && call <= 2
          ? (json) => {
              const responses = json.Responses as Record<string, Array<Record<string, unknown>>>;
              const [table, items] = Object.entries(responses)[0] as [string, Array<Record<string, unknown>>];
              const kept = items.slice(30);
              const unprocessed = items.slice(0, 30).map((item) => ({ pk: item.pk, sk: item.sk }));
              return { ...json, Responses: { [table]: kept }, UnprocessedKeys: { [table]: { Keys: unprocessed, ConsistentRead: true } } };
            }
          : undefined,
      );
      const counter = new RequestCounter();
      const { state, dynamo } = storesWith(s.table, handler, counter, s.blobs);
      const items = await state.getItems(OP, refs);
      expect(items.size).toBe(250);
      expect(items.get('3|key-3')).toEqual({ value: { i: 3 }, epoch: 1 });
      expect(counter.calls()).toEqual({ 'DynamoDB.BatchGetItem': 5 });
      dynamo.destroy();
    } finally {
      await s.done();
    }
  });

  it('throttling (ProvisionedThroughputExceededException, ThrottlingException) is retried by the SDK with backoff; every attempt is counted', async () => {
    const s = await freshStores();
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      const throttle = (type: string) => ({ status: 400, body: { __type: `com.amazonaws.dynamodb.v20120810#${type}`, message: 'slow down' } });
      const handler = interceptingHandler((operation, call) =>
        operation === 'GetItem' && call === 1 ? throttle('ProvisionedThroughputExceededException') : operation === 'GetItem' && call === 2 ? throttle('ThrottlingException') : undefined,
      );
      const counter = new RequestCounter();
      const { checkpoints, dynamo } = storesWith(s.table, handler, counter, s.blobs);
      expect((await checkpoints.getJob())?.generation).toBe(1);
      expect(counter.snapshot()).toEqual({ 'DynamoDB.GetItem': 3 });
      expect(counter.calls()).toEqual({ 'DynamoDB.GetItem': 1 });
      dynamo.destroy();
    } finally {
      await s.done();
    }
  });
});
