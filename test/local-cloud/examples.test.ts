import { describe, expect, it } from 'vitest';
import { examples } from '../../examples/index.js';
import { localJob, perThousand } from './helpers.js';

const EVENTS = Number(process.env.CAIRN_LOCAL_EVENTS ?? 300);

describe.each(Object.values(examples))('example $name on the local cloud', (example) => {
  it(`ends with exactly the oracle output (${EVENTS} events, checkpoints mid-stream)`, async () => {
    const events = example.generate(EVENTS, 11);
    const started = Date.now();
    const job = await localJob({ example, checkpoint: { intervalMs: 300 } });
    try {
      await job.push(events.map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
      job.closeInput();
      const record = await job.run({ stallMs: 30_000 });
      const context = `counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
      expect(record.status, context).toBe('FINISHED');
      expect(example.canonical(await job.results(example.sink)), context).toEqual(example.oracle(events.map((e) => e.event)));
      const completed = (await job.checkpoints.listCheckpoints()).filter((c) => c.status === 'COMPLETED');
      expect(completed.at(-1)?.trigger).toBe('final');
      expect(job.counters.stepFailures, context).toBe(0);
      const requests = job.requestSnapshot();
      console.log(
        `${example.name}: ${EVENTS} events in ${Date.now() - started} ms, ${completed.length} checkpoints; AWS requests per 1,000 events by service ${JSON.stringify(perThousand(requests, EVENTS))}; ` +
          `functions ${JSON.stringify(perThousand(job.requests.functions.snapshot(), EVENTS))}, coordinator ${JSON.stringify(perThousand(job.requests.coordinator.snapshot(), EVENTS))}, event sources ${JSON.stringify(perThousand(job.requests.eventSources.snapshot(), EVENTS))}`,
      );
    } finally {
      await job.destroy();
    }
  });
});

describe('ingress batch messages on the local cloud', () => {
  it(`word-count over ${EVENTS} events packed into batch messages, pushed twice, ends with exactly the oracle output`, async () => {
    const example = examples['word-count'];
    if (!example) throw new Error('no word-count example');
    const events = example.generate(EVENTS, 12);
    const job = await localJob({ example, checkpoint: { intervalMs: 300 }, ingress: 'standard' });
    try {
      const raw = events.map((e) => ({ id: e.id, body: JSON.stringify(e.event) }));
      // Small batches (a producer flushing every few events), then the same input again: every batch comes back whole as a duplicate.
      for (let i = 0; i < raw.length; i += 25) await job.push(raw.slice(i, i + 25), undefined, { pack: true });
      for (let i = 0; i < raw.length; i += 25) await job.push(raw.slice(i, i + 25), undefined, { pack: true });
      job.closeInput();
      const record = await job.run({ stallMs: 30_000 });
      const context = `counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
      expect(record.status, context).toBe('FINISHED');
      expect(example.canonical(await job.results(example.sink)), context).toEqual(example.oracle(events.map((e) => e.event)));
      expect({ ingested: job.counters.ingested, duplicates: job.counters.ingestDuplicates }, context).toEqual({ ingested: EVENTS, duplicates: EVENTS });
    } finally {
      await job.destroy();
    }
  });
});
