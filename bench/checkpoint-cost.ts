import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';
import { z } from 'zod';
import { initialInstanceRecord } from '../shared/core/instance/step.js';
import { instanceForKeyGroup, keyGroupOf } from '../shared/core/hashing.js';
import { job, type JobGraph } from '../shared/core/job.js';
import { instanceId } from '../shared/core/messages.js';
import type { StateWrite } from '../shared/core/ports.js';
import { EmbeddedRuntime } from '../shared/embedded/runtime.js';
import { prng } from '../examples/types.js';
import { CHECKPOINT_TABLES, STATE_TABLES, TableByteMeter, diffBytes, sumTables, type TableBytes } from './table-bytes.js';

/**
 * Checkpoint cost vs total state (invariant 5: a checkpoint costs O(keys changed), never
 * O(total state)).
 *
 * A keyed job holds `keys` keys. The keys are preloaded straight into the state store through
 * its public port (`commitStep`, in large batches, as the keyed instance's own steps would
 * write them: epoch 1, no previous value), then one checkpoint seals the preload. Then every
 * measured epoch pushes `changedPerEpoch` events that each change one distinct existing key,
 * lets the job process them, and takes one manual checkpoint. Per epoch we measure:
 *  - checkpoint wall time, trigger -> complete (the coordinator's transitions, real clock),
 *    and trigger -> the coordinator step that completed it returning (adds prune + sink commit);
 *  - journal bytes of the whole epoch (processing + checkpoint), attributed per table, so the
 *    checkpoint overhead (version records, change index, snapshots, acks, checkpoint records)
 *    is separated from plain state writes.
 * With `checkpointing: false` the same epochs run with no checkpoints (the baseline of plain
 * state writes); its "epoch" is just the batch of changes.
 */

export const COST_JOB_OPERATOR = 'state';
const PARALLELISM = 2;

const Update = z.object({ key: z.string(), delta: z.number().int() });
type Update = z.infer<typeof Update>;

export function costJob(): JobGraph {
  const j = job('checkpoint-cost');
  j.source('updates', { schema: Update, partitions: 1 })
    .keyBy((u) => u.key)
    .process<never>(
      COST_JOB_OPERATOR,
      (u, ctx) => {
        const count = ctx.state.value<number>('count');
        count.set((count.get() ?? 0) + u.delta);
      },
      { parallelism: PARALLELISM },
    )
    .sink('none');
  return j.build();
}

export interface CheckpointCostOptions {
  readonly keys: number;
  readonly changedPerEpoch: number;
  /** Measured epochs (after `warmupEpochs`). */
  readonly epochs: number;
  readonly warmupEpochs?: number;
  readonly checkpointing?: boolean;
  /** Durable state dir (default, like the CLI) or memory only. */
  readonly durable?: boolean;
  readonly preloadBatch?: number;
  readonly seed?: number;
}

export interface EpochSample {
  readonly epoch: number;
  /** Trigger -> COMPLETED, from the coordinator's transitions (performance.now()). */
  readonly checkpointMs: number;
  /** Trigger -> the run loop regains control after completion (includes prune, sink commit). */
  readonly checkpointWithPruneMs: number;
  /** V8 garbage collection inside the trigger -> complete-incl.-prune window (the heap grows with the in-memory tables). */
  readonly gcMsDuringCheckpoint: number;
  /** finishedAt - triggeredAt of the stored checkpoint record (Date.now(), ms resolution). */
  readonly recordMs: number;
  /** Processing the epoch's events (push -> all records processed). */
  readonly processMs: number;
  /** Journal bytes of the whole epoch, and split. */
  readonly bytes: number;
  readonly checkpointBytes: number;
  readonly stateBytes: number;
  readonly otherBytes: number;
  /** Journal bytes written between trigger and completion (incl. prune). */
  readonly bytesDuringCheckpoint: number;
  readonly writesDuringCheckpoint: number;
  readonly tables: TableBytes;
}

export interface CheckpointCostResult {
  readonly keys: number;
  readonly changedPerEpoch: number;
  readonly checkpointing: boolean;
  readonly durable: boolean;
  readonly preloadMs: number;
  readonly preloadBytes: number;
  /** The checkpoint that seals the preload (its epoch changed every key: O(keys) by design). */
  readonly sealCheckpointMs: number;
  readonly liveKeys: number;
  readonly samples: readonly EpochSample[];
  readonly mean: {
    readonly checkpointMs: number;
    readonly checkpointWithPruneMs: number;
    readonly recordMs: number;
    readonly processMs: number;
    readonly bytes: number;
    readonly checkpointBytes: number;
    readonly stateBytes: number;
    readonly otherBytes: number;
    readonly bytesDuringCheckpoint: number;
    readonly gcMsDuringCheckpoint: number;
  };
  readonly median: { readonly checkpointMs: number; readonly checkpointWithPruneMs: number };
  readonly heapUsedMb: number;
}

const keyName = (i: number): string => `k${String(i).padStart(8, '0')}`;

export async function runCheckpointCost(options: CheckpointCostOptions): Promise<CheckpointCostResult> {
  const checkpointing = options.checkpointing ?? true;
  const durable = options.durable ?? true;
  const warmup = options.warmupEpochs ?? 1;
  const dir = durable ? mkdtempSync(join(tmpdir(), 'cairn-bench-cost-')) : undefined;

  let triggeredAt = 0;
  let completedAt = 0;
  let completedId = 0;
  const graph = costJob();
  const runtime = await EmbeddedRuntime.open({
    job: graph,
    clock: 'real',
    // Manual triggers only: the benchmark decides when a checkpoint starts. Disabled = no
    // checkpoint at all until the final one (never reached here: the input is not closed).
    checkpoint: checkpointing ? { trigger: 'manual' } : { enabled: false },
    ...(dir ? { stateDir: dir } : {}),
    onTransition: (decision, checkpoint) => {
      if (decision.type === 'trigger') triggeredAt = performance.now();
      if (decision.type === 'complete' && checkpoint) {
        completedAt = performance.now();
        completedId = checkpoint.id;
      }
    },
  });
  const meter = new TableByteMeter(runtime.db);
  const gcEntries: PerformanceEntry[] = [];
  const gcObserver = new PerformanceObserver((list) => gcEntries.push(...list.getEntries()));
  gcObserver.observe({ entryTypes: ['gc'] });
  try {
    // ---- preload through the state store port ----
    const preloadStart = performance.now();
    const bytesBefore = runtime.db.bytesWritten;
    await preload(runtime, graph, options.keys, options.preloadBatch ?? 50_000);
    const preloadMs = performance.now() - preloadStart;
    const preloadBytes = runtime.db.bytesWritten - bytesBefore;

    let sealCheckpointMs = 0;
    if (checkpointing) {
      const t0 = performance.now();
      await checkpoint(runtime, () => completedId);
      sealCheckpointMs = performance.now() - t0;
    }

    // ---- measured epochs ----
    const random = prng(options.seed ?? 7);
    const samples: EpochSample[] = [];
    const windows: Array<{ start: number; end: number }> = [];
    let eventSeq = 0;
    for (let e = 0; e < warmup + options.epochs; e++) {
      const changed = pickDistinct(random, options.keys, options.changedPerEpoch);
      const tablesStart = meter.snapshot();
      const processStart = performance.now();
      const recordsTarget = runtime.counters.records + 2 * changed.length; // source + keyed operator
      runtime.push(changed.map((i) => ({ id: `u${eventSeq++}`, body: JSON.stringify({ key: keyName(i), delta: 1 } satisfies Update) })));
      await runtime.run({ until: () => runtime.counters.records >= recordsTarget });
      const processMs = performance.now() - processStart;

      let checkpointMs = 0;
      let checkpointWithPruneMs = 0;
      let recordMs = 0;
      const bytesAtTrigger = runtime.db.bytesWritten;
      const writesAtTrigger = runtime.db.writes;
      if (checkpointing) {
        const before = completedId;
        const start = performance.now();
        await checkpoint(runtime, () => completedId);
        checkpointWithPruneMs = performance.now() - start;
        if (e >= warmup) windows.push({ start, end: start + checkpointWithPruneMs });
        if (completedId !== before + 1) throw new Error(`expected checkpoint ${before + 1}, got ${completedId}`);
        checkpointMs = completedAt - triggeredAt;
        const record = await runtime.checkpoints.getCheckpoint(completedId);
        recordMs = (record?.finishedAt ?? 0) - (record?.triggeredAt ?? 0);
      }
      const tables = diffBytes(meter.snapshot(), tablesStart);
      const bytes = Object.values(tables).reduce((s, n) => s + n, 0);
      const checkpointBytes = sumTables(tables, CHECKPOINT_TABLES);
      const stateBytes = sumTables(tables, STATE_TABLES);
      if (e < warmup) continue;
      samples.push({
        epoch: e - warmup + 1,
        checkpointMs,
        checkpointWithPruneMs,
        gcMsDuringCheckpoint: 0,
        recordMs,
        processMs,
        bytes,
        checkpointBytes,
        stateBytes,
        otherBytes: bytes - checkpointBytes - stateBytes,
        bytesDuringCheckpoint: runtime.db.bytesWritten - bytesAtTrigger,
        writesDuringCheckpoint: runtime.db.writes - writesAtTrigger,
        tables,
      });
    }
    // GC entries arrive asynchronously: let the observer deliver, then intersect with the windows.
    await new Promise((resolve) => setTimeout(resolve, 50));
    gcObserver.disconnect();
    const withGc = samples.map((sample, i) => {
      const w = windows[i];
      if (!w) return sample;
      let gc = 0;
      for (const entry of gcEntries) gc += Math.max(0, Math.min(w.end, entry.startTime + entry.duration) - Math.max(w.start, entry.startTime));
      return { ...sample, gcMsDuringCheckpoint: gc };
    });
    samples.splice(0, samples.length, ...withGc);
    if (runtime.counters.stepFailures > 0) throw new Error(`step failures: ${runtime.lastErrors.join('; ')}`);
    const mean = (f: (s: EpochSample) => number): number => samples.reduce((s, x) => s + f(x), 0) / Math.max(1, samples.length);
    return {
      keys: options.keys,
      changedPerEpoch: options.changedPerEpoch,
      checkpointing,
      durable,
      preloadMs,
      preloadBytes,
      sealCheckpointMs,
      liveKeys: await runtime.state.countKeys(COST_JOB_OPERATOR),
      samples,
      mean: {
        checkpointMs: mean((s) => s.checkpointMs),
        checkpointWithPruneMs: mean((s) => s.checkpointWithPruneMs),
        recordMs: mean((s) => s.recordMs),
        processMs: mean((s) => s.processMs),
        bytes: mean((s) => s.bytes),
        checkpointBytes: mean((s) => s.checkpointBytes),
        stateBytes: mean((s) => s.stateBytes),
        otherBytes: mean((s) => s.otherBytes),
        bytesDuringCheckpoint: mean((s) => s.bytesDuringCheckpoint),
        gcMsDuringCheckpoint: mean((s) => s.gcMsDuringCheckpoint),
      },
      median: {
        checkpointMs: median(samples.map((s) => s.checkpointMs)),
        checkpointWithPruneMs: median(samples.map((s) => s.checkpointWithPruneMs)),
      },
      heapUsedMb: process.memoryUsage().heapUsed / 1e6,
    };
  } finally {
    gcObserver.disconnect();
    meter.detach();
    runtime.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes `keys` keys through StateStore.commitStep, as the keyed instances' steps would (epoch 1, new keys). */
async function preload(runtime: EmbeddedRuntime, graph: JobGraph, keys: number, batch: number): Promise<void> {
  const vertex = graph.vertices.find((v) => v.id === COST_JOB_OPERATOR);
  if (!vertex) throw new Error('no keyed vertex');
  const byInstance: StateWrite[][] = Array.from({ length: vertex.parallelism }, () => []);
  const flush = async (index: number): Promise<void> => {
    const writes = byInstance[index] as StateWrite[];
    if (writes.length === 0) return;
    const id = instanceId(vertex.id, index);
    const job = await runtime.job();
    const current = (await runtime.state.loadInstance(id)) ?? initialInstanceRecord(id, job.generation);
    await runtime.state.commitStep({
      instance: id,
      operator: vertex.id,
      generation: job.generation,
      expectedVersion: current.version,
      record: { ...current, version: current.version + 1, lastOutbox: [], lastMessageIds: [] },
      stateWrites: writes,
      channelState: [],
      acks: [],
      staged: [],
      upserts: [],
      deadLetters: [],
    });
    byInstance[index] = [];
  };
  const epochs: number[] = [];
  for (let index = 0; index < vertex.parallelism; index++) {
    epochs.push((await runtime.state.loadInstance(instanceId(vertex.id, index)))?.epoch ?? 1);
  }
  for (let i = 0; i < keys; i++) {
    const key = keyName(i);
    const keyGroup = keyGroupOf(key, graph.maxParallelism);
    const index = instanceForKeyGroup(keyGroup, vertex.parallelism, graph.maxParallelism);
    const epoch = epochs[index] ?? 1;
    (byInstance[index] as StateWrite[]).push({ keyGroup, key, value: { count: 0 }, epoch, previous: undefined });
    if ((byInstance[index] as StateWrite[]).length >= batch) await flush(index);
  }
  for (let index = 0; index < vertex.parallelism; index++) await flush(index);
}

/** Triggers a manual checkpoint and runs until the coordinator has completed it. */
async function checkpoint(runtime: EmbeddedRuntime, completed: () => number): Promise<void> {
  const target = completed() + 1;
  runtime.triggerCheckpoint();
  await runtime.run({ until: () => completed() >= target });
}

/** `n` distinct indexes in [0, total), deterministic for the seed. */
function pickDistinct(random: () => number, total: number, n: number): number[] {
  if (n >= total) return Array.from({ length: total }, (_, i) => i);
  const picked = new Set<number>();
  while (picked.size < n) picked.add(Math.floor(random() * total));
  return [...picked];
}

function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
