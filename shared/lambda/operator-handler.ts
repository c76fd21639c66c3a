import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { CheckpointConfig, RuntimeLimits } from '../core/config.js';
import { handleOperatorBatch, type BatchMessage } from '../core/instance/handler.js';
import type { StepFaults } from '../core/instance/step.js';
import type { JobGraph } from '../core/job.js';
import { isChannelMessage, parseInstanceId, type InstanceMessage } from '../core/messages.js';
import type { Clock, DeadLetter, DeadLetterStore, QueueTransport, SourceLog, StateStore } from '../core/ports.js';
import { Topology } from '../core/topology.js';
import { receiveCountOf, queueNameOf, truncatePayload, type Rejection } from './sqs-records.js';
import { MetricName, publishCounts, quietTelemetry, type Telemetry } from './telemetry.js';

/**
 * The operator Lambda: an SQS FIFO event source delivers up to 10 messages, possibly of
 * several message groups (= operator instances). Each group runs as one atomic step
 * (handleOperatorBatch); a failing group reports only its own messages in batchItemFailures
 * (ReportBatchItemFailures), so the other groups move on.
 *
 * A message the engine cannot even address never blocks its group: a body that is not JSON
 * (`malformed-json`), not a Cairn message (`schema-violation`), or addressed to an instance or
 * channel this job does not have (`unknown-operator`) goes to the dead-letter store with the
 * reason and is reported as processed.
 */

export interface OperatorHandlerDeps {
  readonly job: JobGraph | Topology;
  readonly config: CheckpointConfig;
  readonly limits: RuntimeLimits;
  readonly state: StateStore;
  readonly log: SourceLog;
  readonly transport: QueueTransport;
  readonly deadLetters: DeadLetterStore;
  readonly clock?: Clock;
  /** Fault hooks of the test schedules (never set in production). */
  readonly faults?: StepFaults;
  readonly telemetry?: Telemetry;
  /** Observer of every invocation (the local runner's counters, tests). */
  readonly onOutcome?: (outcome: OperatorInvocationOutcome) => void;
}

export interface OperatorInvocationOutcome {
  readonly messages: number;
  readonly records: number;
  readonly duplicatesDropped: number;
  readonly fenced: number;
  readonly late: number;
  /** Dead letters written by this invocation: poison records plus rejected messages. */
  readonly deadLetters: number;
  readonly rejected: readonly DeadLetter[];
  readonly stepFailures: number;
  readonly failedIds: readonly string[];
  readonly errors: readonly { readonly instance: string; readonly error: Error }[];
}

export type OperatorHandler = (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;

const MESSAGE_TYPES = new Set(['data', 'barrier', 'poll', 'inject-barrier', 'tick']);

export function createOperatorHandler(deps: OperatorHandlerDeps): OperatorHandler {
  const topology = deps.job instanceof Topology ? deps.job : new Topology(deps.job);
  const instances = new Set(topology.allInstances());
  const clock = deps.clock ?? { now: () => Date.now() };
  const { logger, metrics } = deps.telemetry ?? quietTelemetry;
  const stepDeps = {
    topology,
    config: deps.config,
    limits: deps.limits,
    state: deps.state,
    log: deps.log,
    transport: deps.transport,
    clock,
    ...(deps.faults ? { faults: deps.faults } : {}),
  };

  /** An addressable engine message, or the reason it is not. */
  const classify = (record: SQSRecord): { ok: true; message: BatchMessage } | { ok: false; rejection: Rejection } => {
    const queue = queueNameOf(record) ?? 'unknown';
    const reject = (reason: DeadLetter['reason'], message: string, vertex = queue): { ok: false; rejection: Rejection } => ({
      ok: false,
      rejection: { id: `queue:${queue}:${record.messageId}`, reason, message, vertex, payload: truncatePayload(record.body) },
    });
    let body: unknown;
    try {
      body = JSON.parse(record.body);
    } catch (error) {
      return reject('malformed-json', `malformed JSON: ${(error as Error).message}`);
    }
    const m = body as Partial<Record<string, unknown>> | null;
    if (typeof m !== 'object' || m === null || Array.isArray(m) || !MESSAGE_TYPES.has(m.type as string) || typeof m.gen !== 'number' || typeof m.to !== 'string') {
      return reject('schema-violation', 'not a Cairn message: expected an object with type, gen and to');
    }
    const message = m as unknown as InstanceMessage;
    if (!instances.has(message.to)) return reject('unknown-operator', `no operator instance '${message.to}' in job '${topology.graph.name}'`);
    const { vertexId, index } = parseInstanceId(message.to);
    if (isChannelMessage(message)) {
      const vertex = topology.vertex(vertexId);
      if (typeof message.from !== 'string' || typeof message.seq !== 'number' || !vertex || !topology.inputsOf(vertex, index).includes(message.from)) {
        return reject('unknown-operator', `no channel ${String(message.from)}>${message.to} in job '${topology.graph.name}'`, vertexId);
      }
    }
    return { ok: true, message: { id: record.messageId, groupId: message.to, receiveCount: receiveCountOf(record), body: message } };
  };

  return async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const accepted: BatchMessage[] = [];
    const rejectedIds: string[] = [];
    let rejected: DeadLetter[] = [];
    for (const record of event.Records) {
      const result = classify(record);
      if (result.ok) accepted.push(result.message);
      else {
        rejectedIds.push(record.messageId);
        rejected.push({ ...result.rejection, at: clock.now() });
      }
    }

    const failed = new Set<string>();
    if (rejected.length > 0) {
      try {
        await deps.deadLetters.put(rejected);
        for (const letter of rejected) logger.warn('message rejected to the dead-letter store', { reason: letter.reason, detail: letter.message, id: letter.id });
      } catch (error) {
        // Not stored: SQS delivers them again (and past maxReceiveCount, to the queue's DLQ).
        for (const id of rejectedIds) failed.add(id);
        rejected = [];
        logger.error('could not store dead letters', { error: (error as Error).message });
      }
    }

    const outcome = accepted.length > 0 ? await handleOperatorBatch(stepDeps, accepted) : { failedIds: [], errors: [], stats: [] };
    for (const id of outcome.failedIds) failed.add(id);
    for (const { instance, error } of outcome.errors) logger.error('step failed', { instance, error: `${error.name}: ${error.message}` });

    const sum = (key: 'records' | 'duplicates' | 'fenced' | 'late' | 'deadLetters'): number => outcome.stats.reduce((s, st) => s + st[key], 0);
    const result: OperatorInvocationOutcome = {
      messages: event.Records.length,
      records: sum('records'),
      duplicatesDropped: sum('duplicates'),
      fenced: sum('fenced'),
      late: sum('late'),
      deadLetters: sum('deadLetters') + rejected.length,
      rejected,
      stepFailures: outcome.errors.length,
      failedIds: [...failed],
      errors: outcome.errors,
    };
    publishCounts(metrics, {
      [MetricName.records]: result.records,
      [MetricName.duplicatesDropped]: result.duplicatesDropped,
      [MetricName.fenced]: result.fenced,
      [MetricName.late]: result.late,
      [MetricName.deadLetters]: result.deadLetters,
      [MetricName.stepFailures]: result.stepFailures,
      [MetricName.failedMessages]: result.failedIds.length,
    });
    deps.onOutcome?.(result);
    return { batchItemFailures: result.failedIds.map((itemIdentifier) => ({ itemIdentifier })) };
  };
}
