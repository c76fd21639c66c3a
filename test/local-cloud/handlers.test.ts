/**
 * The Lambda handlers on their own: SQS records in, SQSBatchResponse out, EMF metrics on
 * stdout; and the default `handler` of functions/*.ts, built from environment variables,
 * against the local cloud.
 */
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { examples } from '../../examples/index.js';
import { exampleJob } from '../../functions/lib/example-job.js';
import { createIngestHandler, createOperatorHandler, environmentFrom, HandlerConfigError } from '../../shared/lambda/index.js';
import { EVENT_ID_ATTRIBUTE, eventIdOf } from '../../shared/lambda/ingest-handler.js';
import { withRestOfGroupFailed } from '../../shared/lambda/sqs-records.js';
import { powertools } from '../../shared/lambda/telemetry.js';
import { parseCheckpointConfig, parseRuntimeLimits } from '../../shared/core/config.js';
import { InjectedFault } from '../../shared/core/errors.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import type { OutboundMessage } from '../../shared/core/ports.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedCheckpointStore, EmbeddedDeadLetterStore, EmbeddedSourceLog, EmbeddedStateStore } from '../../shared/embedded/stores.js';
import { cloudEndpoint, localJob } from './helpers.js';

const wordCount = examples['word-count'];
if (!wordCount) throw new Error('word-count example missing');

function record(id: string, body: string, group?: string, receiveCount = 1): SQSRecord {
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: '0',
      SenderId: 'test',
      ApproximateFirstReceiveTimestamp: '0',
      ...(group ? { MessageGroupId: group, MessageDeduplicationId: id } : {}),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:cairn-wc-lines.fifo',
    awsRegion: 'us-east-1',
  };
}

function embedded() {
  const db = EmbeddedDb.memory();
  const sent: OutboundMessage[] = [];
  return {
    db,
    sent,
    state: new EmbeddedStateStore(db),
    log: new EmbeddedSourceLog(db),
    checkpoints: new EmbeddedCheckpointStore(db),
    deadLetters: new EmbeddedDeadLetterStore(db),
    transport: { send: (messages: readonly OutboundMessage[]) => Promise.resolve(void sent.push(...messages)) },
  };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('operator handler', () => {
  it('one failing group reports only its messages; unaddressable messages are dead letters, never failures; metrics go out as EMF', async () => {
    const s = embedded();
    const emf: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      emf.push(String(chunk));
      return true;
    });
    const handler = createOperatorHandler({
      job: wordCount.build(),
      config: parseCheckpointConfig(),
      limits: parseRuntimeLimits(),
      state: s.state,
      log: s.log,
      transport: s.transport,
      deadLetters: s.deadLetters,
      telemetry: powertools('cairn-test-operator'),
      faults: {
        beforeCommit: (instance) => {
          if (instance === 'lines#1') throw new InjectedFault('crash in lines#1');
        },
      },
    });
    await s.log.append(0, [{ id: 'e1', event: { line: 'stream state stream' } }]);
    await s.log.append(1, [{ id: 'e2', event: { line: 'barrier' } }]);
    const event: SQSEvent = {
      Records: [
        record('m1', JSON.stringify({ type: 'poll', gen: 1, to: 'lines#0' }), 'lines#0'),
        record('m2', '{not json', 'lines#0'),
        record('m3', JSON.stringify({ type: 'poll', gen: 1, to: 'lines#1' }), 'lines#1'),
        record('m4', JSON.stringify({ type: 'poll', gen: 1, to: 'lines#9' }), 'lines#9'),
        record('m5', JSON.stringify([1, 2]), 'lines#0'),
      ],
    };
    const response = await handler(event);
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'm3' }] });
    const letters = await s.deadLetters.list();
    expect(letters.map((l) => [l.id, l.reason]).sort()).toEqual([
      ['queue:cairn-wc-lines.fifo:m2', 'malformed-json'],
      ['queue:cairn-wc-lines.fifo:m4', 'unknown-operator'],
      ['queue:cairn-wc-lines.fifo:m5', 'schema-violation'],
    ]);
    // lines#0 read its partition and sent the words on.
    expect(s.sent.some((m) => m.groupId.startsWith('count#'))).toBe(true);
    const blobs = emf.filter((line) => line.includes('"_aws"')).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(blobs).toHaveLength(1);
    const blob = blobs[0] as { _aws: { CloudWatchMetrics: { Namespace: string; Metrics: { Name: string }[] }[] }; Records: number; DeadLetters: number; StepFailures: number; service: string };
    expect(blob._aws.CloudWatchMetrics[0]?.Namespace).toBe('Cairn');
    expect(blob._aws.CloudWatchMetrics[0]?.Metrics.map((m) => m.Name)).toEqual(expect.arrayContaining(['Records', 'DuplicatesDropped', 'FencedMessages', 'DeadLetters', 'StepFailures']));
    expect(blob.Records).toBe(1);
    expect(blob.DeadLetters).toBe(3);
    expect(blob.StepFailures).toBe(1);
    expect(blob.service).toBe('cairn-test-operator');
  });
});

describe('ingest handler', () => {
  it('appends once per message id, dead-letters bad events, and reports nothing failed', async () => {
    const s = embedded();
    await s.checkpoints.putJob(initialJob(0), undefined);
    const handler = createIngestHandler({ job: wordCount.build(), limits: parseRuntimeLimits(), log: s.log, deadLetters: s.deadLetters, transport: s.transport, checkpoints: s.checkpoints });
    const event: SQSEvent = { Records: [record('a', JSON.stringify({ line: 'x y' })), record('b', 'nope'), record('c', JSON.stringify({ line: 42 }))] };
    expect(await handler(event)).toEqual({ batchItemFailures: [] });
    expect(await handler(event)).toEqual({ batchItemFailures: [] });
    expect((await s.log.head(0)) + (await s.log.head(1))).toBe(1);
    expect((await s.deadLetters.list()).map((l) => l.reason).sort()).toEqual(['malformed-json', 'schema-violation']);
    // Each delivery wakes the source instance with a poll named by the head after the append:
    // the redelivery appended nothing, so its poll repeats the first one's id (SQS drops it).
    const partition = (await s.log.head(0)) === 1 ? 0 : 1;
    const to = `${wordCount.build().vertices[0]?.id ?? ''}#${partition}`;
    expect(s.sent.map((m) => m.dedupId)).toEqual([`g1:poll:${to}:1`, `g1:poll:${to}:1`]);
  });

  it("deduplicates by the producer's CairnEventId: a retried SendMessage is one event, and the event id names its dead letter", async () => {
    const s = embedded();
    await s.checkpoints.putJob(initialJob(0), undefined);
    const handler = createIngestHandler({ job: wordCount.build(), limits: parseRuntimeLimits(), log: s.log, deadLetters: s.deadLetters, transport: s.transport, checkpoints: s.checkpoints });
    const withId = (messageId: string, body: string, eventId: string): SQSRecord => ({
      ...record(messageId, body),
      messageAttributes: { [EVENT_ID_ATTRIBUTE]: { dataType: 'String', stringValue: eventId, stringListValues: [], binaryListValues: [] } },
    });
    // Two SQS messages (two message ids) of one event: the producer's retry of a send that went through.
    const event: SQSEvent = { Records: [withId('m1', JSON.stringify({ line: 'x y' }), 'order-7'), withId('m2', JSON.stringify({ line: 'x y' }), 'order-7'), withId('m3', 'nope', 'line:3')] };
    expect(await handler(event)).toEqual({ batchItemFailures: [] });
    expect((await s.log.head(0)) + (await s.log.head(1))).toBe(1);
    expect((await s.deadLetters.list()).map((l) => [l.id, l.reason])).toEqual([['ingress:line:3', 'malformed-json']]);
    // Without the attribute, the message id is the event id (as before).
    expect(eventIdOf(record('m4', '{}'))).toBe('m4');
  });

  it('before the coordinator created the job, every message comes back', async () => {
    const s = embedded();
    const handler = createIngestHandler({ job: wordCount.build(), limits: parseRuntimeLimits(), log: s.log, deadLetters: s.deadLetters, transport: s.transport, checkpoints: s.checkpoints });
    expect(await handler({ Records: [record('a', '{"line":"x"}'), record('b', '{"line":"y"}')] })).toEqual({ batchItemFailures: [{ itemIdentifier: 'a' }, { itemIdentifier: 'b' }] });
  });

  it('FIFO: a failure fails the rest of its message group, not other groups', () => {
    const records = [record('1', '', 'g'), record('2', '', 'h'), record('3', '', 'g'), record('4', '', 'h'), record('5', '', 'g')];
    expect(withRestOfGroupFailed(records, new Set(['3']))).toEqual(['3', '5']);
    expect(withRestOfGroupFailed([record('1', ''), record('2', '')], new Set(['1']))).toEqual(['1']);
  });
});

describe('handlers built from the environment', () => {
  it('refuses a missing or wrong variable with its name', async () => {
    expect(() => exampleJob({})).toThrow(new HandlerConfigError("CAIRN_JOB '' is not in the examples registry (word-count, account-balance, windowed-count)"));
    expect(() => exampleJob({ CAIRN_JOB: 'nope' })).toThrow(/CAIRN_JOB 'nope' is not in the examples registry/);
    await expect(environmentFrom(wordCount, {})).rejects.toThrow(new HandlerConfigError('environment variable CAIRN_QUEUE_URLS must be a JSON object of vertex id -> queue URL'));
    await expect(environmentFrom(wordCount, { CAIRN_QUEUE_URLS: '{"lines": "u"}' })).rejects.toThrow(/CAIRN_QUEUE_URLS has no queue for count/);
  });

  it('the default handlers of functions/ingest.ts and functions/operator.ts run against the local cloud from CAIRN_* variables', async () => {
    const job = await localJob({ example: wordCount });
    const saved = { ...process.env };
    try {
      Object.assign(process.env, {
        CAIRN_JOB: 'word-count',
        CAIRN_TABLE: job.prefix,
        CAIRN_BUCKET: job.prefix,
        CAIRN_QUEUE_URLS: JSON.stringify(Object.fromEntries(Object.entries(job.queues.operators).map(([v, q]) => [v, q.url]))),
        CAIRN_CHECKPOINT: JSON.stringify({ intervalMs: 500 }),
        AWS_ENDPOINT_URL: cloudEndpoint(),
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        POWERTOOLS_METRICS_DISABLED: 'true',
        POWERTOOLS_LOG_LEVEL: 'SILENT',
      });
      const ingest = await import('../../functions/ingest.js');
      const operator = await import('../../functions/operator.js');
      const context = {} as never;
      const pushed = await ingest.handler({ Records: [record('e1', JSON.stringify({ line: 'cairn cairn' })), record('e2', JSON.stringify({ line: 'flink' }))] }, context);
      expect(pushed).toEqual({ batchItemFailures: [] });
      expect((await job.log.head(0)) + (await job.log.head(1))).toBe(2);
      const polled = await operator.handler(
        { Records: [record('p0', JSON.stringify({ type: 'poll', gen: 1, to: 'lines#0' }), 'lines#0'), record('p1', JSON.stringify({ type: 'poll', gen: 1, to: 'lines#1' }), 'lines#1')] },
        context,
      );
      expect(polled).toEqual({ batchItemFailures: [] });
      const offsets = await Promise.all([0, 1].map(async (p) => (await job.state.loadInstance(`lines#${p}`))?.sourceOffset ?? 0));
      expect(offsets[0]! + offsets[1]!).toBe(2);
    } finally {
      process.env = saved;
      await job.destroy();
    }
  });
});
