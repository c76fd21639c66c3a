import { expect } from 'vitest';
import type { CheckpointConfigInput } from '../../shared/core/config.js';
import { INGRESS_QUEUE } from '../../shared/core/redrive.js';
import type { LocalCloudFaults, LocalCloudJob } from '../../shared/aws/runner/index.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';
import { SUITE_RESTARTS, type FaultInjector } from '../faults/fault-schedule.js';
import { canonical, finalState, sequenceEvents, sequenceJob } from '../faults/sequence-job.js';
import { localJob } from './helpers.js';

/**
 * The embedded fault suite's sequence job and seeded schedules (planFor / FaultInjector), run
 * on the local cloud in real time: crashes before commit and between the DynamoDB commit and
 * the SQS send (the failed batch comes back after the visibility timeout), operator throws,
 * duplicate and delayed deliveries, a stalled instance past the checkpoint timeout, coordinator
 * crashes, and DynamoDB throttling injected as SDK middleware (the adapters must retry).
 */

export const KEYS = Number(process.env.CAIRN_CLOUD_FAULT_KEYS ?? 4);
export const PER_KEY = Number(process.env.CAIRN_CLOUD_FAULT_PER_KEY ?? 15);
export const POISON = 1;

/** Throws a ThrottlingException (before the request is sent) once every `every` calls; the SDK's standard retry strategy retries it. */
export class Throttler {
  calls = 0;
  throttled = 0;
  constructor(readonly every: number) {}

  attach(client: object): void {
    const stack = (client as { middlewareStack: { add(m: unknown, o: { step: string; name: string; override: boolean }): void } }).middlewareStack;
    stack.add(
      (next: (args: unknown) => Promise<unknown>) => (args: unknown) => {
        if (++this.calls % this.every === 0) {
          this.throttled++;
          const error = Object.assign(new Error('Rate of requests exceeds the allowed throughput (injected)'), {
            name: 'ThrottlingException',
            $fault: 'client',
            $metadata: { httpStatusCode: 400 },
          });
          return Promise.reject(error);
        }
        return next(args);
      },
      { step: 'deserialize', name: 'cairnInjectedThrottle', override: true },
    );
  }
}

/**
 * The dead letters a faulty run shares with its fault-free oracle: all but the operator messages
 * SQS redrove to a dead-letter queue after maxReceiveCount receives (`redriven:<vertex>:<id>`).
 * Those are transport incidents, not input: a transient condition (a delayed message's gap, a
 * slow restore) that outlasts the test-sized receive budget (1 s visibility x 10 receives) on a
 * loaded machine. The dead-letter consumer reports the failure, the rollback replays what was
 * lost, and `expectSameDeadLetters` asks for that rollback; output and state are compared as
 * ever. A redriven ingress message stays compared: it is an event that never reached the log.
 */
export function inputDeadLetters(ids: readonly string[]): string[] {
  return ids.filter((id) => !id.startsWith('redriven:') || id.startsWith(`redriven:${INGRESS_QUEUE}:`));
}

/** The run's dead letters are the oracle's, besides redriven operator messages, each incident covered by a rollback. */
export function expectSameDeadLetters(run: FaultRun, oracle: Pick<FaultRun, 'deadLetterIds'>, context: string): void {
  const input = inputDeadLetters(run.deadLetterIds);
  expect(input, context).toEqual(oracle.deadLetterIds);
  if (input.length < run.deadLetterIds.length) expect(run.restarts, `${context}: redriven ${JSON.stringify(run.deadLetterIds.filter((id) => !input.includes(id)))}`).toBeGreaterThan(0);
}

export interface FaultRun {
  readonly status: string;
  readonly output: ReturnType<typeof canonical>;
  readonly state: Record<string, unknown>;
  readonly deadLetterIds: string[];
  readonly deadLetterReasons: string[];
  readonly counters: LocalCloudJob['counters'];
  readonly restarts: number;
  /** Restarts that restored a completed checkpoint (from version records), not the empty state of checkpoint 0. */
  readonly restartsToLaterCheckpoint: number;
  readonly errors: string[];
  /** Payloads written to S3 (spilled values), by every client of the run. */
  readonly s3Puts: number;
  readonly ms: number;
  /** With `keepLog`: the whole source log as the run left it, per partition the events in log order (else empty). */
  readonly log: ReadonlyArray<readonly unknown[]>;
}

/**
 * Seeds use checkpoint intervals and timeouts of real time (the emulators are real). The timeout
 * is wall time, as in the product: 8 s, so that a checkpoint on a loaded machine (two CPU-bound
 * processes beside the suite: a round through spilled payloads and throttled calls took over
 * the 2.5 s it was) completes, and seeds with no tolerable failure do not roll back forever; the
 * schedule's stall (twice the timeout) still outlives it.
 */
export function realTime(seed: number): Partial<CheckpointConfigInput> {
  // Retention on every checkpoint, every 2nd or every 3rd (pruneDue), by seed.
  const intervalMs = 100 + (seed % 4) * 100;
  return { intervalMs, timeoutMs: 8000, pruneIntervalMs: (seed % 3) * intervalMs };
}

export async function runOnce(
  checkpoint: CheckpointConfigInput,
  options: {
    injector?: FaultInjector;
    throttler?: Throttler;
    spillThresholdBytes?: number;
    /** The ingress the stack deploys (standard: no order, no producer dedup) instead of FIFO. */
    ingress?: 'fifo' | 'standard';
    /** Push every event twice, as a producer whose SDK retried a SendMessage that had succeeded. */
    resend?: boolean;
    /** Keep the whole source log (no truncation) and return it, for an oracle over its order. */
    keepLog?: boolean;
    /** Push the events packed into ingress batch messages (IngressProducer's packing). */
    pack?: boolean;
    /** When the sources read the log (RuntimeLimits `sourceReads`; default auto: at barriers here). */
    sourceReads?: 'append' | 'checkpoint';
  } = {},
): Promise<FaultRun> {
  const started = Date.now();
  const { injector, throttler, spillThresholdBytes, ingress = 'fifo', resend = false, keepLog = false, pack = false, sourceReads } = options;
  let faults: LocalCloudFaults | undefined;
  if (injector) {
    const f = injector.faults();
    faults = {
      ...(f.step ? { step: f.step } : {}),
      ...(f.transport ? { transport: f.transport } : {}),
      ...(f.coordinator ? { coordinator: f.coordinator } : {}),
      onTurn: async (job) => {
        // The schedule's "stall one counter instance past the checkpoint timeout", on SQS: the
        // event source holds that message group back (ChangeMessageVisibility). Operator
        // requests go to the job table, as `cairn ... --target local-cloud` sends them.
        const shim = {
          config: job.config,
          clock: job.clock,
          checkpoints: job.checkpoints,
          queue: (v: string) => (v === 'count' ? { pauseGroup: (g: string, until: number) => job.stallGroup(g, until) } : undefined),
        };
        await f.onTurn?.(shim as unknown as EmbeddedRuntime);
      },
    };
  }
  const job = await localJob({
    job: sequenceJob(),
    checkpoint: keepLog ? { ...checkpoint, truncateLog: false } : checkpoint,
    limits: { maxReceiveCount: 10, isolatePoisonAfterReceives: 3, sourceReadBatch: 10, ...(sourceReads ? { sourceReads } : {}) },
    visibilityTimeoutSeconds: 1,
    ingress,
    restartStrategy: SUITE_RESTARTS,
    ...(faults ? { faults } : {}),
    ...(throttler ? { onClients: (clients) => throttler.attach(clients.dynamo) } : {}),
    ...(spillThresholdBytes === undefined ? {} : { spillThresholdBytes }),
  });
  try {
    const events = sequenceEvents(KEYS, PER_KEY, POISON);
    await job.push(events, undefined, { pack });
    if (resend) await job.push(events, undefined, { pack });
    job.closeInput();
    const record = await job.run({ stallMs: 30_000 });
    const letters = await job.deadLetters();
    return {
      status: record.status,
      output: canonical(await job.results('validated')),
      state: await finalState(job.state, KEYS),
      deadLetterIds: letters.map((d) => d.id).sort(),
      deadLetterReasons: letters.map((d) => d.reason),
      counters: { ...job.counters },
      restarts: record.restarts.length,
      restartsToLaterCheckpoint: record.restarts.filter((r) => r.toCheckpoint > 0).length,
      errors: [...job.lastErrors],
      s3Puts: job.requestSnapshot()['S3.PutObject'] ?? 0,
      ms: Date.now() - started,
      log: keepLog ? await sourceLogOf(job) : [],
    };
  } finally {
    await job.destroy();
  }
}

async function sourceLogOf(job: LocalCloudJob): Promise<unknown[][]> {
  const partitions: unknown[][] = [];
  for (let p = 0; p < (job.topology.sources()[0]?.parallelism ?? 1); p++) {
    const events: unknown[] = [];
    for (let page = await job.stores.sourceLog.read(p, 0, 500); page.length > 0; page = await job.stores.sourceLog.read(p, events.length, 500)) {
      events.push(...page.map((e) => e.event));
    }
    partitions.push(events);
  }
  return partitions;
}

/**
 * The fault-free oracle of a run over an unordered ingress: the sequence job run embedded (on a
 * virtual clock, no faults) over the events in the order this run's source log holds them, each
 * partition in its log order. Exactly-once means the faulty run ends exactly like it.
 */
export async function logOrderOracle(log: ReadonlyArray<readonly unknown[]>): Promise<Pick<FaultRun, 'output' | 'state' | 'deadLetterIds'>> {
  const runtime = await EmbeddedRuntime.open({
    job: sequenceJob(),
    clock: 'virtual',
    checkpoint: { intervalMs: 200 },
    limits: { maxReceiveCount: 10, isolatePoisonAfterReceives: 3, sourceReadBatch: 10 },
    restartStrategy: SUITE_RESTARTS,
  });
  try {
    runtime.push(log.flatMap((events, p) => events.map((event, offset) => ({ id: `p${p}-${offset}`, body: JSON.stringify(event) }))));
    runtime.closeInput();
    const record = await runtime.run({ maxTurns: 1_000_000 });
    if (record.status !== 'FINISHED') throw new Error(`the log-order oracle ended ${record.status}`);
    return {
      output: canonical(await runtime.results('validated')),
      state: await finalState(runtime.state, KEYS),
      deadLetterIds: (await runtime.deadLetters()).map((d) => d.id).sort(),
    };
  } finally {
    runtime.close();
  }
}
