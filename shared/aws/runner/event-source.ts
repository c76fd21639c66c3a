import { ChangeMessageVisibilityBatchCommand, DeleteMessageBatchCommand, ReceiveMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { setMaxListeners } from 'node:events';

/**
 * Plays Lambda's SQS event source mapping against the real SQS API: pollers call
 * ReceiveMessage (up to 10 messages, with ApproximateReceiveCount and MessageGroupId), invoke
 * the handler in process with an SQSEvent, delete what succeeded (DeleteMessageBatch) and
 * leave the reported failures to come back after the visibility timeout; the queue's
 * RedrivePolicy moves a message that keeps failing to its dead-letter queue.
 *
 * FIFO queues: ElasticMQ and SQS hand out one message group to one receiver at a time, so
 * several pollers on one queue are several concurrent instances, each still serial (Lambda
 * scales a FIFO source the same way, up to one batch per message group). Standard queues: a
 * poller may gather several receives into one invocation (Lambda's batch size above 10).
 *
 * Invocations here have no timeout, so the poller extends the visibility of a batch whose
 * invocation outlives half the visibility timeout (as a Lambda timeout below the visibility
 * timeout guarantees on AWS); a failed batch keeps the rest of its timeout.
 */

export type SqsHandler = (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;

export interface EventSourceOptions {
  readonly sqs: SQSClient;
  readonly name: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly region: string;
  readonly handler: SqsHandler;
  /** Messages per invocation: at most 10 on FIFO queues. */
  readonly batchSize: number;
  /** Concurrent pollers (= concurrent invocations). */
  readonly concurrency: number;
  readonly visibilityTimeoutSeconds: number;
  /** Long polling while idle. */
  readonly waitTimeSeconds?: number;
  /**
   * MaximumBatchingWindowInSeconds, in ms: once a receive returns messages, keep gathering until
   * the batch is full or this long has passed (standard queues; Lambda's FIFO mappings have no
   * window). Default 0: invoke with what the first receives return.
   */
  readonly batchingWindowMs?: number;
  /** Messages of a group the runner must not deliver before the returned time (fault schedules: a stalled instance). */
  readonly holdGroup?: (groupId: string) => number | undefined;
  readonly onInvoke?: (info: { messages: number; failed: number; redelivered: number; ms: number }) => void;
  readonly onError?: (error: Error) => void;
}

const SYSTEM_ATTRIBUTES = ['ApproximateReceiveCount', 'ApproximateFirstReceiveTimestamp', 'SentTimestamp', 'SenderId', 'MessageGroupId', 'MessageDeduplicationId', 'SequenceNumber'] as const;

export class SqsEventSource {
  private running = false;
  private readonly pollers: Promise<void>[] = [];
  private abort = new AbortController();
  private busy = 0;
  invocations = 0;

  constructor(readonly options: EventSourceOptions) {}

  /** Invocations in progress. */
  get inflight(): number {
    return this.busy;
  }

  start(): void {
    if (this.running) return;
    // A stopped source starts again (pause, resume) with a fresh signal: the old one stays aborted.
    if (this.abort.signal.aborted) this.abort = new AbortController();
    // Every receive in flight listens on the one abort signal.
    setMaxListeners(0, this.abort.signal);
    this.running = true;
    for (let i = 0; i < this.options.concurrency; i++) this.pollers.push(this.poll());
  }

  async stop(): Promise<void> {
    this.running = false;
    this.abort.abort();
    await Promise.all(this.pollers);
    this.pollers.length = 0;
  }

  private async poll(): Promise<void> {
    while (this.running) {
      try {
        const messages = await this.receive();
        if (messages.length === 0) continue;
        this.busy++;
        try {
          await this.invoke(messages);
        } finally {
          this.busy--;
        }
      } catch (error) {
        if (!this.running) return;
        this.options.onError?.(error as Error);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private async receive(): Promise<Message[]> {
    const { sqs, queueUrl, batchSize, visibilityTimeoutSeconds } = this.options;
    const calls = Math.max(1, Math.ceil(batchSize / 10));
    const one = (max: number, wait: number): Promise<Message[]> =>
      sqs
        .send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: max,
            AttributeNames: [...SYSTEM_ATTRIBUTES] as never,
            MessageSystemAttributeNames: [...SYSTEM_ATTRIBUTES],
            MessageAttributeNames: ['All'],
            VisibilityTimeout: visibilityTimeoutSeconds,
            WaitTimeSeconds: wait,
          }),
          { abortSignal: this.abort.signal },
        )
        .then((r) => r.Messages ?? []);
    const first = await one(Math.min(10, batchSize), this.options.waitTimeSeconds ?? 1);
    const window = this.options.batchingWindowMs ?? 0;
    if (window > 0 && first.length > 0) {
      // As Lambda's mapping does with a batching window: gather until the batch is full or the window has passed.
      const batch = [...first];
      const deadline = Date.now() + window;
      while (batch.length < batchSize && this.running) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const got = await one(Math.min(10, batchSize - batch.length), left >= 1_000 ? 1 : 0);
        batch.push(...got);
        if (got.length === 0 && left < 1_000) await new Promise((r) => setTimeout(r, Math.min(left, 50)));
      }
      return batch;
    }
    if (calls === 1 || first.length < 10) return first;
    // A full first receive on a standard queue: gather more at once (no waiting) up to the batch size.
    const more = await Promise.all(Array.from({ length: calls - 1 }, (_, i) => one(Math.min(10, batchSize - 10 * (i + 1)), 0)));
    return [...first, ...more.flat()];
  }

  private async invoke(received: Message[]): Promise<void> {
    const { sqs, queueUrl, visibilityTimeoutSeconds } = this.options;
    const now = Date.now();
    // Stalled groups (fault schedules): hide their messages until the stall ends, in order.
    const held = new Map<string, number>();
    const messages: Message[] = [];
    const heldMessages: { message: Message; until: number }[] = [];
    for (const m of received) {
      const group = m.Attributes?.MessageGroupId;
      const until = group === undefined ? undefined : (held.get(group) ?? this.options.holdGroup?.(group));
      if (group !== undefined && until !== undefined && until > now) {
        held.set(group, until);
        heldMessages.push({ message: m, until });
      } else messages.push(m);
    }
    if (heldMessages.length > 0) {
      await this.changeVisibility(heldMessages.map(({ message, until }) => ({ message, seconds: Math.min(43_200, Math.ceil((until - now) / 1000)) })));
    }
    if (messages.length === 0) return;

    this.invocations++;
    const event: SQSEvent = { Records: messages.map((m) => this.toRecord(m)) };
    const started = Date.now();
    // Keep the batch invisible while the invocation runs.
    const halfTimeout = (visibilityTimeoutSeconds * 1000) / 2;
    const heartbeat = setInterval(() => {
      void this.changeVisibility(messages.map((message) => ({ message, seconds: visibilityTimeoutSeconds }))).catch(() => undefined);
    }, halfTimeout);
    let failed: Set<string>;
    try {
      const response = await this.options.handler(event);
      failed = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
    } catch (error) {
      // An invocation error fails the whole batch, as a Lambda error does.
      this.options.onError?.(error as Error);
      failed = new Set(messages.map((m) => m.MessageId ?? ''));
    } finally {
      clearInterval(heartbeat);
    }
    const done = messages.filter((m) => !failed.has(m.MessageId ?? ''));
    for (let i = 0; i < done.length; i += 10) {
      const chunk = done.slice(i, i + 10);
      await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle })) }));
    }
    this.options.onInvoke?.({
      messages: messages.length,
      failed: messages.length - done.length,
      redelivered: messages.filter((m) => Number(m.Attributes?.ApproximateReceiveCount ?? '1') > 1).length,
      ms: Date.now() - started,
    });
  }

  private async changeVisibility(entries: readonly { message: Message; seconds: number }[]): Promise<void> {
    for (let i = 0; i < entries.length; i += 10) {
      await this.options.sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.options.queueUrl,
          Entries: entries.slice(i, i + 10).map(({ message, seconds }, j) => ({ Id: String(j), ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: seconds })),
        }),
      );
    }
  }

  private toRecord(m: Message): SQSRecord {
    const a = m.Attributes ?? {};
    return {
      messageId: m.MessageId ?? '',
      receiptHandle: m.ReceiptHandle ?? '',
      body: m.Body ?? '',
      attributes: {
        ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
        SentTimestamp: a.SentTimestamp ?? '',
        SenderId: a.SenderId ?? '',
        ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? '',
        ...(a.MessageGroupId !== undefined ? { MessageGroupId: a.MessageGroupId } : {}),
        ...(a.MessageDeduplicationId !== undefined ? { MessageDeduplicationId: a.MessageDeduplicationId } : {}),
        ...(a.SequenceNumber !== undefined ? { SequenceNumber: a.SequenceNumber } : {}),
      },
      // As Lambda's event source shapes them.
      messageAttributes: Object.fromEntries(
        Object.entries(m.MessageAttributes ?? {}).map(([name, v]) => [
          name,
          { dataType: v.DataType ?? 'String', ...(v.StringValue !== undefined ? { stringValue: v.StringValue } : {}), stringListValues: [], binaryListValues: [] },
        ]),
      ),
      md5OfBody: m.MD5OfBody ?? '',
      eventSource: 'aws:sqs',
      eventSourceARN: this.options.queueArn,
      awsRegion: this.options.region,
    };
  }
}
