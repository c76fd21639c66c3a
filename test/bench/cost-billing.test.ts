import { createHash } from 'node:crypto';
import { ReceiveMessageCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { AWS_PRICES } from '../../bench/aws-prices.js';
import { billedMs, dynamoUsd, gbSeconds, lambdaUsd, sqsUsd, stepFunctionsUsd, storageMonthlyUsd } from '../../bench/cost/bill.js';
import { deployedJob, transitionsPerDecision } from '../../bench/cost/deployed.js';
import { DynamoBillingMeter, type BillingTally } from '../../shared/aws/adapters/dynamo-billing.js';
import { messagePayloadBytes, RequestCounter, sqsBilledRequests } from '../../shared/aws/adapters/request-counter.js';

// The bills here are computed by hand from AWS's published rules (us-east-1, ../../bench/aws-prices.ts),
// never from DynamoDB Local's ConsumedCapacity (which bills a whole transaction about as one unit).

const s = (text: string): { S: string } => ({ S: text });
const tally = (): BillingTally => ({ read: 0, write: 0 });

describe('DynamoDB on-demand units from item sizes', () => {
  it('bills a put per started KB of the item (names + values)', () => {
    const meter = new DynamoBillingMeter();
    const t = tally();
    // pk(2)+'a'(1) + sk(2)+'b'(1) + v(1)+1000 = 1007 bytes -> 1 WRU
    meter.bill('PutItem', { TableName: 't', Item: { pk: s('a'), sk: s('b'), v: s('x'.repeat(1000)) } }, {}, t, true);
    expect(t.write).toBe(1);
    // 2+1+2+1+1+1500 = 1507 bytes -> 2 WRU; the before image (1007 B) is smaller
    meter.bill('PutItem', { TableName: 't', Item: { pk: s('a'), sk: s('b'), v: s('x'.repeat(1500)) } }, {}, t, true);
    expect(t.write).toBe(3);
    // A delete bills the item it removes: 1507 B -> 2 WRU
    meter.bill('DeleteItem', { TableName: 't', Key: { pk: s('a'), sk: s('b') } }, {}, t, true);
    expect(t.write).toBe(5);
    expect(dynamoUsd(t)).toBeCloseTo(5 * 0.625e-6, 12);
  });

  it('bills 2 units per KB for every transaction action, ConditionCheck included', () => {
    const meter = new DynamoBillingMeter();
    const t = tally();
    // A 3,000-byte item the meter has seen (read): 2+1+2+1+1+2993 = 3000 B -> 3 KB
    meter.bill('GetItem', { TableName: 't', Key: { pk: s('c'), sk: s('d') }, ConsistentRead: true }, { Item: { pk: s('c'), sk: s('d'), v: s('y'.repeat(2993)) } }, t, true);
    expect(t.read).toBe(1);
    meter.bill(
      'TransactWriteItems',
      {
        TransactItems: [
          { Put: { TableName: 't', Item: { pk: s('a'), sk: s('b'), v: s('x'.repeat(1000)) } } }, // 1007 B: 2 x 1
          { Update: { TableName: 't', Key: { pk: s('e'), sk: s('f') }, UpdateExpression: 'SET #n = :n', ExpressionAttributeNames: { '#n': 'n' }, ExpressionAttributeValues: { ':n': { N: '5' } } } }, // tiny: 2 x 1
          { ConditionCheck: { TableName: 't', Key: { pk: s('c'), sk: s('d') }, ConditionExpression: 'attribute_exists(pk)' } }, // 3000 B: 2 x 3
          { ConditionCheck: { TableName: 't', Key: { pk: s('g'), sk: s('h') }, ConditionExpression: 'attribute_not_exists(pk)' } }, // missing: 2 x 1
        ],
      },
      {},
      t,
      true,
    );
    expect(t.write).toBe(2 + 2 + 6 + 2);
    // A cancelled transaction is billed all the same.
    meter.bill('TransactWriteItems', { TransactItems: [{ Put: { TableName: 't', Item: { pk: s('z'), sk: s('z') } } }] }, {}, t, false);
    expect(t.write).toBe(14);
    expect(dynamoUsd(t)).toBeCloseTo(14 * 0.625e-6 + 1 * 0.125e-6, 12);
  });

  it('bills missing keys of a BatchGetItem as reads, per 4 KB, half when eventually consistent', () => {
    const meter = new DynamoBillingMeter();
    const t = tally();
    const found = { pk: s('a'), sk: s('b'), v: s('x'.repeat(4994)) }; // 5000 B -> 2 x 4 KB
    meter.bill(
      'BatchGetItem',
      {
        RequestItems: {
          t: {
            Keys: [
              { pk: s('a'), sk: s('b') },
              { pk: s('m1'), sk: s('x') },
              { pk: s('m2'), sk: s('x') },
            ],
          },
        },
      },
      { Responses: { t: [found] } },
      t,
      true,
    );
    expect(t.read).toBe(2 * 0.5 + 2 * 0.5);
    meter.bill(
      'BatchGetItem',
      {
        RequestItems: {
          t: {
            Keys: [
              { pk: s('a'), sk: s('b') },
              { pk: s('m1'), sk: s('x') },
            ],
            ConsistentRead: true,
          },
        },
      },
      { Responses: { t: [found] } },
      t,
      true,
    );
    expect(t.read).toBe(2 + 2 + 1);
  });
});

describe('SQS requests per 64 KiB chunk, at the standard or FIFO price', () => {
  const tenKb = 'x'.repeat(10 * 1024);

  it('sizes a message as its body plus its attributes', () => {
    expect(messagePayloadBytes({ MessageBody: 'héllo' })).toBe(6);
    expect(messagePayloadBytes({ MessageBody: 'ab', MessageAttributes: { id: { DataType: 'String', StringValue: 'e-1' } } })).toBe(2 + 2 + 6 + 3);
    expect(sqsBilledRequests(0)).toBe(1);
    expect(sqsBilledRequests(64 * 1024)).toBe(1);
    expect(sqsBilledRequests(64 * 1024 + 1)).toBe(2);
    expect(sqsBilledRequests(256 * 1024)).toBe(4);
  });

  it('bills a SendMessageBatch of 10 x 10 KB as 2 requests, and a receive of them as 2', async () => {
    const counter = new RequestCounter();
    let reply = '{}';
    // A stub HTTP handler: the SDK's own middleware stack runs, nothing leaves the process.
    const sqs = new SQSClient({
      region: 'us-east-1',
      endpoint: 'http://localhost:1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      requestHandler: { handle: () => Promise.resolve({ response: { statusCode: 200, headers: { 'content-type': 'application/x-amz-json-1.0' }, body: new TextEncoder().encode(reply) } }) } as never,
    });
    counter.attach(sqs);
    const entries = Array.from({ length: 10 }, (_, i) => ({ Id: String(i), MessageBody: tenKb, MessageGroupId: 'g', MessageDeduplicationId: String(i) }));
    await sqs.send(new SendMessageBatchCommand({ QueueUrl: 'http://localhost:1/000000000000/ops.fifo', Entries: entries }));
    await sqs.send(new SendMessageBatchCommand({ QueueUrl: 'http://localhost:1/000000000000/ingress', Entries: entries.slice(0, 3).map(({ Id, MessageBody }) => ({ Id, MessageBody })) }));
    reply = JSON.stringify({
      Messages: Array.from({ length: 10 }, (_, i) => ({ MessageId: String(i), ReceiptHandle: `r${i}`, Body: tenKb, MD5OfBody: createHash('md5').update(tenKb).digest('hex') })),
    });
    await sqs.send(new ReceiveMessageCommand({ QueueUrl: 'http://localhost:1/000000000000/ops.fifo', MaxNumberOfMessages: 10 }));
    reply = '{}';
    await sqs.send(new ReceiveMessageCommand({ QueueUrl: 'http://localhost:1/000000000000/ops.fifo' }));
    sqs.destroy();
    const snap = counter.sqsSnapshot();
    expect(snap['SQS.SendMessageBatch.fifo']).toEqual({ requests: 1, billed: 2, payloadBytes: 102_400, empty: 0 });
    expect(snap['SQS.SendMessageBatch.standard']).toEqual({ requests: 1, billed: 1, payloadBytes: 30_720, empty: 0 });
    expect(snap['SQS.ReceiveMessage.fifo']?.requests).toBe(2);
    expect(snap['SQS.ReceiveMessage.fifo']?.empty).toBe(1);
    // 10 x 10 KB received: 2 chunks; the empty receive: 1.
    expect(snap['SQS.ReceiveMessage.fifo']?.payloadBytes).toBe(102_400);
    const received = snap['SQS.ReceiveMessage.fifo']?.billed ?? 0;
    expect(received).toBe(3);
    // 2 FIFO sends + 1 standard send + receives (FIFO)
    const bill = sqsUsd(snap);
    expect(bill.standard).toBe(1);
    expect(bill.usd).toBeCloseTo((2 + received) * 0.5e-6 + 1 * 0.4e-6, 12);
    // The plain request count is unchanged: one per call.
    expect(counter.count('SQS', 'SendMessageBatch')).toBe(2);
  });
});

describe('Lambda, Step Functions, storage', () => {
  it('bills GB-seconds at 1 ms granularity at the deployed memory size and architecture', () => {
    expect(billedMs([10.2, 0.4, 99.01])).toBe(11 + 1 + 100);
    expect(gbSeconds(112, 512)).toBeCloseTo(0.056, 12);
    expect(lambdaUsd(3, 112, 512, 'arm64')).toBeCloseTo(3 * 0.2e-6 + 0.056 * 0.0000133334, 14);
    expect(lambdaUsd(3, 112, 512, 'x86_64')).toBeCloseTo(3 * 0.2e-6 + 0.056 * 0.0000166667, 14);
  });

  it('prices transitions, logs and a month of storage with PITR', () => {
    expect(stepFunctionsUsd(18)).toBeCloseTo(0.00045, 12);
    expect(storageMonthlyUsd(1024 ** 3)).toBeCloseTo(0.45, 12);
    expect(storageMonthlyUsd(1024 ** 3, 1024 ** 3, false)).toBeCloseTo(0.25 + 0.023, 12);
    expect(AWS_PRICES.asOf).toMatch(/^\d{4}-\d{2}-\d{2}/);
  });

  it('counts the transitions of a checkpoint round on the synthesized state machine', () => {
    const deployed = deployedJob('word-count');
    const asl = deployed.checkpointAsl;
    const round = ['trigger', 'inject-barriers', 'complete', 'commit-sinks', 'wait'].map((t) => transitionsPerDecision(asl, t));
    expect(round.map((r) => r.path)).toEqual([
      ['Decide', 'Route', 'Trigger', 'ManualConsumed'],
      ['Decide', 'Route', 'InjectBarriers', 'AwaitAcks'],
      ['Decide', 'Route', 'CompleteCheckpoint'],
      ['Decide', 'Route', 'CommitSinks'],
      ['Decide', 'Route', 'Handoff', 'WaitForNext'],
    ]);
    expect(round.reduce((n, r) => n + r.transitions, 0)).toBe(18);
    expect(transitionsPerDecision(asl, 'wait', { handoff: true }).path).toEqual(['Decide', 'Route', 'Handoff', 'HandedOver']);
    expect(deployed.stateMachineType).toBe('STANDARD');
    expect(deployed.ingressFifo).toBe(false);
    expect(deployed.operatorQueuesFifo).toBe(true);
    expect(deployed.functions.find((f) => f.role === 'ackListener')?.memoryMb).toBe(256);
  });
});
