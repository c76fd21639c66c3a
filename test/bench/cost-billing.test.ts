import { createHash } from 'node:crypto';
import { ReceiveMessageCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { AWS_PRICES } from '../../bench/aws-prices.js';
import { billedMs, dynamoUsd, gbSeconds, lambdaUsd, PLATFORM_LOG_BYTES_PER_INVOCATION, sqsUsd, stepFunctionsUsd, storageMonthlyUsd } from '../../bench/cost/bill.js';
import { ackPolls, coordinatorMonthly, coordinatorPlan, idleMappingsMonthly, usdTotal, watchdogMonthly, type CoordinatorMeasured } from '../../bench/cost/coordinator.js';
import { deployedJob, transitionsPerDecision } from '../../bench/cost/deployed.js';
import { batchOf, invocationsPerEvent, modelAt, producerMessagesPerEvent, producerRequestsPerEvent, type DataPathModel, type DataPathSegment } from '../../bench/cost/cost-bench.js';
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

  it('follows the synthesized checkpoint workflow between two Run invocations', () => {
    const deployed = deployedJob('word-count');
    const asl = deployed.checkpointAsl;
    expect(['continue', 'wait', 'recover', 'sleep', 'handoff'].map((t) => transitionsPerDecision(asl, t).path)).toEqual([
      ['Run', 'Route'],
      ['Run', 'Route', 'WaitForNext'],
      ['Run', 'Route', 'Recover'],
      ['Run', 'Route', 'Asleep'],
      ['Run', 'Route', 'HandedOver'],
    ]);
    // The watchdog's execution of a sleeping job.
    expect(transitionsPerDecision(asl, 'sleep', { from: asl.StartAt }).path).toEqual(['Init', 'Run', 'Route', 'Asleep']);
    expect(deployed.stateMachineType).toBe('STANDARD');
    expect(deployed.ingressFifo).toBe(false);
    expect(deployed.operatorQueuesFifo).toBe(true);
    expect(deployed.scheduleRateMinutes).toBe(10);
    expect(deployed.coordinatorTimeoutSeconds).toBe(900);
    expect(deployed.functions.find((f) => f.role === 'coordinator')).toMatchObject({ memoryMb: 256, architecture: 'arm64' });
    expect(deployed.functions.map((f) => f.role)).not.toContain('ackListener');
    expect(deployed.eventSourceMappings.map((m) => [m.functionRole, m.fifo]).sort()).toEqual([
      ['deadLetter', false],
      ['deadLetter', true],
      ['deadLetter', true],
      ['ingest', false],
      ['operator', true],
      ['operator', true],
    ]);
    // The ingress mapping batches (up to 100 events, 1 s window); the FIFO ones cannot.
    expect(deployed.eventSourceMappings.find((m) => m.functionRole === 'ingest')).toMatchObject({ batchSize: 100, windowSeconds: 1 });
    expect(deployed.eventSourceMappings.filter((m) => m.fifo).map((m) => m.windowSeconds)).toEqual([0, 0, 0, 0]);
  });

  it('models batches as the mappings form them: a window gathers up to the batch size, a receive cycle finds at most 10', () => {
    const windowed = { perEvent: 1, slots: 2, maxBatch: 100, windowSeconds: 1 };
    const fifo = { perEvent: 1, slots: 2, maxBatch: 10, windowSeconds: 0 };
    expect([0.5, 5, 1_000].map((rate) => batchOf(windowed, rate, 0.1))).toEqual([1, 2.5, 100]);
    expect([5, 100, 1_000].map((rate) => batchOf(fifo, rate, 0.1))).toEqual([1, 5, 10]);
  });

  it('models messages per event from the measured rates: the per-event slope (the intercept comes with the checkpoints), the packing producer', () => {
    // A source read at barriers: 2 messages a second whatever the rate (the rounds', billed apart) plus 0.01 per event; one message a batch (no window, cycle 0.1 s).
    const barrier = { sources: { lines: { perEvent: 0, slots: 2, maxBatch: 10, windowSeconds: 0, perSecond: { a: 2, b: 0.01 } } } };
    expect([0.1, 10, 1_000].map((rate) => invocationsPerEvent(barrier, rate, 0.1))).toEqual([0.01, 0.01, 0.01]);
    // One measured rate: no intercept, the messages per event as measured.
    expect(invocationsPerEvent({ sources: { lines: { perEvent: 0.5, slots: 2, maxBatch: 10, windowSeconds: 0, perSecond: { a: 0, b: 0.5 } } } }, 10, 0.1)).toBe(0.5);
    // The ingress from the packing producer: one message per 200 ms flush (up to 500 events a message), its batch of up to 100 in a 1 s window over 2 pollers.
    const ingress = { sources: { ingress: { perEvent: 1, slots: 2, maxBatch: 100, windowSeconds: 1, packed: true } } };
    expect([5, 100, 1_000, 5_000].map((rate) => producerMessagesPerEvent(rate))).toEqual([1, 1 / 20, 1 / 200, 2 / 1_000]);
    expect(invocationsPerEvent(ingress, 100, 0.1)).toBeCloseTo(1 / 20 / 2.5, 9);
    expect([5, 100, 25_000, 26_000].map((rate) => producerRequestsPerEvent(rate))).toEqual([1, 1 / 20, 1 / 5_000, 2 / 5_200]);
  });

  it('models a rate from the two measured rates around it, or the two nearest outside them', () => {
    const segment = (from: number, to: number): DataPathSegment => ({
      from,
      to,
      model: { a: from, b: to, localCycleSeconds: 1, sources: {}, parts: {} as DataPathModel['parts'], counts: {} as DataPathModel['counts'] },
    });
    const segments = [segment(5, 20), segment(20, 100), segment(100, 500)];
    expect([1, 5, 19, 20, 60, 100, 300, 500, 1_000].map((rate) => modelAt(segments, rate).a)).toEqual([5, 5, 5, 5, 20, 20, 100, 100, 100]);
    expect(() => modelAt([], 10)).toThrow('no measured rate to model from');
  });
});

describe('the deployed coordinator: one Run invocation runs the loop, an idle job sleeps', () => {
  const deployed = deployedJob('word-count');
  // Per checkpoint, as the bench measures it on the in-process coordinator.
  const measured: CoordinatorMeasured = {
    transitionUnits: { read: 10, write: 8 },
    transitionRequests: 12,
    // 60 checkpoints per retention run at 1 s (the default pruneIntervalMs, 60 s), 1 at 60 s
    retentionRun: { read: 6, write: 1.2, requests: 6 },
    readUnitsPerDecide: 3,
    requestsPerDecide: 5,
    decisionsPerCheckpoint: 4,
    sqsBilled: 3,
    roundMs: 200,
    ackLatencyMs: 120,
    jobRecordBytes: 1500, // 1 RRU (4 KB), 2 WRU (1 KB) per lease read / write
    tickEveryMs: undefined,
  };
  const P = PLATFORM_LOG_BYTES_PER_INVOCATION;
  const logs = (bytes: number): number => (bytes / 1024 ** 3) * 0.5;

  it('polls the acknowledgements with a backoff from 50 ms to ackPollMs', () => {
    expect(ackPolls(0, 500)).toBe(1);
    expect(ackPolls(120, 500)).toBe(3); // at 0, 50, 150
    expect(ackPolls(2_000, 500)).toBe(8); // 0, 50, 150, 350, 750, 1250, 1750, 2250
  });

  it('bills a month at a 1 s interval: the Run function busy all month, waits slept in process', () => {
    const plan = coordinatorPlan(deployed, measured, 1_000);
    expect(plan.mode).toBe('in-process');
    expect(plan.checkpointsPerMonth).toBe(2_628_000);
    // 800 ms to wait: 1 decide (Run pauses until the trigger is due) + 4 executed; 3 ack polls + the checkpoint read
    expect(plan.decidesPerCheckpoint).toBe(5);
    // Retention's fixed part once per 60 checkpoints: 59/60 of it taken out of the measured every-checkpoint units
    expect(plan.checkpointsPerPrune).toBe(60);
    expect(plan.unitsPerCheckpoint.read).toBeCloseTo(10 - (59 / 60) * 6 + 5 * 3 + 4, 9);
    expect(plan.unitsPerCheckpoint.write).toBeCloseTo(8 - (59 / 60) * 1.2, 9);
    // 4,380 invocations of 10 min at 256 MB; Run + Route each, Init + HandedOver per 6 h successor
    expect(plan.invocationsPerMonth).toBe(4_380);
    expect(plan.gbSecondsPerMonth).toBeCloseTo(657_000, 6);
    expect(plan.transitionsPerMonth).toBeCloseTo(8_760 + (2_628_000 / 21_600) * 2, 6);
    const lambda = 4_380 * 0.2e-6 + 657_000 * 0.0000133334;
    const sfn = (8_760 + 243.3333333) * 0.000025;
    // Per checkpoint 23.1 RRU + 6.82 WRU; the lease once per invocation: 1 RRU + 2 WRU
    const dynamo = (2_628_000 * 23.1 + 4_380) * 0.125e-6 + (2_628_000 * 6.82 + 4_380 * 2) * 0.625e-6;
    const sqs = 2_628_000 * 3 * 0.5e-6;
    const log = logs((4_380 * 7 + 121.6666667 * 8) * 700 + 4_380 * P + 2_628_000 * 400);
    expect(plan.usd.lambda).toBeCloseTo(lambda, 6);
    expect(plan.usd.stepFunctions).toBeCloseTo(sfn, 6);
    expect(plan.usd.dynamodb).toBeCloseTo(dynamo, 6);
    expect(plan.usd.sqs).toBeCloseTo(sqs, 6);
    expect(plan.usd.logs).toBeCloseTo(log, 6);
    expect(coordinatorMonthly(deployed, measured, 1_000)).toBeCloseTo(lambda + sfn + dynamo + sqs + log, 6);
    expect(coordinatorMonthly(deployed, measured, 1_000)).toBeCloseTo(32.2, 1);
  });

  it('bills a month at a 60 s interval: each wait through WaitForNext, one short invocation per checkpoint', () => {
    const plan = coordinatorPlan(deployed, measured, 60_000);
    expect(plan.mode).toBe('wait-state');
    expect(plan.checkpointsPerMonth).toBe(43_800);
    expect(plan.pathPerCheckpoint).toEqual(['Run', 'Route', 'WaitForNext']);
    expect(plan.checkpointsPerPrune).toBe(1);
    // 4 executed + the wait decide; the lease extended before the wait and taken after it
    expect(plan.unitsPerCheckpoint).toEqual({ read: 10 + 5 * 3 + 4 + 2 * 1, write: 8 + 2 * 2 });
    const lambda = 43_800 * 0.2e-6 + 43_800 * 0.2 * 0.25 * 0.0000133334;
    const sfn = (43_800 * 3 + 243.3333333) * 0.000025;
    const dynamo = 43_800 * 31 * 0.125e-6 + 43_800 * 12 * 0.625e-6;
    const sqs = 43_800 * 3 * 0.5e-6;
    const log = logs((43_800 * 9 + 121.6666667 * 8) * 700 + 43_800 * P + 43_800 * 400);
    expect(plan.gbSecondsPerMonth).toBeCloseTo(2_190, 6);
    expect(usdTotal(plan.usd)).toBeCloseTo(lambda + sfn + dynamo + sqs + log, 6);
    expect(usdTotal(plan.usd)).toBeCloseTo(4.03, 1);
  });

  it('bills an idle month: the watchdog every 10 min, the mappings long-polling', () => {
    const w = watchdogMonthly(deployed, measured);
    expect(w.executionsPerMonth).toBe(4_380);
    expect(w.path).toEqual(['Init', 'Run', 'Route', 'Asleep']);
    expect(w.unitsPerExecution).toEqual({ read: 2 * 3 + 2 * 1, write: 2 * 2 });
    expect(w.usd.stepFunctions).toBeCloseTo(4_380 * 4 * 0.000025, 9);
    expect(w.usd.lambda).toBeCloseTo(4_380 * 0.2e-6 + 4_380 * 0.4 * 0.25 * 0.0000133334, 9);
    expect(w.usd.dynamodb).toBeCloseTo(4_380 * 8 * 0.125e-6 + 4_380 * 4 * 0.625e-6, 9);
    expect(w.usd.logs).toBeCloseTo(logs(4_380 * (13 * 700 + P)), 9);
    expect(w.usd.scheduler).toBeCloseTo(4_380 * 1e-6, 12);
    expect(w.schedulerUsdWithFreeTier).toBe(0);
    expect(usdTotal(w.usd)).toBeCloseTo(0.48, 2);
    // 2 FIFO operator queues, the standard ingress queue and their dead-letter queues (the consumer's mappings): 5 pollers x a 20 s long poll each
    expect(idleMappingsMonthly(deployed)).toBeCloseTo(657_000 * 2 * (2 * 0.5e-6 + 0.4e-6), 9);
  });
});
