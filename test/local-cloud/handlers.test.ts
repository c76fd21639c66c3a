/**
 * The Lambda handlers on their own: SQS records in, SQSBatchResponse out, EMF metrics on
 * stdout; and the default `handler` of functions/*.ts, built from environment variables,
 * against the local cloud.
 */
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { examples } from '../../examples/index.js';
import { exampleJob } from '../../functions/lib/example-job.js';
import { CreateStateMachineCommand, DeleteStateMachineCommand, ListExecutionsCommand, SFNClient } from '@aws-sdk/client-sfn';
import { createHandlers, createIngestHandler, createOperatorHandler, deadLetterEnvFrom, environmentFrom, HandlerConfigError, wakeNameOf } from '../../shared/lambda/index.js';
import { EVENT_ID_ATTRIBUTE, eventIdOf } from '../../shared/lambda/ingest-handler.js';
import { withRestOfGroupFailed } from '../../shared/lambda/sqs-records.js';
import { powertools } from '../../shared/lambda/telemetry.js';
import { parseCheckpointConfig, parseRuntimeLimits } from '../../shared/core/config.js';
import { InjectedFault } from '../../shared/core/errors.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import type { OutboundMessage } from '../../shared/core/ports.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedCheckpointStore, EmbeddedDeadLetterStore, EmbeddedSourceLog, EmbeddedStateStore } from '../../shared/embedded/stores.js';
import { cloudEndpoint, credentials, localJob, region } from './helpers.js';

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

describe('dead-letter handler (createHandlers(job).deadLetter), against the local cloud with a real state machine to wake', () => {
  it('keeps every message as a dead letter, reports one failure and wakes the coordinator once per failure, retries included', async () => {
    const job = await localJob({ example: wordCount });
    const sfn = new SFNClient({ endpoint: cloudEndpoint(), region, credentials });
    const definition = JSON.stringify({ StartAt: 'Served', States: { Served: { Type: 'Pass', End: true } } });
    const { stateMachineArn } = await sfn.send(new CreateStateMachineCommand({ name: `${job.prefix}-checkpoints`, definition, roleArn: 'arn:aws:iam::123456789012:role/cairn-sfn', type: 'STANDARD' }));
    const saved = { ...process.env };
    try {
      Object.assign(process.env, {
        AWS_ENDPOINT_URL: cloudEndpoint(),
        AWS_REGION: region,
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        POWERTOOLS_METRICS_DISABLED: 'true',
        POWERTOOLS_LOG_LEVEL: 'SILENT',
      });
      const dlqs = { ingress: job.queues.ingress.dlqArn, ...Object.fromEntries(Object.entries(job.queues.operators).map(([v, q]) => [v, q.dlqArn])) };
      const env = (machine: string): NodeJS.ProcessEnv => ({
        ...process.env,
        CAIRN_TABLE: job.prefix,
        CAIRN_BUCKET: job.prefix.toLowerCase(),
        CAIRN_QUEUE_URLS: JSON.stringify(Object.fromEntries(Object.entries(job.queues.operators).map(([v, q]) => [v, q.url]))),
        CAIRN_DEAD_LETTER_QUEUES: JSON.stringify(dlqs),
        CAIRN_COORDINATOR_ARN: machine,
      });
      const generation = (await job.checkpoints.getJob())?.generation ?? -1;
      const lost = (id: string): SQSRecord => ({
        ...record(id, JSON.stringify({ type: 'data', gen: generation, from: 'lines#0', to: 'count#0', seq: 3, records: [] }), 'count#0', 5),
        eventSourceARN: job.queues.operators.count?.dlqArn ?? '',
      });
      const ingress = (id: string): SQSRecord => ({ ...record(id, 'not json', undefined, 6), eventSourceARN: job.queues.ingress.dlqArn });
      const executions = async (): Promise<string[]> => ((await sfn.send(new ListExecutionsCommand({ stateMachineArn }))).executions ?? []).map((e) => e.name ?? '');
      const context = {} as never;

      // Ingress messages never reached the log: dead letters, no failure, nothing to wake.
      const handler = createHandlers(wordCount, env(stateMachineArn ?? '')).deadLetter;
      expect(await handler({ Records: [ingress('i1')] }, context)).toEqual({ batchItemFailures: [] });
      expect((await job.checkpoints.getJob())?.requests).toBeUndefined();
      expect(await executions()).toEqual([]);

      // The wake fails (no such state machine): the batch fails, SQS delivers it again; the failure is on the job record already.
      const missing = `${stateMachineArn ?? ''}-missing`;
      await expect(createHandlers(wordCount, env(missing)).deadLetter({ Records: [lost('m1')] }, context)).rejects.toThrow(/does not exist|StateMachineDoesNotExist/i);
      const failure = (await job.checkpoints.getJob())?.requests?.failure;
      expect(failure).toMatchObject({ reason: "message reached the dead-letter queue of 'count'", generation });
      if (!failure) throw new Error('no failure');

      // Redelivered: the pending failure is found and the coordinator woken under its name; again, and for a second lost message: the same execution.
      expect(await handler({ Records: [lost('m1')] }, context)).toEqual({ batchItemFailures: [] });
      expect(await executions()).toEqual([wakeNameOf(failure)]);
      expect(wakeNameOf(failure)).toBe(`dead-letter-g${generation}-${failure.at}`);
      expect(await handler({ Records: [lost('m1')] }, context)).toEqual({ batchItemFailures: [] });
      expect(await handler({ Records: [lost('m2'), ingress('i2')] }, context)).toEqual({ batchItemFailures: [] });
      expect(await executions()).toEqual([wakeNameOf(failure)]);
      expect((await job.checkpoints.getJob())?.requests?.failure).toEqual(failure);
      expect((await job.stores.deadLetters.list()).map((l) => [l.id, l.reason]).sort()).toEqual([
        ['redriven:count:m1', 'redriven'],
        ['redriven:count:m2', 'redriven'],
        ['redriven:ingress:i1', 'redriven'],
        ['redriven:ingress:i2', 'redriven'],
      ]);
      // An ingress letter keeps the event id it carried (here its SQS message id), for `cairn dead-letters --redrive`.
      const ingressLetters = (await job.stores.deadLetters.list()).filter((l) => l.vertex === 'ingress');
      expect(ingressLetters.map((l) => [l.eventId, l.payload]).sort()).toEqual([
        ['i1', 'not json'],
        ['i2', 'not json'],
      ]);
    } finally {
      process.env = saved;
      await sfn.send(new DeleteStateMachineCommand({ stateMachineArn })).catch(() => undefined);
      await job.destroy();
    }
  });

  it('refuses a missing or wrong CAIRN_DEAD_LETTER_QUEUES or CAIRN_COORDINATOR_ARN with its name', () => {
    expect(() => deadLetterEnvFrom({})).toThrow(new HandlerConfigError('environment variable CAIRN_DEAD_LETTER_QUEUES must be a JSON object of queue (ingress or vertex id) -> dead-letter queue ARN'));
    expect(() => deadLetterEnvFrom({ CAIRN_DEAD_LETTER_QUEUES: '{"count": 3}' })).toThrow(new HandlerConfigError("CAIRN_DEAD_LETTER_QUEUES: 'count' has no queue ARN (3)"));
    expect(() => deadLetterEnvFrom({ CAIRN_DEAD_LETTER_QUEUES: '{"count": "arn:aws:sqs:r:1:q-dlq.fifo"}' })).toThrow(new HandlerConfigError('environment variable CAIRN_COORDINATOR_ARN is not set'));
    expect(deadLetterEnvFrom({ CAIRN_DEAD_LETTER_QUEUES: '{"count": "arn:aws:sqs:r:1:q-dlq.fifo", "ingress": "arn:aws:sqs:r:1:i-dlq"}', CAIRN_COORDINATOR_ARN: 'arn:sm' })).toEqual({
      queues: { 'q-dlq.fifo': 'count', 'i-dlq': 'ingress' },
      checkpointStateMachineArn: 'arn:sm',
    });
  });
});
