import { z } from 'zod';
import { job, murmur3 } from 'cairn';
import { byJson, prng, type Example } from './types.js';

const Click = z.object({ user: z.string(), page: z.string(), ts: z.number().int().nonnegative() });
type Click = z.infer<typeof Click>;
type WindowCount = { key: string; start: number; end: number; count: number };

const WINDOW_MS = 10_000;
const OUT_OF_ORDERNESS_MS = 2_000;

/** Clicks per page in tumbling 10 s event-time windows, with 2 s of allowed out-of-orderness. */
export const windowedCount: Example<Click, WindowCount> = {
  name: 'windowed-count',
  description: 'clicks per page in tumbling 10 s event-time windows',
  sink: 'page-counts',
  build() {
    const j = job('windowed-count');
    j.source('clicks', {
      schema: Click,
      partitions: 2,
      partitionKey: (c) => c.user,
      eventTime: (c) => c.ts,
      maxOutOfOrdernessMs: OUT_OF_ORDERNESS_MS,
    })
      .keyBy((c) => c.page)
      .window({ sizeMs: WINDOW_MS, time: 'event' })
      .count('clicks-per-page', { parallelism: 2 })
      .sink('page-counts');
    return j.build();
  },
  generate(count, seed, options = {}) {
    const random = prng(seed);
    // One clock for everyone, moving forward (on average 45 ms an event, or as fast as the events
    // are sent); each event is behind it by less than half the allowed out-of-orderness. A
    // partition's watermark trails its newest event (never ahead of the clock) by the whole
    // bound, so no event is late.
    const step = options.eventsPerSecond ? 2_000 / options.eventsPerSecond : 90;
    let clock = 0;
    return Array.from({ length: count }, (_, i) => {
      const user = `user-${Math.floor(random() * 8)}`;
      clock += Math.floor(random() * step);
      const ts = Math.max(0, clock - Math.floor(random() * (OUT_OF_ORDERNESS_MS / 2)));
      return { id: `click-${seed}-${i}`, event: { user, page: `/p/${Math.floor(random() * 5)}`, ts } };
    });
  },
  oracle(events) {
    // Replays the source rule: per partition, an event at or behind the watermark is late.
    const counts = new Map<string, WindowCount>();
    const maxSeen = new Map<number, number>();
    for (const c of events) {
      const partition = partitionOfUser(c.user);
      const watermark = (maxSeen.get(partition) ?? -Infinity) - OUT_OF_ORDERNESS_MS - 1;
      if (c.ts <= watermark) continue;
      maxSeen.set(partition, Math.max(maxSeen.get(partition) ?? -Infinity, c.ts));
      const start = c.ts - (c.ts % WINDOW_MS);
      const id = `${c.page}|${start}`;
      const current = counts.get(id) ?? { key: c.page, start, end: start + WINDOW_MS, count: 0 };
      counts.set(id, { ...current, count: current.count + 1 });
    }
    return [...counts.values()].sort(byJson);
  },
  canonical: (output) => [...(output as WindowCount[])].sort(byJson),
};

function partitionOfUser(user: string): number {
  return murmur3(user) % 2;
}

export default windowedCount;
