import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CheckpointConfig } from '../../shared/core/config.js';
import type { ChannelMessage } from '../../shared/core/messages.js';
import type { AlignmentState } from '../../shared/core/ports.js';
import { onChannelMessage, onTimePassing, type AlignmentEffect } from '../../shared/core/protocol/alignment.js';

type Config = Pick<CheckpointConfig, 'mode' | 'alignment' | 'alignmentTimeoutMs'>;
const ALIGNED: Config = { mode: 'exactly-once', alignment: 'aligned', alignmentTimeoutMs: 0 };
const UNALIGNED: Config = { mode: 'exactly-once', alignment: 'unaligned', alignmentTimeoutMs: 0 };
const inputs = ['a#0', 'b#0'];

let seq = 0;
const data = (from: string, ...values: number[]): ChannelMessage => ({ type: 'data', gen: 1, from, to: 'x#0', seq: ++seq, records: values.map((v) => ({ v, o: `${from}:${v}` })) });
const barrier = (from: string, checkpointId: number): ChannelMessage => ({ type: 'barrier', gen: 1, from, to: 'x#0', seq: ++seq, checkpointId });
const finalBarrier = (from: string, checkpointId: number): ChannelMessage => ({ ...barrier(from, checkpointId), final: true });

/** Runs messages through the pure alignment logic like the step does (released messages go first). */
function run(messages: ChannelMessage[], config: Config, now = 0): { kinds: string[]; processed: number[]; channelState: number[]; alignment: AlignmentState | undefined } {
  let alignment: AlignmentState | undefined;
  const kinds: string[] = [];
  const processed: number[] = [];
  const channelState: number[] = [];
  const work = [...messages];
  while (work.length > 0) {
    const message = work.shift() as ChannelMessage;
    const decision = onChannelMessage(alignment, message, { inputs, config, now });
    alignment = decision.alignment;
    for (const effect of decision.effects) {
      kinds.push(describeEffect(effect));
      if (effect.kind === 'process') {
        const values = (effect.message.records ?? []).map((r) => r.v as number);
        processed.push(...values);
        if (effect.recordAsChannelState) channelState.push(...values);
      }
      if (effect.kind === 'release') work.unshift(...effect.messages);
    }
  }
  return { kinds, processed, channelState, alignment };
}

function describeEffect(effect: AlignmentEffect): string {
  switch (effect.kind) {
    case 'process':
      return `process ${(effect.message.records ?? []).map((r) => String(r.v)).join(',')}${effect.recordAsChannelState ? ' (channel state)' : ''}`;
    case 'hold':
      return `hold ${effect.message.type}`;
    case 'snapshot':
      return `snapshot ${effect.checkpointId}${effect.unaligned ? ' unaligned' : ''}${effect.final ? ' final' : ''}`;
    case 'ack':
      return `ack ${effect.checkpointId}`;
    case 'release':
      return `release ${effect.messages.length}`;
    case 'drop-stale-barrier':
      return `drop barrier ${effect.checkpointId}`;
  }
}

describe('barrier alignment', () => {
  it('aligned: records behind the first barrier wait until the last barrier, then follow the snapshot', () => {
    const result = run([data('a#0', 1), barrier('a#0', 1), data('a#0', 2), data('b#0', 3), barrier('b#0', 1)], ALIGNED);
    expect(result.kinds).toEqual(['process 1', 'hold data', 'process 3', 'snapshot 1', 'ack 1', 'release 1', 'process 2']);
    expect(result.alignment).toBeUndefined();
  });

  it('unaligned: the first barrier snapshots at once; records overtaken on the other channel become channel state', () => {
    const result = run([barrier('a#0', 1), data('a#0', 2), data('b#0', 3), barrier('b#0', 1), data('b#0', 4)], UNALIGNED);
    expect(result.kinds).toEqual(['snapshot 1 unaligned', 'process 2', 'process 3 (channel state)', 'ack 1', 'process 4']);
    expect(result.channelState).toEqual([3]);
  });

  it('aligned with a timeout switches to unaligned once the alignment outlives it, releasing what it held', () => {
    const config: Config = { mode: 'exactly-once', alignment: 'aligned-with-timeout', alignmentTimeoutMs: 10 };
    const first = onChannelMessage(undefined, barrier('a#0', 1), { inputs, config, now: 0 });
    const held = onChannelMessage(first.alignment, data('a#0', 2), { inputs, config, now: 5 });
    expect(onTimePassing(held.alignment, { inputs, config, now: 9 }).effects).toEqual([]);
    const switched = onTimePassing(held.alignment, { inputs, config, now: 10 });
    expect(switched.effects.map(describeEffect)).toEqual(['snapshot 1 unaligned', 'release 1']);
    expect(switched.alignment?.phase).toBe('unaligned');
    const inFlight = onChannelMessage(switched.alignment, data('b#0', 3), { inputs, config, now: 11 });
    expect(inFlight.effects.map(describeEffect)).toEqual(['process 3 (channel state)']);
  });

  it('the final checkpoint is aligned even when unaligned is configured: no record of it is left to the epoch after it', () => {
    // Unaligned, record 3 would be channel state and its output would land in epoch 2, which no checkpoint commits.
    const result = run([finalBarrier('a#0', 1), data('b#0', 3), finalBarrier('b#0', 1)], UNALIGNED);
    expect(result.kinds).toEqual(['process 3', 'snapshot 1 final', 'ack 1']);
    expect(result.channelState).toEqual([]);
  });

  it('the final checkpoint never times out to unaligned', () => {
    const config: Config = { mode: 'exactly-once', alignment: 'aligned-with-timeout', alignmentTimeoutMs: 10 };
    const first = onChannelMessage(undefined, finalBarrier('a#0', 1), { inputs, config, now: 0 });
    expect(first.alignment?.final).toBe(true);
    expect(onTimePassing(first.alignment, { inputs, config, now: 1_000 })).toEqual({ alignment: first.alignment, effects: [] });
    const single = onChannelMessage(undefined, finalBarrier('a#0', 2), { inputs: ['a#0'], config: UNALIGNED, now: 0 });
    expect(single.effects.map(describeEffect)).toEqual(['snapshot 2 final', 'ack 2']);
  });

  it('at-least-once: nothing is held; the snapshot comes with the last barrier', () => {
    const result = run([barrier('a#0', 1), data('a#0', 2), barrier('b#0', 1)], { ...ALIGNED, mode: 'at-least-once' });
    expect(result.kinds).toEqual(['process 2', 'snapshot 1', 'ack 1']);
  });

  it("the next checkpoint's barrier on an already-barriered channel waits behind the held data", () => {
    const result = run([barrier('a#0', 1), data('a#0', 2), barrier('a#0', 2), data('a#0', 3), barrier('b#0', 1), barrier('b#0', 2)], ALIGNED);
    expect(result.kinds).toEqual([
      'hold data',
      'hold barrier',
      'hold data',
      'snapshot 1',
      'ack 1',
      'release 3',
      'process 2',
      'hold data', // 3 follows barrier 2 on its channel: it waits for snapshot 2
      'snapshot 2',
      'ack 2',
      'release 1',
      'process 3',
    ]);
  });

  it('a single-input instance snapshots at its barrier without aligning', () => {
    const decision = onChannelMessage(undefined, barrier('a#0', 4), { inputs: ['a#0'], config: ALIGNED, now: 0 });
    expect(decision.effects.map(describeEffect)).toEqual(['snapshot 4', 'ack 4']);
  });

  // Property: however the two channels interleave, exactly-once alignment processes every
  // record once, and a record is before snapshot N iff it is before barrier N on its channel.
  it('property: aligned or unaligned, every record is processed once and the snapshot cut matches the barriers', () => {
    const channel = (from: string) => fc.tuple(fc.nat(5), fc.nat(5)).map(([pre, post]) => ({ from, pre, post }));
    fc.assert(
      fc.property(channel('a#0'), channel('b#0'), fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }), fc.constantFrom(ALIGNED, UNALIGNED), (a, b, picks, config) => {
        const streams = [a, b].map(({ from, pre, post }, c) => [
          ...Array.from({ length: pre }, (_, i) => data(from, c * 100 + i)),
          barrier(from, 1),
          ...Array.from({ length: post }, (_, i) => data(from, c * 100 + 50 + i)),
        ]);
        const merged: ChannelMessage[] = [];
        let pick = 0;
        while (streams.some((s) => s.length > 0)) {
          const from = streams[0]?.length === 0 ? 1 : streams[1]?.length === 0 ? 0 : picks[pick++ % picks.length] ? 1 : 0;
          merged.push(streams[from]?.shift() as ChannelMessage);
        }
        const result = run(merged, config);
        const all = [a, b].flatMap(({ pre, post }, c) => [...Array.from({ length: pre }, (_, i) => c * 100 + i), ...Array.from({ length: post }, (_, i) => c * 100 + 50 + i)]);
        expect([...result.processed].sort((x, y) => x - y)).toEqual(all.sort((x, y) => x - y));
        const snapshotAt = result.kinds.indexOf(config.alignment === 'unaligned' ? 'snapshot 1 unaligned' : 'snapshot 1');
        expect(snapshotAt).toBeGreaterThanOrEqual(0);
        expect(result.kinds).toContain('ack 1');
        // Aligned: before the snapshot exactly the pre-barrier records. Unaligned: pre-barrier
        // records after the snapshot are exactly the channel state.
        const before = result.kinds.slice(0, snapshotAt).filter((k) => k.startsWith('process')).length;
        const preRecords = a.pre + b.pre;
        if (config.alignment === 'aligned') {
          const beforeValues = result.processed.slice(0, before);
          expect(beforeValues.every((v) => v % 100 < 50)).toBe(true);
          expect(beforeValues).toHaveLength(preRecords);
        } else {
          expect(result.channelState.length).toBe(preRecords - result.processed.slice(0, before).length);
        }
      }),
      { numRuns: 300 },
    );
  });
});
