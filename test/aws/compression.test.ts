/**
 * Payloads over COMPRESS_ABOVE_BYTES are stored deflated (DynamoDB bills an item per KB): the
 * job's own records and the source log's segments; what users read from the table (sink
 * output, dead letters) stays plain JSON.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { COMPRESSED_PREFIX } from '../../shared/aws/adapters/dynamo-io.js';
import { Keys } from '../../shared/aws/adapters/table-layout.js';
import { RequestCounter } from '../../shared/aws/adapters/request-counter.js';
import { freshStores } from './helpers.js';

const records = (n: number) => Array.from({ length: n }, (_, i) => ({ word: `word-${i % 7}`, count: i, partition: 'lines#0' }));

describe('compressed payloads', () => {
  it('a large repetitive value is stored deflated and reads back equal; small and incompressible ones stay JSON', async () => {
    const s = await freshStores();
    try {
      const big = records(100);
      const stored = await s.io.encode(big);
      expect(stored.startsWith(COMPRESSED_PREFIX)).toBe(true);
      expect(stored.length).toBeLessThan(JSON.stringify(big).length / 4);
      expect(await s.io.decode(stored)).toEqual(big);
      expect(await s.io.encode({ n: 1 })).toBe('{"n":1}');
      const noise = randomBytes(1500).toString('base64');
      expect(await s.io.encode(noise)).toBe(JSON.stringify(noise));
    } finally {
      await s.done();
    }
  });

  it('sink batches and dead letters stay plain JSON for their readers', async () => {
    const s = await freshStores();
    try {
      await s.sinks.publish('out', 'b1', records(100));
      expect(String((await s.io.get(Keys.sinkBatch('out', 'b1')))?.d).startsWith('[{"word"')).toBe(true);
      expect(await s.sinks.read('out')).toEqual(records(100));
      const letter = { id: 'dl-1', reason: 'schema-violation' as const, message: 'bad', vertex: 'lines', payload: JSON.stringify(records(50)), at: 1 };
      await s.deadLetters.put([letter]);
      expect(String((await s.io.get(Keys.deadLetter('dl-1')))?.d).startsWith('{')).toBe(true);
      expect(await s.deadLetters.list()).toEqual([letter]);
    } finally {
      await s.done();
    }
  });

  it('a segment of similar events is stored deflated: it bills 2 write units in the transaction instead of 8, and reads back in order', async () => {
    const counter = new RequestCounter({ dynamoCapacity: true });
    const s = await freshStores({ counter });
    try {
      const events = records(40).map((event, i) => ({ id: `e${i}`, event }));
      counter.reset();
      await s.sourceLog.append(0, events);
      const segment = await s.io.get(Keys.logSegment(0, 39));
      expect(segment?.es).toBeUndefined();
      expect(typeof segment?.ez).toBe('string');
      // The head (2) and the segment: about 3 KB of JSON, under 1 KB deflated (2).
      expect(counter.capacity.byItem['L#']?.write).toBe(4);
      expect(await s.sourceLog.read(0, 5, 3)).toEqual(events.slice(5, 8).map((e, i) => ({ offset: 5 + i, event: e.event })));
    } finally {
      await s.done();
    }
  });
});
