/**
 * AWS list prices used by `npm run bench` and `npm run bench:cost` to turn what was counted
 * into dollars. One place, with the date they were taken: us-east-1, on-demand, no free tier,
 * as published on the AWS pricing pages (DynamoDB on-demand after the November 2024 price cut).
 * Taken 2026-12-01; check https://aws.amazon.com/pricing before relying on them.
 */
export const AWS_PRICES = {
  region: 'us-east-1',
  asOf: '2026-12-01 (us-east-1 list prices, on-demand, no free tier)',
  /** SQS: per request (a request carries up to 10 messages / 256 KiB; each 64 KiB chunk bills as one). */
  sqsStandardPerRequest: 0.4 / 1e6,
  sqsFifoPerRequest: 0.5 / 1e6,
  /** DynamoDB on-demand: per write / read request unit (transactional writes cost 2 units per KB). */
  dynamoPerWriteUnit: 0.625 / 1e6,
  dynamoPerReadUnit: 0.125 / 1e6,
  /** DynamoDB Standard table class storage, and continuous backups (PITR), per GB-month of table size. */
  dynamoStoragePerGbMonth: 0.25,
  dynamoPitrPerGbMonth: 0.2,
  /** DynamoDB storage counts 100 bytes of overhead per item on top of its attributes. */
  dynamoItemOverheadBytes: 100,
  /** S3 Standard: PUT/COPY/POST/LIST and GET requests; storage per GB-month. */
  s3PerPut: 0.005 / 1e3,
  s3PerGet: 0.0004 / 1e3,
  s3StoragePerGbMonth: 0.023,
  /** Lambda: per request, and per GB-second of duration (1 ms granularity), by architecture. */
  lambdaPerRequest: 0.2 / 1e6,
  lambdaPerGbSecond: 0.0000133334,
  lambdaPerGbSecondArm64: 0.0000133334,
  lambdaPerGbSecondX86: 0.0000166667,
  /** Step Functions Standard: per state transition. */
  stepFunctionsPerTransition: 0.025 / 1e3,
  /** EventBridge Scheduler: per invocation after its free tier of 14 M invocations a month (the bench bills list price, no free tier, and states both). */
  schedulerPerInvocation: 1 / 1e6,
  schedulerFreeInvocationsPerMonth: 14e6,
  /** CloudWatch Logs (Standard class): ingestion per GB; archived storage per GB-month. */
  logsIngestionPerGb: 0.5,
  logsStoragePerGbMonth: 0.03,
  /** Managed Service for Apache Flink: per KPU-hour; the smallest application runs 1 KPU + 1 orchestration KPU. */
  flinkPerKpuHour: 0.11,
  flinkMinimumKpus: 2,
} as const;

/** Hours and seconds in the month AWS bills by (730 h). */
export const HOURS_PER_MONTH = 730;
export const SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600;
