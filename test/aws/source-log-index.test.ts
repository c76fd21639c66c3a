/**
 * The source log's dedup index (dynamo-source-log.ts): an append's transaction writes the head
 * and the segment; the dedup items are written after it, then the head's `ix` moves past them.
 * A crash in between must not let a redelivered event in twice, concurrent appenders of one id
 * must append it once, and an append bills what AWS bills for it.
 */
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { DynamoSourceLog } from '../../shared/aws/adapters/dynamo-source-log.js';
import { Keys } from '../../shared/aws/adapters/table-layout.js';
import { RequestCounter } from '../../shared/aws/adapters/request-counter.js';
import { InjectedFault } from '../../shared/core/errors.js';
import { freshStores } from './helpers.js';

type Stack = { add(mw: unknown, options: { step: 'initialize'; name: string }): void };

/** Fails the next `times` calls of `command` on the client before they are sent (the Lambda dies there). */
function crashBefore(client: object, command: string, times = 1): { crashes: number } {
  const state = { crashes: 0, left: times };
  (client as { middlewareStack: Stack }).middlewareStack.add(
    (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => (args: unknown) => {
      if (context.commandName === command && state.left > 0) {
        state.left--;
        state.crashes++;
        return Promise.reject(new InjectedFault(`crashed before ${command}`));
      }
      return next(args);
    },
    { step: 'initialize', name: `crashBefore${command}` },
  );
  return state;
}

const events = (ids: readonly string[]) => ids.map((id) => ({ id, event: { id } }));

describe('DynamoSourceLog dedup index', () => {
  it('each append indexes the segment before it: the last one is found among the segments above ix, and the next append indexes it', async () => {
    const s = await freshStores();
    try {
      const log = new DynamoSourceLog(s.io);
      await log.append(0, events(['a', 'b']));
      // Appended, not indexed yet: ix is the segment's start, no dedup item.
      expect(await s.io.get(Keys.logHead(0))).toMatchObject({ head: 2, ix: 0 });
      expect(await s.io.get(Keys.logDedup(0, 'a'))).toBeUndefined();
      // SQS redelivers the batch (with a new event): a and b are found in the segment above ix.
      expect(await log.append(0, events(['a', 'b', 'c']))).toEqual({ appended: 1, duplicates: 2, head: 3 });
      expect(await s.io.get(Keys.logHead(0))).toMatchObject({ head: 3, ix: 2 });
      expect(await s.io.get(Keys.logDedup(0, 'a'))).toMatchObject({ o: 0 });
      expect(await s.io.get(Keys.logDedup(0, 'b'))).toMatchObject({ o: 1 });
      expect(await s.io.get(Keys.logDedup(0, 'c'))).toBeUndefined();
      expect(await log.read(0, 0, 10)).toEqual(['a', 'b', 'c'].map((id, offset) => ({ offset, event: { id } })));
    } finally {
      await s.done();
    }
  });

  it('a batch message is one entry: one dedup item (at its first offset) for all its events, written by the next append', async () => {
    const s = await freshStores();
    try {
      const log = new DynamoSourceLog(s.io);
      const batch = Array.from({ length: 40 }, (_, i) => ({ n: i }));
      expect(
        await log.append(0, [
          { id: 'solo', event: { n: -1 } },
          { id: 'm1', events: batch },
        ]),
      ).toEqual({ appended: 41, duplicates: 0, head: 41 });
      expect(await log.append(0, [{ id: 'm2', events: [{ n: 40 }] }])).toEqual({ appended: 1, duplicates: 0, head: 42 });
      const scanned = await s.clients.doc.send(new ScanCommand({ TableName: s.io.table, FilterExpression: 'begins_with(pk, :ld)', ExpressionAttributeValues: { ':ld': 'LD#' } }));
      expect((scanned.Items ?? []).map((item) => item.pk as string).sort()).toEqual([Keys.logDedup(0, 'm1').pk, Keys.logDedup(0, 'solo').pk]);
      expect(await s.io.get(Keys.logDedup(0, 'solo'))).toMatchObject({ o: 0 });
      expect(await s.io.get(Keys.logDedup(0, 'm1'))).toMatchObject({ o: 1 });
      // Indexed now, and still found whole.
      expect(await log.append(0, [{ id: 'm1', events: batch }])).toEqual({ appended: 0, duplicates: 40, head: 42 });
      expect((await log.read(0, 0, 100)).map((e) => (e.event as { n: number }).n)).toEqual(Array.from({ length: 42 }, (_, i) => i - 1));
    } finally {
      await s.done();
    }
  });

  it('a crash while indexing the previous segment appends nothing; the redelivered batch appends only what is new', async () => {
    const s = await freshStores();
    try {
      const log = new DynamoSourceLog(s.io);
      await log.append(0, events(['a']));
      const crash = crashBefore(s.clients.dynamo, 'BatchWriteItemCommand');
      await expect(log.append(0, events(['a', 'b']))).rejects.toThrow('crashed before BatchWriteItemCommand');
      expect(crash.crashes).toBe(1);
      expect(await s.io.get(Keys.logHead(0))).toMatchObject({ head: 1, ix: 0 });
      expect(await log.append(0, events(['a', 'b']))).toEqual({ appended: 1, duplicates: 1, head: 2 });
      expect(await log.read(0, 0, 10)).toEqual(['a', 'b'].map((id, offset) => ({ offset, event: { id } })));
    } finally {
      await s.done();
    }
  });

  it('truncation indexes an unindexed segment before deleting it, so its ids stay duplicates', async () => {
    const s = await freshStores();
    try {
      const log = new DynamoSourceLog(s.io);
      await log.append(0, events(['a']));
      await log.append(0, events(['b']));
      expect(await s.io.get(Keys.logHead(0))).toMatchObject({ head: 2, ix: 1 });
      await log.truncate(0, 2);
      expect(await s.io.get(Keys.logHead(0))).toMatchObject({ head: 2, ix: 2 });
      expect(await s.io.get(Keys.logDedup(0, 'b'))).toMatchObject({ o: 1 });
      expect(await log.append(0, events(['a', 'b']))).toEqual({ appended: 0, duplicates: 2, head: 2 });
    } finally {
      await s.done();
    }
  });

  it('a truncation between an append reading the head and its transaction: the transaction loses on ix, and the retry finds the id in the index', async () => {
    const s = await freshStores();
    try {
      const log = new DynamoSourceLog(s.io);
      await log.append(0, events(['a']));
      let truncations = 0;
      // Before the appender reads the segments above ix, the prune indexes and deletes them.
      (s.clients.dynamo.middlewareStack as unknown as Stack).add(
        (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
          const input = (args as { input: { ProjectionExpression?: string } }).input;
          if (context.commandName === 'QueryCommand' && input.ProjectionExpression === 'f, ids, x, n' && truncations === 0) {
            truncations++;
            await new DynamoSourceLog(s.io).truncate(0, 1);
          }
          return next(args);
        },
        { step: 'initialize', name: 'pruneMeanwhile' },
      );
      expect(await log.append(0, events(['a']))).toEqual({ appended: 0, duplicates: 1, head: 1 });
      expect(truncations).toBe(1);
      expect(await s.io.get(Keys.logHead(0))).toMatchObject({ head: 1, ix: 1 });
    } finally {
      await s.done();
    }
  });

  it('appenders racing with the same ids (SQS delivering one message to two pollers) append each id once', async () => {
    const s = await freshStores();
    try {
      const logs = [0, 1, 2].map(() => new DynamoSourceLog(s.io));
      for (let round = 0; round < 5; round++) {
        const ids = [`r${round}-x`, `r${round}-y`];
        const results = await Promise.all(logs.map((log) => log.append(0, events(ids))));
        expect(results.reduce((n, r) => n + r.appended, 0)).toBe(2);
        expect(results.reduce((n, r) => n + r.duplicates, 0)).toBe(4);
      }
      const read = await logs[0]?.read(0, 0, 100);
      expect(read?.map((e) => e.offset)).toEqual([...Array(10).keys()]);
      expect(new Set(read?.map((e) => (e.event as { id: string }).id)).size).toBe(10);
    } finally {
      await s.done();
    }
  });

  it('bills as AWS does: 10 small events are the head and one segment (2 units each in the transaction); the next append indexes them (1 unit per id); a duplicate costs reads only', async () => {
    const counter = new RequestCounter({ dynamoCapacity: true });
    const s = await freshStores({ counter });
    try {
      const ids = Array.from({ length: 10 }, (_, i) => `event-${i}`);
      counter.reset();
      await s.sourceLog.append(0, events(ids));
      // Reads: the head (1, strongly consistent), 10 dedup keys not found (1 each).
      expect(counter.capacity.byItem).toEqual({ 'L#': { read: 1, write: 2 + 2 }, 'LD#': { read: 10, write: 0 } });
      counter.reset();
      expect(await s.sourceLog.append(0, events(ids.slice(0, 3)))).toEqual({ appended: 0, duplicates: 3, head: 10 });
      // The head and the segment above ix (1 each), 3 dedup keys.
      expect(counter.capacity.byItem).toEqual({ 'L#': { read: 2, write: 0 }, 'LD#': { read: 3, write: 0 } });
      expect(counter.calls()).toEqual({ 'DynamoDB.GetItem': 1, 'DynamoDB.BatchGetItem': 1, 'DynamoDB.Query': 1 });
      counter.reset();
      await s.sourceLog.append(0, events(['next']));
      expect(counter.capacity.byItem).toEqual({ 'L#': { read: 2, write: 2 + 2 }, 'LD#': { read: 1, write: 10 } });
    } finally {
      await s.done();
    }
  });
});
