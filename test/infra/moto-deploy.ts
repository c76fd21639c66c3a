import { randomUUID } from 'node:crypto';
import { CreateStateMachineCommand, GetExecutionHistoryCommand, SFNClient } from '@aws-sdk/client-sfn';
import { ChangeMessageVisibilityBatchCommand, DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { expect, inject } from 'vitest';
import { wordCount } from '../../examples/word-count.js';
import { createCoordinatorHandler, createCoordinatorRuntime, type CoordinatorEnv, type CoordinatorEvent, type CoordinatorRuntime } from '../../shared/lambda/coordinator-handler.js';
import type { RunOptions } from '../../shared/lambda/coordinator-tasks.js';
import { createAwsStores, ensureBucket, ensureFifoQueues, ensureJobTable, type AwsStores } from '../../shared/aws/index.js';
import { parseCheckpointConfig, parseRuntimeLimits, type CheckpointConfigInput } from '../../shared/core/config.js';
import { handleOperatorBatch } from '../../shared/core/instance/handler.js';
import type { StepFaults } from '../../shared/core/instance/step.js';
import type { InstanceMessage } from '../../shared/core/messages.js';
import { Topology } from '../../shared/core/topology.js';
import { definitionOf, synthStack } from './helpers.js';
import { HEALTH_PATH } from '../../shared/aws/local-cloud/edge-router.js';
import { startLambdaInvokeServer, type LambdaInvokeServer } from '../../shared/aws/runner/lambda-invoke-server.js';
import { functionArn, resolveDefinition } from './sfn-definition.js';
import { executionEnded, until } from '../until.js';

/**
 * The word-count job "deployed" on the local cloud for moto's Step Functions interpreter: job
 * table, bucket and FIFO queues on the local cloud, both workflows created from the `cdk synth`
 * output, their Lambda tasks reaching the real coordinator handler in this process through the
 * local runner's Lambda Invoke server, registered with the edge (moto's own SDK calls go to the
 * edge: MOTO_PORT).
 */

export const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
process.env.AWS_ACCESS_KEY_ID ??= credentials.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY ??= credentials.secretAccessKey;
process.env.AWS_REGION ??= 'us-east-1';

export interface Deployed {
  /** The local cloud's edge. */
  readonly endpoint: string;
  /** moto itself, past the edge (its own SQS backend, which Lambda event source mappings check). */
  readonly motoEndpoint: string;
  /** Serves the coordinator function's Invoke API. */
  readonly lambda: LambdaInvokeServer;
  readonly sfn: SFNClient;
  readonly stores: AwsStores;
  readonly runtime: CoordinatorRuntime;
  readonly checkpointsArn: string;
  readonly recoveryArn: string;
  readonly queueUrls: Record<string, string>;
  readonly checkpoint: CheckpointConfigInput;
  readonly table: string;
  readonly bucket: string;
  /** Unique per deployment: prefix of the names of anything else a test creates. */
  readonly suffix: string;
  /** Output keys of the synthesized stack. */
  readonly outputKeys: string[];
}

export interface DeployOptions {
  /** The Run task's options (default: short waits in the invocation, acknowledgements read every 200 ms). */
  readonly run?: Partial<RunOptions>;
  /** Where the workflows are created and executions started (default: the local cloud's edge; an edge with other rules). */
  readonly sfnEndpoint?: string;
  /** The coordinator starts executions itself (successors, wake-ups), as deployed (CAIRN_COORDINATOR_ARN). Default false. */
  readonly wake?: boolean;
  /**
   * A coordinator invocation that dies: asked before the handler runs (it never ran) and after
   * (it ran, its answer is lost); true makes the function fail (Unhandled) there.
   */
  readonly coordinatorFault?: (event: CoordinatorEvent, phase: 'before' | 'after') => boolean;
}

/** The error a coordinator invocation dies with under DeployOptions.coordinatorFault. */
export class InjectedCoordinatorDeath extends Error {
  override readonly name = 'InjectedCoordinatorDeath';
}

export async function deploy(name: string, checkpoint: CheckpointConfigInput, options: DeployOptions = {}): Promise<Deployed> {
  const cloud = (inject as (key: string) => unknown)('cloudEndpoint') as string;
  const suffix = randomUUID().slice(0, 8);
  const table = `sfn-${name}-${suffix}`;
  const bucket = `sfn-${name}-${suffix}`;
  const fnName = `cairn-coordinator-${suffix}`;
  const wired: { handlers?: ReturnType<typeof createCoordinatorHandler> } = {};
  const lambda = await startLambdaInvokeServer(cloud, {
    [fnName]: async (payload) => {
      if (!wired.handlers) throw new Error(`${fnName} is not wired yet`);
      const event = payload as CoordinatorEvent;
      if (options.coordinatorFault?.(event, 'before')) throw new InjectedCoordinatorDeath(`died before ${JSON.stringify(event).slice(0, 80)}`);
      const result = await wired.handlers.handler(event);
      if (options.coordinatorFault?.(event, 'after')) throw new InjectedCoordinatorDeath(`died after ${JSON.stringify(event).slice(0, 80)}`);
      return result;
    },
  });
  const health = (await (await fetch(`${cloud}${HEALTH_PATH}`)).json()) as { backends: { moto?: { host: string; port: number } } };
  if (!health.backends.moto) throw new Error('the local cloud has no moto');
  const motoEndpoint = `http://${health.backends.moto.host}:${health.backends.moto.port}`;
  const stores = await createAwsStores({ tableName: table, bucket, endpoint: cloud, credentials, region: 'us-east-1' });
  await ensureJobTable(stores.clients.dynamo, table);
  await ensureBucket(stores.clients.s3, bucket);
  const topology = new Topology(wordCount.build());
  const queueUrls = await ensureFifoQueues(
    stores.clients.sqs,
    topology.vertices.map((v) => v.id),
    `sfn-${suffix}-`,
  );
  // The Run task's loop in this process: short waits in the invocation, acknowledgements read every 200 ms.
  const run = { budgetMs: 30_000, maxInvocationWaitMs: 2_000, ackPollMs: 200, ...options.run };
  const checkpointsName = `${name}-${suffix}-checkpoints`;
  const env: CoordinatorEnv = {
    table,
    bucket,
    queueUrls,
    checkpoint,
    restartStrategy: { kind: 'fixed-delay', attempts: 3, delaySeconds: 0 },
    run,
    endpoint: cloud,
    region: 'us-east-1',
    ...(options.wake ? { coordinatorArn: `arn:aws:states:us-east-1:123456789012:stateMachine:${checkpointsName}` } : {}),
  };
  const runtime = await createCoordinatorRuntime(wordCount, env);
  wired.handlers = createCoordinatorHandler(() => Promise.resolve(runtime));

  // Synthesize with the same checkpoint config; create both workflows from the template.
  const { stack, template } = synthStack({ job: 'word-count', checkpoint, disableSchedule: true }, `Cairn-sfn-${name}`);
  const fnId = stack.getLogicalId(stack.job.coordinatorFunction.node.defaultChild as never);
  const recoveryId = stack.getLogicalId(stack.job.coordinator.recoveryStateMachine.node.defaultChild as never);
  const checkpointsId = stack.getLogicalId(stack.job.coordinator.checkpointStateMachine.node.defaultChild as never);
  const synthesized = template.toJSON() as { Resources: Record<string, { Properties: Record<string, unknown> }>; Outputs?: Record<string, unknown> };
  const resources = synthesized.Resources;
  const sfn = new SFNClient({ endpoint: options.sfnEndpoint ?? cloud, credentials, region: 'us-east-1' });
  const refs: Record<string, string> = { [fnId]: functionArn(fnName) };
  const create = async (id: string, smName: string): Promise<string> => {
    const props = resources[id]?.Properties ?? {};
    const definition = resolveDefinition(props.DefinitionString, refs);
    definitionOf({ DefinitionString: definition }); // parses
    const out = await sfn.send(new CreateStateMachineCommand({ name: smName, definition, roleArn: 'arn:aws:iam::123456789012:role/cairn-sfn', type: 'STANDARD' }));
    if (!out.stateMachineArn) throw new Error('no state machine ARN');
    return out.stateMachineArn;
  };
  refs[recoveryId] = await create(recoveryId, `${name}-${suffix}-recovery`);
  const checkpointsArn = await create(checkpointsId, checkpointsName);
  return {
    endpoint: cloud,
    motoEndpoint,
    lambda,
    sfn,
    stores,
    runtime,
    checkpointsArn,
    recoveryArn: refs[recoveryId],
    queueUrls,
    checkpoint,
    table,
    bucket,
    suffix,
    outputKeys: Object.keys(synthesized.Outputs ?? {}),
  };
}

/**
 * The operators of a deployed stack run (the SQS event source mappings, played) while the
 * coordinator loop in the Run task waits for checkpoint `id`'s acknowledgements, until it is
 * no longer pending.
 */
export async function acknowledge(d: Deployed, id: number, faults?: OperatorFaults): Promise<void> {
  let drained = 0;
  await until(
    `checkpoint ${id} to finish`,
    async () => {
      drained += await drainOperators(d, faults);
      const checkpoint = await d.stores.checkpoints.getCheckpoint(id);
      return checkpoint && checkpoint.status !== 'PENDING' ? checkpoint.status : undefined;
    },
    { progress: () => Promise.resolve(drained) },
  );
}

/**
 * Faults of the operators' side: step hooks that throw (a crash before the commit, or between
 * the commit and the send), and `duplicate`, asked per batch, to deliver it twice. A failed
 * message becomes visible again at once (its visibility timeout played as passed).
 */
export interface OperatorFaults {
  readonly step?: StepFaults;
  readonly duplicate?: () => boolean;
}

/** Plays the SQS event source mappings: receive, one atomic step per instance, delete what succeeded. */
export async function drainOperators(d: Deployed, faults?: OperatorFaults): Promise<number> {
  const topology = new Topology(wordCount.build());
  const deps = {
    ...(faults?.step ? { faults: faults.step } : {}),
    topology,
    config: parseCheckpointConfig(d.checkpoint),
    limits: parseRuntimeLimits(),
    state: d.stores.stateStore,
    log: d.stores.sourceLog,
    transport: d.runtime.stores.transport as NonNullable<AwsStores['transport']>,
    clock: { now: () => Date.now() },
  };
  const sqs: SQSClient = d.stores.clients.sqs;
  let emptyRounds = 0;
  let steps = 0;
  for (let round = 0; round < 100 && emptyRounds < 2; round++) {
    let received = 0;
    for (const url of Object.values(d.queueUrls)) {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, MessageSystemAttributeNames: ['MessageGroupId', 'ApproximateReceiveCount'] }),
      );
      if (Messages.length === 0) continue;
      received += Messages.length;
      const batch = Messages.map((m) => ({
        id: m.MessageId as string,
        groupId: m.Attributes?.MessageGroupId as string,
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
        body: JSON.parse(m.Body as string) as InstanceMessage,
      }));
      const outcome = await handleOperatorBatch(deps, batch);
      if (!faults) expect(outcome.errors).toEqual([]);
      // SQS delivers a batch again that was processed (at-least-once): every step of it must be a duplicate now.
      if (faults?.duplicate?.()) await handleOperatorBatch(deps, batch);
      const done = Messages.filter((m) => !outcome.failedIds.includes(m.MessageId as string));
      const failed = Messages.filter((m) => outcome.failedIds.includes(m.MessageId as string));
      if (done.length > 0) await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle as string })) }));
      if (failed.length > 0) {
        await sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: url, Entries: failed.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle as string, VisibilityTimeout: 0 })) }));
      }
    }
    emptyRounds = received === 0 ? emptyRounds + 1 : 0;
    steps += received;
  }
  return steps;
}

export { until };

/** Waits until the execution ends; it fails only if its history stops growing for 60 s. */
export async function finished(d: Deployed, executionArn: string): Promise<string> {
  return (await executionEnded(d.sfn, executionArn, 60_000)).status ?? 'UNKNOWN';
}

export async function visitedStates(d: Deployed, executionArn: string): Promise<string[]> {
  const { events = [] } = await d.sfn.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }));
  return events.filter((e) => e.type?.endsWith('StateEntered')).map((e) => e.stateEnteredEventDetails?.name as string);
}
