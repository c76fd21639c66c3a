import { randomUUID } from 'node:crypto';
import { DeleteCommand, UpdateCommand, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import { ConcurrentStepError, GenerationFencedError } from '../../core/errors.js';
import { murmur3 } from '../../core/hashing.js';
import { parseInstanceId } from '../../core/messages.js';
import type { ChannelStateEntry, InstanceRecord, OperatorSnapshot, StagedBatch, StateKeyRef, StateStore, StepCommit, StoredItem } from '../../core/ports.js';
import type { DynamoIo } from './dynamo-io.js';
import { MAX_TRANSACT_ACTIONS, MAX_TRANSACT_BYTES, SpilledValueMissingError, cancellationReasons, keyId, mapLimit, transactItemSize, usedNames, type Raw, type TransactItem } from './dynamo-io.js';
import { BLOB_PREFIX, Keys, TTL_ATTRIBUTE, pad, prefixEnd, ttlSeconds, type CheckpointEntry, type ItemKey } from './table-layout.js';
import { ackExpiresAt, checkpointDataExpired, closedValuesExpired, tombstoneExpired } from '../../core/retention.js';
import { chunksOf } from './chunks.js';

/**
 * StateStore on one DynamoDB table (layout: table-layout.ts).
 *
 * A step commit is ONE TransactWriteItems when it fits (at most 100 actions, ~3.8 MB): an
 * Update of the instance record conditional on its version, its generation and its fence
 * (`fg`: no step of an older generation commits once a recovery fenced the instance; see
 * fenceInstances), and on no unfinished fold (see below), a live-key counter ADD, and a Put per
 * item. No other item is read: the job's generation fence (`JOB/GEN`) would be one hot item
 * checked by every step of the job (2 write units each, and about 1,000 units per second for
 * the whole job), so a recovery fences each instance record once instead. Two writes of the same item in one commit are merged (the last wins;
 * the value the first closed is already in the change record of its epoch).
 *
 * Change records: what a restore needs of the values a step replaces is one item per step and
 * epoch (`C#`op`#`shard, sk epoch#instance#version) listing, for each key whose first write in
 * the epoch the step made, the item that write closed (`b`, or its spilled payload `bs`; none:
 * the key was absent), and the keys the step deleted (`t`: their tombstones, for prune). Not a
 * version record and an index entry per key: a step of n first writes bills n + 1 items, not
 * 3n. Restoring checkpoint N gives each key the value closed by its first write after N;
 * pruning to keepFrom deletes the records of epochs <= keepFrom (plain deletes: no step writes
 * those epochs any more) and the tombstones they name.
 *
 * A larger commit is split without losing atomicity (the "pending write" protocol):
 *   1. claim: an update of the instance record (`SET claim = T`, on the same conditions as
 *      the commit) reserves the step's commit for token T (a fresh UUID);
 *   2. pending writes: every item is written as `p` (payload) + `pt = T`, `pi` (instance),
 *      `pv` (the version the step commits) in transactions of <= 99 Updates, each with a
 *      ConditionCheck `claim = T` on the instance record: once any other attempt claims or
 *      commits, a zombie's chunks fail instead of overwriting the winner's pending values.
 *      Committed values (`d`) stay untouched, so readers see the old state;
 *   3. commit: one transaction flips the instance record to `ver = v+1, tok = T` (conditional
 *      on `claim = T`, the version, the generation and the fence) and records the list of pending
 *      items (`fold`). This is the commit point: from here a reader resolves an item with
 *      `pt = T` to its pending value (instance at `ver = pv`, `tok = pt`); before it, or if it
 *      never succeeds, to the committed one;
 *   4. fold: each pending item becomes committed (`SET d = p REMOVE p, pt, ...` if `pt = T`),
 *      then `fold` is removed. A commit requires `attribute_not_exists(fold)`, and loadInstance
 *      / putInstance finish an interrupted fold first, so an instance record past `pv` means
 *      the fold of `pv` is complete: readers that see that re-read the item.
 * Items: a commit with 250 state writes (251 items with its change record) costs 1 claim +
 * 3 pending + 1 commit + 3 fold + 1 clear = 9 requests.
 */

interface PlannedItem {
  readonly key: ItemKey;
  readonly sink: boolean;
  /** Attributes besides pk/sk and the payload (set as is, pending or not). */
  readonly attrs: Record<string, string | number>;
  /** Encoded payload (JSON or blob reference). */
  payload: string;
  /** Keyed-state items carry their epoch in `e` (committed) / `pe` (pending). */
  readonly epoch?: number;
}

type ManifestEntry = [table: 0 | 1, pk: string, sk: string, keyed: 0 | 1];

export interface DynamoStateStoreOptions {
  /** Table of the idempotent sink's upserts (default: the job table). */
  readonly sinkTable?: string;
  /** Partitions of an operator's change records (an instance's records all go to one, by the hash of its id). */
  readonly changeShards?: number;
}

const N = {
  '#d': 'd',
  '#ver': 'ver',
  '#gen': 'gen',
  '#tok': 'tok',
  '#fold': 'fold',
  '#claim': 'claim',
  '#fg': 'fg',
};

/** Instance records fenced at once by a recovery attempt. */
const FENCE_CONCURRENCY = 16;

export class DynamoStateStore implements StateStore {
  private readonly sinkTable: string;
  private readonly shards: number;
  /**
   * The stored payload (`@s3:` blob reference) of each item getItems returned spilled, by the
   * object it returned: a later commit that replaces that item knows its blob without a read.
   */
  private readonly spilledPayloads = new WeakMap<StoredItem, string>();
  /**
   * The `@s3:` payload of each instance record loadInstance or a commit left spilled, with its
   * version: the next commit over that version deletes the blob it replaces (else every step
   * of a large instance record would leave one object behind in the bucket).
   */
  private readonly spilledRecords = new Map<string, { readonly version: number; readonly payload: string }>();

  constructor(
    private readonly io: DynamoIo,
    options: DynamoStateStoreOptions = {},
  ) {
    this.sinkTable = options.sinkTable ?? io.table;
    this.shards = options.changeShards ?? 4;
  }

  private get table(): string {
    return this.io.table;
  }

  // ---------- instance records ----------

  async loadInstance(instance: string): Promise<InstanceRecord | undefined> {
    for (let attempt = 0; ; attempt++) {
      let raw = await this.io.get(Keys.instance(instance));
      if (raw?.fold !== undefined) {
        await this.finishFold(instance, raw);
        raw = await this.io.get(Keys.instance(instance));
      }
      if (raw?.d === undefined) return undefined;
      try {
        const record = await this.io.decode<InstanceRecord>(raw.d as string);
        this.noteRecordPayload(instance, record.version, raw.d as string);
        return record;
      } catch (error) {
        // A commit replaced the record (and deleted its spilled blob) between our two reads: read it again.
        if (!(error instanceof SpilledValueMissingError) || attempt >= 4) throw error;
      }
    }
  }

  async putInstance(record: InstanceRecord, options: { readonly onlyOverOlderGeneration?: boolean } = {}): Promise<boolean> {
    const key = Keys.instance(record.instance);
    const existing = await this.io.get(key);
    if (existing?.fold !== undefined) await this.finishFold(record.instance, existing);
    const d = await this.io.encode(record);
    const written = await this.updateInstance(record.instance, {
      UpdateExpression: 'SET #d = :d, #ver = :ver, #gen = :gen REMOVE #tok, #claim, #fold',
      ...(options.onlyOverOlderGeneration ? { ConditionExpression: 'attribute_not_exists(#gen) OR #gen < :gen' } : {}),
      ExpressionAttributeNames: N,
      ExpressionAttributeValues: { ':d': d, ':ver': record.version, ':gen': record.generation },
    });
    // The blob nothing refers to any more: the replaced record's, or ours if the condition refused it.
    if (written && existing?.d !== undefined && existing.d !== d) await this.io.dropBlob(existing.d);
    if (!written && d !== existing?.d) await this.io.dropBlob(d);
    return written;
  }

  async fenceInstances(instances: readonly string[], generation: number): Promise<void> {
    // A refused update: fenced at this generation or a newer one already.
    await mapLimit(instances, FENCE_CONCURRENCY, (instance) =>
      this.updateInstance(instance, {
        UpdateExpression: 'SET #fg = :g',
        ConditionExpression: 'attribute_not_exists(#fg) OR #fg < :g',
        ExpressionAttributeNames: N,
        ExpressionAttributeValues: { ':g': generation },
      }),
    );
  }

  /** An UpdateItem of the instance record; false if its condition refused it. */
  private async updateInstance(instance: string, input: Omit<UpdateCommandInput, 'TableName' | 'Key'>): Promise<boolean> {
    try {
      await this.io.retrying(() => this.io.doc.send(updateCommand(this.table, Keys.instance(instance), input)));
      return true;
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
      return false;
    }
  }

  // ---------- keyed state ----------

  async getItems(operator: string, keys: readonly StateKeyRef[]): Promise<Map<string, StoredItem>> {
    const itemKeys = keys.map((ref) => Keys.item(operator, ref.keyGroup, ref.key));
    const raw = await this.io.batchGet(itemKeys);
    const payloads = await this.io.effective(itemKeys.map((k) => raw.get(keyId(k))));
    const out = new Map<string, StoredItem>();
    await Promise.all(
      keys.map(async (ref, i) => {
        const payload = payloads[i];
        if (payload === undefined) return;
        const item = await this.io.decode<StoredItem>(payload);
        if (payload.startsWith(BLOB_PREFIX)) this.spilledPayloads.set(item, payload);
        out.set(`${ref.keyGroup}|${ref.key}`, item);
      }),
    );
    return out;
  }

  // ---------- commit ----------

  async commitStep(commit: StepCommit): Promise<void> {
    const { items, liveDelta, replacedBlobs } = await this.plan(commit);
    const recordPayload = await this.io.encode(commit.record);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.tryCommit(commit, items, liveDelta, recordPayload);
        const previous = this.spilledRecords.get(commit.instance);
        if (previous?.version === commit.expectedVersion && previous.payload !== recordPayload) replacedBlobs.push(previous.payload);
        this.noteRecordPayload(commit.instance, commit.record.version, recordPayload);
        await Promise.all(replacedBlobs.map((b) => this.io.dropBlob(b)));
        return;
      } catch (error) {
        if (error instanceof UnfinishedFold && attempt < 3) {
          await this.finishFold(commit.instance, error.raw);
          continue;
        }
        throw error;
      }
    }
  }

  private noteRecordPayload(instance: string, version: number, payload: string): void {
    if (payload.startsWith(BLOB_PREFIX)) this.spilledRecords.set(instance, { version, payload });
    else this.spilledRecords.delete(instance);
  }

  /** The change-record partition of an instance: an operator's records spread over `changeShards` keys. */
  private shardOf(instance: string): number {
    return murmur3(instance) % this.shards;
  }

  /**
   * The items a commit writes, merged per item (the last write of an item wins), and the blobs
   * of spilled values that the commit replaces and nothing else refers to afterwards.
   */
  private async plan(commit: StepCommit): Promise<{ items: PlannedItem[]; liveDelta: number; replacedBlobs: string[] }> {
    const op = commit.operator;
    /** `spilled`: the value's payload as already stored in S3, written as is instead of encoding `value`. */
    type ItemOptions = { attrs?: Record<string, string | number>; sink?: boolean; epoch?: number; spilled?: string | undefined };
    const planned = new Map<string, { key: ItemKey; value: unknown } & ItemOptions>();
    const add = (key: ItemKey, value: unknown, options: ItemOptions = {}): void => {
      planned.set(`${options.sink ? 1 : 0}${keyId(key)}`, { key, value, ...options });
    };
    const replacedBlobs: string[] = [];
    let liveDelta = 0;
    // The step's change records, one per epoch it wrote in (a barrier inside the step closes one).
    const changes = new Map<number, ChangeEntry[]>();
    for (const write of commit.stateWrites) {
      const previous = write.previous;
      // The S3 blob of the value this write replaces, if it was read from the store spilled.
      const previousBlob = previous ? this.spilledPayloads.get(previous) : undefined;
      const first = !previous || previous.epoch < write.epoch;
      if (first || write.value === null) {
        // First write of this key in this epoch: the change record keeps the value it closes
        // (a spilled value by its blob, no second upload). A delete leaves a tombstone for prune.
        const entry: ChangeEntry = { g: write.keyGroup, k: write.key };
        if (first) {
          entry.f = 1;
          if (previousBlob !== undefined) entry.bs = previousBlob;
          else if (previous) entry.b = { value: previous.value, epoch: previous.epoch };
        }
        if (write.value === null) entry.t = 1;
        changes.set(write.epoch, [...(changes.get(write.epoch) ?? []), entry]);
      }
      if (!first && previousBlob !== undefined) {
        // Overwritten within its epoch: no checkpoint holds that value, so its blob goes.
        replacedBlobs.push(previousBlob);
      }
      add(Keys.item(op, write.keyGroup, write.key), { value: write.value, epoch: write.epoch } satisfies StoredItem, { epoch: write.epoch });
      liveDelta += (write.value !== null ? 1 : 0) - (previous && previous.value !== null ? 1 : 0);
    }
    for (const [epoch, entries] of changes) add(Keys.change(op, this.shardOf(commit.instance), epoch, commit.instance, commit.record.version), entries);
    // A snapshot and the ack of the same step share one item (table-layout.ts); an ack of a
    // snapshot an earlier step took (unaligned) is an item of its own, which TTL removes for free.
    const acks = new Map(commit.acks.map((ack) => [ack.checkpointId, ack]));
    for (const snapshot of commit.snapshots ?? []) {
      const ack = acks.get(snapshot.checkpointId);
      acks.delete(snapshot.checkpointId);
      add(Keys.ack(snapshot.checkpointId, commit.instance), { snapshot: snapshot.state, ...(ack ? { ack } : {}) } satisfies CheckpointEntry);
    }
    for (const ack of acks.values()) {
      add(Keys.lateAck(ack.checkpointId, ack.instance), { ack } satisfies CheckpointEntry, { attrs: { [TTL_ATTRIBUTE]: ttlSeconds(ackExpiresAt(ack.at)) } });
    }
    for (const part of commit.channelState) add(Keys.channelState(op, part.checkpointId, commit.instance, commit.record.version), part.entries);
    for (const staged of commit.staged) {
      add(Keys.staged(staged.sink, staged.epoch, commit.instance, commit.record.version), staged.records, { attrs: { inst: commit.instance, ep: staged.epoch } });
    }
    for (const upsert of commit.upserts) add(Keys.sinkUpsert(upsert.sink, upsert.key), upsert.value, { attrs: { key: upsert.key }, sink: this.sinkTable !== this.table });
    for (const letter of commit.deadLetters) add(Keys.deadLetter(letter.id), letter);
    const items = await Promise.all(
      [...planned.values()].map(async (p) => ({
        key: p.key,
        sink: p.sink ?? false,
        attrs: p.attrs ?? {},
        payload: p.spilled ?? (await this.io.encode(p.value)),
        ...(p.epoch === undefined ? {} : { epoch: p.epoch }),
      })),
    );
    return { items, liveDelta, replacedBlobs };
  }

  private instanceCondition(commit: StepCommit): { expr: string; values: Record<string, unknown> } {
    const values = { ':ev': commit.expectedVersion, ':g': commit.generation };
    const unfenced = '(attribute_not_exists(#fg) OR #fg <= :g)';
    const expr =
      commit.expectedVersion === 0
        ? `(attribute_not_exists(#ver) OR #ver = :ev) AND (attribute_not_exists(#gen) OR #gen = :g) AND ${unfenced} AND attribute_not_exists(#fold)`
        : `#ver = :ev AND #gen = :g AND ${unfenced} AND attribute_not_exists(#fold)`;
    return { expr, values };
  }

  private fenceCheck(generation: number): TransactItem {
    return {
      ConditionCheck: {
        TableName: this.table,
        Key: Keys.generationFence(),
        ConditionExpression: 'attribute_not_exists(pk) OR #gen = :g',
        ExpressionAttributeNames: { '#gen': 'gen' },
        ExpressionAttributeValues: { ':g': generation },
      },
    };
  }

  private liveAdd(commit: StepCommit, delta: number): TransactItem[] {
    if (delta === 0) return [];
    return [
      {
        Update: {
          TableName: this.table,
          Key: Keys.live(commit.operator, commit.instance),
          UpdateExpression: 'ADD #n :n',
          ExpressionAttributeNames: { '#n': 'n' },
          ExpressionAttributeValues: { ':n': delta },
        },
      },
    ];
  }

  private putAction(item: PlannedItem): TransactItem {
    return {
      Put: {
        TableName: item.sink ? this.sinkTable : this.table,
        Item: { pk: item.key.pk, sk: item.key.sk, ...item.attrs, d: item.payload, ...(item.epoch === undefined ? {} : { e: item.epoch }) },
      },
    };
  }

  private async tryCommit(commit: StepCommit, items: PlannedItem[], liveDelta: number, recordPayload: string): Promise<void> {
    const cond = this.instanceCondition(commit);
    const fixed = 2 + (liveDelta !== 0 ? 1 : 0);
    const puts = items.map((i) => this.putAction(i));
    const bytes = puts.reduce((s, a) => s + transactItemSize(a), 0) + Buffer.byteLength(recordPayload) + 2_000;
    if (fixed + puts.length <= MAX_TRANSACT_ACTIONS && bytes <= MAX_TRANSACT_BYTES) {
      const instanceUpdate: TransactItem = {
        Update: {
          TableName: this.table,
          Key: Keys.instance(commit.instance),
          UpdateExpression: 'SET #d = :d, #ver = :nv, #gen = :g REMOVE #claim, #tok',
          ConditionExpression: cond.expr,
          ExpressionAttributeNames: N,
          ExpressionAttributeValues: { ...cond.values, ':d': recordPayload, ':nv': commit.record.version },
        },
      };
      await this.transactMapped(commit, [instanceUpdate, ...this.liveAdd(commit, liveDelta), ...puts]);
      return;
    }
    await this.commitSplit(commit, items, liveDelta, recordPayload);
  }

  private async commitSplit(commit: StepCommit, items: PlannedItem[], liveDelta: number, recordPayload: string): Promise<void> {
    const token = randomUUID();
    const cond = this.instanceCondition(commit);
    const instanceKey = Keys.instance(commit.instance);
    // 1. claim
    await this.transactMapped(commit, [
      {
        Update: {
          TableName: this.table,
          Key: instanceKey,
          UpdateExpression: 'SET #claim = :t',
          ConditionExpression: cond.expr,
          ExpressionAttributeNames: N,
          ExpressionAttributeValues: { ...cond.values, ':t': token },
        },
      },
    ]);
    // 2. pending writes, each chunk guarded by the claim
    const claimCheck: TransactItem = {
      ConditionCheck: {
        TableName: this.table,
        Key: instanceKey,
        ConditionExpression: '#claim = :t',
        ExpressionAttributeNames: { '#claim': 'claim' },
        ExpressionAttributeValues: { ':t': token },
      },
    };
    const pendingActions = items.map((item): TransactItem => {
      const names: Record<string, string> = { '#p': 'p', '#pt': 'pt', '#pi': 'pi', '#pv': 'pv' };
      const values: Record<string, unknown> = { ':p': item.payload, ':t': token, ':i': commit.instance, ':v': commit.record.version };
      const sets = ['#p = :p', '#pt = :t', '#pi = :i', '#pv = :v'];
      Object.entries(item.attrs).forEach(([name, value], i) => {
        names[`#x${i}`] = name;
        values[`:x${i}`] = value;
        sets.push(`#x${i} = :x${i}`);
      });
      if (item.epoch !== undefined) {
        names['#pe'] = 'pe';
        values[':pe'] = item.epoch;
        sets.push('#pe = :pe');
      }
      return {
        Update: {
          TableName: item.sink ? this.sinkTable : this.table,
          Key: item.key,
          UpdateExpression: `SET ${sets.join(', ')}`,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        },
      };
    });
    for (const chunk of chunkActions(pendingActions, MAX_TRANSACT_ACTIONS - 1, MAX_TRANSACT_BYTES - 1_000)) {
      try {
        await this.io.transact([claimCheck, ...chunk]);
      } catch (error) {
        if (cancellationReasons(error)?.[0]?.Code === 'ConditionalCheckFailed') throw await this.lostClaim(commit);
        throw error;
      }
    }
    // 3. commit point
    const manifest: ManifestEntry[] = items.map((i) => [i.sink ? 1 : 0, i.key.pk, i.key.sk, i.epoch === undefined ? 0 : 1]);
    const fold = await this.io.encode(manifest);
    await this.transactMapped(commit, [
      {
        Update: {
          TableName: this.table,
          Key: instanceKey,
          UpdateExpression: 'SET #d = :d, #ver = :nv, #gen = :g, #tok = :t, #fold = :m REMOVE #claim',
          ConditionExpression: `${cond.expr} AND #claim = :t`,
          ExpressionAttributeNames: N,
          ExpressionAttributeValues: { ...cond.values, ':d': recordPayload, ':nv': commit.record.version, ':t': token, ':m': fold },
        },
      },
      ...this.liveAdd(commit, liveDelta),
    ]);
    // 4. fold (finished by loadInstance / putInstance if this process dies here)
    await this.fold(token, manifest);
    await this.clearFold(commit.instance, token, fold);
  }

  /** Runs a commit transaction whose first action is the instance record's update. */
  private async transactMapped(commit: StepCommit, actions: TransactItem[]): Promise<void> {
    try {
      await this.io.transact(actions);
    } catch (error) {
      const reasons = cancellationReasons(error);
      if (reasons?.[0]?.Code === 'ConditionalCheckFailed') throw await this.instanceConflict(commit);
      throw error;
    }
  }

  private async instanceConflict(commit: StepCommit): Promise<Error> {
    const raw = await this.io.get(Keys.instance(commit.instance));
    const version = (raw?.ver as number | undefined) ?? 0;
    // Fenced first: a step of an old generation is dropped, whatever else moved meanwhile.
    if (typeof raw?.fg === 'number' && raw.fg > commit.generation) return new GenerationFencedError(commit.generation, raw.fg);
    if (raw?.gen !== undefined && raw.gen !== commit.generation) return new GenerationFencedError(commit.generation, raw.gen as number);
    if (version !== commit.expectedVersion) return new ConcurrentStepError(commit.instance, commit.expectedVersion, version);
    if (raw?.fold !== undefined) return new UnfinishedFold(raw);
    // Another attempt of the same step claimed the commit (split commits only).
    return new ConcurrentStepError(commit.instance, commit.expectedVersion, version);
  }

  private async lostClaim(commit: StepCommit): Promise<Error> {
    const error = await this.instanceConflict(commit);
    return error instanceof UnfinishedFold ? new ConcurrentStepError(commit.instance, commit.expectedVersion, commit.expectedVersion) : error;
  }

  private async finishFold(instance: string, raw: Raw): Promise<void> {
    const manifest = await this.io.decode<ManifestEntry[]>(raw.fold as string);
    await this.fold(raw.tok as string, manifest);
    await this.clearFold(instance, raw.tok as string, raw.fold as string);
  }

  /** Pending -> committed for every item still pending with this token. Idempotent. */
  private async fold(token: string, manifest: readonly ManifestEntry[]): Promise<void> {
    const actions = manifest.map(([t, pk, sk, keyed]): TransactItem => ({
      Update: {
        TableName: t === 1 ? this.sinkTable : this.table,
        Key: { pk, sk },
        UpdateExpression: keyed ? 'SET #d = #p, #e = #pe REMOVE #p, #pt, #pi, #pv, #pe' : 'SET #d = #p REMOVE #p, #pt, #pi, #pv',
        ConditionExpression: '#pt = :t',
        ExpressionAttributeNames: { '#d': 'd', '#p': 'p', '#pt': 'pt', '#pi': 'pi', '#pv': 'pv', ...(keyed ? { '#e': 'e', '#pe': 'pe' } : {}) },
        ExpressionAttributeValues: { ':t': token },
      },
    }));
    for (const chunk of chunkActions(actions, MAX_TRANSACT_ACTIONS, MAX_TRANSACT_BYTES)) {
      let todo = chunk;
      while (todo.length > 0) {
        try {
          await this.io.transact(todo);
          break;
        } catch (error) {
          const reasons = cancellationReasons(error);
          if (!reasons) throw error;
          // Items overwritten since (a restore, a later direct write) or already folded: skip them.
          const failed = new Set(reasons.flatMap((r, i) => (r.Code === 'ConditionalCheckFailed' ? [i] : [])));
          if (failed.size === 0) throw error;
          todo = todo.filter((_, i) => !failed.has(i));
        }
      }
    }
  }

  private async clearFold(instance: string, token: string, fold: string): Promise<void> {
    const cleared = await this.updateInstance(instance, {
      UpdateExpression: 'REMOVE #fold',
      ConditionExpression: '#tok = :t AND attribute_exists(#fold)',
      ExpressionAttributeNames: { '#fold': 'fold', '#tok': 'tok' },
      ExpressionAttributeValues: { ':t': token },
    });
    if (cleared) await this.io.dropBlob(fold);
  }

  // ---------- snapshots ----------

  async loadSnapshot(instance: string, checkpointId: number): Promise<OperatorSnapshot | undefined> {
    const op = parseInstanceId(instance).vertexId;
    const [entry] = await this.io.readValues<CheckpointEntry>([await this.io.get(Keys.ack(checkpointId, instance))]);
    const state = entry?.snapshot;
    if (!state) return undefined;
    const prefix = Keys.channelStatePrefix(checkpointId, instance);
    const parts = await this.io.queryRange(Keys.channelStatePk(op), prefix, prefixEnd(prefix));
    const values = await this.io.readValues<ChannelStateEntry[]>(parts);
    return { state, channelState: values.flatMap((v) => v ?? []) };
  }

  // ---------- restore and prune ----------

  /**
   * The operator's change records with lo <= sk <= hi, over every shard, in sk order (epoch,
   * instance, version), each with its entries as readers see them (undefined: a stray, the
   * pending write of a split commit that never committed).
   */
  private async changeRecords(operator: string, lo: string, hi: string): Promise<Array<{ raw: Raw; entries: ChangeEntry[] | undefined }>> {
    const shards = await Promise.all(Array.from({ length: this.shards }, (_, s) => this.io.queryRange(Keys.changePk(operator, s), lo, hi)));
    const raws = shards.flat().sort((x, y) => (x.sk < y.sk ? -1 : x.sk > y.sk ? 1 : 0));
    const entries = await this.io.readValues<ChangeEntry[]>(raws);
    return raws.map((raw, i) => ({ raw, entries: entries[i] }));
  }

  /**
   * Restores checkpoint N: every key with a first write after N gets the value that write
   * closed (the first such entry in epoch order: the key did not change between N and it),
   * then the change records after N go, newest first. A crash in between leaves records, and a
   * rerun restores the same values (the oldest record of a key is the last to go).
   */
  async restoreOperator(operator: string, checkpointId: number, fence?: { readonly generation: number }): Promise<{ keysRestored: number }> {
    const records = await this.changeRecords(operator, pad(checkpointId + 1), '\uffff');
    const firsts = new Map<string, ChangeEntry>();
    for (const { entries } of records) {
      for (const entry of entries ?? []) if (entry.f === 1 && !firsts.has(`${entry.g}|${entry.k}`)) firsts.set(`${entry.g}|${entry.k}`, entry);
    }
    const targets = [...firsts.values()];
    const itemKeys = targets.map((e) => Keys.item(operator, e.g, e.k));
    const raws = await this.io.batchGet(itemKeys);
    const itemRaws = itemKeys.map((k) => raws.get(keyId(k)));
    const items = await this.io.readValues<StoredItem>(itemRaws);
    const groups: Array<{ actions: TransactItem[]; delta: number; blobs: unknown[] }> = [];
    for (const [i, entry] of targets.entries()) {
      const key = itemKeys[i] as ItemKey;
      const restored = entry.bs !== undefined ? await this.io.decode<StoredItem>(entry.bs) : entry.b;
      const isLive = restored !== undefined && restored.value !== null;
      const action: TransactItem = isLive
        ? { Put: { TableName: this.table, Item: { ...key, d: await this.io.encode({ value: restored.value, epoch: restored.epoch } satisfies StoredItem), e: restored.epoch } } }
        : { Delete: { TableName: this.table, Key: key } };
      const item = items[i];
      const wasLive = item !== undefined && item.value !== null;
      groups.push({ actions: [action], delta: (isLive ? 1 : 0) - (wasLive ? 1 : 0), blobs: [itemRaws[i]?.d, itemRaws[i]?.p] });
    }
    await this.runGroups(groups, Keys.liveRestore(operator), fence?.generation);
    const doomed = [...records].reverse().map((r) => ({ actions: [{ Delete: { TableName: this.table, Key: { pk: r.raw.pk, sk: r.raw.sk } } }], delta: 0, blobs: recordBlobs(r) }));
    await this.runGroups(doomed, undefined, fence?.generation);
    return { keysRestored: targets.length };
  }

  /** Executes groups of actions in transactions of <= 100 actions (a group is split only if it alone is larger). */
  /**
   * With `generation`, every transaction also checks the generation fence: a restore of a
   * superseded recovery attempt stops at its next transaction (GenerationFencedError).
   */
  private async runGroups(groups: ReadonlyArray<{ actions: TransactItem[]; delta: number; blobs: unknown[] }>, liveKey?: ItemKey, generation?: number): Promise<void> {
    let batch: TransactItem[] = [];
    let delta = 0;
    let blobs: unknown[] = [];
    const room = MAX_TRANSACT_ACTIONS - 1 - (generation === undefined ? 0 : 1);
    const flush = async (): Promise<void> => {
      if (batch.length === 0 && delta === 0) return;
      const actions = generation === undefined ? [...batch] : [this.fenceCheck(generation), ...batch];
      if (delta !== 0 && liveKey) {
        actions.push({
          Update: { TableName: this.table, Key: liveKey, UpdateExpression: 'ADD #n :n', ExpressionAttributeNames: { '#n': 'n' }, ExpressionAttributeValues: { ':n': delta } },
        });
      }
      try {
        await this.io.transact(actions);
      } catch (error) {
        if (generation !== undefined && cancellationReasons(error)?.[0]?.Code === 'ConditionalCheckFailed') {
          const current = await this.io.get(Keys.generationFence());
          throw new GenerationFencedError(generation, (current?.gen as number | undefined) ?? -1);
        }
        throw error;
      }
      await Promise.all(blobs.map((b) => this.io.dropBlob(b)));
      batch = [];
      delta = 0;
      blobs = [];
    };
    let bytes = 0;
    for (const group of groups) {
      const size = group.actions.reduce((sum, a) => sum + transactItemSize(a), 0);
      if (batch.length + group.actions.length > room || (batch.length > 0 && bytes + size > MAX_TRANSACT_BYTES)) {
        await flush();
        bytes = 0;
      }
      let actions = group.actions;
      while (actions.length > room) {
        batch = actions.slice(0, room);
        actions = actions.slice(room);
        await flush();
      }
      batch.push(...actions);
      bytes += size;
      delta += group.delta;
      blobs.push(...group.blobs);
    }
    await flush();
  }

  /**
   * Prune to `keepFrom` (shared/core/retention.ts): a restore to a retained checkpoint reads only
   * change records after it, so the records of epochs <= keepFrom go, and with them the
   * tombstones they left (a deleted key's null item, if nothing wrote the key since: the
   * delete is conditional on the exact tombstone). No step writes an epoch <= keepFrom any
   * more: every instance snapshotted checkpoint keepFrom before it completed.
   */
  async prune(operator: string, keepFrom: number): Promise<void> {
    const epochOf = (r: { raw: Raw }): number => Number(r.raw.sk.slice(0, 12));
    const records = (await this.changeRecords(operator, pad(0), prefixEnd(pad(keepFrom)))).filter((r) => closedValuesExpired(epochOf(r), keepFrom));
    const tombstones = new Map<string, { key: ItemKey; epoch: number }>();
    for (const r of records) {
      const epoch = epochOf(r);
      for (const entry of r.entries ?? []) {
        if (entry.t === 1 && tombstoneExpired({ value: null, epoch }, keepFrom)) tombstones.set(`${entry.g}|${entry.k}|${epoch}`, { key: Keys.item(operator, entry.g, entry.k), epoch });
      }
    }
    await mapLimit([...tombstones.values()], FENCE_CONCURRENCY, (t) => this.deleteTombstone(t.key, t.epoch));
    await this.io.batchWrite(records.map((r) => ({ delete: { pk: r.raw.pk, sk: r.raw.sk } })));
    await Promise.all(records.flatMap(recordBlobs).map((b) => this.io.dropBlob(b)));
    // (Snapshots go with their checkpoint records: DynamoCheckpointStore.forgetBelow.)
    await this.pruneCheckpointData(Keys.channelStatePk(operator), keepFrom);
  }

  /** Deletes a key's item if it is still the tombstone written in `epoch` (and no split commit has a write pending on it). */
  private async deleteTombstone(key: ItemKey, epoch: number): Promise<void> {
    const tombstone = await this.io.encode({ value: null, epoch } satisfies StoredItem);
    try {
      await this.io.retrying(() =>
        this.io.doc.send(
          new DeleteCommand({
            TableName: this.table,
            Key: key,
            ConditionExpression: '#d = :d AND attribute_not_exists(#pt)',
            ExpressionAttributeNames: { '#d': 'd', '#pt': 'pt' },
            ExpressionAttributeValues: { ':d': tombstone },
          }),
        ),
      );
    } catch (error) {
      // Written since (a new value, or a later tombstone that a later prune removes).
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
    }
  }

  private async pruneCheckpointData(pk: string, keepFrom: number): Promise<void> {
    if (keepFrom <= 0) return;
    const old = await this.io.queryRange(pk, pad(0), pad(keepFrom));
    const doomed = old.filter((r) => checkpointDataExpired(Number(r.sk.slice(0, 12)), keepFrom));
    await this.io.batchWrite(doomed.map((r) => ({ delete: { pk: r.pk, sk: r.sk } })));
    await Promise.all(doomed.map((r) => this.io.dropBlob(r.d)));
  }

  // ---------- staged sink output ----------

  async readStaged(sink: string, throughEpoch: number): Promise<StagedBatch[]> {
    const raws = await this.io.queryRange(Keys.stagedPk(sink), pad(0), prefixEnd(pad(throughEpoch)));
    const values = await this.io.readValues<unknown[]>(raws);
    const merged = new Map<string, StagedBatch>();
    raws.forEach((raw, i) => {
      const records = values[i];
      if (records === undefined) return;
      const epoch = raw.ep as number;
      const instance = raw.inst as string;
      const id = `${pad(epoch)}|${instance}`;
      const existing = merged.get(id);
      merged.set(id, existing ? { ...existing, records: [...existing.records, ...records] } : { instance, epoch, records });
    });
    return [...merged.values()];
  }

  async dropStaged(sink: string, batches: readonly { instance: string; epoch: number }[]): Promise<void> {
    const pk = Keys.stagedPk(sink);
    const found = await Promise.all(
      batches.map((b) => {
        const prefix = Keys.stagedPrefix(b.epoch, b.instance);
        return this.io.queryRange(pk, prefix, prefixEnd(prefix));
      }),
    );
    const doomed = found.flat();
    await this.io.batchWrite(doomed.map((r) => ({ delete: { pk: r.pk, sk: r.sk } })));
    await Promise.all(doomed.map((r) => this.io.dropBlob(r.d)));
  }

  async discardStagedAfter(sink: string, epoch: number): Promise<number> {
    const raws = await this.io.queryRange(Keys.stagedPk(sink), pad(epoch + 1), '\uffff');
    const visible = await this.io.effective(raws);
    await this.io.batchWrite(raws.map((r) => ({ delete: { pk: r.pk, sk: r.sk } })));
    await Promise.all(raws.map((r) => this.io.dropBlob(r.d)));
    return visible.filter((v) => v !== undefined).length;
  }

  async countKeys(operator: string): Promise<number> {
    const counters = await this.io.queryPartition(Keys.livePk(operator));
    return counters.reduce((sum, c) => sum + ((c.n as number | undefined) ?? 0), 0);
  }
}

/**
 * One key in a step's change record: `f` the step's write is the key's first in the epoch,
 * with `b` the item it closed (absent: the key had none) or `bs` that item's spilled payload;
 * `t` the step deleted the key (its item is a tombstone until a prune).
 */
interface ChangeEntry {
  readonly g: number;
  readonly k: string;
  f?: 1;
  b?: StoredItem;
  bs?: string;
  t?: 1;
}

/** The blobs a change record holds: its own payload's (committed or pending) and the spilled values it closed. */
function recordBlobs(record: { readonly raw: Raw; readonly entries: readonly ChangeEntry[] | undefined }): unknown[] {
  return [record.raw.d, record.raw.p, ...(record.entries ?? []).map((e) => e.bs)];
}

/** An instance record with an unfinished fold blocks the next commit until the fold completes. */
class UnfinishedFold extends Error {
  constructor(readonly raw: Raw) {
    super('instance record has an unfinished fold');
  }
}

function chunkActions(actions: readonly TransactItem[], maxActions: number, maxBytes: number): TransactItem[][] {
  return chunksOf(actions, transactItemSize, maxActions, maxBytes);
}

function updateCommand(table: string, key: ItemKey, input: Omit<UpdateCommandInput, 'TableName' | 'Key'>): UpdateCommand {
  const names = input.ExpressionAttributeNames && usedNames([input.UpdateExpression, input.ConditionExpression], input.ExpressionAttributeNames);
  return new UpdateCommand({ TableName: table, Key: { pk: key.pk, sk: key.sk }, ...input, ...(names ? { ExpressionAttributeNames: names } : {}) });
}
