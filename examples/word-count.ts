import { z } from 'zod';
import { job } from 'cairn';
import { byJson, prng, type Example } from './types.js';

const Line = z.object({ line: z.string().max(10_000) });
type Line = z.infer<typeof Line>;
type Count = { word: string; count: number };

const WORDS = ['stream', 'state', 'barrier', 'checkpoint', 'lambda', 'queue', 'epoch', 'replay', 'cairn', 'exactly', 'once', 'flink'];

/** Word count: lines -> words -> running count per word, one update per occurrence. */
export const wordCount: Example<Line, Count> = {
  name: 'word-count',
  description: 'running count per word over lines of text',
  sink: 'counts',
  build() {
    const j = job('word-count');
    j.source('lines', { schema: Line, partitions: 2 })
      .flatMap('split', (e) =>
        e.line
          .toLowerCase()
          .split(/[^a-z]+/)
          .filter((w) => w.length > 0),
      )
      .keyBy((word) => word)
      .process<Count>(
        'count',
        (word, ctx) => {
          const count = ctx.state.value<number>('count');
          const next = (count.get() ?? 0) + 1;
          count.set(next);
          ctx.emit({ word, count: next });
        },
        { parallelism: 2 },
      )
      .sink('counts');
    return j.build();
  },
  generate(count, seed) {
    const random = prng(seed);
    return Array.from({ length: count }, (_, i) => {
      const n = 1 + Math.floor(random() * 6);
      const words = Array.from({ length: n }, () => WORDS[Math.floor(random() * WORDS.length)] as string);
      return { id: `line-${seed}-${i}`, event: { line: words.join(' ') } };
    });
  },
  oracle(events) {
    const counts = new Map<string, number>();
    const out: Count[] = [];
    for (const e of events) {
      for (const word of e.line
        .toLowerCase()
        .split(/[^a-z]+/)
        .filter((w) => w.length > 0)) {
        const next = (counts.get(word) ?? 0) + 1;
        counts.set(word, next);
        out.push({ word, count: next });
      }
    }
    return out.sort(byJson);
  },
  canonical: (output) => [...(output as Count[])].sort(byJson),
};

export default wordCount;
