/**
 * AWS's rules that the emulators do not play, played by the edge (shared/aws/local-cloud/
 * aws-rules.ts), each shown biting through the real emulators, and the engine's adapters
 * carried through by their retries. Every test runs on an edge of its own (rules-edge.ts):
 * without the rule (`rules: false`) each first assertion fails, as the "emulator alone" cases
 * show.
 */
import { BatchWriteItemCommand, DynamoDBClient, GetItemCommand, PutItemCommand, TransactWriteItemsCommand, type TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import {
  CreateStateMachineCommand,
  DeleteStateMachineCommand,
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  ListExecutionsCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { CreateQueueCommand, PurgeQueueCommand, ReceiveMessageCommand, SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterEach, describe, expect, it } from 'vitest';
import { DynamoIo, RequestCounter, S3BlobStore, ensureJobTable, deleteJobTable } from '../../shared/aws/index.js';
import { awsRulesFromEnv, InvalidAwsRuleSettingError, resolveAwsRules } from '../../shared/aws/local-cloud/aws-rules.js';
import { invalidSqsCharacter } from '../../shared/aws/local-cloud/sqs-rules.js';
import { historyLimitCause } from '../../shared/aws/local-cloud/sfn-rules.js';
import { credentials, region, rulesEdge, sharedEndpoint, type RulesEdge } from './rules-edge.js';

const unique = (prefix: string): string => `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
const dynamo = (endpoint: string, maxAttempts = 1): DynamoDBClient => new DynamoDBClient({ endpoint, region, credentials, maxAttempts });
const sqsClient = (endpoint: string): SQSClient => new SQSClient({ endpoint, region, credentials, maxAttempts: 1 });
const put = (table: string, pk: string, sk: string, extra: Record<string, { S: string }> = {}): TransactWriteItem => ({ Put: { TableName: table, Item: { pk: { S: pk }, sk: { S: sk }, ...extra } } });
const addOne = (table: string, pk: string, tag: string): TransactWriteItem => ({
  Update: {
    TableName: table,
    Key: { pk: { S: pk }, sk: { S: 'x' } },
    UpdateExpression: 'ADD #n :one SET #t = :tag',
    ExpressionAttributeNames: { '#n': 'n', '#t': 't' },
    ExpressionAttributeValues: { ':one': { N: '1' }, ':tag': { S: tag } },
  },
});
const HELD = 'held-by-the-test';

async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    return error as Error & Record<string, unknown>;
  }
  throw new Error('expected a rejection');
}

const edges: RulesEdge[] = [];
const tables: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (tables.length > 0) await tables.pop()?.();
  while (edges.length > 0) await edges.pop()?.close();
});

async function setup(rules: Parameters<typeof rulesEdge>[0], hold?: (body: string) => boolean): Promise<{ edge: RulesEdge; client: DynamoDBClient; table: string }> {
  const edge = await rulesEdge(rules, hold);
  edges.push(edge);
  const client = dynamo(edge.url);
  const table = unique('rules');
  await ensureJobTable(client, table);
  tables.push(() => deleteJobTable(dynamo(sharedEndpoint(), 3), table));
  return { edge, client, table };
}

describe('settings', () => {
  it('AWS figures by default; the environment and the options change them; a bad value is a named error', () => {
    expect(resolveAwsRules()).toEqual({
      transactionConflicts: true,
      partitionWriteUnitsPerSecond: 1000,
      partitionReadUnitsPerSecond: 3000,
      purgeWindowMs: 60000,
      sqsBodyCharacters: true,
      sfnHistoryEvents: 25000,
    });
    expect(awsRulesFromEnv({ CAIRN_CLOUD_SFN_HISTORY_EVENTS: '300' })).toEqual({ sfnHistoryEvents: 300 });
    const env = awsRulesFromEnv({ CAIRN_CLOUD_PARTITION_WCU: '10', CAIRN_CLOUD_PURGE_WINDOW_MS: '500', CAIRN_CLOUD_TRANSACTION_CONFLICTS: '0' });
    expect(env).toEqual({ partitionWriteUnitsPerSecond: 10, purgeWindowMs: 500, transactionConflicts: false });
    expect(resolveAwsRules(env, { purgeWindowMs: 200 })).toMatchObject({ partitionWriteUnitsPerSecond: 10, partitionReadUnitsPerSecond: 3000, purgeWindowMs: 200, transactionConflicts: false });
    expect(() => awsRulesFromEnv({ CAIRN_CLOUD_PARTITION_RCU: 'lots' })).toThrow(InvalidAwsRuleSettingError);
  });
});

describe('TransactionConflict: a transaction on an item another transaction is writing is cancelled', () => {
  it('cancels the second transaction with AWS error shape and refuses a single write; checked-only items and other items pass', async () => {
    const { edge, client, table } = await setup({}, (body) => body.includes(HELD));
    const first = client.send(
      new TransactWriteItemsCommand({
        TransactItems: [
          put(table, 'k', '1', { tag: { S: HELD } }),
          { ConditionCheck: { TableName: table, Key: { pk: { S: 'checked' }, sk: { S: '1' } }, ConditionExpression: 'attribute_not_exists(pk)' } },
        ],
      }),
    );
    await edge.heldCount(1);

    const error = await rejection(client.send(new TransactWriteItemsCommand({ TransactItems: [put(table, 'other', '1'), put(table, 'k', '1')] })));
    expect(error.name).toBe('TransactionCanceledException');
    expect(error.message).toBe('Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]');
    expect(error.CancellationReasons).toEqual([{ Code: 'None' }, { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' }]);
    const single = await rejection(client.send(new PutItemCommand({ TableName: table, Item: { pk: { S: 'k' }, sk: { S: '1' } } })));
    expect(single.name).toBe('TransactionConflictException');
    // An item the first transaction only checks, and an item of the same partition key, are free.
    await client.send(new TransactWriteItemsCommand({ TransactItems: [put(table, 'checked', '2'), put(table, 'k', '2')] }));
    expect(edge.edge.ruleCounts().transactionConflicts).toBe(2);

    edge.held[0]?.release();
    await first;
    await client.send(new TransactWriteItemsCommand({ TransactItems: [put(table, 'other', '1'), put(table, 'k', '1')] }));
    expect((await client.send(new GetItemCommand({ TableName: table, Key: { pk: { S: 'k' }, sk: { S: '1' } } }))).Item?.tag).toBeUndefined();
  });

  it('without the rule (DynamoDB Local alone), the second transaction goes through while the first is in progress', async () => {
    const { edge, client, table } = await setup(false, (body) => body.includes(HELD));
    const first = client.send(new TransactWriteItemsCommand({ TransactItems: [put(table, 'k', '1', { tag: { S: HELD } })] }));
    await edge.heldCount(1);
    await client.send(new TransactWriteItemsCommand({ TransactItems: [put(table, 'other', '1'), put(table, 'k', '1')] }));
    edge.held[0]?.release();
    await first;
  });

  it('DynamoIo.transact retries the cancellation until the other transaction is done and loses no write; bounded', async () => {
    const { edge, client, table } = await setup({}, (body) => body.includes(HELD));
    const doc = DynamoDBDocumentClient.from(client);
    const blobs = new S3BlobStore(new S3Client({ endpoint: edge.url, region, credentials, forcePathStyle: true }), 'unused');
    const first = client.send(new TransactWriteItemsCommand({ TransactItems: [addOne(table, 'k', HELD)] }));
    await edge.heldCount(1);

    const bounded = new DynamoIo({ doc, table, blobs, retryBaseMs: 1, maxRetries: 2 });
    const exhausted = await rejection(
      bounded.transact([
        { Update: { TableName: table, Key: { pk: 'k', sk: 'x' }, UpdateExpression: 'ADD #n :one', ExpressionAttributeNames: { '#n': 'n' }, ExpressionAttributeValues: { ':one': 1 } } },
      ]),
    );
    expect(exhausted.name).toBe('TransactionCanceledException');
    expect(edge.edge.ruleCounts().transactionConflicts).toBe(3); // 1 try + 2 retries

    const io = new DynamoIo({ doc, table, blobs, retryBaseMs: 5 });
    const second = io.transact([
      { Update: { TableName: table, Key: { pk: 'k', sk: 'x' }, UpdateExpression: 'ADD #n :one', ExpressionAttributeNames: { '#n': 'n' }, ExpressionAttributeValues: { ':one': 1 } } },
    ]);
    while (edge.edge.ruleCounts().transactionConflicts < 5) await new Promise((r) => setTimeout(r, 5));
    edge.held[0]?.release();
    await Promise.all([first, second]);
    expect((await io.get({ pk: 'k', sk: 'x' }))?.n).toBe(2);
  });
});

describe('per-partition-key throughput: a hot key is throttled, the SDK and the adapters carry on', () => {
  it('refuses writes to one partition key past its write units per second, with AWS error shape; other keys go on', async () => {
    const { edge, client, table } = await setup({ partitionWriteUnitsPerSecond: 10 });
    const kb = 'x'.repeat(1000); // one write unit each
    let accepted = 0;
    let error: (Error & Record<string, unknown>) | undefined;
    while (error === undefined && accepted < 100) {
      try {
        await client.send(new PutItemCommand({ TableName: table, Item: { pk: { S: 'hot' }, sk: { S: String(accepted) }, v: { S: kb } } }));
        accepted++;
      } catch (e) {
        error = e as Error & Record<string, unknown>;
      }
    }
    // The bucket holds one second of units (10) plus what refilled meanwhile.
    expect(accepted).toBeGreaterThanOrEqual(10);
    expect(accepted).toBeLessThan(30);
    expect(error?.name).toBe('ProvisionedThroughputExceededException');
    expect(error?.ThrottlingReasons).toEqual([{ reason: 'TableWriteKeyRangeThroughputExceeded', resource: `arn:aws:dynamodb:us-east-1:123456789012:table/${table}` }]);
    await client.send(new PutItemCommand({ TableName: table, Item: { pk: { S: 'cold' }, sk: { S: '0' }, v: { S: kb } } }));
    // A 100 KB write takes 100 units from a 10-unit key: it is hot for the next ~9 s. A
    // transaction on it is cancelled for throttling; a batch returns its hot entries unprocessed.
    await client.send(new PutItemCommand({ TableName: table, Item: { pk: { S: 'hot2' }, sk: { S: 'big' }, v: { S: 'x'.repeat(100_000) } } }));
    const tx = await rejection(client.send(new TransactWriteItemsCommand({ TransactItems: [put(table, 'cold', '1'), put(table, 'hot2', 'tx')] })));
    expect(tx.CancellationReasons).toEqual([{ Code: 'None' }, { Code: 'ThrottlingError', Message: expect.stringContaining('Throughput exceeds the current capacity') as string }]);
    const batch = await client.send(
      new BatchWriteItemCommand({ RequestItems: { [table]: [{ PutRequest: { Item: { pk: { S: 'cold' }, sk: { S: '2' } } } }, { PutRequest: { Item: { pk: { S: 'hot2' }, sk: { S: 'b' } } } }] } }),
    );
    expect(batch.UnprocessedItems?.[table]).toEqual([{ PutRequest: { Item: { pk: { S: 'hot2' }, sk: { S: 'b' } } } }]);
    expect((await client.send(new GetItemCommand({ TableName: table, Key: { pk: { S: 'cold' }, sk: { S: '2' } } }))).Item).toBeDefined();
    expect(edge.edge.ruleCounts().throttledWrites).toBe(3);
  });

  it('DynamoIo and the SDK retries write 40 units to a 10-unit key, every item, through the throttling', async () => {
    const { edge, table } = await setup({ partitionWriteUnitsPerSecond: 10, partitionReadUnitsPerSecond: 10 });
    const doc = DynamoDBDocumentClient.from(dynamo(edge.url, 8));
    const blobs = new S3BlobStore(new S3Client({ endpoint: edge.url, region, credentials, forcePathStyle: true }), 'unused');
    const io = new DynamoIo({ doc, table, blobs, retryBaseMs: 20 });
    const items = Array.from({ length: 20 }, (_, i) => ({ pk: 'hot', sk: `b${String(i).padStart(2, '0')}` }));
    await io.batchWrite(items.map((i) => ({ put: i })));
    for (let i = 0; i < 10; i++) await io.transact([{ Put: { TableName: table, Item: { pk: 'hot', sk: `t${i}` } } }]); // 2 units each
    const read = await io.queryPartition('hot');
    expect(read.map((r) => r.sk)).toEqual([...items.map((i) => i.sk), ...Array.from({ length: 10 }, (_, i) => `t${i}`)]);
    expect(edge.edge.ruleCounts().throttledWrites).toBeGreaterThan(0);
  });
  it('a throttled request retried by the SDK is one call and several billed attempts in the RequestCounter', async () => {
    const { edge, table } = await setup({ partitionWriteUnitsPerSecond: 10 });
    const client = dynamo(edge.url, 8);
    const counter = new RequestCounter();
    counter.attach(client);
    // 20 units from a 10-unit key leave it hot for about a second: the next put is throttled and retried.
    await client.send(new PutItemCommand({ TableName: table, Item: { pk: { S: 'hot' }, sk: { S: 'big' }, v: { S: 'x'.repeat(20_000) } } }));
    const put = await client.send(new PutItemCommand({ TableName: table, Item: { pk: { S: 'hot' }, sk: { S: 'small' } } }));
    const attempts = put.$metadata.attempts ?? 1;
    expect(attempts).toBeGreaterThan(1);
    expect(counter.snapshot()).toEqual({ 'DynamoDB.PutItem': 1 + attempts });
    expect(counter.calls()).toEqual({ 'DynamoDB.PutItem': 2 });
    expect(edge.edge.ruleCounts().throttledWrites).toBe(attempts - 1);
  });
});

describe('PurgeQueue: messages sent while a purge is in progress are deleted', () => {
  it('deletes what is sent within the window after a purge, refuses a second purge, and delivers again after it', async () => {
    const edge = await rulesEdge({ purgeWindowMs: 1_500 });
    edges.push(edge);
    const sqs = sqsClient(edge.url);
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: unique('purge') }));
    await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'before' }));
    await sqs.send(new PurgeQueueCommand({ QueueUrl }));
    const purgeEnds = Date.now() + 1_500;
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'during' }));
    expect(sent.MessageId).toMatch(/^[0-9a-f-]{36}$/);
    await sqs.send(new SendMessageBatchCommand({ QueueUrl, Entries: [{ Id: 'a', MessageBody: 'during-batch' }] }));
    expect((await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10 }))).Messages ?? []).toEqual([]);
    expect((await rejection(sqs.send(new PurgeQueueCommand({ QueueUrl })))).name).toBe('PurgeQueueInProgress');
    while (Date.now() <= purgeEnds) await new Promise((r) => setTimeout(r, purgeEnds + 10 - Date.now()));
    await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'after' }));
    const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect(got.Messages?.map((m) => m.Body)).toEqual(['after']);
    expect(edge.edge.ruleCounts()).toMatchObject({ purgedMessages: 2, purgesRefused: 1 });
  });
});

describe('SQS body characters: InvalidMessageContents, as AWS answers', () => {
  const refused = ['a\uffff', 'a\ufffe', 'a\u0007', 'a\u0000', 'a\ud800b', 'a\udc00'];

  it('the character set: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF', () => {
    for (const text of refused) expect(invalidSqsCharacter(text), JSON.stringify(text)).toBeDefined();
    for (const text of ['\t\n\r ~', '\ud7ff\ue000\ufffd', '\u{10000}\u{10ffff}\u{1f600}', 'é中']) expect(invalidSqsCharacter(text), JSON.stringify(text)).toBeUndefined();
  });

  it('refuses SendMessage with the exact error and fails only that entry of a batch', async () => {
    const edge = await rulesEdge({});
    edges.push(edge);
    const sqs = sqsClient(edge.url);
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: unique('chars') }));
    for (const body of refused) {
      const error = await rejection(sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: body })));
      expect(error.name, JSON.stringify(body)).toBe('InvalidMessageContents');
      const hex = (body.codePointAt(1) ?? 0).toString(16).toUpperCase();
      expect(error.message).toBe(
        `Invalid binary character '#x${hex}' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`,
      );
    }
    const batch = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl,
        Entries: [
          { Id: 'ok', MessageBody: 'fine \u{1f600}' },
          { Id: 'bad', MessageBody: 'a\uffff' },
        ],
      }),
    );
    expect(batch.Successful?.map((s) => s.Id)).toEqual(['ok']);
    expect(batch.Failed).toEqual([{ Id: 'bad', SenderFault: true, Code: 'InvalidMessageContents', Message: expect.stringContaining("'#xFFFF'") as string }]);
    const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect(got.Messages?.map((m) => m.Body)).toEqual(['fine \u{1f600}']);
  });

  it('ElasticMQ alone answers U+FFFF with another error (a malformed request), and U+0007 under another code', async () => {
    const edge = await rulesEdge(false);
    edges.push(edge);
    const sqs = sqsClient(edge.url);
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: unique('chars') }));
    expect((await rejection(sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'a\uffff' })))).name).not.toBe('InvalidMessageContents');
    expect((await rejection(sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'a\u0007' })))).name).not.toBe('InvalidMessageContents');
  });
});

describe('Step Functions: an execution fails when its history reaches the limit (AWS: 25,000 events)', () => {
  /**
   * A machine that never ends: 10 Pass states in a row, then a 1 s Wait (22 events a round; a loop
   * without a Wait would starve moto). In a row, not in parallel: parallel branches interleave their
   * events in whatever order moto's threads run, and the test names event 59.
   * Event 1 starts the execution; round r's events are 2 + 22r onwards: event 59 is round 2's 14th,
   * the 7th Pass exiting.
   */
  const passes = Array.from({ length: 10 }, (_, i) => `P${i}`);
  const spin = JSON.stringify({
    StartAt: 'P0',
    States: {
      ...Object.fromEntries(passes.map((name, i) => [name, { Type: 'Pass', Next: passes[i + 1] ?? 'Breathe' }])),
      Breathe: { Type: 'Wait', Seconds: 1, Next: 'P0' },
    },
  });

  async function spinning(endpoint: string): Promise<{ sfn: SFNClient; executionArn: string; stateMachineArn: string }> {
    const sfn = new SFNClient({ endpoint, region, credentials, maxAttempts: 1 });
    const { stateMachineArn } = await sfn.send(new CreateStateMachineCommand({ name: unique('spin'), definition: spin, roleArn: 'arn:aws:iam::123456789012:role/spin', type: 'STANDARD' }));
    const { executionArn } = await sfn.send(new StartExecutionCommand({ stateMachineArn, input: '{}' }));
    if (!executionArn || !stateMachineArn) throw new Error('no execution');
    return { sfn, executionArn, stateMachineArn };
  }

  /** moto alone ignores reverseOrder and maxResults: every event comes back. */
  async function eventsOf(sfn: SFNClient, executionArn: string): Promise<number> {
    const { events = [] } = await sfn.send(new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 1 }));
    return events.length;
  }

  it('FAILED with States.Runtime; event 60 of 60 is ExecutionFailed, 59 the last the machine produced; listed as FAILED', async () => {
    const edge = await rulesEdge({ sfnHistoryEvents: 60 });
    edges.push(edge);
    const { sfn, executionArn, stateMachineArn } = await spinning(edge.url);
    // Progress, not wall time: the execution ends once its history has grown past the limit.
    let status = 'RUNNING';
    while (status === 'RUNNING') {
      await new Promise((r) => setTimeout(r, 100));
      status = (await sfn.send(new DescribeExecutionCommand({ executionArn }))).status ?? '';
    }
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    expect({ status: described.status, error: described.error, cause: described.cause }).toEqual({ status: 'FAILED', error: 'States.Runtime', cause: historyLimitCause(60) });
    const { events = [] } = await sfn.send(new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 2 }));
    expect(events.map((e) => [e.id, e.type])).toEqual([
      [60, 'ExecutionFailed'],
      [59, 'PassStateExited'],
    ]);
    expect(events[0]).toMatchObject({ previousEventId: 59, executionFailedEventDetails: { error: 'States.Runtime', cause: historyLimitCause(60) } });
    const all = await sfn.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }));
    expect(all.events?.length).toBe(60);
    const listed = async (statusFilter?: 'RUNNING' | 'FAILED' | 'ABORTED'): Promise<string[]> =>
      ((await sfn.send(new ListExecutionsCommand({ stateMachineArn, ...(statusFilter ? { statusFilter } : {}) }))).executions ?? []).map(
        (e) => `${e.executionArn === executionArn ? 'it' : 'other'}:${e.status}`,
      );
    expect(await listed()).toEqual(['it:FAILED']);
    expect(await listed('FAILED')).toEqual(['it:FAILED']);
    expect(await listed('RUNNING')).toEqual([]);
    expect(await listed('ABORTED')).toEqual([]);
    expect(edge.edge.ruleCounts().historyLimitFailures).toBe(1);
    await sfn.send(new DeleteStateMachineCommand({ stateMachineArn }));
  });

  it('moto alone runs on past the limit (and answers a page of one event with all of them)', async () => {
    const edge = await rulesEdge(false);
    edges.push(edge);
    const { sfn, executionArn, stateMachineArn } = await spinning(edge.url);
    while ((await eventsOf(sfn, executionArn)) <= 60) await new Promise((r) => setTimeout(r, 100));
    expect((await sfn.send(new DescribeExecutionCommand({ executionArn }))).status).toBe('RUNNING');
    await sfn.send(new StopExecutionCommand({ executionArn }));
    await sfn.send(new DeleteStateMachineCommand({ stateMachineArn }));
  });
});
