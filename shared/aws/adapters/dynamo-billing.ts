import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';

/**
 * DynamoDB on-demand billing, applied to what the SDK sends and receives: item sizes as AWS
 * defines them, write units per 1 KB of the larger of the item's before and after images (two
 * per KB in a transaction, ConditionCheck included), read units per 4 KB (strongly consistent;
 * half for eventually consistent; a Query's items summed per call; a missing item still costs
 * one). DynamoDB Local's own ConsumedCapacity is not used: it bills a whole transaction about
 * as one write. The before images come from a shadow of the items this meter has seen written
 * or read (shared by every client it is attached to).
 */

type Item = Record<string, AttributeValue>;

const utf8 = (s: string): number => Buffer.byteLength(s, 'utf8');

/** Size of one attribute value (AWS: strings UTF-8, numbers ~1 byte per 2 significant digits + 1, lists/maps 3 + 1 per element). */
export function attributeSize(value: AttributeValue): number {
  if (value.S !== undefined) return utf8(value.S);
  if (value.N !== undefined) return numberSize(value.N);
  // A marshalled request read as JSON (the local cloud's edge) holds binary values as base64 text.
  if (value.B !== undefined) return binarySize(value.B);
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.SS !== undefined) return value.SS.reduce((n, s) => n + utf8(s), 0);
  if (value.NS !== undefined) return value.NS.reduce((n, s) => n + numberSize(s), 0);
  if (value.BS !== undefined) return value.BS.reduce((n, b) => n + binarySize(b), 0);
  if (value.L !== undefined) return 3 + value.L.reduce((n, v) => n + attributeSize(v) + 1, 0);
  if (value.M !== undefined) return 3 + Object.entries(value.M).reduce((n, [k, v]) => n + utf8(k) + attributeSize(v) + 1, 0);
  return 0;
}

function binarySize(value: Uint8Array | string): number {
  return typeof value === 'string' ? Buffer.from(value, 'base64').byteLength : value.byteLength;
}

function numberSize(text: string): number {
  const digits = text
    .replace(/^[-+]/, '')
    .replace(/[eE].*$/, '')
    .replace('.', '')
    .replace(/^0+/, '')
    .replace(/0+$/, '');
  return Math.ceil(Math.max(1, digits.length) / 2) + 1;
}

/** Size of an item: every attribute's name (UTF-8) plus its value. */
export function itemSize(item: Item | undefined): number {
  if (!item) return 0;
  return Object.entries(item).reduce((n, [name, value]) => n + utf8(name) + attributeSize(value), 0);
}

export const writeUnits = (bytes: number): number => Math.max(1, Math.ceil(bytes / 1024));
export const readUnits = (bytes: number, consistent: boolean): number => Math.max(1, Math.ceil(bytes / 4096)) * (consistent ? 1 : 0.5);

export interface BillingTally {
  read: number;
  write: number;
  /** The same units by item kind: the partition key's prefix up to its first `#` (`L#`, `K#`, `JOB`...), when present. */
  byItem?: Record<string, { read: number; write: number }>;
}

/** The item kind of a key for `BillingTally.byItem`: `pk` up to and including its first `#` (`I#`, `LD#`), or the whole `pk` (`JOB`, `CP`, `DL`). */
export function itemKindOf(pk: string): string {
  const hash = pk.indexOf('#');
  return hash < 0 ? pk : pk.slice(0, hash + 1);
}

function add(tally: BillingTally, kind: 'read' | 'write', units: number, pk: string | undefined): void {
  tally[kind] += units;
  if (!tally.byItem || units === 0) return;
  const item = (tally.byItem[itemKindOf(pk ?? '?')] ??= { read: 0, write: 0 });
  item[kind] += units;
}

interface Stackful {
  readonly middlewareStack: { add(middleware: unknown, options: { step: 'serialize'; name: string; override: boolean }): void };
}

type Input = Record<string, unknown>;

let attachments = 0;

export class DynamoBillingMeter {
  /** table|key -> the item as last written or read. */
  private readonly shadow = new Map<string, Item>();

  /** Counts the units of every request `client` makes into `tally` (retries of a failed request are billed by AWS as they reach it; throttled ones are not). */
  attach(client: object, tally: BillingTally): void {
    (client as Stackful).middlewareStack.add(
      (next: (args: unknown) => Promise<{ output: Input }>, context: { commandName?: string }) => async (args: unknown) => {
        const op = (context.commandName ?? '').replace(/Command$/, '');
        const input = (args as { input: Input }).input;
        try {
          const result = await next(args);
          this.bill(op, input, result.output, tally, true);
          return result;
        } catch (error) {
          // A conditional write refused still costs its write units; other failures (throttling) none.
          const name = (error as Error).name;
          if (name === 'ConditionalCheckFailedException' || name === 'TransactionCanceledException') this.bill(op, input, {}, tally, false);
          throw error;
        }
      },
      // Marshalled input and raw output (the DocumentClient's conversion wraps this step).
      { step: 'serialize', name: `cairnDynamoBilling${++attachments}`, override: true },
    );
  }

  /** The units of one request (exported for the tests of the rules). */
  bill(op: string, input: Input, output: Input, tally: BillingTally, applied: boolean): void {
    const table = input.TableName as string | undefined;
    const write = (t: string | undefined, keyOrItem: Item, after: (before: Item | undefined) => Item | undefined, factor = 1): void =>
      add(tally, 'write', factor * this.write(t, keyOrItem, after), keyOrItem.pk?.S);
    switch (op) {
      case 'PutItem':
        write(table, input.Item as Item, (before) => (applied ? (input.Item as Item) : before));
        return;
      case 'UpdateItem':
        write(table, input.Key as Item, (before) => (applied ? applyUpdate(before ?? (input.Key as Item), input) : before));
        return;
      case 'DeleteItem':
        write(table, input.Key as Item, (before) => (applied ? undefined : before));
        return;
      case 'BatchWriteItem': {
        type WriteRequest = { PutRequest?: { Item: Item }; DeleteRequest?: { Key: Item } };
        const unprocessed = (output.UnprocessedItems ?? {}) as Record<string, WriteRequest[]>;
        const idOf = (r: WriteRequest): string => (r.PutRequest ? `put|${keyOf('', wire(r.PutRequest.Item) as Item)}` : `delete|${keyOf('', wire(r.DeleteRequest?.Key) ?? {})}`);
        for (const [t, requests] of Object.entries(input.RequestItems as Record<string, WriteRequest[]>)) {
          const left = new Set((unprocessed[t] ?? []).map(idOf));
          for (const r of requests) {
            if (left.has(idOf(r))) continue;
            if (r.PutRequest) write(t, r.PutRequest.Item, () => r.PutRequest?.Item);
            else if (r.DeleteRequest) write(t, r.DeleteRequest.Key, () => undefined);
          }
        }
        return;
      }
      case 'TransactWriteItems':
        for (const action of input.TransactItems as Array<Record<string, Input>>) {
          const [kind, body] = Object.entries(action)[0] as [string, Input];
          const t = body.TableName as string;
          if (kind === 'Put') write(t, body.Item as Item, (before) => (applied ? (body.Item as Item) : before), 2);
          else if (kind === 'Update') write(t, body.Key as Item, (before) => (applied ? applyUpdate(before ?? (body.Key as Item), body) : before), 2);
          else if (kind === 'Delete') write(t, body.Key as Item, (before) => (applied ? undefined : before), 2);
          else add(tally, 'write', 2 * writeUnits(itemSize(this.shadow.get(keyOf(t, body.Key as Item)))), (body.Key as Item).pk?.S);
        }
        return;
      case 'GetItem': {
        const item = wire(output.Item as Item | undefined);
        const size = item ? this.readSize(table, item, input.ProjectionExpression !== undefined) : 0;
        add(tally, 'read', readUnits(size, input.ConsistentRead === true), (input.Key as Item).pk?.S);
        return;
      }
      case 'BatchGetItem':
        for (const [t, request] of Object.entries(input.RequestItems as Record<string, { Keys: Item[]; ConsistentRead?: boolean; ProjectionExpression?: string }>)) {
          const found = new Set<string>();
          for (const item of ((output.Responses as Record<string, Item[]> | undefined)?.[t] ?? []).map((i) => wire(i) as Item)) {
            found.add(keyOf(t, item));
            add(tally, 'read', readUnits(this.readSize(t, item, request.ProjectionExpression !== undefined), request.ConsistentRead === true), item.pk?.S);
          }
          const unprocessed = new Set(((output.UnprocessedKeys as Record<string, { Keys: Item[] }> | undefined)?.[t]?.Keys ?? []).map((k) => keyOf(t, wire(k) as Item)));
          // Keys asked for and not found cost one unit each too.
          for (const key of request.Keys) {
            const id = keyOf(t, key);
            if (!found.has(id) && !unprocessed.has(id)) add(tally, 'read', readUnits(0, request.ConsistentRead === true), key.pk?.S);
          }
        }
        return;
      case 'Query':
      case 'Scan': {
        const items = ((output.Items as Item[] | undefined) ?? []).map((i) => wire(i) as Item);
        const values = (input.ExpressionAttributeValues ?? {}) as Record<string, AttributeValue>;
        add(
          tally,
          'read',
          readUnits(
            items.reduce((n, item) => n + this.readSize(table, item, input.ProjectionExpression !== undefined), 0),
            input.ConsistentRead === true,
          ),
          items[0]?.pk?.S ?? values[':pk']?.S,
        );
        return;
      }
      default:
        return;
    }
  }

  /**
   * The size a read of `item` bills: AWS bills the whole item whatever a ProjectionExpression
   * returns, so a projected item counts as large as the shadow knows it. A whole item updates the
   * shadow.
   */
  private readSize(table: string | undefined, item: Item, projected: boolean): number {
    const key = keyOf(table, item);
    if (!projected) {
      this.shadow.set(key, item);
      return itemSize(item);
    }
    return Math.max(itemSize(item), itemSize(this.shadow.get(key)));
  }

  /** Units of one write: the larger of the before and after images; the shadow then holds the after image. */
  private write(table: string | undefined, keyOrItem: Item, after: (before: Item | undefined) => Item | undefined): number {
    const key = keyOf(table, keyOrItem);
    const before = this.shadow.get(key);
    const image = after(before);
    if (image) this.shadow.set(key, image);
    else this.shadow.delete(key);
    return writeUnits(Math.max(itemSize(before), itemSize(image)));
  }
}

/**
 * An item of a response as DynamoDB sent it. The DocumentClient's commands hand this middleware
 * their output already converted to plain values (`{ pk: 'L#0' }`, not `{ pk: { S: 'L#0' } }`):
 * those are marshalled back, or their sizes would read as 0.
 */
function wire(item: Item | Record<string, unknown> | undefined): Item | undefined {
  if (!item) return undefined;
  const pk = (item as Record<string, unknown>).pk;
  return pk === undefined || typeof pk === 'object' ? (item as Item) : marshall(item, { removeUndefinedValues: true });
}

function keyOf(table: string | undefined, item: Item): string {
  return `${table ?? ''}|${item.pk?.S ?? ''}|${item.sk?.S ?? ''}`;
}

/** Splits on the commas outside parentheses (`#a = :v, #b = if_not_exists(#b, :w)`). */
function topLevelParts(body: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '(') depth++;
    else if (body[i] === ')') depth--;
    else if (body[i] === ',' && depth === 0) {
      parts.push(body.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(body.slice(from));
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

/** The top-level SET / REMOVE / ADD forms the adapters use (`SET #a = :v, #b = #c, #e = if_not_exists(#e, :w) REMOVE #d ADD #n :n`). */
function applyUpdate(before: Item, input: Input): Item {
  const names = (input.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const values = (input.ExpressionAttributeValues ?? {}) as Record<string, AttributeValue>;
  const name = (token: string): string => names[token] ?? token;
  const item: Item = { ...before };
  const expression = (input.UpdateExpression as string | undefined) ?? '';
  for (const [, clause, body] of expression.matchAll(/\b(SET|REMOVE|ADD|DELETE)\s+(.*?)(?=\s+\b(?:SET|REMOVE|ADD|DELETE)\b|$)/g)) {
    for (const part of topLevelParts(body ?? '')) {
      if (clause === 'SET') {
        const [target, source] = part.split(/=(.*)/s).map((p) => p.trim()) as [string, string];
        const fallback = /^if_not_exists\(\s*([^,\s]+)\s*,\s*([^)\s]+)\s*\)$/.exec(source);
        const operand = (token: string): AttributeValue | undefined => (token.startsWith(':') ? values[token] : item[name(token)]);
        const value = fallback ? (item[name(fallback[1] as string)] ?? operand(fallback[2] as string)) : operand(source);
        if (value) item[name(target)] = value;
      } else if (clause === 'REMOVE') {
        delete item[name(part)];
      } else if (clause === 'ADD') {
        const [target, source] = part.split(/\s+/) as [string, string];
        const current = Number(item[name(target)]?.N ?? 0);
        item[name(target)] = { N: String(current + Number(values[source]?.N ?? 0)) };
      }
    }
  }
  return item;
}
