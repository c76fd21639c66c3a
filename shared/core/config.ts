import { z } from 'zod';
import { CheckpointConfigError } from './errors.js';
import { DEFAULT_CHECKPOINT_HISTORY } from './retention.js';

/**
 * Checkpointing configuration with Flink's concepts; every default is written here once.
 * Times are milliseconds.
 */
export const checkpointConfigSchema = z
  .object({
    /** Off disables checkpoints entirely (no recovery point: a failure restarts from the beginning). */
    enabled: z.boolean().default(true),
    /** What starts checkpoint N+1. */
    trigger: z.enum(['time', 'count', 'continuous', 'manual']).default('time'),
    /** Time trigger: one checkpoint every `intervalMs`. Flink has no default; ours is 1 s. */
    intervalMs: z.number().int().positive().default(1000),
    /** Count trigger: one checkpoint every `everyRecords` records ingested at the sources. */
    everyRecords: z.number().int().positive().default(10_000),
    /** A checkpoint not complete within this time is aborted (Flink: 10 min). At most a day: acknowledgements expire after ACK_RETENTION_MS. */
    timeoutMs: z.number().int().positive().max(86_400_000, 'timeoutMs is at most 86400000 (a day)').default(600_000),
    /** Minimum pause between the end of one checkpoint and the start of the next (Flink: 0). */
    minPauseMs: z.number().int().nonnegative().default(0),
    /** Checkpoints in progress at once (Flink: 1). */
    maxConcurrent: z.number().int().positive().default(1),
    /** Consecutive checkpoint failures tolerated before the job rolls back (Flink: 0). */
    tolerableFailures: z.number().int().nonnegative().default(0),
    /** exactly-once aligns barriers; at-least-once lets records overtake them. */
    mode: z.enum(['exactly-once', 'at-least-once']).default('exactly-once'),
    /** aligned, unaligned, or aligned until `alignmentTimeoutMs` passes and then unaligned. */
    alignment: z.enum(['aligned', 'unaligned', 'aligned-with-timeout']).default('aligned'),
    /** Used with alignment 'aligned-with-timeout' (Flink: 0 = always unaligned once enabled). */
    alignmentTimeoutMs: z.number().int().nonnegative().default(30_000),
    /** Completed checkpoints kept restorable (Flink: 1). */
    retained: z.number().int().positive().default(3),
    /**
     * Finished checkpoint records kept for `cairn status` / `cairn checkpoints` besides the
     * retained and pending ones; older records (and their acks) are deleted when a checkpoint
     * completes (shared/core/retention.ts).
     */
    history: z.number().int().nonnegative().default(DEFAULT_CHECKPOINT_HISTORY),
    /**
     * Source-log entries that no retained checkpoint needs are deleted when a checkpoint
     * completes. `cairn run` keeps them (false): it checks the output against the oracle over
     * every event the log ever took.
     */
    truncateLog: z.boolean().default(true),
    /**
     * Retention (pruning versions, the log, change records, checkpoint metadata) runs about this
     * often, on every ceil(pruneIntervalMs / intervalMs)-th completed checkpoint (shared/core/retention.ts
     * `pruneDue`), and on the final one: each run has a fixed cost in reads and writes, which at
     * a 1 s interval would be most of the coordinator's bill. Storage stays bounded, by the
     * retained checkpoints plus this much. 0: on every completed checkpoint.
     */
    pruneIntervalMs: z.number().int().nonnegative().default(60_000),
  })
  .strict();

export type CheckpointConfigInput = z.input<typeof checkpointConfigSchema>;
export type CheckpointConfig = z.output<typeof checkpointConfigSchema>;

export function parseCheckpointConfig(input: CheckpointConfigInput = {}): CheckpointConfig {
  const parsed = checkpointConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new CheckpointConfigError(`invalid checkpoint config: ${z.prettifyError(parsed.error)}`);
  }
  const config = parsed.data;
  if (config.alignment !== 'aligned' && config.maxConcurrent !== 1) {
    // Flink has the same restriction: channel state of overlapping unaligned checkpoints
    // would interleave.
    throw new CheckpointConfigError('unaligned checkpoints require maxConcurrent = 1');
  }
  if (config.alignment !== 'aligned' && config.mode === 'at-least-once') {
    throw new CheckpointConfigError('unaligned checkpoints only make sense with mode exactly-once');
  }
  return config;
}

/** Runtime limits that mirror the AWS services, so the embedded runtime fails where AWS would. */
export const runtimeLimitsSchema = z
  .object({
    /** SQS message body limit (256 KiB; SQS now allows 1 MiB). Records are packed up to this. */
    maxMessageBytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024),
    /** One serialized record larger than this is bad input and goes to the dead-letter queue. */
    maxRecordBytes: z
      .number()
      .int()
      .positive()
      .default(200 * 1024),
    /** Keep a partly filled output buffer this long before sending it (0 = send at step end). */
    flushTimeoutMs: z.number().int().nonnegative().default(0),
    /** Lambda SQS batch size for FIFO queues (max 10). */
    batchSize: z.number().int().min(1).max(10).default(10),
    /** SQS visibility timeout: a failed batch is redelivered after this. */
    visibilityTimeoutMs: z.number().int().positive().default(30_000),
    /** SQS redrive: after this many receives the message moves to the dead-letter queue. */
    maxReceiveCount: z.number().int().min(2).default(5),
    /** From this receive on, a failing step isolates the failing record instead of failing the batch. */
    isolatePoisonAfterReceives: z.number().int().min(1).default(3),
    /** Source instance: log entries read per step. */
    sourceReadBatch: z.number().int().positive().default(500),
    /**
     * When a source instance reads the log (shared/core/ingest.ts ingestPollsSources): `append`,
     * told by ingest after every append (a step per append: the lowest latency before a sink that
     * shows output at once); `checkpoint`, at every checkpoint barrier only (one step per
     * checkpoint, whatever the rate: a transactional sink shows output when the checkpoint
     * completes anyway); `auto`, `checkpoint` when a time or continuous trigger takes checkpoints
     * and every sink is transactional, else `append`.
     */
    sourceReads: z.enum(['auto', 'append', 'checkpoint']).default('auto'),
    /** State values above this size spill to the blob store (DynamoDB items are limited to 400 KB). */
    maxInlineValueBytes: z
      .number()
      .int()
      .positive()
      .default(300 * 1024),
  })
  .strict();

export type RuntimeLimitsInput = z.input<typeof runtimeLimitsSchema>;
export type RuntimeLimits = z.output<typeof runtimeLimitsSchema>;

export function parseRuntimeLimits(input: RuntimeLimitsInput = {}): RuntimeLimits {
  return runtimeLimitsSchema.parse(input);
}
