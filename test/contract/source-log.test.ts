import { describe, expect, it } from 'vitest';
import { SourceLogTruncatedError } from '../../shared/core/errors.js';
import type { LogEntry, SourceLog } from '../../shared/core/ports.js';
import { CONTRACT_DEDUP_WINDOW_MS } from './clock.js';
import { implementationsOf, withResource, type SourceLogResource } from './implementations.js';
import { itWhen } from './implementations.js';

const entries = (prefix: string, from: number, count: number) => Array.from({ length: count }, (_, i) => ({ id: `${prefix}-${from + i}`, event: { id: `${prefix}-${from + i}`, n: from + i } }));

async function readAll(log: SourceLog, partition: number): Promise<LogEntry[]> {
  return log.read(partition, 0, 1_000_000);
}

describe.each(implementationsOf('source-log'))('SourceLog contract: $name', (impl) => {
  const run = (body: (resource: SourceLogResource, reopen: () => Promise<SourceLogResource>) => Promise<void>) => () => withResource(impl, body);

  it(
    'an empty partition has head 0, reads nothing and is not sealed',
    run(async ({ log }) => {
      expect(await log.head(0)).toBe(0);
      expect(await log.read(0, 0, 10)).toEqual([]);
      expect(await log.isSealed(0)).toBe(false);
    }),
  );

  it(
    'appends in order from offset 0 without holes, across calls; events round-trip exactly',
    run(async ({ log }) => {
      const odd = [
        { id: 'e-a', event: { nested: { list: [1, 'two', null, { deep: true }] }, unicode: 'zoë ✓ 🚀', big: 2 ** 40, neg: -1.5 } },
        { id: 'e-b', event: 'a plain string' },
        { id: 'e-c', event: 0 },
        { id: 'e-d', event: [] },
      ];
      expect(await log.append(0, odd)).toEqual({ appended: 4, duplicates: 0, head: 4 });
      expect(await log.head(0)).toBe(4);
      expect(await log.append(0, entries('x', 0, 3))).toEqual({ appended: 3, duplicates: 0, head: 7 });
      expect(await log.head(0)).toBe(7);
      expect(await readAll(log, 0)).toEqual([...odd, ...entries('x', 0, 3)].map((e, offset) => ({ offset, event: e.event })));
      expect(await log.append(0, [])).toEqual({ appended: 0, duplicates: 0, head: 7 });
      expect(await log.head(0)).toBe(7);
    }),
  );

  it(
    'skips ids appended before, across calls and within one call, without leaving holes',
    run(async ({ log }) => {
      expect(await log.append(0, entries('m', 0, 5))).toEqual({ appended: 5, duplicates: 0, head: 5 });
      // A redelivered batch: m-3, m-4 again, mixed with new ones.
      const redelivery = [...entries('m', 3, 2), ...entries('m', 5, 2)];
      expect(await log.append(0, redelivery)).toEqual({ appended: 2, duplicates: 2, head: 7 });
      // The same id twice in one call: the first occurrence is appended.
      const twice = [
        { id: 'w', event: { first: true } },
        { id: 'm-1', event: { dup: true } },
        { id: 'w', event: { first: false } },
        { id: 'z', event: { z: 1 } },
      ];
      expect(await log.append(0, twice)).toEqual({ appended: 2, duplicates: 2, head: 9 });
      // A whole batch of duplicates.
      expect(await log.append(0, entries('m', 0, 7))).toEqual({ appended: 0, duplicates: 7, head: 9 });
      expect(await log.head(0)).toBe(9);
      expect(await readAll(log, 0)).toEqual([...entries('m', 0, 7).map((e) => e.event), { first: true }, { z: 1 }].map((event, offset) => ({ offset, event })));
    }),
  );

  it(
    'an entry of many events (a batch message) appends whole at consecutive offsets, and is a duplicate whole under its one id',
    run(async ({ log }) => {
      const batch = Array.from({ length: 7 }, (_, i) => ({ b: i }));
      expect(
        await log.append(0, [
          { id: 'one', event: { single: 1 } },
          { id: 'batch-1', events: batch },
          { id: 'empty', events: [] },
        ]),
      ).toEqual({ appended: 8, duplicates: 0, head: 8 });
      // Redelivered with a new entry: the batch's 7 events are duplicates as a whole.
      expect(
        await log.append(0, [
          { id: 'batch-1', events: batch },
          { id: 'batch-2', events: [{ b: 7 }, { b: 8 }] },
        ]),
      ).toEqual({ appended: 2, duplicates: 7, head: 10 });
      // Larger than a segment's bound of events (500): still one entry, still whole.
      const big = Array.from({ length: 612 }, (_, i) => ({ big: i }));
      expect(await log.append(0, [{ id: 'big', events: big }])).toEqual({ appended: 612, duplicates: 0, head: 622 });
      expect(
        await log.append(0, [
          { id: 'big', events: big },
          { id: 'batch-2', events: [{ b: 7 }, { b: 8 }] },
        ]),
      ).toEqual({ appended: 0, duplicates: 614, head: 622 });
      expect(await readAll(log, 0)).toEqual([{ single: 1 }, ...batch, { b: 7 }, { b: 8 }, ...big].map((event, offset) => ({ offset, event })));
      expect(await log.read(0, 500, 3)).toEqual([490, 491, 492].map((i) => ({ offset: 10 + i, event: { big: i } })));
    }),
  );

  it(
    'read(from, max) returns the window of offsets [from, from + max) that exists',
    run(async ({ log }) => {
      await log.append(0, entries('r', 0, 10));
      const window = (from: number, count: number) => entries('r', from, count).map((e, i) => ({ offset: from + i, event: e.event }));
      expect(await log.read(0, 0, 3)).toEqual(window(0, 3));
      expect(await log.read(0, 3, 4)).toEqual(window(3, 4));
      expect(await log.read(0, 8, 100)).toEqual(window(8, 2));
      expect(await log.read(0, 9, 1)).toEqual(window(9, 1));
      expect(await log.read(0, 10, 5)).toEqual([]);
      expect(await log.read(0, 50, 5)).toEqual([]);
      expect(await log.read(0, 2, 0)).toEqual([]);
      // Rewinding (replay after a rollback) reads the same entries again.
      expect(await log.read(0, 3, 4)).toEqual(window(3, 4));
    }),
  );

  it(
    'seal marks the end of input per partition; appended entries stay readable',
    run(async ({ log }) => {
      await log.append(0, entries('s', 0, 3));
      await log.seal(0);
      expect(await log.isSealed(0)).toBe(true);
      expect(await log.isSealed(1)).toBe(false);
      expect(await log.head(0)).toBe(3);
      expect(await readAll(log, 0)).toHaveLength(3);
      await log.seal(0);
      expect(await log.isSealed(0)).toBe(true);
      // Sealing an empty partition.
      await log.seal(2);
      expect(await log.isSealed(2)).toBe(true);
      expect(await log.head(2)).toBe(0);
    }),
  );

  it(
    'partitions are independent: own offsets from 0, own heads, own seals',
    run(async ({ log }) => {
      await log.append(0, entries('p0', 0, 3));
      await log.append(1, entries('p1', 0, 2));
      await log.append(0, entries('p0', 3, 1));
      await log.append(7, entries('p7', 0, 1));
      expect([await log.head(0), await log.head(1), await log.head(7), await log.head(3)]).toEqual([4, 2, 1, 0]);
      expect(await readAll(log, 1)).toEqual(entries('p1', 0, 2).map((e, offset) => ({ offset, event: e.event })));
      expect(await readAll(log, 0)).toEqual(entries('p0', 0, 4).map((e, offset) => ({ offset, event: e.event })));
      await log.seal(1);
      expect([await log.isSealed(0), await log.isSealed(1)]).toEqual([false, true]);
    }),
  );

  it(
    'concurrent appends to one partition (ingest at any concurrency) interleave whole entries without holes or loss',
    run(async ({ log }) => {
      const writers = Array.from({ length: 5 }, (_, w) => entries(`c${w}`, 0, 8));
      const results = await Promise.all(writers.map((batch) => log.append(0, batch)));
      expect(results.map(({ appended, duplicates }) => ({ appended, duplicates }))).toEqual(writers.map(() => ({ appended: 8, duplicates: 0 })));
      // Each writer's head is past its own entries; the last writer's is the final head.
      expect(Math.max(...results.map((r) => r.head))).toBe(40);
      for (const r of results) expect(r.head).toBeGreaterThanOrEqual(8);
      // Everyone again (at-least-once redelivery), concurrently: all duplicates.
      const again = await Promise.all(writers.map((batch) => log.append(0, batch)));
      expect(again).toEqual(writers.map(() => ({ appended: 0, duplicates: 8, head: 40 })));
      expect(await log.head(0)).toBe(40);
      const all = await readAll(log, 0);
      expect(all.map((e) => e.offset)).toEqual(Array.from({ length: 40 }, (_, i) => i));
      for (const batch of writers) {
        const mine = all.filter((e) => batch.some((b) => b.id === (e.event as { id: string }).id)).map((e) => e.event);
        expect(mine).toEqual(batch.map((b) => b.event)); // each writer's entries in its order
      }
    }),
  );

  itWhen(impl.capabilities.reopen)(
    'entries, heads, seals and the dedup memory survive a reopen',
    run(async (first, reopen) => {
      await first.log.append(0, entries('d', 0, 4));
      await first.log.append(1, entries('q', 0, 2));
      await first.log.seal(1);
      const { log } = await reopen();
      expect(await log.head(0)).toBe(4);
      expect(await readAll(log, 0)).toEqual(entries('d', 0, 4).map((e, offset) => ({ offset, event: e.event })));
      expect(await log.isSealed(1)).toBe(true);
      expect(await log.isSealed(0)).toBe(false);
      expect(await log.append(0, entries('d', 2, 4))).toEqual({ appended: 2, duplicates: 2, head: 6 });
      expect(await log.read(0, 4, 10)).toEqual(entries('d', 4, 2).map((e, i) => ({ offset: 4 + i, event: e.event })));
    }),
  );
  describe('retention', () => {
    const window = (from: number, count: number) => entries('t', from, count).map((e, i) => ({ offset: from + i, event: e.event }));
    /** Appends in pairs: a store that keeps its log in segments (one per append) then has a boundary at every even offset the cuts use. */
    const appendPairs = async (log: SourceLog, partition: number, prefix: string, count: number): Promise<void> => {
      for (let i = 0; i < count; i += 2) await log.append(partition, entries(prefix, i, Math.min(2, count - i)));
    };

    it(
      'truncate(below) removes the entries below it: reads from the cut on are unchanged, reads below throw SourceLogTruncatedError, head and seal stay',
      run(async ({ log }) => {
        await appendPairs(log, 0, 't', 10);
        await log.append(1, entries('u', 0, 4));
        await log.seal(0);
        await log.truncate(0, 6);
        expect(await log.read(0, 6, 100)).toEqual(window(6, 4));
        expect(await log.read(0, 7, 2)).toEqual(window(7, 2));
        for (const from of [0, 5]) {
          const error = await log.read(0, from, 3).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(SourceLogTruncatedError);
          expect(error).toMatchObject({ partition: 0, from, retainedFrom: 6 });
        }
        expect(await log.head(0)).toBe(10);
        expect(await log.isSealed(0)).toBe(true);
        // Other partitions are untouched; a lower or equal cut is a no-op.
        expect(await readAll(log, 1)).toEqual(entries('u', 0, 4).map((e, offset) => ({ offset, event: e.event })));
        await log.truncate(0, 3);
        await log.truncate(0, 6);
        expect(await log.read(0, 6, 100)).toEqual(window(6, 4));
        // Appends go on at the head; a truncated id is still a duplicate within its window.
        expect(await log.append(0, [...entries('t', 2, 1), ...entries('t', 10, 2)])).toEqual({ appended: 2, duplicates: 1, head: 12 });
        expect(await log.read(0, 6, 100)).toEqual(window(6, 6));
      }),
    );

    it(
      'an id stays deduplicated until its dedup window has passed, then appends again',
      run(async ({ log, clock }) => {
        await log.append(0, entries('w', 0, 3));
        clock.advance(CONTRACT_DEDUP_WINDOW_MS / 2);
        await log.append(0, entries('w', 3, 2));
        clock.advance(CONTRACT_DEDUP_WINDOW_MS / 2 - 1);
        await log.truncate(0, 5);
        // One millisecond before the first append's window ends: every id is still a duplicate.
        expect(await log.append(0, entries('w', 0, 5))).toEqual({ appended: 0, duplicates: 5, head: 5 });
        clock.advance(1);
        await log.truncate(0, 5);
        // w-0..w-2 expired, w-3 and w-4 (appended half a window later) not yet.
        expect(await log.append(0, entries('w', 0, 5))).toEqual({ appended: 3, duplicates: 2, head: 8 });
        expect(await log.read(0, 5, 100)).toEqual(entries('w', 0, 3).map((e, i) => ({ offset: 5 + i, event: e.event })));
        // Appended again: deduplicated for a new window.
        clock.advance(CONTRACT_DEDUP_WINDOW_MS / 2);
        await log.truncate(0, 5);
        expect(await log.append(0, entries('w', 0, 5))).toEqual({ appended: 2, duplicates: 3, head: 10 });
      }),
    );

    itWhen(impl.capabilities.reopen)(
      'a truncation survives a reopen',
      run(async ({ log }, reopen) => {
        await appendPairs(log, 0, 't', 10);
        await log.truncate(0, 4);
        const { log: reopened } = await reopen();
        expect(await reopened.read(0, 4, 100)).toEqual(window(4, 6));
        await expect(reopened.read(0, 0, 10)).rejects.toBeInstanceOf(SourceLogTruncatedError);
        expect(await reopened.append(0, entries('t', 0, 11))).toEqual({ appended: 1, duplicates: 10, head: 11 });
      }),
    );
  });
});
