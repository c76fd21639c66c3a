/**
 * `npm run test:localstack`: the word-count stack deployed to a real LocalStack, end to end.
 *
 * Without AWS_ENDPOINT_URL it installs and starts a LocalStack itself, without Docker
 * (scripts/localstack/: install.sh, our Lambda runtime executor, localstack.ts) and stops it
 * at the end; with AWS_ENDPOINT_URL it uses that LocalStack. Then: `cdk bootstrap` and
 * `cdk deploy Cairn-word-count -c testSized=true` (the project's CDK CLI, or
 * `CAIRN_CDK=cdklocal`; test-sized: 5 s function timeouts, so 30 s visibility timeouts, see
 * infra/app.ts), the first coordinator execution started as the stack's schedule would
 * (LocalStack's community
 * EventBridge Scheduler stores schedules but never fires them; this test starts an execution
 * with the schedule's own target and input whenever none is running), events pushed into the
 * ingress queue with the plain AWS SDK, and a wait until the transactional sink holds exactly
 * the oracle's output. The wait follows progress: it fails once neither the sink nor the
 * job's completed checkpoints moved for CAIRN_LOCALSTACK_STALL_MS.
 *
 * The run has faults (scripts/localstack/faults.ts) unless `--no-faults` (or
 * CAIRN_LOCALSTACK_FAULTS=0): the sink operator's function throws once and the ingest function
 * crashes once, each after its handler returned; one message of the source vertex's queue
 * reaches its dead-letter queue, where the deployed dead-letter function keeps it as a dead
 * letter, reports the failure and wakes the coordinator, whose recovery workflow rolls the job
 * back; the sink must still equal the oracle.
 *
 * Every failure, including a LocalStack that could not be started, exits 1.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { GetEventSourceMappingCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { CloudFormationClient, paginateListStackResources } from '@aws-sdk/client-cloudformation';
import { ListExecutionsCommand, SFNClient, type ExecutionListItem } from '@aws-sdk/client-sfn';
import { GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { wordCount } from '../examples/word-count.js';
import { createAwsStores } from '../shared/aws/index.js';
import { jobResourcesFromOutputs } from '../shared/aws/ops/job-resources.js';
import { statusCommand } from '../shared/cli/operate.js';
import { injectFunctionFault, mappingOfQueue, redriveOneMessage } from './localstack/faults.js';
import { startLocalStack, type LocalStack } from './localstack/localstack.js';

const EVENTS = Number(process.env.CAIRN_LOCALSTACK_EVENTS ?? 500);
/** Fail when neither the sink nor the completed checkpoints moved for this long. */
const STALL_MS = Number(process.env.CAIRN_LOCALSTACK_STALL_MS ?? 180_000);
const STACK = 'Cairn-word-count';
/** The fault run's once-markers (scripts/localstack/faults.ts), removed at the end. */
const faultDir = path.resolve('.cache/localstack', `faults-${process.pid}`);
/** The fault run (scripts/localstack/faults.ts), unless `npm run test:localstack -- --no-faults` (or CAIRN_LOCALSTACK_FAULTS=0). `--faults` is the default. */
const FAULTS = !process.argv.includes('--no-faults') && process.env.CAIRN_LOCALSTACK_FAULTS !== '0';
const started = Date.now();
const secs = (since: number): string => `${((Date.now() - since) / 1000).toFixed(1)} s`;
const say = (line: string): void => void process.stdout.write(`${line}\n`);

let localstack: LocalStack | undefined;
/** Per process: other checkouts may run this test at the same time against the same .cache. */
const outputsFile = path.resolve('.cache/localstack', `outputs-${process.pid}.json`);

let finishing = false;
async function finish(passed: boolean, message: string): Promise<never> {
  if (finishing) return new Promise<never>(() => {}); // the first call exits
  finishing = true;
  say(message);
  rmSync(faultDir, { recursive: true, force: true });
  rmSync(outputsFile, { force: true });
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
mkdirSync(path.dirname(outputsFile), { recursive: true });
const context = ['-c', 'job=word-count', '-c', 'testSized=true'];
for (const args of [
  ['bootstrap', ...context],
  ['deploy', STACK, ...context, '--require-approval', 'never', '--outputs-file', outputsFile],
]) {
  const t = Date.now();
  say(`$ npx ${cdk} ${args.join(' ')}`);
  // Not spawnSync: a SIGINT/SIGTERM must still stop LocalStack while the CLI runs.
  const child = spawn('npx', [cdk, ...args], { stdio: 'inherit', env });
  const status = await new Promise<string | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  if (status !== 0) await finish(false, `npx ${cdk} ${args[0]} failed (exit ${status})`);
  say(`${args[0]} took ${secs(t)}`);
}
const outputs = (JSON.parse(readFileSync(outputsFile, 'utf8')) as Record<string, Record<string, string>>)[STACK] ?? {};
// The same reading of the outputs as `cairn status --stack` (fixed keys written by CairnJob).
const resources = jobResourcesFromOutputs(outputs);
const { ingressQueueUrl: queueUrl, tableName, bucket } = resources;

// What the deployment created, by kind.
const kinds = new Map<string, number>();
const stackResources: { logicalId: string; physicalId: string; type: string }[] = [];
let notComplete = 0;
for await (const page of paginateListStackResources({ client: new CloudFormationClient(client) }, { StackName: STACK })) {
  for (const r of page.StackResourceSummaries ?? []) {
    kinds.set(r.ResourceType ?? '?', (kinds.get(r.ResourceType ?? '?') ?? 0) + 1);
    stackResources.push({ logicalId: r.LogicalResourceId ?? '', physicalId: r.PhysicalResourceId ?? '', type: r.ResourceType ?? '' });
    if (!/_COMPLETE$/.test(r.ResourceStatus ?? '') || /FAILED|ROLLBACK/.test(r.ResourceStatus ?? '')) notComplete++;
  }
}
const total = [...kinds.values()].reduce((a, b) => a + b, 0);
say(`${STACK}: ${total} resources${notComplete ? ` (${notComplete} not complete)` : ''}`);
for (const [kind, n] of [...kinds].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) say(`  ${String(n).padStart(3)} ${kind}`);
if (notComplete > 0) await finish(false, `${notComplete} resources of ${STACK} are not complete`);
const physical = (type: string, logical: RegExp): string => {
  const found = stackResources.find((r) => r.type === type && logical.test(r.logicalId));
  if (!found) throw new Error(`${STACK} has no ${type} matching ${logical}`);
  return found.physicalId;
};

// ---------- the coordinator: nobody starts it here ----------
// The first events wake it (ingest starts an execution when there is no job record, and whenever
// the coordinator sleeps); the schedule is only its watchdog, which LocalStack does not fire.
const sfn = new SFNClient(client);
if (!resources.checkpointStateMachineArn) await finish(false, `${STACK} has no CheckpointStateMachineArn output`);
const checkpointsArn = resources.checkpointStateMachineArn ?? '';
async function runningExecutions(): Promise<number> {
  return ((await sfn.send(new ListExecutionsCommand({ stateMachineArn: checkpointsArn, statusFilter: 'RUNNING' }))).executions ?? []).length;
}
async function executionsSoFar(): Promise<number> {
  return ((await sfn.send(new ListExecutionsCommand({ stateMachineArn: checkpointsArn }))).executions ?? []).length;
}

// ---------- faults (--faults): see scripts/localstack/faults.ts ----------
const where = { endpoint: endpoint ?? '', region, credentials };
const sourceVertex = Object.keys(resources.queueUrls)[0] ?? '';
const sinkVertex = Object.keys(resources.queueUrls).at(-1) ?? '';
const faults = FAULTS
  ? {
      functions: [
        { fn: physical('AWS::Lambda::Function', new RegExp(`^Job${sinkVertex}Operator[0-9A-F]{8}$`)), fault: { point: 'after', kind: 'throw', once: path.join(faultDir, `${sinkVertex}-throw`) } },
        { fn: physical('AWS::Lambda::Function', /^JobIngest[0-9A-F]{8}$/), fault: { point: 'after', kind: 'crash', once: path.join(faultDir, 'ingest-crash') } },
      ] as const,
      redriven: undefined as string | undefined,
    }
  : undefined;
/** How long a wait may see no progress: a failed batch is redelivered only after its queue's visibility timeout. */
let stallMs = STALL_MS;
if (faults) {
  const sqsAttributes = await new SQSClient(client).send(new GetQueueAttributesCommand({ QueueUrl: resources.queueUrls[sinkVertex], AttributeNames: ['VisibilityTimeout'] }));
  const visibility = Number(sqsAttributes.Attributes?.VisibilityTimeout ?? 0);
  stallMs = Math.max(STALL_MS, visibility * 1000 + 60_000);
  say(`fault run: visibility timeout ${visibility} s (test-sized stack); a wait fails after ${stallMs} ms without progress`);
  rmSync(faultDir, { recursive: true, force: true });
  mkdirSync(faultDir, { recursive: true });
  for (const { fn, fault } of faults.functions) {
    await injectFunctionFault(where, fn, fault);
    say(`fault: ${fn} will ${fault.kind} once after its handler returned (CAIRN_LAMBDA_FAULT)`);
  }
}

const stores = await createAwsStores({ tableName, bucket, endpoint, region });
if (await stores.checkpoints.getJob()) await finish(false, 'the job record exists before any event was pushed (a stale stack?)');

// ---------- events ----------
const events = wordCount.generate(EVENTS, 42);
const sqs = new SQSClient(client);
const pushStart = Date.now();
async function push(from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += 10) {
    const chunk = events.slice(i, Math.min(i + 10, to));
    const sent = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((e, n) => ({ Id: String(n), MessageBody: JSON.stringify(e.event) })) }));
    if ((sent.Failed ?? []).length > 0) await finish(false, `SendMessageBatch failed for ${sent.Failed?.length} events: ${JSON.stringify(sent.Failed)}`);
  }
  say(`pushed events ${from}..${to - 1} to ${queueUrl}`);
}

// ---------- waits that follow progress ----------
const expectedRecords = wordCount.oracle(events.map((e) => e.event));
const expected = JSON.stringify(expectedRecords);
interface Seen {
  readonly output: unknown[];
  readonly job: Awaited<ReturnType<typeof stores.checkpoints.getJob>>;
  readonly equal: boolean;
}
let lastProgress = Date.now();
let seen = '';
async function waitUntil(what: string, done: (s: Seen) => boolean): Promise<Seen> {
  for (;;) {
    const output = wordCount.canonical(await stores.sinks.read('counts'));
    const job = await stores.checkpoints.getJob();
    const state = { output, job, equal: JSON.stringify(output) === expected };
    if (done(state)) return state;
    const progress = `${output.length}/${job?.lastCompletedId ?? 0}/${job?.status ?? '-'}/${job?.restarts.length ?? 0}/${job?.recovery ? 'recovering' : ''}`;
    if (progress !== seen) {
      seen = progress;
      lastProgress = Date.now();
      say(
        `  ${secs(pushStart)}: sink ${output.length}/${expectedRecords.length} records, last completed checkpoint ${job?.lastCompletedId ?? 0}, job ${job?.status ?? '-'}${job?.recovery ? ' (recovering)' : ''}, restarts ${job?.restarts.length ?? 0}`,
      );
    }
    if (job?.status === 'FAILED') await finish(false, `the job FAILED: ${job.failure ?? 'no reason recorded'}`);
    if (Date.now() - lastProgress > stallMs) {
      await statusCommand('word-count', { stack: STACK, endpoint, region }).catch(() => 1);
      await finish(
        false,
        `no progress for ${stallMs} ms while waiting for ${what}: sink has ${output.length} records, the oracle ${expectedRecords.length}; last completed checkpoint ${job?.lastCompletedId ?? 0}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 3_000));
  }
}

if (!faults) {
  await push(0, events.length);
} else {
  const half = Math.floor(events.length / 2);
  await push(0, half);
  await waitUntil('a first checkpoint with output', (s) => (s.job?.lastCompletedId ?? 0) >= 1 && s.output.length > 0);
  const queue = resources.queueUrls[sourceVertex] ?? '';
  const dlq = resources.deadLetterQueueUrls[sourceVertex] ?? '';
  const mappings = { queue: await mappingOf(queue), dlq: await mappingOfQueue(where, dlq) };
  if (!resources.eventSourceMappingIds.includes(mappings.queue)) await finish(false, `mapping ${mappings.queue} of ${sourceVertex} is not in the stack's EventSourceMappingIds output`);
  say(`fault: pausing mapping ${mappings.queue} of ${sourceVertex} and ${mappings.dlq} of its dead-letter queue, receiving one of its messages until SQS moves it to the dead-letter queue`);
  faults.redriven = await redriveOneMessage(where, mappings, queue, dlq, () => push(half, events.length), say);
  say(`fault: a message of ${sourceVertex} (first received: ${faults.redriven}) is in its dead-letter queue; both mappings resumed, the deployed dead-letter function takes it from here`);
}

async function mappingOf(queue: string): Promise<string> {
  const lambda = new LambdaClient(client);
  const name = queue.split('/').at(-1) ?? '';
  for (const uuid of resources.eventSourceMappingIds) {
    const m = await lambda.send(new GetEventSourceMappingCommand({ UUID: uuid }));
    if ((m.EventSourceArn ?? '').endsWith(`:${name}`)) return uuid;
  }
  throw new Error(`no event source mapping reads ${queue}`);
}

/** What the dead-letter function did: the dead letters it kept for the source vertex, and the coordinator executions it started. */
async function deadLetterWork(): Promise<{ letters: string[]; wakes: ExecutionListItem[] }> {
  const letters = (await stores.deadLetters.list()).filter((l) => l.reason === 'redriven' && l.vertex === sourceVertex).map((l) => l.id);
  const all = (await sfn.send(new ListExecutionsCommand({ stateMachineArn: checkpointsArn }))).executions ?? [];
  return { letters, wakes: all.filter((e) => (e.name ?? '').startsWith('dead-letter-')) };
}

const last = await waitUntil('the oracle', (s) => s.equal && (!faults || ((s.job?.restarts.length ?? 0) >= 1 && !s.job?.recovery && s.job?.status === 'RUNNING')));
const fired = faults ? faults.functions.filter((f) => existsSync(f.fault.once)).map((f) => `${f.fault.kind} in ${f.fn}`) : [];
say(
  `sink equals the oracle (${last.output.length} records) ${secs(pushStart)} after the first event; checkpoints completed: ${last.job?.lastCompletedId ?? 0}, restarts: ${last.job?.restarts.length ?? 0}, coordinator executions: ${await executionsSoFar()} (none started by the test)`,
);
// Idle: nothing changed since the last checkpoint, so the coordinator sleeps and no execution runs.
const asleep = await waitUntil('the coordinator to sleep', (s) => s.job?.coordinator?.asleepSince !== undefined && s.job.coordinator.owner === undefined);
// The execution that marked the sleep ends a moment later (its Run task returns, then Route > Asleep).
let running = await runningExecutions();
for (const t = Date.now(); running > 0 && Date.now() - t < 60_000; running = await runningExecutions()) await new Promise((resolve) => setTimeout(resolve, 1_000));
if (running > 0) await finish(false, `the coordinator sleeps (since ${asleep.job?.coordinator?.asleepSince}) but ${running} executions still run a minute later`);
say(`idle: the coordinator sleeps since ${new Date(asleep.job?.coordinator?.asleepSince ?? 0).toISOString()}, no execution runs (checkpoints completed: ${asleep.job?.lastCompletedId ?? 0})`);
say(`$ cairn status word-count --stack ${STACK}`);
await statusCommand('word-count', { stack: STACK, endpoint, region });
if (faults) {
  for (const r of last.job?.restarts ?? []) say(`restart to checkpoint ${r.toCheckpoint}: ${r.reason}`);
  if (fired.length !== faults.functions.length) await finish(false, `not every injected function fault fired (fired: ${fired.join(', ') || 'none'})`);
  const reason = `message reached the dead-letter queue of '${sourceVertex}'`;
  if (!(last.job?.restarts ?? []).some((r) => r.reason === reason)) await finish(false, `no restart for "${reason}": the dead-letter function reported nothing`);
  const { letters, wakes } = await deadLetterWork();
  for (const w of wakes) say(`coordinator woken by the dead-letter function: execution ${w.name} ${w.status}`);
  say(`dead letters kept by the dead-letter function: ${letters.join(', ')}`);
  if (letters.length === 0) await finish(false, `no dead letter with reason redriven for ${sourceVertex}: the dead-letter function did not consume its DLQ`);
  if (wakes.length !== 1) await finish(false, `expected one coordinator execution started by the dead-letter function, found ${wakes.length}`);
  await finish(
    true,
    `test:localstack passed with faults: ${fired.join(', ')}, ${letters.length} message(s) of ${sourceVertex} redriven to its DLQ, consumed by the deployed dead-letter function -> failure -> coordinator woken (${wakes[0]?.name}) -> rollback; the sink still equals the oracle for ${EVENTS} events`,
  );
}
await finish(true, `test:localstack passed: ${STACK} (${total} resources) deployed to LocalStack and its sink equals the oracle for ${EVENTS} events`);
