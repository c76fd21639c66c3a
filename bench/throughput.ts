import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { examples } from '../examples/index.js';
import type { IngressMessage } from '../shared/core/ingest.js';
import { EmbeddedRuntime } from '../shared/embedded/runtime.js';

/**
 * Throughput of a realistic keyed job (an example from examples/) over N events on the
 * embedded runtime with the real clock: checkpointing every `intervalMs` vs checkpointing off
 * (`enabled: false`: the job still ends with one final checkpoint, which publishes the
 * transactional sink's output).
 *
 * The events are fed like a producer would: in chunks, keeping at most `backlog` events in
 * the ingress queue, then the input is closed and the job runs to FINISHED. The clock runs
 * from the first push to FINISHED (final checkpoint and sink commit included); the processing
 * phase (first push -> final checkpoint triggered) and the final phase are also reported apart,
 * because the final sink commit of a job that never checkpointed carries the whole run's
 * staged output.
 */

export interface ThroughputOptions {
  readonly example?: string;
  readonly events: number;
  readonly checkpointing: boolean;
  readonly intervalMs?: number;
  readonly durable?: boolean;
  /** Events pushed at once when the ingress backlog runs low. */
  readonly chunk?: number;
  readonly seed?: number;
}

export interface ThroughputResult {
  readonly example: string;
  readonly events: number;
  readonly checkpointing: boolean;
  readonly intervalMs: number | undefined;
  readonly durable: boolean;
  /** First push -> FINISHED. */
  readonly wallMs: number;
  readonly eventsPerSec: number;
  /** First push -> the final checkpoint is triggered (every event processed). */
  readonly processingMs: number;
  readonly processingEventsPerSec: number;
  /** The final checkpoint: trigger -> FINISHED (includes publishing the transactional sink's output). */
  readonly finalPhaseMs: number;
  readonly checkpointsCompleted: number;
  readonly meanCheckpointMs: number;
  readonly bytesWritten: number;
  readonly dbWrites: number;
  readonly records: number;
  readonly invocations: number;
  readonly sinkRecords: number;
}

export async function runThroughput(options: ThroughputOptions): Promise<ThroughputResult> {
  const exampleName = options.example ?? 'account-balance';
  const example = examples[exampleName];
  if (!example) throw new Error(`unknown example ${exampleName}`);
  const durable = options.durable ?? true;
  const chunk = options.chunk ?? 2_000;
  const intervalMs = options.intervalMs ?? 1_000;
  const dir = durable ? mkdtempSync(join(tmpdir(), 'cairn-bench-tput-')) : undefined;

  const events: IngressMessage[] = example.generate(options.events, options.seed ?? 42).map((e) => ({ id: e.id, body: JSON.stringify(e.event) }));
  let finalTriggeredAt: number | undefined;
  let finishedAt: number | undefined;
  const runtime = await EmbeddedRuntime.open({
    job: example.build(),
    onTransition: (decision) => {
      if (decision.type === 'trigger' && decision.trigger === 'final') finalTriggeredAt = performance.now();
      if (decision.type === 'finish') finishedAt = performance.now();
    },
    clock: 'real',
    checkpoint: options.checkpointing ? { ...example.checkpoint, enabled: true, trigger: 'time', intervalMs } : { ...example.checkpoint, enabled: false },
    ...(dir ? { stateDir: dir } : {}),
  });
  try {
    let pushed = 0;
    const feed = (): void => {
      if (pushed >= events.length) return;
      if (pushed - runtime.counters.ingested - runtime.counters.ingestDuplicates - runtime.counters.deadLetters > chunk / 2) return;
      const next = events.slice(pushed, pushed + chunk);
      runtime.push(next);
      pushed += next.length;
      if (pushed >= events.length) runtime.closeInput();
    };
    const start = performance.now();
    feed();
    const job = await runtime.run({ onTurn: feed });
    const wallMs = performance.now() - start;
    const processingMs = (finalTriggeredAt ?? start) - start;
    if (job.status !== 'FINISHED') throw new Error(`job ended ${job.status}: ${job.failure ?? ''}`);
    if (runtime.counters.stepFailures > 0) throw new Error(`step failures: ${runtime.lastErrors.join('; ')}`);
    const completed = (await runtime.checkpoints.listCheckpoints()).filter((c) => c.status === 'COMPLETED');
    const durations = completed.map((c) => (c.finishedAt ?? c.triggeredAt) - c.triggeredAt);
    const sinkRecords = (await runtime.results(example.sink)).length;
    return {
      example: exampleName,
      events: events.length,
      checkpointing: options.checkpointing,
      intervalMs: options.checkpointing ? intervalMs : undefined,
      durable,
      wallMs,
      eventsPerSec: events.length / (wallMs / 1000),
      processingMs,
      processingEventsPerSec: events.length / (processingMs / 1000),
      finalPhaseMs: (finishedAt ?? start) - (finalTriggeredAt ?? start),
      checkpointsCompleted: completed.length,
      meanCheckpointMs: durations.reduce((s, d) => s + d, 0) / Math.max(1, durations.length),
      bytesWritten: runtime.db.bytesWritten,
      dbWrites: runtime.db.writes,
      records: runtime.counters.records,
      invocations: runtime.counters.invocations,
      sinkRecords,
    };
  } finally {
    runtime.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
