import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckpointConfigInput } from '../../shared/core/config.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';
import { FaultInjector, planFor, SUITE_RESTARTS, type FaultKind, type FaultPlan } from './fault-schedule.js';
import { canonical, finalState, sequenceEvents, sequenceJob, sequenceOracle, violations, POISON_KEY } from './sequence-job.js';

/**
 * Fault suite modelled on Flink's checkpointing ITCases: seeded schedules of operator throws,
 * crashes before commit and between commit and send, duplicate and delayed deliveries,
 * checkpoint timeouts and coordinator crashes, over aligned, unaligned and
 * aligned-with-timeout checkpoints with a slow input channel. Every run must end with exactly
 * the output and state of a fault-free run. Set CAIRN_FAULT_SEEDS to run more.
 */

const KEYS = Number(process.env.CAIRN_FAULT_KEYS ?? 8);
const PER_KEY = Number(process.env.CAIRN_FAULT_PER_KEY ?? 60);
const POISON = 2;
const SEEDS = Number(process.env.CAIRN_FAULT_SEEDS ?? 300);
/** A stuck run (a source that never reads again) must fail with its seed, not hang the suite. */
const MAX_TURNS = 5_000;

async function runOnce(checkpoint: CheckpointConfigInput, injector?: FaultInjector, sourceReads: FaultPlan['sourceReads'] = 'append') {
  const runtime = await EmbeddedRuntime.open({
    job: sequenceJob(),
    clock: 'virtual',
    checkpoint,
    limits: { visibilityTimeoutMs: 20, maxReceiveCount: 6, isolatePoisonAfterReceives: 3, sourceReadBatch: 25, sourceReads },
    // The schedules inject far more failures than a default strategy allows; exhaustion has its own test.
    restartStrategy: SUITE_RESTARTS,
    ...(injector ? { faults: injector.faults() } : {}),
  });
  try {
    runtime.push(sequenceEvents(KEYS, PER_KEY, POISON));
    runtime.closeInput();
    let turns = 0;
    const job = await runtime.run({ maxTurns: MAX_TURNS, onTurn: () => turns++ });
    return {
      job,
      output: canonical(await runtime.results('validated')),
      state: await finalState(runtime.state, KEYS),
      deadLetters: await runtime.deadLetters(),
      counters: { ...runtime.counters },
      channelStateRecords: (await runtime.checkpoints.listCheckpoints()).reduce((n, c) => n + (c.channelStateRecords ?? 0), 0),
      errors: [...runtime.lastErrors],
      turns,
    };
  } finally {
    runtime.close();
  }
}

describe('fault suite (embedded): seeded schedules end exactly like the fault-free run', () => {
  let reference: Awaited<ReturnType<typeof runOnce>>;
  const totals: Record<string, number> = {};
  const requestTotals: Record<string, number> = {};
  const alignments: Record<string, number> = {};
  const sourceReadModes: Record<string, number> = {};
  /** Recovery phases a crash interrupted: every phase must be hit, so that every "recovery run twice" window is. */
  const recoveryPhases: Record<string, number> = {};
  /** In-flight records stored as channel state, per alignment mode: unaligned checkpoints must really overtake data. */
  const channelState: Record<string, number> = {};
  let mostTurns = 0;
  /** Restarts by target: checkpoint 0 restores nothing, a completed checkpoint restores version records. */
  const restartTargets = { initial: 0, completed: 0, neverArmed: 0 };

  beforeAll(async () => {
    reference = await runOnce({ intervalMs: 5 });
  });

  it('the fault-free run itself passes the ITCase checks', () => {
    expect(reference.job.status).toBe('FINISHED');
    expect(reference.output).toEqual(sequenceOracle(KEYS, PER_KEY));
    expect(reference.deadLetters.map((d) => [d.reason, JSON.parse(d.payload) as unknown])).toEqual(Array.from({ length: POISON }, (_, i) => ['operator-error', { key: POISON_KEY, value: i + 1 }]));
  });

  it.each(Array.from({ length: SEEDS }, (_, i) => i + 1))('seed %i', async (seed) => {
    const plan = planFor(seed);
    // Every fourth seed holds its faults until a checkpoint completed (then pauses, rolls back
    // to it and resumes): early faults roll back to checkpoint 0, which restores no keyed state.
    const injector = seed % 4 === 0 ? new FaultInjector(plan).holdUntilCheckpoint(1) : new FaultInjector(plan);
    const run = await runOnce(plan.checkpoint, injector, plan.sourceReads);
    for (const [kind, n] of Object.entries(injector.injected)) totals[kind] = (totals[kind] ?? 0) + n;
    for (const [kind, n] of Object.entries(injector.requests)) requestTotals[kind] = (requestTotals[kind] ?? 0) + n;
    for (const [phase, n] of Object.entries(injector.recoveryCrashes)) recoveryPhases[phase] = (recoveryPhases[phase] ?? 0) + n;
    sourceReadModes[plan.sourceReads] = (sourceReadModes[plan.sourceReads] ?? 0) + 1;
    const alignment = String(plan.checkpoint.alignment);
    alignments[alignment] = (alignments[alignment] ?? 0) + 1;
    channelState[alignment] = (channelState[alignment] ?? 0) + run.channelStateRecords;
    mostTurns = Math.max(mostTurns, run.turns);
    for (const r of run.job.restarts) restartTargets[r.toCheckpoint > 0 ? 'completed' : 'initial']++;
    if (injector.held) restartTargets.neverArmed++;
    const context = `seed ${seed} plan ${JSON.stringify(plan)} injected ${JSON.stringify(injector.injected)} counters ${JSON.stringify(run.counters)} errors ${run.errors.slice(-3).join(' | ')}`;
    expect(run.job.status, context).toBe('FINISHED');
    expect(violations(run.output, KEYS, PER_KEY, 'exactly-once'), context).toEqual([]);
    expect(run.output, context).toEqual(reference.output);
    expect(run.state, context).toEqual(reference.state);
    expect(run.deadLetters.map((d) => d.id).sort(), context).toEqual(reference.deadLetters.map((d) => d.id).sort());
  });

  afterAll(() => {
    if (SEEDS < 100) return;
    // The schedules must really mix every fault kind and every alignment mode.
    const kinds: FaultKind[] = [
      'operator-throw',
      'crash-before-commit',
      'crash-between-commit-and-send',
      'duplicate-delivery',
      'delayed-delivery',
      'checkpoint-timeout',
      'coordinator-crash',
      'lost-poll',
      'crash-in-commit-sinks',
      'rollback-in-commit-sinks',
      'crash-in-recovery',
      'operator-request',
    ];
    console.log(`fault totals over ${SEEDS} seeds: ${JSON.stringify(totals)}; alignment modes: ${JSON.stringify(alignments)}; source reads: ${JSON.stringify(sourceReadModes)}`);
    for (const mode of ['append', 'checkpoint']) expect(sourceReadModes[mode] ?? 0, mode).toBeGreaterThan(SEEDS / 4);
    for (const kind of kinds) expect(totals[kind] ?? 0, kind).toBeGreaterThan(10);
    // Operator requests the job took: manual checkpoints, pauses, rollbacks to retained checkpoints.
    console.log(`operator requests taken: ${JSON.stringify(requestTotals)}; recovery phases a crash interrupted: ${JSON.stringify(recoveryPhases)}`);
    for (const phase of ['begin', 'purge', 'restore-operator', 'restore-instance', 'finish', 'of-operator-rollback']) expect(recoveryPhases[phase] ?? 0, phase).toBeGreaterThan(3);
    for (const kind of ['checkpoint', 'pause', 'rollback']) expect(requestTotals[kind] ?? 0, kind).toBeGreaterThan(5);
    for (const mode of ['aligned', 'unaligned', 'aligned-with-timeout']) expect(alignments[mode] ?? 0, mode).toBeGreaterThan(10);
    console.log(`channel state records per alignment mode: ${JSON.stringify(channelState)}; most loop turns in one run: ${mostTurns} of ${MAX_TURNS}`);
    console.log(`restarts to checkpoint 0 / to a completed checkpoint: ${restartTargets.initial} / ${restartTargets.completed}; held seeds that never armed: ${restartTargets.neverArmed}`);
    expect(restartTargets.completed).toBeGreaterThan(SEEDS / 4);
    expect(restartTargets.neverArmed).toBe(0);
    expect(channelState.aligned ?? 0).toBe(0);
    expect(channelState.unaligned ?? 0).toBeGreaterThan(0);
    expect(channelState['aligned-with-timeout'] ?? 0).toBeGreaterThan(0);
  });
});
