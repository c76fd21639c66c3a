import { describe, expect, it } from 'vitest';
import { BOUNDED_KINDS, byteMonths, DEDUP_MONTHS, ENGINE_KINDS, noKindBytes, storageKindOf } from '../../bench/cost/storage.js';
import { Keys } from '../../shared/aws/adapters/table-layout.js';

/** How bench:cost turns table growth into the storage one event keeps (bench/cost/storage.ts). */
describe('bench:cost storage by kind', () => {
  it('classifies the job table items by what keeps them', () => {
    const kinds = [
      Keys.logDedup(0, 'id-1'),
      Keys.logSegment(1, 7),
      Keys.logHead(0),
      Keys.logTruncation(0),
      Keys.checkpoint(3),
      Keys.ack(3, 'op#0'),
      Keys.job(),
      Keys.instance('op#0'),
      Keys.lateAck(3, 'op#0'),
      Keys.staged('out', 4, 'op#0', 2),
      Keys.item('op', 5, 'k'),
      Keys.change('op', 1, 2, 'op#0', 7),
      Keys.live('op', 'op#0'),
      Keys.sinkBatch('out', '000000000004|op#0'),
      Keys.sinkUpsert('out', 'k'),
      Keys.deadLetter('ingress:1'),
    ].map((k) => storageKindOf(k.pk));
    expect(kinds).toEqual(['dedup', 'log', 'log', 'log', ...Array<string>(6).fill('checkpoints'), 'state', 'state', 'state', 'output', 'output', 'deadLetters']);
  });

  it('keeps dedup items for their 15-day window and a month of what the job itself grows; bounded kinds and shrinking count as nothing', () => {
    expect(DEDUP_MONTHS).toBeCloseTo((15 * 24) / 730, 12);
    const growth = { ...noKindBytes(), dedup: 7_300, log: 500, checkpoints: 40, state: 1_000, output: 2_000, deadLetters: -10 };
    expect(byteMonths(growth, ENGINE_KINDS)).toBeCloseTo(7_300 * DEDUP_MONTHS, 9);
    expect(byteMonths(growth)).toBeCloseTo(7_300 * DEDUP_MONTHS + 1_000 + 2_000, 9);
    expect(byteMonths(growth, BOUNDED_KINDS)).toBe(540);
  });
});
