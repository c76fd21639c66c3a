import { examples } from '../examples/index.js';
import type { Example } from '../examples/types.js';
import { startLocalCloud } from '../shared/aws/local-cloud/local-cloud.js';
import { createLocalCloudJob } from '../shared/aws/runner/index.js';
import { AWS_PRICES } from './aws-prices.js';

/**
 * AWS requests per 1,000 events, by service, for each example run on the local cloud (the
 * real handlers against DynamoDB Local, ElasticMQ and moto through the AWS SDK), and what
 * that costs per million events at list prices. Lambda duration is not measured here (the
 * handlers run in process): the estimate assumes `lambdaMsPerInvocation` at 512 MB.
 */

export interface AwsCostRow {
  readonly example: string;
  readonly events: number;
  readonly seconds: number;
  readonly checkpoints: number;
  readonly perThousandEvents: Readonly<Record<string, number>>;
  readonly dynamoUnitsPerThousand: { readonly read: number; readonly write: number };
  readonly invocationsPerThousand: number;
  readonly costPerMillionEvents: Readonly<Record<string, number>> & { readonly total: number };
}

export interface AwsCostOptions {
  readonly events: number;
  readonly checkpointIntervalMs: number;
  readonly lambdaMsPerInvocation: number;
  readonly lambdaMemoryGb: number;
  readonly log?: (line: string) => void;
}

export const DEFAULT_AWS_COST: AwsCostOptions = { events: 1_000, checkpointIntervalMs: 1_000, lambdaMsPerInvocation: 20, lambdaMemoryGb: 0.5 };

export async function runAwsCost(options: AwsCostOptions = DEFAULT_AWS_COST): Promise<AwsCostRow[]> {
  const external = process.env.AWS_ENDPOINT_URL;
  const cloud = external ? undefined : await startLocalCloud({ edgePort: 0 });
  const endpoint = external ?? (cloud as { endpoint: string }).endpoint;
  try {
    const rows: AwsCostRow[] = [];
    for (const example of Object.values(examples)) rows.push(await runOne(example, endpoint, options));
    return rows;
  } finally {
    await cloud?.stop();
  }
}

async function runOne(example: Example, endpoint: string, options: AwsCostOptions): Promise<AwsCostRow> {
  options.log?.(`aws cost: ${example.name}, ${options.events} events on ${endpoint}`);
  const events = example.generate(options.events, 5);
  // The emulators accept any credentials; a real endpoint uses the standard provider chain.
  const credentials = process.env.AWS_ENDPOINT_URL ? {} : { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };
  const job = await createLocalCloudJob({ example, endpoint, region: 'us-east-1', ...credentials, checkpoint: { intervalMs: options.checkpointIntervalMs } });
  const started = Date.now();
  try {
    await job.push(events.map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
    job.closeInput();
    const record = await job.run({ timeoutMs: 300_000 });
    if (record.status !== 'FINISHED') throw new Error(`${example.name} ended ${record.status} on the local cloud`);
    const seconds = (Date.now() - started) / 1000;
    const checkpoints = (await job.checkpoints.listCheckpoints()).filter((c) => c.status === 'COMPLETED').length;
    const requests = job.requestSnapshot();
    const units = { read: 0, write: 0 };
    for (const counter of [job.requests.functions, job.requests.coordinator, job.requests.eventSources]) {
      units.read += counter.capacity.read;
      units.write += counter.capacity.write;
    }
    const perK = (n: number): number => round((n * 1000) / options.events);
    const perThousandEvents = Object.fromEntries(Object.entries(requests).map(([key, n]) => [key, perK(n)]));
    const invocations = job.counters.invocations;
    return {
      example: example.name,
      events: options.events,
      seconds: round(seconds),
      checkpoints,
      perThousandEvents,
      dynamoUnitsPerThousand: { read: perK(units.read), write: perK(units.write) },
      invocationsPerThousand: perK(invocations),
      costPerMillionEvents: costPerMillion(requests, units, invocations, options),
    };
  } finally {
    await job.destroy();
  }
}

function costPerMillion(requests: Readonly<Record<string, number>>, units: { read: number; write: number }, invocations: number, options: AwsCostOptions): AwsCostRow['costPerMillionEvents'] {
  const scale = 1e6 / options.events;
  const count = (service: string, ops?: readonly string[]): number =>
    Object.entries(requests)
      .filter(([key]) => key.startsWith(`${service}.`) && (!ops || ops.includes(key.slice(service.length + 1))))
      .reduce((n, [, c]) => n + c, 0);
  const p = AWS_PRICES;
  // Operator queues are FIFO; the ingress queue of the local-cloud runner is FIFO too.
  const sqs = count('SQS') * p.sqsFifoPerRequest;
  const dynamodb = units.write * p.dynamoPerWriteUnit + units.read * p.dynamoPerReadUnit;
  const s3 = count('S3', ['PutObject', 'DeleteObject', 'DeleteObjects', 'ListObjectsV2']) * p.s3PerPut + count('S3', ['GetObject', 'HeadObject']) * p.s3PerGet;
  const lambda = invocations * (p.lambdaPerRequest + (options.lambdaMsPerInvocation / 1000) * options.lambdaMemoryGb * p.lambdaPerGbSecond);
  const parts = { sqs: sqs * scale, dynamodb: dynamodb * scale, s3: s3 * scale, lambda: lambda * scale };
  return { ...mapValues(parts, round), total: round(Object.values(parts).reduce((a, b) => a + b, 0)) };
}

function mapValues<T extends Record<string, number>>(obj: T, fn: (n: number) => number): T {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, fn(v)])) as T;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

export function formatAwsCost(rows: readonly AwsCostRow[]): string {
  const p = AWS_PRICES;
  const lines = [
    `3. AWS requests and cost per event (rough: every SQS request at the FIFO price, 20 ms per invocation, no Step Functions, logs or storage; \`npm run bench:cost\` bills them all)`,
    `   AWS requests and cost per event: each example on the local cloud (real handlers, AWS SDK v3 against DynamoDB Local / ElasticMQ / moto), ${rows[0]?.events ?? 0} events, checkpoint every 1 s`,
    `   prices: ${p.region}, ${p.asOf}: SQS FIFO $0.50/M requests, DynamoDB on-demand $0.625/M WRU + $0.125/M RRU, S3 $0.005/1k PUT + $0.0004/1k GET, Lambda arm64 $0.20/M + $0.0000133334/GB-s (assumed 20 ms at 512 MB per invocation)`,
  ];
  for (const row of rows) {
    const services = new Map<string, number>();
    for (const [key, n] of Object.entries(row.perThousandEvents)) {
      const service = key.split('.')[0] as string;
      services.set(service, (services.get(service) ?? 0) + n);
    }
    lines.push(
      `   ${row.example.padEnd(16)} ${row.seconds.toFixed(1)} s, ${row.checkpoints} checkpoints · requests per 1,000 events: ${[...services].map(([s, n]) => `${s} ${n.toFixed(1)}`).join(', ')} · DynamoDB units per 1,000 events: ${row.dynamoUnitsPerThousand.write} WRU, ${row.dynamoUnitsPerThousand.read} RRU · Lambda invocations per 1,000 events: ${row.invocationsPerThousand}`,
      `   ${''.padEnd(16)} cost per million events: $${row.costPerMillionEvents.total.toFixed(2)} (SQS $${row.costPerMillionEvents.sqs}, DynamoDB $${row.costPerMillionEvents.dynamodb}, S3 $${row.costPerMillionEvents.s3}, Lambda $${row.costPerMillionEvents.lambda})`,
    );
  }
  return lines.join('\n');
}
