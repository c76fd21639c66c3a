import { randomUUID } from 'node:crypto';
import { CreateStateMachineCommand, DescribeExecutionCommand, GetExecutionHistoryCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { wordCount } from '../../examples/word-count.js';
import { createCoordinatorHandler, createCoordinatorRuntime, type CoordinatorEnv, type CoordinatorEvent, type CoordinatorRuntime } from '../../functions/coordinator/handler.js';
import { createAwsStores, ensureBucket, ensureFifoQueues, ensureJobTable, type AwsStores } from '../../shared/aws/index.js';
import { parseCheckpointConfig, parseRuntimeLimits, type CheckpointConfigInput } from '../../shared/core/config.js';
import { handleOperatorBatch } from '../../shared/core/instance/handler.js';
import type { InstanceMessage } from '../../shared/core/messages.js';
import { Topology } from '../../shared/core/topology.js';
import { definitionOf, synthStack } from './helpers.js';
import { functionArn, resolveDefinition, startSfnHarness, type SfnHarness } from './sfn-harness.js';

/**
 * The synthesized checkpoint workflow, created with CreateStateMachine on moto and EXECUTED by
 * moto's interpreter: its Lambda tasks run the real coordinator handler, DynamoDB and SQS are
 * the local cloud's, the operators run in this process against the real FIFO queues.
 */

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
process.env.AWS_ACCESS_KEY_ID ??= credentials.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY ??= credentials.secretAccessKey;
process.env.AWS_REGION ??= 'us-east-1';

interface Deployed {
  readonly harness: SfnHarness;
  readonly sfn: SFNClient;
  readonly stores: AwsStores;
  readonly runtime: CoordinatorRuntime;
  readonly checkpointsArn: string;
  readonly recoveryArn: string;
  readonly queueUrls: Record<string, string>;
  readonly checkpoint: CheckpointConfigInput;
}

async function deploy(name: string, checkpoint: CheckpointConfigInput): Promise<Deployed> {
  const cloud = (inject as (key: string) => unknown)('cloudEndpoint') as string;
  const suffix = randomUUID().slice(0, 8);
  const table = `sfn-${name}-${suffix}`;
  const bucket = `sfn-${name}-${suffix}`;
  const fnName = `cairn-coordinator-${suffix}`;
  const wired: { handlers?: ReturnType<typeof createCoordinatorHandler> } = {};
  const harness = await startSfnHarness(cloud, async (functionName, payload) => {
    if (!functionName.includes(fnName) || !wired.handlers) throw new Error(`no function ${functionName}`);
    return wired.handlers.handler(payload as CoordinatorEvent);
  });
  const stores = await createAwsStores({ tableName: table, bucket, endpoint: harness.endpoint, credentials, region: 'us-east-1' });
  await ensureJobTable(stores.clients.dynamo, table);
  await ensureBucket(stores.clients.s3, bucket);
  const topology = new Topology(wordCount.build());
  const queueUrls = await ensureFifoQueues(stores.clients.sqs, topology.vertices.map((v) => v.id), `sfn-${suffix}-`);
  const env: CoordinatorEnv = { job: 'word-count', table, bucket, queueUrls, checkpoint, restartStrategy: { kind: 'fixed-delay', attempts: 3, delaySeconds: 0 }, endpoint: harness.endpoint, region: 'us-east-1' };
  const runtime = await createCoordinatorRuntime(env);
  wired.handlers = createCoordinatorHandler(() => Promise.resolve(runtime));

  // Synthesize with the same checkpoint config; create both workflows from the template.
  const { stack, template } = synthStack({ job: 'word-count', checkpoint, disableSchedule: true }, `Cairn-sfn-${name}`);
  const fnId = stack.getLogicalId(stack.job.coordinatorFunction.node.defaultChild as never);
  const recoveryId = stack.getLogicalId(stack.job.coordinator.recoveryStateMachine.node.defaultChild as never);
  const checkpointsId = stack.getLogicalId(stack.job.coordinator.checkpointStateMachine.node.defaultChild as never);
  const resources = (template.toJSON() as { Resources: Record<string, { Properties: Record<string, unknown> }> }).Resources;
  const sfn = new SFNClient({ endpoint: harness.endpoint, credentials, region: 'us-east-1' });
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
  const checkpointsArn = await create(checkpointsId, `${name}-${suffix}-checkpoints`);
  return { harness, sfn, stores, runtime, checkpointsArn, recoveryArn: refs[recoveryId], queueUrls, checkpoint };
}

/** Plays the SQS event source mappings: receive, one atomic step per instance, delete what succeeded. */
async function drainOperators(d: Deployed): Promise<void> {
  const topology = new Topology(wordCount.build());
  const deps = {
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
  for (let round = 0; round < 100 && emptyRounds < 2; round++) {
    let received = 0;
    for (const url of Object.values(d.queueUrls)) {
      const { Messages = [] } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, MessageSystemAttributeNames: ['MessageGroupId', 'ApproximateReceiveCount'] }));
      if (Messages.length === 0) continue;
      received += Messages.length;
      const batch = Messages.map((m) => ({
        id: m.MessageId as string,
        groupId: m.Attributes?.MessageGroupId as string,
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
        body: JSON.parse(m.Body as string) as InstanceMessage,
      }));
      const outcome = await handleOperatorBatch(deps, batch);
      expect(outcome.errors).toEqual([]);
      const done = Messages.filter((m) => !outcome.failedIds.includes(m.MessageId as string));
      if (done.length > 0) await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle as string })) }));
    }
    emptyRounds = received === 0 ? emptyRounds + 1 : 0;
  }
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function finished(d: Deployed, executionArn: string): Promise<string> {
  return until(
    'the execution to end',
    async () => {
      const { status } = await d.sfn.send(new DescribeExecutionCommand({ executionArn }));
      return status === 'RUNNING' ? undefined : status;
    },
    60_000,
  );
}

async function visitedStates(d: Deployed, executionArn: string): Promise<string[]> {
  const { events = [] } = await d.sfn.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }));
  return events.filter((e) => e.type?.endsWith('StateEntered')).map((e) => e.stateEnteredEventDetails?.name as string);
}

describe('the synthesized checkpoint workflow on moto', () => {
  const deployed: Deployed[] = [];
  let cpl: Deployed;
  let tmo: Deployed;
  let rec: Deployed;

  beforeAll(async () => {
    cpl = await deploy('cpl', { trigger: 'manual', timeoutMs: 60_000 });
    tmo = await deploy('tmo', { trigger: 'manual', timeoutMs: 3_000, tolerableFailures: 1 });
    rec = await deploy('rec', { trigger: 'manual', timeoutMs: 60_000 });
    deployed.push(cpl, tmo, rec);
  });
  afterAll(async () => {
    for (const d of deployed) {
      d.stores.destroy();
      d.runtime.stores.destroy();
      await d.harness.stop();
    }
  });

  it('a manual checkpoint completes through the task-token callback of the ack listener', async () => {
    const d = cpl;
    await d.stores.sourceLog.append(0, [{ id: 'e1', event: { line: 'barrier state barrier' } }]);
    const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, input: JSON.stringify({ manual: true, windowSeconds: 0 }) }));
    if (!executionArn) throw new Error('no execution');
    // AwaitAcks stored its task token on checkpoint 1.
    const token = await until('the task token on checkpoint 1', async () => ((await d.stores.checkpoints.getCheckpoint(1)) as { taskToken?: string } | undefined)?.taskToken);
    expect(token.length).toBeGreaterThan(0);
    expect((await d.sfn.send(new DescribeExecutionCommand({ executionArn }))).status).toBe('RUNNING');
    // The operators process the barriers and commit their acks ...
    await drainOperators(d);
    expect((await d.stores.checkpoints.listAcks(1)).length).toBe(4);
    // ... and the stream record of an ack item wakes the listener, which sends the token.
    const handlers = createCoordinatorHandler(() => Promise.resolve(d.runtime));
    expect(await handlers.ackListener({ Records: [{ eventName: 'INSERT', dynamodb: { Keys: { pk: { S: 'A#000000000001' } } } }] })).toEqual({ notified: [1] });
    expect(await finished(d, executionArn)).toBe('SUCCEEDED');
    expect((await d.stores.checkpoints.getCheckpoint(1))?.status).toBe('COMPLETED');
    const states = await visitedStates(d, executionArn);
    expect(states).toEqual(expect.arrayContaining(['Decide', 'Trigger', 'InjectBarriers', 'AwaitAcks', 'CompleteCheckpoint', 'CommitSinks', 'HandedOver']));
    expect((await d.stores.sinks.read('counts')).length).toBe(3);
  });

  it('a checkpoint without acknowledgements is aborted by the task-token timeout and counted', async () => {
    const d = tmo;
    const started = Date.now();
    const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, input: JSON.stringify({ manual: true, windowSeconds: 0 }) }));
    if (!executionArn) throw new Error('no execution');
    expect(await finished(d, executionArn)).toBe('SUCCEEDED');
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);
    expect(await d.stores.checkpoints.getCheckpoint(1)).toMatchObject({ status: 'ABORTED', abortReason: 'timed out after 3000 ms waiting for acknowledgements' });
    expect((await d.stores.checkpoints.getJob())?.consecutiveFailures).toBe(1);
    const states = await visitedStates(d, executionArn);
    expect(states).toEqual(expect.arrayContaining(['AwaitAcks', 'AbortTimedOut', 'HandedOver']));
  });

  // moto 5.2.5 cannot run the checkpoint workflow's nested `states:startExecution.sync:2`
  // (States.Runtime, KeyError 'Input'), so the recovery workflow is started directly here.
  it('the recovery workflow rolls every instance back into a new generation; the replay ends with the sink equal to the oracle', async () => {
    const d = rec;
    await d.stores.sourceLog.append(0, [{ id: 'r1', event: { line: 'replay replay' } }]);
    const first = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, input: JSON.stringify({ manual: true, windowSeconds: 0 }) }));
    await until('the task token on checkpoint 1', async () => ((await d.stores.checkpoints.getCheckpoint(1)) as { taskToken?: string } | undefined)?.taskToken);
    await drainOperators(d);
    await createCoordinatorHandler(() => Promise.resolve(d.runtime)).ackListener({ Records: [{ eventName: 'INSERT', dynamodb: { Keys: { pk: { S: 'A#000000000001' } } } }] });
    expect(await finished(d, first.executionArn as string)).toBe('SUCCEEDED');
    // Work past checkpoint 1 that no checkpoint covers yet: processed, staged, not committed.
    await d.stores.sourceLog.append(0, [{ id: 'r2', event: { line: 'barrier replay state' } }]);
    await d.runtime.stores.transport?.send([{ queue: 'lines', groupId: 'lines#0', dedupId: 'g1:poll:r2', body: { type: 'poll', gen: 1, to: 'lines#0' } }]);
    await drainOperators(d);
    expect(await d.stores.sinks.read('counts')).toHaveLength(2);

    const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.recoveryArn, input: JSON.stringify({ reason: 'restart requested by the test' }) }));
    if (!executionArn) throw new Error('no execution');
    expect(await finished(d, executionArn)).toBe('SUCCEEDED');
    const states = await visitedStates(d, executionArn);
    expect(states).toEqual(expect.arrayContaining(['PlanRestart', 'RestartDelay', 'BumpGeneration', 'PurgeQueues', 'RestoreOperators', 'RestoreInstances', 'Resume', 'Recovered']));
    const job = await d.stores.checkpoints.getJob();
    expect(job).toMatchObject({ status: 'RUNNING', generation: 2, lastCompletedId: 1 });
    expect(job?.restarts).toEqual([expect.objectContaining({ toCheckpoint: 1, reason: 'restart requested by the test' })]);
    for (const instance of new Topology(wordCount.build()).allInstances()) {
      expect((await d.stores.stateStore.loadInstance(instance))).toMatchObject({ generation: 2, lastBarrier: 1, epoch: 2 });
    }

    // Replay from checkpoint 1's source offsets, then checkpoint 2 through the workflow: the
    // sink holds exactly what one fault-free run over both lines gives.
    await drainOperators(d);
    const second = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, name: 'after-recovery', input: JSON.stringify({ manual: true, windowSeconds: 0 }) }));
    await until('the task token on checkpoint 2', async () => ((await d.stores.checkpoints.getCheckpoint(2)) as { taskToken?: string } | undefined)?.taskToken);
    await drainOperators(d);
    await createCoordinatorHandler(() => Promise.resolve(d.runtime)).ackListener({ Records: [{ eventName: 'INSERT', dynamodb: { Keys: { pk: { S: 'A#000000000002' } } } }] });
    expect(await finished(d, second.executionArn as string)).toBe('SUCCEEDED');
    expect((await d.stores.checkpoints.getCheckpoint(2))?.status).toBe('COMPLETED');
    const lines = [{ line: 'replay replay' }, { line: 'barrier replay state' }];
    expect(wordCount.canonical(await d.stores.sinks.read('counts'))).toEqual(wordCount.oracle(lines));
  });
});
