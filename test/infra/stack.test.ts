import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as iamLib from 'aws-cdk-lib/aws-iam';
import { CairnJob } from '../../infra/cairn-job.js';
import type { JobDefinition } from '../../shared/core/definition.js';
import { describe, expect, it } from 'vitest';
import { examples } from '../../examples/index.js';
import { jobResourcesFromOutputs, JobResourcesNotFoundError, STACK_OUTPUTS } from '../../shared/aws/ops/job-resources.js';
import { actionsOf, cdkContext, REPO_ROOT, resourcesOf, resourcesOfStatement, statementsOf, synthStack } from './helpers.js';
import { TTL_ATTRIBUTE } from '../../shared/aws/adapters/table-layout.js';

const { stack, template } = synthStack({ job: 'word-count' });
const spec = stack.job.spec;
const jobNames = (): string[] => Object.keys(examples);
const logicalId = (construct: { node: { defaultChild?: unknown } } | iam.IRole): string => stack.getLogicalId((construct as { node: { defaultChild: never } }).node.defaultChild);

describe('CairnJob: queues', () => {
  const queues = resourcesOf(template, 'AWS::SQS::Queue');
  const fifo = queues.filter(([, p]) => p.FifoQueue === true);

  it('has one FIFO queue and one FIFO dead-letter queue per vertex, plus the ingress queue and its DLQ', () => {
    expect(fifo).toHaveLength(spec.vertices.length * 2);
    expect(queues).toHaveLength(spec.vertices.length * 2 + 2);
  });

  it('redrives every consuming queue to its own dead-letter queue after maxReceiveCount receives', () => {
    const withRedrive = queues.filter(([, p]) => p.RedrivePolicy !== undefined);
    expect(withRedrive).toHaveLength(spec.vertices.length + 1);
    const dlqIds = new Set<string>();
    for (const [, p] of withRedrive) {
      const redrive = p.RedrivePolicy as { deadLetterTargetArn: { 'Fn::GetAtt': [string, string] }; maxReceiveCount: number };
      expect(redrive.maxReceiveCount).toBe(5);
      const [dlq, attr] = redrive.deadLetterTargetArn['Fn::GetAtt'];
      expect(attr).toBe('Arn');
      dlqIds.add(dlq);
      const target = queues.find(([id]) => id === dlq);
      expect(target, `dead-letter queue ${dlq}`).toBeDefined();
      // A FIFO queue's DLQ must be FIFO too.
      expect(target?.[1].FifoQueue).toBe(p.FifoQueue);
    }
    expect(dlqIds.size).toBe(withRedrive.length);
  });

  it('encrypts every queue and denies non-TLS access to it', () => {
    for (const [id, p] of queues) expect(p.SqsManagedSseEnabled ?? p.KmsMasterKeyId, id).toBeTruthy();
    const policies = resourcesOf(template, 'AWS::SQS::QueuePolicy');
    const covered = new Set(policies.flatMap(([, p]) => (p.Queues as Array<{ Ref: string }>).map((q) => q.Ref)));
    for (const [id] of queues) expect(covered.has(id), id).toBe(true);
    for (const [, p] of policies) {
      expect((p.PolicyDocument as { Statement: unknown[] }).Statement).toContainEqual(expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }));
    }
  });

  it('uses explicit deduplication ids and per-group throughput on the vertex queues', () => {
    const consuming = fifo.filter(([, p]) => p.RedrivePolicy !== undefined);
    for (const [, p] of consuming) {
      expect(p.ContentBasedDeduplication).toBe(false);
      expect(p.DeduplicationScope).toBe('messageGroup');
      expect(p.FifoThroughputLimit).toBe('perMessageGroupId');
      // Visibility timeout >= 6 x the function timeout (30 s).
      expect(p.VisibilityTimeout).toBe(180);
    }
  });

  it('outputs the ingress queue URL', () => {
    template.hasOutput('JobIngressQueueUrl', { Value: { Ref: logicalId(stack.job.ingressQueue) } });
  });
});

describe('CairnJob: outputs the operations CLI reads (cairn status|pause|... --stack)', () => {
  const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;

  it('writes every output under a fixed key (construct id + name), the schedule included', () => {
    expect(Object.keys(outputs).sort()).toEqual(
      Object.keys(STACK_OUTPUTS)
        .map((name) => `Job${name}`)
        .sort(),
    );
    expect(outputs.JobJobName?.Value).toBe('word-count');
    expect(outputs.JobScheduleName?.Value).toEqual({ Ref: logicalId(stack.job.schedule as never) });
  });

  it("lists every SQS event source mapping (ingest and one per vertex) for pause and resume, not the dead-letter queues' ones", () => {
    // SQS mappings have no StartingPosition (the ack listener's DynamoDB stream mapping has one).
    const deadLetter = { Ref: logicalId(stack.job.deadLetterFunction) };
    const mappings = resourcesOf(template, 'AWS::Lambda::EventSourceMapping').filter(([, p]) => p.StartingPosition === undefined && JSON.stringify(p.FunctionName) !== JSON.stringify(deadLetter));
    const joined = outputs.JobEventSourceMappingIds?.Value as { 'Fn::Join': [string, Array<{ Ref: string }>] };
    expect(joined['Fn::Join'][0]).toBe(',');
    expect(joined['Fn::Join'][1].map((r) => r.Ref).sort()).toEqual(mappings.map(([id]) => id).sort());
    expect(joined['Fn::Join'][1]).toHaveLength(spec.vertices.length + 1);
  });

  it('resolves into the job resources; a stack with several jobs needs the construct id, and missing outputs are named', () => {
    const values = {
      JobName: 'word-count',
      IngressQueueUrl: 'https://q/ingress',
      JobTableName: 't',
      StateBucketName: 'b',
      CheckpointStateMachineArn: 'arn:cp',
      RecoveryStateMachineArn: 'arn:rec',
      OperatorQueueUrls: '{"lines":"https://q/lines.fifo"}',
      DeadLetterQueueUrls: '{"ingress":"https://q/dlq"}',
      EventSourceMappingIds: 'u1,u2',
      ScheduleName: 's',
    };
    const one = Object.fromEntries(Object.entries(values).map(([k, v]) => [`Job${k}`, v]));
    expect(jobResourcesFromOutputs(one)).toEqual({
      jobName: 'word-count',
      tableName: 't',
      bucket: 'b',
      ingressQueueUrl: 'https://q/ingress',
      queueUrls: { lines: 'https://q/lines.fifo' },
      deadLetterQueueUrls: { ingress: 'https://q/dlq' },
      checkpointStateMachineArn: 'arn:cp',
      recoveryStateMachineArn: 'arn:rec',
      eventSourceMappingIds: ['u1', 'u2'],
      scheduleName: 's',
    });
    const two = { ...one, ...Object.fromEntries(Object.entries(values).map(([k, v]) => [`Balances${k}`, v])) };
    expect(() => jobResourcesFromOutputs(two)).toThrow(new JobResourcesNotFoundError('the stack holds several jobs (Job, Balances): name one with --job-id'));
    expect(jobResourcesFromOutputs(two, 'Balances').tableName).toBe('t');
    const { JobJobTableName: _table, ...incomplete } = one;
    expect(() => jobResourcesFromOutputs(incomplete)).toThrow(/stack outputs of job 'Job' are incomplete: .*tableName/s);
    expect(() => jobResourcesFromOutputs({ Other: 'x' })).toThrow(new JobResourcesNotFoundError('no Cairn job outputs (no *JobName output) among: Other'));
  });
});

describe('CairnJob: functions and event source mappings', () => {
  it('creates one Node.js 22 arm64 function per vertex, plus ingest, coordinator and dead-letter consumer', () => {
    const fns = resourcesOf(template, 'AWS::Lambda::Function');
    expect(fns).toHaveLength(spec.vertices.length + 3);
    for (const [, p] of fns) {
      expect(p.Runtime).toBe('nodejs22.x');
      expect(p.Architectures).toEqual(['arm64']);
    }
  });

  it('maps each vertex queue to its function with partial batch responses, batch size 10 and maxConcurrency from the parallelism (min 2)', () => {
    for (const vertex of spec.vertices) {
      const v = stack.job.vertices.get(vertex.id);
      if (!v) throw new Error(vertex.id);
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        FunctionName: { Ref: logicalId(v.fn) },
        EventSourceArn: { 'Fn::GetAtt': [logicalId(v.queue), 'Arn'] },
        BatchSize: 10,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        ScalingConfig: { MaximumConcurrency: Math.max(2, vertex.parallelism) },
      });
    }
    // The ingress (standard) batches up to 100 events for at most 1 s: fewer ingest invocations and larger log segments.
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(stack.job.ingestFunction) },
      EventSourceArn: { 'Fn::GetAtt': [logicalId(stack.job.ingressQueue), 'Arn'] },
      BatchSize: 100,
      MaximumBatchingWindowInSeconds: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('refuses ingest batching Lambda would refuse: a batch over 10,000, a window over 5 minutes, a batch over 10 without a window', () => {
    const make = (props: Partial<ConstructorParameters<typeof CairnJob>[2]>) => () =>
      new CairnJob(new Stack(new App(), 'Refused'), 'Job', { job: 'examples/word-count.ts', projectRoot: REPO_ROOT, ...props });
    expect(make({ ingestBatchSize: 10_001 })).toThrow('ingestBatchSize must be 1..10000 (SQS standard event source), got 10001');
    expect(make({ ingestBatchingWindow: Duration.minutes(6) })).toThrow('ingestBatchingWindow must be at most 5 minutes, got 360 s');
    expect(make({ ingestBatchSize: 50, ingestBatchingWindow: Duration.seconds(0) })).toThrow('ingestBatchingWindow must be at least 1 second when ingestBatchSize > 10');
  });

  it('has no table stream and no stream consumer: the coordinator loop reads the acknowledgements itself', () => {
    const [[, table] = ['', {}]] = resourcesOf(template, 'AWS::DynamoDB::Table');
    expect(table.StreamSpecification).toBeUndefined();
    for (const [, mapping] of resourcesOf(template, 'AWS::Lambda::EventSourceMapping')) expect(JSON.stringify(mapping.EventSourceArn)).not.toContain('StreamArn');
  });

  it('gives every function the job environment the handlers read (functions/lib/env.ts)', () => {
    for (const [, p] of resourcesOf(template, 'AWS::Lambda::Function')) {
      const vars = (p.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(Object.keys(vars)).toEqual(expect.arrayContaining(['CAIRN_JOB', 'CAIRN_TABLE', 'CAIRN_BUCKET', 'CAIRN_QUEUE_URLS', 'CAIRN_CHECKPOINT']));
      expect(vars.CAIRN_JOB).toBe('word-count');
    }
  });
});

describe('CairnJob: the dead-letter consumer', () => {
  const fn = stack.job.deadLetterFunction;
  const role = logicalId(fn.role as iam.IRole);
  const dlqs = [stack.job.ingressDlq, ...spec.vertices.map((v) => stack.job.vertices.get(v.id)?.dlq)];

  it('consumes every dead-letter queue (the standard ingress one, each FIFO operator one) with partial batch responses', () => {
    const mine = resourcesOf(template, 'AWS::Lambda::EventSourceMapping').filter(([, p]) => JSON.stringify(p.FunctionName) === JSON.stringify({ Ref: logicalId(fn) }));
    expect(mine.map(([, p]) => p.EventSourceArn)).toEqual(dlqs.map((q) => ({ 'Fn::GetAtt': [logicalId(q as never), 'Arn'] })));
    for (const [, p] of mine) {
      expect(p.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
      expect(p.BatchSize).toBe(10);
    }
    const queues = Object.fromEntries(resourcesOf(template, 'AWS::SQS::Queue'));
    expect(dlqs.map((q) => queues[logicalId(q as never)]?.FifoQueue)).toEqual([undefined, ...spec.vertices.map(() => true)]);
    // Lambda requires a source queue's visibility timeout to be at least the function's timeout.
    for (const q of dlqs) expect(queues[logicalId(q as never)]?.VisibilityTimeout).toBe(180);
  });

  it('runs the deadLetter handler of the job entry, told each DLQ ARN and the checkpoint state machine it wakes', () => {
    const props = template.findResources('AWS::Lambda::Function')[logicalId(fn)]?.Properties as { Handler: string; Timeout: number; Environment: { Variables: Record<string, unknown> } };
    expect(props.Handler).toBe('index.deadLetter');
    expect(props.Timeout).toBe(30);
    const vars = props.Environment.Variables;
    expect(JSON.stringify(vars.CAIRN_COORDINATOR_ARN)).toContain(`:stateMachine:${stack.stackName}-checkpoints`);
    const queues = JSON.stringify(vars.CAIRN_DEAD_LETTER_QUEUES);
    for (const [id, q] of [['ingress', stack.job.ingressDlq], ...spec.vertices.map((v) => [v.id, stack.job.vertices.get(v.id)?.dlq] as const)] as const) {
      expect(queues).toContain(`\\"${id}\\":\\"`);
      expect(queues).toContain(logicalId(q as never));
    }
  });

  it('may read and write the job record and dead letters, consume the DLQs and start the checkpoint state machine: nothing else', () => {
    const mine = statementsOf(template).filter((s) => s.roles.includes(role));
    const byAction = new Map<string, unknown[]>();
    for (const { statement } of mine) for (const a of actionsOf(statement)) byAction.set(a, [...(byAction.get(a) ?? []), ...resourcesOfStatement(statement)]);
    expect([...byAction.keys()].sort()).toEqual([
      'dynamodb:BatchWriteItem',
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'logs:CreateLogStream',
      'logs:PutLogEvents',
      's3:DeleteObject',
      's3:GetObject',
      's3:PutObject',
      'sqs:ChangeMessageVisibility',
      'sqs:DeleteMessage',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
      'sqs:ReceiveMessage',
      'states:StartExecution',
    ]);
    const dlqArns = dlqs.map((q) => ({ 'Fn::GetAtt': [logicalId(q as never), 'Arn'] }));
    const sorted = (arns: unknown[] | undefined): string[] => (arns ?? []).map((a) => JSON.stringify(a)).sort();
    expect(sorted(byAction.get('sqs:ReceiveMessage'))).toEqual(sorted(dlqArns));
    expect(sorted(byAction.get('sqs:DeleteMessage'))).toEqual(sorted(dlqArns));
    expect(byAction.get('dynamodb:PutItem')).toEqual([{ 'Fn::GetAtt': [logicalId(stack.job.table), 'Arn'] }]);
    const start = byAction.get('states:StartExecution') ?? [];
    expect(start).toHaveLength(1);
    expect(JSON.stringify(start[0])).toContain(`:stateMachine:${stack.stackName}-checkpoints`);
    // A formatted ARN, not a reference: no dependency on the state machine (which depends on the coordinator function).
    expect(JSON.stringify(start[0])).not.toContain(logicalId(stack.job.coordinator.checkpointStateMachine));
    expect(mine.some((s) => actionsOf(s.statement).includes('sqs:SendMessage'))).toBe(false);
  });

  it('is one of the three functions that may start (wake) the checkpoint state machine, with ingest and the coordinator', () => {
    const starters = statementsOf(template).filter((s) => actionsOf(s.statement).includes('states:StartExecution') && JSON.stringify(s.statement.Resource).includes(`${stack.stackName}-checkpoints`));
    const functionRoles = new Set(resourcesOf(template, 'AWS::Lambda::Function').map(([, p]) => JSON.stringify(p.Role)));
    const fromFunctions = starters.filter((s) => s.roles.some((r) => functionRoles.has(JSON.stringify({ 'Fn::GetAtt': [r, 'Arn'] }))));
    const others = [stack.job.ingestFunction, stack.job.coordinatorFunction].map((fn) => logicalId(fn.role as iam.IRole));
    expect(new Set(fromFunctions.flatMap((s) => s.roles))).toEqual(new Set([role, ...others]));
  });
});

describe('CairnJob: table and bucket', () => {
  it("has the adapters' single-table key schema, point-in-time recovery, encryption and TTL on the adapters' TTL attribute", () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
    });
  });

  it('blocks public access, encrypts, enforces TLS and expires pruned objects on the state bucket', () => {
    const id = logicalId(stack.job.bucket);
    const bucket = (template.toJSON() as { Resources: Record<string, { Properties: Record<string, unknown> }> }).Resources[id] as { Properties: Record<string, unknown> };
    expect(bucket.Properties.PublicAccessBlockConfiguration).toEqual({ BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
    expect(bucket.Properties.BucketEncryption).toBeDefined();
    expect(bucket.Properties.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(bucket.Properties.LifecycleConfiguration).toEqual({
      Rules: [expect.objectContaining({ Id: 'pruned-checkpoint-objects', Status: 'Enabled', NoncurrentVersionExpiration: { NoncurrentDays: 7 } })],
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: id },
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });
});

describe('CairnJob: least-privilege IAM', () => {
  const statements = statementsOf(template);

  it('has no wildcard actions anywhere', () => {
    expect(statements.length).toBeGreaterThan(10);
    for (const { policy, statement } of statements) {
      for (const action of actionsOf(statement)) expect(action, `${policy}: ${action}`).not.toMatch(/\*/);
    }
  });

  it('attaches no managed policies to the function roles', () => {
    for (const [id, p] of resourcesOf(template, 'AWS::IAM::Role')) {
      if (id.includes('Operator') || id.includes('Ingest') || id.includes('Coordinator') || id.includes('AckListener')) expect(p.ManagedPolicyArns, id).toBeUndefined();
    }
  });

  it("lets each operator send only to its own queue and its downstream vertices' queues", () => {
    for (const vertex of spec.vertices) {
      const v = stack.job.vertices.get(vertex.id);
      if (!v?.fn.role) throw new Error(vertex.id);
      const role = logicalId(v.fn.role);
      const send = statements.filter((s) => s.roles.includes(role) && actionsOf(s.statement).includes('sqs:SendMessage'));
      const targets = send.flatMap((s) => resourcesOfStatement(s.statement));
      const expected = [vertex.id, ...vertex.downstream].map((id) => ({ 'Fn::GetAtt': [logicalId(stack.job.vertices.get(id)?.queue as never), 'Arn'] }));
      expect(targets).toEqual(expect.arrayContaining(expected));
      expect(targets).toHaveLength(expected.length);
      // No Step Functions, no other table than the job's.
      const mine = statements.filter((s) => s.roles.includes(role));
      expect(mine.flatMap((s) => actionsOf(s.statement)).filter((a) => a.startsWith('states:'))).toEqual([]);
      for (const s of mine.filter((m) => actionsOf(m.statement).some((a) => a.startsWith('dynamodb:')))) {
        expect(resourcesOfStatement(s.statement)).toEqual([{ 'Fn::GetAtt': [logicalId(stack.job.table), 'Arn'] }]);
      }
    }
  });

  it('lets the coordinator and ingest start (wake) the checkpoint workflow, that one only; nobody sends task tokens', () => {
    expect(statements.filter((s) => actionsOf(s.statement).includes('states:SendTaskSuccess'))).toEqual([]);
    // Function roles (the checkpoint workflow's own role starts the recovery workflow).
    const fnRoles = new Set(resourcesOf(template, 'AWS::Lambda::Function').map(([, p]) => (p.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0]));
    const wakers = statements.filter((s) => actionsOf(s.statement).includes('states:StartExecution') && s.roles.some((r) => fnRoles.has(r)));
    const roles = new Set(wakers.flatMap((s) => s.roles));
    for (const fn of [stack.job.coordinatorFunction, stack.job.ingestFunction]) expect(roles).toContain(logicalId(fn.role as iam.IRole));
    for (const s of wakers) expect(JSON.stringify(s.statement.Resource)).toContain(`:stateMachine:${stack.stackName}-checkpoints`);
  });

  it('lets nobody purge a queue (a purge on AWS deletes what the new generation sends for up to 60 s)', () => {
    expect(statements.filter((s) => actionsOf(s.statement).includes('sqs:PurgeQueue'))).toEqual([]);
  });
});

describe('CairnJob: alarms, dashboard, triggers', () => {
  it('alarms on every dead-letter queue, on message age, on checkpoint failures and on a failed job', () => {
    const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm');
    const metric = (name: string): number => alarms.filter(([, p]) => p.MetricName === name).length;
    expect(metric('ApproximateNumberOfMessagesVisible')).toBe(spec.vertices.length + 1);
    expect(metric('ApproximateAgeOfOldestMessage')).toBe(spec.vertices.length + 1);
    expect(metric('CheckpointAborted')).toBe(1);
    expect(metric('ExecutionsFailed')).toBe(2);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('rolls back through the dead-letter consumer, not from an alarm: no EventBridge rule (an alarm tells EventBridge only when its state changes)', () => {
    template.resourceCountIs('AWS::Events::Rule', 0);
    const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm');
    expect(alarms.filter(([, p]) => (p.AlarmActions as unknown[] | undefined)?.length)).toEqual([]);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId(stack.job.deadLetterFunction) } }],
      Threshold: 1,
    });
  });

  it('schedules only a watchdog (every 10 min, whatever the interval): the coordinator loop runs, waits and sleeps by itself', () => {
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(10 minutes)',
      Target: Match.objectLike({ Arn: { Ref: logicalId(stack.job.coordinator.checkpointStateMachine) }, Input: '{}' }),
    });
    const { template: t } = synthStack({ job: 'account-balance', checkpoint: { intervalMs: 120_000 }, watchdogInterval: Duration.minutes(30) }, 'Cairn-slow');
    t.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(30 minutes)', Target: Match.objectLike({ Input: '{}' }) });
  });

  it('outputRetention: the coordinator (which publishes sink batches) gets it in seconds; under a day is refused; unset, output is kept', () => {
    const coordinatorEnv = (t: Template): Record<string, unknown> => {
      const fns = t.findResources('AWS::Lambda::Function', { Properties: { Description: Match.stringLikeRegexp('coordinator loop') } });
      const [fn] = Object.values(fns) as Array<{ Properties: { Environment: { Variables: Record<string, unknown> } } }>;
      return fn?.Properties.Environment.Variables ?? {};
    };
    expect(coordinatorEnv(template).CAIRN_OUTPUT_RETENTION_SECONDS).toBeUndefined();
    const { template: t } = synthStack({ outputRetention: Duration.days(30) }, 'Cairn-retained');
    expect(coordinatorEnv(t).CAIRN_OUTPUT_RETENTION_SECONDS).toBe('2592000');
    expect(() => synthStack({ outputRetention: Duration.hours(6) }, 'Cairn-short')).toThrow('CairnJob outputRetention must be one day or more (whole seconds), got 6 hours');
  });
});

describe('cdk-nag AwsSolutions', () => {
  it.each(jobNames())('%s: no unsuppressed errors or warnings', (name) => {
    const s = name === 'word-count' ? stack : synthStack({ job: name }).stack;
    const errors = Annotations.fromStack(s).findError('*', Match.stringLikeRegexp('AwsSolutions-.*'));
    const warnings = Annotations.fromStack(s).findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*'));
    expect(errors.map((e) => `${e.id}: ${JSON.stringify(e.entry.data)}`)).toEqual([]);
    expect(warnings.map((e) => `${e.id}: ${JSON.stringify(e.entry.data)}`)).toEqual([]);
    expect(Stack.isStack(s)).toBe(true);
  });
});

/**
 * Every ARN in a template's resource properties (policies, conditions, state machine
 * definitions), Fn::Join joined, pseudo parameters and references as cdk-nag renders them
 * (`<AWS::Region>`, `<Logical>`, `<Logical.Attr>`), other intrinsics as `<Fn::Name>`. With
 * an env, region and account are literals; without one, tokens.
 */
function arnsOf(t: Template): string[] {
  const render = (x: unknown): string => {
    if (typeof x === 'string') return x;
    const o = x as Record<string, unknown>;
    if ('Fn::Join' in o) {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts.map(render).join(sep);
    }
    if ('Ref' in o) return `<${String(o.Ref)}>`;
    if ('Fn::GetAtt' in o) return `<${(o['Fn::GetAtt'] as string[]).join('.')}>`;
    return `<${Object.keys(o).join(',')}>`;
  };
  const isIntrinsic = (o: object): boolean => Object.keys(o).length === 1 && /^(Ref|Fn::)/.test(Object.keys(o)[0] ?? '');
  const out: string[] = [];
  const walk = (x: unknown): void => {
    if (typeof x === 'string' || (x !== null && typeof x === 'object' && !Array.isArray(x) && isIntrinsic(x))) {
      out.push(...(render(x).match(/arn:[^"\s,]*/g) ?? []));
    } else if (Array.isArray(x)) {
      x.forEach(walk);
    } else if (x !== null && typeof x === 'object') {
      Object.values(x).forEach(walk);
    }
  };
  // Properties only: Metadata holds the cdk-nag suppressions, whose patterns are no ARNs.
  for (const r of Object.values((t.toJSON() as { Resources: Record<string, { Properties?: unknown }> }).Resources)) walk(r.Properties);
  return out;
}

/** arn:partition:service:region:account:..., where region and account may be tokens (they hold colons). */
const ARN_FIELDS = /^arn:(<AWS::Partition>|aws[a-z-]*):([a-z0-9-]+):(<AWS::Region>|[^:]*):(<AWS::AccountId>|[^:]*):/;
const RECOVERY_EXECUTIONS = (region: string, account: string): RegExp => new RegExp(`^arn:<AWS::Partition>:states:${region}:${account}:execution:.*\\*$`);

describe('cdk-nag AwsSolutions with an explicit env (CDK_DEFAULT_ACCOUNT/REGION set, as infra/app.ts passes them)', () => {
  const env = { account: '123456789012', region: 'eu-west-1' };

  it('without an env, the recovery executions ARN holds region and account tokens', () => {
    expect(arnsOf(template)).toContainEqual(expect.stringMatching(RECOVERY_EXECUTIONS('<AWS::Region>', '<AWS::AccountId>')));
  });

  it.each(jobNames())('%s: no unsuppressed errors or warnings; literal ARNs name eu-west-1 and 123456789012', (name) => {
    const { stack: s, template: t } = synthStack({ job: name }, `Cairn-${name}`, env);
    expect(s.region).toBe('eu-west-1');
    expect(s.account).toBe('123456789012');
    const errors = Annotations.fromStack(s).findError('*', Match.stringLikeRegexp('AwsSolutions-.*'));
    const warnings = Annotations.fromStack(s).findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*'));
    expect(errors.map((e) => `${e.id}: ${JSON.stringify(e.entry.data)}`)).toEqual([]);
    expect(warnings.map((e) => `${e.id}: ${JSON.stringify(e.entry.data)}`)).toEqual([]);

    const arns = arnsOf(t);
    // The IAM5 finding this guards: the checkpoint workflow's describe/stop on the recovery executions.
    expect(arns).toContainEqual(expect.stringMatching(RECOVERY_EXECUTIONS('eu-west-1', '123456789012')));
    const literal = arns.filter((arn) => ARN_FIELDS.exec(arn)?.[3] === 'eu-west-1');
    expect(literal.length).toBeGreaterThan(3);
    for (const arn of arns) {
      const fields = ARN_FIELDS.exec(arn);
      expect(fields, arn).not.toBeNull();
      const [, , , region, account] = fields as RegExpExecArray;
      // Region-less ARNs (S3, IAM, `states:::lambda:invoke`) have an empty region; AWS managed policies the account `aws`.
      expect(region, arn).toMatch(/^(eu-west-1)?$/);
      expect(account, arn).toMatch(/^(123456789012|aws)?$/);
    }
  });
});

describe('CairnJob: the job of a project, as a module path', () => {
  const projectApp = (): { app: App; stack: Stack } => {
    const app = new App({ context: { ...cdkContext(), 'aws:cdk:bundling-stacks': [] } });
    return { app, stack: new Stack(app, 'Project') };
  };

  it('describes the module with `cairn describe` and bundles one generated entry of it, with one handler per kind of function', () => {
    const { stack: s } = projectApp();
    const job = new CairnJob(s, 'Job', { job: 'examples/account-balance.ts', projectRoot: REPO_ROOT });
    expect(job.spec.name).toBe('account-balance');
    expect(job.spec.vertices.map((v) => [v.id, v.parallelism, v.downstream])).toEqual([
      ['transactions', 2, ['balance']],
      ['balance', 2, []],
    ]);
    const handlers = resourcesOf(Template.fromStack(s), 'AWS::Lambda::Function')
      .map(([, p]) => p.Handler as string)
      .sort();
    expect(handlers).toEqual(['index.coordinator', 'index.deadLetter', 'index.ingest', 'index.operator', 'index.operator']);
    // Imports resolve from the entry directory's real path, as esbuild resolves them (node_modules may be a symlink).
    const dir = realpathSync(path.join(REPO_ROOT, 'node_modules/.cache/cairn/lambda'));
    const importsOf = (file: string): string[] => [...readFileSync(path.join(dir, file), 'utf8').matchAll(/from "([^"]+)"/g)].map((m) => path.resolve(dir, m[1] ?? ''));
    const entries = readdirSync(dir).filter((f) => f.startsWith('account-balance-') && importsOf(f)[0] === path.join(REPO_ROOT, 'examples/account-balance.ts'));
    expect(entries).toHaveLength(1);
    expect(importsOf(entries[0] ?? '')).toEqual([path.join(REPO_ROOT, 'examples/account-balance.ts'), path.join(REPO_ROOT, 'shared/lambda/index.ts')]);
    expect(readFileSync(path.join(dir, entries[0] ?? ''), 'utf8')).toContain('export const { operator, ingest, coordinator, deadLetter } = createHandlers(job);');
  });

  it('says what is wrong with a job it cannot deploy', () => {
    expect(() => new CairnJob(projectApp().stack, 'Job', { job: 'examples/nope.ts', projectRoot: REPO_ROOT })).toThrow(
      `CairnJob: job module ${path.join(REPO_ROOT, 'examples/nope.ts')} does not exist`,
    );
    expect(() => new CairnJob(projectApp().stack, 'Job', { job: 'examples/types.ts', projectRoot: REPO_ROOT })).toThrow(
      /cannot describe job module .*types\.ts: error: job module .*types\.ts has no default export/,
    );
    expect(() => new CairnJob(projectApp().stack, 'Job', { job: examples['word-count'] as JobDefinition, projectRoot: REPO_ROOT })).toThrow(
      'CairnJob Job: a job definition needs `entry`, the module whose default export it is (or pass the module path as `job`)',
    );
  });

  it('grantPush lets a producer send to the ingress queue only; grantReadResults reads the job table; metricCheckpointDuration is the coordinator metric', () => {
    const { stack: s } = projectApp();
    const job = new CairnJob(s, 'Job', { job: examples['word-count'] as JobDefinition, entry: 'examples/word-count.ts', projectRoot: REPO_ROOT });
    const producer = new iamLib.Role(s, 'Producer', { assumedBy: new iamLib.AccountRootPrincipal() });
    job.grantPush(producer);
    job.grantReadResults(producer);
    const t = Template.fromStack(s);
    const producerId = s.getLogicalId(producer.node.defaultChild as iamLib.CfnRole);
    const statements = statementsOf(t).filter((st) => st.roles.includes(producerId));
    expect(statements.map((st) => [st.statement.Action, st.statement.Resource])).toEqual([
      [['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'], { 'Fn::GetAtt': [s.getLogicalId(job.ingressQueue.node.defaultChild as never), 'Arn'] }],
      [
        ['dynamodb:BatchGetItem', 'dynamodb:ConditionCheckItem', 'dynamodb:DescribeTable', 'dynamodb:GetItem', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator', 'dynamodb:Query', 'dynamodb:Scan'],
        { 'Fn::GetAtt': [s.getLogicalId(job.table.node.defaultChild as never), 'Arn'] },
      ],
    ]);
    const metric = job.metricCheckpointDuration();
    expect([metric.namespace, metric.metricName, metric.statistic, metric.period.toMinutes(), metric.dimensions]).toEqual(['Cairn', 'CheckpointDuration', 'Average', 5, { Job: 'word-count' }]);
    expect(job.metricCheckpointsAborted({ period: Duration.minutes(1) }).period.toMinutes()).toBe(1);
  });
});
