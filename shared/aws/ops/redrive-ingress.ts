import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DeadLetterStore } from '../../core/ports.js';
import { redrivableIngress } from '../../core/redrive.js';
import { EVENT_ID_ATTRIBUTE } from '../../lambda/ingest-handler.js';

export interface IngressRedrive {
  /** Events sent back to the ingress queue (their dead letters removed). */
  readonly sent: number;
  /** Event ids whose send failed: their dead letters stay for the next redrive. */
  readonly failed: readonly string[];
}

/**
 * `cairn dead-letters --redrive`: sends every ingress message that reached its dead-letter
 * queue (it never reached the log: an ingest that kept failing) back to the ingress queue under
 * the event id it carried, then removes its dead letter. Ingest appends an id once, so an event
 * that was appended after all (an invocation that appended, then timed out) stays one event,
 * and a redrive cut short is simply run again.
 */
export async function redriveIngress(deps: { readonly deadLetters: DeadLetterStore; readonly sqs: SQSClient; readonly ingressQueueUrl: string }): Promise<IngressRedrive> {
  const fifo = deps.ingressQueueUrl.endsWith('.fifo');
  const sent: string[] = [];
  const failed: string[] = [];
  for (const letter of redrivableIngress(await deps.deadLetters.list())) {
    try {
      await deps.sqs.send(
        new SendMessageCommand({
          QueueUrl: deps.ingressQueueUrl,
          MessageBody: letter.payload,
          MessageAttributes: { [EVENT_ID_ATTRIBUTE]: { DataType: 'String', StringValue: letter.eventId } },
          ...(fifo ? { MessageGroupId: 'redrive', MessageDeduplicationId: letter.eventId.replace(/[^\x21-\x7e]/g, '_').slice(0, 128) } : {}),
        }),
      );
      sent.push(letter.id);
    } catch {
      failed.push(letter.eventId);
    }
  }
  await deps.deadLetters.remove(sent);
  return { sent: sent.length, failed };
}
