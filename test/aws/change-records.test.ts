/**
 * DynamoStateStore keeps what a restore needs in one change record per step and epoch (the
 * values the step's first writes closed), not a version record and an index entry per key:
 * the bill, a restore that crashes while it deletes the records, and prune's tombstones.
 */
import { describe, expect, it } from 'vitest';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import { RequestCounter } from '../../shared/aws/index.js';
import { Keys, pad } from '../../shared/aws/adapters/table-layout.js';
import type { StateWrite } from '../../shared/core/ports.js';
import { INSTANCE, OP, commitOf, freshStores } from './helpers.js';

type Stores = Awaited<ReturnType<typeof freshStores>>;

const ref = (key: string, keyGroup = 3): { keyGroup: number; key: string } => ({ keyGroup, key });

/** The change records of OP on every shard, in sk order. */
async function records(s: Stores): Promise<Array<{ sk: string; entries: unknown[] }>> {
  const raws = (await Promise.all([0, 1, 2, 3].map((shard) => s.io.queryPartition(Keys.changePk(OP, shard))))).flat();
  const out = await Promise.all(raws.map(async (r) => ({ sk: r.sk, entries: await s.io.decode<unknown[]>(r.d as string) })));
  return out.sort((a, b) => (a.sk < b.sk ? -1 : 1));
}

async function read(s: Stores, keys: readonly string[]): Promise<Record<string, unknown>> {
  const items = await s.stateStore.getItems(
    OP,
    keys.map((k) => ref(k)),
  );
  return Object.fromEntries(keys.map((k) => [k, items.get(`3|${k}`)?.value ?? null]));
}

/** Commits one step of writes (each key's previous read from the store, as a step does) at the instance's next version. */
async function step(s: Stores, version: number, epoch: number, values: Record<string, Readonly<Record<string, unknown>> | null>): Promise<void> {
  const keys = Object.keys(values);
  const current = await s.stateStore.getItems(
    OP,
    keys.map((k) => ref(k)),
  );
  const writes: StateWrite[] = keys.map((k) => ({ ...ref(k), value: values[k] ?? null, epoch, previous: current.get(`3|${k}`) }));
  await s.stateStore.commitStep(commitOf(version, writes));
}

async function start(s: Stores): Promise<void> {
  await s.checkpoints.putJob(initialJob(1), undefined);
  await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
}

describe('change records', () => {
  it('a step whose 20 writes are each first in the epoch writes the 20 items and one change record (no version records, no per-key index)', async () => {
    const counter = new RequestCounter({ dynamoCapacity: true });
    const s = await freshStores({ counter });
    try {
      await start(s);
      const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
      await step(s, 0, 1, Object.fromEntries(keys.map((k) => [k, { n: 1 }])));
      counter.reset();
      await step(s, 1, 2, Object.fromEntries(keys.map((k) => [k, { n: 2 }])));
      // AWS's bill of the transaction, by item: 20 items of < 1 KB at 2 units, one change record
      // of < 1 KB (20 entries, deflated) at 2 units; the instance record. The read: 20 items in one strongly consistent BatchGetItem.
      expect(counter.capacity.byItem['K#']).toEqual({ read: 20, write: 40 });
      expect(counter.capacity.byItem['C#']).toEqual({ read: 0, write: 2 });
      expect(counter.capacity.byItem['V#']).toBeUndefined();
      expect(counter.capacity.byItem['I#']).toEqual({ read: 0, write: 2 });
      const all = await records(s);
      expect(all.map((r) => r.sk)).toEqual([`${pad(1)}#${INSTANCE.replace('#', '%23')}#${pad(1)}`, `${pad(2)}#${INSTANCE.replace('#', '%23')}#${pad(2)}`]);
      expect(all[1]?.entries).toEqual(keys.map((k) => ({ g: 3, k, f: 1, b: { value: { n: 1 }, epoch: 1 } })));
      // A later write in the same epoch adds nothing to restore from.
      counter.reset();
      await step(s, 2, 2, { k0: { n: 3 } });
      expect(counter.capacity.byItem['C#']).toBeUndefined();
    } finally {
      await s.done();
    }
  });

  it('a restore that dies while it deletes the change records restores the same values when run again (the oldest record of a key goes last)', async () => {
    const s = await freshStores();
    try {
      await start(s);
      await step(s, 0, 1, { a: { n: 1 } });
      await step(s, 1, 2, { a: { n: 2 } });
      // 110 steps in epoch 3: a's record of epoch 3 closes {n: 2}, the others only fill the table.
      await step(s, 2, 3, { a: { n: 3 } });
      for (let i = 0; i < 110; i++) await step(s, 3 + i, 3, { [`x${i}`]: { n: i } });
      expect(await records(s)).toHaveLength(113);

      // Kill the restore of checkpoint 1 after its first transaction of record deletes.
      let deletes = 0;
      const stack = s.clients.dynamo.middlewareStack as unknown as { add(mw: unknown, options: { step: 'initialize'; name: string }): void };
      stack.add(
        (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: { input?: { TransactItems?: Array<{ Delete?: { Key?: { pk?: string } } }> } }) => {
          const items = args.input?.TransactItems ?? [];
          if (context.commandName === 'TransactWriteItemsCommand' && items.some((i) => i.Delete?.Key?.pk?.startsWith('C#')) && ++deletes === 2) throw new Error('killed while deleting change records');
          return next(args);
        },
        { step: 'initialize', name: 'killRestore' },
      );
      await expect(s.stateStore.restoreOperator(OP, 1)).rejects.toThrow('killed while deleting change records');
      // Some records after checkpoint 1 went, a's oldest one (epoch 2) did not.
      const left = await records(s);
      expect(left.length).toBeGreaterThan(1);
      expect(left.length).toBeLessThan(113);
      expect(left.filter((r) => r.sk.startsWith(pad(2)))).toHaveLength(1);

      expect((await s.stateStore.restoreOperator(OP, 1)).keysRestored).toBeGreaterThan(0);
      expect(await read(s, ['a', 'x0', 'x109'])).toEqual({ a: { n: 1 }, x0: null, x109: null });
      expect((await records(s)).map((r) => r.sk.slice(0, 12))).toEqual([pad(1)]);
      expect(await s.stateStore.countKeys(OP)).toBe(1);
    } finally {
      await s.done();
    }
  });

  it('prune drops the records of epochs <= keepFrom and the tombstones they left, not a tombstone rewritten since nor later records', async () => {
    const s = await freshStores();
    try {
      await start(s);
      await step(s, 0, 1, { a: { n: 1 }, b: { n: 1 }, c: { n: 1 } });
      await step(s, 1, 2, { a: null, b: null });
      await step(s, 2, 2, { b: { n: 2 } }); // b rewritten in the epoch of its delete
      await step(s, 3, 3, { c: null, d: { n: 3 } });
      const raw = async (k: string): Promise<unknown> => (await s.io.get(Keys.item(OP, 3, k)))?.d;
      expect(await raw('a')).toBe(JSON.stringify({ value: null, epoch: 2 }));

      await s.stateStore.prune(OP, 2);
      expect((await records(s)).map((r) => r.sk.slice(0, 12))).toEqual([pad(3)]);
      expect(await raw('a')).toBeUndefined(); // its tombstone of epoch 2 went
      expect(await read(s, ['a', 'b', 'c', 'd'])).toEqual({ a: null, b: { n: 2 }, c: null, d: { n: 3 } });
      expect(await raw('c')).toBe(JSON.stringify({ value: null, epoch: 3 })); // epoch 3 > keepFrom: kept
      // Checkpoint 2 is still restorable.
      expect(await s.stateStore.restoreOperator(OP, 2)).toEqual({ keysRestored: 2 });
      expect(await read(s, ['a', 'b', 'c', 'd'])).toEqual({ a: null, b: { n: 2 }, c: { n: 1 }, d: null });
      expect(await s.stateStore.countKeys(OP)).toBe(2);
    } finally {
      await s.done();
    }
  });
});
