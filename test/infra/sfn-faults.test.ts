import { randomUUID } from 'node:crypto';
import { DescribeExecutionCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { afterAll, describe, expect, it } from 'vitest';
import { prng } from '../../examples/types.js';
import { wordCount } from '../../examples/word-count.js';
import { InjectedFault } from '../../shared/core/errors.js';
import type { CoordinatorEvent } from '../../shared/lambda/coordinator-handler.js';
import { historyMark, until } from '../until.js';
import { deploy, drainOperators, type Deployed, type OperatorFaults } from './moto-deploy.js';

/**
 * Seeded faults on the deployed coordinator: the synthesized checkpoint and recovery workflows
 * executed by moto, their Lambda tasks the real coordinator handler, which dies now and then
 * before it runs or after it ran (its answer lost: Step Functions retries the task); the
 * operators crash before their commit and between the commit and the send, and see batches
 * delivered twice; a rollback runs through the recovery workflow mid-stream. The sink ends
 * equal to the fault-free oracle. Seeds FIRST..LAST of CAIRN_SFN_FAULT_SEEDS (default 1-3).
 */

const [FIRST, LAST] = (process.env.CAIRN_SFN_FAULT_SEEDS ?? '1-3').split('-').map(Number) as [number, number];
const seeds = Array.from({ length: LAST - FIRST + 1 }, (_, i) => FIRST + i);
const ROUNDS = 4;
const LINES_PER_ROUND = 6;

interface Injected {
  coordinatorDeaths: number;
  crashesBeforeCommit: number;
  crashesAfterCommit: number;
  duplicates: number;
  rollbacks: number;
}

/** The coordinator dies at every third invocation, before or after its work, never twice in a row (each task's retry succeeds). */
function coordinatorDeaths(random: () => number, injected: Injected): (event: CoordinatorEvent, phase: 'before' | 'after') => boolean {
  let invocations = 0;
  let deathPhase: 'before' | 'after' | undefined;
  return (_event, phase) => {
    if (phase === 'before') {
      invocations++;
      deathPhase = invocations % 3 === 0 ? (random() < 0.5 ? 'before' : 'after') : undefined;
    }
    if (deathPhase !== phase) return false;
    injected.coordinatorDeaths++;
    return true;
  };
}

function operatorFaults(random: () => number, injected: Injected): OperatorFaults {
  return {
    step: {
      beforeCommit: () => {
        if (random() >= 0.08) return;
        injected.crashesBeforeCommit++;
        throw new InjectedFault('crash before the commit');
      },
      afterCommit: () => {
        if (random() >= 0.08) return;
        injected.crashesAfterCommit++;
        throw new InjectedFault('crash between the commit and the send');
      },
    },
    duplicate: () => {
      if (random() >= 0.15) return false;
      injected.duplicates++;
      return true;
    },
  };
}

/** A workflow execution to its end (named: moto calls every unnamed execution 'None'), the operators working (with their faults) while it runs, as the event source mappings would. */
async function execute(d: Deployed, stateMachineArn: string, input: unknown, faults?: OperatorFaults): Promise<string> {
  const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn, name: `e-${randomUUID()}`, input: JSON.stringify(input) }));
  if (!executionArn) throw new Error('no execution');
  let steps = 0;
  return until(
    `execution ${executionArn} to end`,
    async () => {
      steps += await drainOperators(d, faults);
      const { status } = await d.sfn.send(new DescribeExecutionCommand({ executionArn }));
      return status === 'RUNNING' ? undefined : (status ?? 'UNKNOWN');
    },
    { stallMs: 60_000, progress: async () => `${steps}:${await historyMark(d.sfn, executionArn)}` },
  );
}

describe('seeded faults on the deployed coordinator loop (moto) end with the sink of the fault-free run', () => {
  const deployed: Deployed[] = [];
  const totals: Injected = { coordinatorDeaths: 0, crashesBeforeCommit: 0, crashesAfterCommit: 0, duplicates: 0, rollbacks: 0 };
  afterAll(async () => {
    for (const d of deployed) {
      d.stores.destroy();
      d.runtime.stores.destroy();
      await d.lambda.close();
    }
    console.log(`sfn fault seeds ${FIRST}-${LAST}: injected ${JSON.stringify(totals)}`);
    if (seeds.length >= 3) {
      for (const [kind, n] of Object.entries(totals)) expect(n, kind).toBeGreaterThan(0);
    }
  });

  it.each(seeds)('seed %i', async (seed) => {
    const random = prng(seed * 7919);
    const injected: Injected = { coordinatorDeaths: 0, crashesBeforeCommit: 0, crashesAfterCommit: 0, duplicates: 0, rollbacks: 0 };
    const d = await deploy(`sff${seed}`, { trigger: 'manual', timeoutMs: 60_000 }, { coordinatorFault: coordinatorDeaths(random, injected) });
    deployed.push(d);
    const faults = operatorFaults(random, injected);
    const events = wordCount.generate(ROUNDS * LINES_PER_ROUND, seed);
    const context = (): string => `seed ${seed} injected ${JSON.stringify(injected)}`;

    for (let round = 0; round < ROUNDS; round++) {
      // Ingest: this round's lines into the log, one poll per source partition.
      const lines = events.slice(round * LINES_PER_ROUND, (round + 1) * LINES_PER_ROUND);
      const job = await d.stores.checkpoints.getJob();
      const generation = job?.generation ?? 1;
      for (const partition of [0, 1]) {
        await d.stores.sourceLog.append(
          partition,
          lines.filter((_, i) => i % 2 === partition),
        );
        await d.runtime.stores.transport?.send([
          { queue: 'lines', groupId: `lines#${partition}`, dedupId: `s${seed}:r${round}:p${partition}`, body: { type: 'poll', gen: generation, to: `lines#${partition}` } },
        ]);
      }
      await drainOperators(d, faults);
      // Mid-stream, past a completed checkpoint and with uncommitted work: a rollback through the recovery workflow.
      if (round === 2 && seed % 2 === 1) {
        injected.rollbacks++;
        expect(await execute(d, d.recoveryArn, { reason: `rollback of seed ${seed}` }, faults), context()).toBe('SUCCEEDED');
      }
      expect(await execute(d, d.checkpointsArn, { manual: true }, faults), context()).toBe('SUCCEEDED');
    }

    // The end: no faults, every message handled, one more checkpoint commits the last output.
    await drainOperators(d);
    expect(await execute(d, d.checkpointsArn, { manual: true }), context()).toBe('SUCCEEDED');
    const job = await d.stores.checkpoints.getJob();
    expect(job?.status, context()).toBe('RUNNING');
    expect(job?.generation, context()).toBe(seed % 2 === 1 ? 2 : 1);
    expect(wordCount.canonical(await d.stores.sinks.read('counts')), context()).toEqual(wordCount.oracle(events.map((e) => e.event)));
    for (const [kind, n] of Object.entries(injected)) totals[kind as keyof Injected] += n;
  });
});
