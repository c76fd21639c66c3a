import type { JobDefinition } from '../core/definition.js';
import { parseCheckpointConfig, parseRuntimeLimits, type CheckpointConfig, type RuntimeLimits } from '../core/config.js';
import { Topology } from '../core/topology.js';
import { createAwsStores, type AwsStores } from '../aws/index.js';

/**
 * What the deployed handlers read from their environment (set by the CDK stack):
 *
 * | variable | meaning |
 * | --- | --- |
 * | `CAIRN_TABLE` | the job's DynamoDB table (single-table layout) |
 * | `CAIRN_BUCKET` | S3 bucket for spilled values |
 * | `CAIRN_QUEUE_URLS` | JSON object: vertex id -> URL of its FIFO queue (every vertex of the job) |
 * | `CAIRN_CHECKPOINT` | optional JSON checkpoint config, merged over the job definition's own |
 * | `CAIRN_LIMITS` | optional JSON runtime limits (batch size, visibility timeout, ...) |
 * | `CAIRN_SINK_TABLE` | optional table of the idempotent sink (default: the job table) |
 * | `CAIRN_DEAD_LETTER_QUEUES` | dead-letter function: JSON object, `ingress` or vertex id -> ARN of its dead-letter queue |
 * | `CAIRN_COORDINATOR_ARN` | ingest, dead-letter and coordinator functions: ARN of the checkpoint state machine they wake |
 * | `CAIRN_OUTPUT_RETENTION_SECONDS` | coordinator function, optional: published sink batches expire (TTL) this long after publication |
 * | `AWS_ENDPOINT_URL` | optional single endpoint (local cloud, LocalStack) |
 *
 * Built once per execution environment (cold start) and reused by every invocation.
 */

export interface HandlerEnvironment {
  readonly topology: Topology;
  readonly config: CheckpointConfig;
  readonly limits: RuntimeLimits;
  readonly stores: AwsStores & { transport: NonNullable<AwsStores['transport']> };
}

export class HandlerConfigError extends Error {
  override readonly name = 'HandlerConfigError';
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (value === undefined || value === '') throw new HandlerConfigError(`environment variable ${name} is not set`);
  return value;
}

function json<T>(env: NodeJS.ProcessEnv, name: string): T | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch (error) {
    throw new HandlerConfigError(`environment variable ${name} is not valid JSON: ${(error as Error).message}`);
  }
}

/** The handlers' wiring for `definition` (the job is bundled into the function; the environment says where its resources are). */
export async function environmentFrom(definition: JobDefinition, env: NodeJS.ProcessEnv = process.env): Promise<HandlerEnvironment> {
  const queueUrls = json<Record<string, string>>(env, 'CAIRN_QUEUE_URLS');
  if (!queueUrls || typeof queueUrls !== 'object') throw new HandlerConfigError('environment variable CAIRN_QUEUE_URLS must be a JSON object of vertex id -> queue URL');
  const topology = new Topology(definition.build());
  const missing = topology.vertices.map((v) => v.id).filter((id) => typeof queueUrls[id] !== 'string');
  if (missing.length > 0) throw new HandlerConfigError(`CAIRN_QUEUE_URLS has no queue for ${missing.join(', ')}`);
  const config = parseCheckpointConfig({ ...definition.checkpoint, ...json<object>(env, 'CAIRN_CHECKPOINT') });
  const limits = parseRuntimeLimits(json<object>(env, 'CAIRN_LIMITS') ?? {});
  const endpoint = env.AWS_ENDPOINT_URL;
  const stores = await createAwsStores({
    tableName: required(env, 'CAIRN_TABLE'),
    bucket: required(env, 'CAIRN_BUCKET'),
    queueUrls,
    ...(endpoint ? { endpoint } : {}),
    ...(env.CAIRN_SINK_TABLE ? { sinkTable: env.CAIRN_SINK_TABLE } : {}),
  });
  if (!stores.transport) throw new HandlerConfigError('no queue transport');
  return { topology, config, limits, stores: stores as HandlerEnvironment['stores'] };
}

export interface DeadLetterEnvironment {
  /** Dead-letter queue name -> `ingress` or the vertex whose queue redrives to it (createDeadLetterHandler's `queues`). */
  readonly queues: Readonly<Record<string, string>>;
  readonly checkpointStateMachineArn: string;
}

/** The dead-letter function's own variables (CAIRN_DEAD_LETTER_QUEUES, CAIRN_COORDINATOR_ARN). */
export function deadLetterEnvFrom(env: NodeJS.ProcessEnv = process.env): DeadLetterEnvironment {
  const arns = json<Record<string, unknown>>(env, 'CAIRN_DEAD_LETTER_QUEUES');
  if (!arns || typeof arns !== 'object' || Array.isArray(arns))
    throw new HandlerConfigError('environment variable CAIRN_DEAD_LETTER_QUEUES must be a JSON object of queue (ingress or vertex id) -> dead-letter queue ARN');
  const queues: Record<string, string> = {};
  for (const [queue, arn] of Object.entries(arns)) {
    const name = typeof arn === 'string' ? arn.slice(arn.lastIndexOf(':') + 1) : '';
    if (name === '') throw new HandlerConfigError(`CAIRN_DEAD_LETTER_QUEUES: '${queue}' has no queue ARN (${JSON.stringify(arn)})`);
    queues[name] = queue;
  }
  return { queues, checkpointStateMachineArn: required(env, 'CAIRN_COORDINATOR_ARN') };
}

/** Memoizes an async initializer; a failed one is retried at the next call. */
export function once<T>(init: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= init().catch((error: unknown) => {
      pending = undefined;
      throw error;
    });
    return pending;
  };
}
