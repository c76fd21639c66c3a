/**
 * The local cloud behaves like AWS where Cairn depends on it: plain AWS SDK v3 clients,
 * pointed at the single edge endpoint, against real emulators.
 */
import { randomUUID } from 'node:crypto';
import { CreateTableCommand, DynamoDBClient, GetItemCommand, ListTablesCommand, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { CreateBucketCommand, GetObjectCommand, ListBucketsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateStateMachineCommand, ListStateMachinesCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { CreateQueueCommand, ListQueuesCommand, DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { executionEnded, until } from '../until.js';
import { acquireCloud, type AcquiredCloud } from './acquire-cloud.js';

const external = process.env.AWS_ENDPOINT_URL !== undefined && process.env.AWS_ENDPOINT_URL !== '';
let endpoint: string;
let owned: AcquiredCloud | undefined;

beforeAll(async () => {
  // Under vitest.cloud.config.ts the global setup provides the endpoint; under the default
  // config (npm test) this file starts its own local cloud.
  const provided = inject('cloudEndpoint') as string | undefined;
  if (provided !== undefined) {
    endpoint = provided;
  } else {
    owned = await acquireCloud();
    endpoint = owned.endpoint;
  }
});

afterAll(async () => {
  await owned?.release();
});

const clientConfig = (): { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string } } => ({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
});

const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;

interface Sender {
  send(command: unknown): Promise<unknown>;
  middlewareStack: { add(middleware: unknown, options: { step: 'deserialize' }): void };
}

/** The `server` header of the HTTP response to one SDK call: tells which emulator answered. */
async function serverHeaderOf(client: Sender, command: unknown): Promise<string | undefined> {
  let server: string | undefined;
  client.middlewareStack.add(
    (next: (args: unknown) => Promise<{ response: { headers?: Record<string, string> } }>) => async (args: unknown) => {
      const result = await next(args);
      server = result.response.headers?.server;
      return result;
    },
    { step: 'deserialize' },
  );
  await client.send(command);
  return server;
}

describe('the edge endpoint', () => {
  it.skipIf(external)('routes each service by its SigV4 credential scope to its emulator', async () => {
    const config = clientConfig();
    expect(await serverHeaderOf(new DynamoDBClient(config) as unknown as Sender, new ListTablesCommand({}))).toMatch(/^Jetty/);
    expect(await serverHeaderOf(new SQSClient(config) as unknown as Sender, new ListQueuesCommand({}))).toMatch(/^pekko-http/);
    expect(await serverHeaderOf(new S3Client({ ...config, forcePathStyle: true }) as unknown as Sender, new ListBucketsCommand({}))).toMatch(/^Werkzeug/);
    expect(await serverHeaderOf(new SFNClient(config) as unknown as Sender, new ListStateMachinesCommand({}))).toMatch(/^Werkzeug/);
  });
});

describe('DynamoDB (DynamoDB Local)', () => {
  it('cancels a transaction whose condition check fails, with reason ConditionalCheckFailed, and writes nothing', async () => {
    const client = new DynamoDBClient(clientConfig());
    const doc = DynamoDBDocumentClient.from(client);
    const table = unique('cairn-state');
    await client.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    );
    await doc.send(new PutCommand({ TableName: table, Item: { pk: 'epoch', value: 1 } }));

    const error = await doc
      .send(
        new TransactWriteCommand({
          TransactItems: [
            {
              ConditionCheck: {
                TableName: table,
                Key: { pk: 'epoch' },
                ConditionExpression: '#v = :expected',
                ExpressionAttributeNames: { '#v': 'value' },
                ExpressionAttributeValues: { ':expected': 2 },
              },
            },
            { Put: { TableName: table, Item: { pk: 'commit', value: 7 } } },
          ],
        }),
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );

    expect(error).toBeInstanceOf(TransactionCanceledException);
    const reasons = (error as TransactionCanceledException).CancellationReasons?.map((r) => r.Code);
    expect(reasons).toEqual(['ConditionalCheckFailed', 'None']);
    const written = await doc.send(new GetCommand({ TableName: table, Key: { pk: 'commit' }, ConsistentRead: true }));
    expect(written.Item).toBeUndefined();

    client.destroy();
  });
});

describe('SQS (ElasticMQ)', () => {
  const sqs = (): SQSClient => new SQSClient(clientConfig());

  async function receiveAll(client: SQSClient, queueUrl: string, count: number): Promise<Message[]> {
    const got: Message[] = [];
    await until(`${count} messages`, async () => {
      const r = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
      got.push(...(r.Messages ?? []));
      return got.length >= count ? got : undefined;
    });
    return got;
  }

  it('hands out queue URLs on the edge endpoint', async () => {
    const client = sqs();
    const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: unique('cairn-url') }));
    expect(new URL(QueueUrl ?? '').port).toBe(new URL(endpoint).port);
    client.destroy();
  });

  it('delivers a FIFO group in order and drops a duplicate deduplication id', async () => {
    const client = sqs();
    const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: `${unique('cairn-fifo')}.fifo`, Attributes: { FifoQueue: 'true', ContentBasedDeduplication: 'false' } }));
    const queueUrl = QueueUrl ?? '';
    for (const n of [1, 2, 3]) {
      await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: `m${n}`, MessageGroupId: 'g', MessageDeduplicationId: `d${n}` }));
    }
    // Same deduplication id within the 5-minute window: accepted by the API, never delivered.
    await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'm2-again', MessageGroupId: 'g', MessageDeduplicationId: 'd2' }));

    const messages = await receiveAll(client, queueUrl, 3);
    expect(messages.map((m) => m.Body)).toEqual(['m1', 'm2', 'm3']);
    for (const m of messages) await client.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }));

    const rest = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect(rest.Messages ?? []).toEqual([]);
    client.destroy();
  });

  it('moves a message to the dead-letter queue after maxReceiveCount receives', async () => {
    const client = sqs();
    const base = unique('cairn-redrive');
    const dlq = await client.send(new CreateQueueCommand({ QueueName: `${base}-dlq.fifo`, Attributes: { FifoQueue: 'true' } }));
    const dlqUrl = dlq.QueueUrl ?? '';
    const dlqArn = (await client.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
    expect(dlqArn).toMatch(/^arn:aws:sqs:us-east-1:\d{12}:/);
    const main = await client.send(
      new CreateQueueCommand({
        QueueName: `${base}.fifo`,
        Attributes: {
          FifoQueue: 'true',
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 2 }),
        },
      }),
    );
    const queueUrl = main.QueueUrl ?? '';
    await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'poison', MessageGroupId: 'g', MessageDeduplicationId: 'p1' }));

    // Two receives that never delete (visibility 0: back at once), then the third finds it gone.
    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, VisibilityTimeout: 0, WaitTimeSeconds: 1 }));
      expect(r.Messages?.map((m) => m.Body)).toEqual(['poison']);
    }
    const third = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1 }));
    expect(third.Messages ?? []).toEqual([]);

    const dead = await receiveAll(client, dlqUrl, 1);
    expect(dead.map((m) => m.Body)).toEqual(['poison']);
    client.destroy();
  });
});

describe('S3 (moto)', () => {
  it('returns the object that was put', async () => {
    const s3 = new S3Client({ ...clientConfig(), forcePathStyle: true });
    const bucket = unique('cairn-blobs');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const body = JSON.stringify({ checkpoint: 42, keys: ['a', 'b'] });
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'checkpoints/42/state.json', Body: body, ContentType: 'application/json' }));
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'checkpoints/42/state.json' }));
    expect(await got.Body?.transformToString()).toBe(body);
    expect(got.ContentType).toBe('application/json');
    s3.destroy();
  });

  it('streams a multi-megabyte object through the edge both ways', async () => {
    // Bodies this large make the SDK send `Expect: 100-continue`.
    const s3 = new S3Client({ ...clientConfig(), forcePathStyle: true });
    const bucket = unique('cairn-big');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const body = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31) % 251;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'snapshot.bin', Body: body }));
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'snapshot.bin' }));
    const bytes = Buffer.from((await got.Body?.transformToByteArray()) ?? []);
    expect(bytes.length).toBe(body.length);
    expect(bytes.equals(body)).toBe(true);
    s3.destroy();
  });
});

describe('Step Functions (moto, executing the ASL)', () => {
  it('runs a Pass-state machine to SUCCEEDED with the exact output', async () => {
    const sfn = new SFNClient(clientConfig());
    const definition = {
      StartAt: 'Stamp',
      States: {
        Stamp: { Type: 'Pass', Result: { stamped: true, epoch: 3 }, ResultPath: '$.stamp', Next: 'Done' },
        Done: { Type: 'Pass', End: true },
      },
    };
    const { stateMachineArn } = await sfn.send(
      new CreateStateMachineCommand({
        name: unique('cairn-pass'),
        definition: JSON.stringify(definition),
        roleArn: 'arn:aws:iam::123456789012:role/cairn-coordinator',
      }),
    );
    const { executionArn } = await sfn.send(new StartExecutionCommand({ stateMachineArn, input: JSON.stringify({ job: 'word-count' }) }));

    const done = await executionEnded(sfn, executionArn ?? '');
    expect(done.status).toBe('SUCCEEDED');
    expect(JSON.parse(done.output ?? 'null')).toEqual({ job: 'word-count', stamp: { stamped: true, epoch: 3 } });
    sfn.destroy();
  });

  it('makes its own DynamoDB and SQS calls through the edge, reaching the same emulators as the tests', async () => {
    const sfn = new SFNClient(clientConfig());
    const ddb = new DynamoDBClient(clientConfig());
    const sqs = new SQSClient(clientConfig());
    const table = unique('cairn-sfn-table');
    await ddb.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    );
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: unique('cairn-sfn-queue') }));
    const definition = {
      StartAt: 'Record',
      States: {
        Record: {
          Type: 'Task',
          Resource: 'arn:aws:states:::dynamodb:putItem',
          Parameters: { TableName: table, Item: { pk: { S: 'checkpoint' }, 'id.$': '$.id' } },
          ResultPath: null,
          Next: 'Announce',
        },
        Announce: {
          Type: 'Task',
          Resource: 'arn:aws:states:::sqs:sendMessage',
          Parameters: { QueueUrl, 'MessageBody.$': "States.Format('checkpoint {} done', $.id.N)" },
          ResultPath: null,
          End: true,
        },
      },
    };
    const { stateMachineArn } = await sfn.send(
      new CreateStateMachineCommand({ name: unique('cairn-tasks'), definition: JSON.stringify(definition), roleArn: 'arn:aws:iam::123456789012:role/cairn-coordinator' }),
    );
    const { executionArn } = await sfn.send(new StartExecutionCommand({ stateMachineArn, input: JSON.stringify({ id: { N: '9' } }) }));
    const done = await executionEnded(sfn, executionArn ?? '');
    expect(done.status, done.cause ?? done.error).toBe('SUCCEEDED');

    const item = await ddb.send(new GetItemCommand({ TableName: table, Key: { pk: { S: 'checkpoint' } }, ConsistentRead: true }));
    expect(item.Item).toEqual({ pk: { S: 'checkpoint' }, id: { N: '9' } });
    const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 2 }));
    expect(r.Messages?.map((m) => m.Body)).toEqual(['checkpoint 9 done']);
    for (const c of [sfn, ddb, sqs]) c.destroy();
  });
});
