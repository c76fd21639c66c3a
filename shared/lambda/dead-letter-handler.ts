import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { CheckpointStore, Clock, DeadLetterStore } from '../core/ports.js';
import { handleRedriven, INGRESS_QUEUE, type FailureRequest, type RedriveOutcome } from '../core/redrive.js';
import { eventIdOf } from './ingest-handler.js';
import { queueNameOf, receiveCountOf } from './sqs-records.js';
import { MetricName, publishCounts, quietTelemetry, type Telemetry } from './telemetry.js';

/**
 * The dead-letter queues' Lambda (one event source mapping per DLQ): every message becomes a
 * dead letter with the queue it came from, and a lost operator message of the current
 * generation reports a failure on the job record, which the coordinator serves with a rollback
 * (shared/core/redrive.ts). Nothing stays in a DLQ, so every incident is seen, unlike an alarm
 * on the DLQ's depth, which EventBridge hears of only when its state changes.
 *
 * Deployed, it then wakes the coordinator (StartExecution of the checkpoint state machine, input
 * `{}`: decideNext serves the failure from the job record) under one execution name per
 * failure request, so a retried batch, or another batch of the same incident, starts one
 * execution. A failed wake fails the batch: SQS delivers it again, the failure is found pending
 * and the wake is tried again.
 */

/** Starts the coordinator, idempotently by name (shared/aws/adapters/coordinator-waker.ts). */
export interface CoordinatorWake {
  wake(name: string, input?: Readonly<Record<string, unknown>>): Promise<{ readonly started: boolean }>;
}

/** The execution name of the wake for one failure request: the same for every batch that sees it. */
export function wakeNameOf(failure: FailureRequest): string {
  return `dead-letter-g${failure.generation}-${failure.at}`;
}

export interface DeadLetterHandlerDeps {
  readonly checkpoints: CheckpointStore;
  readonly deadLetters: DeadLetterStore;
  /** Dead-letter queue name -> the vertex (or `ingress`) whose queue redrives to it. */
  readonly queues: Readonly<Record<string, string>>;
  readonly clock?: Clock;
  readonly telemetry?: Telemetry;
  /** Woken after a failure is pending (deployed: the checkpoint state machine). @default none: the host loop decides on its own */
  readonly coordinator?: CoordinatorWake;
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
      return { queue, messageId: record.messageId, body: record.body, receiveCount: receiveCountOf(record), ...(queue === INGRESS_QUEUE ? { eventId: eventIdOf(record) } : {}) };
    });
    // A failure here fails the whole batch: SQS delivers it again, nothing is lost.
    const outcome = await handleRedriven({ checkpoints: deps.checkpoints, deadLetters: deps.deadLetters, clock }, messages);
    for (const m of messages) logger.warn('message reached a dead-letter queue', { queue: m.queue, messageId: m.messageId, receiveCount: m.receiveCount });
    if (outcome.failureReported) logger.error('reported a failure: the job rolls back', { queues: [...new Set(messages.map((m) => m.queue))] });
    if (outcome.failure && deps.coordinator) {
      const name = wakeNameOf(outcome.failure);
      const { started } = await deps.coordinator.wake(name, {});
      logger.info(started ? 'woke the coordinator' : 'the coordinator was woken for this failure already', { execution: name });
    }
    publishCounts(metrics, { [MetricName.deadLetters]: outcome.stored });
    deps.onOutcome?.({ ...outcome, messages: messages.length });
    return { batchItemFailures: [] };
  };
}
