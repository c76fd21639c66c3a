import { randomUUID } from 'node:crypto';
import type { SQSRecord } from 'aws-lambda';
import { wordCount } from '../../examples/word-count.js';
import { parseRuntimeLimits } from '../../shared/core/config.js';
import { createIngestHandler, type IngestHandler, type IngestHandlerDeps } from '../../shared/lambda/ingest-handler.js';
import { Readable } from 'node:stream';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { StepCommit, StateWrite, InstanceRecord } from '../../shared/core/ports.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import { inject } from 'vitest';
import { createAwsStores, deleteJobTable, type AwsStores, type AwsStoresOptions } from '../../shared/aws/index.js';

export const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

export function cloudEndpoint(): string {
  const url = (inject as (key: string) => unknown)('cloudEndpoint') as string | undefined;
  if (!url) throw new Error('no cloud endpoint');
  return url;
}

export const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 10)}`;

/** Stores over a fresh table; `done()` deletes the table and closes the clients. */
export async function freshStores(options: Partial<AwsStoresOptions> = {}): Promise<AwsStores & { table: string; done(): Promise<void> }> {
  const table = options.tableName ?? unique('cairn-aws');
  const stores = await createAwsStores({
    tableName: table,
    bucket: 'cairn-aws-tests',
    endpoint: cloudEndpoint(),
    region: 'us-east-1',
    credentials,
    provision: true,
    ...options,
  });
  return {
    ...stores,
    table,
    done: async () => {
      await deleteJobTable(stores.clients.dynamo, table);
      stores.destroy();
    },
  };
}

interface RawRequest {
  readonly headers: Record<string, string>;
  readonly body?: unknown;
}
interface RawResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: unknown;
}

/**
 * An HTTP handler for SDK clients that lets a test rewrite what the emulator answers (or answer
 * itself): `intercept(operation, attempt)` returns a replacement response, or a function that
 * rewrites the real response's JSON body, or undefined to pass through.
 */
export function interceptingHandler(intercept: (operation: string, call: number) => { status: number; body: unknown } | ((json: Record<string, unknown>) => Record<string, unknown>) | undefined): {
  handle(request: RawRequest, options?: unknown): Promise<{ response: RawResponse }>;
} {
  const inner = new NodeHttpHandler();
  const calls = new Map<string, number>();
  return {
    async handle(request: RawRequest, options?: unknown) {
      const target = request.headers['x-amz-target'] ?? request.headers['X-Amz-Target'] ?? '';
      const operation = target.slice(target.indexOf('.') + 1);
      const call = (calls.get(operation) ?? 0) + 1;
      calls.set(operation, call);
      const action = intercept(operation, call);
      if (action && typeof action !== 'function') {
        const text = JSON.stringify(action.body);
        return {
          response: {
            statusCode: action.status,
            headers: { 'content-type': 'application/x-amz-json-1.0', 'content-length': String(Buffer.byteLength(text)) },
            body: Readable.from([Buffer.from(text)]),
          },
        };
      }
      const out = (await inner.handle(request as never, options as never)) as unknown as { response: RawResponse };
      if (!action) return out;
      const chunks: Buffer[] = [];
      for await (const chunk of out.response.body as AsyncIterable<Buffer>) chunks.push(Buffer.from(chunk));
      const text = JSON.stringify(action(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>));
      const headers: Record<string, string> = { ...out.response.headers, 'content-length': String(Buffer.byteLength(text)) };
      delete headers['x-amz-crc32'];
      return { response: { ...out.response, headers, body: Readable.from([Buffer.from(text)]) } };
    },
  };
}

export const OP = 'op';
export const INSTANCE = 'op#0';

/** A step commit of `writes` over the record at `expectedVersion`, shaped as the engine shapes it. */
export function commitOf(expectedVersion: number, writes: StateWrite[], extra: Partial<StepCommit> = {}, record: Partial<InstanceRecord> = {}): StepCommit {
  return {
    instance: INSTANCE,
    operator: OP,
    generation: 1,
    expectedVersion,
    record: { ...initialInstanceRecord(INSTANCE, 1), version: expectedVersion + 1, ...record },
    stateWrites: writes,
    channelState: [],
    acks: [],
    staged: [],
    upserts: [],
    deadLetters: [],
    ...extra,
  };
}

/** An SQS record as a Lambda event source delivers it (what a handler test feeds a handler), with the message attributes given. */
export function sqsRecord(messageId: string, body: string, attributes: Readonly<Record<string, string>> = {}): SQSRecord {
  return {
    messageId,
    body,
    receiptHandle: messageId,
    attributes: {},
    messageAttributes: Object.fromEntries(Object.entries(attributes).map(([k, v]) => [k, { stringValue: v, dataType: 'String' }])),
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:1:ingress',
    awsRegion: 'us-east-1',
  } as unknown as SQSRecord;
}

/** The ingest handler of the word-count example over `stores` (polls go nowhere). */
export function wordCountIngest(stores: AwsStores, extra: Partial<IngestHandlerDeps> = {}): IngestHandler {
  return createIngestHandler({
    job: wordCount.build(),
    limits: parseRuntimeLimits(),
    log: stores.sourceLog,
    deadLetters: stores.deadLetters,
    transport: { send: () => Promise.resolve() },
    checkpoints: stores.checkpoints,
    ...extra,
  });
}
