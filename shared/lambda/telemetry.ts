import { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, Metrics } from '@aws-lambda-powertools/metrics';

/**
 * Logging and metrics of the Lambda handlers: Powertools for AWS Lambda. Metrics go out in
 * CloudWatch Embedded Metric Format (one EMF line per invocation on stdout), so they cost no
 * API call. The handlers only need the small interfaces below, so the local runner can pass
 * quiet or counting implementations.
 */

export const METRICS_NAMESPACE = 'Cairn';

/** The metrics every handler publishes (EMF metric names). */
export const MetricName = {
  records: 'Records',
  ingested: 'EventsIngested',
  ingestDuplicates: 'IngestDuplicates',
  duplicatesDropped: 'DuplicatesDropped',
  fenced: 'FencedMessages',
  late: 'LateRecords',
  deadLetters: 'DeadLetters',
  stepFailures: 'StepFailures',
  failedMessages: 'FailedMessages',
} as const;
export type MetricName = (typeof MetricName)[keyof typeof MetricName];

export type HandlerLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface HandlerMetrics {
  addMetric(name: string, unit: (typeof MetricUnit)[keyof typeof MetricUnit], value: number): void;
  addDimension(name: string, value: string): void;
  publishStoredMetrics(): void;
}

export interface Telemetry {
  readonly logger: HandlerLogger;
  readonly metrics: HandlerMetrics;
}

/** Powertools Logger + Metrics; `service` is the Powertools service name (and a metric dimension). */
export function powertools(service: string): Telemetry {
  return {
    logger: new Logger({ serviceName: service }),
    metrics: new Metrics({ namespace: METRICS_NAMESPACE, serviceName: service }),
  };
}

/** Logs nothing and publishes nothing (the local runner's default: it keeps its own counters). */
export const quietTelemetry: Telemetry = {
  logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
  metrics: { addMetric: () => undefined, addDimension: () => undefined, publishStoredMetrics: () => undefined },
};

/** Adds the counts (zeros included: a dashboard tells "none" from "no data") and publishes one EMF blob. */
export function publishCounts(metrics: HandlerMetrics, counts: Partial<Record<MetricName, number>>): void {
  let added = 0;
  for (const [name, value] of Object.entries(counts)) {
    if (value === undefined) continue;
    metrics.addMetric(name, MetricUnit.Count, value);
    added++;
  }
  if (added > 0) metrics.publishStoredMetrics();
}

export { MetricUnit };
