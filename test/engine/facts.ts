import type { JobRecord } from '../../shared/core/ports.js';
import { initialJob, type CoordinatorFacts } from '../../shared/core/protocol/coordinator.js';

/** Coordinator facts for decision tests: a fresh job at T0, nothing pending; override any part. */

export const T0 = 1_000_000;

export function facts(overrides: Partial<Omit<CoordinatorFacts, 'job'>> & { job?: Partial<JobRecord> } = {}): CoordinatorFacts {
  const { job, ...rest } = overrides;
  return {
    now: T0,
    job: { ...initialJob(T0), ...job },
    pending: [],
    acks: new Map(),
    expectedAcks: 4,
    ingestedTotal: 0,
    manualTriggerRequested: false,
    sourcesFinished: false,
    idle: false,
    lastCompletedTrigger: undefined,
    failureSignal: undefined,
    ...rest,
  };
}
