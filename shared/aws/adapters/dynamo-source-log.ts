import { QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { AppendContentionError, SourceLogTruncatedError } from '../../core/errors.js';
import type { AppendResult, Clock, LogEntry, SourceLog } from '../../core/ports.js';
import { DEFAULT_DEDUP_WINDOW_MS, dedupExpired, dedupExpiresAt } from '../../core/retention.js';
import { MAX_INLINE_PAYLOAD_BYTES, MAX_TRANSACT_ACTIONS, cancellationReasons, keyId, type DynamoIo, type Raw, type TransactItem } from './dynamo-io.js';
import { BLOB_PREFIX, Keys, TTL_ATTRIBUTE, ttlSeconds } from './table-layout.js';

export interface DynamoSourceLogOptions {
  /** Time of appends and of dedup expiry (default wall time). */
  readonly clock?: Clock;
  readonly dedupWindowMs?: number;
  /** Lost races for the head in a row before an append gives up (AppendContentionError). @default 8 (at most about 6 s of backoff) */
  readonly maxAppendAttempts?: number;
}

const DEFAULT_MAX_APPEND_ATTEMPTS = 8;

/** Entries of one segment at most: the chunk's transaction holds the head, the segment and a dedup put per entry (<= 100 actions). */
export const MAX_SEGMENT_ENTRIES = MAX_TRANSACT_ACTIONS - 2;

/** Payload bytes of one segment at most (a single larger payload is spilled by then): two fit under the 400 KB item limit. */
export const MAX_SEGMENT_BYTES = MAX_INLINE_PAYLOAD_BYTES;

/**
 * SourceLog on the job table. Partition p is the item collection `L#p`: a head item (`head` =
 * next offset, `sealed`) and segments: one item per appended chunk (`E#<last offset>`, holding
 * its first offset `f` and the chunk's payloads `es` in offset order). Each ingest id has a
 * dedup item under a partition key of its own (`LD#p#<id>`, holding the entry's offset), so that
 * the one hot key of a partition carries only the head and the segments (DynamoDB serves about
 * 1,000 write units per second per partition key).
 *
 * Why segments: an entry item per event bills a write unit per event twice (put in the
 * transaction, then its delete at truncation), however small the event. A segment bills the
 * chunk's bytes (per KB) once when written and once when deleted: for small events a fraction
 * of a unit each.
 *
 * append = one TransactWriteItems per chunk: the head's `head = s -> s + n` (condition on the
 * head it read), the chunk's segment (offsets s .. s+n-1), and the n dedup items (condition:
 * absent). A chunk holds at most MAX_SEGMENT_ENTRIES entries and MAX_SEGMENT_BYTES of payload;
 * every chunk carries the head condition, so the log never has holes and concurrent appenders
 * interleave whole chunks. Ids already present are skipped (read first; an id appended
 * concurrently fails its dedup condition, and the chunk is retried without it). A large append
 * is therefore atomic per chunk, not as a whole: a crash between chunks leaves a prefix
 * appended, and the redelivered batch appends the rest (its appended ids are skipped). An
 * appender that loses the race for the head `maxAppendAttempts` times in a row (backing off
 * between) gives up with AppendContentionError: its events go back to the queue for a later
 * delivery instead of spinning until the function times out.
 *
 * read(from) = one Query from `E#<from>` up: a segment's key is its last offset, so the first
 * item found holds `from` (or starts past it: `from` was truncated, SourceLogTruncatedError).
 *
 * Retention (shared/core/retention.ts): a dedup item carries the table's TTL attribute at the
 * end of its dedup window, so DynamoDB deletes it for free; until it does, an item past it is
 * absent for append (its id appends again, and the dedup put's condition accepts it).
 * `truncate(below)` deletes the segments wholly below the cut (a segment that straddles it stays
 * until a later cut passes its end), found by one eventually consistent Query of the keys from
 * the last truncation point (item `T`, `low`: every offset below it is deleted) up. An entry
 * spilled to S3 (over the inline limit) gets a marker item (`S#<offset>`, the blob's key) in its
 * chunk's transaction, and the head a flag (`sp`): only a partition that ever spilled queries its
 * markers when it truncates, and deletes their blobs with their segments.
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
      const chunk: Array<{ id: string; payload: string }> = [];
      const dedups: TransactItem[] = [];
      // After the dedup puts, so that a cancellation reason's index still names its entry.
      const markers: TransactItem[] = [];
      let bytes = 0;
      for (const entry of fresh) {
        const offset = start + chunk.length;
        const payload = payloads.get(entry.id) ?? 'null';
        const size = Buffer.byteLength(payload) + 1;
        const marker: TransactItem[] = payload.startsWith(BLOB_PREFIX) ? [{ Put: { TableName: this.io.table, Item: { ...Keys.logSpill(partition, offset), b: payload } } }] : [];
        if (chunk.length > 0 && (chunk.length + 1 + markers.length + marker.length > MAX_SEGMENT_ENTRIES || bytes + size > MAX_SEGMENT_BYTES)) break;
        chunk.push({ id: entry.id, payload });
        dedups.push({
          Put: {
            TableName: this.io.table,
            Item: { ...Keys.logDedup(partition, entry.id), o: offset, [TTL_ATTRIBUTE]: exp },
            // Absent, or past its dedup window (not yet deleted by TTL).
            ConditionExpression: 'attribute_not_exists(pk) OR #exp <= :now',
            ExpressionAttributeNames: { '#exp': TTL_ATTRIBUTE },
            ExpressionAttributeValues: { ':now': nowSeconds },
          },
        });
        markers.push(...marker);
        bytes += size;
      }
      const last = start + chunk.length - 1;
      const spilled = markers.length > 0;
      const headAction: TransactItem = {
        Update: {
          TableName: this.io.table,
          Key: Keys.logHead(partition),
          UpdateExpression: spilled ? 'SET #h = :next, #sp = :t' : 'SET #h = :next',
          ConditionExpression: head?.head === undefined ? 'attribute_not_exists(#h)' : '#h = :start',
          ExpressionAttributeNames: { '#h': 'head', ...(spilled ? { '#sp': 'sp' } : {}) },
          ExpressionAttributeValues: { ':next': last + 1, ...(head?.head === undefined ? {} : { ':start': start }), ...(spilled ? { ':t': true } : {}) },
        },
      };
      const segment: TransactItem = { Put: { TableName: this.io.table, Item: { ...Keys.logSegment(partition, last), f: start, es: chunk.map((e) => e.payload) } } };
      try {
        await this.io.transact([headAction, segment, ...dedups, ...markers]);
        headAfter = last + 1;
        appended += chunk.length;
        fresh = fresh.slice(chunk.length);
        attempt = 0;
      } catch (error) {
        const reasons = cancellationReasons(error);
        if (!reasons) throw error;
        const lostIds = new Set<string>();
        reasons.forEach((r, i) => {
          // actions: [head, segment, dedup0, dedup1, ..., markers]
          if (i >= 2 && i < 2 + chunk.length && r.Code === 'ConditionalCheckFailed') lostIds.add((chunk[i - 2] as { id: string }).id);
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
    const found: Array<{ offset: number; payload: string }> = [];
    let first: number | undefined;
    let start: Record<string, unknown> | undefined;
    // Segments hold many entries: ask for a few, then for as many as the entries still wanted need at the size seen so far.
    let limit = Math.min(max, 4);
    let segments = 0;
    do {
      const page = await this.io.retrying(() =>
        this.io.doc.send(
          new QueryCommand({
            TableName: this.io.table,
            ConsistentRead: true,
            KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
            ExpressionAttributeValues: { ':pk': Keys.logPk(partition), ':lo': Keys.logSegment(partition, from).sk, ':hi': 'E#\uffff' },
            Limit: limit,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        ),
      );
      for (const raw of (page.Items ?? []) as Raw[]) {
        const f = raw.f as number;
        // Segments below the head always exist unless truncated, so a first segment starting past
        // `from` means `from` was truncated. (An empty result is not checked, to keep the empty
        // poll at the end of the log one query: only a log truncated up to its head reads as empty from below.)
        if (first === undefined) {
          first = f;
          if (f > from) throw new SourceLogTruncatedError(partition, from, await this.truncatedBelow(partition));
        }
        (raw.es as string[]).forEach((payload, i) => {
          if (f + i >= from && found.length < max) found.push({ offset: f + i, payload });
        });
        segments++;
      }
      start = page.LastEvaluatedKey;
      limit = Math.max(1, Math.ceil((max - found.length) / Math.max(1, found.length / Math.max(1, segments))));
    } while (start && found.length < max);
    return Promise.all(found.map(async (e) => ({ offset: e.offset, event: await this.io.decode<unknown>(e.payload) })));
  }

  async truncate(partition: number, below: number): Promise<void> {
    const low = await this.truncatedBelow(partition);
    const head = await this.io.get(Keys.logHead(partition));
    const cut = Math.min(below, (head?.head as number | undefined) ?? 0);
    if (cut <= low) return;
    // The segments that end below the cut (keys only; eventually consistent: they were written long before a checkpoint covered them).
    const doomed = await this.io.query({
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
      ExpressionAttributeValues: { ':pk': Keys.logPk(partition), ':lo': Keys.logSegment(partition, low).sk, ':hi': Keys.logSegment(partition, cut - 1).sk },
      ProjectionExpression: 'pk, sk',
      ConsistentRead: false,
    });
    if (doomed.length === 0) return;
    const lowAfter = Number((doomed[doomed.length - 1] as Raw).sk.slice(2)) + 1;
    await this.io.batchWrite(doomed.map((raw) => ({ delete: { pk: raw.pk, sk: raw.sk } })));
    if (head?.sp === true) {
      // Blobs first, then their markers: a crash in between leaves markers the next truncation (from the same low) finds again.
      const markers = await this.io.queryRange(Keys.logPk(partition), Keys.logSpill(partition, low).sk, Keys.logSpill(partition, lowAfter - 1).sk);
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
            ExpressionAttributeValues: { ':cut': lowAfter },
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
