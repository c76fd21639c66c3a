/**
 * IngressProducer (shared/aws/ingress-producer.ts) on the local cloud's SQS: events packed into
 * batch messages; an entry SQS reports failed is sent again under the same id, and ingest keeps
 * each batch once even when the failed entry had in fact gone through.
 */
import { CreateQueueCommand, ReceiveMessageCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { IngressProducer } from '../../shared/aws/ingress-producer.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { cloudEndpoint, credentials, freshStores, interceptingHandler, sqsRecord, unique, wordCountIngest } from './helpers.js';

const asRecord = (m: Message): SQSRecord => sqsRecord(m.MessageId ?? '', m.Body ?? '', Object.fromEntries(Object.entries(m.MessageAttributes ?? {}).map(([k, v]) => [k, v.StringValue ?? ''])));

describe('IngressProducer', () => {
  it('packs 1,203 events into 3 batch messages; a retried entry that had gone through is appended once', async () => {
    const s = await freshStores();
    try {
      await s.checkpoints.putJob(initialJob(Date.now()), undefined);
      const { QueueUrl = '' } = await s.clients.sqs.send(new CreateQueueCommand({ QueueName: unique('ingress') }));
      // SQS accepts all three entries of the first request but reports the second failed (as a lost response would make it look).
      const sqs = new SQSClient({
        endpoint: cloudEndpoint(),
        region: 'us-east-1',
        credentials,
        requestHandler: interceptingHandler((operation, call) =>
          operation === 'SendMessageBatch' && call === 1
            ? (json) => {
                const ok = (json.Successful ?? []) as Array<{ Id: string }>;
                return { Successful: ok.filter((e) => e.Id !== '1'), Failed: [{ Id: '1', SenderFault: false, Code: 'ServiceUnavailable', Message: 'try again' }] };
              }
            : undefined,
        ),
      });
      const lines = Array.from({ length: 1_203 }, (_, i) => ({ id: `line:${i}`, event: { line: `word${i % 7} cairn` } }));
      expect(await new IngressProducer({ sqs, queueUrl: QueueUrl }).send(lines)).toEqual({ messages: 3, requests: 2 });

      const received: Message[] = [];
      for (let empty = 0; empty < 2;) {
        const got = await s.clients.sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], WaitTimeSeconds: 1 }));
        if ((got.Messages ?? []).length === 0) empty++;
        received.push(...(got.Messages ?? []));
      }
      expect(received.map((m) => m.MessageAttributes?.CairnEventId?.StringValue).sort()).toEqual(['line:0+500', 'line:1000+203', 'line:500+500', 'line:500+500']);

      const totals = { appended: 0, duplicates: 0 };
      const ingest = wordCountIngest(s, {
        onOutcome: (o) => {
          totals.appended += o.appended;
          totals.duplicates += o.duplicates;
        },
      });
      for (const m of received) expect(await ingest({ Records: [asRecord(m)] })).toEqual({ batchItemFailures: [] });
      expect(totals).toEqual({ appended: 1_203, duplicates: 500 });
      const logged = [...(await s.sourceLog.read(0, 0, 5_000)), ...(await s.sourceLog.read(1, 0, 5_000))].map((e) => (e.event as { line: string }).line);
      expect(logged.sort()).toEqual(lines.map((l) => l.event.line).sort());
    } finally {
      await s.done();
    }
  });
});
