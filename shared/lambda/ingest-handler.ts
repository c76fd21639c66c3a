import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { CheckpointConfig, RuntimeLimits } from '../core/config.js';
import { ingestBatch, ingestPollsSources } from '../core/ingest.js';
import type { JobGraph } from '../core/job.js';
import type { CheckpointStore, Clock, DeadLetterStore, JobRecord, QueueTransport, SourceLog } from '../core/ports.js';
import { isAsleep, wakeExecutionName } from '../core/protocol/coordinator-lease.js';
import { Topology } from '../core/topology.js';
import { withRestOfGroupFailed } from './sqs-records.js';
import { MetricName, publishCounts, quietTelemetry, type Telemetry } from './telemetry.js';

/**
 * The ingest Lambda: the ingress queue (standard or FIFO; the user pushes to it) delivers
 * events; each is validated and appended exactly once to the source's partitioned log
 * (ingestBatch, by event id: the producer's `CairnEventId` message attribute when it sets one,
 * so that a producer's retry of a SendMessage that went through is one event; else the SQS
 * messageId, stable across redeliveries), then the source
 * instances of the touched partitions are told to read. Bad events (malformed JSON, schema
 * violation, oversize) go to the dead-letter store with the reason and count as processed.
 * Messages of a partition whose append failed are reported in batchItemFailures (on a FIFO
 * ingress, with the rest of their message group, so nothing overtakes them). A coordinator that
 * sleeps (nothing to do) is woken once the events are in the log: the job record is read after
 * the append, so either this read sees it asleep, or its own check after falling asleep sees
 * the events (shared/core/protocol/coordinator-lease.ts).
 */

export interface IngestHandlerDeps {
  readonly job: JobGraph | Topology;
  readonly limits: RuntimeLimits;
  /** The job's checkpoint config: with it, whether ingest polls the sources follows `limits.sourceReads` (ingestPollsSources); without, it polls. */
  readonly config?: CheckpointConfig;
  readonly log: SourceLog;
  readonly deadLetters: DeadLetterStore;
  readonly transport: QueueTransport;
  /** Where the job's generation is read (the poll messages carry it). */
  readonly checkpoints: CheckpointStore;
  readonly clock?: Clock;
  /** Starts a coordinator execution of this name (CoordinatorWaker): events appended while the coordinator sleeps wake it. */
  readonly wake?: (name: string) => Promise<void>;
  /** Waits `ms` (real time in Lambda). */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly telemetry?: Telemetry;
  readonly onOutcome?: (outcome: IngestInvocationOutcome) => void;
}

export interface IngestInvocationOutcome {
  readonly messages: number;
  readonly appended: number;
  readonly duplicates: number;
  readonly deadLettered: number;
  readonly failedIds: readonly string[];
  readonly error?: Error;
}

/** Seconds an ingest waits for the first coordinator execution to create the job record (within the 30 s default function timeout). */
const FIRST_RECORD_WAITS = 15;

export type IngestHandler = (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;

/** The message attribute (String) a producer sets to give an event its own id: the ingest deduplicates by it. */
export const EVENT_ID_ATTRIBUTE = 'CairnEventId';

/** The event id of an ingress message: the producer's (EVENT_ID_ATTRIBUTE), else the SQS message id. */
export function eventIdOf(record: SQSRecord): string {
  const given = record.messageAttributes?.[EVENT_ID_ATTRIBUTE]?.stringValue;
  return given !== undefined && given !== '' ? given : record.messageId;
}

export function createIngestHandler(deps: IngestHandlerDeps): IngestHandler {
  const topology = deps.job instanceof Topology ? deps.job : new Topology(deps.job);
  const source = topology.sources()[0];
  if (!source) throw new Error(`job '${topology.graph.name}' has no source`);
  const clock = deps.clock ?? { now: () => Date.now() };
  const pollSources = deps.config ? ingestPollsSources(topology, deps.config, deps.limits) : true;
  const { logger, metrics } = deps.telemetry ?? quietTelemetry;

  const pause = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  /**
   * A job deployed a moment ago has no job record until its first coordinator execution creates
   * it: wake one (one wake-up per minute at most) and wait a little for the record, rather than
   * leave the events to a whole visibility timeout.
   */
  const firstJobRecord = async (): Promise<JobRecord | undefined> => {
    if (!deps.wake) return undefined;
    await deps.wake(`init-${Math.floor(clock.now() / 60_000)}`);
    for (let attempt = 0; attempt < FIRST_RECORD_WAITS; attempt++) {
      await pause(1_000);
      const job = await deps.checkpoints.getJob();
      if (job) return job;
    }
    return undefined;
  };

  return async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const records = event.Records;
    let outcome: IngestInvocationOutcome;
    try {
      const job = (await deps.checkpoints.getJob()) ?? (await firstJobRecord());
      if (!job) throw new Error(`job '${topology.graph.name}' is not initialized yet (no job record): the coordinator creates it`);
      const result = await ingestBatch(
        { source, generation: job.generation, running: job.status === 'RUNNING', pollSources, log: deps.log, deadLetters: deps.deadLetters, transport: deps.transport, limits: deps.limits, clock },
        records.map((r) => ({ id: eventIdOf(r), body: r.body })),
      );
      const failedEvents = new Set(result.failedIds);
      // Duplicates too: a redelivery after a failed wake-up must still wake it.
      if (result.appended > 0 || result.duplicates > 0) {
        // A rollback between reading the generation and the poll fences that poll off; the
        // recovery's own poll may have run before the append. Poll again in the new generation,
        // once it runs (a recovery still under way polls every source when it finishes).
        const now = await deps.checkpoints.getJob();
        if (now && deps.wake && isAsleep(now)) await deps.wake(wakeExecutionName(now));
        if (pollSources && result.appended > 0 && now?.status === 'RUNNING' && (now.generation !== job.generation || job.status !== 'RUNNING')) {
          await deps.transport.send(
            topology
              .instancesOf(source)
              .map((to) => ({ queue: source.id, groupId: to, dedupId: `g${now.generation}:ingest-poll:${to}:${clock.now()}`, body: { type: 'poll' as const, gen: now.generation, to } })),
          );
        }
      }
      outcome = {
        messages: records.length,
        appended: result.appended,
        duplicates: result.duplicates,
        deadLettered: result.deadLettered,
        failedIds: withRestOfGroupFailed(records, new Set(records.filter((r) => failedEvents.has(eventIdOf(r))).map((r) => r.messageId))),
      };
      if (result.deadLettered > 0) logger.warn('events rejected to the dead-letter store', { count: result.deadLettered });
    } catch (error) {
      // Nothing is known to be appended: every message comes back (appends are idempotent by id).
      logger.error('ingest failed', { error: (error as Error).message });
      outcome = { messages: records.length, appended: 0, duplicates: 0, deadLettered: 0, failedIds: records.map((r) => r.messageId), error: error as Error };
    }
    if (outcome.failedIds.length > 0) logger.warn('events not ingested, left for redelivery', { count: outcome.failedIds.length });
    publishCounts(metrics, {
      [MetricName.ingested]: outcome.appended,
      [MetricName.ingestDuplicates]: outcome.duplicates,
      [MetricName.deadLetters]: outcome.deadLettered,
      [MetricName.failedMessages]: outcome.failedIds.length,
    });
    deps.onOutcome?.(outcome);
    return { batchItemFailures: outcome.failedIds.map((itemIdentifier) => ({ itemIdentifier })) };
  };
}
