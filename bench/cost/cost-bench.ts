import { execFileSync } from 'node:child_process';
import { loadavg, cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { examples } from '../../examples/index.js';
import { startLocalCloud } from '../../shared/aws/local-cloud/local-cloud.js';
import { AWS_PRICES, HOURS_PER_MONTH, SECONDS_PER_MONTH } from '../aws-prices.js';
import { parseCheckpointConfig, parseRuntimeLimits } from '../../shared/core/config.js';
import { tickIntervalFor } from '../../shared/core/timer-service.js';
import { Topology } from '../../shared/core/topology.js';
import { INGRESS_QUEUE } from '../../shared/core/redrive.js';
import { MAX_BATCH_EVENTS } from '../../shared/core/ingress-batch.js';
import { DEFAULT_RUN_OPTIONS } from '../../shared/lambda/coordinator-tasks.js';
import { dynamoUsd, flinkFloorMonthlyUsd, lambdaUsd, logsIngestionUsd, PLATFORM_LOG_BYTES_PER_INVOCATION, sqsUsd, storageMonthlyUsd } from './bill.js';
import {
  COORDINATOR_ASSUMPTIONS,
  coordinatorMonthly,
  coordinatorPlan,
  idleMappingsMonthly,
  usdTotal,
  watchdogMonthly,
  type CoordinatorMeasured,
  type CoordinatorPlan,
  type WatchdogPlan,
} from './coordinator.js';
import { deployedJob, type DeployedJob } from './deployed.js';
import { BOUNDED_KINDS, byteMonths, ENGINE_KINDS, STORAGE_KINDS, type KindBytes } from './storage.js';
import { measureRate, type RateRun, type Window } from './measure.js';

/**
 * `npm run bench:cost`: what each example costs on AWS per million events, from measured runs
 * on the local cloud at steady rates, AWS's billing rules applied to what was counted, and a
 * model of the request pattern (per event, per invocation, per checkpoint round) for the rates
 * this machine cannot sustain. See bench/README.md for the method and what is modelled.
 */

export interface CostBenchOptions {
  readonly examples: readonly string[];
  readonly rates: readonly number[];
  readonly warmupSeconds: number;
  readonly seconds: number;
  readonly idleSeconds: number;
  readonly intervalMs: number;
  readonly modelledRates: readonly number[];
  /** An emulator endpoint already running (tests); default: AWS_ENDPOINT_URL, or a local cloud started for the run. */
  readonly endpoint?: string;
  readonly log?: (line: string) => void;
}

export const DEFAULT_COST_BENCH: CostBenchOptions = {
  examples: ['word-count', 'account-balance', 'windowed-count'],
  rates: [5, 20, 100, 500],
  warmupSeconds: 5,
  seconds: 15,
  idleSeconds: 8,
  intervalMs: 1_000,
  modelledRates: [100, 1_000],
};

/** A prune interval no window reaches: retention runs only at the first checkpoint. */
const NO_RETENTION = 1e12;

export const QUICK_COST_BENCH: CostBenchOptions = { ...DEFAULT_COST_BENCH, rates: [5, 50], warmupSeconds: 3, seconds: 5, idleSeconds: 3 };

/**
 * Modelled, not measured (stated in the JSON and the README): the cycle time of an event source
 * mapping's batch on AWS (receive + invocation), the producer's batching, an alarm's price, and
 * the coordinator's (./coordinator.ts COORDINATOR_ASSUMPTIONS: a watchdog invocation's duration,
 * the ack Query's units, its log bytes, Step Functions' history events and their bytes, the idle
 * long polling of an SQS event source mapping).
 */
export const ASSUMPTIONS = {
  ...COORDINATOR_ASSUMPTIONS,
  awsBatchCycleSeconds: 0.1,
  alarmMonthlyUsd: 0.1,
  producerBatchSeconds: 0.2,
} as const;

/**
 * The producer (measure.ts, as IngressProducer does): what is due every producerBatchSeconds,
 * packed into ingress batch messages of up to MAX_BATCH_EVENTS events, up to 10 messages a
 * SendMessageBatch. Its messages and requests per event at `rate`.
 */
export function producerMessagesPerEvent(rate: number): number {
  const perFlush = Math.max(1, rate * ASSUMPTIONS.producerBatchSeconds);
  return Math.ceil(perFlush / MAX_BATCH_EVENTS) / perFlush;
}

export function producerRequestsPerEvent(rate: number): number {
  const perFlush = Math.max(1, rate * ASSUMPTIONS.producerBatchSeconds);
  return Math.ceil(Math.ceil(perFlush / MAX_BATCH_EVENTS) / 10) / perFlush;
}

export type Breakdown = Record<'dynamodb' | 'sqs' | 'lambda' | 'logs' | 'storage' | 's3' | 'stepFunctions' | 'scheduler', number>;

const zero = (): Breakdown => ({ dynamodb: 0, sqs: 0, lambda: 0, logs: 0, storage: 0, s3: 0, stepFunctions: 0, scheduler: 0 });
const asBreakdown = (u: CoordinatorPlan['usd'], k = 1): Breakdown => add(zero(), { ...zero(), ...u }, k);
const sum = (b: Breakdown): number => Object.values(b).reduce((x, y) => x + y, 0);
const add = (a: Breakdown, b: Breakdown, k = 1): Breakdown => Object.fromEntries(Object.keys(a).map((key) => [key, a[key as keyof Breakdown] + k * b[key as keyof Breakdown]])) as Breakdown;

/** Event-source requests that are artefacts of the in-process runner, not of Lambda's event source mappings on AWS. */
const LOCAL_ONLY = (key: string, tally: { empty: number; requests: number }): boolean =>
  !key.startsWith('SQS.ChangeMessageVisibilityBatch') &&
  !key.startsWith('SQS.GetQueueAttributes') &&
  !key.startsWith('SQS.SendMessageBatch') &&
  !(key.startsWith('SQS.ReceiveMessage') && tally.empty === tally.requests);

function memoryOf(deployed: DeployedJob, source: string): { memoryMb: number; architecture: 'arm64' | 'x86_64' } {
  const fn = source === 'ingress' ? deployed.functions.find((f) => f.role === 'ingest') : deployed.functions.find((f) => f.role === 'operator' && f.vertex === source);
  return fn ?? { memoryMb: 512, architecture: 'arm64' };
}

/** The part of a window's bill made by the data path: handlers and their event sources (not the producer, not the coordinator). */
export function dataPathBill(window: Window, deployed: DeployedJob): Breakdown {
  const b = zero();
  b.dynamodb = dynamoUsd(window.units.functions);
  // Empty receives: the idle polling of the mappings is billed once, in the idle cost.
  const nonEmptyReceive = (key: string, t: { empty: number; requests: number; billed: number }): boolean => LOCAL_ONLY(key, t);
  const receives = Object.fromEntries(
    Object.entries(window.sqs.eventSources).map(([k, t]) => [k, k.startsWith('SQS.ReceiveMessage') ? { ...t, requests: t.requests - t.empty, billed: t.billed - t.empty, empty: 0 } : t]),
  );
  b.sqs = sqsUsd(window.sqs.functions).usd + sqsUsd(receives, nonEmptyReceive).usd;
  let invocations = 0;
  for (const [source, inv] of Object.entries(window.invocations)) {
    const fn = memoryOf(deployed, source);
    b.lambda += lambdaUsd(inv.count, inv.billedMs, fn.memoryMb, fn.architecture);
    invocations += inv.count;
  }
  b.logs = logsIngestionUsd(window.logBytes + invocations * PLATFORM_LOG_BYTES_PER_INVOCATION);
  // Byte-months the window leaves behind: dedup items for their window, the job's state and results a month of their growth; the log and checkpoint metadata are bounded by retention (bench/cost/storage.ts).
  b.storage = storageMonthlyUsd(byteMonths(window.tableBytesGrowthByKind), Math.max(0, window.s3BytesGrowth), deployed.pointInTimeRecovery);
  const s3 = Object.entries(window.requests.functions).filter(([k]) => k.startsWith('S3.'));
  b.s3 = s3.reduce((n, [k, c]) => n + c * (/Get|Head/.test(k) ? AWS_PRICES.s3PerGet : AWS_PRICES.s3PerPut), 0);
  return b;
}

export type Counts = Record<'requests' | 'writeUnits' | 'readUnits', number>;

/** Billed requests (DynamoDB, S3, SQS per chunk, Lambda invocations) and DynamoDB units of the data path in a window. */
export function dataPathCounts(window: Window): Counts {
  let requests = 0;
  for (const [k, n] of Object.entries(window.requests.functions)) if (!k.startsWith('SQS.')) requests += n;
  for (const t of Object.values(window.sqs.functions)) requests += t.billed;
  for (const [k, t] of Object.entries(window.sqs.eventSources)) if (LOCAL_ONLY(k, t)) requests += k.startsWith('SQS.ReceiveMessage') ? t.billed - t.empty : t.billed;
  requests += Object.values(window.invocations).reduce((n, i) => n + i.count, 0);
  return { requests, writeUnits: window.units.functions.write, readUnits: window.units.functions.read };
}

/** The producer's SendMessageBatch requests to the (standard) ingress queue. */
export function producerBill(window: Window): number {
  return sqsUsd(window.sqs.eventSources, (k) => k.startsWith('SQS.SendMessageBatch')).usd;
}

/**
 * What the in-process coordinator (JobHost's CoordinatorDriver: the same transitions and fact
 * reads as the deployed Run task) did per checkpoint on the local cloud: the forced rounds and
 * the rate runs. The local host decides once per turn, at its own cadence; the turns it spent
 * waiting are taken out (at the idle window's units per turn) so that the deployed loop's own
 * waiting decides can be put back at its cadence (coordinator.ts).
 */
/** The transitions decideNext issues for every checkpoint (shared/core/protocol/coordinator.ts); JobHost's onTransition reports only trigger and complete. */
const EXECUTED_PER_CHECKPOINT = ['trigger', 'inject-barriers', 'complete', 'commit-sinks'] as const;

/**
 * `runs` prune on every checkpoint; `unpruned` is the forced window of `runs[0]` run with retention
 * off: the difference per checkpoint is what a retention run costs when nothing is due to go.
 */
export function measureCoordinator(runs: readonly RateRun[], idle: RateRun, tickEveryMs: number | undefined, unpruned: RateRun): CoordinatorMeasured {
  const checkpoints = runs.reduce((n, r) => n + r.window.checkpoints, 0);
  const per = Math.max(1, checkpoints);
  const dynamoRequests = (w: Window): number => Object.entries(w.requests.coordinator).reduce((m, [k, c]) => m + (k.startsWith('DynamoDB.') ? c : 0), 0);
  const idleTurns = Math.max(1, idle.window.turns);
  const readUnitsPerDecide = idle.window.units.coordinator.read / idleTurns;
  const requestsPerDecide = dynamoRequests(idle.window) / idleTurns;
  const units = runs.reduce((u, r) => ({ read: u.read + r.window.units.coordinator.read, write: u.write + r.window.units.coordinator.write }), { read: 0, write: 0 });
  const turns = runs.reduce((n, r) => n + r.window.turns, 0);
  // Each local turn decides once per transition it executes and once more to wait; the deployed loop's decides are put back by the plan.
  const decidesPerCheckpoint = EXECUTED_PER_CHECKPOINT.length + turns / per;
  const weighted = (f: (w: Window) => number): number => runs.reduce((n, r) => n + f(r.window) * r.window.checkpoints, 0) / per;
  const [pruned] = runs as [RateRun];
  const perCheckpoint = (w: Window, f: (w: Window) => number): number => f(w) / Math.max(1, w.checkpoints);
  const retentionRun = {
    read: Math.max(0, perCheckpoint(pruned.window, (w) => w.units.coordinator.read) - perCheckpoint(unpruned.window, (w) => w.units.coordinator.read)),
    write: Math.max(0, perCheckpoint(pruned.window, (w) => w.units.coordinator.write) - perCheckpoint(unpruned.window, (w) => w.units.coordinator.write)),
    requests: Math.max(0, perCheckpoint(pruned.window, dynamoRequests) - perCheckpoint(unpruned.window, dynamoRequests)),
  };
  return {
    retentionRun,
    transitionUnits: { read: Math.max(0, units.read / per - decidesPerCheckpoint * readUnitsPerDecide), write: units.write / per },
    transitionRequests: Math.max(0, runs.reduce((n, r) => n + dynamoRequests(r.window), 0) / per - decidesPerCheckpoint * requestsPerDecide),
    readUnitsPerDecide,
    requestsPerDecide,
    decisionsPerCheckpoint: EXECUTED_PER_CHECKPOINT.length,
    sqsBilled: runs.reduce((n, r) => n + sqsUsd(r.window.sqs.coordinator).fifo + sqsUsd(r.window.sqs.coordinator).standard, 0) / per,
    roundMs: weighted((w) => w.roundMs),
    ackLatencyMs: weighted((w) => w.roundMs),
    jobRecordBytes: Math.max(...runs.map((r) => r.window.jobRecordBytes), idle.window.jobRecordBytes),
    tickEveryMs,
  };
}

// ---------- the model of the data path ----------

interface SourceStats {
  /** Messages into this source's queue per event (measured; see `packed`). */
  readonly perEvent: number;
  /** The ingress queue, fed by the packing producer: its messages per event follow the rate (producerMessagesPerEvent). */
  readonly packed?: boolean;
  /**
   * Messages per second = a + b x rate, fitted over the measured rates: a queue whose messages come
   * with the checkpoints (barriers, and the data a source read at a barrier) has most of them in
   * `a`; one told after every append, in `b`. With one measured rate, all in `b`.
   */
  readonly perSecond?: { readonly a: number; readonly b: number };
  /** Concurrent batches (message groups / max concurrency of the mapping). */
  readonly slots: number;
  /** The mapping's batch size, and its batching window (s; 0: none, the batch is what one receive cycle finds). */
  readonly maxBatch: number;
  readonly windowSeconds: number;
}

/** A source's batch at `rate` events/s: a window gathers up to the batch size; without one, what one receive cycle finds (at most 10). */
export function batchOf(s: SourceStats, rate: number, cycleSeconds: number): number {
  const perSlot = (rate * messagesPerEvent(s, rate)) / Math.max(1, s.slots);
  return s.windowSeconds > 0 ? Math.min(s.maxBatch, Math.max(1, perSlot * s.windowSeconds)) : Math.min(10, s.maxBatch, Math.max(1, perSlot * cycleSeconds));
}

export interface DataPathModel {
  /** $ per event = a + b x (invocations per event): the sums of the parts' fits. */
  readonly a: number;
  readonly b: number;
  /** Batch cycle fitted from the measured runs (s): batch = clamp(rate per slot x cycle, 1, 10). */
  readonly localCycleSeconds: number;
  readonly sources: Readonly<Record<string, SourceStats>>;
  /** Per-event parts (for the breakdown), fitted the same way, by category. */
  readonly parts: Readonly<Record<keyof Breakdown, { a: number; b: number }>>;
  /** Requests and DynamoDB units per event, fitted the same way. */
  readonly counts: Readonly<Record<keyof Counts, { a: number; b: number }>>;
}

export function invocationsPerEvent(model: Pick<DataPathModel, 'sources'>, rate: number, cycleSeconds: number): number {
  let n = 0;
  for (const s of Object.values(model.sources)) n += messagesPerEvent(s, rate) / batchOf(s, rate, cycleSeconds);
  return n;
}

/**
 * A queue's messages per event at `rate`: the packing producer's for the ingress; the slope of
 * the fitted messages per second for the others (the intercept comes with the checkpoints, which
 * are billed apart, at the idle run's cost per round, as the fit's x leaves them out).
 */
function messagesPerEvent(s: SourceStats, rate: number): number {
  if (s.packed) return producerMessagesPerEvent(rate);
  if (s.perSecond) return Math.max(0, s.perSecond.b);
  return s.perEvent;
}

function fitLine(points: ReadonlyArray<{ x: number; y: number }>): { a: number; b: number } {
  if (points.length === 0) return { a: 0, b: 0 };
  const mx = points.reduce((n, p) => n + p.x, 0) / points.length;
  const my = points.reduce((n, p) => n + p.y, 0) / points.length;
  const sxx = points.reduce((n, p) => n + (p.x - mx) ** 2, 0);
  if (points.length < 2 || sxx < 1e-12 * Math.max(1, mx * mx)) {
    // One point (or no spread): all of it per invocation.
    return { a: 0, b: mx > 0 ? my / mx : 0 };
  }
  const b = points.reduce((n, p) => n + (p.x - mx) * (p.y - my), 0) / sxx;
  // Neither part may be negative: clamp and refit the other.
  if (b < 0) return { a: my, b: 0 };
  const a = my - b * mx;
  if (a < 0) return { a: 0, b: points.reduce((n, p) => n + p.x * p.y, 0) / points.reduce((n, p) => n + p.x * p.x, 0) };
  return { a, b };
}

/** The data path's share of one checkpoint round (barrier steps, acks, snapshots), measured on the idle run. */
export interface DataPathRound {
  readonly usd: Breakdown;
  readonly counts: Counts;
  readonly invocations: number;
  readonly tableBytes: number;
}

export function dataPathRound(idle: RateRun, deployed: DeployedJob): DataPathRound {
  const per = Math.max(1, idle.window.checkpoints);
  const bill = dataPathBill(idle.window, deployed);
  return {
    usd: Object.fromEntries(Object.entries(bill).map(([k, v]) => [k, v / per])) as Breakdown,
    counts: Object.fromEntries(Object.entries(dataPathCounts(idle.window)).map(([k, v]) => [k, v / per])) as Counts,
    invocations: Object.values(idle.window.invocations).reduce((n, i) => n + i.count, 0) / per,
    tableBytes: Math.max(0, idle.window.tableBytesGrowth + idle.window.s3BytesGrowth) / per,
  };
}

export function fitDataPath(
  runs: ReadonlyArray<{ run: RateRun; bill: Breakdown }>,
  slots: Readonly<Record<string, number>>,
  round: DataPathRound,
  batching: Readonly<Record<string, { readonly batchSize: number; readonly windowSeconds: number }>> = {},
): DataPathModel {
  const usable = runs.filter((r) => r.run.window.events > 0);
  const sources: Record<string, SourceStats> = {};
  const names = new Set(usable.flatMap((r) => Object.keys(r.run.window.invocations)));
  let cycleNum = 0;
  let cycleDen = 0;
  for (const name of names) {
    const events = usable.reduce((n, r) => n + r.run.window.events, 0);
    const messages = usable.reduce((n, r) => n + (r.run.window.invocations[name]?.messages ?? 0), 0);
    const perEvent = events > 0 ? messages / events : 0;
    const mapping = batching[name];
    const perSecond = fitLine(usable.map((r) => ({ x: r.run.rate, y: (r.run.window.invocations[name]?.messages ?? 0) / r.run.window.seconds })));
    sources[name] = {
      perEvent,
      slots: slots[name] ?? 1,
      maxBatch: mapping?.batchSize ?? 10,
      windowSeconds: mapping?.windowSeconds ?? 0,
      ...(name === INGRESS_QUEUE ? { packed: true } : { perSecond }),
    };
    // The receive cycle is fitted on the sources without a window (a window sets its own batches).
    if ((mapping?.windowSeconds ?? 0) > 0) continue;
    for (const r of usable) {
      const inv = r.run.window.invocations[name];
      if (!inv || inv.count === 0) continue;
      const batch = inv.messages / inv.count;
      const perSlot = (r.run.rate * perEvent) / Math.max(1, slots[name] ?? 1);
      if (batch < 10 && perSlot > 0) {
        cycleNum += batch * perSlot;
        cycleDen += perSlot * perSlot;
      }
    }
  }
  // What the window's checkpoints cost the data path is known from the idle run: fit the rest.
  const points = (key?: keyof Breakdown): Array<{ x: number; y: number }> =>
    usable.map((r) => {
      const c = r.run.window.checkpoints;
      return {
        x: Math.max(0, Object.values(r.run.window.invocations).reduce((n, i) => n + i.count, 0) - c * round.invocations) / r.run.window.events,
        y: Math.max(0, (key ? r.bill[key] : sum(r.bill)) - c * (key ? round.usd[key] : sum(round.usd))) / r.run.window.events,
      };
    });
  const parts = Object.fromEntries((Object.keys(zero()) as Array<keyof Breakdown>).map((k) => [k, fitLine(points(k))])) as DataPathModel['parts'];
  const total = Object.values(parts).reduce((t, p) => ({ a: t.a + p.a, b: t.b + p.b }), { a: 0, b: 0 });
  const countPoints = (key: keyof Counts): Array<{ x: number; y: number }> =>
    usable.map((r, i) => ({ x: points()[i]?.x ?? 0, y: Math.max(0, dataPathCounts(r.run.window)[key] - r.run.window.checkpoints * round.counts[key]) / r.run.window.events }));
  const counts = { requests: fitLine(countPoints('requests')), writeUnits: fitLine(countPoints('writeUnits')), readUnits: fitLine(countPoints('readUnits')) };
  return { ...total, localCycleSeconds: cycleDen > 0 ? cycleNum / cycleDen : 1, sources, parts, counts };
}

/**
 * The data path's model between two neighbouring measured rates. Per-event costs bend with the
 * rate (a job's distinct keys per checkpoint saturate, batches fill up), so one line over every
 * rate from 5 to 500 ev/s overstated 500 ev/s about 3x from the others; each rate is modelled
 * from the two measured rates around it (below the lowest or above the highest: the two nearest).
 */
export interface DataPathSegment {
  readonly from: number;
  readonly to: number;
  readonly model: DataPathModel;
}

export function fitSegments(
  runs: ReadonlyArray<{ run: RateRun; bill: Breakdown }>,
  slots: Readonly<Record<string, number>>,
  round: DataPathRound,
  batching: Readonly<Record<string, { readonly batchSize: number; readonly windowSeconds: number }>> = {},
): DataPathSegment[] {
  const sorted = [...runs].sort((a, b) => a.run.rate - b.run.rate);
  const lowest = sorted[0]?.run.rate ?? 0;
  if (sorted.length < 3) return [{ from: lowest, to: sorted.at(-1)?.run.rate ?? lowest, model: fitDataPath(sorted, slots, round, batching) }];
  return sorted.slice(1).map((high, i) => {
    const low = sorted[i] as (typeof sorted)[number];
    return { from: low.run.rate, to: high.run.rate, model: fitDataPath([low, high], slots, round, batching) };
  });
}

/** The segment's model that covers `rate` (the first below the lowest rate, the last above the highest). */
export function modelAt(segments: readonly DataPathSegment[], rate: number): DataPathModel {
  const segment = segments.find((s) => rate <= s.to) ?? segments.at(-1);
  if (!segment) throw new Error('no measured rate to model from');
  return segment.model;
}

/** The data path's $ per event at `rate`, without its checkpoint rounds. */
export function predictPerEvent(model: DataPathModel, rate: number, cycleSeconds: number): number {
  const x = invocationsPerEvent(model, rate, cycleSeconds);
  // The sum of the parts' fits (each clamped non-negative on its own), so the total and the breakdown agree.
  return Object.values(model.parts).reduce((n, p) => n + p.a + p.b * x, 0);
}

// ---------- the whole bench ----------

export interface ExampleResult {
  readonly example: string;
  readonly deployed: Omit<DeployedJob, 'checkpointAsl'>;
  /** No events: what the job does left alone. */
  readonly idle: RateRun;
  /** No events, a checkpoint triggered every interval: the cost of a round. */
  readonly forced: RateRun;
  readonly runs: readonly RateRun[];
  /** The in-process coordinator per checkpoint, measured; the deployed coordinator's month by interval (ms), modelled from it; the watchdog of the sleeping job. */
  readonly coordinator: CoordinatorMeasured;
  readonly coordinatorPlans: Readonly<Record<string, CoordinatorPlan>>;
  readonly watchdog: WatchdogPlan;
  readonly dataRound: DataPathRound;
  /** The data path's models between neighbouring measured rates (modelAt picks a rate's). */
  readonly segments: readonly DataPathSegment[];
  /** Leave-one-rate-out: the data path's $ per event predicted for each measured rate from the others. */
  readonly validation: ReadonlyArray<{ rate: number; measured: number; predicted: number; relativeError: number }>;
}

export interface CostBenchResult {
  readonly date: string;
  readonly commit: string;
  /** Engine files (shared, examples, infra, functions) that differed from the commit when the bench ran. */
  readonly dirty: readonly string[];
  readonly command: string;
  readonly machine: { readonly cores: number; readonly loadAverage: readonly number[] };
  readonly prices: typeof AWS_PRICES & { readonly hoursPerMonth: number };
  readonly assumptions: typeof ASSUMPTIONS;
  readonly coordinatorRunOptions: typeof DEFAULT_RUN_OPTIONS;
  readonly intervalMs: number;
  readonly idleMonthlyUsd: number;
  readonly idleMonthlyBreakdown: Record<string, number>;
  /** The coordinator alone (Step Functions, its Run function, its DynamoDB and SQS requests, its logs), under load, by interval (ms). */
  readonly coordinatorMonthlyUsd: Record<string, number>;
  /** Every checkpoint's cost: the coordinator plus the operators' barrier steps, acks and snapshots, by interval (ms). */
  readonly checkpointingMonthlyUsd: Record<string, number>;
  /** Step Functions transitions per checkpoint by interval (ms): 0 while waits are slept in process, Run + Route + WaitForNext through the Wait state. */
  readonly coordinatorTransitionsPerCheckpoint: Record<string, number>;
  /** The deployed coordinator by interval (ms): mode, invocations, GB-s, transitions, units per checkpoint. */
  readonly coordinatorPlans: Record<string, CoordinatorPlan>;
  readonly watchdog: WatchdogPlan | undefined;
  /** Which parts of the figures are measured on the local cloud and which are modelled. */
  readonly modelled: Record<string, string>;
  readonly managedFlinkFloorMonthlyUsd: number;
  readonly perMillionUsd: Record<string, Record<string, number>>;
  readonly perMillionBreakdown: Record<string, Record<string, Breakdown & { producer: number; coordinator: number }>>;
  readonly requestsPerThousand: Record<string, Record<string, number>>;
  readonly requestsPerThousandByApi: Record<string, Record<string, Record<string, number>>>;
  readonly writeUnitsPerEvent: Record<string, Record<string, number>>;
  /** Measured rates: write units per event by item kind (handlers and the in-process coordinator; `L#` log, `LD#` dedup, `I#` instance records, `K#` keyed-state items, `C#` change records...). */
  readonly writeUnitsPerEventByItem: Record<string, Record<string, Record<string, number>>>;
  readonly readUnitsPerEvent: Record<string, Record<string, number>>;
  /** The in-process coordinator's units per completed checkpoint by item kind, over every measured run of the example (before the deployed loop's waiting decides and ack polls are added). */
  readonly coordinatorUnitsPerCheckpointByItem: Record<string, Record<string, { read: number; write: number }>>;
  readonly lambdaMsPerInvocation: Record<string, Record<string, Record<string, number>>>;
  /**
   * What Cairn keeps per event, in byte-months (bench/cost/storage.ts): its dedup items, for
   * their 15-day window (then TTL deletes them). The source log and checkpoint metadata are
   * bounded by retention (storageBoundedBytes). Storage at a steady rate R is flat at
   * R x this x the seconds of a month, plus the bounded stock.
   */
  readonly storageBytesPerEventPerMonth: number;
  /** The same, per example. */
  readonly storageBytesPerEvent: Record<string, number>;
  /** The bounded kinds' bytes (log, checkpoints) at the end of each example's last window. */
  readonly storageBoundedBytes: Record<string, Record<string, number>>;
  /** Measured table growth per event over the windows, by kind (bytes; negative: retention deleted more than was added). */
  readonly storageGrowthBytesPerEventByKind: Record<string, KindBytes>;
  readonly measuredRates: readonly number[];
  readonly sustainedRates: Record<string, readonly number[]>;
  readonly modelledRates: readonly number[];
  readonly modelError: number;
  readonly modelErrorTotal: number;
  readonly crossoverEventsPerSecond: Record<string, Record<string, number | null>>;
  readonly examples: readonly ExampleResult[];
  readonly totalSeconds: number;
}

function commitOf(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** Tracked engine files with uncommitted changes when the bench ran (the commit alone does not say what ran). */
function dirtyFiles(): string[] {
  try {
    const out = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'shared', 'examples', 'infra', 'functions'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out
      .split('\n')
      .map((l) => l.slice(3).trim())
      .filter((l) => l.length > 0);
  } catch {
    return [];
  }
}

/** The intervals the coordinator's month is stated for (ms), besides the run's own. */
const INTERVALS = [1_000, 60_000] as const;

const r4 = (n: number): number => Math.round(n * 1e4) / 1e4;
const r2 = (n: number): number => Math.round(n * 100) / 100;

export async function runCostBench(options: CostBenchOptions, command = 'npm run bench:cost'): Promise<CostBenchResult> {
  const started = performance.now();
  const log = options.log ?? ((): void => undefined);
  const external = options.endpoint ?? process.env.AWS_ENDPOINT_URL;
  const cloud = external ? undefined : await startLocalCloud({ edgePort: 0 });
  const endpoint = external ?? (cloud as { endpoint: string }).endpoint;
  const results: ExampleResult[] = [];
  try {
    for (const name of options.examples) {
      const example = examples[name];
      if (!example) throw new Error(`no example ${name}`);
      log(`${name}: synthesizing the stack (memory sizes, queues, state machine)`);
      const deployed = deployedJob(name, options.intervalMs);
      const ingestMapping = deployed.eventSourceMappings.find((m) => m.functionRole === 'ingest');
      const ingest = ingestMapping ? { batchSize: ingestMapping.batchSize, windowSeconds: ingestMapping.windowSeconds } : undefined;
      // Retention on every checkpoint: what it deletes is billed where it accrues; its fixed part per run is put back at the deployed cadence (coordinator.ts).
      // No checkpoint history beyond the retained ones: each checkpoint forgets one record and its snapshots and acks, as at steady state.
      const base = { endpoint, warmupSeconds: 2, seconds: options.idleSeconds, intervalMs: options.intervalMs, pruneIntervalMs: 0, history: 0, log, ...(ingest ? { ingest } : {}) };
      const idle = await measureRate(example, { ...base, rate: 0 });
      // No events, a checkpoint triggered by hand every interval: what one round costs the data path,
      // with retention on every checkpoint and with none (what a retention run costs by itself).
      const forced = await measureRate(example, { ...base, rate: 0, forceCheckpoints: true });
      const unpruned = await measureRate(example, { ...base, rate: 0, forceCheckpoints: true, pruneIntervalMs: NO_RETENTION });
      log(`${name}: idle ${idle.window.checkpoints} checkpoints in ${idle.window.seconds.toFixed(0)} s; ${forced.window.checkpoints} forced rounds`);
      const runs: RateRun[] = [];
      for (const rate of options.rates) {
        const run = await measureRate(example, { ...base, rate, warmupSeconds: options.warmupSeconds, seconds: options.seconds });
        runs.push(run);
        log(
          `${name} @ ${rate} ev/s: ${run.window.events} events, ${run.window.checkpoints} checkpoints, ${run.sustained ? 'sustained' : `NOT sustained (backlog ${run.backlog.start} -> ${run.backlog.end}, ingest lag ${run.backlog.ingestLag})`}`,
        );
      }
      const graph = example.build();
      const tickEveryMs = tickIntervalFor(new Topology(graph), parseCheckpointConfig({ intervalMs: options.intervalMs }), parseRuntimeLimits());
      const coordinator = measureCoordinator([forced, ...runs], idle, tickEveryMs, unpruned);
      const coordinatorPlans = Object.fromEntries([...new Set([...INTERVALS, options.intervalMs])].map((i) => [String(i), coordinatorPlan(deployed, coordinator, i)]));
      const watchdog = watchdogMonthly(deployed, coordinator);
      const slots: Record<string, number> = {
        ingress: Math.max(
          2,
          graph.vertices.filter((v) => v.head.kind === 'source').reduce((n, v) => n + v.parallelism, 0),
        ),
      };
      for (const v of graph.vertices) slots[v.id] = v.parallelism;
      const sustained = runs.filter((r) => r.sustained);
      const fitted = (sustained.length > 0 ? sustained : runs).map((run) => ({ run, bill: dataPathBill(run.window, deployed) }));
      const dataRound = dataPathRound(forced, deployed);
      const batching: Record<string, { batchSize: number; windowSeconds: number }> = ingest ? { ingress: ingest } : {};
      const segments = fitSegments(fitted, slots, dataRound, batching);
      const validation = fitted.map(({ run, bill }) => {
        const others = fitted.filter((f) => f.run !== run);
        const m = modelAt(others.length > 0 ? fitSegments(others, slots, dataRound, batching) : segments, run.rate);
        const measured = sum(bill) / run.window.events;
        const predicted = predictPerEvent(m, run.rate, m.localCycleSeconds) + (run.window.checkpoints * sum(dataRound.usd)) / run.window.events;
        return { rate: run.rate, measured, predicted, relativeError: measured > 0 ? Math.abs(predicted - measured) / measured : 0 };
      });
      const { checkpointAsl: _asl, ...deployedInfo } = deployed;
      results.push({ example: name, deployed: deployedInfo, idle, forced, runs, coordinator, coordinatorPlans, watchdog, dataRound, segments, validation });
    }
  } finally {
    await cloud?.stop();
  }
  return assemble(results, options, command, (performance.now() - started) / 1000);
}

/** The coordinator's units per completed checkpoint by item kind over `runs`, largest writes first. */
function perCheckpointByItem(runs: readonly RateRun[]): Record<string, { read: number; write: number }> {
  const checkpoints = Math.max(
    1,
    runs.reduce((n, r) => n + r.window.checkpoints, 0),
  );
  const sum: Record<string, { read: number; write: number }> = {};
  for (const r of runs)
    for (const [kind, u] of Object.entries(r.window.coordinatorUnitsByItem)) {
      const s = (sum[kind] ??= { read: 0, write: 0 });
      s.read += u.read;
      s.write += u.write;
    }
  return Object.fromEntries(
    Object.entries(sum)
      .sort(([, x], [, y]) => y.write + y.read - x.write - x.read)
      .map(([kind, u]) => [kind, { read: r2(u.read / checkpoints), write: r2(u.write / checkpoints) }]),
  );
}

function assemble(results: readonly ExampleResult[], options: CostBenchOptions, command: string, totalSeconds: number): CostBenchResult {
  const perMillionUsd: CostBenchResult['perMillionUsd'] = {};
  const perMillionBreakdown: CostBenchResult['perMillionBreakdown'] = {};
  const requestsPerThousand: CostBenchResult['requestsPerThousand'] = {};
  const requestsPerThousandByApi: CostBenchResult['requestsPerThousandByApi'] = {};
  const writeUnitsPerEvent: CostBenchResult['writeUnitsPerEvent'] = {};
  const writeUnitsPerEventByItem: CostBenchResult['writeUnitsPerEventByItem'] = {};
  const readUnitsPerEvent: CostBenchResult['readUnitsPerEvent'] = {};
  const coordinatorUnitsPerCheckpointByItem: CostBenchResult['coordinatorUnitsPerCheckpointByItem'] = {};
  const lambdaMsPerInvocation: CostBenchResult['lambdaMsPerInvocation'] = {};
  const storageBytesPerEvent: Record<string, number> = {};
  const storageGrowthBytesPerEventByKind: Record<string, KindBytes> = {};
  const storageBoundedBytes: Record<string, Record<string, number>> = {};
  const sustainedRates: Record<string, number[]> = {};
  const crossover: CostBenchResult['crossoverEventsPerSecond'] = {};
  const flink = flinkFloorMonthlyUsd(HOURS_PER_MONTH);
  const errors: number[] = [];
  const errorsTotal: number[] = [];
  for (const ex of results) {
    const name = ex.example;
    perMillionUsd[name] = {};
    perMillionBreakdown[name] = {};
    requestsPerThousand[name] = {};
    requestsPerThousandByApi[name] = {};
    writeUnitsPerEvent[name] = {};
    writeUnitsPerEventByItem[name] = {};
    readUnitsPerEvent[name] = {};
    lambdaMsPerInvocation[name] = {};
    coordinatorUnitsPerCheckpointByItem[name] = perCheckpointByItem(ex.runs);
    sustainedRates[name] = ex.runs.filter((r) => r.sustained).map((r) => r.rate);
    const plan = ex.coordinatorPlans[String(options.intervalMs)] as CoordinatorPlan;
    // The deployed coordinator per second under load at the run's interval, and per checkpoint the operators' share (barrier steps, acks, snapshots).
    const coordinatorPerSecond = asBreakdown(plan.usd, 1 / SECONDS_PER_MONTH);
    const checkpointsPerSecond = plan.checkpointsPerMonth / SECONDS_PER_MONTH;
    const perSecondFixed = add(coordinatorPerSecond, ex.dataRound.usd, checkpointsPerSecond);
    for (const run of ex.runs) {
      const w = run.window;
      if (w.events === 0) continue;
      const key = String(run.rate);
      const bill = dataPathBill(w, /* deployed */ { ...ex.deployed, checkpointAsl: { StartAt: '', States: {} } });
      // Checkpoints at the deployed pace (the in-process coordinator on 2 shared cores runs fewer).
      const rounds = w.seconds * checkpointsPerSecond;
      const producer = producerBill(w);
      // The rounds the window should have had but the starved local coordinator did not run cost the data path too.
      const missing = Math.max(0, rounds - w.checkpoints);
      const full = add(add(bill, ex.dataRound.usd, missing), coordinatorPerSecond, w.seconds);
      const total = sum(full) + producer;
      perMillionUsd[name][key] = r2((total / w.events) * 1e6);
      perMillionBreakdown[name][key] = {
        ...(Object.fromEntries(Object.entries(full).map(([k, v]) => [k, r4((v / w.events) * 1e6)])) as Breakdown),
        producer: r4((producer / w.events) * 1e6),
        coordinator: r4(((w.seconds * sum(coordinatorPerSecond)) / w.events) * 1e6),
      };
      // Billed requests of the data path and the producer (measured), plus the deployed coordinator's (modelled: its month, pro rata).
      const byApi: Record<string, number> = {};
      const addApi = (k: string, n: number): void => {
        byApi[k] = (byApi[k] ?? 0) + n;
      };
      for (const [k, n] of Object.entries(w.requests.functions)) if (!k.startsWith('SQS.')) addApi(k, n);
      for (const role of ['functions', 'eventSources'] as const)
        for (const [k, t] of Object.entries(w.sqs[role])) {
          if (role === 'eventSources' && !LOCAL_ONLY(k, t) && !k.startsWith('SQS.SendMessageBatch')) continue;
          addApi(k.replace(/\.(fifo|standard)$/, ''), k.startsWith('SQS.ReceiveMessage') ? t.billed - t.empty : t.billed);
        }
      addApi(
        'Lambda.Invoke',
        Object.values(w.invocations).reduce((n, i) => n + i.count, 0),
      );
      addApi('coordinator (modelled: DynamoDB, SQS, Lambda, StepFunctions)', (plan.requestsPerMonth * w.seconds) / SECONDS_PER_MONTH);
      requestsPerThousandByApi[name][key] = Object.fromEntries(Object.entries(byApi).map(([k, n]) => [k, r2((n / w.events) * 1000)]));
      requestsPerThousand[name][key] = r2((Object.values(byApi).reduce((a, b) => a + b, 0) / w.events) * 1000);
      writeUnitsPerEvent[name][key] = r2((w.units.functions.write + plan.unitsPerCheckpoint.write * rounds) / w.events);
      writeUnitsPerEventByItem[name][key] = Object.fromEntries(
        Object.entries(w.unitsByItem)
          .filter(([, u]) => u.write > 0)
          .sort(([, x], [, y]) => y.write - x.write)
          .map(([kind, u]) => [kind, r2(u.write / w.events)]),
      );
      readUnitsPerEvent[name][key] = r2((w.units.functions.read + plan.unitsPerCheckpoint.read * rounds) / w.events);
      lambdaMsPerInvocation[name][key] = Object.fromEntries(Object.entries(w.invocations).map(([s, i]) => [s, r2(i.ms / Math.max(1, i.count))]));
    }
    for (const rate of options.modelledRates) {
      const model = modelAt(ex.segments, rate);
      const producerUsd = AWS_PRICES.sqsStandardPerRequest * producerRequestsPerEvent(rate);
      const perEvent = predictPerEvent(model, rate, ASSUMPTIONS.awsBatchCycleSeconds) + (ASSUMPTIONS.producerBatchSeconds > 0 ? producerUsd : 0) + sum(perSecondFixed) / rate;
      perMillionUsd[name][`${rate} (modelled)`] = r2(perEvent * 1e6);
      const xc = invocationsPerEvent(model, rate, ASSUMPTIONS.awsBatchCycleSeconds);
      const perRound = checkpointsPerSecond / rate;
      const c = model.counts;
      const producerRequests = producerRequestsPerEvent(rate);
      const coordinatorRequests = plan.requestsPerMonth / SECONDS_PER_MONTH / rate;
      requestsPerThousand[name][`${rate} (modelled)`] = r2((c.requests.a + c.requests.b * xc + producerRequests + ex.dataRound.counts.requests * perRound + coordinatorRequests) * 1000);
      writeUnitsPerEvent[name][`${rate} (modelled)`] = r2(c.writeUnits.a + c.writeUnits.b * xc + (ex.dataRound.counts.writeUnits + plan.unitsPerCheckpoint.write) * perRound);
      readUnitsPerEvent[name][`${rate} (modelled)`] = r2(c.readUnits.a + c.readUnits.b * xc + (ex.dataRound.counts.readUnits + plan.unitsPerCheckpoint.read) * perRound);
      const parts = Object.fromEntries(
        (Object.keys(model.parts) as Array<keyof Breakdown>).map((k) => [k, r4((model.parts[k].a + model.parts[k].b * xc + perSecondFixed[k] / rate) * 1e6)]),
      ) as Breakdown;
      perMillionBreakdown[name][String(rate)] = { ...parts, producer: r4(producerUsd * 1e6), coordinator: r4((sum(coordinatorPerSecond) / rate) * 1e6) };
    }
    const events = ex.runs.reduce((n, r) => n + r.window.events, 0);
    storageBytesPerEvent[name] = r2(ex.runs.reduce((n, r) => n + byteMonths(r.window.tableBytesGrowthByKind, ENGINE_KINDS), 0) / Math.max(1, events));
    const last = ex.runs.at(-1);
    storageBoundedBytes[name] = Object.fromEntries(BOUNDED_KINDS.map((k) => [k, last ? last.window.tableBytesByKind[k] : 0]));
    storageGrowthBytesPerEventByKind[name] = Object.fromEntries(
      STORAGE_KINDS.map((k) => [k, r2(ex.runs.reduce((n, r) => n + r.window.tableBytesGrowthByKind[k], 0) / Math.max(1, events))]),
    ) as KindBytes;
    for (const v of ex.validation) errors.push(v.relativeError);
    for (const v of ex.validation) {
      const run = ex.runs.find((r) => r.rate === v.rate);
      if (!run) continue;
      const fixed = (producerBill(run.window) + run.window.seconds * sum(perSecondFixed)) / run.window.events;
      errorsTotal.push(Math.abs(v.predicted - v.measured) / (v.measured + fixed));
    }
    // Events/s at which Cairn's month (everything the stack bills: coordinator, checkpoints' data path, watchdog, idle polling, alarms, data path) equals Managed Flink's floor.
    crossover[name] = {};
    const deployed = { ...ex.deployed, checkpointAsl: deployedAslOf(ex) };
    for (const interval of INTERVALS) {
      const p = ex.coordinatorPlans[String(interval)] as CoordinatorPlan;
      const fixedMonthly =
        usdTotal(p.usd) +
        p.checkpointsPerMonth * sum(ex.dataRound.usd) +
        usdTotal(ex.watchdog.usd) +
        idleMappingsMonthly(deployed) +
        ex.deployed.alarms * ASSUMPTIONS.alarmMonthlyUsd +
        ex.deployed.compositeAlarms * 0.5;
      if (fixedMonthly >= flink) {
        crossover[name][String(interval)] = null;
        continue;
      }
      // Solve (fixed + rate x month x perEvent(rate)) = flink by bisection over 0..100k ev/s.
      let lo = 0;
      let hi = 100_000;
      const monthly = (rate: number): number => fixedMonthly + rate * SECONDS_PER_MONTH * predictPerEvent(modelAt(ex.segments, rate), Math.max(rate, 0.01), ASSUMPTIONS.awsBatchCycleSeconds);
      if (monthly(hi) < flink) {
        crossover[name][String(interval)] = hi;
        continue;
      }
      for (let i = 0; i < 60; i++) {
        const mid = (lo + hi) / 2;
        if (monthly(mid) < flink) lo = mid;
        else hi = mid;
      }
      crossover[name][String(interval)] = r2(lo);
    }
  }
  const first = results[0];
  const coordinatorMonthlyUsd: Record<string, number> = {};
  const checkpointingMonthlyUsd: Record<string, number> = {};
  const coordinatorTransitionsPerCheckpoint: Record<string, number> = {};
  let idleMonthlyUsd = 0;
  const idleMonthlyBreakdown: Record<string, number> = {};
  if (first) {
    const deployed = { ...first.deployed, checkpointAsl: deployedAslOf(first) };
    for (const interval of INTERVALS) {
      const p = first.coordinatorPlans[String(interval)] as CoordinatorPlan;
      coordinatorMonthlyUsd[String(interval)] = r2(coordinatorMonthly(deployed, first.coordinator, interval));
      checkpointingMonthlyUsd[String(interval)] = r2(usdTotal(p.usd) + p.checkpointsPerMonth * sum(first.dataRound.usd));
      coordinatorTransitionsPerCheckpoint[String(interval)] = r2(p.transitionsPerMonth / p.checkpointsPerMonth);
    }
    // Idle: does the job still checkpoint with no events? Measured on the idle window (one checkpoint of the fresh job is allowed); if it sleeps, only the watchdog runs.
    const sleeps = first.idle.window.checkpoints <= 1;
    const plan = first.coordinatorPlans[String(options.intervalMs)] as CoordinatorPlan;
    idleMonthlyBreakdown.checkpoints = r2(sleeps ? 0 : usdTotal(plan.usd) + plan.checkpointsPerMonth * sum(first.dataRound.usd));
    idleMonthlyBreakdown.watchdog = r4(usdTotal(first.watchdog.usd));
    idleMonthlyBreakdown.watchdogStepFunctions = r4(first.watchdog.usd.stepFunctions);
    idleMonthlyBreakdown.watchdogLambda = r4(first.watchdog.usd.lambda);
    idleMonthlyBreakdown.watchdogDynamodb = r4(first.watchdog.usd.dynamodb);
    idleMonthlyBreakdown.watchdogLogs = r4(first.watchdog.usd.logs);
    idleMonthlyBreakdown.watchdogScheduler = r4(first.watchdog.usd.scheduler);
    idleMonthlyBreakdown.watchdogSchedulerWithFreeTier = r4(first.watchdog.schedulerUsdWithFreeTier);
    idleMonthlyBreakdown.tableGrowthGbPerMonth = r4(sleeps ? 0 : (plan.checkpointsPerMonth * first.dataRound.tableBytes) / 1024 ** 3);
    idleMonthlyBreakdown.eventSourcePolling = r2(idleMappingsMonthly(deployed));
    idleMonthlyBreakdown.eventSourceMappings = deployed.eventSourceMappings.length;
    idleMonthlyBreakdown.alarms = r2(first.deployed.alarms * ASSUMPTIONS.alarmMonthlyUsd + first.deployed.compositeAlarms * 0.5);
    idleMonthlyBreakdown.idleWindowCheckpoints = first.idle.window.checkpoints;
    idleMonthlyBreakdown.idleWindowCheckpointsPerSecond = r2(first.idle.window.checkpoints / first.idle.window.seconds);
    idleMonthlyUsd = r2(idleMonthlyBreakdown.checkpoints + usdTotal(first.watchdog.usd) + idleMonthlyBreakdown.eventSourcePolling + idleMonthlyBreakdown.alarms);
  }
  const allStorage = results.flatMap((ex) => ex.runs.map((r) => ({ bytes: byteMonths(r.window.tableBytesGrowthByKind, ENGINE_KINDS), events: r.window.events })));
  const mean = (xs: number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
  return {
    date: new Date().toISOString(),
    commit: commitOf(),
    dirty: dirtyFiles(),
    command,
    machine: { cores: cpus().length, loadAverage: loadavg().map(r2) },
    prices: { ...AWS_PRICES, hoursPerMonth: HOURS_PER_MONTH },
    assumptions: ASSUMPTIONS,
    coordinatorRunOptions: DEFAULT_RUN_OPTIONS,
    intervalMs: options.intervalMs,
    idleMonthlyUsd,
    idleMonthlyBreakdown,
    coordinatorMonthlyUsd,
    checkpointingMonthlyUsd,
    coordinatorTransitionsPerCheckpoint,
    coordinatorPlans: first?.coordinatorPlans ?? {},
    watchdog: first?.watchdog,
    modelled: MODELLED,
    managedFlinkFloorMonthlyUsd: r2(flink),
    perMillionUsd,
    perMillionBreakdown,
    requestsPerThousand,
    requestsPerThousandByApi,
    writeUnitsPerEvent,
    writeUnitsPerEventByItem,
    readUnitsPerEvent,
    coordinatorUnitsPerCheckpointByItem,
    lambdaMsPerInvocation,
    storageBytesPerEventPerMonth: r2(
      allStorage.reduce((n, s) => n + s.bytes, 0) /
        Math.max(
          1,
          allStorage.reduce((n, s) => n + s.events, 0),
        ),
    ),
    storageBytesPerEvent,
    storageGrowthBytesPerEventByKind,
    storageBoundedBytes,
    measuredRates: options.rates,
    sustainedRates,
    modelledRates: options.modelledRates,
    modelError: r4(mean(errors)),
    modelErrorTotal: r4(mean(errorsTotal)),
    crossoverEventsPerSecond: crossover,
    examples: results,
    totalSeconds: r2(totalSeconds),
  };
}

/** What the JSON's figures are made of: measured on the local cloud, or modelled (and from what). */
const MODELLED: Record<string, string> = {
  producer: `measured at the measured rates: what is due every ${ASSUMPTIONS.producerBatchSeconds} s packed into ingress batch messages (IngressProducer's packing, up to ${MAX_BATCH_EVENTS} events a message, 10 messages a SendMessageBatch); modelled above them the same way (the ingress queue's messages per event follow the rate)`,
  dataPath:
    'measured at the measured rates (requests by API, DynamoDB units from item sizes, SQS per 64 KiB chunk, handler durations, log bytes, table growth); modelled elsewhere from the two measured rates around the rate, or the two nearest (per-event and per-invocation fits, AWS batching); modelError: each measured rate left out and predicted from its neighbours',
  coordinatorDynamoAndSqs:
    "measured per checkpoint on the in-process coordinator (the same CoordinatorDriver transitions and fact reads); the deployed loop's waiting decides (every ackPollMs), ack Query polls (backoff 50 ms .. ackPollMs over the measured ack latency) and lease writes (job record size measured) are modelled",
  coordinatorLambda: 'modelled: continuous (memory x every second of the month) while waits are slept in process; one invocation of the measured round duration per checkpoint through the Wait state',
  coordinatorStepFunctions:
    'modelled from the synthesized ASL: Run + Route per invocation in process, Run + Route + WaitForNext per checkpoint through the Wait state, Init + HandedOver per successor (lifetimeMs)',
  coordinatorLogs: 'modelled: history events per state (level ALL) x assumed bytes, Lambda platform lines, an assumed EMF line per checkpoint',
  watchdog:
    'modelled from the template: executions at the schedule rate x the ASL path Init > Run > Route > Asleep, one short invocation (assumed ms), two decides and two job record writes; EventBridge Scheduler at list price (free tier stated apart)',
  idlePolling: 'modelled: every SQS event source mapping in the template (operators, ingest, any dead-letter consumer) long-polls with 5 pollers every 20 s',
  queueDepthReads: 'none: GetQueueAttributes only once every source finished a bounded input (never for a deployed unbounded job)',
  ackListener: 'none: no ack listener function, no table stream',
};

function deployedAslOf(ex: ExampleResult): DeployedJob['checkpointAsl'] {
  return deployedJob(ex.example, 1_000).checkpointAsl;
}
