import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineJob, sinksOf } from '../../shared/core/definition.js';
import { JobDefinitionError } from '../../shared/core/errors.js';
import { runJob } from '../../shared/testing/index.js';
import { FaultInjector, planFor } from '../faults/fault-schedule.js';
import totals from '../fixtures/totals-job.js';

const byUser = (a: unknown, b: unknown): number => JSON.stringify(a).localeCompare(JSON.stringify(b));

describe('defineJob', () => {
  it('builds the graph at definition time: a broken job fails there, naming the operator', () => {
    expect(() => defineJob({ name: 'Bad Name', build: () => undefined })).toThrow(
      new JobDefinitionError("job name 'Bad Name' must be 1-63 lowercase letters, digits and dashes, starting with a letter or digit"),
    );
    expect(() => defineJob({ name: 'no-sink', build: (j) => void j.source('in', { schema: z.object({ x: z.number() }) }).map('double', (x) => x) })).toThrow(
      new JobDefinitionError("stream ending at 'in' has no sink; end it with .sink(...)"),
    );
    expect(totals.name).toBe('totals');
    expect(sinksOf(totals.build())).toEqual(['totals']);
  });
});

describe('cairn/testing runJob', () => {
  const events = [{ user: 'a', amount: 5 }, { user: 'b', amount: 2 }, '{"user": "a", "amount": ', { user: 'a', amount: 'x' }, { user: 'a', amount: 3 }, { user: 'b', amount: 1 }];

  it('runs a job over given events: committed output per sink, bad input as dead letters with reasons', async () => {
    const run = await runJob(totals, events);
    expect(run.status).toBe('FINISHED');
    expect([...(run.output.totals ?? [])].sort(byUser)).toEqual(
      [
        { user: 'a', total: 5 },
        { user: 'a', total: 8 },
        { user: 'b', total: 2 },
        { user: 'b', total: 3 },
      ].sort(byUser),
    );
    expect(run.deadLetters.map((d) => [d.id, d.reason]).sort()).toEqual([
      ['ingress:event:2', 'malformed-json'],
      ['ingress:event:3', 'schema-violation'],
    ]);
  });

  it('late records are never dropped silently: each is a dead letter with reason late, where it was decided and why', async () => {
    const clicks = defineJob({
      name: 'clicks',
      build: (j) =>
        j
          .source('clicks', { schema: z.object({ page: z.string(), ts: z.number() }), partitions: 1, eventTime: (c) => c.ts, maxOutOfOrdernessMs: 100 })
          .keyBy((c) => c.page)
          .window({ sizeMs: 1000, time: 'event' })
          .count('per-page')
          .sink('counts'),
    });
    const run = await runJob(clicks, [
      { page: 'a', ts: 100 },
      { page: 'a', ts: 5000 },
      { page: 'a', ts: 4950 },
      { page: 'a', ts: 4000 },
      { page: 'a', ts: 9000 },
    ]);
    expect(run.status).toBe('FINISHED');
    expect(run.deadLetters.map((d) => ({ id: d.id, reason: d.reason, vertex: d.vertex, message: d.message, payload: d.payload }))).toEqual([
      { id: 'clicks:0:3', reason: 'late', vertex: 'clicks', message: "event time 4000 is at or behind the watermark 4899 of source 'clicks'", payload: '{"page":"a","ts":4000}' },
    ]);
    expect(run.job.status).toBe('FINISHED');
    expect([...(run.output.counts ?? [])].sort(byUser)).toEqual(
      [
        { key: 'a', start: 0, end: 1000, count: 1 },
        { key: 'a', start: 4000, end: 5000, count: 1 },
        { key: 'a', start: 5000, end: 6000, count: 1 },
        { key: 'a', start: 9000, end: 10000, count: 1 },
      ].sort(byUser),
    );
  });

  it('a run with injected faults commits exactly what the fault-free run does', async () => {
    const many = Array.from({ length: 300 }, (_, i) => ({ user: `u${i % 7}`, amount: 1 + (i % 5) }));
    const clean = await runJob(totals, many);
    for (const seed of [1, 2, 3, 4, 5]) {
      const plan = planFor(seed);
      const faulty = await runJob(totals, many, { checkpoint: plan.checkpoint, faults: new FaultInjector(plan).faults(), limits: { visibilityTimeoutMs: 20 } });
      expect(faulty.status, `seed ${seed}`).toBe('FINISHED');
      expect([...(faulty.output.totals ?? [])].sort(byUser), `seed ${seed}`).toEqual([...(clean.output.totals ?? [])].sort(byUser));
    }
  });
});
