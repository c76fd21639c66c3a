import { existsSync } from 'node:fs';
import path from 'node:path';
import { ArnFormat, CfnOutput, Duration, Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { outputPrefix, STACK_OUTPUTS } from '../shared/aws/ops/job-resources.js';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as lambdaEvents from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { CheckpointConfigInput } from '../shared/core/config.js';
import { describeJob, type JobDefinition, type JobDescription } from '../shared/core/definition.js';
import { parseRuntimeLimits } from '../shared/core/config.js';
import { DEFAULT_RESTART_STRATEGY, validateRestartStrategy, type RestartStrategy } from '../shared/core/protocol/restart-strategy.js';
import { LAMBDA_BUNDLE } from '../shared/lambda/bundling.js';
import { CheckpointCoordinator } from './coordinator.js';
import { describeJobModule, findProjectRoot, handlerEntryFor, jobSpecOf, type JobSpec, type VertexSpec } from './job-spec.js';

/** The Lambda handlers of the job's entry file (handlerEntryFor): one export per kind of function. */
const HANDLERS = { operator: 'operator', ingest: 'ingest', coordinator: 'coordinator', deadLetter: 'deadLetter' } as const;

export interface CairnJobProps {
  /**
   * The job: a module path (relative to `projectRoot`) whose default export is a job
   * definition (`export default defineJob({...})`), or the definition itself together with
   * `entry`, the module it is the default export of. Every function bundles that module with
   * esbuild from the project.
   */
  readonly job: string | JobDefinition;
  /** With a definition object as `job`: its module (relative to `projectRoot`), whose default export it is. */
  readonly entry?: string;
  /** The project the job is bundled from. @default the nearest directory above the working directory with a lock file */
  readonly projectRoot?: string;
  /** @default the lock file found in projectRoot (package-lock.json, yarn.lock, pnpm-lock.yaml, bun.lockb) */
  readonly depsLockFilePath?: string;
  /**
   * Checkpoint options, merged over the job's own `checkpoint` and then the engine's
   * defaults (shared/core/config.ts: time trigger every 1 s, 10 min timeout, ...).
   * @default the job's checkpoint config
   */
  readonly checkpoint?: CheckpointConfigInput;
  /** What happens after a rollback-worthy failure. @default exponential backoff 1 s .. 5 min, 10 attempts, reset after 1 h */
  readonly restartStrategy?: RestartStrategy;
  /** Prefix of the physical names (state machines, log groups). @default the stack name */
  readonly namePrefix?: string;
  /** Operator function memory. @default 512 MiB */
  readonly memorySize?: number;
  /** Operator, ingest and dead-letter function timeout; queue visibility timeout = 6 × this. @default 30 s */
  readonly functionTimeout?: Duration;
  /** SQS batch size of the operators' event source mappings (FIFO maximum: 10). @default 10 */
  readonly batchSize?: number;
  /**
   * Events per ingest invocation (the standard ingress queue's mapping, 1..10,000): one append
   * per source partition and invocation, so fuller batches mean fewer invocations and larger,
   * cheaper log segments. @default 100
   */
  readonly ingestBatchSize?: number;
  /**
   * How long the ingress mapping gathers events before invoking with a batch that is not full
   * (MaximumBatchingWindowInSeconds, up to 5 minutes; at least 1 s when ingestBatchSize > 10, as
   * Lambda requires): the buffer timeout of ingestion, added to an event's latency at low rates.
   * @default 1 second
   */
  readonly ingestBatchingWindow?: Duration;
  /** Receives before a message moves to its dead-letter queue. @default 5 (the engine's runtime limit) */
  readonly maxReceiveCount?: number;
  /**
   * Event source mapping maxConcurrency per vertex. @default the vertex's parallelism from the
   * job graph (an instance is one FIFO message group, so more pollers than groups idle), at least 2
   */
  readonly maxConcurrency?: Readonly<Record<string, number>>;
  /**
   * How often the schedule starts a coordinator execution in case none runs (a wake-up that was
   * lost, an execution that failed). One that finds the coordinator running or asleep with
   * nothing to do ends at once (4 state transitions). @default 10 min
   */
  readonly watchdogInterval?: Duration;
  /**
   * Published batches of transactional sinks expire (DynamoDB TTL, free) this long after their
   * publication: the job's output is kept for its readers this long. At least one day (a
   * rollback republishes only batches younger than its checkpoint). @default kept until deleted
   */
  readonly outputRetention?: Duration;
  /** Alarm when the oldest message of a queue is older than this. @default 5 min */
  readonly maxMessageAge?: Duration;
  /** Added to every alarm (e.g. an SNS action). @default none */
  readonly alarmActions?: readonly cloudwatch.IAlarmAction[];
  /** Table, bucket and log groups. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** @default one month */
  readonly logRetention?: logs.RetentionDays;
  /** Skip the scheduled trigger (tests, or checkpoints triggered only by hand). @default false */
  readonly disableSchedule?: boolean;
}

/** The coordinator function's timeout (Lambda's maximum): one `Run` invocation spends at most 10 min of it. */
const COORDINATOR_TIMEOUT = Duration.minutes(15);

interface VertexResources {
  readonly spec: VertexSpec;
  readonly queue: sqs.Queue;
  readonly dlq: sqs.Queue;
  readonly fn: nodejs.NodejsFunction;
}

/**
 * One Cairn job on AWS: ingress queue, a FIFO queue + dead-letter queue + function per vertex,
 * the single-table job table, the spill bucket, the coordinator workflows, the schedule, alarms
 * and a dashboard. Every function gets its own role with exactly the actions it uses, on
 * exactly its own resources.
 */
export class CairnJob extends Construct {
  readonly spec: JobSpec;
  readonly ingressQueue: sqs.Queue;
  readonly ingressDlq: sqs.Queue;
  readonly table: dynamodb.Table;
  readonly bucket: s3.Bucket;
  readonly vertices: ReadonlyMap<string, VertexResources>;
  readonly ingestFunction: nodejs.NodejsFunction;
  readonly coordinatorFunction: nodejs.NodejsFunction;
  /** Consumes every dead-letter queue: dead letters with reason `redriven`, a failure on the job record, the coordinator woken. */
  readonly deadLetterFunction: nodejs.NodejsFunction;
  readonly coordinator: CheckpointCoordinator;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;
  readonly schedule: scheduler.Schedule | undefined;
  /** The SQS event source mappings (ingest and operators): `cairn pause` disables them. */
  readonly queueEventSources: lambdaEvents.SqsEventSource[] = [];
  /** One per dead-letter queue (ingress and every vertex); never paused: a paused job still hears of lost messages. */
  readonly deadLetterEventSources: lambdaEvents.SqsEventSource[] = [];

  private readonly removalPolicy: RemovalPolicy;
  private readonly logRetention: logs.RetentionDays;
  private readonly prefix: string;
  private readonly bundle: { readonly entry: string; readonly projectRoot: string; readonly depsLockFilePath: string };

  constructor(scope: Construct, id: string, props: CairnJobProps) {
    super(scope, id);
    const project = props.projectRoot === undefined ? findProjectRoot(process.cwd()) : { root: path.resolve(props.projectRoot), lockFile: undefined };
    const depsLockFilePath = props.depsLockFilePath ?? project.lockFile ?? findProjectRoot(project.root).lockFile;
    let modulePath: string;
    let description: JobDescription;
    if (typeof props.job === 'string') {
      modulePath = path.resolve(project.root, props.job);
      description = describeJobModule(modulePath, project.root);
    } else {
      if (props.entry === undefined) throw new Error(`CairnJob ${id}: a job definition needs \`entry\`, the module whose default export it is (or pass the module path as \`job\`)`);
      modulePath = path.resolve(project.root, props.entry);
      if (!existsSync(modulePath)) throw new Error(`CairnJob ${id}: entry ${modulePath} does not exist`);
      description = describeJob(props.job);
    }
    const spec = jobSpecOf(description, props.checkpoint);
    this.spec = spec;
    this.bundle = { entry: handlerEntryFor(modulePath, project.root, spec.name), projectRoot: project.root, depsLockFilePath };
    const restartStrategy = props.restartStrategy ?? DEFAULT_RESTART_STRATEGY;
    validateRestartStrategy(restartStrategy);
    const limits = parseRuntimeLimits();
    this.removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    this.prefix = (props.namePrefix ?? Stack.of(this).stackName).slice(0, 40);
    const functionTimeout = props.functionTimeout ?? Duration.seconds(30);
    const visibilityTimeout = Duration.seconds(functionTimeout.toSeconds() * 6);
    const batchSize = props.batchSize ?? 10;
    if (batchSize < 1 || batchSize > 10) throw new Error(`batchSize must be 1..10 (SQS FIFO event source), got ${batchSize}`);
    const maxReceiveCount = props.maxReceiveCount ?? limits.maxReceiveCount;
    const ingestBatchSize = props.ingestBatchSize ?? 100;
    if (!Number.isInteger(ingestBatchSize) || ingestBatchSize < 1 || ingestBatchSize > 10_000) throw new Error(`ingestBatchSize must be 1..10000 (SQS standard event source), got ${ingestBatchSize}`);
    const ingestBatchingWindow = props.ingestBatchingWindow ?? Duration.seconds(1);
    if (ingestBatchingWindow.toSeconds() > 300) throw new Error(`ingestBatchingWindow must be at most 5 minutes, got ${ingestBatchingWindow.toSeconds()} s`);
    if (ingestBatchSize > 10 && ingestBatchingWindow.toSeconds() < 1)
      throw new Error(`ingestBatchingWindow must be at least 1 second when ingestBatchSize > 10 (Lambda's rule), got ${ingestBatchingWindow.toSeconds()} s`);

    // ---------- storage ----------
    this.table = new dynamodb.Table(this, 'JobTable', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      // Retention: expired ingest dedup items are deleted for free (shared/aws/adapters/table-layout.ts TTL_ATTRIBUTE).
      timeToLiveAttribute: 'exp',
      removalPolicy: this.removalPolicy,
    });

    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(90) }],
      removalPolicy: this.removalPolicy,
    });
    this.bucket = new s3.Bucket(this, 'StateBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      // Versioned: a spilled state value deleted by pruning stays recoverable for a week as a
      // noncurrent version, then the lifecycle rule below removes it for good.
      versioned: true,
      lifecycleRules: [
        {
          id: 'pruned-checkpoint-objects',
          noncurrentVersionExpiration: Duration.days(7),
          expiredObjectDeleteMarker: true,
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'state-bucket/',
      removalPolicy: this.removalPolicy,
    });

    // ---------- queues ----------
    // Dead-letter queues are consumed by the dead-letter function (timeout functionTimeout): the same visibility timeout as the queues.
    this.ingressDlq = new sqs.Queue(this, 'IngressDlq', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout,
      retentionPeriod: Duration.days(14),
    });
    this.ingressQueue = new sqs.Queue(this, 'Ingress', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout,
      retentionPeriod: Duration.days(14),
      deadLetterQueue: { queue: this.ingressDlq, maxReceiveCount },
    });

    const queues = new Map<string, { queue: sqs.Queue; dlq: sqs.Queue }>();
    for (const vertex of spec.vertices) {
      const dlq = new sqs.Queue(this, `${vertex.id}-Dlq`, {
        fifo: true,
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        visibilityTimeout,
        retentionPeriod: Duration.days(14),
      });
      const queue = new sqs.Queue(this, `${vertex.id}-Queue`, {
        fifo: true,
        // Explicit deduplication ids (channel sequence numbers), one message group per instance.
        contentBasedDeduplication: false,
        deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
        fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        visibilityTimeout,
        retentionPeriod: Duration.days(14),
        deadLetterQueue: { queue: dlq, maxReceiveCount },
      });
      queues.set(vertex.id, { queue, dlq });
    }
    const queueOf = (id: string): sqs.Queue => {
      const entry = queues.get(id);
      if (!entry) throw new Error(`no queue for vertex ${id}`);
      return entry.queue;
    };
    const queueUrls = Stack.of(this).toJsonString(Object.fromEntries([...queues].map(([id, q]) => [id, q.queue.queueUrl])));
    const commonEnv: Record<string, string> = {
      CAIRN_JOB: spec.name,
      CAIRN_TABLE: this.table.tableName,
      CAIRN_BUCKET: this.bucket.bucketName,
      CAIRN_QUEUE_URLS: queueUrls,
      CAIRN_CHECKPOINT: JSON.stringify(spec.checkpointInput),
      NODE_OPTIONS: '--enable-source-maps',
    };

    const checkpointsArn = Stack.of(this).formatArn({
      service: 'states',
      resource: 'stateMachine',
      resourceName: `${this.prefix}-checkpoints`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });

    // ---------- operator functions ----------
    const vertices = new Map<string, VertexResources>();
    for (const vertex of spec.vertices) {
      const { queue, dlq } = queues.get(vertex.id) as { queue: sqs.Queue; dlq: sqs.Queue };
      const fn = this.fn(`${vertex.id}-Operator`, HANDLERS.operator, {
        description: `Cairn ${spec.name}: operator ${vertex.id} (${vertex.parallelism} instances)`,
        memorySize: props.memorySize ?? 512,
        timeout: functionTimeout,
        environment: { ...commonEnv, CAIRN_VERTEX: vertex.id },
      });
      this.allowTable(fn);
      this.allowBucket(fn);
      // Its own queue (sources re-poll themselves) and the queues of the vertices it feeds.
      this.allowSend(fn, [queue, ...vertex.downstream.map(queueOf)]);
      const source = new lambdaEvents.SqsEventSource(queue, {
        batchSize,
        reportBatchItemFailures: true,
        maxConcurrency: Math.max(2, props.maxConcurrency?.[vertex.id] ?? vertex.parallelism),
      });
      fn.addEventSource(source);
      this.queueEventSources.push(source);
      vertices.set(vertex.id, { spec: vertex, queue, dlq, fn });
    }
    this.vertices = vertices;

    // ---------- ingest ----------
    const sources = spec.vertices.filter((v) => v.isSource);
    this.ingestFunction = this.fn('Ingest', HANDLERS.ingest, {
      description: `Cairn ${spec.name}: ingress queue -> source log (wakes a sleeping coordinator)`,
      memorySize: 512,
      timeout: functionTimeout,
      environment: { ...commonEnv, CAIRN_COORDINATOR_ARN: checkpointsArn },
    });
    this.allowWake(this.ingestFunction, checkpointsArn);
    this.allowTable(this.ingestFunction);
    this.allowBucket(this.ingestFunction);
    this.allowSend(
      this.ingestFunction,
      sources.map((s) => queueOf(s.id)),
    );
    const ingestSource = new lambdaEvents.SqsEventSource(this.ingressQueue, {
      batchSize: ingestBatchSize,
      maxBatchingWindow: ingestBatchingWindow,
      reportBatchItemFailures: true,
      maxConcurrency: Math.max(
        2,
        sources.reduce((n, s) => n + s.parallelism, 0),
      ),
    });
    this.ingestFunction.addEventSource(ingestSource);
    this.queueEventSources.push(ingestSource);

    // ---------- coordinator ----------
    this.coordinatorFunction = this.fn('Coordinator', HANDLERS.coordinator, {
      description: `Cairn ${spec.name}: the coordinator loop and the recovery workflow's tasks`,
      memorySize: 256,
      timeout: COORDINATOR_TIMEOUT,
      environment: {
        ...commonEnv,
        CAIRN_RESTART_STRATEGY: JSON.stringify(restartStrategy),
        CAIRN_COORDINATOR_ARN: checkpointsArn,
        ...(props.outputRetention ? { CAIRN_OUTPUT_RETENTION_SECONDS: String(outputRetentionSeconds(props.outputRetention)) } : {}),
      },
    });
    this.allowTable(this.coordinatorFunction);
    this.allowBucket(this.coordinatorFunction);
    const allQueues = [...queues.values()].map((q) => q.queue);
    this.allowSend(this.coordinatorFunction, allQueues);
    this.coordinatorFunction.addToRolePolicy(new iam.PolicyStatement({ sid: 'QueueDepth', actions: ['sqs:GetQueueAttributes'], resources: allQueues.map((q) => q.queueArn) }));
    // A successor execution, a wake-up after a recovery. Formatted ARN, not a reference: the state machine refers to this function.
    this.allowWake(this.coordinatorFunction, checkpointsArn);

    // ---------- dead-letter queues ----------
    // Consumed, not only alarmed on: an alarm tells EventBridge only when its state changes, so
    // with a message left in a DLQ a later incident would trigger nothing. Every redriven message
    // becomes a dead letter (reason `redriven`); a lost operator message of the running generation
    // is a failure on the job record, and the function wakes the coordinator to serve it.
    const deadLetterQueues: Array<[string, sqs.Queue]> = [['ingress', this.ingressDlq], ...[...queues].map(([id, q]): [string, sqs.Queue] => [id, q.dlq])];
    this.deadLetterFunction = this.fn('DeadLetter', HANDLERS.deadLetter, {
      description: `Cairn ${spec.name}: dead-letter queues -> dead letters, a failure on the job record, the coordinator woken`,
      memorySize: 256,
      timeout: functionTimeout,
      environment: {
        ...commonEnv,
        CAIRN_DEAD_LETTER_QUEUES: Stack.of(this).toJsonString(Object.fromEntries(deadLetterQueues.map(([id, q]) => [id, q.queueArn]))),
        CAIRN_COORDINATOR_ARN: checkpointsArn,
      },
    });
    // handleRedriven: the job record (GetItem, conditional PutItem), the dead letters (BatchWriteItem); large values spill.
    this.allowTable(this.deadLetterFunction, ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:BatchWriteItem']);
    this.allowBucket(this.deadLetterFunction);
    this.allowWake(this.deadLetterFunction, checkpointsArn);
    for (const [, dlq] of deadLetterQueues) {
      const source = new lambdaEvents.SqsEventSource(dlq, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 2 });
      this.deadLetterFunction.addEventSource(source);
      this.deadLetterEventSources.push(source);
    }

    this.coordinator = new CheckpointCoordinator(this, 'Workflows', {
      jobName: this.prefix,
      checkpoint: spec.checkpoint,
      fn: this.coordinatorFunction,
      fnTimeout: COORDINATOR_TIMEOUT,
      logRetention: this.logRetention,
      removalPolicy: this.removalPolicy,
    });

    // The coordinator runs while there is work and sleeps when there is none; ingest, the
    // dead-letter consumer and the CLI wake it. The schedule is only its watchdog.
    if (props.disableSchedule !== true) {
      const rateMinutes = Math.max(1, Math.round((props.watchdogInterval ?? Duration.minutes(10)).toMinutes()));
      this.schedule = new scheduler.Schedule(this, 'CheckpointSchedule', {
        schedule: scheduler.ScheduleExpression.rate(Duration.minutes(rateMinutes)),
        description: `Cairn ${spec.name}: coordinator watchdog every ${rateMinutes} min (ends at once if it runs or sleeps with nothing to do)`,
        target: new schedulerTargets.StepFunctionsStartExecution(this.coordinator.checkpointStateMachine, {
          input: scheduler.ScheduleTargetInput.fromObject({}),
          retryAttempts: 3,
        }),
      });
    }

    // ---------- alarms ----------
    const alarm = (aid: string, metric: cloudwatch.IMetric, threshold: number, description: string, periods = 1): cloudwatch.Alarm => {
      const a = new cloudwatch.Alarm(this, aid, {
        metric,
        threshold,
        evaluationPeriods: periods,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      for (const action of props.alarmActions ?? []) a.addAlarmAction(action);
      this.alarms.push(a);
      return a;
    };
    const maxAge = (props.maxMessageAge ?? Duration.minutes(5)).toSeconds();
    const minute = { period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM };
    // The dead-letter function drains the DLQs: a depth that stays up means it is failing too.
    alarm(
      'IngressDlqDepth',
      this.ingressDlq.metricApproximateNumberOfMessagesVisible(minute),
      1,
      'Events failed ingestion past retries and wait in the dead-letter queue (the dead-letter function keeps them as dead letters)',
    );
    alarm('IngressAge', this.ingressQueue.metricApproximateAgeOfOldestMessage(minute), maxAge, 'Ingestion is falling behind', 3);
    for (const v of vertices.values()) {
      alarm(
        `${v.spec.id}-DlqDepth`,
        v.dlq.metricApproximateNumberOfMessagesVisible(minute),
        1,
        `Messages of ${v.spec.id} wait in its dead-letter queue (the dead-letter function reports each and the job rolls back)`,
      );
      alarm(`${v.spec.id}-Age`, v.queue.metricApproximateAgeOfOldestMessage(minute), maxAge, `Operator ${v.spec.id} is falling behind (or an instance is stuck)`, 3);
    }
    alarm('CheckpointFailures', this.metricCheckpointsAborted(), Math.max(1, spec.checkpoint.tolerableFailures + 1), 'Checkpoints are being aborted (timeouts or failures)');
    alarm(
      'JobFailedAlarm',
      this.coordinator.recoveryStateMachine.metricFailed({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
      1,
      'The restart strategy is exhausted: the job is FAILED',
    );
    alarm(
      'DeadLetterErrors',
      this.deadLetterFunction.metricErrors({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
      1,
      'The dead-letter function fails: lost messages may go unreported',
    );
    alarm('CoordinatorFailures', this.coordinator.checkpointStateMachine.metricFailed({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }), 1, 'A coordinator execution failed');

    // ---------- dashboard ----------
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { dashboardName: `${this.prefix}-cairn`.replace(/[^A-Za-z0-9_-]/g, '-') });
    const fiveMin = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Checkpoints',
        left: [this.metricCheckpointsCompleted(), this.metricCheckpointsAborted(), this.metric('RecoveryStarted')],
        right: [this.metricCheckpointDuration()],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Coordinator executions',
        left: [
          this.coordinator.checkpointStateMachine.metricSucceeded(fiveMin),
          this.coordinator.checkpointStateMachine.metricFailed(fiveMin),
          this.coordinator.recoveryStateMachine.metricStarted(fiveMin),
        ],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Queue depth',
        left: [
          this.ingressQueue.metricApproximateNumberOfMessagesVisible({ label: 'ingress' }),
          ...[...vertices.values()].map((v) => v.queue.metricApproximateNumberOfMessagesVisible({ label: v.spec.id })),
        ],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Age of oldest message (s)',
        left: [this.ingressQueue.metricApproximateAgeOfOldestMessage({ label: 'ingress' }), ...[...vertices.values()].map((v) => v.queue.metricApproximateAgeOfOldestMessage({ label: v.spec.id }))],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Dead-letter queues',
        left: [
          this.ingressDlq.metricApproximateNumberOfMessagesVisible({ label: 'ingress' }),
          ...[...vertices.values()].map((v) => v.dlq.metricApproximateNumberOfMessagesVisible({ label: v.spec.id })),
        ],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Function errors / duration',
        left: [...[...vertices.values()].map((v) => v.fn.metricErrors({ label: v.spec.id })), this.deadLetterFunction.metricErrors({ label: 'dead-letter' })],
        right: [...vertices.values()].map((v) => v.fn.metricDuration({ label: v.spec.id })),
        width: 12,
      }),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24 }),
    );

    // ---------- outputs ----------
    // Fixed keys (no hash suffix), read by `cairn status|pause|... --stack` (shared/aws/ops/job-resources.ts).
    const output = (name: keyof typeof STACK_OUTPUTS, value: string): void => {
      new CfnOutput(this, name, { value, description: STACK_OUTPUTS[name] }).overrideLogicalId(`${outputPrefix(this.node.id)}${name}`);
    };
    output('JobName', spec.name);
    output('IngressQueueUrl', this.ingressQueue.queueUrl);
    output('JobTableName', this.table.tableName);
    output('StateBucketName', this.bucket.bucketName);
    output('CheckpointStateMachineArn', this.coordinator.checkpointStateMachine.stateMachineArn);
    output('RecoveryStateMachineArn', this.coordinator.recoveryStateMachine.stateMachineArn);
    output('OperatorQueueUrls', queueUrls);
    output('DeadLetterQueueUrls', Stack.of(this).toJsonString({ ingress: this.ingressDlq.queueUrl, ...Object.fromEntries([...queues].map(([id, q]) => [id, q.dlq.queueUrl])) }));
    output(
      'EventSourceMappingIds',
      Fn.join(
        ',',
        this.queueEventSources.map((source) => source.eventSourceMappingId),
      ),
    );
    if (this.schedule) output('ScheduleName', this.schedule.scheduleName);
  }

  /** Lets `grantee` send events to the job's ingress queue (producers, other stacks' functions). */
  grantPush(grantee: iam.IGrantable): iam.Grant {
    return this.ingressQueue.grantSendMessages(grantee);
  }

  /** Lets `grantee` read the job table: its results, checkpoints and dead letters (`cairn output --stack`, dashboards). */
  grantReadResults(grantee: iam.IGrantable): iam.Grant {
    return this.table.grantReadData(grantee);
  }

  /** Milliseconds from a checkpoint's trigger to its completion (the coordinator's CheckpointDuration). @default average over 5 minutes */
  metricCheckpointDuration(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('CheckpointDuration', { statistic: cloudwatch.Stats.AVERAGE, ...props });
  }

  /** Checkpoints completed. @default sum over 5 minutes */
  metricCheckpointsCompleted(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('CheckpointCompleted', props);
  }

  /** Checkpoints aborted (timeouts, failures). @default sum over 5 minutes */
  metricCheckpointsAborted(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('CheckpointAborted', props);
  }

  /** A metric the job's functions publish (namespace Cairn, dimension Job). @default sum over 5 minutes */
  metric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({ namespace: 'Cairn', metricName, dimensionsMap: { Job: this.spec.name }, statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5), ...props });
  }

  /** A Node.js 22 arm64 function bundled by esbuild, with its own role and log group. */
  private fn(id: string, handler: string, options: { description: string; memorySize: number; timeout: Duration; environment: Record<string, string> }): nodejs.NodejsFunction {
    const logGroup = new logs.LogGroup(this, `${id}-Logs`, { retention: this.logRetention, removalPolicy: this.removalPolicy });
    const role = new iam.Role(this, `${id}-Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Cairn ${this.spec.name} ${id}`,
    });
    role.addToPolicy(new iam.PolicyStatement({ sid: 'Logs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.logGroupArn] }));
    return new nodejs.NodejsFunction(this, id, {
      entry: this.bundle.entry,
      handler,
      projectRoot: this.bundle.projectRoot,
      depsLockFilePath: this.bundle.depsLockFilePath,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      role,
      logGroup,
      description: options.description,
      memorySize: options.memorySize,
      timeout: options.timeout,
      environment: options.environment,
      bundling: {
        format: LAMBDA_BUNDLE.format === 'esm' ? nodejs.OutputFormat.ESM : nodejs.OutputFormat.CJS,
        target: LAMBDA_BUNDLE.target,
        platform: LAMBDA_BUNDLE.platform,
        minify: LAMBDA_BUNDLE.minify,
        sourceMap: LAMBDA_BUNDLE.sourcemap,
        externalModules: [...LAMBDA_BUNDLE.external],
        mainFields: [...LAMBDA_BUNDLE.mainFields],
        banner: LAMBDA_BUNDLE.banner,
      },
    });
  }

  private static readonly TABLE_RW = [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:Query',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
    'dynamodb:BatchWriteItem',
    'dynamodb:ConditionCheckItem',
  ];

  /** The adapters' calls only (TransactWriteItems is authorized per contained action). No Scan, no index. */
  private allowTable(fn: lambda.Function, actions: readonly string[] = CairnJob.TABLE_RW): void {
    fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'JobTable', actions: [...actions], resources: [this.table.tableArn] }));
  }

  private allowBucket(fn: lambda.Function, actions: readonly string[] = ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']): void {
    fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'SpilledState', actions: [...actions], resources: [this.bucket.arnForObjects('spill/*')] }));
  }

  /** StartExecution of the checkpoint workflow (CoordinatorWaker). */
  private allowWake(fn: lambda.Function, checkpointsArn: string): void {
    fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'WakeCoordinator', actions: ['states:StartExecution'], resources: [checkpointsArn] }));
  }

  private allowSend(fn: lambda.Function, queues: readonly sqs.IQueue[]): void {
    const arns = [...new Set(queues.map((q) => q.queueArn))];
    if (arns.length > 0) fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'SendDownstream', actions: ['sqs:SendMessage'], resources: arns }));
  }
}

/** CairnJob's outputRetention in seconds: a whole number of seconds, one day at least. */
export function outputRetentionSeconds(retention: Duration): number {
  const seconds = retention.toSeconds();
  if (!Number.isInteger(seconds) || seconds < 86_400) throw new Error(`CairnJob outputRetention must be one day or more (whole seconds), got ${retention.toHumanString()}`);
  return seconds;
}
