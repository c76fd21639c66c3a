import { describe, expect, it } from 'vitest';
import { ConcurrentStepError, GenerationFencedError } from '../../shared/core/errors.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import type { StepCommit } from '../../shared/core/ports.js';
import { ackOf, bumpGeneration, channelEntries, InstanceDriver, type CommitParts, itemId, keys, letterOf, refOf, snapshotState, startJob, v, type Value } from './fixtures.js';
import { implementationsOf, withResource, type StoreFamily } from './implementations.js';
import { describeWhen, itWhen } from './implementations.js';

const OP = 'counter';

/** Everything a commit could have written, to prove a rejected commit wrote nothing. */
async function footprint(family: StoreFamily, driver: InstanceDriver, checkpointId: number): Promise<unknown> {
  return {
    instance: await family.stateStore.loadInstance(driver.instance),
    items: [...(await family.stateStore.getItems(driver.operator, keys('k', 5).map(refOf)))],
    acks: await family.checkpoints.listAcks(checkpointId),
    snapshot: await family.stateStore.loadSnapshot(driver.instance, checkpointId),
    staged: await family.stateStore.readStaged('out', 100),
    upserts: await family.sinks.read('idem'),
    letters: await family.deadLetters.list(),
    keys: await family.stateStore.countKeys(driver.operator),
  };
}

/** A commit touching every part of the transaction. */
function fullCommit(driver: InstanceDriver, checkpointId: number, parts: CommitParts = {}): StepCommit {
  return driver.commitOf({
    stateWrites: [
      { ...refOf('k0'), value: v(1), epoch: checkpointId, previous: undefined },
      { ...refOf('k1'), value: v(2), epoch: checkpointId, previous: undefined },
    ],
    snapshots: [{ checkpointId, state: snapshotState(7) }],
    channelState: [{ checkpointId, entries: channelEntries('up#0', 1, 2) }],
    acks: [ackOf(checkpointId, driver.instance, driver.generation)],
    staged: [{ sink: 'out', epoch: checkpointId, records: [{ r: 1 }] }],
    upserts: [{ sink: 'idem', key: 'u1', value: { total: 1 } }],
    deadLetters: [letterOf('op:0:1')],
    record: { epoch: checkpointId + 1, lastBarrier: checkpointId, sourceOffset: 7 },
    ...parts,
  });
}

describe.each(implementationsOf('store-family'))('StateStore contract: $name', (impl) => {
  const run = (body: (family: StoreFamily, reopen: () => Promise<StoreFamily>) => Promise<void>) => () => withResource(impl, body);

  describe('instance records', () => {
    it(
      'loadInstance of an unknown instance is undefined; putInstance stores the record exactly and overwrites',
      run(async ({ stateStore }) => {
        expect(await stateStore.loadInstance('counter#0')).toBeUndefined();
        const record = initialInstanceRecord('counter#0', 1);
        await stateStore.putInstance(record);
        expect(await stateStore.loadInstance('counter#0')).toEqual(record);
        const restored = { ...record, generation: 2, version: 9, epoch: 4, lastBarrier: 3, replay: channelEntries('up#1', 5) };
        await stateStore.putInstance(restored);
        expect(await stateStore.loadInstance('counter#0')).toEqual(restored);
        expect(await stateStore.loadInstance('counter#1')).toBeUndefined();
      }),
    );

    it(
      'putInstance onlyOverOlderGeneration replaces a record of an older generation, never one of the same or a newer one',
      run(async ({ stateStore }) => {
        const gen2 = { ...initialInstanceRecord('counter#0', 2), version: 3 };
        expect(await stateStore.putInstance(gen2, { onlyOverOlderGeneration: true })).toBe(true);
        // A retried restore of the same attempt, and a lagging attempt of an older generation: both refused.
        expect(await stateStore.putInstance({ ...gen2, version: 4, epoch: 9 }, { onlyOverOlderGeneration: true })).toBe(false);
        expect(await stateStore.putInstance({ ...initialInstanceRecord('counter#0', 1), version: 5 }, { onlyOverOlderGeneration: true })).toBe(false);
        expect(await stateStore.loadInstance('counter#0')).toEqual(gen2);
        const gen3 = { ...initialInstanceRecord('counter#0', 3), version: 4 };
        expect(await stateStore.putInstance(gen3, { onlyOverOlderGeneration: true })).toBe(true);
        expect(await stateStore.loadInstance('counter#0')).toEqual(gen3);
        // Without the option it overwrites whatever is there.
        expect(await stateStore.putInstance(gen2)).toBe(true);
        expect(await stateStore.loadInstance('counter#0')).toEqual(gen2);
      }),
    );

    it(
      "a committed record is stored as given, and later changes to the caller's objects do not reach the store",
      run(async (family) => {
        await startJob(family.checkpoints);
        const driver = await new InstanceDriver(family.stateStore, OP).init();
        const commit = await driver.commit({ record: { consumed: { 'up#0': 3 }, lastMessageIds: ['m1', 'm2'] } });
        const expected = structuredClone(commit.record);
        (commit.record.consumed as Record<string, number>)['up#0'] = 99;
        (commit.record.lastMessageIds as string[]).push('m3');
        expect(await family.stateStore.loadInstance(driver.instance)).toEqual(expected);
        expect(expected.version).toBe(1);
      }),
    );
  });

  describe('commitStep is atomic and conditional', () => {
    it(
      'one commit writes the record, state, snapshot, channel state, ack, staged output, upsert and dead letter together',
      run(async (family) => {
        await startJob(family.checkpoints);
        const driver = await new InstanceDriver(family.stateStore, OP).init();
        const commit = fullCommit(driver, 1);
        await family.stateStore.commitStep(commit);
        expect(await family.stateStore.loadInstance(driver.instance)).toEqual(commit.record);
        const items = await family.stateStore.getItems(OP, [refOf('k0'), refOf('k1')]);
        expect(items.get(itemId(refOf('k0')))).toEqual({ value: v(1), epoch: 1 });
        expect(items.get(itemId(refOf('k1')))).toEqual({ value: v(2), epoch: 1 });
        expect(await family.stateStore.loadSnapshot(driver.instance, 1)).toEqual({ state: snapshotState(7), channelState: channelEntries('up#0', 1, 2) });
        expect(await family.checkpoints.listAcks(1)).toEqual([ackOf(1, driver.instance)]);
        expect(await family.stateStore.readStaged('out', 1)).toEqual([{ instance: driver.instance, epoch: 1, records: [{ r: 1 }] }]);
        expect(await family.sinks.read('idem')).toEqual([{ total: 1 }]);
        expect(await family.deadLetters.list()).toEqual([letterOf('op:0:1')]);
        expect(await family.stateStore.countKeys(OP)).toBe(2);
      }),
    );

    it(
      'a wrong expectedVersion throws ConcurrentStepError and writes nothing (no state, no acks, no record)',
      run(async (family) => {
        await startJob(family.checkpoints);
        const driver = await new InstanceDriver(family.stateStore, OP).init();
        await driver.commit({ record: { consumed: { 'up#0': 1 } } });
        const before = await footprint(family, driver, 2);

        for (const expectedVersion of [0, 2, 7]) {
          const stale = fullCommit(driver, 2, { expectedVersion });
          const error: unknown = await family.stateStore.commitStep(stale).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(ConcurrentStepError);
          expect(error).toMatchObject({ instance: driver.instance, expectedVersion, actualVersion: 1 });
          expect(await footprint(family, driver, 2)).toEqual(before);
        }

        // The right version still commits afterwards.
        await family.stateStore.commitStep(fullCommit(driver, 2, { expectedVersion: 1 }));
        expect((await family.stateStore.loadInstance(driver.instance))?.version).toBe(2);
        expect(await family.checkpoints.listAcks(2)).toHaveLength(1);
      }),
    );

    it(
      'a commit from an older generation than the fence a recovery put on the instance throws GenerationFencedError and writes nothing',
      run(async (family) => {
        await startJob(family.checkpoints);
        const driver = await new InstanceDriver(family.stateStore, OP).init();
        await driver.commit();
        // A recovery attempt: the job moves to generation 2 and fences every instance at it.
        await bumpGeneration(family.checkpoints);
        await family.stateStore.fenceInstances([driver.instance], 2);
        const before = await footprint(family, driver, 2);

        const error: unknown = await family.stateStore.commitStep(fullCommit(driver, 2)).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(GenerationFencedError);
        expect(error).toMatchObject({ expected: 1, actual: 2 });
        expect(await footprint(family, driver, 2)).toEqual(before);

        // Restored into the new generation (as the coordinator does), the instance commits again.
        await family.stateStore.putInstance({ ...initialInstanceRecord(driver.instance, 2), version: 2 });
        driver.generation = 2;
        driver.version = 2;
        await family.stateStore.commitStep(fullCommit(driver, 2));
        expect(await family.checkpoints.listAcks(2)).toEqual([ackOf(2, driver.instance, 2)]);
      }),
    );

    it(
      'the fence holds whatever the instance record says: putInstance keeps it, it never goes down, and it covers an instance with no record yet',
      run(async (family) => {
        await startJob(family.checkpoints);
        const driver = await new InstanceDriver(family.stateStore, OP).init();
        await driver.commit();
        const fresh = new InstanceDriver(family.stateStore, OP, 1);
        await family.stateStore.fenceInstances([driver.instance, fresh.instance], 3);
        await family.stateStore.fenceInstances([driver.instance], 2); // a lagging attempt: no effect
        // A lagging restore of generation 2 rewrites the record; the fence at 3 stays.
        expect(await family.stateStore.putInstance({ ...initialInstanceRecord(driver.instance, 2), version: 2 }, { onlyOverOlderGeneration: true })).toBe(true);
        driver.generation = 2;
        driver.version = 2;
        await expect(family.stateStore.commitStep(fullCommit(driver, 2))).rejects.toThrow(new GenerationFencedError(2, 3));
        // The fence is no record: the never-started instance still reads as absent, and an old step cannot create it.
        expect(await family.stateStore.loadInstance(fresh.instance)).toBeUndefined();
        await expect(family.stateStore.commitStep(fullCommit(fresh, 2))).rejects.toBeInstanceOf(GenerationFencedError);
        expect(await family.stateStore.loadInstance(fresh.instance)).toBeUndefined();
        // Restored at the fence's generation, both commit again.
        for (const d of [driver, fresh]) {
          expect(await family.stateStore.putInstance({ ...initialInstanceRecord(d.instance, 3), version: 5 }, { onlyOverOlderGeneration: true })).toBe(true);
          d.generation = 3;
          d.version = 5;
          await family.stateStore.commitStep(fullCommit(d, 4));
        }
        expect((await family.checkpoints.listAcks(4)).map((a) => a.instance).sort()).toEqual([driver.instance, fresh.instance].sort());
      }),
    );

    it(
      'of two steps racing from the same version, exactly one commits',
      run(async (family) => {
        await startJob(family.checkpoints);
        const driver = await new InstanceDriver(family.stateStore, OP).init();
        const a = driver.commitOf({ stateWrites: [{ ...refOf('k0'), value: v(1), epoch: 1, previous: undefined }] });
        const b = driver.commitOf({ stateWrites: [{ ...refOf('k0'), value: v(2), epoch: 1, previous: undefined }] });
        const results = await Promise.allSettled([family.stateStore.commitStep(a), family.stateStore.commitStep(b)]);
        const won = results.findIndex((r) => r.status === 'fulfilled');
        const lost = results.find((r) => r.status === 'rejected');
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        expect(lost?.reason).toBeInstanceOf(ConcurrentStepError);
        expect(await driver.read(['k0'])).toEqual({ k0: v(won === 0 ? 1 : 2) });
        expect(await family.stateStore.countKeys(OP)).toBe(1);
      }),
    );
  });

  describe('keyed state', () => {
    it(
      'getItems returns present keys only, keyed "keyGroup|key", with tombstones (value null) as items',
      run(async (family) => {
        await startJob(family.checkpoints);
        const driver = await new InstanceDriver(family.stateStore, OP).init();
        await driver.write(1, { a: v(1), b: v(2) });
        await driver.write(1, { b: null });
        const items = await family.stateStore.getItems(OP, ['a', 'b', 'never'].map(refOf));
        expect([...items.keys()].sort()).toEqual([itemId(refOf('a')), itemId(refOf('b'))].sort());
        expect(items.get(itemId(refOf('a')))).toEqual({ value: v(1), epoch: 1 });
        expect(items.get(itemId(refOf('b')))).toEqual({ value: null, epoch: 1 });
        // Another operator's keys are separate.
        expect((await family.stateStore.getItems('other', ['a', 'b'].map(refOf))).size).toBe(0);
        expect((await family.stateStore.getItems(OP, [])).size).toBe(0);
      }),
    );

    it(
      'restoreOperator walks back through the versioned records: epochs 1,2,3 -> restore 2, then 1, then 0 (empty)',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        const all = ['a', 'b', 'c', 'd'];
        await d.write(1, { a: v(11), b: v(21) }, { snapshot: true });
        await d.write(2, { a: v(12), c: v(32) }, { snapshot: true });
        await d.write(3, { a: v(13), d: v(43) });
        expect(await d.read(all)).toEqual({ a: v(13), b: v(21), c: v(32), d: v(43) });
        expect(await family.stateStore.countKeys(OP)).toBe(4);

        expect(await family.stateStore.restoreOperator(OP, 2)).toEqual({ keysRestored: 2 }); // a, d
        expect(await d.read(all)).toEqual({ a: v(12), b: v(21), c: v(32), d: null });
        const a2 = (await family.stateStore.getItems(OP, [refOf('a')])).get(itemId(refOf('a')));
        expect(a2?.value).toEqual(v(12));
        expect(a2?.epoch).toBeLessThanOrEqual(2);
        expect(await family.stateStore.countKeys(OP)).toBe(3);

        expect(await family.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 2 }); // a, c
        expect(await d.read(all)).toEqual({ a: v(11), b: v(21), c: null, d: null });
        expect(await family.stateStore.countKeys(OP)).toBe(2);

        expect(await family.stateStore.restoreOperator(OP, 0)).toEqual({ keysRestored: 2 }); // a, b
        expect(await d.read(all)).toEqual({ a: null, b: null, c: null, d: null });
        expect(await family.stateStore.countKeys(OP)).toBe(0);
      }),
    );

    it(
      'restoring the same checkpoint twice is idempotent and touches nothing the second time',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        await d.write(1, { a: v(1) }, { snapshot: true });
        await d.write(2, { a: v(2), b: v(2) });
        expect(await family.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 2 });
        expect(await family.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 0 });
        expect(await d.read(['a', 'b'])).toEqual({ a: v(1), b: null });
        expect(await family.stateStore.countKeys(OP)).toBe(1);
      }),
    );

    it(
      'a restore fenced by an older generation changes nothing and says so; in the current generation it restores',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        await d.write(1, { a: v(1) }, { snapshot: true });
        await d.write(2, { a: v(2), b: v(2) });
        await bumpGeneration(family.checkpoints);
        await expect(family.stateStore.restoreOperator(OP, 1, { generation: 1 })).rejects.toThrow(new GenerationFencedError(1, 2));
        expect(await d.read(['a', 'b'])).toEqual({ a: v(2), b: v(2) });
        expect(await family.stateStore.restoreOperator(OP, 1, { generation: 2 })).toEqual({ keysRestored: 2 });
        expect(await d.read(['a', 'b'])).toEqual({ a: v(1), b: null });
      }),
    );

    it(
      'after a restore, the re-executed epochs version correctly again (restore, rewrite, restore)',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        await d.write(1, { a: v(1), b: v(1) }, { snapshot: true });
        await d.write(2, { a: v(2), c: v(2) }, { snapshot: true });
        await family.stateStore.restoreOperator(OP, 1);
        // Epoch 2 re-executed differently after the rollback.
        await d.write(2, { a: v(20), b: null, e: v(20) }, { snapshot: true });
        await d.write(3, { a: v(30), b: v(30) });
        expect(await family.stateStore.restoreOperator(OP, 2)).toEqual({ keysRestored: 2 }); // a, b
        expect(await d.read(['a', 'b', 'c', 'e'])).toEqual({ a: v(20), b: null, c: null, e: v(20) });
        expect(await family.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 3 }); // a, b, e
        expect(await d.read(['a', 'b', 'c', 'e'])).toEqual({ a: v(1), b: v(1), c: null, e: null });
        expect(await family.stateStore.countKeys(OP)).toBe(2);
      }),
    );

    it(
      'a key deleted in epoch 2 and set again in epoch 3 is absent when restored to 2, and back when restored to 1',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        await d.write(1, { x: v(1) }, { snapshot: true });
        await d.write(2, { x: null }, { snapshot: true });
        expect((await family.stateStore.getItems(OP, [refOf('x')])).get(itemId(refOf('x')))).toEqual({ value: null, epoch: 2 });
        expect(await family.stateStore.countKeys(OP)).toBe(0);
        await d.write(3, { x: v(3) });
        expect(await family.stateStore.countKeys(OP)).toBe(1);

        expect(await family.stateStore.restoreOperator(OP, 2)).toEqual({ keysRestored: 1 });
        expect(await d.read(['x'])).toEqual({ x: null });
        expect(await family.stateStore.countKeys(OP)).toBe(0);
        expect(await family.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 1 });
        expect(await d.read(['x'])).toEqual({ x: v(1) });
        expect(await family.stateStore.countKeys(OP)).toBe(1);
      }),
    );

    it(
      'two writes to one key in one commit (a barrier inside the step) restore to the value at the barrier',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        await d.write(1, { a: v(1), b: v(1) }, { snapshot: true });
        await d.write(2, { a: v(2) });
        // One step: a and the new key n written in epoch 2, the barrier of checkpoint 2, then written again in epoch 3.
        const commit = await d.writeAcrossSnapshot(2, { a: v(21), n: v(21), b: null }, { a: v(3), n: v(3), b: v(3) });
        expect(commit.stateWrites.map((w) => [w.key, w.epoch, w.previous])).toEqual([
          ['a', 2, { value: v(2), epoch: 2 }],
          ['n', 2, undefined],
          ['b', 2, { value: v(1), epoch: 1 }],
          ['a', 3, { value: v(21), epoch: 2 }],
          ['n', 3, { value: v(21), epoch: 2 }],
          ['b', 3, { value: null, epoch: 2 }],
        ]);
        expect(await d.read(['a', 'b', 'n'])).toEqual({ a: v(3), b: v(3), n: v(3) });
        expect(await family.stateStore.countKeys(OP)).toBe(3);

        expect(await family.stateStore.restoreOperator(OP, 2)).toEqual({ keysRestored: 3 });
        expect(await d.read(['a', 'b', 'n'])).toEqual({ a: v(21), b: null, n: v(21) });
        expect(await family.stateStore.countKeys(OP)).toBe(2);
        expect(await family.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 3 });
        expect(await d.read(['a', 'b', 'n'])).toEqual({ a: v(1), b: v(1), n: null });
        expect(await family.stateStore.countKeys(OP)).toBe(2);
      }),
    );

    it(
      'restore costs only the keys changed after the checkpoint: 10 changed out of 1,000 -> keysRestored 10',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        const all = keys('key-', 1_000);
        for (let i = 0; i < all.length; i += 250) {
          await d.write(1, Object.fromEntries(all.slice(i, i + 250).map((k, j) => [k, v(i + j)])));
        }
        await d.commit({ snapshots: [{ checkpointId: 1, state: snapshotState(1) }], record: { epoch: 2, lastBarrier: 1 } });
        expect(await family.stateStore.countKeys(OP)).toBe(1_000);
        const changed = all.filter((_, i) => i % 100 === 7);
        expect(changed).toHaveLength(10);
        // 7 overwritten, 3 deleted, spread over two steps of epoch 2.
        await d.write(2, Object.fromEntries(changed.slice(0, 5).map((k) => [k, v(-1)])));
        await d.write(2, Object.fromEntries(changed.map((k, i) => [k, i < 7 ? v(-2) : null])));
        expect(await family.stateStore.countKeys(OP)).toBe(997);

        expect(await family.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 10 });
        expect(await family.stateStore.countKeys(OP)).toBe(1_000);
        const values = await d.read(all);
        expect(all.every((k, i) => (values[k] as Value | null)?.n === i)).toBe(true);
      }),
    );

    it(
      'prune(op, keepFrom) keeps every checkpoint >= keepFrom restorable; snapshots before it are gone once their records are forgotten',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        const other = await new InstanceDriver(family.stateStore, OP, 1).init();
        const all = keys('k', 24);
        const model: Record<string, Value | null> = Object.fromEntries(all.map((k) => [k, null]));
        const expected: Record<number, Record<string, Value | null>> = { 0: { ...model } };
        for (let epoch = 1; epoch <= 6; epoch++) {
          const values: Record<string, Value | null> = {};
          all.forEach((k, i) => {
            const action = (i * 7 + epoch * 3) % 5;
            if (action === 0 || (epoch === 1 && i % 3 === 0)) values[k] = v(epoch * 100 + i);
            else if (action === 1 && model[k] !== null) values[k] = null;
          });
          // A key set before keepFrom and not touched until after it, and a tombstone from before keepFrom.
          if (epoch === 2) Object.assign(values, { k0: v(2000), k1: null });
          if (epoch === 5) Object.assign(values, { k0: v(5000) });
          Object.assign(model, values);
          await d.write(epoch, values, { snapshot: epoch < 6 });
          if (epoch < 6) await other.commit({ snapshots: [{ checkpointId: epoch, state: snapshotState(epoch) }], record: { epoch: epoch + 1 } });
          expected[epoch] = { ...model };
        }
        for (let id = 1; id <= 5; id++) await family.checkpoints.putCheckpoint({ id, generation: 1, status: 'COMPLETED', trigger: 'time', triggeredAt: id, barriersInjected: true });
        await family.stateStore.prune(OP, 3);
        await family.checkpoints.forgetBelow(3);
        expect(await d.read(all)).toEqual(expected[6]);

        for (const instance of [d.instance, other.instance]) {
          expect(await family.stateStore.loadSnapshot(instance, 1)).toBeUndefined();
          expect(await family.stateStore.loadSnapshot(instance, 2)).toBeUndefined();
          for (const id of [3, 4, 5]) expect((await family.stateStore.loadSnapshot(instance, id))?.state).toEqual(snapshotState(id));
        }
        for (const checkpoint of [5, 4, 3]) {
          await family.stateStore.restoreOperator(OP, checkpoint);
          expect(await d.read(all), `restored to ${checkpoint}`).toEqual(expected[checkpoint]);
          expect(await family.stateStore.countKeys(OP)).toBe(Object.values(expected[checkpoint] ?? {}).filter((x) => x !== null).length);
        }
      }),
    );

    it(
      'prune keeps checkpoints >= keepFrom restorable after writes continue, and pruning again is harmless',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        await d.write(1, { a: v(1), b: v(1), c: v(1) }, { snapshot: true });
        await d.write(2, { a: v(2), b: null }, { snapshot: true });
        await family.stateStore.prune(OP, 2);
        await d.write(3, { a: v(3), b: v(3), c: v(3) }, { snapshot: true });
        await family.stateStore.prune(OP, 2);
        await d.write(4, { a: v(4), c: null });
        await family.stateStore.prune(OP, 3);
        await family.stateStore.prune(OP, 3);
        expect(await family.stateStore.restoreOperator(OP, 3)).toEqual({ keysRestored: 2 });
        expect(await d.read(['a', 'b', 'c'])).toEqual({ a: v(3), b: v(3), c: v(3) });
      }),
    );

    it(
      'a key made absent by a restore keeps the older versions that retained checkpoints need through prune',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        for (let epoch = 1; epoch <= 5; epoch++) {
          const values: Record<string, Value | null> = epoch === 2 ? { x: v(2) } : epoch === 4 ? { x: null } : {};
          await d.write(epoch, values, { snapshot: true });
        }
        await d.write(6, { x: v(6) });
        // Rollback to 5 (x absent there), then checkpoints 2..5 are still retained: prune(2).
        expect(await family.stateStore.restoreOperator(OP, 5)).toEqual({ keysRestored: 1 });
        expect(await d.read(['x'])).toEqual({ x: null });
        await family.stateStore.prune(OP, 2);
        await family.stateStore.restoreOperator(OP, 3);
        expect(await d.read(['x'])).toEqual({ x: v(2) });
        await family.stateStore.restoreOperator(OP, 2);
        expect(await d.read(['x'])).toEqual({ x: v(2) });
      }),
    );

    it(
      'countKeys tracks creates, overwrites, deletes, restores, per operator',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        const e = await new InstanceDriver(family.stateStore, 'other').init();
        expect(await family.stateStore.countKeys(OP)).toBe(0);
        await d.write(1, { a: v(1), b: v(1), c: v(1) });
        await d.write(1, { a: v(2), b: null });
        await d.write(1, { b: null, d: null }); // deleting an absent key and a tombstone changes nothing
        await e.write(1, { a: v(1) });
        expect(await family.stateStore.countKeys(OP)).toBe(2);
        expect(await family.stateStore.countKeys('other')).toBe(1);
        await d.commit({ snapshots: [{ checkpointId: 1, state: snapshotState(1) }], record: { epoch: 2 } });
        await d.write(2, { b: v(2), c: null, e: v(2) });
        expect(await family.stateStore.countKeys(OP)).toBe(3);
        await family.stateStore.restoreOperator(OP, 1);
        expect(await family.stateStore.countKeys(OP)).toBe(2);
        expect(await family.stateStore.countKeys('other')).toBe(1);
        expect(await family.stateStore.countKeys('unknown')).toBe(0);
      }),
    );
  });

  describe('snapshots and channel state', () => {
    it(
      'a step that completes two concurrent checkpoints keeps a snapshot of each (either may be restored)',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        await d.commit({
          snapshots: [
            { checkpointId: 1, state: snapshotState(1) },
            { checkpointId: 2, state: snapshotState(2) },
          ],
          acks: [ackOf(1, d.instance, d.generation), ackOf(2, d.instance, d.generation)],
          record: { epoch: 3, lastBarrier: 2 },
        });
        expect(await family.stateStore.loadSnapshot(d.instance, 1)).toEqual({ state: snapshotState(1), channelState: [] });
        expect(await family.stateStore.loadSnapshot(d.instance, 2)).toEqual({ state: snapshotState(2), channelState: [] });
        expect((await family.checkpoints.listAcks(1)).map((a) => a.instance)).toEqual([d.instance]);
      }),
    );

    it(
      'loadSnapshot returns the state and the channel state appended over several commits, in commit order',
      run(async (family) => {
        await startJob(family.checkpoints);
        const d = await new InstanceDriver(family.stateStore, OP).init();
        const other = await new InstanceDriver(family.stateStore, OP, 1).init();
        // Unaligned checkpoint 4: snapshot at the first barrier, in-flight records recorded over later steps.
        for (let i = 0; i < 7; i++) await d.commit(); // its parts land at versions 8, 9, 10: order must not be lexical
        await d.commit({ snapshots: [{ checkpointId: 4, state: snapshotState(4) }], channelState: [{ checkpointId: 4, entries: channelEntries('up#0', 1, 2) }] });
        await other.commit({ snapshots: [{ checkpointId: 4, state: snapshotState(40) }], channelState: [{ checkpointId: 4, entries: channelEntries('up#0', 100) }] });
        await d.commit({ channelState: [{ checkpointId: 4, entries: channelEntries('up#1', 3) }] });
        await d.commit({
          channelState: [
            { checkpointId: 4, entries: channelEntries('up#0', 4, 5) },
            { checkpointId: 5, entries: channelEntries('up#0', 6) },
          ],
        });
        await d.commit({ snapshots: [{ checkpointId: 5, state: snapshotState(5) }] });

        expect(await family.stateStore.loadSnapshot(d.instance, 4)).toEqual({
          state: snapshotState(4),
          channelState: [...channelEntries('up#0', 1, 2), ...channelEntries('up#1', 3), ...channelEntries('up#0', 4, 5)],
        });
        expect(await family.stateStore.loadSnapshot(d.instance, 5)).toEqual({ state: snapshotState(5), channelState: channelEntries('up#0', 6) });
        expect(await family.stateStore.loadSnapshot(other.instance, 4)).toEqual({ state: snapshotState(40), channelState: channelEntries('up#0', 100) });
        expect(await family.stateStore.loadSnapshot(d.instance, 3)).toBeUndefined();
        expect(await family.stateStore.loadSnapshot('nobody#0', 4)).toBeUndefined();
      }),
    );
  });

  describe('staged (transactional) sink output', () => {
    it(
      'readStaged merges the steps of one (instance, epoch) in commit order, through the given epoch, ascending by epoch',
      run(async (family) => {
        await startJob(family.checkpoints);
        const a = await new InstanceDriver(family.stateStore, 'sink', 0).init();
        const b = await new InstanceDriver(family.stateStore, 'sink', 1).init();
        for (let i = 0; i < 8; i++) await a.commit(); // a's parts land at versions 9, 10, 11: order must not be lexical
        await a.commit({ staged: [{ sink: 'out', epoch: 1, records: [{ r: 'a1' }, { r: 'a2' }] }] });
        await b.commit({
          staged: [
            { sink: 'out', epoch: 1, records: [{ r: 'b1' }] },
            { sink: 'other', epoch: 1, records: [{ r: 'o1' }] },
          ],
        });
        // A barrier inside a's step: output of two epochs in one commit.
        await a.commit({
          staged: [
            { sink: 'out', epoch: 1, records: [{ r: 'a3' }] },
            { sink: 'out', epoch: 2, records: [{ r: 'a4' }] },
          ],
        });
        await b.commit({ staged: [{ sink: 'out', epoch: 3, records: [{ r: 'b3' }] }] });
        await a.commit({ staged: [{ sink: 'out', epoch: 2, records: [{ r: 'a5' }] }] });

        const sorted = (batches: Awaited<ReturnType<typeof family.stateStore.readStaged>>) => {
          expect(batches.map((x) => x.epoch)).toEqual([...batches.map((x) => x.epoch)].sort((p, q) => p - q));
          return [...batches].sort((p, q) => p.epoch - q.epoch || (p.instance < q.instance ? -1 : 1));
        };
        expect(await family.stateStore.readStaged('out', 0)).toEqual([]);
        expect(sorted(await family.stateStore.readStaged('out', 1))).toEqual([
          { instance: a.instance, epoch: 1, records: [{ r: 'a1' }, { r: 'a2' }, { r: 'a3' }] },
          { instance: b.instance, epoch: 1, records: [{ r: 'b1' }] },
        ]);
        expect(sorted(await family.stateStore.readStaged('out', 3))).toEqual([
          { instance: a.instance, epoch: 1, records: [{ r: 'a1' }, { r: 'a2' }, { r: 'a3' }] },
          { instance: b.instance, epoch: 1, records: [{ r: 'b1' }] },
          { instance: a.instance, epoch: 2, records: [{ r: 'a4' }, { r: 'a5' }] },
          { instance: b.instance, epoch: 3, records: [{ r: 'b3' }] },
        ]);
        expect(await family.stateStore.readStaged('other', 5)).toEqual([{ instance: b.instance, epoch: 1, records: [{ r: 'o1' }] }]);
        expect(await family.stateStore.readStaged('nothing', 5)).toEqual([]);
      }),
    );

    it(
      'dropStaged removes exactly the given batches (all their steps); discardStagedAfter removes the later epochs',
      run(async (family) => {
        await startJob(family.checkpoints);
        const a = await new InstanceDriver(family.stateStore, 'sink', 0).init();
        const b = await new InstanceDriver(family.stateStore, 'sink', 1).init();
        await a.commit({ staged: [{ sink: 'out', epoch: 1, records: [1] }] });
        await a.commit({
          staged: [
            { sink: 'out', epoch: 1, records: [2] },
            { sink: 'out', epoch: 2, records: [3] },
          ],
        });
        await b.commit({
          staged: [
            { sink: 'out', epoch: 1, records: [10] },
            { sink: 'other', epoch: 1, records: [20] },
          ],
        });
        await b.commit({
          staged: [
            { sink: 'out', epoch: 3, records: [11] },
            { sink: 'other', epoch: 3, records: [21] },
          ],
        });

        await family.stateStore.dropStaged('out', [{ instance: a.instance, epoch: 1 }]);
        const left = (await family.stateStore.readStaged('out', 10)).sort((p, q) => p.epoch - q.epoch || (p.instance < q.instance ? -1 : 1));
        expect(left).toEqual([
          { instance: b.instance, epoch: 1, records: [10] },
          { instance: a.instance, epoch: 2, records: [3] },
          { instance: b.instance, epoch: 3, records: [11] },
        ]);
        await family.stateStore.dropStaged('out', []);
        expect(await family.stateStore.readStaged('out', 10)).toHaveLength(3);

        // Rollback to checkpoint 1: the staged output of epochs 2 and 3 is never published (one step each here).
        expect(await family.stateStore.discardStagedAfter('out', 1)).toBe(2);
        expect(await family.stateStore.readStaged('out', 10)).toEqual([{ instance: b.instance, epoch: 1, records: [10] }]);
        expect(await family.stateStore.discardStagedAfter('out', 1)).toBe(0);
        expect((await family.stateStore.readStaged('other', 10)).map((x) => x.records)).toEqual([[20], [21]]);
      }),
    );
  });

  describeWhen(impl.capabilities.reopen)('durability', () => {
    itWhen(impl.capabilities.reopen)(
      'everything a commit wrote survives a reopen, and restore/prune still work after it',
      run(async (first, reopen) => {
        await startJob(first.checkpoints);
        const d = await new InstanceDriver(first.stateStore, OP).init();
        await d.write(1, { a: v(1), b: v(1), c: v(1) }, { snapshot: true });
        await d.write(2, { a: v(2), b: null }, { snapshot: true });
        const last = fullCommit(d, 3, { stateWrites: await d.writesOf(3, { a: v(3), c: v(3), n: v(3) }) });
        await first.stateStore.commitStep(last);

        const family = await reopen();
        expect(await family.stateStore.loadInstance(d.instance)).toEqual(last.record);
        expect(await family.stateStore.countKeys(OP)).toBe(3);
        expect(await family.stateStore.loadSnapshot(d.instance, 3)).toEqual({ state: snapshotState(7), channelState: channelEntries('up#0', 1, 2) });
        expect(await family.stateStore.readStaged('out', 3)).toEqual([{ instance: d.instance, epoch: 3, records: [{ r: 1 }] }]);
        expect(await family.checkpoints.listAcks(3)).toEqual([ackOf(3, d.instance)]);
        expect(await family.sinks.read('idem')).toEqual([{ total: 1 }]);
        expect(await family.deadLetters.list()).toEqual([letterOf('op:0:1')]);

        // The version records and the change index survived: restore costs only epoch 3's keys.
        const reopened = new InstanceDriver(family.stateStore, OP);
        expect(await family.stateStore.restoreOperator(OP, 2)).toEqual({ keysRestored: 3 });
        expect(await reopened.read(['a', 'b', 'c', 'n'])).toEqual({ a: v(2), b: null, c: v(1), n: null });
        await family.checkpoints.putCheckpoint({ id: 1, generation: 1, status: 'COMPLETED', trigger: 'time', triggeredAt: 1, barriersInjected: true });
        await family.stateStore.prune(OP, 2);
        await family.checkpoints.forgetBelow(2);
        const again = await reopen();
        expect(await again.stateStore.countKeys(OP)).toBe(2);
        expect(await again.stateStore.loadSnapshot(d.instance, 1)).toBeUndefined();
        expect(await again.stateStore.restoreOperator(OP, 2)).toEqual({ keysRestored: 0 });
        expect(await new InstanceDriver(again.stateStore, OP).read(['a', 'b', 'c'])).toEqual({ a: v(2), b: null, c: v(1) });
      }),
    );

    itWhen(impl.capabilities.reopen)(
      'a rejected commit leaves nothing behind after a reopen either',
      run(async (first, reopen) => {
        await startJob(first.checkpoints);
        const d = await new InstanceDriver(first.stateStore, OP).init();
        await d.commit();
        await first.stateStore.commitStep(fullCommit(d, 1, { expectedVersion: 0 })).catch((e: unknown) => {
          if (!(e instanceof ConcurrentStepError)) throw e;
        });
        const family = await reopen();
        expect(await footprint(family, d, 1)).toEqual({
          instance: { ...initialInstanceRecord(d.instance, 1), version: 1 },
          items: [],
          acks: [],
          snapshot: undefined,
          staged: [],
          upserts: [],
          letters: [],
          keys: 0,
        });
      }),
    );
  });
});
