import { prng } from '../../examples/types.js';
import type { CheckpointConfigInput } from '../../shared/core/config.js';
import { pauseJob, requestCheckpoint, requestRollback, resumeJob, updateJob } from '../../shared/core/control.js';
import { CheckpointNotFoundError, InjectedFault, JobNotControllableError } from '../../shared/core/errors.js';
import type { CheckpointStore, JobRecord } from '../../shared/core/ports.js';
import { parseInstanceId } from '../../shared/core/messages.js';
import type { RuntimeFaults } from '../../shared/embedded/runtime.js';

/**
 * A seeded fault schedule: which faults, how often, and where. The same seed gives the same
 * schedule; with the virtual clock the whole run replays exactly, so a failing seed is a
 * regression test by itself.
 */

export type FaultKind =
  | 'operator-throw'
  | 'crash-before-commit'
  | 'crash-between-commit-and-send'
  | 'duplicate-delivery'
  | 'delayed-delivery'
  | 'checkpoint-timeout'
  | 'coordinator-crash'
  | 'lost-poll'
  /** The coordinator dies inside commit-sinks, between two published sink batches (before sinksCommittedThrough moves). */
  | 'crash-in-commit-sinks'
  /** `cairn rollback --to <sinksCommittedThrough>` lands while commit-sinks publishes (then the coordinator dies there). */
  | 'rollback-in-commit-sinks'
  /** The coordinator dies inside a recovery, after one of its phases: the next one runs the recovery again. */
  | 'crash-in-recovery'
  /** An operator's request on the job record: a manual checkpoint, a pause (resumed later), a rollback to a retained checkpoint. */
  | 'operator-request';

export interface FaultPlan {
  readonly seed: number;
  readonly checkpoint: CheckpointConfigInput;
  /** When the sources read the log (RuntimeLimits `sourceReads`): told by ingest after each append, or at checkpoint barriers only. */
  readonly sourceReads: 'append' | 'checkpoint';
  readonly rates: Readonly<Record<Exclude<FaultKind, 'checkpoint-timeout'>, number>>;
  /** Messages from this source instance are slow (a slow input channel for alignment). */
  readonly slowChannel: string | undefined;
  /** Loop turn at which one counter instance stalls past the checkpoint timeout. */
  readonly stallAtTurn: number | undefined;
}

const ALIGNMENTS = ['aligned', 'unaligned', 'aligned-with-timeout'] as const;

export function planFor(seed: number, overrides: Partial<CheckpointConfigInput> = {}): FaultPlan {
  const random = prng(seed * 7919 + 1);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const rate = (max: number): number => (random() < 0.65 ? random() * max : 0);
  const alignment = pick(ALIGNMENTS);
  const plan = {
    seed,
    checkpoint: {
      intervalMs: 2 + Math.floor(random() * 6),
      timeoutMs: 150,
      tolerableFailures: Math.floor(random() * 2),
      alignment,
      alignmentTimeoutMs: alignment === 'aligned-with-timeout' ? Math.floor(random() * 4) : 30_000,
      maxConcurrent: alignment === 'aligned' && random() < 0.3 ? 2 : 1,
      retained: 1 + Math.floor(random() * 3),
      ...overrides,
    },
    rates: {
      'operator-throw': rate(0.01),
      'crash-before-commit': rate(0.03),
      'crash-between-commit-and-send': rate(0.05),
      'duplicate-delivery': rate(0.05),
      'delayed-delivery': rate(0.05),
      'coordinator-crash': rate(0.1),
      'lost-poll': rate(0.3),
      'crash-in-commit-sinks': rate(0.3),
      'rollback-in-commit-sinks': rate(0.3),
      'crash-in-recovery': rate(0.15),
      'operator-request': rate(0.08),
    },
    slowChannel: random() < 0.6 ? 'steps#1' : undefined,
    stallAtTurn: random() < 0.4 ? 5 + Math.floor(random() * 40) : undefined,
  };
  // Drawn last, so that the draws above stay what they were: retention on every checkpoint, or on every 2nd-4th.
  const everyNth = pick([1, 1, 2, 4]);
  const intervalMs = plan.checkpoint.intervalMs ?? 5;
  // Drawn after that, for the same reason.
  const sourceReads = pick(['append', 'checkpoint'] as const);
  return { ...plan, sourceReads, checkpoint: { pruneIntervalMs: everyNth === 1 ? 0 : everyNth * intervalMs, ...plan.checkpoint } };
}

/** A request the job refused (finished, paused, nothing retained yet) is simply not made. */
function ignoreRefusal(error: unknown): undefined {
  if (error instanceof JobNotControllableError || error instanceof CheckpointNotFoundError) return undefined;
  throw error;
}

/** The schedules inject far more failures than a default restart strategy allows; its exhaustion has tests of its own. */
export const SUITE_RESTARTS = { kind: 'fixed-delay', attempts: 200, delaySeconds: 0 } as const;

/** Caps keep a run finite: past the cap a fault kind stops firing. */
const CAP = 25;

export class FaultInjector {
  readonly injected: Record<FaultKind, number> = {
    'operator-throw': 0,
    'crash-before-commit': 0,
    'crash-between-commit-and-send': 0,
    'duplicate-delivery': 0,
    'delayed-delivery': 0,
    'checkpoint-timeout': 0,
    'coordinator-crash': 0,
    'lost-poll': 0,
    'crash-in-commit-sinks': 0,
    'rollback-in-commit-sinks': 0,
    'crash-in-recovery': 0,
    'operator-request': 0,
  };
  /** Recovery phases a crash hit, and recoveries started by a `--restore`-like rollback that a crash interrupted. */
  readonly recoveryCrashes: Record<string, number> = {};
  /** What the operator requests did (they only count when the job took them). */
  readonly requests = { checkpoint: 0, pause: 0, rollback: 0 };
  private readonly random: () => number;
  private readonly thrownFor = new Set<string>();
  private turn = 0;
  private resumeAtTurn: number | undefined;
  /** Until the job has completed this many checkpoints nothing fires and turns are not counted. */
  private holdUntil: number | undefined;

  constructor(readonly plan: FaultPlan) {
    this.random = prng(plan.seed);
  }

  /**
   * Holds every fault back until the job has completed `checkpoints` checkpoints, then starts
   * as an operator would: `cairn pause`, `cairn rollback --to` the latest, and `cairn resume` a
   * few turns later. Faults early in a run roll back to checkpoint 0, which restores nothing;
   * these restore keyed state from version records, and every such run has a pause in it.
   */
  holdUntilCheckpoint(checkpoints: number): this {
    this.holdUntil = checkpoints;
    return this;
  }

  /** True while faults are still held back (the job never completed enough checkpoints). */
  get held(): boolean {
    return this.holdUntil !== undefined;
  }

  /** Still holding: arms (and asks for the rollback) once the job has enough completed checkpoints. */
  private async holding(store: CheckpointStore): Promise<boolean> {
    if (this.holdUntil === undefined) return false;
    if (((await store.getJob())?.lastCompletedId ?? 0) < this.holdUntil) return true;
    this.holdUntil = undefined;
    if (await updateJob(store, pauseJob).catch(ignoreRefusal)) {
      this.requests.pause++;
      this.resumeAtTurn = this.turn + 3;
    }
    if (await updateJob(store, (job) => requestRollback(job, job.lastCompletedId)).catch(ignoreRefusal)) this.requests.rollback++;
    return false;
  }

  private fire(kind: Exclude<FaultKind, 'checkpoint-timeout'>): boolean {
    if (this.holdUntil !== undefined || this.injected[kind] >= CAP || this.random() >= this.plan.rates[kind]) return false;
    this.injected[kind]++;
    return true;
  }

  /** `cairn trigger | pause | resume | rollback` arriving at seeded turns, through the job record as the CLI does. */
  private async operatorRequest(store: CheckpointStore): Promise<void> {
    if (this.resumeAtTurn !== undefined && this.turn >= this.resumeAtTurn) {
      this.resumeAtTurn = undefined;
      await updateJob(store, resumeJob).catch(ignoreRefusal);
    }
    if (this.resumeAtTurn !== undefined || !this.fire('operator-request')) return;
    const choice = this.random();
    const pick = this.random();
    if (choice < 0.4) {
      if (await updateJob(store, requestCheckpoint).catch(ignoreRefusal)) this.requests.checkpoint++;
    } else if (choice < 0.7) {
      const toRetained = (job: JobRecord): JobRecord => {
        const ids = job.lastCompletedId === 0 ? [0] : job.retainedCheckpoints;
        return requestRollback(job, ids[Math.floor(pick * ids.length)] ?? 0);
      };
      if (await updateJob(store, toRetained).catch(ignoreRefusal)) this.requests.rollback++;
    } else if (await updateJob(store, pauseJob).catch(ignoreRefusal)) {
      this.requests.pause++;
      this.resumeAtTurn = this.turn + 2 + Math.floor(pick * 20);
    }
  }

  /** A store to write operator requests to from inside the coordinator's hooks (set by the first turn). */
  private store: CheckpointStore | undefined;

  faults(): RuntimeFaults {
    return {
      step: {
        onRecord: (instance, record) => {
          const id = `${instance}/${record.o}`;
          // Transient: a record makes an operator throw at most once (a real poison record is the job's own).
          if (parseInstanceId(instance).vertexId === 'steps' || this.thrownFor.has(id)) return;
          if (this.fire('operator-throw')) {
            this.thrownFor.add(id);
            throw new InjectedFault(`injected operator failure at ${id}`);
          }
        },
        beforeCommit: (instance) => {
          if (this.fire('crash-before-commit')) throw new InjectedFault(`injected crash before commit in ${instance}`);
        },
        afterCommit: (instance) => {
          if (this.fire('crash-between-commit-and-send')) throw new InjectedFault(`injected crash between commit and send in ${instance}`);
        },
      },
      transport: {
        duplicate: () => this.fire('duplicate-delivery'),
        // Only polls: a lost channel message is a gap, which the protocol rightly refuses to skip.
        drop: (message) => message.body.type === 'poll' && this.fire('lost-poll'),
        delayMs: (messages) => {
          const first = messages[0]?.body;
          const slow = this.plan.slowChannel !== undefined && first !== undefined && 'from' in first && first.from === this.plan.slowChannel;
          if (slow) return 3;
          return this.fire('delayed-delivery') ? 1 + Math.floor(this.random() * 20) : 0;
        },
      },
      coordinator: {
        afterDecision: (decision) => {
          if (this.fire('coordinator-crash')) throw new InjectedFault(`injected coordinator crash after ${decision.type}`);
        },
        afterSinkPublish: async (_sink, batchId) => {
          if (this.store && this.fire('rollback-in-commit-sinks')) {
            // The rollback a user asks for right then: to the epoch the job record says is committed.
            const toCommitted = (job: JobRecord): JobRecord => {
              const target = job.sinksCommittedThrough === 0 || job.retainedCheckpoints.includes(job.sinksCommittedThrough) ? job.sinksCommittedThrough : job.lastCompletedId;
              return requestRollback(job, target);
            };
            if (await updateJob(this.store, toCommitted).catch(ignoreRefusal)) this.requests.rollback++;
            throw new InjectedFault(`injected coordinator crash in commit-sinks after ${batchId} (rollback requested)`);
          }
          if (this.fire('crash-in-commit-sinks')) throw new InjectedFault(`injected coordinator crash in commit-sinks after ${batchId}`);
        },
        afterRecoveryPhase: async (phase) => {
          if (this.fire('crash-in-recovery')) {
            this.recoveryCrashes[phase] = (this.recoveryCrashes[phase] ?? 0) + 1;
            // A recovery an operator asked for (`cairn rollback`, like `--restore`), interrupted.
            if ((await this.store?.getJob())?.restarts.at(-1)?.byOperator) this.recoveryCrashes['of-operator-rollback'] = (this.recoveryCrashes['of-operator-rollback'] ?? 0) + 1;
            throw new InjectedFault(`injected coordinator crash in recovery after ${phase}`);
          }
        },
      },
      onTurn: async (runtime) => {
        this.store ??= runtime.checkpoints;
        if (await this.holding(runtime.checkpoints)) return;
        this.turn++;
        if (this.turn === this.plan.stallAtTurn) {
          // One counter instance stops being served for longer than the checkpoint timeout.
          const timeout = runtime.config.timeoutMs;
          runtime.queue('count')?.pauseGroup('count#1', runtime.clock.now() + timeout * 2);
          this.injected['checkpoint-timeout']++;
        }
        await this.operatorRequest(runtime.checkpoints);
      },
    };
  }
}
