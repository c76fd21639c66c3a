/**
 * A producer that knows nothing of Cairn: the plain AWS SDK v3 SQSClient pushes 10,000 events
 * into the job's ingress queue (SendMessageBatch), and the sink ends with exactly the oracle's
 * result. Prints the time and the AWS requests per 1,000 events by service.
 */
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { expect, it } from 'vitest';
import { examples } from '../../examples/index.js';
import { cloudEndpoint, credentials, localJob, perThousand, region } from './helpers.js';

const EVENTS = Number(process.env.CAIRN_INGRESS_EVENTS ?? 10_000);

it(`${EVENTS} events pushed with a plain SQSClient end in the sink exactly as the oracle says`, async () => {
  const example = examples['word-count'];
  if (!example) throw new Error('word-count example missing');
  const events = example.generate(EVENTS, 7);
  const started = Date.now();
  const job = await localJob({ example, ingress: 'standard', checkpoint: { intervalMs: 1000 }, ingestBatchSize: 100, ingestConcurrency: 2, visibilityTimeoutSeconds: 2 });
  const producer = new SQSClient({ endpoint: cloudEndpoint(), region, credentials });
  try {
    job.start();
    const url = job.ingressQueueUrl;
    let sent = 0;
    const sendBatch = async (offset: number): Promise<void> => {
      let entries = events.slice(offset, offset + 10).map((e, i) => ({ Id: String(i), MessageBody: JSON.stringify(e.event) }));
      while (entries.length > 0) {
        const out = await producer.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }));
        const failed = new Set((out.Failed ?? []).map((f) => f.Id));
        sent += entries.length - failed.size;
        entries = entries.filter((e) => failed.has(e.Id));
      }
    };
    for (let offset = 0; offset < events.length; offset += 80) {
      await Promise.all(
        Array.from({ length: 8 }, (_, i) => offset + i * 10)
          .filter((o) => o < events.length)
          .map(sendBatch),
      );
    }
    expect(sent).toBe(EVENTS);
    const pushedAt = Date.now();
    job.closeInput();
    const record = await job.run({ stallMs: 30_000 });
    const elapsed = Date.now() - started;
    const context = `counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
    expect(record.status, context).toBe('FINISHED');
    expect(job.counters.ingested, context).toBe(EVENTS);
    expect(example.canonical(await job.results(example.sink)), context).toEqual(example.oracle(events.map((e) => e.event)));
    const completed = (await job.checkpoints.listCheckpoints()).filter((c) => c.status === 'COMPLETED').length;
    console.log(
      `ingress ${EVENTS} events: pushed in ${pushedAt - started} ms, finished after ${elapsed} ms (${Math.round((EVENTS * 1000) / elapsed)} events/s), ${completed} checkpoints, ` +
        `${job.counters.records} records, ${job.counters.invocations} invocations\n` +
        `  AWS requests per 1,000 events by service: ${JSON.stringify(perThousand(job.requestSnapshot(), EVENTS))}\n` +
        `  functions ${JSON.stringify(perThousand(job.requests.functions.snapshot(), EVENTS))} · coordinator ${JSON.stringify(perThousand(job.requests.coordinator.snapshot(), EVENTS))} · event sources ${JSON.stringify(perThousand(job.requests.eventSources.snapshot(), EVENTS))}\n` +
        `  by operation: ${JSON.stringify(job.requestSnapshot())}`,
    );
  } finally {
    producer.destroy();
    await job.destroy();
  }
});
