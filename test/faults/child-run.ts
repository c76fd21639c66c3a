/**
 * Child process of the SIGKILL fault tests: runs the sequence job with a seeded fault
 * schedule on a durable state directory, pushing the whole input (re-pushing after a restart
 * is harmless: ingest skips ids it already holds), and prints the outcome as one JSON line.
 * Usage: tsx child-run.ts <stateDir> <seed> <keys> <perKey> [options JSON]
 *   options.killIn  'commit-sinks' | 'recovery': SIGKILL itself at the `nth` sink publish after
 *                   a checkpoint was committed / the `nth` recovery phase
 *   options.restore 'committed' (the job record's sinksCommittedThrough) | 'oldest' (retained):
 *                   open as `cairn run --restore <that checkpoint>` does
 */
import { join } from 'node:path';
import type { CheckpointConfigInput } from '../../shared/core/config.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedRuntime, type RuntimeFaults } from '../../shared/embedded/runtime.js';
import { EmbeddedCheckpointStore } from '../../shared/embedded/stores.js';
import { FaultInjector, planFor, SUITE_RESTARTS } from './fault-schedule.js';
import { canonical, finalState, sequenceEvents, sequenceJob } from './sequence-job.js';

interface ChildOptions {
  /** Events a source reads per step (default 25): fewer make more checkpoints land while the input is read. */
  readonly sourceReadBatch?: number;
  readonly killIn?: 'commit-sinks' | 'recovery';
  readonly nth?: number;
  readonly restore?: 'committed' | 'oldest';
  /** Overrides of the seed's checkpoint plan. */
  readonly checkpoint?: Partial<CheckpointConfigInput>;
}

const [stateDir = '', seedArg, keysArg, perKeyArg, optionsArg] = process.argv.slice(2);
const seed = Number(seedArg);
const keys = Number(keysArg);
const perKey = Number(perKeyArg);
const options = JSON.parse(optionsArg ?? '{}') as ChildOptions;
const plan = planFor(seed, options.checkpoint);

/** The checkpoint a `--restore` names, read from the state directory before the runtime opens it. */
async function restoreTarget(): Promise<number | undefined> {
  if (!options.restore) return undefined;
  const db = EmbeddedDb.open(join(stateDir, 'db'));
  try {
    const job = await new EmbeddedCheckpointStore(db).getJob();
    if (!job) throw new Error('no job to restore');
    return options.restore === 'oldest' ? job.retainedCheckpoints[0] : job.sinksCommittedThrough;
  } finally {
    db.close();
  }
}

function withKill(faults: RuntimeFaults, runtime: () => EmbeddedRuntime | undefined): RuntimeFaults {
  let left = options.nth ?? 1;
  const kill = (): void => {
    if (--left === 0) process.kill(process.pid, 'SIGKILL');
  };
  const coordinator = faults.coordinator ?? {};
  return {
    ...faults,
    coordinator: {
      ...coordinator,
      afterSinkPublish: async (sink, batchId) => {
        if (options.killIn === 'commit-sinks' && ((await runtime()?.job())?.sinksCommittedThrough ?? 0) > 0) kill();
        await coordinator.afterSinkPublish?.(sink, batchId);
      },
      afterRecoveryPhase: async (phase, detail) => {
        if (options.killIn === 'recovery') kill();
        await coordinator.afterRecoveryPhase?.(phase, detail);
      },
    },
  };
}

const restoreFrom = await restoreTarget();
const opened: { runtime?: EmbeddedRuntime } = {};
const runtime = await EmbeddedRuntime.open({
  job: sequenceJob(),
  clock: 'virtual',
  stateDir: stateDir,
  checkpoint: plan.checkpoint,
  limits: { visibilityTimeoutMs: 20, maxReceiveCount: 6, isolatePoisonAfterReceives: 3, sourceReadBatch: options.sourceReadBatch ?? 25, sourceReads: plan.sourceReads },
  restartStrategy: SUITE_RESTARTS,
  faults: withKill(new FaultInjector(plan).faults(), () => opened.runtime),
  ...(restoreFrom === undefined ? {} : { restoreFrom }),
});
opened.runtime = runtime;
// What this process found: a FINISHED job stays so; one that was running has just been rolled
// back; one that was recovering carries on with that recovery.
const found = await runtime.job();
process.stdout.write(`READY ${JSON.stringify({ status: found.status, resumedFrom: found.restarts.at(-1), recovery: found.recovery, restoreFrom })}\n`);
runtime.push(sequenceEvents(keys, perKey, 2));
runtime.closeInput();
const job = await runtime.run({ maxTurns: 2_000_000 });
const result = {
  status: job.status,
  restarts: job.restarts,
  output: canonical(await runtime.results('validated')),
  state: await finalState(runtime.state, keys),
  deadLetters: (await runtime.deadLetters()).map((d) => d.id).sort(),
};
runtime.close();
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
