/**
 * Named error classes of the engine. Callers branch on `instanceof`, never on messages.
 */

/**
 * Every class names itself with a literal (`override readonly name = '...'`), never with
 * `new.target.name`: the Lambda bundles are minified, which renames classes, and the Step
 * Functions catchers and retriers match errors by this name.
 */
export class CairnError extends Error {
  override readonly name: string = 'CairnError';
}

/** A job definition that cannot run (bad wiring, bad config). Thrown at build time. */
export class JobDefinitionError extends CairnError {
  override readonly name = 'JobDefinitionError';
}

/** Checkpoint configuration outside its allowed range. */
export class CheckpointConfigError extends CairnError {
  override readonly name = 'CheckpointConfigError';
}

/** A commit was rejected because the job moved to a newer generation (rollback happened). */
export class GenerationFencedError extends CairnError {
  override readonly name = 'GenerationFencedError';
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`commit fenced: step ran in generation ${expected} but the job is in generation ${actual}`);
  }
}

/** Optimistic concurrency: another step of the same instance committed first. */
export class ConcurrentStepError extends CairnError {
  override readonly name = 'ConcurrentStepError';
  constructor(
    readonly instance: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(`instance ${instance} moved from version ${expectedVersion} to ${actualVersion} during the step`);
  }
}

/** A message of a newer generation arrived before the instance was restored into it. */
export class InstanceNotReadyError extends CairnError {
  override readonly name = 'InstanceNotReadyError';
}

/** A channel sequence number skipped ahead: an earlier message has not arrived yet. */
export class ChannelGapError extends CairnError {
  override readonly name = 'ChannelGapError';
  constructor(
    readonly channel: string,
    readonly expected: number,
    readonly got: number,
  ) {
    super(`channel ${channel}: expected sequence ${expected}, got ${got}`);
  }
}

/** Bad input: every such error names the reason that ends up on the dead letter. */
export class BadInputError extends CairnError {
  override readonly name = 'BadInputError';
  constructor(
    readonly reason: DeadLetterReason,
    message: string,
  ) {
    super(message);
  }
}

export type DeadLetterReason =
  | 'malformed-json'
  | 'schema-violation'
  | 'oversize-record'
  | 'unknown-operator'
  | 'operator-error'
  | 'max-receive-count'
  /** SQS moved the message to its queue's dead-letter queue after maxReceiveCount receives (the DLQ consumer kept it here). */
  | 'redriven'
  /** An event-time record behind the watermark (kept, until side outputs exist; never dropped silently). */
  | 'late';

/** A second process tried to open a state directory that is in use. */
export class StateDirectoryLockedError extends CairnError {
  override readonly name = 'StateDirectoryLockedError';
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`state directory ${dir} is in use by process ${pid}; stop that process first or pass another --state-dir`);
  }
}

/** A checkpoint id that is not (or no longer) restorable. */
export class CheckpointNotFoundError extends CairnError {
  override readonly name = 'CheckpointNotFoundError';
}

/** An operator request the job cannot take in its current status (e.g. pausing a FINISHED job). */
export class JobNotControllableError extends CairnError {
  override readonly name = 'JobNotControllableError';
}

/** The job record kept changing under an operator request: too many concurrent writers. */
export class JobUpdateConflictError extends CairnError {
  override readonly name = 'JobUpdateConflictError';
}

/** Fault injected by a test's fault schedule. Never thrown in production paths. */
export class InjectedFault extends CairnError {
  override readonly name = 'InjectedFault';
}

/**
 * A recovery step of an attempt that is no longer the current one: a newer attempt (a new
 * generation) took over, or the recovery already finished. The step did nothing; the attempt
 * ends. `name` is a literal so that it survives minified bundles (Step Functions catches it).
 */
export class RecoverySupersededError extends CairnError {
  override readonly name = 'RecoverySupersededError';
  constructor(
    readonly attemptGeneration: number,
    readonly jobGeneration: number | undefined,
  ) {
    super(
      jobGeneration === attemptGeneration
        ? `recovery attempt of generation ${attemptGeneration} is over: the recovery already finished`
        : `recovery attempt of generation ${attemptGeneration} was superseded by generation ${jobGeneration ?? 'none'}`,
    );
  }
}

/**
 * A read of source-log offsets that retention has removed: below every retained checkpoint's
 * offsets, so no restore of a retained checkpoint reads there (a restore to checkpoint 0, a
 * replay from the very beginning, after the log was truncated, does).
 */
export class SourceLogTruncatedError extends CairnError {
  override readonly name = 'SourceLogTruncatedError';
  constructor(
    readonly partition: number,
    readonly from: number,
    readonly retainedFrom: number,
  ) {
    super(`source log partition ${partition}: offset ${from} was removed by retention (entries start at ${retainedFrom})`);
  }
}

/**
 * Appends to one source partition kept losing the race for its head (other ingest invocations
 * appended first) `attempts` times in a row. Nothing of the failed chunk was appended: the
 * caller leaves those events for redelivery (appends are idempotent by event id).
 */
export class AppendContentionError extends CairnError {
  override readonly name = 'AppendContentionError';
  constructor(
    readonly partition: number,
    readonly attempts: number,
  ) {
    super(`source log partition ${partition}: the head moved during ${attempts} append attempts in a row (concurrent appenders); the events are left for redelivery`);
  }
}
