import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { CheckpointStore, Clock, DeadLetterStore } from '../core/ports.js';
import { handleRedriven, type RedriveOutcome } from '../core/redrive.js';
import { queueNameOf, receiveCountOf } from './sqs-records.js';
import { MetricName, publishCounts, quietTelemetry, type Telemetry } from './telemetry.js';

/**
 * The dead-letter queues' Lambda (one event source mapping per DLQ): every message becomes a
 * dead letter with the queue it came from, and a lost operator message of the current
 * generation reports a failure on the job record, which the coordinator serves with a rollback
 * (shared/core/redrive.ts). Nothing stays in a DLQ, so every incident is seen, unlike an alarm
 * on the DLQ's depth, which EventBridge hears of only when its state changes.
 */

export interface DeadLetterHandlerDeps {
  readonly checkpoints: CheckpointStore;
  readonly deadLetters: DeadLetterStore;
  /** Dead-letter queue name -> the vertex (or `ingress`) whose queue redrives to it. */
  readonly queues: Readonly<Record<string, string>>;
  readonly clock?: Clock;
  readonly telemetry?: Telemetry;
  readonly onOutcome?: (outcome: RedriveOutcome & { readonly messages: number }) => void;
}

export type DeadLetterHandler = (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;

export function createDeadLetterHandler(deps: DeadLetterHandlerDeps): DeadLetterHandler {
  const clock = deps.clock ?? { now: () => Date.now() };
  const { logger, metrics } = deps.telemetry ?? quietTelemetry;
  return async (event) => {
    const messages = event.Records.map((record) => {
      const name = queueNameOf(record);
      const queue = name === undefined ? undefined : deps.queues[name];
      if (queue === undefined) throw new Error(`dead-letter queue ${name ?? record.eventSourceARN} is not one of this job's (${Object.keys(deps.queues).join(', ')})`);
      return { queue, messageId: record.messageId, body: record.body, receiveCount: receiveCountOf(record) };
    });
    // A failure here fails the whole batch: SQS delivers it again, nothing is lost.
    const outcome = await handleRedriven({ checkpoints: deps.checkpoints, deadLetters: deps.deadLetters, clock }, messages);
    for (const m of messages) logger.warn('message reached a dead-letter queue', { queue: m.queue, messageId: m.messageId, receiveCount: m.receiveCount });
    if (outcome.failureReported) logger.error('reported a failure: the job rolls back', { queues: [...new Set(messages.map((m) => m.queue))] });
    publishCounts(metrics, { [MetricName.deadLetters]: outcome.stored });
    deps.onOutcome?.({ ...outcome, messages: messages.length });
    return { batchItemFailures: [] };
  };
}
