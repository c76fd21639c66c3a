import type { CheckpointConfigInput, RuntimeLimitsInput } from '../core/config.js';
import { sinksOf, type JobDefinition } from '../core/definition.js';
import type { DeadLetter, JobRecord } from '../core/ports.js';
import { EmbeddedRuntime, type RuntimeFaults } from '../embedded/runtime.js';

/**
 * `cairn/testing`: run a job over given events in a unit test and get what it committed. The
 * embedded runtime in memory on a virtual clock (no wall time, nothing on disk), the same
 * engine `cairn run` and the Lambdas use; the input is bounded, so the run ends with a final
 * checkpoint and every sink's output is committed.
 */

export interface TestRunOptions {
  /** Overrides of the job's own checkpoint config. */
  readonly checkpoint?: CheckpointConfigInput;
  readonly limits?: RuntimeLimitsInput;
  /** Faults to inject (a test's crash points, duplicate deliveries ...). */
  readonly faults?: RuntimeFaults;
  /** A run that has not finished after this many loop turns is returned as it is (default 1,000,000). */
  readonly maxTurns?: number;
}

export interface TestRunResult {
  /** FINISHED, or FAILED with `job.failure`. */
  readonly status: JobRecord['status'];
  /** Committed output per sink uid, in commit order. */
  readonly output: Readonly<Record<string, unknown[]>>;
  /** Bad input and poison records, with their reasons. */
  readonly deadLetters: DeadLetter[];
  readonly job: JobRecord;
}

/**
 * Runs `definition` over `events`: objects are sent as their JSON, strings as they are (to test
 * bad input). Event i has the id `event:<i>`, so its dead letter is `ingress:event:<i>`.
 */
export async function runJob(definition: JobDefinition, events: readonly unknown[], options: TestRunOptions = {}): Promise<TestRunResult> {
  const runtime = await EmbeddedRuntime.open({
    job: definition.build(),
    clock: 'virtual',
    checkpoint: { ...definition.checkpoint, ...options.checkpoint },
    ...(options.limits ? { limits: options.limits } : {}),
    ...(definition.restartStrategy ? { restartStrategy: definition.restartStrategy } : {}),
    ...(options.faults ? { faults: options.faults } : {}),
  });
  try {
    runtime.push(events.map((event, i) => ({ id: `event:${i}`, body: typeof event === 'string' ? event : JSON.stringify(event) })));
    runtime.closeInput();
    const job = await runtime.run({ maxTurns: options.maxTurns ?? 1_000_000 });
    const output: Record<string, unknown[]> = {};
    for (const sink of sinksOf(definition.build())) output[sink] = await runtime.results(sink);
    return { status: job.status, output, deadLetters: await runtime.deadLetters(), job };
  } finally {
    runtime.close();
  }
}
