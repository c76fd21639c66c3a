/** SqsFifoTransport against ElasticMQ: batching, order per group, deduplication ids. */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { RequestCounter, SqsFifoTransport, ensureFifoQueues, sqsId } from '../../shared/aws/index.js';
import type { ChannelMessage } from '../../shared/core/messages.js';
import type { OutboundMessage } from '../../shared/core/ports.js';
import { rulesEdge } from '../cloud/rules-edge.js';
import { cloudEndpoint, credentials, unique } from './helpers.js';
import { until } from '../until.js';

const client = (): SQSClient => new SQSClient({ endpoint: cloudEndpoint(), region: 'us-east-1', credentials });

function message(queue: string, to: string, seq: number, payload = ''): OutboundMessage {
  const body: ChannelMessage = { type: 'data', gen: 1, from: 'up#0', to, seq, records: payload ? [{ v: payload, o: `0:${seq}` }] : [] };
  return { queue, groupId: to, dedupId: `g1:up#0>${to}:${seq}`, body };
}

async function receiveAll(sqs: SQSClient, url: string, count: number): Promise<Message[]> {
  const got: Message[] = [];
  await until(
    `${count} messages`,
    async () => {
      const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageSystemAttributeNames: ['MessageGroupId', 'MessageDeduplicationId'] }));
      const messages = r.Messages ?? [];
      got.push(...messages);
      if (messages.length > 0) {
        await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })) }));
      }
      return got.length >= count ? got : undefined;
    },
    { progress: () => got.length, stallMs: 20_000, pollMs: 0 },
  );
  return got;
}

const seqOf = (m: Message): number => (JSON.parse(m.Body ?? '{}') as ChannelMessage).seq;

describe('SqsFifoTransport', () => {
  it('an entry that fails while a later entry of its group is accepted leaves no gap: every group arrives in order', async () => {
    // SQS reports entries of one SendMessageBatch individually: the edge fails op#0's seq 2
    // once (InternalError, SenderFault false) and accepts the rest of the call. Before: seq 3..5
    // went into the group ahead of the retried seq 2, a gap no redelivery heals.
    const failedOnce = new Set<string>();
    const edge = await rulesEdge({}, undefined, (entry) => {
      const m = JSON.parse(entry.MessageBody) as ChannelMessage;
      if (m.to !== 'op#0' || m.seq !== 2 || failedOnce.has(entry.MessageBody)) return false;
      failedOnce.add(entry.MessageBody);
      return true;
    });
    try {
      const sqs = new SQSClient({ endpoint: edge.url, region: 'us-east-1', credentials });
      const urls = await ensureFifoQueues(sqs, ['op'], unique('t'));
      const transport = new SqsFifoTransport({ client: sqs, queueUrls: urls, retryBaseMs: 1 });
      const messages: OutboundMessage[] = [];
      for (let i = 1; i <= 5; i++) messages.push(message('op', 'op#0', i), ...(i <= 3 ? [message('op', 'op#1', i)] : []));
      await transport.send(messages);
      expect(failedOnce.size).toBe(1);
      const got = await receiveAll(sqs, urls.op ?? '', 8);
      const byGroup = (g: string): number[] => got.filter((m) => m.Attributes?.MessageGroupId === g).map(seqOf);
      expect(byGroup('op#0')).toEqual([1, 2, 3, 4, 5]);
      expect(byGroup('op#1')).toEqual([1, 2, 3]);
      sqs.destroy();
    } finally {
      await edge.close();
    }
  });

  it('sends user strings holding U+FFFE and U+FFFF, which an SQS body may not contain, and they arrive unchanged', async () => {
    const sqs = client();
    const urls = await ensureFifoQueues(sqs, ['op'], unique('t'));
    const transport = new SqsFifoTransport({ client: sqs, queueUrls: urls });
    const text = 'a\uffffb\ufffec \u{1f600} \u0007';
    // Before the escaping: ElasticMQ rejected the whole request (AWS: InvalidMessageContents), after the commit, on every redelivery.
    await transport.send([message('op', 'x#0', 1, text)]);
    const [got] = await receiveAll(sqs, urls.op ?? '', 1);
    expect(got?.Body).not.toMatch(/[\ufffe\uffff]/);
    expect((JSON.parse(got?.Body ?? '{}') as ChannelMessage).records?.[0]?.v).toBe(text);
  });

  it('sends 38 interleaved messages of two groups, at most one per group per call (25 batches), each group in order; another queue in its own batches', async () => {
    const sqs = client();
    const counter = new RequestCounter();
    counter.attach(sqs);
    const urls = await ensureFifoQueues(sqs, ['op', 'sink'], unique('t'));
    counter.reset();
    const transport = new SqsFifoTransport({ client: sqs, queueUrls: urls });
    const messages: OutboundMessage[] = [];
    for (let i = 1; i <= 25; i++) {
      messages.push(message('op', 'op#0', i));
      if (i <= 13) messages.push(message('op', 'op#1', i));
      if (i <= 5) messages.push(message('sink', 'sink#0', i));
    }
    await transport.send(messages);
    // op: rounds 1-13 hold op#0 and op#1 (one call each), rounds 14-25 op#0 alone; sink: 5 rounds.
    expect(counter.calls()).toEqual({ 'SQS.SendMessageBatch': 30 });

    const got = await receiveAll(sqs, urls.op ?? '', 38);
    const byGroup = (g: string): number[] => got.filter((m) => m.Attributes?.MessageGroupId === g).map(seqOf);
    expect(byGroup('op#0')).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(byGroup('op#1')).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    expect((await receiveAll(sqs, urls.sink ?? '', 5)).map(seqOf)).toEqual([1, 2, 3, 4, 5]);
    sqs.destroy();
  });

  it('splits batches at 256 KiB of bodies', async () => {
    const sqs = client();
    const counter = new RequestCounter();
    counter.attach(sqs);
    const urls = await ensureFifoQueues(sqs, ['op'], unique('t'));
    counter.reset();
    const transport = new SqsFifoTransport({ client: sqs, queueUrls: urls });
    // 10 messages of ~60 KB to 10 groups: at most 4 fit in 256 KiB -> batches of 4, 4, 2.
    await transport.send(Array.from({ length: 10 }, (_, i) => message('op', `op#${i}`, 1, 'p'.repeat(60_000))));
    expect(counter.calls()).toEqual({ 'SQS.SendMessageBatch': 3 });
    const got = await receiveAll(sqs, urls.op ?? '', 10);
    expect(got.map((m) => m.Attributes?.MessageGroupId).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `op#${i}`).sort());
    sqs.destroy();
  });

  it('hashes deduplication and group ids SQS would reject (over 128 chars, other characters); a resend of the same id is dropped', () => {
    expect(sqsId('g1:up#0>op#1:5')).toBe('g1:up#0>op#1:5');
    const long = `g1:${'v'.repeat(200)}#0>op#1:5`;
    expect(sqsId(long)).toMatch(/^h-[0-9a-f]{64}$/);
    expect(sqsId(long)).toBe(sqsId(long));
    expect(sqsId('with space')).toMatch(/^h-[0-9a-f]{64}$/);
    expect(sqsId('zählen#0')).toMatch(/^h-[0-9a-f]{64}$/);
    expect(sqsId('x'.repeat(128))).toBe('x'.repeat(128));
  });

  it('delivers messages with such ids, and drops a resend with the same long deduplication id', async () => {
    const sqs = client();
    const urls = await ensureFifoQueues(sqs, ['op'], unique('t'));
    const transport = new SqsFifoTransport({ client: sqs, queueUrls: urls });
    const group = 'zählen#0';
    const long = (seq: number): OutboundMessage => ({ ...message('op', group, seq), dedupId: `g1:${'v'.repeat(200)}>${group}:${seq}` });
    await transport.send([long(1), long(2)]);
    await transport.send([long(2), long(3)]);
    const got = await receiveAll(sqs, urls.op ?? '', 3);
    expect(got.map(seqOf)).toEqual([1, 2, 3]);
    expect(got[0]?.Attributes?.MessageGroupId).toBe(sqsId(group));
    expect(got[0]?.Attributes?.MessageDeduplicationId).toBe(sqsId(long(1).dedupId));
    const again = await sqs.send(new ReceiveMessageCommand({ QueueUrl: urls.op, WaitTimeSeconds: 1 }));
    expect(again.Messages ?? []).toEqual([]);
    sqs.destroy();
  });
});
