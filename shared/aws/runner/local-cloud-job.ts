import { randomUUID } from 'node:crypto';
import { GetQueueAttributesCommand, PurgeQueueCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Example } from '../../core/definition.js';
import { createDeadLetterHandler } from '../../lambda/dead-letter-handler.js';
import { createIngestHandler } from '../../lambda/ingest-handler.js';
import { createOperatorHandler } from '../../lambda/operator-handler.js';
import { quietTelemetry, type Telemetry } from '../../lambda/telemetry.js';
import { parseCheckpointConfig, parseRuntimeLimits, type CheckpointConfig, type CheckpointConfigInput, type RuntimeLimits, type RuntimeLimitsInput } from '../../core/config.js';
import type { RestartStrategy } from '../../core/protocol/restart-strategy.js';
import { INGRESS_QUEUE } from '../../core/redrive.js';
import type { CoordinatorFaults } from '../../core/coordinator-driver.js';
import { murmur3 } from '../../core/hashing.js';
import type { StepFaults } from '../../core/instance/step.js';
import type { JobGraph } from '../../core/job.js';
import { JobHost, type DeadLetterDepth, type HostCounters, type HostPlatform, type RunOptions } from '../../core/job-host.js';
import type { CheckpointRecord, DeadLetter, JobRecord, OutboundMessage, QueueTransport } from '../../core/ports.js';
import type { CoordinatorDecision } from '../../core/protocol/coordinator.js';
import { Topology } from '../../core/topology.js';
import { deleteJobTable } from '../adapters/provision.js';
import { packIngressBatches } from '../../core/ingress-batch.js';
import { DEFAULT_INGRESS_MESSAGE_BYTES, sendIngressMessages, type IngressMessageToSend } from '../ingress-producer.js';
import { DynamoBillingMeter } from '../adapters/dynamo-billing.js';
import { RequestCounter } from '../adapters/request-counter.js';
import { createAwsStores, type AwsStores } from '../index.js';
import type { JobResources } from '../ops/job-resources.js';
import { SqsEventSource } from './event-source.js';
import { createJobQueues, deleteJobQueues, queueNameOfUrl, type JobQueues } from './queues.js';

/**
 * A job on the local cloud (or any AWS endpoint): the table, bucket and queues of the
 * deployed stack, the real Lambda handlers invoked in process by SQS event sources that poll
 * the real SQS API, and the coordinator (CoordinatorDriver over the DynamoDB stores) as an
 * in-process loop. Failure detection as on AWS: a message in an operator's dead-letter queue
 * (ApproximateNumberOfMessages) rolls the job back.
 *
 * The same shape as the embedded runtime where it makes sense: push, closeInput, run,
 * results, deadLetters, counters.
 */

export interface TransportFaults {
  /** Send this message again (with another deduplication id, so SQS delivers both). */
  duplicate?(message: OutboundMessage): boolean;
  /** Hold this send for that many ms. */
  delayMs?(messages: readonly OutboundMessage[]): number;
}

export interface LocalCloudFaults {
  readonly step?: StepFaults;
  readonly coordinator?: CoordinatorFaults;
  readonly transport?: TransportFaults;
  /** Called every coordinator loop turn. */
  onTurn?(job: LocalCloudJob): void | Promise<void>;
}

export type ClientRole = 'functions' | 'coordinator';

export interface LocalCloudJobOptions {
  readonly job?: JobGraph;
  readonly example?: Example;
  /** AWS_ENDPOINT_URL-style endpoint (the local cloud's edge); undefined = the SDK's default. */
  readonly endpoint?: string;
  readonly region?: string;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  readonly checkpoint?: CheckpointConfigInput;
  readonly limits?: RuntimeLimitsInput;
  /** Prefix of every resource name (default `cairn-<job>-<random>`). */
  readonly name?: string;
  /** The ingress queue: FIFO (default; keeps the push order) or standard. */
  readonly ingress?: 'fifo' | 'standard';
  /** Queue visibility timeout: a failed batch is redelivered after it. Default 1 s. */
  readonly visibilityTimeoutSeconds?: number;
  /** RedrivePolicy maxReceiveCount. Default: limits.maxReceiveCount. */
  readonly maxReceiveCount?: number;
  /** Events per ingest invocation (FIFO ingress: at most 10). Default 10 (FIFO) / 100 (standard). */
  readonly ingestBatchSize?: number;
  /** Standard ingress: gather up to ingestBatchSize events for at most this long per invocation (the mapping's batching window, as deployed). Default 0. */
  readonly ingestBatchingWindowMs?: number;
  /** Concurrent ingest invocations. Default: the source's partitions (FIFO) / 2 (standard). */
  readonly ingestConcurrency?: number;
  /** Concurrent invocations per operator queue. Default: the vertex's parallelism. */
  readonly operatorConcurrency?: number;
  /** Coordinator loop period while it waits. Default 100 ms. */
  readonly coordinatorPollMs?: number;
  /**
   * PurgeQueue the operator queues on rollback, waiting for it before any send. Default false,
   * as deployed: on AWS a purge takes up to 60 s and deletes what is sent meanwhile (the new
   * generation's polls, ticks and barriers), waited for or not, and the local cloud's edge plays
   * that (aws-rules.ts), so nothing purges; fencing drops the old generation's messages, which
   * is what makes a rollback correct.
   */
  readonly purgeOnRollback?: boolean;
  /** What a failure does: roll back after a delay, or end FAILED once exhausted (default: exponential backoff). */
  readonly restartStrategy?: RestartStrategy;
  readonly faults?: LocalCloudFaults;
  readonly onTransition?: (decision: CoordinatorDecision, checkpoint?: CheckpointRecord) => void;
  /** Handler logging and metrics (default: quiet; the runner keeps its own counters). */
  readonly telemetry?: Telemetry;
  /** Sees each SDK client set before use (tests add middleware, e.g. throttling). */
  readonly onClients?: (clients: AwsStores['clients'], role: ClientRole) => void;
  /** Payloads over this many bytes spill to S3 (default: the adapters' threshold, under the 400 KB item limit). */
  readonly spillThresholdBytes?: number;
  /** Keep the table and queues on destroy() (the CLI leaves them for inspection). */
  readonly keepResources?: boolean;
}

export type LocalCloudCounters = HostCounters;

/** Requests by who made them: the Lambda handlers, the coordinator, the event sources (receive/delete). */
export interface RequestCounters {
  readonly functions: RequestCounter;
  readonly coordinator: RequestCounter;
  readonly eventSources: RequestCounter;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function resourcePrefix(name: string): string {
  const clean = name
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 30);
  return `cairn-${clean}-${randomUUID().slice(0, 8)}`;
}

export class LocalCloudJob {
  readonly topology: Topology;
  readonly config: CheckpointConfig;
  readonly limits: RuntimeLimits;
  readonly clock = { now: (): number => Date.now() };

  private readonly sources: SqsEventSource[] = [];
  private ingestSource!: SqsEventSource;
  private host!: JobHost;
  private purging: Promise<void> = Promise.resolve();
  private delayedSends = 0;
  private readonly stalls = new Map<string, number>();
  private started = false;
  /** The event sources were stopped by a pause (not by the end of the run). */
  private pausedSources = false;
  private region = 'us-east-1';

  private constructor(
    private readonly options: LocalCloudJobOptions,
    readonly prefix: string,
    readonly sqs: SQSClient,
    /** Stores of the handlers (one set of clients, as one Lambda execution environment has). */
    readonly stores: AwsStores,
    /** Stores of the coordinator. */
    readonly coordinatorStores: AwsStores,
    readonly queues: JobQueues,
    graph: JobGraph,
    /** AWS requests by who made them. */
    readonly requests: RequestCounters,
  ) {
    this.topology = new Topology(graph);
    this.config = parseCheckpointConfig({ ...options.example?.checkpoint, ...options.checkpoint });
    this.limits = parseRuntimeLimits(options.limits);
  }

  /** Creates the table, bucket and queues, the handlers and the coordinator; initializes the job. */
  static async create(options: LocalCloudJobOptions): Promise<LocalCloudJob> {
    const graph = options.job ?? options.example?.build();
    if (!graph) throw new Error('createLocalCloudJob needs a job or an example');
    const topology = new Topology(graph);
    const limits = parseRuntimeLimits(options.limits);
    const prefix = options.name ?? resourcePrefix(graph.name);
    const region = options.region ?? process.env.AWS_REGION ?? 'us-east-1';
    const base = {
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      region,
      ...(options.credentials ? { credentials: options.credentials } : {}),
    };
    // Request units too, billed by AWS's on-demand rules (one meter: both write the job table).
    const meter = new DynamoBillingMeter();
    const counters: RequestCounters = { functions: new RequestCounter({ dynamoCapacity: meter }), coordinator: new RequestCounter({ dynamoCapacity: meter }), eventSources: new RequestCounter() };
    const sqs = new SQSClient({ ...base, maxAttempts: 8 });
    counters.eventSources.attach(sqs);
    const visibility = options.visibilityTimeoutSeconds ?? 1;
    const queues = await createJobQueues(sqs, {
      prefix,
      vertices: topology.vertices.map((v) => v.id),
      ingress: options.ingress ?? 'fifo',
      visibilityTimeoutSeconds: visibility,
      maxReceiveCount: options.maxReceiveCount ?? limits.maxReceiveCount,
    });
    const queueUrls = Object.fromEntries(Object.entries(queues.operators).map(([vertex, q]) => [vertex, q.url]));
    const storeOptions = {
      tableName: prefix,
      bucket: prefix.toLowerCase(),
      queueUrls,
      ...base,
      ...(options.spillThresholdBytes === undefined ? {} : { spillThresholdBytes: options.spillThresholdBytes }),
    };
    const stores = await createAwsStores({ ...storeOptions, counter: counters.functions, provision: true });
    const coordinatorStores = await createAwsStores({ ...storeOptions, counter: counters.coordinator });
    options.onClients?.(stores.clients, 'functions');
    options.onClients?.(coordinatorStores.clients, 'coordinator');
    const job = new LocalCloudJob(options, prefix, sqs, stores, coordinatorStores, queues, graph, counters);
    job.wire(region, visibility);
    await job.host.initialize();
    return job;
  }

  // ---------- user API ----------

  /** What `cairn status|pause|... --target local-cloud` needs to find this job (shared/aws/ops). */
  resources(): JobResources {
    return {
      jobName: this.topology.graph.name,
      tableName: this.prefix,
      bucket: this.prefix.toLowerCase(),
      ingressQueueUrl: this.queues.ingress.url,
      queueUrls: Object.fromEntries(Object.entries(this.queues.operators).map(([vertex, q]) => [vertex, q.url])),
      deadLetterQueueUrls: {
        ingress: this.queues.ingress.dlqUrl,
        ...Object.fromEntries(Object.entries(this.queues.operators).map(([vertex, q]) => [vertex, q.dlqUrl])),
      },
      eventSourceMappingIds: [],
      ...(this.options.endpoint ? { endpoint: this.options.endpoint } : {}),
      region: this.region,
    };
  }

  get ingressQueueUrl(): string {
    return this.queues.ingress.url;
  }

  get ingressIsFifo(): boolean {
    return this.queues.ingress.url.endsWith('.fifo');
  }

  /**
   * Pushes raw events to the ingress queue with SendMessageBatch, as any producer would. On a
   * FIFO ingress the event id is the deduplication id, and the message group is `group` or,
   * by default, the event's source partition (by the source's partitionKey; events without one
   * are spread over as many groups), so that partitions ingest in parallel and each keeps the
   * push order. With `pack`, events travel packed into batch messages (IngressProducer's
   * packing, per message group on a FIFO ingress).
   */
  async push(events: readonly { id: string; body: string }[], group?: string, options: { readonly pack?: boolean } = {}): Promise<void> {
    const fifo = this.ingressIsFifo;
    const groupOf = (e: { id: string; body: string }): string | undefined => (fifo ? (group ?? this.ingressGroupOf(e)) : undefined);
    let messages: IngressMessageToSend[];
    if (options.pack) {
      const byGroup = new Map<string | undefined, { id: string; body: string }[]>();
      for (const e of events) {
        const group = groupOf(e);
        const list = byGroup.get(group) ?? [];
        list.push(e);
        byGroup.set(group, list);
      }
      messages = [...byGroup].flatMap(([groupId, list]) => packIngressBatches(list, DEFAULT_INGRESS_MESSAGE_BYTES).map((b) => ({ id: b.id, body: b.body, ...(groupId ? { groupId } : {}) })));
    } else {
      // The event's own id: the ingest deduplicates by it (a re-push is one event), and a dead letter names it (`--input`: the line).
      messages = events.map((e) => ({ id: e.id, body: e.body, ...(fifo ? { groupId: groupOf(e) } : {}) }));
    }
    // FIFO: in order (per group); standard: a few requests at once.
    if (fifo) {
      await sendIngressMessages(this.sqs, this.ingressQueueUrl, messages);
      return;
    }
    const slices: IngressMessageToSend[][] = [];
    for (let i = 0; i < messages.length; i += 80) slices.push(messages.slice(i, i + 80));
    for (let i = 0; i < slices.length; i += 8) await Promise.all(slices.slice(i, i + 8).map((slice) => sendIngressMessages(this.sqs, this.ingressQueueUrl, slice)));
  }

  private ingressGroupOf(event: { id: string; body: string }): string {
    const source = this.topology.sources()[0];
    const head = source?.head;
    if (!source || head?.kind !== 'source') return 'ingress';
    if (head.partitionKey) {
      try {
        const parsed = head.schema.safeParse(JSON.parse(event.body));
        if (parsed.success) return `p${murmur3(head.partitionKey(parsed.data)) % source.parallelism}`;
      } catch {
        // bad input: any group (it becomes a dead letter)
      }
      return 'p0';
    }
    return `p${murmur3(event.id) % source.parallelism}`;
  }

  /** Counters of the run (ingest, records, drops, failures, invocations, redeliveries). */
  get counters(): LocalCloudCounters {
    return this.host.counters;
  }

  /** The last errors seen (steps, event sources), newest last. */
  get lastErrors(): readonly string[] {
    return this.host.lastErrors;
  }

  /** Bounded input: once the ingress queue is drained, the source partitions are sealed. */
  closeInput(): void {
    this.host.closeInput();
  }

  triggerCheckpoint(): void {
    this.host.triggerCheckpoint();
  }

  requestRestart(reason: string): void {
    this.host.requestRestart(reason);
  }

  /** Messages of this instance are not delivered until `until` (fault schedules). */
  stallGroup(instance: string, until: number): void {
    this.stalls.set(instance, until);
  }

  job(): Promise<JobRecord> {
    return this.host.job();
  }

  get checkpoints(): AwsStores['checkpoints'] {
    return this.coordinatorStores.checkpoints;
  }

  get state(): AwsStores['stateStore'] {
    return this.coordinatorStores.stateStore;
  }

  get log(): AwsStores['sourceLog'] {
    return this.coordinatorStores.sourceLog;
  }

  results(sink: string): Promise<unknown[]> {
    return this.coordinatorStores.sinks.read(sink);
  }

  deadLetters(): Promise<DeadLetter[]> {
    return this.coordinatorStores.deadLetters.list();
  }

  /** Messages in the dead-letter queues (peeked: up to 10 per queue), by queue. */
  async redriven(): Promise<{ queue: string; count: number; bodies: string[] }[]> {
    const out: { queue: string; count: number; bodies: string[] }[] = [];
    for (const [queue, pair] of [['ingress', this.queues.ingress] as const, ...Object.entries(this.queues.operators)]) {
      const count = await this.approximate(pair.dlqUrl, ['ApproximateNumberOfMessages']);
      if (count === 0) continue;
      const peek = await this.sqs.send(new ReceiveMessageCommand({ QueueUrl: pair.dlqUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 0 }));
      out.push({ queue, count, bodies: (peek.Messages ?? []).map((m) => m.Body ?? '') });
    }
    return out;
  }

  /** The event sources are polling (false before start, after stop, and while paused). */
  get consuming(): boolean {
    return this.started;
  }

  /** Starts the event sources (run() does it too). Events pushed by any SQS client are processed from now on. */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const source of this.sources) source.start();
  }

  /** Runs the coordinator loop until the job finishes or fails, `until` holds, or `timeoutMs` passes. */
  run(options: RunOptions = {}): Promise<JobRecord> {
    this.start();
    return this.host.run(options);
  }

  /**
   * `cairn pause` plays out here as on AWS, where it disables the event source mappings: once
   * the job is paused and no checkpoint is pending, the event sources stop; on resume they start.
   */
  private async followPause(job: JobRecord): Promise<void> {
    if (job.paused && job.pendingCheckpoints.length === 0 && this.started) {
      await this.stop();
      this.pausedSources = true;
    } else if (!job.paused && this.pausedSources) {
      this.pausedSources = false;
      this.start();
    }
  }

  /** Stops the event sources (waits for running invocations). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await Promise.all(this.sources.map((s) => s.stop()));
  }

  /** Stops, deletes the queues and the table (unless keepResources), closes the clients. */
  async destroy(): Promise<void> {
    await this.stop();
    if (!this.options.keepResources) {
      await deleteJobQueues(this.sqs, this.queues).catch(() => undefined);
      await deleteJobTable(this.stores.clients.dynamo, this.prefix).catch(() => undefined);
    }
    this.stores.destroy();
    this.coordinatorStores.destroy();
    this.sqs.destroy();
  }

  /** AWS requests of everything (handlers, coordinator, event sources), by `Service.Operation`. */
  requestSnapshot(): Record<string, number> {
    const total: Record<string, number> = {};
    for (const counter of Object.values(this.requests) as RequestCounter[]) {
      for (const [key, n] of Object.entries(counter.snapshot())) total[key] = (total[key] ?? 0) + n;
    }
    return Object.fromEntries(Object.entries(total).sort(([a], [b]) => a.localeCompare(b)));
  }

  // ---------- internals ----------

  private wire(region: string, visibility: number): void {
    this.region = region;
    const transport = this.transportFor(this.stores.transport);
    const telemetry = this.options.telemetry ?? quietTelemetry;
    this.host = new JobHost({
      topology: this.topology,
      config: this.config,
      limits: this.limits,
      platform: this.platform(),
      ...(this.options.restartStrategy ? { restartStrategy: this.options.restartStrategy } : {}),
      ...(this.options.faults?.coordinator ? { coordinatorFaults: this.options.faults.coordinator } : {}),
      ...(this.options.onTransition ? { onTransition: this.options.onTransition } : {}),
      onTurn: () => this.options.faults?.onTurn?.(this),
    });
    const note = (line: string): void => this.host.note(line);
    const ingest = createIngestHandler({
      job: this.topology,
      config: this.config,
      limits: this.limits,
      log: this.stores.sourceLog,
      deadLetters: this.stores.deadLetters,
      transport,
      checkpoints: this.stores.checkpoints,
      clock: this.clock,
      telemetry,
      onOutcome: (o) => {
        this.counters.ingested += o.appended;
        this.counters.ingestDuplicates += o.duplicates;
        this.counters.deadLetters += o.deadLettered;
        if (o.error) note(`ingest: ${o.error.message}`);
      },
    });
    const operator = createOperatorHandler({
      job: this.topology,
      config: this.config,
      limits: this.limits,
      state: this.stores.stateStore,
      log: this.stores.sourceLog,
      transport,
      deadLetters: this.stores.deadLetters,
      clock: this.clock,
      telemetry,
      ...(this.options.faults?.step ? { faults: this.options.faults.step } : {}),
      onOutcome: (o) => {
        this.counters.records += o.records;
        this.counters.duplicatesDropped += o.duplicatesDropped;
        this.counters.fencedDropped += o.fenced;
        this.counters.lateDropped += o.late;
        this.counters.deadLetters += o.deadLetters;
        this.counters.stepFailures += o.stepFailures;
        for (const { instance, error } of o.errors) note(`${instance}: ${error.name}: ${error.message}`);
      },
    });
    const fifoIngress = this.ingressIsFifo;
    const common = {
      sqs: this.sqs,
      region,
      visibilityTimeoutSeconds: visibility,
      onInvoke: (info: { redelivered: number }) => {
        this.counters.invocations++;
        this.counters.redeliveries += info.redelivered;
      },
      onError: (error: Error) => {
        this.counters.eventSourceErrors++;
        note(`event source: ${error.name}: ${error.message}`);
      },
    };
    this.ingestSource = new SqsEventSource({
      ...common,
      name: 'ingress',
      queueUrl: this.queues.ingress.url,
      queueArn: this.queues.ingress.arn,
      handler: ingest,
      batchSize: this.options.ingestBatchSize ?? (fifoIngress ? 10 : 100),
      ...(fifoIngress || !this.options.ingestBatchingWindowMs ? {} : { batchingWindowMs: this.options.ingestBatchingWindowMs }),
      concurrency: this.options.ingestConcurrency ?? (fifoIngress ? (this.topology.sources()[0]?.parallelism ?? 1) : 2),
    });
    this.sources.push(this.ingestSource);
    for (const vertex of this.topology.vertices) {
      const queue = this.queues.operators[vertex.id];
      if (!queue) throw new Error(`no queue for ${vertex.id}`);
      this.sources.push(
        new SqsEventSource({
          ...common,
          name: vertex.id,
          queueUrl: queue.url,
          queueArn: queue.arn,
          handler: operator,
          batchSize: this.limits.batchSize,
          concurrency: this.options.operatorConcurrency ?? vertex.parallelism,
          holdGroup: (group) => this.stalls.get(group),
        }),
      );
    }
    // The dead-letter queues are consumed as deployed (shared/lambda/dead-letter-handler.ts):
    // every redriven message is kept as a dead letter, and a lost operator message reports a
    // failure on the job record, which the coordinator serves with a rollback.
    const pairs: Array<[string, JobQueues['ingress']]> = [[INGRESS_QUEUE, this.queues.ingress], ...Object.entries(this.queues.operators)];
    const deadLetterHandler = createDeadLetterHandler({
      checkpoints: this.stores.checkpoints,
      deadLetters: this.stores.deadLetters,
      queues: Object.fromEntries(pairs.map(([queue, pair]) => [queueNameOfUrl(pair.dlqUrl), queue])),
      clock: this.clock,
      telemetry,
      onOutcome: (o) => {
        this.counters.redriven += o.messages;
        if (o.failureReported) note('a message reached a dead-letter queue: failure reported, the job rolls back');
      },
    });
    for (const [queue, pair] of pairs) {
      this.sources.push(new SqsEventSource({ ...common, name: `${queue}-dlq`, queueUrl: pair.dlqUrl, queueArn: pair.dlqArn, handler: deadLetterHandler, batchSize: 10, concurrency: 1 }));
    }
  }

  /** Faults (delay, duplicate) and the purge barrier around a transport. */
  private transportFor(inner: QueueTransport | undefined): QueueTransport {
    if (!inner) throw new Error('no SQS transport');
    return {
      send: async (messages) => {
        await this.purging;
        const faults = this.options.faults?.transport;
        const delay = faults?.delayMs?.(messages) ?? 0;
        if (delay > 0) {
          this.delayedSends++;
          try {
            await sleep(delay);
          } finally {
            this.delayedSends--;
          }
        }
        await inner.send(messages);
        const duplicates = faults?.duplicate ? messages.filter((m) => faults.duplicate?.(m)) : [];
        if (duplicates.length > 0) await inner.send(duplicates.map((m) => ({ ...m, dedupId: `${m.dedupId}:dup` })));
      },
    };
  }

  /** The host's I/O: the SQS event sources, and the queues' approximate counts as the idle and failure signals. */
  private platform(): HostPlatform {
    const pollMs = this.options.coordinatorPollMs ?? 100;
    return {
      clock: this.clock,
      coordinatorPorts: () => {
        const s = this.coordinatorStores;
        return { checkpoints: s.checkpoints, state: s.stateStore, log: s.sourceLog, sinks: s.sinks, transport: this.transportFor(s.transport) };
      },
      // Failures are reported by the dead-letter queues' consumer (on the job record), as deployed.
      deadLetterDepths: () => Promise.resolve(new Map<string, DeadLetterDepth>()),
      ingressDrained: async () => this.ingestSource.inflight === 0 && (await this.approximate(this.queues.ingress.url, LocalCloudJob.ALL)) === 0 && this.ingestSource.inflight === 0,
      pipelineIdle: async () => {
        const busy = (): boolean => this.delayedSends > 0 || this.sources.some((s) => s.inflight > 0);
        if (busy()) return false;
        // The dead-letter queues too: a redriven message is reported before the job may finish.
        const queues = [this.queues.ingress, ...Object.values(this.queues.operators)];
        for (const url of [...queues.map((q) => q.url), ...queues.map((q) => q.dlqUrl)]) {
          if ((await this.approximate(url, LocalCloudJob.ALL)) > 0) return false;
        }
        return !busy();
      },
      purgeOperatorQueues: () => {
        if (this.options.purgeOnRollback !== true) return;
        // Sends wait for the purge, so the new generation's first messages are never purged.
        this.purging = Promise.all(Object.values(this.queues.operators).map((q) => this.sqs.send(new PurgeQueueCommand({ QueueUrl: q.url })).catch(() => undefined))).then(() => undefined);
      },
      // The event sources deliver on their own, as Lambda's event source mappings do.
      deliver: () => false,
      afterStep: (job) => this.followPause(job),
      wait: async ({ wakeAt }) => {
        const now = Date.now();
        await sleep(Math.max(5, Math.min(pollMs, (wakeAt ?? now + pollMs) - now)));
      },
      settle: () => this.stop(),
    };
  }

  private async approximate(url: string, names: readonly ('ApproximateNumberOfMessages' | 'ApproximateNumberOfMessagesNotVisible' | 'ApproximateNumberOfMessagesDelayed')[]): Promise<number> {
    const { Attributes } = await this.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: [...names] }));
    return names.reduce((sum, n) => sum + Number(Attributes?.[n] ?? 0), 0);
  }

  private static readonly ALL = ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'] as const;
}

export function createLocalCloudJob(options: LocalCloudJobOptions): Promise<LocalCloudJob> {
  return LocalCloudJob.create(options);
}
