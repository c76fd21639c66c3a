import { SFNClient } from '@aws-sdk/client-sfn';
import type { Context } from 'aws-lambda';
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { JobDefinition } from '../core/definition.js';
import { parseCheckpointConfig, type CheckpointConfigInput } from '../core/config.js';
import { CoordinatorWaker, createAwsStores, type AwsStores } from '../aws/index.js';
import { DEFAULT_RESTART_STRATEGY, validateRestartStrategy, type RestartStrategy } from '../core/protocol/restart-strategy.js';
import { CoordinatorTasks, type RunInput, type RunOptions } from './coordinator-tasks.js';

/**
 * Lambda entry of the coordinator's task states. One function, one `action` per state (the
 * states are listed in infra/coordinator.ts): `run` is the checkpoint workflow's coordinator
 * loop, the others are the recovery workflow's states.
 *
 * Environment (set by the CairnJob construct):
 *   CAIRN_TABLE             job table (single-table layout, shared/aws/adapters/table-layout.ts)
 *   CAIRN_BUCKET            bucket for spilled state values
 *   CAIRN_QUEUE_URLS        JSON: vertex id -> FIFO queue URL
 *   CAIRN_CHECKPOINT        JSON: checkpoint config (the one the state machine's timeouts come from)
 *   CAIRN_RESTART_STRATEGY  JSON: restart strategy (functions/coordinator/restart-strategy.ts)
 *   CAIRN_COORDINATOR_ARN   the checkpoint state machine (a successor execution, a wake-up after a recovery)
 *   CAIRN_COORDINATOR_RUN   optional JSON: RunOptions of the coordinator loop (budget, waits, ack polling)
 *   AWS_ENDPOINT_URL        optional single endpoint (local cloud, LocalStack)
 */

export interface CoordinatorEnv {
  readonly table: string;
  readonly bucket: string;
  readonly queueUrls: Readonly<Record<string, string>>;
  readonly checkpoint: CheckpointConfigInput;
  readonly restartStrategy: RestartStrategy;
  readonly coordinatorArn?: string;
  readonly run?: Partial<RunOptions>;
  /** CAIRN_OUTPUT_RETENTION_SECONDS: published sink batches expire this long after publication. */
  readonly outputRetentionMs?: number;
  readonly endpoint?: string;
  readonly region?: string;
}

function positiveSeconds(name: string, value: string): number {
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds <= 0) throw new Error(`environment variable ${name} must be a whole number of seconds above 0, got '${value}'`);
  return seconds;
}

export function coordinatorEnvFrom(env: NodeJS.ProcessEnv): CoordinatorEnv {
  const required = (name: string): string => {
    const value = env[name];
    if (!value) throw new Error(`environment variable ${name} is not set`);
    return value;
  };
  const restartStrategy = env.CAIRN_RESTART_STRATEGY ? (JSON.parse(env.CAIRN_RESTART_STRATEGY) as RestartStrategy) : DEFAULT_RESTART_STRATEGY;
  validateRestartStrategy(restartStrategy);
  return {
    table: required('CAIRN_TABLE'),
    bucket: required('CAIRN_BUCKET'),
    queueUrls: JSON.parse(required('CAIRN_QUEUE_URLS')) as Record<string, string>,
    checkpoint: env.CAIRN_CHECKPOINT ? (JSON.parse(env.CAIRN_CHECKPOINT) as CheckpointConfigInput) : {},
    restartStrategy,
    ...(env.CAIRN_COORDINATOR_ARN ? { coordinatorArn: env.CAIRN_COORDINATOR_ARN } : {}),
    ...(env.CAIRN_COORDINATOR_RUN ? { run: JSON.parse(env.CAIRN_COORDINATOR_RUN) as Partial<RunOptions> } : {}),
    ...(env.CAIRN_OUTPUT_RETENTION_SECONDS ? { outputRetentionMs: positiveSeconds('CAIRN_OUTPUT_RETENTION_SECONDS', env.CAIRN_OUTPUT_RETENTION_SECONDS) * 1000 } : {}),
    ...(env.AWS_ENDPOINT_URL ? { endpoint: env.AWS_ENDPOINT_URL } : {}),
    ...(env.AWS_REGION ? { region: env.AWS_REGION } : {}),
  };
}

export type CoordinatorEvent =
  | ({ readonly action: 'run' } & RunInput)
  | { readonly action: 'plan-restart'; readonly reason: string }
  | { readonly action: 'mark-failed'; readonly reason: string }
  | { readonly action: 'start-recovery'; readonly reason: string }
  | { readonly action: 'restore-operator'; readonly vertex: string; readonly toCheckpoint: number; readonly generation: number }
  | { readonly action: 'restore-instances'; readonly batch: number; readonly toCheckpoint: number; readonly generation: number }
  | { readonly action: 'resume'; readonly generation: number };

/** Embedded Metric Format: a log line CloudWatch turns into a metric (no API call, no extra permission). */
export function emfMetric(job: string, name: string, value: number, unit: 'Count' | 'Milliseconds' = 'Count'): void {
  console.log(
    JSON.stringify({
      _aws: { Timestamp: Date.now(), CloudWatchMetrics: [{ Namespace: 'Cairn', Dimensions: [['Job']], Metrics: [{ Name: name, Unit: unit }] }] },
      Job: job,
      [name]: value,
    }),
  );
}

async function queuesIdle(sqs: SQSClient, urls: readonly string[]): Promise<boolean> {
  const counts = await Promise.all(
    urls.map(async (QueueUrl) => {
      const { Attributes = {} } = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
        }),
      );
      return Number(Attributes.ApproximateNumberOfMessages ?? 0) + Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0);
    }),
  );
  return counts.every((n) => n === 0);
}

export interface CoordinatorRuntime {
  readonly tasks: CoordinatorTasks;
  readonly stores: AwsStores;
  readonly sfn: SFNClient;
}

/** Wires the task functions to AWS (SDK v3 adapters of shared/aws). */
export async function createCoordinatorRuntime(definition: JobDefinition, env: CoordinatorEnv): Promise<CoordinatorRuntime> {
  const stores = await createAwsStores({
    tableName: env.table,
    bucket: env.bucket,
    queueUrls: env.queueUrls,
    ...(env.outputRetentionMs === undefined ? {} : { outputRetentionMs: env.outputRetentionMs }),
    ...(env.endpoint ? { endpoint: env.endpoint } : {}),
    ...(env.region ? { region: env.region } : {}),
  });
  const sfn = new SFNClient({ ...(env.endpoint ? { endpoint: env.endpoint } : {}), ...(env.region ? { region: env.region } : {}) });
  const transport = stores.transport;
  if (!transport) throw new Error('no queue transport');
  const waker = env.coordinatorArn ? new CoordinatorWaker(sfn, env.coordinatorArn) : undefined;
  const tasks = new CoordinatorTasks({
    graph: definition.build(),
    config: parseCheckpointConfig({ ...definition.checkpoint, ...env.checkpoint }),
    restartStrategy: env.restartStrategy,
    checkpoints: stores.checkpoints,
    state: stores.stateStore,
    log: stores.sourceLog,
    sinks: stores.sinks,
    transport,
    clock: { now: () => Date.now() },
    queueUrls: env.queueUrls,
    queuesIdle: () => queuesIdle(stores.clients.sqs, Object.values(env.queueUrls)),
    ...(waker ? { wake: async (name: string) => void (await waker.wake(name)) } : {}),
    ...(env.run ? { run: env.run } : {}),
    metric: (name, value, unit) => emfMetric(definition.name, name, value, unit),
  });
  return { tasks, stores, sfn };
}

export async function dispatch(tasks: CoordinatorTasks, event: CoordinatorEvent, context?: Pick<Context, 'getRemainingTimeInMillis'>): Promise<unknown> {
  switch (event.action) {
    case 'run':
      return tasks.run({ ...event, ...(context ? { remainingMs: context.getRemainingTimeInMillis() } : {}) });
    case 'plan-restart':
      return tasks.planRestart(event);
    case 'mark-failed':
      return tasks.markFailed(event);
    case 'start-recovery':
      return tasks.startRecovery(event);
    case 'restore-operator':
      return tasks.restoreOperator(event);
    case 'restore-instances':
      return tasks.restoreInstances(event);
    case 'resume':
      return tasks.resume(event);
    default:
      throw new Error(`unknown coordinator action ${(event as { action?: unknown }).action as string}`);
  }
}

export function createCoordinatorHandler(runtime: () => Promise<CoordinatorRuntime>): {
  handler: (event: CoordinatorEvent, context?: Context) => Promise<unknown>;
} {
  return { handler: async (event, context) => dispatch((await runtime()).tasks, event, context) };
}
