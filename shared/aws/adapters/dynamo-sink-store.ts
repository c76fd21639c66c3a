import type { Clock, DeadLetter, DeadLetterStore, SinkStore } from '../../core/ports.js';
import type { DynamoIo } from './dynamo-io.js';
import { Keys, TTL_ATTRIBUTE, ttlSeconds } from './table-layout.js';

export interface DynamoSinkStoreOptions {
  /**
   * Published batches of transactional sinks carry the table's TTL attribute this long after
   * they are published, so DynamoDB deletes them for free. @default kept until their user deletes them
   */
  readonly outputRetentionMs?: number;
  readonly clock?: Clock;
}

/**
 * A DynamoDB table sink. Transactional sinks: one item per published batch (`SB#<sink>`,
 * sk = batchId), so a re-publish of the same batch overwrites it with the same records.
 * Idempotent sinks: one item per key (`SU#<sink>`, sk = key), written by step commits (and by
 * `upsert`). Values are JSON in `d` (spilled to S3 above the threshold).
 *
 * Retention: with `outputRetentionMs`, a published batch expires (TTL) that long after its
 * publication. A rollback only withdraws and republishes batches after the restored
 * checkpoint, which are younger than any retention worth setting (CairnJob requires a day at
 * least). An idempotent sink's items are current values by key and never expire.
 */
export class DynamoSinkStore implements SinkStore {
  private readonly clock: Clock;

  constructor(
    private readonly io: DynamoIo,
    private readonly table: string = io.table,
    private readonly options: DynamoSinkStoreOptions = {},
  ) {
    this.clock = options.clock ?? { now: () => Date.now() };
  }

  async publish(sink: string, batchId: string, records: readonly unknown[]): Promise<void> {
    const key = Keys.sinkBatch(sink, batchId);
    const retention = this.options.outputRetentionMs;
    const expiry = retention === undefined ? {} : { [TTL_ATTRIBUTE]: ttlSeconds(this.clock.now() + retention) };
    await this.io.batchWrite([{ put: { ...key, id: batchId, d: await this.io.encode(records, { compress: false }), ...expiry } }], this.table);
  }

  async upsert(sink: string, entries: readonly { key: string; value: unknown }[]): Promise<void> {
    const puts = await Promise.all(entries.map(async (e) => ({ put: { ...Keys.sinkUpsert(sink, e.key), key: e.key, d: await this.io.encode(e.value, { compress: false }) } })));
    await this.io.batchWrite(puts, this.table);
  }

  async retractFrom(sink: string, fromBatchId: string): Promise<void> {
    // Sort keys keep the batch ids' order up to escaping; the exact cut is made on the stored id.
    const raws = await this.io.queryRange(Keys.sinkBatchPk(sink), Keys.sinkBatch(sink, fromBatchId).sk, '\uffff', this.table);
    const doomed = raws.filter((raw) => ((raw.id as string | undefined) ?? raw.sk) >= fromBatchId);
    await this.io.batchWrite(
      doomed.map((raw) => ({ delete: { pk: raw.pk, sk: raw.sk } })),
      this.table,
    );
    await Promise.all(doomed.map((raw) => this.io.dropBlob(raw.d)));
  }

  async read(sink: string): Promise<unknown[]> {
    const [batches, upserts] = await Promise.all([this.io.queryPartition(Keys.sinkBatchPk(sink), this.table), this.io.queryPartition(Keys.sinkUpsertPk(sink), this.table)]);
    const [batchValues, upsertValues] = await Promise.all([this.io.readValues<unknown[]>(batches, this.table), this.io.readValues<unknown>(upserts, this.table)]);
    // Plain code-unit order of batch ids, then of keys (never localeCompare: locale-dependent).
    const orderedBatches = batches
      .map((raw, i) => ({ id: (raw.id as string | undefined) ?? raw.sk, value: batchValues[i] }))
      .filter((b) => b.value !== undefined)
      .sort((a, b) => byCodeUnits(a.id, b.id));
    const orderedUpserts = upserts
      .map((raw, i) => ({ key: (raw.key as string | undefined) ?? raw.sk, value: upsertValues[i] }))
      .filter((u) => u.value !== undefined)
      .sort((a, b) => byCodeUnits(a.key, b.key));
    return [...orderedBatches.flatMap((b) => b.value ?? []), ...orderedUpserts.map((u) => u.value)];
  }
}

/** Dead letters in partition `DL`, one item per letter id (a letter written twice is one). */
export class DynamoDeadLetterStore implements DeadLetterStore {
  constructor(private readonly io: DynamoIo) {}

  async put(letters: readonly DeadLetter[]): Promise<void> {
    const puts = await Promise.all(letters.map(async (l) => ({ put: { ...Keys.deadLetter(l.id), d: await this.io.encode(l, { compress: false }) } })));
    await this.io.batchWrite(puts);
  }

  async list(): Promise<DeadLetter[]> {
    const raws = await this.io.queryPartition(Keys.deadLetterPk);
    const values = await this.io.readValues<DeadLetter>(raws);
    return values.filter((v): v is DeadLetter => v !== undefined).sort((a, b) => a.at - b.at || byCodeUnits(a.id, b.id));
  }

  async remove(ids: readonly string[]): Promise<void> {
    const keys = ids.map((id) => Keys.deadLetter(id));
    const raws = await this.io.batchGet(keys);
    await this.io.batchWrite(keys.map((key) => ({ delete: key })));
    await Promise.all([...raws.values()].map((raw) => this.io.dropBlob(raw.d)));
  }
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
