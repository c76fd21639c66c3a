import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseCheckpointConfig, parseRuntimeLimits, type CheckpointConfig, type CheckpointConfigInput, type RuntimeLimits, type RuntimeLimitsInput } from '../core/config.js';
import { CoordinatorDriver, type CoordinatorFaults } from '../core/coordinator-driver.js';
import { InjectedFault } from '../core/errors.js';
import { ingestBatch, type IngressMessage } from '../core/ingest.js';
import { handleOperatorBatch, type BatchMessage } from '../core/instance/handler.js';
import type { StepDeps, StepFaults } from '../core/instance/step.js';
import type { JobGraph } from '../core/job.js';
import { instanceId, type InstanceMessage } from '../core/messages.js';
import type { CheckpointRecord, DeadLetter, JobRecord, OutboundMessage, QueueTransport } from '../core/ports.js';
import type { CoordinatorDecision } from '../core/protocol/coordinator.js';
import type { RestartStrategy } from '../core/protocol/restart-strategy.js';
import { Topology } from '../core/topology.js';
import { RealClock, VirtualClock, type RunClock } from './clock.js';
import { EmbeddedDb } from './db.js';
import { FifoQueue, type QueueMessage } from './fifo-queue.js';
import { StateDirLock } from './lock.js';
import { EmbeddedCheckpointStore, EmbeddedDeadLetterStore, EmbeddedSinkStore, EmbeddedSourceLog, EmbeddedStateStore } from './stores.js';

/**
 * The embedded runtime: the engine with in-process ports, a local event source that plays
 * Lambda's SQS event source mapping (FIFO groups, batches of at most 10, visibility timeout,
 * redelivery, max receive count, dead-letter queue, partial batch failures), and the
 * coordinator loop. Durable in a state directory; or in memory for tests.
 */

export interface TransportFaults {
  /** Deliver this message twice (at-least-once delivery). */
  duplicate?(message: OutboundMessage): boolean;
  /** Hold this send for a while (slow network): returns ms of simulated delay. */
  delayMs?(messages: readonly OutboundMessage[]): number;
  /** Lose this message (a purge racing a send, a poll sent into a rollback). */
  drop?(message: OutboundMessage): boolean;
}

export interface RuntimeFaults {
  readonly step?: StepFaults;
  readonly coordinator?: CoordinatorFaults;
  readonly transport?: TransportFaults;
  /** Called every loop turn: a schedule may stall groups, pause, or crash things. */
  onTurn?(runtime: EmbeddedRuntime): void | Promise<void>;
}

export interface RuntimeOptions {
  readonly job: JobGraph;
  readonly checkpoint?: CheckpointConfigInput;
  readonly limits?: RuntimeLimitsInput;
  /** Durable state directory (`.cairn/<job>` by default in the CLI); omit for memory only. */
  readonly stateDir?: string;
  readonly clock?: 'real' | 'virtual';
  readonly faults?: RuntimeFaults;
  /** Restore from this retained checkpoint instead of the latest. */
  readonly restoreFrom?: number;
  /** What a failure does: roll back after a delay, or end FAILED once exhausted (default: exponential backoff). */
  readonly restartStrategy?: RestartStrategy;
  readonly onTransition?: (decision: CoordinatorDecision, checkpoint?: CheckpointRecord) => void;
}

export interface RuntimeCounters {
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
}

interface Mapping {
  readonly queue: FifoQueue<unknown>;
  readonly batchSize: number;
  readonly maxConcurrency: number;
  inflight: number;
  readonly invoke: (batch: QueueMessage<unknown>[]) => Promise<string[]>;
}

const INGRESS = '__ingress';

export class EmbeddedRuntime {
  readonly topology: Topology;
  readonly config: CheckpointConfig;
  readonly limits: RuntimeLimits;
  readonly clock: RunClock;
  readonly db: EmbeddedDb;
  readonly state: EmbeddedStateStore;
  readonly checkpoints: EmbeddedCheckpointStore;
  readonly log: EmbeddedSourceLog;
  readonly sinks: EmbeddedSinkStore;
  readonly deadLetterStore: EmbeddedDeadLetterStore;
  readonly counters: RuntimeCounters = {
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
  };
  readonly lastErrors: string[] = [];

  private readonly queues = new Map<string, FifoQueue<unknown>>();
  private readonly deadLetterQueues = new Map<string, FifoQueue<unknown>>();
  private readonly ingress: FifoQueue<unknown>;
  private readonly mappings: Mapping[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly transport: QueueTransport;
  private readonly lock: StateDirLock | undefined;
  private coordinator: CoordinatorDriver;
  private closeRequested = false;
  private manualTrigger = false;
  private failureSignal: string | undefined;
  private readonly seenRedriven = new Map<string, number>();
  private delayedSends = 0;
  /** Timer service: instances get a tick every `tickIntervalMs` (flush timeouts, alignment timeouts, processing-time windows). */
  private readonly tickIntervalMs: number | undefined;
  private nextTickAt = 0;

  private constructor(private readonly options: RuntimeOptions) {
    this.topology = new Topology(options.job);
    this.config = parseCheckpointConfig(options.checkpoint);
    this.limits = parseRuntimeLimits(options.limits);
    this.clock = options.clock === 'virtual' ? new VirtualClock() : new RealClock();
    if (options.stateDir) {
      mkdirSync(options.stateDir, { recursive: true });
      this.lock = StateDirLock.acquire(options.stateDir);
      try {
        this.db = EmbeddedDb.open(join(options.stateDir, 'db'));
      } catch (error) {
        this.lock.release();
        throw error;
      }
    } else {
      this.db = EmbeddedDb.memory();
    }
    this.state = new EmbeddedStateStore(this.db);
    this.checkpoints = new EmbeddedCheckpointStore(this.db);
    this.log = new EmbeddedSourceLog(this.db);
    this.sinks = new EmbeddedSinkStore(this.db);
    this.deadLetterStore = new EmbeddedDeadLetterStore(this.db);

    const queueOptions = { visibilityTimeoutMs: this.limits.visibilityTimeoutMs, maxReceiveCount: this.limits.maxReceiveCount };
    const ingressDlq = new FifoQueue<unknown>(`${INGRESS}-dlq`, this.clock, { ...queueOptions, db: this.db });
    this.deadLetterQueues.set(INGRESS, ingressDlq);
    this.ingress = new FifoQueue<unknown>(INGRESS, this.clock, { ...queueOptions, deadLetterQueue: ingressDlq, db: this.db });
    for (const vertex of this.topology.vertices) {
      const dlq = new FifoQueue<unknown>(`${vertex.id}-dlq`, this.clock, { ...queueOptions, db: this.db });
      this.deadLetterQueues.set(vertex.id, dlq);
      this.seenRedriven.set(vertex.id, dlq.length);
      // Operator queues live in memory: after a process crash the job always rolls back to
      // its last checkpoint, and replay regenerates whatever was in flight.
      this.queues.set(vertex.id, new FifoQueue<unknown>(vertex.id, this.clock, { ...queueOptions, deadLetterQueue: dlq }));
    }
    this.transport = { send: (messages) => this.send(messages) };
    this.coordinator = this.newCoordinator();
    this.addMappings();
    this.tickIntervalMs = tickIntervalFor(this.topology, this.config, this.limits);
  }

  /**
   * Opens (or resumes) a job. A job found RUNNING in the state directory rolls back to its last
   * completed checkpoint; one found RECOVERING carries on with that recovery (its target, e.g.
   * the checkpoint a `--restore` asked for), in a new attempt.
   */
  static async open(options: RuntimeOptions): Promise<EmbeddedRuntime> {
    const runtime = new EmbeddedRuntime(options);
    try {
      const existing = await runtime.checkpoints.getJob();
      await runtime.coordinator.initialize();
      if (options.restoreFrom !== undefined) {
        await runtime.coordinator.requestRestore(`restore from checkpoint ${options.restoreFrom} requested`, options.restoreFrom);
      } else if (existing?.status === 'RUNNING') {
        await runtime.coordinator.requestRestore('process restarted');
      }
    } catch (error) {
      runtime.close();
      throw error;
    }
    return runtime;
  }

  // ---------- user API ----------

  /** Pushes raw events (JSON strings) into the ingress queue, as a producer would with SendMessage. */
  push(events: readonly IngressMessage[]): void {
    this.ingress.send(events.map((e) => ({ groupId: 'ingress', dedupId: e.id, body: e })));
  }

  /** Bounded input: once the ingress queue is drained, seal the source partitions. */
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

  async job(): Promise<JobRecord> {
    const job = await this.checkpoints.getJob();
    if (!job) throw new Error('job not initialized');
    return job;
  }

  async results(sinkUid: string): Promise<unknown[]> {
    return this.sinks.read(sinkUid);
  }

  deadLetters(): Promise<DeadLetter[]> {
    return this.deadLetterStore.list();
  }

  /** Messages redriven to a queue's dead-letter queue (after max receive count), with the reason. */
  redriven(): { queue: string; reason: string; body: unknown }[] {
    return [...this.deadLetterQueues].flatMap(([queue, dlq]) => dlq.all().map((m) => ({ queue, reason: m.reason ?? '', body: m.body })));
  }

  queue(vertexId: string): FifoQueue<unknown> | undefined {
    return this.queues.get(vertexId);
  }

  /** Runs until the job finishes (bounded input), `until` holds, or `maxTurns` passes. */
  async run(options: { until?: () => boolean; maxTurns?: number; onTurn?: () => void } = {}): Promise<JobRecord> {
    const maxTurns = options.maxTurns ?? Number.MAX_SAFE_INTEGER;
    for (let turn = 0; turn < maxTurns; turn++) {
      await this.options.faults?.onTurn?.(this);
      options.onTurn?.();
      if (options.until?.()) break;
      await this.tickIfDue();
      const started = this.pump();
      let progressed = false;
      let waitUntil: number | undefined;
      try {
        const result = await this.coordinator.step();
        progressed = result.progressed;
        waitUntil = result.waitUntil;
        if (result.job.status === 'FINISHED' || result.job.status === 'FAILED') {
          await this.drainInflight();
          return result.job;
        }
      } catch (error) {
        if (!(error instanceof InjectedFault)) throw error;
        // The coordinator crashed between two decisions: a new one takes over from the store.
        this.counters.coordinatorCrashes++;
        this.coordinator = this.newCoordinator();
        continue;
      }
      await this.sealIfDrained();
      this.checkRedrive();
      if (this.inflight.size > 0) {
        // Yield a macrotask, not just a microtask: an invocation may be waiting on a timer.
        await Promise.race([...this.inflight, this.clock.virtual ? new Promise((resolve) => setImmediate(resolve)) : this.clock.waitUntil(undefined)]);
      } else if (!started && !progressed) {
        await this.clock.waitUntil(this.nextEventAt(waitUntil));
      }
    }
    await this.drainInflight();
    return this.job();
  }

  close(): void {
    this.db.close();
    this.lock?.release();
  }

  // ---------- internals ----------

  private newCoordinator(): CoordinatorDriver {
    return new CoordinatorDriver({
      topology: this.topology,
      config: this.config,
      checkpoints: this.checkpoints,
      state: this.state,
      log: this.log,
      sinks: this.sinks,
      transport: this.transport,
      clock: this.clock,
      ...(this.options.restartStrategy ? { restartStrategy: this.options.restartStrategy } : {}),
      ...(this.options.faults?.coordinator ? { faults: this.options.faults.coordinator } : {}),
      ...(this.options.onTransition ? { onTransition: this.options.onTransition } : {}),
      env: {
        isIdle: () => this.isIdle(),
        purgeOperatorQueues: () => {
          for (const queue of this.queues.values()) queue.purge();
        },
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

  private stepDeps(): StepDeps {
    return {
      topology: this.topology,
      config: this.config,
      limits: this.limits,
      state: this.state,
      log: this.log,
      transport: this.transport,
      clock: this.clock,
      ...(this.options.faults?.step ? { faults: this.options.faults.step } : {}),
    };
  }

  private addMappings(): void {
    const source = this.topology.sources()[0];
    if (!source) throw new Error('job has no source');
    this.mappings.push({
      queue: this.ingress,
      // A standard-queue Lambda takes up to 10,000 per batch; 100 keeps steps short.
      batchSize: 100,
      maxConcurrency: 1,
      inflight: 0,
      invoke: async (batch) => {
        const job = await this.job();
        const outcome = await ingestBatch(
          { source, generation: job.generation, log: this.log, deadLetters: this.deadLetterStore, transport: this.transport, limits: this.limits, clock: this.clock },
          batch.map((m) => m.body as IngressMessage),
        );
        this.counters.ingested += outcome.appended;
        this.counters.ingestDuplicates += outcome.duplicates;
        this.counters.deadLetters += outcome.deadLettered;
        const failed = new Set(outcome.failedIds);
        return batch.filter((m) => failed.has((m.body as IngressMessage).id)).map((m) => m.id);
      },
    });
    for (const vertex of this.topology.vertices) {
      const queue = this.queues.get(vertex.id) as FifoQueue<unknown>;
      this.mappings.push({
        queue,
        batchSize: this.limits.batchSize,
        // Lambda scales a FIFO event source up to one concurrent batch per message group.
        maxConcurrency: vertex.parallelism,
        inflight: 0,
        invoke: async (batch) => {
          const messages: BatchMessage[] = batch.map((m) => ({ id: m.id, groupId: m.groupId, receiveCount: m.receiveCount, body: m.body as InstanceMessage }));
          const outcome = await handleOperatorBatch(this.stepDeps(), messages);
          for (const stats of outcome.stats) {
            this.counters.records += stats.records;
            this.counters.duplicatesDropped += stats.duplicates;
            this.counters.fencedDropped += stats.fenced;
            this.counters.lateDropped += stats.late;
            this.counters.deadLetters += stats.deadLetters;
          }
          for (const { instance, error } of outcome.errors) {
            this.counters.stepFailures++;
            this.lastErrors.push(`${instance}: ${error.name}: ${error.message}`);
            if (this.lastErrors.length > 20) this.lastErrors.shift();
          }
          return outcome.failedIds;
        },
      });
    }
  }

  /** Starts invocations for every mapping with visible messages, up to its concurrency. */
  private pump(): boolean {
    let started = false;
    for (const mapping of this.mappings) {
      while (mapping.inflight < mapping.maxConcurrency) {
        const batch = mapping.queue.receive(mapping.batchSize);
        if (batch.length === 0) break;
        started = true;
        // Simulated time: every invocation costs 1 ms, so periodic triggers fire mid-stream.
        if (this.clock instanceof VirtualClock) this.clock.advance(1);
        mapping.inflight++;
        this.counters.invocations++;
        const invocation = mapping
          .invoke(batch)
          .catch((error: unknown) => {
            // An invocation that throws fails its whole batch, as a Lambda error does.
            this.counters.stepFailures++;
            this.lastErrors.push(`invocation on ${mapping.queue.name}: ${(error as Error).message}`);
            return batch.map((m) => m.id);
          })
          .then((failedIds) => {
            const failed = new Set(failedIds);
            mapping.queue.delete(batch.filter((m) => !failed.has(m.id)).map((m) => m.id));
          })
          .finally(() => {
            mapping.inflight--;
            this.inflight.delete(invocation);
          });
        this.inflight.add(invocation);
      }
    }
    return started;
  }

  private async send(messages: readonly OutboundMessage[]): Promise<void> {
    const faults = this.options.faults?.transport;
    const delay = faults?.delayMs?.(messages) ?? 0;
    if (delay > 0) {
      this.delayedSends++;
      try {
        const until = this.clock.now() + delay;
        while (this.clock.now() < until) await this.clock.waitUntil(until);
      } finally {
        this.delayedSends--;
      }
    }
    for (const message of messages) {
      const queue = this.queues.get(message.queue);
      if (!queue) throw new Error(`unknown queue ${message.queue}`);
      if (faults?.drop?.(message)) continue;
      queue.send([{ groupId: message.groupId, dedupId: message.dedupId, body: message.body }]);
      if (faults?.duplicate?.(message)) {
        queue.send([{ groupId: message.groupId, dedupId: message.dedupId, body: message.body }], { bypassDedup: true });
      }
    }
  }

  private isIdle(): boolean {
    if (this.inflight.size > 0 || this.delayedSends > 0 || this.ingress.length > 0) return false;
    for (const queue of this.queues.values()) if (queue.length > 0) return false;
    return true;
  }

  private async sealIfDrained(): Promise<void> {
    if (!this.closeRequested || this.ingress.length > 0 || this.mappings[0]?.inflight) return;
    this.closeRequested = false;
    const job = await this.job();
    for (const source of this.topology.sources()) {
      for (let p = 0; p < source.parallelism; p++) {
        if (await this.log.isSealed(p)) continue;
        await this.log.seal(p);
        const to = instanceId(source.id, p);
        await this.send([{ queue: source.id, groupId: to, dedupId: `g${job.generation}:sealed:${to}`, body: { type: 'poll', gen: job.generation, to } }]);
      }
    }
  }

  /** A message redriven to an operator's dead-letter queue means lost input: roll back. */
  private checkRedrive(): void {
    for (const [vertexId, dlq] of this.deadLetterQueues) {
      if (vertexId === INGRESS) continue;
      const seen = this.seenRedriven.get(vertexId) ?? 0;
      if (dlq.length > seen) {
        this.counters.redriven += dlq.length - seen;
        this.seenRedriven.set(vertexId, dlq.length);
        const reason = dlq.all().at(-1)?.reason ?? 'redriven';
        this.failureSignal = `message reached the dead-letter queue of '${vertexId}' (${reason})`;
      }
    }
  }

  private async tickIfDue(): Promise<void> {
    if (this.tickIntervalMs === undefined || this.clock.now() < this.nextTickAt) return;
    this.nextTickAt = this.clock.now() + this.tickIntervalMs;
    const job = await this.job();
    if (job.status !== 'RUNNING') return;
    const at = this.clock.now();
    await this.send(
      this.topology.vertices
        .filter((v) => v.head.kind !== 'source')
        .flatMap((v) =>
          this.topology.instancesOf(v).map((to) => ({ queue: v.id, groupId: to, dedupId: `g${job.generation}:tick:${to}:${at}`, body: { type: 'tick' as const, gen: job.generation, to } })),
        ),
    );
  }

  private nextEventAt(coordinatorWait: number | undefined): number | undefined {
    let next = this.tickIntervalMs === undefined ? coordinatorWait : Math.min(coordinatorWait ?? Infinity, this.nextTickAt);
    for (const queue of [...this.queues.values(), this.ingress]) {
      const at = queue.nextVisibleAt();
      if (at !== undefined) next = next === undefined ? at : Math.min(next, at);
    }
    return next;
  }

  private async drainInflight(): Promise<void> {
    while (this.inflight.size > 0) await Promise.race(this.inflight);
  }
}

/** How often instances need a tick: only when something waits on time rather than on input. */
function tickIntervalFor(topology: Topology, config: CheckpointConfig, limits: RuntimeLimits): number | undefined {
  const candidates: number[] = [];
  if (limits.flushTimeoutMs > 0) candidates.push(limits.flushTimeoutMs);
  if (config.alignment === 'aligned-with-timeout' && config.alignmentTimeoutMs > 0) candidates.push(config.alignmentTimeoutMs);
  for (const vertex of topology.vertices) {
    if (vertex.head.kind === 'window' && vertex.head.window.time === 'processing') candidates.push(vertex.head.window.sizeMs / 4);
  }
  if (candidates.length === 0) return undefined;
  return Math.max(5, Math.min(...candidates));
}
