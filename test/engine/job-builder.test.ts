import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { JobDefinitionError } from '../../shared/core/errors.js';
import { instanceForKeyGroup, keyGroupOf, keyGroupRange } from '../../shared/core/hashing.js';
import { job } from '../../shared/core/job.js';
import { Topology } from '../../shared/core/topology.js';

const schema = z.object({ k: z.string(), n: z.number() });

describe('job builder', () => {
  it('chains stateless operators into the vertex before them and cuts a vertex at keyBy', () => {
    const j = job('demo');
    j.source('in', { schema, partitions: 2 })
      .map('double', (e) => ({ ...e, n: e.n * 2 }))
      .filter('positive', (e) => e.n > 0)
      .keyBy((e) => e.k)
      .reduce('sum', (a, b) => ({ k: a.k, n: a.n + b.n }), { parallelism: 3 })
      .map('format', (e) => `${e.k}=${e.n}`)
      .sink('out');
    const graph = j.build();
    expect(graph.vertices.map((v) => [v.id, v.parallelism, v.chain.map((c) => c.uid), v.sink?.uid])).toEqual([
      ['in', 2, ['double', 'positive'], undefined],
      ['sum', 3, ['format'], 'out'],
    ]);
    expect(graph.edges.map((e) => [e.from, e.to, e.kind])).toEqual([['in', 'sum', 'hash']]);
    const topology = new Topology(graph);
    expect(topology.inputsOf(graph.vertices[1] as never, 0)).toEqual(['in#0', 'in#1']);
    expect(topology.allInstances()).toEqual(['in#0', 'in#1', 'sum#0', 'sum#1', 'sum#2']);
  });

  it('rejects what cannot run, with the reason', () => {
    const reused = job('demo');
    const stream = reused.source('in', { schema });
    expect(() => stream.map('in', (e) => e)).toThrow(new JobDefinitionError("operator uid 'in' is used twice"));
    expect(() => job('demo').build()).toThrow(new JobDefinitionError("job 'demo' has no source"));
    const noSink = job('demo');
    noSink.source('in', { schema }).map('m', (e) => e);
    expect(() => noSink.build()).toThrow(new JobDefinitionError("stream ending at 'in' has no sink; end it with .sink(...)"));
    expect(() => job('demo').source('in', { schema }).sink('out', { mode: 'idempotent' })).toThrow(new JobDefinitionError("idempotent sink 'out' needs a deterministic key function"));
    expect(() => job('Bad Name')).toThrow(JobDefinitionError);
    expect(() => job('demo').source('in', { schema, partitions: 0 })).toThrow(new JobDefinitionError("parallelism of 'in' must be in 1..128, got 0"));
  });

  it('rejects at build time what used to fail per record or be ignored: a second source, an event-time window without event time', () => {
    const two = job('demo');
    two.source('a', { schema }).sink('out-a');
    two.source('b', { schema }).sink('out-b');
    expect(() => two.build()).toThrow(new JobDefinitionError("job 'demo' has 2 sources (a, b); a job has exactly one source"));
    const untimed = job('demo');
    untimed
      .source('in', { schema })
      .keyBy((e) => e.k)
      .window({ sizeMs: 1000, time: 'event' })
      .count('per-key')
      .sink('out');
    expect(() => untimed.build()).toThrow(new JobDefinitionError("event-time window 'per-key' needs event time: give the source 'in' an eventTime function"));
    const timed = job('demo');
    timed
      .source('in', { schema, eventTime: (e) => e.n })
      .keyBy((e) => e.k)
      .window({ sizeMs: 1000, time: 'event' })
      .count('per-key')
      .sink('out');
    expect(timed.build().vertices.map((v) => v.id)).toEqual(['in', 'per-key']);
  });

  it('key groups follow Flink: contiguous ranges per instance covering every group once', () => {
    const maxParallelism = 128;
    for (const parallelism of [1, 3, 7, 128]) {
      const owners: number[] = [];
      for (let i = 0; i < parallelism; i++) {
        const { start, end } = keyGroupRange(i, parallelism, maxParallelism);
        for (let g = start; g <= end; g++) owners[g] = i;
      }
      expect(owners).toHaveLength(maxParallelism);
      for (let g = 0; g < maxParallelism; g++) expect(instanceForKeyGroup(g, parallelism, maxParallelism)).toBe(owners[g]);
    }
    expect(keyGroupOf('account-42', 128)).toBe(keyGroupOf('account-42', 128));
  });
});
