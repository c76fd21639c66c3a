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

describe('an idle job schedules nothing', () => {
  const example = examples['word-count'];
  if (!example) throw new Error('word-count example missing');

  it('takes no periodic checkpoint while no input arrives, and checkpoints again as soon as some does', async () => {
    const runtime = await EmbeddedRuntime.open({ job: example.build(), clock: 'virtual', checkpoint: { intervalMs: 20 } });
    try {
      const events = example.generate(300, 9);
      const push = (slice: typeof events): void => runtime.push(slice.map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
      const completed = async (): Promise<number> => (await runtime.checkpoints.listCheckpoints()).filter((c) => c.status === 'COMPLETED').length;
      push(events.slice(0, 150));
      // Until a checkpoint has everything ingested so far behind its barriers.
      await runtime.run({ maxTurns: 20_000, until: () => runtime.counters.ingested === 150 && runtime.counters.records > 0 });
      await runtime.run({ maxTurns: 2_000 });
      const quiet = { checkpoints: await completed(), invocations: runtime.counters.invocations, at: runtime.clock.now() };
      // Two virtual seconds more, a hundred intervals: not one checkpoint, not one invocation.
      await runtime.run({ until: () => runtime.clock.now() > quiet.at + 2_000 });
      expect(await completed()).toBe(quiet.checkpoints);
      expect(runtime.counters.invocations).toBe(quiet.invocations);

      push(events.slice(150));
      runtime.closeInput();
      expect((await runtime.run({ maxTurns: 100_000 })).status).toBe('FINISHED');
      expect(await completed()).toBeGreaterThan(quiet.checkpoints);
      expect(example.canonical(await runtime.results(example.sink))).toEqual(example.oracle(events.map((e) => e.event)));
    } finally {
      runtime.close();
    }
  });
});
