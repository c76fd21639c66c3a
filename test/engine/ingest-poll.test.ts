import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseCheckpointConfig, parseRuntimeLimits } from '../../shared/core/config.js';
import { ingestBatch, ingestPollsSources } from '../../shared/core/ingest.js';
import { job } from '../../shared/core/job.js';
import type { OutboundMessage } from '../../shared/core/ports.js';
import { Topology } from '../../shared/core/topology.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedDeadLetterStore, EmbeddedSourceLog } from '../../shared/embedded/stores.js';

/** Ingest during a recovery: events are appended, but no source is polled in a generation it may not be restored into yet. */
describe('ingest polls the sources only while the job runs', () => {
  const j = job('poll');
  j.source('in', { schema: z.object({ k: z.string() }), partitions: 2 }).sink('out');
  const topology = new Topology(j.build());
  const found = topology.sources()[0];
  if (!found) throw new Error('no source');
  const source = found;

  async function ingest(running: boolean | undefined): Promise<{ sent: OutboundMessage[]; heads: number[] }> {
    const db = EmbeddedDb.memory();
    const log = new EmbeddedSourceLog(db);
    const sent: OutboundMessage[] = [];
    const transport = { send: (messages: readonly OutboundMessage[]) => Promise.resolve(void sent.push(...messages)) };
    const events = Array.from({ length: 6 }, (_, i) => ({ id: `e${i}`, body: JSON.stringify({ k: `k${i}` }) }));
    const deps = { source, generation: 4, log, deadLetters: new EmbeddedDeadLetterStore(db), transport, limits: parseRuntimeLimits({}), clock: { now: () => 1 } };
    await ingestBatch(running === undefined ? deps : { ...deps, running }, events);
    return { sent, heads: [await log.head(0), await log.head(1)] };
  }

  it('running: appends, then polls each touched partition in the job generation', async () => {
    const { sent, heads } = await ingest(true);
    expect(heads.reduce((a, b) => a + b, 0)).toBe(6);
    expect(sent.map((m) => [m.queue, m.groupId, (m.body as { type: string; gen: number }).type, (m.body as { gen: number }).gen]).sort()).toEqual([
      ['in', 'in#0', 'poll', 4],
      ['in', 'in#1', 'poll', 4],
    ]);
    expect((await ingest(undefined)).sent).toHaveLength(2);
  });

  it('recovering: appends the same events and sends nothing (the recovery polls every source when it finishes)', async () => {
    const { sent, heads } = await ingest(false);
    expect(heads.reduce((a, b) => a + b, 0)).toBe(6);
    expect(sent).toEqual([]);
  });
});

/** RuntimeLimits `sourceReads`: whether ingest polls after an append, or the sources read at checkpoint barriers only. */
describe('ingestPollsSources', () => {
  const build = (sinkMode: 'transactional' | 'idempotent') => {
    const j = job('reads');
    j.source('in', { schema: z.object({ k: z.string() }), partitions: 2 }).sink('out', sinkMode === 'idempotent' ? { mode: 'idempotent', key: (e) => e.k } : {});
    return new Topology(j.build());
  };
  const decide = (sinkMode: 'transactional' | 'idempotent', checkpoint: Parameters<typeof parseCheckpointConfig>[0], sourceReads?: 'auto' | 'append' | 'checkpoint') =>
    ingestPollsSources(build(sinkMode), parseCheckpointConfig(checkpoint), parseRuntimeLimits(sourceReads ? { sourceReads } : {}));

  it('auto: reads at barriers with a time or continuous trigger before transactional sinks only', () => {
    expect(decide('transactional', {})).toBe(false);
    expect(decide('transactional', { trigger: 'continuous' })).toBe(false);
    expect(decide('transactional', { intervalMs: 60_000 })).toBe(false);
    // Output an idempotent sink shows at once, and triggers that need no new input to fire, keep the polls.
    expect(decide('idempotent', {})).toBe(true);
    expect(decide('transactional', { trigger: 'count' })).toBe(true);
    expect(decide('transactional', { trigger: 'manual' })).toBe(true);
    expect(decide('transactional', { enabled: false })).toBe(true);
  });

  it('append and checkpoint as asked; checkpoint without a self-firing trigger is refused', () => {
    expect(decide('transactional', {}, 'append')).toBe(true);
    expect(decide('idempotent', {}, 'checkpoint')).toBe(false);
    expect(() => decide('transactional', { trigger: 'manual' }, 'checkpoint')).toThrow(
      "sourceReads 'checkpoint' needs checkpoints taken by a time or continuous trigger (checkpoint.enabled true, trigger 'manual')",
    );
  });

  it('without polls, ingest appends and sends nothing', async () => {
    const topology = build('transactional');
    const source = topology.sources()[0];
    if (!source) throw new Error('no source');
    const db = EmbeddedDb.memory();
    const log = new EmbeddedSourceLog(db);
    const sent: OutboundMessage[] = [];
    const transport = { send: (messages: readonly OutboundMessage[]) => Promise.resolve(void sent.push(...messages)) };
    const events = Array.from({ length: 6 }, (_, i) => ({ id: `e${i}`, body: JSON.stringify({ k: `k${i}` }) }));
    const outcome = await ingestBatch(
      { source, generation: 1, pollSources: false, log, deadLetters: new EmbeddedDeadLetterStore(db), transport, limits: parseRuntimeLimits({}), clock: { now: () => 1 } },
      events,
    );
    expect(outcome).toEqual({ appended: 6, duplicates: 0, deadLettered: 0, failedIds: [] });
    expect(sent).toEqual([]);
  });
});
