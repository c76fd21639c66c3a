/** Values over the DynamoDB item limit spill to S3 through the BlobStore, referenced from the item. */
import { createHash } from 'node:crypto';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import { BLOB_PREFIX, Keys, pad } from '../../shared/aws/adapters/table-layout.js';
import type { StoredItem } from '../../shared/core/ports.js';
import { INSTANCE, OP, commitOf, freshStores } from './helpers.js';
import { RequestCounter } from '../../shared/aws/index.js';

/** `size` characters that deflate hardly at all (base64 of a hash chain seeded by `fill`): payloads stay large once compressed. */
const big = (size: number, fill = 'x'): string => {
  let out = '';
  for (let i = 0; out.length < size; i++) out += createHash('sha256').update(`${fill}:${i}`).digest('base64');
  return out.slice(0, size);
};
const ref = { keyGroup: 5, key: 'big' };

/** The keys of the spilled blobs the table's items refer to, as S3 lists them. */
async function spilledBlobs(s: Awaited<ReturnType<typeof freshStores>>): Promise<string[]> {
  const out = await s.clients.s3.send(new ListObjectsV2Command({ Bucket: 'cairn-aws-tests', Prefix: `spill/${s.table}/` }));
  return (out.Contents ?? []).map((o) => o.Key ?? '').sort();
}
/** The entries of the operator's change records of `epoch` (every shard), decoded. */
async function changeEntries(s: Awaited<ReturnType<typeof freshStores>>, epoch: number): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for (let shard = 0; shard < 4; shard++) {
    for (const raw of await s.io.queryRange(Keys.changePk(OP, shard), `${pad(epoch)}#`, `${pad(epoch)}#\uffff`)) out.push(...(await s.io.decode<Array<Record<string, unknown>>>(raw.d as string)));
  }
  return out;
}
const blobOf = async (s: Awaited<ReturnType<typeof freshStores>>, key: { pk: string; sk: string }): Promise<string> => String((await s.io.get(key))?.d).slice(BLOB_PREFIX.length);

describe('spill to S3 over the size threshold', () => {
  it('a 500 KB state value (over the 400 KB item limit) round-trips through S3, as item and as the value a change record closed', async () => {
    const s = await freshStores();
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
      const value = { blob: big(500_000) };
      await s.stateStore.commitStep(commitOf(0, [{ ...ref, value, epoch: 1, previous: undefined }]));
      const raw = await s.io.get(Keys.item(OP, ref.keyGroup, ref.key));
      expect(String(raw?.d).startsWith(BLOB_PREFIX)).toBe(true);
      const blob = await s.blobs.get(String(raw?.d).slice(BLOB_PREFIX.length));
      expect(blob?.byteLength).toBeGreaterThan(500_000);
      expect((await s.stateStore.getItems(OP, [ref])).get('5|big')).toEqual({ value, epoch: 1 });

      // Overwritten in epoch 2: the change record of epoch 2 keeps the big value it closed, by its blob.
      await s.stateStore.commitStep(commitOf(1, [{ ...ref, value: { small: 1 }, epoch: 2, previous: { value, epoch: 1 } }]));
      // (The write's previous did not come from getItems, so the record holds the value itself: the record spills.)
      expect(await changeEntries(s, 2)).toEqual([{ g: 5, k: 'big', f: 1, b: { value, epoch: 1 } }]);
      const [record] = await Promise.all([0, 1, 2, 3].map((shard) => s.io.queryRange(Keys.changePk(OP, shard), pad(2), `${pad(2)}\uffff`))).then((r) => r.flat());
      expect(String(record?.d).startsWith(BLOB_PREFIX)).toBe(true);
      expect(await s.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 1 });
      expect((await s.stateStore.getItems(OP, [ref])).get('5|big')).toEqual({ value, epoch: 1 });
    } finally {
      await s.done();
    }
  });

  it("a spilled value keeps one blob: the change record takes over the replaced item's blob, an overwrite in the same epoch deletes it", async () => {
    const s = await freshStores({ spillThresholdBytes: 1_000 });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
      const read = async (): Promise<StoredItem> => (await s.stateStore.getItems(OP, [ref])).get('5|big') as StoredItem;
      await s.stateStore.commitStep(commitOf(0, [{ ...ref, value: { v: big(2_000, 'a') }, epoch: 1, previous: undefined }]));
      const first = await blobOf(s, Keys.item(OP, ref.keyGroup, ref.key));
      expect(await spilledBlobs(s)).toEqual([first]);

      // Epoch 2, first write: the change record of epoch 2 closes the epoch-1 value, with the same blob.
      await s.stateStore.commitStep(commitOf(1, [{ ...ref, value: { v: big(2_000, 'b') }, epoch: 2, previous: await read() }]));
      const second = await blobOf(s, Keys.item(OP, ref.keyGroup, ref.key));
      expect(await changeEntries(s, 2)).toEqual([{ g: 5, k: 'big', f: 1, bs: `${BLOB_PREFIX}${first}` }]);
      expect(await spilledBlobs(s)).toEqual([first, second].sort());

      // Epoch 2 again: the value it replaces belongs to no checkpoint; its blob is deleted.
      await s.stateStore.commitStep(commitOf(2, [{ ...ref, value: { v: big(2_000, 'c') }, epoch: 2, previous: await read() }]));
      const third = await blobOf(s, Keys.item(OP, ref.keyGroup, ref.key));
      expect(await spilledBlobs(s)).toEqual([first, third].sort());
      expect(await read()).toEqual({ value: { v: big(2_000, 'c') }, epoch: 2 });

      // Back to checkpoint 1: the epoch-1 value from the change record; the record and every blob but the restored item's go.
      await s.stateStore.restoreOperator(OP, 1);
      expect(await read()).toEqual({ value: { v: big(2_000, 'a') }, epoch: 1 });
      expect(await changeEntries(s, 2)).toEqual([]);
      expect(await spilledBlobs(s)).toEqual([await blobOf(s, Keys.item(OP, ref.keyGroup, ref.key))]);
    } finally {
      await s.done();
    }
  });

  it('a spilled instance record keeps one blob across steps: each commit deletes the one it replaces', async () => {
    const s = await freshStores({ spillThresholdBytes: 1_000 });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      const large = (n: number) => ({ timers: { '100': [big(2_000, String(n))] } });
      await s.stateStore.putInstance({ ...initialInstanceRecord(INSTANCE, 1), ...large(0) });
      expect(await s.stateStore.loadInstance(INSTANCE)).toMatchObject({ version: 0 });
      for (let step = 0; step < 5; step++) {
        await s.stateStore.commitStep(commitOf(step, [], {}, large(step + 1)));
        // The record the table holds now, and nothing else: the blob of every earlier version is gone.
        expect(await spilledBlobs(s)).toEqual([await blobOf(s, Keys.instance(INSTANCE))]);
      }
      expect(await s.stateStore.loadInstance(INSTANCE)).toMatchObject({ version: 5, ...large(5) });
      // Back under the threshold: the record is inline and the last blob goes too.
      await s.stateStore.commitStep(commitOf(5, [], {}, { timers: {} }));
      expect(String((await s.io.get(Keys.instance(INSTANCE)))?.d).startsWith('{')).toBe(true);
      expect(await spilledBlobs(s)).toEqual([]);
    } finally {
      await s.done();
    }
  });

  it('a reader whose record was replaced (and its blob deleted) between its two reads reads the record again', async () => {
    const s = await freshStores({ spillThresholdBytes: 1_000 });
    const reader = await freshStores({ tableName: s.table, spillThresholdBytes: 1_000, provision: false });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      const large = (n: number) => ({ timers: { '100': [big(2_000, String(n))] } });
      await s.stateStore.putInstance({ ...initialInstanceRecord(INSTANCE, 1), ...large(0) });
      expect(await s.stateStore.loadInstance(INSTANCE)).toMatchObject({ version: 0 });
      // The reader has the record's item; before it fetches the blob, a commit replaces both.
      const get = reader.io.blobs.get.bind(reader.io.blobs);
      let raced = false;
      reader.io.blobs.get = async (key) => {
        if (!raced) {
          raced = true;
          await s.stateStore.commitStep(commitOf(0, [], {}, large(1)));
        }
        return get(key);
      };
      expect(await reader.stateStore.loadInstance(INSTANCE)).toMatchObject({ version: 1, ...large(1) });
      expect(raced).toBe(true);
    } finally {
      reader.destroy();
      await s.done();
    }
  });

  it('the threshold is configurable; small values stay inline; instance records, snapshots, log entries and sink batches spill too', async () => {
    const s = await freshStores({ spillThresholdBytes: 1_000 });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      const record = { ...initialInstanceRecord(INSTANCE, 1), timers: { '100': [big(2_000, 'k')] } };
      await s.stateStore.putInstance(record);
      expect(String((await s.io.get(Keys.instance(INSTANCE)))?.d).startsWith(BLOB_PREFIX)).toBe(true);
      expect(await s.stateStore.loadInstance(INSTANCE)).toEqual(record);

      await s.stateStore.commitStep(
        commitOf(
          0,
          [{ ...ref, value: { v: 'tiny' }, epoch: 1, previous: undefined }],
          {
            snapshots: [{ checkpointId: 1, state: { ...record, timers: { '1': [big(3_000, 's')] } } }],
          },
          record,
        ),
      );
      expect(String((await s.io.get(Keys.item(OP, ref.keyGroup, ref.key)))?.d).startsWith('{')).toBe(true);
      expect((await s.stateStore.loadSnapshot(INSTANCE, 1))?.state.timers).toEqual({ '1': [big(3_000, 's')] });

      await s.sourceLog.append(0, [{ id: 'e1', event: { payload: big(5_000, 'e') } }]);
      expect(await s.sourceLog.read(0, 0, 1)).toEqual([{ offset: 0, event: { payload: big(5_000, 'e') } }]);

      await s.sinks.publish('out', 'b1', [big(4_000, 'r')]);
      expect(await s.sinks.read('out')).toEqual([big(4_000, 'r')]);
    } finally {
      await s.done();
    }
  });
  it('truncating the source log deletes the blobs of its spilled entries too; a partition that never spilled queries no markers', async () => {
    const counter = new RequestCounter();
    const s = await freshStores({ spillThresholdBytes: 1_000, counter });
    try {
      const events = [{ n: 0 }, { payload: big(2_000, 'a') }, { n: 2 }, { payload: big(2_000, 'b') }];
      // Two segments: entries 0-1 and 2-3.
      for (const from of [0, 2])
        await s.sourceLog.append(
          0,
          events.slice(from, from + 2).map((event, i) => ({ id: `e${from + i}`, event })),
        );
      await s.sourceLog.append(1, [
        { id: 'f0', event: { n: 0 } },
        { id: 'f1', event: { n: 1 } },
      ]);
      const [first, second] = await spilledBlobs(s);
      expect([first, second].every((b) => b !== undefined)).toBe(true);
      expect((await s.io.get(Keys.logHead(0)))?.sp).toBe(true);
      expect((await s.io.get(Keys.logHead(1)))?.sp).toBeUndefined();

      // The segment of entries 0 and 1 goes, and the blob of entry 1 with it; entry 3's stays with its segment.
      await s.sourceLog.truncate(0, 2);
      expect(await spilledBlobs(s)).toEqual([String((await s.io.get(Keys.logSpill(0, 3)))?.b).slice(BLOB_PREFIX.length)]);
      expect(await s.io.get(Keys.logSpill(0, 1))).toBeUndefined();
      expect(await s.sourceLog.read(0, 2, 10)).toEqual([
        { offset: 2, event: events[2] },
        { offset: 3, event: events[3] },
      ]);
      counter.reset();
      await s.sourceLog.truncate(1, 2);
      // The head and the cut, the segments below it, their index (the last append's segment is not indexed yet) and ix, the deletes and the cut.
      expect(counter.calls()).toEqual({ 'DynamoDB.GetItem': 2, 'DynamoDB.Query': 1, 'DynamoDB.BatchWriteItem': 2, 'DynamoDB.UpdateItem': 2 });
      await s.sourceLog.truncate(0, 4);
      expect(await spilledBlobs(s)).toEqual([]);
    } finally {
      await s.done();
    }
  });
});
