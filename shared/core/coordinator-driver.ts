import type { CheckpointConfig } from './config.js';
import { CheckpointNotFoundError, ConcurrentStepError } from './errors.js';
import { initialInstanceRecord } from './instance/step.js';
import { instanceId } from './messages.js';
import type { CheckpointAck, CheckpointRecord, CheckpointStore, Clock, JobRecord, QueueTransport, SinkStore, SourceLog, StateStore } from './ports.js';
import { aborted, completed, decideNext, failed, needsInputFacts, initialJob, recoveryStarted, triggered, type CoordinatorDecision, type CoordinatorFacts } from './protocol/coordinator.js';
import { DEFAULT_RESTART_STRATEGY, type RestartStrategy } from './protocol/restart-strategy.js';
import { Recovery, sinkBatchId, sourcePolls, type RecoveryFaults } from './recovery.js';
import { checkpointsForgottenBelow, checkpointsPerPrune, logTruncationPoints, pruneDue } from './retention.js';
import type { Topology } from './topology.js';

/**
 * Drives the pure coordinator: read facts, decide, execute one transition, persist, repeat.
 * Holds no state of its own beyond what the stores hold, so a driver that crashes between
 * two decisions is replaced by a new one that carries on (the Step Functions task functions
 * run the same transitions).
 */

export interface CoordinatorEnvironment {
  /** Nothing queued or in flight anywhere (the pipeline is drained). May ask the queues (async). */
  isIdle(): boolean | Promise<boolean>;
  /** Optimization on rollback (fencing is what makes it correct): drop queued operator messages. */
  purgeOperatorQueues(): void | Promise<void>;
  /** A failure that needs a rollback (message in an operator dead-letter queue, fatal error). */
  takeFailureSignal(): string | undefined;
  takeManualTrigger(): boolean;
}

export interface CoordinatorFaults extends RecoveryFaults {
  afterDecision?(decision: CoordinatorDecision): void | Promise<void>;
  /** Called after each sink batch commit-sinks publishes (a crash point inside the two-phase commit). */
  afterSinkPublish?(sink: string, batchId: string): void | Promise<void>;
}

export interface CoordinatorDeps {
  readonly topology: Topology;
  readonly config: CheckpointConfig;
  readonly checkpoints: CheckpointStore;
  readonly state: StateStore;
  readonly log: SourceLog;
  readonly sinks: SinkStore;
  readonly transport: QueueTransport;
  readonly clock: Clock;
  readonly env: CoordinatorEnvironment;
  /** Applied to failures (not to operator rollbacks or restores); default: exponential backoff. */
  readonly restartStrategy?: RestartStrategy;
  readonly faults?: CoordinatorFaults;
  readonly onTransition?: (decision: CoordinatorDecision, checkpoint?: CheckpointRecord) => void;
  /** Completed checkpoint records by id, kept by a host across the drivers it creates (see completedCheckpoint). */
  readonly completedCache?: Map<number, CheckpointRecord>;
}

/** Completed checkpoint records a host's cache keeps (the retained ones and the last completed are what it reads). */
const COMPLETED_CACHE_SIZE = 32;

export type ExecutableDecision = Exclude<CoordinatorDecision, { type: 'wait' }>;

export class CoordinatorDriver {
  private failureSignal: string | undefined;
  private manualTrigger = false;
  /** The checkpoint records the current step() wrote (see step). */
  private written: Map<number, CheckpointRecord> | undefined;

  constructor(private readonly deps: CoordinatorDeps) {}

  /** Creates the job and its instances on first start. Idempotent. */
  async initialize(): Promise<JobRecord> {
    const existing = await this.deps.checkpoints.getJob();
    if (existing) return existing;
    const job = initialJob(this.deps.clock.now());
    for (const id of this.deps.topology.allInstances()) {
      if (!(await this.deps.state.loadInstance(id))) await this.deps.state.putInstance(initialInstanceRecord(id, job.generation));
    }
    await this.deps.checkpoints.putJob(job, undefined);
    await this.deps.transport.send(sourcePolls(this.deps.topology, job.generation, 'start'));
    return job;
  }

  /** Asks for a rollback to `checkpointId` (or the last completed one) at the next step. */
  async requestRestore(reason: string, checkpointId?: number): Promise<void> {
    const job = await this.requireJob();
    const target = checkpointId ?? job.lastCompletedId;
    if (target > 0) {
      const record = await this.deps.checkpoints.getCheckpoint(target);
      const retained = job.retainedCheckpoints;
      if (record?.status !== 'COMPLETED' || !retained.includes(target)) {
        throw new CheckpointNotFoundError(`checkpoint ${target} is not a retained completed checkpoint (retained: ${retained.join(', ') || 'none'})`);
      }
    }
    await this.execute({ type: 'start-recovery', toCheckpoint: target, reason }, job);
  }

  /** Runs decisions until the machine waits; returns when it next wants to run. */
  async step(maxTransitions = 50): Promise<{ progressed: boolean; waitUntil: number | undefined; job: JobRecord }> {
    // The checkpoint records this step's transitions write, for the next decisions' facts.
    this.written = new Map();
    try {
      return await this.decideAndExecute(maxTransitions);
    } finally {
      this.written = undefined;
    }
  }

  private async decideAndExecute(maxTransitions: number): Promise<{ progressed: boolean; waitUntil: number | undefined; job: JobRecord }> {
    let progressed = false;
    // The job record as the last transition left it: what its conditional write stored (or, for
    // a transition that writes none, the record it ran on). The next decision needs no read of
    // it: a write by anyone else since makes the next conditional write fail, and that decides
    // again on a fresh read. Each step() starts from a fresh read (operator requests land there).
    let known: JobRecord | undefined;
    for (let i = 0; i < maxTransitions; i++) {
      const job = known ?? (await this.requireJob());
      known = undefined;
      const facts = await this.readFacts(job);
      const decision = decideNext(this.deps.config, facts, this.restartStrategy);
      if (decision.type === 'wait') return { progressed, waitUntil: decision.until, job };
      try {
        known = await this.execute(decision, job, facts);
      } catch (error) {
        // Someone else wrote the job record (an operator request, another coordinator): the
        // decision rests on stale facts. Transitions are idempotent, so decide again.
        if (error instanceof ConcurrentStepError && error.instance === 'job') {
          this.written?.clear();
          continue;
        }
        throw error;
      }
      progressed = true;
      await this.deps.faults?.afterDecision?.(decision);
    }
    return { progressed, waitUntil: this.deps.clock.now(), job: await this.requireJob() };
  }

  get restartStrategy(): RestartStrategy {
    return this.deps.restartStrategy ?? DEFAULT_RESTART_STRATEGY;
  }

  /** The recovery phases over this driver's ports (the Step Functions tasks run them one by one). */
  recovery(): Recovery {
    const { topology, checkpoints, state, sinks, transport, clock, env, faults } = this.deps;
    return new Recovery({ topology, checkpoints, state, sinks, transport, clock, purgeOperatorQueues: () => env.purgeOperatorQueues(), ...(faults ? { faults } : {}) });
  }

  private async requireJob(): Promise<JobRecord> {
    const job = await this.deps.checkpoints.getJob();
    if (!job) throw new Error('job not initialized');
    // Job records written before the pending/retained lists existed have neither.
    return { ...job, pendingCheckpoints: job.pendingCheckpoints ?? [], retainedCheckpoints: job.retainedCheckpoints ?? [] };
  }

  /**
   * The two halves of a coordinator step, public for drivers that split the loop into states
   * (the Step Functions coordinator: a Decide task and one task per transition).
   */
  async readFacts(job: JobRecord): Promise<CoordinatorFacts> {
    const pending: CheckpointRecord[] = [];
    const finished: CheckpointRecord[] = [];
    for (const id of job.pendingCheckpoints) {
      const record = this.written?.get(id) ?? (await this.deps.checkpoints.getCheckpoint(id));
      if (record?.status === 'PENDING') pending.push(record);
      else if (record?.status === 'COMPLETED' || record?.status === 'ABORTED') finished.push(record);
    }
    const acks = new Map<number, number>();
    // decideNext injects the barriers of a checkpoint before it looks at its acks.
    for (const checkpoint of pending) if (checkpoint.barriersInjected) acks.set(checkpoint.id, await this.acksOf(checkpoint));
    this.failureSignal ??= this.deps.env.takeFailureSignal();
    this.manualTrigger ||= this.deps.env.takeManualTrigger();
    const base = {
      now: this.deps.clock.now(),
      job,
      pending,
      finished,
      acks,
      expectedAcks: this.deps.topology.allInstances().length,
      manualTriggerRequested: this.manualTrigger,
      timeDriven: this.deps.topology.vertices.some((v) => v.head.kind === 'window' && v.head.window.time === 'processing'),
      failureSignal: this.failureSignal,
    };
    // Unread input facts count as nothing known (not sealed, not finished, not idle): decideNext does not look at them then.
    if (!needsInputFacts(this.deps.config, pending.length)) return { ...base, ingestedTotal: 0, sourcesFinished: false, inputSealed: false, idle: false, lastCompletedTrigger: undefined };
    const sources = this.deps.topology.sources();
    let ingestedTotal = 0;
    let sourcesFinished = true;
    let inputSealed = true;
    for (const source of sources) {
      for (let p = 0; p < source.parallelism; p++) {
        const log = await this.deps.log.status(p);
        ingestedTotal += log.head;
        inputSealed &&= log.sealed;
        // Only a sealed input finishes: the source's instance record is read only then.
        if (!sourcesFinished || !log.sealed) {
          sourcesFinished = false;
          continue;
        }
        const record = await this.deps.state.loadInstance(instanceId(source.id, p));
        if (!record?.sourceFinished || record.generation !== job.generation) sourcesFinished = false;
      }
    }
    const lastCompleted = job.lastCompletedId > 0 ? await this.completedCheckpoint(job.lastCompletedId) : undefined;
    return {
      ...base,
      ingestedTotal,
      sourcesFinished,
      inputSealed,
      // Only a finished input asks the queues (decideNext reads `idle` only then; on AWS each ask is a request per queue).
      idle: sourcesFinished ? await this.deps.env.isIdle() : false,
      lastCompletedTrigger: lastCompleted?.trigger,
      ...(lastCompleted ? { lastCompleted } : {}),
    };
  }

  /** Acknowledgements of `checkpoint` from instances of its generation (it completes at one per instance). Reads the acks only. */
  async acksOf(checkpoint: CheckpointRecord): Promise<number> {
    return (await this.deps.checkpoints.listAcks(checkpoint.id)).filter((a) => a.generation === checkpoint.generation).length;
  }

  /**
   * Executes exactly one decision (idempotent) against the ports. Returns the job record as the
   * transition left it, when this driver knows it (its own write, or `job` untouched); undefined
   * when another party (a recovery) may have written it. `facts`: what the decision was taken
   * on, so that the trigger reuses the log heads they read.
   */
  async execute(decision: ExecutableDecision, job: JobRecord, facts?: CoordinatorFacts): Promise<JobRecord | undefined> {
    const { checkpoints, clock } = this.deps;
    const now = clock.now();
    switch (decision.type) {
      case 'start-recovery': {
        this.failureSignal = undefined;
        const started = recoveryStarted(job, decision.toCheckpoint, decision.reason, now, decision.delayMs);
        await checkpoints.putJob(started, job.version);
        // The old generation stops committing now, not after the restart delay (the attempt's `begin` fences again: a crash may fall in between).
        await this.deps.state.fenceInstances(this.deps.topology.allInstances(), started.generation);
        this.deps.onTransition?.(decision);
        return undefined;
      }
      case 'continue-recovery':
        await this.recovery().run(job);
        this.deps.onTransition?.(decision);
        return undefined;
      case 'fail':
        this.failureSignal = undefined;
        await checkpoints.putJob(failed(job, decision.reason), job.version);
        this.deps.onTransition?.(decision);
        return undefined;
      case 'trigger': {
        this.manualTrigger = decision.trigger === 'manual' ? false : this.manualTrigger;
        // The heads the decision read a moment ago (it reads them whenever it may trigger).
        const ingested = facts && needsInputFacts(this.deps.config, facts.pending.length) ? facts.ingestedTotal : await this.ingestedTotal();
        const next = triggered(job, decision, now, ingested);
        await checkpoints.putCheckpoint(next.checkpoint);
        this.written?.set(next.checkpoint.id, next.checkpoint);
        await checkpoints.putJob(next.job, job.version);
        this.deps.onTransition?.(decision, next.checkpoint);
        return next.job;
      }
      case 'inject-barriers': {
        const checkpoint = await this.requireCheckpoint(decision.checkpointId);
        const messages = this.deps.topology.sources().flatMap((source) =>
          this.deps.topology.instancesOf(source).map((to) => ({
            queue: source.id,
            groupId: to,
            dedupId: `g${job.generation}:barrier:${decision.checkpointId}:${to}`,
            body: { type: 'inject-barrier' as const, gen: job.generation, to, checkpointId: decision.checkpointId, ...(checkpoint.trigger === 'final' ? { final: true as const } : {}) },
          })),
        );
        await this.deps.transport.send(messages);
        const injected = { ...checkpoint, barriersInjected: true };
        await checkpoints.putCheckpoint(injected);
        this.written?.set(injected.id, injected);
        return job;
      }
      case 'complete': {
        const checkpoint = await this.requireCheckpoint(decision.checkpointId);
        // Completed already (a retry after the job-record write was lost): its stored record stands.
        let done = checkpoint;
        if (checkpoint.status !== 'COMPLETED') {
          const acks = (await checkpoints.listAcks(decision.checkpointId)).filter((a) => a.generation === checkpoint.generation);
          done = { ...checkpoint, status: 'COMPLETED', finishedAt: now, ...(await this.summarize(acks)) };
          await checkpoints.putCheckpoint(done);
        }
        const next = completed(job, done, done.finishedAt ?? now, this.deps.config.retained);
        await checkpoints.putJob(next, job.version);
        this.deps.onTransition?.(decision, done);
        if (pruneDue(job.retainedCheckpoints[0], next.retainedCheckpoints[0], checkpointsPerPrune(this.deps.config), done.trigger === 'final')) await this.prune(next);
        return next;
      }
      case 'abort': {
        const checkpoint = await this.requireCheckpoint(decision.checkpointId);
        const done: CheckpointRecord = checkpoint.status === 'ABORTED' ? checkpoint : { ...checkpoint, status: 'ABORTED', finishedAt: now, abortReason: decision.reason };
        if (checkpoint.status !== 'ABORTED') await checkpoints.putCheckpoint(done);
        const next = aborted(job, decision.checkpointId);
        await checkpoints.putJob(next, job.version);
        this.deps.onTransition?.(decision, done);
        return next;
      }
      case 'commit-sinks': {
        await this.commitSinks(decision.throughCheckpoint);
        const next = { ...job, version: job.version + 1, sinksCommittedThrough: decision.throughCheckpoint };
        await checkpoints.putJob(next, job.version);
        return next;
      }
      case 'finish':
        await checkpoints.putJob({ ...job, version: job.version + 1, status: 'FINISHED' }, job.version);
        this.deps.onTransition?.(decision);
        return undefined;
    }
  }

  private async commitSinks(through: number): Promise<void> {
    for (const vertex of this.deps.topology.vertices) {
      const sink = vertex.sink;
      if (sink?.mode !== 'transactional') continue;
      const batches = await this.deps.state.readStaged(sink.uid, through);
      for (const batch of batches) {
        const batchId = sinkBatchId(batch.epoch, batch.instance);
        await this.deps.sinks.publish(sink.uid, batchId, batch.records);
        await this.deps.faults?.afterSinkPublish?.(sink.uid, batchId);
      }
      await this.deps.state.dropStaged(sink.uid, batches);
    }
  }

  /**
   * Retention (shared/core/retention.ts): what restores to checkpoints older than the oldest
   * retained one would read goes; source-log entries below every retained checkpoint's offsets
   * go; checkpoint records beyond the history go with their acks. Which checkpoints are still
   * restorable is the job record's `retainedCheckpoints` (the records are not marked).
   */
  private async prune(job: JobRecord): Promise<void> {
    const keepFrom = job.retainedCheckpoints[0];
    if (keepFrom === undefined) return;
    const { topology, checkpoints } = this.deps;
    for (const vertex of topology.vertices) {
      await this.deps.state.prune(vertex.id, keepFrom);
    }
    const retained = await Promise.all(job.retainedCheckpoints.map((id) => this.completedCheckpoint(id)));
    const readers = new Map<number, string[]>();
    for (const source of topology.sources()) for (let p = 0; p < source.parallelism; p++) readers.set(p, [...(readers.get(p) ?? []), instanceId(source.id, p)]);
    if (this.deps.config.truncateLog) for (const [partition, below] of logTruncationPoints(retained, readers)) await this.deps.log.truncate(partition, below);
    await checkpoints.forgetBelow(checkpointsForgottenBelow(job, this.deps.config.history));
  }

  private async summarize(acks: readonly CheckpointAck[]): Promise<Partial<CheckpointRecord>> {
    const sourceOffsets: Record<string, number> = {};
    for (const ack of acks) if (ack.sourceOffset !== undefined) sourceOffsets[ack.instance] = ack.sourceOffset;
    let stateKeys = 0;
    for (const vertex of this.deps.topology.vertices) stateKeys += await this.deps.state.countKeys(vertex.id);
    return {
      sourceOffsets,
      alignmentMs: acks.reduce((m, a) => Math.max(m, a.alignmentMs), 0),
      channelStateRecords: acks.reduce((s, a) => s + a.channelStateRecords, 0),
      stateWrites: acks.reduce((s, a) => s + a.stateWrites, 0),
      stateKeys,
    };
  }

  /**
   * A checkpoint the job record names as completed (its last, or a retained one). What the
   * coordinator reads of it (offsets, trigger, channel state) never changes once it completed,
   * so a host that keeps `completedCache` across decisions reads each one once.
   */
  private async completedCheckpoint(id: number): Promise<CheckpointRecord | undefined> {
    const cache = this.deps.completedCache;
    const cached = cache?.get(id);
    if (cached) return cached;
    const record = await this.deps.checkpoints.getCheckpoint(id);
    if (cache && record?.status === 'COMPLETED') {
      cache.set(id, record);
      for (const old of cache.keys()) if (cache.size > COMPLETED_CACHE_SIZE) cache.delete(old);
    }
    return record;
  }

  private async requireCheckpoint(id: number): Promise<CheckpointRecord> {
    const checkpoint = await this.deps.checkpoints.getCheckpoint(id);
    if (!checkpoint) throw new CheckpointNotFoundError(`checkpoint ${id} does not exist`);
    return checkpoint;
  }

  private async ingestedTotal(): Promise<number> {
    let total = 0;
    for (const source of this.deps.topology.sources()) for (let p = 0; p < source.parallelism; p++) total += (await this.deps.log.status(p)).head;
    return total;
  }
}
