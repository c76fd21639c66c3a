import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CheckpointConfigInput } from '../../shared/core/config.js';
import type { RecoveryPhase } from '../../shared/core/recovery.js';
import { EmbeddedRuntime, type RuntimeFaults } from '../../shared/embedded/runtime.js';
import { canonical, sequenceEvents, sequenceJob, sequenceOracle, violations } from '../faults/sequence-job.js';

/**
 * The exactly-once holes of issue #10, embedded, each as the process death that reached it:
 * the process dies (an error out of run(), as a SIGKILL between two journal writes leaves the
 * state directory) at a chosen point, and the next process opens the same state directory.
 */

const KEYS = 6;
const PER_KEY = 150;

/** Not an InjectedFault: nothing in the runtime catches it, so the process "dies" here. */
class ProcessDied extends Error {}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cairn-recovery-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const options = (checkpoint: CheckpointConfigInput = {}, faults?: RuntimeFaults) => ({
  job: sequenceJob(),
  clock: 'virtual' as const,
  stateDir: dir,
  checkpoint: { intervalMs: 1, retained: 5, ...checkpoint },
  limits: { sourceReadBatch: 10 },
  ...(faults ? { faults } : {}),
});

async function finish(runtime: EmbeddedRuntime): Promise<{ status: string; output: ReturnType<typeof canonical> }> {
  try {
    const job = await runtime.run({ maxTurns: 20_000 });
    return { status: job.status, output: canonical(await runtime.results('validated')) };
  } finally {
    runtime.close();
  }
}

/** Runs until the fault kills the process; returns whether it did. */
async function runUntilDeath(runtime: EmbeddedRuntime, push = true): Promise<boolean> {
  try {
    if (push) {
      runtime.push(sequenceEvents(KEYS, PER_KEY));
      runtime.closeInput();
    }
    await runtime.run({ maxTurns: 20_000 });
    return false;
  } catch (error) {
    if (error instanceof ProcessDied) return true;
    throw error;
  } finally {
    runtime.close();
  }
}

describe('recovery after a process death (embedded)', () => {
  it.each([1, 2, 3])('a restore to sinksCommittedThrough after a death inside commit-sinks (maxConcurrent 3, publish %i of a pass) publishes nothing twice', async (publishes) => {
    // Checkpoints complete several at a time, so one commit-sinks publishes several epochs.
    let dieAfter: number | undefined;
    const opened: EmbeddedRuntime[] = [];
    const faults: RuntimeFaults = {
      coordinator: {
        afterSinkPublish: async () => {
          const job = await opened[0]?.job();
          if (!job || job.sinksCommittedThrough < 2 || !job.retainedCheckpoints.includes(job.sinksCommittedThrough)) return;
          dieAfter ??= publishes;
          if (--dieAfter === 0) throw new ProcessDied('killed inside commit-sinks');
        },
      },
    };
    const checkpoint = { maxConcurrent: 3, intervalMs: 1 };
    const runtime = await EmbeddedRuntime.open(options(checkpoint, faults));
    opened.push(runtime);
    expect(await runUntilDeath(runtime)).toBe(true);
    const dead = await EmbeddedRuntime.open(options(checkpoint));
    const job = await dead.job();
    dead.close();
    // The published batches of the epochs above it are in the sink already.
    const target = job.sinksCommittedThrough;
    expect(job.lastCompletedId).toBeGreaterThan(target);
    const reopened = await EmbeddedRuntime.open({ ...options(checkpoint), restoreFrom: target });
    reopened.closeInput();
    const restored = await finish(reopened);
    expect(restored.status).toBe('FINISHED');
    expect(violations(restored.output, KEYS, PER_KEY, 'exactly-once')).toEqual([]);
    expect(restored.output).toEqual(sequenceOracle(KEYS, PER_KEY));
  });

  it.each<RecoveryPhase>(['begin', 'purge', 'restore-operator', 'restore-instance', 'finish'])(
    'a death inside the recovery of a restore (after %s) continues that restore on the next start',
    async (phase) => {
      const done = await EmbeddedRuntime.open(options());
      expect(await runUntilDeath(done)).toBe(false);
      const first = await EmbeddedRuntime.open(options());
      const { retainedCheckpoints, generation } = await first.job();
      first.close();
      expect(retainedCheckpoints.length).toBeGreaterThan(2);
      const target = retainedCheckpoints[0] as number;

      const faults: RuntimeFaults = {
        coordinator: {
          afterRecoveryPhase: (at) => {
            if (at === phase) throw new ProcessDied(`killed in recovery after ${at}`);
          },
        },
      };
      expect(await runUntilDeath(await EmbeddedRuntime.open({ ...options({}, faults), restoreFrom: target }), false)).toBe(true);
      // The next plain start carries on with the restore to `target`, in an attempt of its own.
      const again = await EmbeddedRuntime.open(options());
      const restarted = await finish(again);
      expect(restarted.status).toBe('FINISHED');
      expect(restarted.output).toEqual(sequenceOracle(KEYS, PER_KEY));
      const after = await EmbeddedRuntime.open(options());
      const job = await after.job();
      const checkpoints = await after.checkpoints.listCheckpoints();
      after.close();
      // Past 'finish' the job was RUNNING again: that death is an ordinary process restart.
      const restart = phase === 'finish' ? [[target, 'process restarted']] : [];
      expect(job.restarts.map((r) => [r.toCheckpoint, r.reason])).toEqual([[target, `restore from checkpoint ${target} requested`], ...restart]);
      // One generation for the restore, one for the attempt after the death (if an attempt had begun).
      expect(job.generation).toBe(generation + 2);
      for (const id of retainedCheckpoints.filter((c) => c > target)) {
        expect(checkpoints.find((c) => c.id === id)).toMatchObject({ status: 'ABORTED', abortReason: `discarded by restore to ${target}` });
      }
    },
  );

  it('a death right after `--restore` asked for its checkpoint restores that checkpoint, not the latest', async () => {
    const done = await EmbeddedRuntime.open(options());
    expect(await runUntilDeath(done)).toBe(false);
    const first = await EmbeddedRuntime.open(options());
    const target = (await first.job()).retainedCheckpoints[0] as number;
    first.close();
    // The process dies before its first loop turn: the request is on the job record, nothing else is done.
    (await EmbeddedRuntime.open({ ...options(), restoreFrom: target })).close();
    const restarted = await finish(await EmbeddedRuntime.open(options()));
    expect(restarted.output).toEqual(sequenceOracle(KEYS, PER_KEY));
    const after = await EmbeddedRuntime.open(options());
    const job = await after.job();
    after.close();
    expect(job.restarts.map((r) => r.toCheckpoint)).toEqual([target]);
    expect(job.lastCompletedId).toBeGreaterThan(target);
  });
});

describe('restart strategy (embedded)', () => {
  it('a checkpoint that always times out ends the job FAILED once the strategy is exhausted, with the restarts reported', async () => {
    // Every invocation costs 1 ms of virtual time: a checkpoint cannot complete within 1 ms.
    const runtime = await EmbeddedRuntime.open({
      job: sequenceJob(),
      clock: 'virtual',
      checkpoint: { intervalMs: 1, timeoutMs: 1, tolerableFailures: 0, maxConcurrent: 3 },
      restartStrategy: { kind: 'fixed-delay', attempts: 3, delaySeconds: 2 },
    });
    try {
      runtime.push(sequenceEvents(KEYS, PER_KEY));
      const job = await runtime.run({ maxTurns: 50_000 });
      expect(job.status).toBe('FAILED');
      expect(job.failure).toBe('1 consecutive checkpoint failures (tolerable: 0); fixed-delay restart strategy exhausted (3 attempts)');
      expect(job.restarts.map((r) => r.reason)).toEqual(Array.from({ length: 3 }, () => '1 consecutive checkpoint failures (tolerable: 0)'));
      // Each restore waited the strategy's delay after its failure.
      const gaps = job.restarts.slice(1).map((r, i) => r.at - (job.restarts[i]?.at ?? 0));
      for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(2000);
    } finally {
      runtime.close();
    }
  });

  it('the default strategy (exponential backoff, 10 attempts) ends a failing job too, with growing delays', async () => {
    const runtime = await EmbeddedRuntime.open({ job: sequenceJob(), clock: 'virtual', checkpoint: { intervalMs: 1, timeoutMs: 1 } });
    try {
      runtime.push(sequenceEvents(KEYS, PER_KEY));
      const job = await runtime.run({ maxTurns: 200_000 });
      expect(job.status).toBe('FAILED');
      expect(job.failure).toBe('1 consecutive checkpoint failures (tolerable: 0); exponential-backoff restart strategy exhausted (10 restarts without a 3600 s quiet period)');
      expect(job.restarts).toHaveLength(10);
      const gaps = job.restarts.slice(1).map((r, i) => r.at - (job.restarts[i]?.at ?? 0));
      // Restart i waited min(2^i s, 300 s) before its restore; the next failure came after that.
      expect(gaps.map((gap, i) => gap >= Math.min(300_000, 1000 * 2 ** i))).toEqual(gaps.map(() => true));
    } finally {
      runtime.close();
    }
  });
});
