import { describe, expect, it } from 'vitest';
import { examples } from '../../examples/index.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';

describe.each(Object.values(examples))('example $name on the embedded runtime', (example) => {
  it('ends with exactly the oracle output, with checkpoints taken mid-stream', async () => {
    const events = example.generate(1500, 11);
    const runtime = await EmbeddedRuntime.open({ job: example.build(), clock: 'virtual', checkpoint: { intervalMs: 5, ...example.checkpoint } });
    try {
      runtime.push(events.map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
      runtime.closeInput();
      const job = await runtime.run({ maxTurns: 100_000 });
      expect(job.status).toBe('FINISHED');
      expect(example.canonical(await runtime.results(example.sink))).toEqual(example.oracle(events.map((e) => e.event)));
      const completed = (await runtime.checkpoints.listCheckpoints()).filter((c) => c.status === 'COMPLETED');
      expect(completed.length).toBeGreaterThan(2);
      expect(completed.at(-1)?.trigger).toBe('final');
      expect(runtime.counters.stepFailures).toBe(0);
      // Every example's demo input is on time: nothing late, no dead letter.
      expect(runtime.counters.lateDropped).toBe(0);
      expect(await runtime.deadLetters()).toEqual([]);
    } finally {
      runtime.close();
    }
  });
});
