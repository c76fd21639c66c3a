import { QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { AppendContentionError, SourceLogTruncatedError } from '../../core/errors.js';
import { eventsOfEntry, type AppendEntry, type AppendResult, type Clock, type LogEntry, type SourceLog } from '../../core/ports.js';
import { DEFAULT_DEDUP_WINDOW_MS, dedupExpired, dedupExpiresAt } from '../../core/retention.js';
import { MAX_INLINE_PAYLOAD_BYTES, deflated, inflated, MAX_TRANSACT_ACTIONS, cancellationReasons, keyId, type DynamoIo, type Raw, type TransactItem } from './dynamo-io.js';
import { BLOB_PREFIX, Keys, TTL_ATTRIBUTE, ttlSeconds, type ItemKey } from './table-layout.js';

export interface DynamoSourceLogOptions {
  /** Time of appends and of dedup expiry (default wall time). */
  readonly clock?: Clock;
  readonly dedupWindowMs?: number;
  /** Lost races for the head in a row before an append gives up (AppendContentionError). @default 8 (at most about 6 s of backoff) */
  readonly maxAppendAttempts?: number;
}

const DEFAULT_MAX_APPEND_ATTEMPTS = 8;

/** Entries of one segment at most (the default `sourceReadBatch`: a source catching up reads whole segments). */
export const MAX_SEGMENT_ENTRIES = 500;

/** Bytes of one segment's payloads and ids at most (a single larger payload is spilled by then): two fit under the 400 KB item limit. */
export const MAX_SEGMENT_BYTES = MAX_INLINE_PAYLOAD_BYTES;

interface Segment {
  /** First offset. */
  readonly f: number;
  /** The appended entries' ids (AppendEntry), in offset order. */
  readonly ids: readonly string[];
  /** Events per id, when an entry holds more than one (absent: one each). */
  readonly n?: readonly number[];
  /** End of its ids' dedup window (epoch seconds, the TTL attribute of their dedup items), from its append, whenever they are indexed. */
  readonly x: number;
}

/**
 * SourceLog on the job table. Partition p is the item collection `L#p`: a head item (`head` =
 * next offset, `ix`: offsets below it have their dedup items, `sealed`) and segments: one item per
 * appended chunk (`E#<last offset>`, holding its first offset `f`, the chunk's payloads `es` and
 * entry ids `ids` in offset order, with `n`, the events per id, when an entry is a batch
 * message's). Each entry id has a dedup item under a partition key of its own (`LD#p#<id>`,
 * holding the entry's first offset), the index that tells a redelivered event from a new one, off
 * the partition's hot `L#p` key (DynamoDB serves about 1,000 write units per second per partition
 * key). An entry never spans two segments, so its dedup item covers all its events: a batch
 * message of many events costs one dedup item per partition it touches.
 *
 * Why segments and a separate index: an entry item and a dedup item per event, both in the
 * append's transaction, billed four write units per event however small it was, plus one more
 * to delete the entry at truncation. A segment bills the chunk's bytes (per KB) when written and
 * when deleted; a dedup item written outside the transaction bills one unit.
 *
 * append, per chunk of at most MAX_SEGMENT_ENTRIES events and MAX_SEGMENT_BYTES (or one entry that alone exceeds them):
 *   1. read the head (consistent): `head` = s, `ix` (absent: = s);
 *   2. then look the ids up in the index (dedup items) and in the segments of [ix, s), which
 *      are appended but not indexed yet (normally the previous append's); found = duplicate;
 *   3. put the dedup items of those segments;
 *   4. one TransactWriteItems: `head = s -> s + n`, `ix = s` (condition: head and ix still as
 *      read in 1) and the segment. A lost race goes back to 1.
 * So each append indexes its predecessor, and the last segment of a partition stays unindexed
 * until the next append or its truncation (which indexes what it deletes above `ix` and moves
 * `ix` past it before deleting anything). The condition orders every append after the head and
 * `ix` it read: whatever was appended before is indexed below `ix` or in the segments it read,
 * so a duplicate is always found, whoever crashed where. A crash between chunks leaves a prefix
 * appended, and the redelivered batch appends the rest (its appended ids are found). An
 * appender that loses the race `maxAppendAttempts` times in a row (backing off between) gives up
 * with AppendContentionError: its events go back to the queue for a later delivery instead of
 * spinning until the function times out.
 *
 * read(from) = one Query from `E#<from>` up: a segment's key is its last offset, so the first
 * item found holds `from` (or starts past it: `from` was truncated, SourceLogTruncatedError).
 *
 * Retention (shared/core/retention.ts): a dedup item carries the table's TTL attribute at the
 * end of its dedup window, so DynamoDB deletes it for free; until it does, an item past it is
 * absent for append (its id appends again). `truncate(below)` deletes the segments wholly below
 * the cut (a segment that straddles it stays until a later cut passes its end), found by one
 * eventually consistent Query of the keys from the last truncation point (item `T`, `low`: every
 * offset below it is deleted) up. An entry spilled to S3 (over the inline limit) gets a marker
 * item (`S#<offset>`, the blob's key) in its chunk's transaction, and the head a flag (`sp`): only
 * a partition that ever spilled queries its markers when it truncates, and deletes their blobs
 * with their segments.
 */
/** A segment's payloads: the list `es`, or deflated (`ez`, JSON of the list) on the payloads' rule (dynamo-io.ts `deflated`). */
function packPayloads(payloads: readonly string[]): { es: readonly string[] } | { ez: string } {
  const packed = deflated(JSON.stringify(payloads));
  return packed === undefined ? { es: payloads } : { ez: packed };
}

function unpackPayloads(raw: Raw): string[] {
  return typeof raw.ez === 'string' ? (JSON.parse(inflated(raw.ez)) as string[]) : (raw.es as string[]);
}

/** An entry waiting to be appended. */
interface Unit {
  readonly id: string;
  readonly events: readonly unknown[];
}

function segmentOf(raw: Raw): Segment {
  return { f: raw.f as number, ids: raw.ids as string[], x: raw.x as number, ...(Array.isArray(raw.n) ? { n: raw.n as number[] } : {}) };
}

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

  async append(partition: number, entries: readonly AppendEntry[]): Promise<AppendResult> {
    const seen = new Set<string>();
    let duplicates = 0;
    let pending: Unit[] = [];
    for (const entry of entries) {
      const events = eventsOfEntry(entry);
      if (seen.has(entry.id)) duplicates += events.length;
      else if (events.length > 0) pending.push({ id: entry.id, events });
      seen.add(entry.id);
    }
    if (pending.length === 0) return { appended: 0, duplicates, head: await this.head(partition) };
    const now = this.clock.now();
    const live = (raw: Raw | undefined): boolean => raw !== undefined && !dedupExpired(typeof raw[TTL_ATTRIBUTE] === 'number' ? raw[TTL_ATTRIBUTE] * 1000 : undefined, now);
    const payloads = new Map<string, string[]>();
    await Promise.all(pending.map(async (e) => payloads.set(e.id, await Promise.all(e.events.map((event) => this.io.encode(event))))));

    let appended = 0;
    let headAfter: number | undefined;
    for (let attempt = 0; pending.length > 0;) {
      // 1. The head, then 2. what was appended before among the next chunk's candidates.
      const head = await this.io.get(Keys.logHead(partition));
      const start = (head?.head as number | undefined) ?? 0;
      headAfter = Math.max(headAfter ?? 0, start);
      const indexed = (head?.ix as number | undefined) ?? start;
      const window = pending.slice(0, MAX_SEGMENT_ENTRIES);
      const [index, tail] = await Promise.all([
        this.io.batchGet(
          window.map((e) => Keys.logDedup(partition, e.id)),
          this.io.table,
          ['pk', 'sk', TTL_ATTRIBUTE],
        ),
        indexed < start ? this.segmentsFrom(partition, indexed) : Promise.resolve([]),
      ]);
      const inTail = new Set(tail.filter((segment) => !dedupExpired(segment.x * 1000, now)).flatMap((segment) => segment.ids));
      const known = window.filter((e) => inTail.has(e.id) || live(index.get(keyId(Keys.logDedup(partition, e.id)))));
      duplicates += known.reduce((n, e) => n + e.events.length, 0);
      const knownIds = new Set(known.map((e) => e.id));
      pending = pending.filter((e) => !knownIds.has(e.id));
      // Whole entries only: a segment holds an entry's events or none of them (one alone may exceed the bounds).
      const chunk: Array<{ id: string; payloads: readonly string[] }> = [];
      const markers: TransactItem[] = [];
      let events = 0;
      let bytes = 0;
      for (const entry of window) {
        if (knownIds.has(entry.id)) continue;
        const encoded = payloads.get(entry.id) ?? [];
        const marker: TransactItem[] = encoded.flatMap((payload, i) =>
          payload.startsWith(BLOB_PREFIX) ? [{ Put: { TableName: this.io.table, Item: { ...Keys.logSpill(partition, start + events + i), b: payload } } }] : [],
        );
        const size = encoded.reduce((n, payload) => n + Buffer.byteLength(payload) + 1, Buffer.byteLength(entry.id) + 2);
        if (chunk.length > 0 && (events + encoded.length > MAX_SEGMENT_ENTRIES || markers.length + marker.length > MAX_TRANSACT_ACTIONS - 2 || bytes + size > MAX_SEGMENT_BYTES)) break;
        chunk.push({ id: entry.id, payloads: encoded });
        markers.push(...marker);
        events += encoded.length;
        bytes += size;
      }
      if (chunk.length === 0) continue;
      const end = start + events;
      const spilled = markers.length > 0;
      // 3. Index the segments above ix (the previous appends'): this transaction then moves ix up to its own start.
      await this.index(partition, tail);
      // 4. The head, ix and the segment in one transaction, conditional on the head and ix as read in 1.
      const headAction: TransactItem = {
        Update: {
          TableName: this.io.table,
          Key: Keys.logHead(partition),
          UpdateExpression: `SET #h = :next, #ix = :start${spilled ? ', #sp = :t' : ''}`,
          ConditionExpression: head?.head === undefined ? 'attribute_not_exists(#h)' : head.ix === undefined ? '#h = :start AND attribute_not_exists(#ix)' : '#h = :start AND #ix = :ix',
          ExpressionAttributeNames: { '#h': 'head', '#ix': 'ix', ...(spilled ? { '#sp': 'sp' } : {}) },
          ExpressionAttributeValues: { ':next': end, ':start': start, ...(head?.ix === undefined ? {} : { ':ix': indexed }), ...(spilled ? { ':t': true } : {}) },
        },
      };
      const counts = chunk.map((e) => e.payloads.length);
      const segment: Segment = { f: start, x: ttlSeconds(dedupExpiresAt(now, this.dedupWindowMs)), ids: chunk.map((e) => e.id), ...(counts.some((n) => n !== 1) ? { n: counts } : {}) };
      try {
        const item = { ...Keys.logSegment(partition, end - 1), ...segment, ...packPayloads(chunk.flatMap((e) => e.payloads)) };
        await this.io.transact([headAction, { Put: { TableName: this.io.table, Item: item } }, ...markers]);
      } catch (error) {
        if (cancellationReasons(error)?.[0]?.Code !== 'ConditionalCheckFailed') throw error;
        // The head moved (a concurrent appender, or a truncation indexed past ix): read it again, a bounded number of times.
        if (++attempt >= this.maxAppendAttempts) throw new AppendContentionError(partition, attempt);
        await this.io.backoff(attempt - 1);
        continue;
      }
      attempt = 0;
      headAfter = Math.max(headAfter, end);
      appended += events;
      const written = new Set(segment.ids);
      pending = pending.filter((e) => !written.has(e.id));
    }
    return { appended, duplicates, head: headAfter ?? (await this.head(partition)) };
  }

  /** Puts the dedup items of `segments` (one per entry, holding its first offset), each expiring at the end of the dedup window from its segment's append. */
  private async index(partition: number, segments: readonly Segment[]): Promise<void> {
    await this.io.batchWrite(
      segments.flatMap((segment) => {
        let offset = segment.f;
        return segment.ids.map((id, i) => {
          const put = { ...Keys.logDedup(partition, id), o: offset, [TTL_ATTRIBUTE]: segment.x };
          offset += segment.n?.[i] ?? 1;
          return { put };
        });
      }),
    );
  }

  /** The segments from offset `from` (a chunk boundary) to the head: their first offsets and ids. */
  private async segmentsFrom(partition: number, from: number): Promise<Segment[]> {
    const raws = await this.io.query({
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
      ExpressionAttributeValues: { ':pk': Keys.logPk(partition), ':lo': Keys.logSegment(partition, from).sk, ':hi': 'E#\uffff' },
      ProjectionExpression: 'f, ids, x, n',
    });
    return raws.map(segmentOf);
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
        unpackPayloads(raw).forEach((payload, i) => {
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
    // The segments that end below the cut (eventually consistent: they were written long before a checkpoint covered them).
    const doomed = await this.io.query({
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
      ExpressionAttributeValues: { ':pk': Keys.logPk(partition), ':lo': Keys.logSegment(partition, low).sk, ':hi': Keys.logSegment(partition, cut - 1).sk },
      ProjectionExpression: 'pk, sk, f, ids, x, n',
      ConsistentRead: false,
    });
    if (doomed.length === 0) return;
    const lowAfter = Number((doomed[doomed.length - 1] as Raw).sk.slice(2)) + 1;
    // The last append's segment is indexed by the next append only: index what is left above ix before it goes, and move ix past it first.
    const indexed = (head?.ix as number | undefined) ?? cut;
    if (indexed < lowAfter) {
      await this.index(partition, doomed.filter((raw) => (raw.f as number) >= indexed).map(segmentOf));
      // (An append may have moved it further already.)
      await this.raise(Keys.logHead(partition), 'ix', lowAfter, false);
    }
    await this.io.batchWrite(doomed.map((raw) => ({ delete: { pk: raw.pk, sk: raw.sk } })));
    if (head?.sp === true) {
      // Blobs first, then their markers: a crash in between leaves markers the next truncation (from the same low) finds again.
      const markers = await this.io.queryRange(Keys.logPk(partition), Keys.logSpill(partition, low).sk, Keys.logSpill(partition, lowAfter - 1).sk);
      await Promise.all(markers.map((m) => this.io.dropBlob(m.b)));
      await this.io.batchWrite(markers.map((m) => ({ delete: { pk: m.pk, sk: m.sk } })));
    }
    // (A concurrent prune may have truncated further already.)
    await this.raise(Keys.logTruncation(partition), 'low', lowAfter, true);
  }

  /** Sets the number `attribute` of `key` to `value` if that raises it (or, with `orAbsent`, creates it); a higher value stays. */
  private async raise(key: ItemKey, attribute: string, value: number, orAbsent: boolean): Promise<void> {
    try {
      await this.io.retrying(() =>
        this.io.doc.send(
          new UpdateCommand({
            TableName: this.io.table,
            Key: key,
            UpdateExpression: 'SET #a = :v',
            ConditionExpression: orAbsent ? 'attribute_not_exists(#a) OR #a < :v' : '#a < :v',
            ExpressionAttributeNames: { '#a': attribute },
            ExpressionAttributeValues: { ':v': value },
          }),
        ),
      );
    } catch (error) {
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
    return (await this.status(partition)).sealed;
  }

  async status(partition: number): Promise<{ head: number; sealed: boolean }> {
    const item = await this.io.get(Keys.logHead(partition));
    return { head: (item?.head as number | undefined) ?? 0, sealed: (item?.sealed as boolean | undefined) ?? false };
  }
}
