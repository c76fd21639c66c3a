import { QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { AppendContentionError, SourceLogTruncatedError } from '../../core/errors.js';
import type { AppendResult, Clock, LogEntry, SourceLog } from '../../core/ports.js';
import { DEFAULT_DEDUP_WINDOW_MS, dedupExpired, dedupExpiresAt } from '../../core/retention.js';
import { MAX_TRANSACT_ACTIONS, MAX_TRANSACT_BYTES, cancellationReasons, keyId, transactItemSize, type DynamoIo, type Raw, type TransactItem } from './dynamo-io.js';
import { BLOB_PREFIX, Keys, TTL_ATTRIBUTE, pad, ttlSeconds } from './table-layout.js';

export interface DynamoSourceLogOptions {
  /** Time of appends and of dedup expiry (default wall time). */
  readonly clock?: Clock;
  readonly dedupWindowMs?: number;
  /** Lost races for the head in a row before an append gives up (AppendContentionError). @default 8 (at most about 6 s of backoff) */
  readonly maxAppendAttempts?: number;
}

const DEFAULT_MAX_APPEND_ATTEMPTS = 8;

/**
 * SourceLog on the job table. Partition p is the item collection `L#p`: a head item (`head` =
 * next offset, `sealed`) and one item per entry (`E#<offset>`); each ingest id has a dedup item
 * under a partition key of its own (`LD#p#<id>`, holding the entry's offset), so that the one
 * hot key of a partition carries only the head and the entries (DynamoDB serves about 1,000
 * write units per second per partition key: a source partition appends about 400 small events
 * a second; more partitions, more throughput).
 *
 * append = one TransactWriteItems per chunk: the head's `head = s -> s + n` (condition on the
 * head it read), the n entries at offsets s.., and the n dedup items (condition: absent). A
 * chunk holds at most 49 entries (2 actions each + the head <= 100) and ~3.8 MB; every chunk
 * carries the head condition, so the log never has holes and concurrent appenders interleave
 * whole chunks. Ids already present are skipped (read first; an id appended concurrently fails
 * its dedup condition, and the chunk is retried without it). A large append is therefore
 * atomic per chunk, not as a whole: a crash between chunks leaves a prefix appended, and the
 * redelivered batch appends the rest (its appended ids are skipped). An appender that loses the
 * race for the head `maxAppendAttempts` times in a row (backing off between) gives up with
 * AppendContentionError: its events go back to the queue for a later delivery instead of
 * spinning until the function times out.
 *
 * Retention (shared/core/retention.ts): a dedup item carries the table's TTL attribute at the
 * end of its dedup window, so DynamoDB deletes it for free; until it does, an item past it is
 * absent for append (its id appends again, and the dedup put's condition accepts it).
 * `truncate` deletes entries by key from the last truncation point (item `T`) up: one delete per
 * entry, no read. An entry spilled to S3 (over the inline limit) gets a marker item (`S#<offset>`,
 * the blob's key) in its chunk's transaction, and the head a flag (`sp`): only a partition that
 * ever spilled queries its markers when it truncates, and deletes their blobs with the entries. A read from below the truncation point finds its first entry missing and
 * throws SourceLogTruncatedError.
 */
export class DynamoSourceLog implements SourceLog {
  private readonly clock: Clock;
  private readonly dedupWindowMs: number;
  private readonly maxAppendAttempts: number;

  constructor(
    private readonly io: DynamoIo,
    options: DynamoSourceLogOptions = {},
  ) {
    this.clock = options.clock ?? { now: () => Date.now() };
    this.dedupWindowMs = options.dedupWindowMs ?? DEFAULT_DEDUP_WINDOW_MS;
    this.maxAppendAttempts = options.maxAppendAttempts ?? DEFAULT_MAX_APPEND_ATTEMPTS;
  }

  async append(partition: number, entries: readonly { id: string; event: unknown }[]): Promise<AppendResult> {
    const seen = new Set<string>();
    const unique = entries.filter((e) => (seen.has(e.id) ? false : (seen.add(e.id), true)));
    let duplicates = entries.length - unique.length;
    if (unique.length === 0) return { appended: 0, duplicates, head: await this.head(partition) };
    const now = this.clock.now();
    const exp = ttlSeconds(dedupExpiresAt(now, this.dedupWindowMs));
    const nowSeconds = Math.floor(now / 1000);
    const existing = await this.io.batchGet(
      unique.map((e) => Keys.logDedup(partition, e.id)),
      this.io.table,
      ['pk', 'sk', TTL_ATTRIBUTE],
    );
    const live = (raw: Raw | undefined): boolean => raw !== undefined && !dedupExpired(typeof raw[TTL_ATTRIBUTE] === 'number' ? raw[TTL_ATTRIBUTE] * 1000 : undefined, now);
    let fresh = unique.filter((e) => !live(existing.get(keyId(Keys.logDedup(partition, e.id)))));
    duplicates += unique.length - fresh.length;
    const payloads = new Map<string, string>();
    await Promise.all(fresh.map(async (e) => payloads.set(e.id, await this.io.encode(e.event))));

    let appended = 0;
    let headAfter: number | undefined;
    for (let attempt = 0; fresh.length > 0;) {
      const head = await this.io.get(Keys.logHead(partition));
      const start = (head?.head as number | undefined) ?? 0;
      const headAction = (n: number, spilled: boolean): TransactItem => ({
        Update: {
          TableName: this.io.table,
          Key: Keys.logHead(partition),
          UpdateExpression: spilled ? 'SET #h = :next, #sp = :t' : 'SET #h = :next',
          ConditionExpression: head?.head === undefined ? 'attribute_not_exists(#h)' : '#h = :start',
          ExpressionAttributeNames: { '#h': 'head', ...(spilled ? { '#sp': 'sp' } : {}) },
          ExpressionAttributeValues: { ':next': start + n, ...(head?.head === undefined ? {} : { ':start': start }), ...(spilled ? { ':t': true } : {}) },
        },
      });
      const chunk: Array<{ id: string }> = [];
      const actions: TransactItem[] = [];
      // After every entry's pair, so that a cancellation reason's index still names its entry.
      const markers: TransactItem[] = [];
      let bytes = 0;
      for (const entry of fresh) {
        const offset = start + chunk.length;
        const payload = payloads.get(entry.id) ?? 'null';
        const put: TransactItem = { Put: { TableName: this.io.table, Item: { ...Keys.logEntry(partition, offset), d: payload } } };
        const marker: TransactItem[] = payload.startsWith(BLOB_PREFIX) ? [{ Put: { TableName: this.io.table, Item: { ...Keys.logSpill(partition, offset), b: payload } } }] : [];
        const dedup: TransactItem = {
          Put: {
            TableName: this.io.table,
            Item: { ...Keys.logDedup(partition, entry.id), o: offset, [TTL_ATTRIBUTE]: exp },
            // Absent, or past its dedup window (not yet deleted by TTL).
            ConditionExpression: 'attribute_not_exists(pk) OR #exp <= :now',
            ExpressionAttributeNames: { '#exp': TTL_ATTRIBUTE },
            ExpressionAttributeValues: { ':now': nowSeconds },
          },
        };
        const size = transactItemSize(put) + transactItemSize(dedup) + marker.reduce((s, m) => s + transactItemSize(m), 0);
        if (chunk.length > 0 && (2 * (chunk.length + 1) + markers.length + marker.length + 1 > MAX_TRANSACT_ACTIONS || bytes + size > MAX_TRANSACT_BYTES - 1_000)) break;
        chunk.push(entry);
        actions.push(put, dedup);
        markers.push(...marker);
        bytes += size;
      }
      try {
        await this.io.transact([headAction(chunk.length, markers.length > 0), ...actions, ...markers]);
        headAfter = start + chunk.length;
        appended += chunk.length;
        fresh = fresh.slice(chunk.length);
        attempt = 0;
      } catch (error) {
        const reasons = cancellationReasons(error);
        if (!reasons) throw error;
        const lostIds = new Set<string>();
        reasons.forEach((r, i) => {
          // actions: [head, put0, dedup0, put1, dedup1, ..., markers]
          if (i > 0 && i <= 2 * chunk.length && i % 2 === 0 && r.Code === 'ConditionalCheckFailed') lostIds.add((chunk[i / 2 - 1] as { id: string }).id);
        });
        if (lostIds.size > 0) {
          duplicates += lostIds.size;
          fresh = fresh.filter((e) => !lostIds.has(e.id));
        } else if (reasons[0]?.Code !== 'ConditionalCheckFailed') {
          throw error;
        }
        // The head moved (a concurrent appender): read it again, a bounded number of times.
        if (++attempt >= this.maxAppendAttempts) throw new AppendContentionError(partition, attempt);
        await this.io.backoff(attempt - 1);
      }
    }
    return { appended, duplicates, head: headAfter ?? (await this.head(partition)) };
  }

  async read(partition: number, from: number, max: number): Promise<LogEntry[]> {
    if (max <= 0) return [];
    // From `from` on, at most `max` entries: the first one found tells a truncated range apart.
    const raws: Raw[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const page = await this.io.retrying(() =>
        this.io.doc.send(
          new QueryCommand({
            TableName: this.io.table,
            ConsistentRead: true,
            KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
            // No upper offset: with entries below the cut gone, the first one found is past `from`.
            ExpressionAttributeValues: { ':pk': Keys.logPk(partition), ':lo': `E#${pad(from)}`, ':hi': 'E#\uffff' },
            Limit: max - raws.length,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        ),
      );
      raws.push(...((page.Items ?? []) as Raw[]));
      start = page.LastEvaluatedKey;
    } while (start && raws.length < max);
    // Entries below the head always exist unless truncated, so a first entry past `from` means
    // `from` was truncated. (An empty result is not checked, to keep the empty poll at the end of
    // the log one query: only a log truncated up to its head reads as empty from below.)
    const first = raws[0];
    if (first && Number(first.sk.slice(2)) !== from) throw new SourceLogTruncatedError(partition, from, await this.truncatedBelow(partition));
    return Promise.all(raws.map(async (raw) => ({ offset: Number(raw.sk.slice(2)), event: await this.io.decode<unknown>(raw.d as string) })));
  }

  async truncate(partition: number, below: number): Promise<void> {
    const low = await this.truncatedBelow(partition);
    const head = await this.io.get(Keys.logHead(partition));
    const cut = Math.min(below, (head?.head as number | undefined) ?? 0);
    if (cut <= low) return;
    const doomed = Array.from({ length: cut - low }, (_, i) => ({ delete: Keys.logEntry(partition, low + i) }));
    await this.io.batchWrite(doomed);
    if (head?.sp === true) {
      // Blobs first, then their markers: a crash in between leaves markers the next truncation (from the same low) finds again.
      const markers = await this.io.queryRange(Keys.logPk(partition), Keys.logSpill(partition, low).sk, Keys.logSpill(partition, cut - 1).sk);
      await Promise.all(markers.map((m) => this.io.dropBlob(m.b)));
      await this.io.batchWrite(markers.map((m) => ({ delete: { pk: m.pk, sk: m.sk } })));
    }
    try {
      await this.io.retrying(() =>
        this.io.doc.send(
          new UpdateCommand({
            TableName: this.io.table,
            Key: Keys.logTruncation(partition),
            UpdateExpression: 'SET #low = :cut',
            ConditionExpression: 'attribute_not_exists(#low) OR #low < :cut',
            ExpressionAttributeNames: { '#low': 'low' },
            ExpressionAttributeValues: { ':cut': cut },
          }),
        ),
      );
    } catch (error) {
      // A concurrent prune truncated further already.
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
    }
  }

  /** Offset below which entries were deleted (0: none). */
  private async truncatedBelow(partition: number): Promise<number> {
    return ((await this.io.get(Keys.logTruncation(partition)))?.low as number | undefined) ?? 0;
  }

  async head(partition: number): Promise<number> {
    return ((await this.io.get(Keys.logHead(partition)))?.head as number | undefined) ?? 0;
  }

  async seal(partition: number): Promise<void> {
    await this.io.retrying(() =>
      this.io.doc.send(
        new UpdateCommand({
          TableName: this.io.table,
          Key: Keys.logHead(partition),
          UpdateExpression: 'SET #s = :t',
          ExpressionAttributeNames: { '#s': 'sealed' },
          ExpressionAttributeValues: { ':t': true },
        }),
      ),
    );
  }

  async isSealed(partition: number): Promise<boolean> {
    return ((await this.io.get(Keys.logHead(partition)))?.sealed as boolean | undefined) ?? false;
  }
}
