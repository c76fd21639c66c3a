import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { AppendResult, LogEntry, SourceLog } from '../../core/ports.js';
import { MAX_TRANSACT_ACTIONS, MAX_TRANSACT_BYTES, cancellationReasons, keyId, transactItemSize, type DynamoIo, type TransactItem } from './dynamo-io.js';
import { Keys, pad } from './table-layout.js';

/**
 * SourceLog on the job table. Partition p is the item collection `L#p`: a head item (`head` =
 * next offset, `sealed`), one item per entry (`E#<offset>`) and one dedup item per ingest id
 * (`D#<id>`, holding the entry's offset).
 *
 * append = one TransactWriteItems per chunk: the head's `head = s -> s + n` (condition on the
 * head it read), the n entries at offsets s.., and the n dedup items (condition: absent). A
 * chunk holds at most 49 entries (2 actions each + the head <= 100) and ~3.8 MB; every chunk
 * carries the head condition, so the log never has holes and concurrent appenders interleave
 * whole chunks. Ids already present are skipped (read first; an id appended concurrently fails
 * its dedup condition, and the chunk is retried without it). A large append is therefore
 * atomic per chunk, not as a whole: a crash between chunks leaves a prefix appended, and the
 * redelivered batch appends the rest (its appended ids are skipped).
 */
export class DynamoSourceLog implements SourceLog {
  constructor(private readonly io: DynamoIo) {}

  async append(partition: number, entries: readonly { id: string; event: unknown }[]): Promise<AppendResult> {
    const seen = new Set<string>();
    const unique = entries.filter((e) => (seen.has(e.id) ? false : (seen.add(e.id), true)));
    let duplicates = entries.length - unique.length;
    if (unique.length === 0) return { appended: 0, duplicates, head: await this.head(partition) };
    const existing = await this.io.batchGet(
      unique.map((e) => Keys.logDedup(partition, e.id)),
      this.io.table,
      ['pk', 'sk'],
    );
    let fresh = unique.filter((e) => !existing.has(keyId(Keys.logDedup(partition, e.id))));
    duplicates += unique.length - fresh.length;
    const payloads = new Map<string, string>();
    await Promise.all(fresh.map(async (e) => payloads.set(e.id, await this.io.encode(e.event))));

    let appended = 0;
    let headAfter: number | undefined;
    for (let attempt = 0; fresh.length > 0;) {
      const head = await this.io.get(Keys.logHead(partition));
      const start = (head?.head as number | undefined) ?? 0;
      const headAction = (n: number): TransactItem => ({
        Update: {
          TableName: this.io.table,
          Key: Keys.logHead(partition),
          UpdateExpression: 'SET #h = :next',
          ConditionExpression: head?.head === undefined ? 'attribute_not_exists(#h)' : '#h = :start',
          ExpressionAttributeNames: { '#h': 'head' },
          ExpressionAttributeValues: { ':next': start + n, ...(head?.head === undefined ? {} : { ':start': start }) },
        },
      });
      const chunk: Array<{ id: string }> = [];
      const actions: TransactItem[] = [];
      let bytes = 0;
      for (const entry of fresh) {
        const offset = start + chunk.length;
        const put: TransactItem = { Put: { TableName: this.io.table, Item: { ...Keys.logEntry(partition, offset), d: payloads.get(entry.id) } } };
        const dedup: TransactItem = {
          Put: { TableName: this.io.table, Item: { ...Keys.logDedup(partition, entry.id), o: offset }, ConditionExpression: 'attribute_not_exists(pk)' },
        };
        const size = transactItemSize(put) + transactItemSize(dedup);
        if (chunk.length > 0 && (2 * (chunk.length + 1) + 1 > MAX_TRANSACT_ACTIONS || bytes + size > MAX_TRANSACT_BYTES - 1_000)) break;
        chunk.push(entry);
        actions.push(put, dedup);
        bytes += size;
      }
      try {
        await this.io.transact([headAction(chunk.length), ...actions]);
        headAfter = start + chunk.length;
        appended += chunk.length;
        fresh = fresh.slice(chunk.length);
        attempt = 0;
      } catch (error) {
        const reasons = cancellationReasons(error);
        if (!reasons) throw error;
        const lostIds = new Set<string>();
        reasons.forEach((r, i) => {
          // actions: [head, put0, dedup0, put1, dedup1, ...]
          if (i > 0 && i % 2 === 0 && r.Code === 'ConditionalCheckFailed') lostIds.add((chunk[i / 2 - 1] as { id: string }).id);
        });
        if (lostIds.size > 0) {
          duplicates += lostIds.size;
          fresh = fresh.filter((e) => !lostIds.has(e.id));
        } else if (reasons[0]?.Code !== 'ConditionalCheckFailed') {
          throw error;
        }
        // The head moved (a concurrent appender): read it again.
        await this.io.backoff(attempt++);
      }
    }
    return { appended, duplicates, head: headAfter ?? (await this.head(partition)) };
  }

  async read(partition: number, from: number, max: number): Promise<LogEntry[]> {
    if (max <= 0) return [];
    const raws = await this.io.queryRange(Keys.logPk(partition), `E#${pad(from)}`, `E#${pad(from + max - 1)}`);
    return Promise.all(raws.map(async (raw) => ({ offset: Number(raw.sk.slice(2)), event: await this.io.decode<unknown>(raw.d as string) })));
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
