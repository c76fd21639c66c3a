import { Console } from 'node:console';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { DynamoDBClient, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Example } from '../../examples/types.js';
import { itemSize } from '../../shared/aws/adapters/dynamo-billing.js';
import type { SqsTally } from '../../shared/aws/adapters/request-counter.js';
import { createLocalCloudJob, type LocalCloudJob } from '../../shared/aws/runner/index.js';
import type { SqsHandler } from '../../shared/aws/runner/event-source.js';
import { noKindBytes, STORAGE_KINDS, storageKindOf, type KindBytes } from './storage.js';
import { METRICS_NAMESPACE, type Telemetry } from '../../shared/lambda/telemetry.js';

/**
 * One measured run: an example on the local cloud (the real handlers in process, AWS SDK v3
 * against DynamoDB Local / ElasticMQ / moto) fed at a steady rate, configured as the stack
 * deploys it (standard ingress queue, batch size 10, FIFO operator queues). After a warm-up,
 * everything billable is snapshotted, the rate runs for `seconds`, and the difference is the
 * window: requests by API and by who made them, DynamoDB units from item sizes (the shared
 * DynamoBillingMeter), SQS requests per 64 KiB chunk and queue kind, handler durations
 * (timed around each invocation of the handlers the event sources call), the bytes the
 * handlers log (Powertools at its default level, INFO, as deployed) and the table's growth.
 */

export type Role = 'functions' | 'coordinator' | 'eventSources';

export interface Invocations {
  count: number;
  messages: number;
  /** Sum of per-invocation durations rounded up to the ms (Lambda's billing granularity). */
  billedMs: number;
  /** Unrounded, for the mean. */
  ms: number;
}

export interface Window {
  readonly seconds: number;
  /** Events pushed during the window (steady state: as many are processed). */
  readonly events: number;
  readonly ingested: number;
  readonly records: number;
  readonly checkpoints: number;
  /** Coordinator decisions executed, by type (onTransition). */
  readonly decisions: Record<string, number>;
  /** Coordinator loop turns of the in-process coordinator. */
  readonly turns: number;
  /** Mean ms from a checkpoint's trigger to its completion (every instance acknowledged): the round, and an upper bound of the ack latency. */
  readonly roundMs: number;
  /** The job record's size (bytes, as DynamoDB bills it) at the window's end: every lease write bills it. */
  readonly jobRecordBytes: number;
  readonly requests: Record<Role, Record<string, number>>;
  readonly sqs: Record<Role, Record<string, SqsTally>>;
  readonly units: Record<'functions' | 'coordinator', { read: number; write: number }>;
  /** The handlers' and the coordinator's units together, by item kind (`L#`, `LD#`, `I#`, `K#`...: shared/aws/adapters/table-layout.ts). */
  readonly unitsByItem: Record<string, { read: number; write: number }>;
  /** The coordinator's units alone, by item kind. */
  readonly coordinatorUnitsByItem: Record<string, { read: number; write: number }>;
  /** Invocations by event source (`ingress` or the vertex id). */
  readonly invocations: Record<string, Invocations>;
  /** Bytes the handlers wrote to stdout/stderr (Powertools logs and EMF metric lines). */
  readonly logBytes: number;
  /** Table size as DynamoDB bills storage (attributes + 100 bytes per item), and S3 bytes. */
  readonly tableBytesGrowth: number;
  /** The same growth by what keeps it (bench/cost/storage.ts). */
  readonly tableBytesGrowthByKind: KindBytes;
  /** The table's bytes by kind at the window's end (the stock of the bounded kinds). */
  readonly tableBytesByKind: KindBytes;
  readonly tableItemsGrowth: number;
  readonly s3BytesGrowth: number;
}

export interface RateRun {
  readonly example: string;
  readonly rate: number;
  readonly warmupSeconds: number;
  readonly intervalMs: number;
  readonly window: Window;
  /** Queued messages (ingress + operators) at the window's start and end, and events pushed but not ingested. */
  readonly backlog: { readonly start: number; readonly end: number; readonly ingestLag: number };
  readonly sustained: boolean;
}

export interface MeasureOptions {
  readonly endpoint: string;
  readonly rate: number;
  readonly warmupSeconds: number;
  readonly seconds: number;
  readonly intervalMs: number;
  /** Trigger a checkpoint by hand every interval during the window (what a round costs with no events). */
  readonly forceCheckpoints?: boolean;
  /** checkpoint.pruneIntervalMs (default: the deployed default). The bench prunes on every checkpoint (0) or never, to price retention's fixed part per run. */
  readonly pruneIntervalMs?: number;
  /**
   * checkpoint.history (default: the deployed default, 100). The bench keeps none beyond the
   * retained checkpoints, so a window of a few dozen checkpoints pays what steady state pays
   * per checkpoint: one record forgotten with the snapshots and acks under it.
   */
  readonly history?: number;
  /** The ingress mapping as deployed: events per ingest invocation and its batching window (s). Default 10 and none. */
  readonly ingest?: { readonly batchSize: number; readonly windowSeconds: number };
  readonly log?: (line: string) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

/** Counts the bytes written through a Console (what the Lambda runtime ships to CloudWatch Logs). */
class ByteSink extends Writable {
  bytes = 0;
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
    callback();
  }
}

/** Powertools Logger and Metrics as deployed (default level INFO, EMF on stdout), writing into `sink`. */
function countingTelemetry(sink: ByteSink, service: string): Telemetry {
  const out = new Console({ stdout: sink, stderr: sink });
  const logger = new Logger({ serviceName: service });
  const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: service });
  (logger as unknown as { console: Console }).console = out;
  (metrics as unknown as { console: Console }).console = out;
  return { logger, metrics };
}

export async function measureRate(example: Example, options: MeasureOptions): Promise<RateRun> {
  const { rate, warmupSeconds, seconds, intervalMs } = options;
  const sink = new ByteSink();
  let measuring = false;
  const decisions: Record<string, number> = {};
  let turns = 0;
  const timing = { trigger: 0, rounds: 0, roundMs: 0 };
  const graph = example.build();
  const sources = graph.vertices.filter((v) => v.head.kind === 'source');
  const job = await createLocalCloudJob({
    example,
    endpoint: options.endpoint,
    region: 'us-east-1',
    credentials: CREDENTIALS,
    checkpoint: { intervalMs, ...(options.pruneIntervalMs !== undefined ? { pruneIntervalMs: options.pruneIntervalMs } : {}), ...(options.history !== undefined ? { history: options.history } : {}) },
    // As deployed (infra/cairn-job.ts): a standard ingress queue, its mapping's batch size and window, max(2, source instances) pollers.
    ingress: 'standard',
    ingestBatchSize: options.ingest?.batchSize ?? 10,
    ingestBatchingWindowMs: (options.ingest?.windowSeconds ?? 0) * 1000,
    ingestConcurrency: Math.max(
      2,
      sources.reduce((n, v) => n + v.parallelism, 0),
    ),
    telemetry: countingTelemetry(sink, `cairn-${example.name}`),
    onTransition: (decision) => {
      if (!measuring) return;
      decisions[decision.type] = (decisions[decision.type] ?? 0) + 1;
      // JobHost's driver reports trigger and complete (not inject-barriers nor commit-sinks): the round is trigger -> complete.
      const now = performance.now();
      if (decision.type === 'trigger') timing.trigger = now;
      if (decision.type === 'complete' && timing.trigger > 0) {
        timing.rounds++;
        timing.roundMs += now - timing.trigger;
        timing.trigger = 0;
      }
    },
  });
  const invocations: Record<string, Invocations> = {};
  wrapHandlers(job, (name, messages, ms) => {
    if (!measuring) return;
    const inv = (invocations[name] ??= { count: 0, messages: 0, billedMs: 0, ms: 0 });
    inv.count++;
    inv.messages += messages;
    inv.billedMs += Math.max(1, Math.ceil(ms));
    inv.ms += ms;
  });
  // Uncounted clients for what the bench itself reads (queue depths, table size).
  const base = { endpoint: options.endpoint, region: 'us-east-1', credentials: CREDENTIALS };
  const probe = { sqs: new SQSClient(base), dynamo: new DynamoDBClient(base), s3: new S3Client({ ...base, forcePathStyle: true }) };
  const total = Math.ceil(rate * (warmupSeconds + seconds)) + 10;
  // Event times advance with the sending rate, as a producer's clock would: at 500 ev/s, 45 ms of
  // event time per event would put one 200 ms flush 4.5 s of event time ahead of the one before,
  // and a standard queue's reordering would make the earlier flush late.
  const events = example.generate(total, 7, rate > 0 ? { eventsPerSecond: rate } : {}).map((e) => ({ id: e.id, body: JSON.stringify(e.event) }));
  let pushed = 0;
  let stopping = false;
  const running = job.run({ until: () => stopping, onTurn: () => (measuring ? turns++ : undefined) });
  try {
    const started = performance.now();
    const pushUntil = async (untilSeconds: number): Promise<void> => {
      // A producer sending what is due every 200 ms, packed into ingress batch messages as IngressProducer packs (SendMessageBatch, up to 10 per request).
      while ((performance.now() - started) / 1000 < untilSeconds) {
        const due = Math.min(events.length, Math.floor((rate * (performance.now() - started)) / 1000));
        if (due > pushed) {
          const batch = events.slice(pushed, due);
          pushed = due;
          await job.push(batch, undefined, { pack: true });
        }
        await sleep(200);
      }
    };
    options.log?.(`${example.name} @ ${rate} ev/s: warm-up ${warmupSeconds} s`);
    await pushUntil(warmupSeconds);
    const a = await snapshot(job, probe, sink);
    const pushedA = pushed;
    const ingestedA = job.counters.ingested;
    const recordsA = job.counters.records;
    measuring = true;
    const forcing = options.forceCheckpoints ? setInterval(() => job.triggerCheckpoint(), intervalMs) : undefined;
    const t0 = performance.now();
    options.log?.(`${example.name} @ ${rate} ev/s: measuring ${seconds} s`);
    await pushUntil(warmupSeconds + seconds);
    if (forcing) clearInterval(forcing);
    measuring = false;
    const windowSeconds = (performance.now() - t0) / 1000;
    const b = await snapshot(job, probe, sink);
    const window: Window = {
      seconds: windowSeconds,
      events: pushed - pushedA,
      ingested: job.counters.ingested - ingestedA,
      records: job.counters.records - recordsA,
      // Checkpoints completed in the window (the coordinator's `complete` decisions; no extra reads).
      checkpoints: decisions.complete ?? 0,
      decisions,
      turns,
      roundMs: timing.rounds > 0 ? timing.roundMs / timing.rounds : 0,
      jobRecordBytes: b.table.jobRecordBytes,
      requests: {
        functions: diff(b.requests.functions, a.requests.functions),
        coordinator: diff(b.requests.coordinator, a.requests.coordinator),
        eventSources: diff(b.requests.eventSources, a.requests.eventSources),
      },
      sqs: { functions: diffSqs(b.sqs.functions, a.sqs.functions), coordinator: diffSqs(b.sqs.coordinator, a.sqs.coordinator), eventSources: diffSqs(b.sqs.eventSources, a.sqs.eventSources) },
      units: {
        functions: { read: b.units.functions.read - a.units.functions.read, write: b.units.functions.write - a.units.functions.write },
        coordinator: { read: b.units.coordinator.read - a.units.coordinator.read, write: b.units.coordinator.write - a.units.coordinator.write },
      },
      unitsByItem: diffByItem(b.unitsByItem, a.unitsByItem),
      coordinatorUnitsByItem: diffByItem(b.coordinatorUnitsByItem, a.coordinatorUnitsByItem),
      invocations,
      logBytes: b.logBytes - a.logBytes,
      tableBytesGrowth: b.table.bytes - a.table.bytes,
      tableBytesGrowthByKind: Object.fromEntries(STORAGE_KINDS.map((k) => [k, b.table.byKind[k] - a.table.byKind[k]])) as KindBytes,
      tableBytesByKind: b.table.byKind,
      tableItemsGrowth: b.table.items - a.table.items,
      s3BytesGrowth: b.s3Bytes - a.s3Bytes,
    };
    const ingestLag = pushed - job.counters.ingested;
    // Sustained: the backlog did not grow by more than a second of events over the window.
    const sustained = b.backlog <= a.backlog + Math.max(10, rate) && ingestLag <= Math.max(20, 2 * rate);
    return { example: example.name, rate, warmupSeconds, intervalMs, window, backlog: { start: a.backlog, end: b.backlog, ingestLag }, sustained };
  } finally {
    stopping = true;
    await running.catch(() => undefined);
    await job.destroy();
    probe.sqs.destroy();
    probe.dynamo.destroy();
    probe.s3.destroy();
  }
}

/**
 * Times each handler invocation: LocalCloudJob has no invocation hook, so this wraps the
 * `handler` of each of its SqsEventSources (a private field, read here only) before they start.
 */
function wrapHandlers(job: LocalCloudJob, record: (source: string, messages: number, ms: number) => void): void {
  const sources = (job as unknown as { sources?: Array<{ options: { name: string; handler: SqsHandler } }> }).sources;
  if (!Array.isArray(sources) || sources.length === 0) throw new Error('LocalCloudJob has no event sources to time (its internals changed): update bench/cost/measure.ts');
  for (const source of sources) {
    const inner = source.options.handler;
    const name = source.options.name;
    (source.options as { handler: SqsHandler }).handler = async (event, context) => {
      const t = performance.now();
      try {
        return await inner(event, context);
      } finally {
        record(name, event.Records.length, performance.now() - t);
      }
    };
  }
}

interface Snapshot {
  readonly requests: Record<Role, Record<string, number>>;
  readonly sqs: Record<Role, Record<string, SqsTally>>;
  readonly units: Record<'functions' | 'coordinator', { read: number; write: number }>;
  readonly unitsByItem: Record<string, { read: number; write: number }>;
  readonly coordinatorUnitsByItem: Record<string, { read: number; write: number }>;
  readonly logBytes: number;
  readonly table: { bytes: number; items: number; byKind: KindBytes; jobRecordBytes: number };
  readonly s3Bytes: number;
  readonly backlog: number;
}

async function snapshot(job: LocalCloudJob, probe: { sqs: SQSClient; dynamo: DynamoDBClient; s3: S3Client }, sink: ByteSink): Promise<Snapshot> {
  const r = job.requests;
  const shot: Omit<Snapshot, 'table' | 's3Bytes' | 'backlog'> = {
    requests: { functions: r.functions.snapshot(), coordinator: r.coordinator.snapshot(), eventSources: r.eventSources.snapshot() },
    sqs: { functions: r.functions.sqsSnapshot(), coordinator: r.coordinator.sqsSnapshot(), eventSources: r.eventSources.sqsSnapshot() },
    units: { functions: { read: r.functions.capacity.read, write: r.functions.capacity.write }, coordinator: { read: r.coordinator.capacity.read, write: r.coordinator.capacity.write } },
    unitsByItem: diffByItem(r.functions.capacity.byItem, {}, r.coordinator.capacity.byItem),
    coordinatorUnitsByItem: diffByItem(r.coordinator.capacity.byItem, {}),
    logBytes: sink.bytes,
  };
  const [table, s3Bytes, backlog] = await Promise.all([tableSize(probe.dynamo, job.prefix), bucketBytes(probe.s3, job.prefix.toLowerCase()), queued(job, probe.sqs)]);
  return { ...shot, table, s3Bytes, backlog };
}

/** `b - a` by item kind, plus `extra` (units of another counter), rounded to the unit's half. */
function diffByItem(
  b: Readonly<Record<string, { read: number; write: number }>>,
  a: Readonly<Record<string, { read: number; write: number }>>,
  extra: Readonly<Record<string, { read: number; write: number }>> = {},
): Record<string, { read: number; write: number }> {
  const out: Record<string, { read: number; write: number }> = {};
  for (const kind of [...new Set([...Object.keys(b), ...Object.keys(extra)])].sort()) {
    const read = (b[kind]?.read ?? 0) + (extra[kind]?.read ?? 0) - (a[kind]?.read ?? 0);
    const write = (b[kind]?.write ?? 0) + (extra[kind]?.write ?? 0) - (a[kind]?.write ?? 0);
    if (read !== 0 || write !== 0) out[kind] = { read, write };
  }
  return out;
}

async function tableSize(dynamo: DynamoDBClient, table: string): Promise<{ bytes: number; items: number; byKind: KindBytes; jobRecordBytes: number }> {
  let bytes = 0;
  let items = 0;
  const byKind = noKindBytes();
  let jobRecordBytes = 0;
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await dynamo.send(new ScanCommand({ TableName: table, ...(start ? { ExclusiveStartKey: start } : {}) }));
    for (const item of page.Items ?? []) {
      const size = itemSize(item) + 100;
      bytes += size;
      byKind[storageKindOf(item.pk?.S ?? '')] += size;
      items++;
      if (item.pk?.S === 'JOB' && item.sk?.S === 'JOB') jobRecordBytes = itemSize(item);
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return { bytes, items, byKind, jobRecordBytes };
}

async function bucketBytes(s3: S3Client, bucket: string): Promise<number> {
  try {
    let bytes = 0;
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }));
      for (const o of page.Contents ?? []) bytes += o.Size ?? 0;
      token = page.NextContinuationToken;
    } while (token);
    return bytes;
  } catch {
    return 0;
  }
}

async function queued(job: LocalCloudJob, sqs: SQSClient): Promise<number> {
  let n = 0;
  for (const url of [job.queues.ingress.url, ...Object.values(job.queues.operators).map((q) => q.url)]) {
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
    n += Number(Attributes?.ApproximateNumberOfMessages ?? 0) + Number(Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
  }
  return n;
}

function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) !== 0) out[k] = v - (before[k] ?? 0);
  return out;
}

function diffSqs(after: Record<string, SqsTally>, before: Record<string, SqsTally>): Record<string, SqsTally> {
  const out: Record<string, SqsTally> = {};
  for (const [k, v] of Object.entries(after)) {
    const b = before[k] ?? { requests: 0, billed: 0, payloadBytes: 0, empty: 0 };
    if (v.requests - b.requests !== 0) out[k] = { requests: v.requests - b.requests, billed: v.billed - b.billed, payloadBytes: v.payloadBytes - b.payloadBytes, empty: v.empty - b.empty };
  }
  return out;
}
