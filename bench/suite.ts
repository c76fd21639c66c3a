import { execFileSync } from 'node:child_process';
import { cpus, totalmem, platform, arch } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { runCheckpointCost, type CheckpointCostResult } from './checkpoint-cost.js';
import { runThroughput, type ThroughputResult } from './throughput.js';

/** The whole benchmark (issue 2): checkpoint cost vs total state, and throughput with/without checkpointing. */

export interface SuiteOptions {
  /** Small and large total state (keys). */
  readonly smallKeys: number;
  readonly largeKeys: number;
  readonly changedPerEpoch: number;
  readonly epochs: number;
  readonly warmupEpochs: number;
  /** Also run the cost configurations with checkpointing off (baseline of plain state writes). */
  readonly baselineOff: boolean;
  readonly events: number;
  readonly warmupEvents: number;
  readonly intervalMs: number;
  readonly example: string;
  /** Also run the throughput comparison on an in-memory EmbeddedDb. */
  readonly inMemory: boolean;
  /** Throughput runs per configuration, interleaved on/off; the best (highest events/s) is reported (shared cores are noisy). */
  readonly repeats: number;
  readonly log?: (line: string) => void;
}

export const DEFAULT_SUITE: SuiteOptions = {
  smallKeys: 10_000,
  largeKeys: 1_000_000,
  changedPerEpoch: 1_000,
  epochs: 10,
  warmupEpochs: 2,
  baselineOff: true,
  events: 200_000,
  warmupEvents: 10_000,
  intervalMs: 1_000,
  example: 'account-balance',
  inMemory: true,
  repeats: 2,
};

export interface Machine {
  readonly date: string;
  readonly cores: number;
  readonly cpu: string;
  readonly memoryGb: number;
  readonly node: string;
  readonly platform: string;
  /** The engine version measured (HEAD, and whether tracked files in shared/ or examples/ had uncommitted changes). */
  readonly git: { readonly commit: string; readonly dirty: boolean } | undefined;
}

export interface CostRatios {
  readonly checkpointMs: number;
  readonly checkpointMsMedian: number;
  readonly checkpointWithPruneMs: number;
  readonly checkpointWithPruneMsMedian: number;
  readonly checkpointBytes: number;
  readonly bytesPerEpoch: number;
  readonly bytesDuringCheckpoint: number;
}

export interface ThroughputPair {
  readonly durable: boolean;
  /** The best of `repeats` runs (highest end-to-end events/s). */
  readonly on: ThroughputResult;
  readonly off: ThroughputResult;
  /** End-to-end events/s of every run, in run order. */
  readonly runs: { readonly on: readonly number[]; readonly off: readonly number[] };
  /** events/s with checkpointing on / off, first push -> FINISHED. */
  readonly ratio: number;
  /** The same for the processing phase only (first push -> final checkpoint triggered). */
  readonly processingRatio: number;
}

export interface SuiteResult {
  readonly machine: Machine;
  readonly options: Omit<SuiteOptions, 'log'>;
  readonly cost: {
    readonly small: CheckpointCostResult;
    readonly large: CheckpointCostResult;
    readonly smallOff: CheckpointCostResult | undefined;
    readonly largeOff: CheckpointCostResult | undefined;
    /** large / small. */
    readonly ratios: CostRatios;
    readonly threshold: number;
    readonly proportionalToChanges: { readonly duration: boolean; readonly bytes: boolean };
  };
  readonly throughput: readonly ThroughputPair[];
  readonly totalMs: number;
}

export const RATIO_THRESHOLD = 1.5;

let gcFunction: (() => void) | undefined;
/** A full GC between configurations, so one does not pay for the previous one's garbage (tsx passes no --expose-gc). */
function collectGarbage(): void {
  if (!gcFunction) {
    setFlagsFromString('--expose-gc');
    gcFunction = runInNewContext('gc') as () => void;
  }
  gcFunction();
}

export function machine(): Machine {
  const cpuList = cpus();
  return {
    date: new Date().toISOString(),
    cores: cpuList.length,
    cpu: cpuList[0]?.model.trim() ?? 'unknown',
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${platform()} ${arch()}`,
    git: gitInfo(),
  };
}

function gitInfo(): Machine['git'] {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'shared', 'examples'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { commit, dirty: status.trim().length > 0 };
  } catch {
    return undefined;
  }
}

export async function runSuite(options: SuiteOptions = DEFAULT_SUITE): Promise<SuiteResult> {
  const log = options.log ?? ((): void => undefined);
  const started = performance.now();
  const info = machine();

  const cost = async (keys: number, checkpointing: boolean): Promise<CheckpointCostResult> => {
    log(`cost: ${keys} keys, checkpointing ${checkpointing ? 'on' : 'off'} ...`);
    const result = await runCheckpointCost({
      keys,
      changedPerEpoch: options.changedPerEpoch,
      epochs: options.epochs,
      warmupEpochs: options.warmupEpochs,
      checkpointing,
    });
    // The next configuration should not pay for this one's garbage.
    collectGarbage();
    return result;
  };
  const small = await cost(options.smallKeys, true);
  const large = await cost(options.largeKeys, true);
  const smallOff = options.baselineOff ? await cost(options.smallKeys, false) : undefined;
  const largeOff = options.baselineOff ? await cost(options.largeKeys, false) : undefined;
  const ratio = (a: number, b: number): number => (b === 0 ? (a === 0 ? 1 : Infinity) : a / b);
  const ratios: CostRatios = {
    checkpointMs: ratio(large.mean.checkpointMs, small.mean.checkpointMs),
    checkpointMsMedian: ratio(large.median.checkpointMs, small.median.checkpointMs),
    checkpointWithPruneMs: ratio(large.mean.checkpointWithPruneMs, small.mean.checkpointWithPruneMs),
    checkpointWithPruneMsMedian: ratio(large.median.checkpointWithPruneMs, small.median.checkpointWithPruneMs),
    checkpointBytes: ratio(large.mean.checkpointBytes, small.mean.checkpointBytes),
    bytesPerEpoch: ratio(large.mean.bytes, small.mean.bytes),
    bytesDuringCheckpoint: ratio(large.mean.bytesDuringCheckpoint, small.mean.bytesDuringCheckpoint),
  };

  const throughput: ThroughputPair[] = [];
  if (options.warmupEvents > 0) {
    log(`throughput: warm-up (${options.warmupEvents} events) ...`);
    await runThroughput({ example: options.example, events: options.warmupEvents, checkpointing: true, intervalMs: options.intervalMs, durable: false });
  }
  for (const durable of options.inMemory ? [true, false] : [true]) {
    const run = (checkpointing: boolean): Promise<ThroughputResult> => {
      log(`throughput: ${options.events} events, ${durable ? 'durable' : 'in-memory'}, checkpointing ${checkpointing ? `every ${options.intervalMs} ms` : 'off'} ...`);
      return runThroughput({ example: options.example, events: options.events, checkpointing, intervalMs: options.intervalMs, durable });
    };
    const ons: ThroughputResult[] = [];
    const offs: ThroughputResult[] = [];
    for (let i = 0; i < Math.max(1, options.repeats); i++) {
      ons.push(await run(true));
      collectGarbage();
      offs.push(await run(false));
      collectGarbage();
    }
    const best = (list: readonly ThroughputResult[]): ThroughputResult => list.reduce((a, b) => (b.eventsPerSec > a.eventsPerSec ? b : a));
    const on = best(ons);
    const off = best(offs);
    throughput.push({
      durable,
      on,
      off,
      runs: { on: ons.map((r) => r.eventsPerSec), off: offs.map((r) => r.eventsPerSec) },
      ratio: on.eventsPerSec / off.eventsPerSec,
      processingRatio: on.processingEventsPerSec / off.processingEventsPerSec,
    });
  }

  const { log: _log, ...rest } = options;
  return {
    machine: info,
    options: rest,
    cost: {
      small,
      large,
      smallOff,
      largeOff,
      ratios,
      threshold: RATIO_THRESHOLD,
      proportionalToChanges: {
        duration: ratios.checkpointMs < RATIO_THRESHOLD,
        bytes: ratios.checkpointBytes < RATIO_THRESHOLD,
      },
    },
    throughput,
    totalMs: performance.now() - started,
  };
}
