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
