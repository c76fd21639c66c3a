import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseCheckpointConfig, parseRuntimeLimits, type CheckpointConfig, type CheckpointConfigInput, type RuntimeLimits, type RuntimeLimitsInput } from '../core/config.js';
import type { CoordinatorFaults } from '../core/coordinator-driver.js';
import { ingestBatch, ingestPollsSources, type IngressMessage } from '../core/ingest.js';
import { handleOperatorBatch, type BatchMessage } from '../core/instance/handler.js';
import type { StepDeps, StepFaults } from '../core/instance/step.js';
import type { JobGraph } from '../core/job.js';
import { JobHost, type DeadLetterDepth, type HostCounters, type HostPlatform, type RunOptions } from '../core/job-host.js';
import type { InstanceMessage } from '../core/messages.js';
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

export type RuntimeCounters = HostCounters;

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
  /** Whether ingest tells the sources to read after an append (ingestPollsSources). */
  private readonly pollSources: boolean;
  readonly clock: RunClock;
  readonly db: EmbeddedDb;
  readonly state: EmbeddedStateStore;
  readonly checkpoints: EmbeddedCheckpointStore;
  readonly log: EmbeddedSourceLog;
  readonly sinks: EmbeddedSinkStore;
  readonly deadLetterStore: EmbeddedDeadLetterStore;
  private readonly host: JobHost;
  private readonly queues = new Map<string, FifoQueue<unknown>>();
  private readonly deadLetterQueues = new Map<string, FifoQueue<unknown>>();
  private readonly ingress: FifoQueue<unknown>;
  private readonly mappings: Mapping[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly transport: QueueTransport;
  private readonly lock: StateDirLock | undefined;
  private delayedSends = 0;

  private constructor(private readonly options: RuntimeOptions) {
    this.topology = new Topology(options.job);
    this.config = parseCheckpointConfig(options.checkpoint);
    this.limits = parseRuntimeLimits(options.limits);
    this.pollSources = ingestPollsSources(this.topology, this.config, this.limits);
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
    this.log = new EmbeddedSourceLog(this.db, { clock: this.clock });
    this.sinks = new EmbeddedSinkStore(this.db);
    this.deadLetterStore = new EmbeddedDeadLetterStore(this.db);

    const queueOptions = { visibilityTimeoutMs: this.limits.visibilityTimeoutMs, maxReceiveCount: this.limits.maxReceiveCount };
    const ingressDlq = new FifoQueue<unknown>(`${INGRESS}-dlq`, this.clock, { ...queueOptions, db: this.db });
    this.deadLetterQueues.set(INGRESS, ingressDlq);
    this.ingress = new FifoQueue<unknown>(INGRESS, this.clock, { ...queueOptions, deadLetterQueue: ingressDlq, db: this.db });
    for (const vertex of this.topology.vertices) {
      const dlq = new FifoQueue<unknown>(`${vertex.id}-dlq`, this.clock, { ...queueOptions, db: this.db });
      this.deadLetterQueues.set(vertex.id, dlq);
      // Operator queues live in memory: after a process crash the job always rolls back to
      // its last checkpoint, and replay regenerates whatever was in flight.
      this.queues.set(vertex.id, new FifoQueue<unknown>(vertex.id, this.clock, { ...queueOptions, deadLetterQueue: dlq }));
    }
    this.transport = { send: (messages) => this.send(messages) };
    this.host = new JobHost({
      topology: this.topology,
      config: this.config,
      limits: this.limits,
      platform: this.platform(),
      ...(options.restartStrategy ? { restartStrategy: options.restartStrategy } : {}),
      ...(options.faults?.coordinator ? { coordinatorFaults: options.faults.coordinator } : {}),
      ...(options.onTransition ? { onTransition: options.onTransition } : {}),
      onTurn: () => options.faults?.onTurn?.(this),
    });
    this.addMappings();
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
      await runtime.host.initialize();
      if (options.restoreFrom !== undefined) {
        await runtime.host.requestRestore(`restore from checkpoint ${options.restoreFrom} requested`, options.restoreFrom);
      } else if (existing?.status === 'RUNNING') {
        await runtime.host.requestRestore('process restarted');
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

  /** Counters of the run (ingest, records, drops, failures, invocations). */
  get counters(): RuntimeCounters {
    return this.host.counters;
  }

  /** The last errors seen (steps, invocations), newest last. */
  get lastErrors(): readonly string[] {
    return this.host.lastErrors;
  }

  /** Bounded input: once the ingress queue is drained, seal the source partitions. */
  closeInput(): void {
    this.host.closeInput();
  }

  triggerCheckpoint(): void {
    this.host.triggerCheckpoint();
  }

  /** Rolls every instance back to the last completed checkpoint and replays (a task failure in Flink's terms). */
  requestRestart(reason: string): void {
    this.host.requestRestart(reason);
  }

  job(): Promise<JobRecord> {
    return this.host.job();
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
  run(options: RunOptions = {}): Promise<JobRecord> {
    return this.host.run(options);
  }

  close(): void {
    this.db.close();
    this.lock?.release();
  }

  // ---------- internals ----------

  /** The host's I/O: in-process queues and invocations, virtual or real time. */
  private platform(): HostPlatform {
    const ports = { checkpoints: this.checkpoints, state: this.state, log: this.log, sinks: this.sinks, transport: this.transport };
    return {
      clock: this.clock,
      coordinatorPorts: () => ports,
      deadLetterDepths: () => {
        const depths = new Map<string, DeadLetterDepth>();
        for (const [vertexId, dlq] of this.deadLetterQueues) {
          if (vertexId === INGRESS) continue;
          depths.set(vertexId, dlq.length === 0 ? { count: 0 } : { count: dlq.length, reason: dlq.all().at(-1)?.reason ?? 'redriven' });
        }
        return Promise.resolve(depths);
      },
      ingressDrained: () => Promise.resolve(this.ingress.length === 0 && !this.mappings[0]?.inflight),
      pipelineIdle: () => Promise.resolve(this.isIdle()),
      purgeOperatorQueues: () => {
        for (const queue of this.queues.values()) queue.purge();
      },
      deliver: () => this.pump(),
      wait: async ({ started, progressed, wakeAt }) => {
        if (this.inflight.size > 0) {
          // Yield a macrotask, not just a microtask: an invocation may be waiting on a timer.
          await Promise.race([...this.inflight, this.clock.virtual ? new Promise((resolve) => setImmediate(resolve)) : this.clock.waitUntil(undefined)]);
        } else if (!started && !progressed) {
          await this.clock.waitUntil(this.nextEventAt(wakeAt));
        }
      },
      settle: () => this.drainInflight(),
    };
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
        const counters = this.counters;
        const outcome = await ingestBatch(
          {
            source,
            generation: job.generation,
            running: job.status === 'RUNNING',
            pollSources: this.pollSources,
            log: this.log,
            deadLetters: this.deadLetterStore,
            transport: this.transport,
            limits: this.limits,
            clock: this.clock,
          },
          batch.map((m) => m.body as IngressMessage),
        );
        counters.ingested += outcome.appended;
        counters.ingestDuplicates += outcome.duplicates;
        counters.deadLetters += outcome.deadLettered;
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
            this.host.note(`${instance}: ${error.name}: ${error.message}`);
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
        this.counters.redeliveries += batch.filter((m) => m.receiveCount > 1).length;
        const invocation = mapping
          .invoke(batch)
          .catch((error: unknown) => {
            // An invocation that throws fails its whole batch, as a Lambda error does.
            this.counters.stepFailures++;
            this.host.note(`invocation on ${mapping.queue.name}: ${(error as Error).message}`);
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

  private nextEventAt(wakeAt: number | undefined): number | undefined {
    let next = wakeAt;
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
