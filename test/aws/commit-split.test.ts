/**
 * Step commits larger than one DynamoDB transaction (100 actions / 4 MB) are split by the
 * pending-write protocol of DynamoStateStore and stay atomic.
 */
import { describe, expect, it } from 'vitest';
import { ConcurrentStepError, GenerationFencedError } from '../../shared/core/errors.js';
import type { StateWrite } from '../../shared/core/ports.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import { RequestCounter, createAwsStores, type AwsStores } from '../../shared/aws/index.js';
import { Keys } from '../../shared/aws/adapters/table-layout.js';
import { INSTANCE, OP, cloudEndpoint, commitOf, credentials, freshStores } from './helpers.js';

const KEYS = Array.from({ length: 250 }, (_, i) => `k${i}`);
const refs = KEYS.map((key, i) => ({ keyGroup: i % 128, key }));

/** 10 keys at {n: 0} in epoch 1 (committed with version 1), the rest absent. */
async function seed(s: AwsStores): Promise<void> {
  await s.checkpoints.putJob(initialJob(1), undefined);
  await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
  await s.stateStore.commitStep(
    commitOf(
      0,
      refs.slice(0, 10).map((r) => ({ ...r, value: { n: 0 }, epoch: 1, previous: undefined })),
    ),
  );
}

/** 250 writes in epoch 2 (the first of each key there): 250 items + the step's change record of epoch 2 = 251 items. */
function bigWrites(n: unknown): StateWrite[] {
  return refs.map((r, i) => ({ ...r, value: { n }, epoch: 2, previous: i < 10 ? { value: { n: 0 }, epoch: 1 } : undefined }));
}

async function readAll(s: AwsStores): Promise<Record<string, unknown>> {
  const items = await s.stateStore.getItems(OP, refs);
  return Object.fromEntries(
    refs.flatMap((r) => {
      const item = items.get(`${r.keyGroup}|${r.key}`);
      return item ? [[r.key, item.value]] : [];
    }),
  );
}

const seeded = Object.fromEntries(KEYS.slice(0, 10).map((k) => [k, { n: 0 }]));

/** Adds a middleware that runs `before` ahead of the first TransactWriteItems whose input contains `marker`. */
function beforeTransaction(s: AwsStores, marker: string, before: () => Promise<void>): void {
  let done = false;
  const stack = s.clients.dynamo.middlewareStack as unknown as { add(mw: unknown, options: { step: 'initialize'; name: string }): void };
  stack.add(
    (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: { input?: unknown }) => {
      if (!done && context.commandName === 'TransactWriteItemsCommand' && JSON.stringify(args.input).includes(marker)) {
        done = true;
        await before();
      }
      return next(args);
    },
    { step: 'initialize', name: 'testFault' },
  );
}

async function otherProcess(table: string): Promise<AwsStores> {
  return createAwsStores({ tableName: table, bucket: 'cairn-aws-tests', endpoint: cloudEndpoint(), region: 'us-east-1', credentials });
}

describe('DynamoStateStore: a commit over the transaction limits', () => {
  it('a commit of 250 state writes whose final transaction fails its condition leaves none of them visible to getItems or restore', async () => {
    const s = await freshStores();
    const other = await otherProcess(s.table);
    try {
      await seed(s);
      const counter = new RequestCounter();
      counter.attach(s.clients.dynamo);
      // A rollback happens after the pending writes, just before the commit point: generation 2, every instance fenced at it.
      beforeTransaction(s, '#fold = :m', async () => {
        const job = await other.checkpoints.getJob();
        if (!job) throw new Error('no job');
        await other.checkpoints.putJob({ ...job, version: job.version + 1, generation: 2 }, job.version);
        await other.stateStore.fenceInstances([INSTANCE], 2);
      });
      await expect(s.stateStore.commitStep(commitOf(1, bigWrites(1)))).rejects.toBeInstanceOf(GenerationFencedError);
      // It really was split: claim + 3 pending chunks (251 items / 99) + the failed commit.
      expect(counter.calls()['DynamoDB.TransactWriteItems']).toBe(5);
      const pending = await s.io.get(Keys.item(OP, refs[200]?.keyGroup ?? 0, 'k200'));
      expect(pending?.pt).toBeDefined();

      expect(await readAll(s)).toEqual(seeded);
      expect((await s.stateStore.loadInstance(INSTANCE))?.version).toBe(1);
      expect(await s.stateStore.countKeys(OP)).toBe(10);
      // Restore sees no key changed after checkpoint 1 (the pending change record is not visible).
      expect(await s.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 0 });
      expect(await readAll(s)).toEqual(seeded);
      expect(await readAll(other)).toEqual(seeded);
    } finally {
      other.destroy();
      await s.done();
    }
  });

  it('a split commit of 250 writes becomes visible at once, folds, and restores like a small one', async () => {
    const s = await freshStores();
    try {
      await seed(s);
      const counter = new RequestCounter();
      counter.attach(s.clients.dynamo);
      await s.stateStore.commitStep(commitOf(1, bigWrites(1)));
      // claim 1 + pending 3 + commit 1 + fold 3 (251 Updates / 100) = 8 transactions, + 1 UpdateItem (clear the fold marker).
      expect(counter.calls()).toEqual({ 'DynamoDB.TransactWriteItems': 8, 'DynamoDB.UpdateItem': 1 });
      expect(await readAll(s)).toEqual(Object.fromEntries(KEYS.map((k) => [k, { n: 1 }])));
      const raw = await s.io.get(Keys.item(OP, refs[200]?.keyGroup ?? 0, 'k200'));
      expect(raw?.pt).toBeUndefined();
      expect((await s.io.get(Keys.instance(INSTANCE)))?.fold).toBeUndefined();
      expect(await s.stateStore.countKeys(OP)).toBe(250);
      expect(await s.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 250 });
      expect(await readAll(s)).toEqual(seeded);
      expect(await s.stateStore.countKeys(OP)).toBe(10);
    } finally {
      await s.done();
    }
  });

  it('a split commit of a large value over a large committed one fits the 400 KB item limit (the pending payload sits next to the committed one)', async () => {
    const s = await freshStores();
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
      const large = (fill: string): { blob: string } => ({ blob: fill.repeat(300_000) });
      const [first] = refs;
      if (!first) throw new Error('no keys');
      await s.stateStore.commitStep(commitOf(0, [{ ...first, value: large('a'), epoch: 1, previous: undefined }]));
      // Epoch 1 again (no change entry for k0): 250 writes split the commit, and k0's pending 300 KB
      // value is written onto the item that holds its committed 300 KB value.
      const writes = refs.map((r, i): StateWrite => ({ ...r, value: i === 0 ? large('b') : { n: 1 }, epoch: 1, previous: i === 0 ? { value: large('a'), epoch: 1 } : undefined }));
      await s.stateStore.commitStep(commitOf(1, writes));
      const items = await s.stateStore.getItems(OP, refs);
      expect(items.get(`${first.keyGroup}|${first.key}`)).toEqual({ value: large('b'), epoch: 1 });
      expect(items.get(`${refs[249]?.keyGroup}|k249`)).toEqual({ value: { n: 1 }, epoch: 1 });
      expect(items.size).toBe(250);
    } finally {
      await s.done();
    }
  });

  it('a process that dies after the commit point leaves a commit that readers see and the next loadInstance folds', async () => {
    const s = await freshStores();
    const other = await otherProcess(s.table);
    try {
      await seed(s);
      beforeTransaction(s, '#d = #p', () => Promise.reject(new Error('killed after the commit point')));
      await expect(s.stateStore.commitStep(commitOf(1, bigWrites(7)))).rejects.toThrow('killed after the commit point');
      expect((await other.io.get(Keys.instance(INSTANCE)))?.fold).toBeDefined();
      // Committed: another process sees every write, although the items are still pending.
      expect(await readAll(other)).toEqual(Object.fromEntries(KEYS.map((k) => [k, { n: 7 }])));
      expect((await other.io.get(Keys.item(OP, refs[3]?.keyGroup ?? 0, 'k3')))?.pt).toBeDefined();
      // The next step's loadInstance finishes the fold; then the next commit goes through.
      expect((await other.stateStore.loadInstance(INSTANCE))?.version).toBe(2);
      expect((await other.io.get(Keys.instance(INSTANCE)))?.fold).toBeUndefined();
      expect((await other.io.get(Keys.item(OP, refs[3]?.keyGroup ?? 0, 'k3')))?.pt).toBeUndefined();
      await other.stateStore.commitStep(commitOf(2, [{ ...(refs[0] as { keyGroup: number; key: string }), value: { n: 8 }, epoch: 2, previous: { value: { n: 7 }, epoch: 2 } }]));
      expect((await readAll(other)).k0).toEqual({ n: 8 });
      expect(await other.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 250 });
      expect(await readAll(other)).toEqual(seeded);
    } finally {
      other.destroy();
      await s.done();
    }
  });

  it('two attempts of the same split step race: exactly one commits, the other gets ConcurrentStepError, no value of the loser survives', async () => {
    const s = await freshStores();
    const other = await otherProcess(s.table);
    try {
      await seed(s);
      const results = await Promise.allSettled([s.stateStore.commitStep(commitOf(1, bigWrites('A'))), other.stateStore.commitStep(commitOf(1, bigWrites('B')))]);
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i === 0 ? 'A' : 'B'] : []));
      expect(won).toHaveLength(1);
      const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(lost?.reason).toBeInstanceOf(ConcurrentStepError);
      expect(await readAll(s)).toEqual(Object.fromEntries(KEYS.map((k) => [k, { n: won[0] }])));
      expect((await s.stateStore.loadInstance(INSTANCE))?.version).toBe(2);
    } finally {
      other.destroy();
      await s.done();
    }
  });

  it('two writes of one key in one commit (a snapshot inside the step) merge: the change record of epoch 2 closes the first', async () => {
    const s = await freshStores();
    try {
      await seed(s);
      const ref = refs[0] as { keyGroup: number; key: string };
      await s.stateStore.commitStep(
        commitOf(1, [
          { ...ref, value: { n: 1 }, epoch: 1, previous: { value: { n: 0 }, epoch: 1 } },
          { ...ref, value: { n: 2 }, epoch: 2, previous: { value: { n: 1 }, epoch: 1 } },
        ]),
      );
      expect((await s.stateStore.getItems(OP, [ref])).get(`${ref.keyGroup}|k0`)).toEqual({ value: { n: 2 }, epoch: 2 });
      expect(await s.stateStore.restoreOperator(OP, 1)).toEqual({ keysRestored: 1 });
      expect((await s.stateStore.getItems(OP, [ref])).get(`${ref.keyGroup}|k0`)).toEqual({ value: { n: 1 }, epoch: 1 });
    } finally {
      await s.done();
    }
  });
});
