import { randomUUID } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { TransactionCanceledException, type CancellationReason } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  BatchWriteCommand,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import type { BlobStore } from '../../core/ports.js';
import { BLOB_PREFIX, Keys, type ItemKey } from './table-layout.js';
import { chunksOf } from './chunks.js';

/**
 * The DynamoDB plumbing shared by the adapters: batched reads and writes that retry what
 * DynamoDB leaves unprocessed, transactions that retry conflicts, payload spill to the
 * BlobStore, and the resolution of pending (overflow) writes. Throttling of single calls is
 * retried by the SDK's own standard retry strategy (exponential backoff with full jitter),
 * configured with `maxAttempts` on the client (see createAwsStores).
 */

export type Raw = Record<string, unknown> & { pk: string; sk: string };
export type TransactItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

export interface DynamoIoOptions {
  readonly doc: DynamoDBDocumentClient;
  readonly table: string;
  readonly blobs: BlobStore;
  /** Payloads (JSON bytes) above this spill to the BlobStore. Default and maximum: MAX_INLINE_PAYLOAD_BYTES. */
  readonly spillThresholdBytes?: number;
  /** Prefix of spilled blob keys. */
  readonly blobPrefix?: string;
  /** Base delay of our own retries (unprocessed keys, transaction conflicts). */
  readonly retryBaseMs?: number;
  readonly maxRetries?: number;
}

/**
 * The largest payload kept inline. An item can hold two payloads at once: a committed `d` and a
 * split commit's pending `p` on a keyed-state item, or an instance record's `d` and its fold
 * manifest. Two of these, with keys and markers, stay under DynamoDB's 400 KB item limit.
 */
export const MAX_INLINE_PAYLOAD_BYTES = 190 * 1024;

/** Payloads over this many bytes of JSON are stored deflated (below it an item bills 1 KB anyway). */
export const COMPRESS_ABOVE_BYTES = 900;

/** A deflated payload: `@z:` + base64 (JSON never starts with `@`). */
export const COMPRESSED_PREFIX = '@z:';

/** Base64 of the deflated `json` when it is over COMPRESS_ABOVE_BYTES and that is smaller, else undefined. */
export function deflated(json: string): string | undefined {
  const bytes = Buffer.byteLength(json);
  if (bytes <= COMPRESS_ABOVE_BYTES) return undefined;
  const packed = deflateRawSync(json).toString('base64');
  return COMPRESSED_PREFIX.length + packed.length < bytes ? packed : undefined;
}

/** The JSON text behind `deflated`. */
export function inflated(packed: string): string {
  return inflateRawSync(Buffer.from(packed, 'base64')).toString('utf8');
}
export const DEFAULT_SPILL_THRESHOLD = MAX_INLINE_PAYLOAD_BYTES;
/** DynamoDB: at most 100 actions and 4 MB per TransactWriteItems. We keep a margin on the size. */
export const MAX_TRANSACT_ACTIONS = 100;
export const MAX_TRANSACT_BYTES = 3_800_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const keyId = (k: ItemKey): string => `${k.pk}\u0000${k.sk}`;

const RETRYABLE_REASONS = new Set(['TransactionConflict', 'ThrottlingError', 'ProvisionedThroughputExceeded', 'RequestLimitExceeded', 'InternalServerError']);
const RETRYABLE_ERRORS = new Set([
  'TransactionConflictException',
  'TransactionInProgressException',
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'InternalServerError',
]);

/** Rough DynamoDB item size: attribute names + values (strings in UTF-8 bytes, numbers ~ 8). */
export function itemSize(item: Record<string, unknown>): number {
  let size = 0;
  for (const [name, value] of Object.entries(item)) {
    size += Buffer.byteLength(name);
    if (typeof value === 'string') size += Buffer.byteLength(value);
    else if (typeof value === 'number') size += 9;
    else if (typeof value === 'boolean') size += 1;
    else if (value !== undefined && value !== null) size += Buffer.byteLength(JSON.stringify(value));
  }
  return size;
}

export function transactItemSize(action: TransactItem): number {
  const body = action.Put ?? action.Update ?? action.Delete ?? action.ConditionCheck;
  return Buffer.byteLength(JSON.stringify(body ?? {}));
}

/**
 * The blob a payload refers to is gone: the item was read before a commit replaced it and that
 * commit deleted the blob it no longer needs. Read the item again.
 */
export class SpilledValueMissingError extends Error {
  override readonly name = 'SpilledValueMissingError';
  constructor(readonly key: string) {
    super(`spilled value ${key} is missing from the blob store`);
  }
}

export class DynamoIo {
  readonly doc: DynamoDBDocumentClient;
  readonly table: string;
  readonly blobs: BlobStore;
  readonly spillThreshold: number;
  private readonly blobPrefix: string;
  private readonly retryBaseMs: number;
  private readonly maxRetries: number;

  constructor(options: DynamoIoOptions) {
    this.doc = options.doc;
    this.table = options.table;
    this.blobs = options.blobs;
    this.spillThreshold = options.spillThresholdBytes ?? DEFAULT_SPILL_THRESHOLD;
    if (!(this.spillThreshold > 0 && this.spillThreshold <= MAX_INLINE_PAYLOAD_BYTES)) {
      throw new RangeError(`spillThresholdBytes must be in 1..${MAX_INLINE_PAYLOAD_BYTES} (two inline payloads must fit one 400 KB item), got ${this.spillThreshold}`);
    }
    this.blobPrefix = options.blobPrefix ?? `spill/${options.table}/`;
    this.retryBaseMs = options.retryBaseMs ?? 25;
    this.maxRetries = options.maxRetries ?? 12;
  }

  /** Full-jitter exponential backoff: uniform in [0, base * 2^attempt], capped at 5 s. */
  async backoff(attempt: number): Promise<void> {
    await sleep(Math.random() * Math.min(5_000, this.retryBaseMs * 2 ** attempt));
  }

  // ---------- payloads ----------

  /**
   * JSON text as stored in `d`/`p`: inline; over COMPRESS_ABOVE_BYTES deflated (`@z:` + base64,
   * when that is smaller: DynamoDB bills an item per KB, and JSON records of one job repeat their
   * field names); spilled to the BlobStore when still above the threshold. `compress: false`
   * keeps what its user reads from the table (sink output, dead letters) plain JSON.
   */
  async encode(value: unknown, options: { compress?: boolean } = {}): Promise<string> {
    const json = JSON.stringify(value) ?? 'null';
    const bytes = Buffer.byteLength(json);
    const packed = options.compress === false ? undefined : deflated(json);
    if (packed !== undefined && COMPRESSED_PREFIX.length + packed.length <= this.spillThreshold) return `${COMPRESSED_PREFIX}${packed}`;
    if (bytes <= this.spillThreshold) return json;
    const key = `${this.blobPrefix}${randomUUID()}`;
    await this.blobs.put(key, new Uint8Array(Buffer.from(json)));
    return `${BLOB_PREFIX}${key}`;
  }

  async decode<T>(stored: string): Promise<T> {
    if (stored.startsWith(COMPRESSED_PREFIX)) return JSON.parse(inflated(stored.slice(COMPRESSED_PREFIX.length))) as T;
    if (!stored.startsWith(BLOB_PREFIX)) return JSON.parse(stored) as T;
    const key = stored.slice(BLOB_PREFIX.length);
    const bytes = await this.blobs.get(key);
    if (!bytes) throw new SpilledValueMissingError(key);
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
  }

  /** Deletes the blob behind a spilled payload (best effort: a leaked blob costs storage only). */
  async dropBlob(stored: unknown): Promise<void> {
    if (typeof stored !== 'string' || !stored.startsWith(BLOB_PREFIX)) return;
    await this.blobs.delete(stored.slice(BLOB_PREFIX.length)).catch(() => undefined);
  }

  // ---------- single items ----------

  async get(key: ItemKey, table = this.table): Promise<Raw | undefined> {
    const out = await this.retrying(() => this.doc.send(new GetCommand({ TableName: table, Key: { pk: key.pk, sk: key.sk }, ConsistentRead: true })));
    return out.Item as Raw | undefined;
  }

  /** Retries what the SDK does not: transaction conflicts on single-item calls. */
  async retrying<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (attempt >= this.maxRetries || !RETRYABLE_ERRORS.has((error as Error).name)) throw error;
        await this.backoff(attempt);
      }
    }
  }

  // ---------- batches ----------

  /** BatchGetItem in calls of 100 keys, retrying UnprocessedKeys with backoff. Consistent reads. */
  async batchGet(keys: readonly ItemKey[], table = this.table, projection?: readonly string[]): Promise<Map<string, Raw>> {
    const out = new Map<string, Raw>();
    const unique = [...new Map(keys.map((k) => [keyId(k), { pk: k.pk, sk: k.sk }])).values()];
    const names = projection ? Object.fromEntries(projection.map((a, i) => [`#a${i}`, a])) : undefined;
    const chunks: Array<Array<{ pk: string; sk: string }>> = [];
    for (let i = 0; i < unique.length; i += 100) chunks.push(unique.slice(i, i + 100));
    await Promise.all(
      chunks.map(async (chunk) => {
        let pending: Array<Record<string, unknown>> = chunk;
        for (let attempt = 0; pending.length > 0; attempt++) {
          if (attempt > 0) await this.backoff(attempt);
          if (attempt > this.maxRetries * 2) throw new Error(`BatchGetItem on ${table}: ${pending.length} keys still unprocessed after ${attempt} attempts`);
          const result = await this.doc.send(
            new BatchGetCommand({
              RequestItems: {
                [table]: {
                  Keys: pending,
                  ConsistentRead: true,
                  ...(names ? { ProjectionExpression: Object.keys(names).join(', '), ExpressionAttributeNames: names } : {}),
                },
              },
            }),
          );
          for (const item of (result.Responses?.[table] ?? []) as Raw[]) out.set(keyId(item), item);
          pending = result.UnprocessedKeys?.[table]?.Keys ?? [];
        }
      }),
    );
    return out;
  }

  /** BatchWriteItem in calls of 25, retrying UnprocessedItems with backoff. Not atomic. */
  async batchWrite(ops: ReadonlyArray<{ put: Raw } | { delete: ItemKey }>, table = this.table): Promise<void> {
    // One call must not name an item twice: the last op per key wins.
    const byKey = new Map<string, { put: Raw } | { delete: ItemKey }>();
    for (const op of ops) byKey.set(keyId('put' in op ? op.put : op.delete), op);
    const requests = [...byKey.values()].map((op) => ('put' in op ? { PutRequest: { Item: op.put } } : { DeleteRequest: { Key: { pk: op.delete.pk, sk: op.delete.sk } } }));
    const chunks = chunksOf(requests, (request) => ('PutRequest' in request && request.PutRequest ? itemSize(request.PutRequest.Item) : 100), 25, 15_000_000);
    await mapLimit(chunks, 8, async (items) => {
      let pending: unknown[] = items;
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > 0) await this.backoff(attempt);
        if (attempt > this.maxRetries * 2) throw new Error(`BatchWriteItem on ${table}: ${pending.length} items still unprocessed`);
        const result = await this.doc.send(new BatchWriteCommand({ RequestItems: { [table]: pending as never } }));
        pending = result.UnprocessedItems?.[table] ?? [];
      }
    });
  }

  /** All items of a query (follows LastEvaluatedKey). Consistent reads. */
  async query(input: Omit<QueryCommandInput, 'TableName'>, table = this.table): Promise<Raw[]> {
    const out: Raw[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const result = await this.doc.send(new QueryCommand({ TableName: table, ConsistentRead: true, ...input, ...(start ? { ExclusiveStartKey: start } : {}) }));
      out.push(...((result.Items ?? []) as Raw[]));
      start = result.LastEvaluatedKey;
    } while (start);
    return out;
  }

  /** Items of one partition with lo <= sk <= hi. */
  queryRange(pk: string, lo: string, hi: string, table = this.table): Promise<Raw[]> {
    return this.query({ KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi', ExpressionAttributeValues: { ':pk': pk, ':lo': lo, ':hi': hi } }, table);
  }

  queryPartition(pk: string, table = this.table): Promise<Raw[]> {
    return this.query({ KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': pk } }, table);
  }

  // ---------- transactions ----------

  /**
   * TransactWriteItems, retrying cancellations caused only by conflicts or throttling.
   * A cancellation with a failed condition is thrown as is (the caller maps its reasons).
   */
  async transact(items: readonly TransactItem[]): Promise<void> {
    if (items.length === 0) return;
    if (items.length > MAX_TRANSACT_ACTIONS) throw new Error(`transaction of ${items.length} actions exceeds ${MAX_TRANSACT_ACTIONS}`);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.doc.send(new TransactWriteCommand({ TransactItems: items.map(withUsedNames) }));
        return;
      } catch (error) {
        const retryable =
          error instanceof TransactionCanceledException
            ? (error.CancellationReasons ?? []).every((r) => r.Code === 'None' || r.Code === undefined || RETRYABLE_REASONS.has(r.Code)) &&
              (error.CancellationReasons ?? []).some((r) => r.Code !== 'None')
            : RETRYABLE_ERRORS.has((error as Error).name);
        if (!retryable || attempt >= this.maxRetries) throw error;
        await this.backoff(attempt);
      }
    }
  }

  // ---------- pending (overflow) writes ----------

  /**
   * The effective payload (`d` text) of each item: its pending payload `p` when the step that
   * wrote it committed (instance record at `ver = pv` with `tok = pt`), else its committed `d`
   * (undefined: the item does not exist for readers). An instance record past `pv` means the
   * step's fold finished before (a commit requires it), so such an item is read again.
   */
  async effective(items: readonly (Raw | undefined)[], table = this.table): Promise<(string | undefined)[]> {
    const out: (string | undefined)[] = items.map((item) => (item && item.pt === undefined ? (item.d as string | undefined) : undefined));
    let todo = items.flatMap((item, i) => (item && item.pt !== undefined ? [{ i, item }] : []));
    for (let round = 0; todo.length > 0; round++) {
      const instances = await this.batchGet(
        [...new Set(todo.map((t) => t.item.pi as string))].map((id) => Keys.instance(id)),
        this.table,
        ['pk', 'sk', 'ver', 'tok'],
      );
      const reread: typeof todo = [];
      for (const t of todo) {
        const inst = instances.get(keyId(Keys.instance(t.item.pi as string)));
        const ver = (inst?.ver as number | undefined) ?? 0;
        const pv = t.item.pv as number;
        if (ver === pv && inst?.tok === t.item.pt) out[t.i] = t.item.p as string;
        else if (ver > pv && round < 3) reread.push(t);
        else out[t.i] = t.item.d as string | undefined;
      }
      if (reread.length === 0) break;
      const fresh = await this.batchGet(
        reread.map((t) => t.item),
        table,
      );
      todo = [];
      for (const t of reread) {
        const item = fresh.get(keyId(t.item));
        if (!item) out[t.i] = undefined;
        else if (item.pt === undefined || item.pt !== t.item.pt) {
          if (item.pt === undefined) out[t.i] = item.d as string | undefined;
          else todo.push({ i: t.i, item });
        } else out[t.i] = item.d as string | undefined; // still pending with the same token: a stale attempt
      }
    }
    return out;
  }

  /** Effective payloads decoded; undefined where the item is absent for readers. */
  async readValues<T>(items: readonly (Raw | undefined)[], table = this.table): Promise<(T | undefined)[]> {
    const payloads = await this.effective(items, table);
    return Promise.all(payloads.map(async (p) => (p === undefined ? undefined : await this.decode<T>(p))));
  }
}

/** Drops ExpressionAttributeNames an action's expressions do not use (DynamoDB rejects unused ones). */
export function withUsedNames(action: TransactItem): TransactItem {
  const [kind, body] = Object.entries(action).find(([, v]) => v !== undefined) as [keyof TransactItem, Record<string, unknown>];
  const names = body.ExpressionAttributeNames as Record<string, string> | undefined;
  if (!names) return action;
  const used = usedNames([body.UpdateExpression, body.ConditionExpression, body.ProjectionExpression], names);
  return { [kind]: { ...body, ExpressionAttributeNames: used } };
}

export function usedNames(expressions: readonly unknown[], names: Record<string, string>): Record<string, string> {
  const text = expressions.filter((e) => typeof e === 'string').join(' ');
  return Object.fromEntries(Object.entries(names).filter(([k]) => new RegExp(`${k}(?![A-Za-z0-9_])`).test(text)));
}

export function cancellationReasons(error: unknown): readonly CancellationReason[] | undefined {
  return error instanceof TransactionCanceledException ? (error.CancellationReasons ?? []) : undefined;
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first error. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
  return out;
}
