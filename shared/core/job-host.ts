import type { CheckpointConfig, RuntimeLimits } from './config.js';
import { CoordinatorDriver, type CoordinatorFaults } from './coordinator-driver.js';
import { InjectedFault } from './errors.js';
import { instanceId } from './messages.js';
import { tickIntervalFor, tickMessages } from './timer-service.js';
import type { CheckpointRecord, CheckpointStore, Clock, JobRecord, QueueTransport, SinkStore, SourceLog, StateStore } from './ports.js';
import type { CoordinatorDecision } from './protocol/coordinator.js';
import type { RestartStrategy } from './protocol/restart-strategy.js';
import type { Topology } from './topology.js';

/**
 * The host loop every process-hosted runtime shares (the embedded runtime, the local-cloud
 * runner), as Arroyo has one controller over its schedulers: the coordinator loop (a crashed
 * coordinator is replaced by a new one that carries on from the store), the counters, the
 * operator signals (checkpoint now, restart), sealing the sources once a bounded input is
 * drained, the timer service (ticks) and failure detection by dead-letter queue depth.
 *
 * What differs between runtimes (how messages are delivered, how the queues are asked whether
 * they are empty, how a turn waits) is a {@link HostPlatform}: only I/O, no policy.
 */

export interface HostCounters {
  ingested: number;
  ingestDuplicates: number;
  records: number;
  duplicatesDropped: number;
  fencedDropped: number;
  lateDropped: number;
  deadLetters: number;
  stepFailures: number;
  coordinatorCrashes: number;
  redriven: number;
  invocations: number;
  /** Messages received again after a failure or a visibility timeout. */
  redeliveries: number;
  eventSourceErrors: number;
}

/** The coordinator's ports: the job's stores and a transport to the operator queues. */
export interface CoordinatorPorts {
  readonly checkpoints: CheckpointStore;
  readonly state: StateStore;
  readonly log: SourceLog;
  readonly sinks: SinkStore;
  readonly transport: QueueTransport;
}

/** One queue's dead-letter queue: how many messages it holds, and why the last one failed (when the platform knows). */
export interface DeadLetterDepth {
  readonly count: number;
  readonly reason?: string;
}

/** What the host asks of its runtime: I/O only. */
export interface HostPlatform {
  readonly clock: Clock;
  /** Ports for a (new) coordinator. */
  coordinatorPorts(): CoordinatorPorts;
  /** Messages in each operator vertex's dead-letter queue. */
  deadLetterDepths(): Promise<ReadonlyMap<string, DeadLetterDepth>>;
  /** No ingress message is queued or being ingested. */
  ingressDrained(): Promise<boolean>;
  /** Nothing queued, delayed or in flight anywhere (asked only once the input is sealed). */
  pipelineIdle(): Promise<boolean>;
  /** Optimization on rollback (fencing is what makes it correct). */
  purgeOperatorQueues(): void | Promise<void>;
  /** Before each turn's coordinator step: start deliveries (embedded: invocations); true if any started. */
  deliver(): boolean | Promise<boolean>;
  /** After each step (the job as it now is): e.g. stop the event sources of a paused job. */
  afterStep?(job: JobRecord): Promise<void>;
  /** Between turns: wait for something to happen, at the latest until `wakeAt`. */
  wait(turn: { readonly started: boolean; readonly progressed: boolean; readonly wakeAt: number | undefined }): Promise<void>;
  /** The run ends: let running deliveries finish. */
  settle(): Promise<void>;
}

export interface JobHostOptions {
  readonly topology: Topology;
  readonly config: CheckpointConfig;
  readonly limits: RuntimeLimits;
  readonly platform: HostPlatform;
  readonly restartStrategy?: RestartStrategy;
  readonly coordinatorFaults?: CoordinatorFaults;
  readonly onTransition?: (decision: CoordinatorDecision, checkpoint?: CheckpointRecord) => void;
  /** Called every turn (fault schedules stall groups, pause, crash things). */
  readonly onTurn?: () => void | Promise<void>;
}

export interface RunOptions {
  /** Stop (the job keeps its state) once this holds. */
  readonly until?: () => boolean;
  readonly maxTurns?: number;
  /** Wall-clock limit. */
  readonly timeoutMs?: number;
  /**
   * Stop once nothing has progressed for this long (wall clock): no counter moved (events
   * ingested, records processed, invocations) and the coordinator executed no transition. A
   * deadline that follows progress: a slow machine does not cut a correct run short.
   */
  readonly stallMs?: number;
  readonly onTurn?: () => void;
}

const MAX_ERRORS = 20;

export class JobHost {
  readonly counters: HostCounters = {
    ingested: 0,
    ingestDuplicates: 0,
    records: 0,
    duplicatesDropped: 0,
    fencedDropped: 0,
    lateDropped: 0,
    deadLetters: 0,
    stepFailures: 0,
    coordinatorCrashes: 0,
    redriven: 0,
    invocations: 0,
    redeliveries: 0,
    eventSourceErrors: 0,
  };
  /** The last errors seen (steps, invocations, event sources), newest last. */
  readonly lastErrors: string[] = [];

  private coordinator: CoordinatorDriver;
  private ports: CoordinatorPorts;
  private closeRequested = false;
  private sealedInput = false;
  private manualTrigger = false;
  private failureSignal: string | undefined;
  /** Completed checkpoint records, kept across the coordinators this host creates (CoordinatorDeps.completedCache). */
  private readonly completedCache = new Map<number, CheckpointRecord>();
  private readonly seenDeadLetters = new Map<string, number>();
  /** Timer service: instances get a tick every `tickIntervalMs` (flush timeouts, alignment timeouts, processing-time windows). */
  private readonly tickIntervalMs: number | undefined;
  private nextTickAt = 0;

  constructor(private readonly options: JobHostOptions) {
    this.ports = options.platform.coordinatorPorts();
    this.coordinator = this.newCoordinator();
    this.tickIntervalMs = tickIntervalFor(options.topology, options.config, options.limits);
  }

  get clock(): Clock {
    return this.options.platform.clock;
  }

  /** The input is sealed: every source partition is at its end. */
  get sealed(): boolean {
    return this.sealedInput;
  }

  /**
   * Creates the job and its instances on first start (idempotent); takes the dead-letter queues'
   * depths as the baseline, and notes an input an earlier process already sealed.
   */
  async initialize(): Promise<JobRecord> {
    const job = await this.coordinator.initialize();
    for (const [queue, depth] of await this.options.platform.deadLetterDepths()) this.seenDeadLetters.set(queue, depth.count);
    this.sealedInput = await this.allPartitionsSealed();
    return job;
  }

  requestRestore(reason: string, checkpointId?: number): Promise<void> {
    return this.coordinator.requestRestore(reason, checkpointId);
  }

  /** Bounded input: once the ingress is drained, the source partitions are sealed. */
  closeInput(): void {
    this.closeRequested = true;
  }

  triggerCheckpoint(): void {
    this.manualTrigger = true;
  }

  /** Rolls every instance back to the last completed checkpoint and replays (a task failure in Flink's terms). */
  requestRestart(reason: string): void {
    this.failureSignal = reason;
  }

  note(error: string): void {
    this.lastErrors.push(error);
    if (this.lastErrors.length > MAX_ERRORS) this.lastErrors.shift();
  }

  async job(): Promise<JobRecord> {
    const job = await this.ports.checkpoints.getJob();
    if (!job) throw new Error('job not initialized');
    return job;
  }

  /** Runs until the job finishes or fails, `until` holds, `maxTurns` turns or `timeoutMs` pass. */
  async run(options: RunOptions = {}): Promise<JobRecord> {
    const { platform } = this.options;
    const maxTurns = options.maxTurns ?? Number.MAX_SAFE_INTEGER;
    const deadline = options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
    let lastProgressAt = Date.now();
    let lastCounters = this.progressMark();
    for (let turn = 0; turn < maxTurns; turn++) {
      await this.options.onTurn?.();
      options.onTurn?.();
      const mark = this.progressMark();
      if (mark !== lastCounters) {
        lastCounters = mark;
        lastProgressAt = Date.now();
      }
      if (options.until?.() || Date.now() > deadline) break;
      if (options.stallMs !== undefined && Date.now() - lastProgressAt > options.stallMs) break;
      await this.tickIfDue();
      const started = await platform.deliver();
      let result: Awaited<ReturnType<CoordinatorDriver['step']>>;
      try {
        result = await this.coordinator.step();
      } catch (error) {
        if (!(error instanceof InjectedFault)) throw error;
        // The coordinator crashed between two decisions: a new one carries on from the store.
        this.counters.coordinatorCrashes++;
        this.ports = platform.coordinatorPorts();
        this.coordinator = this.newCoordinator();
        continue;
      }
      if (result.job.status === 'FINISHED' || result.job.status === 'FAILED') {
        await platform.settle();
        return result.job;
      }
      if (result.progressed) lastProgressAt = Date.now();
      await platform.afterStep?.(result.job);
      await this.sealIfDrained();
      await this.checkDeadLetters();
      await platform.wait({ started, progressed: result.progressed, wakeAt: this.wakeAt(result.waitUntil) });
    }
    await platform.settle();
    return this.job();
  }

  // ---------- internals ----------

  /** Changes whenever the run does work: the sum of its counters. */
  private progressMark(): number {
    return (Object.values(this.counters) as number[]).reduce((sum, n) => sum + n, 0);
  }

  private newCoordinator(): CoordinatorDriver {
    const { options } = this;
    return new CoordinatorDriver({
      topology: options.topology,
      config: options.config,
      ...this.ports,
      clock: options.platform.clock,
      completedCache: this.completedCache,
      ...(options.restartStrategy ? { restartStrategy: options.restartStrategy } : {}),
      ...(options.coordinatorFaults ? { faults: options.coordinatorFaults } : {}),
      ...(options.onTransition ? { onTransition: options.onTransition } : {}),
      env: {
        // Only a sealed input can finish, so the queues are asked only then.
        isIdle: () => this.sealedInput && options.platform.pipelineIdle(),
        purgeOperatorQueues: () => options.platform.purgeOperatorQueues(),
        takeFailureSignal: () => {
          const signal = this.failureSignal;
          this.failureSignal = undefined;
          return signal;
        },
        takeManualTrigger: () => {
          const requested = this.manualTrigger;
          this.manualTrigger = false;
          return requested;
        },
      },
    });
  }

  /** A message redriven to an operator's dead-letter queue means lost input: roll back. */
  private async checkDeadLetters(): Promise<void> {
    for (const [queue, depth] of await this.options.platform.deadLetterDepths()) {
      const seen = this.seenDeadLetters.get(queue) ?? 0;
      if (depth.count <= seen) continue;
      this.counters.redriven += depth.count - seen;
      this.seenDeadLetters.set(queue, depth.count);
      this.failureSignal ??= `message reached the dead-letter queue of '${queue}'${depth.reason ? ` (${depth.reason})` : ''}`;
    }
  }

  private async sealIfDrained(): Promise<void> {
    if (!this.closeRequested || this.sealedInput || !(await this.options.platform.ingressDrained())) return;
    const job = await this.job();
    const { log, transport } = this.ports;
    for (const source of this.options.topology.sources()) {
      for (let p = 0; p < source.parallelism; p++) {
        if (!(await log.isSealed(p))) await log.seal(p);
        const to = instanceId(source.id, p);
        await transport.send([{ queue: source.id, groupId: to, dedupId: `g${job.generation}:sealed:${to}`, body: { type: 'poll', gen: job.generation, to } }]);
      }
    }
    this.sealedInput = true;
  }

  private async allPartitionsSealed(): Promise<boolean> {
    for (const source of this.options.topology.sources()) {
      for (let p = 0; p < source.parallelism; p++) if (!(await this.ports.log.isSealed(p))) return false;
    }
    return true;
  }

  private async tickIfDue(): Promise<void> {
    const now = this.clock.now();
    if (this.tickIntervalMs === undefined || now < this.nextTickAt) return;
    this.nextTickAt = now + this.tickIntervalMs;
    const job = await this.job();
    if (job.status !== 'RUNNING') return;
    await this.ports.transport.send(tickMessages(this.options.topology, job.generation, now));
  }

  private wakeAt(coordinatorWait: number | undefined): number | undefined {
    if (this.tickIntervalMs === undefined) return coordinatorWait;
    return Math.min(coordinatorWait ?? Number.POSITIVE_INFINITY, this.nextTickAt);
  }
}

export { tickIntervalFor } from './timer-service.js';
