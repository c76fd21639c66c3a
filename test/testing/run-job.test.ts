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
  const events = [
    { user: 'a', amount: 5 },
    { user: 'b', amount: 2 },
    '{"user": "a", "amount": ',
    { user: 'a', amount: 'x' },
    { user: 'a', amount: 3 },
    { user: 'b', amount: 1 },
  ];

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
