/**
 * Counts AWS requests by service and operation: an SDK v3 middleware in the `deserialize`
 * step, which runs inside the retry loop, so every HTTP attempt (retries included, as AWS
 * bills them) counts once. Attach it to any client (DynamoDB, the DocumentClient built from
 * it shares its stack, SQS, S3, SFN...). Used for "AWS requests per 1,000 events".
 */

interface Stackful {
  readonly middlewareStack: {
    add(middleware: unknown, options: { step: 'initialize' | 'deserialize'; name: string; override: boolean; priority?: 'high' | 'normal' | 'low' }): void;
  };
}

interface MiddlewareContext {
  readonly clientName?: string;
  readonly commandName?: string;
}

/** DynamoDB operations that report ConsumedCapacity, and whether they consume write units. */
const CAPACITY_OPERATIONS: Readonly<Record<string, 'read' | 'write'>> = {
  GetItem: 'read',
  BatchGetItem: 'read',
  Query: 'read',
  Scan: 'read',
  TransactGetItems: 'read',
  PutItem: 'write',
  UpdateItem: 'write',
  DeleteItem: 'write',
  BatchWriteItem: 'write',
  TransactWriteItems: 'write',
};

interface CapacityEntry {
  readonly CapacityUnits?: number;
}

export interface RequestCounterOptions {
  /**
   * Also ask DynamoDB for ConsumedCapacity on every request (ReturnConsumedCapacity TOTAL) and
   * sum read and write request units, which is what on-demand tables are billed by (a
   * transactional write costs twice a plain one; items are billed per KB).
   */
  readonly dynamoCapacity?: boolean;
}

export class RequestCounter {
  private readonly counts = new Map<string, number>();
  /** DynamoDB request units consumed (with `dynamoCapacity`). */
  readonly capacity = { read: 0, write: 0 };

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
    if (this.options.dynamoCapacity) {
      stack.add(
        (next: (args: unknown) => Promise<unknown>, context: MiddlewareContext) => async (args: unknown) => {
          const op = (context.commandName ?? '').replace(/Command$/, '');
          const input = (args as { input?: Record<string, unknown> }).input;
          if (input && CAPACITY_OPERATIONS[op] && input.ReturnConsumedCapacity === undefined) input.ReturnConsumedCapacity = 'TOTAL';
          const result = await next(args);
          this.addCapacity(op, result);
          return result;
        },
        // Outermost step: sees the parsed output (once per request, after any retries).
        { step: 'initialize', name: 'cairnCapacityRequest', override: true, priority: 'low' },
      );
    }
    return client;
  }

  private addCapacity(operation: string, result: unknown): void {
    const kind = CAPACITY_OPERATIONS[operation];
    const consumed = (result as { output?: { ConsumedCapacity?: CapacityEntry | CapacityEntry[] } }).output?.ConsumedCapacity;
    if (!kind || !consumed) return;
    const units = (Array.isArray(consumed) ? consumed : [consumed]).reduce((sum, c) => sum + (c.CapacityUnits ?? 0), 0);
    this.capacity[kind] += units;
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
