/**
 * `cairn dead-letters --redrive`: ingress messages that reached their dead-letter queue (the
 * dead-letter function kept them as dead letters, with their event ids) go back to the ingress
 * queue under those ids, on the local cloud's SQS; ingest then appends each id once.
 */
import { CreateQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { redriveIngress } from '../../shared/aws/ops/redrive-ingress.js';
import { handleRedriven } from '../../shared/core/redrive.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { freshStores, sqsRecord, unique, wordCountIngest } from './helpers.js';

describe('ingress redrive', () => {
  it('sends each ingress dead letter back under its event id and removes it; the event is appended once even if it had been appended already', async () => {
    const s = await freshStores();
    try {
      await s.checkpoints.putJob(initialJob(Date.now()), undefined);
      const { QueueUrl } = await s.clients.sqs.send(new CreateQueueCommand({ QueueName: unique('ingress') }));
      const ingressQueueUrl = QueueUrl ?? '';
      const clock = { now: () => Date.now() };
      const body = JSON.stringify({ line: `exactly once ${'x'.repeat(8_000)}` });
      // The first delivery appended the event, then the invocation timed out; SQS moved the message to the DLQ after its receives.
      const ingest = wordCountIngest(s, {
        clock,
      });
      const record = (messageId: string, eventId: string, text: string): SQSRecord => sqsRecord(messageId, text, { CairnEventId: eventId });
      await ingest({ Records: [record('sqs-1', 'line:1', body)] });
      await handleRedriven({ checkpoints: s.checkpoints, deadLetters: s.deadLetters, clock }, [
        { queue: 'ingress', messageId: 'sqs-1', body, receiveCount: 5, eventId: 'line:1' },
        { queue: 'ingress', messageId: 'sqs-2', body: JSON.stringify({ line: 'never appended' }), receiveCount: 5, eventId: 'line:2' },
      ]);
      await s.deadLetters.put([{ id: 'ingress:sqs-3', reason: 'malformed-json', message: 'malformed JSON', vertex: 'lines', payload: '{', at: 1 }]);

      expect(await redriveIngress({ deadLetters: s.deadLetters, sqs: s.clients.sqs, ingressQueueUrl })).toEqual({ sent: 2, failed: [] });
      // Bad input stays a dead letter (it would fail again); the redriven ones are gone.
      expect((await s.deadLetters.list()).map((l) => l.id)).toEqual(['ingress:sqs-3']);
      const received = await s.clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: ingressQueueUrl, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], WaitTimeSeconds: 1 }));
      const messages = (received.Messages ?? []).map((m) => ({ id: m.MessageAttributes?.CairnEventId?.StringValue, body: m.Body })).sort((a, b) => String(a.id).localeCompare(String(b.id)));
      expect(messages).toEqual([
        { id: 'line:1', body },
        { id: 'line:2', body: JSON.stringify({ line: 'never appended' }) },
      ]);
      // Ingest of the redriven messages: line:1 is a duplicate, line:2 appends.
      const outcome = await ingest({ Records: (received.Messages ?? []).map((m) => record(m.MessageId ?? '', m.MessageAttributes?.CairnEventId?.StringValue ?? '', m.Body ?? '')) });
      expect(outcome.batchItemFailures).toEqual([]);
      const heads = (await s.sourceLog.head(0)) + (await s.sourceLog.head(1));
      expect(heads).toBe(2);
      expect(await redriveIngress({ deadLetters: s.deadLetters, sqs: s.clients.sqs, ingressQueueUrl })).toEqual({ sent: 0, failed: [] });
    } finally {
      await s.done();
    }
  });
});
