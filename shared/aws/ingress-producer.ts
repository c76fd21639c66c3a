import { SendMessageBatchCommand, type SendMessageBatchRequestEntry, type SQSClient } from '@aws-sdk/client-sqs';
import { packIngressBatches } from '../core/ingress-batch.js';
import { EVENT_ID_ATTRIBUTE } from '../lambda/ingest-handler.js';
import { sendBatchesOf, sqsSafeBody } from './adapters/sqs-fifo-transport.js';

/** SQS's classic message and request limit (256 KiB; SQS now accepts 1 MiB, emulators may not). */
export const DEFAULT_INGRESS_MESSAGE_BYTES = 256 * 1024;

/** Sends that keep failing give up after this many attempts (backing off 50 ms .. 12.8 s). */
const MAX_SEND_ATTEMPTS = 10;

/** One message for the ingress queue: its id travels as the `CairnEventId` attribute (ingest deduplicates by it). */
export interface IngressMessageToSend {
  readonly id: string;
  readonly body: string;
  /** FIFO ingress only: the message group (default `ingress`). */
  readonly groupId?: string;
}

export class IngressSendError extends Error {
  constructor(
    readonly failed: readonly { readonly id: string; readonly code: string }[],
    readonly attempts: number,
  ) {
    super(`SendMessageBatch to the ingress failed for ${failed.length} messages after ${attempts} attempts: ${failed.map((f) => `${f.id} (${f.code})`).join(', ')}`);
    this.name = 'IngressSendError';
  }
}

/**
 * Sends messages to an ingress queue with SendMessageBatch: up to 10 entries and `maxRequestBytes`
 * per request, in order, retrying the entries SQS failed under the same id (a retry that went
 * through twice is one event or batch: ingest deduplicates by `CairnEventId`). On a FIFO queue the
 * id is also the deduplication id. Returns the number of requests.
 */
export async function sendIngressMessages(sqs: SQSClient, queueUrl: string, messages: readonly IngressMessageToSend[], maxRequestBytes = DEFAULT_INGRESS_MESSAGE_BYTES): Promise<number> {
  const fifo = queueUrl.endsWith('.fifo');
  let sent = 0;
  for (const request of sendBatchesOf(messages, (m) => m.body, maxRequestBytes)) {
    let entries: SendMessageBatchRequestEntry[] = request.map((m, i) => ({
      Id: String(i),
      MessageBody: sqsSafeBody(m.body),
      MessageAttributes: { [EVENT_ID_ATTRIBUTE]: { DataType: 'String', StringValue: m.id } },
      ...(fifo ? { MessageGroupId: m.groupId ?? 'ingress', MessageDeduplicationId: m.id.replace(/[^\x21-\x7e]/g, '_').slice(0, 128) } : {}),
    }));
    for (let attempt = 1; entries.length > 0; attempt++) {
      const out = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
      sent++;
      const failed = out.Failed ?? [];
      if (failed.length === 0) break;
      if (attempt >= MAX_SEND_ATTEMPTS)
        throw new IngressSendError(
          failed.map((f) => ({ id: request[Number(f.Id)]?.id ?? String(f.Id), code: f.Code ?? 'unknown' })),
          attempt,
        );
      const again = new Set(failed.map((f) => f.Id));
      entries = entries.filter((e) => again.has(e.Id));
      await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** (attempt - 1)));
    }
  }
  return sent;
}

export interface IngressProducerProps {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  /** Bytes of one batch message (and of one request) at most. @default 256 KiB */
  readonly maxMessageBytes?: number;
  /** FIFO ingress only: the message group of every batch. @default `ingress` */
  readonly groupId?: string;
}

/**
 * A producer for a Cairn job's ingress queue that packs events into batch messages
 * (shared/core/ingress-batch.ts): one SQS message, one ingest dedup item per partition and one
 * SendMessageBatch entry for up to 500 events, instead of one of each per event. Each event
 * needs an id; a batch's id is its first event's id and its size, so sending the same events
 * again (a retry, a producer restarted from the same position) packs the same batches and
 * ingest keeps each once.
 *
 * @example
 * const producer = new IngressProducer({ sqs: new SQSClient({}), queueUrl });
 * await producer.send(orders.map((o) => ({ id: o.orderId, event: o })));
 */
export class IngressProducer {
  private readonly maxMessageBytes: number;

  constructor(private readonly props: IngressProducerProps) {
    this.maxMessageBytes = props.maxMessageBytes ?? DEFAULT_INGRESS_MESSAGE_BYTES;
  }

  /** Sends `events` in order, packed; resolves once SQS accepted every batch. */
  async send(events: readonly { readonly id: string; readonly event: unknown }[]): Promise<{ readonly messages: number; readonly requests: number }> {
    const batches = packIngressBatches(
      events.map((e) => ({ id: e.id, body: JSON.stringify(e.event) ?? 'null' })),
      this.maxMessageBytes,
    );
    const requests = await sendIngressMessages(
      this.props.sqs,
      this.props.queueUrl,
      batches.map((b) => ({ id: b.id, body: b.body, ...(this.props.groupId ? { groupId: this.props.groupId } : {}) })),
      this.maxMessageBytes,
    );
    return { messages: batches.length, requests };
  }
}
