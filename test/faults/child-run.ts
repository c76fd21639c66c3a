/**
 * Child process of the SIGKILL fault test: runs the sequence job with a seeded fault
 * schedule on a durable state directory, pushing the whole input (re-pushing after a restart
 * is harmless: ingest skips ids it already holds), and prints the outcome as one JSON line.
 * Usage: tsx child-run.ts <stateDir> <seed> <keys> <perKey>
 */
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';
import { FaultInjector, planFor } from './fault-schedule.js';
import { canonical, finalState, sequenceEvents, sequenceJob } from './sequence-job.js';

const [stateDir, seedArg, keysArg, perKeyArg] = process.argv.slice(2);
const seed = Number(seedArg);
const keys = Number(keysArg);
const perKey = Number(perKeyArg);
const plan = planFor(seed);
const runtime = await EmbeddedRuntime.open({
  job: sequenceJob(),
  clock: 'virtual',
  stateDir: stateDir,
  checkpoint: plan.checkpoint,
  limits: { visibilityTimeoutMs: 20, maxReceiveCount: 6, isolatePoisonAfterReceives: 3, sourceReadBatch: 25 },
  faults: new FaultInjector(plan).faults(),
});
// What this process found: a FINISHED job stays so; one that was running has just been rolled back.
const opened = await runtime.job();
process.stdout.write(`READY ${JSON.stringify({ status: opened.status, resumedFrom: opened.restarts.at(-1) })}\n`);
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
