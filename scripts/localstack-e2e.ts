/**
 * `npm run test:localstack`: the word-count stack deployed to a real LocalStack, end to end.
 *
 * Without AWS_ENDPOINT_URL it installs and starts a LocalStack itself, without Docker
 * (scripts/localstack/: install.sh, our Lambda runtime executor, localstack.ts) and stops it
 * at the end; with AWS_ENDPOINT_URL it uses that LocalStack. Then: `cdk bootstrap` and
 * `cdk deploy Cairn-word-count` (the project's CDK CLI, or `CAIRN_CDK=cdklocal`), the first
 * coordinator execution started as the stack's schedule would (LocalStack's community
 * EventBridge Scheduler stores schedules but never fires them; this test starts an execution
 * with the schedule's own target and input whenever none is running), events pushed into the
 * ingress queue with the plain AWS SDK, and a wait until the transactional sink holds exactly
 * the oracle's output. The wait follows progress: it fails once neither the sink nor the
 * job's completed checkpoints moved for CAIRN_LOCALSTACK_STALL_MS.
 *
 * Every failure, including a LocalStack that could not be started, exits 1.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { CloudFormationClient, paginateListStackResources } from '@aws-sdk/client-cloudformation';
import { GetScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { ListExecutionsCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { wordCount } from '../examples/word-count.js';
import { createAwsStores } from '../shared/aws/index.js';
import { jobResourcesFromOutputs } from '../shared/aws/ops/job-resources.js';
import { statusCommand } from '../shared/cli/operate.js';
import { startLocalStack, type LocalStack } from './localstack/localstack.js';

const EVENTS = Number(process.env.CAIRN_LOCALSTACK_EVENTS ?? 500);
/** Fail when neither the sink nor the completed checkpoints moved for this long. */
const STALL_MS = Number(process.env.CAIRN_LOCALSTACK_STALL_MS ?? 180_000);
const STACK = 'Cairn-word-count';
const started = Date.now();
const secs = (since: number): string => `${((Date.now() - since) / 1000).toFixed(1)} s`;
const say = (line: string): void => void process.stdout.write(`${line}\n`);

let localstack: LocalStack | undefined;

async function finish(passed: boolean, message: string): Promise<never> {
  say(message);
  if (localstack) {
    say(`stopping LocalStack (its log: ${localstack.logFile}; function logs: ${localstack.lambdaLogDir})`);
    await localstack.stop();
  }
  say(`total ${secs(started)}`);
  say(passed ? 'localstack: 1 passed, 0 failed' : 'localstack: 0 passed, 1 failed');
  process.exit(passed ? 0 : 1);
}

async function isLocalStack(url: string): Promise<boolean> {
  try {
    const response = await fetch(new URL('/_localstack/health', url), { signal: AbortSignal.timeout(5_000) });
    return response.ok && typeof ((await response.json()) as { services?: unknown }).services === 'object';
  } catch {
    return false;
  }
}

process.once('uncaughtException', (error) => void finish(false, `test:localstack failed: ${error.stack ?? String(error)}`));
process.once('unhandledRejection', (error) => void finish(false, `test:localstack failed: ${(error as Error).stack ?? String(error)}`));
process.once('SIGINT', () => void finish(false, 'interrupted'));
process.once('SIGTERM', () => void finish(false, 'terminated'));

let endpoint = process.env.AWS_ENDPOINT_URL;
if (endpoint) {
  if (!(await isLocalStack(endpoint))) await finish(false, `AWS_ENDPOINT_URL=${endpoint} is not a LocalStack (no /_localstack/health)`);
  say(`using the LocalStack at ${endpoint} (AWS_ENDPOINT_URL)`);
} else {
  const t = Date.now();
  try {
    localstack = await startLocalStack({ log: say });
    endpoint = localstack.endpoint;
  } catch (error) {
    await finish(false, `test:localstack could not start LocalStack: ${(error as Error).message}`);
  }
  say(`LocalStack up at ${endpoint} in ${secs(t)}`);
}

const region = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
const credentials = { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'test' };
const client = { endpoint, region, credentials };
// Every client of this process (ours, the stores', `cairn status`'s) and the CDK CLI talk to that LocalStack.
Object.assign(process.env, { AWS_ENDPOINT_URL: endpoint, AWS_REGION: region, AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey });
const env = { ...process.env };
const cdk = process.env.CAIRN_CDK ?? 'cdk';
const outputsFile = '.cache/localstack-outputs.json';
mkdirSync('.cache', { recursive: true });
for (const args of [
  ['bootstrap', '-c', 'job=word-count'],
  ['deploy', STACK, '-c', 'job=word-count', '--require-approval', 'never', '--outputs-file', outputsFile],
]) {
  const t = Date.now();
  say(`$ npx ${cdk} ${args.join(' ')}`);
  const result = spawnSync('npx', [cdk, ...args], { stdio: 'inherit', env });
  if (result.status !== 0) await finish(false, `npx ${cdk} ${args[0]} failed (exit ${result.status ?? result.signal})`);
  say(`${args[0]} took ${secs(t)}`);
}
const outputs = (JSON.parse(readFileSync(outputsFile, 'utf8')) as Record<string, Record<string, string>>)[STACK] ?? {};
// The same reading of the outputs as `cairn status --stack` (fixed keys written by CairnJob).
const resources = jobResourcesFromOutputs(outputs);
const { ingressQueueUrl: queueUrl, tableName, bucket } = resources;

// What the deployment created, by kind.
const kinds = new Map<string, number>();
let notComplete = 0;
for await (const page of paginateListStackResources({ client: new CloudFormationClient(client) }, { StackName: STACK })) {
  for (const r of page.StackResourceSummaries ?? []) {
    kinds.set(r.ResourceType ?? '?', (kinds.get(r.ResourceType ?? '?') ?? 0) + 1);
    if (!/_COMPLETE$/.test(r.ResourceStatus ?? '') || /FAILED|ROLLBACK/.test(r.ResourceStatus ?? '')) notComplete++;
  }
}
const total = [...kinds.values()].reduce((a, b) => a + b, 0);
say(`${STACK}: ${total} resources${notComplete ? ` (${notComplete} not complete)` : ''}`);
for (const [kind, n] of [...kinds].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) say(`  ${String(n).padStart(3)} ${kind}`);
if (notComplete > 0) await finish(false, `${notComplete} resources of ${STACK} are not complete`);

// ---------- the schedule's part: a coordinator execution whenever none is running ----------
const sfn = new SFNClient(client);
const scheduleName = resources.scheduleName;
if (!resources.checkpointStateMachineArn) await finish(false, `${STACK} has no CheckpointStateMachineArn output`);
let target = { arn: resources.checkpointStateMachineArn ?? '', input: JSON.stringify({ windowSeconds: 300 }) };
if (scheduleName) {
  const schedule = await new SchedulerClient(client).send(new GetScheduleCommand({ Name: scheduleName }));
  if (schedule.Target?.Arn) target = { arn: schedule.Target.Arn, input: schedule.Target.Input ?? '{}' };
  say(`schedule ${scheduleName} (${schedule.ScheduleExpression}, not fired by LocalStack): its target is started by this test, input ${target.input}`);
}
let executionsStarted = 0;
async function tickSchedule(): Promise<void> {
  const running = await sfn.send(new ListExecutionsCommand({ stateMachineArn: target.arn, statusFilter: 'RUNNING' }));
  if ((running.executions ?? []).length > 0) return;
  await sfn.send(new StartExecutionCommand({ stateMachineArn: target.arn, input: target.input }));
  executionsStarted++;
}

const stores = await createAwsStores({ tableName, bucket, endpoint, region });
await tickSchedule();
// Ingest refuses events until the coordinator created the job record (they would wait a whole visibility timeout).
{
  const t = Date.now();
  while (!(await stores.checkpoints.getJob())) {
    if (Date.now() - t > STALL_MS) await finish(false, `the coordinator did not create the job record within ${STALL_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  say(`job record created by the first coordinator execution after ${secs(t)}`);
}

// ---------- events ----------
const events = wordCount.generate(EVENTS, 42);
const sqs = new SQSClient(client);
const pushStart = Date.now();
for (let i = 0; i < events.length; i += 10) {
  const chunk = events.slice(i, i + 10);
  const sent = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((e, n) => ({ Id: String(n), MessageBody: JSON.stringify(e.event) })) }));
  if ((sent.Failed ?? []).length > 0) await finish(false, `SendMessageBatch failed for ${sent.Failed?.length} events: ${JSON.stringify(sent.Failed)}`);
}
say(`pushed ${EVENTS} events to ${queueUrl}`);

// ---------- wait for the oracle, as long as there is progress ----------
const expectedRecords = wordCount.oracle(events.map((e) => e.event));
const expected = JSON.stringify(expectedRecords);
let lastProgress = Date.now();
let seen = '';
for (;;) {
  const output = wordCount.canonical(await stores.sinks.read('counts'));
  const job = await stores.checkpoints.getJob();
  if (JSON.stringify(output) === expected) {
    say(
      `sink equals the oracle (${output.length} records) ${secs(pushStart)} after the first event; checkpoints completed: ${job?.lastCompletedId ?? 0}, coordinator executions started: ${executionsStarted}`,
    );
    say(`$ cairn status word-count --stack ${STACK}`);
    await statusCommand('word-count', { stack: STACK, endpoint, region });
    await finish(true, `test:localstack passed: ${STACK} (${total} resources) deployed to LocalStack and its sink equals the oracle for ${EVENTS} events`);
  }
  const progress = `${output.length}/${job?.lastCompletedId ?? 0}/${job?.status ?? '-'}/${job?.restarts.length ?? 0}`;
  if (progress !== seen) {
    seen = progress;
    lastProgress = Date.now();
    say(`  ${secs(pushStart)}: sink ${output.length}/${expectedRecords.length} records, last completed checkpoint ${job?.lastCompletedId ?? 0}, job ${job?.status ?? '-'}`);
  }
  if (job?.status === 'FAILED') await finish(false, `the job FAILED: ${job.failure ?? 'no reason recorded'}`);
  if (Date.now() - lastProgress > STALL_MS) {
    await statusCommand('word-count', { stack: STACK, endpoint, region }).catch(() => 1);
    await finish(false, `no progress for ${STALL_MS} ms: sink has ${output.length} records, the oracle ${expectedRecords.length}; last completed checkpoint ${job?.lastCompletedId ?? 0}`);
  }
  await tickSchedule();
  await new Promise((resolve) => setTimeout(resolve, 3_000));
}
