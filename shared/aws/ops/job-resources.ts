import fs from 'node:fs';
import path from 'node:path';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { z } from 'zod';
import { CairnError } from '../../core/errors.js';

/**
 * Where a running job lives: its table, bucket, queues and, when deployed with CDK, its
 * workflows, event source mappings and schedule. Read from the stack outputs of a deployed
 * `CairnJob` (infra/cairn-job.ts writes exactly these keys) or from the manifest a
 * `cairn run --target local-cloud` writes while it runs.
 */

/** Output names of a CairnJob, with their descriptions (the CfnOutputs use both). */
export const STACK_OUTPUTS = {
  JobName: "The job's name (its definition's)",
  IngressQueueUrl: 'Push events here (SendMessage, JSON body)',
  JobTableName: 'Job state, checkpoints and the transactional sink output',
  StateBucketName: 'Spilled state values and source-log segments',
  CheckpointStateMachineArn: 'Manual checkpoint: aws stepfunctions start-execution --state-machine-arn <this> --input \'{"manual":true}\'',
  RecoveryStateMachineArn: 'Rollback-replay workflow',
  OperatorQueueUrls: 'JSON: vertex id -> FIFO queue URL',
  DeadLetterQueueUrls: 'JSON: ingress and vertex id -> dead-letter queue URL',
  EventSourceMappingIds: 'Comma-separated SQS event source mapping UUIDs (ingest and operators)',
  ScheduleName: 'EventBridge Scheduler schedule that starts coordinator executions',
} as const;

/** CloudFormation output keys are alphanumeric: the construct id, cleaned, prefixes them. */
export function outputPrefix(constructId: string): string {
  return constructId.replace(/[^A-Za-z0-9]/g, '');
}

const urlMap = z.record(z.string(), z.string().min(1));

export const JobResourcesSchema = z.object({
  jobName: z.string().min(1),
  tableName: z.string().min(1),
  bucket: z.string().min(1),
  ingressQueueUrl: z.string().min(1),
  /** vertex id -> FIFO queue URL */
  queueUrls: urlMap,
  /** 'ingress' and vertex ids -> dead-letter queue URL */
  deadLetterQueueUrls: urlMap,
  checkpointStateMachineArn: z.string().min(1).optional(),
  recoveryStateMachineArn: z.string().min(1).optional(),
  eventSourceMappingIds: z.array(z.string().min(1)).default([]),
  scheduleName: z.string().min(1).optional(),
  /** Single AWS endpoint (local cloud, LocalStack); absent = the SDK's default resolution. */
  endpoint: z.string().min(1).optional(),
  region: z.string().min(1).optional(),
});

export type JobResources = z.infer<typeof JobResourcesSchema>;

export class JobResourcesNotFoundError extends CairnError {
  override readonly name = 'JobResourcesNotFoundError';
}

const jsonOf = (raw: string | undefined): unknown => (raw === undefined ? undefined : JSON.parse(raw));

/**
 * Resources from a stack's outputs (key -> value). A stack with several CairnJobs names the
 * one meant by its construct id (`prefix`); with one, it is found by its JobName output.
 */
export function jobResourcesFromOutputs(outputs: Readonly<Record<string, string>>, prefix?: string): JobResources {
  const prefixes = Object.keys(outputs)
    .filter((key) => key.endsWith('JobName'))
    .map((key) => key.slice(0, -'JobName'.length));
  const chosen = prefix ?? (prefixes.length === 1 ? prefixes[0] : undefined);
  if (chosen === undefined || !prefixes.includes(chosen)) {
    throw new JobResourcesNotFoundError(
      prefixes.length === 0
        ? `no Cairn job outputs (no *JobName output) among: ${Object.keys(outputs).join(', ') || 'none'}`
        : `the stack holds several jobs (${prefixes.join(', ')}): name one with --job-id`,
    );
  }
  const get = (name: keyof typeof STACK_OUTPUTS): string | undefined => outputs[`${chosen}${name}`];
  const parsed = JobResourcesSchema.safeParse({
    jobName: get('JobName'),
    tableName: get('JobTableName'),
    bucket: get('StateBucketName'),
    ingressQueueUrl: get('IngressQueueUrl'),
    queueUrls: jsonOf(get('OperatorQueueUrls')),
    deadLetterQueueUrls: jsonOf(get('DeadLetterQueueUrls')),
    checkpointStateMachineArn: get('CheckpointStateMachineArn'),
    recoveryStateMachineArn: get('RecoveryStateMachineArn'),
    eventSourceMappingIds: get('EventSourceMappingIds')
      ?.split(',')
      .filter((id) => id !== ''),
    scheduleName: get('ScheduleName'),
  });
  if (!parsed.success) throw new JobResourcesNotFoundError(`stack outputs of job '${chosen}' are incomplete: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** Resources of a deployed stack (DescribeStacks). */
export async function jobResourcesFromStack(stackName: string, options: { endpoint?: string; region?: string; prefix?: string } = {}): Promise<JobResources> {
  const cfn = new CloudFormationClient({ ...(options.endpoint ? { endpoint: options.endpoint } : {}), ...(options.region ? { region: options.region } : {}) });
  try {
    const { Stacks = [] } = await cfn.send(new DescribeStacksCommand({ StackName: stackName }));
    const outputs = Object.fromEntries((Stacks[0]?.Outputs ?? []).flatMap((o) => (o.OutputKey && o.OutputValue !== undefined ? [[o.OutputKey, o.OutputValue]] : [])));
    return {
      ...jobResourcesFromOutputs(outputs, options.prefix),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.region ? { region: options.region } : {}),
    };
  } catch (error) {
    if ((error as Error).name === 'ValidationError') throw new JobResourcesNotFoundError(`stack ${stackName} not found: ${(error as Error).message}`);
    throw error;
  } finally {
    cfn.destroy();
  }
}

// ---------- local cloud manifest ----------

/** Where `cairn run <job> --target local-cloud` records the resources of its run. */
export function localCloudManifestPath(job: string, root = '.cairn'): string {
  return path.join(root, 'local-cloud', `${job.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

export function writeLocalCloudManifest(file: string, resources: JobResources): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(resources, null, 2)}\n`);
  fs.renameSync(`${file}.tmp`, file);
}

export function readLocalCloudManifest(file: string, job: string): JobResources {
  if (!fs.existsSync(file)) {
    throw new JobResourcesNotFoundError(`no local-cloud run of ${job} recorded (${file}); start one with \`cairn run ${job} --target local-cloud\``);
  }
  const parsed = JobResourcesSchema.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
  if (!parsed.success) throw new JobResourcesNotFoundError(`${file} is not a job manifest: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
