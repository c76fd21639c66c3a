import { rmSync } from 'node:fs';
import { DeleteQueueCommand, GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { createAwsStores, deleteBucket, deleteJobTable, type AwsStores } from '../aws/index.js';
import { JobOperations, type JobStatusReport } from '../aws/ops/job-operations.js';
import { jobResourcesFromStack, localCloudManifestPath, readLocalCloudManifest, type JobResources } from '../aws/ops/job-resources.js';
import { redriveIngress } from '../aws/ops/redrive-ingress.js';
import type { CheckpointRecord, JobRecord } from '../core/ports.js';
import { checkpointDuration, count, ms, table, timeline } from './format.js';
import { sinksOf } from '../core/definition.js';
import { printDeadLetters, printOutput } from './inspect.js';
import { jobNameOf, resolveJob, UsageError } from './jobs.js';

/**
 * Operating a running job on AWS or on the local cloud: `cairn status | checkpoints | trigger |
 * pause | resume | rollback` with `--stack <name>` (a deployed CairnJob stack; endpoint and
 * credentials from the standard AWS chain, AWS_ENDPOINT_URL for LocalStack) or
 * `--target local-cloud` (the run recorded by `cairn run <job> --target local-cloud`).
 */

export interface RemoteOptions {
  readonly stack?: string;
  /** Construct id of the CairnJob when a stack holds several. */
  readonly jobId?: string;
  readonly target?: 'embedded' | 'local-cloud';
  readonly endpoint?: string;
  readonly region?: string;
}

type Print = (line?: string) => void;
const stdoutPrint: Print = (line = '') => void process.stdout.write(`${line}\n`);

export function isRemote(options: RemoteOptions): boolean {
  return options.stack !== undefined || options.target === 'local-cloud';
}

export async function resolveResources(job: string, options: RemoteOptions): Promise<JobResources> {
  const name = await jobNameOf(job);
  if (options.stack !== undefined && options.target === 'local-cloud') throw new UsageError('use either --stack or --target local-cloud, not both');
  if (options.stack !== undefined) {
    const endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL;
    const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
    const resources = await jobResourcesFromStack(options.stack, { ...(endpoint ? { endpoint } : {}), ...(region ? { region } : {}), ...(options.jobId ? { prefix: options.jobId } : {}) });
    if (resources.jobName !== name) throw new UsageError(`stack ${options.stack} runs job '${resources.jobName}', not '${name}'`);
    return resources;
  }
  if (options.target === 'local-cloud') return readLocalCloudManifest(localCloudManifestPath(name), name);
  throw new UsageError('name the running job: --stack <stack name> (deployed) or --target local-cloud');
}

async function withOperations<T>(job: string, options: RemoteOptions, use: (ops: JobOperations) => Promise<T>): Promise<T> {
  // The emulators take any credentials; the default provider chain may have none.
  const local = options.target === 'local-cloud' && !process.env.AWS_ACCESS_KEY_ID;
  const ops = await JobOperations.open(await resolveResources(job, options), local ? { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } } : {});
  try {
    return await use(ops);
  } finally {
    ops.close();
  }
}

function where(resources: JobResources): string {
  return `${resources.jobName} (table ${resources.tableName}${resources.endpoint ? ` at ${resources.endpoint}` : ''})`;
}

export function jobLine(job: JobRecord | undefined): string {
  if (!job) return 'job: not started yet (no job record)';
  const status = job.paused ? `${job.status}, PAUSED` : job.status;
  const parts = [
    `job: ${status}`,
    `generation ${job.generation}`,
    `last completed checkpoint ${job.lastCompletedId || '-'}`,
    `pending ${job.pendingCheckpoints.join(', ') || 'none'}`,
    `retained ${job.retainedCheckpoints.join(', ') || 'none'}`,
    `restarts ${job.restarts.length}`,
    `consecutive failures ${job.consecutiveFailures}`,
  ];
  if (job.recovery) parts.push(`recovering to ${job.recovery.toCheckpoint} (${job.recovery.reason})`);
  if (job.requests?.checkpoint) parts.push('checkpoint requested');
  if (job.requests?.rollback) parts.push(`rollback to ${job.requests.rollback.toCheckpoint} requested`);
  if (job.failure) parts.push(`failure: ${job.failure}`);
  return parts.join(' · ');
}

export function formatStatus(report: JobStatusReport, now = Date.now()): string[] {
  const lines = [`${where(report.resources)}`, jobLine(report.job)];
  const last = [...report.checkpoints].reverse().find((c) => c.status === 'COMPLETED');
  if (last?.finishedAt !== undefined) lines.push(`last completed: checkpoint ${last.id} (${last.trigger}) ${ms(now - last.finishedAt)} ago, took ${ms(checkpointDuration(last))}`);
  const inQueues = report.queues.filter((q) => q.role === 'dead-letter').reduce((n, q) => n + q.visible + q.inFlight, 0);
  lines.push('');
  lines.push(
    table(
      ['queue', 'role', 'waiting', 'in flight'],
      report.queues.map((q) => [q.name, q.role, count(q.visible), count(q.inFlight)]),
      new Set([2, 3]),
    ),
  );
  lines.push(
    `dead letters: ${count(report.deadLetters)} kept${report.deadLetters > 0 ? ` (cairn dead-letters ${report.resources.jobName} lists them)` : ''}` +
      (inQueues > 0 ? `, ${count(inQueues)} on their way from the dead-letter queues (the dead-letter function keeps them; a lost operator message starts a recovery)` : ''),
  );
  if (report.eventSourceMappings.length > 0) {
    const states = new Map<string, number>();
    for (const m of report.eventSourceMappings) states.set(m.state, (states.get(m.state) ?? 0) + 1);
    lines.push(`event source mappings: ${[...states].map(([state, n]) => `${n} ${state}`).join(', ')}`);
  }
  if (report.schedule) lines.push(`schedule ${report.schedule.name}: ${report.schedule.state} (${report.schedule.expression})`);
  if (report.coordinator) lines.push(`coordinator: newest execution ${report.coordinator.name} ${report.coordinator.status}, started ${new Date(report.coordinator.startedAt).toISOString()}`);
  const lease = report.job?.coordinator;
  if (lease?.owner !== undefined) lines.push(`coordinator loop: run by ${lease.owner} (lease until ${new Date(lease.until ?? 0).toISOString()})`);
  else if (lease?.asleepSince !== undefined) lines.push(`coordinator loop: asleep since ${new Date(lease.asleepSince).toISOString()} (nothing to do; new input wakes it)`);
  return lines;
}

export async function statusCommand(job: string, options: RemoteOptions, print: Print = stdoutPrint): Promise<number> {
  return withOperations(job, options, async (ops) => {
    const report = await ops.status();
    for (const line of formatStatus(report)) print(line);
    return report.job?.status === 'FAILED' ? 1 : 0;
  });
}

export async function remoteCheckpointsCommand(job: string, options: RemoteOptions, print: Print = stdoutPrint): Promise<number> {
  return withOperations(job, options, async (ops) => {
    const [records, status] = await Promise.all([ops.checkpoints(), ops.status()]);
    print(where(ops.resources));
    print(jobLine(status.job));
    if (records.length === 0) {
      print('no checkpoints yet');
      return 0;
    }
    const retained = new Set(status.job?.retainedCheckpoints ?? []);
    print();
    print(timeline(records, (c) => (retained.has(c.id) ? 'retained' : c.status === 'COMPLETED' ? 'pruned' : '-')));
    print();
    print(`retained (restorable with \`cairn rollback ${job} --to <id>\`): ${[...retained].join(', ') || 'none'}`);
    return 0;
  });
}

export async function remoteTriggerCommand(job: string, options: RemoteOptions & { wait?: number }, print: Print = stdoutPrint): Promise<number> {
  return withOperations(job, options, async (ops) => {
    const waitMs = (options.wait ?? 60) * 1000;
    const result = await ops.trigger({ waitMs });
    if (!result.checkpoint) {
      print(`checkpoint requested (it gets id ${result.firstCandidateId} or later)${waitMs > 0 ? `; not finished within ${ms(waitMs)}: see \`cairn checkpoints\`` : ''}`);
      return waitMs > 0 ? 1 : 0;
    }
    print(describeFinished(result.checkpoint));
    return result.checkpoint.status === 'COMPLETED' ? 0 : 1;
  });
}

function describeFinished(c: CheckpointRecord): string {
  return c.status === 'COMPLETED' ? `checkpoint ${c.id} COMPLETED in ${ms(checkpointDuration(c))} (${c.trigger})` : `checkpoint ${c.id} ABORTED: ${c.abortReason ?? 'no reason recorded'}`;
}

export async function pauseCommand(job: string, options: RemoteOptions & { drain?: number }, print: Print = stdoutPrint): Promise<number> {
  return withOperations(job, options, async (ops) => {
    const result = await ops.pause({ drainMs: (options.drain ?? 30) * 1000 });
    if (result.pendingLeft.length > 0) print(`checkpoints ${result.pendingLeft.join(', ')} did not finish in time; they will be aborted without counting as failures`);
    const stopped =
      result.mappingsDisabled > 0 || result.scheduleDisabled
        ? `${result.mappingsDisabled} event source mappings disabled${result.scheduleDisabled ? ', schedule disabled' : ''}`
        : 'the local runner stops its event sources';
    print(`paused ${ops.resources.jobName}: no new checkpoints; ${stopped}. Events pushed meanwhile wait in the ingress queue. Resume with \`cairn resume\`.`);
    return 0;
  });
}

export async function resumeCommand(job: string, options: RemoteOptions, print: Print = stdoutPrint): Promise<number> {
  return withOperations(job, options, async (ops) => {
    const result = await ops.resume();
    const parts = [
      result.mappingsEnabled > 0 ? `${result.mappingsEnabled} event source mappings enabled` : undefined,
      result.scheduleEnabled ? 'schedule enabled' : undefined,
      result.executionStarted ? 'coordinator execution started' : undefined,
    ].filter((p): p is string => p !== undefined);
    print(`resumed ${ops.resources.jobName}${parts.length > 0 ? `: ${parts.join(', ')}` : ''}`);
    return 0;
  });
}

export async function rollbackCommand(job: string, options: RemoteOptions & { to: number; wait?: number }, print: Print = stdoutPrint): Promise<number> {
  return withOperations(job, options, async (ops) => {
    const waitMs = (options.wait ?? 120) * 1000;
    const result = await ops.rollback(options.to, { waitMs });
    if (!result.job) {
      print(`rollback to checkpoint ${options.to} requested${waitMs > 0 ? `; not finished within ${ms(waitMs)}: see \`cairn status\`` : ''}`);
      return waitMs > 0 ? 1 : 0;
    }
    if (result.job.status === 'FAILED') {
      print(`rollback failed: ${result.job.failure ?? 'job FAILED'}`);
      return 1;
    }
    print(`rolled back to checkpoint ${result.job.lastCompletedId}: generation ${result.job.generation}, replaying from the checkpoint's source offsets`);
    return 0;
  });
}

// ---------- results and clean-up of a job on AWS or the local cloud ----------

/** The job's own stores on its table and bucket (read-only use here). */
async function withStores<T>(job: string, options: RemoteOptions, use: (stores: AwsStores, resources: JobResources) => Promise<T>): Promise<T> {
  const resources = await resolveResources(job, options);
  const local = options.target === 'local-cloud' && !process.env.AWS_ACCESS_KEY_ID;
  const stores = await createAwsStores({
    tableName: resources.tableName,
    bucket: resources.bucket,
    ...(resources.endpoint ? { endpoint: resources.endpoint } : {}),
    ...(resources.region ? { region: resources.region } : {}),
    ...(local ? { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } } : {}),
  });
  try {
    return await use(stores, resources);
  } finally {
    stores.destroy();
  }
}

/** The sinks to read: `--sink`, else those of the job's definition (a module path or an example). */
async function sinksToRead(job: string, sink: string | undefined): Promise<string[]> {
  if (sink !== undefined) return [sink];
  const definition = await resolveJob(job).catch(() => undefined);
  if (!definition) throw new UsageError(`name the sink to read: --sink <uid> (or give the job as its module path, whose sinks are known)`);
  return sinksOf(definition.build());
}

/** `cairn output <job> --stack S | --target local-cloud`: the committed sink output in the job table. */
export async function remoteOutputCommand(job: string, options: RemoteOptions & { sink?: string; json?: boolean }, print: Print = stdoutPrint): Promise<number> {
  const sinks = await sinksToRead(job, options.sink);
  return withStores(job, options, async (stores, resources) => {
    const output = new Map<string, unknown[]>();
    for (const sink of sinks) {
      const records = await stores.sinks.read(sink);
      if (records.length > 0 || options.sink !== undefined) output.set(sink, records);
    }
    return printOutput(output, `table ${resources.tableName}`, { ...(options.sink ? { sink: options.sink } : {}), ...(options.json ? { json: true } : {}) }, print);
  });
}

/** `cairn dead-letters <job> --stack S | --target local-cloud`: the dead-letter store, and how many messages each dead-letter queue holds. */
export async function remoteDeadLettersCommand(job: string, options: RemoteOptions & { json?: boolean; redrive?: boolean }, print: Print = stdoutPrint): Promise<number> {
  return withStores(job, options, async (stores, resources) => {
    if (options.redrive) {
      const result = await redriveIngress({ deadLetters: stores.deadLetters, sqs: stores.clients.sqs, ingressQueueUrl: resources.ingressQueueUrl });
      print(
        `redrive: ${result.sent} ingress event(s) sent back to ${resources.ingressQueueUrl} under their event ids${result.failed.length > 0 ? `; ${result.failed.length} failed and stay (${result.failed.join(', ')})` : ''}`,
      );
      if (result.failed.length > 0) return 1;
    }
    const letters = await stores.deadLetters.list();
    const redriven: Array<{ queue: string; reason: string; body: unknown }> = [];
    for (const [queue, url] of Object.entries(resources.deadLetterQueueUrls)) {
      const { Attributes } = await stores.clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages'] }));
      const depth = Number(Attributes?.ApproximateNumberOfMessages ?? 0);
      for (let i = 0; i < depth; i++) redriven.push({ queue, reason: 'max receive count', body: `(message ${i + 1} of ${depth} in ${url})` });
    }
    return printDeadLetters(letters, redriven, `table ${resources.tableName}`, options, print);
  });
}

/** `cairn destroy <job> --target local-cloud`: deletes the job's table, bucket and queues, kept after its runs. */
export async function destroyCommand(job: string, options: RemoteOptions, print: Print = stdoutPrint): Promise<number> {
  if (options.stack !== undefined) throw new UsageError(`a deployed stack is removed with \`npx cdk destroy ${options.stack}\` (its table and bucket are retained by default)`);
  if (options.target !== 'local-cloud') throw new UsageError('destroy acts on a job kept by the local cloud: --target local-cloud (an embedded job: delete its state directory)');
  const name = await jobNameOf(job);
  const manifest = localCloudManifestPath(name);
  await withStores(job, options, async (stores, resources) => {
    for (const url of [resources.ingressQueueUrl, ...Object.values(resources.queueUrls), ...Object.values(resources.deadLetterQueueUrls)]) {
      await stores.clients.sqs.send(new DeleteQueueCommand({ QueueUrl: url })).catch((error: unknown) => {
        if (!/NonExistentQueue|QueueDoesNotExist/.test((error as Error).name)) throw error;
      });
    }
    await deleteJobTable(stores.clients.dynamo, resources.tableName);
    await deleteBucket(stores.clients.s3, resources.bucket);
    print(`deleted the table ${resources.tableName}, its bucket and ${Object.keys(resources.queueUrls).length + 1} queues (with their dead-letter queues) of ${name}`);
  });
  rmSync(manifest, { force: true });
  return 0;
}
