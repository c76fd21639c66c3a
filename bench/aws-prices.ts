/**
 * AWS list prices used by `npm run bench` to turn request counts into cost. One place, with
 * the date they were taken: us-east-1, on-demand, no free tier, as published in 2025 and
 * unchanged as far as we know on 2026-11-24. Check https://aws.amazon.com/pricing before
 * relying on them.
 */
export const AWS_PRICES = {
  region: 'us-east-1',
  asOf: '2026-11-24 (list prices as published in 2025)',
  /** SQS: per request (a request carries up to 10 messages / 256 KiB; each 64 KiB chunk bills as one). */
  sqsStandardPerRequest: 0.4 / 1e6,
  sqsFifoPerRequest: 0.5 / 1e6,
  /** DynamoDB on-demand: per write / read request unit (transactional writes cost 2 units per KB). */
  dynamoPerWriteUnit: 0.625 / 1e6,
  dynamoPerReadUnit: 0.125 / 1e6,
  /** S3 Standard: PUT/COPY/POST/LIST and GET requests. */
  s3PerPut: 0.005 / 1e3,
  s3PerGet: 0.0004 / 1e3,
  /** Lambda (arm64): per request, and per GB-second of duration. */
  lambdaPerRequest: 0.2 / 1e6,
  lambdaPerGbSecond: 0.0000133334,
  /** Step Functions Standard: per state transition. */
  stepFunctionsPerTransition: 0.025 / 1e3,
} as const;
