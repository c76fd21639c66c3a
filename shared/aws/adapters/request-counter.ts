import { DynamoBillingMeter, type BillingTally } from './dynamo-billing.js';

/**
 * Counts AWS requests by service and operation: an SDK v3 middleware in the `deserialize`
 * step, which runs inside the retry loop, so every HTTP attempt (retries included, as AWS
 * bills them) counts once; `calls()` leaves the SDK's retries out. Attach it to any client (DynamoDB, the DocumentClient built from
 * it shares its stack, SQS, S3, SFN...). Used for "AWS requests per 1,000 events". SQS
 * requests are also tallied as AWS bills them (`sqsSnapshot`: per 64 KiB chunk of payload, by
 * standard / FIFO queue), for `npm run bench:cost`.
 */

interface Stackful {
  readonly middlewareStack: {
    add(middleware: unknown, options: { step: 'deserialize'; name: string; override: boolean }): void;
  };
}

interface InitializeStackful {
  readonly middlewareStack: { add(middleware: unknown, options: { step: 'initialize'; name: string; override: boolean }): void };
}

interface MiddlewareContext {
  readonly clientName?: string;
  readonly commandName?: string;
}

export interface RequestCounterOptions {
  /**
   * Also bill DynamoDB's request units as AWS's on-demand pricing does, from the item sizes sent
   * and received (DynamoBillingMeter), not from the emulator's ConsumedCapacity report. Counters
   * of clients that write the same table share one meter (its before images).
   */
  readonly dynamoCapacity?: boolean | DynamoBillingMeter;
}

export class RequestCounter {
  private readonly counts = new Map<string, number>();
  private readonly retried = new Map<string, number>();
  /** DynamoDB request units billed by AWS's rules (with `dynamoCapacity`), in all and by item kind. */
  readonly capacity: Required<BillingTally> = { read: 0, write: 0, byItem: {} };
  private meter: DynamoBillingMeter | undefined;
  private readonly sqs = new Map<string, SqsTally>();

  constructor(private readonly options: RequestCounterOptions = {}) {}

  /** Adds the counting middleware to `client`; `service` defaults to the client's name (DynamoDB, SQS, S3...). */
  attach<C extends object>(client: C, service?: string): C {
    const stack = (client as unknown as Stackful).middlewareStack;
    stack.add(
      (next: (args: unknown) => Promise<unknown>, context: MiddlewareContext) => (args: unknown) => {
        const svc = service ?? serviceOf(context.clientName);
        const op = (context.commandName ?? 'Unknown').replace(/Command$/, '');
        const key = `${svc}.${op}`;
        this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
        if (isRetry(args)) this.retried.set(key, (this.retried.get(key) ?? 0) + 1);
        // SQS bills one request per started 64 KiB chunk of payload, at the queue's (standard/FIFO) price.
        if (svc === 'SQS') this.addSqs(op, (args as { input?: SqsInput }).input ?? {});
        return next(args);
      },
      { step: 'deserialize', name: 'cairnRequestCounter', override: true },
    );
    if ((service ?? serviceOf((client as { config?: { serviceId?: string } }).config?.serviceId)) === 'SQS') {
      // Received payloads are known once deserialized (outside the retry loop): their extra chunks.
      (client as unknown as InitializeStackful).middlewareStack.add(
        (next: (args: unknown) => Promise<{ output?: SqsOutput }>, context: MiddlewareContext) => async (args: unknown) => {
          const result = await next(args);
          if ((context.commandName ?? '') === 'ReceiveMessageCommand') this.addReceived((args as { input?: SqsInput }).input ?? {}, result?.output);
          return result;
        },
        { step: 'initialize', name: 'cairnSqsPayload', override: true },
      );
    }
    if (this.options.dynamoCapacity && (client as { config?: { serviceId?: string } }).config?.serviceId === 'DynamoDB') {
      const meter = this.options.dynamoCapacity === true ? (this.meter ??= new DynamoBillingMeter()) : this.options.dynamoCapacity;
      meter.attach(client, this.capacity);
    }
    return client;
  }

  /** Requests of one service (and operation), or all. */
  count(service?: string, operation?: string): number {
    let n = 0;
    for (const [key, c] of this.counts) {
      const [svc, op] = key.split('.') as [string, string];
      if ((service === undefined || svc === service) && (operation === undefined || op === operation)) n += c;
    }
    return n;
  }

  total(): number {
    return this.count();
  }

  /** `{ 'DynamoDB.TransactWriteItems': 3, 'SQS.SendMessageBatch': 1, ... }`, sorted by key. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort(([a], [b]) => a.localeCompare(b)));
  }

  /**
   * The requests the code issued, without the SDK's retries (a reset socket or a 5xx under load
   * repeats an attempt): the request plan a test asserts. `snapshot()` counts every attempt.
   */
  calls(): Record<string, number> {
    const calls = Object.entries(this.snapshot()).map(([key, n]) => [key, n - (this.retried.get(key) ?? 0)] as const);
    return Object.fromEntries(calls.filter(([, n]) => n > 0));
  }

  /**
   * SQS requests as AWS bills them, by `SQS.<Operation>` and queue kind (`fifo` / `standard`, from
   * the queue URL): `requests` made, `billed` requests (one per started 64 KiB chunk of payload:
   * message bodies plus message attributes sent, or received), `payloadBytes`, and `empty`
   * receives (no message). Counted for every SQS client the counter is attached to.
   */
  sqsSnapshot(): Record<string, SqsTally> {
    return Object.fromEntries([...this.sqs].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, { ...v }]));
  }

  private tally(op: string, input: SqsInput): SqsTally {
    const kind = (input.QueueUrl ?? '').endsWith('.fifo') ? 'fifo' : 'standard';
    const key = `SQS.${op}.${kind}`;
    const tally = this.sqs.get(key) ?? { requests: 0, billed: 0, payloadBytes: 0, empty: 0 };
    this.sqs.set(key, tally);
    return tally;
  }

  /** One attempt: billed by the payload it sends (receives and the rest: one chunk until their output is known). */
  private addSqs(op: string, input: SqsInput): void {
    let bytes = 0;
    if (op === 'SendMessage') bytes = messagePayloadBytes(input);
    else if (op === 'SendMessageBatch') bytes = (input.Entries ?? []).reduce((n, e) => n + messagePayloadBytes(e), 0);
    const tally = this.tally(op, input);
    tally.requests += 1;
    tally.billed += sqsBilledRequests(bytes);
    tally.payloadBytes += bytes;
  }

  private addReceived(input: SqsInput, output: SqsOutput | undefined): void {
    const messages = output?.Messages ?? [];
    const bytes = messages.reduce((n, m) => n + messagePayloadBytes(m), 0);
    const tally = this.tally('ReceiveMessage', input);
    tally.billed += sqsBilledRequests(bytes) - 1;
    tally.payloadBytes += bytes;
    if (messages.length === 0) tally.empty += 1;
  }

  reset(): void {
    this.counts.clear();
    this.retried.clear();
    this.sqs.clear();
    this.capacity.read = 0;
    this.capacity.write = 0;
    this.capacity.byItem = {};
  }
}

/** SQS requests of one operation and queue kind (see `RequestCounter.sqsSnapshot`). */
export interface SqsTally {
  requests: number;
  billed: number;
  payloadBytes: number;
  empty: number;
}

interface SqsMessageLike {
  readonly MessageBody?: string;
  readonly Body?: string;
  readonly MessageAttributes?: Record<string, { DataType?: string; StringValue?: string; BinaryValue?: Uint8Array }>;
}
type SqsInput = SqsMessageLike & { readonly QueueUrl?: string; readonly Entries?: readonly SqsMessageLike[] };
interface SqsOutput {
  readonly Messages?: readonly SqsMessageLike[];
}

export const SQS_CHUNK_BYTES = 64 * 1024;

/** AWS: every 64 KiB chunk of a request's payload is billed as one request (a 256 KiB SendMessageBatch is 4). */
export function sqsBilledRequests(payloadBytes: number): number {
  return Math.max(1, Math.ceil(payloadBytes / SQS_CHUNK_BYTES));
}

/** A message's payload as SQS sizes it: the body (UTF-8) plus each attribute's name, data type and value. */
export function messagePayloadBytes(message: SqsMessageLike): number {
  const utf8 = (s: string | undefined): number => (s === undefined ? 0 : Buffer.byteLength(s, 'utf8'));
  let n = utf8(message.MessageBody ?? message.Body);
  for (const [name, v] of Object.entries(message.MessageAttributes ?? {})) n += utf8(name) + utf8(v.DataType) + utf8(v.StringValue) + (v.BinaryValue?.byteLength ?? 0);
  return n;
}

/** The SDK's retry middleware numbers each attempt in the `amz-sdk-request` header (`attempt=2; max=3`). */
function isRetry(args: unknown): boolean {
  const header = (args as { request?: { headers?: Record<string, string> } }).request?.headers?.['amz-sdk-request'] ?? '';
  const attempt = /attempt=(\d+)/.exec(header)?.[1];
  return attempt !== undefined && Number(attempt) > 1;
}

function serviceOf(clientName: string | undefined): string {
  const name = (clientName ?? 'Unknown').replace(/Client$/, '');
  return name === 'DynamoDBDocument' ? 'DynamoDB' : name;
}
