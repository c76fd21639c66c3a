/**
 * Retention, end to end, on both runtimes (the embedded stores, and the DynamoDB adapters on the
 * local cloud): while the sequence job runs, every completed checkpoint truncates the source log
 * below the oldest retained checkpoint's offsets and forgets checkpoint records beyond the
 * history. A rollback to that oldest retained checkpoint must still replay exactly: the run ends
 * with the oracle's output.
 */
import { describe, expect, it } from 'vitest';
import { requestRollback, updateJob } from '../../shared/core/control.js';
import type { CoordinatorFaults } from '../../shared/core/coordinator-driver.js';
import { SourceLogTruncatedError } from '../../shared/core/errors.js';
import { instanceId } from '../../shared/core/messages.js';
import type { CheckpointStore, JobRecord, SourceLog } from '../../shared/core/ports.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';
import { canonical, sequenceEvents, sequenceJob, sequenceOracle, violations } from '../faults/sequence-job.js';
import { localJob } from '../local-cloud/helpers.js';

const KEYS = 6; // k4 and k5 hash to partition 1, k0..k3 to partition 0
const PER_KEY = 40;
const PARTITIONS = 2;
const WAVE = 18;
// pruneIntervalMs 0: retention runs on every completed checkpoint (the default would run it once per 60 s of checkpoints).
const checkpoint = { intervalMs: 20, retained: 2, history: 2, pruneIntervalMs: 0 };
const limits = { sourceReadBatch: 5 };

interface Handle {
  readonly checkpoints: CheckpointStore;
  readonly log: SourceLog;
  push(events: readonly { id: string; body: string }[]): Promise<void>;
  closeInput(): void;
  run(): Promise<JobRecord>;
  job(): Promise<JobRecord>;
  results(sink: string): Promise<unknown[]>;
  destroy(): Promise<void>;
}

const runtimes: { name: string; open(faults: CoordinatorFaults): Promise<Handle> }[] = [
  {
    name: 'embedded',
    open: async (faults) => {
      const rt = await EmbeddedRuntime.open({ job: sequenceJob(), clock: 'virtual', checkpoint, limits, faults: { coordinator: faults } });
      return {
        checkpoints: rt.checkpoints,
        log: rt.log,
        push: (events) => Promise.resolve(rt.push(events)),
        closeInput: () => rt.closeInput(),
        run: () => rt.run(),
        job: () => rt.job(),
        results: (sink) => rt.results(sink),
        destroy: () => Promise.resolve(rt.close()),
      };
    },
  },
  {
    name: 'aws (local cloud)',
    open: async (faults) => {
      const job = await localJob({ job: sequenceJob(), checkpoint, limits, restartStrategy: { kind: 'fixed-delay', attempts: 20, delaySeconds: 0 }, faults: { coordinator: faults } });
      return {
        checkpoints: job.checkpoints,
        log: job.log,
        push: (events) => job.push(events),
        closeInput: () => job.closeInput(),
        run: () => job.run({ stallMs: 30_000 }),
        job: () => job.job(),
        results: (sink) => job.results(sink),
        destroy: () => job.destroy(),
      };
    },
  },
];

interface Observed {
  readonly target: number;
  readonly cuts: number[];
  readonly belowCut: unknown[];
  readonly atCut: number[];
  readonly checkpointIds: number[];
  readonly job: JobRecord;
}

describe.each(runtimes)('retention while running: $name', (runtime) => {
  it('the log is truncated below the oldest retained checkpoint and old checkpoint records go; a rollback to that checkpoint replays exactly', async () => {
    const ref: { handle?: Handle; observed?: Observed } = {};
    // The input arrives in waves, one per completed checkpoint, so that checkpoints cut it.
    const events = sequenceEvents(KEYS, PER_KEY);
    const waves = Array.from({ length: Math.ceil(events.length / WAVE) }, (_, i) => events.slice(i * WAVE, (i + 1) * WAVE));
    const nextWave = async (handle: Handle): Promise<void> => {
      const wave = waves.shift();
      if (wave) await handle.push(wave);
      if (waves.length === 0) handle.closeInput();
    };
    const faults: CoordinatorFaults = {
      afterDecision: async (decision) => {
        const handle = ref.handle;
        if (!handle || decision.type !== 'complete') return;
        await nextWave(handle);
        if (ref.observed) return;
        const job = await handle.job();
        const target = job.retainedCheckpoints[0];
        if (job.generation !== 1 || job.retainedCheckpoints.length < checkpoint.retained || job.nextCheckpointId < 6 || target === undefined) return;
        const offsets = (await handle.checkpoints.getCheckpoint(target))?.sourceOffsets ?? {};
        const cuts = Array.from({ length: PARTITIONS }, (_, p) => offsets[instanceId('steps', p)] ?? 0);
        // Wait for a checkpoint whose cut leaves entries on both sides in every partition.
        const heads = await Promise.all(cuts.map((_, p) => handle.log.head(p)));
        if (cuts.some((cut, p) => cut === 0 || cut >= (heads[p] ?? 0))) return;
        const belowCut = await Promise.all(
          cuts.map((_, p) =>
            handle.log.read(p, 0, 1).then(
              () => 'read',
              (e: unknown) => e,
            ),
          ),
        );
        const atCut = await Promise.all(cuts.map(async (cut, p) => (await handle.log.read(p, cut, 1))[0]?.offset ?? -1));
        const checkpointIds = (await handle.checkpoints.listCheckpoints()).map((c) => c.id);
        ref.observed = { target, cuts, belowCut, atCut, checkpointIds, job };
        await updateJob(handle.checkpoints, (j) => requestRollback(j, target));
      },
    };
    const handle = await runtime.open(faults);
    ref.handle = handle;
    try {
      await nextWave(handle);
      const record = await handle.run();
      const output = canonical(await handle.results('validated'));
      expect(record.status).toBe('FINISHED');
      expect(violations(output, KEYS, PER_KEY, 'exactly-once')).toEqual([]);
      expect(output).toEqual(sequenceOracle(KEYS, PER_KEY));

      const observed = ref.observed;
      expect(observed, 'no checkpoint cut the log in both partitions').toBeDefined();
      if (!observed) return;
      expect(record.restarts).toEqual([expect.objectContaining({ toCheckpoint: observed.target, byOperator: true })]);
      // Below the cut: gone. At the cut: the first entry a rollback replays.
      for (const [p, error] of observed.belowCut.entries()) {
        expect(error).toBeInstanceOf(SourceLogTruncatedError);
        expect(error).toMatchObject({ partition: p, from: 0 });
      }
      expect(observed.atCut).toEqual(observed.cuts);
      // Checkpoint records: only the newest `history` ids, the retained and the pending ones.
      const keepFrom = Math.min(observed.job.nextCheckpointId - checkpoint.history, ...observed.job.retainedCheckpoints, ...observed.job.pendingCheckpoints);
      expect(observed.checkpointIds.length).toBeGreaterThan(0);
      expect(Math.min(...observed.checkpointIds)).toBeGreaterThanOrEqual(keepFrom);
      expect(observed.checkpointIds).toEqual(expect.arrayContaining([...observed.job.retainedCheckpoints]));
      // After the run, still bounded by the history.
      const final = await handle.job();
      const finalKeepFrom = Math.min(final.nextCheckpointId - checkpoint.history, ...final.retainedCheckpoints, ...final.pendingCheckpoints);
      expect(Math.min(...(await handle.checkpoints.listCheckpoints()).map((c) => c.id))).toBeGreaterThanOrEqual(finalKeepFrom);
    } finally {
      await handle.destroy();
    }
  });
});
