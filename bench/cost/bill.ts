import type { SqsTally } from '../../shared/aws/adapters/request-counter.js';
import { AWS_PRICES } from '../aws-prices.js';

/**
 * AWS's billing rules as plain functions of what was counted, so that a test can check them
 * against bills computed by hand. Prices: ../aws-prices.ts (us-east-1, with their date).
 */

export const GB = 1024 ** 3;
const P = AWS_PRICES;

/** SQS: billed requests (per 64 KiB chunk, already in the tallies) by queue kind, at the standard / FIFO price. */
export function sqsUsd(tallies: Readonly<Record<string, SqsTally>>, include: (key: string, tally: SqsTally) => boolean = () => true): { fifo: number; standard: number; usd: number } {
  let fifo = 0;
  let standard = 0;
  for (const [key, tally] of Object.entries(tallies)) {
    if (!include(key, tally)) continue;
    if (key.endsWith('.fifo')) fifo += tally.billed;
    else standard += tally.billed;
  }
  return { fifo, standard, usd: fifo * P.sqsFifoPerRequest + standard * P.sqsStandardPerRequest };
}

export function dynamoUsd(units: { read: number; write: number }): number {
  return units.write * P.dynamoPerWriteUnit + units.read * P.dynamoPerReadUnit;
}

/** Per-invocation durations in ms, each rounded up to the ms (Lambda's 1 ms granularity). */
export function billedMs(durationsMs: readonly number[]): number {
  return durationsMs.reduce((n, ms) => n + Math.max(1, Math.ceil(ms)), 0);
}

export function gbSeconds(billedMsTotal: number, memoryMb: number): number {
  return (billedMsTotal / 1000) * (memoryMb / 1024);
}

/** Lambda: requests plus GB-seconds at the function's memory size and architecture. */
export function lambdaUsd(invocations: number, billedMsTotal: number, memoryMb: number, architecture: 'arm64' | 'x86_64'): number {
  const perGbS = architecture === 'arm64' ? P.lambdaPerGbSecondArm64 : P.lambdaPerGbSecondX86;
  return invocations * P.lambdaPerRequest + gbSeconds(billedMsTotal, memoryMb) * perGbS;
}

export function stepFunctionsUsd(transitions: number): number {
  return transitions * P.stepFunctionsPerTransition;
}

export function logsIngestionUsd(bytes: number): number {
  return (bytes / GB) * P.logsIngestionPerGb;
}

/** A month of storing `bytes` more in the table (with PITR) and in S3. */
export function storageMonthlyUsd(tableBytes: number, s3Bytes = 0, pitr = true): number {
  return (tableBytes / GB) * (P.dynamoStoragePerGbMonth + (pitr ? P.dynamoPitrPerGbMonth : 0)) + (s3Bytes / GB) * P.s3StoragePerGbMonth;
}

/**
 * The Lambda runtime's own lines per invocation (text log format, as deployed: no logging
 * config): START, END and REPORT, shipped to CloudWatch Logs with the handler's output.
 */
export const PLATFORM_LOG_BYTES_PER_INVOCATION = Buffer.byteLength(
  [
    'START RequestId: 3f1c2b7a-9d4e-4c1a-8b2f-6e5d4c3b2a19 Version: $LATEST',
    'END RequestId: 3f1c2b7a-9d4e-4c1a-8b2f-6e5d4c3b2a19',
    'REPORT RequestId: 3f1c2b7a-9d4e-4c1a-8b2f-6e5d4c3b2a19\tDuration: 41.27 ms\tBilled Duration: 42 ms\tMemory Size: 512 MB\tMax Memory Used: 118 MB\t',
  ].join('\n') + '\n',
);

/** Managed Service for Apache Flink's floor: 1 KPU + 1 orchestration KPU, all month. */
export function flinkFloorMonthlyUsd(hoursPerMonth: number): number {
  return P.flinkMinimumKpus * P.flinkPerKpuHour * hoursPerMonth;
}
