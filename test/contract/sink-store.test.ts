import { describe, expect, it } from 'vitest';
import { InstanceDriver, startJob } from './fixtures.js';
import { implementationsOf, withResource, type StoreFamily } from './implementations.js';
import { itWhen } from './implementations.js';

/** Batch ids as the coordinator makes them: zero-padded epoch, then the instance. */
const batchId = (epoch: number, instance: string): string => `${String(epoch).padStart(12, '0')}|${instance}`;

describe.each(implementationsOf('store-family'))('SinkStore contract: $name', (impl) => {
  const run = (body: (family: StoreFamily, reopen: () => Promise<StoreFamily>) => Promise<void>) => () => withResource(impl, body);

  it(
    'an unknown sink reads as empty',
    run(async ({ sinks }) => {
      expect(await sinks.read('out')).toEqual([]);
    }),
  );

  it(
    'publish is idempotent by batchId: the same batch published twice (coordinator retry) appears once',
    run(async ({ sinks }) => {
      const records = [{ word: 'a', count: 1 }, { word: 'b', count: 2 }, 'plain', 3, null];
      await sinks.publish('out', batchId(1, 'sink#0'), records);
      await sinks.publish('out', batchId(1, 'sink#0'), records);
      expect(await sinks.read('out')).toEqual(records);
      await sinks.publish('out', batchId(1, 'sink#1'), []);
      expect(await sinks.read('out')).toEqual(records);
    }),
  );

  it(
    'retractFrom withdraws the batches at or after a batch id (a rollback to an older checkpoint), only of that sink, idempotently',
    run(async ({ sinks }) => {
      for (const epoch of [1, 2, 3, 10]) for (const instance of ['sink#0', 'sink#1']) await sinks.publish('out', batchId(epoch, instance), [`${epoch}/${instance}`]);
      await sinks.publish('other', batchId(3, 'sink#0'), ['other 3']);
      await sinks.upsert('out', [{ key: 'k', value: 'upserted' }]);
      await sinks.retractFrom('out', batchId(3, ''));
      expect(await sinks.read('out')).toEqual(['1/sink#0', '1/sink#1', '2/sink#0', '2/sink#1', 'upserted']);
      await sinks.retractFrom('out', batchId(3, ''));
      expect(await sinks.read('out')).toEqual(['1/sink#0', '1/sink#1', '2/sink#0', '2/sink#1', 'upserted']);
      expect(await sinks.read('other')).toEqual(['other 3']);
      // The replay publishes epoch 3 again, with other boundaries: no trace of the withdrawn batches.
      await sinks.publish('out', batchId(3, 'sink#0'), ['3 again']);
      expect(await sinks.read('out')).toEqual(['1/sink#0', '1/sink#1', '2/sink#0', '2/sink#1', '3 again', 'upserted']);
    }),
  );

  it(
    'read returns the batches in batchId order (not publish order), each batch in its own order',
    run(async ({ sinks }) => {
      await sinks.publish('out', batchId(2, 'sink#0'), ['2/0-a', '2/0-b']);
      await sinks.publish('out', batchId(10, 'sink#0'), ['10/0']);
      await sinks.publish('out', batchId(1, 'sink#1'), ['1/1']);
      await sinks.publish('out', batchId(1, 'sink#0'), ['1/0-a', '1/0-b', '1/0-c']);
      expect(await sinks.read('out')).toEqual(['1/0-a', '1/0-b', '1/0-c', '1/1', '2/0-a', '2/0-b', '10/0']);
    }),
  );

  it(
    'batchId and key order is plain string (code unit) order, independent of the locale: "B" < "_" < "a"',
    run(async ({ sinks }) => {
      for (const id of ['a', '_', 'B', 'b', 'A1', 'A']) await sinks.publish('out', id, [`batch ${id}`]);
      await sinks.upsert(
        'out',
        ['z', 'Z', '_', 'a'].map((key) => ({ key, value: `upsert ${key}` })),
      );
      expect(await sinks.read('out')).toEqual(['batch A', 'batch A1', 'batch B', 'batch _', 'batch a', 'batch b', 'upsert Z', 'upsert _', 'upsert a', 'upsert z']);
    }),
  );

  it(
    'upsert overwrites by key; read lists the transactional batches first, then the upserted values by key',
    run(async ({ sinks }) => {
      await sinks.upsert('out', [
        { key: 'k2', value: { v: 2 } },
        { key: 'k1', value: { v: 1 } },
      ]);
      await sinks.publish('out', batchId(1, 'sink#0'), [{ b: 1 }]);
      await sinks.upsert('out', [{ key: 'k1', value: { v: 11 } }]);
      await sinks.upsert('out', [{ key: 'k3', value: [1, 2] }]);
      await sinks.upsert('out', []);
      expect(await sinks.read('out')).toEqual([{ b: 1 }, { v: 11 }, { v: 2 }, [1, 2]]);
    }),
  );

  it(
    'sinks are independent, including sinks whose names share a prefix',
    run(async ({ sinks }) => {
      await sinks.publish('out', batchId(1, 'sink#0'), ['out']);
      await sinks.publish('out-2', batchId(1, 'sink#0'), ['out-2']);
      await sinks.upsert('out', [{ key: 'k', value: 'out k' }]);
      await sinks.upsert('out-2', [{ key: 'k', value: 'out-2 k' }]);
      expect(await sinks.read('out')).toEqual(['out', 'out k']);
      expect(await sinks.read('out-2')).toEqual(['out-2', 'out-2 k']);
    }),
  );

  it(
    'upserts committed by StateStore.commitStep are visible at once and overwrite by the same key',
    run(async (family) => {
      await startJob(family.checkpoints);
      const d = await new InstanceDriver(family.stateStore, 'sink').init();
      await d.commit({
        upserts: [
          { sink: 'totals', key: 'b', value: { total: 1 } },
          { sink: 'totals', key: 'a', value: { total: 5 } },
        ],
      });
      expect(await family.sinks.read('totals')).toEqual([{ total: 5 }, { total: 1 }]);
      await family.sinks.upsert('totals', [{ key: 'c', value: { total: 0 } }]);
      await d.commit({ upserts: [{ sink: 'totals', key: 'b', value: { total: 2 } }] });
      expect(await family.sinks.read('totals')).toEqual([{ total: 5 }, { total: 2 }, { total: 0 }]);
    }),
  );

  itWhen(impl.capabilities.reopen)(
    'published batches and upserts survive a reopen; a re-publish after it is still a no-op',
    run(async (first, reopen) => {
      await first.sinks.publish('out', batchId(2, 'sink#0'), ['b']);
      await first.sinks.publish('out', batchId(1, 'sink#0'), ['a']);
      await first.sinks.upsert('out', [{ key: 'k', value: 'v' }]);
      const { sinks } = await reopen();
      expect(await sinks.read('out')).toEqual(['a', 'b', 'v']);
      await sinks.publish('out', batchId(1, 'sink#0'), ['a']);
      expect(await sinks.read('out')).toEqual(['a', 'b', 'v']);
    }),
  );
});
