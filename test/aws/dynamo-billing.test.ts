/**
 * DynamoDB's on-demand bill, computed by AWS's rules from what is sent (not from DynamoDB
 * Local's ConsumedCapacity): item sizes, units per KB / 4 KB, transactions at twice the units.
 */
import { TransactWriteItemsCommand } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import { attributeSize, DynamoBillingMeter, itemSize, type BillingTally } from '../../shared/aws/adapters/dynamo-billing.js';
import { RequestCounter } from '../../shared/aws/index.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { freshStores } from './helpers.js';

const S = (s: string) => ({ S: s });
const key = (pk: string, sk: string) => ({ pk: S(pk), sk: S(sk) });
const tally = (): BillingTally => ({ read: 0, write: 0 });

describe('DynamoDB billing rules', () => {
  it('item sizes: names plus values; numbers by significant digits; lists and maps with their overhead', () => {
    expect(itemSize({ pk: S('J'), sk: S('job'), d: S('x'.repeat(1000)) })).toBe(2 + 1 + 2 + 3 + 1 + 1000);
    expect(attributeSize({ N: '12345' })).toBe(4); // ceil(5 / 2) + 1
    expect(attributeSize({ N: '-0.00120' })).toBe(2); // digits "12"
    expect(attributeSize({ L: [S('ab'), { N: '1' }] })).toBe(3 + (2 + 1) + (2 + 1));
    expect(attributeSize({ M: { a: S('xy') } })).toBe(3 + 1 + 2 + 1);
    expect(attributeSize({ BOOL: true })).toBe(1);
    expect(itemSize({ ü: S('é') })).toBe(4); // UTF-8 bytes
  });

  it('writes: the larger image per KB; transactions twice, ConditionCheck included; a refused condition still pays', () => {
    const meter = new DynamoBillingMeter();
    const t = tally();
    const small = { ...key('A', '1'), d: S('x'.repeat(900)) }; // 907 bytes
    meter.bill('PutItem', { TableName: 'T', Item: small }, {}, t, true);
    expect(t.write).toBe(1);
    // An update that grows it past 1 KB: 2 units (after image 1,207 bytes).
    meter.bill(
      'UpdateItem',
      { TableName: 'T', Key: key('A', '1'), UpdateExpression: 'SET #e = :e', ExpressionAttributeNames: { '#e': 'e' }, ExpressionAttributeValues: { ':e': S('y'.repeat(299)) } },
      {},
      t,
      true,
    );
    expect(t.write).toBe(3);
    // A transaction: a new 100-byte item (2 x 1), a condition check on the 1,207-byte item (2 x 2), a delete of a missing one (2 x 1).
    meter.bill(
      'TransactWriteItems',
      {
        TransactItems: [
          { Put: { TableName: 'T', Item: { ...key('B', '1'), d: S('z'.repeat(94)) } } },
          { ConditionCheck: { TableName: 'T', Key: key('A', '1'), ConditionExpression: 'attribute_exists(pk)' } },
          { Delete: { TableName: 'T', Key: key('C', '1') } },
        ],
      },
      {},
      t,
      true,
    );
    expect(t.write).toBe(3 + 2 + 4 + 2);
    // Deleting the grown item bills its size; a refused conditional put of the same key still costs a unit.
    meter.bill('DeleteItem', { TableName: 'T', Key: key('A', '1') }, {}, t, true);
    expect(t.write).toBe(11 + 2);
    meter.bill('PutItem', { TableName: 'T', Item: key('A', '1'), ConditionExpression: 'attribute_exists(pk)' }, {}, t, false);
    expect(t.write).toBe(14);
    // BatchWriteItem: per item; unprocessed ones are billed when retried.
    const put = { PutRequest: { Item: { ...key('D', '1'), d: S('q'.repeat(2000)) } } };
    meter.bill('BatchWriteItem', { RequestItems: { T: [put, { DeleteRequest: { Key: key('B', '1') } }] } }, { UnprocessedItems: { T: [put] } }, t, true);
    expect(t.write).toBe(15);
  });

  it('reads: per 4 KB, half when eventually consistent, a missing item still one unit, a Query summed per call', () => {
    const meter = new DynamoBillingMeter();
    const t = tally();
    const big = { ...key('A', '1'), d: S('x'.repeat(5000)) };
    meter.bill('GetItem', { TableName: 'T', Key: key('A', '1'), ConsistentRead: true }, { Item: big }, t, true);
    meter.bill('GetItem', { TableName: 'T', Key: key('Z', '1'), ConsistentRead: true }, {}, t, true);
    meter.bill('GetItem', { TableName: 'T', Key: key('A', '1') }, { Item: big }, t, true);
    expect(t.read).toBe(2 + 1 + 1);
    const items = [1, 2, 3].map((i) => ({ ...key('Q', String(i)), d: S('x'.repeat(1494)) })); // 1,500 bytes each
    meter.bill('Query', { TableName: 'T', ConsistentRead: true }, { Items: items }, t, true);
    meter.bill('Query', { TableName: 'T', ConsistentRead: true }, { Items: [] }, t, true);
    expect(t.read).toBe(4 + 2 + 1);
    meter.bill('BatchGetItem', { RequestItems: { T: { Keys: [key('A', '1'), key('N', '1')], ConsistentRead: true } } }, { Responses: { T: [big] } }, t, true);
    expect(t.read).toBe(7 + 2 + 1);
  });

  it('an update with if_not_exists keeps the stored value, or sets the fallback on an item without it (the after image bills)', () => {
    const meter = new DynamoBillingMeter();
    const t = tally();
    const update = (value: string) => ({
      TableName: 'T',
      Key: key('H', '1'),
      UpdateExpression: 'SET #h = :n, #x = if_not_exists(#x, :v)',
      ExpressionAttributeNames: { '#h': 'head', '#x': 'ix' },
      ExpressionAttributeValues: { ':n': { N: '1' }, ':v': S(value) },
    });
    meter.bill('UpdateItem', update('x'.repeat(1500)), {}, t, true);
    expect(t.write).toBe(2); // the fallback (1,500 bytes) was set
    meter.bill('UpdateItem', update('short'), {}, t, true);
    expect(t.write).toBe(4); // kept: the item is still over 1 KB
  });

  it('by item kind (the partition key up to its first #): each unit goes to the item it was billed for', () => {
    const meter = new DynamoBillingMeter();
    const t = { read: 0, write: 0, byItem: {} };
    const k = (pk: string, sk: string) => ({ pk: S(pk), sk: S(sk) });
    meter.bill(
      'TransactWriteItems',
      { TransactItems: [{ Put: { TableName: 'T', Item: { ...k('L#0', 'E#1'), d: S('x'.repeat(1500)) } } }, { Put: { TableName: 'T', Item: k('LD#0#e1', 'D') } }] },
      {},
      t,
      true,
    );
    meter.bill('BatchGetItem', { RequestItems: { T: { Keys: [k('LD#0#e1', 'D'), k('LD#0#e2', 'D')], ConsistentRead: true } } }, { Responses: { T: [k('LD#0#e1', 'D')] } }, t, true);
    meter.bill('Query', { TableName: 'T', ExpressionAttributeValues: { ':pk': S('CP') } }, { Items: [] }, t, true);
    meter.bill('DeleteItem', { TableName: 'T', Key: k('L#0', 'E#1') }, {}, t, true);
    expect(t).toEqual({ read: 2.5, write: 8, byItem: { 'L#': { read: 0, write: 6 }, 'LD#': { read: 2, write: 2 }, CP: { read: 0.5, write: 0 } } });
  });

  it('through the DocumentClient (plain values in its output): a 5 KB item reads as 2 units, projected or not, since AWS bills the whole item', async () => {
    const counter = new RequestCounter({ dynamoCapacity: true });
    const s = await freshStores({ counter });
    try {
      await s.io.batchWrite([{ put: { pk: 'Z#1', sk: 'a', d: 'x'.repeat(5000) } }]);
      counter.reset();
      await s.io.get({ pk: 'Z#1', sk: 'a' });
      expect(counter.capacity.read).toBe(2);
      await s.io.batchGet(
        [
          { pk: 'Z#1', sk: 'a' },
          { pk: 'Z#1', sk: 'missing' },
        ],
        s.table,
        ['pk', 'sk'],
      );
      expect(counter.capacity.read).toBe(2 + 2 + 1);
      await s.io.queryPartition('Z#1');
      expect(counter.capacity.read).toBe(5 + 2);
    } finally {
      await s.done();
    }
  });

  it('on DynamoDB Local: a transaction of two small items bills 4 write units, where the emulator reports 2; the adapters are billed the same way', async () => {
    const counter = new RequestCounter({ dynamoCapacity: true });
    const s = await freshStores({ counter });
    try {
      counter.reset();
      const out = await s.clients.dynamo.send(
        new TransactWriteItemsCommand({
          TransactItems: [{ Put: { TableName: s.table, Item: key('X', '1') } }, { Put: { TableName: s.table, Item: key('X', '2') } }],
          ReturnConsumedCapacity: 'TOTAL',
        }),
      );
      expect(out.ConsumedCapacity?.[0]?.CapacityUnits).toBe(2); // the emulator's report: kinder than AWS
      expect(counter.capacity).toEqual({ read: 0, write: 4, byItem: { X: { read: 0, write: 4 } } });
      counter.reset();
      await s.checkpoints.putJob(initialJob(1), undefined); // the job record and its generation fence, in one transaction
      await s.checkpoints.getJob();
      // By item kind: both items of the transaction are under pk `JOB`.
      expect(counter.capacity).toEqual({ read: 1, write: 4, byItem: { JOB: { read: 1, write: 4 } } });
    } finally {
      await s.done();
    }
  });
});
