import { DynamoBillingMeter } from './dynamo-billing.js';

/**
 * Counts AWS requests by service and operation: an SDK v3 middleware in the `deserialize`
 * step, which runs inside the retry loop, so every HTTP attempt (retries included, as AWS
 * bills them) counts once. Attach it to any client (DynamoDB, the DocumentClient built from
 * it shares its stack, SQS, S3, SFN...). Used for "AWS requests per 1,000 events".
 */

interface Stackful {
  readonly middlewareStack: {
    add(middleware: unknown, options: { step: 'deserialize'; name: string; override: boolean }): void;
  };
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
  /** DynamoDB request units billed by AWS's rules (with `dynamoCapacity`). */
  readonly capacity = { read: 0, write: 0 };
  private meter: DynamoBillingMeter | undefined;

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
        return next(args);
      },
      { step: 'deserialize', name: 'cairnRequestCounter', override: true },
    );
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

  reset(): void {
    this.counts.clear();
    this.capacity.read = 0;
    this.capacity.write = 0;
  }
}

function serviceOf(clientName: string | undefined): string {
  const name = (clientName ?? 'Unknown').replace(/Client$/, '');
  return name === 'DynamoDBDocument' ? 'DynamoDB' : name;
}
