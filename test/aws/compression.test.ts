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
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import type { OutboundMessage } from '../../shared/core/ports.js';
import { INSTANCE, commitOf, freshStores } from './helpers.js';

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

  it("a step's outbox travels in its instance record deflated: a 200-message outbox bills a fraction of its JSON (#11 item 8)", async () => {
    const counter = new RequestCounter({ dynamoCapacity: true });
    const s = await freshStores({ counter });
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      await s.stateStore.putInstance(initialInstanceRecord(INSTANCE, 1));
      // What a step that emitted 200 records to 4 downstream instances keeps to re-send after a crash between commit and send.
      const outbox: OutboundMessage[] = Array.from({ length: 200 }, (_, i) => {
        const to = `count#${i % 4}`;
        const seq = Math.floor(i / 4) + 1;
        return { queue: 'count', groupId: to, dedupId: `g1:${INSTANCE}>${to}:${seq}`, body: { type: 'data', gen: 1, from: INSTANCE, to, seq, records: [{ k: `word-${i % 13}`, v: 1, o: `0:${i}` }] } };
      });
      const record = { lastOutbox: outbox, lastMessageIds: ['m-1'] };
      const json = Buffer.byteLength(JSON.stringify({ ...initialInstanceRecord(INSTANCE, 1), version: 1, ...record }));
      counter.reset();
      await s.stateStore.commitStep(commitOf(0, [], {}, record));
      const stored = String((await s.io.get(Keys.instance(INSTANCE)))?.d);
      expect(stored.startsWith(COMPRESSED_PREFIX)).toBe(true);
      // About 40 KB of JSON (80 write units inline, doubled in the step's transaction); deflated it is under 4 KB.
      expect(json).toBeGreaterThan(35_000);
      const units = counter.capacity.byItem['I#']?.write ?? 0;
      expect(units).toBeGreaterThan(0);
      expect(units).toBeLessThanOrEqual(8);
      expect(await s.stateStore.loadInstance(INSTANCE)).toMatchObject({ version: 1, lastOutbox: outbox });
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
