import { describe, expect, it } from 'vitest';
import { examples } from '../../examples/index.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';

/** The host loop's progress deadline (shared/core/job-host.ts), on the embedded runtime. */
describe('run({ stallMs }): a deadline that follows progress, not wall time', () => {
  const example = examples['word-count'];
  if (!example) throw new Error('word-count example missing');

  it('ends a run that makes no progress (no input, no checkpoint to take) once stallMs passes, the job still RUNNING', async () => {
    const runtime = await EmbeddedRuntime.open({ job: example.build(), clock: 'real', checkpoint: { trigger: 'manual' } });
    try {
      const started = Date.now();
      const job = await runtime.run({ stallMs: 300 });
      expect(job.status).toBe('RUNNING');
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
      expect(runtime.counters.records).toBe(0);
    } finally {
      runtime.close();
    }
  });

  it('lets a run that keeps progressing go on to the end', async () => {
    const events = example.generate(400, 5);
    const runtime = await EmbeddedRuntime.open({ job: example.build(), clock: 'real', checkpoint: { intervalMs: 20 } });
    try {
      runtime.push(events.map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
      runtime.closeInput();
      const job = await runtime.run({ stallMs: 5_000 });
      expect(job.status).toBe('FINISHED');
      expect(example.canonical(await runtime.results(example.sink))).toEqual(example.oracle(events.map((e) => e.event)));
    } finally {
      runtime.close();
    }
  });
});
