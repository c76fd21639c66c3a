import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { job } from '../../shared/core/job.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';

const Reading = z.object({ sensor: z.string(), value: z.number() });

function sumJob(options: { throwOn?: number } = {}) {
  const j = job('sums');
  j.source('readings', { schema: Reading, partitions: 1 })
    .keyBy((r) => r.sensor)
    .reduce('sum', (a, b) => {
      if (b.value === options.throwOn) throw new Error(`cannot add ${b.value}`);
      return { sensor: a.sensor, value: a.value + b.value };
    })
    .sink('out');
  return j.build();
}

async function run(graph: ReturnType<typeof sumJob>, events: { id: string; body: string }[], limits = {}) {
  const runtime = await EmbeddedRuntime.open({ job: graph, clock: 'virtual', checkpoint: { intervalMs: 5 }, limits: { visibilityTimeoutMs: 10, ...limits } });
  try {
    runtime.push(events);
    runtime.closeInput();
    const finished = await runtime.run({ maxTurns: 50_000 });
    return { finished, output: await runtime.results('out'), letters: await runtime.deadLetters(), restarts: finished.restarts.length };
  } finally {
    runtime.close();
  }
}

describe('bad input goes to the dead-letter store with the reason; the job goes on', () => {
  it('malformed JSON, a schema violation and an oversize event at ingest', async () => {
    const events = [
      { id: 'ok-1', body: JSON.stringify({ sensor: 's', value: 1 }) },
      { id: 'bad-json', body: '{"sensor": "s", ' },
      { id: 'bad-schema', body: JSON.stringify({ sensor: 's', value: 'high' }) },
      { id: 'too-big', body: JSON.stringify({ sensor: 's', value: 2, pad: 'x'.repeat(3000) }) },
      { id: 'ok-2', body: JSON.stringify({ sensor: 's', value: 2 }) },
    ];
    const result = await run(sumJob(), events, { maxRecordBytes: 2048 });
    expect(result.finished.status).toBe('FINISHED');
    expect(result.output).toEqual([
      { sensor: 's', value: 1 },
      { sensor: 's', value: 3 },
    ]);
    expect(result.letters.map((l) => [l.id, l.reason, l.message.split('\n')[0]])).toEqual([
      ['ingress:bad-json', 'malformed-json', expect.stringMatching(/^malformed JSON: /)],
      ['ingress:bad-schema', 'schema-violation', 'schema violation: ✖ Invalid input: expected number, received string'],
      ['ingress:too-big', 'oversize-record', 'event of 3033 bytes exceeds the limit of 2048 bytes'],
    ]);
  });

  it('a record an operator always throws on is isolated after retries and dead-lettered; its group moves on', async () => {
    const events = [1, 2, 13, 4].map((value, i) => ({ id: `e${i}`, body: JSON.stringify({ sensor: 's', value }) }));
    const result = await run(sumJob({ throwOn: 13 }), events);
    expect(result.finished.status).toBe('FINISHED');
    expect(result.restarts).toBe(0);
    expect(result.output).toEqual([
      { sensor: 's', value: 1 },
      { sensor: 's', value: 3 },
      { sensor: 's', value: 7 },
    ]);
    expect(result.letters.map((l) => [l.id, l.reason, l.message, l.payload])).toEqual([['sum:0:2', 'operator-error', "operator 'sum' threw: cannot add 13", '{"sensor":"s","value":13}']]);
  });
});
