import { CloudFormationClient, CreateStackCommand } from '@aws-sdk/client-cloudformation';
import { CreateRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { CreateEventSourceMappingCommand, CreateFunctionCommand, GetEventSourceMappingCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { CreateScheduleCommand, GetScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { DescribeExecutionCommand, ListExecutionsCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wordCount } from '../../examples/word-count.js';
import type { STACK_OUTPUTS } from '../../shared/aws/ops/job-resources.js';
import {
  destroyCommand,
  pauseCommand,
  remoteCheckpointsCommand,
  remoteDeadLettersCommand,
  remoteOutputCommand,
  remoteTriggerCommand,
  resumeCommand,
  rollbackCommand,
  statusCommand,
} from '../../shared/cli/operate.js';
import { CheckpointNotFoundError, JobNotControllableError } from '../../shared/core/errors.js';
import { historyMark } from '../until.js';
import { acknowledge, credentials, deploy, drainOperators, finished, until, type Deployed } from './moto-deploy.js';

/**
 * `cairn status | checkpoints | trigger | pause | resume | rollback --stack <name>` against a
 * "deployed" word-count job: a CloudFormation stack on moto whose outputs are the synthesized
 * CairnJob's output keys, pointing at the job table and queues on the local cloud, the two
 * workflows created from `cdk synth` and executed by moto, and the Lambda event source
 * mappings and the EventBridge schedule on moto (which stores their state; it does not run them).
 */

const region = 'us-east-1';

interface Fixture {
  readonly d: Deployed;
  readonly stack: string;
  readonly mappings: string[];
  readonly scheduleName: string;
  readonly lambda: LambdaClient;
  readonly scheduler: SchedulerClient;
}

async function createStackOnMoto(d: Deployed): Promise<Fixture> {
  const direct = { endpoint: d.motoEndpoint, region, credentials };
  const viaEdge = { endpoint: d.endpoint, region, credentials };
  // The job's ingress queue and dead-letter queues, on the local cloud's SQS.
  const sqs = new SQSClient(viaEdge);
  const queue = async (name: string, fifo: boolean): Promise<string> =>
    (await sqs.send(new CreateQueueCommand({ QueueName: `ops-${d.suffix}-${name}${fifo ? '.fifo' : ''}`, Attributes: fifo ? { FifoQueue: 'true' } : {} }))).QueueUrl as string;
  const ingress = await queue('ingress', false);
  const dlqs = { ingress: await queue('ingress-dlq', false), lines: await queue('lines-dlq', true), count: await queue('count-dlq', true) };

  // Functions and their SQS event source mappings on moto (its own SQS backend holds the mapped queues).
  const lambda = new LambdaClient(direct);
  const role = (await new IAMClient(direct).send(new CreateRoleCommand({ RoleName: `ops-${d.suffix}`, AssumeRolePolicyDocument: '{}' }))).Role?.Arn as string;
  const motoSqs = new SQSClient(direct);
  const mappings: string[] = [];
  for (const fn of ['ingest', 'lines', 'count']) {
    await lambda.send(new CreateFunctionCommand({ FunctionName: `ops-${d.suffix}-${fn}`, Runtime: 'nodejs22.x', Role: role, Handler: 'index.handler', Code: { ZipFile: Buffer.from('code') } }));
    const url = (await motoSqs.send(new CreateQueueCommand({ QueueName: `ops-${d.suffix}-${fn}-mapped` }))).QueueUrl as string;
    const arn = (await motoSqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn as string;
    mappings.push((await lambda.send(new CreateEventSourceMappingCommand({ FunctionName: `ops-${d.suffix}-${fn}`, EventSourceArn: arn, BatchSize: 10 }))).UUID as string);
  }
  const scheduler = new SchedulerClient(viaEdge);
  const scheduleName = `ops-${d.suffix}-schedule`;
  await scheduler.send(
    new CreateScheduleCommand({
      Name: scheduleName,
      ScheduleExpression: 'rate(5 minutes)',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: { Arn: d.checkpointsArn, RoleArn: role, Input: '{}' },
    }),
  );

  const values: Record<keyof typeof STACK_OUTPUTS, string> = {
    JobName: 'word-count',
    IngressQueueUrl: ingress,
    JobTableName: d.table,
    StateBucketName: d.bucket,
    CheckpointStateMachineArn: d.checkpointsArn,
    RecoveryStateMachineArn: d.recoveryArn,
    OperatorQueueUrls: JSON.stringify(d.queueUrls),
    DeadLetterQueueUrls: JSON.stringify(dlqs),
    EventSourceMappingIds: mappings.join(','),
    ScheduleName: scheduleName,
  };
  // The stack outputs the ops read are exactly those the synthesized CairnJob writes (this
  // one was synthesized without a schedule: ScheduleName is checked in stack.test.ts).
  expect(d.outputKeys.sort()).toEqual(
    Object.keys(values)
      .filter((k) => k !== 'ScheduleName')
      .map((k) => `Job${k}`)
      .sort(),
  );
  const template = {
    Resources: { Placeholder: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
    Outputs: Object.fromEntries(Object.entries(values).map(([k, v]) => [`Job${k}`, { Value: v }])),
  };
  const stack = `Cairn-ops-${d.suffix}`;
  await new CloudFormationClient(viaEdge).send(new CreateStackCommand({ StackName: stack, TemplateBody: JSON.stringify(template) }));
  return { d, stack, mappings, scheduleName, lambda, scheduler };
}

function capture(): { lines: string[]; print: (line?: string) => void } {
  const lines: string[] = [];
  return { lines, print: (line = '') => void lines.push(line) };
}

describe('operating a deployed job: cairn status | checkpoints | trigger | pause | resume | rollback --stack', () => {
  let f: Fixture;
  let opts: { stack: string; endpoint: string; region: string };

  beforeAll(async () => {
    const d = await deploy('ops', { trigger: 'manual', timeoutMs: 60_000, retained: 2 });
    f = await createStackOnMoto(d);
    opts = { stack: f.stack, endpoint: d.endpoint, region };
  });
  afterAll(async () => {
    f.d.stores.destroy();
    f.d.runtime.stores.destroy();
    await f.d.lambda.close();
  });

  const mappingStates = async (): Promise<string[]> => Promise.all(f.mappings.map(async (UUID) => (await f.lambda.send(new GetEventSourceMappingCommand({ UUID }))).State as string));
  const scheduleState = async (): Promise<string | undefined> => (await f.scheduler.send(new GetScheduleCommand({ Name: f.scheduleName }))).State;

  it('status reads the stack outputs and reports the job, the queues, the mappings and the schedule; a job that has not started refuses a trigger', async () => {
    const out = capture();
    expect(await statusCommand('word-count', opts, out.print)).toBe(0);
    expect(out.lines[0]).toBe(`word-count (table ${f.d.table} at ${opts.endpoint})`);
    expect(out.lines[1]).toBe('job: not started yet (no job record)');
    expect(out.lines).toContain('dead letters: 0 kept');
    expect(out.lines).toContain('event source mappings: 3 Enabled');
    expect(out.lines).toContain(`schedule ${f.scheduleName}: ENABLED (rate(5 minutes))`);
    const queueTable = out.lines.find((l) => l.startsWith('queue'));
    expect(
      queueTable
        ?.split('\n')
        .slice(2)
        .map((row) => row.split(/\s{2,}/).slice(0, 2)),
    ).toEqual([
      ['ingress', 'ingress'],
      ['lines', 'operator'],
      ['count', 'operator'],
      ['ingress', 'dead-letter'],
      ['lines', 'dead-letter'],
      ['count', 'dead-letter'],
    ]);
    await expect(statusCommand('account-balance', opts, out.print)).rejects.toThrow(`stack ${f.stack} runs job 'word-count', not 'account-balance'`);
    await expect(statusCommand('word-count', { ...opts, stack: 'Cairn-missing' }, out.print)).rejects.toThrow(/^stack Cairn-missing not found: /);
    await expect(remoteTriggerCommand('word-count', { ...opts, wait: 0 }, out.print)).rejects.toThrow(new JobNotControllableError('the job has not started yet (no job record)'));
  });

  it('trigger stores the request, starts the checkpoint workflow, and waits until the checkpoint completes', async () => {
    const { d } = f;
    const first = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, name: 'first-round', input: '{}' }));
    expect(await finished(d, first.executionArn as string)).toBe('SUCCEEDED'); // creates the job
    await d.stores.sourceLog.append(0, [{ id: 'e1', event: { line: 'pause resume pause' } }]);
    await drainOperators(d);
    for (const id of [1, 2]) {
      const out = capture();
      const cli = remoteTriggerCommand('word-count', { ...opts, wait: 60 }, out.print);
      await acknowledge(d, id);
      expect(await cli).toBe(0);
      expect(out.lines).toEqual([expect.stringMatching(new RegExp(`^checkpoint ${id} COMPLETED in \\d.* \\(manual\\)$`))]);
      if (id === 1) {
        await d.stores.sourceLog.append(0, [{ id: 'e2', event: { line: 'rollback pause' } }]);
        await d.runtime.stores.transport?.send([{ queue: 'lines', groupId: 'lines#0', dedupId: 'ops:poll:e2', body: { type: 'poll', gen: 1, to: 'lines#0' } }]);
        await drainOperators(d);
      }
    }
    // An execution the trigger started that gets to run only after the request was served (a
    // looping coordinator held the lease and served it) triggers nothing: run its input again.
    const { executions = [] } = await d.sfn.send(new ListExecutionsCommand({ stateMachineArn: d.checkpointsArn }));
    const woken = executions.filter((e) => e.name?.startsWith('cairn-trigger-'));
    expect(woken.length).toBe(2);
    const { input } = await d.sfn.send(new DescribeExecutionCommand({ executionArn: woken[0]?.executionArn }));
    const lagging = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, name: 'lagging-trigger', input }));
    const laggingArn = lagging.executionArn as string;
    const served = await until(
      'the lagging execution to end, or a checkpoint it triggered',
      async () => {
        if ((await d.stores.checkpoints.listCheckpoints()).length > 2) return 'another checkpoint';
        const { status } = await d.sfn.send(new DescribeExecutionCommand({ executionArn: laggingArn }));
        return status === 'RUNNING' ? undefined : status;
      },
      { stallMs: 60_000, progress: () => historyMark(d.sfn, laggingArn) },
    );
    expect(served).toBe('SUCCEEDED');
    const out = capture();
    expect(await remoteCheckpointsCommand('word-count', opts, out.print)).toBe(0);
    const rows = out.lines
      .join('\n')
      .split('\n')
      .filter((l) => /^\s*\d+\s/.test(l));
    expect(
      rows.map((r) =>
        r
          .trim()
          .split(/\s{2,}/)
          .slice(0, 4),
      ),
    ).toEqual([
      ['1', 'manual', 'COMPLETED', 'retained'],
      ['2', 'manual', 'COMPLETED', 'retained'],
    ]);
    expect(out.lines.at(-1)).toBe('retained (restorable with `cairn rollback word-count --to <id>`): 1, 2');
  });

  it("pause disables the event source mappings and the schedule and stops triggers; resume turns them back on and starts the schedule's execution", async () => {
    const { d } = f;
    const out = capture();
    expect(await pauseCommand('word-count', { ...opts, drain: 5 }, out.print)).toBe(0);
    expect(out.lines).toEqual([
      'paused word-count: no new checkpoints; 3 event source mappings disabled, schedule disabled. Events pushed meanwhile wait in the ingress queue. Resume with `cairn resume`.',
    ]);
    expect(await mappingStates()).toEqual(['Disabled', 'Disabled', 'Disabled']);
    expect(await scheduleState()).toBe('DISABLED');
    expect(await d.stores.checkpoints.getJob()).toMatchObject({ paused: true, status: 'RUNNING' });
    const status = capture();
    await statusCommand('word-count', opts, status.print);
    expect(status.lines[1]).toMatch(/^job: RUNNING, PAUSED · generation 1 · last completed checkpoint 2 · /);
    expect(status.lines).toContain('event source mappings: 3 Disabled');
    await expect(remoteTriggerCommand('word-count', { ...opts, wait: 0 }, out.print)).rejects.toThrow(new JobNotControllableError('cannot trigger a checkpoint: the job is paused (resume it first)'));

    const resumed = capture();
    expect(await resumeCommand('word-count', opts, resumed.print)).toBe(0);
    expect(resumed.lines).toEqual(['resumed word-count: 3 event source mappings enabled, schedule enabled, coordinator execution started']);
    expect(await mappingStates()).toEqual(['Enabled', 'Enabled', 'Enabled']);
    expect(await scheduleState()).toBe('ENABLED');
    expect((await d.stores.checkpoints.getJob())?.paused).toBe(false);
    const { executions = [] } = await d.sfn.send(new ListExecutionsCommand({ stateMachineArn: d.checkpointsArn }));
    const resumeExecution = executions.find((e) => e.name?.startsWith('cairn-resume-'));
    expect(resumeExecution).toBeDefined();
    const described = await d.sfn.send(new DescribeExecutionCommand({ executionArn: resumeExecution?.executionArn }));
    expect(JSON.parse(described.input ?? '')).toEqual({});
    // Nothing to do after the resume (no new input, manual checkpoints): the coordinator sleeps.
    expect(await finished(d, resumeExecution?.executionArn as string)).toBe('SUCCEEDED');
  });

  it('rollback --to 1 runs the recovery workflow to exactly checkpoint 1; after the replay the sink equals the oracle', async () => {
    const { d } = f;
    const refused = capture();
    await expect(rollbackCommand('word-count', { ...opts, to: 7 }, refused.print)).rejects.toThrow(new CheckpointNotFoundError('checkpoint 7 is not a retained completed checkpoint (retained: 1, 2)'));

    const out = capture();
    expect(await rollbackCommand('word-count', { ...opts, to: 1, wait: 60 }, out.print)).toBe(0);
    expect(out.lines).toEqual(["rolled back to checkpoint 1: generation 2, replaying from the checkpoint's source offsets"]);
    const job = await d.stores.checkpoints.getJob();
    expect(job).toMatchObject({ status: 'RUNNING', generation: 2, lastCompletedId: 1, retainedCheckpoints: [1] });
    expect(job?.restarts).toEqual([expect.objectContaining({ toCheckpoint: 1, reason: 'rollback to checkpoint 1 requested by the operator' })]);
    expect(job?.requests).toBeUndefined();
    expect(await d.stores.checkpoints.getCheckpoint(2)).toMatchObject({ status: 'ABORTED', abortReason: 'discarded by restore to 1' });

    // Replay from checkpoint 1's offsets, then a checkpoint through the workflow.
    await drainOperators(d);
    const cli = remoteTriggerCommand('word-count', { ...opts, wait: 60 }, capture().print);
    await acknowledge(d, 3);
    expect(await cli).toBe(0);
    await until('the sink to commit checkpoint 3', async () => ((await d.stores.checkpoints.getJob())?.sinksCommittedThrough === 3 ? true : undefined));
    expect(wordCount.canonical(await d.stores.sinks.read('counts'))).toEqual(wordCount.oracle([{ line: 'pause resume pause' }, { line: 'rollback pause' }]));

    // `cairn output | dead-letters --stack`: from the deployed job's table.
    const output = capture();
    expect(await remoteOutputCommand('word-count', opts, output.print)).toBe(0);
    expect(output.lines[0]).toBe(`# sink counts: ${wordCount.oracle([{ line: 'pause resume pause' }, { line: 'rollback pause' }]).length} committed records`);
    expect(wordCount.canonical(output.lines.slice(1).map((l) => JSON.parse(l) as unknown))).toEqual(wordCount.oracle([{ line: 'pause resume pause' }, { line: 'rollback pause' }]));
    const letters = capture();
    expect(await remoteDeadLettersCommand('word-count', { ...opts, json: true }, letters.print)).toBe(0);
    expect(JSON.parse(letters.lines[0] ?? '')).toEqual({ deadLetters: [], redriven: [] });
    await expect(destroyCommand('word-count', opts, capture().print)).rejects.toThrow(`a deployed stack is removed with \`npx cdk destroy ${f.stack}\` (its table and bucket are retained by default)`);
  });
});
