import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { examples } from '../../examples/index.js';
import { job } from '../../shared/core/job.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';

describe('time-driven work (the runtime ticks instances that wait on time)', () => {
  it('output buffered under a flush timeout is packed into fewer messages and still ends exactly as the oracle', async () => {
    const example = examples['word-count'];
    if (!example) throw new Error('word-count example missing');
    const events = example.generate(600, 3);
    const runs = [];
    for (const flushTimeoutMs of [0, 20]) {
      const runtime = await EmbeddedRuntime.open({ job: example.build(), clock: 'virtual', checkpoint: { intervalMs: 50 }, limits: { flushTimeoutMs, sourceReadBatch: 5 } });
      runtime.push(events.map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
      runtime.closeInput();
      const finished = await runtime.run({ maxTurns: 100_000 });
      expect(finished.status).toBe('FINISHED');
      expect(example.canonical(await runtime.results(example.sink))).toEqual(example.oracle(events.map((e) => e.event)));
      runs.push(runtime.counters.invocations);
      runtime.close();
    }
    const [unbuffered, buffered] = runs as [number, number];
    expect(buffered).toBeLessThan(unbuffered);
  });

  it('processing-time windows fire on ticks without further input, and count every event once', async () => {
    const j = job('ptime');
    j.source('in', { schema: z.object({ k: z.string() }), partitions: 1 })
      .keyBy((e) => e.k)
      .window({ sizeMs: 40, time: 'processing' })
      .count('per-key', { parallelism: 2 })
      .sink('out');
    const runtime = await EmbeddedRuntime.open({ job: j.build(), clock: 'virtual', checkpoint: { intervalMs: 10 } });
    try {
      runtime.push(Array.from({ length: 300 }, (_, i) => ({ id: `e${i}`, body: JSON.stringify({ k: `k${i % 3}` }) })));
      // Run until the input is read and the windows have closed by time alone, then end the input.
      await runtime.run({ maxTurns: 2_000 });
      const beforeClose = (await runtime.results('out')) as Array<{ key: string; count: number }>;
      expect(beforeClose.reduce((n, w) => n + w.count, 0)).toBe(300);
      runtime.closeInput();
      expect((await runtime.run({ maxTurns: 100_000 })).status).toBe('FINISHED');
      const windows = (await runtime.results('out')) as Array<{ key: string; count: number }>;
      expect(windows.reduce((n, w) => n + w.count, 0)).toBe(300);
      expect(new Set(windows.map((w) => w.key))).toEqual(new Set(['k0', 'k1', 'k2']));
    } finally {
      runtime.close();
    }
  });
});
