import type { SQSRecord } from 'aws-lambda';
import type { DeadLetter } from '../core/ports.js';

/** Helpers shared by the SQS-triggered handlers. */

/** ApproximateReceiveCount as a number (1 when absent or garbled). */
export function receiveCountOf(record: SQSRecord): number {
  const n = Number(record.attributes?.ApproximateReceiveCount);
  return Number.isInteger(n) && n > 0 ? n : 1;
}

/** The queue name from the record's eventSourceARN (`arn:aws:sqs:region:account:name`). */
export function queueNameOf(record: SQSRecord): string | undefined {
  const arn = record.eventSourceARN;
  if (!arn) return undefined;
  const name = arn.slice(arn.lastIndexOf(':') + 1);
  return name === '' ? undefined : name;
}

/** Bodies are kept on dead letters up to 4 KiB (the store item stays small). */
export function truncatePayload(body: string): string {
  return body.length > 4096 ? `${body.slice(0, 4096)}…` : body;
}

/**
 * FIFO queues: Lambda's rule for partial batch responses is to stop at a group's first
 * failure and report the rest of that group as failed too, so that nothing of the group
 * overtakes the retried message. Standard queues (no MessageGroupId): the ids as given.
 */
export function withRestOfGroupFailed(records: readonly SQSRecord[], failedIds: ReadonlySet<string>): string[] {
  const failedGroups = new Set<string>();
  const out: string[] = [];
  for (const record of records) {
    const group = record.attributes?.MessageGroupId;
    const failed = failedIds.has(record.messageId) || (group !== undefined && failedGroups.has(group));
    if (!failed) continue;
    out.push(record.messageId);
    if (group !== undefined) failedGroups.add(group);
  }
  return out;
}

export type Rejection = Omit<DeadLetter, 'at'>;
