/**
 * Appenders of one source partition race for its head item. One that keeps losing gives up
 * after a bounded number of attempts (AppendContentionError, nothing of its chunk appended), so
 * the ingest invocation returns its events for redelivery instead of spinning until the
 * function times out and SQS moves them to the dead-letter queue.
 */
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { AppendContentionError } from '../../shared/core/errors.js';
import { DynamoSourceLog } from '../../shared/aws/adapters/dynamo-source-log.js';
import { Keys } from '../../shared/aws/adapters/table-layout.js';
import { freshStores } from './helpers.js';

describe('DynamoSourceLog under contention for the head', () => {
  it('gives up after maxAppendAttempts lost races with AppendContentionError, leaving no entry or dedup item; appends once the race is over', async () => {
    const s = await freshStores();
    try {
      const log = new DynamoSourceLog(s.io, { maxAppendAttempts: 4 });
      let contended = true;
      let bumps = 0;
      // Another appender wins every race: just before each of our transactions it moves the head.
      const stack = s.clients.dynamo.middlewareStack as unknown as { add(mw: unknown, options: { step: 'initialize'; name: string }): void };
      stack.add(
        (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
          if (contended && context.commandName === 'TransactWriteItemsCommand') {
            bumps++;
            await s.io.doc.send(
              new UpdateCommand({ TableName: s.table, Key: Keys.logHead(0), UpdateExpression: 'ADD #h :one', ExpressionAttributeNames: { '#h': 'head' }, ExpressionAttributeValues: { ':one': 1 } }),
            );
          }
          return next(args);
        },
        { step: 'initialize', name: 'otherAppender' },
      );
      const entries = [
        { id: 'e1', event: { n: 1 } },
        { id: 'e2', event: { n: 2 } },
      ];
      const error = await log.append(0, entries).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AppendContentionError);
      expect(error).toMatchObject({
        partition: 0,
        attempts: 4,
        message: 'source log partition 0: the head moved during 4 append attempts in a row (concurrent appenders); the events are left for redelivery',
      });
      expect(bumps).toBe(4);
      expect(await s.io.get(Keys.logDedup(0, 'e1'))).toBeUndefined();
      expect(await log.read(0, 0, 10)).toEqual([]);

      contended = false;
      expect(await log.append(0, entries)).toEqual({ appended: 2, duplicates: 0, head: 6 });
      expect(await log.read(0, 4, 10)).toEqual([
        { offset: 4, event: { n: 1 } },
        { offset: 5, event: { n: 2 } },
      ]);
      // The dedup items (written by the next append) live under keys of their own, off the partition's hot `L#0` key.
      await log.append(0, [{ id: 'e3', event: { n: 3 } }]);
      expect((await s.io.get(Keys.logDedup(0, 'e2')))?.pk).toBe('LD#0#e2');
    } finally {
      await s.done();
    }
  });
});
