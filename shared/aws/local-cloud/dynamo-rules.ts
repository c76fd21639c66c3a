import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { DynamoBillingMeter, itemSize, readUnits, type BillingTally } from '../adapters/dynamo-billing.js';
import { jsonResponse, parseJson, withJsonBody, type AwsRuleCounts, type EdgeResponse, type Forward, type ResolvedAwsRules } from './aws-rules.js';
import { LOCAL_CLOUD_ACCOUNT, LOCAL_CLOUD_REGION } from './local-cloud-constants.js';

/**
 * DynamoDB's rules that DynamoDB Local does not play, applied at the edge.
 *
 * Transaction conflicts. While a TransactWriteItems is in flight (forwarded, not yet
 * answered), the items it writes (Put, Update, Delete) are "in a transaction in progress". A
 * TransactWriteItems or TransactGetItems touching one of them (any action, ConditionCheck
 * included) is cancelled as AWS cancels it: TransactionCanceledException, one
 * CancellationReason per action, `TransactionConflict` for the items in conflict and `None`
 * for the others; a PutItem, UpdateItem or DeleteItem on such an item fails with
 * TransactionConflictException. Items only checked (ConditionCheck) by the ongoing
 * transaction do not conflict: DynamoDB rejects a transaction's prepare when another
 * transaction is writing the item (Distributed Transactions at Scale in Amazon DynamoDB,
 * USENIX ATC 2023, §3), and orders plain checks by timestamp. BatchWriteItem and reads are
 * not refused.
 *
 * Per-partition-key throughput. A token bucket per (table, partition key value) and per
 * kind (read, write) holds at most one second of the limit and refills at the limit per
 * second. A request is refused while a bucket it touches is empty (0 or less); an answered
 * request takes the units AWS bills for it (DynamoBillingMeter, item by item, 2x in
 * transactions), so a bucket may go below 0 and the key then waits until it refills. Refused:
 * single-item calls and queries with ProvisionedThroughputExceededException (ThrottlingReasons
 * `TableWriteKeyRangeThroughputExceeded` / `TableReadKeyRangeThroughputExceeded`, as AWS for
 * on-demand and provisioned tables alike; the SDK retries it), transactions with
 * TransactionCanceledException (reason `ThrottlingError` for the hot items), batch entries by
 * returning them in UnprocessedItems / UnprocessedKeys (the whole call refused only when every
 * entry is). Scans are not limited.
 *
 * Keys are read with each table's key schema, learnt from the CreateTable calls the edge
 * forwards; tables created otherwise are taken to have Cairn's `pk` / `sk`.
 */

type Item = Record<string, AttributeValue>;
type Input = Record<string, unknown>;

interface Schema {
  readonly hash: string;
  readonly range?: string;
}

interface Touch {
  /** table|key: one item. */
  readonly item: string;
  /** table|hash value: one partition key value. */
  readonly partition: string;
  readonly table: string;
  readonly writes: boolean;
}

const DEFAULT_SCHEMA: Schema = { hash: 'pk', range: 'sk' };
const EXCEPTION = 'com.amazonaws.dynamodb.v20120810#';
const CONFLICT_MESSAGE = 'Transaction is ongoing for the item';
const THROTTLE_MESSAGE =
  'Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. If exceptions persist, check if you have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html.';

class Bucket {
  private tokens: number;
  private at = Date.now();
  constructor(private readonly limit: number) {
    this.tokens = limit;
  }
  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.limit, this.tokens + ((now - this.at) / 1000) * this.limit);
    this.at = now;
  }
  empty(): boolean {
    this.refill();
    return this.tokens <= 0;
  }
  take(units: number): void {
    this.refill();
    this.tokens -= units;
  }
}

export class DynamoRules {
  private readonly schemas = new Map<string, Schema>();
  /** item -> number of in-flight transactions writing it. */
  private readonly writing = new Map<string, number>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly meter = new DynamoBillingMeter();

  constructor(
    private readonly rules: ResolvedAwsRules,
    private readonly counts: AwsRuleCounts,
  ) {}

  async handle(op: string, text: string, forward: Forward): Promise<EdgeResponse> {
    let input: Input;
    try {
      input = JSON.parse(text) as Input;
    } catch {
      return forward(text);
    }
    if (op === 'CreateTable') this.learnSchema(input);
    const touches = this.touches(op, input);

    if (this.rules.transactionConflicts) {
      const refused = this.conflict(op, touches);
      if (refused) return refused;
    }
    let forwarded = input;
    const throttledEntries: { writes: unknown[]; reads: Record<string, Item[]> } = { writes: [], reads: {} };
    if (this.limited()) {
      const hot = touches.map((t) => this.hot(t));
      if (hot.some((h) => h)) {
        const partial = this.throttle(op, input, touches, hot, throttledEntries);
        if ('refusal' in partial) return partial.refusal;
        forwarded = partial.input;
      }
    }

    const written = op === 'TransactWriteItems' ? touches.filter((t) => t.writes).map((t) => t.item) : [];
    for (const item of written) this.writing.set(item, (this.writing.get(item) ?? 0) + 1);
    let response: EdgeResponse;
    try {
      response = await forward(forwarded === input ? text : JSON.stringify(forwarded));
    } finally {
      for (const item of written) {
        const n = (this.writing.get(item) ?? 1) - 1;
        if (n === 0) this.writing.delete(item);
        else this.writing.set(item, n);
      }
    }
    const output = parseJson(response);
    const error = typeof output.__type === 'string' ? (output.__type.split('#').pop() ?? '') : undefined;
    const applied = response.status === 200;
    if (applied || error === 'ConditionalCheckFailedException' || error === 'TransactionCanceledException') this.charge(op, forwarded, applied ? output : {}, applied);
    if (applied && (throttledEntries.writes.length > 0 || Object.keys(throttledEntries.reads).length > 0)) return this.withUnprocessed(op, response, output, throttledEntries);
    return response;
  }

  // ---------- keys ----------

  private learnSchema(input: Input): void {
    const keySchema = (input.KeySchema ?? []) as Array<{ AttributeName: string; KeyType: string }>;
    const hash = keySchema.find((k) => k.KeyType === 'HASH')?.AttributeName;
    const range = keySchema.find((k) => k.KeyType === 'RANGE')?.AttributeName;
    if (typeof input.TableName === 'string' && hash !== undefined) this.schemas.set(input.TableName, range === undefined ? { hash } : { hash, range });
  }

  private touch(table: string, keyOrItem: Item, writes: boolean): Touch {
    const schema = this.schemas.get(table) ?? DEFAULT_SCHEMA;
    const hash = JSON.stringify(keyOrItem[schema.hash] ?? null);
    const range = schema.range === undefined ? '' : JSON.stringify(keyOrItem[schema.range] ?? null);
    return { item: `${table}|${hash}|${range}`, partition: `${table}|${hash}`, table, writes };
  }

  /** The items a request touches, in request order (a transaction: one per action). */
  private touches(op: string, input: Input): Touch[] {
    const table = input.TableName as string;
    switch (op) {
      case 'PutItem':
        return [this.touch(table, input.Item as Item, true)];
      case 'UpdateItem':
      case 'DeleteItem':
        return [this.touch(table, input.Key as Item, true)];
      case 'GetItem':
        return [this.touch(table, input.Key as Item, false)];
      case 'TransactWriteItems':
        return ((input.TransactItems ?? []) as Array<Record<string, Input>>).map((action) => {
          const [kind, body] = Object.entries(action)[0] as [string, Input];
          return this.touch(body.TableName as string, (body.Item ?? body.Key) as Item, kind !== 'ConditionCheck');
        });
      case 'TransactGetItems':
        return ((input.TransactItems ?? []) as Array<{ Get: Input }>).map((a) => this.touch(a.Get.TableName as string, a.Get.Key as Item, false));
      case 'BatchWriteItem':
        return Object.entries((input.RequestItems ?? {}) as Record<string, Array<{ PutRequest?: { Item: Item }; DeleteRequest?: { Key: Item } }>>).flatMap(([t, requests]) =>
          requests.map((r) => this.touch(t, (r.PutRequest?.Item ?? r.DeleteRequest?.Key) as Item, true)),
        );
      case 'BatchGetItem':
        return Object.entries((input.RequestItems ?? {}) as Record<string, { Keys: Item[] }>).flatMap(([t, request]) => request.Keys.map((k) => this.touch(t, k, false)));
      case 'Query': {
        const hash = queriedHash(input, (this.schemas.get(table) ?? DEFAULT_SCHEMA).hash);
        return hash === undefined ? [] : [{ item: `${table}|query`, partition: `${table}|${JSON.stringify(hash)}`, table, writes: false }];
      }
      default:
        return [];
    }
  }

  // ---------- transaction conflicts ----------

  private conflict(op: string, touches: readonly Touch[]): EdgeResponse | undefined {
    if (this.writing.size === 0) return undefined;
    const conflicting = touches.map((t) => this.writing.has(t.item));
    if (!conflicting.some((c) => c)) return undefined;
    if (op === 'TransactWriteItems' || op === 'TransactGetItems') {
      this.counts.transactionConflicts++;
      return cancelled(conflicting.map((c) => (c ? { Code: 'TransactionConflict', Message: CONFLICT_MESSAGE } : { Code: 'None' })));
    }
    if (op === 'PutItem' || op === 'UpdateItem' || op === 'DeleteItem') {
      this.counts.transactionConflicts++;
      return jsonResponse(400, { __type: `${EXCEPTION}TransactionConflictException`, message: CONFLICT_MESSAGE });
    }
    return undefined;
  }

  // ---------- throughput ----------

  private limited(): boolean {
    return this.rules.partitionWriteUnitsPerSecond > 0 || this.rules.partitionReadUnitsPerSecond > 0;
  }

  private bucket(partition: string, writes: boolean): Bucket | undefined {
    const limit = writes ? this.rules.partitionWriteUnitsPerSecond : this.rules.partitionReadUnitsPerSecond;
    if (limit <= 0) return undefined;
    const id = `${writes ? 'w' : 'r'}|${partition}`;
    let bucket = this.buckets.get(id);
    if (!bucket) {
      bucket = new Bucket(limit);
      this.buckets.set(id, bucket);
    }
    return bucket;
  }

  private hot(t: Touch): boolean {
    return this.bucket(t.partition, t.writes)?.empty() ?? false;
  }

  /** The refusal of a throttled request, or the input without its throttled batch entries. */
  private throttle(
    op: string,
    input: Input,
    touches: readonly Touch[],
    hot: readonly boolean[],
    left: { writes: unknown[]; reads: Record<string, Item[]> },
  ): { refusal: EdgeResponse } | { input: Input } {
    const count = (): void => {
      touches.forEach((t, i) => {
        if (!hot[i]) return;
        if (t.writes) this.counts.throttledWrites++;
        else this.counts.throttledReads++;
      });
    };
    if (op === 'TransactWriteItems' || op === 'TransactGetItems') {
      count();
      return { refusal: cancelled(hot.map((h) => (h ? { Code: 'ThrottlingError', Message: THROTTLE_MESSAGE } : { Code: 'None' }))) };
    }
    if ((op === 'BatchWriteItem' || op === 'BatchGetItem') && hot.some((h) => !h)) {
      count();
      let i = 0;
      if (op === 'BatchWriteItem') {
        const requestItems: Record<string, unknown[]> = {};
        for (const [t, requests] of Object.entries(input.RequestItems as Record<string, unknown[]>)) {
          const kept: unknown[] = [];
          for (const r of requests) {
            if (hot[i++]) left.writes.push({ table: t, request: r });
            else kept.push(r);
          }
          if (kept.length > 0) requestItems[t] = kept;
        }
        return { input: { ...input, RequestItems: requestItems } };
      }
      const requestItems: Record<string, Input> = {};
      for (const [t, request] of Object.entries(input.RequestItems as Record<string, Input & { Keys: Item[] }>)) {
        const kept: Item[] = [];
        for (const k of request.Keys) {
          if (hot[i++]) (left.reads[t] ??= []).push(k);
          else kept.push(k);
        }
        if (kept.length > 0) requestItems[t] = { ...request, Keys: kept };
      }
      return { input: { ...input, RequestItems: requestItems } };
    }
    count();
    const writes = touches.some((t, i) => hot[i] && t.writes);
    const table = touches.find((_, i) => hot[i])?.table ?? '';
    return {
      refusal: jsonResponse(400, {
        __type: `${EXCEPTION}ProvisionedThroughputExceededException`,
        message: THROTTLE_MESSAGE,
        ThrottlingReasons: [{ reason: writes ? 'TableWriteKeyRangeThroughputExceeded' : 'TableReadKeyRangeThroughputExceeded', resource: tableArn(table) }],
      }),
    };
  }

  private withUnprocessed(op: string, response: EdgeResponse, output: Input, left: { writes: unknown[]; reads: Record<string, Item[]> }): EdgeResponse {
    if (op === 'BatchWriteItem') {
      const unprocessed = { ...((output.UnprocessedItems ?? {}) as Record<string, unknown[]>) };
      for (const { table, request } of left.writes as Array<{ table: string; request: unknown }>) unprocessed[table] = [...(unprocessed[table] ?? []), request];
      return withJsonBody(response, { ...output, UnprocessedItems: unprocessed });
    }
    const unprocessed = { ...((output.UnprocessedKeys ?? {}) as Record<string, Input & { Keys: Item[] }>) };
    for (const [table, keys] of Object.entries(left.reads)) unprocessed[table] = { ...(unprocessed[table] ?? {}), Keys: [...(unprocessed[table]?.Keys ?? []), ...keys] };
    return withJsonBody(response, { ...output, UnprocessedKeys: unprocessed });
  }

  /** Takes the units AWS bills for an answered request from the buckets of the keys it touched. */
  private charge(op: string, input: Input, output: Input, applied: boolean): void {
    const take = (t: Touch, units: BillingTally): void => {
      if (units.write > 0) this.bucket(t.partition, true)?.take(units.write);
      if (units.read > 0) this.bucket(t.partition, false)?.take(units.read);
    };
    const bill = (subOp: string, subInput: Input, subOutput: Input): BillingTally => {
      const tally = { read: 0, write: 0 };
      this.meter.bill(subOp, subInput, subOutput, tally, applied);
      return tally;
    };
    switch (op) {
      case 'PutItem':
      case 'UpdateItem':
      case 'DeleteItem':
      case 'GetItem':
      case 'Query': {
        const [t] = this.touches(op, input);
        if (t) take(t, bill(op, input, output));
        return;
      }
      case 'TransactWriteItems':
        for (const action of (input.TransactItems ?? []) as Array<Record<string, Input>>) {
          const [t] = this.touches(op, { TransactItems: [action] });
          if (t) take(t, bill(op, { TransactItems: [action] }, {}));
        }
        return;
      case 'TransactGetItems':
        for (const [i, t] of this.touches(op, input).entries()) {
          const item = ((output.Responses ?? []) as Array<{ Item?: Item }>)[i]?.Item;
          take(t, { read: 2 * readUnits(itemSize(item), true), write: 0 });
        }
        return;
      case 'BatchWriteItem': {
        const unprocessed = new Set(Object.entries((output.UnprocessedItems ?? {}) as Record<string, unknown[]>).flatMap(([t, rs]) => rs.map((r) => `${t}|${JSON.stringify(r)}`)));
        for (const [table, requests] of Object.entries((input.RequestItems ?? {}) as Record<string, unknown[]>)) {
          for (const r of requests) {
            if (unprocessed.has(`${table}|${JSON.stringify(r)}`)) continue;
            const sub = { RequestItems: { [table]: [r] } };
            const [t] = this.touches(op, sub);
            if (t) take(t, bill(op, sub, {}));
          }
        }
        return;
      }
      case 'BatchGetItem': {
        const responses = (output.Responses ?? {}) as Record<string, Item[]>;
        const unprocessed = (output.UnprocessedKeys ?? {}) as Record<string, { Keys: Item[] }>;
        for (const [table, request] of Object.entries((input.RequestItems ?? {}) as Record<string, { Keys: Item[]; ConsistentRead?: boolean }>)) {
          const found = new Map((responses[table] ?? []).map((item) => [this.touch(table, item, false).item, item]));
          const skipped = new Set((unprocessed[table]?.Keys ?? []).map((k) => this.touch(table, k, false).item));
          for (const key of request.Keys) {
            const t = this.touch(table, key, false);
            if (skipped.has(t.item)) continue;
            const item = found.get(t.item);
            take(t, bill('GetItem', { TableName: table, Key: key, ConsistentRead: request.ConsistentRead === true }, item ? { Item: item } : {}));
          }
        }
        return;
      }
      default:
        return;
    }
  }
}

function cancelled(reasons: ReadonlyArray<{ Code: string; Message?: string }>): EdgeResponse {
  return jsonResponse(400, {
    __type: `${EXCEPTION}TransactionCanceledException`,
    Message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons.map((r) => r.Code).join(', ')}]`,
    CancellationReasons: reasons,
  });
}

function tableArn(table: string): string {
  return `arn:aws:dynamodb:${LOCAL_CLOUD_REGION}:${LOCAL_CLOUD_ACCOUNT}:table/${table}`;
}

/** The partition key value of a Query's `KeyConditionExpression` (`#pk = :v` or `pk = :v`, first clause). */
function queriedHash(input: Input, hashName: string): AttributeValue | undefined {
  const expression = input.KeyConditionExpression;
  if (typeof expression !== 'string') return undefined;
  const names = (input.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const values = (input.ExpressionAttributeValues ?? {}) as Record<string, AttributeValue>;
  for (const [, name, value] of expression.matchAll(/([#\w.]+)\s*=\s*(:[\w]+)/g)) {
    if ((names[name as string] ?? name) === hashName) return values[value as string];
  }
  return undefined;
}
