/**
 * The local runner's SQS event source plays the deployed ingress mapping's batching window
 * (MaximumBatchingWindowInSeconds): once messages arrive it keeps gathering until the batch is
 * full or the window has passed, instead of invoking with what one receive found.
 */
import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { expect, it } from 'vitest';
import { SqsEventSource } from '../../shared/aws/runner/index.js';
import { cloudEndpoint, credentials, region } from './helpers.js';

it('a batching window gathers the messages sent over it into one invocation; without one, each receive invokes', async () => {
  const sqs = new SQSClient({ endpoint: cloudEndpoint(), region, credentials });
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `cairn-window-${Date.now()}` }));
  if (!QueueUrl) throw new Error('no queue');
  const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }));
  const run = async (batchingWindowMs: number): Promise<number[]> => {
    const batches: number[] = [];
    const source = new SqsEventSource({
      sqs,
      name: 'ingress',
      queueUrl: QueueUrl,
      queueArn: Attributes?.QueueArn ?? '',
      region,
      batchSize: 100,
      concurrency: 1,
      visibilityTimeoutSeconds: 30,
      batchingWindowMs,
      handler: (event) => {
        batches.push(event.Records.length);
        return Promise.resolve({ batchItemFailures: [] });
      },
    });
    source.start();
    // 3 sends of 5 messages, 150 ms apart: well within a 3 s window.
    for (let i = 0; i < 3; i++) {
      await sqs.send(new SendMessageBatchCommand({ QueueUrl, Entries: Array.from({ length: 5 }, (_, j) => ({ Id: String(j), MessageBody: `m${i}-${j}` })) }));
      await new Promise((r) => setTimeout(r, 150));
    }
    // Progress, not wall time: wait until all 15 were handed over.
    while (batches.reduce((n, b) => n + b, 0) < 15) await new Promise((r) => setTimeout(r, 50));
    await source.stop();
    return batches;
  };
  try {
    expect(await run(3_000)).toEqual([15]);
    expect((await run(0)).length).toBeGreaterThan(1);
  } finally {
    await sqs.send(new DeleteQueueCommand({ QueueUrl }));
    sqs.destroy();
  }
});
