import type { CoordinatorDriver } from '../../shared/core/coordinator-driver.js';
import type { CoordinatorDecision, CoordinatorFacts } from '../../shared/core/protocol/coordinator.js';
import type { JobRecord } from '../../shared/core/ports.js';

/**
 * The Step Functions coordinator splits the driver's loop into states: a Decide task (read the
 * facts, run `decideNext`) and one task per transition (execute ONE decision). CoordinatorDriver
 * implements exactly these two halves as `readFacts` and `execute`, but keeps them private
 * (its public `step` runs both in a loop). Rather than write the fact reading and the
 * transitions' I/O a second time, the task functions call those two methods through this
 * narrow accessor. The check below fails loudly (and the tests with it) if the driver is
 * refactored; the proper fix is two public methods on the driver (`decide()` / `apply()`),
 * requested in the issue report.
 */

export type ExecutableDecision = Exclude<CoordinatorDecision, { type: 'wait' }>;

export interface DriverInternals {
  readFacts(job: JobRecord): Promise<CoordinatorFacts>;
  execute(decision: ExecutableDecision, job: JobRecord): Promise<void>;
}

interface Raw {
  readFacts?: unknown;
  execute?: unknown;
}

export function driverInternals(driver: CoordinatorDriver): DriverInternals {
  const raw = driver as unknown as Raw;
  const { readFacts, execute } = raw;
  if (typeof readFacts !== 'function' || typeof execute !== 'function') {
    throw new Error('CoordinatorDriver has no readFacts/execute any more: update functions/coordinator/driver-access.ts');
  }
  const facts = readFacts as (this: unknown, job: JobRecord) => Promise<CoordinatorFacts>;
  const exec = execute as (this: unknown, decision: ExecutableDecision, job: JobRecord) => Promise<void>;
  return {
    readFacts: (job) => facts.call(driver, job),
    execute: (decision, job) => exec.call(driver, decision, job),
  };
}
