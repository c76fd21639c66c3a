import { randomUUID } from 'node:crypto';
import { UpdateCommand, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import { ConcurrentStepError, GenerationFencedError } from '../../core/errors.js';
import { parseInstanceId } from '../../core/messages.js';
import type { ChannelStateEntry, InstanceRecord, OperatorSnapshot, OperatorSnapshotState, StagedBatch, StateKeyRef, StateStore, StepCommit, StoredItem } from '../../core/ports.js';
import type { DynamoIo } from './dynamo-io.js';
import { MAX_TRANSACT_ACTIONS, MAX_TRANSACT_BYTES, SpilledValueMissingError, cancellationReasons, keyId, mapLimit, transactItemSize, usedNames, type Raw, type TransactItem } from './dynamo-io.js';
import { BLOB_PREFIX, Keys, pad, prefixEnd, type ItemKey } from './table-layout.js';
import { checkpointDataExpired, tombstoneExpired, versionsToKeep } from '../../core/retention.js';

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
 * the copy-on-write of the first has already become a version record of its own key).
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
 * Items: a commit with 250 state writes (~750 items incl. version records and index entries)
 * costs 1 claim + 8 pending + 1 commit + 8 fold + 1 clear = ~19 requests.
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
  /** Shards of the changed-keys index per operator. */
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

  private shard(keyGroup: number): number {
    return keyGroup % this.shards;
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
    for (const write of commit.stateWrites) {
      const previous = write.previous;
      // The S3 blob of the value this write replaces, if it was read from the store spilled.
      const previousBlob = previous ? this.spilledPayloads.get(previous) : undefined;
      if (!previous || previous.epoch < write.epoch) {
        // First write of this key in this epoch: keep the value it closes as a version record.
        // A spilled value moves to the version record as it is (same blob, no second upload).
        if (previous) {
          const closed: StoredItem = { value: previous.value, epoch: previous.epoch };
          add(Keys.version(op, write.keyGroup, write.key, previous.epoch), closed, { spilled: previousBlob });
        }
        add(Keys.change(op, this.shard(write.keyGroup), write.epoch, write.keyGroup, write.key), 1, { attrs: { kg: write.keyGroup, key: write.key } });
      } else if (previousBlob !== undefined) {
        // Overwritten within its epoch: no checkpoint holds that value, so its blob goes.
        replacedBlobs.push(previousBlob);
      }
      add(Keys.item(op, write.keyGroup, write.key), { value: write.value, epoch: write.epoch } satisfies StoredItem, { epoch: write.epoch });
      liveDelta += (write.value !== null ? 1 : 0) - (previous && previous.value !== null ? 1 : 0);
    }
    for (const snapshot of commit.snapshots ?? []) add(Keys.snapshot(op, snapshot.checkpointId, commit.instance), snapshot.state);
    for (const part of commit.channelState) add(Keys.channelState(op, part.checkpointId, commit.instance, commit.record.version), part.entries);
    for (const ack of commit.acks) add(Keys.ack(ack.checkpointId, ack.instance), ack);
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
    const [state] = await this.io.readValues<OperatorSnapshotState>([await this.io.get(Keys.snapshot(op, checkpointId, instance))]);
    if (!state) return undefined;
    const prefix = Keys.channelStatePrefix(checkpointId, instance);
    const parts = await this.io.queryRange(Keys.channelStatePk(op), prefix, prefixEnd(prefix));
    const values = await this.io.readValues<ChannelStateEntry[]>(parts);
    return { state, channelState: values.flatMap((v) => v ?? []) };
  }

  // ---------- restore and prune ----------

  private async changedEntries(operator: string, lo: string, hi: string): Promise<Raw[]> {
    const shards = await Promise.all(Array.from({ length: this.shards }, (_, s) => this.io.queryRange(Keys.changePk(operator, s), lo, hi)));
    return shards.flat();
  }

  private async keyState(
    operator: string,
    refs: readonly StateKeyRef[],
  ): Promise<Array<{ ref: StateKeyRef; raw: Raw | undefined; item: StoredItem | undefined; versions: Array<{ raw: Raw; epoch: number; value: StoredItem['value'] | undefined; visible: boolean }> }>> {
    const itemKeys = refs.map((r) => Keys.item(operator, r.keyGroup, r.key));
    const raws = await this.io.batchGet(itemKeys);
    const itemRaws = itemKeys.map((k) => raws.get(keyId(k)));
    const items = await this.io.readValues<StoredItem>(itemRaws);
    const versionLists = await Promise.all(refs.map((r) => this.io.queryPartition(Keys.versionPk(operator, r.keyGroup, r.key))));
    const flat = versionLists.flat();
    const payloads = await this.io.effective(flat);
    let at = 0;
    return Promise.all(
      refs.map(async (ref, i) => {
        const list = versionLists[i] ?? [];
        const versions = await Promise.all(
          list.map(async (raw) => {
            const payload = payloads[at++];
            return {
              raw,
              epoch: Number(raw.sk),
              value: payload === undefined ? undefined : (await this.io.decode<StoredItem>(payload)).value,
              visible: payload !== undefined,
            };
          }),
        );
        return { ref, raw: itemRaws[i], item: items[i], versions };
      }),
    );
  }

  async restoreOperator(operator: string, checkpointId: number, fence?: { readonly generation: number }): Promise<{ keysRestored: number }> {
    const entries = await this.changedEntries(operator, pad(checkpointId + 1), '\uffff');
    const visible = await this.io.effective(entries);
    const refs = new Map<string, StateKeyRef>();
    const indexByKey = new Map<string, Raw[]>();
    const strays: Raw[] = [];
    entries.forEach((entry, i) => {
      if (visible[i] === undefined) {
        strays.push(entry);
        return;
      }
      const ref = { keyGroup: entry.kg as number, key: entry.key as string };
      const id = `${ref.keyGroup}|${ref.key}`;
      refs.set(id, ref);
      indexByKey.set(id, [...(indexByKey.get(id) ?? []), entry]);
    });
    const states = await this.keyState(operator, [...refs.values()]);
    // Per key, in this order: drop versions after the checkpoint, write the restored item, drop
    // its index entries. A crash in between leaves index entries, so a rerun redoes the key.
    const groups: Array<{ actions: TransactItem[]; delta: number; blobs: unknown[] }> = [];
    for (const { ref, raw, item, versions } of states) {
      const id = `${ref.keyGroup}|${ref.key}`;
      const actions: TransactItem[] = [];
      const blobs: unknown[] = [];
      for (const v of versions) {
        if (v.epoch > checkpointId) {
          actions.push({ Delete: { TableName: this.table, Key: { pk: v.raw.pk, sk: v.raw.sk } } });
          blobs.push(v.raw.d, v.raw.p);
        }
      }
      const newest = versions.filter((v) => v.visible && v.epoch <= checkpointId).reduce<(typeof versions)[number] | undefined>((a, v) => (!a || v.epoch > a.epoch ? v : a), undefined);
      const key = Keys.item(operator, ref.keyGroup, ref.key);
      if (newest && newest.value !== null && newest.value !== undefined) {
        const restored: StoredItem = { value: newest.value, epoch: newest.epoch };
        actions.push({ Put: { TableName: this.table, Item: { ...key, d: await this.io.encode(restored), e: newest.epoch } } });
      } else {
        actions.push({ Delete: { TableName: this.table, Key: key } });
      }
      blobs.push(raw?.d, raw?.p);
      for (const entry of indexByKey.get(id) ?? []) actions.push({ Delete: { TableName: this.table, Key: { pk: entry.pk, sk: entry.sk } } });
      const wasLive = item !== undefined && item.value !== null;
      const isLive = newest !== undefined && newest.value !== null && newest.value !== undefined;
      groups.push({ actions, delta: (isLive ? 1 : 0) - (wasLive ? 1 : 0), blobs });
    }
    for (const stray of strays) groups.push({ actions: [{ Delete: { TableName: this.table, Key: { pk: stray.pk, sk: stray.sk } } }], delta: 0, blobs: [stray.p] });
    await this.runGroups(groups, Keys.liveRestore(operator), fence?.generation);
    return { keysRestored: refs.size };
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

  async prune(operator: string, keepFrom: number): Promise<void> {
    const entries = await this.changedEntries(operator, pad(0), prefixEnd(pad(keepFrom)));
    const refs = new Map<string, StateKeyRef>();
    const indexByKey = new Map<string, Raw[]>();
    for (const entry of entries) {
      const ref = { keyGroup: entry.kg as number, key: entry.key as string };
      const id = `${ref.keyGroup}|${ref.key}`;
      refs.set(id, ref);
      indexByKey.set(id, [...(indexByKey.get(id) ?? []), entry]);
    }
    const states = await this.keyState(operator, [...refs.values()]);
    const groups: Array<{ actions: TransactItem[]; delta: number; blobs: unknown[] }> = [];
    for (const { ref, raw, item, versions } of states) {
      // A key with a step's write in flight is left for the next prune.
      if (raw?.pt !== undefined) continue;
      const key = Keys.item(operator, ref.keyGroup, ref.key);
      const committed = versions.filter((v) => v.raw.pt === undefined);
      const keep = versionsToKeep(item, committed, keepFrom);
      const kept = new Set(keep.map((v) => v.epoch));
      // Guard: the item must not change (a concurrent commit could add versions) while we prune.
      const actions: TransactItem[] = [
        {
          ConditionCheck: {
            TableName: this.table,
            Key: key,
            ConditionExpression: raw ? 'attribute_not_exists(#pt) AND #e = :e' : 'attribute_not_exists(pk)',
            ...(raw ? { ExpressionAttributeNames: { '#pt': 'pt', '#e': 'e' }, ExpressionAttributeValues: { ':e': raw.e ?? item?.epoch ?? -1 } } : {}),
          },
        },
      ];
      const blobs: unknown[] = [];
      for (const v of committed) {
        if (kept.has(v.epoch)) continue;
        actions.push({ Delete: { TableName: this.table, Key: { pk: v.raw.pk, sk: v.raw.sk } } });
        blobs.push(v.raw.d);
      }
      if (item && tombstoneExpired(item, keepFrom)) {
        actions[0] = {
          Delete: {
            TableName: this.table,
            Key: key,
            ConditionExpression: 'attribute_not_exists(#pt) AND #e = :e',
            ExpressionAttributeNames: { '#pt': 'pt', '#e': 'e' },
            ExpressionAttributeValues: { ':e': raw?.e ?? item.epoch },
          },
        };
        blobs.push(raw?.d);
      }
      for (const entry of indexByKey.get(`${ref.keyGroup}|${ref.key}`) ?? []) actions.push({ Delete: { TableName: this.table, Key: { pk: entry.pk, sk: entry.sk } } });
      groups.push({ actions, delta: 0, blobs });
    }
    // One transaction per key when a guard fails, so one busy key does not block the others.
    await this.runGuarded(groups);
    await this.pruneCheckpointData(Keys.snapshotPk(operator), keepFrom);
    await this.pruneCheckpointData(Keys.channelStatePk(operator), keepFrom);
  }

  private async runGuarded(groups: ReadonlyArray<{ actions: TransactItem[]; blobs: unknown[] }>): Promise<void> {
    const small = groups.filter((g) => g.actions.length <= MAX_TRANSACT_ACTIONS);
    let batch: Array<{ actions: TransactItem[]; blobs: unknown[] }> = [];
    const run = async (list: Array<{ actions: TransactItem[]; blobs: unknown[] }>): Promise<void> => {
      try {
        await this.io.transact(list.flatMap((g) => g.actions));
        await Promise.all(list.flatMap((g) => g.blobs).map((b) => this.io.dropBlob(b)));
      } catch (error) {
        if (!cancellationReasons(error)) throw error;
        if (list.length > 1) for (const g of list) await run([g]);
        // A single key whose guard failed is pruned next time.
      }
    };
    for (const group of small) {
      if (batch.reduce((s, g) => s + g.actions.length, 0) + group.actions.length > MAX_TRANSACT_ACTIONS) {
        await run(batch);
        batch = [];
      }
      batch.push(group);
    }
    if (batch.length > 0) await run(batch);
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

/** An instance record with an unfinished fold blocks the next commit until the fold completes. */
class UnfinishedFold extends Error {
  constructor(readonly raw: Raw) {
    super('instance record has an unfinished fold');
  }
}

function chunkActions(actions: readonly TransactItem[], maxActions: number, maxBytes: number): TransactItem[][] {
  const chunks: TransactItem[][] = [];
  let chunk: TransactItem[] = [];
  let bytes = 0;
  for (const action of actions) {
    const size = transactItemSize(action);
    if (chunk.length > 0 && (chunk.length >= maxActions || bytes + size > maxBytes)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(action);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

function updateCommand(table: string, key: ItemKey, input: Omit<UpdateCommandInput, 'TableName' | 'Key'>): UpdateCommand {
  const names = input.ExpressionAttributeNames && usedNames([input.UpdateExpression, input.ConditionExpression], input.ExpressionAttributeNames);
  return new UpdateCommand({ TableName: table, Key: { pk: key.pk, sk: key.sk }, ...input, ...(names ? { ExpressionAttributeNames: names } : {}) });
}
